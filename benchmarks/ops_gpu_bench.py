"""walle.ops on an OpenCL device: the table of ../shared/GPU.md for whatever device is found.

Run: ``.venv/bin/python benchmarks/ops_gpu_bench.py`` (the GPU.md shapes: Gemm 1024^3 and
2048^3, MLP 64-256-256-1 at batch 4096 and 64, CNN 3x64x64 at batch 64, 256 and 1), or with
``--small`` for shapes a CPU OpenCL (PoCL) runs in seconds; ``--json PATH`` also writes the
rows. ``WALLE_OPENCL_DEVICE`` picks the device (a substring of platform and device name).

Per row, microseconds per call with numpy in and out (medians), for onnxruntime on 1 thread
and on all host threads, walle with each backend pinned for the whole plan, walle's search
(and what it chose), and torch on CUDA (fp32, copies in and out included) as the limit when
torch and a CUDA GPU are present. Host kernels (numpy's BLAS, walle's) run on one thread, as
in ops_bench; onnxruntime on all threads is the multi-threaded host. Peers are timed in
groups, each in interleaved slices so that load lands on its peers alike: onnxruntime on all
threads alone (its pool spins after a run), the host peers, the plans with OpenCL steps (an
OpenCL runtime's threads may spin too), torch. Every output is checked against onnxruntime.
The device, its identity and its measured costs (:mod:`walle.ops.calibration`) are printed
first. After the table, each OpenCL kernel forced for a whole plan (every GEMM row with
each matmul algorithm; the CNN rows with conv as ``implicit`` GEMM or as its ``parts``), so
the kernels' own figures are visible whatever the search picked.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
# Before numpy: ops_bench sets OMP/OPENBLAS/MKL_NUM_THREADS=1, so host kernels run on one thread.
from ops_bench import _feeds, _fix_batch, _interleaved_median_us  # noqa: I001

import numpy as np

FULL = {"gemm": (1024, 2048), "mlp": (4096, 64), "cnn": (64, 256, 1)}
SMALL = {"gemm": (256, 512), "mlp": (1024, 64), "cnn": (8, 16, 1)}


def _rows(sizes: dict[str, tuple[int, ...]]) -> list[tuple[str, object]]:
    from walle.ops.sample_models import cnn_onnx, mlp_onnx, single_op_onnx

    rows = []
    rng = np.random.default_rng(0)
    for n in sizes["gemm"]:
        w = (rng.standard_normal((n, n)) / np.sqrt(n)).astype(np.float32)
        b = rng.standard_normal(n).astype(np.float32)
        rows.append((f"Gemm {n}^3", single_op_onnx("Gemm", [(n, n)], {"w": w, "b": b})))
    rows += [(f"MLP 64-256-256-1 b{n}", _fix_batch(mlp_onnx(), n)) for n in sizes["mlp"]]
    rows += [(f"CNN 3x64x64 b{n}", _fix_batch(cnn_onnx(), n)) for n in sizes["cnn"]]
    return rows


def _ort(model, feeds, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads  # 0: onnxruntime's default, every core
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return lambda: sess.run(None, feeds)[0]


def _walle(model, feeds, pin: str | None):
    from walle.ops.onnx_import import import_onnx
    from walle.ops.search import compile_graph

    plan = compile_graph(import_onnx(model), pin=pin)
    x = feeds[plan.graph.inputs[0]]
    return (lambda: plan.run1(x)), plan


def _torch(model, feeds):
    """The ONNX graph run op by op in torch on CUDA, numpy in and out; None without a GPU."""
    try:
        import torch
        import torch.nn.functional as F
        from onnx import numpy_helper
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    dev = torch.device("cuda")
    consts = {
        i.name: torch.from_numpy(numpy_helper.to_array(i).copy()).to(dev)
        for i in model.graph.initializer
    }

    def attr(node, name, default):
        for a in node.attribute:
            if a.name == name:
                return list(a.ints) if a.ints else a.i
        return default

    def run():
        env = dict(consts)
        env.update({k: torch.from_numpy(v).to(dev) for k, v in feeds.items()})
        for node in model.graph.node:
            xs = [env[i] for i in node.input]
            op = node.op_type
            if op == "Gemm":
                y = xs[0] @ xs[1] + (xs[2] if len(xs) > 2 else 0)
            elif op == "Relu":
                y = torch.relu(xs[0])
            elif op == "Conv":
                y = F.conv2d(*xs, padding=attr(node, "pads", [0] * 4)[:2])
            elif op == "MaxPool":
                size, stride = attr(node, "kernel_shape", None), attr(node, "strides", None)
                y = F.max_pool2d(xs[0], size, stride)
            elif op == "GlobalAveragePool":
                y = xs[0].mean(dim=(2, 3), keepdim=True)
            elif op == "Flatten":
                y = xs[0].flatten(1)
            else:
                raise ValueError(f"no torch twin for {op}")
            env[node.output[0]] = y
        out = env[model.graph.output[0].name].cpu().numpy()
        torch.cuda.synchronize()
        return out

    return run


def _groups(peers: dict[str, Callable[[], object]], plans: dict) -> list[dict]:
    """Peers timed together in interleaved slices: host peers, then plans with an OpenCL step
    (an OpenCL runtime's threads may keep spinning after a run and slow a host peer timed
    next), then torch."""
    device = {
        name
        for name, plan in plans.items()
        if any(c.backend == "opencl" for c in plan.choices.values())
    }
    alone = ("ort_all", "torch_cuda_e2e")
    order = [
        ["ort_all"],
        [n for n in peers if n not in device and n not in alone],
        [n for n in peers if n in device],
        [n for n in peers if n == "torch_cuda_e2e"],
    ]
    return [{n: peers[n] for n in names} for names in order if names]


def _device_lines() -> list[str]:
    from walle.ops import calibration, get_backend

    backend = get_backend("opencl")
    started = time.perf_counter()
    costs = calibration.device_costs(backend)
    took = time.perf_counter() - started
    rates = ", ".join(f"{k} {v / 1e9:,.1f} G/s" for k, v in costs.rates)
    return [
        f"OpenCL device: {backend.device}",
        f"identity: {json.dumps(backend.identity())}",
        f"measured costs ({took:.2f} s, or read from the cache): launch "
        f"{costs.launch_s * 1e6:.1f} us, sync {costs.sync_s * 1e6:.1f} us, copy "
        f"{costs.copy_s * 1e6:.1f} us + {costs.upload_bytes_per_s / 1e9:.1f} GB/s up, "
        f"{costs.download_bytes_per_s / 1e9:.1f} GB/s down; rates: {rates}",
    ]


def _forced(graph, matmul: str, conv: str):
    """A plan with every step on OpenCL, matmuls and convs forced to the given algorithms."""
    from walle.ops import get_backend
    from walle.ops.fusion import find_steps
    from walle.ops.plan import Choice, CompiledPlan, is_alias

    backend = get_backend("opencl")
    steps = find_steps(graph)
    choices = {}
    for step in steps:
        if is_alias(step, graph):
            continue
        offered = backend.algorithms(step, graph)
        if not offered:  # a step OpenCL cannot run: the reference takes it, as when pinned
            choices[step.name] = Choice("numpy", "default", 0.0)
            continue
        wanted = conv if step.op == "fused.conv2d" else matmul
        choices[step.name] = Choice("opencl", wanted if wanted in offered else offered[0], 0.0)
    backends = {"opencl": backend, "numpy": get_backend("numpy")}
    return CompiledPlan(graph, steps, choices, backends)


def _algorithm_lines(rows: list[tuple[str, object]], budget: float) -> list[str]:
    """Per GEMM/CNN row, microseconds per call with each OpenCL kernel forced."""
    from walle.ops import GraphBuilder, get_backend
    from walle.ops.onnx_import import import_onnx

    b = GraphBuilder()
    x = b.input("x", (8, 8))
    probe = b.build([b.matmul(x, x)])
    matmuls = get_backend("opencl").atomic_algorithms(probe.nodes[0], probe)
    lines = ["| row | opencl kernels forced | us | max diff vs ort |", "|---|---|---|---|"]
    for label, model in rows:
        if label.startswith("MLP"):
            continue
        feeds = _feeds(model)
        want = _ort(model, feeds, 1)()
        graph = import_onnx(model)
        x = feeds[graph.inputs[0]]
        convs = ("implicit", "parts") if label.startswith("CNN") else ("parts",)
        variants = {}
        for matmul in matmuls:
            for conv in convs:
                name = f"matmul {matmul}" + (f", conv {conv}" if label.startswith("CNN") else "")
                variants[name] = _forced(graph, matmul, conv)
        peers = {name: (lambda p=plan, x=x: p.run1(x)) for name, plan in variants.items()}
        times = _interleaved_median_us(peers, budget_s=budget, min_calls=5, warmup=2)
        for name, fn in peers.items():
            diff = float(np.abs(np.asarray(fn()) - want).max())
            lines.append(f"| {label} | {name} | {times[name]:,.0f} | {diff:.1e} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="shapes for a CPU OpenCL (PoCL)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--budget", type=float, default=1.0, help="seconds per peer and row")
    args = parser.parse_args()
    os.environ.setdefault("WALLE_CACHE_DIR", tempfile.mkdtemp(prefix="walle-gpu-bench-"))
    for line in _device_lines():
        print(line, flush=True)
    from walle.ops import available_backends

    pinned = [b.name for b in available_backends()]
    head = ["row", "ort 1 thr", f"ort {os.cpu_count()} thr", *pinned, "search"]
    head += ["search / best pinned", "search's choice", "torch CUDA e2e"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head), flush=True)
    results = []
    for label, model in _rows(SMALL if args.small else FULL):
        feeds = _feeds(model)
        peers: dict[str, Callable[[], object]] = {
            "ort1": _ort(model, feeds, 1),
            "ort_all": _ort(model, feeds, 0),
        }
        plans = {}
        for name in (*pinned, None):
            peers[name or "search"], plans[name or "search"] = _walle(model, feeds, name)
        torch_fn = _torch(model, feeds)
        if torch_fn is not None:
            peers["torch_cuda_e2e"] = torch_fn
        want = peers["ort1"]()
        row: dict[str, object] = {"row": label}
        for name, fn in peers.items():
            row[f"{name}_maxdiff"] = float(np.abs(np.asarray(fn()) - want).max())
        for group in _groups(peers, plans):
            times = _interleaved_median_us(group, budget_s=args.budget, min_calls=5, warmup=2)
            row.update({f"{name}_us": round(us, 1) for name, us in times.items()})
        chosen = sorted({(c.backend, c.algorithm) for c in plans["search"].choices.values()})
        row["search_choice"] = chosen
        best = min(row[f"{n}_us"] for n in pinned)
        cells = [label, *(f"{row[f'{k}_us']:,.0f}" for k in ("ort1", "ort_all", *pinned))]
        cells += [f"{row['search_us']:,.0f}", f"{row['search_us'] / best:.2f}"]
        cells += [" + ".join(f"{b}/{a}" for b, a in chosen)]
        cells += [f"{row['torch_cuda_e2e_us']:,.0f}" if torch_fn else "—"]
        print("| " + " | ".join(cells) + " |", flush=True)
        results.append(row)
    if "opencl" in pinned:
        print("\nEach OpenCL kernel forced for the whole plan:", flush=True)
        for line in _algorithm_lines(_rows(SMALL if args.small else FULL), args.budget):
            print(line, flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

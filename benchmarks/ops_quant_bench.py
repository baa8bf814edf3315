"""Quantized models against onnxruntime, one thread, same run: each float model quantized by
onnxruntime's own tools (``quantize_dynamic`` with int8 weights; ``quantize_static`` in the
QDQ format, per-channel weights, calibrated on 8 random batches), then walle's plan and
onnxruntime's session of the quantized file timed in interleaved slices (``ops_bench``'s).

onnxruntime runs a quantized file with its int8 kernels (its optimiser fuses the QDQ pairs
and DynamicQuantizeLinear + MatMulInteger into int8 convs and matmuls); walle runs each
matmul and conv of a quantized value by constant weights as an integer product (its int8
kernels: VNNI where the CPU has it, 16-bit multiply-adds otherwise) and the rest as float ops
on whole numbers (README, "Quantized models"). So the baselines are onnxruntime's int8
session (the ratio, above 1 when walle is faster) and both engines on the float model (how
much each gains or loses by quantizing). Before timing, walle's outputs are checked against
onnxruntime's running the quantized graph as written (no optimiser: each QDQ node as the
spec says); the largest difference, relative to the output's scale, is printed (a QDQ
file's integer products may put a requantized value one quantum from it).

Run: ``taskset -c 1 .venv/bin/python benchmarks/ops_quant_bench.py`` (``--only NAME``...;
``--ort-avx2``: then walle's AVX2 build against onnxruntime's AVX2 code, on an AVX-512 CPU).
Rows: two of the onnx wheel's light CNNs (ops_bench's weights), at batch 1 and raised to
opset 13 (the QDQ format's per-channel scales need it), and an MLP 256-1024-1024-256 at
batch 32 (the matmuls dynamic quantization is most used for).
"""

from __future__ import annotations

import _one_thread  # noqa: F401  (first: one BLAS/OpenMP thread, set before numpy loads)

# isort: split
import argparse
import itertools
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper, version_converter

sys.path.insert(0, str(Path(__file__).parent))
import ops_bench


def _mlp() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    sizes = [256, 1024, 1024, 256]
    nodes, inits, x = [], [], "x"
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        w = (rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(
            (rng.standard_normal(b) * 0.1).astype(np.float32), f"b{i}")]  # fmt: skip
        nodes += [helper.make_node("MatMul", [x, f"w{i}"], [f"m{i}"]),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"])]  # fmt: skip
        x = f"a{i}"
        if i < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [x], [f"r{i}"]))
            x = f"r{i}"
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [32, sizes[0]])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [32, sizes[-1]])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _models() -> dict[str, onnx.ModelProto]:
    models = {"MLP 256-1024-1024-256, batch 32": _mlp()}
    for name, label in (("squeezenet", "SqueezeNet 1.1"), ("resnet50", "ResNet-50")):
        light = version_converter.convert_version(ops_bench.model_by_name(name), 13)
        models[f"{label}, batch 1"] = light
    return models


class _Calibration:
    def __init__(self, model: onnx.ModelProto) -> None:
        rng = np.random.default_rng(1)
        inp = model.graph.input[0]
        shape = [d.dim_value for d in inp.type.tensor_type.shape.dim]
        self.batches = iter(
            [{inp.name: rng.standard_normal(shape).astype(np.float32)} for _ in range(8)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.batches, None)


def _quantized(model: onnx.ModelProto, how: str, folder: Path) -> onnx.ModelProto:
    from onnxruntime.quantization import (
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    source, target = folder / "float.onnx", folder / f"{how}.onnx"
    onnx.save(model, str(source))
    if how == "dynamic":
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
    else:
        quantize_static(str(source), str(target), _Calibration(model),
                        quant_format=QuantFormat.QDQ, per_channel=True)  # fmt: skip
    return onnx.load(str(target))


def _as_written(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options)
    return session.run(None, feeds)[0]


def _row(label: str, model: onnx.ModelProto, how: str, folder: Path) -> str:
    quantized = _quantized(model, how, folder)
    feeds = ops_bench._feeds(model)
    walle_q, _ = ops_bench._walle(quantized, feeds, None)
    walle_f, _ = ops_bench._walle(model, feeds, None)
    want, got = _as_written(quantized, feeds), np.asarray(walle_q())
    diff = float(np.abs(got - want).max() / max(float(np.abs(want).max()), 1e-30))
    us = ops_bench._interleaved_median_us(
        {
            "ort_q": ops_bench._ort(quantized, feeds),
            "walle_q": walle_q,
            "ort_f": ops_bench._ort(model, feeds),
            "walle_f": walle_f,
        }
    )
    cells = [us[k] / 1e3 for k in ("ort_q", "walle_q", "ort_f", "walle_f")]
    return (
        f"| {label} | {how} | {cells[0]:.2f} | {cells[1]:.2f} | {us['ort_q'] / us['walle_q']:.2f}x"
        f" | {cells[2]:.2f} | {cells[3]:.2f} | {diff:.1e} |"
    )


def _ort_avx2_table(only: list[str]) -> None:
    """The rows again in a process of their own, walle's AVX2 build against onnxruntime's
    AVX2 code (benchmarks/ort_avx2.py's patched copy): what an AVX2-only CPU would see."""
    import os
    import subprocess

    import ort_avx2

    from walle.ops.backends import cython_isa, numpy_isa

    copy = ops_bench._ort_avx2_copy()
    if copy is None:
        return
    base = {**os.environ, cython_isa.ENV: "avx2", **numpy_isa.environ("avx2")}
    print("\nThe AVX2 build against onnxruntime's AVX2 code:", flush=True)
    only_args = ["--only", *only] if only else []
    subprocess.run(
        [sys.executable, __file__, *only_args], env=ort_avx2.environ(copy, base), check=True
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", default=[], help="rows whose label has one of these")
    parser.add_argument(
        "--ort-avx2",
        action="store_true",
        help="then the rows with walle's AVX2 build against onnxruntime's AVX2 code "
        "(an AVX-512 CPU only: benchmarks/ort_avx2.py)",
    )
    args = parser.parse_args()
    cpu, level = ops_bench._cpu()
    print(f"CPU: {cpu}; walle's kernels at {level}\n")
    print(
        "| model | quantized | onnxruntime int8 ms | walle ms | ratio | onnxruntime float ms "
        "| walle float ms | max diff |"
    )
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for label, model in _models().items():
            if args.only and not any(o.lower() in label.lower() for o in args.only):
                continue
            for how in ("dynamic", "qdq"):
                print(_row(label, model, how, Path(tmp)), flush=True)
    if args.ort_avx2:
        _ort_avx2_table(args.only)


if __name__ == "__main__":
    main()

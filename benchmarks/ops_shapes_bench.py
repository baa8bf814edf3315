"""walle.ops against onnxruntime on shapes that are not ops_bench's rows: one thread, medians.

Run: ``taskset -c 1 .venv/bin/python benchmarks/ops_shapes_bench.py`` (and with
``WALLE_OPS_ISA=avx2`` for the AVX2 build on an AVX-512 CPU). The kernels were tuned on
ops_bench's rows; these shapes (products of uneven sizes, MLPs and CNNs at other widths and
batches, softmax over other axes, a transformer encoder layer, MobileNetV2's first stages)
check that the lead is not a property of those rows. Each row is one ONNX model run by
walle (backends chosen by the search) and by onnxruntime, timed in interleaved slices as
in ops_bench; ratio = onnxruntime / walle (above 1: walle faster).
The last column is what walle's search chose for the row's product or conv steps.

``--random N`` then times N seeded random dense products x[m, k] @ W[k, n] (each size drawn
log-uniformly from 64-1024: shapes nobody tuned for) and prints their geometric-mean ratio
and the lowest one.
"""

from __future__ import annotations

import _one_thread  # noqa: F401  (first: one BLAS/OpenMP thread, set before numpy loads)

# isort: split

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import ops_bench


def _one(op: str, shape: tuple[int, ...], **attrs: object):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))
    graph = helper.make_graph([helper.make_node(op, ["x"], ["y"], **attrs)], op, [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _matmul(m: int, k: int, n: int):
    """x[m, k] @ W[k, n], W a constant (a dense layer without bias)."""
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).normal(0, 0.1, (k, n)).astype(np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])
    node = helper.make_node("MatMul", ["x", "w"], ["y"])
    graph = helper.make_graph([node], "matmul", [x], [y], [numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _cnn(side: int, batch: int):
    from walle.ops.sample_models import cnn_onnx

    model = cnn_onnx()
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_value = dims[3].dim_value = side
    return ops_bench._fix_batch(model, batch)


def _rows() -> list[tuple[str, object]]:
    from walle.ops.sample_models import encoder_onnx, mlp_onnx, mobilenet_v2_onnx

    mobilenet = ops_bench._fix_batch(mobilenet_v2_onnx(), 1)
    return [
        ("CNN 3x32x32, batch 16", _cnn(32, 16)),
        ("CNN 3x128x128, batch 4", _cnn(128, 4)),
        ("MLP 128-512-512-10, batch 32", ops_bench._fix_batch(mlp_onnx((128, 512, 512, 10)), 32)),
        ("MLP 32-1024-1024-1, batch 128", ops_bench._fix_batch(mlp_onnx((32, 1024, 1024, 1)), 128)),
        ("MLP 64-256-256-1, batch 8", ops_bench._fix_batch(mlp_onnx(), 8)),
        ("MLP 64-256-256-1, batch 256", ops_bench._fix_batch(mlp_onnx(), 256)),
        ("MatMul 100x300 @ 300x77", _matmul(100, 300, 77)),
        ("MatMul 512x512 @ 512x512", _matmul(512, 512, 512)),
        ("MatMul 32x512 @ 512x512", _matmul(32, 512, 512)),
        ("MatMul 33x1000 @ 1000x10", _matmul(33, 1000, 10)),
        ("Softmax [8,30000]", _one("Softmax", (8, 30000), axis=-1)),
        ("Softmax [256,128]", _one("Softmax", (256, 128), axis=-1)),
        ("Softmax [16,4,64,64], axis 1", _one("Softmax", (16, 4, 64, 64), axis=1)),
        ("Encoder layer 128 tokens x 256, 4 heads, FFN 1024 (erf-GELU)", encoder_onnx()),
        ("MobileNetV2 stem + 4 stages, 3x224x224 (depthwise, ReLU6)", mobilenet),
    ]


def _chosen(plan) -> str:
    """backend/algorithm of each product or conv step, in plan order, repeats merged."""
    picks = [
        f"{plan.choices[step.name].backend}/{plan.choices[step.name].algorithm}"
        for step in plan.steps
        if step.name in plan.choices and ("matmul" in step.op or "conv" in step.op)
    ]
    return ", ".join(dict.fromkeys(picks)) or "-"


def _random_products(count: int, seed: int = 2) -> list[tuple[str, object]]:
    """``count`` products with m, k, n each log-uniform in [64, 1024], from ``seed``."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(count):
        m, k, n = (int(np.exp(rng.uniform(np.log(64), np.log(1024))) + 0.5) for _ in range(3))
        rows.append((f"MatMul {m}x{k} @ {k}x{n}", _matmul(m, k, n)))
    return rows


def _table(rows: list[tuple[str, object]], budget_s: float) -> list[float]:
    """Times each row's model by walle and onnxruntime, prints a table row each; the ratios."""
    print("| shape | walle us | onnxruntime us | ort / walle | walle's products |")
    print("|---|---:|---:|---:|---|")
    ratios = []
    for name, model in rows:
        feeds = ops_bench._feeds(model)
        run_walle, plan = ops_bench._walle(model, feeds, None)
        run_ort = ops_bench._ort(model, feeds)
        np.testing.assert_allclose(run_walle(), run_ort(), rtol=1e-3, atol=1e-3)
        t = ops_bench._interleaved_median_us({"walle": run_walle, "ort": run_ort}, budget_s)
        ratios.append(t["ort"] / t["walle"])
        print(
            f"| {name} | {t['walle']:.1f} | {t['ort']:.1f} | {ratios[-1]:.2f}x | {_chosen(plan)} |",
            flush=True,
        )
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--random", type=int, default=0, metavar="N", help="then N random dense products"
    )
    args = parser.parse_args()
    if args.random < 0:
        parser.error(f"--random: {args.random} is negative")
    cpu, level = ops_bench._cpu()
    print(f"CPU: {cpu}. walle kernels' instruction-set level: {level}.\n")
    _table(_rows(), budget_s=2.0)
    if args.random:
        print(f"\n{args.random} random products, sizes log-uniform in 64-1024:\n")
        ratios = _table(_random_products(args.random), budget_s=0.6)
        mean = float(np.exp(np.mean(np.log(ratios))))
        print(f"\ngeometric mean ort / walle {mean:.3f}x, lowest {min(ratios):.2f}x")


if __name__ == "__main__":
    main()

"""Small ONNX models built with onnx.helper: the test, benchmark and CLI examples.

``mlp_onnx``: Gemm 64-256-256-1 with ReLU; ``cnn_onnx``: two conv/relu/maxpool blocks on
1x3x64x64, global average pool, flatten, Gemm to 10 classes; ``encoder_onnx``: a
transformer encoder layer (pre-norm attention and an erf-GELU feed-forward, as exported
from PyTorch); ``mobilenet_v2_onnx``: MobileNetV2's first stages (depthwise convs, ReLU6
as Clip, inverted residuals); ``recommender_onnx``: an embedding lookup of item ids, their
mean joined with dense features, an MLP and a sigmoid score; ``resize_onnx``: one Resize by
constant scales; ``single_op_onnx``: one node.
The leading input dim is the symbolic batch ``N`` (``encoder_onnx``: fixed sizes, its
reshapes name them).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from onnx import ModelProto, NodeProto, TensorProto, ValueInfoProto

# The Python values onnx.helper.make_node takes as attributes (a TensorProto is not used here).
OnnxAttr = int | float | str | Sequence[int] | Sequence[float]


def _model(
    nodes: list[NodeProto],
    inputs: list[ValueInfoProto],
    outputs: list[ValueInfoProto],
    inits: list[TensorProto],
    opset: int = 17,
) -> ModelProto:
    from onnx import helper

    graph = helper.make_graph(nodes, "walle_sample", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _node(
    op: str, inputs: list[str], outputs: list[str], name: str, attrs: Mapping[str, OnnxAttr]
) -> NodeProto:
    """``helper.make_node`` with the attributes given as a mapping: an attribute named like
    one of make_node's own keywords (``domain``, ``doc_string``) stays an attribute."""
    from onnx import helper

    node = helper.make_node(op, inputs, outputs, name=name)
    node.attribute.extend(helper.make_attribute(k, v) for k, v in sorted(attrs.items()))
    return node


def _init(name: str, array: npt.ArrayLike) -> TensorProto:
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray(array, np.float32), name)


def _io(name: str, shape: Sequence[int | str]) -> ValueInfoProto:
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def mlp_onnx(sizes: Sequence[int] = (64, 256, 256, 1), seed: int = 0) -> ModelProto:
    """An MLP of Gemm + Relu layers (no Relu after the last)."""
    from onnx import helper

    rng = np.random.default_rng(seed)
    nodes, inits, x = [], [], "x"
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        inits += [
            _init(f"w{i}", rng.normal(0, 1 / np.sqrt(a), (a, b))),
            _init(f"b{i}", rng.normal(0, 0.1, b)),
        ]
        y = f"h{i}" if i < len(sizes) - 2 else "y"
        nodes.append(
            helper.make_node(
                "Gemm", [x, f"w{i}", f"b{i}"], [y + "_lin" if y != "y" else "y"], name=f"fc{i}"
            )
        )
        if y != "y":
            nodes.append(helper.make_node("Relu", [y + "_lin"], [y], name=f"relu{i}"))
        x = y
    return _model(nodes, [_io("x", ["N", sizes[0]])], [_io("y", ["N", sizes[-1]])], inits)


def recommender_onnx(
    rows: int = 1000,
    dim: int = 16,
    seq: int = 20,
    dense: int = 8,
    hidden: Sequence[int] = (64,),
    seed: int = 0,
) -> ModelProto:
    """An on-device recommender: int64 item ids [N, seq] (a behaviour sequence) looked up in a
    [rows, dim] table ("table"), averaged, joined with float features [N, dense], then Gemm +
    Relu layers of ``hidden`` sizes and a Gemm + Sigmoid score [N, 1]. Inputs "ids" and
    "dense"; weights "w0", "b0", ... (the score's last)."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(seed)
    inits = [_init("table", rng.uniform(-0.1, 0.1, (rows, dim)))]
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["emb"], name="lookup"),
        helper.make_node("ReduceMean", ["emb"], ["pooled"], name="pool", axes=[1], keepdims=0),
        helper.make_node("Concat", ["pooled", "dense"], ["h0"], name="join", axis=1),
    ]
    sizes = [dim + dense, *hidden, 1]
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        inits += [
            _init(f"w{i}", rng.uniform(-0.2, 0.2, (a, b))),
            _init(f"b{i}", rng.uniform(-0.1, 0.1, b)),
        ]
        act = "Relu" if i < len(sizes) - 2 else "Sigmoid"
        nodes += [
            helper.make_node("Gemm", [f"h{i}", f"w{i}", f"b{i}"], [f"z{i}"], name=f"fc{i}"),
            helper.make_node(
                act, [f"z{i}"], [f"h{i + 1}" if act == "Relu" else "score"], name=f"act{i}"
            ),
        ]
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", seq])
    return _model(nodes, [ids, _io("dense", ["N", dense])], [_io("score", ["N", 1])], inits)


def cnn_onnx(seed: int = 0) -> ModelProto:
    """conv3x3(3->8)/relu/maxpool2, conv3x3(8->16)/relu/maxpool2, GAP, flatten, Gemm(16->10)."""
    from onnx import helper

    rng = np.random.default_rng(seed)
    inits = [
        _init("c1w", rng.normal(0, 0.3, (8, 3, 3, 3))),
        _init("c1b", rng.normal(0, 0.1, 8)),
        _init("c2w", rng.normal(0, 0.2, (16, 8, 3, 3))),
        _init("c2b", rng.normal(0, 0.1, 16)),
        _init("fw", rng.normal(0, 0.3, (16, 10))),
        _init("fb", rng.normal(0, 0.1, 10)),
    ]
    conv: dict[str, OnnxAttr] = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}
    pool: dict[str, OnnxAttr] = {"kernel_shape": [2, 2], "strides": [2, 2]}
    nodes = [
        _node("Conv", ["x", "c1w", "c1b"], ["c1"], "conv1", conv),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        _node("MaxPool", ["r1"], ["p1"], "pool1", pool),
        _node("Conv", ["p1", "c2w", "c2b"], ["c2"], "conv2", conv),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        _node("MaxPool", ["r2"], ["p2"], "pool2", pool),
        helper.make_node("GlobalAveragePool", ["p2"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="fc"),
    ]
    return _model(nodes, [_io("x", ["N", 3, 64, 64])], [_io("y", ["N", 10])], inits)


def single_op_onnx(
    op: str,
    input_shapes: Sequence[Sequence[int]],
    constants: dict[str, npt.NDArray[np.generic]] | None = None,
    opset: int = 17,
    **attrs: OnnxAttr,
) -> ModelProto:
    """One ``op`` node over inputs ``x0, x1, ...`` (fixed shapes) and constant inputs."""
    from onnx import helper

    names = [f"x{i}" for i in range(len(input_shapes))]
    inits = [
        _init(k, v) if v.dtype.kind == "f" else _int_init(k, v)
        for k, v in (constants or {}).items()
    ]
    node = _node(op, [*names, *(constants or {})], ["y"], f"the_{op.lower()}", attrs)
    from onnx import TensorProto

    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    return _model(
        [node], [_io(n, s) for n, s in zip(names, input_shapes, strict=True)], [out], inits, opset
    )


def resize_onnx(
    shape: Sequence[int],
    scales: Sequence[float],
    mode: str = "nearest",
    transform: str = "half_pixel",
    nearest: str = "round_prefer_floor",
) -> ModelProto:
    """One Resize (opset 13) of a fixed ``shape`` by constant ``scales``: ``mode`` nearest,
    linear or cubic, ``transform`` its coordinate_transformation_mode, ``nearest`` its
    nearest_mode; the output's declared shape is each dim times its scale (the float32 the
    model holds), rounded down, as ONNX's shape inference has it (onnxruntime's run rounds the
    product to float32 first: 500 at 2.37 gives 1185 there, 1184 declared)."""
    node = _node(
        "Resize",
        ["x", "", "scales"],
        ["y"],
        "the_resize",
        {"mode": mode, "coordinate_transformation_mode": transform, "nearest_mode": nearest},
    )
    out = [int(d * float(np.float32(s))) for d, s in zip(shape, scales, strict=True)]
    return _model([node], [_io("x", shape)], [_io("y", out)], [_init("scales", scales)], 13)


def _int_init(name: str, array: npt.ArrayLike) -> TensorProto:
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray(array, np.int64), name)


def layernorm_composite_onnx(shape: Sequence[int] = (64, 1024), seed: int = 0) -> ModelProto:
    """Layer norm spelled as ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div/Mul/Add."""
    from onnx import helper

    rng = np.random.default_rng(seed)
    c = shape[-1]
    inits = [
        _init("two", np.array(2.0)),
        _init("eps", np.array(1e-5)),
        _init("gamma", rng.normal(1, 0.1, c)),
        _init("beta", rng.normal(0, 0.1, c)),
    ]
    mk = helper.make_node
    nodes = [
        mk("ReduceMean", ["x"], ["m"], axes=[-1], name="mean"),
        mk("Sub", ["x", "m"], ["d"], name="center"),
        mk("Pow", ["d", "two"], ["sq"], name="square"),
        mk("ReduceMean", ["sq"], ["v"], axes=[-1], name="var"),
        mk("Add", ["v", "eps"], ["ve"], name="add_eps"),
        mk("Sqrt", ["ve"], ["sd"], name="std"),
        mk("Div", ["d", "sd"], ["n"], name="normalise"),
        mk("Mul", ["n", "gamma"], ["s"], name="scale"),
        mk("Add", ["s", "beta"], ["y"], name="shift"),
    ]
    return _model(nodes, [_io("x", ["N", c])], [_io("y", ["N", c])], inits, opset=17)


def mobilenet_v2_onnx(side: int = 224, stages: int = 4, seed: int = 0) -> ModelProto:
    """MobileNetV2's stem and first ``stages`` stages (1-4) of inverted residual blocks, as
    exported with batch norm folded: 1x1 expansion (x6) + ReLU6, depthwise 3x3 (stride 1
    or 2) + ReLU6, linear 1x1 projection, a shortcut Add where shapes match; ReLU6 is
    Clip(0, 6) with its bounds as inputs (opset 13). x [N, 3, side, side] -> the last
    stage's [N, C, side / 16, side / 16] (4 stages: 64 channels; sides rounded up)."""
    from onnx import helper

    rng = np.random.default_rng(seed)
    inits = [_init("relu6_lo", np.array(0.0)), _init("relu6_hi", np.array(6.0))]
    nodes: list[NodeProto] = []
    count = itertools.count()

    def conv(x: str, cin: int, cout: int, k: int, stride: int, group: int, relu6: bool) -> str:
        i = next(count)
        fan_in = cin // group * k * k
        weight = rng.normal(0, (2.0 / fan_in) ** 0.5, (cout, cin // group, k, k))
        inits.append(_init(f"w{i}", weight))
        inits.append(_init(f"b{i}", rng.normal(0, 0.1, cout)))
        y = f"conv{i}"
        nodes.append(helper.make_node(
            "Conv", [x, f"w{i}", f"b{i}"], [y], name=y, kernel_shape=[k, k],
            strides=[stride, stride], pads=[k // 2] * 4, group=group,
        ))  # fmt: skip
        if not relu6:
            return y
        nodes.append(helper.make_node("Clip", [y, "relu6_lo", "relu6_hi"], [y + "_r6"]))
        return y + "_r6"

    x, cin, out_side = conv("x", 3, 32, 3, 2, 1, True), 32, -(-side // 2)
    # (expansion, channels, blocks, first stride) of MobileNetV2's first stages
    settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2)]
    for expand, cout, blocks, stride in settings[:stages]:
        for j in range(blocks):
            hidden = cin * expand
            y = conv(x, cin, hidden, 1, 1, 1, True) if expand != 1 else x
            y = conv(y, hidden, hidden, 3, stride if j == 0 else 1, hidden, True)
            out_side = -(-out_side // stride) if j == 0 else out_side
            y = conv(y, hidden, cout, 1, 1, 1, False)
            if j > 0:
                nodes.append(helper.make_node("Add", [x, y], [y + "_sum"]))
                y += "_sum"
            x, cin = y, cout
    nodes[-1].output[0] = "y"
    return _model(
        nodes, [_io("x", ["N", 3, side, side])], [_io("y", ["N", cin, out_side, out_side])], inits,
        opset=13,
    )  # fmt: skip


def encoder_onnx(
    batch: int = 1,
    tokens: int = 128,
    dim: int = 256,
    heads: int = 4,
    ffn: int = 1024,
    seed: int = 0,
) -> ModelProto:
    """x + attn(LN(x)), then + FFN(LN(.)) with GELU spelled as 0.5 x (1 + erf(x / sqrt 2)):
    x [batch, tokens, dim] -> the same. The products are [batch, tokens, dim] @ [dim, *]
    with a bias Add after each, the heads split by Reshape + Transpose, softmax over the
    keys."""
    from onnx import helper

    rng = np.random.default_rng(seed)
    hd = dim // heads
    inits = [
        _int_init("heads_shape", [batch, tokens, heads, hd]),
        _int_init("merged_shape", [batch, tokens, dim]),
        _init("scale", np.array(1.0 / np.sqrt(hd))),
        _init("half", np.array(0.5)),
        _init("one", np.array(1.0)),
        _init("inv_sqrt2", np.array(1.0 / np.sqrt(2.0))),
    ]
    nodes: list[NodeProto] = []
    mk = helper.make_node

    def dense(name: str, x: str, n_in: int, n_out: int) -> str:
        inits.extend(
            [
                _init(f"{name}_w", rng.normal(0, 1 / np.sqrt(n_in), (n_in, n_out))),
                _init(f"{name}_b", rng.normal(0, 0.02, n_out)),
            ]
        )
        nodes.append(mk("MatMul", [x, f"{name}_w"], [f"{name}_mm"], name=f"{name}_matmul"))
        nodes.append(mk("Add", [f"{name}_mm", f"{name}_b"], [name], name=f"{name}_bias"))
        return name

    def norm(name: str, x: str) -> str:
        inits.extend(
            [
                _init(f"{name}_g", rng.normal(1, 0.1, dim)),
                _init(f"{name}_b", rng.normal(0, 0.1, dim)),
            ]
        )
        nodes.append(
            _node("LayerNormalization", [x, f"{name}_g", f"{name}_b"], [name], name,
                  {"axis": -1, "epsilon": 1e-5})
        )  # fmt: skip
        return name

    h = norm("ln1", "x")
    split = {}
    for part, perm in (("q", [0, 2, 1, 3]), ("k", [0, 2, 3, 1]), ("v", [0, 2, 1, 3])):
        dense(part, h, dim, dim)
        nodes.append(mk("Reshape", [part, "heads_shape"], [f"{part}_r"], name=f"{part}_split"))
        nodes.append(mk("Transpose", [f"{part}_r"], [f"{part}_h"], name=f"{part}_t", perm=perm))
        split[part] = f"{part}_h"
    nodes += [
        mk("MatMul", [split["q"], split["k"]], ["qk"], name="scores"),
        mk("Mul", ["qk", "scale"], ["qk_s"], name="scale_scores"),
        mk("Softmax", ["qk_s"], ["p"], name="softmax", axis=-1),
        mk("MatMul", ["p", split["v"]], ["ctx_h"], name="context"),
        mk("Transpose", ["ctx_h"], ["ctx_t"], name="ctx_t", perm=[0, 2, 1, 3]),
        mk("Reshape", ["ctx_t", "merged_shape"], ["ctx"], name="merge_heads"),
    ]
    dense("attn_out", "ctx", dim, dim)
    nodes.append(mk("Add", ["x", "attn_out"], ["res1"], name="residual1"))
    up = dense("up", norm("ln2", "res1"), dim, ffn)
    nodes += [
        mk("Mul", [up, "inv_sqrt2"], ["up_s"], name="gelu_scale"),
        mk("Erf", ["up_s"], ["up_erf"], name="gelu_erf"),
        mk("Add", ["up_erf", "one"], ["up_1"], name="gelu_add"),
        mk("Mul", [up, "up_1"], ["up_m"], name="gelu_mul"),
        mk("Mul", ["up_m", "half"], ["gelu"], name="gelu_half"),
    ]
    dense("down", "gelu", ffn, dim)
    nodes.append(mk("Add", ["res1", "down"], ["y"], name="residual2"))
    shape = [batch, tokens, dim]
    return _model(nodes, [_io("x", shape)], [_io("y", shape)], inits)

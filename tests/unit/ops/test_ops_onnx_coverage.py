"""ONNX op coverage beyond the nine CNNs (issue 11, item 2): each op against onnxruntime with
its DEFAULT attributes and with others, on every backend pinned; NaN and inf as onnxruntime;
refusals when the graph is built, naming node and op.

Tolerance: |walle - onnxruntime| <= 1e-4 + 1e-4 * |onnxruntime| (float32).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from tests.unit.ops._onnx_cases import (
    assert_parity,
    init,
    io,
    model,
    nan_inf,
    rand,
    run_ort,
    run_walle,
    single,
)
from walle.errors import ModelError, ValidationError
from walle.ops import Model, available_backends
from walle.ops.onnx_import import import_onnx

BACKENDS = [b.name for b in available_backends()]
_I = np.int64
_F = np.float32
# (op, input shapes, initializers, opset, attrs, outputs)
CASES = {
    # conv and pools: auto_pad, ceil_mode, count_include_pad, dilations
    "conv_same_upper": ("Conv", [(1, 2, 7, 6), (3, 2, 3, 2)], [], 18, {"auto_pad": "SAME_UPPER"}),
    "conv_same_lower_s2": (
        "Conv",
        [(1, 2, 7, 6), (3, 2, 2, 3)],
        [],
        18,
        {"auto_pad": "SAME_LOWER", "strides": [2, 2]},
    ),
    "conv_valid": ("Conv", [(1, 2, 7, 6), (3, 2, 3, 3)], [], 18, {"auto_pad": "VALID"}),
    "conv1d": ("Conv", [(2, 3, 9), (4, 3, 3)], [], 18, {}),
    "conv1d_attrs": (
        "Conv",
        [(2, 4, 11), (6, 2, 3), (6,)],
        [],
        18,
        {"group": 2, "strides": [2], "dilations": [2], "pads": [1, 2]},
    ),
    "conv1d_same_lower": ("Conv", [(1, 2, 8), (3, 2, 4)], [], 18, {"auto_pad": "SAME_LOWER"}),
    "maxpool1d": ("MaxPool", [(2, 3, 9)], [], 18, {"kernel_shape": [3]}),
    "maxpool1d_attrs": (
        "MaxPool",
        [(2, 3, 10)],
        [],
        18,
        {"kernel_shape": [3], "strides": [2], "pads": [1, 1], "dilations": [2], "ceil_mode": 1},
    ),
    "avgpool1d": (
        "AveragePool",
        [(2, 3, 9)],
        [],
        18,
        {"kernel_shape": [3], "strides": [2], "pads": [1, 0], "count_include_pad": 1},
    ),
    "avgpool1d_same": (
        "AveragePool",
        [(1, 2, 7)],
        [],
        18,
        {"kernel_shape": [2], "auto_pad": "SAME_UPPER"},
    ),
    "conv_notset": ("Conv", [(1, 2, 5, 5), (3, 2, 3, 3)], [], 18, {"auto_pad": "NOTSET"}),
    "conv3d": ("Conv", [(1, 3, 4, 5, 6), (2, 3, 2, 3, 3)], [], 18, {}),
    "conv3d_attrs": (
        "Conv",
        [(2, 4, 6, 5, 7), (4, 2, 3, 2, 3), (4,)],
        [],
        18,
        {"group": 2, "strides": [2, 1, 2], "dilations": [2, 1, 1], "pads": [1, 0, 1, 2, 1, 0]},
    ),
    "conv3d_same_upper": (
        "Conv",
        [(1, 2, 5, 5, 5), (2, 2, 3, 3, 3)],
        [],
        18,
        {"auto_pad": "SAME_UPPER", "strides": [2, 2, 2]},
    ),
    "maxpool3d": ("MaxPool", [(1, 2, 4, 5, 6)], [], 18, {"kernel_shape": [2, 3, 2]}),
    "maxpool3d_attrs": (
        "MaxPool",
        [(1, 2, 5, 6, 7)],
        [],
        18,
        {
            "kernel_shape": [3, 3, 2],
            "strides": [2, 2, 1],
            "pads": [1, 1, 0, 1, 0, 1],
            "dilations": [1, 1, 2],
            "ceil_mode": 1,
        },
    ),
    "avgpool3d": ("AveragePool", [(1, 2, 4, 5, 6)], [], 18, {"kernel_shape": [2, 2, 3]}),
    "avgpool3d_attrs": (
        "AveragePool",
        [(2, 2, 5, 6, 7)],
        [],
        19,
        {
            "kernel_shape": [3, 2, 3],
            "strides": [2, 1, 2],
            "pads": [1, 0, 1, 0, 1, 0],
            "count_include_pad": 1,
            "ceil_mode": 1,
        },
    ),
    "avgpool3d_same_lower": (
        "AveragePool",
        [(1, 2, 5, 5, 6)],
        [],
        18,
        {"kernel_shape": [2, 3, 2], "auto_pad": "SAME_LOWER", "strides": [2, 2, 2]},
    ),
    "conv_depthwise_same": (
        "Conv",
        [(2, 4, 6, 6), (4, 1, 3, 3), (4,)],
        [],
        18,
        {"group": 4, "auto_pad": "SAME_UPPER", "strides": [2, 1]},
    ),
    "maxpool_defaults": ("MaxPool", [(1, 2, 6, 5)], [], 18, {"kernel_shape": [2, 2]}),
    "maxpool_ceil": (
        "MaxPool",
        [(1, 2, 7, 6)],
        [],
        18,
        {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1},
    ),
    "maxpool_ceil_pads": (
        "MaxPool",
        [(1, 1, 8, 8)],
        [],
        18,
        {"kernel_shape": [3, 2], "strides": [3, 3], "pads": [1, 1, 1, 0], "ceil_mode": 1},
    ),
    "maxpool_same_lower": (
        "MaxPool",
        [(1, 2, 7, 6)],
        [],
        18,
        {"kernel_shape": [3, 2], "strides": [2, 2], "auto_pad": "SAME_LOWER"},
    ),
    "maxpool_same_upper_s2": (
        "MaxPool",
        [(1, 2, 7, 6)],
        [],
        18,
        {"kernel_shape": [2, 3], "auto_pad": "SAME_UPPER", "strides": [2, 2]},
    ),
    "maxpool_dilated": (
        "MaxPool",
        [(1, 2, 7, 6)],
        [],
        18,
        {"kernel_shape": [2, 2], "dilations": [2, 1]},
    ),
    "maxpool_valid": (
        "MaxPool",
        [(1, 2, 7, 6)],
        [],
        18,
        {"kernel_shape": [3, 3], "auto_pad": "VALID"},
    ),
    "avgpool_defaults": ("AveragePool", [(1, 2, 6, 5)], [], 18, {"kernel_shape": [3, 2]}),
    "avgpool_include_pad": (
        "AveragePool",
        [(1, 2, 6, 5)],
        [],
        18,
        {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1},
    ),
    "avgpool_exclude_pad": (
        "AveragePool",
        [(1, 2, 6, 5)],
        [],
        18,
        {"kernel_shape": [3, 3], "pads": [1, 0, 1, 2], "count_include_pad": 0},
    ),
    "avgpool_ceil": (
        "AveragePool",
        [(1, 2, 7, 6)],
        [],
        18,
        {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1},
    ),
    "avgpool_ceil_include_pad": (
        "AveragePool",
        [(1, 2, 7, 6)],
        [],
        18,
        {
            "kernel_shape": [3, 3],
            "strides": [2, 2],
            "pads": [1, 1, 1, 1],
            "ceil_mode": 1,
            "count_include_pad": 1,
        },
    ),
    "avgpool_same_upper": (
        "AveragePool",
        [(1, 2, 7, 6)],
        [],
        18,
        {"kernel_shape": [3, 2], "strides": [2, 2], "auto_pad": "SAME_UPPER"},
    ),
    "avgpool_same_lower_include": (
        "AveragePool",
        [(1, 2, 7, 6)],
        [],
        18,
        {"kernel_shape": [3, 3], "auto_pad": "SAME_LOWER", "count_include_pad": 1},
    ),
    "avgpool_valid": (
        "AveragePool",
        [(1, 2, 7, 6)],
        [],
        18,
        {"kernel_shape": [2, 3], "auto_pad": "VALID"},
    ),
    "avgpool_dilated": (
        "AveragePool",
        [(1, 2, 7, 6)],
        [],
        19,
        {"kernel_shape": [2, 2], "dilations": [2, 2], "pads": [1, 1, 0, 1]},
    ),
    "globalmaxpool": ("GlobalMaxPool", [(2, 3, 4, 5)], [], 18, {}),
    # element-wise
    "erf": ("Erf", [(3, 7)], [], 18, {}),
    "gelu": ("Gelu", [(3, 7)], [], 20, {}),
    "gelu_tanh": ("Gelu", [(3, 7)], [], 20, {"approximate": "tanh"}),
    "leakyrelu": ("LeakyRelu", [(3, 7)], [], 18, {}),
    "leakyrelu_alpha": ("LeakyRelu", [(3, 7)], [], 18, {"alpha": 1.5}),
    "clip_none": ("Clip", [(3, 7)], [], 18, {}),
    "clip_relu6": ("Clip", [(3, 7)], [init("lo", _F(0)), init("hi", _F(6))], 18, {}),
    "clip_min_only": ("Clip", [(3, 7)], [init("lo", _F(-0.5))], 18, {}),
    "clip_max_only": ("Clip", [(3, 7)], [None, init("hi", _F(0.25))], 18, {}),
    "clip_bounds_inputs": ("Clip", [(3, 7), (), ()], [], 18, {}),
    "clip_opset6": ("Clip", [(3, 7)], [], 6, {"min": 0.0, "max": 6.0}),
    "clip_opset6_defaults": ("Clip", [(3, 7)], [], 6, {}),
    "hardsigmoid": ("HardSigmoid", [(3, 7)], [], 18, {}),
    "hardsigmoid_attrs": ("HardSigmoid", [(3, 7)], [], 18, {"alpha": 0.5, "beta": 0.2}),
    "hardswish": ("HardSwish", [(3, 7)], [], 18, {}),
    "prelu_scalar": ("PRelu", [(2, 3, 4)], [init("s", _F([0.25]))], 16, {}),
    "prelu_channels": (
        "PRelu",
        [(2, 3, 4, 5)],
        [init("s", _F([[[0.1]], [[-0.5]], [[2.0]]]))],
        16,
        {},
    ),
    "prelu_last_axis": ("PRelu", [(2, 3, 4)], [init("s", _F([0.1, 0.2, 0.3, 0.4]))], 9, {}),
    "elu": ("Elu", [(3, 7)], [], 18, {}),
    "elu_alpha": ("Elu", [(3, 7)], [], 18, {"alpha": 0.5}),
    "selu": ("Selu", [(3, 7)], [], 18, {}),
    "selu_attrs": ("Selu", [(3, 7)], [], 18, {"alpha": 2.0, "gamma": 0.5}),
    "softplus": ("Softplus", [(3, 7)], [], 18, {}),
    "softsign": ("Softsign", [(3, 7)], [], 18, {}),
    "sign": ("Sign", [(3, 7)], [], 13, {}),
    **{
        f"convtranspose_{name}": ("ConvTranspose", [xs], [init("w", rand(ws, 5))], 18, attrs)
        for name, xs, ws, attrs in (
            ("defaults", (1, 4, 5, 6), (4, 3, 3, 3), {}),
            ("strided", (2, 4, 5, 6), (4, 3, 3, 3), {"strides": [2, 2]}),
            (
                "pads_output_padding",
                (1, 4, 5, 6),
                (4, 2, 3, 2),
                {"strides": [2, 3], "pads": [1, 0, 2, 1], "output_padding": [1, 2]},
            ),
            ("group_dilated", (1, 4, 5, 6), (4, 3, 3, 3), {"group": 2, "dilations": [2, 1]}),
            (
                "same_upper",
                (1, 4, 5, 6),
                (4, 3, 3, 3),
                {"strides": [2, 2], "auto_pad": "SAME_UPPER"},
            ),
            (
                "same_lower",
                (1, 4, 5, 6),
                (4, 3, 3, 3),
                {"strides": [2, 2], "auto_pad": "SAME_LOWER"},
            ),
            ("valid", (1, 4, 5, 6), (4, 3, 3, 3), {"strides": [2, 1], "auto_pad": "VALID"}),
            (
                "output_shape",
                (1, 4, 5, 6),
                (4, 3, 3, 3),
                {"strides": [2, 2], "output_shape": [10, 12]},
            ),
            ("pads_past_kernel", (1, 4, 5, 6), (4, 3, 2, 2), {"pads": [2, 1, 2, 2]}),
            ("1d", (2, 4, 7), (4, 3, 3), {"strides": [3], "pads": [1, 2]}),
            ("depthwise", (1, 3, 4, 4), (3, 1, 3, 3), {"group": 3, "strides": [2, 2]}),
        )
    },
    "convtranspose_output_padding_bias": (
        "ConvTranspose",
        [(1, 2, 3, 3)],
        [init("w", rand((2, 3, 3, 3), 6)), init("b", rand((3,), 7))],
        18,
        {"strides": [2, 2], "output_padding": [1, 1]},
    ),
    "convtranspose_bias": (
        "ConvTranspose",
        [(1, 2, 3, 3)],
        [init("w", rand((2, 4, 2, 2), 6)), init("b", rand((4,), 7))],
        11,
        {"strides": [2, 2]},
    ),
    "sign_opset9": ("Sign", [(2, 3, 4)], [], 9, {}),
    "logsoftmax": ("LogSoftmax", [(3, 7)], [], 18, {}),
    "logsoftmax_axis0": ("LogSoftmax", [(3, 4, 5)], [], 18, {"axis": 0}),
    "logsoftmax_opset11": ("LogSoftmax", [(3, 4, 5)], [], 11, {}),
    "max3": ("Max", [(3, 7), (7,), (3, 1)], [], 18, {}),
    "min2": ("Min", [(3, 7), (3, 7)], [], 18, {}),
    "neg": ("Neg", [(3, 7)], [], 18, {}),
    "abs": ("Abs", [(3, 7)], [], 18, {}),
    "exp": ("Exp", [(3, 7)], [], 18, {}),
    # layout
    "pad_constant": ("Pad", [(2, 3, 4)], [init("p", _I([0, 1, 2, 1, 0, 1]))], 18, {}),
    "pad_constant_value": (
        "Pad",
        [(2, 3)],
        [init("p", _I([1, 2, 0, 1])), init("v", _F(1.5))],
        18,
        {},
    ),
    "pad_reflect": (
        "Pad",
        [(2, 3, 4)],
        [init("p", _I([0, 2, 3, 1, 1, 2]))],
        18,
        {"mode": "reflect"},
    ),
    "pad_edge": ("Pad", [(2, 3, 4)], [init("p", _I([1, 2, 0, 0, 3, 2]))], 18, {"mode": "edge"}),
    "pad_wrap": ("Pad", [(2, 3, 4)], [init("p", _I([0, 1, 2, 1, 3, 2]))], 19, {"mode": "wrap"}),
    "pad_axes": (
        "Pad",
        [(2, 3, 4)],
        [init("p", _I([1, 2, 3, 0])), None, init("ax", _I([2, -2]))],
        18,
        {"mode": "edge"},
    ),
    "pad_negative": ("Pad", [(3, 5)], [init("p", _I([-1, 2, 1, -2]))], 18, {}),
    "pad_opset2": ("Pad", [(3, 5)], [], 2, {"pads": [1, 0, 0, 2], "value": 2.0}),
    "slice_defaults": ("Slice", [(5, 6)], [init("s", _I([1])), init("e", _I([4]))], 18, {}),
    "slice_neg_clamped": (
        "Slice",
        [(5, 6, 4)],
        [init("s", _I([-100, -3])), init("e", _I([2**62, -1])), init("a", _I([2, 1]))],
        18,
        {},
    ),
    "slice_neg_steps": (
        "Slice",
        [(5, 6)],
        [
            init("s", _I([-1, 100])),
            init("e", _I([-100, 0])),
            init("a", _I([0, -1])),
            init("st", _I([-2, -1])),
        ],
        18,
        {},
    ),
    "slice_empty": (
        "Slice",
        [(5, 6)],
        [init("s", _I([4])), init("e", _I([2])), init("a", _I([1]))],
        18,
        {},
    ),
    "slice_opset9": ("Slice", [(5, 6)], [], 9, {"starts": [1, -4], "ends": [100, -1]}),
    "split_defaults": ("Split", [(4, 6)], [], 13, {}, 2),
    "split_sizes": ("Split", [(4, 6)], [init("sp", _I([1, 2, 3]))], 18, {"axis": 1}, 3),
    "split_num_outputs": ("Split", [(4, 7)], [], 18, {"axis": -1, "num_outputs": 3}, 3),
    "split_opset11": ("Split", [(6, 2)], [], 11, {"split": [4, 2]}, 2),
    "gather_defaults": ("Gather", [(5, 3)], [init("i", _I([4, 0, -1, 2]))], 18, {}),
    "gather_axis_neg": (
        "Gather",
        [(2, 5, 3)],
        [init("i", _I([[1, -5], [3, 3]]))],
        18,
        {"axis": -2},
    ),
    "gather_scalar": ("Gather", [(2, 5, 3)], [init("i", _I(-1))], 18, {"axis": 2}),
    "squeeze": ("Squeeze", [(1, 3, 1, 2)], [], 18, {}),
    "squeeze_axes": ("Squeeze", [(1, 3, 1, 2)], [init("ax", _I([-2]))], 18, {}),
    # reductions
    "reducesum_defaults": ("ReduceSum", [(2, 3, 4)], [], 18, {}),
    "reducesum_axes_input": ("ReduceSum", [(2, 3, 4)], [init("ax", _I([0, 2]))], 13, {}),
    "reducesum_noop": ("ReduceSum", [(2, 3, 4)], [], 18, {"noop_with_empty_axes": 1}),
    "reducesum_opset11": ("ReduceSum", [(2, 3, 4)], [], 11, {"axes": [1], "keepdims": 0}),
    "reducemax_defaults": ("ReduceMax", [(2, 3, 4)], [], 18, {}),
    "reducemax_axes": (
        "ReduceMax",
        [(2, 3, 4)],
        [init("ax", _I([-1, 0]))],
        18,
        {"keepdims": 0},
    ),
    "reducemax_opset13": ("ReduceMax", [(2, 3, 4)], [], 13, {"axes": [1]}),
    "reducemin_defaults": ("ReduceMin", [(2, 3, 4)], [], 18, {"keepdims": 0}),
    "reducemin_opset13": ("ReduceMin", [(2, 3, 4)], [], 13, {"axes": [0, 2]}),
    "reducemean_noop": ("ReduceMean", [(2, 3)], [], 18, {"noop_with_empty_axes": 1}),
    "reducel1_defaults": ("ReduceL1", [(2, 3, 4)], [], 18, {}),
    "reducel1_opset13": ("ReduceL1", [(2, 3, 4)], [], 13, {"axes": [1], "keepdims": 0}),
    "reducel2_defaults": ("ReduceL2", [(2, 3, 4)], [], 18, {}),
    "reducel2_axes": ("ReduceL2", [(2, 3, 4)], [init("ax", _I([-1]))], 18, {}),
    "reducel2_noop": ("ReduceL2", [(2, 3)], [], 18, {"noop_with_empty_axes": 1}),
    "reducesumsquare_defaults": ("ReduceSumSquare", [(2, 3, 4)], [], 18, {"keepdims": 0}),
    "reducesumsquare_noop": ("ReduceSumSquare", [(2, 3)], [], 18, {"noop_with_empty_axes": 1}),
    "reducelogsum_defaults": ("ReduceLogSum", [(2, 3, 4)], [], 18, {}),
    "reducelogsum_opset13": ("ReduceLogSum", [(2, 3, 4)], [], 13, {"axes": [0, 2]}),
    "reducelogsumexp_defaults": ("ReduceLogSumExp", [(2, 3, 4)], [], 18, {}),
    "reducelogsumexp_axes": (
        "ReduceLogSumExp",
        [(2, 3, 4)],
        [init("ax", _I([1, -1]))],
        18,
        {"keepdims": 0},
    ),
    "reducelogsumexp_noop": ("ReduceLogSumExp", [(2, 3)], [], 18, {"noop_with_empty_axes": 1}),
    "celu_defaults": ("Celu", [(3, 4)], [], 12, {}),
    "celu_alpha": ("Celu", [(3, 4)], [], 12, {"alpha": 0.5}),
    "mish_defaults": ("Mish", [(3, 4)], [], 18, {}),
    "floor": ("Floor", [(3, 4)], [], 13, {}),
    "ceil": ("Ceil", [(3, 4)], [], 13, {}),
    "round": ("Round", [(3, 4)], [], 11, {}),
    "sin": ("Sin", [(3, 4)], [], 7, {}),
    "cos": ("Cos", [(3, 4)], [], 7, {}),
    "tan": ("Tan", [(3, 4)], [], 7, {}),
    "asin": ("Asin", [(3, 4)], [], 7, {}),
    "acos": ("Acos", [(3, 4)], [], 7, {}),
    "atan": ("Atan", [(3, 4)], [], 7, {}),
    "sinh": ("Sinh", [(3, 4)], [], 9, {}),
    "cosh": ("Cosh", [(3, 4)], [], 9, {}),
    "asinh": ("Asinh", [(3, 4)], [], 9, {}),
    "acosh": ("Acosh", [(3, 4)], [], 9, {}),
    "atanh": ("Atanh", [(3, 4)], [], 9, {}),
    "thresholdedrelu_defaults": ("ThresholdedRelu", [(3, 4)], [], 10, {}),
    "thresholdedrelu_alpha": ("ThresholdedRelu", [(3, 4)], [], 10, {"alpha": -0.5}),
    "shrink_defaults": ("Shrink", [(3, 4)], [], 9, {}),
    "shrink_attrs": ("Shrink", [(3, 4)], [], 9, {"lambd": 1.0, "bias": 0.25}),
    "hardmax_defaults": ("Hardmax", [(3, 4, 5)], [], 13, {}),
    "hardmax_axis": ("Hardmax", [(3, 4, 5)], [], 13, {"axis": 1}),
    "hardmax_opset11": ("Hardmax", [(3, 4, 5)], [], 11, {}),
    "isnan": ("IsNaN", [(3, 4)], [], 13, {}),
    "isinf_defaults": ("IsInf", [(3, 4)], [], 10, {}),
    "isinf_negative_only": ("IsInf", [(3, 4)], [], 10, {"detect_positive": 0}),
    "isinf_neither": (
        "IsInf",
        [(3, 4)],
        [],
        10,
        {"detect_positive": 0, "detect_negative": 0},
    ),
    "topk_defaults": ("TopK", [(3, 4, 6)], [init("k", _I([3]))], 11, {}, 2),
    "topk_smallest_axis": (
        "TopK",
        [(3, 4, 6)],
        [init("k", _I([2]))],
        11,
        {"axis": 1, "largest": 0},
        2,
    ),
    "topk_all_opset10": ("TopK", [(3, 6)], [init("k", _I([3]))], 10, {"axis": 0}, 2),
    "topk_opset1": ("TopK", [(4, 5)], [], 1, {"k": 2}, 2),
    "gatherelements_defaults": (
        "GatherElements",
        [(3, 4)],
        [init("i", _I([[2, 0, 1, -1], [0, 0, -3, 2]]))],
        13,
        {},
    ),
    "gatherelements_axis": (
        "GatherElements",
        [(3, 4, 2)],
        [init("i", _I(np.arange(18).reshape(3, 3, 2) % 4 - 1))],
        13,
        {"axis": 1},
    ),
    "gatherelements_smaller_off_axis": (
        "GatherElements",
        [(3, 5)],
        [init("i", _I([[4, 0], [-1, 3]]))],
        11,
        {"axis": 1},
    ),
    "cumsum_defaults": ("CumSum", [(3, 40)], [init("a", _I(1))], 14, {}),
    "cumsum_exclusive_reverse": (
        "CumSum",
        [(3, 4, 5)],
        [init("a", _I([-2]))],
        14,
        {"exclusive": 1, "reverse": 1},
    ),
    "cumsum_axis0_reverse": ("CumSum", [(6, 3)], [init("a", _I(0))], 11, {"reverse": 1}),
    "trilu_defaults": ("Trilu", [(2, 4, 3)], [], 14, {}),
    "trilu_lower_k": ("Trilu", [(4, 5)], [init("k", _I(-1))], 14, {"upper": 0}),
    "trilu_upper_k": ("Trilu", [(5, 4)], [init("k", _I(2))], 14, {}),
    "mod_fmod": ("Mod", [(3, 4), (4,)], [], 13, {"fmod": 1}),
    "mvn_defaults": ("MeanVarianceNormalization", [(2, 3, 4, 5)], [], 13, {}),
    "mvn_axes": ("MeanVarianceNormalization", [(2, 3, 4)], [], 13, {"axes": [1]}),
    "argmax_defaults": ("ArgMax", [(3, 4, 5)], [], 13, {}),
    "argmax_last_no_keepdims": (
        "ArgMax",
        [(3, 4, 5)],
        [],
        13,
        {"axis": -1, "keepdims": 0, "select_last_index": 1},
    ),
    "argmin_defaults": ("ArgMin", [(3, 4, 5)], [], 13, {}),
    "argmin_axis1_last": ("ArgMin", [(3, 4, 5)], [], 12, {"axis": 1, "select_last_index": 1}),
    # LayerNormalization and MatMul
    "layernorm_defaults": ("LayerNormalization", [(3, 8), (8,)], [], 17, {}),
    "instancenorm_defaults": (
        "InstanceNormalization",
        [(2, 3, 4, 5)],
        [init("s", _F([0.5, 1.0, 2.0])), init("b", _F([0.0, 1.0, -1.0]))],
        6,
        {},
    ),
    "instancenorm_1d_eps": (
        "InstanceNormalization",
        [(2, 3, 7)],
        [init("s", _F([0.5, 1.0, 2.0])), init("b", _F([0.0, 1.0, -1.0]))],
        22,
        {"epsilon": 1e-2},
    ),
    "instancenorm_3d_inputs": ("InstanceNormalization", [(1, 2, 3, 2, 4), (2,), (2,)], [], 6, {}),
    "layernorm_axis": (
        "LayerNormalization",
        [(2, 3, 4), (3, 4), (3, 4)],
        [],
        17,
        {"axis": 1, "epsilon": 0.1},
    ),
    "layernorm_axis_neg": ("LayerNormalization", [(2, 3, 4), (3, 4)], [], 17, {"axis": -2}),
    "lpnorm_defaults": ("LpNormalization", [(3, 2, 5)], [], 1, {}),
    "lpnorm_p1_axis0": ("LpNormalization", [(3, 2, 5)], [], 1, {"p": 1, "axis": 0}),
    "lpnorm_p2_axis1": ("LpNormalization", [(3, 4, 2)], [], 1, {"p": 2, "axis": 1}),
    "matmul_1d_left": ("MatMul", [(4,), (2, 4, 3)], [], 18, {}),
    "matmul_1d_right": ("MatMul", [(2, 3, 4), (4,)], [], 18, {}),
    "matmul_1d_both": ("MatMul", [(4,), (4,)], [], 18, {}),
    "matmul_1d_2d": ("MatMul", [(5,), (5, 3)], [], 18, {}),
}


def _feeds(shapes) -> dict[str, np.ndarray]:
    return {f"x{i}": rand(s, seed=i) for i, s in enumerate(shapes)}


def _case(name: str, nan: bool = False):
    op, shapes, inits, opset, attrs, *outs = CASES[name]
    proto = single(op, shapes, inits, opset, outputs=outs[0] if outs else 1, **attrs)
    feeds = {f"x{i}": (nan_inf if nan else rand)(s, i) for i, s in enumerate(shapes)}
    if name == "clip_bounds_inputs":
        feeds["x1"], feeds["x2"] = np.array(-0.5, _F), np.array(1.0, _F)
    return proto, feeds


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_ops_onnx_op_matches_onnxruntime(backend: str, name: str) -> None:
    proto, feeds = _case(name)
    assert_parity(proto, feeds, backend)


_NO_NAN = {
    # onnxruntime's MaxPool skips NaN inside a window; walle's max keeps it (as numpy).
    "maxpool_defaults", "maxpool_ceil", "maxpool_ceil_pads", "maxpool_same_lower",
    "maxpool1d", "maxpool1d_attrs", "maxpool3d", "maxpool3d_attrs",
    "maxpool_same_upper_s2", "maxpool_dilated", "maxpool_valid", "globalmaxpool",
    # onnxruntime keeps NaN in a full ReduceMax/Min but drops it in a partial one (its
    # running max skips NaN); walle keeps it in both (see the test below).
    "reducemax_axes", "reducemax_opset13", "reducemin_opset13",
    # onnxruntime's Hardmax of a slice holding NaN depends on its vector lanes (see
    # composites.hardmax); walle's rule is checked against an oracle below.
    "hardmax_defaults", "hardmax_axis", "hardmax_opset11",
}  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(set(CASES) - _NO_NAN))
def test_ops_onnx_op_nan_and_inf_like_onnxruntime(backend: str, name: str) -> None:
    proto, feeds = _case(name, nan=True)
    assert_parity(proto, feeds, backend, nan=True)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", ["ReduceMax", "ReduceMin"])
def test_ops_partial_reduce_max_min_keep_nan(backend: str, op: str) -> None:
    """NaN anywhere in a reduced slice gives NaN (numpy's np.max), on every backend."""
    from tests.unit.ops._onnx_cases import run_walle

    x = rand((3, 4, 5))
    x[0, 1, 2], x[2, 3, 0], x[1, :, 4] = np.nan, np.nan, np.inf
    for axes in ([1], [0, 2], [2]):
        proto = single(op, [x.shape], [init("ax", _I(axes))], 18, keepdims=0)
        got = run_walle(proto, {"x0": x}, backend)[0]
        want = (np.max if op == "ReduceMax" else np.min)(x, axis=tuple(axes))
        np.testing.assert_array_equal(got, want)


def test_ops_gelu_erf_subgraph_matches_the_gelu_op() -> None:
    """The Erf-based Gelu of exported transformers (opset < 20) and the opset-20 op."""
    nodes = [
        helper.make_node("Div", ["x", "sqrt2"], ["d"], name="div"),
        helper.make_node("Erf", ["d"], ["e"], name="erf"),
        helper.make_node("Add", ["e", "one"], ["a"], name="add"),
        helper.make_node("Mul", ["x", "a"], ["m"], name="mul"),
        helper.make_node("Mul", ["m", "half"], ["y"], name="half_mul"),
    ]
    inits = [init("sqrt2", _F(np.sqrt(2))), init("one", _F(1)), init("half", _F(0.5))]
    sub = model(nodes, [io("x", [4, 9])], [io("y", [4, 9])], inits, opset=13)
    x = rand((4, 9), low=-4, high=4)
    for backend in BACKENDS:
        assert_parity(sub, {"x": x}, backend)
        assert_parity(sub, {"x": nan_inf((4, 9))}, backend, nan=True)
    op = single("Gelu", [(4, 9)], opset=20)
    from tests.unit.ops._onnx_cases import run_walle

    np.testing.assert_allclose(
        run_walle(sub, {"x": x}, "numpy")[0], run_walle(op, {"x0": x}, "numpy")[0], atol=1e-6
    )


def test_ops_two_input_graph_runs_through_model(tmp_path) -> None:
    """A graph of two data inputs of different widths, run as Model(path).run(a, b)."""
    import onnx

    nodes = [
        helper.make_node("MatMul", ["a", "w"], ["h"], name="proj"),
        helper.make_node("Concat", ["h", "b"], ["c"], name="join", axis=1),
        helper.make_node("LeakyRelu", ["c"], ["y"], name="act"),
    ]
    proto = model(
        nodes,
        [io("a", ["N", 3]), io("b", ["N", 4])],
        [io("y", ["N", 9])],
        [init("w", rand((3, 5), 9))],
    )
    path = tmp_path / "two.onnx"
    onnx.save(proto, str(path))
    a, b = rand((6, 3), 1), rand((6, 4), 2)
    from tests.unit.ops._onnx_cases import run_ort

    want = run_ort(proto, {"a": a, "b": b})[0]
    got = Model(path, use_cache=False, trials=False).run(a, b)[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_ops_scalar_inputs_run_beside_batched_ones(tmp_path) -> None:
    """A Clip whose bounds are rank-0 graph inputs runs at any batch (the scalars have no
    rows); a scalar given for a batched input is refused naming the input."""
    import onnx

    node = helper.make_node("Clip", ["x", "lo", "hi"], ["y"], name="clamp")
    inputs = [io("x", ["N", 5]), io("lo", []), io("hi", [])]
    proto = model([node], inputs, [io("y", ["N", 5])])
    path = tmp_path / "clip.onnx"
    onnx.save(proto, str(path))
    m = Model(path, use_cache=False, trials=False)
    lo, hi = np.float32(-0.5), np.float32(0.75)
    for rows in (1, 3, 8):
        x = rand((rows, 5), rows)
        np.testing.assert_array_equal(m.run(x, lo, hi)[0], np.clip(x, lo, hi))
    with pytest.raises(ValidationError, match=r"input 'x' must have shape \(N, 5\), got \(\)"):
        m.run(np.float32(1.0), lo, hi)


def test_ops_split_outputs_declared_shapes_are_checked() -> None:
    node = helper.make_node("Split", ["x", "sp"], ["a", "b"], name="cut", axis=1)
    good = model(
        [node], [io("x", [2, 5])], [io("a", [2, 2]), io("b", [2, 3])], [init("sp", _I([2, 3]))]
    )
    assert [import_onnx(good).shape(o) for o in import_onnx(good).outputs] == [(2, 2), (2, 3)]
    bad = model(
        [node], [io("x", [2, 5])], [io("a", [2, 2]), io("b", [2, 4])], [init("sp", _I([2, 3]))]
    )
    with pytest.raises(ModelError, match=r"node 'cut' \(Split\): output 'b' has shape \(2, 3\)"):
        import_onnx(bad)


def test_ops_lone_matmul_behind_an_aliased_transpose() -> None:
    """Gemm(transB=1) with B [2, 1]: the transpose of B is a reshape (aliased), so the plan
    is one matmul call, and the caller's B of shape [2, 1] reaches a kernel bound to [1, 2]:
    the direct path views it in the kernel's shape (it used to raise in MatmulCall.run_io)."""
    proto = single("Gemm", [(1, 1), (2, 1)], opset=18, transB=1)
    assert_parity(proto, {"x0": rand((1, 1)), "x1": rand((2, 1), 1)}, "numpy")


# -- refused when the graph is built, naming node and op --------------------------------------
REFUSED = {
    "gather_out_of_range": (
        ("Gather", [(5, 3)], [init("i", _I([5]))], 18, {}),
        r"indices outside \[-5, 4\]",
    ),
    "gather_indices_input": (None, r"input 'idx' must be a constant"),
    "prelu_slope_input": (("PRelu", [(2, 3, 4), (3, 1)], [], 16, {}), r"input 'x1' must be a"),
    "prelu_slope_nan": (
        ("PRelu", [(2, 3, 4)], [init("s", _F([0.5, np.nan, 1.0, 2.0]))], 16, {}),
        r"the slope holds NaN or infinity",
    ),
    "prelu_slope_not_broadcast": (
        ("PRelu", [(2, 3, 4)], [init("s", _F([0.5, 1.0]))], 16, {}),
        r"slope of shape \(2,\) does not broadcast to \(2, 3, 4\)",
    ),
    "pad_reflect_too_wide": (
        ("Pad", [(2, 3)], [init("p", _I([0, 3, 0, 0]))], 18, {"mode": "reflect"}),
        r"reflect padding of 3 on an axis of 3",
    ),
    "pad_wrong_count": (("Pad", [(2, 3)], [init("p", _I([1, 1]))], 18, {}), r"2 pads for 2 axes"),
    "split_uneven": (("Split", [(5, 2)], [], 18, {}, 2), r"5 does not split into 2 equal"),
    "split_bad_sizes": (
        ("Split", [(5, 2)], [init("sp", _I([2, 2]))], 18, {}, 2),
        r"split \[2, 2\] does not cut",
    ),
    "slice_repeated_axis": (
        (
            "Slice",
            [(5, 6)],
            [init("s", _I([0, 1])), init("e", _I([2, 3])), init("a", _I([1, -1]))],
            18,
            {},
        ),
        r"repeat an axis",
    ),
    "reduce_bad_axis": (("ReduceSum", [(2, 3)], [init("ax", _I([2]))], 18, {}), r"axes \[2\]"),
    "gelu_bad_approximate": (("Gelu", [(2, 3)], [], 20, {"approximate": "fast"}), r"approximate"),
    "conv_same_dilated": (
        (
            "Conv",
            [(1, 2, 5, 5), (3, 2, 3, 3)],
            [],
            18,
            {"auto_pad": "SAME_LOWER", "dilations": [1, 2]},
        ),
        r"auto_pad=SAME_LOWER with dilations",
    ),
    "conv_pads_with_auto_pad": (
        ("Conv", [(1, 2, 5, 5), (3, 2, 3, 3)], [], 18, {"auto_pad": "VALID", "pads": [1] * 4}),
        r"pads given with auto_pad=VALID",
    ),
    "pool_same_dilated": (
        (
            "MaxPool",
            [(1, 2, 5, 5)],
            [],
            18,
            {"kernel_shape": [2, 2], "auto_pad": "SAME_UPPER", "dilations": [2, 2]},
        ),
        r"auto_pad=SAME_UPPER with dilations",
    ),
    "pool_4d": (
        ("MaxPool", [(1, 2, 3, 3, 3, 3)], [], 18, {"kernel_shape": [2, 2, 2, 2]}),
        r"only 1-D \(NCL\), 2-D \(NCHW\) and 3-D \(NCDHW\) inputs and kernels",
    ),
    "conv_kernel_rank": (
        ("Conv", [(1, 2, 4, 4, 4), (2, 2, 3, 3)], [], 18, {}),
        r"only 1-D \(NCL\), 2-D \(NCHW\) and 3-D \(NCDHW\) inputs and kernels",
    ),
    "matmul_mismatch": (("MatMul", [(4,), (3, 2)], [], 18, {}), r"do not multiply"),
    "layernorm_bad_axis": (("LayerNormalization", [(2, 3), (3,)], [], 17, {"axis": 2}), r"axis 2"),
    "lpnorm_p3": (("LpNormalization", [(2, 3)], [], 1, {"p": 3}), r"p 3 \(the spec allows 1 or 2"),
    "lpnorm_bad_axis": (("LpNormalization", [(2, 3)], [], 1, {"axis": -3}), r"axis -3 out of"),
    "convtranspose_weight_input": (
        ("ConvTranspose", [(1, 2, 3, 3), (2, 2, 3, 3)], [], 18, {}),
        r"input 'x1' must be a constant",
    ),
    "convtranspose_3d": (
        ("ConvTranspose", [(1, 2, 3, 3, 3)], [init("w", rand((2, 2, 2, 2, 2)))], 18, {}),
        r"only 1-D \(NCL\) and 2-D \(NCHW\) inputs and kernels are supported",
    ),
    "convtranspose_output_padding": (
        (
            "ConvTranspose",
            [(1, 2, 3, 3)],
            [init("w", rand((2, 2, 3, 3)))],
            18,
            {"strides": [2, 2], "output_padding": [2, 0]},
        ),
        r"each output_padding \[2, 0\] below its stride",
    ),
    "convtranspose_output_shape_too_big": (
        (
            "ConvTranspose",
            [(1, 2, 3, 3)],
            [init("w", rand((2, 2, 3, 3)))],
            18,
            {"output_shape": [6, 5]},
        ),
        r"output_shape \[6, 5\] is not reachable \(at most \[5, 5\]\)",
    ),
    "convtranspose_group": (
        ("ConvTranspose", [(1, 3, 3, 3)], [init("w", rand((3, 2, 3, 3)))], 18, {"group": 2}),
        r"input has 3 channels, weight \(3, 2, 3, 3\) with group 2",
    ),
    "instancenorm_rank2": (
        ("InstanceNormalization", [(2, 3), (3,), (3,)], [], 6, {}),
        r"input must be \[N, C, D1, ...\], got \(2, 3\)",
    ),
    "instancenorm_scale_shape": (
        ("InstanceNormalization", [(2, 3, 4), (1, 3), (3,)], [], 6, {}),
        r"scale must be \[3\] \(one per channel\), got \(1, 3\)",
    ),
    "squeeze_not_one": (("Squeeze", [(2, 3)], [init("ax", _I([0]))], 18, {}), r"not all of size 1"),
    "max_shapes": (("Max", [(2, 3), (4,)], [], 18, {}), r"shapes \(2, 3\) and \(4,\) do not"),
    "layernorm_scale_shape": (
        ("LayerNormalization", [(2, 3), (4,)], [], 17, {}),
        r"do not broadcast",
    ),
    "clip_vector_bound": (("Clip", [(2, 3), (3,)], [], 18, {}), r"min/max must be scalars"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_ops_onnx_refusals_name_node_and_op(tmp_path, name: str) -> None:
    import onnx

    spec, message = REFUSED[name]
    if spec is None:
        node = helper.make_node("Gather", ["x0", "idx"], ["y0"], name="n")
        proto = model([node], [io("x0", [5, 3]), io("idx", [2])], [io("y0", None)])
        op = "Gather"
    else:
        op, shapes, inits, opset, attrs, *outs = spec
        proto = single(op, shapes, inits, opset, outputs=outs[0] if outs else 1, **attrs)
    path = tmp_path / "m.onnx"
    onnx.save(proto, str(path))
    with pytest.raises(ModelError, match=rf"node 'n' \({op}\): .*{message}"):
        Model(path, use_cache=False, trials=False)


_NEW_OPS = {
    "Erf": [(2, 3)], "Gelu": [(2, 3)], "LeakyRelu": [(2, 3)], "Clip": [(2, 3)],
    "HardSigmoid": [(2, 3)], "HardSwish": [(2, 3)], "Max": [(2, 3)], "Min": [(2, 3)],
    "Pad": [(2, 3)], "Slice": [(2, 3)], "Split": [(2, 4)], "Gather": [(2, 3)],
    "Squeeze": [(1, 3)], "ReduceSum": [(2, 3)], "ReduceMax": [(2, 3)], "ReduceMin": [(2, 3)],
    "GlobalMaxPool": [(1, 2, 3, 3)], "LayerNormalization": [(2, 3)], "MatMul": [(3,), (3,)],
    "PRelu": [(2, 3), (3,)], "Elu": [(2, 3)], "Selu": [(2, 3)], "Softplus": [(2, 3)],
    "Softsign": [(2, 3)], "LogSoftmax": [(2, 3)], "Sign": [(2, 3)], "LpNormalization": [(2, 3)],
    "InstanceNormalization": [(1, 2, 3), (2,), (2,)], "ConvTranspose": [(1, 2, 3, 3), (2, 2, 1, 1)],
    "ArgMax": [(2, 3)], "ArgMin": [(2, 3)], "ReduceL1": [(2, 3)], "ReduceL2": [(2, 3)],
    "ReduceSumSquare": [(2, 3)], "ReduceLogSum": [(2, 3)], "ReduceLogSumExp": [(2, 3)],
    "Celu": [(2, 3)], "Mish": [(2, 3)], "Floor": [(2, 3)], "Ceil": [(2, 3)], "Round": [(2, 3)],
    "Sin": [(2, 3)], "Cos": [(2, 3)], "ThresholdedRelu": [(2, 3)], "Shrink": [(2, 3)],
    "Hardmax": [(2, 3)], "IsNaN": [(2, 3)], "IsInf": [(2, 3)], "GatherElements": [(2, 3), (2, 3)],
    "Trilu": [(2, 3)], "CumSum": [(2, 3), (1,)], "OneHot": [(2, 3), (1,), (2,)],
    "Mod": [(2, 3), (2, 3)], "MeanVarianceNormalization": [(1, 2, 3, 3)],
    **{op: [(2, 3)] for op in ("Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh",
                                 "Acosh", "Atanh")},
}  # fmt: skip


@pytest.mark.parametrize("op", sorted(_NEW_OPS))
def test_ops_new_op_with_an_unknown_attribute_is_refused(op: str) -> None:
    """An attribute walle does not implement is never ignored (the file checker would refuse
    it too; a ModelProto built in memory reaches the importer)."""
    proto = single(op, _NEW_OPS[op], bogus=1)
    with pytest.raises(ModelError, match=rf"node 'n' \({op}\): unsupported attribute.*bogus"):
        import_onnx(proto)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ops_sign_of_special_values_like_onnxruntime(backend: str) -> None:
    """Zeros, subnormals (1e-45), the largest floats, infinities and NaN; no value overflows
    on the way (numpy's overflow warnings raised as errors)."""
    x = _F([[np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45, -1e-45, 1e-38, 3.4e38, -3.4e38, -0.3]])
    proto = single("Sign", [x.shape], opset=13)
    assert_parity(proto, {"x0": x}, backend, nan=True)
    with np.errstate(over="raise"):
        run_walle(proto, {"x0": x}, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("p", [1, 2])
def test_ops_lp_normalization_of_special_vectors_like_onnxruntime(backend: str, p: int) -> None:
    """A vector of zeros gives zeros (onnxruntime's rule, not 0 / 0); at p = 2 a sum of
    squares that underflows to 0 gives zeros and one that overflows to inf zeros but for
    inf / inf; NaN and inf as onnxruntime; the smallest normal norm is left as it is."""
    x = _F(
        [
            [0.0, 0.0, 0.0, 0.0],
            [1.0, -2.0, np.nan, 3.0],
            [np.inf, 1.0, 2.0, 3.0],
            [1e-30, -1e-30, 0.0, 0.0],
            [1e20, -1e20, 0.0, 3.0],
            [1.2e-38, 0.0, 0.0, 0.0],
            [-0.0, 0.0, -0.0, 0.0],
        ]
    )
    proto = single("LpNormalization", [x.shape], opset=1, p=p, axis=1)
    assert_parity(proto, {"x0": x}, backend, nan=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ops_reduce_log_sum_exp_does_not_overflow_like_onnxruntime(backend: str) -> None:
    """Large values (exp overflows float32 from 89), rows of -inf alone, with +inf, with NaN:
    onnxruntime's results (1000.69, -inf, inf, NaN), not a sum of exps."""
    x = _F(
        [
            [1000.0, 1000.0, -np.inf],
            [-np.inf, -np.inf, -np.inf],
            [np.inf, 1.0, 2.0],
            [np.nan, 1.0, 2.0],
            [-1000.0, -1001.0, -1002.0],
            [1.0, -2.0, 3.0],
        ]
    )
    for keepdims in (0, 1):
        proto = single("ReduceLogSumExp", [x.shape], [init("ax", _I([1]))], 18, keepdims=keepdims)
        assert_parity(proto, {"x0": x}, backend, nan=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ops_hardmax_marks_the_first_largest_and_nan_never_wins(backend: str) -> None:
    """Ties to the first, infinities, NaN after the first value passed over, a slice whose
    first value is NaN all 0.0 (walle's rule; onnxruntime's depends on its vector lanes)."""
    from tests.unit.ops._onnx_cases import run_walle

    x = _F(
        [
            [1.0, np.nan, 3.0, 3.0, 0.0],
            [np.nan, 1.0, 2.0, 2.0, 5.0],
            [-np.inf, -np.inf, -np.inf, -np.inf, -np.inf],
            [2.0, np.inf, 1.0, np.inf, np.nan],
        ]
    )
    want = _F([[0, 0, 1, 0, 0], [0, 0, 0, 0, 0], [1, 0, 0, 0, 0], [0, 1, 0, 0, 0]])
    got = run_walle(single("Hardmax", [x.shape], opset=13), {"x0": x}, backend)[0]
    np.testing.assert_array_equal(got, want)


def _topk_unsorted(k: int) -> tuple:
    nodes = [helper.make_node("TopK", ["x", "k"], ["v", "i"], name="n", sorted=0)]
    outputs = [io("v", None), helper.make_tensor_value_info("i", onnx.TensorProto.INT64, None)]
    return model(nodes, [io("x", [3, 40])], outputs, [init("k", _I([k]))], opset=11)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ops_topk_unsorted_picks_the_same_elements_as_onnxruntime(backend: str) -> None:
    """With sorted=0 the order is the spec's to choose (walle's is sorted, onnxruntime's a
    heap's): the same (value, index) pairs, distinct values so that the choice is one."""
    x = np.random.default_rng(0).permutation(120).reshape(3, 40).astype(_F)
    for k in (1, 5, 33):
        proto = _topk_unsorted(k)
        (gv, gi), (wv, wi) = run_walle(proto, {"x": x}, backend), run_ort(proto, {"x": x})
        for r in range(3):
            assert sorted(zip(gv[r], gi[r], strict=True)) == sorted(zip(wv[r], wi[r], strict=True))


def test_ops_topk_indices_look_up_labels_and_come_back_int64(tmp_path) -> None:
    """The k best scores' labels by a Gather of TopK's indices (runtime indices, checked),
    and the indices themselves as int64 from Model.run."""
    nodes = [
        helper.make_node("TopK", ["scores", "k"], ["v", "i"], name="top"),
        helper.make_node("Gather", ["labels", "i"], ["picked"], name="lookup"),
    ]
    outputs = [
        io("v", None),
        helper.make_tensor_value_info("i", onnx.TensorProto.INT64, None),
        io("picked", None),
    ]
    labels = np.arange(100, 150, dtype=_F)
    inits = [init("k", _I([4])), init("labels", labels)]
    proto = model(nodes, [io("scores", ["N", 50])], outputs, inits, opset=11)
    path = tmp_path / "m.onnx"
    onnx.save(proto, path)
    scores = np.random.default_rng(2).standard_normal((3, 50)).astype(_F)
    got = Model(path, use_cache=False, trials=False).run(scores)
    want = run_ort(proto, {"scores": scores})
    assert [g.dtype for g in got] == [np.float32, np.int64, np.float32]
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


def test_ops_topk_with_a_runtime_k_is_refused_naming_the_node() -> None:
    node = helper.make_node("TopK", ["x", "k"], ["v", "i"], name="n")
    outputs = [io("v", None), helper.make_tensor_value_info("i", onnx.TensorProto.INT64, None)]
    k = helper.make_tensor_value_info("k", onnx.TensorProto.INT64, [1])
    proto = model([node], [io("x", [2, 5]), k], outputs, opset=11)
    with pytest.raises(ModelError, match=r"node 'n' \(TopK\)"):
        import_onnx(proto)


def test_ops_gather_elements_by_ids_checks_each_call(tmp_path) -> None:
    """Indices given with each call (int64 ids) index along the axis, negative ones from
    the end; one out of range is refused naming the node and its position."""
    node = helper.make_node("GatherElements", ["x", "ids"], ["y"], name="pick", axis=1)
    ids = helper.make_tensor_value_info("ids", onnx.TensorProto.INT64, ["N", 3])
    proto = model([node], [io("x", ["N", 6]), ids], [io("y", None)], opset=13)
    path = tmp_path / "m.onnx"
    onnx.save(proto, path)
    m = Model(path, use_cache=False, trials=False)
    x = rand((2, 6))
    idx = np.array([[0, 5, -1], [3, -6, 2]], np.int64)
    np.testing.assert_array_equal(m.run(x, idx)[0], run_ort(proto, {"x": x, "ids": idx})[0])
    with pytest.raises(ValidationError, match=r"gather_elements 'pick.*\(1, 2\): 6 is"):
        m.run(x, np.array([[0, 1, 2], [0, 1, 6]], np.int64))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_ops_one_hot_of_ids_matches_onnxruntime(backend: str, axis: int) -> None:
    """Negative ids count from the end, one outside [-depth, depth) is off everywhere, an
    infinite on-value stays where it is (a mask, not a product)."""
    node = helper.make_node("OneHot", ["i", "d", "v"], ["y"], name="n", axis=axis)
    ids = helper.make_tensor_value_info("i", onnx.TensorProto.INT64, [2, 3])
    inits = [init("d", _I(4)), init("v", _F([0.5, np.inf]))]
    proto = model([node], [ids], [io("y", None)], inits, opset=11)
    i = np.array([[0, 3, -1], [5, -4, 2]], np.int64)
    np.testing.assert_array_equal(
        run_walle(proto, {"i": i}, backend)[0], run_ort(proto, {"i": i})[0]
    )


def test_ops_one_hot_with_other_than_two_values_is_refused_naming_the_node() -> None:
    node = helper.make_node("OneHot", ["i", "d", "v"], ["y"], name="n")
    ids = helper.make_tensor_value_info("i", onnx.TensorProto.INT64, [2])
    inits = [init("d", _I(4)), init("v", _F([0.0, 1.0, 2.0]))]
    proto = model([node], [ids], [io("y", None)], inits, opset=11)
    with pytest.raises(ModelError, match=r"node 'n' \(OneHot\): values must be \[off, on\]"):
        import_onnx(proto)


def test_ops_mod_of_floats_without_fmod_is_refused_naming_the_node() -> None:
    """ONNX defines Mod of floats with fmod=1 only (onnxruntime refuses 0 too)."""
    with pytest.raises(ModelError, match=r"node 'n' \(Mod\): fmod=0"):
        import_onnx(single("Mod", [(2, 3), (2, 3)], opset=13))

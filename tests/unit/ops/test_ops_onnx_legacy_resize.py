"""Upsample (opsets 7 to 9) and Resize at opset 10: PyTorch's nn.Upsample exported at opset 9,
and any model exported at 10, which Resize had refused ("before opset 11").

Their spec leaves the coordinates open; onnxruntime reads them ``asymmetric`` (x / scale)
and, for nearest, rounds down along an axis that grows and up along one that shrinks; its
linear mode interpolates fixed axes by layout (2-D to 5-D), each even at scale 1, and
weighs an edge position's two equal taps 1/2 each. The cases pin that (a shrinking and a
growing axis in one node, each layout), NaN and inf included, where they show: an inf
beside a row reaches it as NaN. The property test (test_ops_onnx_properties.py) draws the
rest.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.ops._onnx_cases import assert_parity, init, nan_inf, rand, single
from walle.errors import ModelError
from walle.ops import available_backends
from walle.ops.onnx_import import import_onnx

BACKENDS = [b.name for b in available_backends()]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("op", "opset", "shape", "scales", "mode"),
    [
        ("Resize", 10, (1, 2, 5, 4), (1, 1, 0.6, 1.5), "nearest"),  # rows up, columns down
        ("Resize", 10, (1, 2, 4, 5), (1, 1, 1.5, 0.6), "nearest"),
        ("Resize", 10, (1, 1, 6, 5), (1, 1, 0.7, 2.5), "linear"),
        ("Upsample", 9, (1, 3, 2, 5), (1, 1, 1.5, 2.5), "nearest"),
        ("Upsample", 9, (2, 1, 3, 3), (1, 1, 2, 2), "linear"),
        ("Upsample", 7, (1, 2, 3, 4), (1, 1, 2.0, 3.0), "nearest"),  # scales an attribute
        ("Upsample", 8, (1, 2, 3, 4), (1, 1, 1.0, 2.0), "linear"),  # rows at scale 1 too
        ("Upsample", 9, (3, 4), (2, 1.5), "linear"),  # 2-D: both axes
        ("Upsample", 9, (2, 3, 4), (1, 2, 2), "linear"),  # 3-D: all three, one at scale 1
        ("Resize", 10, (1, 3, 4, 2), (1, 2, 0.5, 1), "linear"),  # NHWC
        ("Resize", 10, (1, 1, 2, 3, 4), (1, 1, 1, 2, 2), "linear"),  # 5-D
    ],
)
def test_legacy_resize_matches_onnxruntime(backend, op, opset, shape, scales, mode) -> None:
    scales_f = [float(s) for s in scales]
    if opset < 9:
        proto = single(op, [shape], (), opset, mode=mode, scales=scales_f)
    else:
        proto = single(op, [shape], [init("s", np.array(scales_f, np.float32))], opset, mode=mode)
    for x in (rand(shape, seed=len(shape)), nan_inf(shape, seed=1)):
        assert_parity(proto, {"x0": x}, backend, nan=True)


@pytest.mark.parametrize(
    ("op", "opset", "scales", "attrs", "message"),
    [
        ("Upsample", 9, (1, 1, 0.5, 2), {}, r"scales \[1.0, 1.0, 0.5, 2.0\] must be 4 values >= 1"),
        ("Resize", 10, (1, 1, 0, 2), {}, r"must be 4 values > 0"),
        ("Resize", 10, (1, 1, 2), {}, r"must be 4 values > 0"),
        ("Resize", 10, (1, 1, 0.1, 2), {}, r"give an empty output"),
        ("Resize", 10, (1, 1, 2, 2), {"mode": "cubic"}, r"mode='cubic' is not supported"),
        ("Upsample", 6, (1, 1, 2, 2), {}, r"Upsample before opset 7"),
        ("Upsample", 9, (1, 2, 1, 2), {"mode": "linear"}, r"not \[1.0, 2.0, 1.0, 2.0\]"),
    ],
)
def test_legacy_resize_refusals_name_the_node(op, opset, scales, attrs, message) -> None:
    s = init("s", np.array(scales, np.float32))
    proto = single(op, [(1, 1, 4, 4)], [s], opset, **attrs)
    with pytest.raises(ModelError, match=message) as info:
        import_onnx(proto)
    assert f"node 'n' ({op})" in str(info.value)

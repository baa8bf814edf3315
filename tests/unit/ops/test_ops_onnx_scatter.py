"""ScatterND with constant indices against onnxruntime on every backend (index tuples of
every length, negative indices, NaN in the overwritten slices of data, ``reduction`` add),
random cases (hypothesis), and the refusals naming the node and what is wrong."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import helper, numpy_helper

from tests.unit.ops._onnx_cases import assert_parity, io, model
from tests.unit.ops.test_ops_onnx_expand_tile import SETTINGS
from walle.errors import ModelError
from walle.ops import available_backends
from walle.ops.onnx_import import import_onnx

BACKENDS = [b.name for b in available_backends()]
_F = np.float32


class ScatterCase:
    """A ScatterND model and its feeds (hypothesis prints the repr)."""

    def __init__(self, data, indices, updates, reduction: str | None = None) -> None:
        attrs = {} if reduction is None else {"reduction": reduction}
        node = helper.make_node("ScatterND", ["d", "i", "u"], ["y"], name="s", **attrs)
        inputs = [io("d", list(data.shape)), io("u", list(updates.shape))]
        inits = [numpy_helper.from_array(np.asarray(indices, np.int64), "i")]
        self.proto = model([node], inputs, [io("y", None)], inits, opset=16)
        self.feeds = {"d": data, "u": updates}
        self.text = (
            f"{reduction or 'none'}: data {data.shape}, indices {np.asarray(indices).tolist()}"
        )

    def __repr__(self) -> str:
        return self.text


def _data(shape, seed: int = 0) -> np.ndarray:
    """Random values, a NaN every third (some in the slices written over)."""
    x = np.random.default_rng(seed).normal(size=shape).astype(_F)
    x.reshape(-1)[::3] = np.nan
    return x


CASES = {
    "rows": ((4, 5, 6), [[1], [3]]),
    "pairs_negative": ((4, 5, 6), [[1, 2], [3, -1], [0, 0]]),
    "elements": ((3, 4), [[0, 0], [2, 3], [1, -4]]),
    "nested_tuples": ((4, 5), [[[1, 2]], [[3, 4]]]),
    # YOLOv5's Detect: y[..., 0:2] = ... over a [1, 3, 2, 2, 5] grid, written as the
    # index tuple of every position of the first four dims
    "repeated_add": ((4, 3), [[1], [2], [1], [1]]),  # (with reduction add only)
    "yolo_grid": ((1, 3, 2, 2, 5), np.indices((1, 3, 2, 2)).reshape(4, -1).T[None]),
}


# repeated index tuples only with reduction add (refused without one: tested below)
_RUNS = [
    (name, reduction)
    for name in sorted(CASES)
    for reduction in (None, "none", "add")
    if name != "repeated_add" or reduction == "add"
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("name", "reduction"), _RUNS)
def test_ops_scatter_nd_matches_onnxruntime(backend: str, name: str, reduction) -> None:
    shape, indices = CASES[name]
    indices = np.asarray(indices)
    k = indices.shape[-1]
    updates = np.random.default_rng(1).normal(size=(*indices.shape[:-1], *shape[k:])).astype(_F)
    case = ScatterCase(_data(shape), indices, updates, reduction)
    assert_parity(case.proto, case.feeds, backend, nan=True)


@st.composite
def scatter_nd_models(draw) -> ScatterCase:
    """Data of rank 1-4, index tuples of length 1 to the rank, distinct, some negative;
    ``reduction`` left out, none or add."""
    shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple))
    k = draw(st.integers(1, len(shape)))
    positions = list(np.ndindex(*shape[:k]))
    chosen = draw(st.lists(st.sampled_from(positions), min_size=1, max_size=4, unique=True))
    tuples = np.array(chosen, np.int64).reshape(-1, k)
    flip = np.array(draw(st.lists(st.booleans(), min_size=tuples.size, max_size=tuples.size)))
    tuples = np.where(flip.reshape(tuples.shape), tuples - np.asarray(shape[:k]), tuples)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    updates = rng.normal(size=(len(chosen), *shape[k:])).astype(_F)
    data = rng.normal(size=shape).astype(_F)
    reduction = draw(st.sampled_from([None, "none", "add"]))
    return ScatterCase(data, tuples, updates, reduction)


@SETTINGS
@given(case=scatter_nd_models(), backend=st.sampled_from(BACKENDS))
def test_ops_scatter_nd_matches_onnxruntime_over_random_cases(case, backend: str) -> None:
    assert_parity(case.proto, case.feeds, backend)


@pytest.mark.parametrize(
    ("indices", "updates_shape", "attrs", "message"),
    [
        ([[1], [1]], (2, 3), {}, "repeated indices"),
        ([[4]], (1, 3), {}, "outside data's dims"),
        ([[1]], (2, 3), {}, r"updates have shape \(2, 3\)"),
        ([[1]], (1, 3), {"reduction": "mul"}, "reduction='mul'"),
    ],
)
def test_ops_scatter_nd_refusals_name_node_and_what(indices, updates_shape, attrs, message) -> None:
    node = helper.make_node("ScatterND", ["d", "i", "u"], ["y"], name="s", **attrs)
    inputs = [io("d", [4, 3]), io("u", list(updates_shape))]
    inits = [numpy_helper.from_array(np.asarray(indices, np.int64), "i")]
    proto = model([node], inputs, [io("y", None)], inits, opset=18)
    with pytest.raises(ModelError, match=rf"node 's' \(ScatterND\).*{message}"):
        import_onnx(proto)


def test_ops_scatter_nd_of_run_time_indices_is_refused() -> None:
    node = helper.make_node("ScatterND", ["d", "i", "u"], ["y"], name="s")
    inputs = [io("d", [4, 3]), io("i", [1, 1]), io("u", [1, 3])]
    proto = model([node], inputs, [io("y", None)], opset=16)
    with pytest.raises(ModelError, match=r"node 's' \(ScatterND\).*run time"):
        import_onnx(proto)

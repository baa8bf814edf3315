"""ONNX Expand and Tile against onnxruntime on every backend pinned: both lower to rasters
that read the broadcast or repeated dims with stride 0 (walle/ops/onnx_import/layout.py).

Expand (opsets 8 and 13) broadcasts both ways, as numpy: a 1 in ``shape`` keeps the data's
dim, and ``shape`` may be shorter or longer than the data's rank. Tile (opsets 6 and 13) is
np.tile. Both read their ``shape``/``repeats`` as a constant; a runtime one, shapes that do
not broadcast, repeats of the wrong length or sign, an empty result (walle has no empty
tensors) and an unknown attribute are refused when the Model is built, naming the node.

Tolerance: the parity cases as the coverage tests' (1e-4); the property tests compare with
numpy's broadcast_to and tile exactly, since both ops only copy.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes
from onnx import helper

from tests.unit.ops._onnx_cases import (
    assert_parity,
    init,
    io,
    model,
    nan_inf,
    rand,
    run_walle,
    single,
)
from walle.errors import ModelError
from walle.ops import Model, available_backends
from walle.ops.onnx_import import import_onnx

BACKENDS = [b.name for b in available_backends()]
SETTINGS = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
_I = np.int64
_F = np.float32

# name: (op, data shape, shape (Expand) or repeats (Tile), opset)
CASES = {
    "expand8_same_rank": ("Expand", (3, 1), [3, 4], 8),
    "expand13_same_rank": ("Expand", (2, 1, 4), [2, 3, 4], 13),
    "expand_ones_keep_data_dims": ("Expand", (2, 1, 4), [1, 5, 1], 13),
    "expand_ones_only": ("Expand", (2, 3, 4), [1, 1, 1], 8),
    "expand_lower_rank": ("Expand", (2, 3, 1), [5], 13),
    "expand_lower_rank_ones": ("Expand", (4, 1, 3), [1, 3], 8),
    "expand_higher_rank": ("Expand", (3, 1), [2, 1, 3, 4], 8),
    "expand_higher_rank_13": ("Expand", (1, 4), [2, 3, 5, 4], 13),
    "expand_data_ones": ("Expand", (1, 1, 1), [2, 3, 4], 13),
    "expand_both_ways": ("Expand", (1, 3, 1), [2, 1, 3, 1, 4], 13),
    "expand_empty_shape": ("Expand", (2, 3), np.zeros(0, _I), 13),
    "expand_scalar_data": ("Expand", (), [2, 3], 13),
    # rank 7, every other dim broadcast: two rasters (a region keeps at most 6 dims)
    "expand_rank7_alternating": ("Expand", (2, 1, 2, 1, 2, 1, 2), [2, 3, 2, 3, 2, 3, 2], 13),
    "tile6_identity": ("Tile", (2, 3), [1, 1], 6),
    "tile13_identity": ("Tile", (2, 3, 4), [1, 1, 1], 13),
    "tile6_1d": ("Tile", (5,), [3], 6),
    "tile13_1d": ("Tile", (4,), [2], 13),
    "tile6_2d": ("Tile", (2, 3), [3, 2], 6),
    "tile13_2d_columns": ("Tile", (2, 3), [1, 4], 13),
    "tile13_2d_rows": ("Tile", (3, 1), [2, 1], 13),
    "tile6_4d": ("Tile", (2, 1, 3, 2), [1, 3, 2, 2], 6),
    "tile13_4d": ("Tile", (1, 2, 1, 3), [3, 1, 2, 2], 13),
    # every axis repeated: an 8-dim view, so two rasters
    "tile13_4d_every_axis": ("Tile", (2, 3, 2, 4), [2, 2, 3, 2], 13),
}


def _case(name: str, nan: bool = False):
    op, shape, vector, opset = CASES[name]
    proto = single(op, [shape], [init("v", _I(vector))], opset)
    return proto, {"x0": (nan_inf if nan else rand)(shape, 3)}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_ops_expand_tile_match_onnxruntime(backend: str, name: str) -> None:
    proto, feeds = _case(name)
    assert_parity(proto, feeds, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_ops_expand_tile_nan_and_inf_like_onnxruntime(backend: str, name: str) -> None:
    proto, feeds = _case(name, nan=True)
    assert_parity(proto, feeds, backend, nan=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ops_expand_and_tile_of_constants_fold(backend: str) -> None:
    """Expand and Tile of initializers fold into constants when the graph is built; the
    result still matches onnxruntime where it meets a runtime input."""
    nodes = [
        helper.make_node("Expand", ["c", "shape"], ["e"], name="expand"),
        helper.make_node("Tile", ["e", "reps"], ["t"], name="tile"),
        helper.make_node("Mul", ["x", "t"], ["y"], name="mul"),
    ]
    inits = [init("c", rand((3, 1), 5)), init("shape", _I([2, 3, 4])), init("reps", _I([1, 2, 1]))]
    proto = model(nodes, [io("x", [2, 6, 4])], [io("y", [2, 6, 4])], inits, opset=13)
    assert [n.op for n in import_onnx(proto).nodes] == ["binary"]
    assert_parity(proto, {"x": nan_inf((2, 6, 4), 1)}, backend, nan=True)


def test_ops_expand_tile_rasters_run_on_every_backend() -> None:
    """Every raster of these imports is one each backend takes (a region keeps at most 6
    dims, the cython and OpenCL raster kernels' rank: a wider one would run on numpy even
    with the backend pinned), and the cases whose view has more dims than that get two."""
    broadcasts = {}
    for name, (op, shape, vector, opset) in CASES.items():
        graph = import_onnx(single(op, [shape], [init("v", _I(vector))], opset))
        for backend in available_backends():
            assert all(backend.supports(node, graph) for node in graph.nodes), (name, backend)
        regions = [r for node in graph.nodes for r in node.attr("regions")]
        broadcasts[name] = sum(min(r.src_strides) == 0 for r in regions)
    assert broadcasts["expand_rank7_alternating"] == broadcasts["tile13_4d_every_axis"] == 2
    assert broadcasts["expand8_same_rank"] == broadcasts["tile6_2d"] == 1
    assert broadcasts["expand_ones_only"] == broadcasts["tile6_identity"] == 0


# -- properties: numpy's broadcast_to and tile as oracles ---------------------------------
def _one_node(op: str, x: np.ndarray, vector: list[int], opset: int, out: tuple[int, ...]):
    """One ``op`` node named "n" over the float input x0 and the int64 initializer "v",
    its output declared with shape ``out`` (so that walle's import checks its own)."""
    node = helper.make_node(op, ["x0", "v"], ["y0"], name="n")
    return model(
        [node], [io("x0", list(x.shape))], [io("y0", list(out))], [init("v", _I(vector))], opset
    )


@st.composite
def expand_models(draw):
    """(model, feeds, expected) of an Expand over two shapes that broadcast both ways."""
    shapes = draw(mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=5, max_side=4))
    data, target = shapes.input_shapes
    x = rand(data, draw(st.integers(0, 2**16)))
    want = np.broadcast_to(x, shapes.result_shape)
    proto = _one_node("Expand", x, list(target), draw(st.sampled_from([8, 13])), want.shape)
    return proto, {"x0": x}, want


@st.composite
def tile_models(draw):
    """(model, feeds, expected) of a Tile with repeats of 1 to 3 on data of rank 1 to 4."""
    data = draw(st.lists(st.integers(1, 3), min_size=1, max_size=4).map(tuple))
    repeats = draw(st.lists(st.integers(1, 3), min_size=len(data), max_size=len(data)))
    x = rand(data, draw(st.integers(0, 2**16)))
    want = np.tile(x, repeats)
    proto = _one_node("Tile", x, repeats, draw(st.sampled_from([6, 13])), want.shape)
    return proto, {"x0": x}, want


@SETTINGS
@given(case=expand_models(), backend=st.sampled_from(BACKENDS))
def test_ops_expand_is_numpy_broadcast_to(case, backend: str) -> None:
    proto, feeds, want = case
    np.testing.assert_array_equal(run_walle(proto, feeds, backend)[0], want)


@SETTINGS
@given(case=tile_models(), backend=st.sampled_from(BACKENDS))
def test_ops_tile_is_numpy_tile(case, backend: str) -> None:
    proto, feeds, want = case
    np.testing.assert_array_equal(run_walle(proto, feeds, backend)[0], want)


# -- refused when the Model is built, naming node and op ----------------------------------
REFUSED = {
    "expand_shape_input": (("Expand", [(3, 1), (2,)], [], 13), r"input 'x1' must be a constant"),
    "expand_not_broadcast": (
        ("Expand", [(2, 3)], [init("s", _I([4, 2]))], 13),
        r"shape \(4, 2\) does not broadcast with the data's shape \(2, 3\)",
    ),
    "expand_not_broadcast_lower_rank": (
        ("Expand", [(2, 3)], [init("s", _I([2]))], 8),
        r"shape \(2,\) does not broadcast with the data's shape \(2, 3\)",
    ),
    "expand_negative_dim": (
        ("Expand", [(2, 1)], [init("s", _I([2, -1]))], 13),
        r"shape \(2, -1\) holds a negative dim",
    ),
    "expand_empty": (
        ("Expand", [(2, 1)], [init("s", _I([2, 0]))], 13),
        r"shape \(2, 0\) .* is not supported: it gives the empty shape \(2, 0\)",
    ),
    "tile_repeats_input": (("Tile", [(2, 3), (2,)], [], 13), r"input 'x1' must be a constant"),
    "tile_repeats_too_short": (
        ("Tile", [(2, 3)], [init("r", _I([2]))], 13),
        r"1 repeats \[2\] for data of rank 2",
    ),
    "tile_repeats_too_long": (
        ("Tile", [(2, 3)], [init("r", _I([1, 2, 3]))], 6),
        r"3 repeats \[1, 2, 3\] for data of rank 2",
    ),
    "tile_negative_repeat": (
        ("Tile", [(2, 3)], [init("r", _I([2, -1]))], 13),
        r"repeats \[2, -1\] hold a negative count",
    ),
    "tile_zero_repeat": (
        ("Tile", [(2, 3)], [init("r", _I([0, 2]))], 13),
        r"a repeat of 0 \(repeats \[0, 2\]\) is not supported: it gives the empty shape \(0, 6\)",
    ),
    "tile_opset_1": (
        ("Tile", [(2, 3)], [init("t", _F([2])), init("a", _F([0]))], 5),
        r"Tile before opset 6 \(inputs 'tiles' and 'axis'\) is not supported",
    ),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_ops_expand_tile_refusals_name_node_and_op(tmp_path, name: str) -> None:
    import onnx

    (op, shapes, inits, opset), message = REFUSED[name]
    path = tmp_path / "m.onnx"
    onnx.save(single(op, shapes, inits, opset), str(path))
    with pytest.raises(ModelError, match=rf"node 'n' \({op}\): {message}"):
        Model(path, use_cache=False, trials=False)


@pytest.mark.parametrize("op", ["Expand", "Tile"])
def test_ops_expand_tile_unknown_attribute_is_refused(op: str) -> None:
    """Neither op has attributes; one is never ignored (the file checker would refuse it
    too; a ModelProto built in memory reaches the importer)."""
    proto = single(op, [(2, 3)], [init("v", _I([1, 1]))], 13, bogus=1)
    with pytest.raises(ModelError, match=rf"node 'n' \({op}\): unsupported attribute.*bogus"):
        import_onnx(proto)


@pytest.mark.parametrize(("op", "what"), [("Expand", "shape"), ("Tile", "repeats")])
def test_ops_expand_tile_without_their_second_input_are_refused(op: str, what: str) -> None:
    """A ModelProto built in memory (the file checker wants both inputs)."""
    with pytest.raises(ModelError, match=rf"node 'n' \({op}\): input '{what}' is required"):
        import_onnx(single(op, [(2, 3)], [], 13))

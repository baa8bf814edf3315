"""Einsum against onnxruntime: the equations exporters write (attention scores, batched
matmuls, outer products, sums, transposes, ellipses that broadcast), random equations over
one to three operands (hypothesis), and the refusals naming the node and what is wrong."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import helper

from tests.unit.ops._onnx_cases import assert_parity, io, model
from tests.unit.ops.test_ops_onnx_expand_tile import SETTINGS
from walle.errors import ModelError
from walle.ops import available_backends
from walle.ops.onnx_import import import_onnx

BACKENDS = [b.name for b in available_backends()]


class EinsumCase:
    """An Einsum model and its feeds (hypothesis prints the repr)."""

    def __init__(self, equation: str, feeds: dict[str, np.ndarray]) -> None:
        self.equation, self.feeds = equation, feeds
        names = list(feeds)
        node = helper.make_node("Einsum", names, ["y"], name="e", equation=equation)
        inputs = [io(n, list(a.shape)) for n, a in feeds.items()]
        self.proto = model([node], inputs, [io("y", None)], opset=12)

    def __repr__(self) -> str:
        return f"{self.equation} over {[a.shape for a in self.feeds.values()]}"


def _case(equation: str, *shapes: tuple[int, ...], seed: int = 0) -> EinsumCase:
    rng = np.random.default_rng(seed)
    feeds = {f"x{i}": rng.normal(size=s).astype(np.float32) for i, s in enumerate(shapes)}
    return EinsumCase(equation, feeds)


EXPORTED = [
    ("bij,bjk->bik", (2, 3, 4), (2, 4, 5)),
    ("Bij,Bjk->Bik", (2, 3, 4), (2, 4, 5)),  # upper-case letters (an explicit output)
    ("bhqd,bhkd->bhqk", (1, 2, 3, 4), (1, 2, 5, 4)),  # attention scores
    ("bhqk,bhkd->bhqd", (1, 2, 3, 5), (1, 2, 5, 4)),
    ("bnd,dm->bnm", (2, 7, 8), (8, 3)),  # a projection
    ("i,i->", (5,), (5,)),
    ("i,j->ij", (3,), (4,)),  # an outer product (rotary embeddings' frequencies)
    ("bi,bj->bij", (2, 3), (2, 4)),
    ("ij->ji", (3, 4)),
    ("ij->", (3, 4)),
    ("ijk->kij", (2, 3, 4)),
    ("ba", (2, 3)),  # implicit output: letters once each, alphabetical: "ab"
    ("ij,jk", (2, 3), (3, 4)),
    ("abc,cd->", (2, 3, 4), (4, 5)),
    ("ij,jk,kl->il", (2, 3), (3, 4), (4, 5)),
    ("...ij,...jk->...ik", (2, 1, 3, 4), (2, 5, 4, 2)),  # the ellipsis broadcasts 1 to 5
    ("...i,...i->...", (2, 3, 4), (1, 3, 4)),
    ("b...d,b...d->b...", (2, 3, 4), (2, 3, 4)),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("equation", "shapes"), [(e[0], e[1:]) for e in EXPORTED], ids=[e[0] for e in EXPORTED]
)
def test_ops_einsum_of_exported_equations_matches_onnxruntime(
    backend: str, equation: str, shapes
) -> None:
    case = _case(equation, *shapes)
    assert_parity(case.proto, case.feeds, backend)


@st.composite
def einsum_models(draw) -> EinsumCase:
    """One to three operands, each a few distinct letters of five (sizes 1-4) in any order;
    the output explicit (any subset of the letters used, in any order) or implicit."""
    letters = draw(st.permutations("abcde"))
    sizes = {c: draw(st.integers(1, 4)) for c in letters}
    count = draw(st.integers(1, 3))
    terms = []
    for _ in range(count):
        chosen = draw(st.lists(st.sampled_from(letters), min_size=0, max_size=4, unique=True))
        terms.append("".join(chosen))
    used = sorted(set("".join(terms)))
    if draw(st.booleans()):
        output = "".join(
            draw(
                st.permutations(draw(st.lists(st.sampled_from(used), unique=True)) if used else [])
            )
        )
        equation = ",".join(terms) + "->" + output
    else:
        equation = ",".join(terms)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    feeds = {
        f"x{i}": rng.normal(size=[sizes[c] for c in t]).astype(np.float32)
        for i, t in enumerate(terms)
    }
    return EinsumCase(equation, feeds)


@SETTINGS
@given(case=einsum_models(), backend=st.sampled_from(BACKENDS))
def test_ops_einsum_matches_onnxruntime_over_random_equations(
    case: EinsumCase, backend: str
) -> None:
    assert_parity(case.proto, case.feeds, backend)


@pytest.mark.parametrize(
    ("equation", "shapes", "message"),
    [
        ("ii->i", [(3, 3)], "repeated"),
        ("ij,jk->iq", [(2, 3), (3, 4)], "no operand has"),
        ("ij,jk->ik", [(2, 3), (4, 4)], "sizes 3 and 4"),
        ("ijk->i", [(2, 3)], "names 3 axes of an operand of rank 2"),
        ("ij->i", [(2, 3), (3,)], "names 1 operands; the node has 2"),
        ("...i->i", [(1,) * 12], "an ellipsis of 11 axes"),
    ],
)
def test_ops_einsum_refusals_name_node_and_what(equation: str, shapes, message: str) -> None:
    rng = np.random.default_rng(0)
    feeds = {f"x{i}": rng.normal(size=s).astype(np.float32) for i, s in enumerate(shapes)}
    node = helper.make_node("Einsum", list(feeds), ["y"], name="e", equation=equation)
    proto = model(
        [node], [io(n, list(a.shape)) for n, a in feeds.items()], [io("y", None)], opset=12
    )
    with pytest.raises(ModelError, match=rf"node 'e' \(Einsum\).*{message}"):
        import_onnx(proto)

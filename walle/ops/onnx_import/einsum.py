"""ONNX Einsum as walle's transposes, sums and batched matmuls.

An equation names each operand's axes with letters (``bhqd,bhkd->bhqk``: attention scores;
``...ij,...jk->...ik``; ``i,i->``). Without ``->`` the output is every letter used once, in
alphabetical order (after the ellipsis' axes), as numpy and ONNX define it. The operands are
combined left to right: first each operand's letters that nothing else needs are summed
out, then each pair becomes one batched matmul, its shared letters that something later
needs as the batch, the shared ones nothing needs as the contraction, the rest as rows and
columns; the last value is transposed into the output's order. Ellipsis axes broadcast as
numpy's (a 1 against any size). A letter repeated within one operand (a diagonal) is
refused by name.
"""

from __future__ import annotations

import math
import string
from typing import TYPE_CHECKING

from walle.errors import ModelError
from walle.ops.onnx_import.node import HandlerTable, OnnxNode

if TYPE_CHECKING:
    from walle.ops.onnx_import.core import Importer

# the ellipsis' axes take letters no equation may use (ONNX allows only [a-zA-Z])
_ELLIPSIS_LETTERS = "0123456789"


class _Term:
    """A value and the letter of each of its axes."""

    def __init__(self, value: str, letters: str) -> None:
        self.value, self.letters = value, letters


def _parse(node: OnnxNode, equation: str, ranks: list[int]) -> tuple[list[str], str]:
    """Each operand's letters (the ellipsis spelled out, right-aligned across operands) and
    the output's."""
    equation = equation.replace(" ", "")
    lhs, arrow, rhs = equation.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise ModelError(
            f"{node.where}: equation {equation!r} names {len(terms)} operands; the node has "
            f"{len(ranks)}"
        )
    allowed = set(string.ascii_letters)
    ellipsis_rank = 0
    for term, rank in zip(terms, ranks, strict=True):
        named = term.replace("...", "")
        if set(named) - allowed or term.count("...") > 1:
            raise ModelError(f"{node.where}: equation {equation!r}: bad term {term!r}")
        if len(set(named)) != len(named):
            raise ModelError(
                f"{node.where}: equation {equation!r}: a letter repeated in {term!r} (a diagonal) "
                "is not supported"
            )
        if "..." in term:
            ellipsis_rank = max(ellipsis_rank, rank - len(named))
        elif len(named) != rank:
            raise ModelError(
                f"{node.where}: equation {equation!r}: {term!r} names {len(named)} axes of an "
                f"operand of rank {rank}"
            )
    if ellipsis_rank > len(_ELLIPSIS_LETTERS):
        raise ModelError(
            f"{node.where}: equation {equation!r}: an ellipsis of {ellipsis_rank} axes (at most "
            f"{len(_ELLIPSIS_LETTERS)})"
        )
    spelled = []
    for term, rank in zip(terms, ranks, strict=True):
        own = rank - len(term.replace("...", ""))
        if own < 0:
            raise ModelError(
                f"{node.where}: equation {equation!r}: {term!r} names more axes than its "
                f"operand's {rank}"
            )
        dots = _ELLIPSIS_LETTERS[ellipsis_rank - own : ellipsis_rank]
        spelled.append(term.replace("...", dots))
    dots = _ELLIPSIS_LETTERS[:ellipsis_rank]
    if arrow:
        named = rhs.replace("...", "")
        if set(named) - allowed or rhs.count("...") > 1 or len(set(named)) != len(named):
            raise ModelError(f"{node.where}: equation {equation!r}: bad output {rhs!r}")
        output = rhs.replace("...", dots)
    else:
        used = "".join(spelled)
        output = dots + "".join(sorted(c for c in set(used) - set(dots) if used.count(c) == 1))
    known = set("".join(spelled))
    if set(output) - known or len(set(output)) != len(output):
        raise ModelError(
            f"{node.where}: equation {equation!r}: the output names letters no operand has"
        )
    return spelled, output


def _sizes(im: Importer, node: OnnxNode, terms: list[_Term]) -> dict[str, int]:
    """Each letter's size (an ellipsis axis of 1 broadcasts; named letters must agree)."""
    sizes: dict[str, int] = {}
    for term in terms:
        for letter, size in zip(term.letters, im.b.shape(term.value), strict=True):
            seen = sizes.setdefault(letter, size)
            if seen == size:
                continue
            if letter in _ELLIPSIS_LETTERS and 1 in (seen, size):
                sizes[letter] = max(seen, size)
                continue
            raise ModelError(
                f"{node.where}: axis {letter!r} has sizes {seen} and {size} in different operands"
            )
    return sizes


def _sum_out(im: Importer, term: _Term, needed: set[str]) -> _Term:
    """``term`` with its letters outside ``needed`` summed."""
    axes = [i for i, c in enumerate(term.letters) if c not in needed]
    if not axes:
        return term
    value = im.b.reduce("sum", term.value, axes, keepdims=False)
    return _Term(value, "".join(c for c in term.letters if c in needed))


def _arranged(im: Importer, term: _Term, order: str) -> str:
    """``term``'s value with its axes in ``order`` (a permutation of its letters)."""
    perm = [term.letters.index(c) for c in order]
    return term.value if perm == sorted(perm) else im.b.transpose(term.value, perm)


def _dims(im: Importer, term: _Term, letters: list[str]) -> list[int]:
    """The sizes of ``letters``' axes in ``term``'s value."""
    shape = im.b.shape(term.value)
    return [shape[term.letters.index(c)] for c in letters]


def _product(im: Importer, a: _Term, b: _Term, needed: set[str], sizes: dict[str, int]) -> _Term:
    """One batched matmul: [batch..., rows, shared] @ [batch..., shared, columns]."""
    batch = [c for c in a.letters if c in b.letters and c in needed]
    shared = [c for c in a.letters if c in b.letters and c not in needed]
    rows = [c for c in a.letters if c not in b.letters]
    cols = [c for c in b.letters if c not in a.letters]
    a_batch, b_batch = _dims(im, a, batch), _dims(im, b, batch)
    k = math.prod(_dims(im, a, shared))
    left = im.b.reshape(
        _arranged(im, a, "".join(batch + rows + shared)),
        (*a_batch, math.prod(_dims(im, a, rows)), k),
    )
    right = im.b.reshape(
        _arranged(im, b, "".join(batch + shared + cols)),
        (*b_batch, k, math.prod(_dims(im, b, cols))),
    )
    product = im.b.matmul(left, right)
    shape = [sizes[c] for c in batch + rows + cols]
    return _Term(im.b.reshape(product, shape), "".join(batch + rows + cols))


def _einsum(im: Importer, node: OnnxNode, ins: list[str]) -> str:
    equation = node.get("equation")
    if not isinstance(equation, str):
        raise ModelError(f"{node.where}: Einsum needs its 'equation' attribute")
    spelled, output = _parse(node, equation, [len(im.b.shape(x)) for x in ins])
    terms = [_Term(x, letters) for x, letters in zip(ins, spelled, strict=True)]
    sizes = _sizes(im, node, terms)
    later = [set(output).union(*(t.letters for t in terms[i + 1 :])) for i in range(len(terms))]
    result = _sum_out(im, terms[0], later[0] | set(terms[1].letters if len(terms) > 1 else ""))
    for i, term in enumerate(terms[1:], start=1):
        term = _sum_out(im, term, later[i] | set(result.letters))
        result = _product(im, result, term, later[i], sizes)
    result = _sum_out(im, result, set(output))
    return _arranged(im, result, output)


HANDLERS: HandlerTable = {"Einsum": ({"equation"}, _einsum)}

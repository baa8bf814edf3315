"""One way for a test to judge walle against outputs it did not compute (the onnx wheel's
stored or generated test data): the match it must reach, and the refusal it may give instead."""

from __future__ import annotations

import re
import warnings
from functools import cache

import numpy as np
from onnx import ModelProto


def assert_matches(got: np.ndarray, want: np.ndarray, where: str) -> None:
    """``got`` has ``want``'s shape, its NaN where ``want`` has NaN, its infinities, equal
    integers, and floats within 1e-4 of ``want``'s scale (at least 1)."""
    got = np.asarray(got)
    want = np.asarray(want)
    assert got.shape == want.shape, f"{where}: shape {got.shape}, expected {want.shape}"
    if want.dtype.kind != "f":
        np.testing.assert_array_equal(got, want, err_msg=where)
        return
    assert np.array_equal(np.isnan(got), np.isnan(want)), f"{where}: NaN in other places"
    infinite = np.isinf(want)
    assert np.array_equal(got[infinite], want[infinite]), f"{where}: infinities differ"
    finite = np.isfinite(want)
    scale = max(1.0, float(np.abs(want[finite]).max())) if finite.any() else 1.0
    diff = float(np.abs(got[finite].astype(np.float64) - want[finite]).max()) if finite.any() else 0
    assert diff <= 1e-4 * scale, f"{where}: max abs diff {diff:.3g} > 1e-4 * {scale:.3g}"


def names_what_it_refuses(message: str, proto: ModelProto) -> bool:
    """Whether a refusal names one of the model's nodes and its op, one of its inputs or
    initializers, or one of its outputs."""
    ops = {node.op_type for node in proto.graph.node}
    values = {
        *(value.name for value in (*proto.graph.input, *proto.graph.output)),
        *(init.name for init in proto.graph.initializer),
    }
    found = re.search(r"node '([^']*)' \(([A-Za-z0-9]+)\)", message)
    named = re.match(r"(?:input|initializer|output) '([^']*)'", message)
    return bool((found and found.group(2) in ops) or (named and named.group(1) in values))


@cache
def node_cases() -> tuple[object, ...]:
    """The onnx wheel's generated node test cases (~1,900; about 10 s to make)."""
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # the generators divide by zero on purpose
        return tuple(collect_testcases(None))

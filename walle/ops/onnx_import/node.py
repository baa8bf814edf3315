"""One ONNX node seen by the importer: checked attribute access, and the handler signature.

Every op family module (:mod:`.elementwise`, :mod:`.nn`, :mod:`.layout`, :mod:`.reduce`)
declares its handlers as ``{op_type: (allowed attributes, handler)}``; an attribute outside
the allowed set is refused naming the node, so an option walle does not implement can never
be ignored silently.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from walle.errors import ModelError

if TYPE_CHECKING:
    from onnx import NodeProto

    from walle.ops.onnx_import.core import Importer


class OnnxNode:
    """One ONNX node with checked attribute access; ``where`` names it in every error."""

    def __init__(self, proto: NodeProto, allowed: set[str]) -> None:
        from onnx import helper

        self.proto = proto
        self.where = f"node {proto.name or proto.output[0]!r} ({proto.op_type})"
        self.attrs = {a.name: helper.get_attribute_value(a) for a in proto.attribute}
        extra = set(self.attrs) - allowed
        if extra:
            raise ModelError(f"{self.where}: unsupported attribute(s) {sorted(extra)}")

    def get(self, key: str, default: Any = None) -> Any:
        """The attribute ``key`` (bytes decoded to str), or ``default`` (as onnx gives it:
        int, float, str, a list of them or a TensorProto)."""
        value = self.attrs.get(key, default)
        if not isinstance(value, bytes):
            return value
        try:
            return value.decode()
        except UnicodeDecodeError as exc:
            raise ModelError(f"{self.where}: attribute {key!r} is not UTF-8 text ({exc})") from exc

    def require(self, key: str, expected: object, default: object) -> None:
        """Refuse the node unless attribute ``key`` (or its default) equals ``expected``."""
        value = self.get(key, default)
        if value != expected:
            raise ModelError(
                f"{self.where}: attribute {key}={value!r} is not supported (only {expected!r})"
            )

    def choice(self, key: str, default: str, allowed: tuple[str, ...]) -> str:
        """A string attribute that must be one of ``allowed``."""
        value = str(self.get(key, default))
        if value not in allowed:
            raise ModelError(
                f"{self.where}: attribute {key}={value!r} is not supported "
                f"(expected one of {', '.join(allowed)})"
            )
        return value

    def input_name(self, i: int) -> str:
        """The ONNX name of optional input ``i`` ("" when absent)."""
        return self.proto.input[i] if i < len(self.proto.input) else ""

    def ints(self, im: Importer, i: int) -> list[int] | None:
        """Optional constant integer input ``i`` as a flat list (None when absent): exactly
        as the model gives it where it is an integer initializer or Constant, else from the
        float32 constant walle computed (:func:`_int_values`)."""
        name = self.input_name(i)
        if not name:
            return None
        array = im.const(name, self.where)  # refused unless a constant
        exact = im.integers.get(name)
        if exact is not None:
            return [int(v) for v in exact.reshape(-1)]
        return _int_values(array, f"{self.where}: input {name!r}")


# int64's bounds, which exporters write for "to the end" (float32 rounds them to +-2**63)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _int_values(array: npt.NDArray[np.floating[Any]], what: str) -> list[int]:
    """A constant of integers (held as float32, like every walle constant) as a flat list.

    Exporters write "to the end" as INT64_MAX or INT64_MIN (PyTorch's ``x[:, 1:]`` is a Slice
    whose ``ends`` is 2**63 - 1), which float32 rounds to +-2**63: those saturate to the
    int64 bounds instead of wrapping (a cast wrapped 2**63 to INT64_MIN, and the Slice kept
    nothing). NaN or infinity is refused, naming ``what``.
    """
    flat = np.asarray(array, np.float64).reshape(-1)
    if not np.isfinite(flat).all():
        raise ModelError(f"{what} holds {flat[~np.isfinite(flat)][0]}, not an integer")
    return [min(max(int(v), INT64_MIN), INT64_MAX) for v in flat.tolist()]


Handler = Callable[["Importer", OnnxNode, list[str]], "str | list[str]"]
HandlerTable = dict[str, tuple[set[str], Handler]]

"""Import small ONNX models into walle graphs (float32, static shapes per batch size).

Each supported ONNX op lowers through :class:`~walle.ops.builder.GraphBuilder` into atomic
ops; the handlers live by op family (:mod:`.elementwise`, :mod:`.nn`, :mod:`.layout`,
:mod:`.reduce`). An unsupported op, attribute or attribute value, or a shape that does not
fit, raises :class:`ModelError` naming the node and op when the graph is built; a file that is
not a valid ONNX model raises ModelError naming the file.
"""

from walle.ops.onnx_import.core import SUPPORTED_OPS, import_onnx, load_onnx

__all__ = ["SUPPORTED_OPS", "import_onnx", "load_onnx"]

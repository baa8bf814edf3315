"""``Model``: load an ONNX file or a walle graph, call it on numpy batches, from any thread.

>>> import numpy as np
>>> from walle.ops import GraphBuilder, Model
>>> b = GraphBuilder()
>>> x = b.input("x", (2, 3))
>>> m = Model(b.build([b.relu(x)]), backend="numpy", use_cache=False)
>>> m(np.array([[-1.0, 2.0, 0.5], [3.0, -4.0, 0.0]], np.float32)).tolist()
[[0.0, 2.0, 0.5], [3.0, 0.0, 0.0]]
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
import numpy.typing as npt

from walle.errors import ValidationError
from walle.ops.ir import FloatArray, Graph
from walle.ops.search import Search, compile_graph, explain
from walle.ops.subbatch import Plan, compile_batch

if TYPE_CHECKING:
    from onnx import ModelProto

Batch = int | tuple[int, ...]
_NO_PLANS: dict[Batch, Plan] = {}
GraphFactory = Callable[[Batch], Graph]


class _CompileOptions(TypedDict):
    """The keyword arguments a Model passes to :func:`~walle.ops.search.compile_graph`."""

    pin: str | None
    backends: list[str] | None
    use_cache: bool
    trials: bool


class Model:
    """A model callable on batches: ``model(batch) -> scores``.

    ``source`` is a :class:`Graph` (fixed shapes), a path to an ONNX file (the inputs' leading
    dims may be symbolic: each new batch size is imported and planned once; the file is
    imported once when the Model is built, so an unsupported op or a bad shape is refused
    there), or a function ``batch_size -> Graph``. ``backend`` pins a backend; otherwise the
    search places each step, pricing copies between host and device over the whole plan.
    Plans hold buffers, so each thread gets its own plan: calls are thread-safe, and the
    compiled kernels release the GIL so threads run in parallel.
    """

    def __init__(
        self,
        source: Graph | str | Path | GraphFactory,
        *,
        backend: str | None = None,
        backends: list[str] | None = None,
        use_cache: bool = True,
        trials: bool = True,
    ) -> None:
        if isinstance(source, str | Path):
            from walle.ops.onnx_import import import_onnx, load_onnx

            proto = load_onnx(source)
            self._factory: GraphFactory = lambda batch: import_onnx(proto, batch=batch)
            self._declared = _declared_batch(proto)
            self._casts = _declared_output_types(proto)
        else:
            self._factory = _factory(source)
            self._declared = 1
            self._casts = ()
        self._fixed = source if isinstance(source, Graph) else None
        self._options: _CompileOptions = {
            "pin": backend,
            "backends": backends,
            "use_cache": use_cache,
            "trials": trials,
        }
        self._graphs: dict[Batch, Graph] = {}
        self._inputs: list[tuple[str, tuple[int, ...]]] | None = None  # at the declared batch
        self._local = threading.local()
        self._lock = threading.Lock()
        self._per_input = isinstance(source, str | Path)
        if self._per_input:
            self.graph(self._declared)

    def graph(self, batch: Batch) -> Graph:
        """The graph specialised to ``batch`` rows (imported once per batch size); for an
        ONNX file, ``batch`` may be a tuple: the leading dim of each input."""
        with self._lock:
            if batch not in self._graphs:
                self._graphs[batch] = self._factory(batch)
            return self._graphs[batch]

    def plan(self, batch: Batch) -> Plan:
        """This thread's compiled plan for ``batch`` rows: for an ONNX file or a graph
        function, the batch may run as runs of fewer rows where that timed faster and no
        step mixes rows (:mod:`walle.ops.subbatch`)."""
        plans: dict[Batch, Plan] = self._local.__dict__.setdefault("plans", {})
        plan = plans.get(batch)
        if plan is None:
            if self._fixed is None and isinstance(batch, int):
                search = Search(
                    self._options["backends"],
                    pin=self._options["pin"],
                    trials=self._options["trials"],
                    use_cache=self._options["use_cache"],
                )
                plan = compile_batch(self.graph, batch, search)
            else:
                plan = compile_graph(self.graph(batch), **self._options)
            plans[batch] = plan
        return plan

    def __call__(self, batch: npt.ArrayLike) -> npt.NDArray[Any]:
        """Run the model's single input on ``batch``; returns its first output."""
        array = np.asarray(batch)
        if array.ndim and self._fixed is None and not self._casts:
            # the batch-1 scoring path: a plan made for these rows checks the shape itself
            plan = self._made_plan(array.shape[0])
            if plan is not None:
                return plan(array)[0]
        return self.run(array)[0]

    def run(self, *inputs: npt.ArrayLike) -> list[npt.NDArray[Any]]:
        """Run on several inputs; returns every output.

        For an ONNX file each input keeps its own leading dim (a plan per combination); a
        scalar input (rank 0, as a Clip's bounds or a Pow's exponent fed at run time) has
        none, and a graph of constants alone takes no inputs. Otherwise the batch size is the
        first input's. The plan checks every input's shape against the graph's. Outputs are
        float32, except those an ONNX file declares as integers or booleans (ArgMax's
        indices, a comparison): those come back in the declared type, as onnxruntime
        returns them.
        """
        outputs: list[npt.NDArray[Any]] = list(self._run(inputs))
        for i, dtype in self._casts:
            outputs[i] = outputs[i].astype(dtype)
        return outputs

    def _run(self, inputs: tuple[npt.ArrayLike, ...]) -> list[FloatArray]:
        arrays = [np.asarray(x) for x in inputs]
        if self._fixed is not None:
            fixed = self._fixed
            return self.plan(fixed.shape(fixed.inputs[0])[0] if fixed.inputs else 1)(*arrays)
        if arrays:
            if self._per_input and len(arrays) > 1:
                rows: Batch = tuple(_rows(a) for a in arrays)
            else:
                rows = _rows(arrays[0])
            # a plan made for these rows checks the shapes itself (a scalar where the first
            # input's rows are due gets the rank check's message, below)
            plan = self._made_plan(rows) if arrays[0].ndim else None
            if plan is not None:
                return plan(*arrays)
        self._check_ranks(arrays)
        if not arrays:
            return self.plan(self._declared)()
        if arrays[0].ndim and arrays[0].shape[0] == 0:
            return self._empty(len(arrays))
        return self.plan(rows)(*arrays)

    def _made_plan(self, rows: Batch) -> Plan | None:
        """This thread's plan for ``rows`` if :meth:`plan` has made it, else None."""
        plans: dict[Batch, Plan] = self._local.__dict__.get("plans", _NO_PLANS)
        return plans.get(rows)

    def _check_ranks(self, arrays: list[npt.NDArray[np.generic]]) -> None:
        """Each input has the rank and trailing dims of the graph's, before a plan is made
        for its leading dim: a batch of another rank (a flat [32768] where [N, 1, 32, 32, 32]
        is declared) would otherwise plan that many rows first, gigabytes of buffers, and
        fail only when the plan checks the shapes."""
        declared = self._inputs
        if declared is None:
            graph = self.graph(self._declared)
            declared = self._inputs = [(name, graph.shape(name)) for name in graph.inputs]
        if len(arrays) != len(declared):
            names = [name for name, _ in declared]
            raise ValidationError(f"model takes {len(names)} inputs {names}, got {len(arrays)}")
        for (name, want), array in zip(declared, arrays, strict=True):
            if array.ndim != len(want) or array.shape[1:] != want[1:]:
                shown = f"({', '.join(['N', *map(str, want[1:])])})" if want else "()"
                raise ValidationError(
                    f"input {name!r} must have shape {shown}, got {array.shape}", field=name
                )

    def _empty(self, n_inputs: int) -> list[FloatArray]:
        """A batch of 0 rows: every output empty along its leading dim (as onnxruntime)."""
        graph = self.graph(1)
        if n_inputs > len(graph.inputs):
            raise ValidationError(
                f"model takes {len(graph.inputs)} inputs {graph.inputs}, got {n_inputs}"
            )
        return [np.zeros((0, *graph.shape(name)[1:]), np.float32) for name in graph.outputs]

    def explain(self, batch: int = 1) -> list[dict[str, object]]:
        """Per step: chosen backend, algorithm, estimate and measured time (see search)."""
        return explain(self.plan(batch))


def _factory(source: Graph | GraphFactory) -> GraphFactory:
    if isinstance(source, Graph):
        return lambda _batch: source
    if callable(source):
        return source
    raise ValidationError(f"cannot make a model from {type(source).__name__}", field="source")


def _rows(array: npt.NDArray[np.generic]) -> int:
    """An input's batch size: its leading dim (a scalar has no rows; its graph ignores the
    1 given for it)."""
    return array.shape[0] if array.ndim else 1


def _declared_output_types(proto: ModelProto) -> tuple[tuple[int, np.dtype[np.generic]], ...]:
    """(position, numpy type) of each graph output declared as an integer or boolean
    tensor: walle computes them in float32, which holds them exactly (ArgMax's indices, a
    Shape's dims, a comparison's 1.0 and 0.0; integer ids never reach an output, the
    importer refuses that)."""
    from onnx import helper

    casts = []
    for i, output in enumerate(proto.graph.output):
        code = output.type.tensor_type.elem_type
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(code)) if code else None
        if dtype is not None and dtype.kind in "iub":
            casts.append((i, dtype))
    return tuple(casts)


def _declared_batch(proto: ModelProto) -> int:
    """The first input's declared leading dim, or 1 when it is symbolic."""
    inits = {i.name for i in proto.graph.initializer}
    for value in proto.graph.input:
        if value.name not in inits:
            dims = value.type.tensor_type.shape.dim
            if dims and dims[0].HasField("dim_value") and dims[0].dim_value > 0:
                return int(dims[0].dim_value)
            return 1
    return 1

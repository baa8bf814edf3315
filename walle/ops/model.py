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

import numpy as np

from walle.errors import ValidationError
from walle.ops.ir import Graph
from walle.ops.plan import CompiledPlan
from walle.ops.search import compile_graph, explain

GraphFactory = Callable[[int], Graph]


class Model:
    """A model callable on batches: ``model(batch) -> scores``.

    ``source`` is a :class:`Graph` (fixed shapes), a path to an ONNX file (its first input's
    leading dim may be symbolic: each new batch size is imported and planned once), or a
    function ``batch_size -> Graph``. ``backend`` pins a backend; otherwise the search picks
    per step. Plans hold buffers, so each thread gets its own plan: calls are thread-safe,
    and the compiled kernels release the GIL so threads run in parallel.
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
        self._factory = _factory(source)
        self._fixed = source if isinstance(source, Graph) else None
        self._options = {
            "pin": backend,
            "backends": backends,
            "use_cache": use_cache,
            "trials": trials,
        }
        self._graphs: dict[int, Graph] = {}
        self._local = threading.local()
        self._lock = threading.Lock()

    def graph(self, batch: int) -> Graph:
        """The graph specialised to ``batch`` rows (imported once per batch size)."""
        with self._lock:
            if batch not in self._graphs:
                self._graphs[batch] = self._factory(batch)
            return self._graphs[batch]

    def plan(self, batch: int) -> CompiledPlan:
        """This thread's compiled plan for ``batch`` rows."""
        plans = self._local.__dict__.setdefault("plans", {})
        plan = plans.get(batch)
        if plan is None:
            plan = plans[batch] = compile_graph(self.graph(batch), **self._options)
        return plan

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Run the model's single input on ``batch``; returns its first output."""
        batch = np.asarray(batch)
        if batch.ndim == 0:
            raise ValidationError("model input must have a batch dimension", field="batch")
        rows = self._fixed.shape(self._fixed.inputs[0])[0] if self._fixed else batch.shape[0]
        return self.plan(rows)(batch)[0]

    def run(self, *inputs: np.ndarray) -> list[np.ndarray]:
        """Run on several inputs (batch size from the first); returns every output."""
        first = np.asarray(inputs[0])
        rows = self._fixed.shape(self._fixed.inputs[0])[0] if self._fixed else first.shape[0]
        return self.plan(rows)(*inputs)

    def explain(self, batch: int = 1) -> list[dict[str, object]]:
        """Per step: chosen backend, algorithm, estimate and measured time (see search)."""
        return explain(self.plan(batch))


def _factory(source: Graph | str | Path | GraphFactory) -> GraphFactory:
    if isinstance(source, Graph):
        return lambda _batch: source
    if isinstance(source, str | Path):
        from walle.ops.onnx_import import load_onnx

        proto = load_onnx(source)
        from walle.ops.onnx_import import import_onnx

        return lambda batch: import_onnx(proto, batch=batch)
    if callable(source):
        return source
    raise ValidationError(f"cannot make a model from {type(source).__name__}", field="source")

"""The OpenCL backend beyond parity: residency, mixed plans, threads, a missing platform.

Tolerance where numbers are compared: |got - reference| <= 1e-4 + 1e-4 * |reference|.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from tests._backends import backend_or_skip
from walle.errors import StateError
from walle.ops import GraphBuilder, Model, compile_graph, get_backend, run_reference
from walle.ops.fusion import find_steps
from walle.ops.plan import Choice, CompiledPlan, is_alias

RTOL = ATOL = 1e-4


def _mlp_graph(batch: int = 3):
    rng = np.random.default_rng(1)
    b = GraphBuilder()
    x = b.input("x", (batch, 16))
    h = b.relu(b.linear(x, b.const(rng.normal(size=(16, 32))), b.const(rng.normal(size=32))))
    h = b.layer_norm(h, b.const(rng.normal(size=32)), b.const(rng.normal(size=32)))
    h = b.reshape(b.transpose(b.reshape(h, (batch, 4, 8)), (0, 2, 1)), (batch, 32))
    y = b.softmax(b.linear(h, b.const(rng.normal(size=(32, 8)))))
    return b.build([y, h])


def _x(batch: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(batch, 16)).astype(np.float32)


def test_ops_opencl_plan_is_one_call_and_reads_back_only_outputs() -> None:
    backend_or_skip("opencl")
    graph = _mlp_graph()
    plan = compile_graph(graph, pin="opencl", use_cache=False)
    assert {c.backend for c in plan.choices.values()} == {"opencl"}
    assert plan.call_count == 1
    sequence = plan._calls[0]
    assert len(sequence._downloads) == len(graph.outputs)
    assert len(sequence._uploads) == 1  # the input; weights were uploaded once
    x = _x()
    for got, want in zip(plan(x), run_reference(graph, {"x": x}), strict=True):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("other", ["numpy", "cython"])
def test_ops_opencl_mixed_with_another_backend_moves_values_across(other: str) -> None:
    backend_or_skip("opencl")
    get_backend(other)
    graph = _mlp_graph()
    steps = find_steps(graph)
    names = [s.name for s in steps if not is_alias(s, graph)]
    # Alternate backends step by step: every boundary needs an upload or a read-back.
    choices = {}
    for i, name in enumerate(names):
        backend = "opencl" if i % 2 == 0 else other
        step = next(s for s in steps if s.name == name)
        algo = get_backend(backend).algorithms(step, graph)[0]
        choices[name] = Choice(backend, algo, 0.0)
    backends = {n: get_backend(n) for n in ("opencl", other)}
    plan = CompiledPlan(graph, steps, choices, backends)
    for seed in range(3):
        x = _x(seed=seed)
        for got, want in zip(plan(x), run_reference(graph, {"x": x}), strict=True):
            np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_ops_opencl_launch_outside_a_sequence_is_refused() -> None:
    backend = backend_or_skip("opencl")
    graph = _mlp_graph()
    step = find_steps(graph)[0]
    from walle.ops.plan import allocate

    launches = backend.compile(
        step, backend.algorithms(step, graph)[0], graph, allocate(graph, find_steps(graph))
    )
    with pytest.raises(StateError, match="finish"):
        launches[0]()


def test_ops_opencl_model_from_several_threads(tmp_path, monkeypatch) -> None:
    backend_or_skip("opencl")
    monkeypatch.setenv("WALLE_CACHE_DIR", str(tmp_path))
    model = Model(_mlp_graph(4), backend="opencl")
    batches = [_x(4, seed) for seed in range(6)]
    want = [model(x) for x in batches]
    results: dict[int, list[np.ndarray]] = {}

    def work(t: int) -> None:
        results[t] = [model(x) for _ in range(5) for x in batches][-len(batches) :]

    threads = [threading.Thread(target=work, args=(t,)) for t in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 3
    for got in results.values():
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)


def test_ops_opencl_search_leaves_small_steps_to_cheaper_backends(tmp_path, monkeypatch) -> None:
    """PoCL's per-run sync (~50 us) must keep tiny steps off OpenCL in an unpinned search."""
    backend = backend_or_skip("opencl")
    if not backend.cl_device.type & 2:  # cl.device_type.CPU
        pytest.skip("the launch-cost expectation is for CPU OpenCL platforms")
    monkeypatch.setenv("WALLE_CACHE_DIR", str(tmp_path))
    plan = compile_graph(_mlp_graph())
    assert "opencl" not in {c.backend for c in plan.choices.values()}


_NO_PLATFORM = """
import sys
from walle.errors import BackendError
from walle.ops.backends.registry import available_backends, get_backend
try:
    get_backend("opencl")
except BackendError as exc:
    print("ERROR:", exc)
print("AVAILABLE:", ",".join(b.name for b in available_backends()))
"""


def test_ops_opencl_missing_platform_is_a_clear_error_or_a_logged_skip(tmp_path) -> None:
    env = {
        **os.environ,
        "OCL_ICD_VENDORS": str(tmp_path / "no-vendors"),
        "OCL_ICD_FILENAMES": "",
        "WALLE_REQUIRE_BACKENDS": "",
    }
    out = subprocess.run(
        [sys.executable, "-c", _NO_PLATFORM], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "ERROR: ops backend 'opencl' is not usable: no OpenCL platform found" in out.stdout
    assert "pip install walle[opencl]" in out.stdout
    assert "AVAILABLE:" in out.stdout and "opencl" not in out.stdout.split("AVAILABLE:")[1]
    env["WALLE_REQUIRE_BACKENDS"] = "opencl"
    out = subprocess.run(
        [sys.executable, "-c", _NO_PLATFORM], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode != 0 and "no OpenCL platform found" in out.stderr

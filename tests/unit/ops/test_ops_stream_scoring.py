"""A walle.ops model inside a stream task: examples/item_scoring.py on generated events.

The scores must equal numpy's float64 computation of the same MLP on the same features
(tolerance 1e-5 relative + 1e-6 absolute: float32 kernels against a float64 oracle), and the
features must be the item page-view record of examples/item_page_view.py.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from walle.streams.app import load_app
from walle.streams.generator import generate_events
from walle.testing import run_app

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"walle_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _numpy_mlp(weights: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    w = {k: v.astype(np.float64) for k, v in weights.items()}
    h = np.maximum(x.astype(np.float64) @ w["w0"] + w["b0"], 0.0)
    return 1.0 / (1.0 + np.exp(-(h @ w["w1"] + w["b1"])))


def _usable(name: str) -> bool:
    from walle.errors import BackendError
    from walle.ops import get_backend

    try:
        get_backend(name)
    except BackendError:
        if name in os.environ.get("WALLE_REQUIRE_BACKENDS", "").split(","):
            raise  # a required backend that is missing fails instead of skipping
        return False
    return True


@pytest.mark.parametrize(
    "backend",
    [
        None,
        "numpy",
        "cython",
        pytest.param(
            "opencl", marks=pytest.mark.skipif(not _usable("opencl"), reason="no OpenCL platform")
        ),
    ],
)
def test_ops_item_scoring_scores_equal_numpy_mlp(tmp_path, monkeypatch, backend) -> None:
    monkeypatch.setenv("WALLE_CACHE_DIR", str(tmp_path))
    scoring = _module("item_scoring")
    if backend is not None:
        from walle.ops import Model

        scoring.scorer = Model(scoring.build_scorer(scoring.mlp_weights()), backend=backend)
    events = generate_events(devices=6, sessions=3, seed=11)
    close_at = max(e.ts for e in events) + 3_600_000
    result = run_app(scoring.app, events, close_at=close_at)
    outputs = [o for o in result.outputs if o.task == "item_score"]
    assert len(outputs) >= 10 and not result.dead
    features = np.array([o.value["features"] for o in outputs], np.float32)
    scores = np.array([o.value["score"] for o in outputs])
    want = _numpy_mlp(scoring.mlp_weights(), features)[:, 0]
    np.testing.assert_allclose(scores, want, rtol=1e-5, atol=1e-6)
    assert np.ptp(scores) > 1e-3  # the features actually move the score

    # The features are the page-view record of examples/item_page_view.py.
    views = run_app(load_app(EXAMPLES / "item_page_view.py"), events, close_at=close_at)
    by_key = {(o.device_id, o.window): o.value for o in views.outputs}
    assert len(by_key) == len(outputs)
    for o in outputs:
        view = dict(by_key[(o.device_id, o.window)])
        view["events"] = o.value["events"]
        np.testing.assert_array_equal(scoring.feature_vector(view), o.value["features"])

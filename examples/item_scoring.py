"""Item page-view features scored by a small MLP inside the stream task (walle.ops).

The window is the item page visit of examples/item_page_view.py; the task turns its features
into a float32 vector (:data:`FEATURES`), runs a 6-16-1 MLP (ReLU, then a sigmoid) on it
with :class:`walle.ops.Model`, and emits the page-view record with the vector and the score.
The MLP is a walle graph built here with fixed, seeded weights; the backend (numpy, Cython
or OpenCL) is chosen by the ops search on the first window and cached on disk
(``WALLE_CACHE_DIR``), so every later window is one call into compiled code.

Run: ``walle replay examples/item_scoring.py <events.jsonl>`` (or ``walle.testing.run_app``).
"""

from __future__ import annotations

import math

import numpy as np

from walle.ops import Graph, GraphBuilder, Model
from walle.streams import App, PageWindow, Window

FEATURES = ("log_dwell_s", "clicks", "added_to_cart", "max_scroll", "log_events", "complete")
HIDDEN = 16
SEED = 7


def mlp_weights(seed: int = SEED) -> dict[str, np.ndarray]:
    """Fixed float32 weights of the scorer: w0 [6, 16], b0 [16], w1 [16, 1], b1 [1]."""
    rng = np.random.default_rng(seed)
    n = len(FEATURES)
    return {
        "w0": rng.normal(0.0, 1.0 / math.sqrt(n), (n, HIDDEN)).astype(np.float32),
        "b0": rng.normal(0.0, 0.1, HIDDEN).astype(np.float32),
        "w1": rng.normal(0.0, 1.0 / math.sqrt(HIDDEN), (HIDDEN, 1)).astype(np.float32),
        "b1": rng.normal(0.0, 0.1, 1).astype(np.float32),
    }


def build_scorer(weights: dict[str, np.ndarray], batch: int = 1) -> Graph:
    """sigmoid(relu(x @ w0 + b0) @ w1 + b1) over ``batch`` feature rows."""
    b = GraphBuilder()
    x = b.input("features", (batch, len(FEATURES)))
    h = b.relu(b.linear(x, b.const(weights["w0"]), b.const(weights["b0"])))
    return b.build([b.sigmoid(b.linear(h, b.const(weights["w1"]), b.const(weights["b1"])))])


def page_view(window: Window) -> dict:
    """The item page-view record (as in examples/item_page_view.py)."""
    enter = window.events[0]
    own = [e for e in window.events if e.page == "item"]
    return {
        "item_id": enter.args.get("item_id"),
        "category": enter.args.get("category"),
        "dwell_ms": window.end - window.start,
        "clicks": sum(e.event == "click" for e in own),
        "added_to_cart": any(e.event == "add_to_cart" for e in own),
        "max_scroll": max((e.args.get("depth", 0) for e in own if e.event == "scroll"), default=0),
        "events": len(window.events),
        "complete": window.complete,
    }


def feature_vector(view: dict) -> np.ndarray:
    """The model input for one page view, float32 in :data:`FEATURES` order."""
    return np.array(
        [
            math.log1p(max(view["dwell_ms"], 0) / 1000.0),
            view["clicks"],
            float(view["added_to_cart"]),
            view["max_scroll"] / 100.0,
            math.log1p(view["events"]),
            float(view["complete"]),
        ],
        dtype=np.float32,
    )


app = App("item_scoring", out_of_orderness_ms=5_000)
scorer = Model(build_scorer(mlp_weights()))


@app.task(window=PageWindow("item", timeout_ms=30 * 60 * 1000))
def item_score(window: Window) -> dict:
    """One scored feature record per item page visit."""
    view = page_view(window)
    features = feature_vector(view)
    score = scorer(features[None, :])
    return {**view, "features": features.tolist(), "score": float(score[0, 0])}

"""walle: device-cloud collaborative ML pipelines.

The task DSL and engine (``walle.streams``) are imported eagerly: they are light. The
device and cloud runtimes, ops and deploy areas are loaded on first use of one of their names, so
``import walle`` stays quick and starts nothing (no threads, no logging set-up).
"""

from __future__ import annotations

import importlib
from typing import Any

from walle.errors import (
    BackendError,
    BrokerError,
    BundleError,
    ModelError,
    PlanError,
    StateError,
    StorageError,
    ValidationError,
    WalleError,
)
from walle.streams import (
    App,
    CountWindow,
    DeadLetter,
    Event,
    Hopping,
    LateEvent,
    LookBack,
    Output,
    PageWindow,
    Pattern,
    Plan,
    Session,
    Span,
    Tumbling,
    Window,
    clicked,
    collect,
    count,
    distinct,
    entered,
    exited,
    exposed,
    first,
    last,
    load_app,
    max_,
    mean,
    min_,
    not_followed_by,
    on,
    one_or_more,
    optional,
    scrolled,
    seq,
    sum_,
    top_k,
)

_LAZY = {
    "DeviceRuntime": "walle.streams.device",
    "EventLog": "walle.streams.device",
    "RuntimeSettings": "walle.streams.device",
    "LogSettings": "walle.streams.device",
    "Model": "walle.ops",
    "Graph": "walle.ops",
    "GraphBuilder": "walle.ops",
    "EmbeddedBroker": "walle.kafka",
    "CloudSettings": "walle.streams.cloud.settings",
    "CloudWorker": "walle.streams.cloud.worker",
    "Manifest": "walle.deploy",
    "ReleasePolicy": "walle.deploy",
    "TrustStore": "walle.deploy",
    "build_bundle": "walle.deploy",
    "sign_bundle": "walle.deploy",
    "open_bundle": "walle.deploy",
}

__all__ = [
    "App",
    "BackendError",
    "BrokerError",
    "BundleError",
    "CloudSettings",
    "CloudWorker",
    "CountWindow",
    "DeadLetter",
    "DeviceRuntime",
    "EmbeddedBroker",
    "Event",
    "EventLog",
    "Graph",
    "GraphBuilder",
    "Hopping",
    "LateEvent",
    "LogSettings",
    "LookBack",
    "Manifest",
    "Model",
    "ModelError",
    "Output",
    "PageWindow",
    "Pattern",
    "Plan",
    "PlanError",
    "ReleasePolicy",
    "RuntimeSettings",
    "Session",
    "Span",
    "StateError",
    "StorageError",
    "TrustStore",
    "Tumbling",
    "ValidationError",
    "WalleError",
    "Window",
    "build_bundle",
    "clicked",
    "collect",
    "count",
    "distinct",
    "entered",
    "exited",
    "exposed",
    "first",
    "last",
    "load_app",
    "max_",
    "mean",
    "min_",
    "not_followed_by",
    "on",
    "one_or_more",
    "open_bundle",
    "optional",
    "scrolled",
    "seq",
    "sign_bundle",
    "sum_",
    "testing",
    "top_k",
]


def __getattr__(name: str) -> Any:
    if name == "testing":  # the helpers for testing apps (walle.testing), loaded on use
        return importlib.import_module("walle.testing")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'walle' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

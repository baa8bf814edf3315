"""walle: device-cloud collaborative ML pipelines.

Only the exception tree (``walle.errors``) is imported eagerly. Every other public name, the task
DSL and engine (``walle.streams``) included, is loaded on first use (PEP 562 ``__getattr__``), so
``import walle`` stays quick and starts nothing (no threads, no logging set-up). ``walle.streams``
pulls in pydantic (~0.3 s): importing it lazily keeps it off the start of every ``walle``
command that never touches an App (``walle deploy ...``, ``walle --help``).
``from walle import X`` works for every name in ``__all__`` as before.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from walle._lazy import lazy_names
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

if TYPE_CHECKING:  # the names' types for type checkers; at run time they load on first use
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

_STREAMS = (  # the names walle.streams provides
    "App",
    "CountWindow",
    "DeadLetter",
    "Event",
    "Hopping",
    "LateEvent",
    "LookBack",
    "Output",
    "PageWindow",
    "Pattern",
    "Plan",
    "Session",
    "Span",
    "Tumbling",
    "Window",
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
    "optional",
    "scrolled",
    "seq",
    "sum_",
    "top_k",
)

_LAZY = {
    **dict.fromkeys(_STREAMS, "walle.streams"),
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


_load = lazy_names("walle", _LAZY, globals())
_SUBMODULES = frozenset({"streams", "testing"})  # walle.testing: the helpers for testing apps


def __getattr__(name: str) -> Any:
    """Load public name ``name`` from its module on first use (and keep it: one load per name).

    ``walle.streams`` and ``walle.testing`` resolve as attributes too (``walle.streams`` was
    one after ``import walle`` when it was imported eagerly).
    """
    if name in _SUBMODULES:
        return importlib.import_module(f"walle.{name}")
    return _load(name)


def __dir__() -> list[str]:
    return sorted(__all__)

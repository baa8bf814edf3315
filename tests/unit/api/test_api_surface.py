"""The public API is what walle/__init__.py says it is, and importing it starts nothing."""

from __future__ import annotations

import subprocess
import sys

import walle

PINNED = {
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
    "Emissions",
    "Engine",
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
    "click",
    "collect",
    "count",
    "distinct",
    "enter",
    "exit",
    "exposure",
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
    "scroll",
    "seq",
    "sign_bundle",
    "sum_",
    "top_k",
}


def test_all_is_pinned_and_every_name_resolves():
    assert set(walle.__all__) == PINNED
    for name in walle.__all__:
        assert getattr(walle, name) is not None, name


def test_import_walle_loads_no_heavy_area_and_starts_no_thread():
    code = (
        "import sys, threading, walle;"
        "heavy = [m for m in ('numpy', 'faust', 'kafka', 'aiohttp', 'walle.ops')"
        " if m in sys.modules];"
        "print(heavy, threading.active_count())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] 1"


def test_every_error_derives_from_the_root():
    for name in (
        "BackendError",
        "BrokerError",
        "BundleError",
        "ModelError",
        "PlanError",
        "StateError",
        "StorageError",
        "ValidationError",
    ):
        assert issubclass(getattr(walle, name), walle.WalleError)

"""The public API is what walle/__init__.py says it is, and importing it starts nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest

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


@pytest.mark.parametrize("package", ["walle", "walle.deploy"])
def test_importing_the_package_loads_its_names_only_on_use(package):
    """pydantic and the models built on it (walle.streams, the bundle manifest) cost ~0.3 s;
    every `walle` process imports these packages, most commands need few of their names."""
    code = (
        f"import sys, {package};"
        "print([m for m in ('pydantic', 'walle.streams', 'walle.deploy.manifest')"
        " if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


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


def test_star_import_shadows_no_builtin_and_no_installed_package():
    """``from walle import *`` must not hide ``exit``, ``click`` and the like."""
    import builtins
    import importlib.metadata
    import pkgutil

    packages = {module.name for module in pkgutil.iter_modules()}
    packages |= {
        name.replace("-", "_").lower()
        for dist in importlib.metadata.distributions()
        for name in [dist.metadata["Name"] or ""]
    }
    shadowing = [n for n in walle.__all__ if hasattr(builtins, n) or n.lower() in packages]
    assert shadowing == []
    namespace: dict[str, object] = {}
    exec("from walle import *", namespace)
    assert set(namespace) - {"__builtins__"} == PINNED


def test_only_the_public_dsl_and_runtimes_are_exported():
    """Engine internals stay in walle.streams; the testing helpers are walle.testing."""
    assert not {"Engine", "Emissions", "exit", "click"} & set(walle.__all__)
    from walle.testing import run_app

    assert walle.testing.run_app is run_app

"""Find ops backends by name: lazily imported, priority-ordered, with helpful errors.

``get_backend("cython")`` returns the backend or raises :class:`BackendError` saying what is
missing and which extra installs it; a typo gets a "did you mean". The environment variable
``WALLE_REQUIRE_BACKENDS`` (comma-separated names) makes a missing backend an error in
:func:`available_backends` too, so a silent fallback cannot hide a broken build.
"""

from __future__ import annotations

import difflib
import importlib
import os

from walle.errors import BackendError
from walle.logging import get_logger
from walle.ops.backends.base import Backend

# Priority order: fastest-expected first; numpy last as the always-present reference.
_BACKENDS: dict[str, tuple[str, str]] = {
    "cython": ("walle.ops.backends.cython_backend", "CythonBackend"),
    "opencl": ("walle.ops.backends.opencl_backend", "OpenCLBackend"),
    "numpy": ("walle.ops.backends.numpy_backend", "NumpyBackend"),
}
_HOW_TO_GET = {
    "cython": "the compiled kernels: run `pip install -e .` (or `pip install walle`) to build them",
    "opencl": "pyopencl and an OpenCL platform: `pip install walle[opencl]`",
    "numpy": "numpy",
}
_loaded: dict[str, Backend] = {}
_log = get_logger("walle.ops.backends")


def backend_names() -> list[str]:
    """Every known backend name in priority order."""
    return list(_BACKENDS)


def required_backends() -> list[str]:
    """Names in ``WALLE_REQUIRE_BACKENDS`` (read when called, never at import)."""
    raw = os.environ.get("WALLE_REQUIRE_BACKENDS", "")
    return [n.strip() for n in raw.split(",") if n.strip()]


def get_backend(name: str) -> Backend:
    """The backend called ``name``; BackendError if unknown or not usable here."""
    if name in _loaded:
        return _loaded[name]
    if name not in _BACKENDS:
        close = difflib.get_close_matches(name, _BACKENDS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise BackendError(f"unknown ops backend {name!r}{hint} (known: {', '.join(_BACKENDS)})")
    module_name, class_name = _BACKENDS[name]
    try:
        backend: Backend = getattr(importlib.import_module(module_name), class_name)()
    except BackendError as exc:
        raise BackendError(
            f"ops backend {name!r} is not usable: {exc}; it needs {_HOW_TO_GET[name]}"
        ) from exc
    except ImportError as exc:
        raise BackendError(
            f"ops backend {name!r} is not installed ({exc}); it needs {_HOW_TO_GET[name]}"
        ) from exc
    _loaded[name] = backend
    return backend


def available_backends(names: list[str] | None = None) -> list[Backend]:
    """The usable backends among ``names`` (default: all), in priority order.

    A missing backend is logged and skipped, unless it is listed in
    ``WALLE_REQUIRE_BACKENDS``: then the BackendError propagates.
    """
    required = set(required_backends())
    unknown = required - set(_BACKENDS)
    if unknown:
        raise BackendError(f"WALLE_REQUIRE_BACKENDS names unknown backends {sorted(unknown)}")
    found = []
    for name in names or list(_BACKENDS):
        try:
            found.append(get_backend(name))
        except BackendError as exc:
            if name in required:
                raise
            _log.info("ops backend unavailable, skipped", backend=name, reason=str(exc))
    if not found:
        raise BackendError(f"none of the ops backends {names} is usable")
    return found

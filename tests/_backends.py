"""One way for a test to get a compiled or OpenCL backend: skip where it is not built here,
fail where ``make test`` requires it (``WALLE_REQUIRE_BACKENDS``), never skip silently there."""

from __future__ import annotations

import pytest

from walle.errors import BackendError
from walle.ops import get_backend
from walle.ops.backends.base import Backend
from walle.ops.backends.registry import required_backends


def backend_or_skip(name: str) -> Backend:
    """The backend ``name``; a skip naming why when it is missing and not required."""
    try:
        return get_backend(name)
    except BackendError as exc:
        if name in required_backends():  # make test requires it: fail, never skip
            raise
        pytest.skip(f"{name} backend not available here: {exc}")

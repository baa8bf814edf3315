"""Wait on a condition with a deadline instead of sleeping a fixed time.

``wait_until`` polls a predicate from synchronous code; ``until`` does the same from a
coroutine (the predicate may be a coroutine function, e.g. an HTTP probe on the same loop).
Both return the predicate's first truthy value and fail with ``what`` at the deadline.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any

POLL_S = 0.02


def wait_until(
    predicate: Callable[[], Any], timeout_s: float, what: str = "condition", poll_s: float = POLL_S
) -> Any:
    """``predicate()``'s first truthy value, polled every ``poll_s``; AssertionError after."""
    deadline = time.monotonic() + timeout_s
    while not (found := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(poll_s)
    return found


async def until(
    predicate: Callable[[], Any], timeout_s: float, what: str = "condition", poll_s: float = POLL_S
) -> Any:
    """Like ``wait_until``, awaiting between polls (and awaiting the predicate if it is async)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = predicate()
        if inspect.isawaitable(found):
            found = await found
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(poll_s)

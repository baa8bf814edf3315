"""A worker's one-line status on a terminal: events, rate, outputs, devices, lag.

Shown only when stderr is a terminal (`walle cloud worker` in a shell); logs stay the record.
"""

from __future__ import annotations

import sys
import time
from typing import Any


def status_line(processed: int, rate: float, outputs: int, devices: int, lag: int) -> str:
    """The text of the status line.

    >>> status_line(120_000, 51_234.5, 9_001, 40, 0)
    'worker: 120,000 events (51,234/s), 9,001 outputs, 40 devices, lag 0 (caught up)'
    """
    state = "caught up" if lag == 0 else "catching up"
    return (
        f"worker: {processed:,} events ({rate:,.0f}/s), {outputs:,} outputs, "
        f"{devices:,} devices, lag {lag:,} ({state})"
    )


class TerminalStatus:
    """A rich status spinner on stderr, updated about once a second by the worker loop."""

    def __init__(self) -> None:
        from rich.console import Console

        self._status: Any = Console(stderr=True).status("worker: starting")
        self._last = (time.monotonic(), 0)

    @staticmethod
    def wanted() -> bool:
        """True when stderr is an interactive terminal."""
        return sys.stderr.isatty()

    def start(self) -> None:
        self._status.start()

    def update(self, processed: int, outputs: int, devices: int, lag: int) -> None:
        """Refresh the line; the rate is over the time since the last update."""
        now = time.monotonic()
        then, before = self._last
        rate = (processed - before) / (now - then) if now > then else 0.0
        self._last = (now, processed)
        self._status.update(status_line(processed, rate, outputs, devices, lag))

    def stop(self) -> None:
        self._status.stop()

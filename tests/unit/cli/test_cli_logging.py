"""Logging configured by one CLI call keeps working after that call's stderr is closed."""

from __future__ import annotations

import io
import sys

from walle.logging import configure_logging, get_logger


def test_logs_follow_the_current_stderr(monkeypatch):
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    configure_logging("INFO")
    get_logger("t").info("one", n=1)
    first.close()
    second = io.StringIO()
    monkeypatch.setattr(sys, "stderr", second)
    get_logger("t").warning("two", n=2)
    assert "two" in second.getvalue() and "n=2" in second.getvalue()

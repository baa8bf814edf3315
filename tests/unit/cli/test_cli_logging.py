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


def test_library_logs_stay_quiet_below_warning_until_logging_is_configured() -> None:
    """Used as a library (no configure_logging), walle prints warnings, not debug lines
    (a `Model(...)` printed its OpenCL device at debug level), and on stderr: stdout is the
    program's own (a forced WALLE_OPS_ISA's warning had broken a child's parsed output)."""
    import subprocess
    import sys

    code = (
        "from walle.logging import get_logger, configure_logging\n"
        "log = get_logger('t')\n"
        "log.debug('debug-line'); log.info('info-line'); log.bind(k=1).info('bound-line')\n"
        "log.warning('warning-line')\n"
        "configure_logging('DEBUG'); log.debug('configured-debug-line')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    printed = done.stdout + done.stderr
    assert done.returncode == 0, printed
    assert "warning-line" in printed and "configured-debug-line" in printed
    assert printed.count("debug-line") == 1  # only the one logged after configuring
    assert "info-line" not in printed and "bound-line" not in printed
    assert "warning-line" in done.stderr and "warning-line" not in done.stdout
    bound = "from walle.logging import get_logger\nget_logger('t').bind(k=1).warning('w-line')\n"
    done = subprocess.run([sys.executable, "-c", bound], capture_output=True, text=True, timeout=60)
    assert "w-line" in done.stderr and "k=1" in done.stderr and not done.stdout

"""structlog set-up for the CLI and long-running services (never run at import time)."""

from __future__ import annotations

import logging
import sys

import structlog


class _StderrLogger:
    """Writes each line to whatever ``sys.stderr`` is at the time of the call.

    Binding the stream at configuration time breaks when it is later replaced and closed
    (test runners capturing output do exactly that).
    """

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


def _stderr_logger(*_args: object) -> _StderrLogger:
    return _StderrLogger()


def configure_logging(level: str = "INFO", *, json: bool = False) -> None:
    """Route structlog to stderr as key=value lines (or JSON) at ``level``."""
    renderer = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )


_QUIET_UNTIL_CONFIGURED = frozenset({"debug", "info", "adebug", "ainfo"})


def _drop(*_args: object, **_kwargs: object) -> None:
    return None


class _LibraryLogger:
    """A structlog logger that stays quiet below WARNING until logging is configured.

    structlog's defaults print every level, debug included, to stdout; a library imported by
    someone who never configured logging should say only what needs attention, on stderr, as
    the standard library's last-resort handler does (stdout is the program's own output: a
    table, JSON a caller parses). Once ``configure_logging`` (or the application's own
    ``structlog.configure``) has run, every call goes through the configured pipeline.
    """

    def __init__(self, **context: object) -> None:
        self._context = context
        self._bound = structlog.get_logger(**context)
        self._unconfigured = structlog.wrap_logger(_StderrLogger()).bind(**context)

    def bind(self, **more: object) -> _LibraryLogger:
        return _LibraryLogger(**self._context, **more)

    def __getattr__(self, method: str) -> object:
        if structlog.is_configured():
            return getattr(self._bound, method)
        if method in _QUIET_UNTIL_CONFIGURED:
            return _drop
        return getattr(self._unconfigured, method)


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    """A logger bound to the component ``name`` (quiet below WARNING until configured)."""
    return _LibraryLogger(component=name)  # type: ignore[return-value]

"""Run the `walle` console entry point in-process, as a user's shell would, for its exit code."""

from __future__ import annotations

from typing import Any

from walle.cli import main


def exit_of_main(monkeypatch: Any, *args: str) -> int | str | None:
    """The exit code of ``walle ARGS`` (``main`` always exits)."""
    monkeypatch.setattr("sys.argv", ["walle", *args])
    try:
        main()
    except SystemExit as exit_:
        return exit_.code
    raise AssertionError("walle should exit")

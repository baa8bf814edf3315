"""Every `walle` command answers --help; usage errors exit 2, walle errors exit 1."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from walle.cli import cli


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in sorted(group.commands.items()):
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))


def _walle(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "walle.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_every_command_has_help():
    from click.testing import CliRunner

    runner = CliRunner()
    names = list(_commands(cli))
    assert len(names) > 10
    for path in names:
        result = runner.invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage:" in result.output


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (("--help",), 0, "Usage: walle"),
        (("no-such-command",), 2, "No such command"),
        (("generate",), 2, "Missing argument 'OUT'"),
        (("generate", "x.jsonl", "--devices", "0"), 2, "--devices"),
        (("plan", "/nonexistent/app.py"), 2, "does not exist"),
    ],
)
def test_exit_codes(args, code, text):
    result = _walle(*args)
    assert result.returncode == code, result
    assert text in result.stdout + result.stderr


def test_a_walle_error_is_one_line_and_exit_code_1(tmp_path):
    app_file = tmp_path / "empty.py"
    app_file.write_text("x = 1\n")
    result = _walle("plan", str(app_file))
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {app_file}: defines no App named 'app'"

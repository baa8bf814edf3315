"""The `walle` command tree, walked whole: its shape and its conventions.

Every command and group answers --help (exit 0) and refuses a bad option or sub-command
with a usage error (exit 2); each command has one place; options are kebab-case, a duration
or size carries its unit in its name, and one option name means one type everywhere; the
App file is APP and a database is the --db option in every command. Walle errors are one
line and exit 1.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from walle.cli import cli

Path_ = tuple[str, ...]

TOP_LEVEL = {"run", "replay", "plan", "device", "cloud", "ops", "deploy"}
AREAS = {
    "device": {"generate", "late", "deadletters", "uplink"},
    "cloud": {"broker", "produce", "worker", "outputs"},
    "ops": {"explain", "bench"},
    "deploy": {
        "keygen", "root", "bundle", "store", "gateway", "agent", "release", "rollback",
        "pause", "advance", "status", "rollout",
    },
}  # fmt: skip

_KEBAB = re.compile(r"^--[a-z][a-z0-9]*(-[a-z0-9]+)*$")
# A word that names a duration or a size; such an option must end in its unit.
_MEASURE = re.compile(r"(timeout|wait|ttl|interval|delay|expires|age|duration|period|bytes)")
_UNITS = ("-ms", "-s", "-days", "-bytes")


def _walk(group: click.Group, prefix: Path_ = ()) -> Iterator[tuple[Path_, click.Command]]:
    for name, command in sorted(group.commands.items()):
        yield (*prefix, name), command
        if isinstance(command, click.Group):
            yield from _walk(command, (*prefix, name))


TREE = list(_walk(cli))
LEAVES = [(path, cmd) for path, cmd in TREE if not isinstance(cmd, click.Group)]
GROUPS = [(path, cmd) for path, cmd in TREE if isinstance(cmd, click.Group)]


def _options() -> Iterator[tuple[Path_, click.Option]]:
    yield from ((("walle",), p) for p in cli.params if isinstance(p, click.Option))
    for path, command in TREE:
        yield from ((path, p) for p in command.params if isinstance(p, click.Option))


def _signature(option: click.Option) -> tuple[str, bool, bool]:
    """What an option name promises: its value type, whether it repeats, whether a flag."""
    return type(option.type).__name__, option.multiple, option.is_flag


def _names(option: click.Option) -> list[str]:
    return [name for name in (*option.opts, *option.secondary_opts) if name.startswith("--")]


def test_the_top_level_holds_the_common_verbs_and_one_group_per_area() -> None:
    assert set(cli.commands) == TOP_LEVEL
    for area, commands in AREAS.items():
        assert set(cli.commands[area].commands) == commands, area  # type: ignore[attr-defined]


def test_each_command_has_one_place() -> None:
    """No alias: a callback is reachable by one path only, and no leaf name is reused."""
    places: dict[object, list[Path_]] = {}
    for path, command in LEAVES:
        places.setdefault(command.callback, []).append(path)
    assert [paths for paths in places.values() if len(paths) > 1] == []
    names = [path[-1] for path, _ in LEAVES if path[:-1] != ("deploy", "root")]
    assert sorted(n for n in set(names) if names.count(n) > 1) == []


@pytest.mark.parametrize("path", [path for path, _ in TREE], ids=" ".join)
def test_every_command_and_group_answers_help(path: Path_) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: cli {' '.join(path)}")


@pytest.mark.parametrize("path", [path for path, _ in LEAVES], ids=" ".join)
def test_a_bad_option_is_a_usage_error(path: Path_) -> None:
    result = CliRunner().invoke(cli, [*path, "--no-such-option"])
    assert result.exit_code == 2, result.output
    assert "No such option: --no-such-option" in result.output


@pytest.mark.parametrize("path", [(), *(path for path, _ in GROUPS)], ids=" ".join)
def test_a_bad_sub_command_is_a_usage_error(path: Path_) -> None:
    result = CliRunner().invoke(cli, [*path, "no-such-command"])
    assert result.exit_code == 2, result.output
    assert "No such command 'no-such-command'" in result.output


def test_every_option_is_kebab_case() -> None:
    bad = [(path, name) for path, o in _options() for name in _names(o) if not _KEBAB.match(name)]
    assert bad == []


def test_durations_and_sizes_carry_their_unit() -> None:
    bad = [
        (path, name)
        for path, option in _options()
        for name in _names(option)
        if _MEASURE.search(name) and not name.endswith(_UNITS)
    ]
    assert bad == []
    worker = cli.commands["cloud"].commands["worker"]  # type: ignore[attr-defined]
    names = {name for p in worker.params for name in p.opts}
    assert {"--session-timeout-ms", "--fetch-max-wait-ms", "--idle-timeout-ms"} <= names
    assert not names & {"--session-timeout", "--fetch-max-wait"}


def test_one_option_name_means_one_type_everywhere() -> None:
    seen: dict[str, dict[tuple[str, bool, bool], list[Path_]]] = {}
    for path, option in _options():
        if option.hidden:
            continue  # a removed flag kept only to say what replaced it
        for name in _names(option):
            seen.setdefault(name, {}).setdefault(_signature(option), []).append(path)
    assert {name: kinds for name, kinds in seen.items() if len(kinds) > 1} == {}


def test_the_log_level_is_global_only() -> None:
    where = [
        path for path, option in _options() if {"--log-level", "--loglevel"} & set(option.opts)
    ]
    assert where == [("walle",)]


def test_an_app_file_is_app_and_a_database_is_the_db_option() -> None:
    arguments = [(path, p) for path, command in TREE for p in command.params]
    metavars = {
        (path, p.make_metavar(click.Context(cli)))
        for path, p in arguments
        if isinstance(p, click.Argument)
    }
    assert {m for _, m in metavars if "APP" in m} == {"APP"}
    app_options = [p for _, p in arguments if isinstance(p, click.Option) and "--app" in p.opts]
    assert {p.make_metavar(click.Context(cli)) for p in app_options} == {"APP"}
    assert [(path, m) for path, m in metavars if m in {"DB", "DATABASE"}] == []
    with_db = {path for path, p in arguments if isinstance(p, click.Option) and "--db" in p.opts}
    assert {("device", "late"), ("device", "deadletters"), ("device", "uplink")} <= with_db


def _walle(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "walle.cli", *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (("--help",), 0, "Usage: walle"),
        (("no-such-command",), 2, "No such command"),
        (("device", "generate"), 2, "Missing argument 'OUT'"),
        (("device", "generate", "x.jsonl", "--devices", "0"), 2, "--devices"),
        (("device", "late"), 2, "Missing option '--db'"),
        (("plan", "/nonexistent/app.py"), 2, "does not exist"),
        (("generate", "x.jsonl"), 2, "No such command 'generate'"),
        (("cloud", "worker", "a.py", "--session-timeout", "6"), 2, "No such option"),
    ],
)
def test_exit_codes_of_the_console_entry_point(args: Path_, code: int, text: str) -> None:
    result = _walle(*args)
    assert result.returncode == code, result
    assert text in result.stdout + result.stderr


def test_the_command_line_loads_no_app_or_model_library_before_a_command_needs_it() -> None:
    """Every `walle` process imports walle.cli: walle.streams and pydantic (~0.3 s) load in the
    commands that use them, not for `walle --help` or a usage error (nor walle.streams for
    `walle deploy ...`)."""
    code = (
        "import sys, walle.cli;"
        "print([m for m in ('pydantic', 'walle.streams', 'walle.deploy.manifest')"
        " if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_walle_error_is_one_line_and_exit_code_1(tmp_path) -> None:
    app_file = tmp_path / "empty.py"
    app_file.write_text("x = 1\n")
    result = _walle("plan", str(app_file))
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {app_file}: defines no App named 'app'"

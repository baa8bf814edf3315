"""walle device late, and what walle run / replay print: each message says what to do next."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests._cli import exit_of_main
from walle.cli import cli
from walle.streams.app import load_app
from walle.streams.device.log import EventLog
from walle.streams.device.replay import open_replay
from walle.streams.events import Event, write_jsonl
from walle.streams.generator import generate_events

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
CLICKS = EXAMPLES / "clicks_per_category.py"  # tumbling windows: late events go aside
ITEM = EXAMPLES / "item_page_view.py"


def _late_log(path: Path) -> Path:
    write_jsonl(path, generate_events(devices=4, sessions=3, seed=3, late_rate=0.05))
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_late_lists_every_late_event_of_the_runtime_and_changes_nothing(tmp_path: Path) -> None:
    log, db = _late_log(tmp_path / "late.jsonl"), tmp_path / "d.db"
    with open_replay(load_app(CLICKS), log, db).runtime as runtime:
        report = runtime.run(finish=True)
    assert report.late > 1
    before = _digest(db)

    listed = CliRunner().invoke(
        cli, ["device", "late", "--db", str(db), "--json", "--limit", "1000"]
    )
    assert listed.exit_code == 0, listed.output
    records = [json.loads(line) for line in listed.output.splitlines()]
    assert len(records) == report.late
    for record in records:
        event = json.loads(record["raw"])
        assert record["task"] == "clicks_per_category" and record["app"] == "clicks_per_category"
        assert (record["device_id"], record["seq"], record["ts"]) == (
            event["device_id"],
            event["seq"],
            event["ts"],
        )
        assert "closed at watermark" in record["reason"]

    table = CliRunner().invoke(cli, ["device", "late", "--db", str(db)])
    assert table.exit_code == 0, table.output
    assert f"({report.late})" in table.output and records[0]["device_id"] in table.output
    limited = CliRunner().invoke(cli, ["device", "late", "--db", str(db), "--limit", "1"])
    assert f"first 1 of {report.late} rows (--limit)" in limited.output
    assert _digest(db) == before  # read-only: the database is byte for byte the same


def test_late_on_a_plain_event_log_says_which_database_to_pass(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    with EventLog(tmp_path / "log.db") as log:
        log.append(Event("d1", 1, 1_000, "click", "item"))
        log.flush()
    assert exit_of_main(monkeypatch, "device", "late", "--db", str(tmp_path / "log.db")) == 1
    err = capsys.readouterr().err
    assert "no device runtime has run over" in err and "--db of walle run / walle replay" in err
    assert exit_of_main(monkeypatch, "device", "late", "--db", str(tmp_path / "missing.db")) == 1
    assert "no such database file" in capsys.readouterr().err


def _bad_log(path: Path) -> Path:
    events = [
        Event("d1", 1, 1_000, "page_enter", "item", {"item_id": "a"}),
        Event("d1", 2, 9_000, "page_exit", "item"),
    ]
    write_jsonl(path, events)
    with path.open("a") as stream:
        stream.write("not json\n")
        stream.write(events[0].to_json() + "\n")  # a duplicate
    return path


def test_replay_summary_counts_dead_letters_once_and_names_the_command(tmp_path: Path) -> None:
    log, db = _bad_log(tmp_path / "log.jsonl"), tmp_path / "d.db"
    result = CliRunner().invoke(cli, ["replay", str(ITEM), str(log), "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "events 2 " in result.output and "outputs 1 " in result.output
    line = next(line for line in result.output.splitlines() if "dead-letter table" in line)
    assert line == (
        f"2 record(s) went to the dead-letter table: 2 bad or duplicate record(s) of {log};"
        f" list them with: walle device deadletters --db {db}"
    )
    for contradiction in ("dead-lettered 0", "duplicates 0", "late 0"):
        assert contradiction not in result.output
    listed = CliRunner().invoke(cli, ["device", "deadletters", "--db", str(db), "--json"])
    assert len(listed.output.splitlines()) == 2  # the command the summary names lists them


def test_summary_with_a_temporary_database_says_it_is_gone(tmp_path: Path) -> None:
    log = _bad_log(tmp_path / "log.jsonl")
    result = CliRunner().invoke(cli, ["replay", str(ITEM), str(log)])
    assert result.exit_code == 0, result.output
    assert (
        "2 record(s) went to the dead-letter table: 2 bad or duplicate record(s) of"
        in result.output
    )
    assert (
        "the database was temporary and is gone: run again with --db PATH, then"
        " walle device deadletters --db PATH" in result.output
    )


def test_clean_run_prints_no_dead_letter_or_late_line(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    write_jsonl(log, [Event("d1", 1, 1_000, "page_enter", "item"), Event("d1", 2, 2_000, "x", "y")])
    result = CliRunner().invoke(cli, ["run", str(ITEM), "--log", str(log)])
    assert result.exit_code == 0, result.output
    assert "dead-letter" not in result.output and "late" not in result.output


@pytest.mark.parametrize("command", ["replay", "run"])
def test_summary_counts_late_events_and_points_to_walle_late(tmp_path: Path, command) -> None:
    log, db = _late_log(tmp_path / "late.jsonl"), tmp_path / "d.db"
    app = tmp_path / "clicks_per_category.py"
    shutil.copy(CLICKS, app)
    args = [str(app), str(log)] if command == "replay" else [str(app), "--log", str(log)]
    result = CliRunner().invoke(cli, [command, *args, "--db", str(db)])
    assert result.exit_code == 0, result.output
    listed = CliRunner().invoke(
        cli, ["device", "late", "--db", str(db), "--json", "--limit", "1000"]
    )
    late = len(listed.output.splitlines())
    assert late > 1
    assert (
        f"{late} late event(s) came after their window had closed and are in no output;"
        f" list them with: walle device late --db {db}" in result.output
    )
    temporary = CliRunner().invoke(cli, [command, *args])
    assert (
        f"{late} late event(s) came after their window had closed and are in no output; the"
        " database was temporary and is gone: run again with --db PATH, then"
        " walle device late --db PATH" in temporary.output
    )


def test_run_without_a_log_beside_the_app_names_the_file_and_log_option(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    app = tmp_path / "myapp.py"
    shutil.copy(ITEM, app)
    assert exit_of_main(monkeypatch, "run", str(app)) == 2
    err = capsys.readouterr().err
    assert f"no event log beside {app}: looked for {tmp_path / 'myapp.jsonl'}" in err
    assert "pass --log LOG" in err and "Traceback" not in err


def test_run_with_a_missing_log_names_the_log_option(tmp_path: Path, capsys, monkeypatch) -> None:
    missing = tmp_path / "nope.jsonl"
    assert exit_of_main(monkeypatch, "run", str(ITEM), "--log", str(missing)) == 2
    err = capsys.readouterr().err
    assert "--log" in err and str(missing) in err and "does not exist" in err


_FAILING_APP = """
from walle.streams import App, Tumbling, count

app = App("failing", out_of_orderness_ms=0)
(
    app.stream("fails_on_b")
    .filter(lambda e: e.args["item"] != "b")  # KeyError on events without "item"
    .window(Tumbling(60_000))
    .aggregate(n=count())
)
"""


def test_dead_letter_line_adds_bad_lines_and_events_the_app_failed_on(tmp_path: Path) -> None:
    app, db = tmp_path / "failing.py", tmp_path / "d.db"
    app.write_text(_FAILING_APP)
    log = tmp_path / "log.jsonl"
    write_jsonl(
        log,
        [Event("d1", 1, 1_000, "click", "item", {"item": "a"}), Event("d1", 2, 2_000, "x", "y")],
    )
    with log.open("a") as stream:
        stream.write("not json\n")
    result = CliRunner().invoke(cli, ["replay", str(app), str(log), "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert (
        f"2 record(s) went to the dead-letter table: 1 bad or duplicate record(s) of {log},"
        f" 1 event(s) the app failed on; list them with: walle device deadletters --db {db}"
        in result.output
    )
    listed = CliRunner().invoke(cli, ["device", "deadletters", "--db", str(db), "--json"])
    reasons = [json.loads(line)["reason"] for line in listed.output.splitlines()]
    assert len(reasons) == 2 and any("KeyError" in reason for reason in reasons)

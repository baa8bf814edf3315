"""walle run / replay / device deadletters: options, exit codes and messages."""

from __future__ import annotations

import errno
import json
from pathlib import Path

from click.testing import CliRunner

from tests._cli import exit_of_main
from walle.cli import cli, main
from walle.streams.events import Event, write_jsonl

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
APP = EXAMPLES / "item_page_view.py"


def _log(path: Path) -> Path:
    events = [
        Event("d1", 1, 1_000, "page_enter", "item", {"item_id": "a"}),
        Event("d1", 2, 2_000, "click", "item"),
        Event("d1", 3, 9_000, "page_exit", "item"),
        Event("d1", 4, 20_000, "page_enter", "item", {"item_id": "b"}),
        Event("d1", 5, 29_000, "page_exit", "item"),
    ]
    write_jsonl(path, events)
    with path.open("a") as stream:
        stream.write('{"device_id": "d1", "seq": 6, "ts": 1')  # cut off mid-record
    return path


def test_replay_until_offset_and_from_offset(tmp_path: Path) -> None:
    log = _log(tmp_path / "log.jsonl")
    db = tmp_path / "d.db"
    first = CliRunner().invoke(cli, ["replay", str(APP), str(log), "--db", str(db), "--until", "3"])
    assert first.exit_code == 0, first.output
    assert "events 3 " in first.output and "outputs 1 " in first.output
    assert "1 bad or duplicate record" in first.output
    rest = CliRunner().invoke(cli, ["replay", str(APP), str(log), "--db", str(db)])
    assert rest.exit_code == 0, rest.output
    assert "events 2 " in rest.output and "outputs 1 " in rest.output


def test_replay_until_event_time_stops_before_later_events(tmp_path: Path) -> None:
    log = _log(tmp_path / "log.jsonl")
    result = CliRunner().invoke(cli, ["replay", str(APP), str(log), "--until", "ts:9000"])
    assert result.exit_code == 0, result.output
    assert "events 3 " in result.output


def test_bad_until_is_a_usage_error(tmp_path: Path) -> None:
    log = _log(tmp_path / "log.jsonl")
    result = CliRunner().invoke(cli, ["replay", str(APP), str(log), "--until", "soon"])
    assert result.exit_code == 2
    assert "--until" in result.output


def test_deadletters_lists_file_and_line(tmp_path: Path) -> None:
    log = _log(tmp_path / "log.jsonl")
    db = tmp_path / "d.db"
    assert CliRunner().invoke(cli, ["replay", str(APP), str(log), "--db", str(db)]).exit_code == 0
    result = CliRunner().invoke(cli, ["device", "deadletters", "--db", str(db), "--json"])
    assert result.exit_code == 0, result.output
    (record,) = [json.loads(line) for line in result.output.splitlines()]
    assert record["location"] == f"{log}:6"
    assert "truncated last line" in record["reason"]
    table = CliRunner().invoke(cli, ["device", "deadletters", "--db", str(db)])
    assert table.exit_code == 0 and "ingest" in table.output


def test_walle_error_exits_1_with_clear_message(tmp_path: Path, capsys, monkeypatch) -> None:
    not_db = tmp_path / "notes.db"
    not_db.write_text("just text\n" * 50)
    monkeypatch.setattr("sys.argv", ["walle", "device", "deadletters", "--db", str(not_db)])
    try:
        main()
    except SystemExit as exit_:
        assert exit_.code == 1
    else:
        raise AssertionError("walle device deadletters on a text file should exit 1")
    assert "not an SQLite database" in capsys.readouterr().err


def test_out_file_holds_the_whole_store_after_a_resumed_replay(tmp_path: Path) -> None:
    log, db, out = _log(tmp_path / "log.jsonl"), tmp_path / "d.db", tmp_path / "out.jsonl"
    for until in (["--until", "3"], []):
        args = ["replay", str(APP), str(log), "--db", str(db), "--out", str(out), *until]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert len(lines) == 2 and "wrote 2 outputs to" in result.output  # not only this run's 1
    ran = CliRunner().invoke(cli, ["run", str(APP), "--log", str(log), "--out", str(out)])
    assert ran.exit_code == 0, ran.output
    assert out.read_text().splitlines() == lines


def test_out_in_a_missing_folder_is_a_one_line_error(tmp_path: Path, capsys, monkeypatch) -> None:
    log, out = _log(tmp_path / "log.jsonl"), tmp_path / "no-such-folder" / "out.jsonl"
    for command in (["replay", str(APP), str(log)], ["run", str(APP), "--log", str(log)]):
        assert exit_of_main(monkeypatch, *command, "--out", str(out)) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"error: {out}: cannot write the outputs file: No such file")
        assert "directory exists and is writable" in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1


def test_out_on_a_full_disk_is_a_one_line_error_and_keeps_the_old_file(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    log, db, out = _log(tmp_path / "log.jsonl"), tmp_path / "d.db", tmp_path / "out.jsonl"
    out.write_text("the previous complete file\n")

    def no_space(_descriptor: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("os.fsync", no_space)
    args = ["replay", str(APP), str(log), "--db", str(db), "--out", str(out)]
    assert exit_of_main(monkeypatch, *args) == 1
    err = capsys.readouterr().err
    assert f"error: {out}: cannot write the outputs file: the disk is full" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert out.read_text() == "the previous complete file\n"
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".out")] == []

    monkeypatch.undo()  # space is back: the next run rewrites the file from the store
    assert CliRunner().invoke(cli, args).exit_code == 0
    assert len(out.read_text().splitlines()) == 2

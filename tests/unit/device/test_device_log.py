"""EventLog: appends under the durability policy, offsets, ingest, reading and bad input."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from walle.errors import StorageError, ValidationError
from walle.streams.device import DurabilityPolicy, EventLog, LogSettings
from walle.streams.events import Event, read_jsonl


def _events(count: int, device: str = "d1", start: int = 1) -> list[Event]:
    return [
        Event(device, seq, 1_000 * seq, "click", "item", {"n": seq} if seq % 2 else {})
        for seq in range(start, start + count)
    ]


def _write(path: Path, lines: list[str], *, final_newline: bool = True) -> Path:
    path.write_text("\n".join(lines) + ("\n" if final_newline else ""), encoding="utf-8")
    return path


def test_appends_commit_every_n_events(tmp_path: Path) -> None:
    settings = LogSettings(
        durability=DurabilityPolicy(commit_every_events=3, commit_every_ms=10**6)
    )
    with EventLog(tmp_path / "log.db", settings) as log:
        for event in _events(2):
            log.append(event)
        other = sqlite3.connect(tmp_path / "log.db")
        assert other.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 0
        assert log.pending == 2
        log.append(_events(1, start=3)[0])
        assert other.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 3
        assert log.pending == 0
        other.close()


def test_appends_commit_after_t_ms_with_autoflush(tmp_path: Path) -> None:
    settings = LogSettings(
        durability=DurabilityPolicy(commit_every_events=1000, commit_every_ms=20)
    )
    with EventLog(tmp_path / "log.db", settings) as log:
        log.start_autoflush()
        log.append(_events(1)[0])
        other = sqlite3.connect(tmp_path / "log.db")
        for _ in range(200):
            if other.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 1:
                break
            import time

            time.sleep(0.01)
        assert other.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 1
        other.close()


def test_read_round_trips_events_in_offset_order(tmp_path: Path) -> None:
    events = _events(5, "a") + _events(4, "b")
    with EventLog(tmp_path / "log.db") as log:
        for event in events:
            log.append(event)
        log.flush()
        read = list(log.read(batch=2))
        assert [event for _, event in read] == events
        assert [offset for offset, _ in read] == list(range(1, 10))
        assert [offset for offset, _ in log.read(3, 5)] == [3, 4, 5]
        assert log.last_offset() == 9


def test_offsets_keep_growing_after_deletes_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    with EventLog(path) as log:
        for event in _events(3):
            log.append(event)
    with EventLog(path) as log:
        log.conn.execute("DELETE FROM events")
        log.append(_events(1, start=4)[0])
        log.flush()
        assert [offset for offset, _ in log.read()] == [4]


def test_append_rejects_malformed_event_naming_field(tmp_path: Path) -> None:
    with EventLog(tmp_path / "log.db") as log:
        with pytest.raises(ValidationError) as caught:
            log.append({"device_id": "d", "seq": -1, "ts": 1, "event": "click"})
        assert caught.value.field == "seq"
        assert "log.db" in str(caught.value)
        assert log.pending == 0


def test_duplicate_append_goes_to_dead_letters(tmp_path: Path) -> None:
    with EventLog(tmp_path / "log.db") as log:
        first = _events(1)[0]
        log.append(first)
        log.flush()
        log.append(first._replace(ts=5))
        assert log.flush() == 0
        assert log.count() == 1
        (dead,) = log.dead_letters()
        assert "duplicate (device_id, seq) = ('d1', 1)" in dead.reason
        assert "offset 1" in dead.reason
        assert json.loads(dead.raw)["ts"] == 5


def test_ingest_keeps_good_lines_and_dead_letters_bad_ones(tmp_path: Path) -> None:
    good = [event.to_json() for event in _events(3)]
    path = _write(
        tmp_path / "in.jsonl",
        [
            good[0],
            "{not json",
            good[1],
            '{"device_id":"d1","seq":"x","ts":1,"event":"click"}',
            "",
            good[2],
            good[0],
        ],
    )
    with EventLog(tmp_path / "log.db") as log:
        report = log.ingest_jsonl(path)
        assert (report.events, report.dead_letters) == (3, 3)
        assert [event for _, event in log.read()] == _events(3)
        dead = log.dead_letters()
        assert [record.location for record in dead] == [f"{path}:2", f"{path}:4", f"{path}:7"]
        assert "not valid JSON" in dead[0].reason and dead[0].raw.startswith("{not json")
        assert "'seq'" in dead[1].reason
        assert "duplicate" in dead[2].reason


def test_ingest_of_same_file_twice_is_skipped(tmp_path: Path) -> None:
    path = _write(tmp_path / "in.jsonl", [event.to_json() for event in _events(4)])
    with EventLog(tmp_path / "log.db") as log:
        assert log.ingest_jsonl(path).events == 4
        again = log.ingest_jsonl(path)
        assert again.already_ingested and again.events == 0
        assert log.count() == 4 and log.dead_letters() == []


def test_truncated_file_names_last_line_and_keeps_the_rest(tmp_path: Path) -> None:
    lines = [event.to_json() for event in _events(3)]
    lines[-1] = lines[-1][: len(lines[-1]) // 2]
    path = _write(tmp_path / "cut.jsonl", lines, final_newline=False)
    with EventLog(tmp_path / "log.db") as log:
        report = log.ingest_jsonl(path)
        assert (report.events, report.dead_letters) == (2, 1)
        (dead,) = log.dead_letters()
        assert dead.location == f"{path}:3"
        assert dead.reason.startswith("truncated last line")


def test_strict_ingest_raises_with_file_and_line_and_stores_nothing(tmp_path: Path) -> None:
    lines = [event.to_json() for event in _events(3)]
    lines[1] = '{"device_id": "d1"'
    path = _write(tmp_path / "bad.jsonl", lines)
    with EventLog(tmp_path / "log.db") as log:
        with pytest.raises(ValidationError, match=rf"{path}:2: not valid JSON"):
            log.ingest_jsonl(path, strict=True)
        assert log.count() == 0


def test_missing_input_file_is_a_storage_error(tmp_path: Path) -> None:
    with EventLog(tmp_path / "log.db") as log, pytest.raises(StorageError, match="missing"):
        log.ingest_jsonl(tmp_path / "missing.jsonl")


def test_not_sqlite_file_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database\n" * 200)
    with pytest.raises(StorageError, match="not an SQLite database") as caught:
        EventLog(path)
    assert str(path) in str(caught.value)
    assert path.read_bytes().startswith(b"these are my notes")


def test_foreign_sqlite_database_is_not_taken_for_a_log(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    sqlite3.connect(path).execute("CREATE TABLE x (y)").connection.commit()
    with pytest.raises(StorageError, match="not a walle event log"):
        EventLog(path, LogSettings(read_only=True))


def test_read_only_open_reads_but_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    with EventLog(path) as log:
        for event in _events(2):
            log.append(event)
    with EventLog(path, LogSettings(read_only=True)) as log:
        assert log.count() == 2
        log.append(_events(1, start=3)[0])
        with pytest.raises(StorageError, match="read-only"):
            log.flush()
        assert log.pending == 1
        log.appends.events.clear()  # the test gives up on the write; close must not retry it


def _as_unprivileged_user(check: Callable[[], None]) -> None:
    """Run ``check`` in a forked child that dropped root (root ignores file permissions)."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.setgid(65534)
            os.setuid(65534)
            check()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0, "the check failed in the unprivileged child"


def test_read_only_file_gives_clear_error() -> None:
    folder = Path(tempfile.mkdtemp(prefix="walle-ro-", dir="/tmp"))
    path = folder / "log.db"
    EventLog(path).close()
    path.chmod(0o444)
    folder.chmod(0o555)

    def check() -> None:
        with (
            pytest.raises(StorageError, match=r"read-only|readonly"),
            EventLog(path) as log,
        ):
            log.append(_events(1)[0])
            log.flush()

    try:
        if os.geteuid() == 0:
            _as_unprivileged_user(check)
        else:
            check()
    finally:
        folder.chmod(0o755)
        shutil.rmtree(folder)


def test_locked_database_gives_clear_error_then_works(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    with EventLog(path, LogSettings(busy_timeout_ms=50)) as log:
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        log.append(_events(1)[0])
        with pytest.raises(StorageError, match="locked"):
            log.flush()
        holder.execute("ROLLBACK")
        holder.close()
        assert log.flush() == 1
        assert log.count() == 1


def test_disk_full_loses_nothing_and_recovers(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    EventLog(path).close()
    pages = sqlite3.connect(path).execute("PRAGMA page_count").fetchone()[0]
    settings = LogSettings(
        max_pages=pages + 4,
        durability=DurabilityPolicy(commit_every_events=10**6, commit_every_ms=10**6),
    )
    big = [event._replace(args={"blob": "x" * 500}) for event in _events(200)]
    with EventLog(path, settings) as log:
        for event in big:
            log.append(event)
        with pytest.raises(StorageError, match="full"):
            log.flush()
        assert log.count() == 0 and log.pending == 200
        log.conn.execute("PRAGMA max_page_count = 100000")
        assert log.flush() == 200
        assert [event for _, event in log.read()] == big


def test_ingest_dead_letters_an_event_below_its_devices_highest_seq(tmp_path: Path) -> None:
    """Issue 13: a never-seen seq below the device's highest is refused with the reason (the
    engine used to drop it as a duplicate, with only a count); every line is accounted for."""
    line = '{{"device_id": "{d}", "seq": {seq}, "ts": {ts}, "event": "click"}}'
    lines = [
        line.format(d="d1", seq=1, ts=10),
        line.format(d="d1", seq=3, ts=30),
        line.format(d="d1", seq=2, ts=20),  # never seen, below 3: broken seq order
        line.format(d="d2", seq=1, ts=5),  # another device has its own order
        line.format(d="d1", seq=4, ts=40),
    ]
    path = _write(tmp_path / "in.jsonl", lines)
    with EventLog(tmp_path / "log.db") as log:
        report = log.ingest_jsonl(path)
        assert (report.events, report.dead_letters) == (4, 1)
        assert [(e.device_id, e.seq) for _, e in log.read()] == [
            ("d1", 1), ("d1", 3), ("d2", 1), ("d1", 4)
        ]  # fmt: skip
        (dead,) = log.dead_letters()
        assert dead.location == f"{path}:3"
        assert dead.reason.startswith("out of order: (device_id, seq) = ('d1', 2)")
        assert "highest seq 3" in dead.reason
        assert dead.raw == lines[2]


def test_append_below_the_highest_seq_is_dead_lettered_as_out_of_order(tmp_path: Path) -> None:
    with EventLog(tmp_path / "log.db") as log:
        log.append(Event("d1", 5, 50, "click"))
        log.append(Event("d1", 3, 30, "click"))
        assert log.flush() == 1
        (dead,) = log.dead_letters()
        assert dead.reason.startswith("out of order: (device_id, seq) = ('d1', 3)")


def test_ingest_dead_letters_of_duplicates_keep_the_raw_text(tmp_path: Path) -> None:
    first = '{"device_id":"d1","seq":1,"ts":10,"event":"click"}'
    again = '{ "event": "click", "ts": 10, "seq": 1, "device_id": "d1" }'
    changed = '{"device_id":"d1","seq":1,"ts":99,"event":"click"}'
    path = _write(tmp_path / "in.jsonl", [first, again, changed])
    with EventLog(tmp_path / "log.db") as log:
        assert log.ingest_jsonl(path).events == 1
        dup, other = log.dead_letters()
        assert dup.raw == again and other.raw == changed
        assert dup.reason == (
            "duplicate (device_id, seq) = ('d1', 1): already in the log at offset 1"
        )
        assert other.reason.endswith("with other content (that one is kept)")


def test_ingest_accepts_a_utf8_byte_order_mark_on_line_1(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "".join(e.to_json() + "\n" for e in _events(2)).encode())
    with EventLog(tmp_path / "log.db") as log:
        report = log.ingest_jsonl(path)
        assert (report.events, report.dead_letters) == (2, 0)
    assert list(read_jsonl(path)) == _events(2)


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_in_args_are_refused_as_not_json(tmp_path: Path, number: str) -> None:
    args = '{"p":[1,{"q":' + number + "}]}"
    bad = '{"device_id":"d1","seq":2,"ts":2,"event":"click","args":' + args + "}"
    path = _write(tmp_path / "in.jsonl", [_events(1)[0].to_json(), bad])
    with EventLog(tmp_path / "log.db") as log:
        report = log.ingest_jsonl(path)
        assert (report.events, report.dead_letters) == (1, 1)
        (dead,) = log.dead_letters()
        assert dead.reason == "field 'args.p[1].q': NaN and Infinity are not JSON numbers"
        assert dead.raw == bad
        with pytest.raises(ValidationError, match=r"field 'args.x': NaN and Infinity"):
            log.append(Event("d1", 3, 3, "click", "", {"x": float(number)}))
    with pytest.raises(ValidationError, match=rf"{path}:2: field 'args.p\[1\].q'"):
        list(read_jsonl(path))

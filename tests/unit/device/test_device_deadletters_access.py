"""Issue 13: `walle device deadletters --db DB` names the real reason a database cannot be
read (its directory unwritable or unreachable, the file missing), not "not a walle event
log"."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from walle.cli import cli
from walle.errors import StorageError
from walle.streams.device import EventLog
from walle.streams.events import Event


@pytest.fixture
def folder() -> Iterator[Path]:
    """A folder under /tmp with a dead-lettered log in it (d.db), readable by anyone."""
    path = Path(tempfile.mkdtemp(prefix="walle-dl-", dir="/tmp"))
    path.chmod(0o755)
    with EventLog(path / "d.db") as log:
        log.append(Event("d1", 2, 2, "click"))
        log.append(Event("d1", 1, 1, "click"))  # out of order: one dead letter
    (path / "d.db").chmod(0o644)
    yield path
    path.chmod(0o755)
    shutil.rmtree(path)


def _deadletters_as_nobody(db: Path) -> str:
    """The error `walle device deadletters --db DB` gives a user who is not the owner (root
    reads all)."""
    report = Path(tempfile.mkdtemp(prefix="walle-dl-out-", dir="/tmp")) / "out.json"
    report.parent.chmod(0o777)
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            result = CliRunner().invoke(cli, ["device", "deadletters", "--db", str(db), "--json"])
            error = result.exception
            text = f"{type(error).__name__}: {error}" if error else f"exit 0: {result.output}"
            report.write_text(
                json.dumps({"error": text, "storage": isinstance(error, StorageError)})
            )
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    outcome = json.loads(report.read_text())
    shutil.rmtree(report.parent)
    assert outcome["storage"], outcome["error"]
    return str(outcome["error"])


def test_database_in_an_unwritable_directory_names_the_shm_file(folder: Path) -> None:
    folder.chmod(0o555)
    message = _deadletters_as_nobody(folder / "d.db")
    assert "not a walle event log" not in message
    assert "directory this user cannot write" in message and "-shm" in message


def test_database_in_an_unreachable_directory_names_the_permission(folder: Path) -> None:
    folder.chmod(0o700)
    message = _deadletters_as_nobody(folder / "d.db")
    assert "not a walle event log" not in message and "does not exist" not in message
    assert "cannot reach the database (Permission denied)" in message


def test_missing_database_and_folder_are_named(folder: Path) -> None:
    missing = CliRunner().invoke(cli, ["device", "deadletters", "--db", str(folder / "nope.db")])
    assert isinstance(missing.exception, StorageError)
    assert str(missing.exception) == f"{folder / 'nope.db'}: no such database file"
    directory = CliRunner().invoke(cli, ["device", "deadletters", "--db", str(folder)])
    assert "is a directory" in str(directory.exception)


def test_readable_database_still_lists_its_dead_letters(folder: Path) -> None:
    result = CliRunner().invoke(
        cli, ["device", "deadletters", "--db", str(folder / "d.db"), "--json"]
    )
    assert result.exit_code == 0, result.output
    (record,) = [json.loads(line) for line in result.output.splitlines()]
    assert record["reason"].startswith("out of order: (device_id, seq) = ('d1', 1)")

"""Atomic install of verified bundles on a device, and the ``active`` pointer per task.

Layout under the agent's home directory::

    tasks/<task>/versions/<version>-<digest12>/   unpacked files + manifest.json
    tasks/<task>/active.json                      which version runs, and the one before
    tasks/<task>/.staging-<random>/               an unpack in progress

An unpack writes into a staging directory, fsyncs every file and the directory, then
renames it into ``versions/``; activation writes ``active.json.tmp``, fsyncs it and
``os.replace``-s it over ``active.json``. A kill at any point leaves the previous pointer,
hence the previous version, in force; ``recover()`` sweeps stale staging directories.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Collection
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from walle.deploy.bundle import BundleContents
from walle.deploy.manifest import MANIFEST_NAME, RUNTIME_ABI
from walle.deploy.notification import Notification
from walle.deploy.signing import TrustStore
from walle.deploy.verify import check_bundle, check_notification
from walle.errors import StorageError
from walle.logging import get_logger

_STAGING = ".staging-"
_log = get_logger("deploy.install")


class InstalledVersion(BaseModel):
    """One unpacked version of a task on disk."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int
    digest: str
    dirname: str


class ActiveRecord(InstalledVersion):
    """The content of ``active.json``: the running version and the one it replaced."""

    previous: InstalledVersion | None = None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_synced(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


class Installer:
    """Unpacks bundles and swaps the active pointer of each task under ``home``."""

    def __init__(self, home: Path):
        self.home = home
        self._tasks = home / "tasks"
        self._tasks.mkdir(parents=True, exist_ok=True)

    def recover(self) -> list[Path]:
        """Remove staging directories a killed install left behind; return them."""
        stale = sorted(self._tasks.glob(f"*/{_STAGING}*"))
        for path in stale:
            shutil.rmtree(path, ignore_errors=True)
        return stale

    def tasks(self) -> list[str]:
        """Tasks that have an active version."""
        return sorted(p.parent.name for p in self._tasks.glob("*/active.json"))

    def active(self, task: str) -> ActiveRecord | None:
        """The active record of ``task``, or None when nothing is installed."""
        path = self._tasks / task / "active.json"
        try:
            return ActiveRecord.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise StorageError(f"{path}: unreadable active pointer: {exc}") from exc

    def path_of(self, task: str, installed: InstalledVersion) -> Path:
        """The directory holding an unpacked version."""
        return self._tasks / task / "versions" / installed.dirname

    def is_unpacked(self, task: str, installed: InstalledVersion) -> bool:
        """Whether ``installed``'s directory is on disk with its manifest (not deleted)."""
        return (self.path_of(task, installed) / MANIFEST_NAME).is_file()

    def set_aside_pointer(self, task: str) -> Path:
        """Move an unreadable ``active.json`` to ``active.json.bad`` (kept for a post-mortem)."""
        directory = self._tasks / task
        bad = directory / "active.json.bad"
        os.replace(directory / "active.json", bad)
        return bad

    def unpacked(self, task: str, version: int, digest: str) -> InstalledVersion | None:
        """The version already unpacked on disk (e.g. the target of a rollback), if any."""
        installed = InstalledVersion(
            version=version, digest=digest, dirname=f"{version}-{digest[:12]}"
        )
        return installed if self.is_unpacked(task, installed) else None

    def unpack(self, contents: BundleContents, digest: str) -> InstalledVersion:
        """Write a verified bundle's files durably into ``versions/`` (atomic rename)."""
        manifest = contents.manifest
        installed = InstalledVersion(
            version=manifest.version, digest=digest, dirname=f"{manifest.version}-{digest[:12]}"
        )
        final = self.path_of(manifest.task, installed)
        if final.is_dir():
            return installed
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=_STAGING, dir=final.parent.parent))
        try:
            self._write_files(staging, contents)
            os.rename(staging, final)
            _fsync_dir(final.parent)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            what = f"{manifest.task} v{manifest.version}"
            raise StorageError(f"cannot install {what}: {exc}") from exc
        return installed

    @staticmethod
    def _write_files(staging: Path, contents: BundleContents) -> None:
        files = dict(contents.files)
        files[MANIFEST_NAME] = contents.manifest.to_bytes()
        dirs = {staging}
        for name, data in files.items():
            target = staging / name
            _write_synced(target, data)
            dirs.add(target.parent)
        for directory in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
            _fsync_dir(directory)

    def activate(self, task: str, installed: InstalledVersion) -> ActiveRecord:
        """Make ``installed`` the active version of ``task`` (atomic pointer swap)."""
        current = self.active(task)
        previous = None
        if current is not None and current.dirname != installed.dirname:
            previous = InstalledVersion(**current.model_dump(exclude={"previous"}))
        elif current is not None:
            previous = current.previous
        record = ActiveRecord(**installed.model_dump(), previous=previous)
        self._swap_pointer(task, record)
        return record

    def revert(self, task: str) -> ActiveRecord | None:
        """Point ``task`` back at the version before the active one; None if there was none."""
        current = self.active(task)
        if current is None or current.previous is None:
            (self._tasks / task / "active.json").unlink(missing_ok=True)
            return None
        record = ActiveRecord(**current.previous.model_dump(), previous=None)
        self._swap_pointer(task, record)
        return record

    def failed_digests(self) -> set[str]:
        """Bundles this device refused or rolled back; never tried again.

        An unreadable ``failed.json`` (truncated by a crash, edited by hand) is ignored with
        a warning rather than blocking every install; the next ``mark_failed`` rewrites it.
        """
        path = self.home / "failed.json"
        try:
            digests = json.loads(path.read_bytes())
        except FileNotFoundError:
            return set()
        except (OSError, ValueError) as exc:
            _log.warning("unreadable failed-bundle list ignored", path=str(path), error=str(exc))
            return set()
        if not isinstance(digests, list) or not all(isinstance(d, str) for d in digests):
            _log.warning("failed-bundle list is not a list of digests: ignored", path=str(path))
            return set()
        return set(digests)

    def mark_failed(self, digest: str) -> None:
        """Remember that ``digest`` was refused or failed its health check (atomic write)."""
        path = self.home / "failed.json"
        digests = sorted(self.failed_digests() | {digest})
        _write_synced(path.with_suffix(".tmp"), json.dumps(digests).encode())
        os.replace(path.with_suffix(".tmp"), path)

    def _swap_pointer(self, task: str, record: ActiveRecord) -> None:
        directory = self._tasks / task
        tmp = directory / "active.json.tmp"
        _write_synced(tmp, record.model_dump_json().encode())
        os.replace(tmp, directory / "active.json")
        _fsync_dir(directory)


def accept_release(
    installer: Installer,
    trust: TrustStore,
    note: Notification,
    data: bytes,
    *,
    now: float,
    runtime_abis: Collection[int] = (RUNTIME_ABI,),
) -> ActiveRecord:
    """Verify ``note`` and ``data`` fully, then unpack and activate; refusals write nothing."""
    active = installer.active(note.task)
    check_notification(note, trust, active.version if active else None, now)
    contents = check_bundle(data, note, runtime_abis)
    installed = installer.unpack(contents, note.digest)
    return installer.activate(note.task, installed)

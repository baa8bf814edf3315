"""The on-disk cache of walle.ops (search decisions, device costs): where, locks, publishing.

Entries are JSON files under ``$WALLE_CACHE_DIR`` (default ``~/.cache/walle``). Within a
process one thread computes an entry while the others wanting it wait on its lock
(:func:`key_lock`). Across processes an entry is written to a temp file of its own and
published atomically (:func:`publish`): hard-linked into place when none exists, so the first
process to finish wins and the others adopt its entry; replaced when the entry there is
unreadable or stale, or where the file system has no hard links. A reader sees a whole
entry or none.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from walle.errors import StorageError

T = TypeVar("T")

_KEY_LOCKS: dict[str, threading.Lock] = {}
_KEY_LOCKS_GUARD = threading.Lock()


def cache_dir() -> Path:
    """Where walle.ops keeps its cache (``WALLE_CACHE_DIR`` or ``~/.cache/walle``)."""
    return Path(os.environ.get("WALLE_CACHE_DIR") or Path.home() / ".cache" / "walle")


def key_lock(path: Path) -> threading.Lock:
    """The lock of one cache entry in this process (one computation per entry at a time)."""
    with _KEY_LOCKS_GUARD:
        return _KEY_LOCKS.setdefault(str(path), threading.Lock())


def _reset_locks_after_fork() -> None:
    # A forked child has only the forking thread: locks other threads held stay held there.
    global _KEY_LOCKS_GUARD
    _KEY_LOCKS.clear()
    _KEY_LOCKS_GUARD = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_locks_after_fork)


def publish(path: Path, text: str, read_theirs: Callable[[], T | None], what: str) -> T | None:
    """Publish ``text`` at ``path`` atomically.

    When another process published a valid entry first, ``read_theirs()`` returns it and
    it is returned (theirs wins); otherwise ours is in place and None is returned.
    StorageError (naming ``what`` and the path) when the cache cannot be written.
    """
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{path.stem}.", suffix=".tmp")
        with os.fdopen(fd, "w") as file:
            file.write(text)
        try:
            os.link(tmp, path)  # only if no entry exists: the first process wins
        except FileExistsError:
            theirs = read_theirs()
            if theirs is not None:
                return theirs
            os.replace(tmp, path)  # the entry there is unreadable or stale
        except OSError:  # a file system without hard links
            os.replace(tmp, path)
    except OSError as exc:
        raise StorageError(f"cannot write {what} {path}: {exc}") from exc
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return None

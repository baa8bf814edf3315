"""Fetching one bundle from the store for the agent: resume, backoff, transport faults.

Every store fault is a transport fault (``TransportFault``), retried and never remembered: a
cut or a hang (per-read timeout), more bytes than announced, a 206 that does not start where
asked, resumed bytes (a ``.part`` torn by a crash) that do not hash to the digest. The
``.part`` is then discarded and fetched again from byte 0, so only the bytes of one whole
download reach verification, where a mismatch is a content failure. A newer notification for
the task (``superseded``) stops a download between chunks (``Superseded``).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp

from walle.deploy.bundle import sha256_hex
from walle.deploy.errors import StoreError
from walle.deploy.notification import Notification
from walle.logging import get_logger

if TYPE_CHECKING:
    from walle.deploy.agent import AgentSettings

_log = get_logger("deploy.agent")
_CHUNK = 64 * 1024


class TransportFault(Exception):
    """A download or answer the store/gateway got wrong; retried, never remembered."""


class Superseded(Exception):
    """A newer notification for the task arrived while this one was downloading."""


def _range_start(resp: aiohttp.ClientResponse) -> int:
    """The first byte of a 206 answer (``Content-Range: bytes START-END/TOTAL``)."""
    value = resp.headers.get("Content-Range", "")
    unit, _, rest = value.partition(" ")
    first = rest.split("-", 1)[0]
    if unit != "bytes" or not first.isdigit():
        raise TransportFault(f"206 answer with Content-Range {value!r}")
    return int(first)


class BundleDownloader:
    """Downloads bundles into ``HOME/downloads/<digest>.part`` for one agent."""

    def __init__(
        self,
        settings: AgentSettings,
        session: Callable[[], aiohttp.ClientSession],
        superseded: Callable[[Notification], bool],
        stats: Counter[str],
    ):
        self.settings = settings
        self._session = session
        self._superseded = superseded
        self.stats = stats

    def part_path(self, digest: str) -> Path:
        """Where the bytes of ``digest`` collect while they download."""
        return self.settings.home / "downloads" / f"{digest}.part"

    async def download(self, note: Notification) -> bytes:
        """The bundle's ``note.size`` bytes, resuming with Range after a cut.

        Retries transport faults with backoff and jitter up to ``download_attempts`` times,
        then raises ``StoreError``; ``Superseded`` when a newer notification came.
        """
        part = self.part_path(note.digest)
        part.parent.mkdir(parents=True, exist_ok=True)
        fresh = False  # whether the .part holds one response's bytes from byte 0
        delay = self.settings.reconnect_min_s
        for _attempt in range(self.settings.download_attempts):
            if self._superseded(note):
                raise Superseded()
            have = part.stat().st_size if part.exists() else 0
            try:
                if have < note.size:
                    fresh = await self._fetch(note, part, have) or (fresh and have > 0)
                return await self._complete(note, part, fresh)
            except (aiohttp.ClientError, OSError, TimeoutError, TransportFault) as exc:
                self.stats["download_retries"] += 1
                _log.info("download fault: retrying", task=note.task, have=have, error=repr(exc))
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, self.settings.reconnect_max_s)
        have = part.stat().st_size if part.exists() else 0
        raise StoreError(
            f"bundle {note.digest[:12]} from {note.url}: {have} of {note.size} bytes after "
            f"{self.settings.download_attempts} attempts"
        )

    async def _complete(self, note: Notification, part: Path, fresh: bool) -> bytes:
        """The finished download; a short, long or (unless fresh) mismatching .part is a fault."""
        data = await asyncio.to_thread(part.read_bytes)
        if len(data) != note.size:
            self._discard(part, f"{len(data)} bytes, the release says {note.size}")
        if not fresh and sha256_hex(data) != note.digest:  # resumed bytes: maybe torn
            self._discard(part, "resumed bytes do not hash to the digest")
        return data

    def _discard(self, part: Path, why: str) -> None:
        part.unlink(missing_ok=True)
        self.stats["downloads_discarded"] += 1
        raise TransportFault(f"{part.name} discarded: {why}")

    async def _fetch(self, note: Notification, part: Path, have: int) -> bool:
        """One request appending to ``part`` from byte ``have``; True if it began at byte 0."""
        headers = {"Range": f"bytes={have}-"} if have else {}
        timeout = aiohttp.ClientTimeout(
            total=self.settings.download_timeout_s,
            sock_connect=5,
            sock_read=self.settings.download_read_timeout_s,
        )
        async with self._session().get(note.url, headers=headers, timeout=timeout) as resp:
            self.stats["store_requests"] += 1
            if have:
                self.stats["range_requests"] += 1
            if resp.status not in (200, 206):
                raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status)
            start = _range_start(resp) if resp.status == 206 else 0
            if start not in (0, have):
                self._discard(part, f"the store answered from byte {start}, asked {have}")
            with open(part, "ab" if start else "wb") as handle:
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    if self._superseded(note):
                        raise Superseded()
                    handle.write(chunk)
                    if handle.tell() > note.size:
                        handle.close()
                        self._discard(part, f"the store sent over {note.size} bytes")
            return start == 0

"""Finishing batches in order, off the engine's path.

A batch is finished in three steps that each wait on the broker: its outputs are
acknowledged, then its devices' states are in the changelog, then its input offsets are
acknowledged. Waiting for those round trips between batches left the worker idle most of
the time, so the agent hands each processed batch to a ``BatchCommitter`` and goes on with
the next one. The committer runs the steps batch after batch in the order the batches were
taken, so the per-batch order that the at-least-once argument needs is kept: a batch's
state never reaches the changelog before its outputs were acknowledged, and its offsets are
never acknowledged before its state was written. At most ``depth`` batches wait; the agent
then waits too (back-pressure), and a failed step stops the agent with its error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

Finish = Callable[[Any], Awaitable[None]]


class BatchCommitter:
    """Runs ``finish(batch)`` for each submitted batch, one at a time, in submission order."""

    def __init__(self, finish: Finish, depth: int) -> None:
        self._finish = finish
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=depth)
        self._task: asyncio.Task[None] | None = None

    def _worker(self) -> asyncio.Task[None]:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
        return self._task

    async def _run(self) -> None:
        while True:
            batch = await self._queue.get()
            await self._finish(batch)
            self._queue.task_done()

    async def submit(self, batch: Any) -> None:
        """Queue a processed batch; waits while ``depth`` batches are unfinished.

        Raises the error of a failed finish step (every later batch stays unfinished,
        so its offsets are never acknowledged).
        """
        worker = self._worker()
        if worker.done():
            worker.result()
        put = asyncio.ensure_future(self._queue.put(batch))
        done, _ = await asyncio.wait({put, worker}, return_when=asyncio.FIRST_COMPLETED)
        if put not in done:
            put.cancel()
            worker.result()
            raise RuntimeError("the batch committer stopped")  # pragma: no cover

    async def drain(self) -> None:
        """Wait until every submitted batch is finished (raises a finish step's error)."""
        worker = self._worker()
        join = asyncio.ensure_future(self._queue.join())
        done, _ = await asyncio.wait({join, worker}, return_when=asyncio.FIRST_COMPLETED)
        if join not in done:
            join.cancel()
            worker.result()

    def close(self) -> None:
        """Stop finishing batches (the unfinished ones stay unacknowledged)."""
        if self._task is not None:
            self._task.cancel()

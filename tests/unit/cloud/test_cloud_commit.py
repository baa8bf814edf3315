"""The batch committer finishes batches in submission order, bounds the backlog and stops
the agent with a failed step's error."""

from __future__ import annotations

import asyncio

import pytest

from walle.streams.cloud.commit import BatchCommitter


def test_batches_finish_one_at_a_time_in_order_even_when_earlier_ones_are_slower():
    finished: list[int] = []
    running: list[int] = []

    async def finish(batch: int) -> None:
        running.append(batch)
        assert len(running) == 1, "two batches finishing at once"
        await asyncio.sleep(0.02 if batch % 2 == 0 else 0.0)
        running.remove(batch)
        finished.append(batch)

    async def main() -> None:
        committer = BatchCommitter(finish, depth=3)
        for batch in range(10):
            await committer.submit(batch)
        await committer.drain()
        committer.close()

    asyncio.run(main())
    assert finished == list(range(10))


def test_submit_waits_while_depth_batches_are_unfinished():
    async def main() -> int:
        gate = asyncio.Event()

        async def finish(batch: int) -> None:
            await gate.wait()

        committer = BatchCommitter(finish, depth=2)
        for batch in range(3):  # one being finished, two queued
            await committer.submit(batch)
        blocked = asyncio.ensure_future(committer.submit(3))
        await asyncio.sleep(0.05)
        was_blocked = not blocked.done()
        gate.set()
        await blocked
        await committer.drain()
        committer.close()
        return was_blocked

    assert asyncio.run(main())


def test_a_failed_finish_step_is_raised_to_the_submitter_and_later_batches_stay_unfinished():
    finished: list[int] = []

    async def finish(batch: int) -> None:
        if batch == 1:
            raise ConnectionError("changelog write failed")
        finished.append(batch)

    async def main() -> None:
        committer = BatchCommitter(finish, depth=1)
        try:
            for batch in range(5):
                await committer.submit(batch)
                await asyncio.sleep(0.01)
        finally:
            committer.close()

    with pytest.raises(ConnectionError, match="changelog write failed"):
        asyncio.run(main())
    assert finished == [0]

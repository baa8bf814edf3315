"""The worker's Kafka transport: faust's aiokafka driver, with two changes.

- Fetch wait: faust 0.15 creates its worker consumer with a fixed 1.5 s
  ``fetch_max_wait_ms``. A broker that answers a fetch only once data arrived or that wait
  ran out (the embedded broker does) then holds each produced event for up to that long
  before the worker sees it. The worker sets its own (``CloudSettings.fetch_max_wait_ms``).
- Delivery: faust hands each fetched message to its streams by racing the delivery against
  "flow suspended" (a rebalance), "stopped" and "crashed", with four new tasks and an
  ``asyncio.wait`` per message: about a third of what a faust agent costs per message.
  ``_Consumer._drain_messages`` keeps that contract with one task per message, raced
  against one interruption armed per fetched batch; a message fetched while the flow is
  suspended is dropped (faust seeks every partition before it resumes the flow, and
  clears what its streams had buffered, so it is fetched again).
"""

from __future__ import annotations

import asyncio
from typing import Any

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka

# How many messages the drain loop delivers before it lets other tasks run.
_YIELD_EVERY = 100


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # read by AIOKafkaConsumer.start() when it builds its fetcher
        consumer._fetch_max_wait_ms = transport.fetch_max_wait_ms
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:
        """Fetch records and deliver each to faust's streams, in offset order.

        The same contract as faust's loop: messages below a partition's read offset are
        dropped (already delivered), a jump in offsets is recorded as a gap so commits can
        pass it, commits run every ``broker_commit_every`` acks, and a delivery still
        waiting (a full stream buffer) is abandoned when the flow is suspended or the
        consumer stops; the message is fetched again after the rebalance's seek.
        """
        fetcher_stopped = fetcher._stopped.is_set
        read_offsets = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        try:
            while not (self._stopped.is_set() or fetcher_stopped()):
                self.diag.set_flag(CONSUMER_FETCHING)
                records = self.getmany(timeout=1.0)
                await self.sleep(0)  # getmany may return at once, again and again
                if self.should_stop:
                    continue
                try:
                    await self._deliver_all(records, read_offsets, acks_enabled_for)
                finally:
                    self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if not self.transport.app.should_stop:
                raise
        except asyncio.CancelledError:
            if not self.transport.app.should_stop:
                raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    def _flow_blocked(self) -> bool:
        return self.suspend_flow.is_set() or self._stopped.is_set() or self._crashed.is_set()

    async def _deliver_all(self, records: Any, read_offsets: Any, acks_enabled_for: Any) -> None:
        # Armed when the first message is delivered, not before: getmany may wait for a
        # suspended flow to resume before it yields, and a wait armed while the flow was
        # suspended would have fired already.
        interrupted: asyncio.Future[Any] | None = None
        delivered = 0
        try:
            async for tp, message in records:
                offset = message.offset
                last = read_offsets[tp]
                if last is not None and offset < last:
                    continue  # delivered before (a re-fetch after a seek)
                if last and offset - last > 1 and acks_enabled_for(message.topic):
                    await self._add_gap(tp, last + 1, offset)
                commit_every = self._commit_every
                if commit_every is not None and self._n_acked >= commit_every:
                    self._n_acked = 0
                    await self.commit()
                if not self._flow_blocked():  # else dropped: fetched again after the seek
                    if interrupted is None or interrupted.done():
                        interrupted = asyncio.ensure_future(
                            self.wait_first(self.suspend_flow.wait())
                        )
                    delivery = asyncio.ensure_future(self.callback(message))
                    await asyncio.wait((delivery, interrupted), return_when=asyncio.FIRST_COMPLETED)
                    if delivery.done():
                        delivery.result()  # a delivery error stops the consumer, as in faust
                    else:
                        delivery.cancel()
                read_offsets[tp] = offset
                delivered += 1
                if delivered % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)
        finally:
            if interrupted is not None:
                interrupted.cancel()


class WorkerTransport(faust_aiokafka.Transport):
    """faust's aiokafka transport with the worker's fetch wait and leaner delivery."""

    Consumer = _Consumer

    def __init__(self, *args: Any, fetch_max_wait_ms: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fetch_max_wait_ms = fetch_max_wait_ms


def install_transport(faust_app: Any, fetch_max_wait_ms: int) -> None:
    """Give ``faust_app`` the worker transport (before it starts or creates its consumer)."""
    faust_app.transport = WorkerTransport(
        faust_app.conf.broker_consumer, faust_app, fetch_max_wait_ms=fetch_max_wait_ms
    )

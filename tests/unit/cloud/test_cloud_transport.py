"""The worker's consumer uses the configured fetch wait, not faust's fixed 1.5 s."""

from __future__ import annotations

import asyncio

from walle.streams import App
from walle.streams.cloud.runtime import build_faust_app
from walle.streams.cloud.settings import CloudSettings
from walle.streams.cloud.transport import WorkerTransport


def test_the_worker_consumer_is_built_with_the_configured_fetch_wait(tmp_path):
    async def build() -> int:
        settings = CloudSettings(fetch_max_wait_ms=7, datadir=tmp_path)
        faust_app = build_faust_app(App("fetch-wait"), settings)
        assert isinstance(faust_app.transport, WorkerTransport)
        thread = faust_app.consumer._new_consumer_thread()
        consumer = thread._create_worker_consumer(faust_app.transport)
        return consumer._fetch_max_wait_ms

    assert asyncio.run(build()) == 7

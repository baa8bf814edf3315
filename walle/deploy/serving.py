"""Start and stop aiohttp applications on loopback (for the CLI, tests and the fleet)."""

from __future__ import annotations

import asyncio
import signal

from aiohttp import web


class RunningSite:
    """An aiohttp application listening on ``host:port``; ``url`` is its base URL."""

    def __init__(self, runner: web.AppRunner, host: str, port: int):
        self._runner = runner
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8080``."""
        return f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        """Close connections and stop listening."""
        await self._runner.cleanup()


async def start_site(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> RunningSite:
    """Serve ``app`` on ``host:port`` (port 0 picks a free one) and return it."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    return RunningSite(runner, host, bound)


async def serve_forever(app: web.Application, host: str, port: int, on_ready: object) -> None:
    """Serve ``app`` until SIGINT/SIGTERM; ``on_ready(site)`` is called once listening."""
    site = await start_site(app, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if callable(on_ready):
        on_ready(site)
    try:
        await stop.wait()
    finally:
        await site.stop()

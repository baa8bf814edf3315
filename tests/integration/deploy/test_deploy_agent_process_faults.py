"""Fault injection against the real ``walle agent`` process (issue 14, item 2).

The agent runs as its own process with its default settings; a hostile gateway and
hostile stores run on loopback in the test (``_hostile.py``). In turn they send: refused
streams and polling answers of ``null``, ``5`` and nesting past any parser's limit; an SSE
line of 9 MiB, junk JSON, nesting again; v2 from a store serving wrong bytes of the right
size (a content failure: refused); then the legitimate v3 from a store that streams too
much, cuts the body, answers a Range request from the wrong byte and hangs, before it
behaves. The process must stay up the whole run, keep v1 running meanwhile (every report
says what runs) and install v3 once the store is good.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

from tests._wait import until
from tests.integration.deploy._hostile import HostileGateway, HostileStore, bundle_note, deep_json

_WALLE = [sys.executable, "-c", "from walle.cli import main; main()"]


def test_agent_process_survives_a_hostile_gateway_and_store(
    tmp_path, key_dir, private, make_bundle
):
    v1, v2 = make_bundle(1), make_bundle(2)
    v3 = make_bundle(3, resources={"model.bin": bytes(range(256)) * 2000})
    attrs = tmp_path / "phone.json"
    attrs.write_text(json.dumps({"device_id": "phone-1"}))
    log = tmp_path / "agent.log"
    polls = [b"null", b"5", deep_json()]
    gateway = HostileGateway(polls=list(polls), refuse_streams=len(polls))

    async def scenario(proc: subprocess.Popen, url: str) -> None:
        store1 = await HostileStore(v1.path.read_bytes()).start()
        store2 = await HostileStore(v2.path.read_bytes(), ["garbage"]).start()
        modes = ["oversize", "cut", "wrong_start", "hang", "cut", "from_zero"]
        store3 = await HostileStore(v3.path.read_bytes(), modes).start()
        await until(lambda: gateway.connects >= 1, 60, "the stream opened after the bad polls")
        assert proc.poll() is None
        gateway.push(bundle_note(v1, private, store1.url))
        await until(lambda: (1, "installed") in gateway.states(), 30, "v1 installed")
        gateway.push(b"x" * (9 * 1024 * 1024))
        gateway.push(b"{junk")
        gateway.push(deep_json())
        gateway.push(bundle_note(v2, private, store2.url))
        await until(lambda: (2, "refused") in gateway.states(), 30, "v2's wrong bytes refused")
        assert proc.poll() is None
        gateway.push(bundle_note(v3, private, store3.url))
        await until(lambda: (3, "installed") in gateway.states(), 90, "v3 installed")
        assert proc.poll() is None
        assert gateway.connects == 1  # no bad input broke the stream
        assert [r["state"] for r in gateway.reports] == ["installed", "refused", "installed"]
        assert [r["running"] for r in gateway.reports] == [1, 1, 3]  # v1 ran meanwhile
        assert gateway.reports[1]["reason"] == "digest-mismatch"
        assert store3.requests[:2] == [None, None]  # the oversize answer was discarded
        assert store3.requests[-1] is not None  # a Range request, answered from byte 0
        assert len(store3.requests) == len(modes)  # ... with the whole bundle: done
        for store in (store1, store2, store3):
            await store.stop()

    async def main() -> None:
        from walle.deploy.serving import start_site

        site = await start_site(gateway.app())
        command = [
            *_WALLE,
            "--log-level",
            "info",
            "deploy",
            "agent",
            "--device-attrs",
            str(attrs),
            "--gateway",
            site.url,
            "--home",
            str(tmp_path / "home"),
            "--trust",
            str(key_dir),
        ]
        with open(log, "wb") as out:
            proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        try:
            await scenario(proc, site.url)
        finally:
            proc.terminate()
            await asyncio.to_thread(proc.wait, 10)
            await site.stop()

    asyncio.run(asyncio.wait_for(main(), 150))
    text = log.read_text()
    assert text.count("bad polling answer skipped") == len(polls)
    assert "notification over the size cap skipped" in text
    assert text.count("bad notification skipped") == 2  # the junk and the deep nesting
    assert "download fault: retrying" in text
    assert "Traceback" not in text

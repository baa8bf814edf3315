"""The gateway and the rollout controller have no unverified mode (issue 14, "Channel").

Constructing either without a trust store or an enrolment secret is a TypeError that says
what is missing; a controller whose key the root does not let sign stage changes is refused
up front. Fed records directly (the reader thread's handler interface, no broker), both drop
what the root's roles did not sign and reports without a device MAC, and keep what they did;
so does the gateway's rollout dashboard.
The same drops through a real broker and real HTTP are in
tests/integration/deploy/test_deploy_channel_security.py
(test_unsigned_records_are_dropped_by_gateway_and_controller).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from walle.deploy.channel import ChannelTopics, StatusReport
from walle.deploy.dashboard import RolloutBoard
from walle.deploy.enrolment import Enrolment, report_mac
from walle.deploy.gateway import Gateway
from walle.deploy.rollout import RolloutWatcher
from walle.deploy.signing import TrustStore, load_private_key
from walle.errors import ValidationError

BOOTSTRAP = "127.0.0.1:9"  # never contacted: nothing here starts a reader thread
TOPICS = ChannelTopics.prefixed("unit")
ENROLMENT = Enrolment(bytes(range(32)))


def _watcher(keys: Path, trust: TrustStore, key: str = "rollout") -> RolloutWatcher:
    private = load_private_key(keys / f"{key}.key")
    return RolloutWatcher(BOOTSTRAP, TOPICS, private, trust=trust, enrolment=ENROLMENT)


def test_gateway_without_trust_or_enrolment_is_a_type_error(trust):
    with pytest.raises(TypeError, match="required keyword-only arguments: 'trust' and 'enrolment'"):
        Gateway(BOOTSTRAP, TOPICS)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"Gateway needs trust=TrustStore .*got NoneType"):
        Gateway(BOOTSTRAP, TOPICS, trust=None, enrolment=ENROLMENT)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"Gateway needs enrolment=Enrolment .*got NoneType"):
        Gateway(BOOTSTRAP, TOPICS, trust=trust, enrolment=None)  # type: ignore[arg-type]


def test_watcher_without_trust_or_enrolment_is_a_type_error(keys, trust):
    private = load_private_key(keys / "rollout.key")
    with pytest.raises(TypeError, match="required keyword-only arguments: 'trust' and 'enrolment'"):
        RolloutWatcher(BOOTSTRAP, TOPICS, private)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"RolloutWatcher needs trust=TrustStore .*got NoneType"):
        RolloutWatcher(BOOTSTRAP, TOPICS, private, trust=None, enrolment=ENROLMENT)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"RolloutWatcher needs enrolment=Enrolment .*got str"):
        RolloutWatcher(BOOTSTRAP, TOPICS, private, trust=trust, enrolment="s")  # type: ignore[arg-type]


def test_watcher_key_must_hold_the_rollout_or_release_role(tmp_path, keys, trust):
    with pytest.raises(
        ValidationError, match=r"may not sign stage changes in root v1 \(it holds root\)"
    ):
        _watcher(keys, trust, "root")
    stranger = tmp_path / "stranger"
    with pytest.raises(ValidationError, match="it is revoked or was never trusted"):
        _watcher(stranger, trust, "evil")
    assert _watcher(keys, trust).trust is trust  # the rollout key
    assert _watcher(keys, trust, "new").trust is trust  # a release key may sign steps too


def test_gateway_drops_unsigned_expired_and_strangers_records(
    tmp_path, keys, trust, built, release
):
    gateway = Gateway(BOOTSTRAP, TOPICS, trust=trust, enrolment=ENROLMENT)
    note = release(built(1))
    attacks = [
        note.model_copy(update={"release_signatures": (), "signature": None}),  # stripped
        release(built(2), key=tmp_path / "stranger" / "evil.key"),  # a key the root never named
        release(built(3), now=time.time() - 7200, ttl_s=3600),  # signed, expired
    ]
    gateway.on_start()
    for offset, attack in enumerate(attacks):
        gateway.on_record(TOPICS.releases, b"demo", attack.to_bytes(), offset)
    assert gateway.counters["dropped_records"] == 3
    gateway.on_record(TOPICS.releases, b"demo", note.to_bytes(), 3)
    assert gateway.counters["dropped_records"] == 3  # the signed one passes


def test_watcher_drops_unsigned_notes_and_unauthenticated_reports(keys, trust, built, release):
    watcher = _watcher(keys, trust)
    note = release(built(1))
    stripped = note.model_copy(update={"release_signatures": (), "signature": None, "seq": 2})
    report = StatusReport(
        device_id="d1", task="demo", version=1, state="installed", digest=note.digest, ts=1
    )
    signed = report.model_copy(update={"mac": report_mac(ENROLMENT.device_key("d1"), report)})
    forged = report.model_copy(update={"device_id": "d2", "mac": signed.mac})
    watcher.on_start()
    watcher.on_record(TOPICS.releases, b"demo", stripped.to_bytes(), 0)
    assert watcher.dropped == 1 and watcher.controller.current == {}
    watcher.on_record(TOPICS.releases, b"demo", note.to_bytes(), 1)
    assert watcher.controller.current == {"demo": note}
    for offset, unauthenticated in enumerate((report, forged)):
        watcher.on_record(
            TOPICS.status, b"demo/x", unauthenticated.model_dump_json().encode(), offset
        )
    assert watcher.dropped == 3
    assert watcher.controller.tally("demo").installed == 0
    watcher.on_record(TOPICS.status, b"demo/d1", signed.model_dump_json().encode(), 2)
    assert watcher.dropped == 3 and watcher.controller.tally("demo").installed == 1


def test_dashboard_board_shows_only_verified_records(trust, built, release):
    with pytest.raises(TypeError, match="required keyword-only arguments: 'trust' and 'enrolment'"):
        RolloutBoard(BOOTSTRAP, TOPICS)  # type: ignore[call-arg]
    board = RolloutBoard(BOOTSTRAP, TOPICS, trust=trust, enrolment=ENROLMENT)
    note = release(built(1))
    stripped = note.model_copy(update={"release_signatures": (), "signature": None, "seq": 2})
    report = StatusReport(
        device_id="d1", task="demo", version=1, state="failed", digest=note.digest, ts=1
    )
    signed = report.model_copy(update={"mac": report_mac(ENROLMENT.device_key("d1"), report)})
    board.on_start()
    board.on_record(TOPICS.history, b"demo", stripped.to_bytes(), 0)
    assert board.snapshot(0)["tasks"] == [] and board.dropped == 1
    board.on_record(TOPICS.history, b"demo", note.to_bytes(), 1)
    board.on_record(TOPICS.status, b"demo/d1", report.model_dump_json().encode(), 0)
    (task,) = board.snapshot(0)["tasks"]
    assert (task["version"], task["failed"], board.dropped) == (1, 0, 2)  # no forged failure
    board.on_record(TOPICS.status, b"demo/d1", signed.model_dump_json().encode(), 1)
    assert board.snapshot(0)["tasks"][0]["failed"] == 1

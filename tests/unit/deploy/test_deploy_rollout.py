"""The rollout controller's decisions, from literal notifications and reports (no broker)."""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from walle.deploy.channel import StatusReport
from walle.deploy.notification import make_notification
from walle.deploy.policy import (
    BUCKETS,
    ReleasePolicy,
    Stages,
    bucket,
    decide_stage,
    in_rollout,
    in_stage_band,
    stage_band,
)
from walle.deploy.rollout import RolloutController

DIGEST = "ab" * 32
OTHER = "cd" * 32
IDS = [f"dev-{i}" for i in range(400)]
_KEY = Ed25519PrivateKey.generate()


def _staged(stage: int = 0, *, min_reports: int = 3, paused: bool = False, version: int = 2):
    stages = Stages(
        percentages=(10, 50, 100), advance_success_rate=0.9, halt_failure_rate=0.2,
        min_reports=min_reports,
    )  # fmt: skip
    return make_notification(
        task="demo",
        version=version,
        digest=DIGEST,
        size=10,
        url="http://127.0.0.1:1/x",
        private=_KEY,
        bundle_signature=None,
        policy=ReleasePolicy(stages=stages, stage=stage, salt="s"),
        paused=paused,
    )


def _report(device: str, state: str = "installed", digest: str = DIGEST, version: int = 2):
    return StatusReport(
        device_id=device, task="demo", version=version, state=state, digest=digest,
        ts=time.time(),
    )  # fmt: skip


def _band(note, stage: int) -> list[str]:
    return [d for d in IDS if in_stage_band(d, note.policy, stage)]


def test_stage_bands_partition_the_buckets():
    policy = _staged().policy
    bands = [stage_band(policy, k) for k in range(3)]
    assert bands == [(0, 1000), (1000, 5000), (5000, BUCKETS)]
    assert stage_band(ReleasePolicy()) == (0, BUCKETS)


@given(st.text(min_size=1, max_size=12), st.integers(0, 2))
def test_a_device_is_in_one_band_and_in_the_rollout_from_that_stage_on(device_id, stage):
    note = _staged(stage)
    first = [k for k in range(3) if in_stage_band(device_id, note.policy, k)]
    assert len(first) == 1
    assert (first[0] <= stage) == in_rollout(device_id, "s", note.policy.effective_percentage)
    assert bucket(device_id, "s") < stage_band(note.policy, first[0])[1]


def test_decide_stage_counts_reports_of_the_current_stage():
    policy = _staged(1).policy
    assert decide_stage(policy, installed=40, failed=0, stage_reports=2) == "hold"
    assert decide_stage(policy, installed=40, failed=0, stage_reports=3) == "advance"
    assert decide_stage(policy, installed=40, failed=20, stage_reports=0) == "halt"


def test_controller_advances_once_the_stage_has_enough_successes():
    controller = RolloutController()
    note = _staged(0)
    controller.observe_release(note)
    band = _band(note, 0)
    assert len(band) >= 3
    for device in band[:2]:
        controller.observe_report(_report(device))
    assert controller.actions() == []
    controller.observe_report(_report(band[2]))
    (action,) = controller.actions()
    assert action.decision == "advance"
    assert (action.tally.installed, action.tally.failed, action.tally.stage_reports) == (3, 0, 3)
    assert "-> advance" in action.describe()


def test_previous_stage_reports_do_not_advance_the_next_stage():
    controller = RolloutController()
    note = _staged(0)
    controller.observe_release(note)
    for device in _band(note, 0):
        controller.observe_report(_report(device))
    controller.observe_release(_staged(1))
    assert controller.actions() == []  # stage 2's own devices have not reported yet
    for device in _band(note, 1)[:3]:
        controller.observe_report(_report(device))
    assert [a.decision for a in controller.actions()] == ["advance"]


def test_controller_halts_when_failures_cross_the_threshold():
    controller = RolloutController()
    note = _staged(0, min_reports=100)
    controller.observe_release(note)
    band = _band(note, 0)
    for device in band[:8]:
        controller.observe_report(_report(device))
    controller.observe_report(_report(band[8], "rolled_back"))
    assert controller.actions() == []  # 1 of 9 failed: 11% is under 20%
    controller.observe_report(_report(band[9], "download_failed"))
    controller.observe_report(_report(band[10], "refused"))
    (action,) = controller.actions()
    assert action.decision == "halt" and action.tally.failed == 3


@pytest.mark.parametrize(
    ("report", "counted"),
    [
        (dict(digest=OTHER), False),  # another release of the task
        (dict(version=1), False),
        (dict(state="failed"), True),
    ],
)
def test_only_reports_on_the_release_in_force_count(report, counted):
    controller = RolloutController()
    note = _staged(0)
    controller.observe_release(note)
    device = _band(note, 0)[0]
    controller.observe_report(_report(device, **{"state": "installed", **report}))
    tally = controller.tally("demo")
    assert (tally.installed + tally.failed == 1) is counted


def test_last_report_per_device_wins_and_paused_releases_hold():
    controller = RolloutController()
    note = _staged(0, min_reports=1)
    controller.observe_release(note)
    device = _band(note, 0)[0]
    controller.observe_report(_report(device, "download_failed"))
    controller.observe_report(_report(device, "installed"))
    assert [a.decision for a in controller.actions()] == ["advance"]
    controller.observe_release(_staged(0, min_reports=1, paused=True))
    assert controller.actions() == []
    assert controller.decide("demo").decision == "hold"

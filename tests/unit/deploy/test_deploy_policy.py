"""Policies: targeting matches a naive oracle; bucketing is stable and uniform; stages move."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.version import Version

from walle.deploy.errors import PolicyError
from walle.deploy.policy import (
    DeviceAttrs,
    ReleasePolicy,
    Stages,
    Targeting,
    bucket,
    decide_stage,
    in_rollout,
    load_policy,
)

_OS = st.sampled_from(["android", "ios", "harmony"])
_VERSIONS = st.tuples(st.integers(0, 5), st.integers(0, 9)).map(lambda t: f"{t[0]}.{t[1]}")
_NAMES = st.sampled_from(["a", "b", "c", "d"])
_IDS = st.text("0123456789abcdef", min_size=1, max_size=12)


@st.composite
def _devices(draw: st.DrawFn) -> DeviceAttrs:
    return DeviceAttrs(
        device_id=draw(_IDS),
        app_version=draw(st.none() | _VERSIONS),
        os=draw(st.none() | _OS),
        os_version=draw(st.none() | _VERSIONS),
        model=draw(st.none() | _NAMES),
        tier=draw(st.none() | _NAMES),
        region=draw(st.none() | _NAMES),
        user_group=draw(st.none() | _NAMES),
    )


def _opt_set(elements: st.SearchStrategy[str]) -> st.SearchStrategy[tuple[str, ...] | None]:
    return st.none() | st.lists(elements, min_size=1, max_size=3, unique=True).map(tuple)


@st.composite
def _targetings(draw: st.DrawFn) -> Targeting:
    low, high = sorted(draw(st.lists(_VERSIONS, min_size=2, max_size=2)), key=Version)
    return Targeting(
        app_version=draw(st.sampled_from([None, f">={low},<{high}", f">={low}"])),
        os=draw(_opt_set(_OS)),
        os_version=draw(st.sampled_from([None, f"<{high}"])),
        models=draw(_opt_set(_NAMES)),
        tiers=draw(_opt_set(_NAMES)),
        regions=draw(_opt_set(_NAMES)),
        user_groups=draw(_opt_set(_NAMES)),
        devices=draw(_opt_set(_IDS)),
    )


def _oracle(t: Targeting, d: DeviceAttrs) -> bool:
    """Naive reading of the rules: each given criterion must hold; missing attrs fail."""

    def version_ok(spec: str | None, value: str | None) -> bool:
        if spec is None:
            return True
        if value is None:
            return False
        v = Version(value)
        for clause in spec.split(","):
            op, bound = (clause[:2], clause[2:]) if clause[1] == "=" else (clause[:1], clause[1:])
            ok = {">=": v >= Version(bound), "<": v < Version(bound)}[op]
            if not ok:
                return False
        return True

    sets = [
        (t.os, d.os),
        (t.models, d.model),
        (t.tiers, d.tier),
        (t.regions, d.region),
        (t.user_groups, d.user_group),
        (t.devices, d.device_id),
    ]
    return (
        all(allowed is None or value in allowed for allowed, value in sets)
        and version_ok(t.app_version, d.app_version)
        and version_ok(t.os_version, d.os_version)
    )


@settings(max_examples=300, deadline=None)
@given(_targetings(), _devices())
def test_targeting_matches_oracle(targeting, device):
    assert targeting.matches(device) == _oracle(targeting, device)


@settings(max_examples=200, deadline=None)
@given(_IDS, st.text(max_size=8), st.floats(0, 100), st.floats(0, 100))
def test_raising_percentage_keeps_everyone_in(device_id, salt, p1, p2):
    low, high = sorted((p1, p2))
    if in_rollout(device_id, salt, low):
        assert in_rollout(device_id, salt, high)
    assert in_rollout(device_id, salt, 100.0)
    assert not in_rollout(device_id, salt, 0.0)


@settings(max_examples=20, deadline=None)
@given(st.text(max_size=8), st.sampled_from([1.0, 5.0, 25.0, 50.0, 90.0]))
def test_bucketing_is_uniform(salt, percentage):
    """20,000 devices: the share admitted is within 5 standard deviations of the target."""
    n = 20_000
    admitted = sum(in_rollout(f"dev-{i}", salt, percentage) for i in range(n))
    p = percentage / 100
    sigma = (n * p * (1 - p)) ** 0.5
    assert abs(admitted - n * p) <= 5 * sigma + 1


def test_salt_reshuffles_buckets():
    ids = [f"dev-{i}" for i in range(1000)]
    same = sum(bucket(i, "r1") == bucket(i, "r2") for i in ids)
    assert same < 20


def test_staged_rollout_decisions():
    policy = ReleasePolicy(
        stages=Stages(
            percentages=(1, 10, 100),
            advance_success_rate=0.9,
            halt_failure_rate=0.1,
            min_reports=10,
        )
    )
    assert policy.effective_percentage == 1
    assert decide_stage(policy, installed=5, failed=0) == "hold"
    assert decide_stage(policy, installed=10, failed=0) == "advance"
    assert decide_stage(policy, installed=8, failed=2) == "halt"
    last = policy.model_copy(update={"stage": 2})
    assert last.effective_percentage == 100
    assert decide_stage(last, installed=100, failed=1) == "complete"


def test_load_policy_yaml(tmp_path: Path):
    path = tmp_path / "p.yaml"
    path.write_text(
        "targeting:\n  app_version: '>=3.2,<4'\n  os: [android]\n  regions: [eu]\n"
        "percentage: 25\nsalt: release-7\n"
    )
    policy = load_policy(path)
    device = DeviceAttrs(device_id="x", app_version="3.4", os="android", region="eu")
    assert policy.targeting.matches(device)
    assert policy.admits(device) == in_rollout("x", "release-7", 25)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("percentage: 150\n", "percentage"),
        ("targeting:\n  app_version: 'banana'\n", "targeting.app_version"),
        ("targeting:\n  colour: [red]\n", "targeting.colour"),
        ("stages:\n  percentages: [50, 10]\n", "stages.percentages"),
    ],
)
def test_load_policy_names_file_and_field(tmp_path: Path, text: str, field: str):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError, match=rf"bad\.yaml: field {field}"):
        load_policy(path)

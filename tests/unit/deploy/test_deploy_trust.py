"""Root metadata (roles, thresholds, rotation), the per-task metadata log, version bounds.

The device-side checks without a network: what a root update needs, which key may sign
which layer of a notification, and what the metadata log refuses and remembers.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pydantic
import pytest
import yaml

from walle.deploy import errors as e
from walle.deploy.bundle import build_bundle
from walle.deploy.freshness import (
    ExpiredMetadataError,
    FutureMetadataError,
    MetadataLog,
    ReplayError,
    VersionJumpError,
)
from walle.deploy.manifest import TaskSpec
from walle.deploy.notification import (
    Notification,
    make_notification,
    sign_bundle,
    verify_signatures,
)
from walle.deploy.policy import ReleasePolicy
from walle.deploy.release import release as publish_release
from walle.deploy.roles import (
    RootMetadata,
    RootUpdateError,
    ThresholdError,
    TrustStore,
    new_root,
)
from walle.deploy.signing import load_private_key, new_key
from walle.deploy.testing import write_task_dir
from walle.errors import ValidationError


@pytest.fixture
def root_keys(keys: Path) -> list[Path]:
    """Three root keys r1..r3 beside the conftest's keys."""
    for name in ("r1", "r2", "r3"):
        new_key(keys, name)
    return [keys / f"r{i}.key" for i in (1, 2, 3)]


def _root(keys: Path, version: int, roots: list[str], threshold: int, release=("old", "new")):
    return new_root(
        {
            "root": [keys / f"{r}.pub" for r in roots],
            "release": [keys / f"{r}.pub" for r in release],
            "rollout": [keys / "rollout.pub"],
        },
        {"root": threshold},
        version=version,
    )


def _signed(meta: RootMetadata, keys: Path, names: list[str]) -> RootMetadata:
    for name in names:
        meta = meta.signed_by(load_private_key(keys / f"{name}.key"))
    return meta


def test_root_update_needs_the_old_roots_threshold(tmp_path, keys, root_keys):
    v1 = _signed(_root(keys, 1, ["r1", "r2", "r3"], 2), keys, ["r1", "r2"])
    (tmp_path / "device").mkdir()
    (tmp_path / "device" / "root.json").write_bytes(v1.to_bytes())
    trust = TrustStore.from_paths([tmp_path / "device"])
    v2 = _root(keys, 2, ["r2", "r3"], 1)
    with pytest.raises(RootUpdateError) as caught:
        trust.update(_signed(v2, keys, ["r2"]))  # one of the old 2-of-3
    assert str(caught.value) == (
        "root v2: 1 valid root signature(s), root v1 requires 2 (checked against the trusted"
        " root's keys)"
    )
    assert trust.version == 1
    skipped = _signed(_root(keys, 3, ["r2"], 1), keys, ["r1", "r2"])
    with pytest.raises(RootUpdateError, match=r"root v3 does not follow the trusted root v1"):
        trust.update(skipped)
    trust.update(_signed(v2, keys, ["r1", "r2"]))
    assert TrustStore.from_paths([tmp_path / "device"]).version == 2  # persisted


def test_new_root_must_be_signed_by_its_own_keys_too(keys, root_keys):
    trust = TrustStore(_signed(_root(keys, 1, ["r1"], 1), keys, ["r1"]))
    v2 = _signed(_root(keys, 2, ["r2"], 1), keys, ["r1"])
    with pytest.raises(RootUpdateError, match=r"checked against the new root's keys"):
        trust.update(v2)


def test_a_key_directory_without_root_metadata_is_a_migration_error(tmp_path):
    new_key(tmp_path / "old-trust", "release")
    with pytest.raises(ValidationError) as caught:
        TrustStore.from_paths([tmp_path / "old-trust"])
    assert "no root metadata (root.json) found" in str(caught.value)
    assert "walle deploy root init --root-key" in str(caught.value)


def test_rollout_key_signs_only_the_control_layer(keys, trust, built, release):
    note = release(built(1))
    rollout = load_private_key(keys / "rollout.key")
    advanced = note.model_copy(update={"seq": 2}).signed_with(rollout)
    verify_signatures(advanced, trust)  # a stage change or pause by the rollout key: fine
    other = "f" * 64
    swapped = note.model_copy(update={"digest": other, "seq": 3}).signed_with(rollout)
    with pytest.raises(e.UntrustedSignatureError, match=r"release demo v1: signature by key"):
        verify_signatures(swapped, trust)
    forged = note.model_copy(update={"rollback": True}).release_signed_with(rollout)
    with pytest.raises(e.UntrustedSignatureError) as caught:
        verify_signatures(forged.signed_with(rollout), trust)
    assert "is not a release key in root v1 (it holds rollout)" in str(caught.value)


def test_release_threshold(keys, built, release):
    meta = _signed(_root(keys, 1, ["root"], 1), keys, ["root"])
    body = meta.signed.model_copy(
        update={
            "roles": {
                **meta.signed.roles,
                "release": meta.signed.roles["release"].model_copy(update={"threshold": 2}),
            }
        }
    )
    trust = TrustStore(RootMetadata(signed=body).signed_by(load_private_key(keys / "root.key")))
    note = release(built(1))
    with pytest.raises(ThresholdError, match=r"1 valid release signature\(s\), root v1 requires 2"):
        verify_signatures(note, trust)
    both = note.release_signed_with(*(load_private_key(keys / f"{k}.key") for k in ("old", "new")))
    verify_signatures(both.signed_with(load_private_key(keys / "new.key")), trust)


def test_metadata_log_refuses_replays_and_remembers(tmp_path, trust, keys, built, release):
    new = load_private_key(keys / "new.key")
    bundle = built(1)
    first = release(bundle, seq=5)
    log = MetadataLog(tmp_path / "home")
    log.admit(first, trust, running=None)
    log.admit(first, trust, running=1)  # the same notification again (reconnect): fine
    older = release(bundle, seq=4)
    with pytest.raises(ReplayError, match=r"already accepted seq 5 for demo"):
        log.admit(older, trust, running=1)
    other = first.model_copy(update={"reason": "x"}).signed_with(new)
    with pytest.raises(ReplayError, match=r"seq 5\) is a replay"):
        log.admit(other, trust, running=1)
    rewrapped = older.model_copy(update={"seq": 6}).signed_with(new)  # old content, new seq
    with pytest.raises(ReplayError, match=r"re-wraps release content seq 4, older than .* 5"):
        log.admit(rewrapped, trust, running=1)
    assert MetadataLog(tmp_path / "home").accepted["demo"].seq == 5  # on disk
    assert [task for task, _ in log.refusals] == ["demo"] * 3


def test_metadata_log_time_and_jumps(tmp_path, trust, built, release):
    log = MetadataLog(tmp_path / "home")
    now = time.time()
    with pytest.raises(ExpiredMetadataError, match=r"the notification expired at"):
        log.admit(release(built(1), now=now - 7200, ttl_s=3600), trust, None, now=now)
    with pytest.raises(FutureMetadataError, match=r"issued 900s in the future"):
        log.admit(release(built(1), now=now + 900), trust, None, now=now)
    log.admit(release(built(1), now=now + 100), trust, None, now=now)  # within the skew
    with pytest.raises(VersionJumpError, match=r"jumps from v1 by more than 10000"):
        log.admit(release(built(10_002), seq=2), trust, running=1, now=now)
    ahead = int(now) + 300 + 10_001
    with pytest.raises(VersionJumpError, match=r"seq is 10001 past the current Unix second"):
        log.admit(release(built(2), seq=ahead), trust, running=1, now=now)


def test_a_corrupt_metadata_log_is_set_aside(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "metadata.json").write_text('{"demo": {"seq": ')
    log = MetadataLog(home)
    assert log.accepted == {}
    assert (home / "metadata.json.corrupt").exists()


@pytest.mark.parametrize("version", [10**15, 10**300])
def test_huge_versions_are_refused_with_a_clear_message(release, built, version):
    wire = json.loads(release(built(1)).to_bytes())
    wire["version"] = version
    with pytest.raises(pydantic.ValidationError, match=r"less than or equal to 1000000000"):
        Notification.model_validate_json(json.dumps(wire))
    with pytest.raises(pydantic.ValidationError, match=r"less than or equal to 1000000000"):
        TaskSpec(task="demo", version=version)


def test_an_expired_bundle_is_not_released_and_caps_the_release(tmp_path, keys):
    task_dir = write_task_dir(tmp_path / "exp", "demo", 1)
    spec = yaml.safe_load((task_dir / "task.yaml").read_text())
    (task_dir / "task.yaml").write_text(yaml.safe_dump({**spec, "expires_at": time.time() - 1}))
    bundle = build_bundle(task_dir, tmp_path / "exp-out")
    private = load_private_key(keys / "new.key")
    sign_bundle(bundle.path, private)
    with pytest.raises(ValidationError, match=r"bundle demo v1 expired at \d+ \(task.yaml"):
        publish_release(
            bundle.path, ReleasePolicy(), bootstrap="127.0.0.1:1", store_url="x", private=private
        )
    soon = time.time() + 60
    note = make_notification(
        task="demo",
        version=1,
        digest=bundle.digest,
        size=bundle.size,
        url="x",
        private=private,
        bundle_signature=None,
        release_expires_at=soon,
    )
    assert note.release_expires_at == note.expires_at == soon

"""Bundles: deterministic build, signing with rotation, and every refusal installs nothing."""

from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path

import pytest

from walle.deploy import errors as e
from walle.deploy.bundle import BuiltBundle, build_bundle, open_bundle, pack, sha256_hex
from walle.deploy.install import Installer, accept_release
from walle.deploy.notification import sign_bundle
from walle.deploy.roles import new_root
from walle.deploy.signing import TrustStore, load_private_key
from walle.deploy.testing import write_task_dir
from walle.errors import BundleError, ValidationError


def _nothing_installed(installer: Installer, before: set[Path]) -> None:
    """No new file or directory appeared under the installer's home."""
    after = set(installer.home.rglob("*"))
    assert after == before, sorted(after - before)


def _signed_fake(path: Path, data: bytes, manifest, keys: Path) -> BuiltBundle:
    """Write ``data`` as a bundle at ``path``, sign it with a trusted key, describe it."""
    path.write_bytes(data)
    sign_bundle(path, load_private_key(keys / "new.key"))
    return BuiltBundle(path=path, digest=sha256_hex(data), size=len(data), manifest=manifest)


def _refuse(installer, trust, note, data, error, **kw) -> None:
    before = set(installer.home.rglob("*"))
    active = installer.active("demo")
    with pytest.raises(error) as info:
        accept_release(installer, trust, note, data, now=kw.pop("now", time.time()), **kw)
    assert isinstance(info.value, BundleError)
    assert info.value.reason == error.reason
    assert installer.active("demo") == active
    _nothing_installed(installer, before)


def test_build_is_deterministic_and_content_addressed(tmp_path, built):
    first = built(1)
    again = build_bundle(tmp_path / "src" / "demo-v1", tmp_path / "again")
    assert first.digest == again.digest == sha256_hex(first.path.read_bytes())
    contents = open_bundle(first.path.read_bytes())
    assert set(contents.files) == {"main.py"}
    assert contents.manifest.files["main.py"].sha256 == sha256_hex(contents.files["main.py"])


def test_build_names_the_bad_field(tmp_path):
    task_dir = write_task_dir(tmp_path, "demo", 1)
    (task_dir / "task.yaml").write_text("task: demo\nversion: 0\n")
    with pytest.raises(ValidationError, match=r"task\.yaml: field version"):
        build_bundle(task_dir, tmp_path / "out")


def test_valid_release_installs_and_activates(installer, trust, built, release):
    bundle = built(1, resources={"model/weights.bin": b"\x00" * 1000})
    record = accept_release(
        installer, trust, release(bundle), bundle.path.read_bytes(), now=time.time()
    )
    assert record.version == 1
    path = installer.path_of("demo", record)
    assert (path / "model" / "weights.bin").read_bytes() == b"\x00" * 1000
    assert (path / "manifest.json").is_file()


def test_rotation_accepts_either_trusted_key(installer, trust, keys, built, release):
    bundle = built(1)
    note = release(bundle, key=keys / "old.key")  # bundle signed by new, release by old
    accept_release(installer, trust, note, bundle.path.read_bytes(), now=time.time())
    roles = {"root": [keys / "root.pub"], "release": [keys / "new.pub"]}
    v2 = new_root({**roles, "rollout": [keys / "rollout.pub"]}, version=2)
    trust.update(v2.signed_by(load_private_key(keys / "root.key")))  # "old" revoked
    only_new = TrustStore.from_paths([keys])  # the device's persisted trust after the update
    assert only_new.version == 2
    _refuse(
        Installer(installer.home.parent / "h2"),
        only_new,
        note,
        bundle.path.read_bytes(),
        e.UntrustedSignatureError,
    )


def test_refuses_unsigned_bundle(installer, trust, built, release):
    bundle = built(1, signed=False)
    _refuse(installer, trust, release(bundle), bundle.path.read_bytes(), e.UnsignedBundleError)


def test_refuses_unsigned_notification(installer, trust, built, release):
    bundle = built(1)
    note = release(bundle).model_copy(update={"signature": None})
    _refuse(installer, trust, note, bundle.path.read_bytes(), e.UnsignedBundleError)


def test_refuses_wrong_key(tmp_path, installer, trust, built, release):
    bundle = built(1)
    note = release(bundle, key=tmp_path / "stranger" / "evil.key")
    _refuse(installer, trust, note, bundle.path.read_bytes(), e.UntrustedSignatureError)


def test_refuses_altered_notification(installer, trust, built, release):
    bundle = built(1)
    note = release(bundle)
    widened = note.model_copy(update={"expires_at": note.expires_at + 1e6})
    _refuse(installer, trust, widened, bundle.path.read_bytes(), e.UntrustedSignatureError)


def test_refuses_tampered_file(tmp_path, installer, trust, keys, built, release):
    bundle = built(1)
    contents = open_bundle(bundle.path.read_bytes())
    tampered = pack(contents.manifest, {"main.py": contents.files["main.py"] + b"\nimport os\n"})
    fake = _signed_fake(tmp_path / "out" / "tampered.tar", tampered, contents.manifest, keys)
    _refuse(installer, trust, release(fake), tampered, e.TamperedFileError)


def test_refuses_digest_mismatch(installer, trust, built, release):
    bundle = built(1)
    data = bytearray(bundle.path.read_bytes())
    data[-1] ^= 0xFF
    _refuse(installer, trust, release(bundle), bytes(data), e.DigestMismatchError)


def test_refuses_expired_notification(installer, trust, built, release):
    bundle = built(1)
    note = release(bundle, ttl_s=60.0)
    _refuse(
        installer,
        trust,
        note,
        bundle.path.read_bytes(),
        e.ExpiredNotificationError,
        now=time.time() + 120,
    )


def test_refuses_older_or_equal_version_unless_signed_rollback(installer, trust, built, release):
    v1, v2 = built(1), built(2)
    accept_release(installer, trust, release(v2), v2.path.read_bytes(), now=time.time())
    _refuse(installer, trust, release(v1), v1.path.read_bytes(), e.RollbackAttackError)
    _refuse(installer, trust, release(v2), v2.path.read_bytes(), e.RollbackAttackError)
    record = accept_release(
        installer, trust, release(v1, rollback=True), v1.path.read_bytes(), now=time.time()
    )
    assert record.version == 1 and record.previous.version == 2


def test_refuses_bundle_larger_than_release_says(installer, trust, keys, built, release):
    bundle = built(1)
    note = release(bundle).model_copy(update={"size": bundle.size - 1})
    new = load_private_key(keys / "new.key")
    note = note.release_signed_with(new).signed_with(new)
    _refuse(installer, trust, note, bundle.path.read_bytes(), e.OversizeBundleError)


def test_refuses_content_larger_than_manifest_cap(installer, trust, keys, built, release):
    bundle = built(1, resources={"w.bin": b"x" * 5000})
    contents = open_bundle(bundle.path.read_bytes())
    capped = contents.manifest.model_copy(update={"max_bytes": 100})
    data = pack(capped, contents.files)
    fake = _signed_fake(bundle.path, data, capped, keys)
    _refuse(installer, trust, release(fake), data, e.OversizeBundleError)


def _evil_archive(member: tarfile.TarInfo, body: bytes, manifest_bytes: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest_bytes)
        tar.addfile(info, io.BytesIO(manifest_bytes))
        tar.addfile(member, io.BytesIO(body) if member.isreg() else None)
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_refuses_path_traversal(kind, tmp_path, installer, trust, keys, built, release):
    bundle = built(1)
    manifest = open_bundle(bundle.path.read_bytes()).manifest
    body = b"print('owned')\n"
    if kind == "symlink":
        member = tarfile.TarInfo("main.py")
        member.type, member.linkname = tarfile.SYMTYPE, "/etc/passwd"
    else:
        member = tarfile.TarInfo("../../evil.py" if kind == "dotdot" else "/tmp/evil.py")
        member.size = len(body)
    data = _evil_archive(member, body, manifest.to_bytes())
    fake = _signed_fake(bundle.path, data, manifest, keys)
    _refuse(installer, trust, release(fake), data, e.PathTraversalError)
    assert not (tmp_path / "evil.py").exists()


def test_refuses_incompatible_runtime(installer, trust, built, release):
    bundle = built(1, runtime_abi=2)
    _refuse(installer, trust, release(bundle), bundle.path.read_bytes(), e.IncompatibleRuntimeError)


def test_refuses_garbage(installer, trust, keys, built, release):
    bundle = built(1)
    garbage = b"not a tar at all" * 100
    fake = _signed_fake(bundle.path, garbage, bundle.manifest, keys)
    _refuse(installer, trust, release(fake), garbage, e.MalformedBundleError)

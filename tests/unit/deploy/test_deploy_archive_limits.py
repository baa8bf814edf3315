"""Archive limits a trusted but compromised build step cannot get past (checked pre-read).

Each bundle here would be signed by a trusted key; the checks in ``open_bundle`` refuse it
from its headers alone: a sparse member (GNU or PAX) before it is expanded, more members
than ``MAX_ENTRIES`` before the rest are read, an entry point or health check naming a
file outside the bundle. The version already running keeps running.
"""

from __future__ import annotations

import asyncio
import io
import tarfile
import tracemalloc
from pathlib import Path

import pytest

from walle.deploy import errors as e
from walle.deploy.bundle import MAX_ENTRIES, build_bundle, open_bundle, pack, sha256_hex
from walle.deploy.container import TaskContainer
from walle.deploy.errors import HealthCheckError
from walle.deploy.install import Installer
from walle.deploy.manifest import FileEntry, Manifest
from walle.deploy.testing import write_task_dir

_SPARSE_BYTES = 64 << 20  # what the old reader allocated (2 GiB works the same way)


def _running_v1(tmp_path: Path) -> tuple[Installer, TaskContainer]:
    """v1 of ``demo`` installed and running in a container."""
    installer = Installer(tmp_path / "home")
    data = build_bundle(write_task_dir(tmp_path / "src", "demo", 1), tmp_path / "out")
    raw = data.path.read_bytes()
    installed = installer.unpack(open_bundle(raw), sha256_hex(raw))
    record = installer.activate("demo", installed)
    container = TaskContainer()
    asyncio.run(container.activate("demo", 1, installer.path_of("demo", record)))
    return installer, container


def _manifest(files: dict[str, bytes], **kwargs: object) -> Manifest:
    table = {n: FileEntry(sha256=sha256_hex(d), size=len(d)) for n, d in files.items()}
    fields = {"task": "demo", "version": 2, "entry_points": {"main": "main.py:run"}, **kwargs}
    return Manifest(**fields, files=table)


def _pax_sparse(manifest: Manifest) -> bytes:
    """A bundle whose ``model.bin`` is a PAX sparse member: 10 KiB that expands to 64 MiB."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        head = tarfile.TarInfo("manifest.json")
        body = manifest.to_bytes()
        head.size = len(body)
        tar.addfile(head, io.BytesIO(body))
        info = tarfile.TarInfo("model.bin")
        info.pax_headers = {
            "GNU.sparse.map": f"{_SPARSE_BYTES},0",
            "GNU.sparse.size": str(_SPARSE_BYTES),
            "GNU.sparse.name": "model.bin",
        }
        tar.addfile(info, io.BytesIO(b""))
    return buffer.getvalue()


def _gnu_sparse(manifest: Manifest) -> bytes:
    """The same as an old-GNU sparse member (type ``S``, real size in the header)."""
    body = manifest.to_bytes()
    head = tarfile.TarInfo("manifest.json")
    head.size = len(body)
    block = bytearray(tarfile.TarInfo("model.bin").tobuf(tarfile.GNU_FORMAT))
    block[156:157] = b"S"
    block[386:398] = b"%011o\0" % _SPARSE_BYTES  # one hole-only region at the end
    block[398:410] = b"%011o\0" % 0
    block[483:495] = b"%011o\0" % _SPARSE_BYTES  # the expanded size
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    padding = b"\0" * (-len(body) % 512)
    return head.tobuf(tarfile.GNU_FORMAT) + body + padding + bytes(block) + b"\0" * 1024


@pytest.mark.parametrize("make", [_pax_sparse, _gnu_sparse], ids=["pax", "gnu"])
def test_sparse_member_refused_before_it_is_expanded(tmp_path, make):
    installer, container = _running_v1(tmp_path)
    manifest = _manifest({"main.py": b"def run(x):\n    return x\n", "model.bin": b""})
    data = make(manifest)
    assert len(data) < 20_000
    tracemalloc.start()
    try:
        with pytest.raises(e.MalformedBundleError, match=r"'model.bin' is a sparse file") as info:
            open_bundle(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.reason == "malformed"
    assert peak < _SPARSE_BYTES // 8  # never expanded
    assert container.running == {"demo": 1}
    assert installer.active("demo").version == 1


def test_member_larger_than_the_archive_is_refused(tmp_path):
    _installer, container = _running_v1(tmp_path)
    manifest = _manifest({"main.py": b"x"})
    head = tarfile.TarInfo("main.py")
    head.size = 1 << 30  # says 1 GiB; the archive holds a few KiB
    body = manifest.to_bytes()
    m = tarfile.TarInfo("manifest.json")
    m.size = len(body)
    data = m.tobuf() + body + b"\0" * (-len(body) % 512) + head.tobuf() + b"x" * 512
    with pytest.raises(e.OversizeBundleError, match=r"'main.py' says 1073741824 bytes"):
        open_bundle(data)
    assert container.running == {"demo": 1}


def test_entry_count_capped_while_headers_are_read(tmp_path):
    installer, container = _running_v1(tmp_path)
    files = {f"empty/{i:06d}": b"" for i in range(MAX_ENTRIES + 5)}
    data = pack(_manifest({"main.py": b"x", **files}), {"main.py": b"x", **files})
    with pytest.raises(e.MalformedBundleError, match=f"more than {MAX_ENTRIES} archive members"):
        open_bundle(data)
    assert container.running == {"demo": 1}
    assert installer.active("demo").version == 1


def test_entry_count_at_the_cap_opens(tmp_path):
    files = {f"f/{i:05d}": b"" for i in range(MAX_ENTRIES - 2)}
    data = pack(_manifest({"main.py": b"x", **files}), {"main.py": b"x", **files})
    assert len(open_bundle(data).files) == MAX_ENTRIES - 1


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"entry_points": {"main": "../../../evil.py:run"}}, "main='../../../evil.py:run'"),
        ({"entry_points": {"main": "/tmp/evil.py:run"}}, "main='/tmp/evil.py:run'"),
        ({"health_check": "../other/main.py:health"}, "health_check='../other/main.py:health'"),
        ({"entry_points": {"main": "missing.py:run"}}, "main='missing.py:run'"),
    ],
)
def test_entry_point_outside_the_bundle_refused(tmp_path, fields, named):
    installer, container = _running_v1(tmp_path)
    files = {"main.py": b"def run(x):\n    return x\n"}
    data = pack(_manifest(files, **fields), files)
    outside = "names a file that is not in the bundle"
    with pytest.raises(e.PathTraversalError, match=outside) as info:
        open_bundle(data)
    assert named in str(info.value)
    assert info.value.reason == "path-traversal"
    assert container.running == {"demo": 1}
    assert installer.active("demo").version == 1


def test_container_never_loads_a_file_outside_the_install_directory(tmp_path):
    outside = tmp_path / "evil.py"
    outside.write_text("RAN = True\ndef run(x):\n    return x\n")
    version = tmp_path / "home" / "v2"
    version.mkdir(parents=True)
    manifest = Manifest(task="demo", version=2, entry_points={"main": "../evil.py:run"}, files={})
    (version / "manifest.json").write_bytes(manifest.to_bytes())
    container = TaskContainer()
    with pytest.raises(HealthCheckError, match=r"\.\./evil\.py is outside the bundle"):
        asyncio.run(container.activate("demo", 2, version))
    assert container.running == {}

"""Build and open task bundles: deterministic, content-addressed tar archives.

A bundle is an uncompressed tar whose first member is ``manifest.json`` followed by the task
files in sorted order, every member with mtime 0, uid/gid 0 and mode 0644, so the same task
directory always gives the same bytes. Its address is ``sha256`` of those bytes.
Opening a bundle refuses anything that is not a plain file with a safe relative path.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pydantic
import yaml

from walle.deploy.errors import (
    MalformedBundleError,
    OversizeBundleError,
    PathTraversalError,
    TamperedFileError,
    describe_config_errors,
)
from walle.deploy.manifest import MANIFEST_NAME, TASK_FILE, FileEntry, Manifest, TaskSpec
from walle.deploy.strict_yaml import load_strict
from walle.errors import ValidationError

_SKIP_DIRS = {"__pycache__", ".git", ".venv"}
#: At most this many archive members (manifest included); a bundle of 100,000 empty members
#: would otherwise be opened in full. The count is checked while headers are read, one by one.
MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class BuiltBundle:
    """A freshly written bundle: where it is, its digest and its manifest."""

    path: Path
    digest: str
    size: int
    manifest: Manifest


@dataclass(frozen=True)
class BundleContents:
    """A bundle opened and checked: its manifest and the bytes of each file."""

    manifest: Manifest
    files: dict[str, bytes]


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of ``data``: the content address of a bundle."""
    return hashlib.sha256(data).hexdigest()


def load_task_spec(task_dir: Path) -> TaskSpec:
    """Read ``task.yaml`` of ``task_dir``; errors name the file and field."""
    spec_path = task_dir / TASK_FILE
    if not spec_path.is_file():
        raise ValidationError(f"no {TASK_FILE} in task directory", where=str(task_dir))
    try:
        raw = load_strict(spec_path.read_text())
        return TaskSpec.model_validate(raw)
    except yaml.YAMLError as exc:
        raise ValidationError(f"not valid YAML: {exc}", where=str(spec_path)) from exc
    except pydantic.ValidationError as exc:
        message, field = describe_config_errors(exc, TaskSpec)
        raise ValidationError(message, where=str(spec_path), field=field) from exc


def _task_files(task_dir: Path) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for path in sorted(task_dir.rglob("*")):
        rel = path.relative_to(task_dir)
        if any(part in _SKIP_DIRS or part.startswith(".") for part in rel.parts):
            continue
        if path.is_symlink():
            raise ValidationError("symbolic links cannot go into a bundle", where=str(path))
        if path.is_file() and rel.as_posix() not in (TASK_FILE, MANIFEST_NAME):
            files[rel.as_posix()] = path.read_bytes()
    return files


def _check_references(spec: TaskSpec, files: dict[str, bytes], where: str) -> None:
    refs = list(spec.entry_points.values()) + ([spec.health_check] if spec.health_check else [])
    for ref in refs:
        if ref.split(":", 1)[0] not in files:
            raise ValidationError(f"entry point {ref!r} names a file not in the task", where=where)


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def pack(manifest: Manifest, files: dict[str, bytes]) -> bytes:
    """The deterministic tar bytes of ``manifest`` plus ``files`` (sorted by path)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add_member(tar, MANIFEST_NAME, manifest.to_bytes())
        for name in sorted(files):
            _add_member(tar, name, files[name])
    return buffer.getvalue()


def build_bundle(task_dir: Path, out_dir: Path) -> BuiltBundle:
    """Pack ``task_dir`` into ``out_dir/<task>-v<version>.tar``; return its digest."""
    spec = load_task_spec(task_dir)
    files = _task_files(task_dir)
    _check_references(spec, files, str(task_dir))
    table = {n: FileEntry(sha256=sha256_hex(d), size=len(d)) for n, d in files.items()}
    manifest = Manifest(**spec.model_dump(), files=table)
    if manifest.content_bytes > manifest.max_bytes:
        raise ValidationError(
            f"task files total {manifest.content_bytes} bytes, over max_bytes {manifest.max_bytes}",
            where=str(task_dir / TASK_FILE),
            field="max_bytes",
        )
    data = pack(manifest, files)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{manifest.task}-v{manifest.version}.tar"
    path.write_bytes(data)
    return BuiltBundle(path=path, digest=sha256_hex(data), size=len(data), manifest=manifest)


def _safe_name(member: tarfile.TarInfo, archive_bytes: int) -> str:
    """The member's normalised name; refuses unsafe paths, non-files and sparse members.

    Everything here is decided from the header alone, before a byte of the member is read:
    a sparse member (GNU or PAX) would be expanded to its full size on reading (2 GiB
    from a 3 KiB archive), and a plain member can never be larger than the archive.
    """
    name = member.name
    norm = posixpath.normpath(name)
    if name.startswith("/") or norm.startswith("../") or norm == ".." or "\\" in name:
        raise PathTraversalError(f"archive member {name!r} escapes the install directory")
    if member.issparse() or member.sparse is not None:
        raise MalformedBundleError(
            f"archive member {name!r} is a sparse file ({member.size} bytes expanded); "
            "bundles hold plain files only"
        )
    if not member.isreg():
        raise PathTraversalError(f"archive member {name!r} is not a plain file ({member.type!r})")
    if member.size > archive_bytes:
        raise OversizeBundleError(
            f"archive member {name!r} says {member.size} bytes, more than the whole "
            f"archive ({archive_bytes})"
        )
    return norm


def _read_members(data: bytes) -> dict[str, bytes]:
    members: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for count, member in enumerate(tar, start=1):  # headers read one at a time
                if count > MAX_ENTRIES:
                    raise MalformedBundleError(
                        f"bundle has more than {MAX_ENTRIES} archive members"
                    )
                name = _safe_name(member, len(data))
                if name in members:
                    raise MalformedBundleError(f"archive member {name!r} appears twice")
                extracted = tar.extractfile(member)
                members[name] = extracted.read() if extracted else b""
    except tarfile.TarError as exc:
        raise MalformedBundleError(f"bundle is not a readable tar archive: {exc}") from exc
    return members


def _check_entry_files(manifest: Manifest) -> None:
    """Every entry point and the health check must name a file of the bundle itself."""
    refs = dict(manifest.entry_points)
    if manifest.health_check:
        refs["health_check"] = manifest.health_check
    for entry, ref in refs.items():
        if ref.split(":", 1)[0] not in manifest.files:
            raise PathTraversalError(
                f"{MANIFEST_NAME}: entry point {entry}={ref!r} names a file that is not in "
                "the bundle (entry points and health checks run files of the bundle only)"
            )


def _parse_manifest(members: dict[str, bytes]) -> Manifest:
    raw = members.pop(MANIFEST_NAME, None)
    if raw is None:
        raise MalformedBundleError(f"bundle has no {MANIFEST_NAME}")
    try:
        return Manifest.model_validate_json(raw)
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise MalformedBundleError(f"{MANIFEST_NAME} field {field}: {err['msg']}") from exc


def open_bundle(data: bytes) -> BundleContents:
    """Read and check an archive: safe paths, manifest present, every file's SHA-256 and size.

    Raises a ``BundleRefused`` subclass naming the member at fault.
    """
    members = _read_members(data)
    manifest = _parse_manifest(members)
    _check_entry_files(manifest)
    if set(members) != set(manifest.files):
        extra = sorted(set(members) ^ set(manifest.files))
        raise TamperedFileError(f"archive members differ from the manifest: {extra}")
    total = 0
    for name, body in members.items():
        entry = manifest.files[name]
        total += len(body)
        if len(body) != entry.size or sha256_hex(body) != entry.sha256:
            raise TamperedFileError(f"file {name!r} does not match its SHA-256 in the manifest")
    if total > manifest.max_bytes:
        raise OversizeBundleError(f"files total {total} bytes, over max_bytes {manifest.max_bytes}")
    return BundleContents(manifest=manifest, files=members)

"""Fixtures for walle.deploy unit tests: keys, a trust store, bundle and release factories."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from walle.deploy.bundle import BuiltBundle, build_bundle
from walle.deploy.install import Installer
from walle.deploy.notification import (
    Notification,
    load_bundle_signature,
    make_notification,
    sign_bundle,
)
from walle.deploy.signing import TrustStore, load_private_key, new_key
from walle.deploy.testing import write_task_dir, write_trust


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    """A key directory with two release keys (``old``, ``new``), a root and a rollout key,
    their ``root.json``, and one stranger's key elsewhere."""
    key_dir = tmp_path / "keys"
    write_trust(key_dir, release=("old", "new"))
    new_key(tmp_path / "stranger", "evil")
    return key_dir


@pytest.fixture
def trust(keys: Path) -> TrustStore:
    return TrustStore.from_paths([keys])


@pytest.fixture
def installer(tmp_path: Path) -> Installer:
    return Installer(tmp_path / "home")


@pytest.fixture
def built(tmp_path: Path, keys: Path) -> Callable[..., BuiltBundle]:
    """Build (and by default sign with ``new``) a bundle of task ``demo``."""

    def _build(version: int = 1, *, signed: bool = True, **kwargs: object) -> BuiltBundle:
        task_dir = write_task_dir(tmp_path / "src", "demo", version, **kwargs)
        bundle = build_bundle(task_dir, tmp_path / "out")
        if signed:
            sign_bundle(bundle.path, load_private_key(keys / "new.key"))
        return bundle

    return _build


@pytest.fixture
def release(keys: Path) -> Callable[..., Notification]:
    """A notification for a built bundle, signed by ``new`` unless told otherwise."""

    def _release(bundle: BuiltBundle, key: Path | None = None, **kwargs: object) -> Notification:
        fields = {"now": time.time(), "ttl_s": 3600.0, **kwargs}
        return make_notification(
            task=bundle.manifest.task,
            version=bundle.manifest.version,
            digest=bundle.digest,
            size=bundle.size,
            url=f"http://127.0.0.1:1/bundles/{bundle.digest}",
            private=load_private_key(key or keys / "new.key"),
            bundle_signature=load_bundle_signature(bundle.path),
            **fields,
        )

    return _release

"""Fixtures for walle.deploy integration tests: keys, channel topics, a bundle factory."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from walle.deploy.bundle import BuiltBundle, build_bundle
from walle.deploy.channel import ChannelTopics, ensure_topics
from walle.deploy.notification import sign_bundle
from walle.deploy.signing import TrustStore, load_private_key
from walle.deploy.testing import write_task_dir, write_trust
from walle.kafka import EmbeddedBroker


@pytest.fixture
def key_dir(tmp_path: Path) -> Path:
    write_trust(tmp_path / "keys")
    return tmp_path / "keys"


@pytest.fixture
def trust(key_dir: Path) -> TrustStore:
    return TrustStore.from_paths([key_dir])


@pytest.fixture
def private(key_dir: Path):
    return load_private_key(key_dir / "release.key")


@pytest.fixture
def topics(broker: EmbeddedBroker) -> ChannelTopics:
    chosen = ChannelTopics.prefixed(f"deploy-{uuid.uuid4().hex[:10]}")
    ensure_topics(broker.bootstrap, chosen)
    return chosen


@pytest.fixture
def make_bundle(tmp_path: Path, private) -> Callable[..., BuiltBundle]:
    """Build and sign bundle ``task`` v``version``."""

    def _make(version: int, task: str = "demo", **kwargs: object) -> BuiltBundle:
        task_dir = write_task_dir(tmp_path / "src", task, version, **kwargs)
        bundle = build_bundle(task_dir, tmp_path / "dist")
        sign_bundle(bundle.path, private)
        return bundle

    return _make

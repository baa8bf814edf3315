"""Shared fixtures: the embedded Kafka-protocol broker and per-test topic names.

Each pytest-xdist worker starts its own broker (session scope) on a free loopback port.
Tests that stop or restart a broker start their own with ``EmbeddedBroker`` instead.

Under CI (``CI`` set, as CI services do) the hypothesis property tests draw hypothesis'
fixed example sequence (``derandomize``), so a red run is the same on a rerun; elsewhere each
run draws new examples, and a failure prints the example to reproduce it.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterator

import pytest
from hypothesis import settings

from walle.kafka import EmbeddedBroker, create_topics

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

_counter = itertools.count()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """A started embedded broker shared by the tests of this worker."""
    log_path = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_path=log_path) as started:
        yield started


def unique_topic(prefix: str = "t") -> str:
    """A topic name no other test (or xdist worker) uses."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    return f"{prefix}-{worker}-{next(_counter)}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def fresh_topics(broker: EmbeddedBroker) -> Callable[..., list[str]]:
    """``fresh_topics(partitions, *prefixes)`` creates uniquely named topics on ``broker``.

    Returns their names in the order of ``prefixes``.
    """

    def _create(partitions: int = 1, *prefixes: str) -> list[str]:
        names = [unique_topic(prefix) for prefix in (prefixes or ("t",))]
        create_topics(broker.bootstrap, dict.fromkeys(names, partitions))
        return names

    return _create


@pytest.fixture
def topic_name() -> Callable[[str], str]:
    """``topic_name(prefix)`` gives a unique topic name without creating the topic."""
    return unique_topic

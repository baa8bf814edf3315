"""Parity: the example apps give the same output multisets on the device and cloud runtimes.

The logs carry out-of-order, late and duplicate events; the cloud side runs 1 and 2
cloud workers on the embedded broker.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from walle.streams import App, Event, load_app
from walle.streams.device import DeviceRuntime
from walle.streams.generator import generate_events
from walle.streams.results import Output
from walle.testing_cloud import run_on_cloud

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
APPS = ("item_page_view", "clicks_per_category", "search_to_cart")


def disordered_events(seed: int = 11) -> list[Event]:
    return generate_events(
        devices=12, sessions=3, seed=seed,
        out_of_order_rate=0.05, late_rate=0.02, duplicate_rate=0.01,
    )  # fmt: skip


def run_on_device(app: App, events: list[Event], db_path: Path) -> list[Output]:
    """The device runtime over the same log (appended, then replayed)."""
    outputs: list[Output] = []
    with DeviceRuntime(app, db_path, on_output=outputs.append) as runtime:
        for event in events:
            runtime.store.append_valid(event)
        runtime.store.flush()
        runtime.run()
    return outputs


def _multiset(outputs: list[Output]) -> Counter[str]:
    return Counter(output.to_json() for output in outputs)


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("name", APPS)
def test_device_and_cloud_outputs_are_equal(name, workers, broker, tmp_path) -> None:
    events = disordered_events()
    device = run_on_device(load_app(EXAMPLES / f"{name}.py"), events, tmp_path / "device.db")
    cloud = run_on_cloud(load_app(EXAMPLES / f"{name}.py"), events, broker, workers=workers)
    assert device, f"{name}: the log should give outputs"
    assert _multiset(cloud) == _multiset(device)

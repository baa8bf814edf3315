"""walle.testing.compare_runtimes: the public parity helper, on a disordered log."""

from __future__ import annotations

from pathlib import Path

from walle.streams import load_app
from walle.streams.generator import generate_events
from walle.testing import compare_runtimes

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def test_compare_runtimes_reports_equal_outputs(broker, tmp_path):
    app = load_app(EXAMPLES / "search_to_cart.py")
    events = generate_events(
        devices=6, sessions=3, seed=4, out_of_order_rate=0.05, late_rate=0.02, duplicate_rate=0.02
    )
    comparison = compare_runtimes(app, events, broker, tmp_path / "device.db", workers=1)
    assert comparison.device, "the log should give outputs"
    assert comparison.equal, (comparison.only_device, comparison.only_cloud)
    assert sorted(o.to_json() for o in comparison.device) == sorted(
        o.to_json() for o in comparison.cloud
    )

"""Fleet simulator: checks against closed forms of the churn model and a plot file."""

from __future__ import annotations

import math

import numpy as np

from walle.deploy.simulator import FleetModel, plot_coverage, simulate_polling, simulate_push

MODEL = FleetModel(devices=200_000, seed=7)


def test_push_matches_closed_form():
    """Coverage(t) = p_on + (1 - p_on)(1 - exp(-t/mean_off)) for push-then-pull."""
    result = simulate_push(MODEL)
    p_on = MODEL.mean_online_s / (MODEL.mean_online_s + MODEL.mean_offline_s)
    grid = np.array([600.0, 3600.0, 4 * 3600.0])
    expected = p_on + (1 - p_on) * (
        1 - np.exp(-(grid - MODEL.push_latency_s) / MODEL.mean_offline_s)
    )
    assert np.allclose(result.coverage_at(grid), expected, atol=0.005)
    assert result.store_requests == np.isfinite(result.install_times).sum()


def test_polling_costs_more_requests_and_is_never_faster():
    push, poll = simulate_push(MODEL), simulate_polling(MODEL)
    # sessions per device ~ H / (on + off); polls per session = 1 + E[floor(S / P)] with
    # S ~ Exp(mean_on), i.e. 1 / (1 - q), q = exp(-P / mean_on)
    cycles = MODEL.horizon_s / (MODEL.mean_online_s + MODEL.mean_offline_s)
    q = math.exp(-MODEL.poll_interval_s / MODEL.mean_online_s)
    expected_polls = MODEL.devices * cycles / (1 - q)
    polls = poll.store_requests - np.isfinite(poll.install_times).sum()
    assert math.isclose(polls, expected_polls, rel_tol=0.05)
    for fraction in (0.5, 0.9, 0.95):
        assert poll.time_to(fraction) >= push.time_to(fraction) - MODEL.push_latency_s


def test_plot_is_written(tmp_path):
    small = FleetModel(devices=10_000)
    out = plot_coverage(
        [simulate_push(small), simulate_polling(small)], small.horizon_s, tmp_path / "cov.png"
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

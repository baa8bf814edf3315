"""Fleet simulators: the 24 h churn model and the first-hour view, against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pydantic
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from walle.deploy.delivery_sim import (
    CHANGES,
    DeliveryModel,
    DeliveryResult,
    delivery_table,
    missed_before_notice,
    plot_first_hour,
    simulate_polling_delivery,
    simulate_push_delivery,
)
from walle.deploy.simulator import FleetModel, plot_coverage, simulate_polling, simulate_push
from walle.errors import ValidationError

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


# -- first hour, devices online at release (delivery_sim) -------------------------------------

# no network, no churn: only the polling phase or the place in the fan-out
QUIET = {"hop_median_s": 0.0, "bundle_bytes": 0, "mean_online_s": None}


def _forward_recurrence_quantile(p: float, interval: float, jitter: float) -> float:
    """Oracle: time by which a share p of uniform-phase renewal processes have fired.

    Intervals uniform on [a, b] (mean P); the wait from a random instant has CDF
    t / P for t <= a and (a + ((b - a)^2 - (b - t)^2) / (2 (b - a))) / P above, solved for t.
    """
    a, b = interval * (1 - jitter), interval * (1 + jitter)
    if p * interval <= a:
        return p * interval
    return b - math.sqrt((b - a) ** 2 - 2 * (b - a) * (p * interval - a))


def _within_binomial(result: DeliveryResult, t: float, p: float) -> bool:
    """The count reached by the oracle's time t is inside the Binomial(n, p) band
    (:func:`_binomial_band`, + 1 device)."""
    n = result.times.size
    reached = float(result.coverage_at(np.array([t]))[0]) * n
    low, high = _binomial_band(n, p)
    return low - 1 <= reached <= high + 1


@settings(max_examples=40, deadline=None)
@given(
    interval=st.floats(1.0, 86_400.0),
    devices=st.integers(5_000, 60_000),
    seed=st.integers(0, 2**32),
    change=st.sampled_from(CHANGES),
)
def test_polling_without_jitter_reaches_p_of_devices_at_p_intervals(
    interval, devices, seed, change
):
    model = DeliveryModel(
        devices=devices, poll_interval_s=interval, poll_jitter=0.0, seed=seed, **QUIET
    )
    result = simulate_polling_delivery(model, change)
    assert result.times.min() >= 0 and result.times.max() <= interval
    for p in (0.5, 0.9, 0.99):
        assert _within_binomial(result, p * interval, p)


@settings(max_examples=40, deadline=None)
@given(
    interval=st.floats(1.0, 86_400.0),
    jitter=st.floats(0.0, 0.95),
    devices=st.integers(5_000, 60_000),
    seed=st.integers(0, 2**32),
)
def test_polling_with_jitter_matches_forward_recurrence(interval, jitter, devices, seed):
    model = DeliveryModel(
        devices=devices, poll_interval_s=interval, poll_jitter=jitter, seed=seed, **QUIET
    )
    result = simulate_polling_delivery(model, "pause")
    assert result.times.max() <= interval * (1 + jitter)
    for p in (0.5, 0.9, 0.99):
        assert _within_binomial(result, _forward_recurrence_quantile(p, interval, jitter), p)


@settings(max_examples=40, deadline=None)
@given(
    connections=st.integers(1, 200_000),
    rate=st.floats(10.0, 1e6),
    publish=st.floats(0.0, 5.0),
    devices=st.integers(5_000, 60_000),
    seed=st.integers(0, 2**32),
)
def test_push_reaches_p_of_devices_after_p_of_the_fanout(connections, rate, publish, devices, seed):
    """Uniform place in the gateway's fan-out: time to p = publish + p x connections / rate."""
    model = DeliveryModel(
        devices=devices,
        connections_per_gateway=connections,
        fanout_per_s=rate,
        publish_s=publish,
        seed=seed,
        **QUIET,
    )
    result = simulate_push_delivery(model, "release")
    for p in (0.5, 0.9, 0.99):
        assert _within_binomial(result, publish + p * connections / rate, p)


def test_network_hops_match_the_lognormal_median():
    """With no fan-out spread, a pause's push time is publish + one lognormal hop."""
    model = DeliveryModel(devices=100_000, fanout_per_s=1e12, publish_s=0.0, seed=3)
    result = simulate_push_delivery(model, "pause")
    assert _within_binomial(result, model.hop_median_s, 0.5)
    p90 = model.hop_median_s * math.exp(model.hop_sigma * 1.2815515655446004)
    assert _within_binomial(result, p90, 0.9)


def test_a_release_takes_each_device_a_pull_longer_than_a_pause():
    """Same seed, same devices and phases: a release is the pause plus a positive pull."""
    model = DeliveryModel(devices=50_000, seed=5)
    for simulate in (simulate_push_delivery, simulate_polling_delivery):
        release, pause = simulate(model, "release"), simulate(model, "pause")
        assert np.all(release.times > pause.times)


def test_same_seed_same_times_other_seed_other_times():
    model = DeliveryModel(devices=20_000, seed=11)
    other = model.model_copy(update={"seed": 12})
    for simulate in (simulate_push_delivery, simulate_polling_delivery):
        for change in CHANGES:
            first, again = simulate(model, change), simulate(model, change)
            assert np.array_equal(first.times, again.times)
            assert not np.array_equal(first.times, simulate(other, change).times)


def test_table_has_push_and_polling_per_change_and_share():
    model = DeliveryModel(devices=20_000)
    results = [
        simulate(model, change)
        for change in CHANGES
        for simulate in (simulate_push_delivery, simulate_polling_delivery)
    ]
    rows = delivery_table(results)
    assert [(r.change, r.fraction) for r in rows] == [
        (c, f) for c in CHANGES for f in (0.5, 0.9, 0.99)
    ]
    for row in rows:
        assert row.ratio == row.polling_s / row.push_s > 1


def test_unknown_change_is_refused_by_name():
    with pytest.raises(ValidationError, match="unknown change 'rollback'.*release, pause"):
        simulate_push_delivery(DeliveryModel(devices=10), "rollback")  # type: ignore[arg-type]


def test_jitter_of_a_whole_interval_is_refused():
    with pytest.raises(pydantic.ValidationError, match="poll_jitter"):
        DeliveryModel(poll_jitter=1.0)


def test_first_hour_plot_is_written(tmp_path):
    model = DeliveryModel(devices=5_000)
    results = [simulate_push_delivery(model, "release"), simulate_polling_delivery(model, "pause")]
    out = plot_first_hour(results, model, tmp_path / "hour.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _binomial_band(n: int, p: float, log_odds: float = math.log(1e8)) -> tuple[float, float]:
    """Counts beyond which a Binomial(n, p) count falls with probability below 1e-8 on each
    side: Chernoff's bound in its relative-entropy form, P(X >= n a) <= exp(-n KL(a || p)),
    solved for a by bisection. Unlike a normal approximation (mean +- 5 sigma) it holds
    for small counts, whose tail is skewed: 26 devices reached where 9 were expected
    (seed 200377) is a 2e-6 draw, and 9 + 5 sigma is 24."""

    def kl(a: float) -> float:
        def term(x: float, y: float) -> float:
            return 0.0 if x <= 0.0 else x * math.log(x / y)

        return term(a, p) + term(1.0 - a, 1.0 - p)

    def edge(inside: float, outside: float) -> float:
        if n * kl(outside) < log_odds:
            return outside
        for _ in range(100):
            mid = (inside + outside) / 2
            inside, outside = (mid, outside) if n * kl(mid) < log_odds else (inside, mid)
        return outside

    return n * edge(p, 0.0), n * edge(p, 1.0)


def test_binomial_band_holds_small_counts_and_narrows_with_large_ones():
    low, high = _binomial_band(5_000, 9 / 5_000)
    assert low == 0.0 and 26 < high < 45  # ~18 (mean + 3 sigma) to 45 for a 1e-8 tail
    low, high = _binomial_band(60_000, 0.5)
    sigma = math.sqrt(60_000 * 0.25)
    assert 5.5 * sigma < 30_000 - low < 7 * sigma and 5.5 * sigma < high - 30_000 < 7 * sigma


@settings(max_examples=40, deadline=None)
@given(
    mean_online=st.floats(10.0, 10_000.0),
    window=st.floats(1.0, 10_000.0),
    share=st.floats(0.05, 1.0),
    devices=st.integers(5_000, 60_000),
    seed=st.integers(0, 2**32),
    strategy=st.sampled_from(["push", "polling"]),
)
# 26 devices reached where 9 were expected: beyond mean + 5 sigma, inside the binomial band
@example(mean_online=10.0, window=5552.0, share=1.0, devices=5000, seed=200377, strategy="push")
def test_churn_delays_devices_whose_session_ends_first(
    mean_online, window, share, devices, seed, strategy
):
    """Nobody returns within the run (offline ~forever): by time t <= window the share
    reached is the integral of P(session > s) over uniform s in [0, t],
    (m / w)(1 - exp(-t / m)); at t = window it is 1 - missed_before_notice.
    """
    quiet = {**QUIET, "mean_online_s": mean_online, "mean_offline_s": 1e15}
    if strategy == "push":  # the fan-out spreads arrivals uniformly over the window
        model = DeliveryModel(
            devices=devices,
            publish_s=0.0,
            fanout_per_s=1 / window,
            connections_per_gateway=1,
            seed=seed,
            **quiet,
        )
        result = simulate_push_delivery(model, "pause")
    else:
        model = DeliveryModel(
            devices=devices, poll_interval_s=window, poll_jitter=0.0, seed=seed, **quiet
        )
        result = simulate_polling_delivery(model, "pause")
    t = share * window
    expected = mean_online / window * -math.expm1(-t / mean_online)
    reached = float(result.coverage_at(np.array([t]))[0]) * devices
    low, high = _binomial_band(devices, expected)
    assert low - 2 <= reached <= high + 2, (reached, expected * devices, low, high)
    if share == 1.0:
        assert math.isclose(1 - expected, missed_before_notice(mean_online, window))


def test_devices_that_leave_first_arrive_on_reconnect():
    """With churn, polling's late tail is the offline period: nobody is lost, only late."""
    model = DeliveryModel(devices=50_000, poll_jitter=0.0, seed=2)
    poll = simulate_polling_delivery(model, "pause")
    assert np.isfinite(poll.times).all()
    late = poll.times > model.poll_interval_s + 60
    missed = missed_before_notice(model.mean_online_s, model.poll_interval_s)
    assert 0.5 * missed < late.mean() < missed

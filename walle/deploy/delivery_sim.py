"""First hour after a release: how fast push-then-pull and polling reach the devices online.

The 24 h churn view (``simulator.py``) counts every device of the fleet, so its curves are
set by when offline devices come back and push and polling look alike. A release manager
asks something else: of the devices online when I press the button, how many run the new
version (or have stopped it, for a kill switch) after 1 s, 1 min, 1 h? This module models
only those devices, one delivery each, fully vectorised (numpy; 10 M devices in seconds).

- **push-then-pull**: ``publish_s`` (release record through Kafka to the gateway) + the
  device's place in its gateway's fan-out, uniform over ``connections_per_gateway /
  fanout_per_s`` (the gateway writes the SSE frame to its connections one after another)
  + one network hop to the device. ``benchmarks/rollout_sim.py`` measures ``publish_s``
  and ``fanout_per_s`` on loopback.
- **polling**: time to the device's next poll + one request round trip. Polls are a
  renewal process with intervals uniform in ``poll_interval_s * (1 +- poll_jitter)``; a
  release falls at a random instant of it, so the wait is the forward recurrence time
  (without jitter: uniform over the interval).
- a **release** then needs a pull for both: a round trip + ``bundle_bytes / bandwidth``. A
  **pause** (kill switch) takes effect on receipt: no pull.
- **churn** (the 24 h view's, unless ``mean_online_s`` is None): a device's session ends
  after an exponential time (memoryless, so the residual at release has the same law). If
  it ends before the notice is due, the device gets it on reconnect, an exponential
  offline period later (gateway replay on connect; a poll on connect). Push's notice is
  due within seconds, polling's within an interval: with 30 min sessions and a 15 min
  interval a fifth of the online devices leave first (``missed_before_notice``). A session
  ending during a pull is not modelled.

Network model (stated, not measured): one hop's latency is lognormal (median
``hop_median_s``, log-sd ``hop_sigma``); download bandwidth is lognormal (median
``bandwidth_median_bytes_s``, log-sd ``bandwidth_sigma``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from walle.errors import ValidationError

Change = Literal["release", "pause"]
CHANGES: tuple[Change, ...] = ("release", "pause")
_STREAMS = {"push": 1, "polling": 2}  # independent random streams per strategy


class DeliveryModel(BaseModel):
    """Parameters of the first-hour view (one frozen settings object)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    devices: int = Field(default=1_428_571, ge=1)  # online at release: 10 M x 30 / 210 min
    poll_interval_s: float = Field(default=15 * 60.0, gt=0)
    poll_jitter: float = Field(default=0.1, ge=0, lt=1)  # interval uniform in P(1 +- j)
    publish_s: float = Field(default=0.3, ge=0)  # release record -> gateway (loopback)
    fanout_per_s: float = Field(default=15_000.0, gt=0)  # SSE frames one gateway writes / s
    connections_per_gateway: int = Field(default=20_000, ge=1)
    hop_median_s: float = Field(default=0.05, ge=0)  # one network hop, gateway/store <-> device
    hop_sigma: float = Field(default=0.8, ge=0)
    bundle_bytes: int = Field(default=200_000, ge=0)
    bandwidth_median_bytes_s: float = Field(default=625_000.0, gt=0)  # 5 Mbit/s
    bandwidth_sigma: float = Field(default=1.0, ge=0)
    mean_online_s: float | None = Field(default=30 * 60.0, gt=0)  # None: nobody leaves
    mean_offline_s: float = Field(default=3 * 3600.0, gt=0)
    seed: int = 0


@dataclass(frozen=True)
class DeliveryResult:
    """Seconds from the change to its effect on each device online at release time."""

    name: str
    change: Change
    times: np.ndarray

    def coverage_at(self, grid: np.ndarray) -> np.ndarray:
        """Fraction of devices reached at each time of ``grid``."""
        ordered = np.sort(self.times)
        return np.searchsorted(ordered, grid, side="right") / ordered.size

    def time_to(self, fraction: float) -> float:
        """Seconds until ``fraction`` of the devices are reached."""
        return float(np.quantile(self.times, fraction, method="higher"))


def _rng(model: DeliveryModel, strategy: str, change: Change) -> np.random.Generator:
    """One stream per strategy; a release and a pause share it (same devices, same phases)."""
    if change not in CHANGES:
        raise ValidationError(
            f"unknown change {change!r}; expected one of {', '.join(CHANGES)}", field="change"
        )
    return np.random.default_rng([model.seed, _STREAMS[strategy]])


def _hops(model: DeliveryModel, rng: np.random.Generator, hops: int) -> np.ndarray:
    """Latency of ``hops`` network hops per device (zero when the median is zero)."""
    total = np.zeros(model.devices)
    if model.hop_median_s == 0:
        return total
    for _ in range(hops):
        total += rng.lognormal(np.log(model.hop_median_s), model.hop_sigma, model.devices)
    return total


def _pull(model: DeliveryModel, rng: np.random.Generator) -> np.ndarray:
    """Fetch the bundle from the store: a round trip plus the transfer."""
    bandwidth = rng.lognormal(
        np.log(model.bandwidth_median_bytes_s), model.bandwidth_sigma, model.devices
    )
    return _hops(model, rng, 2) + model.bundle_bytes / bandwidth


def next_poll_s(model: DeliveryModel, rng: np.random.Generator) -> np.ndarray:
    """Wait from a random instant to each device's next poll (forward recurrence time).

    The instant falls in an interval with probability proportional to its length (density
    x / mean on [a, b]: inverse CDF sqrt(a^2 + u (b^2 - a^2))), uniformly within it.
    """
    low = model.poll_interval_s * (1 - model.poll_jitter)
    high = model.poll_interval_s * (1 + model.poll_jitter)
    covering = np.sqrt(low**2 + rng.random(model.devices) * (high**2 - low**2))
    return rng.random(model.devices) * covering


def _reach(
    model: DeliveryModel, rng: np.random.Generator, wait: np.ndarray, network: np.ndarray
) -> np.ndarray:
    """When the notice takes effect: after ``wait`` + ``network`` if the device is still
    online; if its session ends first, on reconnect (the gateway replays the latest
    notification, a polling device polls on connect) after an exponential offline period.
    """
    due: np.ndarray = wait
    if model.mean_online_s is not None:
        session = rng.exponential(model.mean_online_s, model.devices)  # residual: memoryless
        away = rng.exponential(model.mean_offline_s, model.devices)
        due = np.where(wait <= session, wait, session + away)
    reached: np.ndarray = due + network
    return reached


def simulate_push_delivery(model: DeliveryModel, change: Change) -> DeliveryResult:
    """Push-then-pull: Kafka to the gateway, its fan-out, one hop (+ a pull for a release)."""
    rng = _rng(model, "push", change)
    fanout_s = model.connections_per_gateway / model.fanout_per_s
    wait = model.publish_s + rng.random(model.devices) * fanout_s
    times = _reach(model, rng, wait, _hops(model, rng, 1))
    if change == "release":
        times += _pull(model, rng)
    return DeliveryResult("push-then-pull", change, times)


def simulate_polling_delivery(model: DeliveryModel, change: Change) -> DeliveryResult:
    """Polling: wait for the next poll, a round trip (+ a pull for a release)."""
    rng = _rng(model, "polling", change)
    times = _reach(model, rng, next_poll_s(model, rng), _hops(model, rng, 2))
    if change == "release":
        times += _pull(model, rng)
    return DeliveryResult("polling", change, times)


def missed_before_notice(mean_online_s: float, window_s: float) -> float:
    """Share of online devices whose session ends before a notice due uniformly in
    [0, window_s]: 1 - (m / w)(1 - exp(-w / m)). Polling's window is its interval, push's
    the gateway fan-out.
    """
    return 1 - mean_online_s / window_s * -math.expm1(-window_s / mean_online_s)


@dataclass(frozen=True)
class DeliveryRow:
    """Time to a share of the devices for push and polling, and their ratio."""

    change: Change
    fraction: float
    push_s: float
    polling_s: float

    @property
    def ratio(self) -> float:
        """How many times longer polling takes than push-then-pull."""
        return self.polling_s / self.push_s


def delivery_table(
    results: list[DeliveryResult], fractions: tuple[float, ...] = (0.5, 0.9, 0.99)
) -> list[DeliveryRow]:
    """One row per change and fraction, from push and polling results of the same model."""
    by_key = {(r.name, r.change): r for r in results}
    rows = []
    for change in CHANGES:
        push, poll = by_key.get(("push-then-pull", change)), by_key.get(("polling", change))
        if push is None or poll is None:
            continue
        for fraction in fractions:
            rows.append(
                DeliveryRow(change, fraction, push.time_to(fraction), poll.time_to(fraction))
            )
    return rows


def plot_first_hour(results: list[DeliveryResult], model: DeliveryModel, out: Path) -> Path:
    """PNG: coverage of the devices online at release over the first hour, log time axis.

    One panel per change (release, pause), one curve per strategy; the title states the
    polling interval and jitter and the push gateway's fan-out.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.logspace(-2, np.log10(3600), 400)
    changes = [c for c in CHANGES if any(r.change == c for r in results)]
    fig, axes = plt.subplots(1, len(changes), figsize=(6 * len(changes), 4.6), dpi=120)
    for ax, change in zip(np.atleast_1d(axes), changes, strict=True):
        for result in (r for r in results if r.change == change):
            marks = " / ".join(format_seconds(result.time_to(f)) for f in (0.5, 0.9, 0.99))
            ax.plot(grid, 100 * result.coverage_at(grid), label=f"{result.name}: {marks}")
        for level in (50, 90, 99):
            ax.axhline(level, color="grey", lw=0.6, ls="--")
        ax.set_xscale("log")
        ax.set_xlim(grid[0], grid[-1])
        ax.set_xticks(
            [0.01, 0.1, 1, 10, 60, 600, 3600],
            ["10 ms", "0.1 s", "1 s", "10 s", "1 min", "10 min", "1 h"],
        )
        ax.set_xlabel("time since the change (log scale)")
        ax.set_ylabel(
            f"devices online at release {'installed' if change == 'release' else 'paused'} (%)"
        )
        ax.set_title(
            "release (notify, then pull the bundle)"
            if change == "release"
            else "kill switch (pause; no download)"
        )
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), title="time to 50 / 90 / 99%")
        ax.grid(alpha=0.3, which="both")
    fig.suptitle(
        f"{model.devices:,} devices online at release; polling every "
        f"{model.poll_interval_s / 60:g} min +- {100 * model.poll_jitter:g}%; push: "
        f"{model.connections_per_gateway:,} connections per gateway at "
        f"{model.fanout_per_s:,.0f} frames/s; "
        + (
            "no churn"
            if model.mean_online_s is None
            else f"sessions {model.mean_online_s / 60:g} min, "
            f"away {model.mean_offline_s / 3600:g} h"
        ),
        fontsize=10,
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight")
    plt.close(fig)
    return out


def format_seconds(seconds: float) -> str:
    """``1.5 s``, ``7.5 min`` or ``2.2 h``: the unit a release manager reads."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"

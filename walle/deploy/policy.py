"""Release policies: who gets a release (targeting), how many (percentage), and when (stages).

A policy is written in YAML and validated into a frozen ``ReleasePolicy``; it travels inside
the signed notification, so a device decides on its own whether a release is for it.

Percentage rollouts use stable bucketing: a device's bucket is
``sha256(salt + "\\0" + device_id)`` reduced to 0..9999, and it is in the rollout when its
bucket is below ``percentage * 100``. Raising the percentage only adds buckets, so everyone
already in stays in; a new salt per release reshuffles who goes first. A percentage is
therefore a multiple of 0.01 (one bucket) in [0.01, 100]; anything finer would round
silently, so it is refused.

A policy file is refused, naming the file and the field, rather than read in a way its
author did not mean: an empty file (it would target every device), an empty list in a
targeting field (it would target none), a repeated key, a boolean where a number belongs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Literal

import pydantic
import yaml
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from walle.deploy.errors import PolicyError, describe_config_errors
from walle.deploy.strict_yaml import load_strict

BUCKETS = 10_000
#: The finest percentage step: one bucket.
PERCENT_STEP = 100 / BUCKETS
_Percent = Annotated[float, Field(strict=True, gt=0, le=100)]
_Names = tuple[str, ...]


class DeviceAttrs(BaseModel):
    """What a device says about itself (the agent's ``--device-attrs`` JSON file)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    device_id: str = Field(min_length=1)
    app_version: str | None = None
    os: str | None = None
    os_version: str | None = None
    model: str | None = None
    tier: str | None = None
    region: str | None = None
    user_group: str | None = None


def _check_specifier(value: str | None) -> str | None:
    if value is not None:
        try:
            SpecifierSet(value)
        except InvalidSpecifier as exc:
            raise ValueError(f"{value!r} is not a version range like '>=3.2,<4'") from exc
    return value


def _check_step(value: float) -> float:
    if abs(value * BUCKETS / 100 - round(value * BUCKETS / 100)) > 1e-6:
        raise ValueError(
            f"{value} is finer than the rollout granularity: percentages are multiples of "
            f"{PERCENT_STEP} (one of {BUCKETS} buckets)"
        )
    return value


def _in_range(version: str | None, spec: str) -> bool:
    if version is None:
        return False
    try:
        return Version(version) in SpecifierSet(spec)
    except InvalidVersion:
        return False


class Targeting(BaseModel):
    """Which devices a release is for; every criterion given must hold (empty = everyone)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    app_version: str | None = None  # a version range, e.g. ">=3.2,<4"
    os: _Names | None = None
    os_version: str | None = None  # a version range
    models: _Names | None = None
    tiers: _Names | None = None
    regions: _Names | None = None
    user_groups: _Names | None = None
    devices: _Names | None = None  # an empty list (no device) is refused; omit for all

    @field_validator("os", "models", "tiers", "regions", "user_groups", "devices")
    @classmethod
    def _not_empty(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and not value:
            raise ValueError(
                "an empty list matches no device; leave the field out to match every device"
            )
        return value

    @field_validator("app_version", "os_version")
    @classmethod
    def _ranges(cls, value: str | None) -> str | None:
        return _check_specifier(value)

    def matches(self, attrs: DeviceAttrs) -> bool:
        """Whether ``attrs`` meets every criterion (a missing attribute never matches one)."""
        checks = (
            (self.os, attrs.os),
            (self.models, attrs.model),
            (self.tiers, attrs.tier),
            (self.regions, attrs.region),
            (self.user_groups, attrs.user_group),
            (self.devices, attrs.device_id),
        )
        if any(allowed is not None and value not in allowed for allowed, value in checks):
            return False
        if self.app_version is not None and not _in_range(attrs.app_version, self.app_version):
            return False
        return self.os_version is None or _in_range(attrs.os_version, self.os_version)


class Stages(BaseModel):
    """A staged rollout: percentages to walk through and the thresholds that move it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    percentages: tuple[_Percent, ...] = Field(min_length=1)
    advance_success_rate: float = Field(default=0.95, gt=0, le=1, strict=True)
    halt_failure_rate: float = Field(default=0.05, ge=0, le=1, strict=True)
    min_reports: int = Field(default=1, ge=1, strict=True)

    @field_validator("percentages")
    @classmethod
    def _increasing(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if list(value) != sorted(set(value)):
            raise ValueError("stage percentages must be strictly increasing, in (0, 100]")
        for p in value:
            _check_step(p)
        return value


class ReleasePolicy(BaseModel):
    """Targeting plus a uniform, percentage or staged rollout; ``stage`` is the current stage."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    targeting: Targeting = Field(default_factory=Targeting)
    percentage: _Percent = 100.0
    salt: str = Field(default="", strict=True)
    stages: Stages | None = None
    stage: int = Field(default=0, ge=0, strict=True)

    @field_validator("percentage")
    @classmethod
    def _granular(cls, value: float) -> float:
        return _check_step(value)

    @model_validator(mode="after")
    def _stage_in_range(self) -> ReleasePolicy:
        if self.stages is not None and self.stage >= len(self.stages.percentages):
            raise ValueError(f"stage {self.stage} is past the last stage")
        return self

    @property
    def effective_percentage(self) -> float:
        """The share of matching devices in the rollout now (the current stage's, if staged)."""
        return self.stages.percentages[self.stage] if self.stages else self.percentage

    def admits(self, attrs: DeviceAttrs) -> bool:
        """Whether the device is targeted and inside the current rollout percentage."""
        if not self.targeting.matches(attrs):
            return False
        return in_rollout(attrs.device_id, self.salt, self.effective_percentage)


def bucket(device_id: str, salt: str) -> int:
    """The stable bucket 0..9999 of ``device_id`` under ``salt``."""
    digest = hashlib.sha256(f"{salt}\0{device_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def in_rollout(device_id: str, salt: str, percentage: float) -> bool:
    """Whether a device is inside a rollout of ``percentage`` percent (0..100)."""
    return bucket(device_id, salt) < round(percentage * BUCKETS / 100)


def load_policy(path: Path) -> ReleasePolicy:
    """Read a YAML policy file; errors name the file and the field."""
    try:
        raw = load_strict(path.read_text())
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read policy: {exc}") from exc
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path}: not valid YAML: {exc}") from exc
    if raw is None:
        raise PolicyError(
            f"{path}: the policy file is empty; it would send the release to every device. "
            "Write what you mean, e.g. 'percentage: 100' for all devices"
        )
    if not isinstance(raw, dict):
        raise PolicyError(f"{path}: a policy is a mapping of fields, not a {type(raw).__name__}")
    try:
        return ReleasePolicy.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise PolicyError(f"{path}: {describe_config_errors(exc, ReleasePolicy)[0]}") from exc


StageDecision = Literal["advance", "hold", "halt", "complete"]


def stage_band(policy: ReleasePolicy, stage: int | None = None) -> tuple[int, int]:
    """The buckets ``[lo, hi)`` that ``stage`` (default: the current one) adds to the rollout.

    Stage 0 adds ``[0, p0)``; stage k adds ``[p(k-1), pk)``: the devices that first became
    eligible at that stage. A controller counts their reports to decide when to advance.
    """
    if policy.stages is None:
        return 0, BUCKETS
    k = policy.stage if stage is None else stage
    percentages = policy.stages.percentages
    lo = round(percentages[k - 1] * BUCKETS / 100) if k > 0 else 0
    return lo, round(percentages[k] * BUCKETS / 100)


def in_stage_band(device_id: str, policy: ReleasePolicy, stage: int | None = None) -> bool:
    """Whether ``device_id`` first became eligible at ``stage`` (default: the current one)."""
    lo, hi = stage_band(policy, stage)
    return lo <= bucket(device_id, policy.salt) < hi


def decide_stage(
    policy: ReleasePolicy, installed: int, failed: int, stage_reports: int | None = None
) -> StageDecision:
    """What a staged rollout should do given the reports for the current release.

    ``installed`` and ``failed`` count every device's last report on this release (all
    stages so far); ``stage_reports`` counts the reports from devices the current stage
    added (default: all reports). ``halt`` when the failure rate crosses the threshold
    (checked first, on any number of reports); ``advance`` when the success rate reaches
    the threshold and the current stage has at least ``min_reports`` reports; ``complete``
    at the last stage (or for a release that is not staged); otherwise ``hold``.
    """
    if policy.stages is None:
        return "complete"
    stages = policy.stages
    reports = installed + failed
    in_stage = reports if stage_reports is None else stage_reports
    if reports and failed / reports > stages.halt_failure_rate:
        return "halt"
    if in_stage < stages.min_reports or installed / reports < stages.advance_success_rate:
        return "hold"
    return "complete" if policy.stage == len(stages.percentages) - 1 else "advance"

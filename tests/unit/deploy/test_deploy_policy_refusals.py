"""Policies that used to be accepted silently are refused, naming the file and the field.

Each one meant something its author most likely did not: an empty file sent a release to
every device, ``devices: []`` to none, ``percentage: 0.001`` rounded to zero buckets, a
repeated key kept its last value, ``percentage: true`` read as 1%.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from walle.deploy.bundle import load_task_spec
from walle.deploy.errors import PolicyError
from walle.deploy.policy import PERCENT_STEP, ReleasePolicy, in_rollout, load_policy
from walle.deploy.testing import write_task_dir
from walle.errors import ValidationError


def _load(tmp_path: Path, text: str) -> ReleasePolicy:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return load_policy(path)


@pytest.mark.parametrize("text", ["", "\n", "# nothing yet\n", "---\n"])
def test_empty_policy_file_refused(tmp_path, text):
    with pytest.raises(PolicyError, match=r"policy\.yaml: the policy file is empty; it would"):
        _load(tmp_path, text)


@pytest.mark.parametrize("field", ["devices", "os", "models", "tiers", "regions", "user_groups"])
def test_empty_targeting_list_refused(tmp_path, field):
    message = rf"policy\.yaml: field targeting\.{field}: .*an empty list matches no device"
    with pytest.raises(PolicyError, match=message):
        _load(tmp_path, f"targeting:\n  {field}: []\n")


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("percentage: 0.001\n", "percentage"),
        ("percentage: 12.345\n", "percentage"),
        ("stages:\n  percentages: [0.005, 50]\n", "stages.percentages"),
    ],
)
def test_percentage_finer_than_one_bucket_refused(tmp_path, text, field):
    with pytest.raises(PolicyError, match=rf"field {field}: .*finer than the rollout granularity"):
        _load(tmp_path, text)


def test_percentage_granularity_is_one_bucket(tmp_path):
    assert PERCENT_STEP == 0.01
    policy = _load(tmp_path, "percentage: 0.01\nsalt: s\n")
    admitted = sum(in_rollout(f"d{i}", "s", policy.percentage) for i in range(20_000))
    assert 0 < admitted < 10  # one bucket of 10,000: about 2 of 20,000 devices
    assert _load(tmp_path, "percentage: 12.34\n").percentage == 12.34


@pytest.mark.parametrize("text", ["percentage: 0\n", "percentage: -1\n"])
def test_percentage_zero_refused(tmp_path, text):
    with pytest.raises(PolicyError, match=r"field percentage: .*greater than 0"):
        _load(tmp_path, text)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("percentage: 5\nsalt: a\npercentage: 50\n", "'percentage' appears twice .lines 1 and 3"),
        ("targeting:\n  os: [ios]\n  os: [android]\n", "'os' appears twice .lines 2 and 3"),
    ],
)
def test_duplicate_keys_refused(tmp_path, text, key):
    with pytest.raises(PolicyError, match=rf"policy\.yaml: not valid YAML: key {key}"):
        _load(tmp_path, text)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("percentage: true\n", "percentage"),
        ("percentage: '50'\n", "percentage"),
        ("stages:\n  percentages: [true, 50]\n", "stages.percentages.0"),
        ("stages:\n  percentages: [10, 50]\n  min_reports: true\n", "stages.min_reports"),
        ("salt: 7\n", "salt"),
    ],
)
def test_wrong_types_refused_not_coerced(tmp_path, text, field):
    with pytest.raises(PolicyError, match=rf"policy\.yaml: field {field}: Input should be"):
        _load(tmp_path, text)


def test_a_list_instead_of_a_mapping_refused(tmp_path):
    with pytest.raises(PolicyError, match=r"policy\.yaml: a policy is a mapping of fields"):
        _load(tmp_path, "- percentage: 5\n")


def test_explicit_policies_still_load(tmp_path):
    policy = _load(
        tmp_path,
        "targeting:\n  devices: [a, b]\npercentage: 100\n"
        "stages:\n  percentages: [1, 10.5, 100]\n  min_reports: 3\n",
    )
    assert policy.targeting.devices == ("a", "b")
    assert policy.stages.percentages == (1, 10.5, 100)


def test_task_yaml_duplicate_key_refused(tmp_path):
    task_dir = write_task_dir(tmp_path, "demo", 1)
    (task_dir / "task.yaml").write_text("task: demo\nversion: 1\nversion: 2\n")
    with pytest.raises(ValidationError, match=r"task\.yaml: not valid YAML: key 'version' appears"):
        load_task_spec(task_dir)

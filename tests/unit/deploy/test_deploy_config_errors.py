"""Config errors (task.yaml, policy YAML, device attributes) name every wrong field at once,
on one line, with the fields allowed there."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from walle.deploy.bundle import load_task_spec
from walle.deploy.errors import PolicyError
from walle.deploy.policy import load_policy
from walle.errors import ValidationError


def test_task_yaml_errors_name_every_field_and_the_allowed_ones(tmp_path):
    (tmp_path / "task.yaml").write_text("task: Demo\nversion: 0\ncolour: red\n")
    with pytest.raises(ValidationError) as info:
        load_task_spec(tmp_path)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'task.yaml'}: 3 problems: ")
    for needle in ("field task:", "field version: Input should be greater than or equal to 1",
                   "field colour: not an allowed field",
                   "(allowed fields: task, version, runtime_abi, max_bytes, expires_at,"
                   " entry_points, health_check)"):  # fmt: skip
        assert needle in message, message
    assert "\n" not in message and info.value.field == "task"


def test_policy_errors_name_nested_fields_and_their_allowed_fields(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("percentage: 150\ntargeting:\n  oss: android\n")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    message = str(info.value)
    assert "2 problems" in message and "field percentage:" in message
    assert "field targeting.oss: not an allowed field" in message
    assert "(allowed fields of targeting: app_version, os, os_version," in message
    assert "(allowed fields: targeting, percentage, salt, stages, stage)" in message


def test_one_error_names_its_field_and_the_allowed_ones(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("percentage: 150\n")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert str(info.value) == (
        f"{path}: field percentage: Input should be less than or equal to 100"
        " (allowed fields: targeting, percentage, salt, stages, stage)"
    )


def test_agent_device_attrs_errors_name_every_field(tmp_path):
    from walle.cli import cli

    attrs = tmp_path / "attrs.json"
    attrs.write_text(json.dumps({"os": 3, "colour": "red"}))
    result = CliRunner().invoke(
        cli,
        ["deploy", "agent", "--device-attrs", str(attrs), "--gateway", "http://127.0.0.1:1",
         "--home", str(tmp_path / "h"), "--trust", str(tmp_path)],
    )  # fmt: skip
    message = str(result.exception)
    assert "bad device attributes: 3 problems" in message, message
    for field in ("device_id", "os", "colour"):
        assert f"field {field}:" in message, message
    assert "allowed fields: device_id, app_version, os," in message

"""`walle ops` output: counts in the singular, an integer --batch, unclipped explain columns,
and a group help that promises only the commands it has."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from walle.ops.sample_models import mlp_onnx, recommender_onnx


@pytest.fixture
def model_path(tmp_path, monkeypatch):
    monkeypatch.setenv("WALLE_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "a_model_file_with_a_rather_long_name_to_overflow_a_narrow_column.onnx"
    path.write_bytes(mlp_onnx().SerializeToString())
    return path


def _invoke(*args: str):
    from walle.cli import cli

    return CliRunner().invoke(cli, list(args))


def test_bench_says_1_call_and_1_run_in_the_singular(model_path):
    result = _invoke("ops", "bench", str(model_path), "--runs", "1", "--backend", "numpy")
    assert result.exit_code == 0, result.output
    assert " over 1 run (" in result.output, result.output
    calls = re.search(r"\((\d+) (calls?);", result.output)
    assert calls is not None, result.output
    assert calls.group(2) == ("call" if calls.group(1) == "1" else "calls"), result.output
    assert "1 calls" not in result.output and "1 runs" not in result.output


def test_bench_feeds_every_input_and_valid_ids(tmp_path, monkeypatch):
    """A model of two inputs, one of them ids that an embedding table reads."""
    monkeypatch.setenv("WALLE_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "recommender.onnx"
    path.write_bytes(recommender_onnx().SerializeToString())
    result = _invoke("ops", "bench", str(path), "--runs", "3", "--batch", "4")
    assert result.exit_code == 0, result.output
    assert "batch 4: median" in result.output, result.output


def test_batch_is_an_integer_option(model_path):
    result = _invoke("ops", "bench", "--help")
    assert re.search(r"--batch INTEGER RANGE", result.output), result.output
    bad = _invoke("ops", "explain", str(model_path), "--batch", "two")
    assert bad.exit_code == 2 and "'two' is not a valid integer range" in bad.output


def test_explain_table_keeps_every_column_whole(model_path):
    result = _invoke("ops", "explain", str(model_path), "--batch", "2")
    assert result.exit_code == 0, result.output
    assert "…" not in result.output, result.output
    for column in ("step", "op", "shape", "backend", "algorithm", "estimate_us", "measured_us"):
        assert column in result.output, result.output


def test_ops_help_does_not_promise_a_run_command():
    result = _invoke("ops", "--help")
    assert result.exit_code == 0
    summary = result.output.split("Options:")[0]
    assert "Run" not in summary and "Time and explain" in summary
    assert re.search(r"^\s+bench\s", result.output, re.M)
    assert re.search(r"^\s+explain\s", result.output, re.M)
    assert not re.search(r"^\s+run\s", result.output, re.M)

"""Golden replays: each example log, through the pure engine and through the device runtime
(with checkpoints, and with a restart half way), gives exactly its golden outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from walle.cli import cli
from walle.streams.app import load_app
from walle.streams.device import RuntimeSettings, open_replay
from walle.streams.engine import Output
from walle.streams.events import read_jsonl

from .replay_example_logs import APPS, EXAMPLES, golden_outputs

SMALL = RuntimeSettings(batch_events=50, checkpoint_every_events=120)


def _golden(name: str) -> list[str]:
    return (EXAMPLES / f"{name}.golden.jsonl").read_text().splitlines()


def _paths(name: str) -> tuple[Path, Path]:
    return EXAMPLES / f"{name}.py", EXAMPLES / f"{name}.jsonl"


@pytest.mark.parametrize("name", APPS)
def test_pure_engine_matches_golden(name: str) -> None:
    assert golden_outputs(*_paths(name)) == _golden(name)


@pytest.mark.parametrize("name", APPS)
def test_device_runtime_matches_golden(name: str, tmp_path: Path) -> None:
    app_path, log_path = _paths(name)
    seen: list[Output] = []
    opened = open_replay(
        load_app(app_path), log_path, tmp_path / "d.db", settings=SMALL, on_output=seen.append
    )
    with opened.runtime as runtime:
        report = runtime.run(finish=True)
        stored = runtime.features()
    golden = _golden(name)
    assert [output.to_json() for output in seen] == golden
    assert report.outputs == len(golden) and report.checkpoints > 2
    assert sorted(text for _, text in stored) == sorted(set(golden))


@pytest.mark.parametrize("name", APPS)
def test_device_runtime_restarted_half_way_matches_golden(name: str, tmp_path: Path) -> None:
    app_path, log_path = _paths(name)
    seen: list[Output] = []
    for step in ("first half", "rest"):
        opened = open_replay(
            load_app(app_path), log_path, tmp_path / "d.db", settings=SMALL, on_output=seen.append
        )
        with opened.runtime as runtime:
            if step == "first half":
                assert opened.ingest is not None and opened.ingest.events > 0
                runtime.run(until_offset=runtime.source.last_offset() // 2)
            else:
                assert opened.ingest is not None and opened.ingest.already_ingested
                runtime.run(finish=True)
    assert [output.to_json() for output in seen] == _golden(name)


def test_examples_have_late_events_and_only_duplicates_dead_lettered(tmp_path: Path) -> None:
    app_path, log_path = _paths("clicks_per_category")
    keys = [(e.device_id, e.seq) for e in read_jsonl(log_path)]
    duplicates = len(keys) - len(set(keys))
    opened = open_replay(load_app(app_path), log_path, tmp_path / "d.db")
    with opened.runtime as runtime:
        report = runtime.run(finish=True)
    assert report.late > 0
    assert duplicates > 0
    assert opened.ingest is not None and opened.ingest.dead_letters == duplicates


def test_cli_replay_out_file_equals_golden(tmp_path: Path) -> None:
    app_path, log_path = _paths("search_to_cart")
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(
        cli, ["replay", str(app_path), str(log_path), "--out", str(out)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert out.read_text().splitlines() == _golden("search_to_cart")
    assert f"outputs {len(_golden('search_to_cart'))}" in result.output
    assert "events/s" in result.output


def test_cli_run_prints_features_and_summary(tmp_path: Path) -> None:
    app_path, _ = _paths("item_page_view")
    result = CliRunner().invoke(cli, ["run", str(app_path), "--limit", "3"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "item_view" in result.output
    assert f"outputs {len(_golden('item_page_view'))}" in result.output

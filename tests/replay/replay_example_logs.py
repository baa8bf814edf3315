"""Writes the example event logs (examples/<app>.jsonl) and their golden outputs.

Run ``python tests/replay/replay_example_logs.py`` from the repository root after changing
an example app or the engine on purpose; the golden replay tests then pin the new outputs.
Logs come from a seeded generator, so regenerating gives the same bytes. The golden
outputs come from the pure engine (``walle.testing.run_app``), closing every window at the
end of the log as ``walle run`` does.
"""

from __future__ import annotations

from pathlib import Path

from walle.streams.events import Event, read_jsonl, write_jsonl
from walle.streams.generator import generate_events

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
APPS = ("item_page_view", "clicks_per_category", "search_to_cart")


def example_log(seed: int, devices: int = 4, sessions: int = 12) -> list[Event]:
    """A seeded log in upload order, with a little disorder, a few late and duplicate events."""
    return generate_events(
        devices, sessions, seed=seed, out_of_order_rate=0.05, late_rate=0.01,
        duplicate_rate=0.01,
    )  # fmt: skip


def golden_outputs(app_path: Path, log_path: Path) -> list[str]:
    """The pure engine's outputs for ``log_path``, all windows closed at the end, as JSON."""
    from walle.streams.app import load_app
    from walle.streams.engine import END_OF_LOG_MS
    from walle.testing import run_app

    app = load_app(app_path)
    result = run_app(app, read_jsonl(log_path), close_at=END_OF_LOG_MS)
    return [output.to_json() for output in result.outputs]


def main() -> None:
    """(Re)write every example's log and golden output."""
    for seed, name in enumerate(APPS):
        log_path = EXAMPLES / f"{name}.jsonl"
        write_jsonl(log_path, example_log(seed))
        golden = golden_outputs(EXAMPLES / f"{name}.py", log_path)
        (EXAMPLES / f"{name}.golden.jsonl").write_text("".join(f"{line}\n" for line in golden))
        print(f"{log_path.name}: {len(golden)} outputs")


if __name__ == "__main__":
    main()

"""Issue 13: nothing is dropped without a record. Every line of a hostile JSONL log (broken seq
order, duplicates exact and changed, garbage lines, a BOM, huge args, integers SQLite cannot
hold, a truncated last line) ends as an event stored and processed, or as a dead letter with
its reason and raw text; and a duplicate dead letter names a stored event with that
(device_id, seq) (the same content, unless the reason says it differs).

The accounting below parses the file with ``json`` on its own (no walle decoder): the stored
events must be exactly the lines that were not dead-lettered, in file order.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from walle.streams.app import load_app
from walle.streams.device import open_replay

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
GARBAGE = [
    "not json at all",
    "[1, 2, 3]",
    "null",
    "{}",
    '{"device_id": "dev-x"}',
    '{"device_id": "dev-x", "seq": "7", "ts": 1, "event": "click"}',
    '{"device_id": "", "seq": 1, "ts": 1, "event": "click"}',
    '{"device_id": "dev-x", "seq": -1, "ts": 1, "event": "click"}',
    '{"device_id": "dev-x", "seq": 1, "ts": 1, "event": "click", "args": {"v": NaN}}',
    '{"device_id": "dev-x", "seq": 99999999999999999999999, "ts": 1, "event": "click"}',
    '{"device_id": "dev-x", "seq": 1, "ts": 99999999999999999999999, "event": "click"}',
    '{"device_id": "dev-x", "seq": 1, "ts": 1, "event": "click", "args": [1]}',
    '{"device_id": "dev-x", "seq": 1, "ts": 1, "event": "click"',
]


def _hostile_lines(rng: random.Random) -> list[str]:
    base = (EXAMPLES / "item_page_view.jsonl").read_text(encoding="utf-8").splitlines()
    lines = [line for line in base if line.strip()][:3000]
    for index in range(0, len(lines) - 1, 7):  # broken seq order: swap neighbours
        lines[index], lines[index + 1] = lines[index + 1], lines[index]
    hostile: list[str] = []
    for line in lines:
        hostile.append(line)
        roll = rng.random()
        record = json.loads(line)
        if roll < 0.05:  # the same event again, byte for byte
            hostile.append(line)
        elif roll < 0.08:  # the same event, serialised differently
            hostile.append(json.dumps(record, indent=None, separators=(", ", " : ")))
        elif roll < 0.10:  # the same (device_id, seq) with other content
            hostile.append(json.dumps({**record, "ts": record["ts"] + 1}))
        elif roll < 0.13:
            hostile.append(rng.choice(GARBAGE))
        elif roll < 0.135:
            hostile.append("")  # a blank line is no event
    device = json.loads(lines[-1])["device_id"]
    top = max(json.loads(line)["seq"] for line in lines if json.loads(line)["device_id"] == device)
    huge = {"blob": "h" * 2_000_000, "keys": {f"k{i}": i for i in range(5_000)}}
    hostile.append(json.dumps({"device_id": device, "seq": top + 1, "ts": 1, "event": "click",
                               "page": "item", "args": huge}))  # fmt: skip
    hostile.append('{"device_id": "dev-x", "seq": 5, "ts": 5, "event": "cli')  # cut off
    return hostile


def _content(record: dict[str, Any]) -> tuple[Any, ...]:
    return (
        record["device_id"],
        record["seq"],
        record["ts"],
        record["event"],
        record.get("page", ""),
        record.get("args", {}),
    )


def test_every_line_of_a_hostile_log_is_processed_or_dead_lettered_with_a_reason(
    tmp_path: Path,
) -> None:
    lines = _hostile_lines(random.Random(13))
    log = tmp_path / "hostile.jsonl"
    log.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode("utf-8"))  # BOM, no final newline
    numbered = {number: line for number, line in enumerate(lines, start=1) if line.strip()}

    app = load_app(EXAMPLES / "item_page_view.py")
    opened = open_replay(app, log, tmp_path / "d.db")
    with opened.runtime as runtime:
        report = runtime.run()
        stored = [event for _, event in runtime.store.read()]
        dead = [record for record in runtime.store.dead_letters() if record.source == "ingest"]

    # the sum: every nonblank line is one stored-and-processed event or one dead letter
    assert opened.ingest is not None
    assert (opened.ingest.events, opened.ingest.dead_letters) == (len(stored), len(dead))
    assert len(stored) + len(dead) == len(numbered)
    assert report.events == len(stored) and report.duplicates == 0

    by_line = {int(record.location.rsplit(":", 1)[1]): record for record in dead}
    assert len(by_line) == len(dead) and set(by_line) <= set(numbered)
    for number, record in by_line.items():
        assert record.location == f"{log}:{number}" and record.reason.strip()
        assert record.raw == numbered[number]

    kept = [json.loads(line) for number, line in numbered.items() if number not in by_line]
    assert [_content(record) for record in kept] == [
        (e.device_id, e.seq, e.ts, e.event, e.page, e.args) for e in stored
    ]
    assert any(len(e.args.get("blob", "")) == 2_000_000 for e in stored)  # huge args kept

    stored_by_pair = {(e.device_id, e.seq): e for e in stored}
    kinds = {"duplicate": 0, "changed": 0, "out of order": 0, "bad": 0}
    for record in dead:
        if record.reason.startswith("duplicate "):
            again = json.loads(record.raw)
            original = stored_by_pair[(again["device_id"], again["seq"])]
            same = _content(again) == (*original[:5], original.args)
            changed = record.reason.endswith("with other content (that one is kept)")
            assert same != changed, record
            kinds["changed" if changed else "duplicate"] += 1
        elif record.reason.startswith("out of order: "):
            late = json.loads(record.raw)
            assert (late["device_id"], late["seq"]) not in stored_by_pair
            kinds["out of order"] += 1
        else:
            kinds["bad"] += 1
    assert all(kinds.values()), kinds  # the log exercised every kind

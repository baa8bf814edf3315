"""Bad input: clear errors naming the field, task or place; good events around it kept."""

from __future__ import annotations

import pytest

from walle.errors import PlanError, ValidationError
from walle.streams import (
    App,
    Hopping,
    PageWindow,
    Session,
    Span,
    Tumbling,
    count,
    entered,
    not_followed_by,
    on,
    optional,
    read_jsonl,
    seq,
    validate_event,
)
from walle.streams.events import BadRecord, Event
from walle.testing import literal_events, run_app

GOOD = {"device_id": "d", "seq": 1, "ts": 5, "event": "click", "page": "item", "args": {}}


@pytest.mark.parametrize("missing", ["device_id", "seq", "ts", "event"])
def test_missing_field_is_named(missing):
    record = {k: v for k, v in GOOD.items() if k != missing}
    with pytest.raises(ValidationError, match=f"field '{missing}'") as info:
        validate_event(record, where="upload:7")
    assert info.value.field == missing
    assert str(info.value).startswith("upload:7: ")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seq", "1"),
        ("seq", -1),
        ("ts", 1.5),
        ("event", ""),
        ("event", "no spaces"),
        ("device_id", 3),
        ("args", [1]),
        ("page", None),
    ],
)
def test_ill_typed_field_is_named(field, value):
    with pytest.raises(ValidationError, match=f"field '{field}'"):
        validate_event({**GOOD, field: value})


def test_unknown_extra_field_is_refused():
    with pytest.raises(ValidationError, match="field 'colour'"):
        validate_event({**GOOD, "colour": "red"})


def test_jsonl_bad_lines_name_file_and_line_and_good_lines_are_kept(tmp_path):
    path = tmp_path / "log.jsonl"
    good = Event("d", 0, 1, "click", "item", {})
    path.write_text(
        good.to_json()
        + "\n"
        + '{"device_id": "d", "seq": 1\n'
        + "\n"
        + good._replace(seq=2).to_json()
        + "\n"
        + '{"device_id":"d","seq":3,"ts":"x","event":"c"}\n'
    )
    errors: list[BadRecord] = []
    events = list(read_jsonl(path, errors=errors))
    assert [e.seq for e in events] == [0, 2]
    assert [e.where for e in errors] == [f"{path}:2", f"{path}:5"]
    assert "not valid JSON" in errors[0].reason
    assert "field 'ts'" in errors[1].reason
    with pytest.raises(ValidationError, match=f"{path}:2"):
        list(read_jsonl(path))


def test_duplicate_sequence_numbers_are_skipped_and_reported():
    app = App("t")
    app.stream("v").window(PageWindow("item")).aggregate(n=count())
    events = literal_events(
        (0, "page_enter", "item"), (1, "click", "item"), (2, "page_exit", "item")
    )
    result = run_app(app, [events[0], events[1], events[1], events[0], events[2]])
    assert result.values() == [{"n": 3}]
    assert [e.seq for e in result.duplicates] == [1, 0]


def test_unknown_event_ids_are_dead_letters_when_the_app_is_strict():
    app = App("t", custom_events=["add_to_cart"], strict_events=True)
    app.stream("v").window(PageWindow("item")).aggregate(n=count())
    result = run_app(
        app,
        literal_events(
            (0, "page_enter", "item"),
            (1, "add_to_cart", "item"),
            (2, "tpyo", "item"),
            (3, "page_exit", "item"),
        ),
    )
    assert result.values() == [{"n": 3}]
    assert [(d.task, d.event.event, d.reason) for d in result.dead] == [
        (None, "tpyo", "unknown event id 'tpyo' (app 't' declares its custom events)")
    ]


def test_a_failing_task_dead_letters_its_window_and_the_others_go_on():
    app = App("t")

    @app.task(window=PageWindow("item"))
    def fragile(window):
        return {"ratio": 1 / sum(e.event == "click" for e in window.events)}

    app.stream("sturdy").window(PageWindow("item")).aggregate(n=count())
    result = run_app(
        app,
        literal_events(
            (0, "page_enter", "item"),
            (1, "page_exit", "item"),
            (2, "page_enter", "item"),
            (3, "click", "item"),
            (4, "page_exit", "item"),
        ),
    )
    assert [(o.task, o.value) for o in result.outputs] == [
        ("sturdy", {"n": 2}),
        ("fragile", {"ratio": 1.0}),
        ("sturdy", {"n": 3}),
    ]
    assert [(d.task, d.event.seq, d.reason) for d in result.dead] == [
        ("fragile", 1, "ZeroDivisionError: division by zero")
    ]


def test_a_task_returning_a_non_dict_or_non_json_is_a_dead_letter():
    app = App("t")

    @app.task(window=PageWindow("item"))
    def wrong(window):
        return [1]

    @app.task(window=PageWindow("item"))
    def nan(window):
        return {"x": float("nan")}

    result = run_app(app, literal_events((0, "page_enter", "item"), (1, "page_exit", "item")))
    assert result.outputs == []
    reasons = [d.reason for d in result.dead]
    assert reasons[0] == "TypeError: task returned list, expected dict or None"
    assert reasons[1].startswith("ValueError: Out of range float values are not JSON compliant")


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Tumbling(-5), "Tumbling.size_ms must be a positive integer, got -5"),
        (lambda: Tumbling(10, lateness_ms=-1), "lateness_ms must be a non-negative"),
        (lambda: Hopping(10, 20), "would skip events"),
        (lambda: Session(0), "Session.gap_ms must be a positive"),
        (lambda: PageWindow(""), "non-empty page name"),
        (lambda: seq(), "at least one step"),
        (lambda: seq(optional(on("a"))), "only optional steps"),
        (lambda: seq(on("a"), not_followed_by(on("b"))), "cannot end a pattern"),
        (lambda: seq(on("a"), not_followed_by(on("b")), on("b")), "can never match"),
        (lambda: seq(on("a")).within(0), "positive integer of milliseconds"),
    ],
)
def test_invalid_definitions_are_refused(build, message):
    with pytest.raises(PlanError, match=message):
        build()


def test_task_definition_errors_name_the_task():
    app = App("t")
    with pytest.raises(PlanError, match="task 'x': a triggered task needs Span"):
        app.stream("x", trigger=entered("item")).window(Tumbling(5)).aggregate(n=count())
    with pytest.raises(PlanError, match="task 'y': .* relative to a trigger"):
        app.stream("y").window(Span()).aggregate(n=count())
    with pytest.raises(PlanError, match="task 'z': session windows emit final"):
        app.stream("z").window(Session(5), emit="update").aggregate(n=count())
    with pytest.raises(PlanError, match="task 'w': call .window"):
        app.stream("w").aggregate(n=count())
    app.stream("v").window(Tumbling(5)).aggregate(n=count())
    with pytest.raises(PlanError, match="task 'v' is already defined"):
        app.stream("v").window(Tumbling(5)).aggregate(n=count())
    with pytest.raises(PlanError, match="unknown field 'price'"):
        count("price")

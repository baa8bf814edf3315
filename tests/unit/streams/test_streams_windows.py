"""Each window type, emit mode and lateness rule: literal input -> run -> outputs."""

from __future__ import annotations

from walle.streams import (
    App,
    CountWindow,
    Hopping,
    LookBack,
    PageWindow,
    Session,
    Span,
    Tumbling,
    clicked,
    collect,
    count,
    entered,
    seq,
    sum_,
)
from walle.testing import literal_events, run_app


def windows(result, task=None):
    return [(o.window, o.value) for o in result.outputs if task is None or o.task == task]


def test_tumbling_final_emits_once_when_the_watermark_passes_the_end():
    app = App("t")
    app.stream("n").window(Tumbling(10)).aggregate(n=count())
    result = run_app(
        app,
        literal_events(
            (1, "click", "a"), (4, "click", "a"), (12, "click", "a"), (25, "click", "a")
        ),
    )
    assert windows(result) == [("tumbling:0-10", {"n": 2}), ("tumbling:10-20", {"n": 1})]


def test_tumbling_update_emits_on_every_event_under_one_key():
    app = App("t")
    app.stream("n").window(Tumbling(10), emit="update").aggregate(n=count())
    result = run_app(app, literal_events((1, "click", "a"), (4, "click", "a"), (12, "x", "a")))
    assert windows(result) == [
        ("tumbling:0-10", {"n": 1}),
        ("tumbling:0-10", {"n": 2}),
        ("tumbling:10-20", {"n": 1}),
    ]


def test_update_mode_outputs_keep_their_values_as_the_window_grows():
    """An output emitted earlier is not changed by later events of its window (collect's
    list is the window's own state): both runtimes serialise outputs after a whole batch."""
    app = App("t")
    app.stream("p").window(Tumbling(10), emit="update").aggregate(pages=collect("page"))
    result = run_app(app, literal_events((1, "click", "a"), (4, "click", "b")))
    assert windows(result) == [("tumbling:0-10", {"pages": ["a"]}),
                               ("tumbling:0-10", {"pages": ["a", "b"]})]  # fmt: skip


def test_late_event_goes_to_the_side_output_with_the_reason():
    app = App("t")
    app.stream("n").window(Tumbling(10)).aggregate(n=count())
    result = run_app(app, literal_events((1, "c", ""), (15, "c", ""), (3, "c", "")))
    assert windows(result) == [("tumbling:0-10", {"n": 1})]
    assert [(late.event.ts, late.reason) for late in result.late] == [
        (3, "window tumbling:0-10 closed at watermark 15")
    ]


def test_allowed_lateness_and_out_of_orderness_keep_stragglers():
    app = App("t", out_of_orderness_ms=2)
    app.stream("n").window(Tumbling(10, lateness_ms=3)).aggregate(n=count())
    # watermark = max ts - 2; window [0,10) closes when watermark >= 13
    result = run_app(
        app, literal_events((1, "c", ""), (14, "c", ""), (9, "c", ""), (15, "c", ""), (8, "c", ""))
    )
    assert windows(result) == [("tumbling:0-10", {"n": 2})]
    assert [late.event.ts for late in result.late] == [8]


def test_hopping_windows_overlap():
    app = App("t")
    app.stream("n").window(Hopping(10, 5)).aggregate(n=count())
    result = run_app(app, literal_events((7, "c", ""), (12, "c", "")), close_at=100)
    assert windows(result) == [
        ("hopping:0-10", {"n": 1}),
        ("hopping:5-15", {"n": 2}),
        ("hopping:10-20", {"n": 1}),
    ]


def test_session_windows_merge_and_close_on_the_gap():
    app = App("t")
    app.stream("s").window(Session(5)).aggregate(n=count(), total=sum_("args.v"))
    result = run_app(
        app,
        literal_events(
            (0, "c", "", {"v": 1}),
            (3, "c", "", {"v": 2}),
            (20, "c", "", {"v": 4}),
            (8, "c", "", {"v": 8}),
        ),
        close_at=1000,
    )
    # session [0,8) closed at watermark 20, so the event at 8 (its own session [8,13)) is late
    assert windows(result) == [
        ("session:0-8", {"n": 2, "total": 3}),
        ("session:20-25", {"n": 1, "total": 4}),
    ]
    assert [late.event.ts for late in result.late] == [8]


def test_session_bridging_event_merges_two_sessions():
    app = App("t", out_of_orderness_ms=100)
    app.stream("s").window(Session(5)).aggregate(n=count())
    result = run_app(app, literal_events((0, "c", ""), (8, "c", ""), (4, "c", "")), close_at=500)
    assert windows(result) == [("session:0-13", {"n": 3})]


def _sessions(gap, ooo, *ts):
    app = App("t", out_of_orderness_ms=ooo)
    app.stream("s").window(Session(gap)).aggregate(n=count())
    result = run_app(app, literal_events(*[(t, "c", "") for t in ts]), close_at=1000)
    return windows(result), result.late


def test_session_joins_only_events_closer_than_the_gap():
    """Issue 13 W1: a session is [first, last + gap); an event gap_ms after the last one
    starts a new session (ts 0 and 3 with Session(3) are two sessions)."""
    assert _sessions(3, 0, 0, 3) == ([("session:0-3", {"n": 1}), ("session:3-6", {"n": 1})], [])
    assert _sessions(3, 0, 0, 2) == ([("session:0-5", {"n": 2})], [])
    # the bridging event must be closer than the gap to both sides
    assert _sessions(5, 100, 0, 9, 4) == (
        [("session:0-9", {"n": 2}), ("session:9-14", {"n": 1})],
        [],
    )


def test_sessions_do_not_depend_on_arrival_order_within_the_bound():
    """Issue 13 W2: Session(3), out_of_orderness 2, every event on time: arrival orders
    0,3,5 and 0,5,3 give the same sessions (they used to give 0-8 and 0-3 + 3-8)."""
    expected = [("session:0-3", {"n": 1}), ("session:3-8", {"n": 2})]
    assert _sessions(3, 2, 0, 3, 5) == (expected, [])
    assert _sessions(3, 2, 0, 5, 3) == (expected, [])


def test_hopping_late_record_per_closed_window_and_count_in_the_open_ones():
    """Issue 13 W3: an event some of whose windows closed is counted in the open ones and
    gets one late record per closed window it missed."""
    app = App("t")
    app.stream("n").window(Hopping(10, 5)).aggregate(n=count())
    result = run_app(app, literal_events((20, "c", ""), (16, "c", "")), close_at=100)
    assert windows(result) == [("hopping:15-25", {"n": 2}), ("hopping:20-30", {"n": 1})]
    assert [(late.event.ts, late.reason) for late in result.late] == [
        (16, "window hopping:10-20 closed at watermark 20")
    ]


def test_hopping_windows_are_aligned_to_the_epoch_and_may_start_before_it():
    """Issue 13 W4: as in Flink, Kafka Streams and bytewax, every ts is in size/hop windows,
    the first ones starting before 0."""
    app = App("t")
    app.stream("n").window(Hopping(10, 5)).aggregate(n=count())
    result = run_app(app, literal_events((3, "c", "")), close_at=100)
    assert windows(result) == [("hopping:-5-5", {"n": 1}), ("hopping:0-10", {"n": 1})]
    assert Hopping(10, 3).starts(1) == [-6, -3, 0]


def test_count_windows_per_key():
    app = App("t")
    (app.stream("c").key_by(lambda e: e.page).window(CountWindow(2)).aggregate(n=count()))
    result = run_app(
        app, literal_events((0, "c", "a"), (1, "c", "b"), (2, "c", "a"), (3, "c", "a"))
    )
    assert windows(result) == [("count:0:a", {"n": 2})]


def test_page_window_handles_nested_visits():
    app = App("t")
    app.stream("v").window(PageWindow("item")).aggregate(n=count())
    result = run_app(
        app,
        literal_events(
            (0, "page_enter", "item"),
            (1, "click", "item"),
            (2, "page_enter", "item"),
            (3, "click", "item"),
            (4, "page_exit", "item"),
            (5, "page_exit", "item"),
        ),
    )
    assert windows(result) == [("page:item:2", {"n": 3}), ("page:item:0", {"n": 6})]


def test_page_window_update_mode_and_open_visits_time_out():
    app = App("t")
    app.stream("v").window(PageWindow("item", timeout_ms=100), emit="update").aggregate(n=count())
    result = run_app(
        app, literal_events((0, "page_enter", "item"), (1, "click", "item")), close_at=100
    )
    assert windows(result) == [
        ("page:item:0", {"n": 1}),
        ("page:item:0", {"n": 2}),
        ("page:item:0:open", {"n": 2}),
    ]


def test_span_window_covers_the_match_and_lookback_the_last_events():
    app = App("t")

    @app.task(trigger=seq(entered("search"), clicked()), window=Span())
    def span(window):
        return {"pages": [e.page for e in window.events], "complete": window.complete}

    @app.task(trigger=clicked("buy"), window=LookBack(events=2))
    def back(window):
        return {"ts": [e.ts for e in window.events]}

    @app.task(trigger=clicked("buy"), window=LookBack(ms=2))
    def recent(window):
        return {"ts": [e.ts for e in window.events]}

    result = run_app(
        app,
        literal_events((0, "page_enter", "search"), (1, "scroll", "search"), (2, "click", "buy")),
    )
    assert windows(result) == [
        ("match:0-2", {"pages": ["search", "search", "buy"], "complete": True}),
        ("lookback:2", {"ts": [1, 2]}),
        ("lookback:2", {"ts": [0, 1, 2]}),
    ]


def test_quiet_device_windows_close_on_advance():
    app = App("t")
    app.stream("n").window(Tumbling(10)).aggregate(n=count())
    assert windows(run_app(app, literal_events((1, "c", "")))) == []
    assert windows(run_app(app, literal_events((1, "c", "")), close_at=10)) == [
        ("tumbling:0-10", {"n": 1})
    ]


def test_tasks_added_and_removed_while_running():
    from walle.streams import Engine
    from walle.streams.app import App as _App

    app = _App("t")
    app.stream("visits").window(PageWindow("item")).aggregate(n=count())
    engine = Engine(app)
    first = literal_events((0, "page_enter", "item"), (1, "page_exit", "item"))
    assert [o.task for o in engine.process_many(first).outputs] == ["visits"]
    extra = _App("x")
    extra.stream("clicks", trigger=clicked("item")).aggregate(n=count())
    engine.add_task(extra.plans[0])
    engine.remove_task("visits")
    later = literal_events(
        (2, "page_enter", "item"), (3, "click", "item"), (4, "page_exit", "item"), first_seq=2
    )
    assert [(o.task, o.window) for o in engine.process_many(later).outputs] == [
        ("clicks", "match:3-3")
    ]
    assert [p.name for p in app.plans] == ["clicks"]

"""The trigger trie equals the naive reference when event time moves backwards under
``within`` (issue 13, T1-T4), in its pure-Python and its compiled feed loop.

A partial match whose ``within`` the watermark has passed can never fire, but it is still
the latest start where it is and replaces older starts when it advances: dropping it
early revived an older live one (T1: across positions; T2: across the trie nodes of one
position; T3: a task sharing nodes with a longer ``within`` kept it, so tasks changed
each other's firings).
"""

from __future__ import annotations

import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st

from walle.errors import BackendError, PlanError
from walle.streams.events import Event
from walle.streams.naive import naive_fires
from walle.streams.patterns import Pattern, not_followed_by, on, one_or_more, optional, seq
from walle.streams.trie import TriggerTrie, _compiled_feed

BOTH = pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "python"])


def _log(pairs: list[tuple[int, str]], ooo: int = 0) -> tuple[list[Event], list[int]]:
    """Events (ts, type) of one device in seq order, with watermarks max ts - ``ooo``."""
    events = [Event("d", i, ts, kind, "p") for i, (ts, kind) in enumerate(pairs)]
    watermarks, high = [], None
    for event in events:
        high = event.ts if high is None else max(high, event.ts)
        watermarks.append(high - ooo)
    return events, watermarks


def _trie(compiled: bool, pattern_list: list[Pattern]) -> TriggerTrie:
    if compiled and _compiled_feed() is None:
        raise BackendError("compiled trie not built: run `pip install -e .` (make test does)")
    trie = TriggerTrie(compiled=compiled)
    for pattern in pattern_list:
        trie.add(pattern)
    return trie


def _fires(compiled: bool, pattern_list: list[Pattern], events, watermarks):
    trie = _trie(compiled, pattern_list)
    state = trie.new_state()
    fires = []
    for event, watermark in zip(events, watermarks, strict=True):
        fires.extend(trie.feed(state, event, watermark))
    return fires


def _spans(fires) -> list[tuple[int, int, int]]:
    return [(f.pattern, f.start.seq, f.end.seq) for f in fires]


ABC = seq(on("a"), on("b"), on("c")).within(5)
T1_LOG = [(42, "a"), (43, "b"), (36, "a"), (47, "b"), (45, "c")]


@BOTH
def test_t1_a_dead_later_start_still_shadows_an_older_live_one(compiled):
    # seq 2 (ts 36) is the latest start at `a`, dead from watermark 42 on; the b at seq 3
    # advances it over the live start seq 0 at `a b`, so the c completes a dead match.
    events, watermarks = _log(T1_LOG)
    assert naive_fires([ABC], events, watermarks) == []
    assert _fires(compiled, [ABC], events, watermarks) == []


@BOTH
def test_t1_control_a_live_later_start_fires(compiled):
    events, watermarks = _log([(42, "a"), (43, "b"), (44, "a"), (47, "b"), (45, "c")])
    expected = naive_fires([ABC], events, watermarks)
    assert _spans(expected) == [(0, 2, 4)]
    assert _fires(compiled, [ABC], events, watermarks) == expected


@BOTH
def test_t2_one_partial_match_per_position_across_optional_variants(compiled):
    # `c` as the first step (d skipped) holds seq 1 (ts 55), dead; it is the latest start
    # of position 2 and wins over seq 0 (d c, ts 70) when the second c completes.
    pattern = seq(optional(on("d")), on("c"), on("c")).within(5)
    events, watermarks = _log([(70, "d"), (55, "c"), (73, "c")])
    assert naive_fires([pattern], events, watermarks) == []
    assert _fires(compiled, [pattern], events, watermarks) == []


@BOTH
def test_t3_an_unrelated_task_does_not_change_what_a_task_fires(compiled):
    other = seq(on("a"), on("b"), on("d")).within(1000)
    for pairs in (T1_LOG, [(42, "a"), (43, "b"), (44, "a"), (47, "b"), (45, "c")]):
        events, watermarks = _log(pairs)
        alone = _fires(compiled, [ABC], events, watermarks)
        shared = _fires(compiled, [ABC, other], events, watermarks)
        assert [f for f in shared if f.pattern == 0] == alone
        assert shared == naive_fires([ABC, other], events, watermarks)


@BOTH
def test_t4_a_guard_cancels_only_the_partial_match_waiting_after_its_step(compiled):
    # README: x cancels the match waiting after b; `a` still waits, so the next b
    # re-advances it and the c completes a match that started at the first a.
    pattern = seq(on("a"), on("b"), not_followed_by(on("x")), on("c"))
    events, watermarks = _log([(0, "a"), (1, "b"), (2, "x"), (3, "b"), (4, "c")])
    expected = naive_fires([pattern], events, watermarks)
    assert _spans(expected) == [(0, 0, 4)]
    assert _fires(compiled, [pattern], events, watermarks) == expected


@BOTH
def test_dead_partial_matches_are_dropped_once_no_older_one_is_live(compiled):
    events, watermarks = _log(T1_LOG)
    trie = _trie(compiled, [ABC])
    state = trie.new_state()
    for event, watermark in zip(events[:4], watermarks[:4], strict=True):
        trie.feed(state, event, watermark)
    # at watermark 47 seq 2 (ts 36) at `a` is dead, kept: seq 0 at `a b` was still live
    assert sorted(state.active.values()) == [(2, 36), (2, 36)]
    trie.feed(state, events[4], watermarks[4])
    assert state.active == {}  # every partial match dead: all dropped


@BOTH
def test_a_live_partial_match_of_an_unrelated_task_keeps_no_dead_ones(compiled):
    # `x y` (no within) shares no node with `a b c`: its live start at seq 0 cannot meet
    # the dead starts of `a b c`, so it does not keep them in memory.
    forever = seq(on("x"), on("y"))
    events, watermarks = _log([(40, "x"), *T1_LOG, (100, "z")])
    trie = _trie(compiled, [forever, ABC])
    state = trie.new_state()
    for event, watermark in zip(events, watermarks, strict=True):
        trie.feed(state, event, watermark)
    assert list(state.active.values()) == [(0, 40)]


# -- properties: naive.py is the oracle ------------------------------------------------

TYPES = ("a", "b", "c", "d")


def _element(step, kind: str):
    return optional(step) if kind == "optional" else one_or_more(step) if kind == "plus" else step


@st.composite
def patterns(draw: st.DrawFn) -> Pattern:
    """Up to four steps, often optional, a guard now and then, always a short ``within``."""
    items: list = []
    n = draw(st.integers(1, 4))
    for position in range(n):
        step = on(draw(st.sampled_from(TYPES)))
        items.append(_element(step, draw(st.sampled_from(("one", "optional", "plus", "one")))))
        if position < n - 1 and draw(st.integers(0, 5)) == 0:
            items.append(not_followed_by(on(draw(st.sampled_from(TYPES)))))
    try:
        pattern = seq(*items)
    except PlanError:
        reject()
    return pattern.within(draw(st.sampled_from((2, 5, 10, 30))))


@st.composite
def disordered_logs(draw: st.DrawFn) -> tuple[list[Event], list[int]]:
    """Event time walks forwards and jumps backwards (often by more than ``within``)."""
    n = draw(st.integers(0, 40))
    ooo = draw(st.sampled_from((0, 0, 3, 12)))
    ts = draw(st.integers(0, 100))
    pairs = []
    for _ in range(n):
        ts = max(0, ts + draw(st.sampled_from((0, 1, 2, 4, 7, -3, -8, -20))))
        pairs.append((ts, draw(st.sampled_from(TYPES))))
    return _log(pairs, ooo)


@settings(max_examples=400, deadline=None)
@given(st.lists(patterns(), min_size=1, max_size=4), disordered_logs())
def test_event_time_moving_backwards_under_within_equals_naive(pattern_list, log):
    events, watermarks = log
    expected = naive_fires(pattern_list, events, watermarks)
    assert _fires(False, pattern_list, events, watermarks) == expected
    assert _fires(True, pattern_list, events, watermarks) == expected


@st.composite
def task_families(draw: st.DrawFn) -> list[Pattern]:
    """Tasks that share prefixes of one step list, each with its own ``within``."""
    steps = [
        _element(on(draw(st.sampled_from(TYPES))), draw(st.sampled_from(("one", "optional"))))
        for _ in range(draw(st.integers(2, 4)))
    ]
    tasks = []
    for _ in range(draw(st.integers(2, 6))):
        prefix = steps[: draw(st.integers(1, len(steps)))]
        tail = [on(draw(st.sampled_from(TYPES)))] if draw(st.booleans()) else []
        try:
            pattern = seq(*prefix, *tail)
        except PlanError:
            continue
        within = draw(st.sampled_from((None, 2, 5, 10, 1000)))
        tasks.append(pattern.within(within) if within else pattern)
    if not tasks:
        reject()
    return tasks


@settings(max_examples=400, deadline=None)
@given(task_families(), disordered_logs())
def test_tasks_sharing_prefixes_with_different_within_are_independent(tasks, log):
    events, watermarks = log
    expected = naive_fires(tasks, events, watermarks)
    for compiled in (False, True):
        fires = _fires(compiled, tasks, events, watermarks)
        assert fires == expected
        for index, task in enumerate(tasks):  # the same as the task alone in its own trie
            alone = _fires(compiled, [task], events, watermarks)
            assert [f for f in fires if f.pattern == index] == [
                f._replace(pattern=index) for f in alone
            ]

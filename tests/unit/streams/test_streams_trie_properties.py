"""The trigger trie fires exactly what the naive per-pattern matcher fires, and its
compiled loop (cython_kernels/trie_feed.pyx) fires exactly what the Python loop fires."""

from __future__ import annotations

from hypothesis import given, reject, settings
from hypothesis import strategies as st

from walle.errors import BackendError, PlanError
from walle.streams.events import Event
from walle.streams.naive import naive_fires
from walle.streams.patterns import (
    Pattern,
    Step,
    not_followed_by,
    on,
    one_or_more,
    optional,
    seq,
)
from walle.streams.trie import TriggerTrie, _compiled_feed

TYPES = ("a", "b", "c")
PAGES = ("p", "q")


@st.composite
def steps(draw: st.DrawFn) -> Step:
    kwargs = {}
    if draw(st.booleans()):
        kwargs["x"] = draw(st.integers(0, 1))
    where = None
    if draw(st.integers(0, 5)) == 0:
        where = _even_ts
    return on(
        draw(st.sampled_from((*TYPES, None))),
        draw(st.sampled_from((*PAGES, None, None))),
        where=where,
        **kwargs,
    )


def _even_ts(event: Event) -> bool:
    return event.ts % 2 == 0


@st.composite
def patterns(draw: st.DrawFn) -> Pattern:
    items: list = []
    for position in range(draw(st.integers(1, 4))):
        step = draw(steps())
        kind = draw(st.sampled_from(("one", "one", "optional", "plus")))
        items.append(
            optional(step) if kind == "optional" else one_or_more(step) if kind == "plus" else step
        )
        if position < 3 and draw(st.integers(0, 4)) == 0:
            items.append(not_followed_by(draw(steps())))
    if not any(isinstance(i, Step) or getattr(i, "quantifier", "") == "one_or_more" for i in items):
        items.append(draw(steps()))
    while items and type(items[-1]).__name__ == "_Guard":
        items.pop()
    try:
        pattern = seq(*items)
    except PlanError:
        reject()
    within = draw(st.sampled_from((None, None, 5, 20, 60)))
    return pattern.within(within) if within else pattern


@st.composite
def event_logs(draw: st.DrawFn) -> tuple[list[Event], list[int]]:
    n = draw(st.integers(0, 60))
    ts = 0
    events, watermarks = [], []
    max_ts = -1
    ooo = draw(st.sampled_from((0, 3)))
    for seq_no in range(n):
        ts += draw(st.integers(0, 6))
        jitter = draw(st.integers(0, 4)) if ooo else 0
        event_ts = max(0, ts - jitter)
        args = {"x": draw(st.integers(0, 1))} if draw(st.booleans()) else {}
        events.append(
            Event(
                "d",
                seq_no,
                event_ts,
                draw(st.sampled_from(TYPES)),
                draw(st.sampled_from(PAGES)),
                args,
            )
        )
        max_ts = max(max_ts, event_ts)
        watermarks.append(max_ts - ooo)
    return events, watermarks


def trie_fires(pattern_list, events, watermarks):
    trie = TriggerTrie()
    for p in pattern_list:
        trie.add(p)
    state = trie.new_state()
    fires = []
    for event, wm in zip(events, watermarks, strict=True):
        fires.extend(trie.feed(state, event, wm))
    return fires


@settings(max_examples=300, deadline=None)
@given(st.lists(patterns(), min_size=1, max_size=12), event_logs())
def test_trie_fires_what_the_naive_matcher_fires(pattern_list, log):
    events, watermarks = log
    assert trie_fires(pattern_list, events, watermarks) == naive_fires(
        pattern_list, events, watermarks
    )


@settings(max_examples=100, deadline=None)
@given(st.lists(patterns(), min_size=2, max_size=8), event_logs(), st.data())
def test_removing_a_pattern_leaves_the_others_unchanged(pattern_list, log, data):
    events, watermarks = log
    victim = data.draw(st.integers(0, len(pattern_list) - 1))
    trie = TriggerTrie()
    for p in pattern_list:
        trie.add(p)
    trie.remove(victim)
    state = trie.new_state()
    fires = []
    for event, wm in zip(events, watermarks, strict=True):
        fires.extend(trie.feed(state, event, wm))
    kept = [p for i, p in enumerate(pattern_list) if i != victim]
    expected = naive_fires(kept, events, watermarks)
    renumber = [i for i in range(len(pattern_list)) if i != victim]
    assert [(renumber[f.pattern], f.start, f.end) for f in expected] == [
        (f.pattern, f.start, f.end) for f in fires
    ]


def test_shared_prefixes_share_nodes():
    trie = TriggerTrie()
    for i in range(1000):
        trie.add(seq(on("page_enter", "item"), on("click", "item", slot=i)))
    # one node for the shared first step, one per distinct second step
    assert trie.node_count == 1 + 1 + 1000


def _require_compiled() -> None:
    if _compiled_feed() is None:
        raise BackendError("compiled trie not built: run `pip install -e .` (make test does)")


def _run(compiled, pattern_list, events, watermarks):
    trie = TriggerTrie(compiled=compiled)
    for p in pattern_list:
        trie.add(p)
    state = trie.new_state()
    fires = []
    for event, wm in zip(events, watermarks, strict=True):
        fires.extend(trie.feed(state, event, wm))
    return fires, state


@settings(max_examples=200, deadline=None)
@given(st.lists(patterns(), min_size=1, max_size=12), event_logs())
def test_compiled_and_python_tries_agree(pattern_list, log):
    _require_compiled()
    events, watermarks = log
    compiled, compiled_state = _run(True, pattern_list, events, watermarks)
    python, python_state = _run(False, pattern_list, events, watermarks)
    assert compiled == python
    assert compiled_state == python_state

"""Every aggregate, and that partial states merge to the same result as one pass."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from walle.streams import (
    App,
    PageWindow,
    collect,
    count,
    distinct,
    first,
    last,
    max_,
    mean,
    min_,
    sum_,
    top_k,
)
from walle.streams.events import Event
from walle.testing import literal_events, run_app

ALL = {
    "n": count(),
    "n_price": count("args.price"),
    "total": sum_("args.price"),
    "avg": mean("args.price"),
    "lo": min_("args.price"),
    "hi": max_("args.price"),
    "pages": distinct("args.tag"),
    "first": first("args.tag"),
    "last": last("args.tag"),
    "top": top_k("args.tag", 2),
    "all": collect("args.tag", limit=3),
}


def test_every_aggregate_over_one_page_visit():
    app = App("t")
    app.stream("a").window(PageWindow("item")).aggregate(**ALL)
    result = run_app(
        app,
        literal_events(
            (0, "page_enter", "item", {"tag": "x"}),
            (1, "click", "item", {"price": 2.0, "tag": "y"}),
            (2, "click", "item", {"price": 4.0, "tag": "x"}),
            (3, "page_exit", "item"),
        ),
    )
    assert result.values() == [
        {
            "n": 4,
            "n_price": 2,
            "total": 6.0,
            "avg": 3.0,
            "lo": 2.0,
            "hi": 4.0,
            "pages": 2,
            "first": "x",
            "last": "x",
            "top": [["x", 2], ["y", 1]],
            "all": ["x", "y", "x"],
        }
    ]


def test_empty_numeric_aggregates_give_none():
    app = App("t")
    app.stream("a").window(PageWindow("item")).aggregate(avg=mean("args.p"), lo=min_("args.p"))
    result = run_app(app, literal_events((0, "page_enter", "item"), (1, "page_exit", "item")))
    assert result.values() == [{"avg": None, "lo": None}]


values = st.lists(
    st.fixed_dictionaries({"price": st.integers(-5, 5), "tag": st.sampled_from("abc")}),
    max_size=30,
)


@settings(max_examples=80, deadline=None)
@given(values, st.data())
def test_merged_partial_states_equal_one_pass(rows, data):
    cut = data.draw(st.integers(0, len(rows)))
    events = [Event("d", i, i, "c", "", row) for i, row in enumerate(rows)]
    for agg in ALL.values():
        whole = agg.init()
        for e in events:
            whole = agg.add(whole, agg.value(e))
        left, right = agg.init(), agg.init()
        for e in events[:cut]:
            left = agg.add(left, agg.value(e))
        for e in events[cut:]:
            right = agg.add(right, agg.value(e))
        assert agg.result(agg.merge(left, right)) == agg.result(whole), agg.signature

"""Event-time windows do not depend on arrival order within the out-of-orderness bound.

Tumbling, hopping and session windows are defined by event time and the watermark only:
any arrival order in which every event is on time (its ts at least the watermark when it
arrives) gives the same final outputs, and the same late records for events that arrive
after their windows closed. Count, page, span and look-back windows are defined by arrival
(seq) order, so they are left out on purpose (README, "Windows, watermarks, lateness").
"""

from __future__ import annotations

from typing import Any, NamedTuple

from hypothesis import given, settings
from hypothesis import strategies as st

from walle.streams import (
    App,
    Engine,
    Hopping,
    Session,
    Tumbling,
    count,
    distinct,
    max_,
    mean,
    min_,
    sum_,
    top_k,
)
from walle.streams.events import Event
from walle.streams.results import Emissions
from walle.streams.windows import WindowSpec

OOO_MAX = 10
EXTENT_MAX = 40  # size (or gap) plus lateness never exceeds this
LATE_MAX = 6 * 5  # late events: ts in [0, 30], so ts + EXTENT_MAX + OOO_MAX < ON_TIME
ON_TIME = 100  # on-time events from here: every late event's windows close before it


class Row(NamedTuple):
    ts: int
    page: str
    v: int


@st.composite
def _rows(draw: st.DrawFn, first: int, min_size: int, max_size: int) -> list[Row]:
    """Rows whose ts start at ``first`` and grow by small steps (so events often sit near
    window and session boundaries), listed in ts order."""
    steps = draw(st.lists(st.integers(0, 5), min_size=min_size, max_size=max_size))
    rows, ts = [], first
    for step in steps:
        ts += step
        rows.append(Row(ts, draw(st.sampled_from(["a", "b"])), draw(st.integers(0, 9))))
    return rows


def _spec() -> st.SearchStrategy[WindowSpec]:
    lateness = st.just(0) | st.integers(0, 10)  # 0 half the time: boundaries bite there
    size = st.integers(1, 6) | st.integers(1, 30)  # small sizes and gaps: many boundaries
    hopping = st.tuples(size, size, lateness).map(
        lambda t: Hopping(max(t[0], t[1]), min(t[0], t[1]), t[2])
    )
    return st.one_of(
        st.builds(Tumbling, size, lateness), hopping, st.builds(Session, size, lateness)
    )


@st.composite
def _within_bound(draw: st.DrawFn, rows: list[Row], ooo: int) -> list[Row]:
    """An arrival order of ``rows`` in which no event is behind the watermark: each next
    event's ts is at most the smallest remaining ts plus ``ooo``."""
    remaining = sorted(rows, key=lambda r: r.ts)
    order = []
    while remaining:
        low = remaining[0].ts
        eligible = [i for i, r in enumerate(remaining) if r.ts <= low + ooo]
        order.append(remaining.pop(draw(st.sampled_from(eligible[::-1]))))  # latest first
    return order


def _app(spec: WindowSpec, emit: str, keyed: bool, ooo: int) -> App:
    app = App("order", out_of_orderness_ms=ooo)
    stream = app.stream("agg")
    if keyed:
        stream = stream.key_by(lambda e: e.page)
    stream.window(spec, emit=emit).aggregate(
        n=count(),
        total=sum_("args.v"),
        low=min_("args.v"),
        high=max_("args.v"),
        avg=mean("args.v"),
        pages=distinct("page"),
        top=top_k("page", 2),
    )

    @app.task(window=spec, emit=emit)
    def stamps(window: Any) -> dict[str, Any]:
        return {"ts": sorted(e.ts for e in window.events), "start": window.start}

    return app


def _run(app: App, rows: list[Row]) -> Emissions:
    engine = Engine(app)
    out = Emissions()
    for seq, row in enumerate(rows):
        out.extend(engine.process(Event("d1", seq, row.ts, "click", row.page, {"v": row.v})))
    return out.extend(engine.advance_to(10**9))


def _final(out: Emissions, update: bool) -> dict[str, Any]:
    """Per task: every output in order (final mode) or the last value per window (update)."""
    tasks: dict[str, Any] = {}
    for o in out.outputs:
        if update:
            tasks.setdefault(o.task, {})[o.window] = (o.ts, o.value)
        else:
            tasks.setdefault(o.task, []).append((o.window, o.ts, o.value))
    return tasks


def _late(out: Emissions) -> list[tuple[Any, ...]]:
    return sorted((x.task, x.event.ts, x.event.page, x.event.args["v"], x.reason) for x in out.late)


@settings(max_examples=400, deadline=None)
@given(
    spec=_spec(),
    update=st.booleans(),
    keyed=st.booleans(),
    ooo=st.integers(0, OOO_MAX),
    on_time=_rows(ON_TIME, 1, 25),
    late=_rows(0, 0, 6),
    data=st.data(),
)
def test_any_arrival_order_within_the_bound_gives_the_same_outputs_and_late_records(
    spec, update, keyed, ooo, on_time, late, data
):
    update = update and not isinstance(spec, Session)  # sessions are final only
    app = _app(spec, "update" if update else "final", keyed, ooo)
    in_ts_order = on_time + late
    shuffled = data.draw(_within_bound(on_time, ooo)) + data.draw(st.permutations(late))
    expected, got = _run(app, in_ts_order), _run(app, shuffled)
    assert _final(got, update) == _final(expected, update)
    assert _late(got) == _late(expected)
    assert len(expected.late) >= 2 * len(late)  # every late row is late for both tasks

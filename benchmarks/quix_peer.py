"""Quix Streams peer for the cloud benchmark: walle's three example tasks, done the Quix way.

The peer a Python user would pick for stateful Kafka streams is Quix Streams (PyPI
``quixstreams``, confluent-kafka underneath). This module runs the three example tasks of
``benchmarks/cloud_bench.py`` (item page views, clicks per category, search -> cart) as ONE
Quix ``Application`` with three branches of one ``StreamingDataFrame``, per device (the
input key), with Quix's own stateful machinery: RocksDB state through ``State`` in
``sdf.apply(..., stateful=True)`` for the page window and the sequence trigger, and a Quix
tumbling window (``tumbling_window(...).reduce(...).final()``) for the clicks. Changelog
topics are on (Quix's default): at each checkpoint (every 5 s, and at the end) the changed
state keys go to RocksDB and to their changelog topics, and the input offsets are committed.

The application runs in a child process so that its CPU time is its own; the child times
itself from the first processed event to the last (start-up and the group join excluded)
and stops on the known event count (the embedded broker reports end offsets too low).

Per task, what the Quix app does (``walle`` semantics in README.md, "Semantics"):

- ``item_view`` (PageWindow("item"), 30 min timeout): per device a stack of open visits in
  state; a ``page_enter``/item opens one, every event of page "item" updates the open
  visits' clicks / add-to-cart / deepest scroll, a ``page_exit``/item closes the innermost
  (one output); a visit still open 30 min after its enter (by the device watermark, its
  max event time - 5 s) closes as incomplete.
- ``clicks_per_category`` (filter clicks, key by category, Tumbling(5 min, lateness 60 s),
  count + distinct pages, final): clicks go through a Quix tumbling window per device with
  ``grace_ms`` = 60 s + 5 s out-of-orderness (walle closes a window when its device's
  watermark, max time - 5 s, reaches end + 60 s: the same instant) whose reduce keeps
  ``{category: [clicks, pages]}``; each closed window gives one output per category.
- ``search_to_cart`` (entered(search) -> entered(item) -> on(add_to_cart) within 10 min, over
  the events of the match): per device the trigger's automaton in state (latest start per
  position, after-match skip, ``within`` against the match span and the watermark); a
  firing emits the funnel from running per-device counters (events and item enters since
  the match's start), so no event is kept.

That is the folded form (the default): what a Quix user writing these three features would
write. ``buffered=True`` (``--buffered``) is the general form walle runs, a task function
over the window's events: the open visits and the trigger's span keep their events in
state (the span trimmed to the oldest live partial match) and the features are computed
from them when the window closes; more state to serialise per event, the same outputs.

Semantics: a per-device stateful filter first drops duplicates (seq at or below the
device's last) and stamps the device watermark, as walle's engine does. On the same events
both forms give walle's outputs key for key and value for value (``main`` checks it),
except at the very end of the input for clicks: the Quix window's clock is the device's
latest *click* time (the window sees clicks only), walle's the device's latest event time,
so a device's last window can still be open on the Quix side when walle has closed it
(1 of 1,706 windows at 20,000 events, 5 of 5,226 at 60,000).

Settings changed from Quix's defaults, all for the embedded broker or the measurement:
a fresh consumer group and state dir per run (the broker's low end offsets make a restart
with local state fail), ``auto_offset_reset="earliest"``, ``session.timeout.ms=6000`` and
``heartbeat.interval.ms=1000`` (a group join takes about half the session timeout), and an
explicit ``retention.ms`` on the input topic (added if missing: Quix derives its changelog
topics from it, and the broker's describe-configs returns only settings given at
creation). Quix creates its changelog topics itself. Commit interval (5 s), log level
(INFO, to a log file), processing guarantee (at-least-once) and changelogs are Quix's
defaults.

The child is started with multiprocessing's "spawn": a calling script needs the usual
``if __name__ == "__main__":`` guard. Run (embedded broker, ``bench_events(N)`` produced,
Quix run, outputs compared with walle's engine on the same events):

    .venv/bin/python benchmarks/quix_peer.py [--events N] [--buffered]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TASKS = ("item_view", "clicks_per_category", "search_to_cart")

_CLICK_WINDOW_MS = 5 * 60 * 1000
_CLICK_LATENESS_MS = 60 * 1000
_OUT_OF_ORDERNESS_MS = 5_000
_PAGE_TIMEOUT_MS = 30 * 60 * 1000
_FUNNEL_WITHIN_MS = 10 * 60 * 1000
_SPAN_MAX_EVENTS = 500

# librdkafka's group join takes about half the session timeout on the embedded broker.
_SESSION_TIMEOUT_MS = 6_000
_HEARTBEAT_MS = 1_000
_RETENTION_MS = "-1"


@dataclass(frozen=True)
class QuixResult:
    """What one Quix run measured.

    ``events_per_s`` is timed from the first processed event to the last;
    ``events_per_s_closed`` from the first event until the app stopped, its final
    checkpoint (state flush, changelog and output delivery, offset commit) included;
    ``client_cpu_s`` is the child's CPU (all its threads, librdkafka's included) over the
    same span plus the final checkpoint and shutdown; ``client_cpu_total_s`` adds start-up
    and the group join (the child's whole rusage); ``broker_cpu_s`` is the broker's CPU
    over the processing span, when its pid was given.
    """

    events: int
    elapsed_s: float
    events_per_s: float
    events_per_s_closed: float
    client_cpu_s: float
    client_cpu_total_s: float
    startup_s: float
    outputs: dict[str, int] = field(default_factory=dict)
    broker_cpu_s: float | None = None

    def per_1000(self, seconds: float | None) -> float | None:
        """Milliseconds per 1,000 events of a CPU figure in seconds."""
        return None if seconds is None else seconds * 1e3 / self.events * 1_000


@dataclass(frozen=True)
class _Job:
    bootstrap: str
    input_topic: str
    output_topic: str
    partitions: int
    total_events: int
    group: str
    state_dir: str
    log_path: str
    broker_pid: int | None
    buffered: bool


# -- CPU of a process from /proc ----------------------------------------------------------------


def broker_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and all its threads, from /proc.

    ``/proc/<pid>/stat`` fields 14 and 15 (utime, stime) cover every thread of the
    process; the clock tick comes from ``os.sysconf``. Used around benchmark rows to charge
    the embedded broker's CPU per 1,000 events.
    """
    with open(f"/proc/{pid}/stat", "rb") as stream:
        raw = stream.read().decode()
    # The command name (field 2) may contain spaces: split after its closing parenthesis.
    fields = raw[raw.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


# -- the three tasks as Quix callbacks ---------------------------------------------------------


def _output(task: str, device: str, window: str, end: int, value: dict[str, Any]) -> dict:
    """An output record shaped like walle's (task, device, window, end, value)."""
    return {"task": task, "device_id": device, "window": window, "end": end, "value": value}


def _clock(event: dict[str, Any], state: Any) -> bool:
    """Per device: drop duplicates (seq at or below the last) and stamp the watermark.

    Keeps ``last_seq``, ``max_ts`` and running counts of events and item-page enters (the
    search -> cart funnel reads them) in one state key; adds ``wm``, ``n`` and ``items``
    to the event for the branches below.
    """
    clock = state.get("clock")
    if clock is None:
        clock = [-1, -(2**62), 0, 0]
    if event["seq"] <= clock[0]:
        return False
    clock[0] = event["seq"]
    if event["ts"] > clock[1]:
        clock[1] = event["ts"]
    clock[2] += 1
    if event["event"] == "page_enter" and event["page"] == "item":
        clock[3] += 1
    state.set("clock", clock)
    event["wm"] = clock[1] - _OUT_OF_ORDERNESS_MS
    event["n"] = clock[2]
    event["items"] = clock[3]
    return True


def _features(
    device: str, seq: int, start: int, end_ts: int, complete: bool, features: dict[str, Any]
) -> dict:
    """An ``item_view`` output: the visit's features plus its dwell time and completeness."""
    window = f"page:item:{seq}" + ("" if complete else ":open")
    value = {**features, "dwell_ms": end_ts - start, "complete": complete}
    return _output("item_view", device, window, end_ts, value)


def _item_view(event: dict[str, Any], state: Any) -> list[dict]:
    """Page window over item visits: nested visits, 30 min timeout, one output per visit.

    State ``visits``: the open visits, outermost first, each
    ``[enter seq, enter ts, item_id, category, clicks, added_to_cart, max_scroll]``,
    folded event by event (a Quix reduce, by hand: Quix has no page window).
    """
    visits = state.get("visits")
    kind, page = event["event"], event["page"]
    opened = kind == "page_enter" and page == "item"
    if not visits and not opened:
        return []
    visits = visits or []
    out: list[dict] = []
    device = event["device_id"]
    if opened:
        args = event["args"]
        visits.append([event["seq"], event["ts"], args.get("item_id"), args.get("category"),
                       0, False, 0])  # fmt: skip
    if page == "item":
        for visit in visits:
            if kind == "click":
                visit[4] += 1
            elif kind == "add_to_cart":
                visit[5] = True
            elif kind == "scroll":
                visit[6] = max(visit[6], event["args"].get("depth", 0))
    closed = []
    if kind == "page_exit" and page == "item" and visits:
        closed.append((visits.pop(), event["ts"], True))
    wm = event["wm"]
    while visits and visits[0][1] + _PAGE_TIMEOUT_MS <= wm:
        visit = visits.pop(0)
        closed.append((visit, visit[1] + _PAGE_TIMEOUT_MS, False))
    for (seq, start, item_id, category, clicks, added, scroll), end_ts, complete in closed:
        features = {"item_id": item_id, "category": category, "clicks": clicks,
                    "added_to_cart": added, "max_scroll": scroll}  # fmt: skip
        out.append(_features(device, seq, start, end_ts, complete, features))
    state.set("visits", visits)
    return out


_KEPT = ("seq", "ts", "event", "page", "args")


def _kept(event: dict[str, Any]) -> dict[str, Any]:
    """The fields of an event a buffered window keeps in state."""
    return {name: event[name] for name in _KEPT}


def _item_view_buffered(event: dict[str, Any], state: Any) -> list[dict]:
    """``_item_view`` the general way: each open visit keeps its events in state.

    What walle's task function gets (``window.events``), and what a Quix user writing a
    task as a function over a window's events has to keep: state ``visits`` holds
    ``[enter seq, enter ts, [events]]`` per open visit; the features are computed from
    the events when the visit closes.
    """
    visits = state.get("visits")
    kind, page = event["event"], event["page"]
    if kind == "page_enter" and page == "item":
        visits = visits or []
        visits.append([event["seq"], event["ts"], []])
    if not visits:
        return []
    kept = _kept(event)
    for visit in visits:
        visit[2].append(kept)
    closed = []
    if kind == "page_exit" and page == "item":
        closed.append((visits.pop(), event["ts"], True))
    wm = event["wm"]
    while visits and visits[0][1] + _PAGE_TIMEOUT_MS <= wm:
        visit = visits.pop(0)
        closed.append((visit, visit[1] + _PAGE_TIMEOUT_MS, False))
    out = []
    for (seq, start, events), end_ts, complete in closed:
        enter = events[0]
        own = [e for e in events if e["page"] == "item"]
        features = {
            "item_id": enter["args"].get("item_id"),
            "category": enter["args"].get("category"),
            "clicks": sum(e["event"] == "click" for e in own),
            "added_to_cart": any(e["event"] == "add_to_cart" for e in own),
            "max_scroll": max(
                (e["args"].get("depth", 0) for e in own if e["event"] == "scroll"), default=0
            ),
        }
        out.append(_features(event["device_id"], seq, start, end_ts, complete, features))
    state.set("visits", visits)
    return out


def _later(a: list[int] | None, b: list[int] | None) -> list[int] | None:
    """The partial match that started later (by seq)."""
    if a is None:
        return b
    if b is None:
        return a
    return a if a[0] >= b[0] else b


def _funnel_step(event: dict[str, Any]) -> int:
    """Which step of entered(search) -> entered(item) -> on(add_to_cart) the event is (0: none)."""
    kind = event["event"]
    if kind == "page_enter":
        page = event["page"]
        return 1 if page == "search" else 2 if page == "item" else 0
    return 3 if kind == "add_to_cart" else 0


def _advance_funnel(funnel: list[Any], event: dict[str, Any], step: int) -> list[int] | None:
    """Advance the trigger's automaton over one event; the firing match's start, or None.

    ``funnel`` is ``[best1, best2, consumed]``: ``best_i`` the latest-starting partial
    match through step i as ``[start seq, start ts, events before, item enters before]``
    (None when there is none or the watermark has made it impossible: walle's trie drops
    those too), ``consumed`` the seq of the last firing (after-match skip). A firing needs
    ``end.ts - start.ts <= within`` and a watermark not past ``start.ts + within``.
    """
    wm = event["wm"]
    for i in (0, 1):
        if funnel[i] is not None and funnel[i][1] + _FUNNEL_WITHIN_MS < wm:
            funnel[i] = None
    if step == 1:
        funnel[0] = _later(funnel[0], [event["seq"], event["ts"], event["n"] - 1, event["items"]])
    elif step == 2:
        if funnel[0] is not None:
            funnel[1] = _later(funnel[1], funnel[0])
    elif step == 3:
        start = funnel[1]
        if (
            start is not None
            and start[0] > funnel[2]
            and event["ts"] - start[1] <= _FUNNEL_WITHIN_MS
            and wm <= start[1] + _FUNNEL_WITHIN_MS
        ):
            funnel[2] = event["seq"]
            return start
    return None


def _funnel_output(event: dict[str, Any], start: list[int], events: int, items: int) -> dict:
    args = event["args"]
    value = {
        "item_id": args.get("item_id"),
        "price": args.get("price"),
        "seconds_to_cart": (event["ts"] - start[1]) / 1000,
        "events": events,
        "items_viewed": items,
    }
    window = f"match:{start[0]}-{event['seq']}"
    return _output("search_to_cart", event["device_id"], window, event["ts"], value)


def _search_to_cart(event: dict[str, Any], state: Any) -> list[dict]:
    """Sequence trigger entered(search) -> entered(item) -> on(add_to_cart) within 10 min.

    State ``funnel`` (see ``_advance_funnel``); a firing reports the funnel over the
    events of the match from the per-device counters that ``_clock`` stamps (events and
    item enters so far), so no event is kept.
    """
    step = _funnel_step(event)
    if not step:
        return []
    funnel = state.get("funnel") or [None, None, -1]
    start = _advance_funnel(funnel, event, step)
    state.set("funnel", funnel)
    if start is None:
        return []
    events = min(event["n"] - start[2], _SPAN_MAX_EVENTS)
    return [_funnel_output(event, start, events, event["items"] - start[3])]


def _search_to_cart_buffered(event: dict[str, Any], state: Any) -> list[dict]:
    """``_search_to_cart`` the general way: the match's events are kept and read back.

    State ``buffer`` holds the device's events from the oldest live partial match on
    (walle's trigger buffer, trimmed as walle trims it); a firing computes the funnel
    from the events of the match (the last 500), as walle's task function does.
    """
    step = _funnel_step(event)
    funnel = state.get("funnel") or [None, None, -1]
    buffer = state.get("buffer") or []
    start = _advance_funnel(funnel, event, step) if step else None
    live = [best[0] for best in funnel[:2] if best is not None]
    if not live and not buffer and start is None:
        if step:
            state.set("funnel", funnel)
        return []
    buffer.append(_kept(event))
    out = []
    if start is not None:
        window = [e for e in buffer if e["seq"] >= start[0]][-_SPAN_MAX_EVENTS:]
        items = sum(e["event"] == "page_enter" and e["page"] == "item" for e in window)
        out.append(_funnel_output(event, start, len(window), items))
    oldest = min(live, default=event["seq"] + 1)
    buffer = [e for e in buffer if e["seq"] >= oldest]
    state.set("funnel", funnel)
    state.set("buffer", buffer)
    return out


def _clicks_init(event: dict[str, Any]) -> dict[str, list[Any]]:
    return _clicks_add({}, event)


def _clicks_add(acc: dict[str, list[Any]], event: dict[str, Any]) -> dict[str, list[Any]]:
    """Fold a click into ``{category: [clicks, distinct pages]}`` (JSON-serialisable)."""
    category = str(event["args"].get("category", "unknown"))
    slot = acc.get(category)
    if slot is None:
        slot = acc[category] = [0, []]
    slot[0] += 1
    if event["page"] not in slot[1]:
        slot[1].append(event["page"])
    return acc


def _clicks_outputs(window: dict[str, Any], key: Any, timestamp: int, headers: Any) -> list:
    device = key.decode() if isinstance(key, bytes) else str(key)
    start, end = window["start"], window["end"]
    out = []
    for category, (clicks, pages) in sorted(window["value"].items()):
        value = {"clicks": clicks, "pages": len(pages)}
        window_id = f"tumbling:{start}-{end}:{category}"
        out.append(_output("clicks_per_category", device, window_id, end, value))
    return out


# -- the child process ---------------------------------------------------------------------


def _event_time(value: Any, headers: Any, timestamp: float, timestamp_type: Any) -> int:
    return int(value["ts"])


def _child(conn: Any, job: _Job) -> None:
    """Build and run the Quix app; send back timings and output counts over ``conn``.

    Its stdout and stderr (Quix's INFO log, librdkafka's messages) go to ``job.log_path``:
    the benchmark's own output stays readable, and a failure reports the log's tail.
    """
    log = os.open(job.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    from quixstreams import Application

    outputs: Counter[str] = Counter()
    marks: dict[str, float] = {}
    seen = 0

    app: Any = None

    def processed(topic: str, partition: int, offset: int) -> None:
        nonlocal seen
        seen += 1
        if seen == 1:
            marks["first_wall"] = time.perf_counter()
            marks["first_cpu"] = time.process_time()
            if job.broker_pid is not None:
                marks["first_broker"] = broker_cpu_seconds(job.broker_pid)
        if seen >= job.total_events:
            marks["last_wall"] = time.perf_counter()
            if job.broker_pid is not None:
                marks["last_broker"] = broker_cpu_seconds(job.broker_pid)
            app.stop()

    def counted(record: dict[str, Any]) -> None:
        outputs[record["task"]] += 1

    started = time.perf_counter()
    app = Application(
        broker_address=job.bootstrap,
        consumer_group=job.group,
        auto_offset_reset="earliest",
        state_dir=job.state_dir,
        consumer_extra_config={
            "session.timeout.ms": _SESSION_TIMEOUT_MS,
            "heartbeat.interval.ms": _HEARTBEAT_MS,
        },
        on_message_processed=processed,
    )
    source = app.topic(job.input_topic, key_deserializer="str", value_deserializer="json",
                       timestamp_extractor=_event_time)  # fmt: skip
    sink = app.topic(job.output_topic, key_serializer="str", value_serializer="json")
    sdf = app.dataframe(source)
    sdf = sdf.filter(_clock, stateful=True)

    page_task = _item_view_buffered if job.buffered else _item_view
    views = sdf.apply(page_task, stateful=True, expand=True)
    views.update(counted).to_topic(sink)

    trigger_task = _search_to_cart_buffered if job.buffered else _search_to_cart
    funnels = sdf.apply(trigger_task, stateful=True, expand=True)
    funnels.update(counted).to_topic(sink)

    clicks = sdf.filter(lambda event: event["event"] == "click")
    clicks = clicks.tumbling_window(
        _CLICK_WINDOW_MS, grace_ms=_CLICK_LATENESS_MS + _OUT_OF_ORDERNESS_MS
    )
    clicks = clicks.reduce(_clicks_add, _clicks_init).final()
    clicks = clicks.apply(_clicks_outputs, metadata=True, expand=True)
    clicks.update(counted).to_topic(sink)

    app.run()
    marks["closed_wall"] = time.perf_counter()
    end_cpu = time.process_time()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    conn.send(
        {
            "seen": seen,
            "marks": marks,
            "end_cpu": end_cpu,
            "total_cpu": usage.ru_utime + usage.ru_stime,
            "started": started,
            "outputs": dict(outputs),
        }
    )
    conn.close()


# -- the parent side -------------------------------------------------------------------------


def _ensure_retention(bootstrap: str, topic: str) -> None:
    """Give ``topic`` an explicit ``retention.ms`` if the broker reports none.

    Quix derives its changelog topics' settings from the input topic's ``retention.ms``
    (read with describe-configs); the embedded broker returns only the settings given at
    creation, so a topic created without one would make the Quix set-up fail.
    """
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource_ = ConfigResource("topic", topic)
    configs = next(iter(admin.describe_configs([resource_]).values())).result(timeout=10)
    if "retention.ms" in configs:
        return
    entry = ConfigEntry("retention.ms", _RETENTION_MS,
                        incremental_operation=AlterConfigOpType.SET)  # fmt: skip
    change = ConfigResource("topic", topic, incremental_configs=[entry])
    next(iter(admin.incremental_alter_configs([change]).values())).result(timeout=10)


def _tail(job: _Job, chars: int = 3000) -> str:
    """The end of the child's log, for error messages."""
    try:
        text = Path(job.log_path).read_text(errors="replace")
    except OSError:
        return ""
    return f"\n--- {job.log_path} (tail) ---\n{text[-chars:]}"


def run_quix(
    bootstrap: str,
    input_topic: str,
    partitions: int,
    total_events: int,
    output_topic: str,
    timeout_s: float = 600,
    *,
    broker_pid: int | None = None,
    buffered: bool = False,
) -> QuixResult:
    """Run the three tasks on Quix Streams over ``input_topic``; returns its figures.

    ``input_topic`` holds ``total_events`` JSON events keyed by device id; the app reads
    it from the earliest offset in a fresh consumer group with empty state (a temp dir,
    removed afterwards), writes outputs to ``output_topic`` (created with ``partitions``
    partitions if missing) and stops once it processed ``total_events`` events. With
    ``broker_pid`` the broker's CPU over the processing span is measured too. With
    ``buffered`` the page and trigger windows keep their events in state and compute the
    task from them (walle's general task-over-window-events form) instead of folding.
    """
    from walle.kafka import create_topics

    _ensure_retention(bootstrap, input_topic)
    create_topics(bootstrap, {output_topic: partitions})
    run_id = uuid.uuid4().hex[:10]
    workdir = Path(tempfile.mkdtemp(prefix=f"quix-peer-{run_id}-"))
    job = _Job(bootstrap=bootstrap, input_topic=input_topic, output_topic=output_topic,
               partitions=partitions, total_events=total_events, group=f"quix-peer-{run_id}",
               state_dir=str(workdir / "state"), log_path=str(workdir / "quix.log"),
               broker_pid=broker_pid, buffered=buffered)  # fmt: skip
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    child = context.Process(target=_child, args=(sender, job), daemon=True)
    try:
        child.start()
        sender.close()
        if not receiver.poll(timeout_s):
            raise TimeoutError(
                f"Quix did not process {total_events} events in {timeout_s}s{_tail(job)}"
            )
        report = receiver.recv()
        child.join(timeout=60)
    except EOFError:
        child.join(timeout=10)
        raise RuntimeError(
            f"the Quix child exited early (status {child.exitcode}){_tail(job)}"
        ) from None
    finally:
        if child.is_alive():
            child.kill()
            child.join(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    marks = report["marks"]
    if report["seen"] < total_events or "last_wall" not in marks:
        raise RuntimeError(f"Quix stopped after {report['seen']}/{total_events} events")
    elapsed = marks["last_wall"] - marks["first_wall"]
    total_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    broker = None
    if broker_pid is not None:
        broker = marks["last_broker"] - marks["first_broker"]
    return QuixResult(
        events=total_events,
        elapsed_s=elapsed,
        events_per_s=(total_events - 1) / elapsed if elapsed > 0 else float("inf"),
        events_per_s_closed=total_events / (marks["closed_wall"] - marks["first_wall"]),
        client_cpu_s=report["end_cpu"] - marks["first_cpu"],
        client_cpu_total_s=total_cpu or report["total_cpu"],
        startup_s=marks["first_wall"] - report["started"],
        outputs={task: report["outputs"].get(task, 0) for task in TASKS},
        broker_cpu_s=broker,
    )


def _examples_app() -> Any:
    """cloud_bench's App of the three example tasks (imported here: no import cycle)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from cloud_bench import examples_app

    return examples_app()


def walle_keyed_outputs(events: list[Any], app: Any = None) -> dict[tuple[str, str, str], Any]:
    """walle's engine on the same events: ``(task, device, window) -> value``.

    No forced watermark (no ``advance_to``): windows still open at the end of the input
    give no output, as on the Quix side.
    """
    from walle.streams import Engine

    emitted = Engine(app if app is not None else _examples_app()).process_many(events)
    return {(o.task, o.device_id, o.window): o.value for o in emitted.outputs}


def walle_outputs(events: list[Any], app: Any = None) -> dict[str, int]:
    """Outputs per task of walle's engine on the same events (``app``: the three tasks)."""
    counts = Counter(task for task, _, _ in walle_keyed_outputs(events, app))
    return {task: counts.get(task, 0) for task in TASKS}


def read_outputs(bootstrap: str, topic: str) -> dict[tuple[str, str, str], Any]:
    """The Quix outputs on ``topic``: ``(task, device, window) -> value``."""
    import json

    from walle.kafka import read_to_end

    outputs = {}
    for record in read_to_end(bootstrap, topic):
        if record.value is not None:
            output = json.loads(record.value)
            outputs[(output["task"], output["device_id"], output["window"])] = output["value"]
    return outputs


def produce_events(bootstrap: str, topic: str, events: list[Any], partitions: int = 4) -> int:
    """Create ``topic`` and send ``events`` to it as JSON keyed by device id, in order.

    As the cloud runtime's input: ``Event.to_json`` values, Java-compatible key hashing
    (walle's producer defaults), so a device's events stay in one partition in seq order.
    """
    from walle.kafka import create_topics, producer

    create_topics(bootstrap, {topic: partitions})
    client = producer(bootstrap, **{"linger.ms": 20, "batch.size": 256 * 1024})
    for event in events:
        while True:
            try:
                client.produce(topic, key=event.device_id.encode(), value=event.to_json().encode())
                break
            except BufferError:  # the local queue is full: let deliveries drain
                client.poll(0.05)
        client.poll(0)
    left = client.flush(60)
    if left:
        raise RuntimeError(f"{left} events were not delivered to {topic!r}")
    return len(events)


def main() -> None:
    """Embedded broker, ``bench_events(N)`` produced, Quix run, figures printed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--buffered", action="store_true",
                        help="page and trigger windows keep their events in state")  # fmt: skip
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from cloud_bench import bench_events

    from walle.kafka import EmbeddedBroker

    partitions = 4
    events = bench_events(args.events)
    expected = walle_keyed_outputs(events)
    run_id = uuid.uuid4().hex[:8]
    source, sink = f"quix-in-{run_id}", f"quix-out-{run_id}"
    with EmbeddedBroker() as broker:
        produce_events(broker.bootstrap, source, events, partitions)
        pid = broker._process.pid  # the benchmark charges the broker's CPU
        broker_before = broker_cpu_seconds(pid)
        result = run_quix(broker.bootstrap, source, partitions, len(events), sink,
                          broker_pid=pid, buffered=args.buffered)  # fmt: skip
        broker_around = broker_cpu_seconds(pid) - broker_before
        produced = read_outputs(broker.bootstrap, sink)
    per_k = result.per_1000
    form = "buffered (windows keep their events)" if args.buffered else "folded"
    print(f"events: {result.events} from 40 devices, {partitions} partitions, embedded broker "
          f"(Tansu); Quix tasks {form}")  # fmt: skip
    print(f"Quix Streams: {result.events_per_s:,.0f} events/s first to last event "
          f"({result.elapsed_s:.2f} s; start-up + group join {result.startup_s:.1f} s before); "
          f"{result.events_per_s_closed:,.0f} events/s up to the final checkpoint")  # fmt: skip
    print(f"client CPU: {per_k(result.client_cpu_s):.0f} ms per 1,000 events "
          f"(whole child with start-up: {per_k(result.client_cpu_total_s):.0f} ms)")  # fmt: skip
    print(f"broker CPU: {per_k(result.broker_cpu_s):.1f} ms per 1,000 events over processing "
          f"({per_k(broker_around):.1f} ms around the whole run)")  # fmt: skip
    print(f"{'outputs per task':<22}{'quix':>8}{'walle':>8}{'same key+value':>16}")
    for task in TASKS:
        mine = {k: v for k, v in produced.items() if k[0] == task}
        theirs = {k: v for k, v in expected.items() if k[0] == task}
        same = sum(1 for key, value in theirs.items() if mine.get(key) == value)
        print(f"{task:<22}{result.outputs[task]:>8}{len(theirs):>8}{same:>16}")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()

"""The app the device crash and retention tests run: page windows, tumbling windows, a
trigger task, and a task that fails on some windows (so dead letters are part of the check)."""

from __future__ import annotations

from walle.streams import (
    App,
    PageWindow,
    Tumbling,
    clicked,
    count,
    distinct,
    entered,
    exited,
    max_,
    seq,
    sum_,
)

app = App("device_crash", out_of_orderness_ms=1_000)

app.stream("item_visit").window(PageWindow("item")).aggregate(
    events=count(), spent=sum_("args.price"), dearest=max_("args.price")
)
app.stream("per_minute").window(Tumbling(60_000)).aggregate(events=count(), pages=distinct("page"))


@app.task(trigger=seq(entered("cart"), clicked("cart"), exited("cart")))
def cart_click(window):
    """Fires for a cart visit with a click; fails on visits of 5, 10, ... events (dead letter)."""
    if len(window.events) % 5 == 0:
        raise ValueError(f"a visit of {len(window.events)} events is refused")
    targets = {event.args.get("target") for event in window.events}
    return {"events": len(window.events), "targets": sorted(t for t in targets if t)}

"""Clicks per category in tumbling 5-minute event-time windows, final values only.

Events may arrive up to 5 s out of order (the watermark lags the newest event time by
that much) and windows accept late events for 1 more minute; later ones go to the late
side output with the reason.
"""

from walle.streams import App, Tumbling, count, distinct

app = App("clicks_per_category", out_of_orderness_ms=5_000)

(
    app.stream("clicks_per_category")
    .filter(lambda e: e.event == "click")
    .key_by(lambda e: str(e.args.get("category", "unknown")))
    .window(Tumbling(5 * 60 * 1000, lateness_ms=60 * 1000))
    .aggregate(clicks=count(), pages=distinct("page"))
)

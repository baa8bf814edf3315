"""Item page-view features (the Walle paper's running example).

When the user leaves an item page: the item, dwell time, clicks, whether it was added to
the cart, and the deepest scroll. Nested item pages (a recommended item opened from an
item page) are visits of their own.
"""

from walle.streams import App, PageWindow, Window

app = App("item_page_view", out_of_orderness_ms=5_000)


@app.task(window=PageWindow("item", timeout_ms=30 * 60 * 1000))
def item_view(window: Window) -> dict:
    """One feature record per item page visit."""
    enter = window.events[0]
    own = [e for e in window.events if e.page == "item"]
    return {
        "item_id": enter.args.get("item_id"),
        "category": enter.args.get("category"),
        "dwell_ms": window.end - window.start,
        "clicks": sum(e.event == "click" for e in own),
        "added_to_cart": any(e.event == "add_to_cart" for e in own),
        "max_scroll": max((e.args.get("depth", 0) for e in own if e.event == "scroll"), default=0),
        "complete": window.complete,
    }

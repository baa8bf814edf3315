"""A sequence trigger: search, then an item page, then add-to-cart, within 10 minutes.

The task runs over the events of the match (first to last) and reports the funnel.
"""

from walle.streams import App, Span, Window, entered, on, seq

app = App("search_to_cart", out_of_orderness_ms=5_000)

FUNNEL = seq(entered("search"), entered("item"), on("add_to_cart")).within(10 * 60 * 1000)


@app.task(trigger=FUNNEL, window=Span(max_events=500))
def search_to_cart(window: Window) -> dict:
    """Time from search to cart and what happened in between."""
    cart = window.events[-1]
    return {
        "item_id": cart.args.get("item_id"),
        "price": cart.args.get("price"),
        "seconds_to_cart": (window.end - window.start) / 1000,
        "events": len(window.events),
        "items_viewed": sum(e.event == "page_enter" and e.page == "item" for e in window.events),
    }

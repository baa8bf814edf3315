"""walle.streams: events, the trigger DSL, windows, aggregates, plans and the engine."""

from walle.streams.aggregates import (
    Aggregate,
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
from walle.streams.app import App, StreamBuilder, Window, load_app
from walle.streams.engine import Engine
from walle.streams.events import (
    CLICK,
    EXPOSURE,
    PAGE_ENTER,
    PAGE_EXIT,
    SCROLL,
    BadRecord,
    Event,
    decode_event,
    read_jsonl,
    validate_event,
    write_jsonl,
)
from walle.streams.patterns import (
    Pattern,
    Step,
    click,
    enter,
    exit,
    exposure,
    not_followed_by,
    on,
    one_or_more,
    optional,
    scroll,
    seq,
)
from walle.streams.plan import STEP_KINDS, Plan
from walle.streams.results import DeadLetter, Emissions, LateEvent, Output
from walle.streams.trie import TriggerTrie
from walle.streams.windows import (
    CountWindow,
    Hopping,
    LookBack,
    PageWindow,
    Session,
    Span,
    Tumbling,
)

__all__ = [
    "CLICK", "EXPOSURE", "PAGE_ENTER", "PAGE_EXIT", "SCROLL", "STEP_KINDS",
    "Aggregate", "App", "BadRecord", "CountWindow", "DeadLetter", "Emissions", "Engine",
    "Event", "Hopping", "LateEvent", "LookBack", "Output", "PageWindow", "Pattern", "Plan",
    "Session", "Span", "Step", "StreamBuilder", "TriggerTrie", "Tumbling", "Window",
    "click", "collect", "count", "decode_event", "distinct", "enter", "exit", "exposure",
    "first", "last", "load_app", "max_", "mean", "min_", "not_followed_by", "on",
    "one_or_more", "optional", "read_jsonl", "scroll", "seq", "sum_", "top_k",
    "validate_event", "write_jsonl",
]

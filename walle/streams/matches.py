"""What the trigger trie reports: where a partial match began and one firing of a pattern.

Plain values (named tuples of ints and an ``Event``): the trie and its compiled twin build
them, the trigger-relative window kinds read them. The reference matcher
(``walle.streams.naive``) declares its own equal-valued types instead of importing these:
an oracle shares no code with what it checks.
"""

from __future__ import annotations

from typing import NamedTuple

from walle.streams.events import Event


class Start(NamedTuple):
    """Where a partial match began: its first event's sequence number and event time."""

    seq: int
    ts: int


class Fire(NamedTuple):
    """One firing of one pattern: its index in the trie, where it started, its last event."""

    pattern: int
    start: Start
    end: Event

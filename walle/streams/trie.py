"""The trigger trie: every task's pattern in ONE shared-prefix automaton.

Patterns are expanded into linear variants (one per choice of optional steps) and
inserted into a trie whose node identity is the path of (step, quantifier, guards), so
tasks that share a prefix share nodes and the state of those nodes. Per device the state
is the latest start of a partial match at each active node, plus, per pattern, the
sequence number of its last match (after-match skip). An event touches only the edges
indexed under its (type, page) and, for steps with ``args`` equalities, the one value
it carries: the cost per event does not grow with tasks whose steps it cannot match.

It fires exactly what ``walle.streams.naive`` fires; a property test holds it to that.
The reference shares no code with this module (not even the ``within`` test), so a bug
in one is not silently repeated in the other.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from walle.errors import BackendError
from walle.streams.events import Event
from walle.streams.matches import Fire, Start
from walle.streams.patterns import ONE_OR_MORE, OPTIONAL, Element, Pattern, Step

ROOT = 0
_MISSING = object()
_NEVER = float("inf")


@dataclass
class _Node:
    id: int
    parent: int
    step: Step | None
    guards: tuple[Step, ...] = ()
    quantifier: str = ""
    accepts: list[int] = field(default_factory=list)
    patterns: set[int] = field(default_factory=set)
    ttl: float = _NEVER
    component: int = -1  # patterns that share nodes, transitively, share a component


@dataclass(slots=True)
class TrieState:
    """One device's matching state: active partial matches and last match per pattern."""

    active: dict[int, tuple[int, int]] = field(default_factory=dict)  # node -> (seq, ts)
    consumed: dict[int, int] = field(default_factory=dict)
    next_gc: float = _NEVER


_Group = tuple[int, list[int], dict[str, dict[Any, list[tuple[int, Step]]]], list[tuple[int, Step]]]
_Groups = tuple[_Group | None, dict[int, _Group]]  # (the root's group, groups by parent)
Feed = Callable[[TrieState, Event, int], list[Fire]]


def _variants(pattern: Pattern) -> list[tuple[Element, ...]]:
    optional = [i for i, el in enumerate(pattern.elements) if el.quantifier == OPTIONAL]
    variants = []
    for skipped in itertools.product((False, True), repeat=len(optional)):
        drop = {i for i, skip in zip(optional, skipped, strict=True) if skip}
        kept = tuple(el for i, el in enumerate(pattern.elements) if i not in drop)
        if kept and kept not in variants:
            variants.append(kept)
    return variants


def _apply(
    group: _Group, source: tuple[int, int], event: Event, new: dict[int, tuple[int, int]]
) -> None:
    """Advance ``source`` along the edges of ``group`` that ``event`` satisfies."""
    _, plain, by_field, others = group
    for child in plain:
        old = new.get(child)
        if old is None or old[0] < source[0]:
            new[child] = source
    if by_field:
        args = event.args
        for name, table in by_field.items():
            for child, step in table.get(args.get(name, _MISSING), ()):
                if step.matches(event):
                    old = new.get(child)
                    if old is None or old[0] < source[0]:
                        new[child] = source
    for child, step in others:
        if step.matches(event):
            old = new.get(child)
            if old is None or old[0] < source[0]:
                new[child] = source


def _compiled_feed() -> Callable[[TriggerTrie], Feed] | None:
    """The compiled twin of ``TriggerTrie.feed``, or None when the build lacks it."""
    try:
        from walle._kernels.trie_feed import Feeder
    except ImportError:
        if "cython" in os.environ.get("WALLE_REQUIRE_BACKENDS", "").split(","):
            raise BackendError(
                "the compiled trigger trie (walle._kernels.trie_feed) is missing but "
                "WALLE_REQUIRE_BACKENDS requires cython: reinstall with `pip install -e .`"
            ) from None
        return None
    return Feeder


class TriggerTrie:
    """Shared-prefix automaton over many patterns; patterns can be added and removed.

    ``compiled`` picks the feed loop: True the Cython twin (an error if it is not built),
    False the pure-Python definition, None (default) the twin when it is built.
    """

    def __init__(self, compiled: bool | None = None) -> None:
        self._nodes: list[_Node] = [_Node(ROOT, ROOT, None)]
        self._children: dict[tuple[int, str], int] = {}
        self._patterns: dict[int, Pattern] = {}
        self._edge_index: dict[tuple[str | None, str | None], list[tuple[int, int, Step]]] = {}
        self._guard_index: dict[tuple[str | None, str | None], list[tuple[int, Step]]] = {}
        self._groups: dict[tuple[str, str], _Groups] = {}
        self._guards: dict[tuple[str, str], list[tuple[int, Step]]] = {}
        self._next_pattern = 0
        self._components_stale = False
        feeder = _compiled_feed() if compiled is not False else None
        if compiled and feeder is None:
            raise BackendError("the compiled trigger trie is not built: `pip install -e .`")
        if feeder is not None:
            self.feed = feeder(self)  # type: ignore[method-assign, assignment]

    def __len__(self) -> int:
        return len(self._patterns)

    @property
    def node_count(self) -> int:
        """Nodes in the trie, the root included."""
        return len(self._nodes)

    def add(self, pattern: Pattern) -> int:
        """Insert a pattern; returns its stable index (used in firings)."""
        index = self._next_pattern
        self._next_pattern += 1
        self._patterns[index] = pattern
        for variant in _variants(pattern):
            node = ROOT
            for element in variant:
                node = self._child(node, element)
                self._nodes[node].patterns.add(index)
                self._refresh_ttl(self._nodes[node])
            self._nodes[node].accepts.append(index)
        self._invalidate()
        self._components_stale = True
        return index

    def remove(self, index: int) -> None:
        """Remove a pattern; nodes no pattern uses any more stop matching."""
        self._patterns.pop(index)
        for node in self._nodes[1:]:
            if index in node.patterns:
                node.patterns.discard(index)
                if index in node.accepts:
                    node.accepts.remove(index)
                self._refresh_ttl(node)
        self._edge_index = {}
        self._guard_index = {}
        for node in self._nodes[1:]:
            if node.patterns:
                self._index(node)
        self._invalidate()
        self._components_stale = True

    def _refresh_ttl(self, node: _Node) -> None:
        """A node's partial match lives as long as the longest ``within`` through it."""
        node.ttl = max(
            (_NEVER if (w := self._patterns[p].within_ms) is None else w for p in node.patterns),
            default=0,
        )

    def _child(self, parent: int, element: Element) -> int:
        key = (
            parent,
            f"{element.step.signature}:{element.quantifier}!"
            + "|".join(g.signature for g in element.guards),
        )
        if key in self._children:
            return self._children[key]
        node = _Node(len(self._nodes), parent, element.step, element.guards, element.quantifier)
        self._nodes.append(node)
        self._children[key] = node.id
        self._index(node)
        return node.id

    def _index(self, node: _Node) -> None:
        step = node.step
        assert step is not None  # internal: only the root has no step
        key = (step.event, step.page)
        self._edge_index.setdefault(key, []).append((node.parent, node.id, step))
        if node.quantifier == ONE_OR_MORE:
            self._edge_index[key].append((node.id, node.id, step))
        for guard in node.guards:
            self._guard_index.setdefault((guard.event, guard.page), []).append((node.id, guard))

    def _invalidate(self) -> None:
        self._groups.clear()  # cleared in place: the compiled feeder holds these dicts
        self._guards.clear()

    def _lookup(self, event: str, page: str) -> tuple[_Groups, list[tuple[int, Step]]]:
        keys = ((event, page), (event, None), (None, page), (None, None))
        by_parent: dict[int, _Group] = {}
        for key in keys:
            for parent, child, step in self._edge_index.get(key, ()):
                if not self._nodes[child].patterns:
                    continue
                group = by_parent.setdefault(parent, (parent, [], {}, []))
                if step.predicate is None and not step.equals:
                    group[1].append(child)
                elif step.equals:
                    name, value = step.equals[0]
                    group[2].setdefault(name, {}).setdefault(value, []).append((child, step))
                else:
                    group[3].append((child, step))
        guards = [
            (node, step)
            for key in keys
            for node, step in self._guard_index.get(key, ())
            if self._nodes[node].patterns
        ]
        root = by_parent.pop(ROOT, None)
        if len(self._groups) > 65_536:
            self._invalidate()
        self._groups[(event, page)] = (root, by_parent)
        self._guards[(event, page)] = guards
        return (root, by_parent), guards

    def new_state(self) -> TrieState:
        """Empty per-device state."""
        return TrieState()

    def feed(self, state: TrieState, event: Event, watermark: int) -> list[Fire]:
        """Advance one device's state over ``event``; return the firings, by pattern index."""
        key = (event.event, event.page)
        groups = self._groups.get(key)
        if groups is None:
            groups, guards = self._lookup(event.event, event.page)
        else:
            guards = self._guards[key]
        active = state.active
        if state.next_gc < watermark:
            self._collect(state, watermark)
        for node, guard in guards:
            if node in active and guard.matches(event):
                del active[node]
        root, by_parent = groups
        if root is None and not by_parent:
            return []
        new: dict[int, tuple[int, int]] = {}
        if root is not None:
            _apply(root, (event.seq, event.ts), event, new)
        if by_parent and active:
            if len(active) < len(by_parent):
                for node, source in active.items():
                    group = by_parent.get(node)
                    if group is not None:
                        _apply(group, source, event, new)
            else:
                for parent, group in by_parent.items():
                    start = active.get(parent)
                    if start is not None:
                        _apply(group, start, event, new)
        if not new:
            return []
        return self._advance(state, event, watermark, new)

    def _advance(
        self, state: TrieState, event: Event, watermark: int, new: dict[int, tuple[int, int]]
    ) -> list[Fire]:
        active = state.active
        nodes = self._nodes
        best: dict[int, tuple[int, int]] = {}
        for child, start in new.items():
            old = active.get(child)
            if old is None or old[0] < start[0]:
                active[child] = start
                expiry = start[1] + nodes[child].ttl
                if expiry < state.next_gc:
                    state.next_gc = expiry
            for pattern in nodes[child].accepts:
                old = best.get(pattern)
                if old is None or old[0] < start[0]:
                    best[pattern] = start
        fires = []
        for pattern in sorted(best):
            start = Start(*best[pattern])
            if start.seq <= state.consumed.get(pattern, -1):
                continue
            # within: first to last event at most within_ms apart, and the watermark has
            # not passed the first event's time plus within_ms (the match is still alive)
            within = self._patterns[pattern].within_ms
            if within is not None and (
                event.ts - start.ts > within or watermark > start.ts + within
            ):
                continue
            state.consumed[pattern] = event.seq
            fires.append(Fire(pattern, start, event))
        return fires

    def _collect(self, state: TrieState, watermark: int) -> None:
        """Drop the partial matches that can no longer change what fires.

        A partial match is dead once the watermark has passed its start plus the longest
        ``within`` through its node: it can never fire again, and what it advances to is
        dead too. But it is still the latest start where it is, and as it advances it
        replaces older starts (``naive``: one partial match per position, latest start
        wins), so dropping it could revive an older live one. A dead partial match is
        therefore dropped only when it started before every live one of its component
        (the patterns that share nodes with its own, transitively; no other partial match
        ever meets it): whatever it could replace is then dead as well, and later events
        start later still. Partial matches at nodes no pattern uses any more are dropped.
        This relies on what the engine guarantees: a device's events come in seq order
        and its watermark never goes down.
        """
        if self._components_stale:
            self._label_components()
        nodes = self._nodes
        active = state.active
        live_from: dict[int, int] = {}  # component -> earliest start of a live partial match
        next_gc = _NEVER
        dead = []
        for node, start in active.items():
            info = nodes[node]
            expiry = start[1] + info.ttl
            if expiry < watermark or not info.patterns:
                dead.append(node)
            else:
                if start[0] < live_from.get(info.component, _NEVER):
                    live_from[info.component] = start[0]
                if expiry < next_gc:
                    next_gc = expiry
        for node in dead:
            info = nodes[node]
            if not info.patterns or active[node][0] < live_from.get(info.component, _NEVER):
                del active[node]
        state.next_gc = next_gc

    def _label_components(self) -> None:
        """Label every node with the component of the patterns through it."""
        parent = {p: p for p in self._patterns}

        def find(p: int) -> int:
            while parent[p] != p:
                parent[p] = parent[parent[p]]
                p = parent[p]
            return p

        for node in self._nodes[1:]:
            first, *rest = node.patterns or (None,)
            if first is not None:
                for other in rest:
                    parent[find(other)] = find(first)
        for node in self._nodes[1:]:
            node.component = find(next(iter(node.patterns))) if node.patterns else -1
        self._components_stale = False

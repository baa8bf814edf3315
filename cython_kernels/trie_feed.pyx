# cython: language_level=3, boundscheck=False, wraparound=False
"""Compiled twin of TriggerTrie.feed (walle/streams/trie.py): same steps, typed locals.

The pure-Python version is the definition; tests/unit/streams/test_streams_trie_compiled.py
holds this one to it on random patterns and events.
"""

from walle.streams.matches import Fire, Start

cdef object _MISSING = object()


cdef inline void _offer(dict new, object child, object source):
    old = new.get(child)
    if old is None or (<tuple>old)[0] < (<tuple>source)[0]:
        new[child] = source


cdef void _apply(tuple group, object source, object event, dict new):
    cdef list plain = <list>group[1]
    cdef dict by_field = <dict>group[2]
    cdef list others = <list>group[3]
    cdef dict args
    for child in plain:
        _offer(new, child, source)
    if by_field:
        args = <dict>(<tuple>event)[5]
        for name, table in by_field.items():
            for pair in (<dict>table).get(args.get(name, _MISSING), ()):
                if (<tuple>pair)[1].matches(event):
                    _offer(new, (<tuple>pair)[0], source)
    for pair in others:
        if (<tuple>pair)[1].matches(event):
            _offer(new, (<tuple>pair)[0], source)


cdef class Feeder:
    """Bound to one TriggerTrie's tables (mutated in place, never replaced)."""

    cdef object trie
    cdef dict groups
    cdef dict guards
    cdef list nodes
    cdef dict patterns

    def __init__(self, trie):
        self.trie = trie
        self.groups = trie._groups
        self.guards = trie._guards
        self.nodes = trie._nodes
        self.patterns = trie._patterns

    def __call__(self, state, event, long long watermark):
        """Advance one device's state over ``event``; return the firings."""
        cdef tuple ev = <tuple>event  # Event is a named tuple: index it as a tuple
        cdef tuple key = (ev[3], ev[4])
        cdef object groups = self.groups.get(key)
        cdef list guards
        cdef dict active
        cdef dict by_parent
        cdef dict new
        if groups is None:
            groups, guards = self.trie._lookup(key[0], key[1])
        else:
            guards = <list>self.guards[key]
        active = <dict>state.active
        if state.next_gc < watermark:
            self.trie._collect(state, watermark)
        for pair in guards:
            node = (<tuple>pair)[0]
            if node in active and (<tuple>pair)[1].matches(event):
                del active[node]
        root = (<tuple>groups)[0]
        by_parent = <dict>(<tuple>groups)[1]
        if root is None and not by_parent:
            return []
        new = {}
        if root is not None:
            _apply(<tuple>root, (ev[1], ev[2]), event, new)
        if by_parent and active:
            if len(active) < len(by_parent):
                for node, source in active.items():
                    group = by_parent.get(node)
                    if group is not None:
                        _apply(<tuple>group, source, event, new)
            else:
                for parent, group in by_parent.items():
                    source = active.get(parent)
                    if source is not None:
                        _apply(<tuple>group, source, event, new)
        if not new:
            return []
        return self._advance(state, event, watermark, new)

    cdef list _advance(self, state, event, long long watermark, dict new):
        cdef dict active = <dict>state.active
        cdef list nodes = self.nodes
        cdef dict best = {}
        cdef dict consumed = <dict>state.consumed
        cdef list fires = []
        cdef long long end_seq = (<tuple>event)[1]
        cdef long long end_ts = (<tuple>event)[2]
        cdef object within
        for child, start in new.items():
            old = active.get(child)
            if old is None or (<tuple>old)[0] < (<tuple>start)[0]:
                active[child] = start
                expiry = (<tuple>start)[1] + nodes[child].ttl
                if expiry < state.next_gc:
                    state.next_gc = expiry
            for pattern in nodes[child].accepts:
                _offer(best, pattern, start)
        if not best:
            return fires
        for pattern in sorted(best):
            start = best[pattern]
            if (<tuple>start)[0] <= consumed.get(pattern, -1):
                continue
            within = self.patterns[pattern].within_ms
            if within is not None:
                if end_ts - <long long>(<tuple>start)[1] > <long long>within:
                    continue
                if watermark > <long long>(<tuple>start)[1] + <long long>within:
                    continue
            consumed[pattern] = end_seq
            fires.append(Fire(pattern, Start(*start), event))
        return fires

"""Types of the compiled twin of ``TriggerTrie.feed`` (cython_kernels/trie_feed.pyx)."""

from walle.streams.events import Event
from walle.streams.matches import Fire
from walle.streams.trie import TrieState, TriggerTrie

class Feeder:
    """Bound to one TriggerTrie's tables (mutated in place, never replaced)."""

    def __init__(self, trie: TriggerTrie) -> None: ...
    def __call__(self, state: TrieState, event: Event, watermark: int) -> list[Fire]: ...

"""Which values of a compiled plan share memory blocks.

With one buffer per value, every step of a run writes memory that nothing has touched
since the run before, so each output line comes from the last-level cache or DRAM: in
ShuffleNet the grouped 1x1 convs ran ~1.45x slower inside the model than alone, and
reading their output buffers into the cache before each step took 0.95 of their 5.7 ms
away. Here a value takes over the block of a value that no later step touches, the one
freed most recently first (the block most likely still in the caches), as the arenas of
other inference engines do.

The planner sees only which step touches which value (reads, writes or holds it as an
intermediate): a block is free again after the last step that touches any value in it, and
every value a step touches is given its block before that step's dead values free theirs,
so no step ever writes a block that one of its own inputs lives in.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

__all__ = ["BlockPlan", "share_blocks"]


@dataclass(frozen=True)
class BlockPlan:
    """``block`` by value (the values that share memory) and each block's size in
    elements (the largest value it holds)."""

    block: dict[str, int]
    sizes: list[int]


def share_blocks(
    touched: Sequence[Sequence[str]], sizes: Mapping[str, int], pinned: Collection[str]
) -> BlockPlan:
    """Blocks for the values that ``touched`` names (per step, in run order, the values
    the step touches; those born at a step take blocks in this order), but ``pinned`` ones,
    which keep memory of their own (the plan's inputs and outputs, values that a device
    backend holds). ``sizes``: elements per value.

    A value lives from the first step that touches it to the last. At each step the values
    born there take blocks first (the most recently freed block at least as large; else the
    largest free block, grown; else a new one), then the values whose last step it is give
    theirs back."""
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for i, names in enumerate(touched):
        for name in names:
            if name in pinned:
                continue
            first.setdefault(name, i)
            last[name] = i
    born: dict[int, list[str]] = {}
    dying: dict[int, list[str]] = {}
    for name, i in first.items():
        born.setdefault(i, []).append(name)
        dying.setdefault(last[name], []).append(name)
    block: dict[str, int] = {}
    block_sizes: list[int] = []
    free: list[int] = []  # blocks in the order they were freed, the latest last
    for i in range(len(touched)):
        for name in born.get(i, ()):
            need = sizes[name]
            fits = [b for b in free if block_sizes[b] >= need]
            if fits:
                chosen = fits[-1]
            elif free:
                chosen = max(free, key=lambda b: block_sizes[b])
                block_sizes[chosen] = need
            else:
                chosen = len(block_sizes)
                block_sizes.append(need)
            if chosen in free:
                free.remove(chosen)
            block[name] = chosen
        for name in dying.get(i, ()):
            free.append(block[name])
    return BlockPlan(block, block_sizes)

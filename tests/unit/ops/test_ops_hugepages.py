"""walle._kernels.hugepages: the arrays a plan keeps, carved from memory that asks for huge
pages (zeros, on a cache line, alive as long as any array cut from the same chunk)."""

from __future__ import annotations

import gc
import mmap
import threading
from pathlib import Path

import numpy as np
import pytest

from walle._kernels import hugepages
from walle.ops import GraphBuilder
from walle.ops.search import compile_graph


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [((), np.float32), (0, np.float32), (7, np.float32), ((3, 5, 2), np.float64),
     ((4, 33), np.int64), (1 << 22, np.float32)],
)  # fmt: skip
def test_arrays_are_zeros_on_a_cache_line(shape, dtype) -> None:
    a = hugepages.zeros(shape, dtype)
    assert a.shape == ((shape,) if isinstance(shape, int) else shape)
    assert a.dtype == dtype and a.flags.c_contiguous and a.flags.writeable
    assert a.ctypes.data % 64 == 0
    assert not a.any()
    a[...] = 3  # writable, and no neighbour shares its bytes
    b = hugepages.zeros(shape, dtype)
    assert not b.any()


def test_a_copy_keeps_values_shape_and_dtype_in_c_order() -> None:
    src = np.asfortranarray(np.arange(24, dtype=np.float32).reshape(4, 6))
    out = hugepages.copy(src)
    assert out.flags.c_contiguous and out.dtype == np.float32
    np.testing.assert_array_equal(out, src)
    scalar = hugepages.copy(np.asarray(2.5, np.float32))
    assert scalar.shape == () and scalar == 2.5


def test_an_array_outlives_every_reference_to_its_chunk_but_its_own() -> None:
    kept = hugepages.zeros(1000)
    kept[:] = np.arange(1000)
    for _ in range(50):  # later arrays fill the chunk and move the arena on to new ones
        hugepages.zeros(1 << 20)[:] = 7
    gc.collect()
    np.testing.assert_array_equal(kept, np.arange(1000))


def test_threads_get_arrays_that_never_overlap() -> None:
    got: list[list[np.ndarray]] = [[] for _ in range(8)]

    def work(i: int) -> None:
        for n in range(200):
            a = hugepages.zeros(100 + n)
            a[:] = i
            got[i].append(a)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, arrays in enumerate(got):
        assert all((a == i).all() for a in arrays)


def _in_arena(array: np.ndarray) -> bool:
    """Whether ``array``'s memory is a view of an arena chunk (an anonymous mapping)."""
    root: object = array
    while isinstance(root, np.ndarray) and root.base is not None:
        root = root.base
    return isinstance(root, memoryview) and isinstance(root.obj, mmap.mmap)


def test_arena_arrays_are_views_of_a_mapping() -> None:
    assert _in_arena(hugepages.zeros(10)) and _in_arena(hugepages.zeros(1 << 23))
    assert not _in_arena(np.zeros(10, np.float32))


def _huge_kb(start: int, end: int) -> int | None:
    """AnonHugePages (kB) of the mappings over [start, end) in /proc/self/smaps."""
    smaps = Path("/proc/self/smaps")
    if not smaps.exists():
        return None
    total, inside = 0, False
    for line in smaps.read_text().splitlines():
        head = line.split()[0] if line else ""
        if "-" in head and ":" not in head:
            lo, hi = (int(v, 16) for v in head.split("-"))
            inside = lo < end and start < hi
        elif inside and line.startswith("AnonHugePages:"):
            total += int(line.split()[1])
    return total


def _fallbacks() -> int:
    """Page faults system-wide that wanted a huge page and got small ones."""
    for line in Path("/proc/vmstat").read_text().splitlines():
        if line.startswith("thp_fault_fallback "):
            return int(line.split()[1])
    return 0


def _thp_asks() -> bool:
    """Whether this kernel backs memory that asks with 2 MiB pages (Linux, THP not 'never')."""
    path = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    return path.exists() and "[never]" not in path.read_text()


@pytest.mark.skipif(not _thp_asks(), reason="no transparent huge pages on this machine")
def test_a_plan_s_memory_sits_on_huge_pages() -> None:
    """The bytes of a chunk that asks are backed by 2 MiB pages once touched (where the
    kernel has free ones: a machine short of them falls back to 4 KiB, the test says so)."""
    fell_back = _fallbacks()
    a = hugepages.zeros(6 << 20 >> 2)
    a[:] = 1.0
    huge = _huge_kb(a.ctypes.data, a.ctypes.data + a.nbytes)
    if huge is None:
        pytest.skip("no /proc/self/smaps")
    if huge < 4096 and _fallbacks() > fell_back:
        pytest.skip("the kernel had no free huge page (/proc/vmstat thp_fault_fallback)")
    assert huge >= 4096, f"{huge} kB of huge pages under 6 MiB written"


def test_plan_buffers_and_constants_live_in_the_arena() -> None:
    """A compiled plan's buffers and the graph's constants are arena arrays: their memory is
    view of a chunk's mapping, and the plan computes as before."""
    b = GraphBuilder()
    x = b.input("x", (4, 8))
    w = b.const(np.arange(64, dtype=np.float32).reshape(8, 8) / 64)
    graph = b.build([b.matmul(x, w)])
    plan = compile_graph(graph, backends=["numpy"], trials=False, use_cache=False)
    for name in (*graph.inputs, *graph.outputs, *graph.constants):
        buf = plan.buffers[name]
        assert _in_arena(buf) and buf.ctypes.data % 64 == 0, name
    xs = np.ones((4, 8), np.float32)
    np.testing.assert_allclose(plan(xs)[0], xs @ graph.constants[w], rtol=1e-6)


def test_without_private_mappings_the_arrays_are_numpy_s(monkeypatch) -> None:
    """Where mmap has no private mappings (Windows), the same zeros on a cache line."""
    monkeypatch.delattr(mmap, "MAP_PRIVATE")
    a = hugepages.zeros(1 << 22)  # a mapping of its own
    assert not _in_arena(a) and a.ctypes.data % 64 == 0 and not a.any()

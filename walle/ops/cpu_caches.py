"""This CPU's cache sizes as Linux's sysfs lists them (cpu0's view), for the choices that
depend on them: the kernels' bands and blocks (the L2 per core) and how much the search's
cold trials write (the last level, shared by the cores)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

_SYSFS = Path("/sys/devices/system/cpu/cpu0/cache")
_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


@cache
def cache_bytes(level: int) -> int | None:
    """Bytes of the data (or unified) cache at ``level`` that cpu0 sees, or None where sysfs
    does not say (not Linux, a container without sysfs, a CPU without that level)."""
    for index in sorted(_SYSFS.glob("index*")):
        try:
            found = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            size = (index / "size").read_text().strip()
        except OSError:
            continue
        unit = _UNITS.get(size[-1:])
        if found == str(level) and kind in ("Unified", "Data") and unit and size[:-1].isdigit():
            return int(size[:-1]) * unit
    return None


def l2_bytes() -> int:
    """The L2 cache per core (what one core's working set should stay within), or 512 KiB
    where sysfs does not say."""
    return cache_bytes(2) or 512 * 1024

"""The instruction-set level of the cython backend's kernels, and the switch that lowers it.

Each kernel module (``ops_conv``, ``ops_math``, ``ops_raster``) compiles its loops once per
level (AVX-512F, AVX2 + FMA, the baseline: SSE2, or NEON on ARM) and dispatches at run time
to the widest the CPU runs. ``WALLE_OPS_ISA`` (``native``, ``avx512``, ``avx2`` or ``sse``;
read once, when the cython backend is first built) forces a lower level for every module, so
that an AVX-512 machine can run and benchmark the AVX2 path that AVX2-only CPUs get. A value
the CPU cannot run is refused, never silently raised or lowered. numpy's BLAS and SIMD loops,
which some algorithms call, are lowered only by variables set before the process starts
(:mod:`walle.ops.backends.numpy_isa`); a forced level without them is logged as a warning.
"""

from __future__ import annotations

import functools
import os
import platform
from types import ModuleType

from walle.errors import ValidationError
from walle.logging import get_logger
from walle.ops.backends import numpy_isa

_log = get_logger("walle.ops.isa")

ENV = "WALLE_OPS_ISA"
LEVELS: dict[str, int] = {"avx512": 2, "avx2": 1, "sse": 0}
NAMES: dict[int, str] = {v: k for k, v in LEVELS.items()}
CHOICES = ("native", *LEVELS)


def _modules() -> dict[str, ModuleType]:
    from walle._kernels import ops_conv, ops_math, ops_raster

    return {"conv": ops_conv, "math": ops_math, "raster": ops_raster}


def best_level() -> str:
    """The widest level this CPU runs, as the kernels detect it (``avx512``, ``avx2``, ``sse``)."""
    return NAMES[min(m.best_level() for m in _modules().values())]


def parse(value: str) -> str | None:
    """The level named by a ``WALLE_OPS_ISA`` value (None for ``native`` or empty)."""
    name = value.strip().lower()
    if name in ("", "native"):
        return None
    if name not in LEVELS:
        raise ValidationError(
            f"{ENV}={value!r} is not an instruction-set level (allowed: {', '.join(CHOICES)})"
        )
    return name


def set_level(name: str) -> None:
    """Run every kernel family at ``name``; ValidationError if this CPU lacks it."""
    if name not in LEVELS:
        raise ValidationError(f"unknown level {name!r} (allowed: {', '.join(LEVELS)})")
    best = best_level()
    if LEVELS[name] > LEVELS[best]:
        raise ValidationError(
            f"{ENV}={name}: this CPU ({cpu_model()}) runs at most {best}; "
            f"allowed here: native, {', '.join(n for n, v in LEVELS.items() if v <= LEVELS[best])}"
        )
    for module in _modules().values():
        module.set_level(LEVELS[name])


@functools.cache
def configure() -> str:
    """Apply ``WALLE_OPS_ISA`` once per process; the level the kernels then run at."""
    forced = parse(os.environ.get(ENV, ""))
    set_level(forced or best_level())
    wider = numpy_isa.wider_than(forced) if forced else []
    if forced and wider:  # numpy picked its code at import: only a new process can lower it
        start = " ".join(f"{k}={v!r}" for k, v in numpy_isa.environ(forced).items())
        _log.warning(
            "numpy runs wider than the forced level", level=forced, wider=wider, start_with=start
        )
    return kernel_level()


def kernel_levels() -> dict[str, str]:
    """The level each kernel family dispatches to now, asked of the kernels themselves."""
    return {family: NAMES[m.level()] for family, m in _modules().items()}


def kernel_level() -> str:
    """The one level all kernel families run at (``mixed: ...`` if they ever disagree)."""
    levels = kernel_levels()
    names = set(levels.values())
    if len(names) == 1:
        return names.pop()
    return "mixed: " + ", ".join(f"{k}={v}" for k, v in levels.items())


@functools.cache
def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else platform.processor())."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"

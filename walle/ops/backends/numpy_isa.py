"""numpy's own code at a lower instruction-set level: what a process needs to start with, and
what in this process runs wider than a level.

The cython backend calls numpy for some of its algorithms (``im2col`` and ``blas`` convs
multiply through numpy's BLAS; copies and casts run numpy's SIMD loops). ``WALLE_OPS_ISA``
lowers walle's kernels only: numpy picks its BLAS core (OpenBLAS's ``OPENBLAS_CORETYPE``) and
its SIMD loops (``NPY_DISABLE_CPU_FEATURES``) once, when it is imported, from variables that
must be set before the process starts. An AVX2 run on an AVX-512 CPU that leaves them alone
multiplies those convs with AVX-512 BLAS (2x the AVX2 rate on Zen 5) and overstates what an
AVX2-only CPU gets.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import importlib
import os
from types import ModuleType

# OpenBLAS cores whose kernels stay within a level (OPENBLAS_CORETYPE names)
_BLAS_CORE = {"avx2": "Haswell", "sse": "Nehalem"}
# OpenBLAS cores with AVX-512 kernels, and those with no AVX at all (lowercase)
_BLAS_AVX512 = {"skylakex", "cooperlake", "sapphirerapids"}
_BLAS_SSE = {"nehalem", "core2", "penryn", "dunnington", "prescott", "atom", "katmai"}
# the names OpenBLAS's core-name function has in numpy's wheels and in plain builds
_CORENAME_SYMBOLS = (
    "scipy_openblas_get_corename64_",
    "scipy_openblas_get_corename",
    "openblas_get_corename64_",
    "openblas_get_corename",
)


def _umath() -> ModuleType:
    """numpy's compiled core, which holds its SIMD dispatch tables."""
    try:
        return importlib.import_module("numpy._core._multiarray_umath")
    except ImportError:  # numpy < 2
        return importlib.import_module("numpy.core._multiarray_umath")


def _above(level: str, feature: str) -> bool:
    """Whether numpy's dispatch target ``feature`` needs more than ``level``."""
    name = feature.upper()
    if level == "avx2":
        return name.startswith("AVX512") or name == "X86_V4"
    return name in ("X86_V3", "X86_V4", "F16C") or "AVX" in name or name.startswith("FMA")


def environ(level: str) -> dict[str, str]:
    """The variables with which a started process runs numpy's BLAS and SIMD loops at most at
    ``level`` (none for ``avx512`` or ``native``). For a child process only: numpy reads them
    when it is imported."""
    if level not in _BLAS_CORE:
        return {}
    dispatched = [f for f in _umath().__cpu_dispatch__ if _above(level, f)]
    env = {"OPENBLAS_CORETYPE": _BLAS_CORE[level]}
    if dispatched:
        env["NPY_DISABLE_CPU_FEATURES"] = " ".join(dispatched)
    return env


@functools.cache
def blas_core() -> str | None:
    """The core OpenBLAS (numpy's BLAS) runs its kernels for, as it names it; None where
    numpy's BLAS is not an OpenBLAS this can ask."""
    import numpy as np

    libs = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in [*sorted(glob.glob(os.path.join(libs, "*openblas*"))), None]:
        try:
            lib = ctypes.CDLL(path)  # already loaded by numpy: the same handle
        except OSError:
            continue
        for symbol in _CORENAME_SYMBOLS:
            fn = getattr(lib, symbol, None)
            if fn is not None:
                fn.restype = ctypes.c_char_p
                name: bytes | None = fn()
                return name.decode().strip() if name else None
    return None


def wider_than(level: str) -> list[str]:
    """What of numpy's code in this process runs wider than ``level`` (empty at avx512)."""
    if level not in _BLAS_CORE:
        return []
    found = []
    core = blas_core()
    if core is not None and (
        core.lower() in _BLAS_AVX512 if level == "avx2" else core.lower() not in _BLAS_SSE
    ):
        found.append(f"numpy's BLAS (OpenBLAS core {core})")
    features = _umath().__cpu_features__
    on = [f for f in _umath().__cpu_dispatch__ if features.get(f) and _above(level, f)]
    if on:
        found.append(f"numpy's SIMD loops ({', '.join(on)})")
    return found

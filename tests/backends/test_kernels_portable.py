"""The cython kernels build beyond this machine's GCC on x86-64: with clang, and for ARM.

Each kernel module's generated C (cython_kernels/<module>.c, written by the build) is
compiled by clang from the ``ziglang`` wheel (a self-contained cross compiler with libc
headers for every target; nothing installed by hand):

- for aarch64 Linux, where the vector extensions must become NEON instructions on 128-bit
  registers (the conv tiles: vector multiply-adds, ``fmla``, on ``.4s``), nothing x86-only
  may leak out of its guards, and the x86 levels' functions (AVX2's and AVX-512's tiles,
  which only an x86 CPU's dispatch picks) are not compiled at all (cpu_level.h's
  WALLE_LEVEL: they had been half of ops_conv's aarch64 build);
- for x86-64 with clang (macOS's compiler), where the AVX-512 and AVX2 levels must still be
  compiled (``zmm`` and ``ymm`` registers in the output), not dropped to the baseline.

Neither target can run here (no ARM machine, no emulator), so these tests check what the
compiler makes of the code; the kernels' results are checked at every level this CPU runs by
the other tests under tests/backends. The level detection itself (CPUID and XGETBV, not the
compiler's runtime) is checked against the CPU flags the kernel reports in /proc/cpuinfo.
"""

from __future__ import annotations

import platform
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from tests._backends import backend_or_skip

ROOT = Path(__file__).resolve().parents[2]
KERNELS = ROOT / "cython_kernels"
MODULES = ("ops_conv", "ops_group", "ops_int8", "ops_math", "ops_raster", "trie_feed")
# the ones built from explicit vector tiles on every target (ops_int8's on ARM are its
# baseline's C loops, no NEON dot products yet: it must compile there, not vectorise)
VECTOR_MODULES = ("ops_conv", "ops_group", "ops_math", "ops_raster")
X86_LEVEL_MODULES = (*VECTOR_MODULES, "ops_int8")  # with AVX2 and AVX-512 tiles


def _generated_c(module: str) -> Path:
    path = KERNELS / f"{module}.c"
    assert path.exists(), f"{path} is missing: build the kernels first (make setup)"
    return path


def _compile_to_asm(module: str, target: str, opt: str, tmp_path: Path) -> str:
    out = tmp_path / f"{module}-{target}.s"
    cmd = [
        sys.executable, "-m", "ziglang", "cc", "-target", target, opt, "-g0", "-S",
        "-fno-sanitize=undefined",  # zig's default at -O0: 20x the compile time
        "-I", str(KERNELS), "-I", np.get_include(), "-I", sysconfig.get_paths()["include"],
        str(_generated_c(module)), "-o", str(out),
    ]  # fmt: skip
    env = {
        "ZIG_GLOBAL_CACHE_DIR": str(tmp_path / "zig-global"),
        "ZIG_LOCAL_CACHE_DIR": str(tmp_path / "zig-local"),
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        cmd, capture_output=True, text=True, errors="replace", env=env, timeout=240
    )
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    assert done.returncode == 0, f"{module} for {target}:\n" + "\n".join(errors[:20])
    return out.read_bytes().decode("latin-1")  # string constants may hold any byte


@pytest.mark.parametrize("module", MODULES)
def test_kernels_compile_for_aarch64_with_neon_vectors(module, tmp_path):
    asm = _compile_to_asm(module, "aarch64-linux-gnu", "-O1", tmp_path)  # -O2: 1.4x the time
    x86_levels = re.findall(r"^\s+\.type\s+(\w*(?:avx2|avx512|_l1|_l2)\w*),@function", asm, re.M)
    assert not x86_levels, f"{module}: x86 levels compiled for aarch64: {x86_levels[:5]}"
    if module not in VECTOR_MODULES:
        return
    neon = r"^\s+(?:\w+\s+v\d+\.(?:4s|16b|2d)|(?:ldr|str|ldp|stp)\s+q\d+)"
    vector_ops = len(re.findall(neon, asm, re.MULTILINE))
    assert vector_ops >= 200, f"{module}: only {vector_ops} instructions on NEON registers"
    if module in ("ops_conv", "ops_group"):
        fmla = len(re.findall(r"^\s+fmla\s+v\d+\.4s", asm, re.MULTILINE))
        assert fmla >= 200, f"{module}: the conv tiles made only {fmla} NEON multiply-adds"


@pytest.mark.parametrize("module", X86_LEVEL_MODULES)
def test_kernels_keep_every_x86_level_under_clang(module, tmp_path):
    # -O0: whether a level's functions are compiled is decided before the optimiser (the
    # dispatch tests a level read at run time), and -O1 took 5-6x as long (ops_conv ~50 s)
    asm = _compile_to_asm(module, "x86_64-linux-gnu", "-O0", tmp_path)
    assert re.search(r"%zmm\d", asm), f"{module}: clang compiled no AVX-512 code"
    assert re.search(r"%ymm\d", asm), f"{module}: clang compiled no AVX2 code"


def _cpuinfo_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    raise AssertionError("no flags line in /proc/cpuinfo")


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.machine() != "x86_64",
    reason="compares with the x86 flags of Linux's /proc/cpuinfo",
)
def test_every_kernel_family_detects_the_level_the_cpu_and_os_run():
    backend_or_skip("cython")
    from walle._kernels import ops_conv, ops_group, ops_math, ops_raster

    flags = _cpuinfo_flags()  # Linux lists avx2/avx512f only where the OS saves their state
    expected = 2 if {"avx512f", "avx2", "fma"} <= flags else 1 if {"avx2", "fma"} <= flags else 0
    levels = {m.__name__: m.best_level() for m in (ops_conv, ops_group, ops_math, ops_raster)}
    assert set(levels.values()) == {expected}, levels

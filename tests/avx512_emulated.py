"""Run the kernels' AVX-512 code paths on a CPU without AVX-512, and their tests over them.

Most machines that build walle (and CI's) have AVX2 at most, so the AVX-512 level's tiles,
Winograd's 16-lane groups and corners, the pools' 16-lane permutes never run in the test
suite there (the AVX-512 Winograd cases skip). This copies the repository to a temporary
directory, rewrites the kernels there so that the AVX-512 level compiles for AVX2 (GCC
lowers each 16-float vector to two 8-float halves, the same arithmetic lane by lane; the
four AVX-512 intrinsics become their lane-wise equivalents) and is the level the CPU check
answers, builds them, and runs tests/backends and tests/unit/ops there. What it checks is
the AVX-512 level's logic (tile shapes, lane counts, edges, masks), not its instruction
encoding; the clang test in tests/backends checks that the real AVX-512 code compiles.

Run: ``make test-avx512-emulated`` (fetches Cython and setuptools into the temporary
directory; about ten minutes on two cores). Extra arguments go to pytest.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPIED = (
    "cython_kernels",
    "walle",
    "tests",
    "examples",
    "benchmarks",
    "pyproject.toml",
    "setup.py",
)
WIDE = '"avx512f,avx2,fma"'
# (file, what the source says, what the emulated build says): each must be found once
REWRITES = (
    (
        "cpu_level.h",
        "if (avx512f && avx2 && fma && (lo & 0xe0) == 0xe0) return 2;",
        "(void)avx512f; if (avx2 && fma) return 2;",
    ),
    (
        "pool_rows.h",
        "return (walle_v16)_mm512_permutex2var_ps((__m512)lo, (__m512i)idx, (__m512)hi);",
        "return __builtin_shuffle(lo, hi, idx & 31);",
    ),
    (
        "pool_rows.h",
        "_mm512_mask_storeu_ps((DST), (__mmask16)((1u << n) - 1), (__m512)(ACC));",
        "for (long t_ = 0; t_ < n; t_++) (DST)[t_] = (ACC)[t_];",
    ),
    (
        "vec_max.h",
        "return (walle_xv16)_mm512_max_ps((__m512)a, (__m512)b);",
        # maxps's rule: the second operand unless the first is greater (NaN: the second)
        "walle_xv16 r; for (int i = 0; i < 16; i++) r[i] = a[i] > b[i] ? a[i] : b[i]; return r;",
    ),
    (
        "ops_math.pyx",
        "((walle_v16)_mm512_fmadd_ps(_mm512_set1_ps(S), (__m512)(V), (__m512)(ACC)))",
        "({ walle_v16 r_; for (int i_ = 0; i_ < 16; i_++)"
        " r_[i_] = __builtin_fmaf((S), (V)[i_], (ACC)[i_]); r_; })",
    ),
)
LEVEL_CHECK = (
    "from walle._kernels import ops_conv, ops_group, ops_math, ops_raster\n"
    "levels = [m.best_level() for m in (ops_conv, ops_group, ops_math, ops_raster)]\n"
    "assert levels == [2] * 4, f'the emulated build runs at levels {levels}, not 2'\n"
)


def rewrite(kernels: Path) -> None:
    """The emulated build's sources, in place under ``kernels``."""
    wide = 0
    for path in [*kernels.glob("*.h"), *kernels.glob("*.pyx")]:
        text = path.read_text()
        wide += text.count(WIDE)
        path.write_text(text.replace(WIDE, '"avx2,fma"'))
    if wide == 0:
        raise SystemExit(f"no {WIDE} target in {kernels}: this script is out of date")
    for name, old, new in REWRITES:
        path = kernels / name
        text = path.read_text()
        if text.count(old) != 1:
            raise SystemExit(f"{path}: expected once: {old!r} (this script is out of date)")
        path.write_text(text.replace(old, new))


def main(pytest_args: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="walle-avx512-") as tmp:
        copy = Path(tmp, "repo")
        copy.mkdir()
        for name in COPIED:
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("*.so"))
            else:
                shutil.copy2(source, copy / name)
        rewrite(copy / "cython_kernels")
        cython = Path(tmp, "cython")
        pip = [sys.executable, "-m", "pip", "install", "-q", "--target", str(cython)]
        pip += ["setuptools>=70", "cython>=3.1"]  # pyproject.toml's build requirements
        subprocess.run(pip, check=True)
        env = {"PYTHONPATH": str(cython), "PATH": "/usr/bin:/bin"}
        build = [sys.executable, "setup.py", "-q", "build_ext", "--inplace", "-j", "2"]
        subprocess.run(build, cwd=copy, env=env, check=True)
        subprocess.run([sys.executable, "-c", LEVEL_CHECK], cwd=copy, check=True)
        tests = [
            sys.executable, "-m", "pytest", "-q", "-n", "2", "-p", "no:cacheprovider",
            "tests/backends", "tests/unit/ops", "-k", "not opencl",
            "--deselect", "tests/backends/test_kernels_portable.py",
            *pytest_args,
        ]  # fmt: skip
        return subprocess.run(tests, cwd=copy).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

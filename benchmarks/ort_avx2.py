"""A copy of the installed onnxruntime that runs its AVX2 code on an AVX-512 CPU: issue 11's
AVX2-only machine, approximated on the machine at hand.

onnxruntime (MLAS) picks its kernels once, from CPUID: on an AVX-512 CPU it takes the AVX-512
ones, and no option turns them off. walle's AVX2 build (``WALLE_OPS_ISA=avx2``) against that
code compares two widths of vector; against onnxruntime's AVX2 code it is the comparison an
AVX2-only CPU would make (MNN's wheel carries no AVX-512 code, so it runs AVX2 either way).
This module copies the package and, in its compiled extension, sets to 0 the immediate of
every ``test $0x10000, reg`` (CPUID leaf 7's AVX512F bit) within 2 KiB after an ``xgetbv``
(the feature checks read XCR0 just before): both of onnxruntime 1.32's checks (MLAS's platform
setup and its CPU-info class) then see no AVX-512. It is a measurement aid only: nothing in
walle or its tests uses it, and a build whose checks look different gets no patch (an error).

Run: ``.venv/bin/python benchmarks/ort_avx2.py [DIR]`` makes the copy (under DIR, else a
temporary folder), then times a MatMul 512^3 in the installed onnxruntime and in the copy (a
process each): the copy takes about twice the time on a CPU with 512-bit multiply-add units
(Intel's), about the same on one whose AVX-512 runs on 256-bit units (AMD Zen 4: 0.98x),
so the timing alone does not show that the patch took there. ``ops_bench.py
--isa-compare --ort-avx2`` uses it for its "AVX2 against AVX2" tables.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_XGETBV = b"\x0f\x01\xd0"
# test $0x10000, r32 (F7 /0 with a register operand; a REX prefix before it for r8d-r15d)
# or its short form for eax (A9)
_TEST_AVX512F = re.compile(rb"(?:\xf7[\xc0-\xc7]|\xa9)\x00\x00\x01\x00")
_WINDOW = 2048


def patch_avx512f_tests(code: bytes) -> tuple[bytes, list[int]]:
    """``code`` with the AVX512F tests after each xgetbv testing nothing (immediate 0, so the
    flag reads clear), and the offsets of the immediates changed."""
    data = bytearray(code)
    sites: list[int] = []
    start = data.find(_XGETBV)
    while start >= 0:
        for found in _TEST_AVX512F.finditer(data, start, start + _WINDOW):
            imm = found.end() - 4
            if imm not in sites:
                data[imm : found.end()] = bytes(4)
                sites.append(imm)
        start = data.find(_XGETBV, start + 1)
    return bytes(data), sites


def patched_copy(dest: Path) -> Path:
    """The installed onnxruntime package copied to ``dest``/onnxruntime with its extension
    patched; returns ``dest`` (put it first on PYTHONPATH). RuntimeError where no check is
    found (another build of onnxruntime)."""
    import onnxruntime

    source = Path(onnxruntime.__file__).parent
    target = dest / "onnxruntime"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    extensions = sorted((target / "capi").glob("onnxruntime_pybind11_state*.so"))
    if not extensions:
        raise RuntimeError(f"no onnxruntime_pybind11_state extension under {target / 'capi'}")
    patched, sites = patch_avx512f_tests(extensions[0].read_bytes())
    if not sites:
        raise RuntimeError(
            f"{extensions[0].name} (onnxruntime {onnxruntime.__version__}): no AVX512F test "
            "after an xgetbv; this build's CPU checks differ, so no AVX2-only copy"
        )
    extensions[0].write_bytes(patched)
    return dest


_TIMING = """
import sys, time
sys.path.insert(0, {bench!r})
import _one_thread
import numpy as np, onnxruntime
from walle.ops.sample_models import single_op_onnx
model = single_op_onnx("MatMul", [(512, 512), (512, 512)])
opts = onnxruntime.SessionOptions()
opts.intra_op_num_threads = opts.inter_op_num_threads = 1
sess = onnxruntime.InferenceSession(model.SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])
feeds = {{i.name: np.ones((512, 512), np.float32) for i in sess.get_inputs()}}
best = float("inf")
for _ in range(20):
    t = time.perf_counter()
    sess.run(None, feeds)
    best = min(best, time.perf_counter() - t)
print(best * 1e3)
"""


def environ(dest: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (the process's environment by default) with ``dest`` first on PYTHONPATH: a
    child process started with it imports the patched copy."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(dest), env.get("PYTHONPATH")]))
    return env


def _matmul_ms(pythonpath: Path | None) -> float:
    env = dict(os.environ) if pythonpath is None else environ(pythonpath)
    code = _TIMING.format(bench=str(Path(__file__).parent))
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return float(done.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dir", nargs="?", type=Path, help="where to put the copy")
    args = parser.parse_args()
    dest = args.dir or Path(tempfile.mkdtemp(prefix="walle-ort-avx2-"))
    try:
        patched_copy(dest)
    except RuntimeError as err:
        print(f"ort_avx2: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    installed, copy = _matmul_ms(None), _matmul_ms(dest)
    print(f"patched copy: {dest} (PYTHONPATH={dest})")
    print(
        f"onnxruntime MatMul 512^3, best of 20: {installed:.2f} ms installed, {copy:.2f} ms "
        f"in the copy ({copy / installed:.2f}x)"
    )


if __name__ == "__main__":
    main()

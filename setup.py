"""Compiles every cython_kernels/*.pyx into the private package walle._kernels."""

import tempfile
from pathlib import Path
from typing import Any

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CompileError, LinkError

_OPENMP = ["-fopenmp"]
# The kernels copy short runs (rows of 7 to 56 floats: depthwise planes, packed GEMM strips)
# in loops of their own; GCC would turn each such loop into a libc memmove call, which costs
# more than the copy (a quarter of a depthwise 14 x 14 plane's time).
_NO_LIBC_LOOPS = ["-fno-tree-loop-distribute-patterns"]
# Signed overflow wraps. GCC vectorises more of the kernels' loops with it (Winograd's lane
# loops: half the scalar moves); without it a 64-channel Winograd conv on 56x56 ran 3.2x
# slower (GCC 12). CPython's own CFLAGS carry it on most builds, and setuptools passes those
# on, but not every Python's do.
_WRAPV = ["-fwrapv"]
# Every multiply-add the kernels leave to contraction becomes one fused instruction. GCC's
# generic tuning may keep a multiply and an add apart where they form a chain through a loop
# (a heuristic meant for CPUs whose FMA latency exceeds an add's; GCC 12 applied it to none of
# the kernels' loops, its builds are the same with this flag): then a GEMM's tile of one shape
# fuses and another does not, and a row's bits depend on its batch (a Xeon build with GCC 13).
_FMA_ALWAYS = ["--param=avoid-fma-max-bits=0"]


def _compiles(compiler: Any, flags: list[str], source: str, link: bool = False) -> bool:
    """Whether this compiler takes ``flags`` on ``source`` (and links it, if ``link``)."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "probe.c")
        src.write_text(source)
        try:
            objects = compiler.compile([str(src)], output_dir=tmp, extra_postargs=flags)
            if link:
                compiler.link_executable(objects, "probe", output_dir=tmp, extra_postargs=flags)
        except (CompileError, LinkError):
            return False
    return True


_OMP_PROBE = "#include <omp.h>\nint main(void) { return omp_get_max_threads() < 1; }\n"


class _BuildExt(build_ext):
    """Builds the kernels with the flags this compiler takes: OpenMP where it has it (GCC;
    clang with libomp), else single-threaded (max_threads.h answers 1) rather than failing
    the install; GCC's loop and FMA flags only where they are known (clang may refuse them)."""

    def build_extensions(self) -> None:
        dropped: list[str] = []
        if not _compiles(self.compiler, _OPENMP, _OMP_PROBE, link=True):
            dropped += _OPENMP
        for flags in (_NO_LIBC_LOOPS, _FMA_ALWAYS):
            if not _compiles(self.compiler, flags, "int main(void) { return 0; }\n"):
                dropped += flags
        for ext in self.extensions:
            ext.extra_compile_args = [a for a in ext.extra_compile_args if a not in dropped]
            ext.extra_link_args = [a for a in ext.extra_link_args if a not in dropped]
        super().build_extensions()


def _extensions() -> list[Extension]:
    return [
        Extension(
            f"walle._kernels.{pyx.stem}",
            [str(pyx)],
            include_dirs=[numpy.get_include(), "cython_kernels"],
            extra_compile_args=["-O3", *_WRAPV, *_NO_LIBC_LOOPS, *_FMA_ALWAYS, *_OPENMP],
            extra_link_args=_OPENMP,
        )
        for pyx in sorted(Path("cython_kernels").glob("*.pyx"))
    ]


setup(
    cmdclass={"build_ext": _BuildExt},
    ext_modules=cythonize(
        _extensions(),
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True},
    ),
)

"""Compiles every cython_kernels/*.pyx into the private package walle._kernels."""

from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

_OPENMP = ["-fopenmp"]
# The kernels copy short runs (rows of 7 to 56 floats: depthwise planes, packed GEMM strips)
# in loops of their own; GCC would turn each such loop into a libc memmove call, which costs
# more than the copy (a quarter of a depthwise 14 x 14 plane's time).
_NO_LIBC_LOOPS = ["-fno-tree-loop-distribute-patterns"]


def _extensions() -> list[Extension]:
    return [
        Extension(
            f"walle._kernels.{pyx.stem}",
            [str(pyx)],
            include_dirs=[numpy.get_include(), "cython_kernels"],
            extra_compile_args=["-O3", *_NO_LIBC_LOOPS, *_OPENMP],
            extra_link_args=_OPENMP,
        )
        for pyx in sorted(Path("cython_kernels").glob("*.pyx"))
    ]


setup(
    ext_modules=cythonize(
        _extensions(),
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True},
    )
)

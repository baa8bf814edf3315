"""Compiles every cython_kernels/*.pyx into the private package walle._kernels."""

from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

_OPENMP = ["-fopenmp"]


def _extensions() -> list[Extension]:
    return [
        Extension(
            f"walle._kernels.{pyx.stem}",
            [str(pyx)],
            include_dirs=[numpy.get_include(), "cython_kernels"],
            extra_compile_args=["-O3", *_OPENMP],
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

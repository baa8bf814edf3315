"""Compiled kernels built from cython_kernels/*.pyx (private; see walle.ops and walle.streams)."""

"""Imported first by the ops benchmarks, before numpy loads: BLAS and OpenMP pools of one
thread, since every row times one thread of each peer (onnxruntime and MNN are set to one
thread in their own options)."""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

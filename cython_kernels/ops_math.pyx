# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compute kernels of the walle.ops ``cython`` backend (GIL released, OpenMP over rows).

Each kernel is an object built once by the plan over fixed buffers (pointers and sizes
resolved at build time); ``run()`` is the only per-call work. The inner loops are small C
functions below, compiled per CPU level (``target_clones``: AVX-512, AVX2+FMA, baseline) and
auto-vectorised with ``omp simd``; exp is a vectorisable Cephes-style polynomial (relative
error ~2e-7), which is what lets softmax and sigmoid beat a scalar libm loop. Clamps and
max/min use ternaries: GCC 12 will not vectorise a loop calling fminf/fmaxf without
-ffast-math, and one such call once kept exp scalar (8x slower than numpy).
"""

from cython.parallel cimport prange

cimport numpy as cnp
cimport openmp

import numpy as np

cnp.import_array()

cdef extern from *:
    """
    #include <math.h>
    #include <stdint.h>
    #include <string.h>
    #if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
    #define WALLE_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
    #else
    #define WALLE_CLONES
    #endif

    typedef union { int32_t i; float f; } walle_bits;

    static inline float walle_exp(float x) {
        /* ternaries, not fminf/fmaxf: GCC does not vectorise those without -ffast-math */
        x = x < -87.3f ? -87.3f : x;
        x = x > 88.3f ? 88.3f : x;
        float n = (x * 1.44269504f + 12582912.0f) - 12582912.0f;  /* round, SIMD-friendly */
        float r = x - n * 0.693359375f + n * 2.12194440e-4f;
        float p = 1.9875691500E-4f;
        p = p * r + 1.3981999507E-3f; p = p * r + 8.3334519073E-3f;
        p = p * r + 4.1665795894E-2f; p = p * r + 1.6666665459E-1f;
        p = p * r + 5.0000001201E-1f;
        p = p * r * r + r + 1.0f;
        walle_bits b; b.i = ((int32_t)n + 127) << 23;
        return p * b.f;
    }
    /* exp(x) for x <= 0 (softmax, after the row max is subtracted): no upper clamp, a
       degree-5 polynomial (relative error ~2.2e-7, fitted on [-ln2/2, ln2/2]), 2^n taken
       from the rounding constant's low mantissa bits (1.5 * 2^23 + 127 + n), and x - n*ln2
       with a single float ln2 (off by 1.9e-9: relative error |n| * 1.9e-9, at most 2.4e-7
       where n = -126 and the value is ~1e-38): 11 vector ops against walle_exp's 19; the
       softmax row is bound by these. */
    typedef union { uint32_t u; float f; } walle_ubits;
    static inline float walle_exp_neg(float x) {
        x = x < -87.0f ? -87.0f : x;
        walle_ubits t; t.f = x * 1.44269504f + 12583039.0f;
        float n = t.f - 12583039.0f;
        float r = x - n * 0.693147182f;  /* one-constant reduction: see above */
        float p = 8.2976511e-3f;
        p = p * r + 4.1915383e-2f; p = p * r + 1.6667575e-1f; p = p * r + 4.9998894e-1f;
        p = p * r + 9.9999970e-1f; p = p * r + 1.0000001f;
        t.u <<= 23;
        return p * t.f;
    }
    static inline float walle_sigmoid(float x) { return 1.0f / (1.0f + walle_exp(-x)); }
    static inline float walle_tanh(float x) { return 1.0f - 2.0f / (walle_exp(2.0f * x) + 1.0f); }

    /* act: 0 none, 1 relu, 2 sigmoid, 3 tanh; bias_mode: 0 none, 1 per column, 2 per row */
    WALLE_CLONES static void walle_epilogue(float* restrict c, const float* restrict bias,
                                            long m, long n, int bias_mode, int act) {
        for (long i = 0; i < m; i++) {
            float* row = c + i * n;
            if (bias_mode == 1) {
                #pragma omp simd
                for (long j = 0; j < n; j++) row[j] += bias[j];
            } else if (bias_mode == 2) {
                float bi = bias[i];
                #pragma omp simd
                for (long j = 0; j < n; j++) row[j] += bi;
            }
            if (act == 1) {
                #pragma omp simd
                for (long j = 0; j < n; j++) row[j] = row[j] < 0.0f ? 0.0f : row[j];
            } else if (act == 2) {
                #pragma omp simd
                for (long j = 0; j < n; j++) row[j] = walle_sigmoid(row[j]);
            } else if (act == 3) {
                #pragma omp simd
                for (long j = 0; j < n; j++) row[j] = walle_tanh(row[j]);
            }
        }
    }

    /* Register tiles: R rows x W columns of c, accumulated over all of k. Enough independent
       accumulators (R * W / lanes >= 8) hide the FMA latency. */
    #define WALLE_TILE_FN(NAME, R, W) \
    static inline void NAME(const float* restrict a, const float* restrict b, \
                            float* restrict c, long n, long k, long j0) { \
        float acc[R][W] = {{0}}; \
        for (long p = 0; p < k; p++) { \
            const float* bp = b + p * n + j0; \
            for (int r = 0; r < R; r++) { \
                float ar = a[r * k + p]; \
                for (int t = 0; t < W; t++) acc[r][t] += ar * bp[t]; \
            } \
        } \
        for (int r = 0; r < R; r++) \
            for (int t = 0; t < W; t++) c[r * n + j0 + t] = acc[r][t]; \
    }
    static inline void walle_tile4x16(const float* restrict a, const float* restrict b,
                                      float* restrict c, long n, long k, long j0) {
        float c0[16] = {0}, c1[16] = {0}, c2[16] = {0}, c3[16] = {0};
        for (long p = 0; p < k; p++) {
            const float* bp = b + p * n + j0;
            float a0 = a[p], a1 = a[k + p], a2 = a[2 * k + p], a3 = a[3 * k + p];
            for (int t = 0; t < 16; t++) {
                c0[t] += a0 * bp[t]; c1[t] += a1 * bp[t];
                c2[t] += a2 * bp[t]; c3[t] += a3 * bp[t];
            }
        }
        for (int t = 0; t < 16; t++) {
            c[j0 + t] = c0[t]; c[n + j0 + t] = c1[t];
            c[2 * n + j0 + t] = c2[t]; c[3 * n + j0 + t] = c3[t];
        }
    }
    WALLE_TILE_FN(walle_tile1x64, 1, 64)
    WALLE_TILE_FN(walle_tile1x16, 1, 16)

    static inline void walle_gemm_cols(const float* a, const float* b, float* c, long rows,
                                       long n, long k, long j, long j_end) {
        /* columns [j, j_end) of rows rows of c; scalar for the last n % 16 columns */
        for (long i = 0; i < rows; i++)
            for (long q = j; q < j_end; q++) {
                float s = 0.0f;
                for (long p = 0; p < k; p++) s += a[i * k + p] * b[p * n + q];
                c[i * n + q] = s;
            }
    }

    /* Columns [j0, n) of c[m, n] = a[m, k] @ b[k, n], row-major, register-tiled. */
    WALLE_CLONES static void walle_gemm_from(const float* restrict a, const float* restrict b,
                                             float* restrict c, long m, long n, long k,
                                             long j0) {
        long i = 0;
        for (; i + 4 <= m; i += 4) {
            long j = j0;
            for (; j + 16 <= n; j += 16) walle_tile4x16(a + i * k, b, c + i * n, n, k, j);
            walle_gemm_cols(a + i * k, b, c + i * n, 4, n, k, j, n);
        }
        for (; i < m; i++) {
            long j = j0;
            for (; j + 64 <= n; j += 64) walle_tile1x64(a + i * k, b, c + i * n, n, k, j);
            for (; j + 16 <= n; j += 16) walle_tile1x16(a + i * k, b, c + i * n, n, k, j);
            walle_gemm_cols(a + i * k, b, c + i * n, 1, n, k, j, n);
        }
    }

    /* AVX-512 path (products of at least 4 rows and 32 columns): 16-column panels of b
       outermost, so a panel (k x 16 floats) stays in L1 while every row block of a streams
       past it; 8 x 16 tiles (8 accumulator registers) of 16-float vector-extension code. A generic 16-float
       vector is only fast where the target has AVX-512 (elsewhere GCC lowers it to scalars),
       hence a function of its own, called only after a CPU check. Measured alone, one
       thread: 256^3 78 -> 104-110 GFlop/s, [64,256]@[256,256] 78 -> 106-114 GFlop/s. */
    typedef float walle_v16 __attribute__((vector_size(64)));
    #define WALLE_GEMM_V16(NAME, R) \\
    static inline __attribute__((always_inline)) void NAME( \\
            const float* restrict a, const float* restrict b, float* restrict c, long n, \\
            long k) { \\
        walle_v16 acc[R]; \\
        for (int r = 0; r < R; r++) acc[r] = (walle_v16){0}; \\
        for (long p = 0; p < k; p++) { \\
            walle_v16 bp; \\
            memcpy(&bp, b + p * n, sizeof bp); \\
            for (int r = 0; r < R; r++) acc[r] += a[r * k + p] * bp; \\
        } \\
        for (int r = 0; r < R; r++) memcpy(c + r * n, &acc[r], sizeof(walle_v16)); \\
    }
    WALLE_GEMM_V16(walle_tile_v8x16, 8)
    WALLE_GEMM_V16(walle_tile_v4x16, 4)
    WALLE_GEMM_V16(walle_tile_v1x16, 1)
    #if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
    __attribute__((target("avx512f,avx2,fma")))
    #endif
    static void walle_gemm_avx512(const float* restrict a, const float* restrict b,
                                  float* restrict c, long m, long n, long k) {
        long n16 = n - n % 16;
        for (long j = 0; j < n16; j += 16) {
            long i = 0;
            for (; i + 8 <= m; i += 8) walle_tile_v8x16(a + i * k, b + j, c + i * n + j, n, k);
            for (; i + 4 <= m; i += 4) walle_tile_v4x16(a + i * k, b + j, c + i * n + j, n, k);
            for (; i < m; i++) walle_tile_v1x16(a + i * k, b + j, c + i * n + j, n, k);
        }
        if (n16 < n) walle_gemm_from(a, b, c, m, n, k, n16);
    }
    static int walle_has_avx512(void) {
    #if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f");
    #else
        return 0;
    #endif
    }
    static void walle_gemm(const float* restrict a, const float* restrict b, float* restrict c,
                           long m, long n, long k, int wide) {
        if (wide) walle_gemm_avx512(a, b, c, m, n, k);
        else walle_gemm_from(a, b, c, m, n, k, 0);
    }

    WALLE_CLONES static void walle_softmax_row(const float* restrict x, float* restrict y,
                                               long n) {
        float m = -INFINITY, s = 0.0f;
        #pragma omp simd reduction(max:m)
        for (long j = 0; j < n; j++) m = x[j] > m ? x[j] : m;
        #pragma omp simd reduction(+:s)
        for (long j = 0; j < n; j++) { float e = walle_exp_neg(x[j] - m); y[j] = e; s += e; }
        float inv = 1.0f / s;
        #pragma omp simd
        for (long j = 0; j < n; j++) y[j] *= inv;
    }

    WALLE_CLONES static void walle_layernorm_row(const float* restrict x, float* restrict y,
                                                 const float* restrict g,
                                                 const float* restrict b, long n, float eps) {
        float s = 0.0f, v = 0.0f;
        #pragma omp simd reduction(+:s)
        for (long j = 0; j < n; j++) s += x[j];
        float mean = s / (float)n;
        #pragma omp simd reduction(+:v)
        for (long j = 0; j < n; j++) { float d = x[j] - mean; v += d * d; }
        float rstd = 1.0f / sqrtf(v / (float)n + eps);
        if (g && b) {
            #pragma omp simd
            for (long j = 0; j < n; j++) y[j] = (x[j] - mean) * rstd * g[j] + b[j];
        } else if (g) {
            #pragma omp simd
            for (long j = 0; j < n; j++) y[j] = (x[j] - mean) * rstd * g[j];
        } else {
            #pragma omp simd
            for (long j = 0; j < n; j++) y[j] = (x[j] - mean) * rstd;
        }
    }

    /* kinds: 0 identity 1 neg 2 abs 3 exp 4 log 5 sqrt 6 reciprocal 7 relu 8 sigmoid 9 tanh 10 erf */
    WALLE_CLONES static void walle_unary(int kind, const float* restrict x, float* restrict y,
                                         long n) {
        switch (kind) {
        case 0: for (long i = 0; i < n; i++) y[i] = x[i]; break;
        case 1:
            #pragma omp simd
            for (long i = 0; i < n; i++) y[i] = -x[i];
            break;
        case 2:
            #pragma omp simd
            for (long i = 0; i < n; i++) y[i] = fabsf(x[i]);
            break;
        case 3:
            #pragma omp simd
            for (long i = 0; i < n; i++) y[i] = walle_exp(x[i]);
            break;
        case 4: for (long i = 0; i < n; i++) y[i] = logf(x[i]); break;
        case 5:
            #pragma omp simd
            for (long i = 0; i < n; i++) y[i] = sqrtf(x[i]);
            break;
        case 6:
            #pragma omp simd
            for (long i = 0; i < n; i++) y[i] = 1.0f / x[i];
            break;
        case 7:
            #pragma omp simd
            for (long i = 0; i < n; i++) y[i] = x[i] < 0.0f ? 0.0f : x[i];
            break;
        case 8:
            #pragma omp simd
            for (long i = 0; i < n; i++) y[i] = walle_sigmoid(x[i]);
            break;
        case 9:
            #pragma omp simd
            for (long i = 0; i < n; i++) y[i] = walle_tanh(x[i]);
            break;
        default: for (long i = 0; i < n; i++) y[i] = erff(x[i]); break;
        }
    }

    /* kinds: 0 add 1 sub 2 mul 3 div 4 max 5 min 6 pow; sa/sb: 1 contiguous, 0 broadcast */
    #define WALLE_BIN(EXPR) \
        if (sa && sb) { _Pragma("omp simd") for (long i = 0; i < n; i++) { float p = a[i], q = b[i]; y[i] = EXPR; } } \
        else if (sa) { float q = b[0]; _Pragma("omp simd") for (long i = 0; i < n; i++) { float p = a[i]; y[i] = EXPR; } } \
        else { float p = a[0]; _Pragma("omp simd") for (long i = 0; i < n; i++) { float q = b[i]; y[i] = EXPR; } }
    WALLE_CLONES static void walle_binary(int kind, const float* a, const float* b, float* y,
                                          long n, long sa, long sb) {
        switch (kind) {
        case 0: WALLE_BIN(p + q) break;
        case 1: WALLE_BIN(p - q) break;
        case 2: WALLE_BIN(p * q) break;
        case 3: WALLE_BIN(p / q) break;
        case 4: WALLE_BIN(p > q ? p : q) break;
        case 5: WALLE_BIN(p < q ? p : q) break;
        default: WALLE_BIN(powf(p, q)) break;
        }
    }

    /* kinds: 0 sum 1 mean 2 max 3 min over the middle axis of [outer, r, inner] */
    WALLE_CLONES static void walle_reduce(int kind, const float* restrict x, float* restrict y,
                                          long outer, long r, long inner) {
        for (long o = 0; o < outer; o++) {
            const float* xo = x + o * r * inner;
            float* yo = y + o * inner;
            if (inner == 1) {
                float acc = xo[0];
                if (kind <= 1) {
                    acc = 0.0f;
                    #pragma omp simd reduction(+:acc)
                    for (long i = 0; i < r; i++) acc += xo[i];
                    if (kind == 1) acc /= (float)r;
                } else if (kind == 2) {
                    #pragma omp simd reduction(max:acc)
                    for (long i = 0; i < r; i++) acc = xo[i] > acc ? xo[i] : acc;
                } else {
                    #pragma omp simd reduction(min:acc)
                    for (long i = 0; i < r; i++) acc = xo[i] < acc ? xo[i] : acc;
                }
                yo[0] = acc;
                continue;
            }
            for (long j = 0; j < inner; j++) yo[j] = xo[j];
            for (long i = 1; i < r; i++) {
                const float* xr = xo + i * inner;
                if (kind <= 1) {
                    #pragma omp simd
                    for (long j = 0; j < inner; j++) yo[j] += xr[j];
                } else if (kind == 2) {
                    #pragma omp simd
                    for (long j = 0; j < inner; j++) yo[j] = yo[j] > xr[j] ? yo[j] : xr[j];
                } else {
                    #pragma omp simd
                    for (long j = 0; j < inner; j++) yo[j] = yo[j] < xr[j] ? yo[j] : xr[j];
                }
            }
            if (kind == 1) {
                float inv = 1.0f / (float)r;
                #pragma omp simd
                for (long j = 0; j < inner; j++) yo[j] *= inv;
            }
        }
    }
    """
    void walle_epilogue(float* c, const float* bias, long m, long n, int bias_mode,
                        int act) nogil
    void walle_gemm(const float* a, const float* b, float* c, long m, long n, long k,
                    int wide) nogil
    int walle_has_avx512() nogil
    void walle_softmax_row(const float* x, float* y, long n) nogil
    void walle_layernorm_row(const float* x, float* y, const float* g, const float* b, long n,
                             float eps) nogil
    void walle_unary(int kind, const float* x, float* y, long n) nogil
    void walle_binary(int kind, const float* a, const float* b, float* y, long n, long sa,
                      long sb) nogil
    void walle_reduce(int kind, const float* x, float* y, long outer, long r,
                      long inner) nogil

UNARY_KINDS = {"identity": 0, "neg": 1, "abs": 2, "exp": 3, "log": 4, "sqrt": 5,
               "reciprocal": 6, "relu": 7, "sigmoid": 8, "tanh": 9, "erf": 10}
BINARY_KINDS = {"add": 0, "sub": 1, "mul": 2, "div": 3, "max": 4, "min": 5, "pow": 6}
REDUCE_KINDS = {"sum": 0, "mean": 1, "max": 2, "min": 3}
ACTS = {"none": 0, "relu": 1, "sigmoid": 2, "tanh": 3}
_GRAIN = 1 << 16


cdef float* _ptr(object array) except NULL:
    """Address of a C-contiguous float32 array (the caller keeps the array alive)."""
    if array.dtype != np.float32 or not array.flags.c_contiguous or array.size == 0:
        raise ValueError("kernel buffers must be non-empty C-contiguous float32 arrays")
    return <float*><size_t>array.ctypes.data


cdef float* _io_ptr(cnp.ndarray array, long size) except NULL:
    """Address of a caller's array for ``run_io``: float32, C-contiguous, ``size`` elements."""
    if (cnp.PyArray_TYPE(array) != cnp.NPY_FLOAT32 or not cnp.PyArray_IS_C_CONTIGUOUS(array)
            or cnp.PyArray_SIZE(array) != size or size == 0):
        raise ValueError(f"run_io needs C-contiguous float32 arrays of {size} elements")
    return <float*>cnp.PyArray_DATA(array)


cdef int _threads(double work, long parts):
    """OpenMP threads worth using for ``work`` element-operations split in ``parts``."""
    if work < _GRAIN or parts < 2:
        return 1
    return <int>max(1, min(openmp.omp_get_max_threads(), parts, <long>(work / _GRAIN)))


cdef class GemmKernel:
    """c[batch, m, n] = a @ b (+ bias) (activation); a or b may be shared across the batch.

    ``direct`` computes with the tiled C kernel; with ``blas`` the plan runs numpy's matmul
    first and this kernel only applies bias and activation (``epilogue_only``).
    """

    cdef float* a
    cdef float* b
    cdef float* c
    cdef float* bias
    cdef long batch, m, n, k, a_step, b_step
    cdef int bias_mode, act, threads, epilogue_only, wide
    cdef object keep

    def __init__(self, a, b, c, bias, int bias_mode, str act, bint epilogue_only=False,
                 bint wide=True):
        self.keep = (a, b, c, bias)
        self.a, self.b, self.c = _ptr(a), _ptr(b), _ptr(c)
        self.bias = _ptr(bias) if bias is not None else NULL
        self.m, self.n = c.shape[c.ndim - 2], c.shape[c.ndim - 1]
        self.k = a.shape[a.ndim - 1]
        self.batch = c.size // (self.m * self.n)
        self.a_step = self.m * self.k if a.ndim == 3 else 0
        self.b_step = self.k * self.n if b.ndim == 3 else 0
        self.bias_mode, self.act, self.epilogue_only = bias_mode, ACTS[act], epilogue_only
        self.threads = _threads(<double>c.size * (1 if epilogue_only else self.k), self.batch)
        # the AVX-512 panel kernel for products of >= 4 rows and >= 16 columns (unless
        # wide=False: the tests run both paths)
        self.wide = wide and self.m >= 4 and self.n >= 16 and walle_has_avx512()

    def io_arrays(self):
        """The arrays ``run_io`` replaces, in its argument order: a, b, c."""
        return self.keep[:3]

    def run(self):
        self._run(self.a, self.b, self.c)

    def run_io(self, a, b, c):
        """Run on the caller's arrays (sized like the build-time a, b, c): no copies."""
        cdef long c_size = self.batch * self.m * self.n
        cdef long a_size = (self.batch if self.a_step else 1) * self.m * self.k
        cdef long b_size = (self.batch if self.b_step else 1) * self.k * self.n
        self._run(_io_ptr(a, a_size), _io_ptr(b, b_size), _io_ptr(c, c_size))

    cdef void _run(self, const float* a, const float* b, float* c) noexcept:
        cdef long i
        with nogil:
            if self.threads > 1:
                for i in prange(self.batch, num_threads=self.threads, schedule="static"):
                    self._one(a, b, c, i)
            else:
                for i in range(self.batch):
                    self._one(a, b, c, i)

    cdef void _one(self, const float* a, const float* b, float* c, long i) noexcept nogil:
        cdef float* ci = c + i * self.m * self.n
        if not self.epilogue_only:
            walle_gemm(a + i * self.a_step, b + i * self.b_step, ci, self.m, self.n, self.k,
                       self.wide)
        if self.bias_mode or self.act:
            walle_epilogue(ci, self.bias, self.m, self.n, self.bias_mode, self.act)


cdef class RowKernel:
    """Softmax (kind 0) or layer norm (kind 1) over the last axis of x, into y."""

    cdef float* x
    cdef float* y
    cdef float* g
    cdef float* b
    cdef long rows, cols
    cdef int kind, threads
    cdef float eps
    cdef object keep

    def __init__(self, str kind, x, y, gamma=None, beta=None, float eps=0.0):
        self.keep = (x, y, gamma, beta)
        self.x, self.y = _ptr(x), _ptr(y)
        self.g = _ptr(gamma) if gamma is not None else NULL
        self.b = _ptr(beta) if beta is not None else NULL
        self.cols = x.shape[x.ndim - 1]
        self.rows = x.size // self.cols
        self.kind = 0 if kind == "softmax" else 1
        self.eps = eps
        self.threads = _threads(<double>x.size * 8, self.rows)

    def run(self):
        cdef long i
        with nogil:
            if self.threads > 1:
                for i in prange(self.rows, num_threads=self.threads, schedule="static"):
                    self._row(i)
            else:
                for i in range(self.rows):
                    self._row(i)

    def io_arrays(self):
        """The arrays ``run_io`` replaces, in its argument order: x, y."""
        return self.keep[:2]

    def run_io(self, x, y):
        """Run on the caller's arrays (shaped like the build-time ones): no copy in or out."""
        cdef const float* xp = _io_ptr(x, self.rows * self.cols)
        cdef float* yp = _io_ptr(y, self.rows * self.cols)
        cdef long i
        with nogil:
            if self.threads > 1:
                for i in prange(self.rows, num_threads=self.threads, schedule="static"):
                    self._row_of(xp, yp, i)
            else:
                for i in range(self.rows):
                    self._row_of(xp, yp, i)

    cdef void _row(self, long i) noexcept nogil:
        self._row_of(self.x, self.y, i)

    cdef void _row_of(self, const float* x, float* y, long i) noexcept nogil:
        if self.kind == 0:
            walle_softmax_row(x + i * self.cols, y + i * self.cols, self.cols)
        else:
            walle_layernorm_row(x + i * self.cols, y + i * self.cols, self.g, self.b,
                                self.cols, self.eps)


cdef class UnaryKernel:
    """y = f(x) element-wise over contiguous buffers of the same size."""

    cdef float* x
    cdef float* y
    cdef long n, chunk
    cdef int kind, threads
    cdef object keep

    def __init__(self, str kind, x, y):
        self.keep = (x, y)
        self.x, self.y, self.n, self.kind = _ptr(x), _ptr(y), x.size, UNARY_KINDS[kind]
        self.threads = _threads(<double>self.n * (8 if self.kind >= 3 else 1), self.n // 4096)
        self.chunk = (self.n + self.threads - 1) // self.threads

    def run(self):
        cdef long i, start
        with nogil:
            if self.threads > 1:
                for i in prange(self.threads, num_threads=self.threads, schedule="static"):
                    start = i * self.chunk
                    walle_unary(self.kind, self.x + start, self.y + start,
                                min(self.chunk, self.n - start))
            else:
                walle_unary(self.kind, self.x, self.y, self.n)


cdef class BinaryKernel:
    """y = a op b with broadcasting, as up to 3 outer loops over a contiguous inner run.

    ``sizes`` and the element strides (0 where broadcast) come collapsed from the backend;
    the innermost dim has strides 1 or 0 on each side.
    """

    cdef float* a
    cdef float* b
    cdef float* y
    cdef long sz[4]
    cdef long sa[4]
    cdef long sb[4]
    cdef int kind
    cdef object keep

    def __init__(self, str kind, a, b, y, sizes, a_strides, b_strides):
        self.keep = (a, b, y)
        self.a, self.b, self.y = _ptr(a), _ptr(b), _ptr(y)
        self.kind = BINARY_KINDS[kind]
        pad = 4 - len(sizes)
        for i in range(4):
            self.sz[i] = 1 if i < pad else sizes[i - pad]
            self.sa[i] = 0 if i < pad else a_strides[i - pad]
            self.sb[i] = 0 if i < pad else b_strides[i - pad]

    def run(self):
        cdef long i0, i1, i2, oa, ob, oy = 0
        with nogil:
            for i0 in range(self.sz[0]):
                for i1 in range(self.sz[1]):
                    for i2 in range(self.sz[2]):
                        oa = i0 * self.sa[0] + i1 * self.sa[1] + i2 * self.sa[2]
                        ob = i0 * self.sb[0] + i1 * self.sb[1] + i2 * self.sb[2]
                        walle_binary(self.kind, self.a + oa, self.b + ob, self.y + oy,
                                     self.sz[3], self.sa[3], self.sb[3])
                        oy = oy + self.sz[3]


cdef class ReduceKernel:
    """y = reduce(x) over the middle axis of x viewed as [outer, r, inner]."""

    cdef float* x
    cdef float* y
    cdef long outer, r, inner
    cdef int kind
    cdef object keep

    def __init__(self, str kind, x, y, long outer, long r, long inner):
        self.keep = (x, y)
        self.x, self.y, self.kind = _ptr(x), _ptr(y), REDUCE_KINDS[kind]
        self.outer, self.r, self.inner = outer, r, inner

    def run(self):
        with nogil:
            walle_reduce(self.kind, self.x, self.y, self.outer, self.r, self.inner)

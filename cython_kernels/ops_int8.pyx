# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Integer matrix products of the walle.ops ``cython`` backend: quantized matmuls and convs
in int32.

:class:`MatmulInt8Kernel` computes c = float(a @ b) (+ bias, ReLU) for an a of whole numbers
in [0, 255] (a quantized value: what QuantizeLinear and DynamicQuantizeLinear give, as
floats) and a constant b of whole numbers in [-255, 255] (quantized weights less their zero
point), with gemm_int8.h's integer tiles: VNNI's u8 x s8 dot products where the CPU has them
and b fits 8 bits (4x the multiply-adds of an fp32 FMA an instruction), else 16-bit
multiply-adds (2x). The sums are exact int32s: the float kernels' results to the bit while
they stay below 2**24, and closer beyond. b is packed once, when the kernel is built; a's
rows are packed (converted) with each call. :class:`ConvInt8Kernel` is the same product
with the constant on the left: a conv's weights times each image's im2col columns of a
quantized value. The level is picked per kernel (the backend
passes the conv family's, see walle.ops.backends.cython_isa).
"""

from cython.parallel cimport prange
from cython.parallel cimport threadid as openmp_thread

cdef extern from "max_threads.h":
    int walle_max_threads() nogil

import numpy as np

from walle._kernels.hugepages import copy as _lasting_copy
from walle._kernels.hugepages import zeros as _lasting

cdef extern from "gemm_int8.h":
    ctypedef struct walle_i8_gemm:
        long m, k, n, lda, ldc, kg
        int form
        const float* a
        void* apack
        const void* bpack
        float* c
        const float* bias
        int bias_mode
        int relu
    int walle_cpu_level() nogil
    int walle_i8_form(int level, int quads) nogil
    int walle_i8_has_vnni() nogil
    enum: WALLE_I8_VNNI
    int walle_i8_cols[4]
    int walle_i8_group[4]
    int walle_i8_rows[4]
    void walle_i8_pack(const walle_i8_gemm* g) nogil
    void walle_i8_run(const walle_i8_gemm* g, long p0, long p1) nogil
    ctypedef struct walle_i8_conv:
        long m, k, n, ldy, kg
        int form
        const void* wpack
        const float* bias
        int relu
        const long* rowoff
        const int* pixoff
        const unsigned char* run
    void walle_i8_conv_run(const walle_i8_conv* g, const float* x, float* y, void* xpack,
                           long p0, long p1) nogil

LEVELS = {"avx512": 2, "avx2": 1, "sse": 0}
FORMS = ("pairs128", "pairs256", "pairs512", "vnni")
# the longest reduction whose int32 sums cannot overflow: k products of at most 255 * 255
MAX_K = (2**31 - 1) // (255 * 255)
# work below which one thread runs it all (multiply-adds)
_GRAIN = 1 << 21
# the bytes of an image's packed columns a chunk may hold (half a typical L2): every tile of
# weight rows passes over a chunk while it stays in the cache
_CHUNK_BYTES = 256 * 1024


def _form(b, int level_value, vnni):
    """gemm_int8.h's form for weights b at a level: VNNI only where b fits 8 bits."""
    quads = bool(np.all((b >= -128) & (b <= 127))) and vnni is not False
    return walle_i8_form(level_value, quads)


def _level_value(str kind, level):
    best = walle_cpu_level()
    if level is not None and level != "best" and level not in LEVELS:
        raise ValueError(f"{kind}: level {level!r} (best, {', '.join(LEVELS)})")
    value = best if level is None or level == "best" else LEVELS[level]
    if value > best:
        raise ValueError(f"{kind}: this CPU does not run the {level} tiles")
    return value


def has_vnni():
    """Whether this CPU runs the VNNI tiles (AVX-512 VNNI and BW, ZMM state saved)."""
    return bool(walle_i8_has_vnni())


def weights_fit(b):
    """Whether a constant b can be this kernel's: whole numbers in [-255, 255], rows at
    most MAX_K."""
    b = np.asarray(b)
    return (b.ndim == 2 and 0 < b.shape[0] <= MAX_K and bool(np.all(np.abs(b) <= 255))
            and bool(np.all(np.rint(b) == b)))


cdef class MatmulInt8Kernel:
    """c[m, n] = float(a @ b) (+ bias, ReLU), the sums in int32 (module docstring).

    a, c: 2-D C-contiguous float32; a's values are taken as whole numbers in [0, 255] (a
    value outside is clamped: it is a caller's error, and the kernel must not read it as
    another number). b: 2-D, whole numbers in [-255, 255] (ValueError otherwise), copied and
    packed here. ``bias_mode`` 0 none, 1 per column (bias[n]), 2 per row (bias[m]); ``act``
    none or relu (which keeps a NaN bias). ``level`` (avx512, avx2, sse, best; None: best)
    picks the tiles; ``vnni`` False keeps an AVX-512 CPU off its VNNI tiles (the 16-bit ones
    then run), None takes them where they fit.
    """

    cdef walle_i8_gemm g
    cdef readonly str form
    cdef readonly long panels
    cdef int threads
    cdef object keep

    def __init__(self, a, b, c, bias=None, int bias_mode=0, str act="none", str level=None,
                 vnni=None):
        for name, arr in (("a", a), ("c", c)):
            if arr.dtype != np.float32 or not arr.flags.c_contiguous or arr.ndim != 2:
                raise ValueError(f"int8 matmul kernel: {name} must be a 2-D C-contiguous "
                                 "float32 array")
        m, k = (int(v) for v in a.shape)
        if b.ndim != 2 or b.shape[0] != k or tuple(c.shape) != (m, b.shape[1]):
            raise ValueError(f"int8 matmul kernel: shapes {a.shape} @ {b.shape} -> {c.shape}")
        if not weights_fit(b):
            raise ValueError(f"int8 matmul kernel: b must hold whole numbers in [-255, 255] "
                             f"and at most {MAX_K} rows")
        n = int(b.shape[1])
        if bias_mode not in (0, 1, 2) or (bias_mode != 0) != (bias is not None):
            raise ValueError(f"int8 matmul kernel: bias mode {bias_mode} with bias {bias!r}")
        if act not in ("none", "relu"):
            raise ValueError(f"int8 matmul kernel: activation {act!r} (none or relu)")
        if bias is not None:
            bias = np.ascontiguousarray(bias, dtype=np.float32).reshape(-1)
            if bias.size != (n if bias_mode == 1 else m):
                raise ValueError(f"int8 matmul kernel: {bias.size} biases for mode {bias_mode}")
        cdef int form = _form(b, _level_value("int8 matmul kernel", level), vnni)
        rows, cols, group = walle_i8_rows[form], walle_i8_cols[form], walle_i8_group[form]
        kg = -(-k // group)
        panels = -(-n // cols)
        # b as [panels][k / group][cols][group], zero-padded
        padded = np.zeros((kg * group, panels * cols), np.float32)
        padded[:k, :n] = b
        packed = _lasting_copy(
            padded.reshape(kg, group, panels, cols).transpose(2, 0, 3, 1).astype(
                np.int8 if form == WALLE_I8_VNNI else np.int16))
        apack = _lasting((-(-m // rows) * rows, kg * group),
                         np.uint8 if form == WALLE_I8_VNNI else np.int16)
        self.keep = (a, c, bias, packed, apack)
        self.g.m, self.g.k, self.g.n, self.g.lda, self.g.ldc, self.g.kg = m, k, n, k, n, kg
        self.g.form = form
        self.g.a = <const float*><size_t>a.ctypes.data
        self.g.apack = <void*><size_t>apack.ctypes.data
        self.g.bpack = <const void*><size_t>packed.ctypes.data
        self.g.c = <float*><size_t>c.ctypes.data
        self.g.bias = NULL if bias is None else <const float*><size_t>bias.ctypes.data
        self.g.bias_mode = bias_mode
        self.g.relu = act == "relu"
        self.form = FORMS[form]
        self.panels = panels
        self.threads = <int>max(1, min(walle_max_threads(), panels, m * n * k // _GRAIN))

    def run(self):
        cdef long p, chunk, start, stop
        cdef long panels = self.panels
        cdef int threads = self.threads
        with nogil:
            walle_i8_pack(&self.g)
            if threads > 1:
                chunk = (panels + threads - 1) // threads
                for p in prange(threads, num_threads=threads, schedule="static"):
                    start = p * chunk
                    stop = min(panels, start + chunk)
                    if start < stop:
                        walle_i8_run(&self.g, start, stop)
            else:
                walle_i8_run(&self.g, 0, panels)


cdef class ConvInt8Kernel:
    """y[i] = float(w @ x[i]) (+ bias per row, ReLU) for each image i, the sums in int32:
    a conv's constant weights w [m, k] (whole numbers in [-255, 255]) times its im2col
    columns of a quantized value (whole numbers in [0, 255], clamped as
    :class:`MatmulInt8Kernel` clamps a); y [batch, m, n].

    x is the columns [batch, k, n], or, with ``region`` (the im2col raster's Region: sizes
    [N, C, KH, KW, OH, OW] over x's elements), the conv's (padded) input read in place:
    column (oh, ow) of row (c, kh, kw) where the region reads it. ``level`` and ``vnni`` as
    :class:`MatmulInt8Kernel`'s.
    """

    cdef walle_i8_conv g
    cdef readonly str form
    cdef readonly long panels
    cdef long chunk, chunks, batch, xsize, xs
    cdef const float* x
    cdef float* y
    cdef char* xpack
    cdef int threads
    cdef object keep

    def __init__(self, w, x, y, bias=None, str act="none", str level=None, vnni=None,
                 region=None):
        for name, arr in (("x", x), ("y", y)):
            if arr.dtype != np.float32 or not arr.flags.c_contiguous:
                raise ValueError(f"int8 conv kernel: {name} must be a C-contiguous float32 "
                                 "array")
        if region is None:
            if x.ndim != 3:
                raise ValueError("int8 conv kernel: x must be 3-D columns [batch, k, n] "
                                 "without a region")
            batch, k, n = (int(v) for v in x.shape)
            rowoff = np.arange(k, dtype=np.int64) * n
            pixoff = np.arange(n, dtype=np.int64)
            image = k * n
            runs_along = np.ones(n, bool)  # every column next to the one before
        else:
            batch, c, kh, kw, oh, ow = (int(v) for v in region.sizes)
            sn, sc, skh, skw, soh, sow = (int(v) for v in region.src_strides)
            k, n = c * kh * kw, oh * ow
            taps = np.indices((c, kh, kw), dtype=np.int64).reshape(3, -1)
            rowoff = region.src_offset + taps[0] * sc + taps[1] * skh + taps[2] * skw
            pix = np.indices((oh, ow), dtype=np.int64).reshape(2, -1)
            pixoff = pix[0] * soh + pix[1] * sow
            image = sn
            runs_along = np.concatenate([[True], np.diff(pixoff) == 1])
            reach = (batch - 1) * sn + rowoff.max() + pixoff.max() if k and n else 0
            if reach >= x.size or rowoff.min() < 0 or pixoff.max() >= 2**31:
                raise ValueError(f"int8 conv kernel: the region reads past x ({x.size} "
                                 "elements)")
        if w.ndim != 2 or w.shape[1] != k or y.size != batch * w.shape[0] * n:
            raise ValueError(f"int8 conv kernel: shapes {w.shape} @ [{batch}, {k}, {n}] -> "
                             f"{y.shape}")
        if not weights_fit(w.T):
            raise ValueError(f"int8 conv kernel: w must hold whole numbers in [-255, 255] "
                             f"and at most {MAX_K} columns")
        if act not in ("none", "relu"):
            raise ValueError(f"int8 conv kernel: activation {act!r} (none or relu)")
        m = int(w.shape[0])
        if bias is not None:
            bias = np.ascontiguousarray(bias, dtype=np.float32).reshape(-1)
            if bias.size != m:
                raise ValueError(f"int8 conv kernel: {bias.size} biases for {m} rows")
        cdef int form = _form(w, _level_value("int8 conv kernel", level), vnni)
        rows, cols, group = walle_i8_rows[form], walle_i8_cols[form], walle_i8_group[form]
        kg = -(-k // group)
        wide = np.zeros((-(-m // rows) * rows, kg * group), np.float32)
        wide[:m, :k] = w
        packed = _lasting_copy(wide.astype(np.int8 if form == WALLE_I8_VNNI else np.int16))
        self.panels = -(-n // cols)
        # a vector of columns (half a panel) is one run when each column follows the last
        lanes = cols // 2
        padded = np.zeros(self.panels * cols, np.int32)
        padded[:n] = pixoff
        along = np.ones(self.panels * cols, bool)
        along[:n] = runs_along
        along[np.arange(0, n, lanes)] = True  # a vector's first column starts its run
        run = along.reshape(-1, lanes).all(axis=1).astype(np.uint8)
        offsets = np.ascontiguousarray(rowoff, dtype=np.int64)
        panel_bytes = kg * cols * group * (1 if form == WALLE_I8_VNNI else 2)
        self.chunk = max(1, min(self.panels, _CHUNK_BYTES // panel_bytes))
        self.chunks = (self.panels + self.chunk - 1) // self.chunk  # C ints: no -(-a // b)
        self.batch = batch
        self.threads = <int>max(1, min(walle_max_threads(), batch * self.chunks,
                                       batch * m * n * k // _GRAIN))
        self.xsize = self.chunk * panel_bytes
        xpack = _lasting(self.threads * self.xsize + 64, np.uint8)
        self.keep = (x, y, bias, packed, xpack, offsets, padded, run)
        self.g.m, self.g.k, self.g.n, self.g.ldy, self.g.kg = m, k, n, n, kg
        self.g.form = form
        self.g.wpack = <const void*><size_t>packed.ctypes.data
        self.g.bias = NULL if bias is None else <const float*><size_t>bias.ctypes.data
        self.g.relu = act == "relu"
        self.g.rowoff = <const long*><size_t>offsets.ctypes.data
        self.g.pixoff = <const int*><size_t>padded.ctypes.data
        self.g.run = <const unsigned char*><size_t>run.ctypes.data
        self.xs = image
        self.x = <const float*><size_t>x.ctypes.data
        self.y = <float*><size_t>y.ctypes.data
        self.xpack = <char*><size_t>xpack.ctypes.data
        self.form = FORMS[form]

    def run(self):
        cdef long u, units = self.batch * self.chunks
        cdef int threads = self.threads
        if threads > 1:
            for u in prange(units, nogil=True, num_threads=threads, schedule="static"):
                self._unit(u, self.xpack + openmp_thread() * self.xsize)
        else:
            with nogil:
                for u in range(units):
                    self._unit(u, self.xpack)

    cdef void _unit(self, long u, char* xpack) noexcept nogil:
        """Chunk u % chunks of image u // chunks."""
        cdef long i = u // self.chunks, c = u % self.chunks
        cdef long p0 = c * self.chunk
        cdef long p1 = min(self.panels, p0 + self.chunk)
        cdef long ys = self.g.m * self.g.n
        walle_i8_conv_run(&self.g, self.x + i * self.xs, self.y + i * ys, xpack, p0, p1)

# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Grouped and depthwise 2-D convolution of the walle.ops ``cython`` backend, one pass.

:class:`GroupConvKernel` computes a ``fused.group_conv2d`` step (im2col raster, batched
matmul by constant per-group weights, bias, ReLU) without the im2col buffer and without
the batched matmul's per-group calls: it reads the padded NCHW input through the im2col
region's strides and writes the NCHW output. A group of several input channels runs
ops_conv's register tiles per group (8 output channels x vectors of columns); a depthwise
conv (one input channel a group) runs a per-channel kernel vectorised over the output
plane. :class:`BiasActKernel` is the epilogue of the other algorithm, a grouped 1x1 conv
as one batched numpy matmul on the input itself. The C is in group_conv.h, compiled once per instruction-set level; the level is
picked per kernel (the backend passes the conv family's, see walle.ops.backends.cython_isa).
"""

from cython.parallel cimport prange

cdef extern from "max_threads.h":
    int walle_max_threads() nogil

import numpy as np

from walle._kernels.hugepages import copy as _lasting_copy
from walle._kernels.hugepages import zeros as _lasting
from walle._kernels.ops_conv import relu_cap as _relu_cap

cdef extern from "group_conv.h":
    ctypedef struct walle_gconv:
        const float* x
        const float* w
        const float* bias
        float* y
        long n, kh, kw, oh, ow
        long s_n, s_c, s_kh, s_kw, s_oh, s_ow
        long groups, cin, cout, blocks
        float relu
        const long* base
        long ih, iw, irs, top, left, hp, wp, off
    int walle_gconv_best_level() nogil
    void walle_gconv_run(const walle_gconv* p, int depthwise, int level, long i0, long i1,
                         float* scratch) nogil
    void walle_bias_act(float* y, const float* bias, const float* res, long rows,
                        long channels, long plane, float relu, int level) nogil
    long walle_dwc_lanes(int level) nogil
    void walle_dwc_run(const walle_gconv* p, int level, long i0, long i1,
                       float* scratch) nogil

LEVELS = {"avx512": 2, "avx2": 1, "sse": 0}  # instruction-set levels, widest first
_GRAIN = 1 << 20  # multiply-adds worth one more thread


def best_level():
    """The widest level this CPU runs (2 AVX-512F, 1 AVX2 + FMA, 0 baseline SSE2)."""
    return walle_gconv_best_level()


_CHANNEL_LANES_PLANE = 64 * 64  # the largest padded plane channel lanes run (an L2's share)
# ... at stride 2, up to 112 x 112 inputs (MobileNets' and PP-LCNet's first depthwise
# convs): there the AVX2 build's NCHW kernel had split every source row into even and odd
# columns (three shuffles a vector), and channel lanes took 0.85-0.92x its time (AVX2, one
# core: 32 x 112 x 112 3x3/2 82 -> 73 us, 96 x 112 x 112 242 -> 224, 144 x 56 x 56 96 -> 89);
# its tiles now pick in lanes (group_conv.h's WALLE_DW3S2V, 65 us on the first). At AVX-512
# the masked NCHW kernel stays ahead (32 x 112 x 112 63 against 78); the search times both.
# At stride 1 such planes ran 1.2-1.5x the NCHW kernel's time at both levels.
_CHANNEL_LANES_PLANE_S2 = 120 * 120


def channel_lanes_fits(region, long groups, long outputs, planes=None):
    """Whether :class:`GroupConvKernel` runs a conv with ``channel_lanes``: depthwise (one
    input and one output channel a group), 3x3 or 5x5, dilation 1, the same stride 1 or 2
    across rows and columns, a padded plane of at most 64 x 64 floats (120 x 120 at stride 2)."""
    n, c, kh, kw, oh, ow = (int(v) for v in region.sizes)
    s = [int(v) for v in region.src_strides]
    rows, pitch = _lanes_plane(region, planes)
    return (groups == c == outputs and kh == kw and kh in (3, 5) and s[3] == 1
            and s[5] in (1, 2) and s[4] == s[5] * s[2] and min(s) >= 0
            and rows * pitch <= (_CHANNEL_LANES_PLANE_S2 if s[5] == 2 else _CHANNEL_LANES_PLANE))


def _lanes_plane(region, planes):
    """(rows, columns) of the padded plane the channel-lanes kernel transposes: the planes'
    zero-bordered one, else the rows and columns the region's taps reach."""
    if planes is not None:
        return int(planes[6]), int(planes[7])
    n, c, kh, kw, oh, ow = (int(v) for v in region.sizes)
    stride = int(region.src_strides[5])
    return (oh - 1) * stride + kh, (ow - 1) * stride + kw


cdef class GroupConvKernel:
    """y[N, Cout, OH, OW] = act(grouped conv(x) + bias), x read through an im2col region.

    ``region`` is the im2col raster's: sizes (N, C, KH, KW, OH, OW), source strides and
    offset into ``x`` (the padded input); ``weight`` holds [groups, Cout / groups,
    C / groups * KH * KW] values (any shape of that size); ``bias`` Cout values or None;
    ``act`` "none", "relu", "relu6" or "hard_swish"; ``level`` "avx512", "avx2", "sse", or
    None / "best" for the widest this CPU runs. ``planes`` (depthwise only): the region reads a zero-padded tensor
    [N, C, HP, WP] that is never built: ``(base, rows, cols, row_stride, top, left, hp, wp)``
    says that plane (n, c) is ``rows`` x ``cols`` floats of ``x`` at offset ``base[n * C + c]``
    (int64), rows ``row_stride`` apart, placed at (top, left); each plane is copied into a
    zero-bordered scratch plane just before its taps read it. ``channel_lanes``: a depthwise
    3x3 or 5x5 conv at stride 1 or 2, one output a channel, with the channels in the vector
    lanes (dw_channel_lanes.h; ValueError where :func:`channel_lanes_fits` is false).
    ``depthwise`` (read-only) says which mode runs (one input channel a group),
    ``channel_lanes`` (read-only) whether in channel lanes, ``level`` (read-only) at which
    instruction-set level.
    """

    cdef walle_gconv p
    cdef int threads
    cdef long items
    cdef float* scratch
    cdef long scratch_size
    cdef readonly int level
    cdef readonly bint depthwise
    cdef readonly bint channel_lanes
    cdef object keep

    def __init__(self, x, weight, bias, y, region, int groups, str act, str level=None,
                 planes=None, bint channel_lanes=False):
        n, c, kh, kw, oh, ow = (int(v) for v in region.sizes)
        s = [int(v) for v in region.src_strides]
        cdef float relu = _relu_cap("group conv kernel", act)
        for a in (x, y):
            if a.dtype != np.float32 or not a.flags.c_contiguous:
                raise ValueError("group conv buffers must be C-contiguous float32 arrays")
        if groups < 1 or c % groups or kh * kw < 1:
            raise ValueError(f"group conv kernel: {c} channels do not split in {groups} groups")
        cin = c // groups
        k = cin * kh * kw
        cout_all = weight.size // k
        if cout_all % groups:
            raise ValueError(f"group conv kernel: {cout_all} outputs do not split in {groups}")
        cout = cout_all // groups
        if y.size != n * cout_all * oh * ow or weight.size != cout_all * k:
            raise ValueError("group conv kernel: output or weight size does not match the region")
        if min(s) < 0:
            raise ValueError("group conv kernel: negative region strides")
        best = walle_gconv_best_level()
        if level is not None and level != "best" and level not in LEVELS:
            raise ValueError(f"group conv kernel: level {level!r} (best, {', '.join(LEVELS)})")
        self.level = best if level is None or level == "best" else LEVELS[level]
        if self.level > best:
            raise ValueError(f"group conv kernel: this CPU does not run the {level} tiles")
        w = np.asarray(weight, np.float32).reshape(groups, cout, k)
        padded_bias = np.zeros(cout_all, np.float32)
        if bias is not None:
            padded_bias[:] = np.asarray(bias, np.float32).reshape(-1)
        self.depthwise = cin == 1
        cdef long plane_size = 0
        if planes is not None:
            base, ih, iw, irs, top, left, hp, wp = planes
            base = np.ascontiguousarray(base, np.int64)
            plane_size = hp * wp
            if (not self.depthwise or base.size != n * c or s[0] != c * plane_size
                    or s[1] != plane_size or not 0 <= region.src_offset < plane_size
                    or not (0 <= top and top + ih <= hp and 0 <= left and left + iw <= wp)
                    or (base.size and (base.min() < 0
                                       or base.max() + (ih - 1) * irs + iw > x.size))):
                raise ValueError("group conv kernel: planes do not match the region and input")
            self.p.base = <const long*><size_t>base.ctypes.data
            self.p.ih, self.p.iw, self.p.irs, self.p.top, self.p.left = ih, iw, irs, top, left
            self.p.hp, self.p.wp, self.p.off = hp, wp, region.src_offset
        else:
            base = None
            self.p.base = NULL
        blocks = -(-cout // 8)
        self.channel_lanes = channel_lanes
        if channel_lanes:
            if not channel_lanes_fits(region, groups, cout_all, planes):
                raise ValueError("group conv kernel: channel lanes run depthwise 3x3 and 5x5 "
                                 "convs at stride 1 or 2, one output a channel")
            lanes = walle_dwc_lanes(self.level)
            cblocks = -(-c // lanes)
            full = np.zeros((cblocks * lanes, k), np.float32)
            full[:c] = w.reshape(c, k)
            packed = _lasting_copy(full.reshape(cblocks, lanes, k).transpose(0, 2, 1))
            padded_bias = np.concatenate([padded_bias, np.zeros(cblocks * lanes - c, np.float32)])
            self.items = n * cblocks
            rows, pitch = _lanes_plane(region, planes)
            # a whole number of 64-byte lines a thread: every position's vector on one line
            self.scratch_size = -(-((rows * pitch + ow + lanes) * lanes + 64) // 16) * 16
        elif self.depthwise:
            packed = np.ascontiguousarray(w.reshape(cout_all, k))
            self.items = n * cout_all
            # 3x3 tiles read past a plane
            self.scratch_size = oh * s[4] + 16 + plane_size + 32
        else:
            full = np.zeros((groups, blocks * 8, k), np.float32)
            full[:, :cout] = w
            packed = _lasting_copy(full.reshape(groups, blocks, 8, k).transpose(0, 1, 3, 2))
            bias8 = np.zeros((groups, blocks * 8), np.float32)
            bias8[:, :cout] = padded_bias.reshape(groups, cout)
            padded_bias = bias8
            if s[4] == ow * s[5]:  # rows follow each other in the input: one long row
                ow, oh, s[4] = oh * ow, 1, oh * ow * s[5]
            self.items = n * groups * oh
            self.scratch_size = 0
        work = float(y.size) * k
        self.threads = 1 if work < _GRAIN or self.items < 2 else max(
            1, min(walle_max_threads(), self.items, int(work / _GRAIN)))
        scratch = _lasting(max(1, self.threads * self.scratch_size) + 16)  # on a cache line
        self.keep = (x, y, packed, padded_bias, scratch, base)
        self.scratch = <float*><size_t>scratch.ctypes.data
        self.p.x = (<const float*><size_t>x.ctypes.data) + (
            0 if planes is not None else <long>region.src_offset)
        self.p.w = <const float*><size_t>packed.ctypes.data
        self.p.bias = <const float*><size_t>padded_bias.ctypes.data
        self.p.y = <float*><size_t>y.ctypes.data
        self.p.n, self.p.kh, self.p.kw, self.p.oh, self.p.ow = n, kh, kw, oh, ow
        self.p.s_n, self.p.s_c, self.p.s_kh, self.p.s_kw, self.p.s_oh, self.p.s_ow = s
        self.p.groups, self.p.cin, self.p.cout, self.p.blocks = groups, cin, cout, blocks
        self.p.relu = relu

    def run(self):
        """Compute y from the build-time buffers (GIL released, OpenMP over rows or planes)."""
        cdef long i, chunk, start, stop
        cdef int mode = 2 if self.channel_lanes else self.depthwise
        with nogil:
            if self.threads > 1:
                chunk = (self.items + self.threads - 1) // self.threads
                for i in prange(self.threads, num_threads=self.threads, schedule="static"):
                    start = i * chunk
                    stop = min(self.items, start + chunk)
                    if start < stop:
                        walle_gconv_run(&self.p, mode, self.level, start, stop,
                                        self.scratch + i * self.scratch_size)
            else:
                walle_gconv_run(&self.p, mode, self.level, 0, self.items, self.scratch)


cdef class BiasActKernel:
    """y[N, C, *plane] = act(y + bias[c] (+ residual)) in place: bias (C values, or None for
    zeros), a residual shortcut laid out as y (or None) and ``act`` ("none", "relu",
    "relu6" or "hard_swish", which keep NaN) after a product that has none of them."""

    cdef float* y
    cdef const float* bias
    cdef const float* res
    cdef long rows, channels, plane
    cdef float relu
    cdef readonly int level
    cdef object keep

    def __init__(self, y, bias, long channels, str act, str level=None, residual=None):
        cdef float relu = _relu_cap("bias/act kernel", act)
        if y.dtype != np.float32 or not y.flags.c_contiguous:
            raise ValueError("bias/act buffer must be a C-contiguous float32 array")
        rows = y.shape[0] * channels if y.ndim else 0
        if channels < 1 or rows < 1 or y.size % rows:
            raise ValueError(f"bias/act kernel: {y.size} values are not [N, {channels}, ...]")
        if residual is not None and (residual.dtype != np.float32
                                     or not residual.flags.c_contiguous
                                     or residual.size != y.size):
            raise ValueError("bias/act kernel: the residual must be a C-contiguous float32 "
                             f"array of {y.size} values")
        b = np.zeros(channels, np.float32)
        if bias is not None:
            b[:] = np.asarray(bias, np.float32).reshape(-1)
        best = walle_gconv_best_level()
        if level is not None and level != "best" and level not in LEVELS:
            raise ValueError(f"bias/act kernel: level {level!r} (best, {', '.join(LEVELS)})")
        self.level = best if level is None or level == "best" else LEVELS[level]
        if self.level > best:
            raise ValueError(f"bias/act kernel: this CPU does not run the {level} loops")
        self.keep = (y, b, residual)
        self.y = <float*><size_t>y.ctypes.data
        self.bias = <const float*><size_t>b.ctypes.data
        self.res = NULL if residual is None else <const float*><size_t>residual.ctypes.data
        self.rows = rows
        self.channels = channels
        self.plane = y.size // rows
        self.relu = relu

    def run(self):
        """Apply bias and activation to the build-time buffer (GIL released)."""
        with nogil:
            walle_bias_act(self.y, self.bias, self.res, self.rows, self.channels, self.plane,
                           self.relu, self.level)

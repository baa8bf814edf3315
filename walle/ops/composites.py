"""Composite ops, each a decomposition into atomic ops (mixed into ``GraphBuilder``).

Nothing here is special to a backend: conv2d is a pad raster, an im2col raster and a matmul;
pooling is a window raster and a reduce; softmax and layer norm are reduces and element-wise
ops. Backends may recognise some of these chains again and run a fused kernel
(:mod:`walle.ops.fusion`), but they never have to.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from walle.errors import ModelError
from walle.ops.ir import FloatArray, Region, Shape, contiguous_strides


class _AtomicOps(Protocol):
    """The atomic ops and value lookups that composites are built from; implemented by
    :class:`~walle.ops.builder.GraphBuilder`, which mixes :class:`CompositeOps` in."""

    def shape(self, name: str) -> Shape: ...

    def const(self, array: npt.ArrayLike, name: str | None = None) -> str: ...

    def constant_value(self, name: str) -> FloatArray | None: ...

    def unary(self, kind: str, x: str) -> str: ...

    def binary(self, kind: str, a: str, b: str) -> str: ...

    def reduce(self, kind: str, x: str, axes: Sequence[int], keepdims: bool = True) -> str: ...

    def matmul(self, a: str, b: str, integer: bool = False) -> str: ...

    def raster(
        self,
        inputs: Sequence[str],
        shape: Sequence[int],
        regions: Sequence[Region],
        fill: float | None = None,
    ) -> str: ...

    def reshape(self, x: str, shape: Sequence[int]) -> str: ...

    def transpose(self, x: str, perm: Sequence[int]) -> str: ...

    def pad(self, x: str, pads: Sequence[tuple[int, int]], value: float = 0.0) -> str: ...

    def slice(
        self,
        x: str,
        starts: Sequence[int],
        stops: Sequence[int],
        axes: Sequence[int],
        steps: Sequence[int] | None = None,
    ) -> str: ...


class CompositeOps(_AtomicOps):
    """Composite ops as methods over the atomic ops of :class:`_AtomicOps`."""

    # -- activations and math -------------------------------------------------------------
    def relu(self, x: str) -> str:
        """max(x, 0)."""
        return self.unary("relu", x)

    def sigmoid(self, x: str) -> str:
        """1 / (1 + exp(-x))."""
        return self.unary("sigmoid", x)

    def tanh(self, x: str) -> str:
        """Hyperbolic tangent."""
        return self.unary("tanh", x)

    def sqrt(self, x: str) -> str:
        """Square root."""
        return self.unary("sqrt", x)

    def pow(self, x: str, y: str) -> str:
        """x ** y; a constant exponent 2 becomes x * x, 0.5 becomes sqrt."""
        exponent = self.constant_value(y)
        if exponent is not None and exponent.size == 1:
            if float(exponent.reshape(-1)[0]) == 2.0:
                return self.binary("mul", x, x)
            if float(exponent.reshape(-1)[0]) == 0.5:
                return self.unary("sqrt", x)
        return self.binary("pow", x, y)

    def gelu(self, x: str, approximate: str = "none") -> str:
        """0.5 * x * (1 + erf(x / sqrt(2))) (``approximate="none"``, the exact form: the
        ``gelu`` unary), or 0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))
        (``"tanh"``)."""
        if approximate != "tanh":
            return self.unary("gelu", x)
        cube = self.binary("mul", self.binary("mul", x, x), x)
        inner = self.binary("add", x, self.binary("mul", cube, self.const(0.044715)))
        scaled = self.binary("mul", inner, self.const(math.sqrt(2.0 / math.pi)))
        one_plus = self.binary("add", self.unary("tanh", scaled), self.const(1.0))
        return self.binary("mul", self.binary("mul", x, self.const(0.5)), one_plus)

    def clip(self, x: str, low: str | None = None, high: str | None = None) -> str:
        """min(max(x, low), high); a missing bound does not clip. NaN stays NaN (max and min
        propagate it on every backend); low > high gives high, as ONNX Clip."""
        y = x if low is None else self.binary("max", x, low)
        y = y if high is None else self.binary("min", y, high)
        return self.unary("identity", x) if y == x else y

    def leaky_relu(self, x: str, alpha: float = 0.01) -> str:
        """x for x >= 0, alpha * x below: relu(x) + alpha * min(x, 0) (exact either side,
        and +inf stays +inf even for alpha = 0)."""
        negative = self.binary("mul", self.binary("min", x, self.const(0.0)), self.const(alpha))
        return self.binary("add", self.unary("relu", x), negative)

    def prelu(self, x: str, slope: str) -> str:
        """x for x >= 0, slope * x below (``slope`` broadcasts to x): relu(x) + slope *
        min(x, 0), as :meth:`leaky_relu` with a tensor for alpha."""
        negative = self.binary("mul", self.binary("min", x, self.const(0.0)), slope)
        return self.binary("add", self.unary("relu", x), negative)

    def elu(self, x: str, alpha: float = 1.0) -> str:
        """x for x > 0, alpha * (exp(x) - 1) below: relu(x) + alpha * (exp(min(x, 0)) - 1)
        (-inf gives -alpha, +inf stays +inf, NaN stays NaN)."""
        return self._exp_below(x, alpha, None)

    def celu(self, x: str, alpha: float = 1.0) -> str:
        """x for x > 0, alpha * (exp(x / alpha) - 1) below: relu(x) + alpha * (exp(min(x, 0)
        / alpha) - 1), so that x > 0 comes back exactly."""
        return self._exp_below(x, alpha, alpha)

    def _exp_below(self, x: str, alpha: float, divisor: float | None) -> str:
        """relu(x) + alpha * (exp(min(x, 0) [/ divisor]) - 1): ELU, and CELU's scaled one."""
        below = self.binary("min", x, self.const(0.0))
        if divisor is not None:
            below = self.binary("div", below, self.const(divisor))
        below = self.binary("sub", self.unary("exp", below), self.const(1.0))
        scaled = self.binary("mul", below, self.const(alpha))
        return self.binary("add", self.unary("relu", x), scaled)

    def mish(self, x: str) -> str:
        """x * tanh(softplus(x)) (YOLOv4's activation)."""
        return self.binary("mul", x, self.unary("tanh", self.softplus(x)))

    def selu(self, x: str, alpha: float, gamma: float) -> str:
        """gamma * elu(x, alpha)."""
        return self.binary("mul", self.elu(x, alpha), self.const(gamma))

    def softplus(self, x: str) -> str:
        """log(1 + exp(x)) as relu(x) + log(1 + exp(-|x|)): no overflow to inf for large x."""
        tail = self.unary("exp", self.unary("neg", self.unary("abs", x)))
        tail = self.unary("log", self.binary("add", tail, self.const(1.0)))
        return self.binary("add", self.unary("relu", x), tail)

    def softsign(self, x: str) -> str:
        """x / (1 + |x|) (+-inf gives NaN, as onnxruntime)."""
        return self.binary("div", x, self.binary("add", self.unary("abs", x), self.const(1.0)))

    def sign(self, x: str) -> str:
        """-1, 0 or 1 by the sign of x (NaN stays NaN, -0 a zero): clipped to [-1, 1] and
        scaled by 1e38 twice, clipped again each time, so that every nonzero value, down to
        the smallest subnormal (1e-45 -> 1e-7 -> 1e31), reaches magnitude 1 without ever
        overflowing."""
        low, high, big = self.const(-1.0), self.const(1.0), self.const(1e38)
        y = self.clip(x, low, high)
        for _ in range(2):
            y = self.clip(self.binary("mul", y, big), low, high)
        return y

    def instance_norm(self, x: str, scale: str, bias: str, epsilon: float = 1e-5) -> str:
        """ONNX InstanceNormalization: each (image, channel) of x [N, C, ...] normalised over
        its spatial dims, then scaled and shifted per channel (``scale``, ``bias``: [C])."""
        per_channel = (-1,) + (1,) * (len(self.shape(x)) - 2)
        gamma, beta = self.reshape(scale, per_channel), self.reshape(bias, per_channel)
        return self.layer_norm(x, gamma, beta, axis=2, epsilon=epsilon)

    def hard_sigmoid(self, x: str, alpha: float = 0.2, beta: float = 0.5) -> str:
        """max(0, min(1, alpha * x + beta))."""
        y = self.binary("add", self.binary("mul", x, self.const(alpha)), self.const(beta))
        return self.clip(y, self.const(0.0), self.const(1.0))

    def hard_swish(self, x: str) -> str:
        """x * hard_sigmoid(x, 1/6, 1/2) (ONNX HardSwish; -inf gives NaN, as onnxruntime)."""
        return self.binary("mul", x, self.hard_sigmoid(x, 1.0 / 6.0, 0.5))

    # -- dense ----------------------------------------------------------------------------
    def linear(self, x: str, weight: str, bias: str | None = None) -> str:
        """x @ weight (+ bias); weight is [in, out]."""
        y = self.matmul(x, weight)
        return self.binary("add", y, bias) if bias is not None else y

    def gemm(
        self,
        a: str,
        b: str,
        c: str | None = None,
        *,
        alpha: float = 1.0,
        beta: float = 1.0,
        trans_a: bool = False,
        trans_b: bool = False,
    ) -> str:
        """ONNX Gemm: alpha * op(a) @ op(b) + beta * c."""
        if trans_a:
            a = self.transpose(a, (1, 0))
        if trans_b:
            b = self.transpose(b, (1, 0))
        y = self.matmul(a, b)
        if alpha != 1.0:
            y = self.binary("mul", y, self.const(alpha))
        if c is not None:
            if beta != 1.0:
                c = self.binary("mul", c, self.const(beta))
            y = self.binary("add", y, c)
        return y

    # -- convolution and pooling ----------------------------------------------------------
    def conv2d(
        self,
        x: str,
        weight: str,
        bias: str | None = None,
        *,
        strides: Sequence[int] = (1, 1),
        pads: Sequence[int] = (0, 0, 0, 0),
        dilations: Sequence[int] = (1, 1),
        group: int = 1,
        integer: bool = False,
        fill: float = 0.0,
    ) -> str:
        """NCHW conv: pad raster, im2col raster, matmul, bias add, reshape.

        ``pads`` is ONNX order (top, left, bottom, right), filled with ``fill``; weight is
        [Cout, C / group, KH, KW]. A grouped (or depthwise) conv is one batched matmul:
        [G, Cout/G, K] by the columns viewed as [N, G, K, OH*OW]. ``integer``: a quantized
        conv (x whole numbers in [0, 255], constant whole-number weights), its matmul marked
        so (see :meth:`matmul`).
        """
        n, c, _, _ = self.shape(x)
        cout, cin, kh, kw = self.shape(weight)
        if group < 1 or c % group or cout % group or cin * group != c:
            raise ModelError(
                f"conv2d: input has {c} channels, weight [{cout}, {cin}, ...] with group {group}"
            )
        xp = self._pad_nchw(x, pads, fill)
        cols, oh, ow = self._windows(xp, (kh, kw), strides, dilations, channels_first=True)
        k = cin * kh * kw
        if group == 1:
            w2 = self.reshape(weight, (cout, k))
            y = self.matmul(w2, self.reshape(cols, (n, k, oh * ow)), integer)
        else:
            w3 = self.reshape(weight, (group, cout // group, k))
            y = self.matmul(w3, self.reshape(cols, (n, group, k, oh * ow)), integer)
            y = self.reshape(y, (n, cout, oh * ow))
        if bias is not None:
            y = self.binary("add", y, self.reshape(bias, (cout, 1)))
        return self.reshape(y, (n, cout, oh, ow))

    def spread(
        self, x: str, strides: Sequence[int], before: Sequence[int], after: Sequence[int]
    ) -> str:
        """NCHW ``x`` with its rows and columns ``strides`` apart, zeros between them, and
        ``before``/``after`` zero rows and columns around (all >= 0): the input of the
        direct conv that a ConvTranspose equals."""
        n, c, h, w = self.shape(x)
        (sh, sw), (top, left), (bottom, right) = strides, before, after
        out = (n, c, (h - 1) * sh + 1 + top + bottom, (w - 1) * sw + 1 + left + right)
        dst = contiguous_strides(out)
        region = Region(
            0,
            0,
            contiguous_strides((n, c, h, w)),
            top * dst[2] + left,
            (dst[0], dst[1], sh * dst[2], sw),
            (n, c, h, w),
        )
        return self.raster([x], out, [region], fill=0.0)

    def max_pool(
        self,
        x: str,
        kernel: Sequence[int],
        *,
        strides: Sequence[int] | None = None,
        pads: Sequence[int] = (0, 0, 0, 0),
        dilations: Sequence[int] = (1, 1),
        ceil_mode: bool = False,
    ) -> str:
        """NCHW max pooling: window raster [KH, KW, N, C, OH, OW], then reduce max.

        ``ceil_mode`` rounds the output size up (a last window that starts inside the input or
        its leading pad), padding the tail with -inf.
        """
        strides = strides or kernel
        if ceil_mode:
            pads = self._ceil_pads(x, kernel, strides, pads, dilations)
        xp = self._pad_nchw(x, pads, -np.inf)
        win, _, _ = self._windows(xp, kernel, strides, dilations, channels_first=False)
        return self.reduce("max", win, (0, 1), keepdims=False)

    def avg_pool(
        self,
        x: str,
        kernel: Sequence[int],
        *,
        strides: Sequence[int] | None = None,
        pads: Sequence[int] = (0, 0, 0, 0),
        dilations: Sequence[int] = (1, 1),
        count_include_pad: bool = False,
        ceil_mode: bool = False,
    ) -> str:
        """NCHW average pooling: window raster, reduce sum, scale by the window count.

        The count is of input elements, plus the explicit ``pads`` when ``count_include_pad``;
        the tail that ``ceil_mode`` adds is never counted (as onnxruntime).
        """
        strides = strides or kernel
        full = self._ceil_pads(x, kernel, strides, pads, dilations) if ceil_mode else pads
        xp = self._pad_nchw(x, full, 0.0)
        win, oh, ow = self._windows(xp, kernel, strides, dilations, channels_first=False)
        total = self.reduce("sum", win, (0, 1), keepdims=False)
        h, w = self.shape(x)[2:]
        counted = np.zeros(self.shape(xp)[2:], np.float32)
        if count_include_pad:
            counted[: pads[0] + h + pads[2], : pads[1] + w + pads[3]] = 1.0
        else:
            counted[pads[0] : pads[0] + h, pads[1] : pads[1] + w] = 1.0
        counts = _window_sums(counted, kernel, strides, dilations)[:oh, :ow]
        if np.any(counts == 0):
            raise ModelError(f"avg_pool: a window {tuple(kernel)} covers only padding")
        scale = (1.0 / counts).astype(np.float32)
        uniform = bool(np.all(scale == scale.flat[0]))
        return self.binary("mul", total, self.const(float(scale.flat[0]) if uniform else scale))

    def _ceil_pads(
        self,
        x: str,
        kernel: Sequence[int],
        strides: Sequence[int],
        pads: Sequence[int],
        dilations: Sequence[int],
    ) -> tuple[int, int, int, int]:
        """``pads`` with the bottom/right grown so that the output size rounds up, dropping a
        last window that would start past the input and its leading pad."""
        tails = []
        for i, size in enumerate(self.shape(x)[2:]):
            extent = (int(kernel[i]) - 1) * int(dilations[i]) + 1
            padded = size + int(pads[i]) + int(pads[i + 2])
            out = -(-(padded - extent) // int(strides[i])) + 1
            if (out - 1) * int(strides[i]) >= size + int(pads[i]):
                out -= 1
            tails.append(
                max(
                    int(pads[i + 2]),
                    (out - 1) * int(strides[i]) + extent - padded + int(pads[i + 2]),
                )
            )
        return (int(pads[0]), int(pads[1]), tails[0], tails[1])

    def pad_edges(self, x: str, pads: Sequence[tuple[int, int]], mode: str) -> str:
        """Pad by (before, after) per axis copying the input's own elements: ``edge`` repeats
        the border element, ``reflect`` mirrors without repeating it, ``wrap`` continues from
        the other end. One raster per padded axis: the body and a region per side."""
        y = x
        for axis, (before, after) in enumerate(pads):
            if before or after:
                y = self._pad_axis(y, axis, int(before), int(after), mode)
        return y

    def _pad_axis(self, x: str, axis: int, before: int, after: int, mode: str) -> str:
        shape = self.shape(x)
        n = shape[axis]
        limit = {"edge": None, "reflect": n - 1, "wrap": n}[mode]
        if n == 0 or (limit is not None and max(before, after) > limit):
            raise ModelError(f"pad: {mode} padding of {max(before, after)} on an axis of {n}")
        out = list(shape)
        out[axis] = n + before + after
        src, dst = contiguous_strides(shape), contiguous_strides(tuple(out))
        regions = [Region(0, 0, src, before * dst[axis], dst, shape)]
        for side, count in (("before", before), ("after", after)):
            if not count:
                continue
            sizes = tuple(count if i == axis else d for i, d in enumerate(shape))
            first, step = _pad_source(mode, side, n, count)
            strides = tuple(step * s if i == axis else s for i, s in enumerate(src))
            at = 0 if side == "before" else (before + n) * dst[axis]
            regions.append(Region(0, first * src[axis], strides, at, dst, sizes))
        return self.raster([x], out, regions)

    def local_response_norm(
        self,
        x: str,
        size: int,
        *,
        alpha: float = 1e-4,
        beta: float = 0.75,
        bias: float = 1.0,
    ) -> str:
        """ONNX LRN over channels of [N, C, ...]: the sum of the squares over a window of
        ``size`` channels, as a pooling window (size x 1) over the squares seen as [N, 1, C,
        rest] with the channels zero-padded, then x / (bias + alpha / size * sum) ** beta.

        A backend runs the sum as a pool that reads the unpadded squares in place; a raster
        writing ``size`` shifted copies and a reduce had run before (AlexNet's first LRN sum
        0.38 -> 0.13 ms on cython; AlexNet, GoogLeNet and ZFNet 7-9% faster, Zen 3)."""
        shape = self.shape(x)
        n, c, rest = shape[0], shape[1], math.prod(shape[2:])
        before, after = (size - 1) // 2, size // 2  # floor / ceil of (size - 1) / 2
        sq = self.reshape(self.binary("mul", x, x), (n, 1, c, rest))
        padded = self._pad_nchw(sq, (before, 0, after, 0), 0.0)
        window, _, _ = self._windows(padded, (size, 1), (1, 1), (1, 1), channels_first=False)
        total = self.reshape(self.reduce("sum", window, (0, 1), keepdims=False), shape)
        scaled = self.binary("mul", total, self.const(np.float32(alpha / size)))
        base = self.binary("add", scaled, self.const(np.float32(bias)))
        return self.binary("div", x, self.pow(base, self.const(np.float32(beta))))

    def global_avg_pool(self, x: str) -> str:
        """Mean over H and W, keeping them as size-1 dims."""
        return self.reduce("mean", x, (2, 3), keepdims=True)

    def _pad_nchw(self, x: str, pads: Sequence[int], value: float) -> str:
        top, left, bottom, right = (int(p) for p in pads)
        if not any((top, left, bottom, right)):
            return x
        return self.pad(x, [(0, 0), (0, 0), (top, bottom), (left, right)], value)

    def _windows(
        self,
        xp: str,
        kernel: Sequence[int],
        strides: Sequence[int],
        dilations: Sequence[int],
        *,
        channels_first: bool,
    ) -> tuple[str, int, int]:
        """One 6-D raster gathering every kernel window of padded NCHW ``xp``.

        channels_first: [N, C, KH, KW, OH, OW] (im2col order); else [KH, KW, N, C, OH, OW]
        so that a pooling reduce runs over the leading axes.
        """
        n, c, hp, wp = self.shape(xp)
        kh, kw = (int(k) for k in kernel)
        sh, sw = (int(s) for s in strides)
        dh, dw = (int(d) for d in dilations)
        oh = (hp - dh * (kh - 1) - 1) // sh + 1
        ow = (wp - dw * (kw - 1) - 1) // sw + 1
        if oh <= 0 or ow <= 0:
            raise ModelError(f"window {kh}x{kw} larger than padded input {hp}x{wp}")
        src = contiguous_strides((n, c, hp, wp))
        axes = {
            "n": (n, src[0]),
            "c": (c, src[1]),
            "kh": (kh, dh * wp),
            "kw": (kw, dw),
            "oh": (oh, sh * wp),
            "ow": (ow, sw),
        }
        order = (
            ("n", "c", "kh", "kw", "oh", "ow")
            if channels_first
            else ("kh", "kw", "n", "c", "oh", "ow")
        )
        sizes = tuple(axes[a][0] for a in order)
        region = Region(0, 0, tuple(axes[a][1] for a in order), 0, contiguous_strides(sizes), sizes)
        return self.raster([xp], sizes, [region]), oh, ow

    # -- normalisation --------------------------------------------------------------------
    def softmax(self, x: str, axis: int = -1) -> str:
        """exp(x - max) / sum(exp(x - max)) along ``axis``."""
        m = self.reduce("max", x, (axis,), keepdims=True)
        e = self.unary("exp", self.binary("sub", x, m))
        return self.binary("div", e, self.reduce("sum", e, (axis,), keepdims=True))

    def hardmax(self, x: str, axis: int = -1) -> str:
        """1.0 at the first largest value along ``axis``, 0.0 elsewhere, by argmax's rule
        (NaN never wins), and a slice whose first value is NaN all 0.0. (onnxruntime's
        Hardmax of a slice holding NaN depends on where the NaN falls among its vector
        lanes: [NaN, 1, 2, 2] gives all 0.0 there, [NaN, -0.2, -inf, -1, -2] 1.0 at -0.2.)"""
        shape = self.shape(x)
        axis %= len(shape)
        index = self.reduce("argmax", x, (axis,), keepdims=True)
        hit = self.binary("eq", self._positions(shape[axis], axis, len(shape)), index)
        first = self.slice(x, [0], [1], [axis])
        first_known = self.binary("eq", first, first)  # 0.0 where the first value is NaN
        return self.binary("mul", hit, first_known)

    def one_hot(self, indices: str, depth: int, axis: int, off: float, on: float) -> str:
        """``on`` where the index (negative ones counting from the end) is the position
        along a new ``axis`` of ``depth``, ``off`` elsewhere; an index outside [-depth,
        depth) is ``off`` everywhere (ONNX's OneHot as onnxruntime runs it). Masks, not
        products: an infinite ``on`` or ``off`` stays where it is."""
        shape = self.shape(indices)
        rank = len(shape) + 1
        axis %= rank
        below = self.binary("lt", indices, self.const(0.0))
        wrapped = self.binary("add", indices, self.binary("mask", below, self.const(float(depth))))
        at = self.reshape(wrapped, [*shape[:axis], 1, *shape[axis:]])
        hit = self.binary("eq", self._positions(depth, axis, rank), at)
        miss = self.binary("sub", self.const(1.0), hit)
        taken = self.binary("mask", hit, self.const(on))
        return self.binary("add", taken, self.binary("mask", miss, self.const(off)))

    def _positions(self, n: int, axis: int, rank: int) -> str:
        """The constant 0, 1, ..., n - 1 along ``axis`` of a rank-``rank`` value (other dims
        1): what an index is compared with."""
        along = [1] * rank
        along[axis] = n
        return self.const(np.arange(n, dtype=np.float32).reshape(along))

    def log_softmax(self, x: str, axis: int = -1) -> str:
        """(x - max) - log(sum(exp(x - max))) along ``axis``."""
        d = self.binary("sub", x, self.reduce("max", x, (axis,), keepdims=True))
        total = self.reduce("sum", self.unary("exp", d), (axis,), keepdims=True)
        return self.binary("sub", d, self.unary("log", total))

    def layer_norm(
        self,
        x: str,
        gamma: str | None = None,
        beta: str | None = None,
        *,
        axis: int = -1,
        epsilon: float = 1e-5,
    ) -> str:
        """(x - mean) / sqrt(var + eps) * gamma + beta over the axes from ``axis`` on."""
        rank = len(self.shape(x))
        first = axis + rank if axis < 0 else axis
        axes = tuple(range(first, rank))
        d = self.binary("sub", x, self.reduce("mean", x, axes, keepdims=True))
        var = self.reduce("mean", self.binary("mul", d, d), axes, keepdims=True)
        sd = self.unary("sqrt", self.binary("add", var, self.const(epsilon)))
        y = self.binary("div", d, sd)
        if gamma is not None:
            y = self.binary("mul", y, gamma)
        if beta is not None:
            y = self.binary("add", y, beta)
        return y


def _pad_source(mode: str, side: str, n: int, count: int) -> tuple[int, int]:
    """(first source index, step along the axis) of the ``count`` elements padded on
    ``side`` of an axis of ``n`` elements, in output order."""
    if mode == "edge":
        return (0, 0) if side == "before" else (n - 1, 0)
    if mode == "reflect":
        return (count, -1) if side == "before" else (n - 2, -1)
    return (n - count, 1) if side == "before" else (0, 1)  # wrap


def _window_sums(
    plane: FloatArray, kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int]
) -> FloatArray:
    """Sum of ``plane`` over each (dilated, strided) pooling window."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilations
    span = ((kh - 1) * dh + 1, (kw - 1) * dw + 1)
    windows = np.lib.stride_tricks.sliding_window_view(plane, span)[::sh, ::sw, ::dh, ::dw]
    sums: FloatArray = windows.sum(axis=(2, 3))
    return sums

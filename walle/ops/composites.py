"""Composite ops, each a decomposition into atomic ops (mixed into ``GraphBuilder``).

Nothing here is special to a backend: conv2d is a pad raster, an im2col raster and a matmul;
pooling is a window raster and a reduce; softmax and layer norm are reduces and element-wise
ops. Backends may recognise some of these chains again and run a fused kernel
(:mod:`walle.ops.fusion`), but they never have to.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from walle.errors import ModelError
from walle.ops.ir import Region, contiguous_strides

if TYPE_CHECKING:
    from walle.ops.builder import GraphBuilder

_Base = object


class CompositeOps(_Base):
    """Composite ops as methods; ``self`` is a :class:`~walle.ops.builder.GraphBuilder`."""

    # -- activations and math -------------------------------------------------------------
    def relu(self: GraphBuilder, x: str) -> str:
        """max(x, 0)."""
        return self.unary("relu", x)

    def sigmoid(self: GraphBuilder, x: str) -> str:
        """1 / (1 + exp(-x))."""
        return self.unary("sigmoid", x)

    def tanh(self: GraphBuilder, x: str) -> str:
        """Hyperbolic tangent."""
        return self.unary("tanh", x)

    def sqrt(self: GraphBuilder, x: str) -> str:
        """Square root."""
        return self.unary("sqrt", x)

    def pow(self: GraphBuilder, x: str, y: str) -> str:
        """x ** y; a constant exponent 2 becomes x * x, 0.5 becomes sqrt."""
        exponent = self.constant_value(y)
        if exponent is not None and exponent.size == 1:
            if float(exponent.reshape(-1)[0]) == 2.0:
                return self.binary("mul", x, x)
            if float(exponent.reshape(-1)[0]) == 0.5:
                return self.unary("sqrt", x)
        return self.binary("pow", x, y)

    def gelu(self: GraphBuilder, x: str) -> str:
        """0.5 * x * (1 + erf(x / sqrt(2))) (the exact form)."""
        inner = self.unary("erf", self.binary("mul", x, self.const(1.0 / math.sqrt(2.0))))
        one_plus = self.binary("add", inner, self.const(1.0))
        return self.binary("mul", self.binary("mul", x, self.const(0.5)), one_plus)

    # -- dense ----------------------------------------------------------------------------
    def linear(self: GraphBuilder, x: str, weight: str, bias: str | None = None) -> str:
        """x @ weight (+ bias); weight is [in, out]."""
        y = self.matmul(x, weight)
        return self.binary("add", y, bias) if bias is not None else y

    def gemm(
        self: GraphBuilder,
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
        self: GraphBuilder,
        x: str,
        weight: str,
        bias: str | None = None,
        *,
        strides: Sequence[int] = (1, 1),
        pads: Sequence[int] = (0, 0, 0, 0),
        dilations: Sequence[int] = (1, 1),
        group: int = 1,
    ) -> str:
        """NCHW conv: pad raster, im2col raster, matmul, bias add, reshape.

        ``pads`` is ONNX order (top, left, bottom, right); weight is [Cout, C / group, KH, KW].
        A grouped (or depthwise) conv is one batched matmul: [G, Cout/G, K] by the columns
        viewed as [N, G, K, OH*OW].
        """
        n, c, _, _ = self.shape(x)
        cout, cin, kh, kw = self.shape(weight)
        if group < 1 or c % group or cout % group or cin * group != c:
            raise ModelError(
                f"conv2d: input has {c} channels, weight [{cout}, {cin}, ...] with group {group}"
            )
        xp = self._pad_nchw(x, pads, 0.0)
        cols, oh, ow = self._windows(xp, (kh, kw), strides, dilations, channels_first=True)
        k = cin * kh * kw
        if group == 1:
            w2 = self.reshape(weight, (cout, k))
            y = self.matmul(w2, self.reshape(cols, (n, k, oh * ow)))
        else:
            w3 = self.reshape(weight, (group, cout // group, k))
            y = self.matmul(w3, self.reshape(cols, (n, group, k, oh * ow)))
            y = self.reshape(y, (n, cout, oh * ow))
        if bias is not None:
            y = self.binary("add", y, self.reshape(bias, (cout, 1)))
        return self.reshape(y, (n, cout, oh, ow))

    def max_pool(
        self: GraphBuilder,
        x: str,
        kernel: Sequence[int],
        *,
        strides: Sequence[int] | None = None,
        pads: Sequence[int] = (0, 0, 0, 0),
        dilations: Sequence[int] = (1, 1),
    ) -> str:
        """NCHW max pooling: window raster [KH, KW, N, C, OH, OW], then reduce max."""
        xp = self._pad_nchw(x, pads, -np.inf)
        win, _, _ = self._windows(xp, kernel, strides or kernel, dilations, channels_first=False)
        return self.reduce("max", win, (0, 1), keepdims=False)

    def avg_pool(
        self: GraphBuilder,
        x: str,
        kernel: Sequence[int],
        *,
        strides: Sequence[int] | None = None,
        pads: Sequence[int] = (0, 0, 0, 0),
        count_include_pad: bool = False,
    ) -> str:
        """NCHW average pooling: window raster, reduce sum, scale by the window count."""
        strides = strides or kernel
        xp = self._pad_nchw(x, pads, 0.0)
        win, oh, ow = self._windows(xp, kernel, strides, (1, 1), channels_first=False)
        total = self.reduce("sum", win, (0, 1), keepdims=False)
        if count_include_pad or not any(pads):
            scale = np.float32(1.0 / (kernel[0] * kernel[1]))
        else:
            h, w = self.shape(x)[2:]
            ones = np.pad(np.ones((h, w), np.float32), ((pads[0], pads[2]), (pads[1], pads[3])))
            counts = np.lib.stride_tricks.sliding_window_view(ones, tuple(kernel))
            counts = counts[:: strides[0], :: strides[1]].sum(axis=(2, 3))[:oh, :ow]
            scale = (1.0 / counts).astype(np.float32)
        return self.binary("mul", total, self.const(scale))

    def local_response_norm(
        self: GraphBuilder,
        x: str,
        size: int,
        *,
        alpha: float = 1e-4,
        beta: float = 0.75,
        bias: float = 1.0,
    ) -> str:
        """ONNX LRN over channels of [N, C, ...]: a window raster [size, N, C, rest] of the
        zero-padded squares, reduce sum, then x / (bias + alpha / size * sum) ** beta."""
        shape = self.shape(x)
        n, c, rest = shape[0], shape[1], math.prod(shape[2:])
        before, after = (size - 1) // 2, size // 2  # floor / ceil of (size - 1) / 2
        sq = self.reshape(self.binary("mul", x, x), (n, c, rest))
        padded = self.pad(sq, [(0, 0), (before, after), (0, 0)], 0.0)
        cp = c + before + after
        sizes = (size, n, c, rest)
        region = Region(0, 0, (rest, cp * rest, rest, 1), 0, contiguous_strides(sizes), sizes)
        window = self.raster([padded], sizes, [region])
        total = self.reshape(self.reduce("sum", window, (0,), keepdims=False), shape)
        scaled = self.binary("mul", total, self.const(np.float32(alpha / size)))
        base = self.binary("add", scaled, self.const(np.float32(bias)))
        return self.binary("div", x, self.pow(base, self.const(np.float32(beta))))

    def global_avg_pool(self: GraphBuilder, x: str) -> str:
        """Mean over H and W, keeping them as size-1 dims."""
        return self.reduce("mean", x, (2, 3), keepdims=True)

    def _pad_nchw(self: GraphBuilder, x: str, pads: Sequence[int], value: float) -> str:
        top, left, bottom, right = (int(p) for p in pads)
        if not any((top, left, bottom, right)):
            return x
        return self.pad(x, [(0, 0), (0, 0), (top, bottom), (left, right)], value)

    def _windows(
        self: GraphBuilder,
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
    def softmax(self: GraphBuilder, x: str, axis: int = -1) -> str:
        """exp(x - max) / sum(exp(x - max)) along ``axis``."""
        m = self.reduce("max", x, (axis,), keepdims=True)
        e = self.unary("exp", self.binary("sub", x, m))
        return self.binary("div", e, self.reduce("sum", e, (axis,), keepdims=True))

    def layer_norm(
        self: GraphBuilder,
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

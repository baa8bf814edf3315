"""Recurrent ONNX ops: LSTM, GRU and RNN, unrolled over their sequence into atomic ops.

walle's shapes are static, so a recurrence of T steps is T copies of its cell: the input
projection of every step is one matmul (X of all steps by W, with the biases that do not
depend on the state), and each step adds its state's product with R and applies the gates.
A CRNN text recogniser (ddddocr's, a bidirectional LSTM of 512 units) and the sequence
models of user-behaviour features are what this is for: their sequences are tens of steps.

``sequence_lens`` must be a constant (walle has no data-dependent control flow). Where an
element's sequence is shorter than the others, its state stops at its last step (a row
gather keeps the previous state) and its outputs past the end are zero; a reverse pass
starts at each element's own last step, as onnxruntime runs it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from walle.errors import ModelError
from walle.ops.onnx_import.node import HandlerTable, OnnxNode

if TYPE_CHECKING:
    from walle.ops.onnx_import.core import Importer

_COMMON_ATTRS = {
    "activation_alpha", "activation_beta", "activations", "clip", "direction", "hidden_size",
    "layout",
}  # fmt: skip
_DIRECTIONS = ("forward", "reverse", "bidirectional")


@dataclass(frozen=True)
class _Cell:
    """What differs between LSTM, GRU and RNN: the gates per unit, the activations per
    direction and their defaults."""

    op: str
    gates: int
    activations: tuple[str, ...]


_LSTM = _Cell("LSTM", 4, ("Sigmoid", "Tanh", "Tanh"))
_GRU = _Cell("GRU", 3, ("Sigmoid", "Tanh"))
_RNN = _Cell("RNN", 1, ("Tanh",))

# activation -> (default alpha, default beta); None where it takes no parameter. The spec
# gives no defaults; these are onnxruntime's (0 where it has none: Affine and ScaledTanh
# without their parameters are 0 everywhere there).
_ACTIVATIONS: dict[str, tuple[float | None, float | None]] = {
    "relu": (None, None),
    "tanh": (None, None),
    "sigmoid": (None, None),
    "affine": (0.0, 0.0),
    "leakyrelu": (0.01, None),
    "scaledtanh": (0.0, 0.0),
    "hardsigmoid": (0.2, 0.5),
    "elu": (1.0, None),
    "softsign": (None, None),
    "softplus": (None, None),
}

Activation = Callable[[str], str]


def _activation(im: Importer, node: OnnxNode, name: str, alpha: float, beta: float) -> Activation:
    b = im.b
    kind = name.lower()
    if kind in ("relu", "tanh", "sigmoid"):
        return lambda x: b.unary(kind, x)
    if kind == "affine":
        return lambda x: b.binary("add", b.binary("mul", x, b.const(alpha)), b.const(beta))
    if kind == "leakyrelu":
        return lambda x: b.leaky_relu(x, alpha)
    if kind == "scaledtanh":
        return lambda x: b.binary(
            "mul", b.unary("tanh", b.binary("mul", x, b.const(beta))), b.const(alpha)
        )
    if kind == "hardsigmoid":
        return lambda x: b.hard_sigmoid(x, alpha, beta)
    if kind == "elu":
        return lambda x: b.elu(x, alpha)
    if kind == "softsign":
        return b.softsign
    if kind == "softplus":
        return b.softplus
    raise ModelError(
        f"{node.where}: activation {name!r} is not supported (supported: Relu, Tanh, Sigmoid, "
        "Affine, LeakyRelu, ScaledTanh, HardSigmoid, Elu, Softsign, Softplus)"
    )


def _activations(im: Importer, node: OnnxNode, cell: _Cell, directions: int) -> list[Activation]:
    """The cell's activations, ``len(cell.activations)`` per direction, forward first. The
    alphas and betas are consumed in order by the activations that take one; a missing one
    is the activation's default."""
    names = [str(n.decode() if isinstance(n, bytes) else n) for n in node.get("activations", [])]
    count = len(cell.activations)
    if not names:
        names = list(cell.activations) * directions
    if len(names) != count * directions:
        raise ModelError(
            f"{node.where}: {len(names)} activations given, {count * directions} expected "
            f"({count} per direction)"
        )
    alphas = [float(v) for v in node.get("activation_alpha", [])]
    betas = [float(v) for v in node.get("activation_beta", [])]
    made = []
    for name in names:
        defaults = _ACTIVATIONS.get(name.lower(), (None, None))
        alpha = alphas.pop(0) if defaults[0] is not None and alphas else defaults[0]
        beta = betas.pop(0) if defaults[1] is not None and betas else defaults[1]
        made.append(_activation(im, node, name, alpha or 0.0, beta or 0.0))
    return made


@dataclass
class _Inputs:
    """One recurrent node's inputs, checked: x as [T, B, I] whatever the layout."""

    x: str
    w: str
    r: str
    bias: str | None
    lens: list[int] | None
    initial: list[str | None]  # initial_h (and initial_c), as [D, B, H] whatever the layout
    peepholes: str | None
    steps: int
    batch: int
    hidden: int
    directions: int


def _inputs(im: Importer, node: OnnxNode, ins: list[str], cell: _Cell) -> _Inputs:
    b = im.b
    if len(ins) < 3 or not all(ins[:3]):
        raise ModelError(f"{node.where}: needs the inputs X, W and R")
    layout = int(node.get("layout", 0))
    if layout not in (0, 1):
        raise ModelError(f"{node.where}: layout {layout} (the spec allows 0 or 1)")
    x = ins[0]
    if len(b.shape(x)) != 3:
        raise ModelError(f"{node.where}: X must be 3-D, got {b.shape(x)}")
    if layout == 1:  # [B, T, I] -> [T, B, I]
        x = b.transpose(x, (1, 0, 2))
    steps, batch, width = b.shape(x)
    directions = 2 if node.choice("direction", "forward", _DIRECTIONS) == "bidirectional" else 1
    r_shape = b.shape(ins[2])
    if len(r_shape) != 3:
        raise ModelError(f"{node.where}: R must be 3-D, got {r_shape}")
    hidden = int(node.get("hidden_size", r_shape[2]))
    if hidden < 1:
        raise ModelError(f"{node.where}: hidden_size {hidden} must be positive")
    g = cell.gates * hidden
    expected: dict[str, tuple[str, tuple[int, ...]]] = {
        "W": (ins[1], (directions, g, width)),
        "R": (ins[2], (directions, g, hidden)),
    }
    names = ["B", "sequence_lens", "initial_h"] + (["initial_c", "P"] if cell is _LSTM else [])
    given = dict(zip(names, [*ins[3:], *[""] * len(names)], strict=False))
    if given["B"]:
        expected["B"] = (given["B"], (directions, 2 * g))
    for key in ("initial_h", "initial_c"):  # [B, D, H] with layout 1
        if given.get(key):
            state = (batch, directions, hidden) if layout else (directions, batch, hidden)
            expected[key] = (given[key], state)
    if given.get("P"):
        expected["P"] = (given["P"], (directions, 3 * hidden))
    for key, (value, shape) in expected.items():
        if b.shape(value) != shape:
            raise ModelError(
                f"{node.where}: {key} must be {list(shape)} (hidden_size {hidden}, "
                f"{directions} direction(s)), got {list(b.shape(value))}"
            )
    lens = node.ints(im, 4) if given["sequence_lens"] else None
    if lens is not None:
        if len(lens) != batch:
            raise ModelError(f"{node.where}: sequence_lens has {len(lens)} values, batch {batch}")
        if any(not 0 < n <= steps for n in lens):
            raise ModelError(
                f"{node.where}: sequence_lens {lens} must be in [1, {steps}] (the sequence length)"
            )
        if all(n == steps for n in lens):
            lens = None
    if steps == 0 or batch == 0:
        raise ModelError(f"{node.where}: X of shape {b.shape(ins[0])} holds no step")
    initial = [given.get("initial_h") or None]
    if cell is _LSTM:
        initial.append(given.get("initial_c") or None)
    if layout:
        initial = [None if v is None else b.transpose(v, (1, 0, 2)) for v in initial]
    return _Inputs(
        x, ins[1], ins[2], given["B"] or None, lens, initial, given.get("P") or None,
        steps, batch, hidden, directions,
    )  # fmt: skip


@dataclass(frozen=True)
class _Options:
    """The cell's attributes beside its activations."""

    limit: float | None  # clip: gate inputs clipped to [-limit, limit]
    input_forget: bool  # LSTM: the forget gate is 1 - the input gate
    linear_before_reset: bool  # GRU: r multiplies H R_h^T + Rb_h, not H


def _options(node: OnnxNode, cell: _Cell) -> _Options:
    clip = node.get("clip")
    limit = None if clip is None else float(clip)
    if limit is not None and not limit > 0:
        raise ModelError(f"{node.where}: clip {clip} must be positive")
    return _Options(
        limit,
        cell is _LSTM and bool(node.get("input_forget", 0)),
        cell is _GRU and bool(node.get("linear_before_reset", 0)),
    )


def _lower(im: Importer, node: OnnxNode, ins: list[str], cell: _Cell) -> list[str]:
    b = im.b
    p = _inputs(im, node, ins, cell)
    acts = _activations(im, node, cell, p.directions)
    options = _options(node, cell)
    reverse = node.get("direction", "forward") == "reverse"
    per = len(cell.activations)
    results: list[list[str]] = []
    for d in range(p.directions):
        backward = reverse or d == 1
        run = _Direction(im, cell, p, d, backward, acts[d * per : (d + 1) * per], options)
        results.append(run.unroll())
    y = b.concat([b.reshape(r[0], (p.steps, 1, p.batch, p.hidden)) for r in results], 1)
    states = [
        b.concat([b.reshape(r[i], (1, p.batch, p.hidden)) for r in results], 0)
        for i in range(1, len(results[0]))
    ]
    if int(node.get("layout", 0)) == 1:  # Y [B, T, D, H], Y_h and Y_c [B, D, H]
        y = b.transpose(y, (2, 0, 1, 3))
        states = [b.transpose(s, (1, 0, 2)) for s in states]
    return [y, *states]


class _Direction:
    """One direction's unrolled recurrence."""

    def __init__(
        self,
        im: Importer,
        cell: _Cell,
        p: _Inputs,
        d: int,
        backward: bool,
        acts: Sequence[Activation],
        options: _Options,
    ) -> None:
        self.b, self.cell, self.p = im.b, cell, p
        self.backward, self.acts, self.options = backward, acts, options
        b, g, h = im.b, cell.gates * p.hidden, p.hidden

        def part(value: str, rows: int, first: int = 0, count: int | None = None) -> str:
            """Direction d of a [D, rows, ...] value, rows [first, first + count)."""
            shape = b.shape(value)
            stop = first + (rows if count is None else count)
            taken = b.slice(value, [d, first], [d + 1, stop], [0, 1])
            return b.reshape(taken, (stop - first, *shape[2:]))

        self.part = part
        w_t = b.transpose(part(p.w, g), (1, 0))  # [I, G*H]
        self.r_t = b.transpose(part(p.r, g), (1, 0))  # [H, G*H]
        bias = None
        self.state_bias = None  # GRU with linear_before_reset: Rbh, inside r * (...)
        if p.bias is not None:
            wb = b.reshape(part(p.bias, 2 * g, 0, g), (g,))
            rb = b.reshape(part(p.bias, 2 * g, g, g), (g,))
            if options.linear_before_reset:
                rb_zr = b.slice(rb, [0], [2 * h], [0])
                bias = b.concat([b.binary("add", b.slice(wb, [0], [2 * h], [0]), rb_zr),
                                 b.slice(wb, [2 * h], [3 * h], [0])], 0)  # fmt: skip
                self.state_bias = b.slice(rb, [2 * h], [3 * h], [0])
            else:
                bias = b.binary("add", wb, rb)
        rows = b.reshape(p.x, (p.steps * p.batch, b.shape(p.x)[2]))
        projected = b.matmul(rows, w_t)
        self.projected = projected if bias is None else b.binary("add", projected, bias)

    def _clip(self, x: str) -> str:
        limit = self.options.limit
        if limit is None:
            return x
        return self.b.clip(x, self.b.const(-limit), self.b.const(limit))

    def _cols(self, x: str, first: int, count: int) -> str:
        b = self.b
        return b.slice(x, [first * self.p.hidden], [(first + count) * self.p.hidden], [1])

    def _times(self, s: int) -> list[int | None]:
        """The time index of each element at step ``s`` (None for an element whose
        sequence has ended)."""
        p = self.p
        lens = p.lens or [p.steps] * p.batch
        return [None if s >= n else (n - 1 - s if self.backward else s) for n in lens]

    def _step_input(self, times: list[int | None]) -> str:
        """The projected inputs of one step, [B, G*H]."""
        b, p = self.b, self.p
        if len(set(times)) == 1 and times[0] is not None:
            t = times[0]
            return b.slice(self.projected, [t * p.batch], [(t + 1) * p.batch], [0])
        rows = [(t if t is not None else 0) * p.batch + i for i, t in enumerate(times)]
        return b.take(self.projected, rows, 0)

    def unroll(self) -> list[str]:
        """Y of this direction as [T, B, H], then its last hidden state (and cell state)."""
        b, p = self.b, self.p
        states: list[str | None] = [
            None if v is None else b.reshape(self.part(v, p.batch), (p.batch, p.hidden))
            for v in p.initial
        ]
        zeros = b.const(np.zeros((p.batch, p.hidden), np.float32))
        outputs: list[str] = []
        active_steps = max(p.lens) if p.lens else p.steps
        for s in range(active_steps):
            times = self._times(s)
            x = self._step_input(times)
            new = self._cell(x, states, zeros)
            if all(t is not None for t in times):
                states = list(new)
            else:  # elements whose sequence has ended keep their state
                keep = [i if t is not None else p.batch + i for i, t in enumerate(times)]
                states = [
                    b.take(b.concat([n, o if o is not None else zeros], 0), keep, 0)
                    for n, o in zip(new, states, strict=True)
                ]
            outputs.append(new[0])
        return [self._sequence(outputs, zeros), *[s or zeros for s in states]]

    def _sequence(self, outputs: list[str], zeros: str) -> str:
        """Y [T, B, H] from each step's hidden state: row b of time t is its step's output
        where t is within b's sequence, else zero."""
        b, p = self.b, self.p
        if p.lens is None:
            order = outputs[::-1] if self.backward else outputs
            return b.concat([b.reshape(o, (1, p.batch, p.hidden)) for o in order], 0)
        stacked = b.concat([*outputs, zeros], 0)  # [(S + 1) * B, H]
        zero_row = len(outputs) * p.batch
        rows = []
        for t in range(p.steps):
            for i, n in enumerate(p.lens):
                s = (n - 1 - t if self.backward else t) if t < n else None
                rows.append(zero_row + i if s is None else s * p.batch + i)
        return b.take(stacked, rows, 0, shape=(p.steps, p.batch, p.hidden))

    def _cell(self, x: str, states: list[str | None], zeros: str) -> list[str]:
        cell = self.cell
        if cell is _LSTM:
            return self._lstm(x, states[0], states[1], zeros)
        if cell is _GRU:
            return [self._gru(x, states[0], zeros)]
        return [self._rnn(x, states[0])]

    def _recurrent(self, x: str, h: str | None, first: int = 0, count: int | None = None) -> str:
        """x + h @ R^T over gate columns [first, first + count) (x alone where h is zero)."""
        b = self.b
        if h is None:
            return x
        r_t = self.r_t
        if count is not None:
            r_t = self._cols(r_t, first, count)
        return b.binary("add", x, b.matmul(h, r_t))

    def _rnn(self, x: str, h: str | None) -> str:
        return self.acts[0](self._clip(self._recurrent(x, h)))

    def _gru(self, x: str, h: str | None, zeros: str) -> str:
        b, f, g = self.b, self.acts[0], self.acts[1]
        x_zr, x_h = self._cols(x, 0, 2), self._cols(x, 2, 1)
        if self.options.linear_before_reset:
            hr = None if h is None else b.matmul(h, self.r_t)
            zr_pre = x_zr if hr is None else b.binary("add", x_zr, self._cols(hr, 0, 2))
            zr = f(self._clip(zr_pre))
            z, r = self._cols(zr, 0, 1), self._cols(zr, 1, 1)
            inside = self.state_bias if hr is None else self._cols(hr, 2, 1)
            if hr is not None and self.state_bias is not None:
                inside = b.binary("add", self._cols(hr, 2, 1), self.state_bias)
            h_pre = x_h if inside is None else b.binary("add", x_h, b.binary("mul", r, inside))
        else:
            zr = f(self._clip(self._recurrent(x_zr, h, 0, 2)))
            z, r = self._cols(zr, 0, 1), self._cols(zr, 1, 1)
            h_pre = x_h
            if h is not None:
                h_pre = self._recurrent(x_h, b.binary("mul", r, h), 2, 1)
        candidate = g(self._clip(h_pre))
        one_minus_z = b.binary("sub", b.const(1.0), z)
        kept = b.binary("mul", z, h if h is not None else zeros)
        return b.binary("add", b.binary("mul", one_minus_z, candidate), kept)

    def _lstm(self, x: str, h: str | None, c: str | None, zeros: str) -> list[str]:
        b, f, g, act_h = self.b, *self.acts
        pre = self._recurrent(x, h)  # gates i, o, f, c
        peep = self.p.peepholes
        c_prev = c if c is not None else zeros
        if peep is None:
            iof = f(self._clip(self._cols(pre, 0, 3)))
            i, o, fg = self._cols(iof, 0, 1), self._cols(iof, 1, 1), self._cols(iof, 2, 1)
        else:
            p_i, p_o, p_f = (
                b.reshape(self.part(peep, 3 * self.p.hidden, k * self.p.hidden, self.p.hidden),
                          (self.p.hidden,))
                for k in range(3)
            )  # fmt: skip
            i = f(self._clip(b.binary("add", self._cols(pre, 0, 1), b.binary("mul", p_i, c_prev))))
            fg = f(self._clip(b.binary("add", self._cols(pre, 2, 1), b.binary("mul", p_f, c_prev))))
        if self.options.input_forget:
            fg = b.binary("sub", b.const(1.0), i)
        candidate = g(self._clip(self._cols(pre, 3, 1)))
        c_new = b.binary("add", b.binary("mul", fg, c_prev), b.binary("mul", i, candidate))
        if peep is not None:
            o = f(self._clip(b.binary("add", self._cols(pre, 1, 1), b.binary("mul", p_o, c_new))))
        h_new = b.binary("mul", o, act_h(c_new))
        return [h_new, c_new]


def _handler(cell: _Cell) -> Callable[[Importer, OnnxNode, list[str]], list[str]]:
    def lower(im: Importer, node: OnnxNode, ins: list[str]) -> list[str]:
        return _lower(im, node, ins, cell)

    return lower


HANDLERS: HandlerTable = {
    "LSTM": (_COMMON_ATTRS | {"input_forget"}, _handler(_LSTM)),
    "GRU": (_COMMON_ATTRS | {"linear_before_reset"}, _handler(_GRU)),
    "RNN": (set(_COMMON_ATTRS), _handler(_RNN)),
}

"""Find fused groups in an atomic graph and turn the graph into a list of executable steps.

A :class:`FusedStep` is one atomic node, or a chain of atomic nodes that some backend may run as
one kernel (it declares which ``fused.*`` ops it has). Every backend can still run a fused
step by running its ``parts`` one by one, so fusion never limits where a step can run.

Recognised chains (exactly the ones :mod:`walle.ops.composites` and the ONNX importer emit):

- ``fused.matmul_bias_act``: matmul with a constant operand, + constant bias, + relu/sigmoid/tanh,
  relu6 (Clip(0, 6): max(x, 0) or relu, then min(., 6)), hard_swish (ONNX's HardSwish as
  the builder composes it: the product's two consumers) or hard_swish6 (Paddle's export of
  it, x * relu6(x + 3) / 6), as the attribute ``act``;
  the activation may sit behind a reshape (conv2d's matmul output is reshaped to NCHW before
  the model's Relu): the fused kernel then writes the activation's buffer viewed in the
  matmul's shape, and the reshape is one of the step's parts;
- ``fused.conv2d``: conv2d's im2col raster (one rank-6 region [N, C, KH, KW, OH, OW],
  contiguous destination), its reshape to [N, C*KH*KW, OH*OW] and the matmul by constant
  weights, with the same bias/activation tail as above; a backend with a direct convolution
  kernel reads the raster's input through the region and never builds the im2col buffer;
  a conv also takes the zero-pad raster feeding it alone (attribute ``prologue``: 1),
  which a Winograd kernel never runs (it reads the unpadded input) nor a lanes kernel (it
  pads a band of rows at a time into L2); a
  1x1 conv without an activation takes the add of a non-constant tensor of its output's
  shape that follows it (ResNet's shortcut) and a ReLU after that (attribute ``residual``:
  the shortcut is the step's last input), so that the add rides in the conv's epilogue
  (not a 3x3 one: no Winograd kernel adds a shortcut, and it is worth more than the pass);
- ``fused.group_conv2d``: a grouped (or depthwise) conv2d: the same im2col raster, its
  reshape to [N, G, C/G*KH*KW, OH*OW], the batched matmul by constant weights
  [G, Cout/G, C/G*KH*KW], the reshape of its result to [N, Cout, OH*OW] and the same
  bias/activation tail (attribute ``group``: G); a depthwise one (one input channel a
  group) also takes the chain of one-input rasters that feeds its im2col raster alone
  (ShuffleNet's channel shuffle and the zero pad), ``prologue`` counting them: the backend
  may read their source in place;
- ``fused.softmax``: reduce max, sub, exp, reduce sum, div over the last axis;
- ``fused.layernorm``: mean, sub, mul, mean, add eps, sqrt, div, (* gamma), (+ beta), last axis;
- ``fused.window_reduce``: a pooling window raster (one rank-6 region, contiguous
  destination) whose only reader reduces its first two axes (max/avg pooling), with the
  pad raster before it as a prologue (attr ``prologue``: 1) where its border adds nothing
  to the reduction;
- ``fused.resample``: the sum of at least two terms, each a take of one tensor along one
  axis (a one-input raster whose output element (o, t, i) copies input element
  (o, index[t], i)) times constant weights along that axis (a mul by a constant shaped
  [1, .., n, .., 1]) or not, added left to right: a linear or cubic Resize's pass along an
  axis as the ONNX importer emits it (attribute ``axis``). A kernel reads each output's
  taps where they lie and writes the output once: the takes, products and sums were a pass
  over memory each;
- ``fused.elementwise``: a chain of at least two unary/binary nodes, each value but the
  last read only by the next node and no graph output, every node's output of the chain's
  shape; the other operands (constants or tensors) broadcast to it. A pre-activation
  BatchNorm (x * scale + shift, then ReLU) or a residual add and ReLU, in one pass over
  memory instead of one per node. Matched after the patterns above, so a conv or matmul
  keeps its own bias and activation tail.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, TypeGuard

import numpy as np
import numpy.typing as npt

from walle.ops.ir import (
    AttrValue,
    Graph,
    Node,
    contiguous_strides,
    is_identity_raster,
    raster_sources,
    same_float,
)

_ACTS = ("relu", "sigmoid", "tanh")
_ELEMENTWISE = ("unary", "binary")


@dataclass(frozen=True)
class FusedStep:
    """One unit of execution: an atomic node or a fused chain of them."""

    op: str
    name: str
    inputs: tuple[str, ...]
    output: str
    attrs: tuple[tuple[str, AttrValue], ...]
    parts: tuple[Node, ...]

    def attr(self, key: str, default: Any = None) -> Any:
        """The attribute ``key`` (or ``default``); ``Any`` as :meth:`Node.attr`."""
        for k, v in self.attrs:
            if k == key:
                return v
        return default

    @property
    def fused(self) -> bool:
        """True for a fused chain."""
        return self.op.startswith("fused.")


def atomic_step(node: Node) -> FusedStep:
    """Wrap one atomic node as a step."""
    return FusedStep(node.op, node.name, node.inputs, node.output, node.attrs, (node,))


class _Matcher:
    """Walks single-consumer chains of the graph."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.consumers = graph.consumers()
        self.producers = {n.output: n for n in graph.nodes}
        self.outputs = set(graph.outputs)

    def only_consumer(self, value: str) -> Node | None:
        users = self.consumers.get(value, [])
        if len(users) != 1 or value in self.outputs:
            return None
        return users[0]

    def scalar(self, name: str, value: float) -> bool:
        """Whether ``name`` is a constant of one element equal to ``value``."""
        array = self.graph.constants.get(name)
        return array is not None and array.size == 1 and float(array.reshape(-1)[0]) == value

    def const(self, name: str) -> bool:
        return name in self.graph.constants

    def other(self, node: Node, name: str) -> str:
        a, b = node.inputs
        return b if a == name else a

    def is_op(self, node: Node | None, op: str, kind: str | None = None) -> TypeGuard[Node]:
        """True when ``node`` exists and is ``op`` (of ``kind``); narrows ``node`` to a Node."""
        return node is not None and node.op == op and (kind is None or node.attr("kind") == kind)

    def last_axis(self, node: Node, value: str) -> bool:
        rank = len(self.graph.shape(value))
        return node.attr("axes") == (rank - 1,) and node.attr("keepdims") is True


def find_steps(graph: Graph) -> list[FusedStep]:
    """The graph's steps in topological order, with fused chains grouped."""
    m = _Matcher(graph)
    claimed: dict[str, FusedStep] = {}
    for node in graph.nodes:
        if node.name in claimed:
            continue
        step = (
            _match_softmax(m, node)
            or _match_layernorm(m, node)
            or _match_conv(m, node, claimed)
            or _match_group_conv(m, node, claimed)
            or _match_linear(m, node)
            or _match_window_reduce(m, node)
            or _match_resample(m, node)
            or _match_elementwise(m, node, claimed)
        )
        if step is not None and not any(part.name in claimed for part in step.parts):
            for part in step.parts:
                claimed[part.name] = step
    steps: list[FusedStep] = []
    for node in graph.nodes:
        step = claimed.get(node.name)
        if step is None:
            steps.append(atomic_step(node))
        elif step.parts[-1] is node:
            steps.append(step)
    return steps


def _match_linear(m: _Matcher, mm: Node) -> FusedStep | None:
    if mm.op != "matmul":
        return None
    a, b = mm.inputs
    sa, sb = m.graph.shape(a), m.graph.shape(b)
    out_shape = m.graph.shape(mm.output)
    if m.const(b) and len(sb) == 2 and len(sa) >= 2:  # [..., k] @ W: a dense layer
        n = out_shape[-1]
        side, bias_shapes = "right", {(1,) * r + (n,) for r in range(len(out_shape))}
    elif m.const(a) and len(sa) == 2 and len(sb) == 3:
        side, bias_shapes = "left", {(out_shape[-2], 1), (1, out_shape[-2], 1)}
    else:
        return None
    parts, inputs, last, attrs = _bias_act_tail(m, [mm], [a, b], mm.output, bias_shapes)
    if len(parts) == 1:
        return None
    return FusedStep(
        "fused.matmul_bias_act",
        mm.name,
        tuple(inputs),
        last,
        (*attrs, ("side", side)),
        tuple(parts),
    )


def _bias_act_tail(
    m: _Matcher, parts: list[Node], inputs: list[str], last: str, bias_shapes: set[tuple[int, ...]]
) -> tuple[list[Node], list[str], str, tuple[tuple[str, AttrValue], ...]]:
    """Extend a matmul chain by a constant bias add and an activation (maybe after a reshape)."""
    add = m.only_consumer(last)
    bias = None
    if m.is_op(add, "binary", "add"):
        other = m.other(add, last)
        if m.const(other) and m.graph.shape(other) in bias_shapes:
            bias, last = other, add.output
            parts.append(add)
            inputs.append(other)
    act = m.only_consumer(last)
    reshape = None
    if m.is_op(act, "raster") and is_identity_raster(
        act, m.graph.shape(last), m.graph.shape(act.output)
    ):
        reshape, act = act, m.only_consumer(act.output)
    value = last if reshape is None else reshape.output
    act_kind, act_nodes = "none", []
    if relu6 := _relu6(m, act, value):
        act_kind, act_nodes = "relu6", relu6
    elif m.is_op(act, "unary") and act.attr("kind") in _ACTS:
        act_kind, act_nodes = act.attr("kind"), [act]
    elif hard_swish := _hard_swish(m, value):
        act_kind, act_nodes = "hard_swish", hard_swish
    elif hard_swish := _hard_swish6(m, value):
        act_kind, act_nodes = "hard_swish6", hard_swish
    if act_nodes:
        last = act_nodes[-1].output
        parts += [reshape, *act_nodes] if reshape is not None else act_nodes
    return parts, inputs, last, (("act", act_kind), ("has_bias", bias is not None))


def _relu6(m: _Matcher, first: Node | None, value: str) -> list[Node]:
    """ReLU6 of ``value`` from its consumer ``first`` on: max(value, 0) then min(., 6)
    (ONNX's Clip(0, 6) as imported) or relu then min(., 6), the bounds scalar constants;
    its two nodes, or [] for none."""
    if m.is_op(first, "binary", "max"):
        if m.other(first, value) == value or not m.scalar(m.other(first, value), 0.0):
            return []
    elif not m.is_op(first, "unary", "relu"):
        return []
    cap = m.only_consumer(first.output)
    if not m.is_op(cap, "binary", "min") or not m.scalar(m.other(cap, first.output), 6.0):
        return []
    return [first, cap] if m.graph.shape(cap.output) == m.graph.shape(value) else []


def _hard_swish(m: _Matcher, value: str) -> list[Node]:
    """ONNX's HardSwish of ``value`` as :meth:`Composites.hard_swish` builds it: value * (1/6
    as a float32), + 0.5, max(., 0), min(., 1), times value; its five nodes (value's only
    two consumers, the others one each), or [] for none."""
    users = _two_users(m, value)
    scale = next((u for u in users if _with_scalar(m, u, "mul", value, _SIXTH)), None)
    factor = _scalar_chain(m, scale, (("add", 0.5), ("max", 0.0), ("min", 1.0)))
    times = _times_value(m, value, users, factor)
    return _same_shape(m, value, [*factor, times]) if times is not None else []


def _hard_swish6(m: _Matcher, value: str) -> list[Node]:
    """HardSwish as Paddle's exports write it, value * relu6(value + 3) / 6 (Add, Clip, Mul,
    Div): add 3, max(., 0), min(., 6), times value, div by 6; its five nodes (value's only
    two consumers, the others one each), or [] for none."""
    users = _two_users(m, value)
    shift = next((u for u in users if _with_scalar(m, u, "add", value, 3.0)), None)
    factor = _scalar_chain(m, shift, (("max", 0.0), ("min", 6.0)))
    times = _times_value(m, value, users, factor)
    div = m.only_consumer(times.output) if times is not None else None
    if times is None or not m.is_op(div, "binary", "div") or div.inputs[0] != times.output:
        return []
    return _same_shape(m, value, [*factor, times, div]) if m.scalar(div.inputs[1], 6.0) else []


def _two_users(m: _Matcher, value: str) -> list[Node]:
    """``value``'s consumers where it has exactly two and is no graph output, else []."""
    users = m.consumers.get(value, [])
    return users if len(users) == 2 and value not in m.outputs else []


def _scalar_chain(
    m: _Matcher, first: Node | None, steps: tuple[tuple[str, float], ...]
) -> list[Node]:
    """``first`` and the binaries after it, each the only consumer of the one before and
    taking the scalar constant ``steps`` names (kind, value) in turn; [] where one differs."""
    if first is None:
        return []
    nodes = [first]
    for kind, bound in steps:
        before = nodes[-1].output
        node = m.only_consumer(before)
        if not m.is_op(node, "binary", kind) or not m.scalar(m.other(node, before), bound):
            return []
        nodes.append(node)
    return nodes


def _times_value(m: _Matcher, value: str, users: list[Node], factor: list[Node]) -> Node | None:
    """The product of ``value`` and the ``factor`` chain's result (value's other consumer,
    the chain's last node's only one), or None."""
    if not factor:
        return None
    times = m.only_consumer(factor[-1].output)
    if not m.is_op(times, "binary", "mul") or times is factor[0] or times not in users:
        return None
    return times if sorted(times.inputs) == sorted([value, factor[-1].output]) else None


def _same_shape(m: _Matcher, value: str, nodes: list[Node]) -> list[Node]:
    """``nodes`` where each output has ``value``'s shape (no broadcast widened it), else []."""
    shape = m.graph.shape(value)
    return nodes if all(m.graph.shape(n.output) == shape for n in nodes) else []


_SIXTH = float(np.float32(1.0 / 6.0))


def _with_scalar(m: _Matcher, node: Node, kind: str, value: str, scalar: float) -> bool:
    """Whether ``node`` is the binary ``kind`` of value and ``scalar`` (either order)."""
    return (
        m.is_op(node, "binary", kind)
        and value in node.inputs
        and m.other(node, value) != value
        and m.scalar(m.other(node, value), scalar)
    )


def _match_conv(m: _Matcher, im2col: Node, claimed: dict[str, FusedStep]) -> FusedStep | None:
    """im2col raster [N, C, KH, KW, OH, OW] -> reshape -> constant-weight matmul (+ tail)."""
    sizes = _im2col_sizes(m, im2col)
    if sizes is None:
        return None
    n, c, kh, kw, oh, ow = sizes
    flat = m.only_consumer(im2col.output)
    if not m.is_op(flat, "raster") or m.graph.shape(flat.output) != (n, c * kh * kw, oh * ow):
        return None
    if not is_identity_raster(flat, m.graph.shape(im2col.output), m.graph.shape(flat.output)):
        return None
    mm = m.only_consumer(flat.output)
    if not m.is_op(mm, "matmul") or mm.inputs[1] != flat.output or not m.const(mm.inputs[0]):
        return None
    if len(m.graph.shape(mm.inputs[0])) != 2:
        return None
    cout = m.graph.shape(mm.inputs[0])[0]
    pad = _pad_prologue(m, im2col)
    parts, inputs, last, attrs = _bias_act_tail(
        m,
        [*pad, im2col, flat, mm],
        [pad[0].inputs[0] if pad else im2col.inputs[0], mm.inputs[0]],
        mm.output,
        {(cout, 1), (1, cout, 1)},
    )
    if dict(attrs)["act"] == "none" and kh == kw == 1:  # (a 3x3 one keeps its Winograd)
        residual = _residual_tail(m, parts, inputs, last, claimed)
        if residual is not None:
            parts, inputs, last, act = residual
            attrs = (("act", act), *attrs[1:], ("residual", True))
    if pad:
        attrs = (*attrs, ("prologue", 1))
    return FusedStep("fused.conv2d", im2col.name, tuple(inputs), last, attrs, tuple(parts))


def _residual_tail(
    m: _Matcher, parts: list[Node], inputs: list[str], last: str, claimed: dict[str, FusedStep]
) -> tuple[list[Node], list[str], str, str] | None:
    """Extend an activation-free conv chain by the add of a tensor of its output's shape
    (ResNet's shortcut, after the reshape to NCHW) and a ReLU, if one follows: the parts,
    the inputs (the shortcut last), the chain's output and its activation. Where both
    operands of the add are such convs (a downsampling shortcut), the first one matched
    takes it and the other stays a conv of its own."""
    add = m.only_consumer(last)
    reshape = None
    if m.is_op(add, "raster") and is_identity_raster(
        add, m.graph.shape(last), m.graph.shape(add.output)
    ):
        reshape, add = add, m.only_consumer(add.output)
    value = last if reshape is None else reshape.output
    if not m.is_op(add, "binary", "add") or add.name in claimed:
        return None
    shortcut = m.other(add, value)
    shape = m.graph.shape(add.output)
    if shortcut == value or m.const(shortcut) or m.graph.shape(shortcut) != shape:
        return None
    if m.graph.shape(value) != shape:
        return None
    parts = [*parts, *([reshape] if reshape is not None else []), add]
    last, act = add.output, "none"
    relu = m.only_consumer(last)
    if m.is_op(relu, "unary", "relu"):
        parts.append(relu)
        last, act = relu.output, "relu"
    return parts, [*inputs, shortcut], last, act


def _pad_prologue(m: _Matcher, im2col: Node) -> list[Node]:
    """The zero-pad raster feeding a conv's im2col alone, as the step's prologue (a Winograd
    kernel reads the unpadded input in place, the lanes and direct kernels copy it a band
    of bordered rows at a time); else none. A network's input padded for its first conv
    too: the step's first call, the pad or the kernel reading the input unpadded, then
    reads the caller's array in place (plan._input_reader)."""
    chain = _raster_prologue(m, im2col)
    if len(chain) != 1 or chain[0].attr("fill") != 0.0:
        return []
    if len(m.graph.shape(chain[0].output)) != 4 or chain[0].inputs[0] in m.graph.constants:
        return []
    return chain


def _im2col_sizes(m: _Matcher, node: Node) -> tuple[int, ...] | None:
    """The sizes [N, C, KH, KW, OH, OW] of an im2col raster (one rank-6 region written
    contiguously, no fill), else None."""
    if node.op != "raster" or node.attr("fill") is not None:
        return None
    regions = node.attr("regions")
    if len(regions) != 1 or len(regions[0].sizes) != 6:
        return None
    r = regions[0]
    if r.dst_offset != 0 or r.dst_strides != contiguous_strides(r.sizes):
        return None
    return tuple(r.sizes)


def _match_group_conv(m: _Matcher, im2col: Node, claimed: dict[str, FusedStep]) -> FusedStep | None:
    """im2col raster -> reshape [N, G, K, OH*OW] -> [G, Cout/G, K] @ it -> reshape
    [N, Cout, OH*OW] (+ tail): conv2d's grouped form (:meth:`GraphBuilder.conv2d`). A 1x1
    one without activation also takes a residual add and ReLU after it (ShuffleNet's unit),
    as :func:`_match_conv`."""
    sizes = _im2col_sizes(m, im2col)
    if sizes is None:
        return None
    n, c, kh, kw, oh, ow = sizes
    flat = m.only_consumer(im2col.output)
    if not m.is_op(flat, "raster") or len(m.graph.shape(flat.output)) != 4:
        return None
    fn, group, k, cols = m.graph.shape(flat.output)
    if (fn, cols) != (n, oh * ow) or group < 2 or c % group or k != c // group * kh * kw:
        return None
    if not is_identity_raster(flat, m.graph.shape(im2col.output), m.graph.shape(flat.output)):
        return None
    mm = m.only_consumer(flat.output)
    if not m.is_op(mm, "matmul") or mm.inputs[1] != flat.output or not m.const(mm.inputs[0]):
        return None
    w_shape = m.graph.shape(mm.inputs[0])
    if len(w_shape) != 3 or w_shape[0] != group or w_shape[2] != k:
        return None
    cout = group * w_shape[1]
    back = m.only_consumer(mm.output)
    if not m.is_op(back, "raster") or m.graph.shape(back.output) != (n, cout, oh * ow):
        return None
    if not is_identity_raster(back, m.graph.shape(mm.output), m.graph.shape(back.output)):
        return None
    prologue = _raster_prologue(m, im2col) if group == c else []
    parts, inputs, last, attrs = _bias_act_tail(
        m,
        [*prologue, im2col, flat, mm, back],
        [prologue[0].inputs[0] if prologue else im2col.inputs[0], mm.inputs[0]],
        back.output,
        {(cout, 1), (1, cout, 1)},
    )
    if dict(attrs)["act"] == "none" and kh == kw == 1 and not prologue:
        residual = _residual_tail(m, parts, inputs, last, claimed)
        if residual is not None:
            parts, inputs, last, act = residual
            attrs = (("act", act), *attrs[1:], ("residual", True))
    return FusedStep(
        "fused.group_conv2d",
        parts[0].name,
        tuple(inputs),
        last,
        (*attrs, ("group", group), ("prologue", len(prologue))),
        tuple(parts),
    )


def _raster_prologue(m: _Matcher, node: Node) -> list[Node]:
    """The chain of rasters of one input, each read only by the next, that ends at
    ``node``'s input (earliest first; empty if ``node``'s input is not such a raster)."""
    chain: list[Node] = []
    value = node.inputs[0]
    while True:
        producer = m.producers.get(value)
        if producer is None or producer.op != "raster" or len(producer.inputs) != 1:
            return chain
        if m.only_consumer(value) is not (chain[0] if chain else node):
            return chain
        chain.insert(0, producer)
        value = producer.inputs[0]


def _match_softmax(m: _Matcher, rmax: Node) -> FusedStep | None:
    if not m.is_op(rmax, "reduce", "max") or not m.last_axis(rmax, rmax.inputs[0]):
        return None
    x = rmax.inputs[0]
    sub = m.only_consumer(rmax.output)
    if not m.is_op(sub, "binary", "sub") or sub.inputs != (x, rmax.output):
        return None
    exp = m.only_consumer(sub.output)
    if not m.is_op(exp, "unary", "exp"):
        return None
    users = m.consumers.get(exp.output, [])
    if len(users) != 2 or exp.output in m.outputs:
        return None
    rsum = next((u for u in users if m.is_op(u, "reduce", "sum")), None)
    div = next((u for u in users if m.is_op(u, "binary", "div")), None)
    if rsum is None or div is None or not m.last_axis(rsum, exp.output):
        return None
    if div.inputs != (exp.output, rsum.output) or m.only_consumer(rsum.output) is not div:
        return None
    parts = (rmax, sub, exp, rsum, div)
    return FusedStep("fused.softmax", rmax.name, (x,), div.output, (), parts)


def _match_layernorm(m: _Matcher, mean: Node) -> FusedStep | None:
    if not m.is_op(mean, "reduce", "mean") or not m.last_axis(mean, mean.inputs[0]):
        return None
    x = mean.inputs[0]
    sub = m.only_consumer(mean.output)
    if not m.is_op(sub, "binary", "sub") or sub.inputs != (x, mean.output):
        return None
    users = m.consumers.get(sub.output, [])
    sq = next(
        (u for u in users if m.is_op(u, "binary", "mul") and u.inputs == (sub.output,) * 2), None
    )
    div = next(
        (u for u in users if m.is_op(u, "binary", "div") and u.inputs[0] == sub.output), None
    )
    if len(users) != 2 or sq is None or div is None or sub.output in m.outputs:
        return None
    var = m.only_consumer(sq.output)
    if not m.is_op(var, "reduce", "mean") or not m.last_axis(var, sq.output):
        return None
    add = m.only_consumer(var.output)
    if not m.is_op(add, "binary", "add"):
        return None
    eps_name = m.other(add, var.output)
    if not m.const(eps_name) or m.graph.constants[eps_name].size != 1:
        return None
    sqrt = m.only_consumer(add.output)
    if not m.is_op(sqrt, "unary", "sqrt") or m.only_consumer(sqrt.output) is not div:
        return None
    if div.inputs != (sub.output, sqrt.output):
        return None
    cols = m.graph.shape(x)[-1]
    parts, inputs, last = [mean, sub, sq, var, add, sqrt, div], [x], div.output
    flags = {}
    for kind, flag in (("mul", "has_gamma"), ("add", "has_beta")):
        nxt = m.only_consumer(last)
        flags[flag] = False
        if m.is_op(nxt, "binary", kind):
            other = m.other(nxt, last)
            if m.const(other) and m.graph.shape(other) in {(cols,), (1, cols)}:
                parts.append(nxt)
                inputs.append(other)
                last, flags[flag] = nxt.output, True
        if flag == "has_gamma" and not flags[flag]:
            break
    eps = float(m.graph.constants[eps_name].reshape(-1)[0])
    attrs = (
        ("epsilon", eps),
        ("has_beta", flags.get("has_beta", False)),
        ("has_gamma", flags["has_gamma"]),
    )
    return FusedStep("fused.layernorm", mean.name, tuple(inputs), last, attrs, tuple(parts))


def _match_window_reduce(m: _Matcher, raster: Node) -> FusedStep | None:
    if raster.op != "raster" or raster.attr("fill") is not None:
        return None
    regions = raster.attr("regions")
    if len(regions) != 1 or len(regions[0].sizes) != 6:
        return None
    r = regions[0]
    if r.dst_offset != 0 or r.dst_strides != contiguous_strides(r.sizes):
        return None
    red = m.only_consumer(raster.output)
    if not m.is_op(red, "reduce") or red.attr("kind") not in ("max", "sum", "mean"):
        return None
    if red.attr("axes") != (0, 1) or red.attr("keepdims") is not False:
        return None
    prologue = _pool_pad(m, raster, red.attr("kind"))
    return FusedStep(
        "fused.window_reduce",
        raster.name,
        prologue[0].inputs if prologue else raster.inputs,
        red.output,
        (("kind", red.attr("kind")), *((("prologue", len(prologue)),) if prologue else ())),
        (*prologue, raster, red),
    )


# The most output elements of a take that fused.resample checks by running it on element
# indices (two int32 arrays: 64 MiB at the bound; a larger resize runs as its parts).
_TAKE_CHECK_MOST = 1 << 24


def _match_resample(m: _Matcher, first: Node) -> FusedStep | None:
    """``first`` (a take) and the terms added to it (see the module docstring)."""
    term = _resample_term(m, first, None)
    if term is None:
        return None
    x, axis = first.inputs[0], term[2]
    parts, weights, total = list(term[0]), [term[1]], term[0][-1].output
    while True:
        add = m.only_consumer(total)
        if not m.is_op(add, "binary", "add"):
            break
        other = m.producers.get(m.other(add, total))
        take = other
        if m.is_op(other, "binary", "mul"):
            a, b = other.inputs
            take = m.producers.get(b if m.const(a) else a)
        if take is None or take.inputs[:1] != (x,):
            break
        nxt = _resample_term(m, take, axis)
        if nxt is None or nxt[0][-1] is not other:
            break
        parts += [*nxt[0], add]
        weights.append(nxt[1])
        total = add.output
    takes = [p for p in parts if p.op == "raster"]
    # last, as it costs a pass over each take's output: that each raster is a take
    if len(weights) < 2 or any(take_indices(m.graph, t, axis) is None for t in takes):
        return None
    inputs = (x, *(w for w in weights if w is not None))
    attrs: tuple[tuple[str, AttrValue], ...] = (
        ("axis", axis),
        ("weighted", tuple(int(w is not None) for w in weights)),
    )
    return FusedStep("fused.resample", first.name, inputs, total, attrs, tuple(parts))


def _resample_term(
    m: _Matcher, raster: Node, axis: int | None
) -> tuple[tuple[Node, ...], str | None, int] | None:
    """(nodes, weights or None, axis) of a resample term from ``raster``: the raster alone
    or with the mul by constant weights along its axis that alone reads it; None if
    ``raster`` is not a one-input raster that changes one axis (``axis``, where given) read
    by one node (whether it is a take, :func:`_match_resample` checks last)."""
    if raster.op != "raster" or len(raster.inputs) != 1 or raster.attr("fill") is not None:
        return None
    src, out = m.graph.shape(raster.inputs[0]), m.graph.shape(raster.output)
    if len(src) != len(out):
        return None
    moved = [a for a, (d, n) in enumerate(zip(src, out, strict=True)) if d != n]
    if len(moved) != 1 or (axis is not None and moved != [axis]):
        return None
    reader = m.only_consumer(raster.output)
    if reader is None:
        return None
    along = tuple(n if a == moved[0] else 1 for a, n in enumerate(out))
    if m.is_op(reader, "binary", "mul"):
        w = m.other(reader, raster.output)
        if m.const(w) and w != raster.output and m.graph.shape(w) == along:
            return (raster, reader), w, moved[0]
    return (raster,), None, moved[0]


def take_indices(graph: Graph, raster: Node, axis: int) -> npt.NDArray[np.int64] | None:
    """The indices a one-input raster takes along ``axis`` (its output element (o, t, i)
    copying input element (o, index[t], i), every output element written), or None where
    it is not such a take or its output holds more than _TAKE_CHECK_MOST elements. Worked
    out by running it on element indices (int32: a tensor holds < 2^31 elements)."""
    src, out = graph.shape(raster.inputs[0]), graph.shape(raster.output)
    outer, inner = math.prod(src[:axis]), math.prod(src[axis + 1 :])
    dim, n = src[axis], out[axis]
    if not 0 < outer * n * inner <= _TAKE_CHECK_MOST:
        return None
    labels = np.arange(outer * dim * inner, dtype=np.int32)
    found = raster_sources(raster.attr("regions"), labels, outer * n * inner)
    first = found[: n * inner : inner].astype(np.int64)  # o = 0, i = 0: index[t] * inner
    if (first < 0).any() or (first % inner).any():
        return None
    index = first // inner
    slab = ((index * inner)[:, None] + np.arange(inner, dtype=np.int64)[None, :]).reshape(-1)
    rows = found.reshape(outer, n * inner)
    step = max(1, (1 << 20) // (n * inner))  # slabs at a time: no array of the output's size
    for o in range(0, outer, step):
        want = slab[None, :] + np.arange(o, min(o + step, outer))[:, None] * (dim * inner)
        if not np.array_equal(rows[o : o + step], want):
            return None
    return index


def _pool_pad(m: _Matcher, raster: Node, kind: str) -> list[Node]:
    """The pad raster feeding a pooling raster alone (after any reshapes of its source), as
    the step's prologue, where its border adds nothing to the reduction (-inf under max, +0
    under a sum or mean): a kernel can then read the unpadded source in place; else none."""
    chain = _raster_prologue(m, raster)
    if not chain or len(m.graph.shape(chain[-1].output)) != 4:
        return []
    *views, pad = chain  # reshapes before the pad (LRN's squares seen as [N, 1, C, rest])
    shape = m.graph.shape
    if any(not is_identity_raster(v, shape(v.inputs[0]), shape(v.output)) for v in views):
        return []
    fill = pad.attr("fill")
    if fill is None or chain[0].inputs[0] in m.graph.constants:
        return []
    return chain if same_float(fill, -math.inf if kind == "max" else 0.0) else []


def _match_elementwise(m: _Matcher, first: Node, claimed: dict[str, FusedStep]) -> FusedStep | None:
    """The longest chain of unary/binary nodes from ``first`` (see the module docstring),
    stopping before a node another pattern already claimed; None if shorter than two."""
    if first.op not in _ELEMENTWISE:
        return None
    shape = m.graph.shape(first.output)
    parts = [first]
    while True:
        nxt = m.only_consumer(parts[-1].output)
        if nxt is None or nxt.op not in _ELEMENTWISE or nxt.name in claimed:
            break
        if m.graph.shape(nxt.output) != shape:
            break
        parts.append(nxt)
    if len(parts) < 2:
        return None
    chain = {p.output for p in parts}
    inputs = dict.fromkeys(i for p in parts for i in p.inputs if i not in chain)
    return FusedStep(
        "fused.elementwise", first.name, tuple(inputs), parts[-1].output, (), tuple(parts)
    )

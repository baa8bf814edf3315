"""Draw an App: its trigger trie and each task's plan as a graph (DOT text or SVG).

``plan_graph(plans)`` lays the graph out as data: the device's event stream, one node per
trigger-trie node (patterns expanded into their variants and sharing prefixes exactly as
``TriggerTrie`` shares them: a node's identity is its parent and its step, quantifier and
guards), then each task's steps from its accepting node (or from the stream, for a task with
no trigger) down to its sink. ``to_dot`` writes it for graphviz; ``to_svg`` runs graphviz's
``dot`` when it is on PATH and otherwise draws it itself (a layered layout: one column per
depth), so ``walle plan --format svg`` needs no new dependency.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

from walle.streams.patterns import ONE_OR_MORE, OPTIONAL, Element, Pattern, Step
from walle.streams.plan import (
    AggregateStep,
    FilterStep,
    KeyByStep,
    MapStep,
    Plan,
    SinkStep,
    SourceStep,
    TriggerStep,
    WindowStep,
)
from walle.streams.windows import EMIT_FINAL

SOURCE = "source"
_QUANTIFIER_MARK = {ONE_OR_MORE: "+", OPTIONAL: "?"}


@dataclass(frozen=True)
class GraphNode:
    """One box: ``id`` (stable, ASCII), its label and its kind (source, trigger, step)."""

    id: str
    label: str
    kind: str


@dataclass
class PlanGraph:
    """Nodes and directed edges ``(from id, to id)``, in drawing order."""

    nodes: list[GraphNode] = field(default_factory=list)
    edges: list[tuple[str, str]] = field(default_factory=list)

    def add(self, node: GraphNode) -> str:
        """Add ``node`` (once) and return its id."""
        if all(n.id != node.id for n in self.nodes):
            self.nodes.append(node)
        return node.id

    def link(self, src: str, dst: str) -> None:
        """Add the edge ``src -> dst`` (once)."""
        if (src, dst) not in self.edges:
            self.edges.append((src, dst))


def _step_label(step: Step) -> str:
    text = f"{step.event or 'any'}"
    if step.page:
        text += f" @ {step.page}"
    if step.equals:
        text += " [" + ", ".join(f"{k}={v!r}" for k, v in step.equals) + "]"
    if step.predicate_id:
        text += f" if {step.predicate_id.split('#')[0].rsplit('.', 1)[-1]}"
    return text


_FN_STEPS = {FilterStep: "filter", MapStep: "map", KeyByStep: "key_by"}


def _fn_name(fn: object) -> str:
    return str(getattr(fn, "__qualname__", None) or repr(fn))


def _plan_step_label(step: object) -> str:
    """A short label for a task step (function names without module and code hash)."""
    if isinstance(step, FilterStep | MapStep | KeyByStep):
        return f"{_FN_STEPS[type(step)]} {_fn_name(step.fn)}"
    if isinstance(step, WindowStep):
        return f"window {step.spec!r}" + ("" if step.emit == EMIT_FINAL else f" emit={step.emit}")
    if isinstance(step, AggregateStep):
        if step.fn is not None:
            return f"aggregate {_fn_name(step.fn)}"
        return "aggregate " + ", ".join(f"{n}={a.signature}" for n, a in step.aggregates)
    if isinstance(step, SinkStep):
        return f"sink {step.name}"
    return str(getattr(step, "describe", lambda: repr(step))())


def _element_label(element: Element) -> str:
    label = _step_label(element.step) + _QUANTIFIER_MARK.get(element.quantifier, "")
    for guard in element.guards:
        label += f"\nnot followed by {_step_label(guard)}"
    return label


def _element_key(element: Element) -> str:
    """The identity the trie gives a node below its parent (equal keys share the node)."""
    guards = "|".join(g.signature for g in element.guards)
    return f"{element.step.signature}:{element.quantifier}!{guards}"


def _variants(pattern: Pattern) -> list[tuple[Element, ...]]:
    """Each choice of optional elements kept or skipped (what the trie inserts)."""
    optional = [i for i, el in enumerate(pattern.elements) if el.quantifier == OPTIONAL]
    found: list[tuple[Element, ...]] = []
    for skipped in itertools.product((False, True), repeat=len(optional)):
        drop = {i for i, skip in zip(optional, skipped, strict=True) if skip}
        kept = tuple(el for i, el in enumerate(pattern.elements) if i not in drop)
        if kept and kept not in found:
            found.append(kept)
    return found


def _add_pattern(graph: PlanGraph, ids: dict[tuple[str, str], str], pattern: Pattern) -> list[str]:
    """Insert ``pattern``'s variants below the source; returns their accepting node ids."""
    accepting = []
    for variant in _variants(pattern):
        parent = SOURCE
        for element in variant:
            key = (parent, _element_key(element))
            if key not in ids:
                node = GraphNode(f"trie{len(ids) + 1}", _element_label(element), "trigger")
                ids[key] = graph.add(node)
                graph.link(parent, ids[key])
            parent = ids[key]
        accepting.append(parent)
    return accepting


def plan_graph(plans: tuple[Plan, ...]) -> PlanGraph:
    """The graph of ``plans``: the stream, the shared trigger trie, each task's steps."""
    graph = PlanGraph()
    graph.add(GraphNode(SOURCE, "device events", "source"))
    ids: dict[tuple[str, str], str] = {}
    for number, plan in enumerate(plans):
        trigger = plan.trigger
        starts = _add_pattern(graph, ids, trigger.pattern) if trigger else [SOURCE]
        steps = [s for s in plan.steps if not isinstance(s, SourceStep | TriggerStep)]
        previous = starts
        for index, step in enumerate(steps):
            label = _plan_step_label(step)
            if index == 0:
                within = trigger.pattern.within_ms if trigger else None
                head = f"task {plan.name}" + (f" (match within {within} ms)" if within else "")
                label = f"{head}\n{label}"
            node = graph.add(GraphNode(f"task{number}_{index}", label, "step"))
            for start in previous:
                graph.link(start, node)
            previous = [node]
    return graph


def trie_node_count(graph: PlanGraph) -> int:
    """Trigger nodes drawn (``TriggerTrie.node_count`` less its root, for the same patterns)."""
    return sum(node.kind == "trigger" for node in graph.nodes)


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


_DOT_STYLE = {
    "source": 'shape=oval, style=filled, fillcolor="#e8f0fe"',
    "trigger": 'shape=box, style="rounded,filled", fillcolor="#fff4ce"',
    "step": 'shape=box, style=filled, fillcolor="#eef7ee"',
}


def to_dot(graph: PlanGraph, name: str = "app") -> str:
    """Graphviz DOT text for ``graph`` (left to right)."""
    lines = [f"digraph {_dot_quote(name)} {{", "  rankdir=LR;", '  node [fontname="Helvetica"];']
    for node in graph.nodes:
        lines.append(f"  {node.id} [label={_dot_quote(node.label)}, {_DOT_STYLE[node.kind]}];")
    lines.extend(f"  {src} -> {dst};" for src, dst in graph.edges)
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_svg(graph: PlanGraph, name: str = "app", *, use_graphviz: bool | None = None) -> str:
    """SVG of ``graph``: graphviz ``dot`` when on PATH (or ``use_graphviz``), else our own."""
    dot = shutil.which("dot")
    if use_graphviz is None:
        use_graphviz = dot is not None
    if use_graphviz:
        if dot is None:
            raise FileNotFoundError("graphviz `dot` is not on PATH")
        done = subprocess.run(
            [dot, "-Tsvg"], input=to_dot(graph, name), capture_output=True, text=True, check=True
        )
        return done.stdout
    return _draw_svg(graph, name)


_FILL = {"source": "#e8f0fe", "trigger": "#fff4ce", "step": "#eef7ee"}
_LINE_H, _GAP_X, _GAP_Y, _PAD, _CHAR_W = 16, 60, 24, 20, 7


def _depths(graph: PlanGraph) -> dict[str, int]:
    """Longest path from the source to each node (the graph is acyclic: a trie and chains)."""
    depth = {graph.nodes[0].id: 0}
    for _ in graph.nodes:
        for src, dst in graph.edges:
            if src in depth and depth.get(dst, -1) < depth[src] + 1:
                depth[dst] = depth[src] + 1
    return depth


def _draw_svg(graph: PlanGraph, name: str) -> str:
    """A layered drawing: column = depth, boxes stacked top to bottom in drawing order."""
    depth = _depths(graph)
    columns = max(depth.values(), default=0) + 1
    widths = [160] * columns  # each column as wide as its longest label line
    for node in graph.nodes:
        longest = max(len(line) for line in node.label.split("\n"))
        col = depth.get(node.id, 0)
        widths[col] = max(widths[col], _CHAR_W * longest + 16)
    lefts = [_PAD + sum(widths[:col]) + col * _GAP_X for col in range(columns)]
    heights = {n.id: (n.label.count("\n") + 1) * _LINE_H + 12 for n in graph.nodes}
    boxes: dict[str, tuple[float, float, float]] = {}
    column_y: dict[int, float] = {}
    for node in graph.nodes:
        col = depth.get(node.id, 0)
        y = column_y.get(col, _PAD)
        boxes[node.id] = (lefts[col], y, widths[col])
        column_y[col] = y + heights[node.id] + _GAP_Y
    width = lefts[-1] + widths[-1] + _PAD
    height = max(column_y.values(), default=_PAD) + _PAD
    out = [
        '<svg xmlns="http://www.w3.org/2000/svg" font-family="Helvetica, sans-serif"'
        f' font-size="12" width="{width:.0f}" height="{height:.0f}"'
        f' viewBox="0 0 {width:.0f} {height:.0f}">',
        f"<title>{escape(name)}</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8"'
        ' markerHeight="8" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/>'
        "</marker></defs>",
    ]
    for src, dst in graph.edges:
        (x1, y1, w1), (x2, y2, _w2) = boxes[src], boxes[dst]
        out.append(
            f'<g class="edge"><title>{src}-&gt;{dst}</title><line x1="{x1 + w1:.0f}"'
            f' y1="{y1 + heights[src] / 2:.0f}" x2="{x2:.0f}" y2="{y2 + heights[dst] / 2:.0f}"'
            ' stroke="#555" marker-end="url(#arrow)"/></g>'
        )
    for node in graph.nodes:
        x, y, box_w = boxes[node.id]
        out.append(f'<g class="node" id={quoteattr(node.id)}><title>{node.id}</title>')
        out.append(
            f'<rect x="{x:.0f}" y="{y:.0f}" width="{box_w}" height="{heights[node.id]}"'
            f' rx="6" fill="{_FILL[node.kind]}" stroke="#888"/>'
        )
        for i, line in enumerate(node.label.split("\n")):
            out.append(
                f'<text x="{x + 8:.0f}" y="{y + 18 + i * _LINE_H:.0f}">{escape(line)}</text>'
            )
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"

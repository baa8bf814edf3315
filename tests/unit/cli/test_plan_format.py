"""`walle plan APP --format text|dot|svg`: the trigger trie and each task's plan, drawn.

The SVG is parsed as XML: one node per trie node (as many as ``TriggerTrie`` builds for the
same patterns: shared prefixes drawn once) and per task step, every task named. Graphviz's
own SVG is checked the same way when ``dot`` is on PATH.
"""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests._cli import exit_of_main
from walle.streams.app import load_app
from walle.streams.trie import TriggerTrie

APP = """
from walle.streams import App, Span, Tumbling, count, entered, on, one_or_more, optional, seq

app = App("drawn")
SEARCH = entered("search")
BUY = seq(SEARCH, entered("item"), on("add_to_cart")).within(600_000)
BROWSE = seq(SEARCH, optional(on("scroll")), one_or_more(entered("item")))


@app.task(trigger=BUY, window=Span(max_events=50))
def buy(window):
    return {"n": len(window.events)}


@app.task(trigger=BROWSE)
def browse(window):
    return {"n": len(window.events)}


app.stream("clicks").filter(lambda e: e.event == "click").window(Tumbling(60_000)).aggregate(
    clicks=count()
)
"""
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def app_file(tmp_path: Path) -> Path:
    path = tmp_path / "drawn.py"
    path.write_text(APP)
    return path


def _trie_nodes(app_file: Path) -> int:
    trie = TriggerTrie(compiled=False)
    for plan in load_app(app_file).plans:
        if plan.trigger is not None:
            trie.add(plan.trigger.pattern)
    return trie.node_count - 1  # less the root


def _nodes(svg: str) -> dict[str, str]:
    """Node title -> its text, from an SVG document (ours or graphviz's)."""
    root = ET.fromstring(svg)
    found = {}
    for group in root.iter(f"{SVG}g"):
        if group.get("class") == "node":
            title = group.findtext(f"{SVG}title")
            found[title] = " ".join(t.text or "" for t in group.iter(f"{SVG}text"))
    return found


def _check_drawing(svg: str, app_file: Path) -> None:
    nodes = _nodes(svg)
    trie = [title for title in nodes if title.startswith("trie")]
    assert len(trie) == _trie_nodes(app_file) == 6  # search shared; scroll?, item+ on one side
    assert "source" in nodes
    labels = " ".join(nodes.values())
    for task in ("buy", "browse", "clicks"):
        assert f"task {task}" in labels
    for step in ("search", "add_to_cart", "scroll?", "item+", "sink features"):
        assert step in labels
    steps = [title for title in nodes if title.startswith("task")]
    assert len(steps) == 3 + 3 + 4  # window, aggregate, sink (+ filter for clicks)


def test_svg_of_our_own_writer_has_a_node_per_trie_node_and_step(app_file, monkeypatch, capsys):
    monkeypatch.setattr(shutil, "which", lambda _name: None)  # no graphviz: walle draws it
    assert exit_of_main(monkeypatch, "plan", str(app_file), "--format", "svg") in (0, None)
    _check_drawing(capsys.readouterr().out, app_file)


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz `dot` is not installed")
def test_svg_from_graphviz_has_the_same_nodes(app_file, monkeypatch, capsys):
    assert exit_of_main(monkeypatch, "plan", str(app_file), "--format", "svg") in (0, None)
    _check_drawing(capsys.readouterr().out, app_file)


def test_dot_names_every_edge_of_the_trie_and_the_tasks(app_file, monkeypatch, capsys):
    out_file = app_file.with_suffix(".dot")
    args = ("plan", str(app_file), "--format", "dot", "--out", str(out_file))
    assert exit_of_main(monkeypatch, *args) in (0, None)
    dot = out_file.read_text()
    assert dot.startswith('digraph "drawn" {')
    assert "source -> trie1;" in dot  # the shared search step, once
    assert dot.count("source -> trie1;") == 1
    assert "source -> task2_0;" in dot  # the task with no trigger reads the stream itself
    assert f"wrote dot of 3 tasks to {out_file}" in capsys.readouterr().err


def test_text_format_is_the_default(app_file, monkeypatch, capsys):
    assert exit_of_main(monkeypatch, "plan", str(app_file)) in (0, None)
    out = capsys.readouterr().out
    assert "task buy\n  source\n  trigger " in out
    assert out.rstrip().splitlines()[-1].startswith("fingerprint ")


def test_unknown_format_is_a_usage_error(app_file, monkeypatch, capsys):
    assert exit_of_main(monkeypatch, "plan", str(app_file), "--format", "png") == 2
    err = capsys.readouterr().err
    assert "'png' is not one of 'text', 'dot', 'svg'" in err

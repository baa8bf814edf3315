"""The reference matcher stands alone: the engine never imports it, and it imports nothing
of the engine (only the DSL's event and pattern types), so a bug cannot hide in code the
oracle and the code it checks share (issue 15)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import walle

ROOT = Path(walle.__file__).parent
STREAMS = ROOT / "streams"
NAIVE = "walle.streams.naive"


def _modules(path: Path) -> set[str]:
    """The walle modules ``path`` imports (``from walle.streams import naive`` included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            module = node.module or ""
            names.add(module)
            if module in ("walle", "walle.streams"):  # a submodule imported by name
                names.update(f"{module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.split(".")[0] == "walle"}


def test_no_engine_module_imports_the_reference_matcher():
    offenders = [
        str(path.relative_to(ROOT.parent))
        for path in sorted(ROOT.rglob("*.py"))
        if path != STREAMS / "naive.py" and NAIVE in _modules(path)
    ]
    assert offenders == []


def test_no_compiled_kernel_imports_the_reference_matcher():
    pattern = re.compile(r"^\s*(from|import)\s+walle\.streams(\.naive\b|\s+import\s+.*\bnaive\b)")
    offenders = [
        pyx.name
        for pyx in sorted((ROOT.parent / "cython_kernels").glob("*.pyx"))
        if any(pattern.match(line) for line in pyx.read_text().splitlines())
    ]
    assert offenders == []


def test_the_reference_matcher_imports_only_the_dsl_types():
    assert _modules(STREAMS / "naive.py") <= {"walle.streams.events", "walle.streams.patterns"}


def test_the_dsl_types_it_imports_stand_on_no_engine_module():
    """So the rule holds transitively (the package ``walle.streams`` itself aside)."""
    assert _modules(STREAMS / "events.py") <= {"walle.errors"}
    assert _modules(STREAMS / "patterns.py") <= {"walle.errors", "walle.streams.events"}


def test_the_trie_takes_its_value_types_from_the_engine_and_writes_its_own_within_rule():
    tree = ast.parse((STREAMS / "trie.py").read_text())
    assert "walle.streams.matches" in _modules(STREAMS / "trie.py")
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == "alive"]

"""The device database's layout rules: one owner of the schema, small modules, no reaching in."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import walle

WALLE = Path(walle.__file__).parent
DEVICE = WALLE / "streams" / "device"


def test_every_table_is_created_in_the_schema_module_only() -> None:
    """walle/streams holds every writer of the device database (log, runtime, uplink)."""
    creators = {
        str(path.relative_to(WALLE))
        for path in (WALLE / "streams").rglob("*.py")
        if re.search(r"CREATE TABLE", path.read_text(encoding="utf-8"))
    }
    assert creators == {"streams/device/schema.py"}


def test_no_device_module_is_over_500_lines() -> None:
    sizes = {path.name: len(path.read_text().splitlines()) for path in DEVICE.glob("*.py")}
    assert {name: lines for name, lines in sizes.items() if lines > 500} == {}


def test_the_runtime_uses_no_private_attribute_of_the_event_log() -> None:
    tree = ast.parse((DEVICE / "runtime.py").read_text())
    reached = {
        f"{ast.unparse(node.value)}.{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and re.search(r"\b(store|source)$", ast.unparse(node.value))
    }
    assert reached == set()

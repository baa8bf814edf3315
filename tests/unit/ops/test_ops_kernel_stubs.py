"""The compiled kernels' stubs (walle/_kernels/*.pyi) name what the built modules export.

mypy types every call into a compiled kernel from its ``.pyi`` alone, so a stub that lags
its ``.pyx`` (a kernel or method added, renamed or dropped) hides real mistakes. This checks
the names: module level, each class's public methods and attributes, and the parameter
names of the module functions (Cython gives those a signature; its classes' ``__init__``
has none to compare). ``python -m mypy.stubtest walle._kernels.ops_math`` checks the same
more slowly (a full mypy build), reporting Cython's pickling hooks as well.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import types
from collections.abc import Iterable
from pathlib import Path

import pytest

from walle.errors import BackendError
from walle.ops.backends.registry import required_backends

KERNELS = Path(__file__).parents[3] / "walle" / "_kernels"
MODULES = ("ops_conv", "ops_group", "ops_int8", "ops_math", "ops_raster", "trie_feed")


def _built(name: str) -> types.ModuleType:
    try:
        return importlib.import_module(f"walle._kernels.{name}")
    except ImportError as exc:
        if "cython" in required_backends():  # make test requires it: fail, never skip
            raise BackendError(f"walle._kernels.{name} is not built ({exc})") from exc
        pytest.skip(f"walle._kernels.{name} is not built")


def _stub(name: str) -> ast.Module:
    return ast.parse((KERNELS / f"{name}.pyi").read_text(), f"{name}.pyi")


def _public(names: Iterable[str]) -> set[str]:
    return {n for n in names if not n.startswith("_")}


def _declared(body: list[ast.stmt]) -> dict[str, ast.stmt]:
    """Public functions, classes and annotated names of a stub's module or class body."""
    found: dict[str, ast.stmt] = {}
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            found[node.name] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            found[node.target.id] = node
    return {n: found[n] for n in _public(found)}


def _exported(module: types.ModuleType) -> set[str]:
    """Public names the module defines: not the modules and classes it imports (``np``,
    trie_feed's ``Fire``)."""
    return {n for n, value in vars(module).items() if not n.startswith("_") and _own(module, value)}


def _own(module: types.ModuleType, value: object) -> bool:
    if isinstance(value, types.ModuleType):
        return False
    return not isinstance(value, type) or value.__module__ == module.__name__


@pytest.mark.parametrize("name", MODULES)
def test_ops_kernel_stub_names_what_the_module_exports(name: str) -> None:
    module = _built(name)
    assert set(_declared(_stub(name).body)) == _exported(module)


@pytest.mark.parametrize("name", MODULES)
def test_ops_kernel_stub_classes_name_their_methods(name: str) -> None:
    module = _built(name)
    for cls_name, node in _declared(_stub(name).body).items():
        if isinstance(node, ast.ClassDef):
            runtime = _public(vars(getattr(module, cls_name)))
            assert set(_declared(node.body)) == runtime, f"{name}.{cls_name}"


@pytest.mark.parametrize("name", MODULES)
def test_ops_kernel_stub_functions_take_the_modules_parameters(name: str) -> None:
    module = _built(name)
    for fn_name, node in _declared(_stub(name).body).items():
        if isinstance(node, ast.FunctionDef):
            params = [a.arg for a in (*node.args.posonlyargs, *node.args.args)]
            runtime = list(inspect.signature(getattr(module, fn_name)).parameters)
            assert params == runtime, f"{name}.{fn_name}"

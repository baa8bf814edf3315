"""The task container: installed tasks run concurrently, each isolated from the others.

Each task version is loaded from its install directory into its own module namespace
(modules are executed under a unique name and never registered in ``sys.modules``, so two
versions of one task, or two tasks with a ``main.py``, never share globals). Every call into
task code (import, health check, entry point) runs on its own daemon thread with a time
budget: an exception is caught and reported, a hang is abandoned after the budget (the
thread cannot be killed, but nothing waits on it and no pool is exhausted), so one bad
task never stops the runtime or the other tasks.

``TaskHost`` is what the agent needs from a device runtime; ``TaskContainer`` implements
it on its own, and ``walle.deploy.device_host.DeviceTaskHost`` implements it on a live
streams ``DeviceRuntime`` (a bundle's App joins the running engine).
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from walle.deploy.errors import HealthCheckError
from walle.deploy.manifest import MANIFEST_NAME, Manifest

_ids = itertools.count()


class TaskHost(Protocol):
    """Where the agent activates installed task versions (a device runtime)."""

    async def activate(self, name: str, version: int, path: Path) -> None:
        """Load ``path`` as the running version of task ``name``; raise HealthCheckError if it
        fails its first health check (the previous version must then stay in force)."""

    async def deactivate(self, name: str) -> None:
        """Stop running task ``name``."""


@dataclass(frozen=True)
class TaskResult:
    """The outcome of one call into a task: a value, or the error that replaced it."""

    task: str
    version: int
    ok: bool
    value: Any = None
    error: str = ""


@dataclass(frozen=True)
class _LoadedTask:
    version: int
    entry_points: dict[str, Callable[..., Any]]


async def call_with_budget(fn: Callable[..., Any], *args: Any, budget_s: float) -> Any:
    """Run ``fn(*args)`` on a fresh daemon thread; TimeoutError after ``budget_s`` seconds."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def _settle(ok: bool, value: Any) -> None:
        if not future.done():
            (future.set_result if ok else future.set_exception)(value)

    def _body() -> None:
        try:
            result = fn(*args)
        except BaseException as exc:  # contained: reported to the caller, never raised here
            loop.call_soon_threadsafe(_settle, False, exc)
        else:
            loop.call_soon_threadsafe(_settle, True, result)

    threading.Thread(
        target=_body, name=f"task-{getattr(fn, '__name__', 'call')}", daemon=True
    ).start()
    return await asyncio.wait_for(future, budget_s)


def _load_module(
    path: Path, name: str, version: int, rel: str, *, stable: bool = False
) -> ModuleType:
    """Execute ``path/rel`` as a fresh module, never registered in ``sys.modules``.

    ``stable`` gives the same module name on every load of one task version (plans built
    from it then keep their fingerprint across a restart); otherwise a counter makes it
    unique.
    """
    target = (path / rel).resolve()
    if not target.is_relative_to(path.resolve()):  # checked at verification too; never run
        raise HealthCheckError(f"task {name} v{version}: {rel} is outside the bundle at {path}")
    tag = "" if stable else f"{next(_ids)}_"
    unique = f"walle_task_{name}_v{version}_{tag}{Path(rel).stem}"
    spec = importlib.util.spec_from_file_location(unique, target)
    if spec is None or spec.loader is None:
        raise HealthCheckError(f"task {name} v{version}: cannot load {rel}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _resolve(
    path: Path, name: str, version: int, refs: dict[str, str]
) -> dict[str, Callable[..., Any]]:
    modules: dict[str, ModuleType] = {}
    resolved: dict[str, Callable[..., Any]] = {}
    for entry, ref in refs.items():
        rel, func = ref.split(":", 1)
        if rel not in modules:
            modules[rel] = _load_module(path, name, version, rel)
        target = getattr(modules[rel], func, None)
        if not callable(target):
            raise HealthCheckError(f"task {name} v{version}: {ref} is not a function")
        resolved[entry] = target
    return resolved


class TaskContainer:
    """Runs the active version of each task; ``budget_s`` bounds every call into task code."""

    def __init__(self, budget_s: float = 5.0):
        self.budget_s = budget_s
        self._tasks: dict[str, _LoadedTask] = {}

    @property
    def running(self) -> dict[str, int]:
        """Task name -> active version."""
        return {name: loaded.version for name, loaded in self._tasks.items()}

    async def activate(self, name: str, version: int, path: Path) -> None:
        """Load the version at ``path``, run its health check, then swap it in."""
        manifest = Manifest.model_validate_json((path / MANIFEST_NAME).read_bytes())
        refs = dict(manifest.entry_points)
        if manifest.health_check:
            refs["__health__"] = manifest.health_check
        try:
            entries = await call_with_budget(
                _resolve, path, name, version, refs, budget_s=self.budget_s
            )
            healthy = True
            if "__health__" in entries:
                healthy = await call_with_budget(entries.pop("__health__"), budget_s=self.budget_s)
        except TimeoutError as exc:
            raise HealthCheckError(
                f"task {name} v{version}: health check hung past {self.budget_s}s"
            ) from exc
        except HealthCheckError:
            raise
        except Exception as exc:
            raise HealthCheckError(f"task {name} v{version}: health check raised {exc!r}") from exc
        if not healthy:
            raise HealthCheckError(f"task {name} v{version}: health check returned {healthy!r}")
        self._tasks[name] = _LoadedTask(version=version, entry_points=entries)

    async def deactivate(self, name: str) -> None:
        """Stop running ``name`` (calls in flight finish or time out on their own)."""
        self._tasks.pop(name, None)

    async def run(self, name: str, payload: Any, entry: str = "main") -> TaskResult:
        """Call one task's entry point within the budget; errors become a failed result."""
        loaded = self._tasks[name]
        try:
            value = await call_with_budget(
                loaded.entry_points[entry], payload, budget_s=self.budget_s
            )
        except TimeoutError:
            return TaskResult(
                name, loaded.version, False, error=f"timed out after {self.budget_s}s"
            )
        except Exception as exc:
            return TaskResult(name, loaded.version, False, error=repr(exc))
        return TaskResult(name, loaded.version, True, value=value)

    async def run_all(self, payload: Any, entry: str = "main") -> list[TaskResult]:
        """Call every running task concurrently; one failing or hanging never stops the rest."""
        names = [n for n, t in self._tasks.items() if entry in t.entry_points]
        return list(await asyncio.gather(*(self.run(n, payload, entry) for n in names)))

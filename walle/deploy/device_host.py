"""Activation in the device runtime: an installed bundle's App runs in a live DeviceRuntime.

``DeviceTaskHost`` is the agent's ``TaskHost`` for a device that runs the streams engine.
A bundle whose manifest has an ``app`` entry point (``file.py:app``, naming a
``walle.streams.App``) is loaded into its own module namespace with a time budget (like the
task container), its health check runs, and then its plans are swapped into the running
engine (``Engine.add_task`` / ``remove_task``) under the event log's lock, so no event is
processed half by the old and half by the new version and nothing restarts: the events
appended after activation feed the new tasks; a rollback swaps the previous version's
plans back the same way. Bundles without an ``app`` entry point go to ``fallback`` (a
``TaskContainer``), if there is one.

What the swap does not keep: a replaced task's open windows (its state is dropped with
the plan). The engine checkpoint written after an activation carries the app's new
fingerprint, so a runtime restarted with only its base app would refuse it:
``open_device_host`` (what ``walle deploy agent --db`` uses) first adds the plans of every
installed app to the base app, then opens the runtime (the apps are loaded under stable
module names, so their plans' fingerprints do not change between loads), and the host
treats those versions as already running.

``follow_log`` is the loop of such a runtime: it processes whatever other writers (the
device's own app, ``walle run --db``) appended to the database's event log, under the
log's lock so that no swap lands in the middle of a batch.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from walle.deploy.container import TaskHost, _load_module, call_with_budget
from walle.deploy.errors import HealthCheckError
from walle.deploy.manifest import MANIFEST_NAME, Manifest
from walle.logging import get_logger

if TYPE_CHECKING:
    from walle.deploy.install import Installer
    from walle.streams.app import App
    from walle.streams.device.runtime import DeviceRuntime
    from walle.streams.plan import Plan

_log = get_logger("deploy.device_host")

#: The manifest entry point that names a bundle's App.
APP_ENTRY = "app"
#: The name of the runtime's base App when the device gives none (its feature-store rows).
DEFAULT_APP_NAME = "deployed"


class Adopted(NamedTuple):
    """An installed app whose plans were in the base app before the runtime opened."""

    version: int
    path: Path
    plans: tuple[str, ...]


def _load_app(path: Path, name: str, version: int, ref: str) -> Any:
    from walle.streams.app import App

    rel, attribute = ref.split(":", 1)
    app = getattr(_load_module(path, name, version, rel, stable=True), attribute, None)
    if not isinstance(app, App):
        raise HealthCheckError(f"task {name} v{version}: {ref} is not a walle.streams.App")
    if not app.plans:
        raise HealthCheckError(f"task {name} v{version}: app {app.name!r} declares no tasks")
    return app


def _health(path: Path, name: str, version: int, ref: str) -> Any:
    rel, func = ref.split(":", 1)
    check = getattr(_load_module(path, name, version, rel), func, None)
    if not callable(check):
        raise HealthCheckError(f"task {name} v{version}: health check {ref} is not a function")
    return check()


class DeviceTaskHost:
    """Activates bundles' apps inside ``runtime`` (live mode) without a restart.

    ``running`` maps each deployed task to its active version; ``plans`` to the names of
    the engine tasks it contributed.
    """

    def __init__(
        self,
        runtime: DeviceRuntime,
        *,
        budget_s: float = 5.0,
        fallback: TaskHost | None = None,
        adopted: dict[str, Adopted] | None = None,
    ):
        self.runtime = runtime
        self.budget_s = budget_s
        self.fallback = fallback
        adopted = adopted or {}
        self._active: dict[str, tuple[int, tuple[str, ...]]] = {
            name: (a.version, a.plans) for name, a in adopted.items()
        }
        self._paths: dict[str, Path] = {name: a.path for name, a in adopted.items()}
        self._delegated: set[str] = set()

    @property
    def running(self) -> dict[str, int]:
        """Deployed task -> active version (apps in the runtime only)."""
        return {name: version for name, (version, _) in self._active.items()}

    @property
    def plans(self) -> dict[str, tuple[str, ...]]:
        """Deployed task -> the engine task names its app contributed."""
        return {name: names for name, (_, names) in self._active.items()}

    async def activate(self, name: str, version: int, path: Path) -> None:
        """Load the app at ``path``, check its health, then swap its plans in."""
        if name in self._active and self._paths.get(name) == path:
            _log.info("already running in the runtime", task=name, version=version)
            return
        manifest = Manifest.model_validate_json((path / MANIFEST_NAME).read_bytes())
        ref = manifest.entry_points.get(APP_ENTRY)
        if ref is None:
            await self._delegate(name, version, path)
            return
        app = await self._guarded(name, version, _load_app, path, name, version, ref)
        if manifest.health_check:
            healthy = await self._guarded(
                name, version, _health, path, name, version, manifest.health_check
            )
            if healthy is not True:
                raise HealthCheckError(f"task {name} v{version}: health check returned {healthy!r}")
        await asyncio.to_thread(self._swap, name, version, app.plans)
        self._paths[name] = path
        if name in self._delegated and self.fallback is not None:
            self._delegated.discard(name)
            await self.fallback.deactivate(name)
        _log.info(
            "activated in the runtime",
            task=name,
            version=version,
            plans=",".join(p.name for p in app.plans),
        )

    async def deactivate(self, name: str) -> None:
        """Remove ``name``'s plans from the engine (or stop it in the fallback)."""
        if name in self._active:
            await asyncio.to_thread(self._swap, name, None, ())
            _log.info("removed from the runtime", task=name)
        self._paths.pop(name, None)
        if name in self._delegated and self.fallback is not None:
            self._delegated.discard(name)
            await self.fallback.deactivate(name)

    async def _delegate(self, name: str, version: int, path: Path) -> None:
        if self.fallback is None:
            raise HealthCheckError(
                f"task {name} v{version}: no {APP_ENTRY!r} entry point naming a walle.streams.App"
                " (and this device runtime has no task container for plain tasks)"
            )
        await self.fallback.activate(name, version, path)
        self._delegated.add(name)
        if name in self._active:
            await asyncio.to_thread(self._swap, name, None, ())
        self._paths.pop(name, None)
        _log.info("activated in the task container", task=name, version=version)

    async def _guarded(self, name: str, version: int, fn: Any, *args: Any) -> Any:
        try:
            return await call_with_budget(fn, *args, budget_s=self.budget_s)
        except TimeoutError as exc:
            raise HealthCheckError(
                f"task {name} v{version}: loading or health check hung past {self.budget_s}s"
            ) from exc
        except HealthCheckError:
            raise
        except Exception as exc:
            raise HealthCheckError(f"task {name} v{version}: {exc!r}") from exc

    def _swap(self, name: str, version: int | None, plans: tuple[Plan, ...]) -> None:
        """Replace ``name``'s plans in the engine atomically (all or none, under the lock)."""
        with self.runtime.store.lock:
            engine = self.runtime.engine
            _, owned = self._active.get(name, (0, ()))
            current = {plan.name: plan for plan in engine.app.plans}
            clash = sorted(p.name for p in plans if p.name in current and p.name not in owned)
            if clash:
                raise HealthCheckError(
                    f"task {name} v{version}: engine task names {clash} are already taken "
                    f"in app {engine.app.name!r}"
                )
            removed = [current[n] for n in owned if n in current]
            for plan in removed:
                engine.remove_task(plan.name)
            added: list[Plan] = []
            try:
                for plan in plans:
                    engine.add_task(plan)
                    added.append(plan)
            except Exception as exc:  # put the previous version back as it was
                for plan in added:
                    engine.remove_task(plan.name)
                for plan in removed:
                    engine.add_task(plan)
                raise HealthCheckError(
                    f"task {name} v{version}: cannot add its plans: {exc}"
                ) from exc
            if version is None:
                self._active.pop(name, None)
            else:
                self._active[name] = (version, tuple(p.name for p in plans))


def _adopt(app: App, installer: Installer, name: str) -> Adopted | None:
    """Add the active installed version of ``name`` to ``app``, if it is a loadable App."""
    record = installer.active(name)
    if record is None:
        return None
    path = installer.path_of(name, record)
    manifest = Manifest.model_validate_json((path / MANIFEST_NAME).read_bytes())
    ref = manifest.entry_points.get(APP_ENTRY)
    if ref is None:
        return None
    plans = _load_app(path, name, record.version, ref).plans
    taken = {plan.name for plan in app.plans}
    if any(plan.name in taken for plan in plans):
        return None
    for plan in plans:
        app.add(plan)
    return Adopted(record.version, path, tuple(plan.name for plan in plans))


def open_device_host(
    db_path: str | Path,
    installer: Installer,
    *,
    base_app: App | None = None,
    budget_s: float = 5.0,
    fallback: TaskHost | None = None,
) -> DeviceTaskHost:
    """A DeviceRuntime over ``db_path`` running ``base_app`` plus the installed apps.

    The installed apps' plans join the base app before the runtime restores its
    checkpoint (which was written with them); an app that no longer loads is left out (the
    agent's start then reverts it) and the runtime says why it cannot restore.
    """
    from walle.streams.app import App
    from walle.streams.device.runtime import DeviceRuntime

    app = base_app or App(DEFAULT_APP_NAME)
    adopted: dict[str, Adopted] = {}
    for name in installer.tasks():
        try:
            found = _adopt(app, installer, name)
        except Exception as exc:  # reported again, with the rollback, by the agent's start
            _log.warning("installed app not loaded", task=name, error=repr(exc))
            continue
        if found is not None:
            adopted[name] = found
            _log.info("installed app restored", task=name, version=found.version)
    runtime = DeviceRuntime(app, db_path)
    return DeviceTaskHost(runtime, budget_s=budget_s, fallback=fallback, adopted=adopted)


def _follow_step(runtime: DeviceRuntime, fingerprint: str) -> str:
    """Process new events of the log (or checkpoint a changed app); the fingerprint after."""
    with runtime.store.lock:
        if runtime.store.last_offset() > runtime.processed_offset:
            report = runtime.run()
            if report.outputs:
                _log.info(
                    "processed", events=report.events, outputs=report.outputs, to=report.to_offset
                )
        elif runtime.app.fingerprint != fingerprint:
            runtime.checkpoint()  # a restart then restores with the deployed plans
        return runtime.app.fingerprint


async def follow_log(runtime: DeviceRuntime, interval_s: float = 0.2) -> None:
    """Process what is appended to ``runtime``'s own event log, until cancelled."""
    fingerprint = ""
    while True:
        fingerprint = await asyncio.to_thread(_follow_step, runtime, fingerprint)
        await asyncio.sleep(interval_s)

"""One class per window kind, chosen once per task: every window configuration has its
kind, a configuration no kind runs is refused with the task's name (it used to run
silently with no outputs), and no window logic asks what kind of spec it has (issue 15)."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

import walle.streams.window_kinds as window_kinds_pkg
from walle.errors import PlanError
from walle.streams import (
    App,
    CountWindow,
    Engine,
    Hopping,
    LookBack,
    PageWindow,
    Session,
    Span,
    Tumbling,
    clicked,
    count,
    seq,
)
from walle.streams import windows as window_specs
from walle.streams.window_kinds import (
    KINDS,
    CountWindows,
    LookBackEvents,
    LookBackTime,
    PageVisits,
    SessionWindows,
    SpanWindows,
    TimeWindows,
    for_plan,
)
from walle.streams.windows import WindowSpec
from walle.testing import literal_events, run_app

KIND_OF = [
    (Tumbling(10), TimeWindows),
    (Hopping(10, 5), TimeWindows),
    (Session(3), SessionWindows),
    (CountWindow(2), CountWindows),
    (PageWindow("item"), PageVisits),
    (Span(), SpanWindows),
    (LookBack(events=3), LookBackEvents),
    (LookBack(ms=100), LookBackTime),
]


def _plan(spec: WindowSpec):
    trigger = seq(clicked("a"), clicked("b")) if spec.trigger_relative else None
    return App("k").stream("t", trigger=trigger).window(spec).aggregate(n=count())


@pytest.mark.parametrize(("spec", "kind"), KIND_OF, ids=lambda v: repr(v))
def test_each_window_configuration_runs_as_its_kind(spec, kind):
    assert type(for_plan(_plan(spec))) is kind


def test_every_window_configuration_has_a_kind():
    specs = {
        obj
        for obj in vars(window_specs).values()
        if isinstance(obj, type) and issubclass(obj, WindowSpec) and obj is not WindowSpec
    }
    assert specs == set(KINDS)


def test_a_window_no_kind_runs_is_refused_naming_the_task():
    @dataclass(frozen=True)
    class Sliding(WindowSpec):
        size_ms: int = 10

    app = App("k")
    app.stream("slide").window(Sliding()).aggregate(n=count())
    with pytest.raises(PlanError, match=r"task 'slide': no window kind runs .*Sliding"):
        Engine(app)


def test_a_subclass_of_a_configuration_runs_as_its_kind():
    @dataclass(frozen=True)
    class TenMs(Tumbling):
        size_ms: int = 10

    app = App("k")
    app.stream("n").window(TenMs()).aggregate(n=count())
    result = run_app(app, literal_events((1, "click", "a"), (4, "click", "a"), (25, "x", "a")))
    assert [(o.window, o.value) for o in result.outputs] == [("tenms:0-10", {"n": 2})]


def _isinstance_on_window_specs(path: Path) -> list[str]:
    """``isinstance(x, <a window configuration>)`` calls in ``path``."""
    spec_names = {cls.__name__ for cls in KINDS} | {"WindowSpec"}
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "isinstance":
            names = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
            if names & spec_names:
                found.append(f"{path.name}:{node.lineno}")
    return found


def test_no_window_logic_switches_on_the_kind_of_its_configuration():
    package = Path(window_kinds_pkg.__file__).parent
    engine = package.parent / "engine.py"
    modules = [*sorted(package.glob("*.py")), engine]
    assert [hit for path in modules for hit in _isinstance_on_window_specs(path)] == []


def test_adding_a_task_whose_window_no_kind_runs_leaves_the_engine_as_it_was():
    @dataclass(frozen=True)
    class Sliding(WindowSpec):
        size_ms: int = 10

    app = App("k")
    app.stream("n").window(Tumbling(10)).aggregate(n=count())
    engine = Engine(app)
    other = App("other")
    plan = other.stream("slide").window(Sliding()).aggregate(n=count())
    with pytest.raises(PlanError, match="task 'slide'"):
        engine.add_task(plan)
    assert [p.name for p in app.plans] == ["n"]
    result = engine.process_many(literal_events((1, "click", "a"), (25, "x", "a")))
    assert [(o.task, o.window) for o in result.outputs] == [("n", "tumbling:0-10")]

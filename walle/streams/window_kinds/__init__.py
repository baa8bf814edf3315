"""The window kinds: one class per kind of window, all with the interface of ``WindowKind``.

============================  =====================================  ======================
configuration (``windows``)   kind                                   module
============================  =====================================  ======================
``Tumbling``, ``Hopping``     ``TimeWindows``                        ``time_based``
``Session``                   ``SessionWindows``                     ``session``
``CountWindow``               ``CountWindows``                       ``count_based``
``PageWindow``                ``PageVisits``                         ``page``
``Span``                      ``SpanWindows``                        ``trigger_relative``
``LookBack``                  ``LookBackEvents``, ``LookBackTime``   ``trigger_relative``
============================  =====================================  ======================

``for_plan`` picks a task's kind once, when the engine installs the task; from then on the
engine calls ``assign``/``close`` (or ``fire``) without asking which kind it has. The steps
around the window (transforms, key, aggregate, outputs) are the kinds' shared ``Task``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from walle.errors import PlanError
from walle.streams.plan import Plan
from walle.streams.window_kinds.base import WindowKind, WindowState
from walle.streams.window_kinds.count_based import CountWindows
from walle.streams.window_kinds.page import PageVisits
from walle.streams.window_kinds.session import SessionWindows
from walle.streams.window_kinds.task import Task
from walle.streams.window_kinds.time_based import TimeWindows
from walle.streams.window_kinds.trigger_relative import (
    LookBackEvents,
    LookBackTime,
    SpanWindows,
    look_back,
)
from walle.streams.windows import (
    CountWindow,
    Hopping,
    LookBack,
    PageWindow,
    Session,
    Span,
    Tumbling,
    WindowSpec,
)

__all__ = [
    "KINDS",
    "CountWindows",
    "LookBackEvents",
    "LookBackTime",
    "PageVisits",
    "SessionWindows",
    "SpanWindows",
    "Task",
    "TimeWindows",
    "WindowKind",
    "WindowState",
    "for_plan",
]

#: window configuration -> what builds its kind from the configuration and the task
KINDS: dict[type[WindowSpec], Callable[[Any, Task], WindowKind]] = {
    Tumbling: TimeWindows,
    Hopping: TimeWindows,
    Session: SessionWindows,
    CountWindow: CountWindows,
    PageWindow: PageVisits,
    Span: SpanWindows,
    LookBack: look_back,
}


def for_plan(plan: Plan) -> WindowKind:
    """The window kind that runs ``plan``'s window (a subclass of a known spec runs as it).

    PlanError when no kind runs the plan's window configuration.
    """
    spec = plan.window.spec
    for cls in type(spec).__mro__:
        build = KINDS.get(cls)
        if build is not None:
            return build(spec, Task(plan))
    known = ", ".join(k.__name__ for k in KINDS)
    raise PlanError(
        f"task {plan.name!r}: no window kind runs {spec!r}; use one of {known} "
        "(or a subclass of one)"
    )

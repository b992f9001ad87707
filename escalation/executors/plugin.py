"""Executors from other packages, found through the ``hotpath.executors`` entry-point group.

A package ships an executor by declaring, in its ``pyproject.toml``::

    [project.entry-points."hotpath.executors"]
    ticket = "acme_hotpath.ticket:TicketExecutor"

The entry point names a factory (usually the class) called with the options from the config;
what it returns must satisfy :class:`~escalation.executors.base.Executor`: a ``str`` ``name``
and an ``async def execute(req)``. The catalogue refers to it as ``plugin:ticket``.

>>> try:
...     load_executor("no-such-executor-installed", "hotpath.tests.empty-group")
... except PluginError as e:
...     print(e)
executor plugin 'no-such-executor-installed': no entry point of that name in group 'hotpath.tests.empty-group' (none installed)
"""  # noqa: E501

from __future__ import annotations

import inspect
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from escalation.errors import PluginError
from escalation.executors.base import Executor

GROUP = "hotpath.executors"



def available(group: str = GROUP) -> list[str]:
    """Names of the installed executor plugins, sorted."""
    return sorted({ep.name for ep in entry_points(group=group)})


def _find(name: str, group: str) -> EntryPoint:
    found = list(entry_points(group=group, name=name))
    if not found:
        names = ", ".join(available(group)) or "none installed"
        raise PluginError(f"executor plugin {name!r}: no entry point of that name in group "
                          f"{group!r} ({names})")
    targets = sorted({ep.value for ep in found})
    if len(targets) > 1:
        # Two distributions claim the name: picking one would depend on sys.path order.
        raise PluginError(f"executor plugin {name!r}: defined more than once, as "
                          f"{', '.join(targets)}")
    return found[0]


def is_executor(obj: object) -> bool:
    """Whether ``obj`` satisfies the :class:`Executor` protocol at run time."""
    return isinstance(getattr(obj, "name", None), str) and inspect.iscoroutinefunction(
        getattr(obj, "execute", None))


def load_executor(name: str, group: str = GROUP, /, **options: Any) -> Executor:
    """Load plugin ``name`` and build it with ``options``; :class:`PluginError` says why not.

    ``name`` and ``group`` are positional-only, so a plugin may take options of those names.
    """
    ep = _find(name, group)
    try:
        factory = ep.load()
    except Exception as e:
        raise PluginError(f"executor plugin {name!r}: loading {ep.value!r} failed: "
                          f"{type(e).__name__}: {e}") from e
    if not callable(factory):
        raise PluginError(f"executor plugin {name!r}: {ep.value!r} is a "
                          f"{type(factory).__name__}, not a factory")
    try:
        executor = factory(**options)
    except Exception as e:
        raise PluginError(f"executor plugin {name!r}: building {ep.value!r} failed: "
                          f"{type(e).__name__}: {e}") from e
    if not is_executor(executor):
        raise PluginError(f"executor plugin {name!r}: {ep.value!r} gave a "
                          f"{type(executor).__name__}, which is not an Executor (needs a str "
                          "'name' and an async 'execute(req)')")
    result: Executor = executor
    return result

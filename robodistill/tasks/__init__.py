"""Task registry: built-in tasks and ``register()`` for tasks defined outside the package."""

from __future__ import annotations

import difflib
import importlib
from typing import TYPE_CHECKING

from robodistill.errors import ConfigError
from robodistill.tasks.base import Task

if TYPE_CHECKING:
    from robodistill.config import TaskConfig

_REGISTRY: dict[str, str | type[Task]] = {
    "pendulum": "robodistill.tasks.pendulum:Pendulum",
    "hopper": "robodistill.tasks.hopper:Hopper",
    "quadruped": "robodistill.tasks.quadruped:Quadruped",
    "go1": "robodistill.tasks.go1:Go1",
    "g1": "robodistill.tasks.g1:G1",
}


def register(name: str, task_cls: type[Task] | str) -> None:
    """Register a task class (or a lazy ``package.module:Class`` path) under ``name``."""
    _REGISTRY[name] = task_cls


def registered_tasks() -> list[str]:
    """Names of every registered task."""
    return sorted(_REGISTRY)


def load_entry_point(path: str) -> type[Task]:
    """Import ``package.module:Class`` and check it is a :class:`Task` subclass."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"task entry point {path!r} is not of the form package.module:Class")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"task entry point {path!r}: cannot import module {module_name!r} ({exc})") from None
    cls = getattr(module, attr, None)
    if cls is None:
        raise ConfigError(f"task entry point {path!r}: module {module_name!r} has no {attr!r}")
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise ConfigError(f"task entry point {path!r} is not a robodistill.tasks.Task subclass")
    return cls


def get_task_class(task: "TaskConfig | str") -> type[Task]:
    """The task class a config names (a registered name, or an entry point for a custom robot)."""
    name = task if isinstance(task, str) else task.name
    entry = None if isinstance(task, str) else task.entry_point
    if entry:
        return load_entry_point(entry)
    if name not in _REGISTRY:
        hint = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else f" (known: {', '.join(registered_tasks())})"
        raise ConfigError(f"unknown task {name!r}{extra}")
    target = _REGISTRY[name]
    if isinstance(target, str):
        target = load_entry_point(target)
        _REGISTRY[name] = target
    return target


__all__ = ["Task", "get_task_class", "register", "registered_tasks", "load_entry_point"]

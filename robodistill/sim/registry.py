"""Backends by name: the built-in ``mujoco`` (C engine), ``mjx`` (JAX) and ``warp`` (MuJoCo Warp through MJX),
and any a user registers.

Built-ins are imported when first asked for, so ``robodistill`` never imports JAX unless ``mjx`` or ``warp`` is
used.
"""

from __future__ import annotations

import importlib
from typing import Union

from robodistill.errors import ConfigError
from robodistill.sim.interface import Backend

_BACKENDS: dict[str, Union[type, str]] = {
    "mujoco": "robodistill.sim.mujoco_backend:MujocoBackend",
    "mjx": "robodistill.sim.mjx_backend:MjxBackend",
    "warp": "robodistill.sim.warp_backend:WarpBackend",
}


def register_backend(name: str, cls: type) -> None:
    """Make ``cls`` (a :class:`~robodistill.sim.interface.Backend`) available as ``env.backend: NAME``."""
    if not name or not isinstance(name, str):
        raise ValueError(f"a backend name must be a non-empty string, got {name!r}")
    _BACKENDS[name] = cls


def backend_names() -> list[str]:
    """The registered backends' names."""
    return sorted(_BACKENDS)


def get_backend(name: str) -> type[Backend]:
    """The backend class registered as ``name``; an unknown name is a :class:`ConfigError` naming the others."""
    entry = _BACKENDS.get(name)
    if entry is None:
        raise ConfigError(f"unknown backend {name!r}; registered: {', '.join(backend_names())}")
    if isinstance(entry, str):
        module, attr = entry.split(":")
        entry = _BACKENDS[name] = getattr(importlib.import_module(module), attr)
    return entry

"""Sensors a task declares and the model compiler adds (``mujoco.MjSpec``), so that a robot's MJCF loads unedited.

A Menagerie model has joints, actuators and sites but rarely the sensors a controller reads. A task lists what it
needs in ``Task.SENSORS``; :func:`add_sensors` adds each one that the model does not already have (by name) when
the task's model is compiled, on every backend alike, and the export ships the MJCF with them
(docs/custom_robot.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

import mujoco

from robodistill.errors import ConfigError

_OBJ = mujoco.mjtObj
_SENS = mujoco.mjtSensor


@dataclass(frozen=True)
class JointEncoders:
    """``<name>_pos`` and ``<name>_vel`` (jointpos, jointvel) for each actuated joint, named after its actuator
    (after the joint where the actuator has no name, as in gymnasium's models)."""


@dataclass(frozen=True)
class ActuatorTorques:
    """``<actuator>_torque`` (actuatorfrc) for each actuator: the torque the motor applies."""


@dataclass(frozen=True)
class Imu:
    """An IMU at a site: ``<name>_gyro`` (body rates), ``<name>_quat`` (orientation) and ``<name>_acc``."""

    site: str
    name: str = "imu"


@dataclass(frozen=True)
class Velocimeter:
    """``<name>`` (velocimeter): the site's linear velocity in its own frame, a privileged reading."""

    site: str
    name: str


@dataclass(frozen=True)
class SiteSensor:
    """One sensor of ``kind`` (a ``mujoco.mjtSensor`` name such as ``touch`` or ``framepos``) at a site."""

    kind: str
    site: str
    name: str


DeclaredSensor = Union[JointEncoders, ActuatorTorques, Imu, Velocimeter, SiteSensor]


def add_sensors(spec: mujoco.MjSpec, declared: tuple[DeclaredSensor, ...]) -> bool:
    """Add the declared sensors the spec lacks (by name); whether any was added."""
    have = {s.name for s in spec.sensors}
    sites = {s.name for s in spec.sites}
    added = False

    def add(name: str, kind: Any, objtype: Any, objname: str) -> None:
        nonlocal added
        if name in have:
            return
        if objtype == _OBJ.mjOBJ_SITE and objname not in sites:
            raise ConfigError(f"sensor {name!r}: the model has no site {objname!r}")
        spec.add_sensor(name=name, type=kind, objtype=objtype, objname=objname)
        have.add(name)
        added = True

    for entry in declared:
        if isinstance(entry, JointEncoders):
            for act in spec.actuators:
                add(f"{act.name or act.target}_pos", _SENS.mjSENS_JOINTPOS, _OBJ.mjOBJ_JOINT, act.target)
                add(f"{act.name or act.target}_vel", _SENS.mjSENS_JOINTVEL, _OBJ.mjOBJ_JOINT, act.target)
        elif isinstance(entry, ActuatorTorques):
            for act in spec.actuators:
                add(f"{act.name}_torque", _SENS.mjSENS_ACTUATORFRC, _OBJ.mjOBJ_ACTUATOR, act.name)
        elif isinstance(entry, Imu):
            add(f"{entry.name}_gyro", _SENS.mjSENS_GYRO, _OBJ.mjOBJ_SITE, entry.site)
            add(f"{entry.name}_quat", _SENS.mjSENS_FRAMEQUAT, _OBJ.mjOBJ_SITE, entry.site)
            add(f"{entry.name}_acc", _SENS.mjSENS_ACCELEROMETER, _OBJ.mjOBJ_SITE, entry.site)
        elif isinstance(entry, Velocimeter):
            add(entry.name, _SENS.mjSENS_VELOCIMETER, _OBJ.mjOBJ_SITE, entry.site)
        elif isinstance(entry, SiteSensor):
            kind = getattr(_SENS, f"mjSENS_{entry.kind.upper()}", None)
            if kind is None:
                raise ConfigError(f"sensor {entry.name!r}: unknown sensor kind {entry.kind!r}")
            add(entry.name, kind, _OBJ.mjOBJ_SITE, entry.site)
        else:
            raise TypeError(f"not a declared sensor: {entry!r}")
    return added

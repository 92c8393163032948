"""Compiling a task's model: the MJCF, the task's ids, its observation layout and action mapping (every backend)."""

from __future__ import annotations

from typing import NamedTuple

import mujoco
import numpy as np

from robodistill.errors import ConfigError
from robodistill.tasks.base import Task
from robodistill.tasks.observation import ObservationLayout, build_layout


def load_model(task: Task) -> mujoco.MjModel:
    """Compile the task's MJCF, turning a missing or broken file into a one-line :class:`ConfigError`."""
    path = task.mjcf_path
    if not path.is_file():
        raise ConfigError(f"MJCF file not found: {path}")
    try:
        return mujoco.MjModel.from_xml_path(str(path))
    except ValueError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "compile error"
        raise ConfigError(f"MJCF {path} does not compile: {first}") from None


class CompiledTask(NamedTuple):
    """A task's compiled model and the static facts every backend derives from it."""

    model: mujoco.MjModel
    layout: ObservationLayout
    action_offset: np.ndarray  # [A]
    action_scale: np.ndarray  # [A]
    dt: float  # control period, s


def compile_task(task: Task) -> CompiledTask:
    """Compile the MJCF, bind the task's ids and resolve its observation terms and action mapping."""
    model = load_model(task)
    task.bind(model)
    offset, scale = task.action_mapping(model)
    return CompiledTask(model, build_layout(task, model), offset, scale,
                        float(model.opt.timestep) * task.decimation)

"""Compiling a task's model: the MJCF, the task's ids, its observation layout and action mapping (every backend)."""

from __future__ import annotations

from typing import NamedTuple

import mujoco
import numpy as np

from robodistill.errors import ConfigError
from robodistill.tasks.base import Task
from robodistill.tasks.observation import ObservationLayout, build_layout


def load_spec(task: Task) -> mujoco.MjSpec:
    """Parse the task's MJCF into an editable spec, turning a missing or broken file into a one-line ConfigError."""
    path = task.mjcf_path
    if not path.is_file():
        raise ConfigError(f"MJCF file not found: {path}")
    try:
        return mujoco.MjSpec.from_file(str(path))
    except ValueError as exc:
        raise ConfigError(f"MJCF {path} does not compile: {_first_line(exc)}") from None


def edited_spec(task: Task) -> tuple[mujoco.MjSpec, bool]:
    """The task's model as it runs: the MJCF with the task's edits (:meth:`Task.edit_spec`), and whether there were
    any (the export then ships the edited MJCF instead of the file)."""
    spec = load_spec(task)
    return spec, task.edit_spec(spec)


def load_model(task: Task) -> mujoco.MjModel:
    """Compile the task's model (its MJCF with the task's edits) into an ``MjModel``."""
    spec, _ = edited_spec(task)
    try:
        return spec.compile()
    except ValueError as exc:
        raise ConfigError(f"MJCF {task.mjcf_path} does not compile: {_first_line(exc)}") from None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "compile error"


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

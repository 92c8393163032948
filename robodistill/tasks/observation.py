"""Observation assembly from declared terms: one pure function for every task and every backend."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np

from robodistill.errors import ConfigError
from robodistill.tasks.base import (
    Array, CommandTerm, ExtraTerm, ParamsTerm, PrevActionTerm, SensorTerm, SimArrays, Task, Term,
    transform_sensor, transformed_dim,
)


@dataclass(frozen=True)
class TermSlot:
    """Where a term reads from (sensor address and width) and how wide its output is."""

    term: Term
    adr: int
    sensor_dim: int
    out_dim: int
    labels: tuple[str, ...]


@dataclass(frozen=True)
class ObservationLayout:
    """Resolved observation terms of a task on a compiled model: static ints only, safe under ``jit``."""

    proprio: tuple[TermSlot, ...]
    privileged_extra: tuple[TermSlot, ...]

    @property
    def proprio_dim(self) -> int:
        """Width of the proprio group."""
        return sum(s.out_dim for s in self.proprio)

    @property
    def privileged_dim(self) -> int:
        """Width of the privileged group (noise-free proprio terms, then the privileged extras)."""
        return self.proprio_dim + sum(s.out_dim for s in self.privileged_extra)

    @functools.cached_property
    def proprio_plan(self) -> tuple["TermSlot | slice | np.ndarray", ...]:
        """How ``observe`` reads the proprio terms (see :func:`_fused`)."""
        return _fused(self.proprio)

    @functools.cached_property
    def privileged_plan(self) -> tuple["TermSlot | slice | np.ndarray", ...]:
        """How ``observe`` reads the privileged extras (see :func:`_fused`)."""
        return _fused(self.privileged_extra)

    @functools.cached_property
    def noise_std(self) -> np.ndarray:
        """Per-entry sensor noise std of the proprio group ``[Dp]`` (0 for non-sensor terms)."""
        return np.array([s.term.noise_std if isinstance(s.term, SensorTerm) else 0.0
                         for s in self.proprio for _ in range(s.out_dim)])

    def labels(self, group: str) -> list[str]:
        """Names of each entry of ``group`` ("proprio" or "privileged"), in order."""
        slots = self.proprio if group == "proprio" else self.proprio + self.privileged_extra
        return [label for s in slots for label in s.labels]

    def describe_proprio(self) -> list[dict[str, Any]]:
        """The proprio terms as plain data (for the ONNX metadata and the deploy kit)."""
        out = []
        for s in self.proprio:
            if isinstance(s.term, SensorTerm):
                out.append({"kind": "sensor", "sensor": s.term.sensor, "transform": s.term.transform,
                            "dim": s.out_dim, "sensor_dim": s.sensor_dim, "noise_std": s.term.noise_std})
            elif isinstance(s.term, PrevActionTerm):
                out.append({"kind": "prev_action", "dim": s.out_dim})
            elif isinstance(s.term, CommandTerm):
                out.append({"kind": "command", "dim": s.out_dim})
        return out


def _slot(term: Term, model: mujoco.MjModel, task: Task, action_dim: int) -> TermSlot:
    if isinstance(term, SensorTerm):
        sid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SENSOR, term.sensor)
        if sid < 0:
            raise ConfigError(f"task {task.name!r}: observation names sensor {term.sensor!r}, "
                              f"which the MJCF {task.mjcf_path} does not define")
        dim = int(model.sensor_dim[sid])
        if term.transform == "projected_gravity" and dim != 4:
            raise ConfigError(f"sensor {term.sensor!r}: projected_gravity needs a framequat sensor (4 values)")
        out = transformed_dim(dim, term.transform)
        return TermSlot(term, int(model.sensor_adr[sid]), dim, out, tuple(term.labels(dim)))
    if isinstance(term, PrevActionTerm):
        return TermSlot(term, 0, 0, action_dim, tuple(f"prev_action[{i}]" for i in range(action_dim)))
    if isinstance(term, CommandTerm):
        return TermSlot(term, 0, 0, task.command_dim, tuple(f"command[{i}]" for i in range(task.command_dim)))
    if isinstance(term, ParamsTerm):
        return TermSlot(term, 0, 0, len(task.observed_params), tuple(f"param.{p}" for p in task.observed_params))
    if isinstance(term, ExtraTerm):
        return TermSlot(term, 0, 0, term.dim, tuple(f"{term.name}[{i}]" for i in range(term.dim)))
    raise TypeError(f"unknown observation term {term!r}")


def build_layout(task: Task, model: mujoco.MjModel) -> ObservationLayout:
    """Resolve the task's declared terms against the compiled model."""
    for term in task.proprio_terms:
        if isinstance(term, (ParamsTerm, ExtraTerm)):
            raise ConfigError(f"task {task.name!r}: {type(term).__name__} is privileged; it cannot be proprio")
    return ObservationLayout(
        proprio=tuple(_slot(t, model, task, model.nu) for t in task.proprio_terms),
        privileged_extra=tuple(_slot(t, model, task, model.nu) for t in task.privileged_terms),
    )


def _term_value(slot: TermSlot, task: Task, sim: SimArrays, prev_action: Array, command: Array,
                params: dict[str, Array], xp: Any) -> Array:
    term = slot.term
    if isinstance(term, SensorTerm):
        values = sim.sensordata[:, slot.adr:slot.adr + slot.sensor_dim]
        return transform_sensor(values, term.transform, xp)
    if isinstance(term, PrevActionTerm):
        return prev_action
    if isinstance(term, CommandTerm):
        return command
    if isinstance(term, ParamsTerm):
        return task.normalized_params(params, xp)
    return task.extra_observation(term.name, sim, params, xp)


def _fused(slots: tuple[TermSlot, ...]) -> tuple[TermSlot | slice | np.ndarray, ...]:
    """``slots`` with each run of untransformed sensor terms merged into one read of ``sensordata`` columns.

    A run whose sensors are adjacent in ``sensordata`` becomes a slice (a view), any other run an index array:
    one array operation per run instead of one per sensor.
    """
    plan: list[TermSlot | slice | np.ndarray] = []
    run: list[int] = []

    def close_run() -> None:
        if run:
            contiguous = run == list(range(run[0], run[0] + len(run)))
            plan.append(slice(run[0], run[0] + len(run)) if contiguous else np.array(run))
            run.clear()

    for s in slots:
        if isinstance(s.term, SensorTerm) and s.term.transform == "identity":
            run.extend(range(s.adr, s.adr + s.sensor_dim))
        else:
            close_run()
            plan.append(s)
    close_run()
    return tuple(plan)


def _group_values(plan: tuple[TermSlot | slice | np.ndarray, ...], task: Task, sim: SimArrays, prev_action: Array,
                  command: Array, params: dict[str, Array], xp: Any) -> list[Array]:
    return [sim.sensordata[:, part] if not isinstance(part, TermSlot)
            else _term_value(part, task, sim, prev_action, command, params, xp) for part in plan]


def observe(layout: ObservationLayout, task: Task, sim: SimArrays, prev_action: Array, command: Array,
            params: dict[str, Array], noise: Array | None, xp: Any) -> tuple[Array, Array]:
    """Assemble ``(proprio [B, Dp], privileged [B, Dq])``; ``noise`` is standard normal ``[B, Dp]`` or None."""
    clean = _group_values(layout.proprio_plan, task, sim, prev_action, command, params, xp)
    extra = _group_values(layout.privileged_plan, task, sim, prev_action, command, params, xp)
    clean_proprio = xp.concatenate(clean, axis=-1)
    privileged = xp.concatenate([clean_proprio] + extra, axis=-1) if extra else clean_proprio
    proprio = clean_proprio
    if noise is not None:
        proprio = clean_proprio + noise * xp.asarray(layout.noise_std, dtype=clean_proprio.dtype)
    return proprio, privileged


def noise_std_vector(layout: ObservationLayout) -> list[float]:
    """Per-entry sensor noise std of the proprio group (0 for non-sensor terms)."""
    return layout.noise_std.tolist()

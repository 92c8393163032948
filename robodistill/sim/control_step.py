"""The task's side of a control step, written once for every backend as pure functions over an array namespace.

A backend owns only the physics: it calls :func:`before_physics`, steps its simulations ``decimation`` times at
the returned ``ctrl``, detects faults its own way, then calls :func:`after_physics` and :func:`observe_step`.
``xp`` is ``numpy`` on the C engine and ``jax.numpy`` (under ``jit``) on MJX; docs/design.md decision 1.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from robodistill.tasks.base import SimArrays, Task
from robodistill.tasks.observation import ObservationLayout, observe

Array = Any


class ControlInput(NamedTuple):
    """What the physics needs for one control step."""

    action: Array  # [B, A] the policy's action, NaN-free and clipped to [-1, 1]
    ctrl: Array  # [B, nu] actuator units, after the task's action hook (e.g. latency)
    qvel: Array  # [B, nv] velocities to start from (the episode's push added at its step)


class StepOutcome(NamedTuple):
    """What the task makes of the state the physics reached."""

    reward: Array  # [B] zero where the physics faulted
    terminated: Array  # [B] bool: the task's termination, or a fault
    truncated: Array  # [B] bool: episode length or out of bounds, never where terminated
    steps: Array  # [B] control steps into the episode, this one counted
    reward_terms: dict[str, Array]  # name -> [B] each term's share of the reward (garbage where ``fault``)


def before_physics(task: Task, action: Array, prev_action: Array, steps: Array, qvel: Array,
                   params: dict[str, Array], action_offset: Array, action_scale: Array, xp: Any) -> ControlInput:
    """Clip the action, apply the task's action hook and velocity kick, map to actuator units."""
    action = xp.clip(xp.nan_to_num(action, nan=0.0), -1.0, 1.0)
    applied = task.applied_action(action, prev_action, params, xp)
    kick = task.velocity_kick(steps, qvel, params, xp)
    if kick is not None:
        qvel = qvel + kick
    return ControlInput(action, action_offset + action_scale * applied, qvel)


def after_physics(task: Task, sim: SimArrays, action: Array, prev_action: Array, command: Array,
                  params: dict[str, Array], steps: Array, fault: Array, xp: Any) -> StepOutcome:
    """Reward (and its weighted terms), termination and truncation of the reached state; a faulted environment
    terminates with reward 0."""
    weighted = task.weighted_reward_terms(task.reward_terms(sim, action, prev_action, command, xp))
    reward = xp.where(fault, 0.0, task.combine_reward(weighted, sim, command, xp))
    terminated = xp.asarray(task.terminated(sim, command, xp), dtype=bool) | fault
    steps = steps + 1
    truncated = steps >= task.episode_length
    left = task.out_of_bounds(sim, params, xp)
    if left is not None:
        truncated = truncated | xp.asarray(left, dtype=bool)
    return StepOutcome(reward, terminated, truncated & ~terminated, steps, weighted)


def observe_step(layout: ObservationLayout, task: Task, sim: SimArrays, prev_action: Array, command: Array,
                 params: dict[str, Array], noise: Array | None, xp: Any) -> tuple[Array, Array]:
    """``(proprio [B, Dp], privileged [B, Dq])`` with non-finite entries (a diverged simulation's) set to zero."""
    proprio, privileged = observe(layout, task, sim, prev_action, command, params, noise, xp)
    return finite(proprio, xp), finite(privileged, xp)


def finite(x: Array, xp: Any) -> Array:
    """``x`` with NaN and infinities replaced by zero."""
    return xp.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)

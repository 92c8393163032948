"""Pendulum: torque-limited swing-up and balance of a single pole with randomized physics.

The student senses only the hinge angle (sin, cos) and its previous action: it must infer the angular velocity
and the pole's mass, length, damping and motor strength from history. The teacher sees them all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mujoco
import numpy as np

from robodistill.tasks.base import (
    Array, ParamSpec, ParamsTerm, PrevActionTerm, SensorTerm, SimArrays, Task, index_set, wrap_angle,
)

ASSETS = Path(__file__).resolve().parents[2] / "assets"


class Pendulum(Task):
    """Swing the pole up (qpos = 0) and hold it there, with torque too weak to lift it directly."""

    name = "pendulum"
    mjcf = ASSETS / "pendulum.xml"
    episode_length = 200  # control steps of 0.05 s: 10 s
    REWARD_SCALES = {"angle": -1.0, "velocity": -0.1, "torque": -0.001}  # gymnasium's cost; task.reward_scales
    decimation = 5
    proprio_terms = (SensorTerm("hinge_pos", transform="sincos"), PrevActionTerm())
    privileged_terms = (SensorTerm("hinge_vel"), ParamsTerm())
    params = {
        "pole_mass": ParamSpec(1.0, 0.7, 1.3, "pole mass, kg"),
        "pole_length": ParamSpec(1.0, 0.8, 1.2, "pole length, m (inertia and centre of mass follow)"),
        "joint_damping": ParamSpec(0.05, 0.0, 0.1, "hinge damping, N m s/rad"),
        "motor_strength": ParamSpec(1.0, 0.8, 1.2, "scale of the motor's peak torque"),
    }
    model_fields = ("body_mass", "body_ipos", "body_inertia", "geom_pos", "geom_size", "dof_damping",
                    "actuator_gear")

    def bind(self, model: Any) -> None:
        """Record the pole's body and geom ids."""
        self._pole = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "pole")
        self._geom = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "pole")

    def initial_state(self, rng: np.random.Generator, n: int, qpos0: np.ndarray,
                      nv: int) -> tuple[np.ndarray, np.ndarray]:
        """Any angle, a small angular velocity."""
        return rng.uniform(-np.pi, np.pi, size=(n, 1)), rng.uniform(-1.0, 1.0, size=(n, 1))

    def apply_params(self, nominal: dict[str, Array], params: dict[str, Array], xp: Any) -> dict[str, Array]:
        """Mass, length (thin-rod inertia, centre of mass at half length), damping and gear per environment."""
        b, g = self._pole, self._geom
        n = params["pole_mass"].shape[0]
        mass, length = params["pole_mass"], params["pole_length"]
        tile = lambda a: xp.broadcast_to(a, (n,) + a.shape)  # noqa: E731
        rod = mass * length**2 / 12.0
        inertia = xp.stack([rod, rod, 1e-4 * mass], axis=-1)  # [B, 3]
        half = xp.stack([0.0 * length, 0.0 * length, 0.5 * length], axis=-1)  # [B, 3]
        size = xp.stack([0.0 * length + nominal["geom_size"][g, 0], 0.5 * length, 0.0 * length], axis=-1)
        gear = index_set(tile(nominal["actuator_gear"]), (slice(None), 0, 0),
                         nominal["actuator_gear"][0, 0] * params["motor_strength"])
        return {
            "body_mass": index_set(tile(nominal["body_mass"]), (slice(None), b), mass),
            "body_ipos": index_set(tile(nominal["body_ipos"]), (slice(None), b), half),
            "body_inertia": index_set(tile(nominal["body_inertia"]), (slice(None), b), inertia),
            "geom_pos": index_set(tile(nominal["geom_pos"]), (slice(None), g), half),
            "geom_size": index_set(tile(nominal["geom_size"]), (slice(None), g), size),
            "dof_damping": index_set(tile(nominal["dof_damping"]), (slice(None), 0), params["joint_damping"]),
            "actuator_gear": gear,
        }

    def reward_terms(self, sim: SimArrays, action: Array, prev_action: Array, command: Array,
                     xp: Any) -> dict[str, Array]:
        """Gymnasium's pendulum cost terms: squared angle from upright, angular velocity and torque."""
        angle = wrap_angle(sim.qpos[:, 0], xp)
        torque = 2.0 * action[:, 0]
        return {"angle": angle**2, "velocity": sim.qvel[:, 0] ** 2, "torque": torque**2}

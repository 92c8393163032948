"""Hopper: a planar one-legged robot that hops forward as fast as it can without falling.

Reward and termination follow gymnasium's Hopper-v5 (forward velocity + alive bonus − control cost; the episode
ends when the torso drops below 0.7 m or pitches beyond 0.2 rad). Per episode the ground friction, the link
masses, the motor strength and the joint damping are resampled. The student senses its joint encoders, the
torso pitch and pitch rate (an IMU) and its previous action; the teacher also sees the torso's linear velocity
and height, the foot's contact force and the randomized parameters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mujoco
import numpy as np

from robodistill.tasks.base import (
    Array, ParamSpec, ParamsTerm, PrevActionTerm, SensorTerm, SimArrays, Task, index_set,
)

ASSETS = Path(__file__).resolve().parents[2] / "assets"


class Hopper(Task):
    """Hop forward (+x) on one leg; gymnasium-style reward, early termination on falling."""

    name = "hopper"
    mjcf = ASSETS / "hopper.xml"
    episode_length = 500  # control steps of 0.02 s: 10 s
    decimation = 4
    proprio_terms = (
        SensorTerm("thigh_pos", noise_std=0.01), SensorTerm("leg_pos", noise_std=0.01),
        SensorTerm("foot_pos", noise_std=0.01),
        SensorTerm("thigh_vel", noise_std=0.1), SensorTerm("leg_vel", noise_std=0.1),
        SensorTerm("foot_vel", noise_std=0.1),
        SensorTerm("imu_pitch", noise_std=0.01), SensorTerm("imu_pitch_rate", noise_std=0.05),
        PrevActionTerm(),
    )
    privileged_terms = (SensorTerm("torso_vx"), SensorTerm("torso_vz"), SensorTerm("torso_height"),
                        SensorTerm("foot_touch"), ParamsTerm())
    params = {
        "friction": ParamSpec(1.0, 0.6, 1.5, "sliding friction of every geom (ground and links)"),
        "mass_scale": ParamSpec(1.0, 0.8, 1.2, "scale of every link's mass and inertia"),
        "motor_strength": ParamSpec(1.0, 0.8, 1.2, "scale of the motors' gear (peak torque)"),
        "joint_damping": ParamSpec(1.0, 0.5, 1.5, "damping of the thigh, leg and foot joints, N m s/rad"),
    }
    model_fields = ("geom_friction", "body_mass", "body_inertia", "actuator_gear", "dof_damping")

    # reward and termination (gymnasium Hopper-v5 defaults); override the scales with task.reward_scales
    REWARD_SCALES = {"forward": 1.0, "healthy": 1.0, "ctrl": -1e-3}
    MIN_HEIGHT = 0.7
    MAX_PITCH = 0.2
    MAX_STATE = 100.0
    RESET_NOISE = 5e-3

    def bind(self, model: Any) -> None:
        """Record the dof addresses of the actuated joints."""
        self._act_dofs = np.array([model.jnt_dofadr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, j)]
                                   for j in ("thigh", "leg", "foot")])

    def initial_state(self, rng: np.random.Generator, n: int, qpos0: np.ndarray,
                      nv: int) -> tuple[np.ndarray, np.ndarray]:
        """The standing pose and rest, each perturbed by uniform noise of ±5e-3."""
        qpos = qpos0[None, :] + rng.uniform(-self.RESET_NOISE, self.RESET_NOISE, size=(n, qpos0.shape[0]))
        qvel = rng.uniform(-self.RESET_NOISE, self.RESET_NOISE, size=(n, nv))
        return qpos, qvel

    def apply_params(self, nominal: dict[str, Array], params: dict[str, Array], xp: Any) -> dict[str, Array]:
        """Friction of every geom, scaled masses/inertias, scaled gears and the actuated joints' damping."""
        n = params["friction"].shape[0]
        tile = lambda a: xp.broadcast_to(a, (n,) + a.shape)  # noqa: E731
        friction = index_set(tile(nominal["geom_friction"]), (slice(None), slice(None), 0),
                             params["friction"][:, None])
        scale = params["mass_scale"]
        gear = index_set(tile(nominal["actuator_gear"]), (slice(None), slice(None), 0),
                         nominal["actuator_gear"][None, :, 0] * params["motor_strength"][:, None])
        damping = index_set(tile(nominal["dof_damping"]), (slice(None), self._act_dofs),
                            params["joint_damping"][:, None])
        return {
            "geom_friction": friction,
            "body_mass": nominal["body_mass"][None, :] * scale[:, None],
            "body_inertia": nominal["body_inertia"][None, :, :] * scale[:, None, None],
            "actuator_gear": gear,
            "dof_damping": damping,
        }

    def _healthy(self, sim: SimArrays, xp: Any) -> Array:
        height, pitch = sim.qpos[:, 1], sim.qpos[:, 2]
        state = xp.concatenate([sim.qpos[:, 2:], sim.qvel], axis=-1)
        return ((height > self.MIN_HEIGHT) & (xp.abs(pitch) < self.MAX_PITCH)
                & xp.all(xp.abs(state) < self.MAX_STATE, axis=-1))

    def reward_terms(self, sim: SimArrays, action: Array, prev_action: Array, command: Array,
                     xp: Any) -> dict[str, Array]:
        """Forward velocity of the torso, being healthy (alive bonus), and the control cost's squared actions."""
        return {"forward": sim.qvel[:, 0], "healthy": self._healthy(sim, xp) * 1.0,
                "ctrl": xp.sum(action**2, axis=-1)}

    def terminated(self, sim: SimArrays, command: Array, xp: Any) -> Array:
        """The torso is too low, pitched too far, or the state blew up."""
        return ~self._healthy(sim, xp)

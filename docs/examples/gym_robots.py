"""Robots from outside this repository, brought in unedited: gymnasium's Walker2d, Hopper, Ant, Swimmer and
HalfCheetah MJCF files.

The models are the files gymnasium installs (``gymnasium/envs/mujoco/assets``; gymnasium comes with
Stable-Baselines3). They have joints and motors but no sensors, so each task declares what a controller reads
and the compiler adds it (docs/custom_robot.md): joint encoders for the actuated joints, an IMU at a site on the
torso, and, for the teacher only, the torso's velocity and height (the swimmer's heading instead; never the x
position, which grows without bound as the robot runs: a teacher that reads it acts on where it is, which no
student can know). Reward and termination follow gymnasium's v5 tasks; per episode the friction, the link
masses and the motor strength are resampled.

Name them in a config with ``task.entry_point: gym_robots:Walker2d`` (``Hopper``, ``Ant``, ``Swimmer``, ``HalfCheetah``;
this folder on ``PYTHONPATH``); ``walker2d.yaml``, ``hopper.yaml``, ``ant.yaml``, ``swimmer.yaml`` and
``half_cheetah.yaml`` here train their teachers and leave ``student`` and ``distill`` at the package defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import gymnasium
import numpy as np

from robodistill.tasks.base import (
    Array, ExtraTerm, ParamSpec, ParamsTerm, PrevActionTerm, SensorTerm, SimArrays, Task, Term, index_set,
)
from robodistill.tasks.sensors import Imu, JointEncoders, Velocimeter

GYM_ASSETS = Path(gymnasium.__file__).parent / "envs" / "mujoco" / "assets"


def proprio_terms_for(joints: tuple[str, ...]) -> tuple[Term, ...]:
    """Noisy joint encoders (as the declared ``JointEncoders`` name them), the IMU (body rates, gravity in the
    torso frame) and the last action."""
    return (*(SensorTerm(f"{j}_pos", noise_std=0.01) for j in joints),
            *(SensorTerm(f"{j}_vel", noise_std=0.1) for j in joints),
            SensorTerm("imu_gyro", noise_std=0.05),
            SensorTerm("imu_quat", transform="projected_gravity", noise_std=0.01), PrevActionTerm())


class GymRobot(Task):
    """A gymnasium locomotion robot whose root body is ``torso``: run forward along +x without falling."""

    SENSORS = (JointEncoders(), Imu(site="imu"), Velocimeter(site="imu", name="torso_vel"))
    privileged_terms = (SensorTerm("torso_vel"), ExtraTerm("torso_height", 1), ParamsTerm())
    params = {
        "friction": ParamSpec(1.0, 0.6, 1.4, "scale of every geom's sliding friction"),
        "mass_scale": ParamSpec(1.0, 0.8, 1.2, "scale of every link's mass and inertia"),
        "motor_strength": ParamSpec(1.0, 0.8, 1.2, "scale of the motors' gear (peak torque)"),
    }
    model_fields = ("geom_friction", "body_mass", "body_inertia", "actuator_gear")
    REWARD_SCALES: ClassVar[dict[str, float]] = {"forward": 1.0, "healthy": 0.0, "ctrl": -0.1}
    RESET_NOISE = (0.1, 0.1)  # scales on qpos (uniform) and qvel (normal, or uniform: UNIFORM_VELOCITY_NOISE)
    UNIFORM_VELOCITY_NOISE = False
    HEIGHT_QPOS = 1  # the torso height's qpos entry: the root's z slide (planar robots) or z (a free joint: 2)
    HEIGHT_RANGE: ClassVar[tuple[float, float] | None] = None  # m; outside it the robot has fallen
    MAX_PITCH: ClassVar[float | None] = None  # rad, planar robots' ``rooty``
    MAX_SPEED = 1e3  # rad/s or m/s on any joint; above it the state has blown up

    def edit_spec(self, spec: Any) -> bool:
        """The IMU's site at the torso's origin; then the declared sensors (:meth:`Task.edit_spec`)."""
        spec.body("torso").add_site(name="imu", size=[0.01, 0, 0])
        super().edit_spec(spec)
        return True

    def extra_observation(self, name: str, sim: SimArrays, params: dict[str, Array], xp: Any) -> Array:
        """``torso_height`` ``[B, 1]``."""
        if name != "torso_height":
            return super().extra_observation(name, sim, params, xp)
        return sim.qpos[:, self.HEIGHT_QPOS:self.HEIGHT_QPOS + 1]

    def initial_state(self, rng: np.random.Generator, n: int, qpos0: np.ndarray,
                      nv: int) -> tuple[np.ndarray, np.ndarray]:
        """The model's rest pose perturbed as gymnasium does: uniform on positions, normal (or uniform) on
        velocities."""
        pos_noise, vel_noise = self.RESET_NOISE
        qpos = qpos0[None, :] + rng.uniform(-pos_noise, pos_noise, size=(n, qpos0.shape[0]))
        if self.UNIFORM_VELOCITY_NOISE:
            return qpos, rng.uniform(-vel_noise, vel_noise, size=(n, nv))
        return qpos, vel_noise * rng.standard_normal((n, nv))

    def apply_params(self, nominal: dict[str, Array], params: dict[str, Array], xp: Any) -> dict[str, Array]:
        """Friction scale on every geom, scaled masses and inertias, scaled gears."""
        n = params["friction"].shape[0]
        tile = lambda a: xp.broadcast_to(a, (n,) + a.shape)  # noqa: E731
        friction = index_set(tile(nominal["geom_friction"]), (slice(None), slice(None), 0),
                             nominal["geom_friction"][None, :, 0] * params["friction"][:, None])
        gear = index_set(tile(nominal["actuator_gear"]), (slice(None), slice(None), 0),
                         nominal["actuator_gear"][None, :, 0] * params["motor_strength"][:, None])
        scale = params["mass_scale"]
        return {"geom_friction": friction, "body_mass": nominal["body_mass"][None, :] * scale[:, None],
                "body_inertia": nominal["body_inertia"][None, :, :] * scale[:, None, None], "actuator_gear": gear}

    def _healthy(self, sim: SimArrays, xp: Any) -> Array:
        healthy = xp.all(xp.isfinite(sim.qvel) & (xp.abs(sim.qvel) < self.MAX_SPEED), axis=-1)
        if self.HEIGHT_RANGE is not None:
            height = sim.qpos[:, self.HEIGHT_QPOS]
            healthy = healthy & (height > self.HEIGHT_RANGE[0]) & (height < self.HEIGHT_RANGE[1])
        if self.MAX_PITCH is not None:
            healthy = healthy & (xp.abs(sim.qpos[:, 2]) < self.MAX_PITCH)
        return healthy

    def reward_terms(self, sim: SimArrays, action: Array, prev_action: Array, command: Array,
                     xp: Any) -> dict[str, Array]:
        """Forward velocity of the root, being healthy (the alive bonus) and the control cost's squared actions."""
        return {"forward": sim.qvel[:, 0], "healthy": self._healthy(sim, xp) * 1.0,
                "ctrl": xp.sum(action**2, axis=-1)}

    def terminated(self, sim: SimArrays, command: Array, xp: Any) -> Array:
        """The robot fell (left its height range, or tipped too far) or its state blew up."""
        return ~self._healthy(sim, xp)


class Walker2d(GymRobot):
    """gymnasium's Walker2d-v5: walk forward on two legs; the episode ends when the torso falls or tips over."""

    name = "walker2d"
    mjcf = GYM_ASSETS / "walker2d_v5.xml"
    episode_length = 1000  # control steps of 0.008 s
    decimation = 4
    proprio_terms = proprio_terms_for(("thigh_joint", "leg_joint", "foot_joint",
                                       "thigh_left_joint", "leg_left_joint", "foot_left_joint"))
    REWARD_SCALES = {"forward": 1.0, "healthy": 1.0, "ctrl": -1e-3}
    RESET_NOISE = (5e-3, 5e-3)  # gymnasium's Walker2d reset: uniform on both
    UNIFORM_VELOCITY_NOISE = True
    HEIGHT_RANGE = (0.8, 2.0)
    MAX_PITCH = 1.0


class Hopper(GymRobot):
    """gymnasium's Hopper-v5: hop forward on one leg; the episode ends when the torso falls, tips or spins."""

    name = "gym_hopper"
    mjcf = GYM_ASSETS / "hopper.xml"
    episode_length = 1000  # control steps of 0.008 s
    decimation = 4
    proprio_terms = proprio_terms_for(("thigh_joint", "leg_joint", "foot_joint"))
    REWARD_SCALES = {"forward": 1.0, "healthy": 1.0, "ctrl": -1e-3}
    RESET_NOISE = (5e-3, 5e-3)
    UNIFORM_VELOCITY_NOISE = True
    HEIGHT_RANGE = (0.7, float("inf"))
    MAX_PITCH = 0.2
    MAX_SPEED = 100.0  # gymnasium's healthy_state_range


class Ant(GymRobot):
    """gymnasium's Ant-v5: a four-legged robot runs forward; the episode ends when its torso leaves 0.2-1 m."""

    name = "ant"
    mjcf = GYM_ASSETS / "ant.xml"
    episode_length = 1000  # control steps of 0.05 s
    decimation = 5
    proprio_terms = proprio_terms_for(("hip_4", "ankle_4", "hip_1", "ankle_1",
                                       "hip_2", "ankle_2", "hip_3", "ankle_3"))
    REWARD_SCALES = {"forward": 1.0, "healthy": 1.0, "ctrl": -0.5}
    HEIGHT_QPOS = 2
    HEIGHT_RANGE = (0.2, 1.0)


class Swimmer(GymRobot):
    """gymnasium's Swimmer-v5: three links in a viscous fluid swim forward; no termination, 1,000 control steps."""

    name = "swimmer"
    mjcf = GYM_ASSETS / "swimmer.xml"
    episode_length = 1000  # control steps of 0.04 s
    decimation = 4
    proprio_terms = proprio_terms_for(("motor1_rot", "motor2_rot"))
    # it swims in the horizontal plane: no height, but its heading (gymnasium's observation has it), without which
    # the torso-frame velocity cannot tell the teacher how fast it goes along +x, what the reward pays for
    privileged_terms = (SensorTerm("torso_vel"), ExtraTerm("heading", 2), ParamsTerm())
    REWARD_SCALES = {"forward": 1.0, "healthy": 0.0, "ctrl": -1e-4}
    UNIFORM_VELOCITY_NOISE = True

    def extra_observation(self, name: str, sim: SimArrays, params: dict[str, Array], xp: Any) -> Array:
        """``heading`` ``[B, 2]``: cosine and sine of the root's rotation about the vertical."""
        if name != "heading":
            return super().extra_observation(name, sim, params, xp)
        return xp.stack([xp.cos(sim.qpos[:, 2]), xp.sin(sim.qpos[:, 2])], axis=-1)


class HalfCheetah(GymRobot):
    """gymnasium's HalfCheetah-v5: run forward; no termination, 1,000 control steps of 0.05 s."""

    name = "half_cheetah"
    mjcf = GYM_ASSETS / "half_cheetah.xml"
    episode_length = 1000
    decimation = 5
    proprio_terms = proprio_terms_for(("bthigh", "bshin", "bfoot", "fthigh", "fshin", "ffoot"))
    # 10x gymnasium's spread of initial states (every position coordinate, the root's height too: many episodes
    # start in the ground and pop out): a teacher that has started from many states can lead a student out of
    # the crouch its early mistakes end in. Default students scored 0.09 from gymnasium's 0.1, 0.53 from 0.3, 0.77
    # from 0.5 and 0.9+ from 1.0 (docs/RESULTS.md)
    RESET_NOISE = (1.0, 1.0)

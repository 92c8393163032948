"""Rewards and terminations of the built-in tasks in numpy, for the sim-to-sim runner (no robodistill import).

Each entry mirrors the task's own ``reward``/``terminated`` in ``robodistill/tasks/<task>.py`` line for line,
over batched arrays ``qpos [B, nq]``, ``qvel [B, nv]``, ``sensordata [B, ns]``, actions in [-1, 1] ``[B, A]`` and
``command [B, C]``. This is a second copy of task code, so it is checked, not trusted: the repository's tests
compare every entry with the task on random states, and ``robodistill export`` compares the sim-to-sim return
with the torch student's return on the same episodes (they must agree within 2%).

Reward scales and parameters come from the policy's metadata (``reward_scales`` and ``reward_params``: the task's
defaults with the run's ``task.reward_scales`` and ``task.reward_params`` applied, written by ``robodistill
export``), so a policy trained under other ones is scored under its own; the defaults below serve only policies
exported before they travelled with them.

A task without an entry here (your own robot) passes ``--reward-module FILE`` to ``sim2sim.py``: a Python file
defining ``Reward(model, metadata)`` with the same two methods as the classes below, and ``truncated`` (same
arguments as ``terminated``) if the task ends episodes early without a failure (the quadruped's field edge).
"""

from __future__ import annotations

from typing import Any

import mujoco
import numpy as np


def _sensor(model: mujoco.MjModel, name: str) -> slice:
    sid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SENSOR, name)
    if sid < 0:
        raise ValueError(f"the MJCF lacks sensor {name!r}")
    adr = int(model.sensor_adr[sid])
    return slice(adr, adr + int(model.sensor_dim[sid]))


def reward_scales(defaults: dict[str, float], metadata: dict[str, Any], task: str,
                  key: str = "reward_scales") -> dict[str, float]:
    """The scales of the named reward terms: ``metadata["reward_scales"]`` over ``defaults``; an unknown term is a
    ValueError (the table would silently score without it). With ``key="reward_params"``, the terms' parameters."""
    given = metadata.get(key) or {}
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"the policy's {key} name(s) {', '.join(unknown)} that the {task} reward table "
                         f"lacks (it has: {', '.join(defaults) or 'none'}); pass --reward-module")
    return {**defaults, **{name: float(value) for name, value in given.items()}}


def _projected_gravity(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    return np.stack([-2.0 * (x * z - w * y), -2.0 * (y * z + w * x), -(1.0 - 2.0 * (x * x + y * y))], axis=-1)


class PendulumReward:
    """Gymnasium's pendulum cost, ``angle * wrap(q)^2 + velocity * qd^2 + torque * (2a)^2`` (scales -1, -0.1,
    -0.001 by default); never terminates."""

    REWARD_SCALES = {"angle": -1.0, "velocity": -0.1, "torque": -0.001}

    def __init__(self, model: mujoco.MjModel, metadata: dict[str, Any]) -> None:
        self.scales = reward_scales(self.REWARD_SCALES, metadata, "pendulum")

    def reward(self, qpos, qvel, sensordata, action, prev_action, command) -> np.ndarray:
        """Reward ``[B]`` of the control step that led to this state."""
        angle = np.arctan2(np.sin(qpos[:, 0]), np.cos(qpos[:, 0]))
        terms = {"angle": angle**2, "velocity": qvel[:, 0] ** 2, "torque": (2.0 * action[:, 0]) ** 2}
        return sum(self.scales[k] * v for k, v in terms.items())

    def terminated(self, qpos, qvel, sensordata, command) -> np.ndarray:
        """Never."""
        return np.zeros(qpos.shape[0], dtype=bool)


class HopperReward:
    """Gymnasium Hopper-v5: forward velocity + alive bonus - 1e-3 |a|^2 (the default scales); ends when unhealthy."""

    REWARD_SCALES = {"forward": 1.0, "healthy": 1.0, "ctrl": -1e-3}
    MIN_HEIGHT, MAX_PITCH, MAX_STATE = 0.7, 0.2, 100.0

    def __init__(self, model: mujoco.MjModel, metadata: dict[str, Any]) -> None:
        self.scales = reward_scales(self.REWARD_SCALES, metadata, "hopper")

    def _healthy(self, qpos, qvel) -> np.ndarray:
        height, pitch = qpos[:, 1], qpos[:, 2]
        state = np.concatenate([qpos[:, 2:], qvel], axis=-1)
        return ((height > self.MIN_HEIGHT) & (np.abs(pitch) < self.MAX_PITCH)
                & np.all(np.abs(state) < self.MAX_STATE, axis=-1))

    def reward(self, qpos, qvel, sensordata, action, prev_action, command) -> np.ndarray:
        """Reward ``[B]`` of the control step that led to this state."""
        terms = {"forward": qvel[:, 0], "healthy": self._healthy(qpos, qvel) * 1.0,
                 "ctrl": np.sum(action**2, axis=-1)}
        return sum(self.scales[k] * v for k, v in terms.items())

    def terminated(self, qpos, qvel, sensordata, command) -> np.ndarray:
        """The torso is too low, pitched too far, or the state blew up."""
        return ~self._healthy(qpos, qvel)


class QuadrupedReward:
    """legged_gym-style velocity tracking (each term × dt, clipped at zero, then the fall penalty); ends on a fall.

    The quadruped's and the Go1's: legs and joints are read from the actuators (``FL_hip``, ... in any leg order).
    """

    REWARD_SCALES = {"tracking_lin_vel": 1.0, "tracking_ang_vel": 0.5, "lin_vel_z": -2.0, "ang_vel_xy": -0.05,
                     "orientation": -1.0, "torques": -2e-4, "action_rate": -0.01, "feet_air": 0.0, "feet_trot": 0.5,
                     "collision": -1.0, "dof_pos_limits": -10.0, "base_height": 0.0,
                     "termination": 0.0}  # defaults, see the module
    REWARD_PARAMS = {"tracking_sigma": 0.25, "base_height_target": 0.30, "base_height_sigma": 0.03}  # defaults
    SOFT_LIMIT, CONTACT_FORCE = 0.9, 1.0
    MIN_BASE_HEIGHT, MAX_TILT_COS = 0.12, 0.5
    EDGE_MARGIN = 0.5  # m

    def __init__(self, model: mujoco.MjModel, metadata: dict[str, Any]) -> None:
        self.joints = tuple(mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_ACTUATOR, i) for i in range(model.nu))
        self.legs = tuple(dict.fromkeys(j.split("_")[0] for j in self.joints))
        names = ("imu_gyro", "imu_quat", "imu_vel", "trunk_touch", *(f"{j}_torque" for j in self.joints),
                 *(f"{leg}_foot_touch" for leg in self.legs), *(f"{leg}_thigh_touch" for leg in self.legs),
                 *(f"{leg}_foot_pos" for leg in self.legs))
        self._s = {n: _sensor(model, n) for n in names}
        jids = model.actuator_trnid[:, 0]
        self._qadr = np.array([model.jnt_qposadr[j] for j in jids])
        ranges = model.jnt_range[jids]
        mid, half = ranges.mean(axis=1), 0.5 * (ranges[:, 1] - ranges[:, 0])
        self._lo, self._hi = mid - self.SOFT_LIMIT * half, mid + self.SOFT_LIMIT * half
        self._dt = float(model.opt.timestep) * int(metadata["decimation"])
        self.scales = reward_scales(self.REWARD_SCALES, metadata, metadata.get("task", "quadruped"))
        self.params = reward_scales(self.REWARD_PARAMS, metadata, metadata.get("task", "quadruped"), "reward_params")
        self._model = model  # its fields are each episode's (the runner writes the recorded ones before it)
        self._field = int(np.flatnonzero(model.geom_type == mujoco.mjtGeom.mjGEOM_HFIELD)[0])

    def _cat(self, sd: np.ndarray, names: list[str]) -> np.ndarray:
        return np.concatenate([sd[:, self._s[n]] for n in names], axis=-1)

    def reward(self, qpos, qvel, sensordata, action, prev_action, command) -> np.ndarray:
        """Reward ``[B]`` of the control step that led to this state."""
        sd = sensordata
        vel, gyro = sd[:, self._s["imu_vel"]], sd[:, self._s["imu_gyro"]]
        gravity = _projected_gravity(sd[:, self._s["imu_quat"]])
        torque = self._cat(sd, [f"{j}_torque" for j in self.joints])
        q = qpos[:, self._qadr]
        contacts = self._cat(sd, [f"{leg}_foot_touch" for leg in self.legs]) > self.CONTACT_FORCE
        moving = np.sqrt(np.sum(command[:, :2] ** 2, axis=-1)) > 0.1
        thigh = self._cat(sd, [f"{leg}_thigh_touch" for leg in self.legs])
        feet_z = self._cat(sd, [f"{leg}_foot_pos" for leg in self.legs]).reshape(len(sd), -1, 3)[:, :, 2]
        height = qpos[:, 2] - feet_z.mean(axis=-1)
        lin_err = np.sum((command[:, :2] - vel[:, :2]) ** 2, axis=-1)
        fl, fr, rl, rr = (contacts[:, self.legs.index(leg)] for leg in ("FL", "FR", "RL", "RR"))
        trot = (fl & rr & ~fr & ~rl) | (fr & rl & ~fl & ~rr)  # one diagonal pair in the air
        p = self.params
        terms = {
            "tracking_lin_vel": np.exp(-lin_err / p["tracking_sigma"]),
            "tracking_ang_vel": np.exp(-((command[:, 2] - gyro[:, 2]) ** 2) / p["tracking_sigma"]),
            "lin_vel_z": vel[:, 2] ** 2,
            "ang_vel_xy": np.sum(gyro[:, :2] ** 2, axis=-1),
            "orientation": np.sum(gravity[:, :2] ** 2, axis=-1),
            "torques": np.sum(torque**2, axis=-1),
            "action_rate": np.sum((action - prev_action) ** 2, axis=-1),
            "feet_air": np.minimum(np.sum(1.0 - contacts, axis=-1), 2.0) / 2.0 * moving,
            "feet_trot": trot * moving * 1.0,
            "collision": np.sum(thigh > self.CONTACT_FORCE, axis=-1) * 1.0
            + (sd[:, self._s["trunk_touch"]][:, 0] > self.CONTACT_FORCE),
            "dof_pos_limits": np.sum(np.clip(self._lo - q, 0.0, None) + np.clip(q - self._hi, 0.0, None), axis=-1),
            "base_height": np.exp(-(((height - p["base_height_target"]) / p["base_height_sigma"]) ** 2)),
        }
        total = np.maximum(sum(self.scales[k] * self._dt * v for k, v in terms.items()), 0.0)
        if self.scales["termination"]:
            total = total + self.scales["termination"] * self._dt * self.terminated(qpos, qvel, sensordata, command)
        return total

    def terminated(self, qpos, qvel, sensordata, command) -> np.ndarray:
        """The trunk touches the ground, tilts more than 60 degrees, or sinks below the minimum height."""
        gravity = _projected_gravity(sensordata[:, self._s["imu_quat"]])
        trunk = sensordata[:, self._s["trunk_touch"]][:, 0] > self.CONTACT_FORCE
        return trunk | (-gravity[:, 2] < self.MAX_TILT_COS) | (qpos[:, 2] < self.MIN_BASE_HEIGHT)


    def truncated(self, qpos, qvel, sensordata, command) -> np.ndarray:
        """The trunk came within ``EDGE_MARGIN`` of the height field's edge (the floor beyond lies lower)."""
        m = self._model
        centre = m.geom_pos[self._field, :2]  # this episode's field position
        half = m.hfield_size[m.geom_dataid[self._field], :2]
        offset = np.abs(qpos[:, :2] - centre)  # [B, 2]
        return (offset > half - self.EDGE_MARGIN).any(axis=-1)


class Go1Reward(QuadrupedReward):
    """The quadruped's table at the Go1's walking height."""

    REWARD_PARAMS = {**QuadrupedReward.REWARD_PARAMS, "base_height_target": 0.29}


REWARDS: dict[str, type] = {"pendulum": PendulumReward, "hopper": HopperReward, "quadruped": QuadrupedReward,
                            "go1": Go1Reward}

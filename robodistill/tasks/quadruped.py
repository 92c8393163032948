"""Quadruped: a 12-DoF Go1-sized robot tracks a commanded base velocity over flat and rough terrain.

The command (forward and lateral velocity, yaw rate; body frame) is sampled per episode, as are the ground
friction, a payload and its centre-of-mass offset, motor strength, PD gains, joint damping and armature, action
latency, a push and the terrain tile. Rewards follow legged_gym (Rudin et al. 2022, "Learning to Walk in
Minutes Using Massively Parallel Deep RL"): exponential-kernel velocity tracking plus penalties, scaled by dt,
with the total clipped at zero (``ONLY_POSITIVE_REWARDS``).

The student senses the IMU (gyro, gravity projected from the orientation), the joint encoders, its previous
action and the command, all with sensor noise. The teacher also sees the base linear velocity, the foot contact
states, the randomized parameters, the base height and the terrain heights around each foot (looked up in the
static height field with ``xp`` ops, so it also runs under ``jax.jit``).

Terrain: the height field holds a fixed bank of tiles (:func:`terrain_bank`), flat and rough; per episode the
``terrain`` parameter picks the roughness column and ``terrain_variant`` the row, and :meth:`apply_params` moves
the field so that the chosen tile's centre (a flat spawn pad) lies under the spawn point. ``terrain: [0, 0]`` in
``env.randomization`` restricts training to flat ground. The field is 20 m square; beyond it a plane lies
7 cm below, a drop that is no part of the terrain, so an episode whose trunk nears the edge ends as a truncation
(:meth:`Quadruped.out_of_bounds`), like the time limit.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import mujoco
import numpy as np

from robodistill.tasks.base import (
    Array, CommandTerm, ExtraTerm, ParamSpec, ParamsTerm, PrevActionTerm, SensorTerm, SimArrays, Task, Term,
    index_set, transform_sensor,
)

ASSETS = Path(__file__).resolve().parents[2] / "assets"
TERRAIN_FILE = ASSETS / "quadruped_terrain.bin"

LEGS = ("FL", "FR", "RL", "RR")
JOINTS = tuple(f"{leg}_{j}" for leg in LEGS for j in ("hip", "thigh", "calf"))

# terrain bank: TILE_ROWS x TILE_COLS tiles of TILE_SIZE m at TERRAIN_RES m; column c has roughness c/(cols-1)
TILE_SIZE = 5.0
TILE_ROWS = 4
TILE_COLS = 4
TERRAIN_RES = 0.1
TERRAIN_AMPLITUDE = 0.06  # heights lie in [-A, A] m; the spawn pads and flat tiles are at 0
SPAWN_PAD = (0.5, 1.0)  # flat within 0.5 m of a tile centre, full roughness beyond 1.0 m
TERRAIN_SEED = 20240611
FLOOR_Z = -0.07  # the plane below the height field (assets/quadruped.xml)


def terrain_bank() -> np.ndarray:
    """The bank's heights ``[nrow, ncol]`` in metres (row ↔ y, column ↔ x), generated deterministically.

    Rough tiles are uniform noise on a 0.2 m lattice (linearly interpolated, as in legged_gym's
    ``random_uniform_terrain``) plus gentle waves, scaled by the column's roughness, with a flat spawn pad
    blended in around each tile centre.
    """
    rs = np.random.RandomState(TERRAIN_SEED)  # legacy generator: its stream is frozen across numpy versions
    cells = int(round(TILE_SIZE / TERRAIN_RES))
    n = cells * TILE_ROWS + 1  # square bank: TILE_ROWS == TILE_COLS
    heights = np.zeros((n, n))
    coarse = cells // 2 + 1
    local = np.arange(cells + 1) * TERRAIN_RES - 0.5 * TILE_SIZE  # [cells + 1], tile-centred coordinates
    ly, lx = np.meshgrid(local, local, indexing="ij")
    radius = np.hypot(lx, ly)
    pad = np.clip((radius - SPAWN_PAD[0]) / (SPAWN_PAD[1] - SPAWN_PAD[0]), 0.0, 1.0)
    for r in range(TILE_ROWS):
        for c in range(TILE_COLS):
            noise = rs.uniform(-1.0, 1.0, size=(coarse, coarse))
            fine = np.linspace(0.0, coarse - 1.0, cells + 1)
            noise = np.array([np.interp(fine, np.arange(coarse), row) for row in noise])  # along x
            noise = np.array([np.interp(fine, np.arange(coarse), col) for col in noise.T]).T  # along y
            phase = rs.uniform(0.0, 2.0 * np.pi, size=2)
            waves = np.sin(2 * np.pi * lx / 2.5 + phase[0]) * np.sin(2 * np.pi * ly / 3.0 + phase[1])
            tile = np.clip(0.7 * noise + 0.3 * waves, -1.0, 1.0) * pad * (c / (TILE_COLS - 1))
            heights[r * cells:(r + 1) * cells + 1, c * cells:(c + 1) * cells + 1] = TERRAIN_AMPLITUDE * tile
    # pin the extremes so that MuJoCo's normalization of the field to [0, 1] maps back to exactly [-A, A]
    heights[0, -1], heights[-1, -1] = -TERRAIN_AMPLITUDE, TERRAIN_AMPLITUDE
    return heights


def write_terrain_file(path: Path = TERRAIN_FILE) -> None:
    """Write :func:`terrain_bank` in MuJoCo's binary height-field format (int32 nrow, ncol; float32 data)."""
    heights = terrain_bank()
    data = ((heights + TERRAIN_AMPLITUDE) / (2 * TERRAIN_AMPLITUDE)).astype(np.float32)
    with open(path, "wb") as f:
        np.array(heights.shape, dtype=np.int32).tofile(f)
        data.tofile(f)


def tile_center(params: dict[str, Array], xp: Any) -> tuple[Array, Array]:
    """Centre ``(x [B], y [B])`` of each episode's tile in the height field's own frame."""
    col = xp.clip(xp.floor(params["terrain"] * TILE_COLS), 0, TILE_COLS - 1)
    row = xp.clip(xp.floor(params["terrain_variant"] * TILE_ROWS), 0, TILE_ROWS - 1)
    half = 0.5 * TILE_SIZE * TILE_COLS
    return -half + TILE_SIZE * (col + 0.5), -half + TILE_SIZE * (row + 0.5)


def _yaw_from_quat(quat: Array, xp: Any) -> Array:
    w, x, y, z = quat[:, 0], quat[:, 1], quat[:, 2], quat[:, 3]
    return xp.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def sensor_slice(model: Any, name: str, task: str) -> slice:
    """The ``sensordata`` columns of the sensor called ``name`` (a ValueError naming the task if it is missing)."""
    sid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SENSOR, name)
    if sid < 0:
        raise ValueError(f"{task} MJCF lacks sensor {name!r}")
    adr = int(model.sensor_adr[sid])
    return slice(adr, adr + int(model.sensor_dim[sid]))


def pd_gain_fields(nominal: dict[str, Array], params: dict[str, Array], tile: Any, xp: Any) -> dict[str, Array]:
    """Position actuators' Kp and Kd scaled by ``kp_scale``, ``kd_scale`` and ``motor_strength``, and their torque
    limits by ``motor_strength``: ``actuator_gainprm``, ``actuator_biasprm``, ``actuator_forcerange`` ``[B, ...]``."""
    rows, all_actuators = slice(None), slice(None)
    kp = nominal["actuator_gainprm"][None, :, 0] * (params["kp_scale"] * params["motor_strength"])[:, None]
    kd = -nominal["actuator_biasprm"][None, :, 2] * (params["kd_scale"] * params["motor_strength"])[:, None]
    gainprm = index_set(tile(nominal["actuator_gainprm"]), (rows, all_actuators, 0), kp)
    biasprm = index_set(tile(nominal["actuator_biasprm"]), (rows, all_actuators, 1), -kp)
    biasprm = index_set(biasprm, (rows, all_actuators, 2), -kd)
    forcerange = nominal["actuator_forcerange"][None] * params["motor_strength"][:, None, None]
    return {"actuator_gainprm": gainprm, "actuator_biasprm": biasprm, "actuator_forcerange": forcerange}


def proprio_terms_for(joints: tuple[str, ...]) -> tuple[Term, ...]:
    """What a legged robot's controller reads: IMU gyro and gravity, joint encoders (``<actuator>_pos``/``_vel``),
    its last action and the command, with sensor noise."""
    return (
        SensorTerm("imu_gyro", noise_std=0.2),
        SensorTerm("imu_quat", transform="projected_gravity", noise_std=0.05),
        *(SensorTerm(f"{j}_pos", noise_std=0.01) for j in joints),
        *(SensorTerm(f"{j}_vel", noise_std=1.5) for j in joints),
        PrevActionTerm(),
        CommandTerm(),
    )


class Quadruped(Task):
    """Track a commanded base velocity (vx, vy, yaw rate) with a 12-DoF quadruped over randomized terrain."""

    name = "quadruped"
    mjcf = ASSETS / "quadruped.xml"
    episode_length = 1000  # control steps of 0.02 s: 20 s
    decimation = 4
    command_dim = 3

    legs: tuple[str, ...] = LEGS  # the actuators' leg order; each leg's actuators are hip, thigh, calf
    joints: tuple[str, ...] = JOINTS  # actuator names, which name the joint sensors too
    proprio_terms = proprio_terms_for(JOINTS)
    SCAN = 3  # terrain scan: SCAN x SCAN points around each foot, yaw-aligned
    SCAN_SPACING = 0.1
    privileged_terms = (
        SensorTerm("imu_vel"),
        ExtraTerm("foot_contact", 4),
        ParamsTerm(),
        ExtraTerm("base_height", 1),
        ExtraTerm("terrain_heights", 4 * SCAN * SCAN),
    )
    params = {
        "friction": ParamSpec(0.8, 0.4, 1.2, "sliding friction of every geom (ground and robot)"),
        "payload_mass": ParamSpec(0.0, -1.0, 2.0, "mass added to the trunk, kg"),
        "payload_com_x": ParamSpec(0.0, -0.05, 0.05, "trunk centre-of-mass offset along x, m"),
        "payload_com_y": ParamSpec(0.0, -0.03, 0.03, "trunk centre-of-mass offset along y, m"),
        "motor_strength": ParamSpec(1.0, 0.9, 1.1, "scale of every actuator's gains and torque limit"),
        "kp_scale": ParamSpec(1.0, 0.85, 1.15, "scale of the PD stiffness Kp"),
        "kd_scale": ParamSpec(1.0, 0.8, 1.2, "scale of the PD damping Kd"),
        "joint_damping": ParamSpec(0.1, 0.02, 0.2, "passive damping of every leg joint, N m s/rad"),
        "armature": ParamSpec(0.01, 0.006, 0.015, "rotor inertia reflected to every leg joint, kg m^2"),
        "latency": ParamSpec(0.0, 0.0, 0.5, "fraction of the control step still driven by the previous action"),
        "push_step": ParamSpec(-1.0, 100.0, 900.0, "control step of the episode's push (< 0: never)"),
        "push_vx": ParamSpec(0.0, -0.6, 0.6, "push: change of base velocity along world x, m/s"),
        "push_vy": ParamSpec(0.0, -0.6, 0.6, "push: change of base velocity along world y, m/s"),
        "terrain": ParamSpec(0.0, 0.0, 1.0, "terrain roughness: picks the tile column (0: flat, 1: roughest)"),
        "terrain_variant": ParamSpec(0.0, 0.0, 1.0, "picks the tile row (which random terrain)"),
    }
    model_fields = ("geom_friction", "geom_pos", "body_mass", "body_ipos", "body_inertia", "actuator_gainprm",
                    "actuator_biasprm", "actuator_forcerange", "dof_damping", "dof_armature")

    # command ranges (body frame), and the share of episodes that command standing still
    COMMAND_RANGES = ((-1.0, 1.0), (-0.5, 0.5), (-1.0, 1.0))
    STAND_STILL_PROB = 0.1
    ACTION_SCALE = {"hip": 0.3, "thigh": 0.5, "calf": 0.5}  # rad per unit action, around the home pose

    # legged_gym-style reward scales (each term is multiplied by dt); override them with task.reward_scales
    # feet on the height field and the floor (bits 1 and 2), the trunk on the height field (its touch is a fall);
    # thighs and calves collide with nothing: 24 MJX contact slots per world instead of 76
    ACCELERATOR_COLLISIONS = {"terrain": (1, 0), "floor": (2, 0), "trunk": (0, 1),
                              **{f"{leg}_foot": (0, 3) for leg in LEGS}}
    REWARD_SCALES = {
        "tracking_lin_vel": 1.0,
        "tracking_ang_vel": 0.5,
        "lin_vel_z": -2.0,
        "ang_vel_xy": -0.05,
        "orientation": -1.0,
        "torques": -2e-4,
        "action_rate": -0.01,
        "feet_air": 0.0,  # stateless surrogate of legged_gym's feet_air_time, see ``reward_terms``
        "feet_trot": 0.5,  # one diagonal pair in the air, the other on the ground, see ``reward_terms``
        "collision": -1.0,
        "dof_pos_limits": -10.0,
        "base_height": 0.0,  # the trunk held at base_height_target above its feet, see ``reward_terms``
        "termination": 0.0,  # on a fall; added after the clip at zero, as in legged_gym
    }
    REWARD_PARAMS = {
        "tracking_sigma": 0.25,  # the velocity-tracking kernels' width, (m/s)^2 and (rad/s)^2 (legged_gym's)
        # base_height pays exp(-((h - target) / sigma)^2) for the trunk's height h above the mean of its feet (not
        # the ground's, so the term reads the same on any terrain); the target is the robot's walking height, m
        "base_height_target": 0.30,
        "base_height_sigma": 0.03,
    }
    # evaluation: tracking is measured after a settling time, over episodes commanding at least MIN_TRACKED_VX
    metric_labels = ("imu_vel[0]", "imu_vel[1]", "imu_gyro[2]", "command[0]", "command[1]", "command[2]")
    SETTLE_STEPS = 50  # 1 s
    MIN_TRACKED_VX = 0.3  # m/s
    FAST_VX = 0.5  # m/s: falls are also reported for episodes commanding |vx| at least this fast, and slower
    STALL_FRACTION = 0.25  # a tracked episode stalls when it moves at under this share of its command's speed
    ONLY_POSITIVE_REWARDS = True
    SOFT_LIMIT = 0.9  # fraction of each joint range inside which dof_pos_limits is zero
    CONTACT_FORCE = 1.0  # N: a touch sensor above this counts as contact
    MIN_BASE_HEIGHT = 0.12  # m, world z of the trunk centre
    MAX_TILT_COS = 0.5  # terminate when the trunk's z axis is > 60 degrees from vertical
    SPAWN_JITTER = 0.1  # m, within the flat spawn pad
    EDGE_MARGIN = 0.5  # m: the episode ends (truncated) when the trunk comes this close to the field's edge
    JOINT_NOISE = 0.1  # rad, initial joint angles around the home pose
    SPAWN_GROUND_Z = 0.0  # m: the terrain bank's spawn pads (and flat tiles) lie at this height
    FOOT_GEOMS: tuple[str, ...] = tuple(f"{leg}_foot" for leg in LEGS)  # the sphere geoms that stand on the ground

    def bind(self, model: Any) -> None:
        """Look up sensor slices, joint/dof ids, the home pose and the height field's data."""
        def sensor(name: str) -> slice:
            return sensor_slice(model, name, self.name)

        self._s = {name: sensor(name) for name in (
            "imu_gyro", "imu_quat", "imu_vel", "trunk_touch",
            *(f"{j}_pos" for j in self.joints), *(f"{j}_torque" for j in self.joints),
            *(f"{leg}_foot_pos" for leg in self.legs), *(f"{leg}_foot_touch" for leg in self.legs),
            *(f"{leg}_thigh_touch" for leg in self.legs))}

        def columns(names: list[str]) -> np.ndarray:  # the sensordata columns of several sensors, in order
            return np.concatenate([np.arange(self._s[n].start, self._s[n].stop) for n in names])

        self._torque_cols = columns([f"{j}_torque" for j in self.joints])  # [12]
        self._foot_pos_cols = columns([f"{leg}_foot_pos" for leg in self.legs])  # [4 * 3], foot-major
        self._foot_touch_cols = columns([f"{leg}_foot_touch" for leg in self.legs])  # [4]
        self._thigh_touch_cols = columns([f"{leg}_thigh_touch" for leg in self.legs])  # [4]
        offs = (np.arange(self.SCAN) - (self.SCAN - 1) / 2) * self.SCAN_SPACING
        self._scan_x, self._scan_y = (a.ravel() for a in np.meshgrid(offs, offs, indexing="xy"))  # [S] each
        jids = [model.actuator_trnid[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, j), 0]
                for j in self.joints]
        self._leg_dofs = np.array([model.jnt_dofadr[j] for j in jids])  # [12]
        self._leg_qpos = np.array([model.jnt_qposadr[j] for j in jids])  # [12]
        ranges = model.jnt_range[jids]  # [12, 2]
        mid, half = ranges.mean(axis=1), 0.5 * (ranges[:, 1] - ranges[:, 0])
        self._soft_lo, self._soft_hi = mid - self.SOFT_LIMIT * half, mid + self.SOFT_LIMIT * half
        self._trunk = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "trunk")
        self._bind_feet(model)
        self._dt = float(model.opt.timestep) * self.decimation
        self._terrain_geom = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "terrain")
        key = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_KEY, "home")
        self._home_qpos = model.key_qpos[key].copy()  # [nq]
        acts = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, j) for j in self.joints]
        if acts != list(range(model.nu)):
            raise ValueError(f"{self.name} MJCF: actuators must be {', '.join(self.joints)}, in this order")
        hid = int(model.geom_dataid[self._terrain_geom])
        nrow, ncol = int(model.hfield_nrow[hid]), int(model.hfield_ncol[hid])
        size = model.hfield_size[hid]  # (x half, y half, elevation, base)
        self._hf_half = (float(size[0]), float(size[1]))
        self._hf_shape = (nrow, ncol)
        # world heights of the field at its nominal position, row-major [nrow * ncol] (row <-> y, column <-> x)
        self._heights = (model.geom_pos[self._terrain_geom, 2]
                         + size[2] * model.hfield_data[model.hfield_adr[hid]:model.hfield_adr[hid] + nrow * ncol]
                         ).astype(np.float32)

    def default_joint_positions(self, model: Any) -> np.ndarray:
        """The standing pose of the model's keyframe, in actuator order."""
        return self._home_qpos[self._leg_qpos].copy()

    def action_mapping(self, model: Any) -> tuple[np.ndarray, np.ndarray]:
        """Actions are offsets from the home pose: ``ctrl = home + scale * action`` (target angles, rad)."""
        key = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_KEY, "home")
        offset = model.key_ctrl[key].copy()
        scale = np.array([self.ACTION_SCALE[j.split("_")[1]] for j in self.joints])
        return offset, scale

    # ---- host-side sampling ---------------------------------------------------------------------------

    def sample_command(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Uniform (vx, vy, yaw rate) in ``COMMAND_RANGES``; zero with probability ``STAND_STILL_PROB``."""
        cmd = np.stack([rng.uniform(lo, hi, size=n) for lo, hi in self.COMMAND_RANGES], axis=-1)
        still = rng.uniform(size=n) < self.STAND_STILL_PROB
        return np.where(still[:, None], 0.0, cmd)

    def initial_state(self, rng: np.random.Generator, n: int, qpos0: np.ndarray,
                      nv: int) -> tuple[np.ndarray, np.ndarray]:
        """Home pose on the spawn pad: jittered x, y, any heading, joint angles ± ``JOINT_NOISE``, the trunk at the
        height where the lowest foot touches the pad.

        Placed at the keyframe's height instead, the joint noise pushed feet up to 4 cm into the ground on the
        Go1 (whose ``home`` keyframe already sinks them 1.8 cm), and the contact solver's kick at the first step sent
        its teacher into a crouched shuffle in 40 % of episodes (docs/RESULTS.md)."""
        qpos = np.tile(self._home_qpos, (n, 1))
        qpos[:, 0:2] += rng.uniform(-self.SPAWN_JITTER, self.SPAWN_JITTER, size=(n, 2))
        yaw = rng.uniform(-np.pi, np.pi, size=n)
        qpos[:, 3:7] = np.stack([np.cos(yaw / 2), 0 * yaw, 0 * yaw, np.sin(yaw / 2)], axis=-1)
        qpos[:, self._leg_qpos] += rng.uniform(-self.JOINT_NOISE, self.JOINT_NOISE, size=(n, len(self.joints)))
        qpos[:, 2] += self.SPAWN_GROUND_Z - self.lowest_foot_bottom(qpos)
        qvel = np.zeros((n, nv))
        qvel[:, 0:6] = rng.uniform(-0.1, 0.1, size=(n, 6))
        return qpos, qvel

    def _bind_feet(self, model: Any) -> None:
        """The ``FOOT_GEOMS`` spheres and host-side data for the spawn's forward kinematics."""
        self._foot_geoms = np.array([mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, g) for g in self.FOOT_GEOMS])
        if (self._foot_geoms < 0).any() or (model.geom_type[self._foot_geoms] != mujoco.mjtGeom.mjGEOM_SPHERE).any():
            raise ValueError(f"{self.name} MJCF: feet must be sphere geoms named {', '.join(self.FOOT_GEOMS)}")
        self._kinematics = (model, mujoco.MjData(model))

    def lowest_foot_bottom(self, qpos: np.ndarray) -> np.ndarray:
        """World height ``[n]`` of the lowest point of any foot for each pose ``qpos [n, nq]``."""
        model, data = self._kinematics
        radius = model.geom_size[self._foot_geoms, 0]  # [F]
        bottom = np.empty(len(qpos))
        for i, pose in enumerate(qpos):
            data.qpos[:] = pose
            mujoco.mj_kinematics(model, data)
            bottom[i] = np.min(data.geom_xpos[self._foot_geoms, 2] - radius)
        return bottom

    # ---- pure functions -------------------------------------------------------------------------------

    def apply_params(self, nominal: dict[str, Array], params: dict[str, Array], xp: Any) -> dict[str, Array]:
        """Friction, terrain tile, payload, PD gains, torque limits, damping and armature per environment."""
        n = params["friction"].shape[0]
        tile = lambda a: xp.broadcast_to(a, (n,) + a.shape)  # noqa: E731
        all_rows = slice(None)
        friction = index_set(tile(nominal["geom_friction"]), (all_rows, slice(None), 0),
                             params["friction"][:, None])
        cx, cy = tile_center(params, xp)
        hz = 0.0 * cx + nominal["geom_pos"][self._terrain_geom, 2]
        geom_pos = index_set(tile(nominal["geom_pos"]), (all_rows, self._terrain_geom),
                             xp.stack([-cx, -cy, hz], axis=-1))
        b = self._trunk
        m0 = nominal["body_mass"][b]
        mass = m0 + params["payload_mass"]  # [B]
        body_mass = index_set(tile(nominal["body_mass"]), (all_rows, b), mass)
        ipos = xp.stack([params["payload_com_x"], params["payload_com_y"], 0.0 * mass], axis=-1)
        body_ipos = index_set(tile(nominal["body_ipos"]), (all_rows, b), nominal["body_ipos"][b] + ipos)
        body_inertia = index_set(tile(nominal["body_inertia"]), (all_rows, b),
                                 nominal["body_inertia"][b][None, :] * (mass / m0)[:, None])
        damping = index_set(tile(nominal["dof_damping"]), (all_rows, self._leg_dofs),
                            xp.broadcast_to(params["joint_damping"][:, None], (n, len(self.joints))))
        armature = index_set(tile(nominal["dof_armature"]), (all_rows, self._leg_dofs),
                             xp.broadcast_to(params["armature"][:, None], (n, len(self.joints))))
        return {"geom_friction": friction, "geom_pos": geom_pos, "body_mass": body_mass, "body_ipos": body_ipos,
                "body_inertia": body_inertia, **pd_gain_fields(nominal, params, tile, xp), "dof_damping": damping,
                "dof_armature": armature}

    def applied_action(self, action: Array, prev_action: Array, params: dict[str, Array], xp: Any) -> Array:
        """Latency as a blend: the previous action still drives a ``latency`` fraction of the step."""
        lat = params["latency"][:, None]
        return lat * prev_action + (1.0 - lat) * action

    def velocity_kick(self, steps: Array, qvel: Array, params: dict[str, Array], xp: Any) -> Array | None:
        """The episode's push: a change of the base's horizontal velocity at control step ``push_step``."""
        hit = (steps == xp.floor(params["push_step"]))[:, None]  # [B, 1]
        kick = xp.concatenate([params["push_vx"][:, None], params["push_vy"][:, None],
                               xp.zeros((qvel.shape[0], qvel.shape[1] - 2))], axis=-1)  # [B, nv]
        return xp.where(hit, kick, 0.0 * kick)

    def _field_coords(self, x: Array, y: Array, params: dict[str, Array], xp: Any) -> tuple[Array, Array]:
        """World points ``x, y [B, K]`` in the height field's frame, in metres from its corner ``[0, 2 * half]``."""
        cx, cy = tile_center(params, xp)
        return x + cx[:, None] + self._hf_half[0], y + cy[:, None] + self._hf_half[1]

    def out_of_bounds(self, sim: SimArrays, params: dict[str, Array], xp: Any) -> Array:
        """The trunk came within ``EDGE_MARGIN`` of the height field's edge, beyond which the floor lies lower."""
        fx, fy = self._field_coords(sim.qpos[:, 0:1], sim.qpos[:, 1:2], params, xp)  # [B, 1]
        hx, hy = self._hf_half
        m = self.EDGE_MARGIN
        inside = (fx >= m) & (fx <= 2 * hx - m) & (fy >= m) & (fy <= 2 * hy - m)
        return ~inside[:, 0]

    def terrain_height(self, x: Array, y: Array, params: dict[str, Array], xp: Any) -> Array:
        """World height of the ground under world points ``x, y [B, K]`` (bilinear in the field's grid)."""
        hx, hy = self._hf_half
        nrow, ncol = self._hf_shape
        fx, fy = self._field_coords(x, y, params, xp)
        u = fx / (2 * hx) * (ncol - 1)  # column coordinate [B, K]
        v = fy / (2 * hy) * (nrow - 1)  # row coordinate [B, K]
        inside = (u >= 0) & (u <= ncol - 1) & (v >= 0) & (v <= nrow - 1)
        u, v = xp.clip(u, 0, ncol - 1.001), xp.clip(v, 0, nrow - 1.001)
        u0, v0 = xp.floor(u), xp.floor(v)
        fu, fv = u - u0, v - v0
        corner = v0.astype(xp.int32) * ncol + u0.astype(xp.int32)  # flat index of the lower-left grid point
        table = xp.asarray(self._heights)
        below = (1 - fu) * table[corner] + fu * table[corner + 1]  # along x on grid row v0
        above = (1 - fu) * table[corner + ncol] + fu * table[corner + ncol + 1]  # and on row v0 + 1
        return xp.where(inside, (1 - fv) * below + fv * above, FLOOR_Z)

    def _contacts(self, sim: SimArrays) -> Array:
        return sim.sensordata[:, self._foot_touch_cols] > self.CONTACT_FORCE  # [B, 4]

    def _feet(self, sim: SimArrays) -> Array:
        return sim.sensordata[:, self._foot_pos_cols].reshape(-1, len(self.legs), 3)  # world positions [B, 4, 3]

    def extra_observation(self, name: str, sim: SimArrays, params: dict[str, Array], xp: Any) -> Array:
        """``foot_contact`` [B, 4], ``base_height`` above the terrain [B, 1], ``terrain_heights`` [B, 4*9]."""
        if name == "foot_contact":
            return self._contacts(sim) * 1.0
        if name == "base_height":
            ground = self.terrain_height(sim.qpos[:, 0:1], sim.qpos[:, 1:2], params, xp)
            return sim.qpos[:, 2:3] - ground
        if name == "terrain_heights":
            # each foot's height above the ground at a yaw-aligned SCAN x SCAN grid around it [B, 4 * SCAN^2]
            yaw = _yaw_from_quat(sim.sensordata[:, self._s["imu_quat"]], xp)[:, None, None]  # [B, 1, 1]
            cos, sin = xp.cos(yaw), xp.sin(yaw)
            feet = self._feet(sim)  # [B, 4, 3]
            x = feet[:, :, 0:1] + cos * self._scan_x - sin * self._scan_y  # [B, 4, S]
            y = feet[:, :, 1:2] + sin * self._scan_x + cos * self._scan_y
            batch = feet.shape[0]
            ground = self.terrain_height(x.reshape(batch, -1), y.reshape(batch, -1), params, xp)  # [B, 4 * S]
            z = xp.broadcast_to(feet[:, :, 2:3], x.shape).reshape(batch, -1)  # foot-major, as x and y
            return xp.clip(z - ground, -1.0, 1.0)
        raise NotImplementedError(f"{type(self).__name__} declares no extra term {name!r}")

    def reward_terms(self, sim: SimArrays, action: Array, prev_action: Array, command: Array,
                     xp: Any) -> dict[str, Array]:
        """Each reward term ``[B]``, unscaled (legged_gym's definitions).

        legged_gym's feet_air_time needs each foot's time in the air carried across steps, state the pure
        per-step API does not keep. Two stateless terms stand in for it while a non-zero velocity is commanded:
        ``feet_trot`` pays for the trot's swing phase (exactly one diagonal pair of feet off the ground) and
        ``feet_air`` for up to two feet off the ground in any pattern. Measured at 2M teacher steps (64 held-out
        episodes, all terrain): ``feet_air`` alone trains a hopping gait with three feet up 35 % of the time and
        19 % falls; ``feet_trot`` a trot (a diagonal pair up 64 % of the time) with 12.5 % falls.
        """
        q = sim.qpos[:, self._leg_qpos]  # [B, 12]
        contacts = self._contacts(sim)
        moving = self._moving(command, xp)
        thigh = sim.sensordata[:, self._thigh_touch_cols]  # [B, 4]
        height = sim.qpos[:, 2] - xp.mean(self._feet(sim)[:, :, 2], axis=-1)  # the trunk above its feet [B]
        fl, fr, rl, rr = (contacts[:, self.legs.index(leg)] for leg in LEGS)
        trot = (fl & rr & ~fr & ~rl) | (fr & rl & ~fl & ~rr)
        return {
            **self._base_terms(sim, action, prev_action, command, xp),
            "feet_air": xp.minimum(xp.sum(1.0 - contacts, axis=-1), 2.0) / 2.0 * moving,
            "feet_trot": trot * moving * 1.0,
            "collision": xp.sum(thigh > self.CONTACT_FORCE, axis=-1) * 1.0
            + (sim.sensordata[:, self._s["trunk_touch"]][:, 0] > self.CONTACT_FORCE),
            "dof_pos_limits": xp.sum(xp.clip(self._soft_lo - q, 0.0, None) + xp.clip(q - self._soft_hi, 0.0, None),
                                     axis=-1),
            "base_height": xp.exp(-(((height - self.reward_params["base_height_target"])
                                     / self.reward_params["base_height_sigma"]) ** 2)),
        }

    def _base_terms(self, sim: SimArrays, action: Array, prev_action: Array, command: Array,
                    xp: Any) -> dict[str, Array]:
        """legged_gym's terms of the base's motion and the effort, shared by every legged task: velocity tracking,
        vertical and roll/pitch rates, tilt, torques and action rate, each ``[B]``."""
        vel = sim.sensordata[:, self._s["imu_vel"]]  # body-frame linear velocity [B, 3]
        gyro = sim.sensordata[:, self._s["imu_gyro"]]  # body-frame angular velocity [B, 3]
        gravity = transform_sensor(sim.sensordata[:, self._s["imu_quat"]], "projected_gravity", xp)  # [B, 3]
        torque = sim.sensordata[:, self._torque_cols]  # [B, A]
        lin_err = xp.sum((command[:, :2] - vel[:, :2]) ** 2, axis=-1)
        sigma = self.reward_params["tracking_sigma"]
        return {
            "tracking_lin_vel": xp.exp(-lin_err / sigma),
            "tracking_ang_vel": xp.exp(-((command[:, 2] - gyro[:, 2]) ** 2) / sigma),
            "lin_vel_z": vel[:, 2] ** 2,
            "ang_vel_xy": xp.sum(gyro[:, :2] ** 2, axis=-1),
            "orientation": xp.sum(gravity[:, :2] ** 2, axis=-1),
            "torques": xp.sum(torque**2, axis=-1),
            "action_rate": xp.sum((action - prev_action) ** 2, axis=-1),
        }

    @staticmethod
    def _moving(command: Array, xp: Any) -> Array:
        """Episodes commanding a horizontal velocity ``[B]`` (bool)."""
        return xp.sqrt(xp.sum(command[:, :2] ** 2, axis=-1)) > 0.1

    def weighted_reward_terms(self, terms: dict[str, Array]) -> dict[str, Array]:
        """``scale_k * term_k * dt`` (legged_gym's weighting)."""
        return {k: self.reward_scales[k] * self._dt * v for k, v in terms.items()}

    def combine_reward(self, weighted: dict[str, Array], sim: SimArrays, command: Array, xp: Any) -> Array:
        """The weighted terms' sum, clipped at zero when ``ONLY_POSITIVE_REWARDS``, then the fall penalty."""
        total = sum(weighted.values())
        if self.ONLY_POSITIVE_REWARDS:
            total = xp.maximum(total, 0.0)
        scale = self.reward_scales["termination"]
        if scale:
            total = total + scale * self._dt * self.terminated(sim, command, xp)
        return total

    def episode_metrics(self, traces: dict[str, np.ndarray], fell: np.ndarray) -> dict[str, float]:
        """Velocity tracking figures over the held-out episodes (traces ``[N, T]``, NaN after an episode ends).

        ``tracking_error_vx``: over episodes commanding ``|vx| >= MIN_TRACKED_VX`` that did not fall, the mean of
        ``|mean(vx) - vx_cmd| / |vx_cmd|`` with ``mean(vx)`` the episode's forward velocity after ``SETTLE_STEPS``;
        ``vx_error_mps``, ``vy_error_mps`` and ``yaw_rate_error``: the mean per-step absolute errors after settling;
        ``fall_rate_fast`` and ``fall_rate_slow``: the fall rate over episodes commanding ``|vx| >= FAST_VX`` and
        over the others (the shipped teacher falls mostly at speed); ``stall_rate``: the share of the tracked
        episodes whose forward velocity along the command stayed under ``STALL_FRACTION`` of it (a teacher that walks
        in some episodes and steps in place in others: docs/RESULTS.md, the Go1).
        """
        def settled(label: str) -> np.ndarray:
            return traces[label][:, self.SETTLE_STEPS:]

        vx, cmd_vx = settled("imu_vel[0]"), settled("command[0]")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: episodes that ended while settling
            mean_vx, cmd = np.nanmean(vx, axis=1), np.nanmean(cmd_vx, axis=1)  # [N]
            tracked = (np.abs(cmd) >= self.MIN_TRACKED_VX) & ~fell & np.isfinite(mean_vx)
            got, asked = mean_vx[tracked], cmd[tracked]  # [tracked episodes]
            rel = np.abs(got - asked) / np.abs(asked)
            stalled = got * np.sign(asked) < self.STALL_FRACTION * np.abs(asked)
            fast = np.abs(traces["command[0]"][:, 0]) >= self.FAST_VX  # the command is fixed per episode
            return {
                "fall_rate_fast": float(fell[fast].mean()) if fast.any() else float("nan"),
                "fall_rate_slow": float(fell[~fast].mean()) if (~fast).any() else float("nan"),
                "tracking_error_vx": float(rel.mean()) if rel.size else float("nan"),
                "tracked_episodes": float(rel.size),
                "stall_rate": float(stalled.mean()) if rel.size else float("nan"),
                "vx_error_mps": float(np.nanmean(np.abs(vx - cmd_vx))),
                "vy_error_mps": float(np.nanmean(np.abs(settled("imu_vel[1]") - settled("command[1]")))),
                "yaw_rate_error": float(np.nanmean(np.abs(settled("imu_gyro[2]") - settled("command[2]")))),
            }

    def terminated(self, sim: SimArrays, command: Array, xp: Any) -> Array:
        """The trunk touches the ground, tilts more than 60 degrees, or sinks below ``MIN_BASE_HEIGHT``."""
        gravity = transform_sensor(sim.sensordata[:, self._s["imu_quat"]], "projected_gravity", xp)
        trunk = sim.sensordata[:, self._s["trunk_touch"]][:, 0] > self.CONTACT_FORCE
        return trunk | (-gravity[:, 2] < self.MAX_TILT_COS) | (sim.qpos[:, 2] < self.MIN_BASE_HEIGHT)

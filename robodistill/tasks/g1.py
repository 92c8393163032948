"""Unitree G1 humanoid (MuJoCo Menagerie's ``unitree_g1/g1.xml``, unedited, all 29 actuated joints): velocity
tracking on flat ground.

The observation split is the quadruped's: the student reads the pelvis IMU (gyro, projected gravity), the 29 joint
encoders, its last action and the command; the teacher also sees the base velocity, foot contacts, base height and
the randomized parameters. The command sampling, latency, pushes, legged_gym weighting and evaluation figures are
the quadruped task's (robodistill/tasks/quadruped.py); what is the humanoid's own is here: its sensors and floor
(added when the model compiles, :meth:`G1.edit_spec`), its reward for staying upright on two feet and its falls.

With ``task.collisions: accelerator`` only the eight foot spheres (four per foot) touch the floor: the mesh
collision geometry of the full model is what MJX cannot collide, and a fall is detected from the pelvis, not from
contacts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mujoco
import numpy as np

from robodistill.tasks.base import (
    Array, ExtraTerm, ParamSpec, ParamsTerm, SensorTerm, SimArrays, index_set, transform_sensor,
)
from robodistill.tasks.menagerie import menagerie_file
from robodistill.tasks.quadruped import Quadruped, pd_gain_fields, proprio_terms_for, sensor_slice
from robodistill.tasks.sensors import ActuatorTorques, Imu, JointEncoders, SiteSensor, Velocimeter

SIDES = ("left", "right")
# Menagerie's actuator order (legs, waist, arms), as Unitree's SDK numbers the motors
G1_JOINTS = (
    *(f"{s}_{j}_joint" for s in SIDES for j in ("hip_pitch", "hip_roll", "hip_yaw", "knee", "ankle_pitch",
                                                  "ankle_roll")),
    "waist_yaw_joint", "waist_roll_joint", "waist_pitch_joint",
    *(f"{s}_{j}_joint" for s in SIDES for j in ("shoulder_pitch", "shoulder_roll", "shoulder_yaw", "elbow",
                                                  "wrist_roll", "wrist_pitch", "wrist_yaw")),
)


class G1(Quadruped):
    """Track a commanded base velocity with the Menagerie Unitree G1 (29 joints) on flat ground."""

    name = "g1"
    episode_length = 1000  # 20 s
    decimation = 5
    TIMESTEP = 0.004
    joints = G1_JOINTS
    legs = SIDES
    proprio_terms = proprio_terms_for(G1_JOINTS)
    privileged_terms = (SensorTerm("imu_vel"), ExtraTerm("foot_contact", 2), ParamsTerm(), ExtraTerm("base_height", 1))
    params = {
        "friction": ParamSpec(0.6, 0.4, 1.0, "sliding friction of the feet and the floor"),
        "payload_mass": ParamSpec(0.0, -1.0, 3.0, "mass added to the torso, kg"),
        **{p: Quadruped.params[p] for p in ("motor_strength", "kp_scale", "kd_scale", "latency", "push_step")},
        "push_vx": ParamSpec(0.0, -0.5, 0.5, "push: change of base velocity along world x, m/s"),
        "push_vy": ParamSpec(0.0, -0.5, 0.5, "push: change of base velocity along world y, m/s"),
    }
    model_fields = ("geom_friction", "body_mass", "actuator_gainprm", "actuator_biasprm", "actuator_forcerange")
    COMMAND_RANGES = ((-0.5, 1.0), (-0.3, 0.3), (-0.8, 0.8))
    ACTION_SCALE = 0.25  # rad per unit action, around the standing pose
    REWARD_SCALES = {
        "tracking_lin_vel": 1.0, "tracking_ang_vel": 0.5, "lin_vel_z": -2.0, "ang_vel_xy": -0.05,
        "orientation": -2.0, "torques": -1e-5, "action_rate": -0.01, "feet_air": 0.5, "alive": 0.5,
        "termination": -100.0,
    }
    REWARD_PARAMS = {"tracking_sigma": Quadruped.REWARD_PARAMS["tracking_sigma"]}
    MIN_BASE_HEIGHT = 0.5  # m: the pelvis below this is a fall
    SENSORS = (
        Imu(site="imu_in_pelvis"),
        JointEncoders(),
        ActuatorTorques(),
        Velocimeter(site="imu_in_pelvis", name="imu_vel"),
        *(SiteSensor("touch", f"{side}_sole", f"{side}_foot_touch") for side in SIDES),
    )
    FOOT_GEOMS = tuple(f"{side}_foot_{k}" for side in SIDES for k in range(4))  # named in edit_spec
    ACCELERATOR_COLLISIONS = {"floor": (1, 0), **{foot: (0, 1) for foot in FOOT_GEOMS}}

    @classmethod
    def default_mjcf(cls) -> Path:
        """Menagerie's ``unitree_g1/g1.xml`` from the ``robots`` extra."""
        return menagerie_file("humanoid", "unitree_g1/g1.xml")

    def edit_spec(self, spec: Any) -> bool:
        """Add the floor, name the foot spheres, put a sole site under each foot; then sensors and collisions."""
        spec.option.timestep = self.TIMESTEP
        spec.option.iterations, spec.option.ls_iterations = 10, 20
        spec.worldbody.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[0, 0, 0.05],
                                rgba=[0.3, 0.35, 0.4, 1])
        spec.worldbody.add_light(pos=[0, 0, 4], dir=[0, 0, -1], type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL)
        for side in SIDES:
            ankle = spec.body(f"{side}_ankle_roll_link")
            spheres = [g for g in ankle.geoms if g.type == mujoco.mjtGeom.mjGEOM_SPHERE]
            for k, geom in enumerate(spheres):
                geom.name = f"{side}_foot_{k}"
            ankle.add_site(name=f"{side}_sole", type=mujoco.mjtGeom.mjGEOM_BOX, size=[0.12, 0.05, 0.02],
                           pos=[0.035, 0, -0.03], rgba=[0, 0, 0, 0])
        super(Quadruped, self).edit_spec(spec)
        return True

    def bind(self, model: Any) -> None:
        """Sensor slices, joint addresses, the standing pose and the torso."""
        def sensor(name: str) -> slice:
            return sensor_slice(model, name, self.name)

        self._s = {n: sensor(n) for n in ("imu_gyro", "imu_quat", "imu_vel")}
        self._touch_cols = np.array([sensor(f"{side}_foot_touch").start for side in SIDES])
        self._torque_cols = np.concatenate([np.arange(sensor(f"{j}_torque").start, sensor(f"{j}_torque").stop)
                                            for j in self.joints])
        jids = model.actuator_trnid[:, 0]
        self._leg_qpos = np.array([model.jnt_qposadr[j] for j in jids])  # [29]
        key = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_KEY, "stand")
        self._home_qpos = model.key_qpos[key].copy()
        self._torso = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "torso_link")
        self._bind_feet(model)
        self._dt = float(model.opt.timestep) * self.decimation

    def action_mapping(self, model: Any) -> tuple[np.ndarray, np.ndarray]:
        """``ctrl = stand + ACTION_SCALE * action`` (target angles, rad)."""
        key = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_KEY, "stand")
        return model.key_ctrl[key].copy(), np.full(model.nu, self.ACTION_SCALE)

    def initial_state(self, rng: np.random.Generator, n: int, qpos0: np.ndarray,
                      nv: int) -> tuple[np.ndarray, np.ndarray]:
        """Standing pose at the origin, any heading, joint angles within ± 0.05 rad of it, the pelvis at the height
        where the lowest foot sphere touches the floor (the ``stand`` keyframe sinks them 2 mm, the noise up to 7)."""
        qpos = np.tile(self._home_qpos, (n, 1))
        yaw = rng.uniform(-np.pi, np.pi, size=n)
        qpos[:, 3:7] = np.stack([np.cos(yaw / 2), 0 * yaw, 0 * yaw, np.sin(yaw / 2)], axis=-1)
        qpos[:, self._leg_qpos] += rng.uniform(-0.05, 0.05, size=(n, len(self.joints)))
        qpos[:, 2] += self.SPAWN_GROUND_Z - self.lowest_foot_bottom(qpos)
        return qpos, np.zeros((n, nv))

    def apply_params(self, nominal: dict[str, Array], params: dict[str, Array], xp: Any) -> dict[str, Array]:
        """Friction, torso payload, PD gains and torque limits per environment."""
        n = params["friction"].shape[0]
        tile = lambda a: xp.broadcast_to(a, (n,) + a.shape)  # noqa: E731
        rows = slice(None)
        friction = index_set(tile(nominal["geom_friction"]), (rows, slice(None), 0), params["friction"][:, None])
        body_mass = index_set(tile(nominal["body_mass"]), (rows, self._torso),
                              nominal["body_mass"][self._torso] + params["payload_mass"])
        return {"geom_friction": friction, "body_mass": body_mass, **pd_gain_fields(nominal, params, tile, xp)}

    def _contacts(self, sim: SimArrays) -> Array:
        return sim.sensordata[:, self._touch_cols] > self.CONTACT_FORCE  # [B, 2]

    def out_of_bounds(self, sim: SimArrays, params: dict[str, Array], xp: Any) -> None:
        """Flat ground without an edge."""
        return None

    def extra_observation(self, name: str, sim: SimArrays, params: dict[str, Array], xp: Any) -> Array:
        """``foot_contact`` [B, 2] and ``base_height`` above the floor [B, 1]."""
        if name == "foot_contact":
            return self._contacts(sim) * 1.0
        if name == "base_height":
            return sim.qpos[:, 2:3]
        return super().extra_observation(name, sim, params, xp)

    def reward_terms(self, sim: SimArrays, action: Array, prev_action: Array, command: Array,
                     xp: Any) -> dict[str, Array]:
        """legged_gym's velocity-tracking terms; ``feet_air`` pays for exactly one foot on the ground while moving
        (a stateless stand-in for feet air time), ``alive`` for every step upright."""
        contacts = self._contacts(sim)
        single = contacts[:, 0] != contacts[:, 1]
        return {
            **self._base_terms(sim, action, prev_action, command, xp),
            "feet_air": single * self._moving(command, xp) * 1.0,
            "alive": 0.0 * sim.qpos[:, 0] + 1.0,
        }

    def terminated(self, sim: SimArrays, command: Array, xp: Any) -> Array:
        """The pelvis sinks below ``MIN_BASE_HEIGHT`` or tilts more than 60 degrees."""
        gravity = transform_sensor(sim.sensordata[:, self._s["imu_quat"]], "projected_gravity", xp)
        return (-gravity[:, 2] < self.MAX_TILT_COS) | (sim.qpos[:, 2] < self.MIN_BASE_HEIGHT)

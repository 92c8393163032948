"""Unitree Go1 (MuJoCo Menagerie's ``unitree_go1/go1.xml``, unedited): the quadruped's velocity tracking task on a
real robot's model.

The Menagerie file brings the robot: its joint names, limits, torque limits, PD position actuators, the
``home`` keyframe and the actuator order FR, FL, RR, RL that Unitree's controllers use. What a task needs on top is
added when the model compiles (``mujoco.MjSpec``, :meth:`Go1.edit_spec`), so the file is never copied or edited:
the rough-terrain height field and floor of the quadruped task, the sensors a controller reads (IMU, joint
encoders: ``SENSORS``) and the simulator-only ones (velocimeter, foot positions and touch, torques), a control rate
of 50 Hz (timestep 4 ms, 5 substeps, 10 solver iterations: with 4, the Menagerie's elliptic friction cones at
impratio 100 launched 15 of 32 standing robots within 2 s), the position gain of the home-made quadruped (kp 50
instead of Menagerie's 100), and, with ``task.collisions: accelerator``, the accelerator-ready collision set (the
four feet and the trunk's box) with MuJoCo Playground's contact model for its Go1.

Everything per step (observations, reward, termination, randomization) is the quadruped task's
(robodistill/tasks/quadruped.py), with the leg order and names read from the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mujoco

from robodistill.tasks.base import Array, ParamSpec, index_set
from robodistill.tasks.menagerie import menagerie_file
from robodistill.tasks.quadruped import TERRAIN_FILE, Quadruped, proprio_terms_for
from robodistill.tasks.sensors import ActuatorTorques, Imu, JointEncoders, SiteSensor, Velocimeter

GO1_LEGS = ("FR", "FL", "RR", "RL")  # Menagerie's (and Unitree's SDK's) actuator order
GO1_JOINTS = tuple(f"{leg}_{j}" for leg in GO1_LEGS for j in ("hip", "thigh", "calf"))  # its actuator names
# the feet's contact impedance (solimp dmin, dmax, width): MuJoCo Playground's stiff one, the training model's
# nominal, and the Menagerie file's soft one, on which the standing Go1 rests 1.3 cm lower
PLAYGROUND_FOOT_SOLIMP = (0.9, 0.95, 0.023)
MENAGERIE_FOOT_SOLIMP = (0.015, 1.0, 0.023)


class Go1(Quadruped):
    """Track a commanded base velocity with the Menagerie Unitree Go1 over randomized terrain."""

    name = "go1"
    decimation = 5
    TIMESTEP = 0.004  # s: 5 substeps per 20 ms control step
    KP = 50.0  # N m/rad, the home-made quadruped's (see edit_spec)
    legs = GO1_LEGS
    joints = GO1_JOINTS
    proprio_terms = proprio_terms_for(GO1_JOINTS)
    FOOT_GEOMS = GO1_LEGS  # Menagerie names the foot spheres after their legs
    # the walking teachers' trunk height above the feet, m (stalled ones crouched at ~0.23)
    REWARD_PARAMS = {**Quadruped.REWARD_PARAMS, "base_height_target": 0.29}
    params = {
        **Quadruped.params,
        # the joints' damping is the PD's D term (the actuators have none): Playground's 0.5 N m s/rad
        "joint_damping": ParamSpec(0.5, 0.3, 1.0, "passive damping of every leg joint, N m s/rad"),
        # a teacher trained on Playground's feet alone stalled in 59 % of episodes on Menagerie's (docs/RESULTS.md)
        "foot_softness": ParamSpec(0.0, 0.0, 1.0, "the feet's contact impedance on the accelerator model: 0 "
                                   "Playground's, 1 Menagerie's, linear between (the full model keeps Menagerie's)",
                                   observed=False),
    }
    model_fields = (*Quadruped.model_fields, "geom_solimp")
    SENSORS = (
        Imu(site="imu"),
        JointEncoders(),
        ActuatorTorques(),
        Velocimeter(site="imu", name="imu_vel"),
        *(SiteSensor("framepos", f"{leg}_foot", f"{leg}_foot_pos") for leg in GO1_LEGS),
        *(SiteSensor("touch", f"{leg}_foot", f"{leg}_foot_touch") for leg in GO1_LEGS),
        *(SiteSensor("touch", f"{leg}_thigh", f"{leg}_thigh_touch") for leg in GO1_LEGS),
        SiteSensor("touch", "trunk", "trunk_touch"),
    )
    # the feet (Menagerie names them FR, FL, RR, RL) on the height field and the floor, the trunk's box on the
    # height field; everything else stops colliding
    ACCELERATOR_COLLISIONS = {"terrain": (1, 0), "floor": (2, 0), "trunk_collision": (0, 1),
                              **{leg: (0, 3) for leg in GO1_LEGS}}

    @classmethod
    def default_mjcf(cls) -> Path:
        """Menagerie's ``unitree_go1/go1.xml`` from the ``robots`` extra."""
        return menagerie_file("large", "unitree_go1/go1.xml")

    def edit_spec(self, spec: Any) -> bool:
        """Add the ground, the sites the task's sensors sit on and the control settings; then the sensors and the
        collision set (:meth:`Task.edit_spec`)."""
        spec.option.timestep = self.TIMESTEP
        spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
        spec.option.iterations, spec.option.ls_iterations = 10, 20  # 4 and 8 launch it: elliptic cones, impratio 100
        # Menagerie's kp 100 turns a 0.5 rad action into 50 N m against limits of 23.7-35.5; an open-loop trot
        # moved the Go1 0.22 m in 3 s at Playground's kp 35 and 0.89 m at 50, as far as the quadruped's 0.72 m
        for actuator in spec.actuators:
            actuator.gainprm[0], actuator.biasprm[1] = self.KP, -self.KP
        spec.add_hfield(name="terrain", file=str(TERRAIN_FILE), size=[10.0, 10.0, 0.12, 0.1])
        world = spec.worldbody
        world.add_geom(name="terrain", type=mujoco.mjtGeom.mjGEOM_HFIELD, hfieldname="terrain", pos=[0, 0, -0.06],
                       rgba=[0.2, 0.25, 0.3, 1])
        world.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[0, 0, 0.1], pos=[0, 0, -0.07],
                       rgba=[0.3, 0.35, 0.4, 1])
        world.add_light(pos=[0, 0, 4], dir=[0, 0, -1], type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL)
        trunk = spec.body("trunk")
        box = next(g for g in trunk.geoms if g.type == mujoco.mjtGeom.mjGEOM_BOX)
        box.name = "trunk_collision"
        trunk.add_site(name="trunk", type=mujoco.mjtGeom.mjGEOM_BOX, size=[0.29, 0.11, 0.07], pos=[0.02, 0, 0],
                       rgba=[0, 0, 0, 0])
        for leg in self.legs:
            spec.body(f"{leg}_calf").add_site(name=f"{leg}_foot", pos=[0, 0, -0.213], size=[0.03, 0, 0],
                                              rgba=[0, 0, 0, 0])
            spec.body(f"{leg}_thigh").add_site(name=f"{leg}_thigh", type=mujoco.mjtGeom.mjGEOM_CAPSULE,
                                               fromto=[-0.02, 0, 0, -0.02, 0, -0.2], size=[0.03, 0, 0],
                                               rgba=[0, 0, 0, 0])
        super().edit_spec(spec)
        if self.collisions == "accelerator":
            self._accelerator_contact_model(spec)
        return True

    @staticmethod
    def _accelerator_contact_model(spec: Any) -> None:
        """MuJoCo Playground's Go1 contact model: pyramidal friction cones, impratio 1, sliding friction only.

        Menagerie's elliptic cones at impratio 100 with torsional and rolling friction on the feet (condim 6) make
        a step 4.3x dearer on the C engine (1.1k against 4.9k env steps/s, 64 worlds, one thread) for contacts a
        policy need not resolve; the full model keeps them, and the sim-to-sim check runs the student there."""
        spec.option.cone = mujoco.mjtCone.mjCONE_PYRAMIDAL
        spec.option.impratio = 1.0
        for geom in spec.geoms:
            if geom.condim > 3:
                geom.condim = 3
            if geom.name in GO1_LEGS:  # the feet: Playground's impedance; Menagerie's soft one (dmin 0.015) under
                # pyramidal cones let them slide (the open-loop trot moved 0.08 m), and teachers learned to stand;
                # the foot_softness parameter blends it back in per episode
                geom.solimp[:3] = PLAYGROUND_FOOT_SOLIMP

    def apply_params(self, nominal: dict[str, Array], params: dict[str, Array], xp: Any) -> dict[str, Array]:
        """The quadruped's parameters, and on the accelerator model the feet's impedance (``foot_softness``)."""
        fields = super().apply_params(nominal, params, xp)
        n = params["foot_softness"].shape[0]
        solimp = xp.broadcast_to(nominal["geom_solimp"], (n,) + nominal["geom_solimp"].shape)  # [B, ngeom, 5]
        if self.collisions == "accelerator":
            s = params["foot_softness"][:, None, None]  # [B, 1, 1]
            feet = ((1.0 - s) * xp.asarray(PLAYGROUND_FOOT_SOLIMP) + s * xp.asarray(MENAGERIE_FOOT_SOLIMP))  # [B, 1, 3]
            solimp = index_set(solimp, (slice(None), self._foot_geoms, slice(0, 3)), feet)
        return {**fields, "geom_solimp": solimp}

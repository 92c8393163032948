"""What the viewer and the renderer share: a run's config with fixed parameters, its policies, the command and
the camera."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from robodistill.errors import ConfigError, UsageError

if TYPE_CHECKING:
    import mujoco

    from robodistill.config import Config
    from robodistill.env import BatchedEnv
    from robodistill.evaluation import Policy

POLICIES = ("student", "teacher", "onnx", "random")


def parse_params(items: Sequence[str]) -> dict[str, float]:
    """``["pole_mass=1.2", ...]`` -> ``{"pole_mass": 1.2}``; malformed items are a :class:`UsageError`."""
    out: dict[str, float] = {}
    for text in items:
        name, sep, value = text.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--param {text!r} is not of the form NAME=VALUE (e.g. pole_mass=1.2)")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise UsageError(f"--param {text!r}: {value!r} is not a number") from None
    return out


def parse_command(text: str | None) -> np.ndarray | None:
    """``"0.5,0,0.2"`` -> ``array([0.5, 0.0, 0.2])``."""
    if text is None:
        return None
    try:
        return np.asarray([float(v) for v in text.split(",")], dtype=np.float64)
    except ValueError:
        raise UsageError(f"--command {text!r} is not a comma-separated list of numbers (e.g. 0.5,0,0)") from None


def pin_params(cfg: "Config", params: dict[str, float]) -> "Config":
    """``cfg`` with each named parameter pinned to one value (``env.randomization.NAME = [v, v]``).

    Unknown names fail in the task class's own validation (with a did-you-mean). When the config disables
    randomization, the other parameters are pinned to their nominal values so the pinned ones still apply.
    """
    import dataclasses

    from robodistill.tasks import get_task_class

    if not params:
        return cfg
    task_cls = get_task_class(cfg.task)
    try:
        task_cls.validate_randomization({name: [v, v] for name, v in params.items()})
    except ConfigError as exc:
        raise UsageError(f"--param: {exc}") from None
    ranges = {name: list(r) for name, r in cfg.env.randomization.items()}
    if not cfg.env.randomize:
        ranges = {name: [spec.nominal, spec.nominal] for name, spec in task_cls.params.items()}
    ranges.update({name: [float(v), float(v)] for name, v in params.items()})
    return cfg.replace(env=dataclasses.replace(cfg.env, randomization=ranges, randomize=True))


def param_range(cfg: "Config", name: str) -> tuple[float, float]:
    """The configured sampling range of a parameter (the task's default range when the config names none)."""
    from robodistill.tasks import get_task_class

    spec = get_task_class(cfg.task).params[name]
    lo, hi = cfg.env.randomization.get(name, (spec.low, spec.high))
    return float(lo), float(hi)


def load_run(run: Path, overrides: Sequence[str] = (), params: dict[str, float] | None = None,
             need_student: bool = True) -> "Config":
    """The resolved config of ``run`` with ``--set`` overrides and pinned parameters; checks the student exists."""
    from robodistill.config import load_config
    from robodistill.runs import require_run_dir

    cfg = load_config(require_run_dir(run) / "config.yaml", list(overrides))
    if need_student and not (run / "student" / "student.pt").is_file():
        raise UsageError(f"run directory {run} has no student (student/student.pt); run distill first")
    return pin_params(cfg, params or {})


def check_policy_names(names: Sequence[str]) -> None:
    """Refuse unknown policy names with a suggestion."""
    for name in names:
        if name not in POLICIES:
            hint = difflib.get_close_matches(name, POLICIES, n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise UsageError(f"unknown policy {name!r}{extra}; choose from {', '.join(POLICIES)}")


def load_policy(run: Path, name: str, cfg: "Config", seed: int = 0) -> "Policy":
    """The named policy of ``run``: student, teacher, onnx (``export/policy.onnx``) or random."""
    from robodistill.evaluation import RandomPolicy, StudentPolicy, TeacherPolicy

    check_policy_names([name])
    if name == "student":
        from robodistill.student import load_student

        return StudentPolicy(load_student(run / "student" / "student.pt"))
    if name == "onnx":
        from robodistill.onnx_export import OnnxPolicy

        path = run / "export" / "policy.onnx"
        if not path.is_file():
            raise UsageError(f"run directory {run} has no ONNX export ({path}); run `robodistill export {run}`")
        return OnnxPolicy(path)
    from robodistill.teacher import Teacher

    teacher = Teacher.load(run)
    if name == "teacher":
        return TeacherPolicy(teacher)
    return RandomPolicy(teacher.spec["action_dim"], seed)


def fix_command(env: "BatchedEnv", command: np.ndarray | None) -> None:
    """Make every episode of ``env`` use ``command`` (the task's own draw still happens, keeping its stream)."""
    if command is None:
        return
    task = env.task
    if task.command_dim == 0:
        raise UsageError(f"task {task.name!r} takes no command; drop --command")
    if command.shape != (task.command_dim,):
        raise UsageError(f"--command needs {task.command_dim} comma-separated values for task {task.name!r}, "
                         f"got {command.size}")
    draw = task.sample_command

    def sample_command(rng: np.random.Generator, n: int) -> np.ndarray:
        draw(rng, n)
        return np.tile(command, (n, 1))

    task.sample_command = sample_command  # type: ignore[method-assign]  # instance-level, this env only


def root_joint(model: "mujoco.MjModel") -> int:
    """Index of the first joint (the robot's root), or -1 for a model without joints."""
    return 0 if model.njnt > 0 else -1


def _is_floating(model: "mujoco.MjModel") -> bool:
    """The robot's root moves freely (free joint) or slides (planar robots such as the hopper)."""
    import mujoco

    j = root_joint(model)
    return j >= 0 and int(model.jnt_type[j]) in (int(mujoco.mjtJoint.mjJNT_FREE), int(mujoco.mjtJoint.mjJNT_SLIDE))


def robot_radius(model: "mujoco.MjModel", body: int) -> float:
    """Radius of the geoms under ``body`` around their centre of mass at the model's rest pose (meters)."""
    import mujoco

    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    geoms = [g for g in range(model.ngeom) if int(model.body_rootid[model.geom_bodyid[g]]) == body]
    if not geoms:
        return 0.5
    centre = data.subtree_com[body]
    return float(max(np.linalg.norm(data.geom_xpos[g] - centre) + model.geom_rbound[g] for g in geoms))


def make_camera(model: "mujoco.MjModel") -> "mujoco.MjvCamera":
    """A tracking camera on the root body of a floating (free or slide-jointed) robot; else the fixed camera
    ``front`` if the model has one, else the default free camera."""
    import mujoco

    cam = mujoco.MjvCamera()
    mujoco.mjv_defaultFreeCamera(model, cam)
    front = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, "front")
    if _is_floating(model):
        body = int(model.body_rootid[model.jnt_bodyid[root_joint(model)]])
        cam.type = mujoco.mjtCamera.mjCAMERA_TRACKING
        cam.trackbodyid = body
        cam.distance = float(np.clip(3.5 * robot_radius(model, body), 1.0, 10.0))
        cam.azimuth, cam.elevation = 90.0, -15.0
    elif front >= 0:
        cam.type = mujoco.mjtCamera.mjCAMERA_FIXED
        cam.fixedcamid = front
    return cam


def push_velocity(model: "mujoco.MjModel", strength: float = 1.0) -> np.ndarray:
    """A velocity kick ``[nv]`` on the root: horizontal for a free joint (m/s), else along the first dof."""
    import mujoco

    kick = np.zeros(model.nv)
    j = root_joint(model)
    if j < 0:
        return kick
    adr = int(model.jnt_dofadr[j])
    if int(model.jnt_type[j]) in (int(mujoco.mjtJoint.mjJNT_FREE), int(mujoco.mjtJoint.mjJNT_SLIDE)):
        kick[adr] = 0.8 * strength  # m/s along world x (free joint) or the slide axis
    else:
        kick[adr] = 3.0 * strength  # rad/s
    return kick

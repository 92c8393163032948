"""Export the student to ONNX (docs/design.md decision 8) and verify it against torch with onnxruntime.

The graph takes the raw newest proprio observation and the student's state and returns the action in actuator
units (normalization, deterministic head, clipping and scaling inside) and the next state; the batch axis is
dynamic. The metadata describes everything a controller needs to feed it without robodistill.
"""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mujoco
import numpy as np
import onnx
import torch
from torch import nn

import robodistill
from robodistill.errors import ExportVerificationError, UsageError
from robodistill.runs import atomic_write, atomic_write_text

if TYPE_CHECKING:
    from robodistill.config import Config
    from robodistill.env import BatchedEnv
    from robodistill.student import Student

log = logging.getLogger(__name__)

INPUTS = ["obs", "state"]
OUTPUTS = ["action", "next_state"]
UNVERIFIED_FILE = "policy.unverified.onnx"  # the graph while it is checked, and kept when it fails
SIM2SIM_EPISODES = 20  # nominal held-out episodes the deploy kit replays at export (robodistill/verify.py)


class _DeployGraph(nn.Module):
    """``(obs [B, Dp], state) -> (action [B, A] in actuator units, next_state)``."""

    def __init__(self, student: "Student") -> None:
        super().__init__()
        self.student = student

    def forward(self, obs: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.student.deploy(obs, state)


def policy_metadata(cfg: "Config", env: "BatchedEnv", student: "Student") -> dict[str, Any]:
    """Everything a controller needs besides the weights: names, order, rates, scales, state."""
    backend = env.backend
    model: mujoco.MjModel = backend.model
    names = lambda objtype, n: [mujoco.mj_id2name(model, objtype, i) or f"{objtype.name}{i}"  # noqa: E731
                                for i in range(n)]
    actuators = names(mujoco.mjtObj.mjOBJ_ACTUATOR, model.nu)
    joint_ids = [int(model.actuator_trnid[i, 0]) for i in range(model.nu)]
    default_qpos = [float(q) for q in env.task.default_joint_positions(model)]
    offset, scale = np.asarray(backend.action_offset), np.asarray(backend.action_scale)
    return {
        "format": "robodistill-policy-1",
        "robodistill_version": robodistill.__version__,
        "config_hash": cfg.hash(),
        "task": cfg.task.name,
        "mjcf": Path(env.task.mjcf_path).name,
        "inputs": {"obs": ["batch", student.obs_dim], "state": ["batch", *student.state_shape]},
        "outputs": {"action": ["batch", student.action_dim], "next_state": ["batch", *student.state_shape]},
        "observation_names": env.layout.labels("proprio"),
        "observation_terms": env.layout.describe_proprio(),
        "action_names": actuators,
        "joint_names": [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j) for j in joint_ids],
        "control_dt": env.dt,
        "physics_timestep": float(model.opt.timestep),
        "decimation": env.task.decimation,
        "action_offset": offset.tolist(),
        "action_scale": scale.tolist(),
        "action_limits": [(offset - scale).tolist(), (offset + scale).tolist()],
        "default_joint_positions": default_qpos,
        "pd_gains": {"kp": [float(model.actuator_gainprm[i, 0]) for i in range(model.nu)],
                     "kd": [float(-model.actuator_biasprm[i, 2]) for i in range(model.nu)]},
        "encoder": student.spec.encoder,
        "history_length": student.history,
        "state_shape": list(student.state_shape),
        "state_initial_value": 0.0,
        "episode_length": env.episode_length,
        # the task's resolved reward scales (defaults with task.reward_scales applied): the deploy kit's reward
        # table scores with these, so a sim-to-sim return is the return the student was trained and scored on
        "reward_scales": {term: float(scale) for term, scale in env.task.reward_scales.items()},
        "reward_params": {name: float(value) for name, value in env.task.reward_params.items()},
    }


def export_onnx(student: "Student", path: Path, metadata: dict[str, Any], opset: int = 17) -> None:
    """Write the student's deploy graph with dynamic batch and ``metadata_props`` (atomically)."""
    student = student.eval()
    obs = torch.zeros(2, student.obs_dim)
    state = student.initial_state(2)
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(_DeployGraph(student), (obs, state), buf, input_names=INPUTS, output_names=OUTPUTS,
                          opset_version=opset, dynamo=False,
                          dynamic_axes={n: {0: "batch"} for n in INPUTS + OUTPUTS})
    model = onnx.load_from_string(buf.getvalue())
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    onnx.checker.check_model(model, full_check=True)
    atomic_write(Path(path), lambda tmp: onnx.save(model, str(tmp)))


def load_session(path: str | Path) -> Any:
    """An onnxruntime session; a missing, truncated or corrupted file is a :class:`UsageError`."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"ONNX policy not found: {path}")
    try:
        onnx.checker.check_model(str(path))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - any unreadable model is the user's input problem
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"cannot load ONNX policy {path}: {first[:200]}") from None


@torch.no_grad()
def record_rollout(cfg: "Config", student: "Student", steps: int, num_envs: int,
                   seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Student-driven rollout: the (raw obs, state) fed at each step, stacked ``[steps * B, ...]``."""
    from robodistill.env import env_from_config

    env = env_from_config(cfg, num_envs, seed=seed)
    student = student.to(env.device)
    obs_rows, state_rows = [], []
    try:
        obs = env.reset()
        state = student.initial_state(num_envs)
        for _ in range(steps):
            obs_rows.append(obs["proprio"].clone())
            state_rows.append(state.clone())
            action, state = student.act(obs["proprio"], state)
            obs, _, terminated, truncated, _ = env.step(action)
            state = student.reset_state(state, terminated | truncated)
    finally:
        env.close()
        student.cpu()
    return torch.cat(obs_rows).cpu().numpy(), torch.cat(state_rows).cpu().numpy()


def onnx_parity(student: "Student", session: Any, obs: np.ndarray, state: np.ndarray) -> float:
    """Max abs difference of action and next state between torch and onnxruntime on the same inputs."""
    with torch.no_grad():
        t_action, t_state = student.deploy(torch.from_numpy(obs), torch.from_numpy(state))
    o_action, o_state = session.run(OUTPUTS, {"obs": obs.astype(np.float32), "state": state.astype(np.float32)})
    return float(max(np.abs(o_action - t_action.numpy()).max(), np.abs(o_state - t_state.numpy()).max()))


def export_run(cfg: "Config", student: "Student", out_dir: Path,
               sim2sim_episodes: int = SIM2SIM_EPISODES) -> dict[str, Any]:
    """Export ``policy.onnx``, ``policy.json``, the MJCF and ``episodes.npz`` into ``out_dir``, then verify.

    Verification: torch vs onnxruntime parity on a recorded rollout, ``onnx.checker``, and the deploy kit's
    sim-to-sim return vs the torch student's on ``sim2sim_episodes`` nominal held-out episodes (0 skips it;
    see robodistill/verify.py). A graph whose parity exceeds ``export.max_abs_diff`` never becomes
    ``policy.onnx``: it stays as ``policy.unverified.onnx`` and :class:`ExportVerificationError` is raised.
    """
    from robodistill.env import env_from_config
    from robodistill.verify import verify_sim2sim

    ec = cfg.export
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    env = env_from_config(cfg, 1, seed=cfg.seed)
    try:
        metadata = policy_metadata(cfg, env, student)
        task = env.task
    finally:
        env.close()
    onnx_path, candidate = out_dir / "policy.onnx", out_dir / UNVERIFIED_FILE
    export_onnx(student, candidate, metadata, ec.opset)
    session = load_session(candidate)
    obs, state = record_rollout(cfg, student, ec.parity_steps, ec.parity_envs, seed=cfg.seed + 7)
    diff = onnx_parity(student, session, obs, state)
    if not diff <= ec.max_abs_diff:  # NaN fails too
        raise ExportVerificationError(
            f"ONNX parity {diff:.2e} exceeds export.max_abs_diff {ec.max_abs_diff:.2e}: the graph does not reproduce "
            f"the student; it is kept as {candidate} for inspection, and no policy.onnx was written")
    verification = {"onnx_max_abs_diff": diff, "parity_rollout_steps": ec.parity_steps,
                    "parity_rollout_envs": ec.parity_envs, "onnx_checker": "passed"}
    if sim2sim_episodes > 0:
        verification.update(verify_sim2sim(cfg, student.eval(), candidate, task, sim2sim_episodes))
    atomic_write_text(out_dir / "policy.json", json.dumps({**metadata, "verification": verification}, indent=2))
    os.replace(candidate, onnx_path)  # only a verified graph is ever called policy.onnx
    log.info("exported %s: max |onnx - torch| = %.2e over %d steps x %d envs", onnx_path, diff, ec.parity_steps,
             ec.parity_envs)
    return verification


class OnnxPolicy:
    """An exported policy under onnxruntime, as an evaluation policy (actions mapped back to [-1, 1])."""

    def __init__(self, path: str | Path) -> None:
        self.session = load_session(path)
        meta = self.session.get_modelmeta().custom_metadata_map
        try:
            self.offset = np.asarray(json.loads(meta["action_offset"]), dtype=np.float32)
            self.scale = np.asarray(json.loads(meta["action_scale"]), dtype=np.float32)
            self.state_shape = tuple(json.loads(meta["state_shape"]))
            self.state_init = float(json.loads(meta["state_initial_value"]))
        except (KeyError, ValueError) as exc:
            raise UsageError(f"ONNX policy {path} lacks robodistill metadata ({exc})") from None
        self.state: np.ndarray | None = None

    def reset(self, num_envs: int) -> None:
        """Initial state for every environment."""
        self.state = np.full((num_envs, *self.state_shape), self.state_init, dtype=np.float32)

    def act(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """One onnxruntime call for the batch; advances the state."""
        proprio = obs["proprio"]
        action, self.state = self.session.run(OUTPUTS, {"obs": proprio.cpu().numpy().astype(np.float32),
                                                        "state": self.state})
        return torch.from_numpy((action - self.offset) / self.scale).to(proprio.device)

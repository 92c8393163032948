"""Sim-to-sim verification of an export: the torch student in robodistill vs the deploy kit in plain MuJoCo.

Both play the same held-out episodes on the nominal model (randomization and sensor noise off): robodistill's
C backend with the torch student records each episode's initial state, command and model fields plus the
student's return into ``episodes.npz``; then ``export/sim2sim.py`` (numpy + mujoco + onnxruntime only, in a
subprocess) replays them from the ONNX file, its metadata and the MJCF copied beside it. Agreement of the two
returns checks the sensor timing, the observation assembly from declared terms, the action mapping and the
reward table of the deploy kit in one number.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from robodistill.runs import atomic_write, atomic_write_text

if TYPE_CHECKING:
    from robodistill.config import Config
    from robodistill.student import Student
    from robodistill.tasks.base import Task

log = logging.getLogger(__name__)

KIT = Path(__file__).resolve().parents[1] / "export"
SIM2SIM = KIT / "sim2sim.py"
# The check: over each episode's first HORIZON control steps the deploy kit's return must match the torch student's
# to HORIZON_RTOL (float32 rounding between torch and onnxruntime gives about 1e-7; a wrong observation, action
# mapping or reward shows at once). Whole episodes are compared too, but only reported: in contact-rich tasks the
# same rounding flips a contact after a hundred or so steps and the trajectories part (a quadruped: 1e-5 after 120
# steps, then 1e-2), so whole-episode returns differ by chance (TOLERANCE on the mean is the warning line).
HORIZON = 50
HORIZON_RTOL = 1e-3
TOLERANCE = 0.02


@torch.no_grad()
def record_torch_episodes(cfg: "Config", student: "Student", episodes: int,
                          seed: int) -> dict[str, np.ndarray]:
    """The torch student on ``episodes`` nominal, noise-free held-out episodes: their starts and returns."""
    from robodistill.env import make_env, make_task
    from robodistill.evaluation import StudentPolicy, play

    env = make_env(make_task(cfg, randomize=False), episodes, backend="mujoco", seed=seed,
                   num_threads=cfg.env.num_threads)
    backend = env.backend
    backend.sensor_noise = False  # the deploy kit adds no sensor noise; compare like with like
    try:
        obs = env.reset()
        sim = backend.sim_arrays()
        record: dict[str, np.ndarray] = {"qpos": sim.qpos.copy(), "qvel": sim.qvel.copy(),
                                         "command": backend.command.copy()}
        models = [backend.env_model(i) for i in range(episodes)]  # the model each episode ran on (nominal)
        for field in env.task.model_fields:
            record[f"model.{field}"] = np.stack([getattr(m, field) for m in models])
        result = play(env, StudentPolicy(student), obs, horizon=HORIZON)
    finally:
        env.close()
    record["reference_returns"] = result.returns
    record["reference_lengths"] = result.lengths
    record["reference_horizon_returns"] = result.horizon_returns
    record["horizon"] = np.asarray(HORIZON)
    record["seed"] = np.asarray(seed)
    return record


def copy_mjcf(task: "Task", out_dir: Path) -> Path:
    """Copy the task's MJCF and the files it references (meshes, height fields, includes) beside the ONNX file; a
    task that edits its model (sensors, collision set) gets the edited MJCF there, the model the policy ran on."""
    from robodistill.sim.compile import edited_spec

    mjcf = Path(task.mjcf_path).resolve()
    dest = Path(out_dir) / mjcf.name
    for src, rel in _mjcf_files(mjcf, mjcf.parent):
        target = Path(out_dir) / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, lambda tmp, src=src: shutil.copyfile(src, tmp))
    licence = mjcf.parent / "LICENSE"  # a model's licence travels with it (Menagerie's Unitree models: BSD-3)
    if licence.is_file():
        atomic_write(Path(out_dir) / "LICENSE", lambda tmp: shutil.copyfile(licence, tmp))
    spec, edited = edited_spec(task)
    if edited:  # files the edits added by absolute path go beside the others, named relative to the new MJCF
        xml = spec.to_xml()
        for asset in (*spec.hfields, *spec.meshes):
            if asset.file and Path(asset.file).is_absolute():
                target = Path(out_dir) / (spec.meshdir or "") / Path(asset.file).name
                target.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(target, lambda tmp, src=asset.file: shutil.copyfile(src, tmp))
                xml = xml.replace(f'file="{asset.file}"', f'file="{target.name}"')
        atomic_write_text(dest, xml)
    return dest


def _mjcf_files(xml: Path, root: Path) -> list[tuple[Path, Path]]:
    """``(source, path relative to root)`` of ``xml`` and every file it references, includes followed."""
    out = [(xml, xml.relative_to(root))]
    tree = ET.parse(xml)
    compiler = tree.find(".//compiler")
    dirs = {k: (compiler.get(k) if compiler is not None else None) for k in ("assetdir", "meshdir", "texturedir")}
    for el in tree.iter():
        file = el.get("file")
        if not file or Path(file).is_absolute():
            continue
        if el.tag == "include":
            out += _mjcf_files((xml.parent / file).resolve(), root)
            continue
        sub = dirs["texturedir"] if el.tag == "texture" else dirs["meshdir"]
        for base in (sub, dirs["assetdir"], None):
            src = (xml.parent / (base or "") / file).resolve()
            if src.is_file():
                try:
                    out.append((src, src.relative_to(root)))
                except ValueError:
                    log.warning("MJCF asset %s lies outside %s; not copied beside the policy", src, root)
                break
    return out


def kit_reward_tasks() -> set[str]:
    """Tasks the deploy kit's reward table (export/rewards.py, numpy only) knows."""
    spec = importlib.util.spec_from_file_location("robodistill_kit_rewards", KIT / "rewards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return set(module.REWARDS)


def run_sim2sim(onnx_path: Path, episodes: int, timeout: float = 600.0) -> dict[str, Any]:
    """Run ``export/sim2sim.py`` on the exported folder in a subprocess; its JSON result."""
    cmd = [sys.executable, str(SIM2SIM), str(onnx_path), "--episodes", str(episodes), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"sim2sim failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout)


def verify_sim2sim(cfg: "Config", student: "Student", onnx_path: Path, task: "Task",
                   episodes: int) -> dict[str, Any]:
    """Write ``episodes.npz`` and the MJCF beside ``onnx_path``, replay with the deploy kit, compare returns."""
    out_dir = Path(onnx_path).parent
    copy_mjcf(task, out_dir)
    seed = cfg.distill.eval_seed
    record = record_torch_episodes(cfg, student, episodes, seed)
    atomic_write(out_dir / "episodes.npz", lambda tmp: _savez(tmp, record))
    torch_mean = float(record["reference_returns"].mean())
    if cfg.task.name not in kit_reward_tasks():
        reason = (f"export/rewards.py has no reward for task {cfg.task.name!r}; run sim2sim.py with "
                  "--reward-module to compare returns")
        log.warning("sim2sim check skipped: %s", reason)
        return {"torch_mean_return": torch_mean, "sim2sim_mean_return": None, "sim2sim_skipped": reason}
    result = run_sim2sim(Path(onnx_path), episodes)
    gap = abs(result["mean_return"] - torch_mean) / max(abs(torch_mean), 1e-9)
    early = _relative(np.asarray(result["horizon_returns"]), record["reference_horizon_returns"])
    info = {"torch_mean_return": torch_mean, "sim2sim_mean_return": result["mean_return"],
            "sim2sim_rel_diff": gap, "sim2sim_episodes": episodes, "sim2sim_seed": seed,
            "sim2sim_horizon": HORIZON, "sim2sim_horizon_max_rel_diff": float(early.max()),
            "sim2sim_within_tolerance": bool(early.max() <= HORIZON_RTOL),
            **episode_agreement(record["reference_returns"], record["reference_lengths"],
                                np.asarray(result["returns"]), np.asarray(result["lengths"]))}
    log.info("sim2sim: deploy kit %.3f vs torch %.3f over %d nominal episodes (gap %.3f%%); first %d steps agree "
             "to %.1e", result["mean_return"], torch_mean, episodes, 100 * gap, HORIZON, early.max())
    if early.max() > HORIZON_RTOL:
        log.warning("sim2sim: over the first %d steps an episode's return differs from the torch student's by "
                    "%.2g (> %.0e): the deploy kit does not reproduce the student; compare per-episode returns in "
                    "episodes.npz", HORIZON, early.max(), HORIZON_RTOL)
    elif gap > TOLERANCE:
        log.info("sim2sim: whole-episode mean return differs from the torch student's by %.2f%% (> %.0f%%), "
                 "though the first %d steps agree to %.1e: trajectories part later (contacts amplify float32 "
                 "rounding); evaluate more episodes before trusting the gap", 100 * gap, 100 * TOLERANCE,
                 HORIZON, early.max())
    return info


def episode_agreement(torch_returns: np.ndarray, torch_lengths: np.ndarray, kit_returns: np.ndarray,
                      kit_lengths: np.ndarray) -> dict[str, Any]:
    """Episode by episode, how far the deploy kit's returns ``[N]`` and lengths ``[N]`` are from the student's.

    The mean alone can hide a kit that acts differently on every episode; float32 rounding between torch and
    onnxruntime moves a smooth task's returns by about 1e-8 (contact-rich tasks can drift further).
    """
    rel = _relative(kit_returns, torch_returns)
    return {"sim2sim_max_episode_rel_diff": float(rel.max()),
            "sim2sim_lengths_equal": bool(np.array_equal(kit_lengths, torch_lengths))}


def _relative(kit: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per-episode |kit - reference| relative to the reference's magnitude (at least 1: returns near 0)."""
    return np.abs(kit - reference) / np.maximum(np.abs(reference), 1.0)


def _savez(tmp: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(tmp, "wb") as fh:  # a file object: np.savez would append .npz to a bare path
        np.savez(fh, **arrays)

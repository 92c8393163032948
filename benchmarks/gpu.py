"""The prepared GPU check (issue 20): every GPU figure in one run, under 8 minutes on one H100/H200-class GPU.

``python -m benchmarks gpu`` on a GPU machine (``--quick``: the tiny CPU sizes, so that the check never rots; the
test suite runs them). It writes ``benchmarks/results/gpu.json`` after every row, and a copy into ``$OUT`` when
that is set (the device tool fetches ``$OUT``), so a run cut short keeps what it measured. Sections, most
important first, each timed and recorded even if a later one fails (the C engine's rates first, as the baseline);
where NVIDIA Warp is not installed the accelerated rows are MJX's JAX physics instead, and say so in their unit:

1. physics steps/s of the quadruped (its accelerator collision set, as configs/quadruped_gpu.yaml trains it) on
   MuJoCo Warp at 1,024 / 4,096 / 8,192 environments (random actions,
   auto-reset; env steps/s x the task's decimation), against the C engine on every core at the same sizes, and
   MJX (JAX physics) at 4,096;
2. the DAgger loop ÷ env-only on Warp at 4,096 environments (``configs/quadruped_gpu.yaml``'s student and sizes);
3. SB3 PPO on Warp: a time-boxed quadruped teacher from scratch (``configs/quadruped_gpu.yaml``, the box in
   ``$ROBODISTILL_GPU_TEACHER_MINUTES``, default 2), its env steps/s, and its falls and tracking error on 256
   held-out rough-terrain episodes.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import torch

from benchmarks.common import ROOT, row, save
from benchmarks.mjx import _env_rate, _jax_device
from benchmarks.throughput import dagger_ratio
from robodistill.tasks import get_task_class

log = logging.getLogger(__name__)
TASK = "quadruped"
GPU_CONFIG = "quadruped_gpu.yaml"


def _sizes(gpu: bool) -> dict[str, Any]:
    if gpu:
        return {"batches": [1024, 4096, 8192], "mjx_batch": 4096, "dagger_batch": 4096, "seconds": 3.0,
                "teacher_minutes": float(os.environ.get("ROBODISTILL_GPU_TEACHER_MINUTES", "2")),
                "teacher_overrides": [], "dagger_overrides": [], "eval_episodes": 256, "eval_length": None}
    # one batch size throughout, so that the CPU run compiles as few programs as it can
    return {"batches": [8], "mjx_batch": 8, "dagger_batch": 8, "seconds": 0.5, "teacher_minutes": 0.1,
            "teacher_overrides": ["teacher.num_envs=8", "teacher.n_steps=8", "teacher.batch_size=64",
                                  "teacher.n_epochs=1"],
            "dagger_overrides": ["distill.steps_per_iteration=4", "distill.updates_per_iteration=2",
                                 "distill.batch_size=32"],
            "eval_episodes": 8, "eval_length": 20}


def _teacher_rows(sizes: dict[str, Any], device: str, backend: str) -> list[dict[str, Any]]:
    """Train the time-boxed teacher on ``backend``, then evaluate it on held-out rough-terrain episodes."""
    import robodistill as rd
    from robodistill.config import config_from_dict
    from robodistill.evaluation import TeacherPolicy, run_episodes
    from robodistill.runs import MetricsLog
    from robodistill.teacher import train_teacher

    overrides = [f"env.backend={backend}", f"teacher.max_minutes={sizes['teacher_minutes']}",
                 "teacher.total_timesteps=1000000000",
                 "teacher.checkpoint_every=1000000000", *sizes["teacher_overrides"]]
    cfg = rd.load_config(ROOT / "configs" / GPU_CONFIG, overrides)
    with tempfile.TemporaryDirectory(prefix="robodistill-gpu-teacher-") as run:
        t0 = time.perf_counter()
        teacher, info = train_teacher(cfg, Path(run), MetricsLog(Path(run), tensorboard=False))
        wall = time.perf_counter() - t0
    rows = [row("ppo_env_steps_per_s", TASK, cfg.teacher.num_envs, info["teacher_steps_per_second"],
                unit=f"env steps/s (SB3 PPO on {backend}, updates included)", device=device,
                env_steps=info["teacher_env_steps"], wall_s=wall, train_return=info["teacher_train_return"])]
    evaluation = ["env.randomization.terrain=[0.25,1]"]
    if sizes["eval_length"]:
        evaluation.append(f"env.episode_length={sizes['eval_length']}")
    result = run_episodes(config_from_dict(cfg.to_dict(), evaluation), TeacherPolicy(teacher),
                          sizes["eval_episodes"], seed=cfg.distill.eval_seed)
    rows.append(row("timeboxed_teacher_fall_rate", TASK, sizes["eval_episodes"], result.metrics["fall_rate"],
                    unit=f"falls after {sizes['teacher_minutes']:g} min of PPO on {backend} (rough terrain)",
                    device=device, tracking_error_vx=result.metrics.get("tracking_error_vx"),
                    mean_return=result.mean, env_steps=info["teacher_env_steps"]))
    return rows


def run(quick: bool) -> list[dict[str, Any]]:
    """Every section in turn; rows are saved (and copied to ``$OUT``) as they come."""
    device, gpu = _jax_device()
    sizes = _sizes(gpu and not quick)
    decimation = get_task_class(TASK).decimation
    rows: list[dict[str, Any]] = []
    out = os.environ.get("OUT")

    def keep(new: list[dict[str, Any]]) -> None:
        rows.extend(new)
        for r in new:
            log.info("%s", r)
        path = save("gpu", rows, quick)
        if out:
            shutil.copy(path, Path(out) / "gpu.json")

    def section(name: str, measure: Callable[[], list[dict[str, Any]]]) -> None:
        t0 = time.perf_counter()
        try:
            keep(measure())
        except Exception as exc:  # noqa: BLE001 - one failed section must not cost the others' figures
            log.error("section %s failed: %s", name, exc)
            keep([row(f"{name}_failed", TASK, None, float("nan"), unit=traceback.format_exc(limit=3)[-500:],
                      device=device)])
        log.info("section %s: %.0f s", name, time.perf_counter() - t0)

    task = get_task_class(TASK)(collisions="accelerator")  # configs/quadruped_gpu.yaml's model

    def c_engine() -> list[dict[str, Any]]:
        return [row("c_engine_physics_steps_per_s", TASK, batch,
                    _env_rate(task, batch, "mujoco", sizes["seconds"]) * decimation, device=device,
                    unit=f"physics steps/s (C engine on {os.cpu_count()} cores)") for batch in sizes["batches"]]

    def physics() -> list[dict[str, Any]]:
        new = []
        for batch in sizes["batches"]:
            rate = _env_rate(task, batch, accelerated, sizes["seconds"]) * decimation
            cpu = next((r["value"] for r in rows if r["name"] == "c_engine_physics_steps_per_s" and r["batch"] == batch),
                       None)
            new.append(row("physics_steps_per_s", TASK, batch, rate, cpu, device=device,
                           unit=f"physics steps/s ({accelerated} vs C engine on {os.cpu_count()} cores)"))
        return new

    def mjx() -> list[dict[str, Any]]:
        batch = sizes["mjx_batch"]
        rate = _env_rate(task, batch, "mjx", sizes["seconds"]) * decimation
        warp = next((r["value"] for r in rows if r["name"] == "physics_steps_per_s" and r["batch"] == batch), None)
        return [row("mjx_physics_steps_per_s", TASK, batch, rate, warp, device=device,
                    unit="physics steps/s (MJX's JAX physics vs warp)")]

    def dagger() -> list[dict[str, Any]]:
        loop, env_only = dagger_ratio(TASK, sizes["dagger_batch"], 1, backend=accelerated, config=GPU_CONFIG,
                                      overrides=sizes["dagger_overrides"])
        return [row("dagger_env_steps_per_s", TASK, sizes["dagger_batch"], loop, env_only, device=device,
                    unit=f"env steps/s (DAgger loop on {accelerated} vs env only)")]

    # the Warp backend where NVIDIA Warp is installed; else MJX's JAX physics, so that the check still measures
    accelerated = "warp" if importlib.util.find_spec("warp") else "mjx"
    torch.set_num_threads(os.cpu_count() or 1)
    section("c_engine", c_engine)
    section("physics", physics)
    section("dagger", dagger)
    section("teacher", lambda: _teacher_rows(sizes, device, accelerated))
    if accelerated == "warp":
        section("mjx", mjx)
    return rows

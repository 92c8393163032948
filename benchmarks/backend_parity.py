"""Statistical parity of the backends (issue 5): one trained teacher, the same held-out episodes, C engine vs MJX.

With contacts, MJX's float32 collision and solver are close to the C engine's but not equal, so trajectories
drift apart and only the returns can be compared statistically: the acceptance is that the teacher's mean return
over the same held-out episodes agrees within 5% on both backends. Each row gives the MJX mean return (value),
the C engine's (baseline), their relative difference, the per-episode standard deviation on each backend, and the
standard deviation of the per-episode differences (the episodes are paired).

The teachers are the shipped ones in ``assets/teachers/<task>`` unless ``PARITY_TEACHER_HOPPER`` /
``PARITY_TEACHER_QUADRUPED`` name another (a teacher file or a run directory); or run
``python -m benchmarks.backend_parity --task hopper --teacher RUN_OR_FILE``. A task without a teacher is skipped
with a log line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import ROOT, row

log = logging.getLogger(__name__)

TASKS = ["hopper", "quadruped"]
TOLERANCE = 0.05


def teacher_path_for(task: str) -> Path | None:
    """The teacher named by ``PARITY_TEACHER_<TASK>``, else the shipped one, if any."""
    value = os.environ.get(f"PARITY_TEACHER_{task.upper()}", "").strip()
    if value:
        return Path(value)
    shipped = ROOT / "assets" / "teachers" / task
    return shipped if shipped.is_dir() else None


def parity(task: str, teacher_path: Path, episodes: int, config: Path | None = None) -> dict[str, Any]:
    """The teacher's returns on ``episodes`` held-out episodes on both backends, and how far they agree."""
    import robodistill as rd
    from robodistill.evaluation import TeacherPolicy, run_episodes
    from robodistill.teacher import Teacher

    config = config or ROOT / "configs" / f"{task}.yaml"
    teacher = Teacher.load(teacher_path)
    returns, lengths, seconds = {}, {}, {}
    for backend in ("mujoco", "mjx"):
        cfg = rd.load_config(config, [f"env.backend={backend}"])
        t0 = time.perf_counter()
        result = run_episodes(cfg, TeacherPolicy(teacher), episodes, cfg.distill.eval_seed)
        seconds[backend] = time.perf_counter() - t0
        returns[backend], lengths[backend] = np.asarray(result.returns), np.asarray(result.lengths)
    c_mean, mjx_mean = float(returns["mujoco"].mean()), float(returns["mjx"].mean())
    rel = abs(mjx_mean - c_mean) / max(abs(c_mean), 1e-9)
    return {"task": task, "episodes": episodes, "mujoco_mean_return": c_mean, "mjx_mean_return": mjx_mean,
            "rel_diff": rel, "within_tolerance": bool(rel <= TOLERANCE),
            "mujoco_std_return": float(returns["mujoco"].std()), "mjx_std_return": float(returns["mjx"].std()),
            "paired_diff_std": float((returns["mjx"] - returns["mujoco"]).std()),
            "mujoco_mean_length": float(lengths["mujoco"].mean()), "mjx_mean_length": float(lengths["mjx"].mean()),
            "mujoco_seconds": seconds["mujoco"], "mjx_seconds": seconds["mjx"], "teacher": str(teacher_path)}


def _row(result: dict[str, Any]) -> dict[str, Any]:
    extra = {k: v for k, v in result.items() if k not in ("task", "episodes", "mjx_mean_return",
                                                          "mujoco_mean_return")}
    return row("teacher_mean_return_mjx_vs_c", result["task"], result["episodes"], result["mjx_mean_return"],
               result["mujoco_mean_return"], unit="return (MJX vs C engine, same episodes)", **extra)


def run(quick: bool) -> list[dict[str, Any]]:
    """Parity rows for every task whose teacher is given by environment variable."""
    torch.set_num_threads(1)
    episodes = 20 if quick else 50
    rows = []
    for task in TASKS:
        path = teacher_path_for(task)
        if path is None:
            log.info("backend_parity: no teacher for %s (set PARITY_TEACHER_%s); skipped", task, task.upper())
            continue
        rows.append(_row(parity(task, path, episodes)))
    return rows


def main() -> int:
    """``python -m benchmarks.backend_parity --task hopper --teacher RUN_OR_FILE [--episodes 20]``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.backend_parity")
    parser.add_argument("--task", required=True, choices=TASKS + ["pendulum"])
    parser.add_argument("--teacher", type=Path, required=True, help="teacher file or run directory")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--config", type=Path, default=None, help="config (default configs/<task>.yaml)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    print(json.dumps(parity(args.task, args.teacher, args.episodes, args.config), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Wall time per pipeline stage, env-steps/s of each stage, and peak memory, for the default task."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, row

QUICK = ["teacher.total_timesteps=50000", "distill.iterations=5", "distill.eval_episodes=20"]


def run(quick: bool) -> list[dict]:
    """Run ``robodistill pipeline configs/pendulum.yaml`` in a subprocess and read its summary."""
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "robodistill", "pipeline", str(ROOT / "configs" / "pendulum.yaml"),
               "--run-dir", str(run_dir)]
        for s in QUICK if quick else []:
            cmd += ["--set", s]
        t0 = time.time()
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        wall = time.time() - t0
        s = json.loads((run_dir / "summary.json").read_text())
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    task = s["task"]
    return [
        row("pipeline_wall", task, None, wall, unit="s", score=s["score"],
            onnx_max_abs_diff=s["onnx_max_abs_diff"]),
        row("teacher_wall", task, None, s["teacher_wall_seconds"], unit="s"),
        row("teacher_env_steps_per_s", task, None, s["teacher_steps_per_second"], unit="steps/s"),
        row("distill_wall", task, None, s["distill_wall_seconds"], unit="s"),
        row("distill_env_steps_per_s", task, None, s["distill_env_steps"] / s["distill_wall_seconds"],
            unit="steps/s (incl. evaluation)"),
        row("export_wall", task, None, s["export_wall_seconds"], unit="s"),
        row("score", task, None, s["score"], unit="normalized return"),
        row("peak_rss", task, None, peak_mb, unit="MiB"),
    ]

"""Soak: run distillation for many iterations and record resident memory (the buffer must keep it flat)."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import ROOT, row


def _rss_mib() -> float:
    with open(f"/proc/{os.getpid()}/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run(quick: bool) -> list[dict[str, Any]]:
    """200 (quick: 60) DAgger iterations on the pendulum with a buffer that fills after a few of them."""
    import robodistill as rd
    from robodistill.distill.runner import DaggerRunner
    from robodistill.teacher import Teacher

    torch.set_num_threads(1)
    iterations, warmup = (60, 10) if quick else (200, 20)
    cfg = rd.load_config(ROOT / "configs" / "pendulum.yaml")
    cfg = cfg.replace(distill=dataclasses.replace(cfg.distill, num_envs=32, steps_per_iteration=50,
                                                  updates_per_iteration=5, buffer_capacity=8000))
    teacher = Teacher({"task": "pendulum", "algo": "ppo", "obs_dim": 8, "action_dim": 1, "net_arch": [64, 64],
                       "activation": "tanh", "clip_obs": 10.0, "epsilon": 1e-8, "has_value": True})
    rss = []
    with tempfile.TemporaryDirectory() as tmp:
        runner = DaggerRunner(cfg, teacher, Path(tmp), None)
        runner.start()
        for _ in range(iterations):
            runner.buffer.start_iteration()
            runner.collect(0.5)
            runner.update()
            runner.iteration += 1
            runner.save()
            rss.append(_rss_mib())
        runner.close()
    growth = (rss[-1] - rss[warmup]) / rss[warmup]
    return [row("soak_rss_growth_after_warmup", "pendulum", 32, growth, unit="fraction",
                iterations=iterations, warmup=warmup, rss_mib_start=rss[warmup], rss_mib_end=rss[-1],
                rss_mib_max=max(rss), buffer_capacity=8000)]

"""Shared fixtures: a tiny config and a quickly trained teacher for the pendulum."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
# the update-precision trials' cache: one per test session, shared by its subprocesses (so a resumed run trains in
# the dtype its first process chose), never the developer's own
os.environ.setdefault("ROBODISTILL_CACHE", tempfile.mkdtemp(prefix="robodistill-cache-"))

ROOT = Path(__file__).resolve().parents[1]
PENDULUM = ROOT / "configs" / "pendulum.yaml"

TINY = [
    "teacher.total_timesteps=4096", "teacher.num_envs=8", "teacher.n_steps=256", "teacher.batch_size=256",
    "teacher.n_epochs=2", "distill.num_envs=16", "distill.steps_per_iteration=20", "distill.iterations=2",
    "distill.updates_per_iteration=10", "distill.batch_size=64", "distill.eval_episodes=4",
    "export.parity_steps=50", "export.parity_envs=2",
]


@pytest.fixture(scope="session")
def tiny_cfg():
    """The pendulum config with tiny budgets."""
    import robodistill as rd

    return rd.load_config(PENDULUM, overrides=TINY)


@pytest.fixture(scope="session")
def tiny_teacher(tiny_cfg, tmp_path_factory):
    """A teacher trained for a few thousand steps (it need not be good, only real)."""
    from robodistill.runs import MetricsLog
    from robodistill.teacher import train_teacher

    run = tmp_path_factory.mktemp("teacher_run")
    teacher, _ = train_teacher(tiny_cfg, run, MetricsLog(run, tensorboard=False))
    return teacher

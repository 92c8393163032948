"""The MuJoCo Warp backend on the CPU: measured contact buffers, overflow as a counted fault, and the shipped legged
teachers scoring on it what they score on the C engine (the conformance suite covers the contract itself)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("jax", reason="the warp backend runs through MJX")
pytest.importorskip("warp", reason="the warp backend needs NVIDIA Warp")

import robodistill as rd  # noqa: E402
from robodistill.evaluation import TeacherPolicy, run_episodes  # noqa: E402
from robodistill.sim import warp_backend  # noqa: E402
from robodistill.tasks import get_task_class  # noqa: E402
from robodistill.teacher import Teacher  # noqa: E402

pytestmark = pytest.mark.mjx
ROOT = Path(__file__).resolve().parents[1]


def test_buffers_are_sized_from_the_c_engines_counts():
    load = warp_backend.measure_constraint_load(get_task_class("quadruped")(), envs=4, steps=60)
    assert 0 < load.max_contacts <= load.max_rows  # a fallen quadruped touches the ground; each contact has rows
    assert load.contacts_per_world == max(4, -(-warp_backend.HEADROOM * load.max_contacts // 1))
    assert load.contacts_per_world < 128  # MuJoCo Warp's default for this model


def test_an_overflowing_world_is_reset_and_counted_never_silent(monkeypatch, caplog):
    monkeypatch.setattr(warp_backend, "HEADROOM", 0.05)  # buffers far below what the hopper needs
    env = rd.make_env("hopper", 4, backend="warp", seed=0)
    try:
        env.reset()
        assert env.backend.load.rows_per_world == 8
        for _ in range(10):
            env.step(torch.zeros(4, env.action_dim))
        assert env.backend.contact_overflows > 0
        assert env.backend.physics_faults >= env.backend.contact_overflows
        assert "overflowed their contact or constraint buffers" in caplog.text
    finally:
        env.close()


@pytest.mark.parametrize("task,episodes,length", [("hopper", 8, 100), ("quadruped", 64, 120)])
def test_shipped_teacher_returns_as_much_on_warp_as_on_the_c_engine(task, episodes, length):
    """The same teacher on the same held-out episodes: mean returns within 5 %, or within three standard errors of
    the paired difference where contacts make single episodes diverge (float32 contacts on Warp: the quadruped's
    joint velocities differ by rad/s after its first landing). Measured: hopper 0.02 %, quadruped 4.3 %."""
    teacher = Teacher.load(ROOT / "assets" / "teachers" / task)
    returns = {}
    for backend in ("mujoco", "warp"):
        cfg = rd.load_config(ROOT / "configs" / f"{task}.yaml",
                             overrides=[f"env.episode_length={length}", f"env.backend={backend}"])
        returns[backend] = run_episodes(cfg, TeacherPolicy(teacher), episodes, seed=7).returns
    c_engine, warp = returns["mujoco"].mean(), returns["warp"].mean()
    paired = returns["warp"] - returns["mujoco"]
    noise = 3 * paired.std(ddof=1) / episodes ** 0.5
    assert c_engine > 0
    assert abs(warp - c_engine) <= max(0.05 * abs(c_engine), noise), (c_engine, warp, noise)


def test_the_pendulum_pipeline_runs_end_to_end_on_warp(tmp_path):
    """Teacher, DAgger, paired evaluation and the verified export, all on MuJoCo Warp (tiny budgets)."""
    import json

    from robodistill.cli import main

    from conftest import PENDULUM, TINY

    run = tmp_path / "run"
    sets = [*TINY, "env.backend=warp", "env.episode_length=40", "teacher.total_timesteps=1024",
            "teacher.n_steps=64", "teacher.batch_size=128", "distill.eval_episodes=2", "distill.steps_per_iteration=10"]
    assert main(["pipeline", str(PENDULUM), "--run-dir", str(run), *(a for s in sets for a in ("--set", s))]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["onnx_max_abs_diff"] <= 1e-5 and summary["teacher_env_steps"] >= 1024
    assert rd.load_config(run / "config.yaml").env.backend == "warp"
    assert (run / "export" / "policy.onnx").is_file()

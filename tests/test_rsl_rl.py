"""robodistill environments under rsl_rl: the VecEnv contract, and rsl_rl's own PPO runner training on one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import robodistill as rd
from robodistill.tasks.pendulum import Pendulum

pytest.importorskip("rsl_rl", reason="rsl-rl-lib is not installed (the rsl_rl extra)")

from robodistill.integrations.rsl_rl import RslRlVecEnv  # noqa: E402


def test_the_vec_env_contract_auto_reset_and_time_outs():
    env = RslRlVecEnv(rd.make_env(Pendulum(episode_length=4), 3, seed=0))
    obs = env.get_observations()
    assert set(obs.keys()) == {"proprio", "privileged"} and obs["proprio"].shape == (3, 3)
    assert (env.num_envs, env.num_actions, env.max_episode_length) == (3, 1, 4)
    for t in range(1, 5):
        obs, rewards, dones, extras = env.step(torch.zeros(3, 1))
        assert rewards.shape == (3,) and dones.shape == (3,) and set(extras["log"]) == {
            "/reward/angle", "/reward/velocity", "/reward/torque"}
        if t < 4:
            assert not dones.any() and env.episode_length_buf.tolist() == [t] * 3
    assert dones.all() and extras["time_outs"].all()  # the time limit: rsl_rl bootstraps through it
    assert env.episode_length_buf.tolist() == [0, 0, 0] and torch.equal(env.get_observations()["proprio"],
                                                                        obs["proprio"])
    env.close()


def test_rsl_rl_ppo_trains_on_the_adapter(tmp_path):
    from rsl_rl.runners import OnPolicyRunner

    env = RslRlVecEnv(rd.make_env("pendulum", 16, seed=0))
    mlp = {"class_name": "rsl_rl.models.MLPModel", "hidden_dims": [32, 32], "activation": "elu"}
    cfg = {
        "num_steps_per_env": 32, "save_interval": 1000, "obs_groups": {"actor": ["proprio"], "critic": ["privileged"]},
        "algorithm": {"class_name": "rsl_rl.algorithms.PPO", "num_learning_epochs": 2, "num_mini_batches": 2},
        "actor": {**mlp, "distribution_cfg": {"class_name": "rsl_rl.modules.GaussianDistribution",
                                              "init_std": 0.5}},
        "critic": mlp, "multi_gpu": None, "logger": "tensorboard",
    }
    runner = OnPolicyRunner(env, cfg, log_dir=str(tmp_path), device="cpu")
    before = [p.detach().clone() for p in runner.alg.actor.parameters()]
    runner.learn(num_learning_iterations=2)
    after = list(runner.alg.actor.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(after, before))  # PPO updated the actor
    assert all(torch.isfinite(p).all() for p in after)
    assert np.isfinite(float(env.get_observations()["privileged"].sum()))
    env.close()


def test_the_frozen_teacher_model_gives_robodistills_labels(tiny_teacher, tmp_path):
    from robodistill.integrations.rsl_rl import FrozenTeacherModel

    tiny_teacher.save(tmp_path / "teacher.pt")
    env = RslRlVecEnv(rd.make_env("pendulum", 8, seed=0), history=4)
    obs = env.get_observations()
    assert obs["proprio_history"].shape == (8, 12)
    torch.testing.assert_close(obs["proprio_history"][:, -3:], obs["proprio"], rtol=0, atol=0)  # newest last
    assert (obs["proprio_history"][:, :9] == 0).all()  # nothing before the episode's start
    model = FrozenTeacherModel(obs, {"teacher": ["privileged"]}, "teacher", 1, str(tmp_path / "teacher.pt"))
    with torch.no_grad():
        torch.testing.assert_close(model(obs), tiny_teacher.act(obs["privileged"]), rtol=0, atol=0)
    env.close()


def test_compare_runs_rsl_rls_distillation_on_the_same_budget(tiny_teacher, tmp_path, capsys):
    import json

    from conftest import PENDULUM, TINY

    from robodistill.cli import main

    tiny_teacher.save(tmp_path / "teacher.pt")
    run = tmp_path / "compare"
    assert main(["compare", str(PENDULUM), "--teacher", str(tmp_path / "teacher.pt"), "--seeds", "1",
                 "--variants", "dagger,rsl_rl,dagger_as_rsl_rl", "--run-dir", str(run),
                 *[a for s in TINY for a in ("--set", s)]]) == 0
    printed = capsys.readouterr().out
    assert "| rsl_rl |" in printed and "Student Model" not in printed  # rsl_rl's own prints stay off stdout
    out = json.loads((run / "compare.json").read_text())["variants"]
    assert out["rsl_rl"]["env_steps"] == out["dagger"]["env_steps"] == 2 * 16 * 20  # the same budget
    assert out["dagger_as_rsl_rl"]["env_steps"] == 2 * 16 * 20
    assert np.isfinite(out["rsl_rl"]["score_mean"]) and len(out["rsl_rl"]["curves"][0]) == 2  # scored per iteration


def test_the_runner_configured_as_rsl_rl_takes_its_update_schedule(tiny_cfg):
    from robodistill.compare import rsl_rl_like

    cfg = rsl_rl_like(tiny_cfg.replace(distill=tiny_cfg.distill.__class__(**{
        **tiny_cfg.distill.__dict__, "steps_per_iteration": 100, "num_envs": 64})))
    # gradient_length 10 (the largest divisor of 100 up to rsl_rl's 15): 10 optimizer steps on 10 x 64 samples
    assert (cfg.distill.updates_per_iteration, cfg.distill.batch_size) == (10, 640)
    assert cfg.distill.exploration_std == pytest.approx(np.exp(tiny_cfg.student.init_log_std))

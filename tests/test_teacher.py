"""The SB3 teacher's training loop around the batched environment."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import PENDULUM, TINY


def test_rollouts_run_torch_single_threaded_and_updates_on_every_thread(tmp_path, monkeypatch) -> None:
    from stable_baselines3 import PPO

    import robodistill as rd
    from robodistill.runs import MetricsLog
    from robodistill.teacher import SB3VecEnv, train_sb3

    cfg = rd.load_config(PENDULUM, overrides=[*TINY, "env.num_threads=2"])
    seen: dict[str, set[int]] = {"rollout": set(), "update": set()}
    step_wait, train = SB3VecEnv.step_wait, PPO.train

    def spy_step_wait(self):  # noqa: ANN001, ANN202
        seen["rollout"].add(torch.get_num_threads())
        return step_wait(self)

    def spy_train(self):  # noqa: ANN001, ANN202
        seen["update"].add(torch.get_num_threads())
        return train(self)

    monkeypatch.setattr(SB3VecEnv, "step_wait", spy_step_wait)
    monkeypatch.setattr(PPO, "train", spy_train)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        train_sb3(cfg, tmp_path / "teacher", MetricsLog(tmp_path, tensorboard=False))
        assert torch.get_num_threads() == 2  # restored after training
    finally:
        torch.set_num_threads(threads)
    assert seen == {"rollout": {1}, "update": {2}}


def test_bfloat16_updates_run_under_autocast_that_sees_each_optimizer_step(tmp_path, monkeypatch) -> None:
    """PPO's minibatches share one autocast context; a cast cache would feed every forward the first weights."""
    from stable_baselines3 import PPO

    import robodistill as rd
    from robodistill.runs import MetricsLog
    from robodistill.teacher import SB3VecEnv, train_sb3

    cfg = rd.load_config(PENDULUM, overrides=[*TINY, "teacher.update_precision=bfloat16"])
    seen: dict[str, set] = {"rollout": set(), "update": set(), "sees_new_weights": set()}
    step_wait, train = SB3VecEnv.step_wait, PPO.train
    layer, x = torch.nn.Linear(4, 4), torch.ones(1, 4)

    def spy_step_wait(self):  # noqa: ANN001, ANN202
        seen["rollout"].add(torch.is_autocast_enabled("cpu"))
        return step_wait(self)

    def spy_train(self):  # noqa: ANN001, ANN202
        seen["update"].add(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        before = layer(x)
        with torch.no_grad():
            layer.weight.add_(1.0)  # what an optimizer step does between two minibatches
        seen["sees_new_weights"].add(not torch.equal(layer(x), before))
        return train(self)

    monkeypatch.setattr(SB3VecEnv, "step_wait", spy_step_wait)
    monkeypatch.setattr(PPO, "train", spy_train)
    train_sb3(cfg, tmp_path / "teacher", MetricsLog(tmp_path, tensorboard=False))
    assert seen == {"rollout": {False}, "update": {torch.bfloat16}, "sees_new_weights": {True}}
    assert not torch.is_autocast_enabled("cpu")  # left behind neither


def test_sac_refuses_bfloat16_updates() -> None:
    import robodistill as rd
    from robodistill.errors import ConfigError

    with pytest.raises(ConfigError, match="PPO only"):
        rd.load_config(PENDULUM, overrides=["teacher.algo=sac", "teacher.update_precision=bfloat16"])


def test_torch_threads_are_restored_when_training_stops_inside_a_rollout(tmp_path, monkeypatch) -> None:
    import robodistill as rd
    from robodistill.runs import MetricsLog
    from robodistill.teacher import SB3VecEnv, train_sb3

    def crash(self):  # noqa: ANN001, ANN202
        raise KeyboardInterrupt

    monkeypatch.setattr(SB3VecEnv, "step_wait", crash)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(KeyboardInterrupt):
            train_sb3(rd.load_config(PENDULUM, overrides=[*TINY, "env.num_threads=2"]), tmp_path / "teacher",
                      MetricsLog(tmp_path, tensorboard=False))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def test_a_run_started_from_a_teacher_keeps_its_policy_and_observation_statistics(tiny_cfg, tiny_teacher,
                                                                                 tmp_path) -> None:
    from robodistill.runs import MetricsLog
    from robodistill.teacher import train_sb3

    cfg = tiny_cfg.replace(teacher=dataclasses.replace(tiny_cfg.teacher, learning_rate=0.0))
    tuned, _ = train_sb3(cfg, tmp_path / "teacher", MetricsLog(tmp_path, tensorboard=False), init=tiny_teacher)
    for name, value in tiny_teacher.state_dict().items():
        if name in ("obs_mean", "obs_var"):  # refined by the new run's observations, weighted as a million
            assert torch.allclose(tuned.state_dict()[name], value, rtol=0.02, atol=1e-3), name
        else:  # a zero learning rate leaves the network exactly as the teacher had it
            assert torch.equal(tuned.state_dict()[name], value), name


RESUMABLE = ["teacher.total_timesteps=2048", "teacher.num_envs=8", "teacher.n_steps=128", "teacher.batch_size=256",
             "teacher.n_epochs=1", "teacher.checkpoint_every=1024"]


def _spy_on_learn(monkeypatch) -> dict:
    """What PPO holds when ``learn`` starts: weights, Adam's state, the normalizer's statistics, its step count."""
    from stable_baselines3 import PPO

    seen: dict = {}
    learn = PPO.learn

    def spy(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        norm = self.get_env()
        seen.update(weights={k: v.clone() for k, v in self.policy.state_dict().items()},
                    adam_state=len(self.policy.optimizer.state), num_timesteps=self.num_timesteps,
                    obs_mean=norm.obs_rms.mean.copy(), obs_var=norm.obs_rms.var.copy(),
                    obs_count=norm.obs_rms.count, ret_var=norm.ret_rms.var.copy(), ret_count=norm.ret_rms.count)
        return learn(self, *args, **kwargs)

    monkeypatch.setattr(PPO, "learn", spy)
    return seen


def test_teacher_resume_starts_from_the_checkpoints_weights_and_statistics(tmp_path, monkeypatch) -> None:
    import pickle

    from stable_baselines3 import PPO

    import robodistill as rd
    from robodistill.runs import MetricsLog
    from robodistill.teacher import train_teacher

    cfg = rd.load_config(PENDULUM, overrides=RESUMABLE)
    train_teacher(cfg, tmp_path, MetricsLog(tmp_path, tensorboard=False))
    saved = PPO.load(str(tmp_path / "teacher" / "sb3_model.zip"), device="cpu")
    with open(tmp_path / "teacher" / "vecnormalize.pkl", "rb") as fh:
        saved_norm = pickle.load(fh)  # a file this test just wrote
    seen = _spy_on_learn(monkeypatch)
    longer = rd.load_config(PENDULUM, overrides=[*RESUMABLE, "teacher.total_timesteps=3072"])
    train_teacher(longer, tmp_path, MetricsLog(tmp_path, tensorboard=False), resume=True)
    assert seen["num_timesteps"] == saved.num_timesteps == 2048
    for name, value in saved.policy.state_dict().items():
        assert torch.equal(seen["weights"][name], value), name
    assert seen["adam_state"] > 0  # Adam's moments come back too
    for key, value in (("obs_mean", saved_norm.obs_rms.mean), ("obs_var", saved_norm.obs_rms.var),
                       ("ret_var", saved_norm.ret_rms.var)):
        assert (seen[key] == value).all(), key
    assert seen["obs_count"] == saved_norm.obs_rms.count and seen["ret_count"] == saved_norm.ret_rms.count
    _, info = train_teacher(longer, tmp_path, MetricsLog(tmp_path, tensorboard=False), resume=True)  # nothing left
    assert info["teacher_env_steps"] == 3072


def test_action_std_restarts_a_resumed_policys_collapsed_noise_once(tmp_path, monkeypatch, capsys) -> None:
    import json
    import math

    from stable_baselines3 import PPO

    import robodistill as rd
    from robodistill.cli import main
    from robodistill.config import save_config
    from robodistill.runs import MetricsLog
    from robodistill.teacher import train_teacher

    cfg = rd.load_config(PENDULUM, overrides=[*RESUMABLE, "teacher.log_std_init=-3.5"])
    train_teacher(cfg, tmp_path, MetricsLog(tmp_path, tensorboard=False))
    save_config(cfg, tmp_path / "config.yaml")  # a run directory, as train-teacher leaves one
    saved = PPO.load(str(tmp_path / "teacher" / "sb3_model.zip"), device="cpu")
    assert saved.policy.log_std.exp().max() < 0.05  # the collapsed noise the option is for
    seen = _spy_on_learn(monkeypatch)
    assert main(["train-teacher", "--resume", str(tmp_path), "--set", "teacher.total_timesteps=3072",
                 "--set", "teacher.action_std=0.6"]) == 0
    assert torch.allclose(seen["weights"]["log_std"], torch.full_like(saved.policy.log_std, math.log(0.6)))
    for name, value in saved.policy.state_dict().items():
        if name != "log_std":
            assert torch.equal(seen["weights"][name], value), name
    # Adam's moments come back for every parameter but the noise's, which restarts from zero
    assert seen["adam_state"] == len(list(saved.policy.parameters())) - 1
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["teacher_action_std_restart"] == {"std": 0.6, "at_env_steps": 2048}
    # once: the run keeps its config without the setting, so a later resume goes on with the noise it has
    assert rd.load_config(tmp_path / "config.yaml").teacher.action_std is None
    resumed = PPO.load(str(tmp_path / "teacher" / "sb3_model.zip"), device="cpu")
    assert main(["train-teacher", "--resume", str(tmp_path), "--set", "teacher.total_timesteps=4096"]) == 0
    capsys.readouterr()
    assert torch.equal(seen["weights"]["log_std"], resumed.policy.log_std.detach())


def test_a_collapsed_or_saturated_action_noise_is_warned_about_once_with_its_remedy(tmp_path, caplog) -> None:
    """Noise outside HEALTHY_ACTION_STD gets one warning per run naming the restart; healthy noise gets none."""
    import logging

    import robodistill as rd
    from robodistill.runs import MetricsLog
    from robodistill.teacher import HEALTHY_ACTION_STD, action_noise_warning, train_sb3

    low, high = HEALTHY_ACTION_STD
    assert action_noise_warning(low) is None and action_noise_warning(high) is None
    assert "teacher.action_std=0.15" in action_noise_warning(0.99 * low)
    assert "clipped" in action_noise_warning(1.01 * high)
    for std_init, expected in ((-3.5, "collapsed to std 0.03"), (-0.5, None)):  # exp(-3.5) = 0.030
        caplog.clear()
        cfg = rd.load_config(PENDULUM, overrides=[*TINY, f"teacher.log_std_init={std_init}"])
        with caplog.at_level(logging.WARNING, logger="robodistill.teacher"):
            train_sb3(cfg, tmp_path / str(std_init), MetricsLog(tmp_path / str(std_init), tensorboard=False))
        warnings = [r.getMessage() for r in caplog.records if "action noise" in r.getMessage()]
        assert warnings == [] if expected is None else len(warnings) == 1 and expected in warnings[0], warnings


def test_sac_refuses_an_action_std() -> None:
    import robodistill as rd
    from robodistill.errors import ConfigError

    with pytest.raises(ConfigError, match="action_std"):
        rd.load_config(PENDULUM, overrides=["teacher.algo=sac", "teacher.action_std=0.2"])


def test_init_starts_from_the_teachers_policy_with_fresh_adam_and_measured_returns(tiny_teacher, tmp_path,
                                                                                  monkeypatch, capsys) -> None:
    import json

    import numpy as np

    from robodistill.cli import main

    tiny_teacher.save(tmp_path / "init.pt")
    seen = _spy_on_learn(monkeypatch)
    run = tmp_path / "run"
    sets = [a for s in RESUMABLE for a in ("--set", s)]
    assert main(["train-teacher", str(PENDULUM), "--init", str(tmp_path / "init.pt"), "--run-dir", str(run),
                 *sets]) == 0
    capsys.readouterr()
    assert seen["num_timesteps"] == 0 and seen["adam_state"] == 0  # a new run, Adam's moments at zero
    for name, value in (("mlp_extractor.policy_net.0.weight", tiny_teacher.latent[0].weight),
                        ("action_net.bias", tiny_teacher.mean_head.bias), ("log_std", tiny_teacher.log_std),
                        ("value_net.weight", tiny_teacher.value_head.weight)):
        assert torch.equal(seen["weights"][name], value), name
    # the teacher's observation statistics, weighted as a million samples (the return warm-up refines them)
    np.testing.assert_allclose(seen["obs_mean"], tiny_teacher.obs_mean.double().numpy(), rtol=0.02, atol=1e-3)
    assert seen["obs_count"] == pytest.approx(1e6, rel=0.01)
    assert seen["ret_count"] > 100 and (seen["ret_var"] != 1.0).all()  # measured by playing the teacher
    summary = json.loads((run / "summary.json").read_text())
    assert summary["teacher_init"] == str(tmp_path / "init.pt") and summary["teacher_env_steps"] >= 2048


def test_sac_teacher_trains_exports_its_actor_and_distills(tmp_path) -> None:
    """SAC end to end at tiny budgets: the frozen teacher acts as SB3's policy does, and a student learns from it."""
    import pickle

    import numpy as np
    from stable_baselines3 import SAC

    import robodistill as rd
    from robodistill.distill.runner import DaggerRunner
    from robodistill.runs import MetricsLog
    from robodistill.teacher import Teacher, train_teacher

    cfg = rd.load_config(PENDULUM, overrides=[*TINY, "teacher.algo=sac", "teacher.total_timesteps=400",
                                              "teacher.learning_starts=100", "teacher.batch_size=64",
                                              "teacher.net_arch=[32, 32]"])
    teacher, info = train_teacher(cfg, tmp_path, MetricsLog(tmp_path, tensorboard=False))
    assert info["teacher_env_steps"] >= 400 and teacher.spec["algo"] == "sac" and teacher.squash
    model = SAC.load(str(tmp_path / "teacher" / "sb3_model.zip"), device="cpu")
    with open(tmp_path / "teacher" / "vecnormalize.pkl", "rb") as fh:
        norm = pickle.load(fh)  # a file this test just wrote
    obs = np.random.default_rng(0).standard_normal((32, teacher.spec["obs_dim"])).astype(np.float32)
    expected, _ = model.predict(norm.normalize_obs(obs), deterministic=True)
    got = Teacher.load(tmp_path).act(torch.from_numpy(obs)).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    assert np.abs(expected).max() > 1e-3  # a trained actor, not a constant zero
    figures = DaggerRunner(cfg, teacher, tmp_path, MetricsLog(tmp_path, tensorboard=False)).run()
    assert figures["distill_iterations"] == 2 and np.isfinite(figures["score"])
    assert (tmp_path / "student" / "student.pt").is_file()


def test_reward_terms_and_action_noise_are_logged(tmp_path) -> None:
    """Each named term's share of the reward, summed per episode, adds up to the episode's return (the pendulum
    neither clips nor penalizes), and teacher training logs their means and its action noise to metrics.jsonl."""
    import numpy as np

    import robodistill as rd
    from robodistill.runs import MetricsLog, read_metrics
    from robodistill.tasks.pendulum import Pendulum
    from robodistill.teacher import SB3VecEnv, train_sb3

    task = Pendulum(episode_length=7, reward_scales={"torque": -0.5})  # a scale the default table lacks
    adapter = SB3VecEnv(rd.make_env(task, 4, seed=0))
    adapter.reset()
    rng = np.random.default_rng(0)
    returns = np.zeros(4)
    for _ in range(14):  # two whole episodes per environment
        adapter.step_async(rng.uniform(-1, 1, (4, 1)).astype(np.float32))
        _, reward, _, _ = adapter.step_wait()
        returns += reward
    terms = adapter.pop_reward_terms()
    assert set(terms) == {"angle", "velocity", "torque"}
    assert sum(terms.values()) == pytest.approx(returns.sum() / 8, rel=1e-5)  # 8 episodes
    assert terms["torque"] < 0 and adapter.pop_reward_terms() == {}
    adapter.close()

    cfg = rd.load_config(PENDULUM, overrides=TINY)
    teacher, _ = train_sb3(cfg, tmp_path / "teacher", MetricsLog(tmp_path, tensorboard=False))
    records = read_metrics(tmp_path, "teacher")
    logged = [r for r in records if "reward/angle" in r]  # records after some episode finished
    assert logged and all(f"reward/{name}" in logged[-1] for name in ("velocity", "torque"))
    assert logged[-1]["reward/angle"] < 0
    # the action noise is logged too, where a collapse shows (the last record precedes the last updates)
    assert records[-1]["action_std"] == pytest.approx(float(teacher.log_std.exp().mean()), rel=0.05)

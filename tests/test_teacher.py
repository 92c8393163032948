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

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

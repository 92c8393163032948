"""Every registered backend honours the contract of robodistill/sim/interface.py.

Parametrized over the built-in backends that are installed plus ``serial``: a minimal backend defined below
(MuJoCo stepped one environment at a time in Python), which shows what adding a backend takes: one class and
one ``register_backend`` call.
"""

from __future__ import annotations

import importlib.util

import mujoco
import numpy as np
import pytest
import torch

import robodistill as rd
from robodistill.errors import ConfigError
from robodistill.sim.interface import Backend
from robodistill.sim.mujoco_backend import MujocoBackend
from robodistill.sim.registry import backend_names, get_backend, register_backend
from robodistill.tasks.pendulum import Pendulum

FULL = mujoco.mjtState.mjSTATE_FULLPHYSICS


class SerialBackend(MujocoBackend):
    """The C engine, one environment and one ``mj_step`` at a time on the calling thread."""

    name = "serial"

    def _physics(self, ctrl: np.ndarray) -> np.ndarray:
        for i in range(self.num_envs):
            model, data = self.env_model(i), self._batch.get_data(i)  # environment i's model and state row
            data.ctrl[:] = ctrl[i]
            for _ in range(self.task.decimation):
                mujoco.mj_step(model, data)
            mujoco.mj_getState(model, data, self.physics_state[i], mujoco.mjtState.mjSTATE_INTEGRATION)
            self.sensordata[i] = data.sensordata
        return np.zeros(0, dtype=np.int64)  # no simulation raised


register_backend("serial", SerialBackend)

_JAX = bool(importlib.util.find_spec("mujoco.mjx") and importlib.util.find_spec("jax"))
BACKENDS = ["mujoco", "serial"] + (["mjx"] if _JAX else []) + (["warp"] if _JAX and importlib.util.find_spec("warp")
                                                               else [])
B = 4


@pytest.fixture
def make():
    """``make(backend, episode_length=200, seed=0)``: a pendulum batch of B environments, closed after the test."""
    envs = []

    def build(backend: str, episode_length: int = 200, seed: int = 0) -> rd.BatchedEnv:
        envs.append(rd.make_env(Pendulum(episode_length=episode_length), B, backend=backend, seed=seed))
        return envs[-1]

    yield build
    for env in envs:
        env.close()


def _actions(steps: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(steps, B, 1, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _play(env: rd.BatchedEnv, steps: int, seed: int = 0) -> tuple:
    """``steps`` control steps of seeded random actions; the last step's ``(obs, reward, terminated, truncated,
    info)``."""
    for action in _actions(steps, seed):
        out = env.step(action.to(env.device))
    return out


def test_the_registry_knows_every_backend_and_the_config_refuses_others():
    assert {"mujoco", "mjx", "warp", "serial"} <= set(backend_names())
    assert get_backend("serial") is SerialBackend
    with pytest.raises(ConfigError, match="unknown backend 'bullet'; registered: .*mujoco"):
        rd.make_env("pendulum", 2, backend="bullet")
    with pytest.raises(ConfigError, match="env.backend: unknown backend 'mujuco'"):
        rd.load_config("configs/pendulum.yaml", overrides=["env.backend=mujuco"])
    assert rd.load_config("configs/pendulum.yaml", overrides=["env.backend=serial"]).env.backend == "serial"


@pytest.mark.parametrize("backend", BACKENDS)
def test_shapes_dtypes_device_and_finite_under_random_actions(backend, make):
    env = make(backend)
    assert isinstance(env.backend, Backend)
    obs = env.reset()
    for action in _actions(30):
        for group, dim in env.obs_dims.items():
            assert obs[group].shape == (B, dim) and obs[group].dtype == torch.float32, group
            assert obs[group].device == env.device and torch.isfinite(obs[group]).all(), group
        obs, reward, terminated, truncated, info = env.step(action.to(env.device))
        assert reward.shape == (B,) and reward.dtype == torch.float32 and torch.isfinite(reward).all()
        assert terminated.dtype == truncated.dtype == torch.bool and terminated.shape == (B,)


@pytest.mark.parametrize("backend", BACKENDS)
def test_auto_reset_hands_over_the_final_observation_and_starts_the_next_episode(backend, make):
    env = make(backend, episode_length=5)
    first = env.reset()
    params = {p: v.copy() for p, v in env.backend.params.items()}
    obs, _, terminated, truncated, info = _play(env, 5)
    assert truncated.all() and not terminated.any()
    assert info["final_env_ids"].tolist() == list(range(B))
    assert info["final_obs"]["privileged"].shape == (B, env.obs_dims["privileged"])
    assert torch.all(obs["proprio"][:, 2] == 0)  # the new episode's previous action
    assert not torch.equal(obs["privileged"].cpu(), first["privileged"].cpu())
    assert all(not np.allclose(v, params[p]) for p, v in env.backend.params.items())


@pytest.mark.parametrize("backend", BACKENDS)
def test_rewind_replays_the_first_episodes(backend, make):
    env = make(backend)
    first = env.reset()["privileged"].cpu().clone()
    params = {p: v.copy() for p, v in env.backend.params.items()}
    _play(env, 3)
    env.reset()
    again = env.reset(rewind=True)["privileged"].cpu()
    assert torch.equal(again, first)
    assert all(np.array_equal(v, params[p]) for p, v in env.backend.params.items())


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_seed_same_episode_parameters_as_the_c_engine(backend, make):
    reference, env = make("mujoco", seed=3), make(backend, seed=3)
    reference.reset()
    env.reset()
    for p, v in reference.backend.params.items():
        np.testing.assert_array_equal(env.backend.params[p], v)
    other = make(backend, seed=4)
    other.reset()
    assert not np.array_equal(other.backend.params["pole_mass"], env.backend.params["pole_mass"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_snapshot_and_restore_continue_bit_for_bit(backend, make):
    env = make(backend, episode_length=7)  # an auto-reset inside the replayed stretch
    env.reset()
    _play(env, 4, seed=1)
    snap = env.backend.snapshot()

    def play() -> list[torch.Tensor]:
        return [env.step(a.to(env.device))[0]["privileged"].cpu().clone() for a in _actions(6, seed=2)]

    first = play()
    env.backend.restore(snap)
    assert all(torch.equal(a, b) for a, b in zip(play(), first))
    with pytest.raises(ValueError):
        make("mujoco" if backend != "mujoco" else "serial", episode_length=7).backend.restore(snap)


@pytest.mark.parametrize("backend", BACKENDS)
def test_drawing_one_environment_matches_its_observation(backend, make):
    """``env_model`` and ``env_physics_state`` (what the viewer and render draw) are the stepped environment's."""
    env = make(backend)
    env.reset()
    _play(env, 5)
    model = env.backend.env_model(2)
    assert model.body_mass[1] == pytest.approx(float(env.backend.params["pole_mass"][2]), rel=1e-6)
    data = mujoco.MjData(model)
    mujoco.mj_setState(model, data, env.backend.env_physics_state(2), FULL)
    sim = env.backend.sim_arrays()
    np.testing.assert_allclose(data.qpos, np.asarray(sim.qpos[2]), rtol=0, atol=1e-6)
    np.testing.assert_allclose(data.qvel, np.asarray(sim.qvel[2]), rtol=0, atol=1e-6)
    qvel = sim.qvel.copy()
    env.backend.push(np.full((B, model.nv), 0.5))
    np.testing.assert_allclose(np.asarray(env.backend.sim_arrays().qvel), np.asarray(qvel) + 0.5, rtol=1e-6)


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "mujoco"])
def test_step_parity_with_the_c_engine_on_the_contact_free_pendulum(backend, make):
    reference, env = make("mujoco"), make(backend)
    a, b = reference.reset(), env.reset()
    tol = 1e-4 if backend in ("mjx", "warp") else 1e-9  # MJX and MuJoCo Warp compute in float32
    for action in _actions(20, seed=5):
        torch.testing.assert_close(b["privileged"].cpu(), a["privileged"], rtol=0, atol=tol)
        a, ra, *_ = reference.step(action)
        b, rb, *_ = env.step(action.to(env.device))
        torch.testing.assert_close(rb.cpu(), ra, rtol=1e-4, atol=tol * 100)

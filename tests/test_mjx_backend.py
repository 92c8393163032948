"""The MJX backend against the C engine: same episodes, same trajectories, same auto-reset and faults."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("jax", reason="the mjx backend needs jax")
pytest.importorskip("mujoco.mjx", reason="the mjx backend needs mujoco-mjx")

from robodistill.env import make_env  # noqa: E402
from robodistill.sim.mjx_backend import CACHE_ENV_VAR, default_cache_dir  # noqa: E402
from robodistill.tasks.base import wrap_angle  # noqa: E402
from robodistill.tasks.pendulum import Pendulum  # noqa: E402

pytestmark = pytest.mark.mjx

TOL = 1e-4  # float32 on MJX vs float64 on the C engine


def _host(x):  # noqa: ANN001, ANN202
    if isinstance(x, torch.Tensor):
        return x.cpu()
    if isinstance(x, dict):
        return {k: _host(v) for k, v in x.items()}
    if isinstance(x, tuple):
        return tuple(_host(v) for v in x)
    return x


class _OnHost:
    """An environment whose observations, rewards and flags come back on the CPU (MJX's live on its GPU)."""

    def __init__(self, env) -> None:  # noqa: ANN001
        self.env = env

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self.env, name)

    def reset(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        return _host(self.env.reset(*args, **kwargs))

    def step(self, action):  # noqa: ANN001, ANN201
        return _host(self.env.step(action))


def _pair(task, num_envs: int, seed: int):
    return (make_env(task, num_envs, backend="mujoco", seed=seed),
            _OnHost(make_env(task, num_envs, backend="mjx", seed=seed)))


def _actions(num_envs: int, steps: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(num_envs, 1, generator=g) * 2 - 1 for _ in range(steps)]


def _same_params(c, j) -> bool:
    return all(np.array_equal(c.backend.params[p], j.backend.params[p]) for p in c.backend.params)


def _close(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max())


def test_same_episodes_and_trajectory():
    """Same seed: identical sampled episodes, and the same actions give the same observations and rewards."""
    c, j = _pair("pendulum", 4, seed=3)
    assert (j.backend.name, j.num_envs, j.action_dim, j.obs_dims, j.dt) == \
        ("mjx", c.num_envs, c.action_dim, c.obs_dims, c.dt)
    oc, oj = c.reset(), j.reset()
    assert _same_params(c, j)
    np.testing.assert_array_equal(c.backend.command, j.backend.command)
    for group in ("proprio", "privileged"):
        assert oj[group].dtype == torch.float32 and oj[group].shape == oc[group].shape
        assert _close(oc[group], oj[group]) < 1e-6
    for action in _actions(4, 25):
        oc, rc, tc, trc, ic = c.step(action)
        oj, rj, tj, trj, ij = j.step(action)
        assert _close(oc["proprio"], oj["proprio"]) < TOL
        assert _close(oc["privileged"], oj["privileged"]) < TOL
        assert _close(rc, rj) < TOL
        assert rj.dtype == torch.float32 and tj.dtype == torch.bool and trj.dtype == torch.bool
        assert torch.equal(tc, tj) and torch.equal(trc, trj) and ij["final_obs"] is None
    oc, oj = c.reset(), j.reset()  # a second reset starts every environment's next episode, on both
    assert _same_params(c, j) and _close(oc["privileged"], oj["privileged"]) < 1e-6
    c.close()
    j.close()


def test_auto_reset_starts_the_next_sampled_episode():
    """Truncated episodes restart on device with the same next episode as the C engine."""
    c, j = _pair(Pendulum(episode_length=5), 3, seed=7)
    c.reset(), j.reset()
    first = {p: v.copy() for p, v in j.backend.params.items()}
    resets = 0
    for t, action in enumerate(_actions(3, 11, seed=1)):
        oc, rc, tc, trc, ic = c.step(action)
        oj, rj, tj, trj, ij = j.step(action)
        assert torch.equal(trc, trj) and torch.equal(tc, tj)
        assert _close(oc["privileged"], oj["privileged"]) < TOL and _close(rc, rj) < TOL
        assert _same_params(c, j)
        if (t + 1) % 5 == 0:
            resets += 1
            assert trj.all()
            assert torch.equal(ic["final_env_ids"], ij["final_env_ids"])
            assert _close(ic["final_obs"]["privileged"], ij["final_obs"]["privileged"]) < TOL
            assert not np.array_equal(j.backend.params["pole_mass"], first["pole_mass"])
            assert (oj["proprio"][:, -1] == 0).all()  # the previous action restarts at zero
        else:
            assert ij["final_obs"] is None
    assert resets == 2


class _FallingPendulum(Pendulum):
    """Terminates when the pole hangs down: environments restart at different steps."""

    episode_length = 50

    def terminated(self, sim, command, xp):
        return xp.abs(wrap_angle(sim.qpos[:, 0], xp)) > 2.5


def test_partial_resets_match():
    """Only the environments that terminated restart, each with its own next episode."""
    c, j = _pair(_FallingPendulum(), 4, seed=1)
    c.reset(), j.reset()
    partial = 0
    for action in _actions(4, 20):
        oc, rc, tc, trc, ic = c.step(action)
        oj, rj, tj, trj, ij = j.step(action)
        assert torch.equal(tc, tj)
        assert _close(oc["privileged"], oj["privileged"]) < TOL and _close(rc, rj) < TOL
        if ic["final_obs"] is not None:
            assert torch.equal(ic["final_env_ids"], ij["final_env_ids"])
            assert _close(ic["final_obs"]["privileged"], ij["final_obs"]["privileged"]) < TOL
            partial += int(len(ij["final_env_ids"]) < 4)
        assert _same_params(c, j)
    assert partial >= 2


class _ExplodingPendulum(Pendulum):
    """A NaN velocity kick at step 2 in the heavier environments."""

    def velocity_kick(self, steps, qvel, params, xp):
        bad = (steps == 2)[:, None] & (params["pole_mass"] > 1.0)[:, None]
        return xp.where(bad, xp.nan, 0.0 * qvel)


def test_physics_fault_resets_the_environment(tmp_path, monkeypatch):
    """A diverged environment is reset, counted, reported as a fault, and gets reward 0, as on the C engine."""
    monkeypatch.chdir(tmp_path)  # the C engine writes its warning to MUJOCO_LOG.TXT in the working directory
    c, j = _pair(_ExplodingPendulum(), 4, seed=1)
    c.reset(), j.reset()
    heavy = torch.as_tensor(j.backend.params["pole_mass"] > 1.0)
    assert heavy.any() and not heavy.all()
    for t, action in enumerate(_actions(4, 4)):
        oc, rc, tc, trc, ic = c.step(action)
        oj, rj, tj, trj, ij = j.step(action)
        assert torch.equal(ic["faults"], ij["faults"])
        assert torch.isfinite(oj["proprio"]).all() and torch.isfinite(oj["privileged"]).all()
        assert _close(oc["privileged"], oj["privileged"]) < TOL and _close(rc, rj) < TOL
        if t == 2:
            assert torch.equal(ij["faults"], heavy) and torch.equal(tj, heavy) and (rj[heavy] == 0).all()
    assert j.physics_faults == c.physics_faults == int(heavy.sum())
    assert _same_params(c, j)


def test_action_from_torch_is_float32_jax():
    """Torch actions cross by DLPack as float32 jax arrays, whatever their dtype."""
    import jax

    env = make_env("pendulum", 2, backend="mjx", seed=0)
    for dtype in (torch.float32, torch.float64):
        a = torch.tensor([[0.5], [-0.25]], dtype=dtype, requires_grad=True)
        x = env.backend.action_from_torch(a)
        assert isinstance(x, jax.Array) and x.dtype == np.float32
        np.testing.assert_array_equal(np.asarray(x), [[0.5], [-0.25]])


def test_compilation_cache_dir(monkeypatch, tmp_path):
    """The cache folder defaults to the user cache; the environment variable moves it or (empty) turns it off."""
    monkeypatch.delenv(CACHE_ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "robodistill" / "jax"
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.setenv(CACHE_ENV_VAR, "")
    assert default_cache_dir() is None


def test_rewind_replays_the_first_episodes_without_a_retrace():
    import jax

    env = make_env("pendulum", 4, backend="mjx", seed=3)
    first = env.reset()
    actions = _actions(4, 5, seed=1)
    trajectory = [env.step(a)[0]["proprio"] for a in actions]
    traces = env.backend._step._cache_size()
    again = env.reset(rewind=True)
    assert _close(first["proprio"], again["proprio"]) == 0.0
    for a, expected in zip(actions, trajectory):
        assert _close(env.step(a)[0]["proprio"], expected) == 0.0
    assert env.backend._step._cache_size() == traces  # the same compiled step served both passes
    assert env.device.type == ("cpu" if jax.default_backend() == "cpu" else "cuda")


def test_dagger_runner_lives_on_the_environment_device(tiny_cfg, tiny_teacher, tmp_path):
    import dataclasses

    from robodistill.distill.runner import DaggerRunner

    cfg = tiny_cfg.replace(env=dataclasses.replace(tiny_cfg.env, backend="mjx"))
    runner = DaggerRunner(cfg, tiny_teacher, tmp_path, None)
    runner.start()
    runner.collect(0.5)
    runner.update()
    device = runner.env.device
    assert runner.gen.device == device
    assert all(t.device == device for t in runner.buffer.data.values())
    assert all(p.device == device for p in runner.student.parameters())
    assert all(p.device == device for p in tiny_teacher.parameters())
    assert runner.obs["proprio"].device == device and runner.buffer_samples == 16 * 20

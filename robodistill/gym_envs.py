"""Gymnasium registration: every built-in task as a single ``gymnasium.Env`` with both observation groups.

``import robodistill.gym_envs`` registers ``robodistill/Pendulum-v0``, ``robodistill/Hopper-v0``,
``robodistill/Quadruped-v0`` and the Menagerie robots ``robodistill/Go1-v0`` and ``robodistill/G1-v0``::

    import gymnasium as gym
    import robodistill.gym_envs  # noqa: F401
    env = gym.make("robodistill/Hopper-v0")
    obs, info = env.reset(seed=0)   # {"proprio": float32[Dp], "privileged": float32[Dq]}

The environment wraps ``robodistill.make_env(task, 1, ...)``: the same task code, randomization (resampled every
episode) and seeded episode streams as the batched environment. The episode's time limit is the task's own
(``truncated`` is set by the task), so no ``TimeLimit`` wrapper is added.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from robodistill.env import BatchedEnv, make_env

OBS_LIMIT = 1e6  # observations are clipped to [-OBS_LIMIT, OBS_LIMIT] so that the Box bounds are finite

GYM_IDS = {
    "robodistill/Pendulum-v0": "pendulum",
    "robodistill/Hopper-v0": "hopper",
    "robodistill/Quadruped-v0": "quadruped",
    "robodistill/Go1-v0": "go1",  # the Menagerie robots need the robots extra
    "robodistill/G1-v0": "g1",
}


class RobodistillEnv(gym.Env[dict[str, np.ndarray], np.ndarray]):
    """One environment of a robodistill task: Dict observation {"proprio", "privileged"}, actions in [-1, 1]."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, task: str, randomize: bool = True, num_threads: int = 1,
                 render_mode: str | None = None) -> None:
        if render_mode is not None:
            raise ValueError(f"render_mode {render_mode!r} is not supported (use `robodistill render`)")
        self.task_name, self.randomize, self.num_threads = task, randomize, num_threads
        self.render_mode = render_mode
        self._env: BatchedEnv | None = self._make(seed=0)
        dims, action_dim = self._env.obs_dims, self._env.action_dim
        self.observation_space = gym.spaces.Dict({
            group: gym.spaces.Box(-OBS_LIMIT, OBS_LIMIT, shape=(dims[group],), dtype=np.float32)
            for group in ("proprio", "privileged")
        })
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(action_dim,), dtype=np.float32)
        self.dt = self._env.dt
        self._needs_seed = True

    def _make(self, seed: int) -> BatchedEnv:
        return make_env(self.task_name, 1, seed=seed, num_threads=self.num_threads, randomize=self.randomize)

    @staticmethod
    def _obs(obs: dict[str, torch.Tensor], row: int = 0) -> dict[str, np.ndarray]:
        return {k: np.clip(v[row].numpy(), -OBS_LIMIT, OBS_LIMIT).astype(np.float32) for k, v in obs.items()}

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start a new episode; a ``seed`` restarts the episode stream (parameters, initial states, noise)."""
        super().reset(seed=seed)
        if seed is not None or self._needs_seed or self._env is None:
            # the episode stream is seeded from the env's np_random, itself seeded by `seed` (random if None)
            if self._env is not None:
                self._env.close()
            self._env = self._make(seed=int(self.np_random.integers(2**31 - 1)))
            self._needs_seed = False
        assert self._env is not None
        return self._obs(self._env.reset()), {}

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Apply ``action`` [A] in [-1, 1]; at the end of an episode the terminal observation is returned."""
        if self._env is None:
            raise RuntimeError("step() called on a closed environment")
        act = torch.as_tensor(np.asarray(action, dtype=np.float32).reshape(1, -1))
        obs, reward, terminated, truncated, info = self._env.step(act)
        if info["final_obs"] is not None:  # the batched env already restarted; report the episode's last state
            obs = info["final_obs"]
        out_info: dict[str, Any] = {"physics_fault": bool(info["faults"][0])}
        return self._obs(obs), float(reward[0]), bool(terminated[0]), bool(truncated[0]), out_info

    def observation_labels(self, group: str) -> list[str]:
        """Names of the entries of observation ``group`` ("proprio" or "privileged"), in order."""
        assert self._env is not None
        return self._env.layout.labels(group)

    def close(self) -> None:
        """Release the simulator (safe to call twice)."""
        if self._env is not None:
            self._env.close()
            self._env = None


def register_envs() -> None:
    """Register every built-in task with gymnasium (idempotent)."""
    for env_id, task in GYM_IDS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point="robodistill.gym_envs:RobodistillEnv", kwargs={"task": task})


register_envs()

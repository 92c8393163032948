"""The batched environment: torch tensors in and out, over a physics backend (C engine or MJX)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from robodistill.errors import ConfigError
from robodistill.sim.registry import get_backend
from robodistill.tasks import get_task_class
from robodistill.tasks.base import Task

if TYPE_CHECKING:
    from robodistill.config import Config
    from robodistill.sim.interface import Backend

Obs = dict[str, torch.Tensor]


def make_task(task: "str | Task | Config", randomize: bool = True) -> Task:
    """A task instance from a registered name, an instance, or a config (with its randomization ranges)."""
    if isinstance(task, Task):
        return task
    if isinstance(task, str):
        return get_task_class(task)(randomize=randomize)
    cfg = task
    cls = get_task_class(cfg.task)
    return cls(randomization=cfg.env.randomization, randomize=randomize and cfg.env.randomize,
               mjcf=cfg.task.mjcf, episode_length=cfg.env.episode_length, reward_scales=cfg.task.reward_scales,
               collisions=cfg.task.collisions, reward_params=cfg.task.reward_params)


class BatchedEnv:
    """``num_envs`` environments of one task stepped together; observation groups ``proprio`` and ``privileged``."""

    def __init__(self, backend: "Backend") -> None:
        self.backend = backend
        self.task: Task = backend.task
        self.layout = backend.layout
        self.num_envs: int = backend.num_envs
        self.action_dim: int = backend.action_dim
        self.obs_dims = {"proprio": self.layout.proprio_dim, "privileged": self.layout.privileged_dim}
        self.dt: float = backend.dt
        self.episode_length: int = self.task.episode_length
        self.device: torch.device = backend.torch_device  # observations, rewards and dones live here
        # whether ``step``'s info carries the reward terms (a conversion per term and step: for the learners that
        # log them, the SB3 and rsl_rl adapters, not the DAgger loop or evaluation)
        self.report_reward_terms = False

    @property
    def physics_faults(self) -> int:
        """Number of environments reset because their physics diverged, since construction."""
        return self.backend.physics_faults

    @property
    def physics_threads_share_torch_cores(self) -> bool:
        """Whether this environment's physics runs on several threads of the CPU that torch computes on."""
        return self.device.type == "cpu" and getattr(self.backend, "num_threads", 1) >= 2

    @contextlib.contextmanager
    def torch_single_threaded(self) -> Iterator[None]:
        """Torch on one thread while the C engine's physics threads step this environment.

        Between its small ops, torch's OpenMP workers spin and take the cores from MuJoCo's threads; the policies'
        forward passes at these batch sizes gain little from a second thread (BENCHMARKS.md). Elsewhere a no-op.
        """
        threads = torch.get_num_threads()
        if not self.physics_threads_share_torch_cores or threads == 1:
            yield
            return
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)

    def reset(self, rewind: bool = False) -> Obs:
        """Start a new episode everywhere: ``{"proprio": [B, Dp], "privileged": [B, Dq]}``.

        With ``rewind``, every environment's random streams restart, so it replays its first episode (the same
        parameters, initial state, command and sensor noise as just after construction).
        """
        if rewind:
            self.backend.rewind()
        proprio, privileged = self.backend.reset()
        return {"proprio": _to_torch(proprio), "privileged": _to_torch(privileged)}

    def step(self, action: torch.Tensor) -> tuple[Obs, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Apply ``action [B, A]`` in [-1, 1]; finished episodes restart at once (``info["final_obs"]``).

        With ``report_reward_terms``, ``info["reward_terms"]`` holds each named reward term's share of this step's
        reward, ``{name: [B]}`` (zero where the physics faulted)."""
        if action.shape != (self.num_envs, self.action_dim):
            raise ValueError(f"action must have shape {(self.num_envs, self.action_dim)}, got {tuple(action.shape)}")
        out = self.backend.step(self.backend.action_from_torch(action))
        obs = {"proprio": _to_torch(out["proprio"]), "privileged": _to_torch(out["privileged"])}
        info: dict[str, Any] = {"final_obs": None, "faults": _to_bool(out["fault"])}
        if self.report_reward_terms:
            info["reward_terms"] = {k: _to_torch(v).float().masked_fill(info["faults"], 0.0)
                                    for k, v in out["reward_terms"].items()}
        if out["final"] is not None:
            final = out["final"]
            info["final_obs"] = {"proprio": _to_torch(final["proprio"]),
                                 "privileged": _to_torch(final["privileged"])}
            info["final_env_ids"] = torch.as_tensor(np.asarray(final["env_ids"]))
        reward, terminated, truncated = (_to_torch(out["reward"]).float(), _to_bool(out["terminated"]),
                                         _to_bool(out["truncated"]))
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        """Release the backend's threads and buffers."""
        self.backend.close()


def _to_torch(array: Any) -> torch.Tensor:
    """numpy arrays by ``from_numpy``; device arrays (jax) by DLPack, without a host copy."""
    if isinstance(array, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if isinstance(array, torch.Tensor):
        return array
    return torch.from_dlpack(array)


def _to_bool(array: Any) -> torch.Tensor:
    if isinstance(array, np.ndarray):
        return torch.from_numpy(array.astype(bool, copy=False))
    return torch.from_dlpack(array).bool()


def make_env(task: "str | Task | Config", num_envs: int, backend: str = "mujoco", seed: int = 0,
             num_threads: int = 2, randomize: bool = True) -> BatchedEnv:
    """A batched environment of ``task`` with ``num_envs`` copies on a registered ``backend`` ("mujoco", "mjx",
    or one added with :func:`robodistill.sim.registry.register_backend`)."""
    if num_envs < 1:
        raise ConfigError(f"num_envs must be >= 1, got {num_envs}")
    backend_cls = get_backend(backend)
    return BatchedEnv(backend_cls(make_task(task, randomize=randomize), num_envs, seed, num_threads))


def env_from_config(cfg: "Config", num_envs: int, seed: int, randomize: bool = True) -> BatchedEnv:
    """A batched environment as the config describes it."""
    return make_env(make_task(cfg, randomize=randomize), num_envs, backend=cfg.env.backend, seed=seed,
                    num_threads=cfg.env.num_threads)

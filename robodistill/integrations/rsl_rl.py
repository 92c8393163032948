"""A robodistill environment as an rsl_rl ``VecEnv`` (rsl-rl-lib 5.x: Isaac Lab's and mjlab's training library).

rsl_rl's contract: ``get_observations()`` returns a ``TensorDict`` of observation groups (here ``proprio`` and
``privileged``; map them with the runner's ``obs_groups``, e.g. ``{"actor": ["proprio"], "critic":
["privileged"]}`` or ``{"student": ["proprio"], "teacher": ["privileged"]}``); ``step(actions)`` returns
``(obs, rewards, dones, extras)`` with ``extras["time_outs"]`` marking the episodes that ended by their time limit
or by leaving the arena (rsl_rl bootstraps through those), resets finished environments inside ``step`` and is
never asked to ``reset()``. ``extras["log"]`` carries the reward terms' mean shares per step. Needs
``pip install 'robodistill[rsl_rl]'``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from robodistill.errors import ConfigError

try:
    from rsl_rl.env import VecEnv
    from tensordict import TensorDict
except ImportError as exc:  # a one-line error that says what to install
    raise ConfigError(f"the rsl_rl adapter needs rsl-rl-lib ({exc}); install it with: "
                      "pip install 'robodistill[rsl_rl]'") from None

if TYPE_CHECKING:
    from robodistill.env import BatchedEnv

GROUPS = ("proprio", "privileged")


class RslRlVecEnv(VecEnv):
    """rsl_rl's view of a :class:`~robodistill.env.BatchedEnv`: torch in and out on the environment's device."""

    def __init__(self, env: "BatchedEnv", cfg: dict[str, Any] | None = None) -> None:
        self.env = env
        self.num_envs, self.num_actions = env.num_envs, env.action_dim
        self.max_episode_length = env.episode_length
        self.device = env.device
        self.cfg = cfg if cfg is not None else {"task": env.task.name}
        self.episode_length_buf = torch.zeros(self.num_envs, dtype=torch.long, device=self.device)
        self._obs = self._groups(env.reset())

    def _groups(self, obs: dict[str, torch.Tensor]) -> TensorDict:
        return TensorDict({g: obs[g] for g in GROUPS}, batch_size=[self.num_envs], device=self.device)

    def get_observations(self) -> TensorDict:
        """The current observation groups ``{"proprio": [B, Dp], "privileged": [B, Dq]}``."""
        return self._obs

    def step(self, actions: torch.Tensor) -> tuple[TensorDict, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """One control step of ``actions [B, A]`` (clipped to [-1, 1]); finished episodes restart at once."""
        obs, reward, terminated, truncated, info = self.env.step(actions.to(self.device, torch.float32))
        dones = terminated | truncated
        self.episode_length_buf += 1
        self.episode_length_buf[dones] = 0
        self._obs = self._groups(obs)
        log = {f"/reward/{name}": value.mean() for name, value in info["reward_terms"].items()}
        return self._obs, reward, dones.long(), {"time_outs": truncated, "log": log}

    def close(self) -> None:
        """Release the environment."""
        self.env.close()

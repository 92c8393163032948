"""Host-side episode sampling from seeded per-environment RNG streams, shared by every backend.

Each environment owns its own ``numpy`` Generator spawned from the run's seed, and each of its episodes draws
parameters, initial state and command from that stream in a fixed order. The draws therefore do not depend on
when, or alongside which other environments, an environment resets: both backends (and any batch split) see the
same episodes for the same seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robodistill.tasks.base import Task


@dataclass
class EpisodeBatch:
    """The sampled start of one episode for each of ``k`` environments."""

    params: dict[str, np.ndarray]  # name -> [k]
    qpos: np.ndarray  # [k, nq]
    qvel: np.ndarray  # [k, nv]
    command: np.ndarray  # [k, C]


class EpisodeSampler:
    """Per-environment seeded streams of episode starts."""

    def __init__(self, task: Task, num_envs: int, seed: int, qpos0: np.ndarray, nv: int) -> None:
        self.task, self.qpos0, self.nv = task, qpos0, nv
        self.streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(num_envs)]

    def sample(self, env_ids: np.ndarray) -> EpisodeBatch:
        """Draw the next episode of each environment in ``env_ids``."""
        k, task = len(env_ids), self.task
        params = {p: np.empty(k) for p in task.params}
        qpos, qvel = np.empty((k, self.qpos0.shape[0])), np.empty((k, self.nv))
        command = np.empty((k, task.command_dim))
        for j, i in enumerate(env_ids):
            rng = self.streams[int(i)]
            for p, v in task.sample_params(rng, 1).items():
                params[p][j] = v[0]
            start_qpos, start_qvel = task.initial_state(rng, 1, self.qpos0, self.nv)  # [1, nq], [1, nv]
            qpos[j], qvel[j], command[j] = start_qpos[0], start_qvel[0], task.sample_command(rng, 1)[0]
        return EpisodeBatch(params, qpos, qvel, command)

    def state(self) -> list[dict]:
        """Bit-generator states of every stream (for checkpoints)."""
        return [g.bit_generator.state for g in self.streams]

    def set_state(self, states: list[dict]) -> None:
        """Restore the streams from :meth:`state`."""
        for g, s in zip(self.streams, states):
            g.bit_generator.state = s

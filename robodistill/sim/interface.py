"""The backend contract: what every physics backend offers to the batched environment, the viewer and the export.

A backend steps ``num_envs`` simulations of one task and speaks its own array type (numpy on the C engine, jax
on MJX); :class:`robodistill.env.BatchedEnv` converts to torch. The task's side of a control step is shared code
(robodistill/sim/control_step.py), episodes come from the shared seeded sampler (robodistill/sim/episodes.py), so
a new backend is one class that steps physics plus one :func:`robodistill.sim.registry.register_backend` call.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import mujoco
import numpy as np
import torch

from robodistill.sim.episodes import EpisodeSampler
from robodistill.tasks.base import SimArrays, Task
from robodistill.tasks.observation import ObservationLayout

Array = Any  # the backend's array type


@runtime_checkable
class Backend(Protocol):
    """A batch of ``num_envs`` environments of one task. Constructed as ``cls(task, num_envs, seed, num_threads)``."""

    name: str
    task: Task
    layout: ObservationLayout
    num_envs: int
    action_dim: int
    dt: float  # control period, s
    model: mujoco.MjModel  # the nominal compiled model
    action_offset: np.ndarray  # [A] actuator units = offset + scale * action
    action_scale: np.ndarray  # [A]
    torch_device: torch.device  # where observations land in torch and actions come from
    physics_faults: int  # environments reset because their physics diverged, since construction
    sensor_noise: bool  # whether proprio terms get their declared noise (the export's check turns it off)
    command: np.ndarray  # [B, C] host mirror of each environment's current command
    params: dict[str, np.ndarray]  # name -> [B] host mirror of each environment's randomized parameters
    sampler: EpisodeSampler  # the seeded per-environment episode streams every backend draws from

    def reset(self) -> tuple[Array, Array]:
        """Start the next episode of every environment; ``(proprio [B, Dp], privileged [B, Dq])``."""

    def rewind(self) -> None:
        """Put every random stream back to its state at construction: the next reset replays the first episodes."""

    def step(self, action: Array) -> dict[str, Any]:
        """One control step of ``action [B, A]`` in [-1, 1] with auto-reset of finished episodes.

        Returns ``proprio``, ``privileged`` (after auto-reset), ``reward [B]``, ``reward_terms`` (name -> [B],
        each term's share of the reward), ``terminated [B]``, ``truncated [B]``, ``fault [B]`` and ``final``: None,
        or ``{"proprio", "privileged", "env_ids"}`` of the environments that finished, observed before their
        reset.
        """

    def action_from_torch(self, action: torch.Tensor) -> Array:
        """A torch action ``[B, A]`` in this backend's array type (without a host copy where possible)."""

    def observe(self) -> tuple[Array, Array]:
        """``(proprio, privileged)`` of the current state (sensor noise drawn anew)."""

    def sim_arrays(self) -> SimArrays:
        """``qpos [B, nq]``, ``qvel [B, nv]``, ``sensordata [B, ns]`` of the current state."""

    def snapshot(self) -> dict[str, Any]:
        """Everything that decides the batch's future, as tensors and plain data (checkpoints load it with
        ``torch.load(weights_only=True)``); :meth:`restore` continues from it bit for bit."""

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Continue from :meth:`snapshot` of a batch of the same task and size (ValueError otherwise)."""

    def env_model(self, env_id: int, into: mujoco.MjModel | None = None) -> mujoco.MjModel:
        """Environment ``env_id``'s model with its episode's randomized fields, for drawing it (written into
        ``into``, a model of the same task, when given: a viewer refreshes its model at every new episode)."""

    def env_physics_state(self, env_id: int) -> np.ndarray:
        """Environment ``env_id``'s ``mjSTATE_FULLPHYSICS`` vector (for ``mj_setState`` in a viewer)."""

    def push(self, kick: np.ndarray) -> None:
        """Add ``kick [B, nv]`` to every environment's velocity (it acts from the next control step)."""

    def close(self) -> None:
        """Release threads and device buffers."""

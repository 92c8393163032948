"""The C-engine backend: the batch stepped by MuJoCo's own batch stepper, ``mujoco.batch.Batch``.

Physics runs on the batch's C thread pool with no Python per physics step; each environment is one
``mjSTATE_INTEGRATION`` row of the batch (warm-start included), its randomized parameters are per-simulation
model fields (``Batch.expand``), a reset is ``Batch.reset`` plus the sampled state, and an error the engine raises
in one simulation is isolated to it (``SimulationError``) and counted as a fault. Everything the task adds
(observations, reward, termination) is one vectorised numpy call per control step over the whole batch
(robodistill/sim/control_step.py).
"""

from __future__ import annotations

import logging
from typing import Any

import mujoco
import mujoco.batch
import numpy as np
import torch

from robodistill.sim.compile import compile_task
from robodistill.sim.control_step import after_physics, before_physics, finite
from robodistill.sim.episodes import EpisodeSampler
from robodistill.tasks.base import SimArrays, Task
from robodistill.tasks.observation import noise_std_vector, observe

log = logging.getLogger(__name__)

_FULL = mujoco.mjtState.mjSTATE_FULLPHYSICS
_NO_STAGE = mujoco.mjtStage.mjSTAGE_NONE

_warnings_routed = False


def _route_mujoco_warnings() -> None:
    """Send MuJoCo's C warnings (e.g. "simulation is unstable") to ``logging`` instead of raw stderr.

    Diverged environments are reset and counted by the backend, so each warning is a debug message here.
    """
    global _warnings_routed
    if not _warnings_routed:
        mujoco.set_mju_user_warning(lambda text: log.debug("MuJoCo: %s", text.strip()))
        _warnings_routed = True


class MujocoBackend:
    """A batch of ``num_envs`` environments of one task on MuJoCo's C engine, numpy in and out."""

    name = "mujoco"
    torch_device = torch.device("cpu")  # where observations land in torch and actions come from

    def __init__(self, task: Task, num_envs: int, seed: int, num_threads: int = 2) -> None:
        self.task, self.num_envs = task, num_envs
        _route_mujoco_warnings()
        self.model, self.layout, self.action_offset, self.action_scale, self.dt = compile_task(task)
        self.action_dim = self.model.nu
        self.nominal = {f: getattr(self.model, f).copy() for f in task.model_fields}
        self.num_threads = max(1, min(num_threads, num_envs))  # the calling thread included
        self._batch = mujoco.batch.Batch(self.model, num_envs, nthread=self.num_threads)
        # live per-environment arrays: model fields the episodes randomize [B, ...] and the state rows
        self._fields = {f: self._batch.expand(f) for f in task.model_fields}
        self.physics_state = self._batch.state  # [B, nstate] mjSTATE_INTEGRATION rows
        self.time, self.qpos, self.qvel, self.ctrl = (self._batch.bind(f) for f in ("time", "qpos", "qvel", "ctrl"))
        self._readings = self._batch.bind("sensordata")  # refreshed by every call on a simulation
        self.sensordata = np.zeros((num_envs, self.model.nsensordata))  # what the task observes (snapshotted)
        self._drawn = mujoco.MjData(self.model)  # one environment's state, for env_physics_state
        self.sampler = EpisodeSampler(task, num_envs, seed, self.model.qpos0.copy(), self.model.nv)
        self.noise_rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5E]))
        self._streams_at_start = (self.sampler.state(), self.noise_rng.bit_generator.state)
        self.sensor_noise = any(s > 0 for s in noise_std_vector(self.layout))  # False: noise-free proprio
        self.prev_action = np.zeros((num_envs, self.action_dim))
        self.steps = np.zeros(num_envs, dtype=np.int64)
        self.command = np.zeros((num_envs, task.command_dim))
        self.params = {p: np.zeros(num_envs) for p in task.params}
        self.physics_faults = 0

    # ---- helpers ------------------------------------------------------------------------------------

    def sim_arrays(self, rows: Any = slice(None)) -> SimArrays:
        """Batched view of the current state (``rows`` selects environments)."""
        return SimArrays(self.qpos[rows], self.qvel[rows], self.sensordata[rows])

    def _observe(self, rows: Any = slice(None)) -> tuple[np.ndarray, np.ndarray]:
        sim = self.sim_arrays(rows)
        params = {p: v[rows] for p, v in self.params.items()}
        prev = self.prev_action[rows]
        noise = self.noise_rng.standard_normal((prev.shape[0], self.layout.proprio_dim)) if self.sensor_noise else None
        return observe(self.layout, self.task, sim, prev, self.command[rows], params, noise, np)

    def _reset_envs(self, env_ids: np.ndarray) -> None:
        episodes = self.sampler.sample(env_ids)
        for name, values in self.task.apply_params(self.nominal, episodes.params, np).items():  # {field: [k, ...]}
            self._fields[name][env_ids] = values
        self._batch.reset(env_ids, stage=_NO_STAGE)
        self.qpos[env_ids], self.qvel[env_ids] = episodes.qpos, episodes.qvel
        self._batch.forward(env_ids)
        self.sensordata[env_ids] = self._readings[env_ids]
        for p, v in episodes.params.items():
            self.params[p][env_ids] = v
        self.command[env_ids] = episodes.command
        self.prev_action[env_ids] = 0.0
        self.steps[env_ids] = 0

    def _physics(self, ctrl: np.ndarray) -> np.ndarray:
        """``decimation`` physics steps of every environment at ``ctrl [B, nu]`` on the batch's threads; the
        readings are those of the last step. Returns the environments the engine raised an error in (their state
        is as before the call)."""
        self.ctrl[:] = ctrl
        try:
            self._batch.step(nstep=self.task.decimation)
            failed = np.zeros(0, dtype=np.int64)
        except mujoco.batch.SimulationError as exc:
            failed = np.asarray(exc.ids, dtype=np.int64)
            log.debug("MuJoCo raised in %d simulation(s): %s", failed.size, exc)
        self.sensordata[:] = self._readings
        return failed

    # ---- the backend contract (robodistill/sim/interface.py) --------------------------------------

    def reset(self) -> tuple[np.ndarray, np.ndarray]:
        """Start a new episode in every environment; returns ``(proprio, privileged)``."""
        self._reset_envs(np.arange(self.num_envs))
        return self._observe()

    def rewind(self) -> None:
        """Put every random stream back to its state at construction: the next reset replays the first episodes."""
        episodes, noise = self._streams_at_start
        self.sampler.set_state(episodes)
        self.noise_rng.bit_generator.state = noise

    def observe(self) -> tuple[np.ndarray, np.ndarray]:
        """``(proprio, privileged)`` of the current state (sensor noise drawn anew)."""
        return self._observe()

    def env_model(self, env_id: int, into: mujoco.MjModel | None = None) -> mujoco.MjModel:
        """Environment ``env_id``'s model with its episode's randomized fields (written into ``into`` if given)."""
        return self._batch.get_model(env_id, into)

    def env_physics_state(self, env_id: int) -> np.ndarray:
        """Environment ``env_id``'s ``mjSTATE_FULLPHYSICS`` vector."""
        data = self._batch.get_data(env_id, self._drawn)
        out = np.empty(mujoco.mj_stateSize(self.model, _FULL))
        mujoco.mj_getState(self.model, data, out, _FULL)
        return out

    def push(self, kick: np.ndarray) -> None:
        """Add ``kick [B, nv]`` to every environment's velocity (it acts from the next control step)."""
        self.qvel += kick

    def snapshot(self) -> dict[str, Any]:
        """Everything that decides this batch's future (physics state, episode bookkeeping, every random stream),
        as tensors and plain data: a checkpoint that :meth:`restore` continues bit for bit."""
        tensor = lambda a: torch.from_numpy(np.array(a))  # noqa: E731 - a copy, detached from the live arrays
        return {"backend": self.name, "physics_state": tensor(self.physics_state),
                "sensordata": tensor(self.sensordata),
                "prev_action": tensor(self.prev_action), "steps": tensor(self.steps), "command": tensor(self.command),
                "params": {p: tensor(v) for p, v in self.params.items()},
                "fields": {f: tensor(v) for f, v in self._fields.items()},
                "episodes": self.sampler.state(), "noise": self.noise_rng.bit_generator.state,
                "physics_faults": self.physics_faults}

    def restore(self, snap: dict[str, Any]) -> None:
        """Continue from :meth:`snapshot` (of a batch of the same task and size); a mismatch is a ValueError."""
        shape = tuple(snap["physics_state"].shape) if "physics_state" in snap else None
        if snap.get("backend") != self.name or shape != self.physics_state.shape:
            raise ValueError(f"the snapshot is of {snap.get('backend')!r} with physics state {shape}, not "
                             f"{self.name!r} with {self.physics_state.shape}")
        for name in ("physics_state", "sensordata", "prev_action", "steps", "command"):
            getattr(self, name)[...] = snap[name].numpy()
        for p, v in snap["params"].items():
            self.params[p][...] = v.numpy()
        for f, v in snap["fields"].items():
            self._fields[f][...] = v.numpy()
        self.sampler.set_state(snap["episodes"])
        self.noise_rng.bit_generator.state = snap["noise"]
        self.physics_faults = int(snap["physics_faults"])

    def action_from_torch(self, action: Any) -> np.ndarray:
        """Convert a torch action ``[B, A]`` to this backend's array type."""
        return action.detach().to("cpu", dtype=torch.float64).numpy()

    def step(self, action: np.ndarray) -> dict[str, Any]:
        """Advance one control step (``decimation`` physics steps) with auto-reset of finished episodes."""
        control = before_physics(self.task, action, self.prev_action, self.steps, self.qvel, self.params,
                                 self.action_offset, self.action_scale, np)
        if control.qvel is not self.qvel:  # the episode's push
            self.qvel[:] = control.qvel
        time_before = self.time.copy()
        failed = self._physics(control.ctrl)
        # MuJoCo resets a diverged simulation itself (its time goes back to 0); NaN state and errors count too
        fault = ~np.isfinite(self.physics_state).all(axis=1) | (self.time <= time_before)
        fault[failed] = True
        sim = self.sim_arrays()
        outcome = after_physics(self.task, sim, control.action, self.prev_action, self.command, self.params,
                                self.steps, fault, np)
        terminated, truncated = outcome.terminated, outcome.truncated
        self.steps[:] = outcome.steps
        self.prev_action[:] = control.action
        proprio, privileged = self._observe()
        if fault.any():  # only a diverged simulation yields non-finite observations
            proprio, privileged = finite(proprio, np), finite(privileged, np)
        done = np.flatnonzero(terminated | truncated)
        final = None
        if done.size:
            final = {"proprio": proprio[done].copy(), "privileged": privileged[done].copy(), "env_ids": done}
            if fault.any():
                self.physics_faults += int(fault.sum())
                log.debug("physics fault in %d environment(s); reset", int(fault.sum()))
            self._reset_envs(done)
            proprio[done], privileged[done] = self._observe(done)
        return {"proprio": proprio, "privileged": privileged, "reward": outcome.reward, "terminated": terminated,
                "truncated": truncated, "final": final, "fault": fault, "reward_terms": outcome.reward_terms}

    def close(self) -> None:
        """Release the batch (its thread pool goes with it)."""
        self._batch = None

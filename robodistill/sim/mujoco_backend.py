"""The C-engine backend: per-environment MjModels stepped by ``mujoco.rollout``'s native thread pool.

Physics runs in MuJoCo's own threads with no Python per physics step; everything the task adds (observations,
reward, termination) is one vectorised numpy call per control step over the whole batch. Only resets touch
environments one by one (writing the sampled parameters into that environment's MjModel).
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import mujoco
import mujoco.rollout
import numpy as np
import torch

from robodistill.sim.compile import compile_task
from robodistill.sim.control_step import after_physics, before_physics, finite
from robodistill.sim.episodes import EpisodeSampler
from robodistill.tasks.base import SimArrays, Task
from robodistill.tasks.observation import noise_std_vector, observe

log = logging.getLogger(__name__)

_FULL = mujoco.mjtState.mjSTATE_FULLPHYSICS


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
        self.models = [copy.deepcopy(self.model) for _ in range(num_envs)]
        nthread = self.num_threads = max(1, min(num_threads, num_envs))
        self._datas = [mujoco.MjData(self.model) for _ in range(nthread)]
        self._scratch = mujoco.MjData(self.model)
        # views into each environment's MjModel of the fields its episodes randomize (written at every reset)
        self._model_views = [{f: getattr(m, f) for f in task.model_fields} for m in self.models]
        self._rollout = mujoco.rollout.Rollout(nthread=nthread if nthread > 1 else 0)
        # 4 work items per thread: small enough to balance the threads' load at the end of a step, large enough
        # that their fixed cost stays small. At B=64 on 2 threads (control steps/s, chunks of 3 / 8 / 16):
        # quadruped 19.7k / 18.8k / 17.0k, hopper 59.9k / 61.6k / 61.6k, pendulum 149k / 162k / 156k
        self._chunk = max(1, num_envs // (4 * nthread))
        self.sampler = EpisodeSampler(task, num_envs, seed, self.model.qpos0.copy(), self.model.nv)
        self.noise_rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5E]))
        self._streams_at_start = (self.sampler.state(), self.noise_rng.bit_generator.state)
        self.sensor_noise = any(s > 0 for s in noise_std_vector(self.layout))  # False: noise-free proprio

        nstate = mujoco.mj_stateSize(self.model, _FULL)
        nq, nv = self.model.nq, self.model.nv
        self._qpos_slice, self._qvel_slice = slice(1, 1 + nq), slice(1 + nq, 1 + nq + nv)
        self.state = np.zeros((num_envs, nstate))
        self.sensordata = np.zeros((num_envs, self.model.nsensordata))
        self._state_out = np.zeros((num_envs, task.decimation, nstate))
        self._sensor_out = np.zeros((num_envs, task.decimation, self.model.nsensordata))
        self._ctrl = np.zeros((num_envs, task.decimation, self.model.nu))
        self.prev_action = np.zeros((num_envs, self.action_dim))
        self.steps = np.zeros(num_envs, dtype=np.int64)
        self.command = np.zeros((num_envs, task.command_dim))
        self.params = {p: np.zeros(num_envs) for p in task.params}
        self.physics_faults = 0

    # ---- helpers ------------------------------------------------------------------------------------

    def sim_arrays(self, rows: Any = slice(None)) -> SimArrays:
        """Batched view of the current state (``rows`` selects environments)."""
        state = self.state[rows]
        return SimArrays(state[:, self._qpos_slice], state[:, self._qvel_slice], self.sensordata[rows])

    def _observe(self, rows: Any = slice(None)) -> tuple[np.ndarray, np.ndarray]:
        sim = self.sim_arrays(rows)
        params = {p: v[rows] for p, v in self.params.items()}
        prev = self.prev_action[rows]
        noise = self.noise_rng.standard_normal((prev.shape[0], self.layout.proprio_dim)) if self.sensor_noise else None
        return observe(self.layout, self.task, sim, prev, self.command[rows], params, noise, np)

    def _reset_envs(self, env_ids: np.ndarray) -> None:
        episodes = self.sampler.sample(env_ids)
        fields = self.task.apply_params(self.nominal, episodes.params, np)  # {field: [k, ...]}
        d = self._scratch
        qpos, qvel, sensordata = d.qpos, d.qvel, d.sensordata  # views, taken once
        for j, i in enumerate(env_ids):
            m, views = self.models[i], self._model_views[i]
            for fname, values in fields.items():
                views[fname][...] = values[j]
            mujoco.mj_resetData(m, d)
            qpos[:], qvel[:] = episodes.qpos[j], episodes.qvel[j]
            mujoco.mj_forward(m, d)
            mujoco.mj_getState(m, d, self.state[i], _FULL)
            self.sensordata[i] = sensordata
        for p, v in episodes.params.items():
            self.params[p][env_ids] = v
        self.command[env_ids] = episodes.command
        self.prev_action[env_ids] = 0.0
        self.steps[env_ids] = 0

    # ---- the batched environment protocol ----------------------------------------------------------

    def reset(self) -> tuple[np.ndarray, np.ndarray]:
        """Start a new episode in every environment; returns ``(proprio, privileged)``."""
        self._reset_envs(np.arange(self.num_envs))
        return self._observe()

    def rewind(self) -> None:
        """Put every random stream back to its state at construction: the next reset replays the first episodes."""
        episodes, noise = self._streams_at_start
        self.sampler.set_state(episodes)
        self.noise_rng.bit_generator.state = noise

    def _physics(self, ctrl: np.ndarray) -> None:
        """``decimation`` physics steps of every environment at ``ctrl [B, nu]``, in MuJoCo's threads; updates
        ``state`` and ``sensordata`` (the readings of the last step)."""
        self._ctrl[:] = ctrl[:, None, :]  # [B, decimation, nu]
        self._rollout.rollout(self.models, self._datas, self.state, self._ctrl, nstep=self.task.decimation,
                              state=self._state_out, sensordata=self._sensor_out, skip_checks=True,
                              chunk_size=self._chunk)
        self.state[:] = self._state_out[:, -1]
        self.sensordata[:] = self._sensor_out[:, -1]

    def observe(self) -> tuple[np.ndarray, np.ndarray]:
        """``(proprio, privileged)`` of the current state (sensor noise drawn anew)."""
        return self._observe()

    def env_model(self, env_id: int) -> mujoco.MjModel:
        """Environment ``env_id``'s MjModel, with its episode's randomized fields (live: it changes at resets)."""
        return self.models[env_id]

    def env_physics_state(self, env_id: int) -> np.ndarray:
        """Environment ``env_id``'s ``mjSTATE_FULLPHYSICS`` vector (a copy)."""
        return self.state[env_id].copy()

    def push(self, kick: np.ndarray) -> None:
        """Add ``kick [B, nv]`` to every environment's velocity (it acts from the next control step)."""
        self.state[:, self._qvel_slice] += kick

    def snapshot(self) -> dict[str, Any]:
        """Everything that decides this batch's future (physics state, episode bookkeeping, every random stream),
        as tensors and plain data: a checkpoint that :meth:`restore` continues bit for bit."""
        tensor = lambda a: torch.from_numpy(np.array(a))  # noqa: E731 - a copy, detached from the live arrays
        return {"backend": self.name, "state": tensor(self.state), "sensordata": tensor(self.sensordata),
                "prev_action": tensor(self.prev_action), "steps": tensor(self.steps), "command": tensor(self.command),
                "params": {p: tensor(v) for p, v in self.params.items()},
                "fields": {f: tensor(np.stack([views[f] for views in self._model_views]))
                           for f in self.task.model_fields},
                "episodes": self.sampler.state(), "noise": self.noise_rng.bit_generator.state,
                "physics_faults": self.physics_faults}

    def restore(self, snap: dict[str, Any]) -> None:
        """Continue from :meth:`snapshot` (of a batch of the same task and size); a mismatch is a ValueError."""
        shape = tuple(snap["state"].shape) if "state" in snap else None
        if snap.get("backend") != self.name or shape != self.state.shape:
            raise ValueError(f"the snapshot is of {snap.get('backend')!r} with state {shape}, not {self.name!r} "
                             f"with {self.state.shape}")
        for name in ("state", "sensordata", "prev_action", "steps", "command"):
            getattr(self, name)[...] = snap[name].numpy()
        for p, v in snap["params"].items():
            self.params[p][...] = v.numpy()
        for f, values in snap["fields"].items():
            for views, value in zip(self._model_views, values.numpy()):
                views[f][...] = value
        self.sampler.set_state(snap["episodes"])
        self.noise_rng.bit_generator.state = snap["noise"]
        self.physics_faults = int(snap["physics_faults"])

    def action_from_torch(self, action: Any) -> np.ndarray:
        """Convert a torch action ``[B, A]`` to this backend's array type."""
        return action.detach().to("cpu", dtype=torch.float64).numpy()

    def step(self, action: np.ndarray) -> dict[str, Any]:
        """Advance one control step (``decimation`` physics steps) with auto-reset of finished episodes."""
        qvel = self.state[:, self._qvel_slice]
        control = before_physics(self.task, action, self.prev_action, self.steps, qvel, self.params,
                                 self.action_offset, self.action_scale, np)
        qvel[:] = control.qvel
        time_before = self.state[:, 0].copy()
        self._physics(control.ctrl)
        # MuJoCo resets a diverged simulation itself (its time goes back to 0); NaN state counts too
        fault = ~np.isfinite(self.state).all(axis=1) | (self.state[:, 0] <= time_before)
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
                "truncated": truncated, "final": final, "fault": fault}

    def close(self) -> None:
        """Stop the rollout thread pool."""
        self._rollout.close()

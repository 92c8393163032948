"""The MJX backend: the whole batch stepped on one accelerator by ``jax.jit(jax.vmap(mjx.step))``.

The task code is the same as on the C engine: observation, reward, termination, action hooks and the mapping
of randomized parameters onto Model fields are the task's pure functions, called here with ``xp=jax.numpy``
inside ``jit``. Per-environment parameters are Model fields with a leading batch axis, vmapped through
``in_axes`` (docs/design.md section 5).

Episodes are sampled on the host by the same :class:`EpisodeSampler` as the C backend, so the two backends see
identical parameters and initial states for the same seed. To restart finished episodes without a second
device call, the device holds a buffer with the *next* episode of every environment (parameters, initial
state, command); the jitted control step swaps it in where an episode ended, and the host then draws the
finished environments' following episode and uploads the buffer. The sampler therefore runs one episode
ahead of the C backend's (same draws, same order, so the episodes agree; its ``state()`` does not).

Actions arrive from torch by DLPack and observations leave as jax arrays (``BatchedEnv`` takes them back by
DLPack): on a GPU only the per-step ``done`` mask goes to the host, and the episode buffer is uploaded only
after a step where some episode ended. Sensor noise is drawn on the device (``jax.random``), so noisy proprio
terms differ from the C engine's draws. Smooth dynamics agree with the C engine to float32 precision; with
contacts, MJX's collision and solver (in float32) are close to the C engine's but not equal, so trajectories
drift apart over time.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from robodistill.errors import ConfigError
from robodistill.sim.episodes import EpisodeBatch, EpisodeSampler
from robodistill.sim.mujoco_backend import compile_task
from robodistill.tasks.base import SimArrays, Task
from robodistill.tasks.observation import noise_std_vector, observe

log = logging.getLogger(__name__)

CACHE_ENV_VAR = "ROBODISTILL_JAX_CACHE"
_MAXVAL = 1e10  # MuJoCo's mjMAXVAL: the C engine resets a simulation whose qpos/qvel/qacc exceed it


def _import_jax() -> tuple[Any, Any, Any]:
    """Import jax, jax.numpy and mjx, or fail with one line that says how to install them."""
    try:
        import jax
        import jax.numpy as jnp

        # mujoco.mjx prints to stdout when the optional warp backend is missing; keep that out of our output
        with contextlib.redirect_stdout(io.StringIO()) as noise:
            from mujoco import mjx
    except ImportError as exc:
        raise ConfigError(f"backend 'mjx' needs jax and mujoco-mjx ({exc}); "
                          "install them with: pip install 'robodistill[mjx]'") from None
    if noise.getvalue().strip():
        log.debug("mujoco.mjx import: %s", noise.getvalue().strip())
    return jax, jnp, mjx


def default_cache_dir() -> Path | None:
    """JAX's persistent compilation cache folder: ``$ROBODISTILL_JAX_CACHE`` (empty: off), else user cache."""
    env = os.environ.get(CACHE_ENV_VAR)
    if env is not None:
        return Path(env).expanduser() if env.strip() else None
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "robodistill" / "jax"


def enable_compilation_cache(jax: Any) -> None:
    """Turn on JAX's persistent compilation cache, unless the user already chose a folder (or turned it off)."""
    if jax.config.jax_compilation_cache_dir:
        return
    path = default_cache_dir()
    if path is None:
        return
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.warning("JAX compilation cache disabled: cannot create %s (%s)", path, exc)
        return
    jax.config.update("jax_compilation_cache_dir", str(path))
    log.debug("JAX persistent compilation cache: %s", path)


class EnvState(NamedTuple):
    """Everything the device holds between control steps (each leaf batched over environments on axis 0)."""

    data: Any  # mjx.Data, batched
    fields: dict[str, Any]  # randomized Model fields {name: [B, ...]}
    params: dict[str, Any]  # {name: [B]}
    command: Any  # [B, C]
    prev_action: Any  # [B, A]
    steps: Any  # [B] int32
    key: Any  # PRNG key for sensor noise (unbatched)
    # the next episode of each environment, swapped in where the current one ends
    next_params: dict[str, Any]  # {name: [B]}
    next_qpos: Any  # [B, nq]
    next_qvel: Any  # [B, nv]
    next_command: Any  # [B, C]


class MjxBackend:
    """A batch of ``num_envs`` environments of one task on MJX: jax arrays in and out, one jit call per step."""

    name = "mjx"

    def __init__(self, task: Task, num_envs: int, seed: int) -> None:
        jax, jnp, mjx = _import_jax()
        self._jax, self._jnp, self._mjx = jax, jnp, mjx
        enable_compilation_cache(jax)
        self.task, self.num_envs = task, num_envs
        self.model, self.layout, self.action_offset, self.action_scale, self.dt = compile_task(task)
        self.action_dim = self.model.nu
        self.device = jax.devices()[0]
        # torch's view of the same device: DLPack hands arrays over there without a copy
        self.torch_device = (torch.device("cuda", self.device.id) if self.device.platform in ("gpu", "cuda")
                             else torch.device("cpu"))
        try:
            self.mjx_model = mjx.put_model(self.model, device=self.device)
        except NotImplementedError as exc:
            raise ConfigError(f"task {task.name!r}: MJCF {task.mjcf_path} uses a feature MJX does not "
                              f"support ({exc})") from None
        for f in task.model_fields:
            if not isinstance(getattr(self.mjx_model, f, None), jax.Array):
                raise ConfigError(f"task {task.name!r}: Model field {f!r} is static in MJX and cannot be "
                                  "randomized per environment")
        self.nominal = {f: getattr(self.model, f).copy() for f in task.model_fields}
        self.sampler = EpisodeSampler(task, num_envs, seed, self.model.qpos0.copy(), self.model.nv)
        self._noise_seed = int(np.random.SeedSequence([seed, 0x5E]).generate_state(1)[0])
        self._streams_at_start = (self.sampler.state(), self._noise_seed)
        self._noise = any(s > 0 for s in noise_std_vector(self.layout))
        # host mirrors of the current and the buffered next episode (exact float64 draws, for comparison)
        self.params = {p: np.zeros(num_envs) for p in task.params}
        self.command = np.zeros((num_envs, task.command_dim))
        self._next: EpisodeBatch | None = None
        self.physics_faults = 0
        self.compile_seconds: dict[str, float] = {}  # first reset and first step, compile included
        self.state: EnvState | None = None
        self._build_functions()

    # ---- jitted device functions --------------------------------------------------------------------

    def _build_functions(self) -> None:
        jax, jnp, mjx = self._jax, self._jnp, self._mjx
        task, layout, base = self.task, self.layout, self.mjx_model
        fields_names = tuple(task.model_fields)
        nominal = {f: jnp.asarray(v, dtype=jnp.float32) for f, v in self.nominal.items()}
        offset = jnp.asarray(self.action_offset, dtype=jnp.float32)
        scale = jnp.asarray(self.action_scale, dtype=jnp.float32)
        proprio_dim, decimation, episode_length = layout.proprio_dim, task.decimation, task.episode_length
        noisy = self._noise
        # vmap the Model: the randomized fields carry the batch axis, every other leaf is shared
        model_axes = jax.tree_util.tree_map(lambda _: None, base).tree_replace({f: 0 for f in fields_names})

        def batched_model(fields: dict[str, Any]) -> Any:
            return base.tree_replace(dict(fields))

        def start_data(fields: dict[str, Any], qpos: Any, qvel: Any) -> Any:
            """Fresh data at the sampled state, after a forward pass (mj_resetData, set, mj_forward)."""
            def one(m: Any, qp: Any, qv: Any) -> Any:
                d = mjx.make_data(m).replace(qpos=qp, qvel=qv)
                return mjx.forward(m, d)
            return jax.vmap(one, in_axes=(model_axes, 0, 0))(batched_model(fields), qpos, qvel)

        def physics(fields: dict[str, Any], data: Any, ctrl: Any) -> Any:
            """``decimation`` physics steps at constant ctrl; sensordata is from the last step's forward pass."""
            def one(m: Any, d: Any, u: Any) -> Any:
                d = d.replace(ctrl=u)
                return jax.lax.fori_loop(0, decimation, lambda _, x: mjx.step(m, x), d)
            return jax.vmap(one, in_axes=(model_axes, 0, 0))(batched_model(fields), data, ctrl)

        def sim_of(data: Any) -> SimArrays:
            return SimArrays(data.qpos, data.qvel, data.sensordata)

        def obs_of(state: EnvState, key: Any) -> tuple[Any, Any]:
            noise = jax.random.normal(key, (state.steps.shape[0], proprio_dim)) if noisy else None
            proprio, privileged = observe(layout, task, sim_of(state.data), state.prev_action, state.command,
                                          state.params, noise, jnp)
            return _finite(jnp, proprio), _finite(jnp, privileged)

        def init(params: dict[str, Any], qpos: Any, qvel: Any, command: Any, next_params: dict[str, Any],
                 next_qpos: Any, next_qvel: Any, next_command: Any, key: Any) -> tuple[EnvState, Any, Any]:
            fields = task.apply_params(nominal, params, jnp)
            n = qpos.shape[0]
            state = EnvState(start_data(fields, qpos, qvel), fields, params, command,
                             jnp.zeros((n, offset.shape[0]), jnp.float32), jnp.zeros(n, jnp.int32), key,
                             next_params, next_qpos, next_qvel, next_command)
            key, sub = jax.random.split(key)
            proprio, privileged = obs_of(state, sub)
            return state._replace(key=key), proprio, privileged

        def step(state: EnvState, action: Any) -> tuple[EnvState, dict[str, Any]]:
            action = jnp.clip(jnp.nan_to_num(action.astype(jnp.float32), nan=0.0), -1.0, 1.0)  # [B, A]
            applied = task.applied_action(action, state.prev_action, state.params, jnp)
            data = state.data
            kick = task.velocity_kick(state.steps, data.qvel, state.params, jnp)
            if kick is not None:
                data = data.replace(qvel=data.qvel + kick)
            ctrl = offset + scale * applied  # [B, nu]
            data = physics(state.fields, data, ctrl)
            fault = ~(_ok(jnp, data.qpos) & _ok(jnp, data.qvel) & _ok(jnp, data.qacc))  # [B]
            sim = sim_of(data)
            reward = task.reward(sim, action, state.prev_action, state.command, jnp)
            terminated = jnp.asarray(task.terminated(sim, state.command, jnp), dtype=bool) | fault
            reward = jnp.where(fault, 0.0, reward).astype(jnp.float32)
            steps = state.steps + 1
            truncated = steps >= episode_length
            left = task.out_of_bounds(sim, state.params, jnp)
            if left is not None:
                truncated = truncated | jnp.asarray(left, dtype=bool)
            truncated = truncated & ~terminated
            done = terminated | truncated
            state = state._replace(data=data, prev_action=action, steps=steps)
            key, k_obs, k_reset = jax.random.split(state.key, 3)
            proprio, privileged = obs_of(state, k_obs)

            def restart(state: EnvState) -> tuple[EnvState, Any, Any]:
                """Swap the buffered next episode in where ``done``; observe the restarted environments."""
                fresh_fields = task.apply_params(nominal, state.next_params, jnp)
                fresh = start_data(fresh_fields, state.next_qpos, state.next_qvel)
                pick = lambda new, old: _where_rows(jnp, done, new, old)  # noqa: E731
                state = state._replace(
                    data=jax.tree_util.tree_map(pick, fresh, state.data),
                    fields=jax.tree_util.tree_map(pick, fresh_fields, state.fields),
                    params=jax.tree_util.tree_map(pick, state.next_params, state.params),
                    command=pick(state.next_command, state.command),
                    prev_action=pick(jnp.zeros_like(state.prev_action), state.prev_action),
                    steps=pick(jnp.zeros_like(state.steps), state.steps))
                p, q = obs_of(state, k_reset)
                return state, pick(p, proprio), pick(q, privileged)

            state, new_proprio, new_privileged = jax.lax.cond(
                done.any(), restart, lambda s: (s, proprio, privileged), state)
            out = {"proprio": new_proprio, "privileged": new_privileged, "reward": reward,
                   "terminated": terminated, "truncated": truncated, "fault": fault, "done": done,
                   "final_proprio": proprio, "final_privileged": privileged}
            return state._replace(key=key), out

        on_cpu = jax.default_backend() == "cpu"
        self._init = jax.jit(init)
        self._step = jax.jit(step, donate_argnums=() if on_cpu else (0,))

    # ---- host <-> device -------------------------------------------------------------------------------

    def _put(self, episodes: EpisodeBatch) -> tuple[dict[str, Any], Any, Any, Any]:
        f32 = lambda a: self._to_device(np.asarray(a, dtype=np.float32))  # noqa: E731
        return ({p: f32(v) for p, v in episodes.params.items()}, f32(episodes.qpos), f32(episodes.qvel),
                f32(episodes.command))

    def _to_device(self, array: Any) -> Any:
        """Committed to this backend's device, so every jit call sees one placement (no recompiles)."""
        return self._jax.device_put(array, self.device)

    def sim_arrays(self) -> SimArrays:
        """Batched device arrays of the current state (jax, float32)."""
        d = self.state.data
        return SimArrays(d.qpos, d.qvel, d.sensordata)

    # ---- the batched environment protocol ----------------------------------------------------------

    def reset(self) -> tuple[Any, Any]:
        """Start a new episode in every environment; returns ``(proprio, privileged)`` as jax arrays."""
        ids = np.arange(self.num_envs)
        # every environment's next episode, as on the C engine: the buffered one if there is one
        current = self._next if self._next is not None else self.sampler.sample(ids)
        self._next = self.sampler.sample(ids)
        for p, v in current.params.items():
            self.params[p][:] = v
        self.command[:] = current.command
        key = self._to_device(self._jax.random.key(self._noise_seed))
        self._noise_seed += 1
        t0 = time.perf_counter()
        self.state, proprio, privileged = self._init(*self._put(current), *self._put(self._next), key)
        if "reset" not in self.compile_seconds:
            proprio.block_until_ready()
            self.compile_seconds["reset"] = time.perf_counter() - t0
            log.info("mjx %s: first reset (compile + run) took %.1f s (B=%d)", self.task.name,
                     self.compile_seconds["reset"], self.num_envs)
        return proprio, privileged

    def rewind(self) -> None:
        """Put every random stream back to its state at construction: the next reset replays the first episodes.

        The compiled functions stay: a rewound environment runs its held-out episodes again without a re-trace.
        """
        episodes, self._noise_seed = self._streams_at_start
        self.sampler.set_state(episodes)
        self._next = None

    def action_from_torch(self, action: torch.Tensor) -> Any:
        """A torch action ``[B, A]`` as a float32 jax array on the tensor's device, by DLPack (no host copy)."""
        tensor = action.detach()
        if tensor.dtype != torch.float32:
            tensor = tensor.to(torch.float32)
        return self._jnp.from_dlpack(tensor.contiguous())

    def step(self, action: Any) -> dict[str, Any]:
        """Advance one control step (``decimation`` physics steps) with auto-reset of finished episodes."""
        if self.state is None:
            raise RuntimeError("MjxBackend.step() called before reset()")
        t0 = time.perf_counter()
        self.state, out = self._step(self.state, self._to_device(action))
        done = np.asarray(out["done"])  # the one per-step sync: which environments restarted
        if "step" not in self.compile_seconds:
            self.compile_seconds["step"] = time.perf_counter() - t0
            log.info("mjx %s: time to first step (compile + run) %.1f s (B=%d)", self.task.name,
                     self.compile_seconds["step"], self.num_envs)
        final = None
        ids = np.flatnonzero(done)
        if ids.size:
            final = {"proprio": _rows(out["final_proprio"], ids),
                     "privileged": _rows(out["final_privileged"], ids), "env_ids": ids}
            n_fault = int(np.asarray(out["fault"])[ids].sum())
            if n_fault:
                self.physics_faults += n_fault
                log.debug("physics fault in %d environment(s); reset", n_fault)
            self._advance_episodes(ids)
        return {"proprio": out["proprio"], "privileged": out["privileged"], "reward": out["reward"],
                "terminated": out["terminated"], "truncated": out["truncated"], "final": final,
                "fault": out["fault"]}

    def _advance_episodes(self, ids: np.ndarray) -> None:
        """The buffered episode of ``ids`` became current on device: mirror that, then draw their next one."""
        nxt = self._next
        for p in self.params:
            self.params[p][ids] = nxt.params[p][ids]
        self.command[ids] = nxt.command[ids]
        new = self.sampler.sample(ids)
        for p in self.params:
            nxt.params[p][ids] = new.params[p]
        nxt.qpos[ids], nxt.qvel[ids], nxt.command[ids] = new.qpos, new.qvel, new.command
        # the whole buffer goes over ([B, P + nq + nv + C] floats, well under a MB for thousands of envs):
        # fixed shapes mean nothing ever recompiles, whichever environments finished
        params, qpos, qvel, command = self._put(nxt)
        self.state = self.state._replace(next_params=params, next_qpos=qpos, next_qvel=qvel,
                                         next_command=command)

    def close(self) -> None:
        """Drop the device state."""
        self.state = None


def _rows(array: Any, ids: np.ndarray) -> torch.Tensor:
    """Rows ``ids`` of a device array, gathered by torch over its DLPack view (a jax gather would compile
    once for every distinct number of rows)."""
    tensor = torch.from_dlpack(array)
    return tensor[torch.from_numpy(ids).to(tensor.device)]


def _ok(jnp: Any, x: Any) -> Any:
    """Rows of ``x [B, n]`` that are finite and within MuJoCo's bound of divergence."""
    return (jnp.isfinite(x) & (jnp.abs(x) < _MAXVAL)).all(axis=1)


def _finite(jnp: Any, x: Any) -> Any:
    return jnp.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0).astype(jnp.float32)


def _where_rows(jnp: Any, mask: Any, new: Any, old: Any) -> Any:
    """``new`` in the rows where ``mask [B]`` holds, else ``old`` (any trailing shape)."""
    return jnp.where(mask.reshape(mask.shape + (1,) * (new.ndim - 1)), new, old)

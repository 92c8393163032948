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
import copy
import io
import logging
import os
import time
from pathlib import Path
from typing import Any, NamedTuple

import mujoco
import numpy as np
import torch

from robodistill.errors import ConfigError
from robodistill.sim.compile import compile_task
from robodistill.sim.control_step import after_physics, before_physics, observe_step
from robodistill.sim.episodes import EpisodeBatch, EpisodeSampler
from robodistill.tasks.base import SimArrays, Task
from robodistill.tasks.observation import noise_std_vector

log = logging.getLogger(__name__)

CACHE_ENV_VAR = "ROBODISTILL_JAX_CACHE"
_MAXVAL = 1e10  # MuJoCo's mjMAXVAL: the C engine resets a simulation whose qpos/qvel/qacc exceed it


def _import_jax(extra: str = "mjx") -> tuple[Any, Any, Any]:
    """Import jax, jax.numpy and mjx, or fail with one line that says how to install them (``extra``)."""
    try:
        import jax
        import jax.numpy as jnp

        # mujoco.mjx prints to stdout when the optional warp backend is missing; keep that out of our output
        with contextlib.redirect_stdout(io.StringIO()) as noise:
            from mujoco import mjx
    except ImportError as exc:
        raise ConfigError(f"backend {extra!r} needs jax and mujoco-mjx ({exc}); "
                          f"install them with: pip install 'robodistill[{extra}]'") from None
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


class DeviceState(NamedTuple):
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
    """A batch of ``num_envs`` environments of one task on MJX: jax arrays in and out, one jit call per step.

    ``impl`` is MJX's physics implementation: ``jax`` (MJX's own) here; the ``warp`` backend
    (robodistill/sim/warp_backend.py) is this class with MuJoCo Warp's kernels under the same jitted step.
    """

    name = "mjx"
    impl = "jax"

    def __init__(self, task: Task, num_envs: int, seed: int, num_threads: int = 1) -> None:
        """``num_threads`` is accepted for the common constructor and unused: the device steps the batch."""
        jax, jnp, mjx = self._import()
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
            self.mjx_model = self._put_model()
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
        self.device_state: DeviceState | None = None
        self._observe_now: Any = None
        self._drawn = mujoco.MjData(self.model)  # one environment's host state, for env_physics_state
        self._template = self._data_template()  # one environment's fresh mjx.Data, shared by every reset
        self._build_functions()

    def _import(self) -> tuple[Any, Any, Any]:
        """``(jax, jax.numpy, mujoco.mjx)``, or a one-line ConfigError naming the extra to install."""
        return _import_jax()

    def _put_model(self) -> Any:
        """The nominal model on the device, in this backend's implementation."""
        return self._mjx.put_model(self.model, device=self.device, impl=self.impl)

    def _data_template(self) -> Any:
        """A fresh ``mjx.Data`` of one environment (every reset starts from it)."""
        return self._mjx.make_data(self.model, device=self.device, impl=self.impl)

    def _faults(self, data: Any) -> tuple[Any, Any]:
        """``(fault [B], overflow [B])`` after a control step: a diverged simulation (non-finite or beyond MuJoCo's
        bound), and, for implementations with fixed contact buffers, one whose buffers overflowed (a fault too)."""
        jnp = self._jnp
        fault = ~(_ok(jnp, data.qpos) & _ok(jnp, data.qvel) & _ok(jnp, data.qacc))
        return fault, jnp.zeros_like(fault)

    # ---- jitted device functions --------------------------------------------------------------------

    def _build_functions(self) -> None:
        """Compile (lazily, at first call) the reset and the control step of the whole batch."""
        jax = self._jax
        self._observe_now = None
        self._init = jax.jit(self._init_fn)
        on_cpu = jax.default_backend() == "cpu"
        self._step = jax.jit(self._step_fn, donate_argnums=() if on_cpu else (0,))

    def _batched_model(self, fields: dict[str, Any]) -> Any:
        """The MJX Model with the randomized ``fields`` ``{name: [B, ...]}`` in place of the nominal ones."""
        return self.mjx_model.tree_replace(dict(fields))

    def _vmap_over_model(self, fn: Any) -> Any:
        """``fn(model, *per_env)`` vmapped over environments: randomized fields carry the batch axis, every other
        leaf of the Model is shared."""
        jax = self._jax
        axes = jax.tree_util.tree_map(lambda _: None, self.mjx_model).tree_replace(
            {f: 0 for f in self.task.model_fields})
        return jax.vmap(fn, in_axes=(axes, 0, 0))

    def _start_data(self, fields: dict[str, Any], qpos: Any, qvel: Any) -> Any:
        """Fresh data at the sampled state, after a forward pass (mj_resetData, set, mj_forward)."""
        mjx, template = self._mjx, self._template

        def one(m: Any, qp: Any, qv: Any) -> Any:
            return mjx.forward(m, template.replace(qpos=qp, qvel=qv))

        return self._vmap_over_model(one)(self._batched_model(fields), qpos, qvel)

    def _physics(self, fields: dict[str, Any], data: Any, ctrl: Any) -> Any:
        """``decimation`` physics steps at constant ctrl; sensordata is from the last step's forward pass."""
        jax, mjx, decimation = self._jax, self._mjx, self.task.decimation

        def one(m: Any, d: Any, u: Any) -> Any:
            return jax.lax.fori_loop(0, decimation, lambda _, x: mjx.step(m, x), d.replace(ctrl=u))

        return self._vmap_over_model(one)(self._batched_model(fields), data, ctrl)

    def _observe(self, state: DeviceState, key: Any) -> tuple[Any, Any]:
        """Float32 ``(proprio, privileged)`` of ``state``, sensor noise drawn from ``key``."""
        jax, jnp = self._jax, self._jnp
        noise = jax.random.normal(key, (state.steps.shape[0], self.layout.proprio_dim)) if self._noise else None
        proprio, privileged = observe_step(self.layout, self.task, _sim(state.data), state.prev_action,
                                           state.command, state.params, noise, jnp)
        return proprio.astype(jnp.float32), privileged.astype(jnp.float32)

    def _nominal(self) -> dict[str, Any]:
        return {f: self._jnp.asarray(v, dtype=self._jnp.float32) for f, v in self.nominal.items()}

    def _init_fn(self, params: dict[str, Any], qpos: Any, qvel: Any, command: Any, next_params: dict[str, Any],
                 next_qpos: Any, next_qvel: Any, next_command: Any, key: Any) -> tuple[DeviceState, Any, Any]:
        """The device state of a fresh batch (current and buffered next episodes) and its observation."""
        jax, jnp = self._jax, self._jnp
        fields = self.task.apply_params(self._nominal(), params, jnp)
        n = qpos.shape[0]
        state = DeviceState(self._start_data(fields, qpos, qvel), fields, params, command,
                         jnp.zeros((n, self.action_dim), jnp.float32), jnp.zeros(n, jnp.int32), key,
                         next_params, next_qpos, next_qvel, next_command)
        key, sub = jax.random.split(key)
        proprio, privileged = self._observe(state, sub)
        return state._replace(key=key), proprio, privileged

    def _restart(self, state: DeviceState, done: Any, key: Any, proprio: Any,
                 privileged: Any) -> tuple[DeviceState, Any, Any]:
        """Swap the buffered next episode in where ``done [B]``; observe the restarted environments."""
        jax, jnp = self._jax, self._jnp
        fresh_fields = self.task.apply_params(self._nominal(), state.next_params, jnp)
        fresh = self._start_data(fresh_fields, state.next_qpos, state.next_qvel)
        pick = lambda new, old: _where_rows(jnp, done, new, old) if _per_env(new, done) else old  # noqa: E731
        state = state._replace(
            data=jax.tree_util.tree_map(pick, fresh, state.data),
            fields=jax.tree_util.tree_map(pick, fresh_fields, state.fields),
            params=jax.tree_util.tree_map(pick, state.next_params, state.params),
            command=pick(state.next_command, state.command),
            prev_action=pick(jnp.zeros_like(state.prev_action), state.prev_action),
            steps=pick(jnp.zeros_like(state.steps), state.steps))
        p, q = self._observe(state, key)
        return state, pick(p, proprio), pick(q, privileged)

    def _step_fn(self, state: DeviceState, action: Any) -> tuple[DeviceState, dict[str, Any]]:
        """One control step of the batch with auto-reset (the task's logic: robodistill/sim/control_step.py)."""
        jax, jnp, task = self._jax, self._jnp, self.task
        offset = jnp.asarray(self.action_offset, dtype=jnp.float32)
        scale = jnp.asarray(self.action_scale, dtype=jnp.float32)
        control = before_physics(task, action.astype(jnp.float32), state.prev_action, state.steps,
                                 state.data.qvel, state.params, offset, scale, jnp)
        data = self._physics(state.fields, state.data.replace(qvel=control.qvel), control.ctrl)
        fault, overflow = self._faults(data)  # [B] each
        fault = fault | overflow
        outcome = after_physics(task, _sim(data), control.action, state.prev_action, state.command, state.params,
                                state.steps, fault, jnp)
        done = outcome.terminated | outcome.truncated
        state = state._replace(data=data, prev_action=control.action, steps=outcome.steps.astype(jnp.int32))
        key, k_obs, k_reset = jax.random.split(state.key, 3)
        proprio, privileged = self._observe(state, k_obs)
        state, new_proprio, new_privileged = jax.lax.cond(
            done.any(), lambda s: self._restart(s, done, k_reset, proprio, privileged),
            lambda s: (s, proprio, privileged), state)
        out = {"proprio": new_proprio, "privileged": new_privileged, "reward": outcome.reward.astype(jnp.float32),
               "terminated": outcome.terminated, "truncated": outcome.truncated, "fault": fault, "done": done,
               "overflow": overflow,
               "final_proprio": proprio, "final_privileged": privileged,
               "reward_terms": {k: v.astype(jnp.float32) for k, v in outcome.reward_terms.items()}}
        return state._replace(key=key), out

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
        d = self.device_state.data
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
        self.device_state, proprio, privileged = self._init(*self._put(current), *self._put(self._next), key)
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
        if self.device_state is None:
            raise RuntimeError("MjxBackend.step() called before reset()")
        t0 = time.perf_counter()
        self.device_state, out = self._step(self.device_state, self._to_device(action))
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
                self._count_overflows(np.asarray(out["overflow"])[ids])
            self._advance_episodes(ids)
        return {"proprio": out["proprio"], "privileged": out["privileged"], "reward": out["reward"],
                "terminated": out["terminated"], "truncated": out["truncated"], "final": final,
                "fault": out["fault"], "reward_terms": out["reward_terms"]}

    @property
    def sensor_noise(self) -> bool:
        """Whether proprio terms get their declared noise (changing it recompiles the step)."""
        return self._noise

    @sensor_noise.setter
    def sensor_noise(self, on: bool) -> None:
        if bool(on) != self._noise:
            self._noise = bool(on)
            self._build_functions()

    def observe(self) -> tuple[Any, Any]:
        """``(proprio, privileged)`` of the current state (sensor noise drawn anew)."""
        if self._observe_now is None:
            self._observe_now = self._jax.jit(self._observe_fn)
        self.device_state, proprio, privileged = self._observe_now(self.device_state)
        return proprio, privileged

    def _observe_fn(self, state: DeviceState) -> tuple[DeviceState, Any, Any]:
        key, sub = self._jax.random.split(state.key)
        proprio, privileged = self._observe(state, sub)
        return state._replace(key=key), proprio, privileged

    def env_model(self, env_id: int, into: mujoco.MjModel | None = None) -> mujoco.MjModel:
        """Environment ``env_id``'s model with its episode's randomized fields (a host copy, or ``into``)."""
        model = copy.deepcopy(self.model) if into is None else into
        for f, values in self.device_state.fields.items():
            getattr(model, f)[...] = np.asarray(values[env_id])
        return model

    def env_physics_state(self, env_id: int) -> np.ndarray:
        """Environment ``env_id``'s ``mjSTATE_FULLPHYSICS`` vector, from the device's float32 state."""
        d, data = self.device_state.data, self._drawn
        data.time = float(d.time[env_id])
        data.qpos[:], data.qvel[:] = np.asarray(d.qpos[env_id]), np.asarray(d.qvel[env_id])
        if self.model.na:
            data.act[:] = np.asarray(d.act[env_id])
        out = np.empty(mujoco.mj_stateSize(self.model, mujoco.mjtState.mjSTATE_FULLPHYSICS))
        mujoco.mj_getState(self.model, data, out, mujoco.mjtState.mjSTATE_FULLPHYSICS)
        return out

    def push(self, kick: np.ndarray) -> None:
        """Add ``kick [B, nv]`` to every environment's velocity (it acts from the next control step)."""
        data = self.device_state.data
        kick = self._to_device(np.asarray(kick, dtype=np.float32))
        self.device_state = self.device_state._replace(data=data.replace(qvel=data.qvel + kick))

    def snapshot(self) -> dict[str, Any]:
        """The device state (every leaf, as host tensors), the host mirrors and every random stream."""
        jax = self._jax
        state = self.device_state._replace(key=jax.random.key_data(self.device_state.key))
        leaves = [_to_tensor(np.array(leaf)) for leaf in jax.tree_util.tree_leaves(state)]
        nxt = self._next
        return {"backend": self.name, "num_envs": self.num_envs, "leaves": leaves,
                "params": {p: torch.from_numpy(v.copy()) for p, v in self.params.items()},
                "command": torch.from_numpy(self.command.copy()),
                "next": {"params": {p: torch.from_numpy(v.copy()) for p, v in nxt.params.items()},
                         "qpos": torch.from_numpy(nxt.qpos.copy()), "qvel": torch.from_numpy(nxt.qvel.copy()),
                         "command": torch.from_numpy(nxt.command.copy())},
                "episodes": self.sampler.state(), "noise_seed": self._noise_seed,
                "physics_faults": self.physics_faults}

    def restore(self, snap: dict[str, Any]) -> None:
        """Continue from :meth:`snapshot` of an MJX batch of the same task and size."""
        jax = self._jax
        if snap.get("backend") != self.name or snap.get("num_envs") != self.num_envs:
            raise ValueError(f"the snapshot is of {snap.get('backend')!r} with {snap.get('num_envs')} environments, "
                             f"not {self.name!r} with {self.num_envs}")
        if self.device_state is None:
            self.reset()  # a template of the device state's structure
        template = self.device_state._replace(key=jax.random.key_data(self.device_state.key))
        leaves, treedef = jax.tree_util.tree_flatten(template)
        if len(leaves) != len(snap["leaves"]):
            raise ValueError("the snapshot's device state does not fit this task")
        values = [self._to_device(_from_tensor(t, np.asarray(leaf).dtype)) for t, leaf in zip(snap["leaves"], leaves)]
        state = jax.tree_util.tree_unflatten(treedef, values)
        self.device_state = state._replace(key=jax.random.wrap_key_data(state.key))
        for p, v in snap["params"].items():
            self.params[p][:] = v.numpy()
        self.command[:] = snap["command"].numpy()
        nxt = snap["next"]
        self._next = EpisodeBatch({p: v.numpy().copy() for p, v in nxt["params"].items()}, nxt["qpos"].numpy().copy(),
                                  nxt["qvel"].numpy().copy(), nxt["command"].numpy().copy())
        self.sampler.set_state(snap["episodes"])
        self._noise_seed = int(snap["noise_seed"])
        self.physics_faults = int(snap["physics_faults"])

    def _count_overflows(self, overflowed: np.ndarray) -> None:
        """Faults that were buffer overflows (only implementations with fixed contact buffers have them)."""

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
        self.device_state = self.device_state._replace(next_params=params, next_qpos=qpos, next_qvel=qvel,
                                         next_command=command)

    def close(self) -> None:
        """Drop the device state."""
        self.device_state = None


def _to_tensor(array: np.ndarray) -> torch.Tensor:
    """A host array as a tensor (unsigned 32-bit words, e.g. PRNG key data, as their int32 bit pattern)."""
    return torch.from_numpy(array.view(np.int32) if array.dtype == np.uint32 else array)


def _from_tensor(tensor: torch.Tensor, dtype: np.dtype) -> np.ndarray:
    array = tensor.numpy()
    return array.view(np.uint32) if dtype == np.uint32 else array.astype(dtype, copy=False)


def _rows(array: Any, ids: np.ndarray) -> torch.Tensor:
    """Rows ``ids`` of a device array, gathered by torch over its DLPack view (a jax gather would compile
    once for every distinct number of rows)."""
    tensor = torch.from_dlpack(array)
    return tensor[torch.from_numpy(ids).to(tensor.device)]


def _ok(jnp: Any, x: Any) -> Any:
    """Rows of ``x [B, n]`` that are finite and within MuJoCo's bound of divergence."""
    return (jnp.isfinite(x) & (jnp.abs(x) < _MAXVAL)).all(axis=1)


def _sim(data: Any) -> SimArrays:
    return SimArrays(data.qpos, data.qvel, data.sensordata)


def _per_env(leaf: Any, mask: Any) -> bool:
    """Whether ``leaf`` holds one row per environment (``mask [B]``). MuJoCo Warp's data also holds buffers shared
    by all worlds (contacts, counters), which every step recomputes: a restart keeps those as they are."""
    return getattr(leaf, "ndim", 0) >= 1 and leaf.shape[0] == mask.shape[0]


def _where_rows(jnp: Any, mask: Any, new: Any, old: Any) -> Any:
    """``new`` in the rows where ``mask [B]`` holds, else ``old`` (any trailing shape)."""
    return jnp.where(mask.reshape(mask.shape + (1,) * (new.ndim - 1)), new, old)

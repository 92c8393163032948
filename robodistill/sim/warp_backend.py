"""The MuJoCo Warp backend: MJX's jitted control step with MuJoCo Warp's kernels doing the physics.

MJX runs MuJoCo Warp (``mujoco.mjx.put_model(..., impl="warp")``) as XLA foreign calls, so this backend is the MJX
backend with another physics implementation underneath: the task's per-step math stays the JAX code every backend
shares (docs/design.md decision 1), resets of finished worlds stay on the device inside the same jitted step,
randomized fields stay per-world Model fields under ``vmap``, and observations cross to torch by DLPack. On a GPU,
Warp captures each foreign call's kernels as a CUDA graph and replays it; on the CPU the same kernels run
(slowly: each compiles once, then loads from Warp's kernel cache, ``WARP_CACHE_PATH``), which is how CI tests it.

MuJoCo Warp keeps contacts and constraint rows in fixed buffers. Their sizes are measured, not guessed: the C
engine plays the task under random actions and the largest per-world counts it sees, times
:data:`HEADROOM`, size the buffers. A world that overflows them anyway is a counted fault (reset, reported once
as a warning, counted in ``contact_overflows``), never silently wrong physics.
"""

from __future__ import annotations

import copy
import logging
import math
from typing import Any, NamedTuple

import mujoco
import numpy as np

from robodistill.errors import ConfigError
from robodistill.sim.mjx_backend import MjxBackend, _import_jax
from robodistill.tasks.base import Task

log = logging.getLogger(__name__)

HEADROOM = 2.0  # buffer sizes over the largest per-world counts measured on the C engine
MEASURE_ENVS, MEASURE_STEPS = 16, 150  # the measurement: random actions, control steps per environment


class ConstraintLoad(NamedTuple):
    """The largest per-world contact and constraint-row counts measured, and the buffer sizes chosen from them."""

    max_contacts: int
    max_rows: int
    contacts_per_world: int  # buffer: contacts per world (naconmax = this x worlds)
    rows_per_world: int  # buffer: njmax


def constraint_counts(task: Task, envs: int = MEASURE_ENVS, steps: int = MEASURE_STEPS,
                      seed: int = 12345) -> tuple[np.ndarray, np.ndarray]:
    """Contacts and constraint rows ``[steps * envs]`` of every world after every control step of ``task`` on the C
    engine under uniform random actions."""
    from robodistill.sim.mujoco_backend import MujocoBackend

    backend = MujocoBackend(task, envs, seed, num_threads=1)
    rng = np.random.default_rng(seed)
    model, data = copy.deepcopy(backend.model), mujoco.MjData(backend.model)
    contacts, rows = [], []
    try:
        backend.reset()
        for _ in range(steps):
            backend.step(rng.uniform(-1.0, 1.0, (envs, backend.action_dim)))
            for i in range(envs):  # the batch keeps state rows only: recompute each world's contacts
                backend.env_model(i, model)
                mujoco.mj_setState(model, data, backend.env_physics_state(i), mujoco.mjtState.mjSTATE_FULLPHYSICS)
                mujoco.mj_forward(model, data)
                contacts.append(data.ncon)
                rows.append(data.nefc)
    finally:
        backend.close()
    return np.asarray(contacts), np.asarray(rows)


def measure_constraint_load(task: Task, envs: int = MEASURE_ENVS, steps: int = MEASURE_STEPS,
                            seed: int = 12345) -> ConstraintLoad:
    """Size the contact buffers from what ``task`` uses on the C engine under random actions
    (:func:`constraint_counts`).

    Random actions are the worst case a run meets (robots fall, limbs hit the ground), so the counts cover
    trained policies too; an overflow in a later run is still caught and counted as a fault.
    """
    contacts, rows = (int(c.max()) for c in constraint_counts(task, envs, steps, seed))
    return ConstraintLoad(contacts, rows, max(4, math.ceil(HEADROOM * contacts)),
                          max(8, math.ceil(HEADROOM * rows)))


_LOADS: dict[tuple, ConstraintLoad] = {}  # measured buffer sizes by task, model, collision set, ranges, headroom


class WarpBackend(MjxBackend):
    """A batch of ``num_envs`` environments of one task on MuJoCo Warp (through MJX): jax arrays in and out."""

    name = "warp"
    impl = "warp"

    def __init__(self, task: Task, num_envs: int, seed: int, num_threads: int = 1) -> None:
        self.contact_overflows = 0  # faults that were contact or constraint buffer overflows
        # once per task and model in a process: a run builds its training, evaluation and validation batches alike
        key = (type(task), str(task.mjcf_path), task.collisions, tuple(sorted(task.ranges.items())), HEADROOM)
        if key not in _LOADS:
            _LOADS[key] = measure_constraint_load(task)
        self.load = _LOADS[key]
        super().__init__(task, num_envs, seed, num_threads)
        log.info("warp %s: buffers of %d contacts and %d constraint rows per world (measured peak %d and %d)",
                 task.name, self.load.contacts_per_world, self.load.rows_per_world, self.load.max_contacts,
                 self.load.max_rows)

    def _import(self) -> tuple[Any, Any, Any]:
        try:
            import warp
        except ImportError as exc:
            raise ConfigError(f"backend 'warp' needs NVIDIA Warp ({exc}); "
                              "install it with: pip install 'robodistill[warp]'") from None
        # before MJX initializes Warp, which would report its devices and every kernel module it loads on stdout
        warp.config.log_level = max(warp.config.log_level, warp.LOG_WARNING)
        jax, jnp, mjx = _import_jax("warp")
        from mujoco.mjx.third_party.mujoco_warp import OverflowType  # the MuJoCo Warp that MJX runs

        # a full buffer is a fault; the solver stopping at its iteration limit is not (the C engine does it too)
        self._buffer_bits = int(OverflowType.ALL & ~(OverflowType.ITERATIONS | OverflowType.LS_ITERATIONS))
        return jax, jnp, mjx

    def _put_model(self) -> Any:
        # overflows are counted as faults here; MuJoCo Warp's own report is a printf from inside its kernels
        return super()._put_model().tree_replace({"opt._impl.warn_overflow": 0})

    def _data_template(self) -> Any:
        # contacts live in one buffer shared by all worlds (naconmax); constraint rows are per world (njmax)
        return self._mjx.make_data(self.model, device=self.device, impl=self.impl,
                                   naconmax=self.load.contacts_per_world * self.num_envs,
                                   njmax=self.load.rows_per_world)

    def _faults(self, data: Any) -> tuple[Any, Any]:
        fault, _ = super()._faults(data)
        bits = self._jnp.reshape(data._impl.overflow, fault.shape)  # [B] MuJoCo Warp's bitmask, per world
        return fault, (bits & self._buffer_bits) != 0

    def _count_overflows(self, overflowed: np.ndarray) -> None:
        count = int(overflowed.sum())
        if count and not self.contact_overflows:
            log.warning("warp %s: %d world(s) overflowed their contact or constraint buffers (%d contacts, %d rows "
                        "per world) and were reset as faults", self.task.name, count,
                        self.load.contacts_per_world, self.load.rows_per_world)
        self.contact_overflows += count


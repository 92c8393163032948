"""The public task API: a task is written once, as pure functions over batched simulator arrays.

Every function that runs per step takes an array namespace ``xp`` (``numpy`` for the C engine, ``jax.numpy``
under ``jit`` for MJX) and batched arrays, and returns batched arrays; nothing reads or writes simulator objects.
Host-side sampling (randomized parameters, initial states, commands) uses a seeded ``numpy`` Generator, so both
backends see the same episodes for the same seed (docs/design.md decisions 1-3).

Observation terms are declared, not coded: proprio terms are named MJCF sensors with a declared transform,
plus the previous action and the command. The same declarations go into the ONNX metadata, so a controller
assembles the observation from sensor readings by name.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple, Sequence, Union

import numpy as np

from robodistill.errors import ConfigError

Array = Any  # numpy.ndarray or jax.Array, batched over environments on axis 0

Transform = Literal["identity", "sincos", "projected_gravity"]


@dataclass(frozen=True)
class SensorTerm:
    """An observation term read from the named MJCF sensor, with an optional transform and noise."""

    sensor: str
    transform: Transform = "identity"
    noise_std: float = 0.0

    def labels(self, sensor_dim: int) -> list[str]:
        """Names of the observation entries this term produces."""
        if self.transform == "sincos":
            return [f"{self.sensor}.sin{i}" for i in range(sensor_dim)] + [
                f"{self.sensor}.cos{i}" for i in range(sensor_dim)
            ]
        if self.transform == "projected_gravity":
            return [f"{self.sensor}.gravity_{a}" for a in "xyz"]
        return [f"{self.sensor}[{i}]" for i in range(sensor_dim)] if sensor_dim > 1 else [self.sensor]


@dataclass(frozen=True)
class PrevActionTerm:
    """The action applied at the previous control step, in [-1, 1]."""


@dataclass(frozen=True)
class CommandTerm:
    """The task command (e.g. target base velocity), sampled per episode."""


@dataclass(frozen=True)
class ParamsTerm:
    """The episode's observed randomized parameters, each scaled to [-1, 1] over its range (privileged only)."""


@dataclass(frozen=True)
class ExtraTerm:
    """A task-computed privileged term: ``Task.extra_observation(name, ...)`` returns ``[B, dim]``."""

    name: str
    dim: int


Term = Union[SensorTerm, PrevActionTerm, CommandTerm, ParamsTerm, ExtraTerm]


class SimArrays(NamedTuple):
    """Batched simulator state after a control step (numpy on the C engine, jax under MJX)."""

    qpos: Array  # [B, nq]
    qvel: Array  # [B, nv]
    sensordata: Array  # [B, nsensordata]


@dataclass(frozen=True)
class ParamSpec:
    """A randomized physical parameter: its nominal value and default sampling range."""

    nominal: float
    low: float
    high: float
    description: str = ""
    # False: hidden from the teacher's privileged observation too, so that both policies must be robust to it
    # rather than read it (what neither could know on the robot; adding one leaves trained teachers loadable)
    observed: bool = True


def transform_sensor(values: Array, transform: Transform, xp: Any) -> Array:
    """Apply a declared sensor transform to ``values`` [B, d]."""
    if transform == "identity":
        return values
    if transform == "sincos":
        return xp.concatenate([xp.sin(values), xp.cos(values)], axis=-1)
    if transform == "projected_gravity":
        # values: orientation quaternion [B, 4] (w, x, y, z), world->body rotation of gravity (0, 0, -1)
        w, x, y, z = values[:, 0], values[:, 1], values[:, 2], values[:, 3]
        gx = -2.0 * (x * z - w * y)
        gy = -2.0 * (y * z + w * x)
        gz = -(1.0 - 2.0 * (x * x + y * y))
        return xp.stack([gx, gy, gz], axis=-1)
    raise ValueError(f"unknown sensor transform {transform!r}")


def transformed_dim(sensor_dim: int, transform: Transform) -> int:
    """Width of a sensor term after its transform."""
    return {"identity": sensor_dim, "sincos": 2 * sensor_dim, "projected_gravity": 3}[transform]


class Task:
    """Base class of every task; subclasses declare the model and write the pure per-step functions.

    Subclass contract (see ``tasks/pendulum.py`` for a complete example):
      - ``name``, ``mjcf`` (path of the MJCF file), ``episode_length`` (control steps), ``decimation``;
      - ``proprio_terms`` (what the robot senses) and ``privileged_terms`` (what only the simulator knows,
        appended after the noise-free proprio terms in the teacher's observation);
      - ``params``: the randomized physical parameters and ``model_fields``: the MjModel fields they write;
      - ``apply_params``, ``initial_state``, ``reward``, ``terminated``; optionally ``command_dim`` with
        ``sample_command``, ``extra_observation``, and ``metric_labels`` with ``episode_metrics`` for the
        task's own evaluation figures.
    """

    name: ClassVar[str] = "task"
    mjcf: ClassVar[Path]
    episode_length: ClassVar[int] = 1000
    decimation: ClassVar[int] = 1
    proprio_terms: ClassVar[tuple[Term, ...]] = ()
    privileged_terms: ClassVar[tuple[Term, ...]] = ()
    params: ClassVar[dict[str, ParamSpec]] = {}
    model_fields: ClassVar[tuple[str, ...]] = ()
    command_dim: ClassVar[int] = 0
    metric_labels: ClassVar[tuple[str, ...]] = ()  # privileged entries that ``episode_metrics`` reads
    REWARD_SCALES: ClassVar[dict[str, float]] = {}  # named reward terms' default scales (config: task.reward_scales)
    REWARD_PARAMS: ClassVar[dict[str, float]] = {}  # the terms' named constants (config: task.reward_params)
    # the collision set made for accelerators (task.collisions: accelerator): geom name -> (contype, conaffinity);
    # every other geom stops colliding. Empty: the task has none. docs/design.md decision 13
    ACCELERATOR_COLLISIONS: ClassVar[dict[str, tuple[int, int]]] = {}
    # sensors the compiler adds where the MJCF lacks them (robodistill/tasks/sensors.py), so a robot's file loads
    # unedited
    SENSORS: ClassVar[tuple[Any, ...]] = ()

    def __init__(self, randomization: dict[str, Sequence[float]] | None = None, randomize: bool = True,
                 mjcf: str | Path | None = None, episode_length: int | None = None,
                 reward_scales: dict[str, float] | None = None, collisions: str = "full",
                 reward_params: dict[str, float] | None = None) -> None:
        self.validate_randomization(randomization or {})
        if collisions not in ("full", "accelerator"):
            raise ConfigError(f"task.collisions: expected 'full' or 'accelerator', got {collisions!r}")
        if collisions == "accelerator" and not self.ACCELERATOR_COLLISIONS:
            raise ConfigError(f"task {self.name!r} declares no accelerator collision set; use task.collisions: full")
        self.collisions = collisions
        self.validate_reward_scales(reward_scales or {})
        self.reward_scales: dict[str, float] = {**self.REWARD_SCALES, **(reward_scales or {})}
        self.validate_reward_params(reward_params or {})
        self.reward_params: dict[str, float] = {**self.REWARD_PARAMS, **(reward_params or {})}
        self.ranges: dict[str, tuple[float, float]] = {}
        for pname, spec in self.params.items():
            lo, hi = (randomization or {}).get(pname, (spec.low, spec.high))
            self.ranges[pname] = (float(lo), float(hi)) if randomize else (spec.nominal, spec.nominal)
        bounds = np.array(list(self.ranges.values()), dtype=float).reshape(-1, 2)
        self._lows, self._spans = bounds[:, :1], bounds[:, 1:] - bounds[:, :1]  # [P, 1] each, ``ranges`` order
        self.observed_params = tuple(p for p, spec in self.params.items() if spec.observed)
        seen = [i for i, spec in enumerate(self.params.values()) if spec.observed]  # ``ranges`` follows ``params``
        half = 0.5 * self._spans[seen, 0]  # [P observed]
        self._mids = self._lows[seen, 0] + half
        self._inverse_halves = np.divide(1.0, half, out=np.zeros_like(half), where=half > 0)  # 0 for a point range
        self.mjcf_path = Path(mjcf) if mjcf is not None else self.default_mjcf()
        if episode_length is not None:
            self.episode_length = episode_length

    @classmethod
    def default_mjcf(cls) -> Path:
        """The task's own MJCF file (``mjcf``), used unless the config names another."""
        return Path(cls.mjcf)

    def bind(self, model: Any) -> None:
        """Look up the static ids (bodies, geoms, joints) the pure functions index with; called once per model."""

    def edit_spec(self, spec: Any) -> bool:
        """Edit the model (a ``mujoco.MjSpec``) before it compiles, on every backend alike; whether anything changed.

        The base class adds the declared ``SENSORS`` the model lacks and applies the accelerator collision set when
        ``task.collisions`` asks for it; a task that builds more of its model (a scene) extends this."""
        from robodistill.tasks.sensors import add_sensors

        edited = add_sensors(spec, self.SENSORS)
        if self.collisions != "accelerator":
            return edited
        keep = dict(self.ACCELERATOR_COLLISIONS)
        missing = sorted(set(keep) - {g.name for g in spec.geoms})
        if missing:
            raise ConfigError(f"task {self.name!r}: the accelerator collision set names geoms the MJCF "
                              f"{self.mjcf_path.name} lacks: {', '.join(missing)}")
        for geom in spec.geoms:
            geom.contype, geom.conaffinity = keep.get(geom.name, (0, 0))
            if geom.name in keep:
                geom.margin = 0.0  # MJX collides height fields without margins (Menagerie's Go1 uses 1 mm)
        return True

    # ---- validation -------------------------------------------------------------------------------------

    @classmethod
    def validate_randomization(cls, randomization: dict[str, Sequence[float]]) -> None:
        """Reject unknown parameter names (with a suggestion) and malformed ranges."""
        for pname, rng in randomization.items():
            if pname not in cls.params:
                hint = difflib.get_close_matches(pname, list(cls.params), n=1, cutoff=0.5)
                extra = f" (did you mean {hint[0]!r}?)" if hint else f" (valid: {', '.join(cls.params)})"
                raise ConfigError(f"unknown randomized parameter env.randomization.{pname} for task "
                                  f"{cls.name!r}{extra}")
            if len(rng) != 2 or rng[0] > rng[1]:
                raise ConfigError(f"env.randomization.{pname}: expected [low, high] with low <= high, got {rng}")

    @classmethod
    def validate_reward_scales(cls, reward_scales: dict[str, float]) -> None:
        """Reject reward terms the task does not declare in ``REWARD_SCALES`` (with a suggestion)."""
        cls._reject_undeclared(reward_scales, cls.REWARD_SCALES, "reward term", "task.reward_scales")

    @classmethod
    def validate_reward_params(cls, reward_params: dict[str, float]) -> None:
        """Reject reward parameters the task does not declare in ``REWARD_PARAMS`` (with a suggestion)."""
        cls._reject_undeclared(reward_params, cls.REWARD_PARAMS, "reward parameter", "task.reward_params")

    @classmethod
    def _reject_undeclared(cls, given: dict[str, float], declared: dict[str, float], kind: str, key: str) -> None:
        for name in given:
            if name not in declared:
                hint = difflib.get_close_matches(name, list(declared), n=1, cutoff=0.5)
                extra = (f" (did you mean {hint[0]!r}?)" if hint else
                         f" (valid: {', '.join(declared) or f'none, it declares no {kind}s'})")
                raise ConfigError(f"unknown {kind} {key}.{name} for task {cls.name!r}{extra}")

    def default_joint_positions(self, model: Any) -> np.ndarray:
        """The actuated joints' default pose ``[A]`` that a controller starts from (default: the model's qpos0)."""
        return np.array([model.qpos0[model.jnt_qposadr[j]] for j in model.actuator_trnid[:, 0]])

    def action_mapping(self, model: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(offset [A], scale [A])`` mapping an action in [-1, 1] to actuator controls (default: ctrlrange)."""
        lo, hi = model.actuator_ctrlrange[:, 0].copy(), model.actuator_ctrlrange[:, 1].copy()
        limited = hi > lo
        offset = np.where(limited, 0.5 * (lo + hi), 0.0)
        scale = np.where(limited, 0.5 * (hi - lo), 1.0)
        return offset, scale

    # ---- host-side sampling (numpy Generator; identical across backends for the same seed) ----------

    def sample_params(self, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
        """Draw ``n`` episodes' randomized parameters, each ``[n]``, uniform over the configured ranges."""
        # low + span * U draws the same numbers as ``rng.uniform(low, high, size=n)`` per parameter, in one call
        draws = self._lows + self._spans * rng.random((len(self._lows), n))  # [P, n]
        return dict(zip(self.ranges, draws))

    def sample_command(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Draw ``n`` episodes' commands ``[n, command_dim]``."""
        return np.zeros((n, self.command_dim))

    def initial_state(self, rng: np.random.Generator, n: int, qpos0: np.ndarray,
                      nv: int) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n`` initial states: ``qpos [n, nq]``, ``qvel [n, nv]`` (default: the model's qpos0, at rest)."""
        return np.tile(qpos0, (n, 1)), np.zeros((n, nv))

    # ---- pure functions over batched arrays ---------------------------------------------------------

    def apply_params(self, nominal: dict[str, Array], params: dict[str, Array], xp: Any) -> dict[str, Array]:
        """Map parameters ``{name: [B]}`` onto the Model fields in ``model_fields``: ``{field: [B, ...]}``."""
        return {}

    def applied_action(self, action: Array, prev_action: Array, params: dict[str, Array], xp: Any) -> Array:
        """The action that reaches the actuators this step ``[B, A]`` (e.g. a latency blend); default: ``action``."""
        return action

    def velocity_kick(self, steps: Array, qvel: Array, params: dict[str, Array], xp: Any) -> Array | None:
        """A change of velocity ``[B, nv]`` applied before the step (e.g. random pushes), or None for none."""
        return None

    def reward_terms(self, sim: SimArrays, action: Array, prev_action: Array, command: Array,
                     xp: Any) -> dict[str, Array]:
        """Each named reward term ``[B]``, unscaled (their scales: ``REWARD_SCALES`` with ``task.reward_scales``).

        The default, for a task that defines only :meth:`reward`: one term, ``reward``, its whole reward."""
        if type(self).reward is Task.reward:
            raise NotImplementedError(f"task {self.name!r} defines neither reward_terms nor reward")
        return {"reward": self.reward(sim, action, prev_action, command, xp)}

    def weighted_reward_terms(self, terms: dict[str, Array]) -> dict[str, Array]:
        """Each term's share of the reward ``[B]``: the term times its scale (1 for an undeclared term)."""
        return {name: self.reward_scales.get(name, 1.0) * value for name, value in terms.items()}

    def combine_reward(self, weighted: dict[str, Array], sim: SimArrays, command: Array, xp: Any) -> Array:
        """The reward ``[B]`` from the weighted terms: their sum (a task may clip it or add a penalty)."""
        return sum(weighted.values())

    def reward(self, sim: SimArrays, action: Array, prev_action: Array, command: Array, xp: Any) -> Array:
        """Reward ``[B]`` for the control step that led to ``sim``: the named terms, weighted and combined."""
        terms = self.weighted_reward_terms(self.reward_terms(sim, action, prev_action, command, xp))
        return self.combine_reward(terms, sim, command, xp)

    def terminated(self, sim: SimArrays, command: Array, xp: Any) -> Array:
        """Early termination ``[B]`` (bool); the default never terminates."""
        return xp.zeros(sim.qpos.shape[0], dtype=bool)

    def out_of_bounds(self, sim: SimArrays, params: dict[str, Array], xp: Any) -> Array | None:
        """Environments ``[B]`` (bool) that left the arena: the episode ends as a truncation, not a failure.

        Like the time limit, leaving the arena (e.g. walking off the terrain) says nothing about the policy,
        so learners bootstrap through it and evaluation does not count it as a fall. Default: None (no bounds).
        """
        return None

    def extra_observation(self, name: str, sim: SimArrays, params: dict[str, Array], xp: Any) -> Array:
        """Value ``[B, dim]`` of the privileged :class:`ExtraTerm` called ``name``."""
        raise NotImplementedError(f"{type(self).__name__} declares no extra term {name!r}")

    def episode_metrics(self, traces: dict[str, np.ndarray], fell: np.ndarray) -> dict[str, float]:
        """Task figures from evaluation traces ``{metric label: [N, T]}`` (NaN after each episode's end)."""
        return {}

    def normalized_params(self, params: dict[str, Array], xp: Any) -> Array:
        """The observed randomized parameters scaled to [-1, 1] over their ranges (0 where a range is a point):
        ``[B, P observed]``."""
        if not self.observed_params:
            return xp.zeros((params_batch(params), 0))
        values = xp.stack([params[p] for p in self.observed_params], axis=-1)  # [B, P observed]
        return (values - self._mids) * self._inverse_halves


def params_batch(params: dict[str, Array]) -> int:
    """Batch size of a parameter dict (0 when it has no entries)."""
    for v in params.values():
        return int(v.shape[0])
    return 0


def index_set(array: Array, index: Any, value: Array) -> Array:
    """``array`` with ``array[index] = value``, functionally (jax) or on a copy (numpy)."""
    if hasattr(array, "at"):
        return array.at[index].set(value)
    out = array.copy()
    out[index] = value
    return out


def wrap_angle(angle: Array, xp: Any) -> Array:
    """Angle wrapped to [-pi, pi]."""
    return xp.arctan2(xp.sin(angle), xp.cos(angle))

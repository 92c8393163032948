"""Typed, validated, frozen configuration loaded from YAML.

Every section is a frozen dataclass. Unknown keys fail with the nearest valid name, values are checked for
type and range, and ``key.path=value`` overrides are applied before validation so that they are checked too.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from robodistill.errors import ConfigError

_YAML11_EXPONENT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")  # 1e-4: a number PyYAML leaves a string


def _range(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False) -> dict[str, Any]:
    """Field metadata declaring an inclusive (or open-below) numeric range."""
    return {"lo": lo, "hi": hi, "lo_open": lo_open}


@dataclass(frozen=True)
class TaskConfig:
    """Which task to run; ``mjcf`` and ``entry_point`` bring your own robot."""

    name: str = "pendulum"
    mjcf: Optional[str] = None
    entry_point: Optional[str] = None
    # reward term name -> scale, over the task's declared defaults (names are checked against the task's terms)
    reward_scales: dict[str, float] = field(default_factory=dict)
    # reward parameter name -> value, over the task's declared defaults (e.g. the quadruped's tracking_sigma)
    reward_params: dict[str, float] = field(default_factory=dict)
    # "accelerator": the task's collision set made for MJX/Warp (feet, plus what ends an episode), on every backend
    collisions: Literal["full", "accelerator"] = "full"


@dataclass(frozen=True)
class EnvConfig:
    """Simulation backend and the per-episode randomization ranges."""

    backend: str = "mujoco"  # a registered backend (robodistill/sim/registry.py): mujoco, mjx, ...
    num_threads: int = field(default=2, metadata=_range(1, 256))
    episode_length: Optional[int] = field(default=None, metadata=_range(1))
    randomize: bool = True
    # parameter name -> [low, high]; names are checked against the task's declared parameters
    randomization: dict[str, list[float]] = field(default_factory=dict)


@dataclass(frozen=True)
class TeacherConfig:
    """Stable-Baselines3 teacher trained on the privileged observations."""

    algo: Literal["ppo", "sac"] = "ppo"
    total_timesteps: int = field(default=200_000, metadata=_range(1))
    num_envs: int = field(default=8, metadata=_range(1, 65536))
    net_arch: list[int] = field(default_factory=lambda: [64, 64])
    learning_rate: float = field(default=3e-4, metadata=_range(0.0, 1.0, lo_open=True))
    gamma: float = field(default=0.99, metadata=_range(0.0, 1.0))
    # PPO
    n_steps: int = field(default=256, metadata=_range(1))
    batch_size: int = field(default=256, metadata=_range(1))
    n_epochs: int = field(default=10, metadata=_range(1))
    gae_lambda: float = field(default=0.95, metadata=_range(0.0, 1.0))
    clip_range: float = field(default=0.2, metadata=_range(0.0, 1.0, lo_open=True))
    ent_coef: float = field(default=0.0, metadata=_range(0.0))
    log_std_init: float = field(default=0.0, metadata=_range(-10.0, 2.0))
    # the action noise's standard deviation to restart from when training resumes or starts from a teacher: a
    # converged PPO policy's noise can shrink to a few hundredths and stop exploring (docs/RESULTS.md, the Go1)
    action_std: Optional[float] = field(default=None, metadata=_range(0.0, 10.0, lo_open=True))
    # SAC
    buffer_size: int = field(default=300_000, metadata=_range(1))
    learning_starts: int = field(default=1000, metadata=_range(0))
    # observation / reward normalization (VecNormalize); the statistics travel with the teacher
    normalize_obs: bool = True
    normalize_reward: bool = True
    checkpoint_every: int = field(default=50_000, metadata=_range(1))
    # PPO's updates under bfloat16 autocast (weights, Adam and the rollouts stay float32); "auto": where native
    update_precision: Literal["auto", "float32", "bfloat16"] = "float32"
    # where SB3's networks and updates run; "auto": the environment's device (a GPU under mjx/warp on a GPU)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_minutes: Optional[float] = field(default=None, metadata=_range(0.0, lo_open=True))  # a wall-clock time box


@dataclass(frozen=True)
class StudentConfig:
    """The proprioceptive student: an encoder over its history plus a Gaussian head."""

    encoder: str = "mlp"  # a registered encoder (robodistill/student.py: register_encoder): mlp, tcn, gru, lstm, ...
    # window of the mlp and tcn encoders; 16 and [256, 256] (the hopper's) took gymnasium's Walker2d, which no
    # config tuned, from 0.57 to 0.97 (docs/RESULTS.md)
    history: int = field(default=16, metadata=_range(1, 1024))
    hidden: list[int] = field(default_factory=lambda: [256, 256])
    activation: Literal["elu", "relu", "tanh"] = "elu"
    init_log_std: float = field(default=-1.0, metadata=_range(-10.0, 2.0))
    tcn_channels: int = field(default=32, metadata=_range(1))
    rnn_hidden: int = field(default=64, metadata=_range(1))
    rnn_layers: int = field(default=1, metadata=_range(1, 8))
    bptt_length: int = field(default=20, metadata=_range(1))  # truncated BPTT of the recurrent encoders
    # options of a registered encoder that has no key above, by its Options' field names (checked against them)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BetaConfig:
    """Probability that the teacher's action is executed, per environment and step, per iteration."""

    schedule: Literal["constant", "linear", "exponential"] = "linear"
    start: float = field(default=1.0, metadata=_range(0.0, 1.0))
    end: float = field(default=0.0, metadata=_range(0.0, 1.0))
    decay_iterations: int = field(default=5, metadata=_range(1))
    rate: float = field(default=0.5, metadata=_range(0.0, 1.0))  # exponential: beta_k = start * rate**k


@dataclass(frozen=True)
class DistillConfig:
    """The DAgger loop: collection, aggregation, supervised updates and paired evaluation."""

    num_envs: int = field(default=64, metadata=_range(1, 65536))
    steps_per_iteration: int = field(default=100, metadata=_range(1))
    iterations: int = field(default=100, metadata=_range(1))  # at most: ``patience`` ends a run on its plateau
    beta: BetaConfig = field(default_factory=BetaConfig)
    buffer_capacity: int = field(default=200_000, metadata=_range(1))
    buffer_mode: Literal["fifo", "reservoir", "on_policy"] = "fifo"
    loss: Literal["mse", "huber", "nll", "forward_kl", "reverse_kl"] = "mse"
    huber_delta: float = field(default=1.0, metadata=_range(0.0, lo_open=True))
    value_loss_coef: float = field(default=0.0, metadata=_range(0.0))  # auxiliary regression of the teacher's value
    exploration: Literal["none", "fixed", "student"] = "none"  # noise on the student's action while collecting
    exploration_std: float = field(default=0.1, metadata=_range(0.0))
    learning_rate: float = field(default=1e-3, metadata=_range(0.0, 1.0, lo_open=True))
    updates_per_iteration: int = field(default=200, metadata=_range(1))
    batch_size: int = field(default=512, metadata=_range(1))
    max_grad_norm: float = field(default=1.0, metadata=_range(0.0, lo_open=True))
    # the updates' forward and backward passes; "auto" takes bfloat16 where the hardware computes it natively
    # (CPUs with AVX512-BF16 or AMX, CUDA GPUs that support it), float32 elsewhere; weights, Adam and the exported
    # student stay float32
    update_precision: Literal["auto", "float32", "bfloat16"] = "auto"
    eval_episodes: int = field(default=50, metadata=_range(1))
    eval_seed: int = field(default=1_000_003, metadata=_range(0))
    eval_every: int = field(default=1, metadata=_range(1))
    target_score: Optional[float] = None  # stop once the selection score (below) reaches it
    # which student ships: "best" on validation episodes (their own seed, apart from the held-out ones, so the
    # reported score stays unbiased), or the "last" iteration's
    select: Literal["best", "last"] = "best"
    validation_episodes: Optional[int] = field(default=None, metadata=_range(1))  # default: eval_episodes
    validation_seed: int = field(default=2_000_003, metadata=_range(0))
    # stop after this many evaluations without a better validation score (None: run every iteration)
    patience: Optional[int] = field(default=10, metadata=_range(1))
    # label with the executed (clipped to [-1, 1]) teacher action: PPO means can saturate far outside the range,
    # and regressing those raw values spends the loss where every value acts alike
    clip_labels: bool = True


@dataclass(frozen=True)
class ExportConfig:
    """ONNX export of the student and its parity check."""

    opset: int = field(default=17, metadata=_range(17, 30))
    parity_steps: int = field(default=1000, metadata=_range(1))
    parity_envs: int = field(default=4, metadata=_range(1))
    max_abs_diff: float = field(default=1e-5, metadata=_range(0.0, lo_open=True))


@dataclass(frozen=True)
class Config:
    """The whole resolved configuration of a run."""

    seed: int = field(default=0, metadata=_range(0))
    task: TaskConfig = field(default_factory=TaskConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict, as saved to ``config.yaml``."""
        return dataclasses.asdict(self)

    def hash(self) -> str:
        """Short stable hash of the resolved config (goes into the ONNX metadata)."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def replace(self, **sections: Any) -> "Config":
        """A copy with whole sections replaced."""
        return dataclasses.replace(self, **sections)


# ---------------------------------------------------------------------------------------------------------
# validation


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return f"mapping of {_type_name(typing.get_args(tp)[1])}"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and return it in canonical form."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value  # checked later, by what declares it (an encoder's options)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a section (mapping), got {value!r}")
        return _build(tp, value, where)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            hint = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, choices))}{extra}")
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
        _, val_tp = typing.get_args(tp)
        return {str(k): _coerce(v, val_tp, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _YAML11_EXPONENT.fullmatch(value.strip()):
            return float(value)  # YAML 1.1 (PyYAML) reads 1e-4 as a string: it needs a dot, 1.0e-4
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config annotation {tp!r} at {where}")


def _check_range(value: Any, meta: dict[str, Any], where: str) -> None:
    if value is None or "lo" not in meta:
        return
    lo, hi, lo_open = meta["lo"], meta["hi"], meta["lo_open"]
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise ConfigError(f"{where}: must be {'>' if lo_open else '>='} {lo}, got {value!r}")
    if hi is not None and value > hi:
        raise ConfigError(f"{where}: must be <= {hi}, got {value!r}")


def _build(cls: type, raw: dict[str, Any], where: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            path = f"{where}.{key}" if where else str(key)
            hint = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.5)
            extra = f" (did you mean {hint[0]!r}?)" if hint else f" (valid keys: {', '.join(fields)})"
            raise ConfigError(f"unknown key {path!r}{extra}")
    kwargs = {}
    for name, f in fields.items():
        if name not in raw:
            continue
        path = f"{where}.{name}" if where else name
        value = _coerce(raw[name], hints[name], path)
        _check_range(value, dict(f.metadata), path)
        kwargs[name] = value
    return cls(**kwargs)


def build_section(cls: type, raw: dict[str, Any], where: str) -> Any:
    """``raw`` validated into the dataclass ``cls`` as config sections are (unknown keys, types, ranges)."""
    return _build(cls, raw, where)


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key.path=value")
    key, _, value_text = text.partition("=")
    path = [p for p in key.strip().split(".")]
    if not all(path):
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(value_text) if value_text.strip() else None
    except yaml.YAMLError:
        value = value_text
    return path, value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with each ``a.b.c=value`` override set (values parsed as YAML scalars)."""
    import copy

    out = copy.deepcopy(raw)
    for text in overrides:
        path, value = _parse_override(text)
        node = out
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {part!r} is not a section")
            node = child
        node[path[-1]] = value
    return out


def config_from_dict(raw: dict[str, Any], overrides: list[str] | None = None) -> Config:
    """Validate a nested dict (plus overrides) into a frozen :class:`Config`."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("config must be a mapping of sections (task, env, teacher, student, distill, export)")
    cfg = _build(Config, apply_overrides(raw, list(overrides or [])))
    from robodistill.tasks import get_task_class  # late import: tasks import nothing from here at import time

    from robodistill.sim.registry import backend_names

    if cfg.env.backend not in backend_names():
        raise ConfigError(f"env.backend: unknown backend {cfg.env.backend!r}; registered: {', '.join(backend_names())}")
    task_cls = get_task_class(cfg.task)
    task_cls.validate_randomization(cfg.env.randomization)
    task_cls.validate_reward_scales(cfg.task.reward_scales)
    task_cls.validate_reward_params(cfg.task.reward_params)
    from robodistill.student import ENCODERS, encoder_options

    if cfg.student.encoder not in ENCODERS:
        raise ConfigError(f"student.encoder: unknown encoder {cfg.student.encoder!r}; registered: "
                          f"{', '.join(sorted(ENCODERS))}")
    encoder_options(cfg.student)
    if ENCODERS[cfg.student.encoder].recurrent and cfg.distill.steps_per_iteration % cfg.student.bptt_length:
        raise ConfigError(f"distill.steps_per_iteration ({cfg.distill.steps_per_iteration}) must be a multiple of "
                          f"student.bptt_length ({cfg.student.bptt_length}) for a recurrent student")
    if cfg.teacher.algo == "sac" and cfg.teacher.update_precision == "bfloat16":
        raise ConfigError("teacher.update_precision=bfloat16 is measured for PPO only; SAC trains in float32")
    if cfg.teacher.algo == "sac" and cfg.teacher.action_std is not None:
        raise ConfigError("teacher.action_std is PPO's state-independent action noise; SAC's depends on the state")
    return cfg


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> Any:
    """The YAML mapping of ``path``; a top-level ``base: FILE`` (relative to ``path``) is read first and this file's
    keys are merged onto it, section by section."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}" + (f" (the base of {seen[-1]})" if seen else ""))
    if path.resolve() in seen:
        raise ConfigError(f"{path}: its base chain loops back to itself")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: broken YAML{where}: {problem}") from None
    if not isinstance(raw, dict) or "base" not in raw:
        return raw
    base_name = raw.pop("base")
    if not isinstance(base_name, str):
        raise ConfigError(f"{path}: base must be a file name, got {base_name!r}")
    return _merge(_read_yaml(path.parent / base_name, (*seen, path.resolve())), raw)


def _merge(base: Any, top: Any) -> Any:
    """``top`` over ``base``: mappings merge key by key, anything else in ``top`` replaces."""
    if not isinstance(base, dict) or not isinstance(top, dict):
        return top
    return {**base, **{k: _merge(base.get(k), v) for k, v in top.items()}}


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Load, override and validate a YAML config file; raises :class:`ConfigError` with one readable line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    raw = _read_yaml(path)
    try:
        cfg = config_from_dict(raw, overrides)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if cfg.task.mjcf is not None:
        mjcf = Path(cfg.task.mjcf)
        if not mjcf.is_absolute():
            mjcf = (path.parent / mjcf).resolve()
            if not mjcf.is_file():  # relative to the working directory as a fallback
                mjcf = Path(cfg.task.mjcf).resolve()
        cfg = cfg.replace(task=dataclasses.replace(cfg.task, mjcf=str(mjcf)))
    return cfg


def save_config(cfg: Config, path: Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    from robodistill.runs import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))

"""The proprioceptive student: one interface for every architecture (docs/design.md decision 5).

``initial_state(B)`` gives the state at an episode start and ``step(obs, state) -> (dist, state)`` consumes the
newest raw proprio observation. Windowed encoders (MLP, TCN) keep the last H raw observations as their state;
recurrent encoders (GRU, LSTM) keep their hidden state. Normalization lives inside the module, so the exported
graph takes raw sensor values. Training unrolls the same ``step`` over stored sequences (``unroll``), which is
truncated backpropagation through time for the recurrent encoders and a single step for the windowed ones.

Encoders are found by name (:func:`register_encoder`); each declares its options as a dataclass, and a
:class:`StudentSpec` (sizes, head, encoder name and options) rebuilds a student and is saved beside its weights.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torch.distributions import Normal

from robodistill.config import build_section
from robodistill.errors import ConfigError, UsageError
from robodistill.networks import ACTIVATIONS, mlp
from robodistill.runs import atomic_torch_save, load_plain

STUDENT_FORMAT = "robodistill-student-1"
# the options every encoder had in the flat spec of files written before encoders were registered
LEGACY_OPTION_KEYS = ("history", "tcn_channels", "rnn_hidden", "rnn_layers")


@dataclass(frozen=True)
class StudentSpec:
    """What rebuilds a student: task, sizes, head, and the named encoder with its options (an instance of the
    encoder's ``Options``; a mapping is validated into one). Saved as the plain data of :meth:`to_dict`."""

    task: str
    encoder: str
    obs_dim: int
    action_dim: int
    hidden: tuple[int, ...]
    activation: str
    init_log_std: float
    action_offset: tuple[float, ...]
    action_scale: tuple[float, ...]
    options: Any = None  # the encoder's Options; None or a mapping is validated into one

    def __post_init__(self) -> None:
        options_cls = encoder_class(self.encoder).Options
        options = self.options
        if options is None or isinstance(options, Mapping):
            options = build_section(options_cls, dict(options or {}), f"student {self.encoder} options")
        elif not isinstance(options, options_cls):
            raise TypeError(f"options of encoder {self.encoder!r} must be {options_cls.__qualname__}, "
                            f"got {type(options).__qualname__}")
        for name, value in (("obs_dim", int(self.obs_dim)), ("action_dim", int(self.action_dim)),
                            ("hidden", tuple(int(v) for v in self.hidden)), ("init_log_std", float(self.init_log_std)),
                            ("action_offset", tuple(float(v) for v in self.action_offset)),
                            ("action_scale", tuple(float(v) for v in self.action_scale)), ("options", options)):
            object.__setattr__(self, name, value)  # canonical plain types, so to_dict() is plain data

    def to_dict(self) -> dict[str, Any]:
        """Flat plain data (str, int, float, bool, list), as saved in student.pt and checkpoint.pt."""
        return {"task": self.task, "encoder": self.encoder, "obs_dim": self.obs_dim, "action_dim": self.action_dim,
                "hidden": list(self.hidden), "activation": self.activation, "init_log_std": self.init_log_std,
                "action_offset": list(self.action_offset), "action_scale": list(self.action_scale),
                **dataclasses.asdict(self.options)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "StudentSpec":
        """The spec :meth:`to_dict` wrote, or the flat dict of an older file (every encoder's options in it, no
        encoder meaning ``mlp``); anything that does not describe a student is a ``ValueError``."""
        data = dict(data)
        encoder = data.pop("encoder", "mlp")
        try:
            option_names = [f.name for f in dataclasses.fields(encoder_class(encoder).Options)]
            base = {f.name: data.pop(f.name) for f in dataclasses.fields(cls)
                    if f.name in data and f.name != "options"}
            options = {k: data.pop(k) for k in option_names if k in data}
            for key in LEGACY_OPTION_KEYS:  # other encoders' options in an older file
                data.pop(key, None)
            if data:
                raise ValueError(f"unknown student spec keys {sorted(data)}")
            return cls(encoder=encoder, options=options, **base)
        except (UsageError, TypeError) as exc:
            raise ValueError(str(exc)) from None

    def mismatch(self, other: "StudentSpec") -> tuple[str, Any, Any] | None:
        """The first part of the architecture (encoder, sizes, activation, options) where ``other`` differs:
        ``(name, this spec's value, other's value)``; None where the same weights fit both."""
        if self.encoder != other.encoder:
            return "encoder", self.encoder, other.encoder
        mine, theirs = self.to_dict(), other.to_dict()
        keys = ["obs_dim", "action_dim", "hidden", "activation", *(f.name for f in dataclasses.fields(self.options))]
        return next(((k, mine[k], theirs[k]) for k in keys if mine[k] != theirs[k]), None)


class RunningNorm(nn.Module):
    """Running mean and variance of observations (Chan et al. parallel update), applied as a fixed affine map."""

    def __init__(self, dim: int, clip: float = 10.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("var", torch.ones(dim))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.clip, self.eps = clip, eps

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Fold a batch ``[N, D]`` into the statistics."""
        x = x.reshape(-1, self.mean.shape[0]).double()
        self.merge(x.shape[0], x.mean(0), x.var(0, unbiased=False))

    @torch.no_grad()
    def merge(self, n: float, b_mean: torch.Tensor, b_var: torch.Tensor) -> None:
        """Fold in the statistics of ``n`` samples with mean ``b_mean`` and (biased) variance ``b_var``."""
        if n == 0:
            return
        total = self.count + n
        delta = b_mean.double() - self.mean.double()
        new_mean = self.mean.double() + delta * n / total
        m2 = self.var.double() * self.count + b_var.double() * n + delta**2 * self.count * n / total
        self.mean.copy_(new_mean.float())
        self.var.copy_((m2 / total).float())
        self.count.copy_(total)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalized and clipped ``x`` (any leading shape, last axis ``D``)."""
        return torch.clamp((x - self.mean) / torch.sqrt(self.var + self.eps), -self.clip, self.clip)


# ---- encoders: (normalized newest obs, state) -> (features, next state) ---------------------------------


class WindowEncoder(nn.Module):
    """Base of encoders whose state is the window of the last H raw observations ``[B, H, Dp]``."""

    recurrent: ClassVar[bool] = False

    def __init__(self, spec: StudentSpec, history: int) -> None:
        super().__init__()
        self.obs_dim, self.history = spec.obs_dim, history
        self.state_shape: tuple[int, ...] = (self.history, self.obs_dim)

    def step(self, obs: torch.Tensor, state: torch.Tensor, norm: RunningNorm) -> tuple[torch.Tensor, torch.Tensor]:
        """Append ``obs [B, Dp]`` to the window and encode the normalized window."""
        window = torch.cat([state[:, 1:], obs.unsqueeze(1)], dim=1)  # [B, H, Dp]
        return self.encode(norm(window)), window

    def encode(self, window: torch.Tensor) -> torch.Tensor:
        """Features ``[B, F]`` of a normalized window ``[B, H, Dp]``."""
        raise NotImplementedError


class MlpEncoder(WindowEncoder):
    """MLP over the flattened window."""

    @dataclass(frozen=True)
    class Options:
        """The window's length."""

        history: int = 8

    def __init__(self, spec: StudentSpec) -> None:
        super().__init__(spec, spec.options.history)
        self.net = mlp(self.obs_dim * self.history, list(spec.hidden), spec.activation)
        self.feature_dim = spec.hidden[-1] if spec.hidden else self.obs_dim * self.history

    def encode(self, window: torch.Tensor) -> torch.Tensor:
        """``[B, H, Dp] -> [B, F]``."""
        return self.net(window.flatten(1))


class TcnEncoder(WindowEncoder):
    """Causal dilated 1-D convolutions over the window (Lee et al. 2020's TCN student), then an MLP."""

    @dataclass(frozen=True)
    class Options:
        """The window's length and the convolutions' channels."""

        history: int = 8
        tcn_channels: int = 32

    def __init__(self, spec: StudentSpec) -> None:
        super().__init__(spec, spec.options.history)
        channels, act = spec.options.tcn_channels, ACTIVATIONS[spec.activation]
        layers: list[nn.Module] = []
        inp, dilation, length = self.obs_dim, 1, self.history
        while True:  # stack kernel-3 convolutions until the receptive field covers the window
            layers += [nn.ConstantPad1d((2 * dilation, 0), 0.0), nn.Conv1d(inp, channels, 3, dilation=dilation),
                       act()]
            inp = channels
            if 1 + 2 * (2 * dilation - 1) >= length or dilation >= 64:
                break
            dilation *= 2
        self.conv = nn.Sequential(*layers)
        self.head = mlp(channels, list(spec.hidden), spec.activation)
        self.feature_dim = spec.hidden[-1] if spec.hidden else channels

    def encode(self, window: torch.Tensor) -> torch.Tensor:
        """``[B, H, Dp] -> [B, F]``: causal convolutions, features of the newest step."""
        x = self.conv(window.transpose(1, 2))  # [B, C, H]
        return self.head(x[:, :, -1])


class RecurrentEncoder(nn.Module):
    """GRU or LSTM over the normalized observation stream; state ``[B, layers * k, hidden]`` (k = 2 for LSTM)."""

    recurrent: ClassVar[bool] = True
    cell: ClassVar[str]

    @dataclass(frozen=True)
    class Options:
        """The recurrent layers' width and depth."""

        rnn_hidden: int = 64
        rnn_layers: int = 1

    def __init__(self, spec: StudentSpec) -> None:
        super().__init__()
        self.obs_dim = spec.obs_dim
        self.hidden_size, self.layers = spec.options.rnn_hidden, spec.options.rnn_layers
        rnn_cls = nn.GRU if self.cell == "gru" else nn.LSTM
        self.rnn = rnn_cls(self.obs_dim, self.hidden_size, self.layers, batch_first=True)
        k = 2 if self.cell == "lstm" else 1
        self.state_shape = (self.layers * k, self.hidden_size)
        self.head = mlp(self.hidden_size, list(spec.hidden), spec.activation)
        self.feature_dim = spec.hidden[-1] if spec.hidden else self.hidden_size

    def step(self, obs: torch.Tensor, state: torch.Tensor, norm: RunningNorm) -> tuple[torch.Tensor, torch.Tensor]:
        """One recurrent step on ``obs [B, Dp]`` from hidden ``state``."""
        hidden = state.transpose(0, 1).contiguous()  # [layers * k, B, H]
        x = norm(obs).unsqueeze(1)  # [B, 1, Dp]
        if self.cell == "lstm":
            h, c = hidden[: self.layers], hidden[self.layers:]
            out, (h, c) = self.rnn(x, (h, c))
            new = torch.cat([h, c], dim=0)
        else:
            out, new = self.rnn(x, hidden)
        return self.head(out[:, 0]), new.transpose(0, 1)


class GruEncoder(RecurrentEncoder):
    """A GRU over the observation stream."""

    cell = "gru"


class LstmEncoder(RecurrentEncoder):
    """An LSTM over the observation stream; its state stacks h and c."""

    cell = "lstm"


# ---- the registry ---------------------------------------------------------------------------------------

ENCODERS: dict[str, type[nn.Module]] = {}
_SPEC_KEYS = frozenset(f.name for f in dataclasses.fields(StudentSpec))


def register_encoder(name: str, cls: type[nn.Module]) -> None:
    """Make ``cls`` available as ``student.encoder: NAME``.

    The class declares ``Options`` (a dataclass whose fields have defaults; the config sets them from the
    student keys of the same name, or from ``student.options``) and ``recurrent`` (a bool); it is built as
    ``cls(spec)`` from a :class:`StudentSpec` and provides ``state_shape``, ``feature_dim``, ``history`` (if
    not recurrent) and ``step(obs, state, norm) -> (features, next_state)``.
    """
    if not name or not isinstance(name, str):
        raise ValueError(f"an encoder name must be a non-empty string, got {name!r}")
    options = getattr(cls, "Options", None)
    if not (isinstance(options, type) and dataclasses.is_dataclass(options)):
        raise TypeError(f"encoder {name!r}: {cls.__qualname__}.Options must be a dataclass of its options")
    if not isinstance(getattr(cls, "recurrent", None), bool):
        raise TypeError(f"encoder {name!r}: {cls.__qualname__}.recurrent must be True or False")
    clash = sorted(_SPEC_KEYS & {f.name for f in dataclasses.fields(options)})
    if clash:
        raise ValueError(f"encoder {name!r}: options {clash} clash with the student spec's own fields")
    ENCODERS[name] = cls


def encoder_class(name: str) -> type[nn.Module]:
    """The encoder class registered as ``name``; an unknown name is a :class:`UsageError` naming the others."""
    if name not in ENCODERS:
        raise UsageError(f"unknown student encoder {name!r}; registered: {', '.join(sorted(ENCODERS))}")
    return ENCODERS[name]


for _name, _cls in (("mlp", MlpEncoder), ("tcn", TcnEncoder), ("gru", GruEncoder), ("lstm", LstmEncoder)):
    register_encoder(_name, _cls)


class Student(nn.Module):
    """Observation normalizer + encoder + Gaussian action head (state-independent std) + optional value head."""

    def __init__(self, spec: StudentSpec) -> None:
        super().__init__()
        self.spec = spec
        self.obs_dim, self.action_dim = spec.obs_dim, spec.action_dim
        self.normalizer = RunningNorm(self.obs_dim)
        self.encoder = encoder_class(spec.encoder)(spec)
        self.mean_head = nn.Linear(self.encoder.feature_dim, self.action_dim)
        self.log_std = nn.Parameter(torch.full((self.action_dim,), spec.init_log_std))
        self.value_head = nn.Linear(self.encoder.feature_dim, 1)
        self.register_buffer("action_offset", torch.as_tensor(spec.action_offset, dtype=torch.float32))
        self.register_buffer("action_scale", torch.as_tensor(spec.action_scale, dtype=torch.float32))

    @property
    def recurrent(self) -> bool:
        """Whether the state is a recurrent hidden state (trained by truncated BPTT)."""
        return self.encoder.recurrent

    @property
    def history(self) -> int:
        """Observations in the window (1 for recurrent encoders, whose memory is the hidden state)."""
        return 1 if self.recurrent else self.encoder.history

    @property
    def state_shape(self) -> tuple[int, ...]:
        """Shape of one environment's state."""
        return tuple(self.encoder.state_shape)

    def initial_state(self, batch: int) -> torch.Tensor:
        """All-zero state ``[B, *state_shape]`` at an episode start."""
        return torch.zeros(batch, *self.state_shape, device=self.log_std.device)

    def reset_state(self, state: torch.Tensor, done: torch.Tensor) -> torch.Tensor:
        """``state`` with the environments flagged in ``done [B]`` back at their initial state."""
        return state.masked_fill(done.view(-1, *([1] * (state.dim() - 1))), 0.0)

    def forward(self, obs: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                         torch.Tensor]:
        """One step: ``(mean [B, A], std [B, A], value [B], next_state)`` in [-1, 1] action units."""
        features, next_state = self.encoder.step(obs, state, self.normalizer)
        mean = self.mean_head(features)
        return mean, torch.exp(self.log_std).expand_as(mean), self.value_head(features).squeeze(-1), next_state

    def step(self, obs: torch.Tensor, state: torch.Tensor) -> tuple[Normal, torch.Tensor]:
        """Consume the newest raw observation ``[B, Dp]``: ``(action distribution, next state)``."""
        mean, std, _, next_state = self.forward(obs, state)
        return Normal(mean, std), next_state

    def unroll(self, obs: torch.Tensor, state: torch.Tensor, starts: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Run ``step`` over sequences ``obs [N, L, Dp]`` from ``state``; ``starts [N, L]`` resets the state first.

        Returns ``mean [N, L, A]``, ``std [N, L, A]``, ``value [N, L]``; gradients flow through the whole
        sequence (truncated BPTT of length L) but never across an episode start.
        """
        means, stds, values = [], [], []
        for t in range(obs.shape[1]):
            state = self.reset_state(state, starts[:, t])
            mean, std, value, state = self.forward(obs[:, t], state)
            means.append(mean)
            stds.append(std)
            values.append(value)
        return torch.stack(means, 1), torch.stack(stds, 1), torch.stack(values, 1)

    def act(self, obs: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Deterministic action in [-1, 1] (clipped mean) and the next state."""
        mean, _, _, next_state = self.forward(obs, state)
        return torch.clamp(mean, -1.0, 1.0), next_state

    def deploy(self, obs: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The exported graph: raw observation and state in; actuator-unit action and next state out."""
        action, next_state = self.act(obs, state)
        return self.action_offset + self.action_scale * action, next_state

    def save(self, path: Path, **extra: Any) -> None:
        """Atomically save weights beside the spec that rebuilds them."""
        atomic_torch_save({"format": STUDENT_FORMAT, "spec": self.spec.to_dict(), "state_dict": self.state_dict(),
                           **extra}, Path(path))


def build_student(spec: StudentSpec) -> Student:
    """A fresh student from its spec."""
    return Student(spec)


def encoder_options(sc: Any) -> Any:
    """The ``Options`` of the encoder ``sc.encoder`` as the student config ``sc`` sets them: from its keys of the
    same name (history, tcn_channels, rnn_hidden, rnn_layers) and from ``sc.options``; a ConfigError if they
    do not fit."""
    options_cls = encoder_class(sc.encoder).Options
    own = {f.name for f in dataclasses.fields(sc)} - {"options"}
    named = {f.name: getattr(sc, f.name) for f in dataclasses.fields(options_cls) if f.name in own}
    twice = sorted(set(sc.options) & own)
    if twice:
        raise ConfigError(f"student.options.{twice[0]}: set it as student.{twice[0]}")
    return build_section(options_cls, {**named, **sc.options}, "student.options")


def student_spec(cfg: Any, obs_dim: int, action_dim: int, action_offset: Any, action_scale: Any,
                 task: str) -> StudentSpec:
    """The spec of a student as the config describes it, for a task of the given sizes."""
    sc = cfg.student
    return StudentSpec(task=task, encoder=sc.encoder, obs_dim=obs_dim, action_dim=action_dim, hidden=sc.hidden,
                       activation=sc.activation, init_log_std=sc.init_log_std, action_offset=action_offset,
                       action_scale=action_scale, options=encoder_options(sc))


def load_student(path: str | Path) -> Student:
    """Load a student file; an unreadable or foreign file is a :class:`UsageError`."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"student file not found: {path}")
    try:
        blob = load_plain(path, "student")  # tensors and plain data only: a shared file cannot run code
        if not isinstance(blob, dict) or blob.get("format") != STUDENT_FORMAT:
            raise ValueError("not a robodistill student file")
        student = build_student(StudentSpec.from_dict(blob["spec"]))
        student.load_state_dict(blob["state_dict"])
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input problem
        raise UsageError(f"cannot load student {path}: {str(exc).splitlines()[0] if str(exc) else exc}") from None
    return student.eval()

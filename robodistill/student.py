"""The proprioceptive student: one interface for every architecture (docs/design.md decision 5).

``initial_state(B)`` gives the state at an episode start and ``step(obs, state) -> (dist, state)`` consumes the
newest raw proprio observation. Windowed encoders (MLP, TCN) keep the last H raw observations as their state;
recurrent encoders (GRU, LSTM) keep their hidden state. Normalization lives inside the module, so the exported
graph takes raw sensor values. Training unrolls the same ``step`` over stored sequences (``unroll``), which is
truncated backpropagation through time for the recurrent encoders and a single step for the windowed ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.distributions import Normal

from robodistill.errors import UsageError
from robodistill.networks import ACTIVATIONS, mlp
from robodistill.runs import atomic_torch_save, load_plain

STUDENT_FORMAT = "robodistill-student-1"
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

    recurrent = False

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()
        self.obs_dim, self.history = spec["obs_dim"], spec["history"]
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

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)
        self.net = mlp(self.obs_dim * self.history, list(spec["hidden"]), spec["activation"])
        self.feature_dim = spec["hidden"][-1] if spec["hidden"] else self.obs_dim * self.history

    def encode(self, window: torch.Tensor) -> torch.Tensor:
        """``[B, H, Dp] -> [B, F]``."""
        return self.net(window.flatten(1))


class TcnEncoder(WindowEncoder):
    """Causal dilated 1-D convolutions over the window (Lee et al. 2020's TCN student), then an MLP."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)
        channels, act = int(spec.get("tcn_channels", 32)), ACTIVATIONS[spec["activation"]]
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
        self.head = mlp(channels, list(spec["hidden"]), spec["activation"])
        self.feature_dim = spec["hidden"][-1] if spec["hidden"] else channels

    def encode(self, window: torch.Tensor) -> torch.Tensor:
        """``[B, H, Dp] -> [B, F]``: causal convolutions, features of the newest step."""
        x = self.conv(window.transpose(1, 2))  # [B, C, H]
        return self.head(x[:, :, -1])


class RecurrentEncoder(nn.Module):
    """GRU or LSTM over the normalized observation stream; state ``[B, layers * k, hidden]`` (k = 2 for LSTM)."""

    recurrent = True

    def __init__(self, spec: dict[str, Any], cell: str) -> None:
        super().__init__()
        self.obs_dim, self.cell = spec["obs_dim"], cell
        self.hidden_size, self.layers = int(spec.get("rnn_hidden", 64)), int(spec.get("rnn_layers", 1))
        rnn_cls = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn_cls(self.obs_dim, self.hidden_size, self.layers, batch_first=True)
        k = 2 if cell == "lstm" else 1
        self.state_shape = (self.layers * k, self.hidden_size)
        self.head = mlp(self.hidden_size, list(spec["hidden"]), spec["activation"])
        self.feature_dim = spec["hidden"][-1] if spec["hidden"] else self.hidden_size

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


ENCODERS: dict[str, Any] = {
    "mlp": MlpEncoder,
    "tcn": TcnEncoder,
    "gru": lambda spec: RecurrentEncoder(spec, "gru"),
    "lstm": lambda spec: RecurrentEncoder(spec, "lstm"),
}


class Student(nn.Module):
    """Observation normalizer + encoder + Gaussian action head (state-independent std) + optional value head."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()
        self.spec = dict(spec)
        self.obs_dim, self.action_dim = spec["obs_dim"], spec["action_dim"]
        self.normalizer = RunningNorm(self.obs_dim)
        self.encoder = ENCODERS[spec.get("encoder", "mlp")](spec)
        self.mean_head = nn.Linear(self.encoder.feature_dim, self.action_dim)
        self.log_std = nn.Parameter(torch.full((self.action_dim,), float(spec["init_log_std"])))
        self.value_head = nn.Linear(self.encoder.feature_dim, 1)
        self.register_buffer("action_offset", torch.as_tensor(spec["action_offset"], dtype=torch.float32))
        self.register_buffer("action_scale", torch.as_tensor(spec["action_scale"], dtype=torch.float32))

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
        atomic_torch_save({"format": STUDENT_FORMAT, "spec": self.spec, "state_dict": self.state_dict(), **extra},
                          Path(path))


def build_student(encoder: str, spec: dict[str, Any]) -> Student:
    """A fresh student with the named encoder."""
    if encoder not in ENCODERS:
        raise UsageError(f"unknown student encoder {encoder!r}; choose one of {', '.join(ENCODERS)}")
    return Student({**spec, "encoder": encoder})


def student_spec(cfg: Any, obs_dim: int, action_dim: int, action_offset: Any, action_scale: Any,
                 task: str) -> dict[str, Any]:
    """The spec of a student as the config describes it, for a task of the given sizes."""
    sc = cfg.student
    return {"task": task, "encoder": sc.encoder, "obs_dim": obs_dim, "action_dim": action_dim,
            "history": sc.history, "hidden": list(sc.hidden), "activation": sc.activation,
            "init_log_std": sc.init_log_std, "tcn_channels": sc.tcn_channels, "rnn_hidden": sc.rnn_hidden,
            "rnn_layers": sc.rnn_layers,
            "action_offset": [float(v) for v in action_offset], "action_scale": [float(v) for v in action_scale]}


def load_student(path: str | Path) -> Student:
    """Load a student file; an unreadable or foreign file is a :class:`UsageError`."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"student file not found: {path}")
    try:
        blob = load_plain(path, "student")  # tensors and plain data only: a shared file cannot run code
        if not isinstance(blob, dict) or blob.get("format") != STUDENT_FORMAT:
            raise ValueError("not a robodistill student file")
        student = build_student(blob["spec"].get("encoder", "mlp"), blob["spec"])
        student.load_state_dict(blob["state_dict"])
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input problem
        raise UsageError(f"cannot load student {path}: {str(exc).splitlines()[0] if str(exc) else exc}") from None
    return student.eval()

"""The proprioceptive student: one interface for every architecture (DESIGN.md decision 5).

``initial_state(B)`` gives the state at an episode start and ``step(obs, state) -> (dist, state)`` consumes the
newest raw proprio observation. A windowed encoder's state is the last H raw observations; normalization lives
inside the module, so the exported graph takes raw sensor values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.distributions import Normal

from robodistill.errors import UsageError
from robodistill.runs import atomic_torch_save

STUDENT_FORMAT = "robodistill-student-1"
ACTIVATIONS: dict[str, type[nn.Module]] = {"elu": nn.ELU, "relu": nn.ReLU, "tanh": nn.Tanh}


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
        n = x.shape[0]
        if n == 0:
            return
        b_mean, b_var = x.mean(0), x.var(0, unbiased=False)
        total = self.count + n
        delta = b_mean - self.mean.double()
        new_mean = self.mean.double() + delta * n / total
        m2 = self.var.double() * self.count + b_var * n + delta**2 * self.count * n / total
        self.mean.copy_(new_mean.float())
        self.var.copy_((m2 / total).float())
        self.count.copy_(total)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalized and clipped ``x`` (any leading shape, last axis ``D``)."""
        return torch.clamp((x - self.mean) / torch.sqrt(self.var + self.eps), -self.clip, self.clip)


def mlp(inp: int, hidden: list[int], out: int, activation: str) -> nn.Sequential:
    """Linear layers with ``activation`` between them."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(inp, width), ACTIVATIONS[activation]()]
        inp = width
    layers.append(nn.Linear(inp, out))
    return nn.Sequential(*layers)


class WindowMLPStudent(nn.Module):
    """MLP over the last ``history`` proprio observations, with a Gaussian head (state-independent std)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()
        self.spec = dict(spec)
        self.obs_dim, self.action_dim, self.history = spec["obs_dim"], spec["action_dim"], spec["history"]
        self.normalizer = RunningNorm(self.obs_dim)
        self.net = mlp(self.obs_dim * self.history, list(spec["hidden"]), self.action_dim, spec["activation"])
        self.log_std = nn.Parameter(torch.full((self.action_dim,), float(spec["init_log_std"])))
        self.register_buffer("action_offset", torch.as_tensor(spec["action_offset"], dtype=torch.float32))
        self.register_buffer("action_scale", torch.as_tensor(spec["action_scale"], dtype=torch.float32))

    @property
    def state_shape(self) -> tuple[int, ...]:
        """Shape of one environment's state: the window ``(H, Dp)``."""
        return (self.history, self.obs_dim)

    def initial_state(self, batch: int) -> torch.Tensor:
        """All-zero window ``[B, H, Dp]`` at an episode start."""
        return torch.zeros(batch, self.history, self.obs_dim, device=self.log_std.device)

    def reset_state(self, state: torch.Tensor, done: torch.Tensor) -> torch.Tensor:
        """``state`` with the environments flagged in ``done [B]`` back at their initial state."""
        return state.masked_fill(done.view(-1, 1, 1), 0.0)

    @staticmethod
    def push(state: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """The window after appending the newest observation: ``[B, H, Dp]``."""
        return torch.cat([state[:, 1:], obs.unsqueeze(1)], dim=1)

    def forward(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean [B, A], std [B, A])`` of the action in [-1, 1] units for raw windows ``[B, H, Dp]``."""
        x = self.normalizer(window).flatten(1)  # [B, H * Dp]
        mean = self.net(x)
        return mean, torch.exp(self.log_std).expand_as(mean)

    def step(self, obs: torch.Tensor, state: torch.Tensor) -> tuple[Normal, torch.Tensor]:
        """Consume the newest raw observation ``[B, Dp]``: ``(action distribution, next state)``."""
        window = self.push(state, obs)
        mean, std = self.forward(window)
        return Normal(mean, std), window

    def act(self, obs: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Deterministic action in [-1, 1] (clipped mean) and the next state."""
        window = self.push(state, obs)
        return torch.clamp(self.forward(window)[0], -1.0, 1.0), window

    def deploy(self, obs: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The exported graph: raw observation and state in; actuator-unit action and next state out."""
        action, window = self.act(obs, state)
        return self.action_offset + self.action_scale * action, window

    def save(self, path: Path, **extra: Any) -> None:
        """Atomically save weights beside the spec that rebuilds them."""
        atomic_torch_save({"format": STUDENT_FORMAT, "spec": self.spec, "state_dict": self.state_dict(), **extra},
                          Path(path))


STUDENTS: dict[str, type[WindowMLPStudent]] = {"mlp": WindowMLPStudent}


def build_student(encoder: str, spec: dict[str, Any]) -> WindowMLPStudent:
    """A fresh student of the named encoder."""
    return STUDENTS[encoder]({**spec, "encoder": encoder})


def student_spec(cfg: Any, obs_dim: int, action_dim: int, action_offset: Any, action_scale: Any,
                 task: str) -> dict[str, Any]:
    """The spec of a student as the config describes it, for a task of the given sizes."""
    sc = cfg.student
    return {"task": task, "obs_dim": obs_dim, "action_dim": action_dim, "history": sc.history,
            "hidden": list(sc.hidden), "activation": sc.activation, "init_log_std": sc.init_log_std,
            "action_offset": [float(v) for v in action_offset], "action_scale": [float(v) for v in action_scale]}


def load_student(path: str | Path) -> WindowMLPStudent:
    """Load a student file; an unreadable or foreign file is a :class:`UsageError`."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"student file not found: {path}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(blob, dict) or blob.get("format") != STUDENT_FORMAT:
            raise ValueError("not a robodistill student file")
        student = build_student(blob["spec"].get("encoder", "mlp"), blob["spec"])
        student.load_state_dict(blob["state_dict"])
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input problem
        raise UsageError(f"cannot load student {path}: {str(exc).splitlines()[0] if str(exc) else exc}") from None
    return student.eval()

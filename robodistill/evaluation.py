"""Paired evaluation (docs/design.md decision 7): every policy runs the same held-out episodes.

The held-out set is fixed by the evaluation seed: environment ``i`` of an evaluation batch plays the first
episode of its own seeded stream, so the randomized parameters and the initial state of episode ``i`` are the
same for the student, the teacher and the random policy. ``score = (R_student - R_random) / (R_teacher - R_random)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

if TYPE_CHECKING:
    from robodistill.config import Config
    from robodistill.env import BatchedEnv
    from robodistill.student import Student
    from robodistill.teacher import Teacher


class Policy(Protocol):
    """What evaluation drives: a batch policy that may keep per-environment state."""

    def reset(self, num_envs: int) -> None:
        """Forget all state; ``num_envs`` environments follow."""

    def act(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Action ``[B, A]`` in [-1, 1] for the current observations."""


class TeacherPolicy:
    """The teacher's deterministic action from its observation group (privileged unless told otherwise)."""

    def __init__(self, teacher: "Teacher", group: str = "privileged") -> None:
        self.teacher, self.group = teacher, group

    def reset(self, num_envs: int) -> None:
        """Stateless."""

    @torch.no_grad()
    def act(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Clipped mean of the teacher."""
        return self.teacher.act(obs[self.group])


class StudentPolicy:
    """The student's deterministic action from the proprio group, carrying its state across steps."""

    def __init__(self, student: "Student") -> None:
        self.student = student
        self.state: torch.Tensor | None = None

    def reset(self, num_envs: int) -> None:
        """Initial state for every environment."""
        self.state = self.student.initial_state(num_envs)

    @torch.no_grad()
    def act(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Clipped mean of the student; advances the state."""
        action, self.state = self.student.act(obs["proprio"], self.state)
        return action


class RandomPolicy:
    """Uniform random actions in [-1, 1] from a seeded generator."""

    def __init__(self, action_dim: int, seed: int) -> None:
        self.action_dim, self.seed = action_dim, seed
        self.gen = torch.Generator().manual_seed(seed)

    def reset(self, num_envs: int) -> None:
        """Restart the generator so every evaluation draws the same actions."""
        self.gen.manual_seed(self.seed)

    def act(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Uniform actions ``[B, A]`` (drawn on the CPU, so every device sees the same ones)."""
        batch = obs["proprio"].shape[0]
        return (torch.rand(batch, self.action_dim, generator=self.gen) * 2.0 - 1.0).to(obs["proprio"].device)


@dataclass
class EvalResult:
    """Per-episode returns of one policy on the held-out episodes, with the task's own figures."""

    returns: np.ndarray  # [N]
    lengths: np.ndarray  # [N]
    fell: np.ndarray  # [N] bool: the episode ended by termination, not by its time limit
    metrics: dict[str, float] = field(default_factory=dict)  # fall_rate plus Task.episode_metrics
    horizon_returns: np.ndarray | None = None  # [N] return of each episode's first ``horizon`` steps, if asked

    @property
    def mean(self) -> float:
        """Mean episode return."""
        return float(self.returns.mean())


def play(env: "BatchedEnv", policy: Policy, obs: dict[str, torch.Tensor], horizon: int | None = None) -> EvalResult:
    """Drive a freshly reset ``env`` with ``policy``; each environment's first episode is counted to its end (and,
    with ``horizon``, also over its first ``horizon`` control steps)."""
    policy.reset(env.num_envs)
    labels = env.layout.labels("privileged")
    columns = [labels.index(label) for label in env.task.metric_labels]
    n, device = env.num_envs, env.device
    returns = torch.zeros(n, dtype=torch.float64, device=device)
    lengths = torch.zeros(n, dtype=torch.long, device=device)
    fell = torch.zeros(n, dtype=torch.bool, device=device)
    running = torch.ones(n, dtype=torch.bool, device=device)
    trace = []  # per step [N, len(columns)], NaN once an episode has ended
    horizon_returns = None
    with env.torch_single_threaded():
        for t in range(env.episode_length):
            if t == horizon:
                horizon_returns = returns.cpu().numpy().copy()
            obs, reward, terminated, truncated, _ = env.step(policy.act(obs))
            if columns:
                values = obs["privileged"][:, columns].double()
                trace.append(torch.where(running[:, None], values, float("nan")))
            returns += torch.where(running, reward.double(), 0.0)
            lengths += running.long()
            fell |= running & terminated
            running &= ~(terminated | truncated)
            if not running.any():
                break
    traces = {}
    if columns:
        stacked = torch.stack(trace, dim=1).cpu().numpy()  # [N, T, len(columns)]
        traces = {label: stacked[:, :, k] for k, label in enumerate(env.task.metric_labels)}
    fell_np = fell.cpu().numpy()
    metrics = {"fall_rate": float(fell_np.mean()), **env.task.episode_metrics(traces, fell_np)}
    if horizon is not None and horizon_returns is None:  # every episode ended within the horizon
        horizon_returns = returns.cpu().numpy().copy()
    return EvalResult(returns.cpu().numpy(), lengths.cpu().numpy(), fell_np, metrics, horizon_returns)


def run_episodes(cfg: "Config", policy: Policy, episodes: int, seed: int) -> EvalResult:
    """Play episode ``i`` of the held-out set in environment ``i``; each is counted until its first end."""
    from robodistill.env import env_from_config

    env = env_from_config(cfg, episodes, seed=seed)
    try:
        return play(env, policy, env.reset())
    finally:
        env.close()


def normalized_score(student_return: float, teacher_return: float, random_return: float) -> float:
    """``(R_student - R_random) / (R_teacher - R_random)``; 1.0 matches the teacher."""
    gap = teacher_return - random_return
    if abs(gap) < 1e-9:
        return float("nan")
    return (student_return - random_return) / gap


class PairedEvaluator:
    """Evaluates students against a teacher and the random policy on one fixed held-out set.

    One environment serves every evaluation: it is rewound to its first episodes each time (on MJX, nothing
    is traced again). Policies must live on ``device``, the environment's.
    """

    def __init__(self, cfg: "Config", teacher: "Teacher", episodes: int | None = None,
                 seed: int | None = None) -> None:
        from robodistill.env import env_from_config

        self.episodes = episodes or cfg.distill.eval_episodes
        self.seed = cfg.distill.eval_seed if seed is None else seed
        self.env = env_from_config(cfg, self.episodes, seed=self.seed)
        self.device = self.env.device
        self.teacher_result = self.run(TeacherPolicy(teacher.to(self.device)))
        self.random_result = self.run(RandomPolicy(teacher.spec["action_dim"], self.seed))

    def run(self, policy: Policy) -> EvalResult:
        """``policy`` on the held-out episodes."""
        return play(self.env, policy, self.env.reset(rewind=True))

    def evaluate(self, policy: Policy) -> tuple[EvalResult, float]:
        """``(result, score)`` of ``policy`` on the held-out episodes."""
        result = self.run(policy)
        return result, normalized_score(result.mean, self.teacher_result.mean, self.random_result.mean)

    def close(self) -> None:
        """Release the evaluation environment."""
        self.env.close()

    def __enter__(self) -> "PairedEvaluator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

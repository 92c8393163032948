"""DAgger's math, apart from the loop that drives it: β schedules, action mixing, losses, aggregation.

Ross, Gordon and Bagnell (2011), "A Reduction of Imitation Learning and Structured Prediction to No-Regret
Online Learning": the learner drives, the expert labels every visited state, the labels are aggregated, and
the learner is fit to the aggregate. β is the probability that the expert's action is executed instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from robodistill.config import BetaConfig


def beta_at(beta: BetaConfig, iteration: int) -> float:
    """β for ``iteration`` (0-based) under a constant, linear or exponential schedule."""
    if beta.schedule == "constant":
        return beta.start
    if beta.schedule == "linear":
        frac = min(iteration / beta.decay_iterations, 1.0)
        return beta.start + frac * (beta.end - beta.start)
    return max(beta.end, beta.start * beta.rate**iteration)


def mix_actions(student_action: torch.Tensor, teacher_action: torch.Tensor, beta: float,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per environment, execute the teacher's action with probability β: ``(action [B, A], teacher_used [B])``."""
    teacher_used = torch.rand(student_action.shape[0], generator=generator) < beta  # [B]
    return torch.where(teacher_used.unsqueeze(-1), teacher_action, student_action), teacher_used


def distillation_loss(kind: str, student_mean: torch.Tensor, student_std: torch.Tensor,
                      teacher_mean: torch.Tensor, teacher_std: torch.Tensor) -> torch.Tensor:
    """Supervised loss between the student's and the teacher's action distributions ``[B, A]``."""
    if kind == "mse":
        return F.mse_loss(student_mean, teacher_mean)
    raise ValueError(f"unknown distillation loss {kind!r}")

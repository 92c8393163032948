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
    teacher_used = torch.rand(student_action.shape[0], generator=generator, device=student_action.device) < beta
    return torch.where(teacher_used.unsqueeze(-1), teacher_action, student_action), teacher_used


def gaussian_kl(mean_p: torch.Tensor, std_p: torch.Tensor, mean_q: torch.Tensor,
                std_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) of diagonal Gaussians in closed form, summed over the last axis: ``[...]``."""
    var_p, var_q = std_p**2, std_q**2
    return (torch.log(std_q / std_p) + (var_p + (mean_p - mean_q) ** 2) / (2.0 * var_q) - 0.5).sum(-1)


def distillation_loss(kind: str, student_mean: torch.Tensor, student_std: torch.Tensor,
                      teacher_mean: torch.Tensor, teacher_std: torch.Tensor, huber_delta: float = 1.0) -> torch.Tensor:
    """Supervised loss between the student's and the teacher's action distributions ``[..., A]`` (a scalar).

    ``mse``/``huber``: on the means. ``nll``: Gaussian negative log-likelihood of the teacher's mean under the
    student, offset by the teacher's own NLL of its mean so that it is 0 when the two distributions are equal
    (it trains the student's std too; it can dip below 0 when the student is sharper than the teacher).
    ``forward_kl``: KL(teacher || student), mode covering. ``reverse_kl``: KL(student || teacher), mode seeking.
    """
    if kind == "mse":
        return F.mse_loss(student_mean, teacher_mean)
    if kind == "huber":
        return F.huber_loss(student_mean, teacher_mean, delta=huber_delta)
    if kind == "nll":
        nll = 0.5 * ((teacher_mean - student_mean) / student_std) ** 2 + torch.log(student_std / teacher_std)
        return nll.sum(-1).mean()
    if kind == "forward_kl":
        return gaussian_kl(teacher_mean, teacher_std, student_mean, student_std).mean()
    if kind == "reverse_kl":
        return gaussian_kl(student_mean, student_std, teacher_mean, teacher_std).mean()
    raise ValueError(f"unknown distillation loss {kind!r}")


def exploration_action(mean: torch.Tensor, std: torch.Tensor, mode: str, fixed_std: float,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """The student's collection action in [-1, 1]: its mean, plus fixed-std or own-std Gaussian noise."""
    if mode == "none":
        return torch.clamp(mean, -1.0, 1.0)
    scale = std if mode == "student" else torch.full_like(mean, fixed_std)
    return torch.clamp(mean + scale * torch.randn(mean.shape, generator=generator, device=mean.device), -1.0, 1.0)

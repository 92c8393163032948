"""A robodistill environment as an rsl_rl ``VecEnv`` (rsl-rl-lib 5.x: Isaac Lab's and mjlab's training library).

rsl_rl's contract: ``get_observations()`` returns a ``TensorDict`` of observation groups (here ``proprio`` and
``privileged``; map them with the runner's ``obs_groups``, e.g. ``{"actor": ["proprio"], "critic":
["privileged"]}`` or ``{"student": ["proprio"], "teacher": ["privileged"]}``); ``step(actions)`` returns
``(obs, rewards, dones, extras)`` with ``extras["time_outs"]`` marking the episodes that ended by their time limit
or by leaving the arena (rsl_rl bootstraps through those), resets finished environments inside ``step`` and is
never asked to ``reset()``. ``extras["log"]`` carries the reward terms' mean shares per step. Needs
``pip install 'robodistill[rsl_rl]'``.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

from robodistill.errors import ConfigError

try:
    from rsl_rl.env import VecEnv
    from tensordict import TensorDict
except ImportError as exc:  # a one-line error that says what to install
    raise ConfigError(f"the rsl_rl adapter needs rsl-rl-lib ({exc}); install it with: "
                      "pip install 'robodistill[rsl_rl]'") from None

if TYPE_CHECKING:
    from robodistill.env import BatchedEnv

log = logging.getLogger(__name__)

GROUPS = ("proprio", "privileged")


class RslRlVecEnv(VecEnv):
    """rsl_rl's view of a :class:`~robodistill.env.BatchedEnv`: torch in and out on the environment's device.

    With ``history`` H > 1 a third group, ``proprio_history [B, H * Dp]``, holds the last H proprio observations
    (oldest first, zeros before the episode's start): the window robodistill's MLP student sees, for rsl_rl's
    memoryless MLP models.
    """

    def __init__(self, env: "BatchedEnv", cfg: dict[str, Any] | None = None, history: int = 1) -> None:
        self.env, self.history = env, history
        env.report_reward_terms = True  # logged through extras["log"]
        self.num_envs, self.num_actions = env.num_envs, env.action_dim
        self.max_episode_length = env.episode_length
        self.device = env.device
        self.cfg = cfg if cfg is not None else {"task": env.task.name}
        self.episode_length_buf = torch.zeros(self.num_envs, dtype=torch.long, device=self.device)
        self._window = torch.zeros(self.num_envs, history, env.obs_dims["proprio"], device=self.device)  # [B, H, Dp]
        self._obs = self._groups(env.reset(), torch.ones(self.num_envs, dtype=torch.bool, device=self.device))

    def _groups(self, obs: dict[str, torch.Tensor], starts: torch.Tensor) -> TensorDict:
        groups = {g: obs[g] for g in GROUPS}
        if self.history > 1:
            self._window = push_window(self._window, obs["proprio"], starts)
            groups["proprio_history"] = self._window.flatten(1)
        return TensorDict(groups, batch_size=[self.num_envs], device=self.device)

    def get_observations(self) -> TensorDict:
        """The current observation groups ``{"proprio": [B, Dp], "privileged": [B, Dq]}``."""
        return self._obs

    def step(self, actions: torch.Tensor) -> tuple[TensorDict, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """One control step of ``actions [B, A]`` (clipped to [-1, 1]); finished episodes restart at once."""
        obs, reward, terminated, truncated, info = self.env.step(actions.to(self.device, torch.float32))
        dones = terminated | truncated
        self.episode_length_buf += 1
        self.episode_length_buf[dones] = 0
        self._obs = self._groups(obs, dones)
        log = {f"/reward/{name}": value.mean() for name, value in info["reward_terms"].items()}
        return self._obs, reward, dones.long(), {"time_outs": truncated, "log": log}

    def close(self) -> None:
        """Release the environment."""
        self.env.close()


def push_window(window: torch.Tensor, obs: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
    """``window [B, H, Dp]`` with ``obs [B, Dp]`` appended (oldest dropped); a new episode (``starts [B]``)
    first clears its row, as robodistill's windowed student does."""
    window = window.masked_fill(starts.view(-1, 1, 1), 0.0)
    return torch.cat([window[:, 1:], obs.unsqueeze(1)], dim=1)


class FrozenTeacherModel(torch.nn.Module):
    """A robodistill :class:`~robodistill.teacher.Teacher` in the role of rsl_rl's teacher model: its
    deterministic action clipped to [-1, 1] (what it executes, robodistill's label) from the ``teacher`` set."""

    is_recurrent = False

    def __init__(self, obs: TensorDict, obs_groups: dict[str, list[str]], obs_set: str, output_dim: int,
                 teacher_path: str) -> None:
        super().__init__()
        from robodistill.teacher import Teacher

        self.teacher = Teacher.load(teacher_path)
        self.groups = obs_groups[obs_set]
        if self.teacher.spec["action_dim"] != output_dim:
            raise ConfigError(f"the teacher acts in {self.teacher.spec['action_dim']} dimensions, the task in "
                              f"{output_dim}")

    def forward(self, obs: TensorDict, masks: Any = None, hidden_state: Any = None,
                stochastic_output: bool = False) -> torch.Tensor:
        """The teacher's action ``[B, A]`` from the concatenated groups of its set."""
        return self.teacher.act(torch.cat([obs[g] for g in self.groups], dim=-1))

    def reset(self, dones: torch.Tensor | None = None, hidden_state: Any = None) -> None:
        """Stateless."""

    def get_hidden_state(self) -> None:
        """Stateless."""
        return None

    def detach_hidden_state(self, dones: torch.Tensor | None = None) -> None:
        """Stateless."""

    def update_normalization(self, obs: TensorDict) -> None:
        """Frozen: its normalization is the teacher's own."""


class RslRlStudentPolicy:
    """An rsl_rl student (an ``MLPModel`` over ``proprio_history``) as a robodistill evaluation policy."""

    def __init__(self, student: torch.nn.Module, history: int) -> None:
        self.student, self.history = student, history
        self.window: torch.Tensor | None = None

    def reset(self, num_envs: int) -> None:
        """Every environment starts an episode."""
        self.window = None

    @torch.no_grad()
    def act(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The student's deterministic action, clipped to [-1, 1]."""
        proprio = obs["proprio"]
        starts = torch.zeros(proprio.shape[0], dtype=torch.bool, device=proprio.device)
        if self.window is None:
            self.window = torch.zeros(proprio.shape[0], self.history, proprio.shape[1], device=proprio.device)
            starts[:] = True
        self.window = push_window(self.window, proprio, starts)
        groups = TensorDict({"proprio_history": self.window.flatten(1), "proprio": proprio},
                            batch_size=[proprio.shape[0]])
        return torch.clamp(self.student(groups), -1.0, 1.0)


def distill_with_rsl_rl(cfg: Any, teacher_path: str, out_dir: str, metrics: Any, init_std: float) -> dict[str, Any]:
    """rsl_rl's ``Distillation`` on ``cfg``'s task with robodistill's frozen teacher, the config's student network
    (MLP over the same history window), learning rate, environments and env-step budget; scored after each
    iteration by robodistill's paired evaluation. The student explores at ``init_std`` (rsl_rl's default: 1.0)."""
    from rsl_rl.runners import DistillationRunner

    from robodistill.compare import rsl_rl_gradient_length
    from robodistill.env import env_from_config
    from robodistill.evaluation import PairedEvaluator
    from robodistill.teacher import Teacher

    dc, sc = cfg.distill, cfg.student
    steps = dc.steps_per_iteration
    gradient_length = rsl_rl_gradient_length(steps)
    history = sc.history if sc.encoder == "mlp" else 1
    env = RslRlVecEnv(env_from_config(cfg, dc.num_envs, seed=cfg.seed + 1), history=history)
    student_group = "proprio_history" if history > 1 else "proprio"
    train_cfg = {
        "num_steps_per_env": steps, "save_interval": 10**9, "logger": "tensorboard", "multi_gpu": None,
        "obs_groups": {"student": [student_group], "teacher": ["privileged"]},
        "algorithm": {"class_name": "rsl_rl.algorithms.Distillation", "num_learning_epochs": 1,
                      "gradient_length": gradient_length, "learning_rate": dc.learning_rate, "loss_type": "mse",
                      "max_grad_norm": dc.max_grad_norm},
        "student": {"class_name": "rsl_rl.models.MLPModel", "hidden_dims": list(sc.hidden),
                    "activation": sc.activation, "obs_normalization": True,
                    "distribution_cfg": {"class_name": "rsl_rl.modules.GaussianDistribution",
                                         "init_std": init_std}},
        "teacher": {"class_name": "robodistill.integrations.rsl_rl:FrozenTeacherModel",
                    "teacher_path": str(teacher_path)},
    }
    torch.manual_seed(cfg.seed)
    with _quiet():  # rsl_rl prints its models and every iteration's figures to stdout
        runner = DistillationRunner(env, train_cfg, log_dir=None, device=str(env.device))
    runner.alg.teacher_loaded = True  # the teacher model loaded robodistill's teacher file when it was built
    score, result, env_steps = float("nan"), None, 0
    with PairedEvaluator(cfg, Teacher.load(teacher_path)) as evaluator:
        for iteration in range(1, dc.iterations + 1):
            with _quiet():
                runner.learn(num_learning_iterations=1)
            env_steps += steps * dc.num_envs
            if iteration % dc.eval_every == 0 or iteration == dc.iterations:
                student = runner.alg.get_policy().eval()
                result, score = evaluator.evaluate(RslRlStudentPolicy(student, history))
                student.train()
                if metrics is not None:
                    metrics.write("distill", iteration, score=score, student_return=result.mean,
                                  env_steps=env_steps, labels=env_steps)
    env.close()
    return {"score": score, "student_return": result.mean if result is not None else float("nan"),
            "distill_env_steps": env_steps, "labels": env_steps, "rsl_rl_gradient_length": gradient_length,
            "rsl_rl_init_std": init_std}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """rsl_rl's prints go to the debug log, not to the command's stdout (which carries its result)."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        yield
    if buffer.getvalue().strip():
        log.debug("rsl_rl: %s", buffer.getvalue().strip())

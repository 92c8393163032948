"""The DAgger loop: collect with the student driving, label with the teacher, aggregate, update, evaluate."""

from __future__ import annotations

import dataclasses
import logging
import time
from copy import deepcopy
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from robodistill.distill import distributed
from robodistill.distill.algorithm import beta_at, distillation_loss, exploration_action, mix_actions
from robodistill.distill.buffer import AggregationBuffer
from robodistill.distill.labeler import Labeler
from robodistill.distill.rows import SequenceRows, WindowRows
from robodistill.distill.selection import BestStudent
from robodistill.env import env_from_config
from robodistill.errors import UsageError
from robodistill.evaluation import PairedEvaluator, StudentPolicy
from robodistill.precision import update_dtype
from robodistill.runs import MetricsLog, atomic_torch_save, load_plain, truncate_metrics
from robodistill.student import StudentSpec, build_student, student_spec

if TYPE_CHECKING:
    from robodistill.config import Config
    from robodistill.student import Student
    from robodistill.teacher import Teacher

log = logging.getLogger(__name__)

STUDENT_FILE = "student.pt"
CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_FORMAT = "robodistill-distill-checkpoint-1"


class DaggerRunner:
    """Owns the environments, the student, the optimizer and the buffer for one distillation run.

    Everything lives on the environment's device (the CPU for the C engine, MJX's GPU when it runs on one):
    observations arrive there by DLPack, the student, the teacher, the buffer and the random generator sit
    there, and actions leave from there, so the loop makes no host round trip.
    """

    def __init__(self, cfg: "Config", teacher: "Teacher", run_dir: Path, metrics: MetricsLog | None) -> None:
        dc = cfg.distill
        self.cfg, self.teacher, self.run_dir, self.metrics = cfg, teacher, Path(run_dir), metrics
        self.rank, self.world_size = distributed.init()
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank (broadcast below all the same)
        self.env = env_from_config(cfg, dc.num_envs, seed=cfg.seed + 1 + 1000 * self.rank)
        self.device = self.env.device
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed + 7919 * self.rank)
        teacher.check_compatible(cfg.task.name, self.env.obs_dims["privileged"], self.env.action_dim)
        teacher.to(self.device)
        backend = self.env.backend
        spec = student_spec(cfg, self.env.obs_dims["proprio"], self.env.action_dim, backend.action_offset,
                            backend.action_scale, cfg.task.name)
        self.student = build_student(spec).to(self.device)
        distributed.broadcast_module(self.student)
        # the fused kernel updates every parameter in one pass: 7 % faster updates on the CPU (BENCHMARKS.md)
        self.optimizer = torch.optim.Adam(self.student.parameters(), lr=dc.learning_rate,
                                          fused=self.device.type in ("cpu", "cuda"))
        # "auto" is decided by a timed trial of the real update, once the buffer holds samples (first update)
        self.update_dtype = None if dc.update_precision == "auto" else update_dtype(dc.update_precision, self.device)
        # recurrent students learn from stored sequences; windowed ones from single steps, windows cut from rollouts
        b, t = self.env.num_envs, dc.steps_per_iteration
        self.rows = (SequenceRows(cfg.student.bptt_length) if self.student.recurrent
                       else WindowRows(self.student.history, t))
        a = self.env.action_dim
        step_shapes = {"obs": (self.env.obs_dims["proprio"],), "starts": (), "teacher_mean": (a,),
                       "teacher_std": (a,), "teacher_value": ()}  # per env and step
        self.buffer = AggregationBuffer(
            max(1, dc.buffer_capacity // self.rows.steps_per_row),
            self.rows.row_shapes(step_shapes, self.student.state_shape),
            mode=dc.buffer_mode, generator=self.gen, device=self.device)
        self.rollout = {k: torch.zeros((b, t, *s), device=self.device) for k, s in step_shapes.items()}  # [B, T, ...]
        # the student's state where each buffer row begins [B, T / steps_per_row, *state]
        self.rollout_state0 = torch.zeros((b, t // self.rows.steps_per_row, *self.student.state_shape),
                                          device=self.device)
        self.labeler = Labeler(teacher, with_value=dc.value_loss_coef > 0,
                               concurrent=Labeler.worth_a_thread(teacher, self.env))
        self.iteration = 0
        self.env_steps = 0
        self.labels = 0
        self.best = BestStudent(dc.patience)  # by validation score, when dc.select == "best"
        self.obs: dict[str, torch.Tensor] | None = None
        self.state: torch.Tensor | None = None
        self.starts: torch.Tensor | None = None

    @property
    def buffer_samples(self) -> int:
        """Steps held in the aggregation buffer."""
        return len(self.buffer) * self.rows.steps_per_row

    def start(self) -> None:
        """Reset every environment and the student's state: each environment starts an episode."""
        self.obs = self.env.reset()
        self.state = self.student.initial_state(self.env.num_envs)
        self.starts = torch.ones(self.env.num_envs, dtype=torch.bool, device=self.device)

    def rollout_snapshot(self) -> dict[str, Any]:
        """The environments mid-episode (every random stream included) and the student's state in each, for a
        checkpoint after :meth:`start`: a resume continues exactly where this left off."""
        return {"env": self.env.backend.snapshot(), "obs": {k: v.cpu() for k, v in self.obs.items()},
                "policy_state": self.state.cpu(), "starts": self.starts.cpu()}

    def restore_rollout(self, snap: dict[str, Any]) -> None:
        """Put the environments and the student's state back as :meth:`rollout_snapshot` recorded them."""
        self.env.backend.restore(snap["env"])
        self.obs = {k: v.to(self.device) for k, v in snap["obs"].items()}
        self.state, self.starts = snap["policy_state"].to(self.device), snap["starts"].to(self.device)

    def collect(self, beta: float) -> dict[str, float]:
        """Run ``steps_per_iteration`` control steps with the student driving (the teacher with probability β);
        every visited state gets the teacher's label, stored in the buffer as ``self.rows`` arranges it."""
        dc = self.cfg.distill
        obs, state, starts = self.obs, self.state, self.starts
        rollout = self.rollout
        teacher_steps = 0
        with torch.no_grad(), self.env.torch_single_threaded():
            for t in range(dc.steps_per_iteration):
                labels = self.labeler.submit(obs["privileged"])
                mean, std, _, next_state = self.student(obs["proprio"], state)
                teacher_mean, teacher_std, teacher_value = labels.result()
                executed = torch.clamp(teacher_mean, -1.0, 1.0)
                if dc.clip_labels:  # label the action the teacher executes (PPO means can sit far outside it)
                    teacher_mean = executed
                if t % self.rows.steps_per_row == 0:
                    self.rollout_state0[:, t // self.rows.steps_per_row] = state
                for key, value in (("obs", obs["proprio"]), ("starts", starts), ("teacher_mean", teacher_mean),
                                   ("teacher_std", teacher_std), ("teacher_value", teacher_value)):
                    rollout[key][:, t] = value
                student_action = exploration_action(mean, std, dc.exploration, dc.exploration_std, self.gen)
                action, used = mix_actions(student_action, executed, beta, self.gen)
                teacher_steps += used.sum()  # a device scalar: no sync per step
                obs, _, terminated, truncated, _ = self.env.step(action)
                starts = terminated | truncated
                state = self.student.reset_state(next_state, starts)
        self.obs, self.state, self.starts = obs, state, starts
        self.buffer.add(**self.rows.pack(rollout, self.rollout_state0))
        self.student.normalizer.merge(*distributed.global_moments(rollout["obs"].flatten(0, 1)))
        n = dc.steps_per_iteration * self.env.num_envs
        self.env_steps += n
        self.labels += n
        return {"teacher_action_fraction": float(teacher_steps) / n}

    def update(self) -> float:
        """``updates_per_iteration`` minibatch steps on the aggregate; returns the mean loss."""
        dc = self.cfg.distill
        if self.update_dtype is None:
            self.update_dtype = self._resolve_update_dtype()
        self.student.train()
        losses = torch.zeros(dc.updates_per_iteration, device=self.device)
        for k in range(dc.updates_per_iteration):
            batch = self.rows.sample(self.buffer, dc.batch_size)
            loss = self._loss(self.student, batch, self.update_dtype)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            distributed.average_gradients(self.student)
            torch.nn.utils.clip_grad_norm_(self.student.parameters(), dc.max_grad_norm)
            self.optimizer.step()
            losses[k] = loss.detach()  # no sync per update
        self.student.eval()
        return float(losses.mean())

    def _loss(self, student: "Student", batch: dict[str, torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
        """The distillation loss of ``student`` on a sampled ``batch``, its forward pass in ``dtype``."""
        dc = self.cfg.distill
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype != torch.float32):
            mean, std, value = student.unroll(batch["obs"], batch["state0"], batch["starts"].bool())
        mean, std, value = mean.float(), std.float(), value.float()  # the loss in float32
        loss = distillation_loss(dc.loss, mean, std, batch["teacher_mean"], batch["teacher_std"], dc.huber_delta)
        if dc.value_loss_coef > 0:
            loss = loss + dc.value_loss_coef * F.mse_loss(value, batch["teacher_value"])
        return loss

    def _resolve_update_dtype(self) -> torch.dtype:
        """``distill.update_precision``; "auto" by a timed trial of this run's update (see robodistill/precision.py)
        on a copy of the student and a batch of the buffer, drawing nothing from the run's random streams."""
        dc = self.cfg.distill
        gen_state = self.gen.get_state()
        batch = self.rows.sample(self.buffer, dc.batch_size)
        self.gen.set_state(gen_state)
        copy = deepcopy(self.student).train()

        def trial(dtype: torch.dtype) -> None:
            copy.zero_grad(set_to_none=True)
            self._loss(copy, batch, dtype).backward()

        spec = self.student.spec
        shape = (f"student {spec.encoder} obs {spec.obs_dim} hidden {list(spec.hidden)} "
                 f"{dataclasses.asdict(spec.options)} batch {dc.batch_size}")
        dtype = update_dtype(dc.update_precision, self.device, trial, shape)
        if self.world_size > 1:  # every rank trains in rank 0's choice
            dtype = torch.bfloat16 if distributed.broadcast_float(float(dtype == torch.bfloat16)) else torch.float32
        log.info("student updates in %s", str(dtype).removeprefix("torch."))
        return dtype

    def close(self) -> None:
        """Release the environments' threads and the labeler's."""
        self.env.close()
        self.labeler.close()

    def save(self, final: bool = False) -> None:
        """Atomic checkpoint of everything needed to resume, then the student (rank 0 only)."""
        if self.rank != 0:
            return
        student_dir = self.run_dir / "student"
        if not final:
            atomic_torch_save({"format": CHECKPOINT_FORMAT, "spec": self.student.spec.to_dict(),
                               "iteration": self.iteration,
                               "student": self.student.state_dict(), "optimizer": self.optimizer.state_dict(),
                               "buffer": self.buffer.state_dict(), "env_steps": self.env_steps,
                               "labels": self.labels, "torch_rng": torch.get_rng_state(),
                               "gen": self.gen.get_state(), "rollout": self.rollout_snapshot(),
                               "best": self.best.state_dict()},
                              student_dir / CHECKPOINT_FILE)
        shipped = self.best.iteration if final and self.best.state is not None else self.iteration
        self.student.save(student_dir / STUDENT_FILE, iteration=shipped)

    def resume(self, path: Path) -> None:
        """Continue from a checkpoint; a corrupted one, or one whose shapes do not fit the config, is refused."""
        try:
            ckpt = load_plain(path, "checkpoint")  # tensors and plain data only: a checkpoint cannot run code
            if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
                raise ValueError("not a robodistill distillation checkpoint")
        except UsageError:
            raise
        except Exception as exc:  # noqa: BLE001 - an unreadable checkpoint is the user's input problem
            raise UsageError(f"corrupted checkpoint {path}: {str(exc).splitlines()[0] if str(exc) else exc}") from None
        try:
            mismatch = StudentSpec.from_dict(ckpt["spec"]).mismatch(self.student.spec)
        except ValueError as exc:
            raise UsageError(f"checkpoint {path} does not fit the config: {exc}") from None
        if mismatch is not None:
            k, was, now = mismatch
            raise UsageError(f"checkpoint {path} does not fit the config: student {k} is {was!r} "
                             f"in the checkpoint but {now!r} in the config")
        stored = {k: tuple(v.shape[1:]) for k, v in ckpt["buffer"]["data"].items()}
        expected = {k: tuple(v.shape[1:]) for k, v in self.buffer.data.items()}
        if stored != expected:
            raise UsageError(f"checkpoint {path} stores its buffer rows as {stored}, the config needs {expected} "
                             "(another distill.steps_per_iteration, or an older robodistill); start a new run")
        self.student.load_state_dict(ckpt["student"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.buffer.load_state_dict(ckpt["buffer"])
        self.iteration, self.env_steps, self.labels = ckpt["iteration"], ckpt["env_steps"], ckpt["labels"]
        if "best" in ckpt:
            self.best.load_state_dict(ckpt["best"])
        torch.set_rng_state(ckpt["torch_rng"])
        if self.rank == 0:  # the checkpoint holds rank 0's streams; other ranks go on from their own seeds
            self.gen.set_state(ckpt["gen"])
            if "rollout" in ckpt:
                self.restore_rollout(ckpt["rollout"])
            else:  # an older checkpoint: its episode streams only
                self.env.backend.sampler.set_state(ckpt["episodes"])
                log.info("checkpoint %s holds no environment snapshot: environments start new episodes", path)
        if self.rank == 0:  # iterations after the checkpoint are redone: each is recorded once
            truncate_metrics(self.run_dir, "distill", self.iteration)
        log.info("resumed from %s at iteration %d", path, self.iteration)

    def run(self) -> dict[str, Any]:
        """The whole distillation; returns the figures for ``summary.json``."""
        dc = self.cfg.distill
        t0 = time.time()
        evaluator = PairedEvaluator(self.cfg, self.teacher) if self.rank == 0 else None
        validator = None
        if evaluator is not None:
            log.info("held-out episodes: teacher %.1f, random %.1f", evaluator.teacher_result.mean,
                     evaluator.random_result.mean)
            if dc.select == "best":
                validator = PairedEvaluator(self.cfg, self.teacher, dc.validation_episodes or dc.eval_episodes,
                                            dc.validation_seed)
        if self.obs is None:  # a resumed run continues its environments' episodes
            self.start()
        score, result = float("nan"), None
        bar = tqdm(total=dc.iterations, initial=self.iteration, desc="distill", unit="it", dynamic_ncols=True,
                   leave=False, disable=None if self.rank == 0 else True)
        while self.iteration < dc.iterations:
            beta = beta_at(dc.beta, self.iteration)
            self.buffer.start_iteration()
            stats = self.collect(beta)
            loss = self.update()
            self.iteration += 1
            record: dict[str, Any] = {"loss": loss, "beta": beta, "buffer_size": self.buffer_samples,
                                      "env_steps": self.env_steps * self.world_size,
                                      "labels": self.labels * self.world_size, **stats,
                                      "physics_faults": self.env.physics_faults}
            if self.world_size > 1:
                record.update(weights_in_sync=distributed.in_sync(self.student), world_size=self.world_size)
            stop_score = score
            if evaluator is not None and (self.iteration % dc.eval_every == 0 or self.iteration == dc.iterations):
                result, score = evaluator.evaluate(StudentPolicy(self.student))
                record.update(score=score, student_return=result.mean)
                stop_score = score
                if validator is not None:
                    _, stop_score = validator.evaluate(StudentPolicy(self.student))
                    self.best.offer(stop_score, self.iteration, self.student)
                    record.update(validation_score=stop_score)
            if self.metrics is not None:
                self.metrics.write("distill", self.iteration, **record)
            self.save()
            bar.update(1)
            bar.set_postfix(score=f"{score:.3f}", loss=f"{loss:.4f}", beta=f"{beta:.2f}")
            stop_score = distributed.broadcast_float(stop_score)
            if dc.target_score is not None and stop_score >= dc.target_score:
                log.info("target score %.3f reached at iteration %d", dc.target_score, self.iteration)
                break
            if distributed.broadcast_float(float(self.best.plateaued)):
                log.info("validation score without improvement for %d evaluations: stopping at iteration %d",
                         dc.patience, self.iteration)
                break
        bar.close()
        last_iteration, last_score = self.iteration, score
        if self.best.state is not None:  # ship the best on validation; report its score on the held-out episodes
            self.student.load_state_dict(self.best.state)
            result = None
        self.save(final=True)
        self.close()
        wall = time.time() - t0
        if evaluator is not None and result is None:  # the selected student, or a resume after the last iteration
            result, score = evaluator.evaluate(StudentPolicy(self.student))
        figures: dict[str, Any] = {"last_iteration_score": last_score, "selected_iteration": self.best.iteration
                                   if self.best.state is not None else last_iteration,
                                   "validation_score": self.best.score if self.best.state is not None else None}
        if validator is not None:
            validator.close()
        if evaluator is not None:
            evaluator.close()
            figures.update({f"teacher_{k}": v for k, v in evaluator.teacher_result.metrics.items()})
            figures.update({f"student_{k}": v for k, v in (result.metrics if result is not None else {}).items()})
        return {**figures, "teacher_return": evaluator.teacher_result.mean if evaluator else float("nan"),
                "random_return": evaluator.random_result.mean if evaluator else float("nan"),
                "student_return": result.mean if result is not None else float("nan"), "score": score,
                "distill_env_steps": self.env_steps * self.world_size, "labels": self.labels * self.world_size,
                "distill_iterations": self.iteration, "distill_wall_seconds": wall,
                "eval_episodes": evaluator.episodes if evaluator else 0, "physics_faults": self.env.physics_faults,
                "world_size": self.world_size}


def distill(cfg: "Config", teacher: "Teacher", run_dir: Path, metrics: MetricsLog | None,
            resume: Path | None = None) -> dict[str, Any]:
    """Train a student from ``teacher`` as the config says (continuing from ``resume``); it lands in RUN/student."""
    runner = DaggerRunner(cfg, teacher, run_dir, metrics)
    if resume is not None:
        runner.resume(resume)
    return runner.run()

"""Throughput against ceilings measured in the same process (issue 9).

- backend: env-steps/s of ``make_env(task, B)`` vs ``mujoco.rollout`` stepping exactly the physics the backend
  stepped (each control step's start state and controls, the same models and threads) in one call with no Python
  around it (physics steps/s, ratio = backend / ceiling); under random actions (the hopper falls within about 8
  control steps, so resets dominate) and, at B=64, under the shipped teachers' actions;
- dagger: env-steps/s of the DAgger loop (collection with student and teacher forward passes, buffer, updates)
  vs stepping the same environments with random actions only;
- updates: the student's supervised updates in bfloat16 vs float32 (``distill.update_precision``);
- teacher: the quadruped teacher's PPO training as ``train_sb3`` runs it (torch on one thread during rollouts)
  vs with torch's default threads throughout; and with ``teacher.update_precision=bfloat16`` vs float32;
- sb3: the teacher's SB3 PPO env-steps/s on the batched adapter vs SB3 with its own ``SubprocVecEnv`` over the
  registered gymnasium environment, same number of environments and hyperparameters.

Each ratio is measured ``repeats`` times in one run; the rows carry the spread.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import mujoco
import mujoco.rollout
import numpy as np
import torch

from benchmarks.common import ROOT, row, spread

TASKS = ["pendulum", "hopper", "quadruped"]


def _backend_ratio(task: str, batch: int, control_steps: int, policy: Any = None) -> tuple[float, float]:
    """(backend physics steps/s, rollout ceiling physics steps/s) for one batch size.

    Actions are uniform random, or ``policy``'s (a :class:`Teacher` acting on the privileged observation; its
    forward passes are not timed). The ceiling steps exactly the physics the backend stepped: every (control
    step, environment) pair becomes one rollout of ``decimation`` steps from the state that step started in
    (resets included), with the controls the backend applied, all in a single ``mujoco.rollout`` call with no
    Python between them.
    """
    import robodistill as rd

    env = rd.make_env(task, batch, seed=0, num_threads=2)
    obs = env.reset()
    backend = env.backend
    dec = backend.task.decimation
    random_actions = torch.rand(control_steps + 1, batch, env.action_dim) * 2 - 1

    def action(k: int) -> torch.Tensor:
        if policy is None:
            return random_actions[k]
        with torch.no_grad():
            return policy.act(obs["privileged"])

    obs = env.step(action(control_steps))[0]  # warm-up
    rows = np.empty((control_steps, batch, backend.physics_state.shape[1]))  # mjSTATE_INTEGRATION rows of the batch
    controls = np.empty((control_steps, batch, dec, env.action_dim))
    stepping = 0.0
    for k in range(control_steps):
        rows[k] = backend.physics_state  # (a push, once per episode, is applied inside the step and not replayed)
        act = action(k)
        t0 = time.perf_counter()
        obs = env.step(act)[0]
        stepping += time.perf_counter() - t0
        controls[k] = backend.ctrl[:, None, :]
    env_rate = batch * control_steps * dec / stepping

    # the same starts as rollout's full-physics states and warm-starts (untimed conversion)
    data = mujoco.MjData(backend.model)
    full = mujoco.mj_stateSize(backend.model, mujoco.mjtState.mjSTATE_FULLPHYSICS)
    starts, warm = np.empty((control_steps * batch, full)), np.empty((control_steps * batch, backend.model.nv))
    for j, row in enumerate(rows.reshape(control_steps * batch, -1)):
        mujoco.mj_setState(backend.model, data, row, mujoco.mjtState.mjSTATE_INTEGRATION)
        mujoco.mj_getState(backend.model, data, starts[j], mujoco.mjtState.mjSTATE_FULLPHYSICS)
        warm[j] = data.qacc_warmstart
    nthread = max(1, min(2, batch))
    datas = [mujoco.MjData(backend.model) for _ in range(nthread)]
    # rollout k * batch + i: environment i at control step k (on its model at the end of the run)
    models = [backend.env_model(i) for i in range(batch)] * control_steps
    controls = controls.reshape(control_steps * batch, dec, -1)
    with mujoco.rollout.Rollout(nthread=nthread if nthread > 1 else 0) as ro:
        ro.rollout(models[:batch], datas, starts[:batch], controls[:batch], nstep=dec)  # warm-up
        t0 = time.perf_counter()
        ro.rollout(models, datas, starts, controls, nstep=dec, initial_warmstart=warm)
        ceiling = batch * control_steps * dec / (time.perf_counter() - t0)
    env.close()
    return env_rate, ceiling


@contextlib.contextmanager
def _dagger_runner(task: str, batch: int, backend: str = "mujoco", config: str | None = None,
                   overrides: list[str] = ()) -> Iterator[Any]:
    """A started ``DaggerRunner`` with the task's config (or ``configs/CONFIG``: student, schedule, precision) and an
    untrained teacher."""
    import tempfile
    from pathlib import Path

    import robodistill as rd
    from robodistill.distill.runner import DaggerRunner
    from robodistill.teacher import Teacher

    cfg = rd.load_config(ROOT / "configs" / (config or f"{task}.yaml"),
                         [f"env.backend={backend}", f"distill.num_envs={batch}", *overrides])
    probe = rd.make_env(task, 1)  # the C engine: only the sizes are needed
    teacher = Teacher({"task": task, "algo": "ppo", "obs_dim": probe.obs_dims["privileged"],
                       "action_dim": probe.action_dim, "net_arch": list(cfg.teacher.net_arch), "activation": "tanh",
                       "clip_obs": 10.0, "epsilon": 1e-8, "has_value": True})
    probe.close()
    with tempfile.TemporaryDirectory() as tmp:
        runner = DaggerRunner(cfg, teacher, Path(tmp), None)
        runner.start()
        runner.collect(0.5)  # warm-up (and compile, on MJX)
        runner.update()
        try:
            yield runner
        finally:
            runner.close()


def dagger_ratio(task: str, batch: int, iterations: int, backend: str = "mujoco",
                 config: str | None = None, overrides: list[str] = ()) -> tuple[float, float]:
    """(DAgger loop env-steps/s, env-only env-steps/s) with the task's default student and schedule on ``backend``.

    The loop runs as ``distill`` runs it: the config's steps and updates per iteration, torch's default threads.
    """
    with _dagger_runner(task, batch, backend, config, list(overrides)) as runner:
        steps = runner.cfg.distill.steps_per_iteration
        t0 = time.perf_counter()
        for _ in range(iterations):
            runner.buffer.start_iteration()
            runner.collect(0.5)
            runner.update()
        loop_rate = iterations * steps * batch / (time.perf_counter() - t0)
        env = runner.env
        actions = torch.rand(steps, batch, env.action_dim, device=env.device) * 2 - 1  # where the loop's actions are
        t0 = time.perf_counter()
        for _ in range(iterations):
            for k in range(steps):
                env.step(actions[k])
        env_rate = iterations * steps * batch / (time.perf_counter() - t0)
    return loop_rate, env_rate


def update_speedup(task: str, rounds: int) -> tuple[float, float]:
    """(student updates/s in bfloat16, in float32): the task's student and batch, alternating on one runner."""
    times = {torch.bfloat16: 0.0, torch.float32: 0.0}
    with _dagger_runner(task, 64) as runner:
        n = runner.cfg.distill.updates_per_iteration
        for _ in range(rounds):
            for dtype in times:
                runner.update_dtype = dtype
                t0 = time.perf_counter()
                runner.update()
                times[dtype] += time.perf_counter() - t0
    return rounds * n / times[torch.bfloat16], rounds * n / times[torch.float32]


class _Privileged:
    """Gymnasium wrapper exposing the privileged group as a flat Box (SB3's SubprocVecEnv baseline)."""

    @staticmethod
    def make(task_id: str) -> Any:
        import gymnasium as gym

        import robodistill.gym_envs  # noqa: F401 - registers the ids

        class Wrapper(gym.ObservationWrapper):
            def __init__(self, env: Any) -> None:
                super().__init__(env)
                self.observation_space = env.observation_space["privileged"]

            def observation(self, obs: dict) -> Any:
                return obs["privileged"]

        return Wrapper(gym.make(task_id))


def _sb3_ratio(task: str, num_envs: int, steps: int) -> tuple[float, float]:
    """(robodistill adapter PPO env-steps/s, SB3 SubprocVecEnv PPO env-steps/s)."""
    from functools import partial

    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import SubprocVecEnv, VecNormalize

    import robodistill as rd
    from robodistill.teacher import SB3VecEnv

    gym_id = {"pendulum": "robodistill/Pendulum-v0", "hopper": "robodistill/Hopper-v0",
              "quadruped": "robodistill/Quadruped-v0"}[task]
    kwargs = dict(n_steps=256, batch_size=512, n_epochs=5, verbose=0, device="cpu", seed=0)
    rates = []
    for make in (lambda: SB3VecEnv(rd.make_env(task, num_envs, seed=0)),
                 lambda: SubprocVecEnv([partial(_Privileged.make, gym_id) for _ in range(num_envs)])):
        venv = VecNormalize(make())
        model = PPO("MlpPolicy", venv, **kwargs)
        t0 = time.perf_counter()
        model.learn(total_timesteps=steps)
        rates.append(model.num_timesteps / (time.perf_counter() - t0))
        venv.close()
    return rates[0], rates[1]


def _teacher_rate(task: str, steps: int, overrides: list[str], torch_threads_in_rollouts: bool = False) -> float:
    """Teacher PPO env-steps/s as ``train_sb3`` runs it (optionally with torch's default threads in the rollouts)."""
    import tempfile
    from pathlib import Path

    import robodistill as rd
    from robodistill import teacher as teacher_module
    from robodistill.runs import MetricsLog

    phases = teacher_module._TrainingPhases
    single = phases._on_rollout_start
    if torch_threads_in_rollouts:
        phases._on_rollout_start = lambda self: self._phase.close()
    cfg = rd.load_config(ROOT / "configs" / f"{task}.yaml", [f"teacher.total_timesteps={steps}",
                                                             f"teacher.checkpoint_every={10 * steps}", *overrides])
    try:
        with tempfile.TemporaryDirectory() as tmp:
            _, info = teacher_module.train_sb3(cfg, Path(tmp) / "teacher", MetricsLog(Path(tmp), tensorboard=False))
    finally:
        phases._on_rollout_start = single
    return info["steps_per_second"]


def teacher_speedup(task: str, steps: int) -> tuple[float, float]:
    """(teacher PPO env-steps/s as ``train_sb3`` runs it, the same with torch's default threads in the rollouts).

    ``train_sb3`` runs torch on one thread while SB3 collects rollouts; the baseline skips that.
    """
    return _teacher_rate(task, steps, []), _teacher_rate(task, steps, [], torch_threads_in_rollouts=True)


def teacher_bf16_speedup(task: str, steps: int) -> tuple[float, float]:
    """(teacher PPO env-steps/s with ``teacher.update_precision=bfloat16``, the same in float32)."""
    return (_teacher_rate(task, steps, ["teacher.update_precision=bfloat16"]),
            _teacher_rate(task, steps, ["teacher.update_precision=float32"]))


def run(quick: bool) -> list[dict[str, Any]]:
    """Every throughput figure, each ratio repeated 3 times."""
    default_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the backend against its ceiling: physics alone on the rollout threads
    repeats = 3
    batches = [16, 64] if quick else [1, 16, 64, 256]
    rows: list[dict[str, Any]] = []
    for task in TASKS:
        for batch in batches:
            steps = max(20, 4000 // batch) if quick else max(50, 20000 // batch)
            pairs = [_backend_ratio(task, batch, steps) for _ in range(repeats)]
            ratios = [a / b for a, b in pairs]
            value, base = float(np.mean([a for a, _ in pairs])), float(np.mean([b for _, b in pairs]))
            rows.append(row("backend_physics_steps_per_s", task, batch, value, base, unit="physics steps/s",
                            ratio_spread=spread(ratios)))
    from robodistill.teacher import Teacher

    for task in ("hopper", "quadruped"):  # the shipped teachers' actions: episodes as long as training sees them
        teacher = Teacher.load(ROOT / "assets" / "teachers" / task)
        steps = 4000 // 64 if quick else 20000 // 64
        pairs = [_backend_ratio(task, 64, steps, policy=teacher) for _ in range(repeats)]
        rows.append(row("backend_physics_steps_per_s_teacher", task, 64, float(np.mean([a for a, _ in pairs])),
                        float(np.mean([b for _, b in pairs])), unit="physics steps/s (shipped teacher's actions)",
                        ratio_spread=spread([a / b for a, b in pairs])))
    torch.set_num_threads(default_threads)  # the DAgger loop as users run it
    for task in TASKS:
        batch = 64
        pairs = [dagger_ratio(task, batch, 2 if quick else 4) for _ in range(repeats)]
        ratios = [a / b for a, b in pairs]
        rows.append(row("dagger_env_steps_per_s", task, batch, float(np.mean([a for a, _ in pairs])),
                        float(np.mean([b for _, b in pairs])), unit="env steps/s", ratio_spread=spread(ratios)))
    for task in TASKS:
        pairs = [update_speedup(task, 2 if quick else 5) for _ in range(repeats)]
        ratios = [a / b for a, b in pairs]
        rows.append(row("student_updates_per_s_bf16", task, 64, float(np.mean([a for a, _ in pairs])),
                        float(np.mean([b for _, b in pairs])), unit="updates/s (bfloat16 vs float32)",
                        ratio_spread=spread(ratios)))
    pairs = [teacher_speedup("quadruped", 16384 if quick else 40960) for _ in range(repeats)]
    rows.append(row("teacher_ppo_env_steps_per_s", "quadruped", 64, float(np.mean([a for a, _ in pairs])),
                    float(np.mean([b for _, b in pairs])), unit="env steps/s (vs torch's threads in rollouts)",
                    ratio_spread=spread([a / b for a, b in pairs])))
    for task in (["quadruped"] if quick else ["hopper", "quadruped"]):
        pairs = [teacher_bf16_speedup(task, 16384 if quick else 40960) for _ in range(repeats)]
        rows.append(row("teacher_ppo_env_steps_per_s_bf16", task, 64 if task == "quadruped" else 16,
                        float(np.mean([a for a, _ in pairs])), float(np.mean([b for _, b in pairs])),
                        unit="env steps/s (bfloat16 vs float32 PPO updates)",
                        ratio_spread=spread([a / b for a, b in pairs])))
    for task in (["pendulum"] if quick else ["pendulum", "hopper"]):
        pairs = [_sb3_ratio(task, 8, 8192 if quick else 32768) for _ in range(repeats)]
        ratios = [a / b for a, b in pairs]
        rows.append(row("sb3_ppo_env_steps_per_s", task, 8, float(np.mean([a for a, _ in pairs])),
                        float(np.mean([b for _, b in pairs])), unit="env steps/s (vs SubprocVecEnv)",
                        ratio_spread=spread(ratios)))
    return rows

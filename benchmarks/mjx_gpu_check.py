"""A short MJX check for a lent GPU (a few minutes, where ``python -m benchmarks mjx`` needs longer).

Run on the GPU machine from the repository root: ``python benchmarks/mjx_gpu_check.py [OUT_DIR]``. It prints the
rows and writes them as ``benchmarks/results/mjx_gpu.json`` (and a copy in OUT_DIR, to fetch): env-steps/s of MJX
against the C engine on every core (random actions, auto-reset, ``benchmarks.mjx._env_rate``) for the hopper and
the quadruped at B=1024 and 4096, and the quadruped's DAgger loop on MJX against MJX stepping alone
(``benchmarks.throughput.dagger_ratio``) at B=1024.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.common import save  # noqa: E402
from benchmarks.mjx import _env_rate, _jax_device  # noqa: E402
from benchmarks.throughput import dagger_ratio  # noqa: E402


def main() -> None:
    """Measure, print and save the rows."""
    out = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("OUT", "."))
    device, _ = _jax_device()
    torch.set_num_threads(1)
    rows = []

    def record(entry: dict) -> None:
        rows.append({**entry, "device": device})
        print(rows[-1], flush=True)
        shutil.copy(save("mjx_gpu", rows, quick=False), out / "mjx_gpu.json")  # what ran so far survives a timeout

    for task in ("hopper", "quadruped"):
        for batch in (1024, 4096):
            t0 = time.perf_counter()
            mjx = _env_rate(task, batch, "mjx", 3.0)
            first = time.perf_counter() - t0
            c_engine = _env_rate(task, batch, "mujoco", 3.0)
            record({"name": "env_steps_per_s", "task": task, "batch": batch, "value": mjx, "baseline": c_engine,
                    "ratio": mjx / c_engine, "unit": "env steps/s (MJX vs C engine, all cores)",
                    "mjx_wall_with_compile_s": first})
    t0 = time.perf_counter()
    loop, env_only = dagger_ratio("quadruped", 1024, 1, backend="mjx")
    record({"name": "dagger_env_steps_per_s", "task": "quadruped", "batch": 1024, "value": loop,
            "baseline": env_only, "ratio": loop / env_only, "unit": "env steps/s (MJX, vs env only)",
            "wall_s": time.perf_counter() - t0})


if __name__ == "__main__":
    main()

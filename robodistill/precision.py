"""The dtype of the training updates' matrix products (the student's updates and the teacher's PPO updates).

``update_precision: auto`` decides by measurement, not by CPU flags: on one Xeon that reports AVX512-BF16,
bfloat16 updates ran at 0.70-0.83x of float32, while the same code gained 1.4-1.9x on an AMD EPYC. Where the
device has native bfloat16, a short timed trial of the real update (the caller's network, batch and loss) runs
both dtypes in turn; bfloat16 is kept only if it wins by :data:`CLEAR_MARGIN`. The choice is cached per machine,
torch version and network shape, so every run on that machine (and a resumed run) trains in the same dtype.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

from robodistill.runs import atomic_write_text

log = logging.getLogger(__name__)

CLEAR_MARGIN = 1.15  # bfloat16 must make the update at least this much faster to be chosen
TRIAL_ROUNDS = 5  # alternating timed rounds per dtype (after one warm-up each)
CACHE_ENV_VAR = "ROBODISTILL_CACHE"


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 matmuls natively (emulated bfloat16 is always slower)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        cpu = torch.cpu
        return any(getattr(cpu, probe, lambda: False)() for probe in
                   ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return False


def update_dtype(precision: str, device: torch.device, trial: Callable[[torch.dtype], None] | None = None,
                 shape_key: str = "") -> torch.dtype:
    """The dtype of the updates' matmuls: ``precision``, with "auto" resolved by :func:`measure` of ``trial``
    (one real update in the given dtype) where ``device`` has native bfloat16; float32 without a trial."""
    if precision != "auto":
        return getattr(torch, precision)
    if not native_bfloat16(device) or trial is None:
        return torch.float32
    return measure(trial, device, shape_key)


def _cache_file() -> Path | None:
    base = os.environ.get(CACHE_ENV_VAR)
    if base is not None and not base.strip():
        return None  # caching turned off
    root = Path(base).expanduser() if base else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return (root if base else root / "robodistill") / "update_precision.json"


def _machine_key(device: torch.device, shape_key: str) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = _cpu_model() or platform.processor() or platform.machine()
    return f"{name}|torch {torch.__version__}|{device.type}|threads {torch.get_num_threads()}|{shape_key}"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def measure(trial: Callable[[torch.dtype], None], device: torch.device, shape_key: str) -> torch.dtype:
    """bfloat16 if its update is :data:`CLEAR_MARGIN` faster than float32's in an alternating timed trial
    (cached per machine and ``shape_key``), else float32. Logs both timings."""
    path, key = _cache_file(), _machine_key(device, shape_key)
    cache: dict = {}
    if path is not None and path.is_file():
        try:
            cache = json.loads(path.read_text())
        except (OSError, ValueError):
            cache = {}
    if key in cache:
        entry = cache[key]
        log.info("update precision %s (cached trial: float32 %.2f ms, bfloat16 %.2f ms per update)",
                 entry["dtype"], entry["float32_ms"], entry["bfloat16_ms"])
        return getattr(torch, entry["dtype"])
    times: dict[torch.dtype, list[float]] = {torch.float32: [], torch.bfloat16: []}
    for dtype in times:
        trial(dtype)  # warm-up: kernels chosen, caches filled
    for _ in range(TRIAL_ROUNDS):
        for dtype in times:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            trial(dtype)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times[dtype].append(time.perf_counter() - t0)
    f32, bf16 = (1e3 * statistics.median(times[d]) for d in (torch.float32, torch.bfloat16))
    chosen = torch.bfloat16 if f32 >= CLEAR_MARGIN * bf16 else torch.float32
    name = str(chosen).removeprefix("torch.")
    log.info("update precision %s by a timed trial: float32 %.2f ms, bfloat16 %.2f ms per update "
             "(bfloat16 needs %.2fx)", name, f32, bf16, CLEAR_MARGIN)
    if path is not None:
        cache[key] = {"dtype": name, "float32_ms": f32, "bfloat16_ms": bf16}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps(cache, indent=1))
        except OSError as exc:
            log.debug("update precision not cached: %s", exc)
    return chosen

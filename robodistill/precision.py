"""The dtype of the training updates' matrix products (the student's updates and the teacher's PPO updates)."""

from __future__ import annotations

import torch


def update_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype of the updates' matmuls: ``precision``, with "auto" resolved by what ``device`` computes natively.

    bfloat16 halves the bytes and, on CPUs with AVX512-BF16 or AMX, runs small networks' matmuls several times
    faster (BENCHMARKS.md); where it would be emulated, it is slower than float32, so "auto" avoids it.
    """
    if precision != "auto":
        return getattr(torch, precision)
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported(including_emulation=False)
    elif device.type == "cpu":
        cpu = torch.cpu
        native = any(getattr(cpu, probe, lambda: False)() for probe in
                     ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    else:
        native = False
    return torch.bfloat16 if native else torch.float32

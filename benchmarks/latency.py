"""Per-call latency at batch 1: the deploy kit's OnnxController and a raw onnxruntime session vs torch eager.

For each student encoder, the student the default config builds (untrained weights; latency does not depend on
them) is exported to ONNX and called with the same observations. Torch runs ``student.deploy`` under
``torch.no_grad`` with one intra-op thread (the fair comparison: the session is single-threaded too) and with
torch's default thread count. Values are p50 per call in µs; ``baseline`` is torch eager with one thread.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from benchmarks.common import ROOT, row


def _percentiles(fn: Callable[[], Any], calls: int, warmup: int = 200) -> tuple[float, float]:
    """p50 and p99 of ``fn``'s wall time in µs (time.perf_counter_ns around each call)."""
    for _ in range(warmup):
        fn()
    out = np.empty(calls, dtype=np.int64)
    for i in range(calls):
        t0 = time.perf_counter_ns()
        fn()
        out[i] = time.perf_counter_ns() - t0
    us = out / 1e3
    return float(np.percentile(us, 50)), float(np.percentile(us, 99))


def _encoders() -> list[str]:
    import robodistill.student as st

    registry = getattr(st, "ENCODERS", None) or getattr(st, "STUDENTS")
    return list(registry)


def measure(task: str, encoder: str, calls: int) -> list[dict[str, Any]]:
    """Rows for one (task, encoder): controller, raw session, torch 1 thread, torch default threads."""
    import torch

    import robodistill as rd
    from robodistill.onnx_export import export_onnx, policy_metadata
    from robodistill.student import build_student, student_spec

    from export.controller import OnnxController

    cfg = rd.load_config(ROOT / "configs" / f"{task}.yaml", [f"student.encoder={encoder}"])
    env = rd.make_env(task, 1, seed=0)
    try:
        spec = student_spec(cfg, env.obs_dims["proprio"], env.action_dim, env.backend.action_offset,
                            env.backend.action_scale, task)
        torch.manual_seed(0)
        student = build_student(spec).eval()
        meta = policy_metadata(cfg, env, student)
    finally:
        env.close()
    rng = np.random.default_rng(0)
    obs = rng.standard_normal((1, student.obs_dim)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "policy.onnx"
        export_onnx(student, path, meta)
        ctrl = OnnxController(path)
        ctrl_p50, ctrl_p99 = _percentiles(lambda: ctrl.step(obs[0]), calls)
        state = np.zeros((1, *ctrl.state_shape), dtype=np.float32)
        feeds = {"obs": obs, "state": state}
        ort_p50, ort_p99 = _percentiles(lambda: ctrl.session.run(["action", "next_state"], feeds), calls)

    t_obs, t_state = torch.from_numpy(obs), student.initial_state(1)
    threads = torch.get_num_threads()

    def torch_call() -> None:
        with torch.no_grad():
            student.deploy(t_obs, t_state)

    torch.set_num_threads(1)
    try:
        t1_p50, t1_p99 = _percentiles(torch_call, calls)
    finally:
        torch.set_num_threads(threads)
    tn_p50, tn_p99 = _percentiles(torch_call, calls)
    common = {"encoder": encoder, "obs_dim": student.obs_dim, "calls": calls}
    return [
        row(f"latency_{encoder}_controller_p50", task, 1, ctrl_p50, t1_p50, unit="µs", p99_us=ctrl_p99,
            torch_p99_us=t1_p99, **common),
        row(f"latency_{encoder}_ort_session_p50", task, 1, ort_p50, t1_p50, unit="µs", p99_us=ort_p99, **common),
        row(f"latency_{encoder}_torch_1thread_p50", task, 1, t1_p50, unit="µs", p99_us=t1_p99, **common),
        row(f"latency_{encoder}_torch_{threads}threads_p50", task, 1, tn_p50, unit="µs", p99_us=tn_p99, **common),
    ]


def run(quick: bool) -> list[dict]:
    """All encoders on the pendulum; the mlp also on the quadruped config's student (45 obs x 32 history, full run)."""
    calls = 2000 if quick else 20000
    rows: list[dict] = []
    for encoder in _encoders():
        rows += measure("pendulum", encoder, calls)
    if not quick:
        rows += measure("quadruped", "mlp", calls)
    return rows

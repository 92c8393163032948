"""Start a Go1 teacher from the shipped quadruped teacher: the same task on a robot of the same geometry, with the
legs in another order (Go1: FR, FL, RR, RL; the quadruped: FL, FR, RL, RR).

    python scripts/go1_teacher_from_quadruped.py OUT.pt
    robodistill train-teacher configs/go1.yaml --init OUT.pt --run-dir RUN

Observation columns are matched by label (joint sensors share their names), the per-leg privileged terms (foot
contact, terrain heights around each foot) leg by leg, and actions by actuator name; the network, normalizer and
value function are the quadruped teacher's with their inputs and outputs permuted accordingly.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import torch

import robodistill as rd
from robodistill.teacher import Teacher

ROOT = Path(__file__).resolve().parents[1]


def column_map(src_env: rd.BatchedEnv, dst_env: rd.BatchedEnv) -> list[int]:
    """For each privileged column of the Go1, the quadruped's column with the same meaning."""
    src_labels = src_env.layout.labels("privileged")
    src_legs, dst_legs = src_env.task.legs, dst_env.task.legs
    scan = src_env.task.SCAN ** 2
    index = []
    for label in dst_env.layout.labels("privileged"):
        match = re.fullmatch(r"(foot_contact|terrain_heights)\[(\d+)\]", label)
        if match:
            term, k = match.group(1), int(match.group(2))
            width = 1 if term == "foot_contact" else scan
            leg, rest = dst_legs[k // width], k % width
            label = f"{term}[{src_legs.index(leg) * width + rest}]"
        index.append(src_labels.index(label))
    return index


def main() -> None:
    out = Path(sys.argv[1])
    src = Teacher.load(ROOT / "assets" / "teachers" / "quadruped")
    quad = rd.make_env("quadruped", 1)
    go1 = rd.make_env(rd.load_config(ROOT / "configs" / "go1.yaml").task.name, 1)
    cols = torch.tensor(column_map(quad, go1))
    acts = torch.tensor([quad.task.joints.index(j) for j in go1.task.joints])
    spec = {**src.spec, "task": "go1", "obs_dim": go1.obs_dims["privileged"]}
    dst = Teacher(spec)
    state = src.state_dict()
    with torch.no_grad():
        for name, value in state.items():
            if name in ("obs_mean", "obs_var"):
                value = value[cols]
            elif name in ("latent.0.weight", "value_latent.0.weight"):
                value = value[:, cols]
            elif name.startswith("mean_head.") or name == "log_std":
                value = value[acts]
            state[name] = value
    dst.load_state_dict(state)
    dst.save(out)
    print(f"wrote {out}: {len(cols)} observation columns and {len(acts)} actions mapped from the quadruped teacher")


if __name__ == "__main__":
    main()

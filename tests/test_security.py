"""Shared files cannot run code: teachers, students and checkpoints load as tensors and plain data only.

Each hostile file below carries a pickled callable (``os.system("touch MARKER")``) where a spec value would be;
loading it must be refused (a UsageError, exit code 2 with one line) before the callable runs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from conftest import PENDULUM, ROOT, TINY
from robodistill.cli import main
from robodistill.config import save_config
from robodistill.distill.runner import CHECKPOINT_FORMAT
from robodistill.errors import UsageError
from robodistill.student import STUDENT_FORMAT, load_student
from robodistill.teacher import Teacher

PENDULUM_TEACHER = {"task": "pendulum", "algo": "ppo", "obs_dim": 8, "action_dim": 1, "net_arch": [16],
                    "activation": "tanh", "clip_obs": 10.0, "epsilon": 1e-8, "has_value": True}


class _Payload:
    """Unpickles as a call of ``os.system``: what a hostile file would hide in a spec."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _hostile(path: Path, fmt: str, marker: Path, **entries) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": fmt, "spec": {**PENDULUM_TEACHER, "encoder": _Payload(marker)}, **entries}, path)
    return path


def _refused(capsys, argv: list[str], marker: Path) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    assert "not a plain-data robodistill file" in lines[0] and "refusing to unpickle code" in lines[0], lines[0]
    assert not marker.exists(), "the pickled callable ran"
    return lines[0]


def test_teacher_file_with_a_callable_is_refused_before_it_runs(tmp_path, capsys):
    marker = tmp_path / "MARKER"
    bad = _hostile(tmp_path / "shared" / "teacher.pt", "robodistill-teacher-1", marker, state_dict={})
    with pytest.raises(UsageError, match=r"cannot load teacher .*it would import \S*system"):
        Teacher.load(bad)
    assert not marker.exists()
    sets = [a for s in TINY for a in ("--set", s)]
    line = _refused(capsys, ["distill", str(PENDULUM), "--teacher", str(bad), "--run-dir", str(tmp_path / "r"),
                             *sets], marker)
    assert line.startswith("robodistill: error: cannot load teacher")
    assert not (tmp_path / "r").exists()


def test_student_file_with_a_callable_is_refused_before_it_runs(tiny_cfg, tmp_path, capsys):
    marker = tmp_path / "MARKER"
    run = tmp_path / "run"
    save_config(tiny_cfg, run / "config.yaml")
    bad = _hostile(run / "student" / "student.pt", STUDENT_FORMAT, marker, state_dict={})
    with pytest.raises(UsageError, match="cannot load student .*not a plain-data robodistill file"):
        load_student(bad)
    assert not marker.exists()
    _refused(capsys, ["export", str(run)], marker)
    assert not (run / "export").exists()


def test_checkpoint_with_a_callable_is_refused_before_it_runs(tiny_cfg, tmp_path, capsys):
    marker = tmp_path / "MARKER"
    run = tmp_path / "run"
    save_config(tiny_cfg, run / "config.yaml")
    Teacher(PENDULUM_TEACHER).save(run / "teacher" / "teacher.pt")
    _hostile(run / "student" / "checkpoint.pt", CHECKPOINT_FORMAT, marker, iteration=1)
    line = _refused(capsys, ["distill", "--resume", str(run)], marker)
    assert "cannot load checkpoint" in line


def test_plain_files_still_load_and_garbage_is_a_usage_error(tmp_path):
    """The shipped teachers and what robodistill writes are plain data; a file that is no pickle at all is refused
    with the same one-line error."""
    for task in ("hopper", "quadruped"):
        teacher = Teacher.load(ROOT / "assets" / "teachers" / task)
        assert teacher.spec["task"] == task
        blob = torch.load(ROOT / "assets" / "teachers" / task / "teacher" / "teacher.pt", weights_only=True)
        assert all(isinstance(v, (str, int, float, bool, list)) for v in blob["spec"].values())
    (tmp_path / "garbage.pt").write_bytes(b"garbage")
    with pytest.raises(UsageError, match="cannot load teacher .*not a plain-data robodistill file"):
        Teacher.load(tmp_path / "garbage.pt")

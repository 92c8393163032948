"""The command line: bad input exits 2 with one line and no run directory; the pipeline runs end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import PENDULUM, TINY


def rd(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "robodistill", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def _one_line_error(proc, fragment):
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and fragment in lines[0], lines[0]


@pytest.fixture
def fails(capsys):
    """``fails(*args, fragment)``: ``robodistill ARGS`` in this process exits 2 with one line containing it.

    The config's own messages are tested in test_config.py; here, that the CLI turns them into exit code 2."""
    from robodistill.cli import main

    def check(*args, fragment):  # noqa: ANN002, ANN202
        capsys.readouterr()
        code = main([str(a) for a in args])
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert code == 2 and len(err) == 1 and fragment in err[0], (code, err)

    return check


def test_bad_config_in_a_real_process_exits_2_with_one_line_and_no_run_dir(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("distill: {iteratons: 3}\n")
    _one_line_error(rd("train-teacher", cfg, "--run-dir", tmp_path / "run"), "did you mean 'iterations'")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("content, fragment", [
    ("task: {name: pendulum\nenv: [", "broken YAML"),
    ("task: {name: pendlum}\n", "unknown task 'pendlum'"),
    ("distill: {iterations: three}\n", "expected an integer"),
    ("task: {name: quadruped, reward_scales: {terminaton: -200}}\n", "did you mean 'termination'"),
    ("task: {name: quadruped, reward_params: {tracking_sigm: 0.1}}\n", "did you mean 'tracking_sigma'"),
])
def test_bad_config_exits_2_without_run_dir(tmp_path, content, fragment, fails):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(content)
    fails("train-teacher", cfg, "--run-dir", tmp_path / "run", fragment=fragment)
    assert not (tmp_path / "run").exists()


def test_bad_paths_exit_2(tmp_path, fails):
    fails("pipeline", tmp_path / "missing.yaml", "--run-dir", tmp_path / "r", fragment="config file not found")
    fails("distill", PENDULUM, "--teacher", tmp_path / "nope.pt", "--run-dir", tmp_path / "r",
          fragment="teacher file not found")
    fails("export", tmp_path, fragment="is not a run directory")
    fails("eval", tmp_path / "nowhere", fragment="is not a run directory")
    fails("train-teacher", PENDULUM, "--set", "teacher.algo=dqn", "--run-dir", tmp_path / "r", fragment="'dqn' is not one of")
    assert not (tmp_path / "r").exists()


def test_pipeline_smoke_then_eval_export_and_teacher_mismatch(tmp_path):
    run = tmp_path / "run"
    sets = [a for s in TINY for a in ("--set", s)]
    proc = rd("pipeline", PENDULUM, "--run-dir", run, *sets)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((run / "summary.json").read_text())
    for key in ("task", "teacher_return", "student_return", "random_return", "score", "teacher_env_steps",
                "distill_env_steps", "wall_seconds", "onnx_max_abs_diff"):
        assert key in summary, key
    assert summary["onnx_max_abs_diff"] <= 1e-5
    for path in ("config.yaml", "teacher/teacher.pt", "student/student.pt", "metrics.jsonl",
                 "export/policy.onnx", "export/policy.json"):
        assert (run / path).is_file(), path
    assert any((run / "tensorboard").rglob("events.out.tfevents*"))

    proc = rd("eval", run, "--policy", "onnx", "--episodes", "3", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["episodes"] == 3 and out["policy"] == "onnx"
    student = json.loads(rd("eval", run, "--episodes", "3", "--json").stdout.strip().splitlines()[-1])
    assert student["mean_return"] == pytest.approx(out["mean_return"], rel=1e-3)

    # a run directory is never overwritten
    _one_line_error(rd("pipeline", PENDULUM, "--run-dir", run), "already exists")

    # distill from the pipeline's teacher into a new run
    proc = rd("distill", PENDULUM, "--teacher", run, "--run-dir", tmp_path / "d2", *sets)
    assert proc.returncode == 0, proc.stderr[-2000:]
    d2 = json.loads((tmp_path / "d2" / "summary.json").read_text())
    assert d2["teacher_env_steps"] == summary["teacher_env_steps"] and "score" in d2


def test_init_teacher_must_match_the_configs_network(tmp_path, tiny_teacher, fails):
    tiny_teacher.save(tmp_path / "teacher.pt")
    fails("train-teacher", PENDULUM, "--init", tmp_path / "teacher.pt", "--set", "teacher.net_arch=[16]",
          "--run-dir", tmp_path / "r", fragment="set teacher.net_arch to match")
    fails("train-teacher", PENDULUM, "--init", tmp_path / "teacher.pt", "--set", "teacher.normalize_obs=false",
          "--run-dir", tmp_path / "r", fragment="set teacher.normalize_obs=true")
    fails("train-teacher", PENDULUM, "--init", tmp_path / "missing.pt", "--run-dir", tmp_path / "r",
          fragment="teacher file not found")
    fails("train-teacher", "--resume", tmp_path, "--init", tmp_path / "teacher.pt", fragment="give one")
    assert not (tmp_path / "r").exists()


def test_teacher_of_another_shape_is_refused(tmp_path, fails):
    from robodistill.teacher import Teacher

    spec = {"task": "pendulum", "algo": "ppo", "obs_dim": 5, "action_dim": 1, "net_arch": [8],
            "activation": "tanh", "clip_obs": 10.0, "epsilon": 1e-8, "has_value": True}
    Teacher(spec).save(tmp_path / "wrong.pt")
    fails("distill", PENDULUM, "--teacher", tmp_path / "wrong.pt", "--run-dir", tmp_path / "r",
          fragment="teacher expects privileged obs of size 5")
    Teacher({**spec, "task": "hopper", "obs_dim": 8}).save(tmp_path / "hopper.pt")
    fails("distill", PENDULUM, "--teacher", tmp_path / "hopper.pt", "--run-dir", tmp_path / "r",
          fragment="trained on task 'hopper'")
    assert not (tmp_path / "r").exists()


CRASHING_UPDATE = """
import sys
from robodistill.cli import main
from robodistill.distill.runner import DaggerRunner

def crash(self):
    raise RuntimeError("simulated failure in the update")

DaggerRunner.update = crash
sys.exit(main(sys.argv[1:]))
"""


def test_a_run_time_failure_exits_1_with_one_line_and_the_traceback_in_the_runs_log(tmp_path, tiny_teacher):
    """A real process (its own logging set-up) whose distillation crashes at the first update."""
    tiny_teacher.save(tmp_path / "teacher.pt")
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", CRASHING_UPDATE, "distill", str(PENDULUM), "--teacher",
                           str(tmp_path / "teacher.pt"), "--run-dir", str(run), *[a for s in TINY for a in ("--set", s)]],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    err = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(err) == 1 and "RuntimeError: simulated failure in the update" in err[0] and "log.txt" in err[0], err
    log = (run / "log.txt").read_text()
    assert "Traceback (most recent call last)" in log and "in crash" in log

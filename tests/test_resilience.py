"""Never lose work: SIGKILL and resume, corrupted checkpoints, physics faults, torchrun with 2 processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import PENDULUM

SMALL = ["distill.num_envs=32", "distill.steps_per_iteration=50", "distill.updates_per_iteration=60",
         "distill.batch_size=256", "distill.eval_episodes=20", "distill.beta.decay_iterations=2"]


def _cmd(*args):
    return [sys.executable, "-m", "robodistill", *map(str, args)]


def _sets(items):
    return [a for s in items for a in ("--set", s)]


def _steps(run):
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()
            if '"stage": "distill"' in line]


def _records(run):
    """The distill stage's metrics, without their wall-clock time."""
    return [{k: v for k, v in json.loads(line).items() if k != "time"}
            for line in (run / "metrics.jsonl").read_text().splitlines() if '"stage": "distill"' in line]


def _weights(run):
    return torch.load(run / "student" / "student.pt", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def teacher_file(tiny_teacher, tmp_path_factory):
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    tiny_teacher.save(path)
    return path


def test_sigkill_then_resume_continues_exactly_where_it_stopped(teacher_file, tmp_path):
    """Killed mid-run and resumed, a run ends with the weights of a run never interrupted, bit for bit (every
    random stream, the environments mid-episode and the buffer are checkpointed), and what was written before the
    kill stays as it was. Two processes with the same config and seed give the same weights."""
    sets = _sets(SMALL + ["distill.iterations=8"])
    straight = tmp_path / "straight"
    ok = subprocess.run(_cmd("distill", PENDULUM, "--teacher", teacher_file, "--run-dir", straight, *sets),
                        capture_output=True, text=True, timeout=600)
    assert ok.returncode == 0, ok.stderr[-2000:]

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cmd("distill", PENDULUM, "--teacher", teacher_file, "--run-dir", killed, *sets),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:
        if (killed / "metrics.jsonl").is_file() and len(_steps(killed)) >= 3:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _records(killed)
    assert 3 <= len(before) < 8
    resumed = subprocess.run(_cmd("distill", "--resume", killed), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = _records(killed)
    assert [r["step"] for r in after] == list(range(1, 9))
    # iterations recorded before the kill survive unchanged (a checkpoint may lag the metrics by one iteration,
    # which the resumed run then redoes identically)
    assert after[:len(before)] == before
    assert after == _records(straight)  # losses, scores, buffer sizes, faults: the same run
    a, b = _weights(killed), _weights(straight)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((killed / "summary.json").read_text())["score"] == \
        json.loads((straight / "summary.json").read_text())["score"]


def test_corrupted_or_mismatched_checkpoint_exits_2(teacher_file, tmp_path):
    run = tmp_path / "run"
    sets = _sets(SMALL + ["distill.iterations=1", "distill.eval_episodes=2"])
    assert subprocess.run(_cmd("distill", PENDULUM, "--teacher", teacher_file, "--run-dir", run, *sets),
                          capture_output=True, timeout=600).returncode == 0
    mismatch = subprocess.run(_cmd("distill", "--resume", run, "--set", "student.history=3"),
                              capture_output=True, text=True, timeout=300)
    assert mismatch.returncode == 2 and "does not fit the config: student history" in mismatch.stderr
    longer = subprocess.run(_cmd("distill", "--resume", run, "--set", "distill.steps_per_iteration=30"),
                            capture_output=True, text=True, timeout=300)
    assert longer.returncode == 2 and "stores its buffer rows as" in longer.stderr
    ckpt = run / "student" / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])  # cut short on disk
    cut = subprocess.run(_cmd("distill", "--resume", run), capture_output=True, text=True, timeout=300)
    assert cut.returncode == 2 and "corrupted checkpoint" in cut.stderr
    assert len([line for line in cut.stderr.splitlines() if line.strip()]) == 1


def test_atomic_save_never_leaves_a_partial_file(tmp_path):
    from robodistill.runs import atomic_torch_save

    target = tmp_path / "ckpt.pt"
    atomic_torch_save({"a": torch.zeros(3)}, target)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("crash while writing")

    with pytest.raises(RuntimeError):
        atomic_torch_save({"a": torch.ones(3), "b": Boom()}, target)
    assert torch.equal(torch.load(target)["a"], torch.zeros(3))  # the complete old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temporary left behind


def test_unstable_parameters_are_counted_and_never_reach_the_buffer(tiny_teacher, tmp_path):
    import robodistill as rd
    from robodistill.distill.runner import DaggerRunner
    from robodistill.runs import MetricsLog, read_metrics

    cfg = rd.load_config(PENDULUM, overrides=SMALL + ["distill.iterations=2", "distill.eval_episodes=4",
                                                      "env.randomization.joint_damping=[-60, 40]"])
    info = DaggerRunner(cfg, tiny_teacher, tmp_path, MetricsLog(tmp_path, tensorboard=False)).run()
    assert info["physics_faults"] > 0
    assert read_metrics(tmp_path, "distill")[-1]["physics_faults"] == info["physics_faults"]
    student = torch.load(tmp_path / "student" / "student.pt", weights_only=True)["state_dict"]
    assert all(torch.isfinite(v).all() for v in student.values())


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")
def test_torchrun_two_processes_stay_in_sync_and_learn(teacher_file, tmp_path):
    """Two ranks under torchrun: every iteration recorded once by rank 0, weights and normalizer statistics
    bit-identical on both ranks after every update, both ranks' samples counted. (The collectives' math is
    checked against one process in tests/test_distributed.py.)"""
    run = tmp_path / "ddp"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
                           "-m", "robodistill", "distill", str(PENDULUM), "--teacher", str(teacher_file),
                           "--run-dir", str(run), *_sets(SMALL + ["distill.iterations=4", "distill.num_envs=16"])],
                          capture_output=True, text=True, timeout=900, env={**os.environ, "PYTHONFAULTHANDLER": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = _records(run)
    assert [r["step"] for r in records] == list(range(1, 5))
    assert all(r["weights_in_sync"] and r["world_size"] == 2 for r in records)
    assert [r["env_steps"] for r in records] == [2 * 16 * 50 * k for k in range(1, 5)]
    assert records[-1]["loss"] < records[0]["loss"]
    assert (run / "student" / "student.pt").is_file() and "score" in json.loads((run / "summary.json").read_text())


def test_teacher_training_resumes_from_its_sb3_checkpoint(tmp_path):
    run = tmp_path / "teacher"
    sets = _sets(["teacher.total_timesteps=2048", "teacher.num_envs=8", "teacher.n_steps=128",
                  "teacher.batch_size=256", "teacher.n_epochs=1", "teacher.checkpoint_every=1024"])
    first = subprocess.run(_cmd("train-teacher", PENDULUM, "--run-dir", run, *sets), capture_output=True, text=True,
                           timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    assert (run / "teacher" / "sb3_model.zip").is_file() and (run / "teacher" / "vecnormalize.pkl").is_file()
    again = subprocess.run(_cmd("train-teacher", "--resume", run, "--set", "teacher.total_timesteps=4096",
                                "--set", "teacher.learning_rate=0.000123", "--set", "teacher.ent_coef=0.0042"),
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads((run / "summary.json").read_text())["teacher_env_steps"] >= 4096
    from stable_baselines3 import PPO

    resumed = PPO.load(str(run / "teacher" / "sb3_model.zip"), device="cpu")
    assert resumed.learning_rate == 0.000123 and resumed.ent_coef == 0.0042  # the overrides reached SB3
    assert resumed.policy.optimizer.param_groups[0]["lr"] == pytest.approx(0.000123)
    assert "total_timesteps: 4096" in (run / "config.yaml").read_text()  # the run records what it went on with
    (earlier,) = run.glob("config.*.yaml")
    assert "total_timesteps: 2048" in earlier.read_text()
    (run / "teacher" / "sb3_model.zip").write_bytes(b"cut short")
    bad = subprocess.run(_cmd("train-teacher", "--resume", run), capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "corrupted SB3 checkpoint" in bad.stderr

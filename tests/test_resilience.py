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


def test_sigkill_then_resume_records_every_iteration_once(trained_teacher_file, tmp_path):
    sets = _sets(SMALL + ["distill.iterations=8"])
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cmd("distill", PENDULUM, "--teacher", trained_teacher_file, "--run-dir", killed, *sets),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:
        if (killed / "metrics.jsonl").is_file() and len(_steps(killed)) >= 3:
            break
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(_steps(killed))
    assert 3 <= done_before < 8
    resumed = subprocess.run(_cmd("distill", "--resume", killed), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _steps(killed) == list(range(1, 9))

    straight = tmp_path / "straight"
    ok = subprocess.run(_cmd("distill", PENDULUM, "--teacher", trained_teacher_file, "--run-dir", straight, *sets),
                        capture_output=True, text=True, timeout=600)
    assert ok.returncode == 0, ok.stderr[-2000:]
    a = json.loads((killed / "summary.json").read_text())["score"]
    b = json.loads((straight / "summary.json").read_text())["score"]
    assert abs(a - b) < 0.25, (a, b)


def test_corrupted_or_mismatched_checkpoint_exits_2(trained_teacher_file, tmp_path):
    run = tmp_path / "run"
    sets = _sets(SMALL + ["distill.iterations=1", "distill.eval_episodes=2"])
    assert subprocess.run(_cmd("distill", PENDULUM, "--teacher", trained_teacher_file, "--run-dir", run, *sets),
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
    student = torch.load(tmp_path / "student" / "student.pt", weights_only=False)["state_dict"]
    assert all(torch.isfinite(v).all() for v in student.values())


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")
def test_torchrun_two_processes_stay_in_sync_and_score_like_one(trained_teacher_file, tmp_path):
    sets = _sets(SMALL + ["distill.iterations=12", "distill.num_envs=16"])

    def torchrun(run):  # noqa: ANN001, ANN202
        return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
                               "-m", "robodistill", "distill", str(PENDULUM), "--teacher", str(trained_teacher_file),
                               "--run-dir", str(run), *sets], capture_output=True, text=True, timeout=900,
                              env={**os.environ, "PYTHONFAULTHANDLER": "1"})  # a native abort shows its Python stack

    ddp = tmp_path / "ddp"
    proc = torchrun(ddp)
    if proc.returncode != 0 and "Signal 6 (SIGABRT)" in proc.stderr:
        # once in about 50 runs here a gloo rank aborted natively ("terminate called without an active exception")
        # with no Python error; not root-caused. A second abort in a row still fails the test.
        ddp = tmp_path / "ddp_again"
        proc = torchrun(ddp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in (ddp / "metrics.jsonl").read_text().splitlines()
               if '"stage": "distill"' in line]
    assert [r["step"] for r in records] == list(range(1, 13))
    assert all(r["weights_in_sync"] and r["world_size"] == 2 for r in records)
    ddp_score = json.loads((ddp / "summary.json").read_text())["score"]

    singles = []
    for seed in (0, 1):
        run = tmp_path / f"single{seed}"
        # one process with twice the environments and twice the batch sees the same samples per iteration and
        # per update as the two ranks together (their gradients are averaged over both ranks' batches)
        p = subprocess.run(_cmd("distill", PENDULUM, "--teacher", trained_teacher_file, "--run-dir", run,
                                *_sets(SMALL + ["distill.iterations=12", "distill.num_envs=32",
                                                "distill.batch_size=512", f"seed={seed}"])),
                           capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr[-2000:]
        singles.append(json.loads((run / "summary.json").read_text())["score"])
    spread = max(abs(singles[0] - singles[1]), 0.1)
    assert abs(ddp_score - sum(singles) / 2) <= 2 * spread, (ddp_score, singles)


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

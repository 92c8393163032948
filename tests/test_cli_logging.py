"""A run's log file lives as long as the run: several runs in one process never write into each other's log.txt."""

from __future__ import annotations

import logging

from conftest import PENDULUM
from robodistill.cli import main

# one PPO rollout of the pendulum: the cheapest command that opens a run
TEACHER = ["--set", "teacher.total_timesteps=256", "--set", "teacher.num_envs=2", "--set", "teacher.n_steps=128",
           "--set", "teacher.batch_size=128", "--set", "teacher.n_epochs=1"]


def _run_log_handlers(tmp_path) -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers
            if isinstance(h, logging.FileHandler) and str(tmp_path) in h.baseFilename]


def test_two_runs_in_one_process_keep_their_logs_apart(tmp_path):
    root = logging.getLogger()
    before = list(root.handlers)  # pytest's own handlers stay; the runs' must go
    first, second = tmp_path / "first", tmp_path / "second"
    assert main(["train-teacher", str(PENDULUM), "--run-dir", str(first), *TEACHER]) == 0
    assert root.handlers == before and not _run_log_handlers(tmp_path)
    assert main(["train-teacher", str(PENDULUM), "--run-dir", str(second), "--set", "seed=1", *TEACHER]) == 0
    assert root.handlers == before and not _run_log_handlers(tmp_path)
    one, two = (first / "log.txt").read_text(), (second / "log.txt").read_text()
    assert f"run directory: {first}" in one and f"run directory: {second}" in two
    assert str(second) not in one and str(first) not in two
    # a resumed run appends to its own log, and lets go of it too
    assert main(["train-teacher", "--resume", str(first), "--set", "teacher.total_timesteps=512"]) == 0
    assert root.handlers == before
    assert (first / "log.txt").read_text().startswith(one) and str(second) not in (first / "log.txt").read_text()


def test_a_crash_leaves_its_traceback_in_the_run_log_and_detaches_it(tmp_path, monkeypatch, capsys):
    import robodistill.teacher

    def crash(*args, **kwargs):
        raise RuntimeError("simulated crash inside the run")

    monkeypatch.setattr(robodistill.teacher, "train_teacher", crash)
    root = logging.getLogger()
    before = list(root.handlers)
    run = tmp_path / "run"
    assert main(["train-teacher", str(PENDULUM), "--run-dir", str(run), *TEACHER]) == 1
    assert root.handlers == before
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("robodistill: failed: RuntimeError"), err
    text = (run / "log.txt").read_text()
    assert "Traceback (most recent call last)" in text and "RuntimeError: simulated crash inside the run" in text
    assert text.count("Traceback (most recent call last)") == 1

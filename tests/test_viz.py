"""robodistill.viz: offscreen video, the viewer (under Xvfb), its key handling, the report and bad input."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from robodistill.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "teacher.total_timesteps=4096", "teacher.num_envs=8", "teacher.n_steps=256", "teacher.batch_size=256",
    "teacher.n_epochs=2", "distill.iterations=2", "distill.num_envs=16", "distill.steps_per_iteration=20",
    "distill.updates_per_iteration=10", "distill.batch_size=64", "distill.eval_episodes=4",
    "export.parity_steps=50", "export.parity_envs=2",
]


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **extra}
    return env


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A complete tiny pendulum run (teacher, student, ONNX export), made once for this module."""
    run = tmp_path_factory.mktemp("viz") / "run"
    cmd = [sys.executable, "-m", "robodistill", "pipeline", str(ROOT / "configs" / "pendulum.yaml"),
           "--run-dir", str(run)]
    for item in TINY:
        cmd += ["--set", item]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return run


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """The viz commands pin torch to one thread; give later tests their default back."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _frames(path: Path) -> list[np.ndarray]:
    from PIL import Image, ImageSequence

    with Image.open(path) as img:
        return [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(img)]


# ---- render -------------------------------------------------------------------------------------------


def _render(run_dir, out, names, steps, width=160, height=120):
    """``render_video`` as the render command calls it, returning its stats (with each lane's trajectory)."""
    from robodistill.viz.common import load_policy, load_run
    from robodistill.viz.render import render_video

    cfg = load_run(run_dir)
    policies = {name: load_policy(run_dir, name, cfg) for name in names}
    return render_video(cfg, policies, out, steps, seed=0, width=width, height=height)


def test_render_gif_side_by_side_differs_between_policies(run_dir, tmp_path, capsys):
    out = tmp_path / "teacher_random.gif"
    assert main(["render", str(run_dir), "--out", str(out), "--steps", "40", "--policies", "teacher,random",
                 "--width", "160", "--height", "120"]) == 0
    assert "41 frames" in capsys.readouterr().out
    frames = _frames(out)
    assert len(frames) == 41 and frames[0].shape == (120, 320, 3)
    for frame in (frames[0], frames[-1]):
        assert frame[:, :160].std() > 5 and frame[:, 160:].std() > 5  # not blank
    # the lanes start from the same episode and then move apart (compared as trajectories, not pixels)
    stats = _render(run_dir, tmp_path / "again.gif", ["teacher", "random"], 40)
    teacher, random = stats.trajectories["teacher"], stats.trajectories["random"]  # [41, nq]
    assert teacher.shape == random.shape == (41, 1)
    np.testing.assert_array_equal(teacher[0], random[0])
    assert np.abs(teacher[-10:] - random[-10:]).max() > 0.1


def test_render_student_and_onnx_play_the_same_episode(run_dir, tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    out = tmp_path / "student_onnx.mp4"
    stats = _render(run_dir, out, ["student", "onnx"], 30, height=128)
    import imageio.v2 as imageio

    frames = [f for f in imageio.get_reader(out)]
    assert len(frames) == 31 and frames[-1].shape == (128, 320, 3) and frames[-1][40:].std() > 5
    student, onnx = stats.trajectories["student"], stats.trajectories["onnx"]  # [31, nq]
    assert np.abs(student[-1] - student[0]).max() > 0.05  # the pole moves
    np.testing.assert_allclose(onnx, student, rtol=0, atol=1e-4)  # actions equal to float32 rounding


# ---- viewer -------------------------------------------------------------------------------------------


def _free_display() -> int:
    for n in range(90, 140):
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            return n
    pytest.skip("no free X display number for Xvfb")


def test_view_runs_under_xvfb_and_exits_cleanly(run_dir, tmp_path):
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb); the viewer needs a display")
    n = _free_display()
    xvfb = subprocess.Popen(["Xvfb", f":{n}", "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 10
        while not Path(f"/tmp/.X11-unix/X{n}").exists():
            if xvfb.poll() is not None or time.time() > deadline:
                pytest.skip(f"Xvfb :{n} did not start")
            time.sleep(0.1)
        cmd = [sys.executable, "-m", "robodistill", "view", str(run_dir), "--max-steps", "300", "--speed", "10",
               "--param", "pole_mass=1.2"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180,
                              env=_env(DISPLAY=f":{n}", MUJOCO_GL="glfw"))
    finally:
        xvfb.terminate()
        xvfb.wait(timeout=10)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "after 300 steps" in proc.stdout
    seconds = float(proc.stdout.rsplit(",", 1)[1].split()[0])
    assert seconds >= 300 * 0.05 / 10 * 0.95  # paced: 300 control steps of 50 ms at 10x real time


def test_viewer_keys_switch_push_restart_and_resample(run_dir):
    from robodistill.viz import viewer as V
    from robodistill.viz.common import load_run, push_velocity

    cfg = load_run(run_dir, params={"pole_mass": 1.2})
    policies, missing = V.load_policies(run_dir, cfg, "student", seed=0)
    assert set(policies) == {"student", "teacher", "onnx", "random"} and not missing
    driver = V.PolicyDriver(cfg, policies, "student", seed=0, command=None)
    try:
        kick = push_velocity(driver.model)
        start_state = driver.backend.env_physics_state(0)
        for _ in range(5):
            driver.step()
        V.handle_key(driver, ord("8"), kick, missing)
        assert driver.state.policy == "teacher"
        V.handle_key(driver, ord("9"), kick, missing)
        assert driver.state.policy == "onnx"
        qvel = driver.backend.sim_arrays().qvel[0].copy()
        V.handle_key(driver, V.KEY_UP, kick, missing)
        assert driver.backend.sim_arrays().qvel[0, 0] == pytest.approx(qvel[0] + kick[0])
        V.handle_key(driver, V.KEY_HOME, kick, missing)  # restart: same start, step 0
        assert driver.state.step == 0 and np.array_equal(driver.backend.env_physics_state(0), start_state)
        params = {k: float(v[0]) for k, v in driver.backend.params.items()}
        V.handle_key(driver, V.KEY_ENTER, kick, missing)  # new episode: resampled, pinned mass kept
        new = {k: float(v[0]) for k, v in driver.backend.params.items()}
        assert new["pole_mass"] == params["pole_mass"] == 1.2 and new["pole_length"] != params["pole_length"]
        V.handle_key(driver, V.KEY_SPACE, kick, missing)
        assert driver.state.paused
        texts = V.overlay_texts(driver)
        assert "onnx" in texts[0][3] and "pole_mass" in texts[0][2] and "1.2" in texts[0][3]
    finally:
        driver.close()


# ---- report -------------------------------------------------------------------------------------------


def test_report_writes_plots_and_markdown(run_dir, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", str(run_dir), "--out", str(out), "--grid", "2", "--episodes", "2",
                 "--params", "pole_mass,motor_strength"]) == 0
    for name in ("training.png", "robustness.png", "report.png"):
        assert (out / name).stat().st_size > 10_000, name
    md = (out / "report.md").read_text()
    assert "## Robustness" in md and "pole_mass" in md and "motor_strength" in md and "robustness.png" in md
    # one table row per pole_mass value: the training range [0.7, 1.3] widened by 25 % on each side
    assert "\n| 0.55 |" in md and "\n| 1.45 |" in md


# ---- bad input: exit 2, one line ----------------------------------------------------------------------


def _student_less_run(run_dir: Path, tmp_path: Path) -> Path:
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run_dir / "config.yaml", bare / "config.yaml")
    shutil.copytree(run_dir / "teacher", bare / "teacher")
    return bare


def test_a_teacher_in_training_renders_without_a_student(run_dir, tmp_path):
    bare = _student_less_run(run_dir, tmp_path)
    out = tmp_path / "teacher.gif"
    assert main(["render", str(bare), "--out", str(out), "--policies", "teacher,random", "--steps", "5"]) == 0
    assert out.stat().st_size > 1000


def test_view_without_display_exits_2_with_one_line(run_dir, monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main(["view", str(run_dir), "--max-steps", "5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs a display" in err and "render" in err


@pytest.mark.parametrize("case", ["no_student_view", "no_student_render", "unknown_policy_view",
                                  "unknown_policy_render", "bad_extension", "unknown_param", "missing_run",
                                  "command_for_pendulum", "bad_params_report"])
def test_bad_usage_exits_2_with_one_line(case, run_dir, tmp_path, capsys):
    run = str(run_dir)
    bare = str(_student_less_run(run_dir, tmp_path)) if case.startswith("no_student") else run
    argv = {
        "no_student_view": ["view", bare],
        "no_student_render": ["render", bare, "--out", str(tmp_path / "x.gif")],
        "unknown_policy_view": ["view", run, "--policy", "studnet"],
        "unknown_policy_render": ["render", run, "--out", str(tmp_path / "x.gif"), "--policies", "teacher,expert"],
        "bad_extension": ["render", run, "--out", str(tmp_path / "x.avi")],
        "unknown_param": ["render", run, "--out", str(tmp_path / "x.gif"), "--param", "pole_mas=1.2"],
        "missing_run": ["view", str(tmp_path / "nope")],
        "command_for_pendulum": ["view", run, "--command", "0.5,0,0"],
        "bad_params_report": ["report", run, "--params", "pole_mass,pole_lenght", "--out", str(tmp_path / "r")],
    }[case]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("robodistill: error:"), err
    if case == "unknown_param":
        assert "did you mean 'pole_mass'" in err
    if case == "no_student_view":
        assert "student" in err
    assert not (tmp_path / "x.gif").exists() and not (tmp_path / "r").exists()

"""The deploy kit in export/: OnnxController, sim2sim runner, reward table, isolation from robodistill and torch."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import robodistill as rd
from robodistill.onnx_export import OUTPUTS, export_run, load_session
from robodistill.student import build_student, student_spec

ROOT = Path(__file__).resolve().parents[1]
KIT = ROOT / "export"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"deploy_kit_{name}", KIT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ACTION_GAIN = 5.0  # the exported student's output layer, scaled so that its actions swing the pole
EPISODE_RTOL = 1e-6  # per-episode return agreement of deploy kit and torch: float32 rounding gives about 1e-8

controller = _load("controller")
rewards = _load("rewards")


@pytest.fixture(scope="module")
def exported(tiny_cfg, tmp_path_factory):
    """An untrained pendulum student whose torques matter (a strong, state-dependent feedback that reaches the
    actuator's limits), exported with its sim-to-sim verification (3 episodes)."""
    out = tmp_path_factory.mktemp("export")
    env = rd.make_env("pendulum", 1, seed=0)
    spec = student_spec(tiny_cfg, env.obs_dims["proprio"], env.action_dim, env.backend.action_offset,
                        env.backend.action_scale, "pendulum")
    env.close()
    torch.manual_seed(0)
    student = build_student(spec)
    student.normalizer.update(torch.randn(100, 3) * 2 + 1)
    with torch.no_grad():
        student.mean_head.weight.mul_(ACTION_GAIN)
    info = export_run(tiny_cfg, student.eval(), out, sim2sim_episodes=3)
    return out / "policy.onnx", info


def test_export_is_self_contained_and_sim2sim_matches_torch(exported):
    onnx_path, info = exported
    folder = onnx_path.parent
    assert {"policy.onnx", "policy.json", "pendulum.xml", "episodes.npz"} <= {p.name for p in folder.iterdir()}
    verification = json.loads((folder / "policy.json").read_text())["verification"]
    for key in ("torch_mean_return", "sim2sim_mean_return", "sim2sim_rel_diff", "onnx_max_abs_diff"):
        assert verification[key] == info[key]
    assert info["sim2sim_rel_diff"] < 0.02 and info["sim2sim_within_tolerance"]
    # episode by episode, not just on average: a kit that acts differently fails here
    assert info["sim2sim_max_episode_rel_diff"] < EPISODE_RTOL and info["sim2sim_lengths_equal"]
    assert info["sim2sim_horizon"] == 50 and info["sim2sim_horizon_max_rel_diff"] < EPISODE_RTOL
    episodes = np.load(folder / "episodes.npz")
    assert episodes["qpos"].shape == (3, 1) and episodes["reference_returns"].shape == (3,)


def test_controller_rejects_bad_input(exported):
    ctrl = controller.OnnxController(exported[0])
    good = np.zeros(3, dtype=np.float32)
    with pytest.raises(ValueError, match=r"shape \(3,\) or \(B, 3\)"):
        ctrl.step(np.zeros(4, dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        ctrl.step(np.zeros((1, 1, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="floating-point"):
        ctrl.step(np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="floating-point"):
        ctrl.step(np.array([0.0, 1.0, None], dtype=object))
    ctrl.step(good)
    state = ctrl.state
    with pytest.raises(ValueError, match=r"non-finite values: hinge_pos.cos0=nan"):
        ctrl.step(np.array([0.0, np.nan, 0.0]))
    with pytest.raises(ValueError, match=r"prev_action\[0\]=inf"):
        ctrl.step(np.array([0.0, 1.0, np.inf], dtype=np.float32))
    np.testing.assert_array_equal(ctrl.state, state)  # a rejected input leaves the state alone
    with pytest.raises(ValueError, match="batch size changed"):
        ctrl.step(np.zeros((2, 3)))
    ctrl.reset()
    assert ctrl.step(np.zeros((2, 3))).shape == (2, 1)


def test_controller_rejects_unreadable_files(tmp_path, exported):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(exported[0].read_bytes()[:200])
    with pytest.raises(ValueError, match="cannot load ONNX policy"):
        controller.OnnxController(bad)
    with pytest.raises(FileNotFoundError):
        controller.OnnxController(tmp_path / "missing.onnx")


def test_stateful_step_matches_the_session_run_by_hand(exported):
    ctrl = controller.OnnxController(exported[0])
    session = load_session(exported[0])
    meta = ctrl.metadata
    state = np.full((1, *meta["state_shape"]), meta["state_initial_value"], dtype=np.float32)
    rng = np.random.default_rng(0)
    for _ in range(12):
        obs = rng.standard_normal(3)  # float64 is accepted and cast
        action = ctrl.step(obs)
        expected, state = session.run(OUTPUTS, {"obs": obs[None].astype(np.float32), "state": state})
        assert action.dtype == np.float32 and action.shape == (1,)
        np.testing.assert_array_equal(action, expected[0])
    np.testing.assert_array_equal(ctrl.state, state)
    lat = ctrl.latency
    assert lat["calls"] == 12 and 0 < lat["p50_us"] <= lat["p99_us"]


def test_step_sensors_equals_step_on_the_assembled_observation(exported):
    by_sensors, by_obs = controller.OnnxController(exported[0]), controller.OnnxController(exported[0])
    prev = np.zeros(1)
    for angle in np.linspace(-3.0, 3.0, 9):
        a = by_sensors.step_sensors({"hinge_pos": np.array([angle]), "unused_sensor": np.zeros(2)})
        b = by_obs.step(np.array([np.sin(angle), np.cos(angle), prev[0]]))
        np.testing.assert_array_equal(a, b)
        prev = np.clip((b - by_obs.action_offset) / by_obs.action_scale, -1, 1)
    batch_sensors, batch_obs = controller.OnnxController(exported[0]), controller.OnnxController(exported[0])
    angles = np.array([[0.3], [-2.0]])
    np.testing.assert_array_equal(batch_sensors.step_sensors({"hinge_pos": angles}),
                                  batch_obs.step(np.concatenate([np.sin(angles), np.cos(angles), 0 * angles], 1)))
    with pytest.raises(ValueError, match=r"missing sensor reading\(s\) \['hinge_pos'\]"):
        by_sensors.step_sensors({"hinge_vel": np.zeros(1)})
    with pytest.raises(ValueError, match="observes no command"):
        by_sensors.step_sensors({"hinge_pos": np.zeros(1)}, command=np.zeros(3))


def test_sensor_transforms_match_the_task_code():
    from robodistill.tasks.base import transform_sensor

    rng = np.random.default_rng(1)
    quat = rng.standard_normal((16, 4))
    quat /= np.linalg.norm(quat, axis=1, keepdims=True)
    for transform, values in (("projected_gravity", quat), ("sincos", rng.standard_normal((16, 3))),
                              ("identity", rng.standard_normal((16, 2)))):
        np.testing.assert_allclose(controller.transform_sensor(values, transform),
                                   transform_sensor(values, transform, np), rtol=0, atol=1e-12)


@pytest.mark.parametrize("task", sorted(rewards.REWARDS))
def test_reward_table_matches_the_task(task):
    """The numpy copy in export/rewards.py gives the task's own reward and termination on visited states, every
    term counted (those a task scales by zero by default at 0.5)."""
    from robodistill.tasks import get_task_class

    cls = get_task_class(task)
    assert rewards.REWARDS[task].REWARD_SCALES == cls.REWARD_SCALES  # the same terms and defaults
    assert getattr(rewards.REWARDS[task], "REWARD_PARAMS", {}) == cls.REWARD_PARAMS
    scales = {term: scale or 0.5 for term, scale in cls.REWARD_SCALES.items()}
    env = rd.make_env(cls(reward_scales=scales), 4, seed=3, num_threads=1)
    backend = env.backend
    rng = np.random.default_rng(0)
    table = rewards.REWARDS[task](backend.model, {"decimation": env.task.decimation, "reward_scales": scales})
    try:
        env.reset()
        for _ in range(5):
            action = torch.from_numpy(rng.uniform(-1, 1, (4, env.action_dim))).float()
            env.step(action)
            sim = backend.sim_arrays()
            a, prev = rng.uniform(-1, 1, (2, 4, env.action_dim))
            command = backend.command
            expected = env.task.reward(sim, a, prev, command, np)
            got = table.reward(sim.qpos, sim.qvel, sim.sensordata, a, prev, command)
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
            np.testing.assert_array_equal(table.terminated(sim.qpos, sim.qvel, sim.sensordata, command),
                                          np.asarray(env.task.terminated(sim, command, np), dtype=bool))
    finally:
        env.close()


def test_field_edge_truncation_matches_the_task():
    """The quadruped ends an episode (truncated, not fallen) near its height field's edge; the kit must too, or its
    episodes run on where the student's ended."""
    env = rd.make_env("quadruped", 8, seed=4, num_threads=1)
    try:
        env.reset()
        sim = env.backend.sim_arrays()
        qpos = sim.qpos.copy()
        qpos[:, 0] = np.linspace(-6.0, 6.0, 8)  # across the field and beyond its edges
        qpos[:, 1] = np.linspace(4.0, -4.0, 8)
        moved = type(sim)(qpos, sim.qvel, sim.sensordata)
        expected = np.asarray(env.task.out_of_bounds(moved, env.backend.params, np), dtype=bool)
        got = [bool(rewards.QuadrupedReward(env.backend.env_model(i), {"decimation": env.task.decimation})
                    .truncated(qpos[i:i + 1], sim.qvel[i:i + 1], sim.sensordata[i:i + 1], None)[0]) for i in range(8)]
        assert got == expected.tolist() and 0 < sum(got) < 8
    finally:
        env.close()


def test_sim2sim_cli_prints_one_json_object(exported):
    proc = subprocess.run([sys.executable, str(KIT / "sim2sim.py"), str(exported[0]), "--episodes", "2", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    assert out["episodes"] == 2 and np.isfinite(out["mean_return"]) and "std_return" in out
    recorded = np.load(exported[0].parent / "episodes.npz")
    np.testing.assert_allclose(out["returns"], recorded["reference_returns"][:2], rtol=EPISODE_RTOL)
    np.testing.assert_array_equal(out["lengths"], recorded["reference_lengths"][:2])
    assert np.ptp(recorded["reference_returns"]) > 1.0  # episodes that differ: the policy's torques matter


def test_sim2sim_bad_usage_exits_2_with_one_line(tmp_path, exported):
    cases = [[str(tmp_path / "missing.onnx")], [str(exported[0]), "--mjcf", str(tmp_path / "none.xml")],
             [str(exported[0]), "--episodes", "99"]]
    for args in cases:
        proc = subprocess.run([sys.executable, str(KIT / "sim2sim.py"), *args], capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


BLOCKER = """
import runpy, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('robodistill', 'torch'):
            raise ImportError(f'{name} is blocked: the deploy kit must not need it')
sys.meta_path.insert(0, Block())
script, *args = sys.argv[1:]
sys.argv = [script, *args]
try:
    runpy.run_path(script, run_name='__main__')
finally:
    assert not any(m.split('.')[0] in ('robodistill', 'torch') for m in sys.modules)
"""


def test_deploy_kit_runs_without_robodistill_or_torch(exported, tmp_path):
    """Isolated interpreter (-I: no cwd, PYTHONPATH or user site) with imports of robodistill and torch blocked."""
    for script, args in (("controller.py", [str(exported[0])]),
                         ("sim2sim.py", [str(exported[0]), "--episodes", "1", "--json"])):
        proc = subprocess.run([sys.executable, "-I", "-c", BLOCKER, str(KIT / script), *args], capture_output=True,
                              text=True, timeout=120, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert isinstance(json.loads(proc.stdout.strip().splitlines()[-1]), dict)


def test_eval_onnx_on_a_corrupted_or_truncated_file_exits_2(tiny_cfg, tmp_path, exported, capsys):
    from robodistill.cli import main
    from robodistill.config import save_config
    from robodistill.teacher import Teacher

    run = tmp_path / "run"
    (run / "export").mkdir(parents=True)
    save_config(tiny_cfg, run / "config.yaml")
    env = rd.make_env("pendulum", 1, seed=0)
    env.close()
    teacher = Teacher({"task": "pendulum", "algo": "ppo", "obs_dim": env.obs_dims["privileged"], "action_dim": 1,
                       "net_arch": [16], "activation": "tanh", "clip_obs": 10.0, "epsilon": 1e-8,
                       "has_value": True})  # untrained: eval must fail on the ONNX file before using it
    teacher.save(run / "teacher" / "teacher.pt")
    good = exported[0].read_bytes()
    for content in (good[: len(good) // 2], b"not an onnx file at all"):
        (run / "export" / "policy.onnx").write_bytes(content)
        capsys.readouterr()
        assert main(["eval", str(run), "--policy", "onnx", "--episodes", "1"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "cannot load ONNX policy" in err[0]


# ---- reward scales travel with the policy ----------------------------------------------------------------

QUADRUPED = ROOT / "configs" / "quadruped.yaml"
SCALED = ["task.reward_scales.termination=-100", "task.reward_scales.tracking_lin_vel=2.0",
          "task.reward_scales.feet_air=0.3", "task.reward_scales.torques=-0.001", "task.reward_scales.base_height=0.5",
          "task.reward_params.tracking_sigma=0.1", "task.reward_params.base_height_target=0.27", "env.num_threads=1"]


def _untrained_student(cfg):
    from robodistill.env import env_from_config

    env = env_from_config(cfg, 1, seed=0)
    spec = student_spec(cfg, env.obs_dims["proprio"], env.action_dim, env.backend.action_offset,
                        env.backend.action_scale, cfg.task.name)
    env.close()
    torch.manual_seed(0)
    return build_student(spec).eval()


def test_reward_table_scores_with_the_policys_reward_scales():
    """A quadruped run under non-default reward scales and parameters: the table built from its export metadata gives
    the task's reward on visited states and on fallen ones (the fall penalty), where the defaults would not."""
    from robodistill.env import env_from_config
    from robodistill.onnx_export import policy_metadata
    from robodistill.tasks import get_task_class

    assert rewards.QuadrupedReward.REWARD_SCALES == get_task_class("quadruped").REWARD_SCALES  # same terms, defaults
    cfg = rd.load_config(QUADRUPED, overrides=SCALED)
    env = env_from_config(cfg, 4, seed=3)
    backend = env.backend
    meta = json.loads(json.dumps(policy_metadata(cfg, env, _untrained_student(cfg))))  # as the ONNX file holds it
    assert meta["reward_scales"] == env.task.reward_scales and meta["reward_scales"]["termination"] == -100.0
    assert meta["reward_params"] == env.task.reward_params and meta["reward_params"]["tracking_sigma"] == 0.1
    table = rewards.REWARDS["quadruped"](backend.model, meta)
    defaults = rewards.REWARDS["quadruped"](backend.model, {"decimation": meta["decimation"]})  # an older export
    rng = np.random.default_rng(0)
    differs = {"visited": False, "fallen": False}  # where the default scales would score otherwise
    try:
        env.reset()
        for _ in range(5):
            env.step(torch.from_numpy(rng.uniform(-1, 1, (4, env.action_dim))).float())
            sim = backend.sim_arrays()
            fallen = sim._replace(qpos=sim.qpos.copy())
            fallen.qpos[::2, 2] = 0.05  # half the batch below the minimum base height
            command = backend.command
            assert np.asarray(env.task.terminated(fallen, command, np))[::2].all()
            for kind, state in (("visited", sim), ("fallen", fallen)):
                a, prev = rng.uniform(-1, 1, (2, 4, env.action_dim))
                expected = env.task.reward(state, a, prev, command, np)
                got = table.reward(state.qpos, state.qvel, state.sensordata, a, prev, command)
                np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
                old = defaults.reward(state.qpos, state.qvel, state.sensordata, a, prev, command)
                differs[kind] |= not np.allclose(old, expected, rtol=1e-6, atol=0.0)
    finally:
        env.close()
    assert all(differs.values()), differs
    for task, scales in (("quadruped", {"terminaton": -100.0}), ("pendulum", {"termination": -1.0})):
        with pytest.raises(ValueError, match="reward table lacks"):  # never scored silently without a term
            rewards.REWARDS[task](backend.model, {"decimation": 4, "reward_scales": scales})
    with pytest.raises(ValueError, match="reward table lacks"):  # nor with a parameter it does not know
        rewards.REWARDS["quadruped"](backend.model, {"decimation": 4, "reward_params": {"tracking_sigm": 0.1}})


def test_export_under_non_default_reward_scales_reproduces_the_student(tmp_path):
    """The README's quadruped workflow scores with termination -100: the deploy kit must score the same way.

    Measured here (untrained student, 4 nominal episodes of 5 control steps): deploy kit vs torch 9.7e-5 apart
    with the scales in the metadata, 68 % apart when the kit scored with its defaults. Longer episodes drift
    apart through contacts whatever the scales (about 1 % at 100 steps with the default scales too), so the
    episodes are kept short for a tight bound.
    """
    cfg = rd.load_config(QUADRUPED, overrides=[*SCALED, "env.episode_length=5", "export.parity_steps=20",
                                               "export.parity_envs=2"])
    info = export_run(cfg, _untrained_student(cfg), tmp_path, sim2sim_episodes=4)
    meta = json.loads((tmp_path / "policy.json").read_text())
    assert meta["reward_scales"]["termination"] == -100.0 and meta["reward_scales"]["tracking_lin_vel"] == 2.0
    assert info["sim2sim_rel_diff"] < 1e-3, info


def test_sim2sim_reports_the_share_of_episodes_that_failed(tmp_path):
    """An untrained hopper student falls: the kit counts the episodes a termination ended, not the truncated ones."""
    cfg = rd.load_config(Path(__file__).resolve().parents[1] / "configs" / "hopper.yaml",
                         overrides=["env.episode_length=22", "export.parity_steps=20", "export.parity_envs=2"])
    export_run(cfg, _untrained_student(cfg), tmp_path, sim2sim_episodes=6)
    proc = subprocess.run([sys.executable, str(KIT / "sim2sim.py"), str(tmp_path / "policy.onnx"), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    ended_early = np.asarray(out["lengths"]) < 22
    assert 0 < ended_early.sum() < len(ended_early), out["lengths"]  # some fell, some lasted the episode
    assert out["failure_rate"] == pytest.approx(ended_early.mean())

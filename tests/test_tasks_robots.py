"""The hopper and quadruped tasks: models, shapes, randomization, termination, standing, terrain, jax purity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import robodistill as rd
from robodistill.sim.compile import load_model
from robodistill.tasks import get_task_class
from robodistill.tasks.base import SimArrays

ROBOTS = ["hopper", "quadruped"]


def _labels(env: rd.BatchedEnv, name: str) -> int:
    """Index of the first entry of term ``name`` in the privileged observation."""
    return env.layout.labels("privileged").index(name)


@pytest.mark.parametrize("task", ROBOTS)
def test_model_compiles_and_mjx_accepts_it(task: str) -> None:
    mjx = pytest.importorskip("mujoco.mjx")
    model = load_model(get_task_class(task)())
    assert model.nu == {"hopper": 3, "quadruped": 12}[task]
    mjx.put_model(model)  # primitives (and a height field) only: raises nothing


@pytest.mark.parametrize("task", ROBOTS)
def test_random_actions_shapes_and_finite(task: str) -> None:
    env = rd.make_env(task, 4, seed=0)
    obs = env.reset()
    assert obs["proprio"].shape == (4, env.obs_dims["proprio"])
    assert obs["privileged"].shape == (4, env.obs_dims["privileged"])
    assert env.dt == pytest.approx(0.02)
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        obs, reward, terminated, truncated, _ = env.step(torch.rand(4, env.action_dim, generator=g) * 2 - 1)
        assert torch.isfinite(obs["proprio"]).all() and torch.isfinite(obs["privileged"]).all()
        assert torch.isfinite(reward).all() and reward.shape == (4,)
    assert env.physics_faults == 0
    env.close()


@pytest.mark.parametrize("task", ROBOTS)
def test_randomization_changes_models_and_is_seeded(task: str) -> None:
    fields = get_task_class(task).model_fields
    a, b, c = (rd.make_env(task, 3, seed=s) for s in (7, 7, 8))
    for env in (a, b, c):
        env.reset()
    snap = lambda env: [{f: getattr(env.backend.env_model(i), f).copy() for f in fields}  # noqa: E731
                        for i in range(env.num_envs)]
    first = snap(a)
    # the environments of one batch differ; the same seed gives the same models, another seed others
    assert not np.allclose(first[0]["geom_friction"], first[1]["geom_friction"])
    for f in fields:
        assert all(np.array_equal(x[f], y[f]) for x, y in zip(first, snap(b)))
    assert not np.allclose(first[0]["geom_friction"], snap(c)[0]["geom_friction"])
    a.reset()  # a new episode resamples every environment's parameters
    assert not np.allclose(first[0]["geom_friction"], snap(a)[0]["geom_friction"])
    for env in (a, b, c):
        env.close()


def test_hopper_terminates_when_it_falls() -> None:
    env = rd.make_env("hopper", 4, seed=0)
    env.reset()
    h, p = _labels(env, "torso_height"), _labels(env, "imu_pitch")
    ended = torch.zeros(4, dtype=torch.bool)
    for _ in range(150):  # full thigh torque tips the hopper over
        obs, _, terminated, truncated, info = env.step(torch.tensor([[1.0, 0.0, 0.0]]).repeat(4, 1))
        assert not truncated.any()
        if terminated.any():
            final = info["final_obs"]["privileged"]
            # sensors lag qpos (which termination reads) by one physics substep of 5 ms
            fallen = (final[:, h] < 0.72) | (final[:, p].abs() > 0.19)
            assert fallen.all()
            ended[info["final_env_ids"]] = True
    assert ended.all()
    env.close()


def test_quadruped_stands_with_zero_action() -> None:
    env = rd.make_env("quadruped", 4, seed=0, randomize=False)
    env.reset()
    g = _labels(env, "imu_quat.gravity_z")
    for _ in range(50):  # 1 s: the PD targets of the home pose hold it up
        obs, _, terminated, truncated, _ = env.step(torch.zeros(4, 12))
        assert not (terminated | truncated).any()
    height = torch.as_tensor(env.backend.sim_arrays().qpos[:, 2])
    assert (height > 0.2).all() and (height < 0.32).all()
    assert (obs["privileged"][:, g] < -0.99).all()  # upright
    contact = obs["privileged"][:, _labels(env, "foot_contact[0]"):][:, :4]
    assert (contact == 1).all()
    # standing on the flat spawn pad: every scan point is one foot radius below the foot
    scan = obs["privileged"][:, _labels(env, "terrain_heights[0]"):][:, :36]
    assert torch.allclose(scan, torch.full_like(scan, 0.02), atol=0.005)
    env.close()


def test_quadruped_spawns_with_its_lowest_foot_on_the_pad() -> None:
    env = rd.make_env("quadruped", 32, seed=3)
    obs = env.reset()
    scan = obs["privileged"][:, _labels(env, "terrain_heights[0]"):][:, :36].reshape(32, 4, 9)
    lowest = scan[:, :, 4].min(dim=1).values - 0.02  # each foot's own point, less the foot radius
    assert torch.allclose(lowest, torch.zeros(32), atol=1e-4), lowest
    env.close()


def test_terrain_heights_match_the_height_field() -> None:
    import mujoco

    env = rd.make_env("quadruped", 4, seed=3, randomize=True)
    env.reset()
    backend, task = env.backend, env.task
    rng = np.random.default_rng(0)
    rough_seen = False
    for i, model in enumerate(backend.env_model(j) for j in range(env.num_envs)):
        data = mujoco.MjData(model)
        mujoco.mj_forward(model, data)
        params = {k: v[i:i + 1] for k, v in backend.params.items()}
        xy = rng.uniform(-4.0, 4.0, size=(40, 2))
        h = task.terrain_height(xy[None, :, 0], xy[None, :, 1], params, np)[0]
        geom = np.zeros(1, np.int32)
        ray = np.array([5.0 - mujoco.mj_ray(model, data, np.array([x, y, 5.0]), np.array([0.0, 0.0, -1.0]),
                                            None, 1, -1, geom) for x, y in xy])
        assert np.abs(ray - h).max() < 0.006  # bilinear vs MuJoCo's triangles
        assert -0.071 <= h.min() and h.max() <= 0.061
        rough_seen |= h.max() - h.min() > 0.03
    assert rough_seen
    env.close()


def test_terrain_file_is_the_generated_bank() -> None:
    from robodistill.tasks.quadruped import TERRAIN_AMPLITUDE, TERRAIN_FILE, terrain_bank

    raw = np.fromfile(TERRAIN_FILE, dtype=np.int32, count=2)
    data = np.fromfile(TERRAIN_FILE, dtype=np.float32, offset=8).reshape(raw)
    expected = (terrain_bank() + TERRAIN_AMPLITUDE) / (2 * TERRAIN_AMPLITUDE)
    np.testing.assert_allclose(data, expected, atol=1e-6)


def test_quadruped_push_and_latency() -> None:
    task = get_task_class("quadruped")()
    model = load_model(task)
    task.bind(model)
    params = {p: np.full(2, spec.nominal) for p, spec in task.params.items()}
    params.update(push_step=np.array([5.0, 9.0]), push_vx=np.array([0.5, 0.5]), push_vy=np.array([-0.3, 0.2]),
                  latency=np.array([0.0, 0.25]))
    qvel = np.zeros((2, model.nv))
    kick = task.velocity_kick(np.array([5, 5]), qvel, params, np)
    np.testing.assert_allclose(kick[0, :2], [0.5, -0.3])
    assert not kick[1].any() and not kick[0, 2:].any()
    applied = task.applied_action(np.ones((2, 12)), np.zeros((2, 12)), params, np)
    np.testing.assert_allclose(applied[:, 0], [1.0, 0.75])


@pytest.mark.parametrize("task", ROBOTS)
def test_pure_functions_run_under_jax_jit(task: str) -> None:
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    from robodistill.tasks.observation import observe

    env = rd.make_env(task, 3, seed=1)
    env.reset()
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        env.step(torch.rand(3, env.action_dim, generator=g) * 2 - 1)
    be, tk = env.backend, env.task
    sim = be.sim_arrays()
    act = np.random.default_rng(0).uniform(-1, 1, size=(3, env.action_dim))

    def everything(sim, act, prev, cmd, params, nominal, steps, xp):
        proprio, privileged = observe(be.layout, tk, sim, prev, cmd, params, None, xp)
        return (proprio, privileged, tk.reward(sim, act, prev, cmd, xp), tk.terminated(sim, cmd, xp) * 1.0,
                tk.apply_params(nominal, params, xp), tk.applied_action(act, prev, params, xp),
                tk.velocity_kick(steps, sim.qvel, params, xp), tk.out_of_bounds(sim, params, xp))

    args = (sim, act, be.prev_action, be.command, be.params, be.nominal, be.steps)
    ref = everything(*args, np)
    to_jax = lambda t: jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype=jnp.float32)  # noqa: E731
                                              if a.dtype.kind == "f" else jnp.asarray(a), t)
    out = jax.jit(lambda *a: everything(SimArrays(*a[0]), *a[1:], jnp))(tuple(to_jax(x) for x in sim),
                                                                        *map(to_jax, args[1:]))
    flat_ref, flat_out = jax.tree_util.tree_leaves(ref), jax.tree_util.tree_leaves(out)
    assert len(flat_ref) == len(flat_out)
    for r, o in zip(flat_ref, flat_out):
        if r is None:
            continue
        np.testing.assert_allclose(np.asarray(o), np.asarray(r, dtype=np.float64), rtol=1e-3, atol=2e-3)
    env.close()


def test_shipped_hopper_teacher_fits_the_task_and_hops():
    """The teacher in assets/teachers/hopper loads, fits the task's sizes and beats random actions by far."""
    from pathlib import Path

    import robodistill as rd
    from robodistill.evaluation import RandomPolicy, TeacherPolicy, run_episodes
    from robodistill.teacher import Teacher

    root = Path(__file__).resolve().parents[1]
    teacher = Teacher.load(root / "assets" / "teachers" / "hopper")
    cfg = rd.load_config(root / "configs" / "hopper.yaml", overrides=["env.episode_length=200"])
    probe = rd.make_env("hopper", 1)
    teacher.check_compatible("hopper", probe.obs_dims["privileged"], probe.action_dim)
    probe.close()
    ret = run_episodes(cfg, TeacherPolicy(teacher), 4, seed=7).mean
    rnd = run_episodes(cfg, RandomPolicy(teacher.spec["action_dim"], 7), 4, seed=7).mean
    assert ret > rnd + 200, (ret, rnd)


def test_quadruped_tracking_metrics_from_traces():
    task = get_task_class("quadruped")()
    steps = task.SETTLE_STEPS + 100
    nan = np.full((4, steps), np.nan)
    cmd_vx = np.array([1.0, -0.5, 0.1, 0.8])[:, None] * np.ones((4, steps))
    vx = np.array([0.9, -0.6, 0.0, 0.0])[:, None] * np.ones((4, steps))  # 10 %, 20 %, untracked, fell
    vx[3, task.SETTLE_STEPS + 10:] = np.nan
    zeros = np.zeros((4, steps))
    traces = {"imu_vel[0]": vx, "command[0]": cmd_vx, "imu_vel[1]": zeros, "command[1]": zeros,
              "imu_gyro[2]": zeros + 0.5, "command[2]": zeros}
    fell = np.array([False, False, False, True])
    figures = task.episode_metrics(traces, fell)
    assert figures["tracked_episodes"] == 2  # the slow command and the fallen episode are left out
    assert figures["tracking_error_vx"] == pytest.approx(0.15)
    assert figures["yaw_rate_error"] == pytest.approx(0.5)
    assert figures["fall_rate_fast"] == pytest.approx(1 / 3)  # |vx| >= 0.5: 1.0, -0.5, 0.8; the 0.8 one fell
    assert figures["fall_rate_slow"] == 0.0
    assert figures["stall_rate"] == 0.0
    frozen = vx.copy()
    frozen[0] = 0.2  # a fifth of its 1.0 m/s command: stalled, where -0.6 for -0.5 is not
    assert task.episode_metrics({**traces, "imu_vel[0]": frozen}, fell)["stall_rate"] == pytest.approx(0.5)
    backwards = vx.copy()
    backwards[1] = 0.5  # as fast as commanded, the wrong way
    assert task.episode_metrics({**traces, "imu_vel[0]": backwards}, fell)["stall_rate"] == pytest.approx(0.5)
    assert np.isnan(task.episode_metrics({**traces, "imu_vel[0]": nan}, fell)["tracking_error_vx"])


def test_evaluation_counts_falls_and_reports_task_figures():
    from robodistill.evaluation import RandomPolicy, play

    env = rd.make_env("quadruped", 4, seed=2)
    result = play(env, RandomPolicy(env.action_dim, 0), env.reset())
    env.close()
    ended_early = result.lengths < env.episode_length  # a fall, or a truncation at the field's edge
    assert not (result.fell & ~ended_early).any()
    assert result.metrics["fall_rate"] == pytest.approx(result.fell.mean())
    assert {"tracking_error_vx", "vx_error_mps", "yaw_rate_error"} <= set(result.metrics)


def test_reward_scales_from_the_config_reach_the_reward():
    from robodistill.env import env_from_config

    base = rd.load_config(rd.__path__[0] + "/../configs/quadruped.yaml", ["task.reward_scales.termination=0"])
    cfg = rd.load_config(rd.__path__[0] + "/../configs/quadruped.yaml",
                         ["task.reward_scales.termination=-200", "task.reward_scales.tracking_lin_vel=3.0"])
    rewards = []
    for c in (base, cfg):
        env = env_from_config(c, 4, seed=1)
        env.reset()
        task, backend = env.task, env.backend
        sim = backend.sim_arrays()
        action = np.zeros((4, env.action_dim))
        rewards.append(task.reward(sim, action, action, backend.command, np))
        fallen = sim._replace(qpos=sim.qpos.copy())
        fallen.qpos[:, 2] = 0.0  # trunk on the ground: terminated
        assert task.terminated(fallen, backend.command, np).all()
        penalty = task.reward(fallen, action, action, backend.command, np)
        if c is cfg:
            assert task.reward_scales["tracking_lin_vel"] == 3.0
            assert np.all(penalty < -200 * task._dt + 0.2)  # the fall penalty lands after the clip at zero
        else:
            assert np.all(penalty >= 0.0)
        env.close()
    assert np.all(rewards[1] >= rewards[0]) and rewards[1].sum() > rewards[0].sum()  # tracking weighs 3x


@pytest.mark.parametrize("sigma", [None, 0.1])
def test_the_tracking_kernel_width_comes_from_the_config(sigma):
    """``task.reward_params.tracking_sigma`` sets legged_gym's kernel: 0.2 m/s off pays exp(-0.04 / sigma)."""
    overrides = [] if sigma is None else [f"task.reward_params.tracking_sigma={sigma}"]
    env = rd.make_env(rd.load_config(rd.__path__[0] + "/../configs/quadruped.yaml", overrides), 4, seed=1,
                      num_threads=1)
    env.reset()
    task, backend = env.task, env.backend
    command, action = backend.command, np.zeros((4, env.action_dim))
    sim = backend.sim_arrays()
    off = sim._replace(sensordata=sim.sensordata.copy())  # 0.2 m/s faster than commanded along x, exact along y
    off.sensordata[:, task._s["imu_vel"]] = np.stack([command[:, 0] + 0.2, command[:, 1], 0 * command[:, 0]], 1)
    tracked = task.reward_terms(off, action, action, command, np)["tracking_lin_vel"]
    np.testing.assert_allclose(tracked, np.exp(-0.04 / (sigma or 0.25)), rtol=1e-9)
    env.close()


def test_shipped_quadruped_teacher_fits_the_task_and_walks():
    """The teacher in assets/teachers/quadruped tracks its command far better than random actions."""
    from pathlib import Path

    from robodistill.evaluation import PairedEvaluator
    from robodistill.teacher import Teacher

    root = Path(__file__).resolve().parents[1]
    teacher = Teacher.load(root / "assets" / "teachers" / "quadruped")
    cfg = rd.load_config(root / "configs" / "quadruped.yaml", overrides=["env.episode_length=150"])
    with PairedEvaluator(cfg, teacher, episodes=8, seed=7) as evaluator:
        walked, rnd = evaluator.teacher_result, evaluator.random_result
    assert walked.mean > 3 * rnd.mean, (walked.mean, rnd.mean)
    assert walked.metrics["vx_error_mps"] < 0.6 * rnd.metrics["vx_error_mps"], (walked.metrics, rnd.metrics)


def test_feet_trot_pays_only_for_a_diagonal_pair_in_the_air():
    """``feet_trot`` is 1 with exactly FL+RR or FR+RL off the ground under a moving command, else 0."""
    from robodistill.tasks.quadruped import LEGS

    env = rd.make_env("quadruped", 6, seed=0, randomize=False)
    env.reset()
    task, backend = env.task, env.backend
    sim = backend.sim_arrays()
    sim = sim._replace(sensordata=sim.sensordata.copy())
    in_air = [(), ("FL", "RR"), ("FR", "RL"), ("FL", "RL"), ("FL", "FR"), ("FL", "FR", "RR")]  # one row each
    for row, legs in enumerate(in_air):
        for leg in LEGS:
            sim.sensordata[row, task._s[f"{leg}_foot_touch"]] = 0.0 if leg in legs else 30.0
    command = np.tile([0.5, 0.0, 0.0], (6, 1))
    action = np.zeros((6, env.action_dim))
    trot = task.reward_terms(sim, action, action, command, np)["feet_trot"]
    np.testing.assert_array_equal(trot, [0, 1, 1, 0, 0, 0])
    standing = task.reward_terms(sim, action, action, 0 * command, np)["feet_trot"]
    np.testing.assert_array_equal(standing, np.zeros(6))  # no reward for stepping when told to stand
    env.close()


def test_quadruped_walking_off_the_field_truncates_the_episode():
    """Nearing the height field's edge ends the episode as a truncation (not a fall) on both backends' path."""
    env = rd.make_env("quadruped", 2, seed=0, randomize=False)
    env.reset()
    task, backend = env.task, env.backend
    sim = backend.sim_arrays()
    assert not task.out_of_bounds(sim, backend.params, np).any()  # spawned at a tile centre
    half = task._hf_half[0]
    backend.qpos[1, 0] -= 2 * half  # env 1: a field's width away, off the field whichever tile it spawned on
    np.testing.assert_array_equal(task.out_of_bounds(backend.sim_arrays(), backend.params, np), [False, True])
    _, _, terminated, truncated, info = env.step(torch.zeros(2, 12))
    assert truncated.tolist() == [False, True] and not terminated.any()
    assert info["final_env_ids"].tolist() == [1]  # env 1 was reset onto its spawn pad
    assert not task.out_of_bounds(backend.sim_arrays(), backend.params, np).any()
    env.close()


QUADRUPED_TINY = ["env.episode_length=100", "distill.num_envs=8", "distill.steps_per_iteration=32",
                  "distill.iterations=1", "distill.updates_per_iteration=2", "distill.batch_size=64",
                  "distill.eval_episodes=6", "student.hidden=[32]"]


def test_quadruped_run_reports_task_figures_and_eval_restricts_the_terrain(tmp_path, monkeypatch, capsys):
    """summary.json carries the quadruped's figures for teacher and student; ``eval --set
    env.randomization.terrain=[lo,hi]`` plays held-out episodes on that terrain only."""
    import json

    from robodistill.cli import main
    from robodistill.evaluation import PairedEvaluator

    run = tmp_path / "run"
    assert main(["distill", "configs/quadruped.yaml", "--teacher", "assets/teachers/quadruped", "--run-dir", str(run),
                 *[a for s in QUADRUPED_TINY for a in ("--set", s)]]) == 0
    summary = json.loads((run / "summary.json").read_text())
    for who in ("teacher", "student"):
        for figure in ("fall_rate", "fall_rate_fast", "fall_rate_slow", "tracking_error_vx", "vx_error_mps",
                       "vy_error_mps", "yaw_rate_error", "stall_rate"):
            assert f"{who}_{figure}" in summary, f"{who}_{figure}"
        assert 0.0 <= summary[f"{who}_fall_rate"] <= 1.0
    assert summary["teacher_vx_error_mps"] < 0.5  # the shipped teacher tracks its commands

    terrains = []
    init = PairedEvaluator.__init__

    def spy(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        init(self, *args, **kwargs)
        terrains.append(self.env.backend.params["terrain"].copy())  # the held-out episodes just played

    monkeypatch.setattr(PairedEvaluator, "__init__", spy)
    capsys.readouterr()
    for restriction in ([], ["--set", "env.randomization.terrain=[0.6,0.9]"]):
        assert main(["eval", str(run), "--episodes", "6", "--json", *restriction]) == 0
        assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["episodes"] == 6
    everywhere, restricted = terrains
    assert everywhere.min() < 0.6 or everywhere.max() > 0.9  # the config's [0, 1] range reaches outside
    assert ((restricted >= 0.6) & (restricted <= 0.9)).all()


def test_the_quadrupeds_accelerator_collision_set_fits_mjx_in_24_slots_and_still_detects_falls():
    mjx = pytest.importorskip("mujoco.mjx")
    from robodistill.errors import ConfigError
    from robodistill.tasks.quadruped import Quadruped

    full, accel = load_model(Quadruped()), load_model(Quadruped(collisions="accelerator"))
    slots = {name: mjx.make_data(m)._impl.contact.dist.shape[0] for name, m in (("full", full), ("accel", accel))}
    assert slots == {"full": 76, "accel": 24}
    env = rd.make_env(Quadruped(collisions="accelerator", randomize=False), 4, seed=0)
    env.reset()
    env.backend.qpos[:, 3:7] = [0.0, 1.0, 0.0, 0.0]  # upside down: the trunk lands on the ground
    env.backend.qpos[:, 2] = 0.25
    fell = torch.zeros(4, dtype=torch.bool)
    for _ in range(40):
        _, _, terminated, _, _ = env.step(torch.zeros(4, 12))
        fell |= terminated
    assert fell.all()
    with pytest.raises(ConfigError, match="declares no accelerator collision set"):
        get_task_class("hopper")(collisions="accelerator")

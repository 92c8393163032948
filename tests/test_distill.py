"""DAgger: the teacher stays frozen, β-mixing, the loss goes down, the buffer is bounded."""

from __future__ import annotations

import json

import pytest
import torch

from robodistill.config import BetaConfig
from robodistill.distill.algorithm import beta_at, distillation_loss, mix_actions
from robodistill.distill.buffer import AggregationBuffer
from robodistill.distill.runner import DaggerRunner
from robodistill.precision import update_dtype
from robodistill.runs import MetricsLog, read_metrics


def test_beta_schedules():
    lin = BetaConfig(schedule="linear", start=1.0, end=0.0, decay_iterations=4)
    assert [beta_at(lin, k) for k in range(6)] == [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    assert beta_at(BetaConfig(schedule="constant", start=0.3), 10) == 0.3
    exp = BetaConfig(schedule="exponential", start=1.0, end=0.1, rate=0.5)
    assert [beta_at(exp, k) for k in range(5)] == [1.0, 0.5, 0.25, 0.125, 0.1]


def test_mixing_executes_the_teacher_about_beta_of_the_time():
    gen = torch.Generator().manual_seed(0)
    student, teacher = torch.zeros(20000, 2), torch.ones(20000, 2)
    action, used = mix_actions(student, teacher, 0.3, gen)
    assert abs(used.float().mean().item() - 0.3) < 0.015
    assert torch.equal(action[used], teacher[used]) and torch.equal(action[~used], student[~used])


def test_fifo_buffer_respects_capacity_and_keeps_the_newest():
    buf = AggregationBuffer(10, {"x": (1,)}, mode="fifo")
    for k in range(4):
        buf.add(x=torch.full((4, 1), float(k)))
    assert len(buf) == 10
    assert sorted(buf.data["x"].flatten().tolist()) == [1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 3.0, 3.0, 3.0, 3.0]


def test_reservoir_buffer_is_bounded_and_unbiased():
    buf = AggregationBuffer(100, {"x": (1,)}, mode="reservoir", generator=torch.Generator().manual_seed(0))
    for k in range(100):
        buf.add(x=torch.full((10, 1), float(k)))
    assert len(buf) == 100
    assert 30 < buf.data["x"].mean().item() < 70  # a uniform sample of 0..99, not the newest


def test_on_policy_buffer_forgets_each_iteration():
    buf = AggregationBuffer(100, {"x": (1,)}, mode="on_policy")
    buf.add(x=torch.zeros(30, 1))
    buf.start_iteration()
    buf.add(x=torch.ones(5, 1))
    assert len(buf) == 5 and buf.sample(50)["x"].min() == 1.0


def test_buffer_checkpoint_holds_the_samples_not_the_capacity(tmp_path):
    buf = AggregationBuffer(10_000, {"x": (64,)})
    buf.add(x=torch.ones(100, 64))
    torch.save(buf.state_dict(), tmp_path / "buffer.pt")
    assert (tmp_path / "buffer.pt").stat().st_size < 100 * 64 * 4 * 2  # 100 rows, not 10,000
    restored = AggregationBuffer(10_000, {"x": (64,)})
    restored.load_state_dict(torch.load(tmp_path / "buffer.pt"))
    assert len(restored) == 100 and torch.equal(restored.data["x"][:100], buf.data["x"][:100])


def test_mse_loss_is_zero_when_equal():
    m, s = torch.randn(5, 2), torch.rand(5, 2) + 0.1
    assert distillation_loss("mse", m, s, m, s).item() == 0.0
    assert distillation_loss("mse", m + 1, s, m, s).item() > 0.0


def _runner(cfg, teacher, tmp_path, **distill):
    import dataclasses

    cfg = cfg.replace(distill=dataclasses.replace(cfg.distill, **distill))
    runner = DaggerRunner(cfg, teacher, tmp_path, MetricsLog(tmp_path, tensorboard=False))
    runner.start()
    return runner


def _batch_loss(runner, batch):
    with torch.no_grad():
        mean, std, _ = runner.student.unroll(batch["obs"], batch["state0"], batch["starts"].bool())
        return distillation_loss("mse", mean, std, batch["teacher_mean"], batch["teacher_std"]).item()


def test_teacher_frozen_and_loss_goes_down(tiny_cfg, tiny_teacher, tmp_path):
    before = {k: v.clone() for k, v in tiny_teacher.state_dict().items()}
    runner = _runner(tiny_cfg, tiny_teacher, tmp_path, updates_per_iteration=150)
    runner.collect(0.5)
    batch = runner.rows.sample(runner.buffer, 256)
    first = _batch_loss(runner, batch)
    runner.update()
    assert _batch_loss(runner, batch) < 0.5 * first
    for k, v in tiny_teacher.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not any(p.requires_grad for p in tiny_teacher.parameters())


def test_update_precision_auto_is_decided_by_a_timed_trial_and_cached(tmp_path, monkeypatch):
    import time

    import robodistill.precision as precision

    cpu = torch.device("cpu")
    assert update_dtype("float32", cpu) is torch.float32 and update_dtype("bfloat16", cpu) is torch.bfloat16
    monkeypatch.setenv(precision.CACHE_ENV_VAR, str(tmp_path))
    calls = []

    def trial_where(bf16_seconds, f32_seconds):  # noqa: ANN001, ANN202
        def trial(dtype):  # noqa: ANN001, ANN202
            calls.append(dtype)
            time.sleep(bf16_seconds if dtype == torch.bfloat16 else f32_seconds)
        return trial

    monkeypatch.setattr(precision, "native_bfloat16", lambda device: False)
    assert update_dtype("auto", cpu, trial_where(0.001, 0.01), "net a") is torch.float32 and not calls  # emulated
    monkeypatch.setattr(precision, "native_bfloat16", lambda device: True)
    assert update_dtype("auto", cpu, trial_where(0.001, 0.01), "net a") is torch.bfloat16  # 10x faster
    assert calls.count(torch.bfloat16) == calls.count(torch.float32) == 1 + precision.TRIAL_ROUNDS
    assert update_dtype("auto", cpu, trial_where(0.01, 0.001), "net b") is torch.float32  # slower
    assert update_dtype("auto", cpu, trial_where(0.009, 0.01), "net c") is torch.float32  # not a clear margin
    calls.clear()
    assert update_dtype("auto", cpu, trial_where(0.01, 0.001), "net a") is torch.bfloat16  # cached: no trial
    assert not calls
    cached = json.loads((tmp_path / "update_precision.json").read_text())
    assert sorted(v["dtype"] for v in cached.values()) == ["bfloat16", "float32", "float32"]


def test_auto_precision_trial_leaves_the_run_as_it_was(tiny_cfg, tiny_teacher, tmp_path, monkeypatch):
    """The trial runs on a copy of the student and draws nothing from the run's streams: the same run with the
    trial's answer fixed in advance gives the same weights."""
    import robodistill.precision as precision

    monkeypatch.setenv(precision.CACHE_ENV_VAR, "")  # no cache: the trial runs
    monkeypatch.setattr(precision, "native_bfloat16", lambda device: True)
    monkeypatch.setattr(precision, "CLEAR_MARGIN", 1e9)  # the trial always answers float32
    weights = []
    for i, mode in enumerate(("auto", "float32")):
        runner = _runner(tiny_cfg, tiny_teacher, tmp_path / str(i), update_precision=mode)
        runner.collect(0.5)
        runner.update()
        assert runner.update_dtype is torch.float32
        weights.append([p.detach().clone() for p in runner.student.parameters()])
        runner.close()
    assert all(torch.equal(a, b) for a, b in zip(*weights))


@pytest.mark.parametrize("encoder", ["mlp", "gru"])
def test_bfloat16_updates_learn_and_keep_float32_weights(tiny_cfg, tiny_teacher, tmp_path, encoder):
    import dataclasses

    cfg = tiny_cfg.replace(student=dataclasses.replace(tiny_cfg.student, encoder=encoder, bptt_length=5))
    runner = _runner(cfg, tiny_teacher, tmp_path, updates_per_iteration=150, update_precision="bfloat16")
    runner.collect(0.5)
    batch = runner.rows.sample(runner.buffer, 64)
    first = _batch_loss(runner, batch)
    seen = set()
    layer = next(m for m in runner.student.modules() if isinstance(m, torch.nn.Linear))  # CPU autocast keeps GRUs
    hook = layer.register_forward_hook(lambda module, inputs, out: seen.add(out.dtype))
    runner.update()
    hook.remove()
    assert seen == {torch.bfloat16}
    assert _batch_loss(runner, batch) < 0.5 * first
    assert all(p.dtype == torch.float32 for p in runner.student.parameters())
    assert all(s["exp_avg"].dtype == torch.float32 for s in runner.optimizer.state.values())


def test_runner_records_every_iteration(tiny_cfg, tiny_teacher, tmp_path):
    info = DaggerRunner(tiny_cfg, tiny_teacher, tmp_path, MetricsLog(tmp_path, tensorboard=False)).run()
    records = read_metrics(tmp_path, "distill")
    assert [r["step"] for r in records] == [1, 2]
    for key in ("loss", "beta", "buffer_size", "score", "labels"):
        assert key in records[-1]
    assert info["distill_env_steps"] == 2 * 16 * 20
    assert (tmp_path / "student" / "student.pt").is_file()


def test_losses_zero_when_equal_and_positive_otherwise():
    torch.manual_seed(0)
    m, s = torch.randn(64, 3), torch.rand(64, 3) + 0.2
    for kind in ("mse", "huber", "nll", "forward_kl", "reverse_kl"):
        assert abs(distillation_loss(kind, m, s, m, s).item()) < 1e-6, kind
        assert distillation_loss(kind, m + 0.5, s, m, s).item() > 0, kind
    for kind in ("forward_kl", "reverse_kl"):
        assert distillation_loss(kind, m, s * 1.5, m, s).item() > 0, kind


def test_kl_matches_monte_carlo():
    from torch.distributions import Normal

    from robodistill.distill.algorithm import gaussian_kl

    torch.manual_seed(1)
    mp, sp, mq, sq = torch.randn(4, 2), torch.rand(4, 2) + 0.3, torch.randn(4, 2), torch.rand(4, 2) + 0.3
    p, q = Normal(mp, sp), Normal(mq, sq)
    x = p.sample((200_000,))
    mc = (p.log_prob(x) - q.log_prob(x)).sum(-1).mean(0)
    assert torch.allclose(gaussian_kl(mp, sp, mq, sq), mc, rtol=0.03, atol=0.01)


def test_exploration_noise_modes():
    from robodistill.distill.algorithm import exploration_action

    gen = torch.Generator().manual_seed(0)
    mean, std = torch.zeros(20000, 1), torch.full((20000, 1), 0.3)
    assert torch.equal(exploration_action(mean, std, "none", 0.1, gen), mean)
    assert abs(exploration_action(mean, std, "fixed", 0.1, gen).std().item() - 0.1) < 0.01
    assert abs(exploration_action(mean, std, "student", 0.1, gen).std().item() - 0.3) < 0.02


def test_recurrent_runner_stores_sequences(tiny_cfg, tiny_teacher, tmp_path):
    import dataclasses

    cfg = tiny_cfg.replace(student=dataclasses.replace(tiny_cfg.student, encoder="gru", bptt_length=5))
    runner = DaggerRunner(cfg, tiny_teacher, tmp_path, MetricsLog(tmp_path, tensorboard=False))
    runner.start()
    runner.collect(0.0)
    assert len(runner.buffer) == 16 * 20 // 5
    assert runner.buffer.data["obs"].shape[1:] == (5, 3)
    starts = runner.buffer.data["starts"][:64].view(16, 4, 5)  # [env, chunk, step]
    assert starts[:, 0, 0].all()  # every env's first sequence starts an episode
    assert runner.update() > 0


def test_same_seed_gives_bit_identical_student(tiny_cfg, tiny_teacher, tmp_path):
    def weights(path):
        DaggerRunner(tiny_cfg, tiny_teacher, path, MetricsLog(path, tensorboard=False)).run()
        return torch.load(path / "student" / "student.pt", weights_only=True)["state_dict"]

    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_early_stopping_at_the_target_score(tiny_cfg, tiny_teacher, tmp_path):
    import dataclasses

    cfg = tiny_cfg.replace(distill=dataclasses.replace(tiny_cfg.distill, iterations=5, target_score=-1e9))
    info = DaggerRunner(cfg, tiny_teacher, tmp_path, MetricsLog(tmp_path, tensorboard=False)).run()
    assert info["distill_iterations"] == 1
    assert [r["step"] for r in read_metrics(tmp_path, "distill")] == [1]


def test_labels_are_the_executed_teacher_actions(tiny_cfg, tiny_teacher, tmp_path):
    with torch.no_grad():  # push the teacher's means far outside [-1, 1]
        tiny_teacher.mean_head.bias.add_(5.0)
    try:
        clipped = _runner(tiny_cfg, tiny_teacher, tmp_path / "a")
        clipped.collect(1.0)
        raw = _runner(tiny_cfg, tiny_teacher, tmp_path / "b", clip_labels=False)
        raw.collect(1.0)
    finally:
        with torch.no_grad():
            tiny_teacher.mean_head.bias.sub_(5.0)
    n = len(clipped.buffer)
    assert clipped.buffer.data["teacher_mean"][:n].abs().max() <= 1.0
    assert raw.buffer.data["teacher_mean"][:n].max() > 2.0


def test_concurrent_labels_fill_the_buffer_exactly_as_labels_in_turn(tiny_cfg, tiny_teacher, tmp_path):
    """The teacher labelling on a helper thread beside the student's forward pass changes nothing but the time."""
    import dataclasses

    from robodistill.distill.labeler import Labeler

    cfg = tiny_cfg.replace(env=dataclasses.replace(tiny_cfg.env, num_threads=2),
                           distill=dataclasses.replace(tiny_cfg.distill, value_loss_coef=0.5))
    buffers = {}
    for concurrent in (True, False):
        runner = _runner(cfg, tiny_teacher, tmp_path / str(concurrent))
        runner.labeler.close()
        runner.labeler = Labeler(tiny_teacher, with_value=True, concurrent=concurrent)
        for beta in (1.0, 0.5):
            runner.collect(beta)
        runner.close()
        buffers[concurrent] = {k: v[: len(runner.buffer)] for k, v in runner.buffer.data.items()}
    assert buffers[True]["teacher_value"].abs().sum() > 0  # the values were labelled too
    for key, stored in buffers[False].items():
        assert torch.equal(buffers[True][key], stored), key


def test_labels_go_to_a_helper_thread_only_where_it_pays(tiny_teacher):
    import robodistill as rd
    from robodistill.distill.labeler import Labeler
    from robodistill.teacher import Teacher

    spec = {**tiny_teacher.spec, "net_arch": [512, 256, 128]}
    large = Teacher(spec)
    threaded, single = rd.make_env("pendulum", 64, num_threads=2), rd.make_env("pendulum", 64, num_threads=1)
    try:
        assert not Labeler.worth_a_thread(tiny_teacher, threaded)  # a small teacher: the hand-over costs more
        assert not Labeler.worth_a_thread(large, single)  # the physics does not leave torch a core
        assert Labeler.worth_a_thread(large, threaded) == (torch.get_num_threads() > 1)
    finally:
        threaded.close()
        single.close()


def test_windowed_buffer_gives_back_exactly_the_windows_the_student_saw(tiny_cfg, tiny_teacher, tmp_path):
    """Rows hold observations once; the window cut out at sampling equals the student's state at that step,
    episode starts inside a rollout and windows reaching into the previous rollout included."""
    import dataclasses

    cfg = tiny_cfg.replace(env=dataclasses.replace(tiny_cfg.env, episode_length=7),
                           student=dataclasses.replace(tiny_cfg.student, history=4))
    runner = _runner(cfg, tiny_teacher, tmp_path)
    seen = []
    forward = runner.student.forward

    def spy(obs, state):  # noqa: ANN001, ANN202
        seen.append((obs.clone(), state.clone()))
        return forward(obs, state)

    runner.student.forward = spy
    for _ in range(2):
        runner.collect(0.5)
    b, t = runner.env.num_envs, runner.cfg.distill.steps_per_iteration
    assert len(runner.buffer) == 2 * b and runner.buffer.data["ext"].shape[1:] == (4 + t, 3)
    rows = torch.arange(2 * b).repeat_interleave(t)  # iteration-major, then env
    step = torch.arange(t).repeat(2 * b)
    batch = runner.rows.gather(runner.buffer, rows, step)
    obs = torch.stack([o for o, _ in seen]).view(2, t, b, 3).permute(0, 2, 1, 3).reshape(-1, 1, 3)
    state = torch.stack([s for _, s in seen]).view(2, t, b, 4, 3).permute(0, 2, 1, 3, 4).reshape(-1, 4, 3)
    assert torch.equal(batch["obs"], obs) and torch.equal(batch["state0"], state)
    assert batch["starts"].sum() > 2 * b  # episodes of 7 steps began inside the rollouts of 20
    assert (state.abs().sum((1, 2)) == 0).sum() >= batch["starts"].sum()  # a start's window is all zeros


def test_the_best_student_on_validation_episodes_ships_with_its_held_out_score(tiny_cfg, tiny_teacher, tmp_path,
                                                                              monkeypatch):
    import dataclasses

    from robodistill.distill.selection import BestStudent
    from robodistill.student import load_student

    offer = BestStudent.offer
    # validation says iteration 2 of 4 was the best (the real scores of so short a run are noise)
    monkeypatch.setattr(BestStudent, "offer", lambda self, score, it, student: offer(
        self, score + (1e6 if it == 2 else 0.0), it, student))
    cfg = tiny_cfg.replace(distill=dataclasses.replace(tiny_cfg.distill, iterations=4))
    runner = DaggerRunner(cfg, tiny_teacher, tmp_path, MetricsLog(tmp_path, tensorboard=False))
    info = runner.run()
    records = read_metrics(tmp_path, "distill")
    assert [r["step"] for r in records] == [1, 2, 3, 4] and all("validation_score" in r for r in records)
    assert info["selected_iteration"] == 2
    assert info["score"] == records[1]["score"]  # the shipped student's held-out score, not the last one's
    assert info["last_iteration_score"] == records[3]["score"]
    shipped = torch.load(tmp_path / "student" / "student.pt", weights_only=True)
    assert shipped["iteration"] == 2
    best = runner.best.state
    assert all(torch.equal(shipped["state_dict"][k], best[k].cpu()) for k in best)
    assert load_student(tmp_path / "student" / "student.pt") is not None


def test_selection_keeps_the_best_and_stops_on_a_plateau():
    from robodistill.distill.selection import BestStudent

    net = torch.nn.Linear(2, 1)
    best = BestStudent(patience=2)
    assert best.offer(0.5, 1, net) and not best.plateaued
    kept = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        net.weight.add_(1.0)
    assert not best.offer(0.4, 2, net) and not best.offer(float("nan"), 3, net) and best.plateaued
    assert best.iteration == 1 and torch.equal(best.state["weight"], kept["weight"])
    restored = BestStudent(patience=2)
    restored.load_state_dict(best.state_dict())
    assert restored.plateaued and restored.score == 0.5


def test_patience_stops_the_run_when_validation_stops_improving(tiny_cfg, tiny_teacher, tmp_path, monkeypatch):
    import dataclasses

    from robodistill.distill.selection import BestStudent

    offer = BestStudent.offer
    monkeypatch.setattr(BestStudent, "offer", lambda self, score, it, student: offer(self, -it, it, student))
    cfg = tiny_cfg.replace(distill=dataclasses.replace(tiny_cfg.distill, iterations=10, patience=2))
    info = DaggerRunner(cfg, tiny_teacher, tmp_path, MetricsLog(tmp_path, tensorboard=False)).run()
    assert info["distill_iterations"] == 3 and info["selected_iteration"] == 1

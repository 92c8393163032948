"""ONNX export: parity with torch on a recorded rollout, dynamic batch, metadata, bad files."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

import robodistill as rd
from robodistill.errors import UsageError
from robodistill.onnx_export import OnnxPolicy, export_run, load_session, onnx_parity, record_rollout
from robodistill.student import build_student, load_student, student_spec


def _student(cfg):
    env = rd.make_env("pendulum", 1, seed=0)
    spec = student_spec(cfg, env.obs_dims["proprio"], env.action_dim, env.backend.action_offset,
                        env.backend.action_scale, "pendulum")
    student = build_student(spec)
    student.normalizer.update(torch.randn(100, 3) * 2 + 1)  # non-trivial normalization inside the graph
    return student.eval()


def test_export_matches_torch_on_a_1000_step_rollout(tiny_cfg, tmp_path):
    cfg = tiny_cfg.replace(export=tiny_cfg.export.__class__(parity_steps=1000, parity_envs=2))
    student = _student(cfg)
    info = export_run(cfg, student, tmp_path)
    assert info["onnx_max_abs_diff"] <= 1e-5
    meta = json.loads((tmp_path / "policy.json").read_text())
    assert meta["observation_names"] == ["hinge_pos.sin0", "hinge_pos.cos0", "prev_action[0]"]
    assert meta["control_dt"] == pytest.approx(0.05) and meta["history_length"] == cfg.student.history
    assert meta["action_scale"] == [1.0] and meta["verification"]["onnx_max_abs_diff"] == info["onnx_max_abs_diff"]
    model = onnx.load(str(tmp_path / "policy.onnx"))
    assert model.opset_import[0].version >= 17
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["state_shape"]) == [cfg.student.history, 3]


def test_dynamic_batch_and_actuator_units(tiny_cfg, tmp_path):
    student = _student(tiny_cfg)
    export_run(tiny_cfg, student, tmp_path)
    session = load_session(tmp_path / "policy.onnx")
    for batch in (1, 7):
        obs = np.random.randn(batch, 3).astype(np.float32)
        state = np.random.randn(batch, tiny_cfg.student.history, 3).astype(np.float32)
        assert onnx_parity(student, session, obs, state) <= 1e-5
        action, _ = session.run(None, {"obs": obs, "state": state})
        assert action.shape == (batch, 1) and np.abs(action).max() <= 1.0  # ctrlrange [-1, 1]


def test_onnx_policy_reproduces_student_actions(tiny_cfg, tmp_path):
    """Fed the student's recorded rollout step by step, the ONNX policy returns the student's actions and carries
    the same state (its own, never fed back from torch)."""
    student = _student(tiny_cfg)
    export_run(tiny_cfg, student, tmp_path)
    steps, envs = 20, 2
    obs, state = record_rollout(tiny_cfg, student, steps, envs, seed=0)  # [steps * B, D], [steps * B, *state]
    obs, state = obs.reshape(steps, envs, -1), state.reshape(steps, envs, *state.shape[1:])
    policy = OnnxPolicy(tmp_path / "policy.onnx")
    policy.reset(envs)
    assert policy.state.shape == (envs, tiny_cfg.student.history, 3)
    for t in range(steps):
        np.testing.assert_allclose(policy.state, state[t], rtol=0, atol=1e-5)
        with torch.no_grad():
            expected, _ = student.act(torch.from_numpy(obs[t]), torch.from_numpy(state[t]))  # [B, A] in [-1, 1]
        got = policy.act({"proprio": torch.from_numpy(obs[t])})
        assert got.shape == expected.shape
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=0, atol=1e-5)
    assert np.abs(obs[:, :, 2]).max() > 1e-3  # the recorded actions (fed back as prev_action) are not all zero


def test_corrupted_or_truncated_onnx_is_a_usage_error(tiny_cfg, tmp_path):
    export_run(tiny_cfg, _student(tiny_cfg), tmp_path)
    data = (tmp_path / "policy.onnx").read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    for name in ("cut.onnx", "junk.onnx", "missing.onnx"):
        with pytest.raises(UsageError, match="ONNX policy"):
            load_session(tmp_path / name)


def test_student_save_load_round_trip(tiny_cfg, tmp_path):
    student = _student(tiny_cfg)
    student.save(tmp_path / "s.pt")
    again = load_student(tmp_path / "s.pt")
    x = torch.randn(3, tiny_cfg.student.history, 3)
    s0 = student.initial_state(3)
    assert torch.equal(student(x[:, -1], s0)[0], again(x[:, -1], s0)[0])
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(UsageError, match="cannot load student"):
        load_student(tmp_path / "bad.pt")


def test_export_over_the_parity_bound_fails_and_writes_no_policy(tiny_cfg, tmp_path, monkeypatch):
    """A graph that does not reproduce the student never becomes policy.onnx: a robot controller picks up only
    verified files."""
    import robodistill.onnx_export as onnx_export
    from robodistill.errors import ExportVerificationError

    monkeypatch.setattr(onnx_export, "onnx_parity", lambda *args: 2e-5)  # just over the default 1e-5
    with pytest.raises(ExportVerificationError, match="exceeds export.max_abs_diff 1.00e-05"):
        export_run(tiny_cfg, _student(tiny_cfg), tmp_path, sim2sim_episodes=0)
    assert not (tmp_path / "policy.onnx").exists() and not (tmp_path / "policy.json").exists()
    assert (tmp_path / onnx_export.UNVERIFIED_FILE).is_file()  # kept for inspection

    monkeypatch.setattr(onnx_export, "onnx_parity", lambda *args: 1e-6)
    export_run(tiny_cfg, _student(tiny_cfg), tmp_path, sim2sim_episodes=0)
    assert (tmp_path / "policy.onnx").is_file() and not (tmp_path / onnx_export.UNVERIFIED_FILE).exists()

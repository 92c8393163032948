"""Student encoders: one interface, gradients everywhere, BPTT that stops at episode starts, ONNX export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robodistill.onnx_export import export_onnx, load_session
from robodistill.student import ENCODERS, build_student

SPEC = {"task": "t", "obs_dim": 3, "action_dim": 2, "history": 6, "hidden": [16], "activation": "elu",
        "init_log_std": -1.0, "tcn_channels": 8, "rnn_hidden": 12, "rnn_layers": 2,
        "action_offset": [0.5, 0.0], "action_scale": [2.0, 1.0]}


@pytest.fixture(params=sorted(ENCODERS))
def student(request):
    torch.manual_seed(0)
    s = build_student(request.param, SPEC)
    s.normalizer.update(torch.randn(64, 3) * 3 + 1)
    return s


def test_interface_shapes(student):
    state = student.initial_state(4)
    assert state.shape == (4, *student.state_shape) and not state.any()
    dist, nxt = student.step(torch.randn(4, 3), state)
    assert dist.mean.shape == (4, 2) and nxt.shape == state.shape
    mean, std, value = student.unroll(torch.randn(5, 7, 3), student.initial_state(5), torch.zeros(5, 7, dtype=torch.bool))
    assert mean.shape == (5, 7, 2) and std.shape == (5, 7, 2) and value.shape == (5, 7)


def test_gradients_reach_every_parameter(student):
    obs = torch.randn(8, 5, 3)
    mean, std, value = student.unroll(obs, student.initial_state(8), torch.zeros(8, 5, dtype=torch.bool))
    (mean.pow(2).sum() + std.sum() + value.pow(2).sum()).backward()
    for name, p in student.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name} gets no gradient"


def test_every_parameter_is_optimized(student):
    before = {n: p.detach().clone() for n, p in student.named_parameters()}
    opt = torch.optim.Adam(student.parameters(), lr=1e-2)
    mean, std, value = student.unroll(torch.randn(8, 5, 3), student.initial_state(8), torch.zeros(8, 5, dtype=torch.bool))
    (mean.pow(2).sum() + std.sum() + value.pow(2).sum()).backward()
    opt.step()
    for n, p in student.named_parameters():
        assert not torch.equal(p, before[n]), f"{n} was not updated"


def test_bptt_stops_at_episode_starts(student):
    """With an episode start at step 3, the loss at steps >= 3 has no gradient w.r.t. observations before 3."""
    obs = torch.randn(2, 6, 3, requires_grad=True)
    starts = torch.zeros(2, 6, dtype=torch.bool)
    starts[:, 3] = True
    mean, _, _ = student.unroll(obs, student.initial_state(2), starts)
    mean[:, 3:].sum().backward()
    assert obs.grad[:, :3].abs().max() == 0
    assert obs.grad[:, 3:].abs().max() > 0
    # and without the start, gradient flows back across the sequence (for encoders with memory)
    obs.grad = None
    mean, _, _ = student.unroll(obs, student.initial_state(2), torch.zeros(2, 6, dtype=torch.bool))
    mean[:, 3:].sum().backward()
    assert obs.grad[:, :3].abs().max() > 0


def test_unroll_equals_repeated_steps(student):
    obs = torch.randn(3, 4, 3)
    starts = torch.tensor([[1, 0, 0, 0], [1, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.bool)
    mean, _, _ = student.unroll(obs, student.initial_state(3), starts)
    state, outs = student.initial_state(3), []
    for t in range(4):
        state = student.reset_state(state, starts[:, t])
        dist, state = student.step(obs[:, t], state)
        outs.append(dist.mean)
    assert torch.allclose(mean, torch.stack(outs, 1), atol=1e-6)


def test_each_encoder_exports_with_state(student, tmp_path):
    export_onnx(student, tmp_path / "p.onnx", {"state_shape": list(student.state_shape)})
    session = load_session(tmp_path / "p.onnx")
    obs, state = torch.randn(5, 3), torch.randn(5, *student.state_shape)
    with torch.no_grad():
        t_action, t_state = student.deploy(obs, state)
    o_action, o_state = session.run(None, {"obs": obs.numpy(), "state": state.numpy()})
    assert np.abs(o_action - t_action.numpy()).max() <= 1e-5
    assert np.abs(o_state - t_state.numpy()).max() <= 1e-5
    assert (o_action[:, 0] >= -1.5 - 1e-6).all() and (o_action[:, 0] <= 2.5 + 1e-6).all()  # offset 0.5, scale 2

"""Student encoders: one interface, gradients everywhere, BPTT that stops at episode starts, ONNX export; encoders
found by name, a spec that saves as plain data and still reads the older flat files."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

import robodistill as rd
from robodistill.errors import ConfigError, UsageError
from robodistill.onnx_export import export_onnx, load_session
from robodistill.student import (ENCODERS, STUDENT_FORMAT, StudentSpec, WindowEncoder, build_student, load_student,
                                 register_encoder)

from conftest import PENDULUM, TINY

# the flat spec robodistill wrote before encoders were registered: every encoder's options, whichever was used
SPEC = {"task": "t", "obs_dim": 3, "action_dim": 2, "history": 6, "hidden": [16], "activation": "elu",
        "init_log_std": -1.0, "tcn_channels": 8, "rnn_hidden": 12, "rnn_layers": 2,
        "action_offset": [0.5, 0.0], "action_scale": [2.0, 1.0]}


@pytest.fixture(params=sorted(ENCODERS))
def student(request):
    torch.manual_seed(0)
    s = build_student(StudentSpec.from_dict({**SPEC, "encoder": request.param}))
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


def test_spec_round_trips_as_plain_data_with_only_its_encoders_options(student):
    data = student.spec.to_dict()
    assert StudentSpec.from_dict(data) == student.spec
    assert all(isinstance(v, (str, int, float, bool, list)) for v in data.values())
    own = {"mlp": {"history"}, "tcn": {"history", "tcn_channels"}, "gru": {"rnn_hidden", "rnn_layers"},
           "lstm": {"rnn_hidden", "rnn_layers"}}[student.spec.encoder]
    assert own <= set(data) and not ({"history", "tcn_channels", "rnn_hidden", "rnn_layers"} - own) & set(data)


class LastObsEncoder(WindowEncoder):
    """An encoder defined outside the package: one layer over the newest observation, of a configurable width."""

    @dataclass(frozen=True)
    class Options:
        width: int = 4

    def __init__(self, spec: StudentSpec) -> None:
        super().__init__(spec, history=1)
        self.net = nn.Linear(spec.obs_dim, spec.options.width)
        self.feature_dim = spec.options.width

    def encode(self, window: torch.Tensor) -> torch.Tensor:
        """``[B, 1, Dp] -> [B, width]``."""
        return torch.tanh(self.net(window[:, -1]))


@pytest.fixture
def last_obs():
    register_encoder("last_obs", LastObsEncoder)
    yield
    ENCODERS.pop("last_obs")


def test_a_registered_encoder_is_configured_distilled_saved_and_resumed(last_obs, tmp_path):
    from robodistill.distill.runner import CHECKPOINT_FILE, STUDENT_FILE, DaggerRunner
    from robodistill.teacher import Teacher

    teacher = Teacher({"task": "pendulum", "algo": "ppo", "obs_dim": 8, "action_dim": 1, "net_arch": [16],
                       "activation": "tanh", "clip_obs": 10.0, "epsilon": 1e-8, "has_value": True})
    cfg = rd.load_config(PENDULUM, overrides=TINY + ["student.encoder=last_obs", "student.options.width=5"])
    runner = DaggerRunner(cfg, teacher, tmp_path, None)
    try:
        assert runner.student.spec.options == LastObsEncoder.Options(width=5)
        assert runner.student.encoder.net.out_features == 5 and runner.student.state_shape == (1, 3)
        runner.start()
        runner.collect(0.5)
        assert runner.update() > 0
        runner.iteration = 1
        runner.save()
    finally:
        runner.close()
    saved = torch.load(tmp_path / "student" / CHECKPOINT_FILE, weights_only=True)["spec"]
    assert saved["encoder"] == "last_obs" and saved["width"] == 5 and "history" not in saved
    loaded = load_student(tmp_path / "student" / STUDENT_FILE)
    assert loaded.spec == runner.student.spec
    obs = torch.randn(4, 3)
    with torch.no_grad():
        assert torch.equal(loaded.act(obs, loaded.initial_state(4))[0],
                           runner.student.act(obs, runner.student.initial_state(4))[0])
    same = DaggerRunner(cfg, teacher, tmp_path, None)
    same.resume(tmp_path / "student" / CHECKPOINT_FILE)
    same.close()
    assert same.iteration == 1
    wider = DaggerRunner(rd.load_config(PENDULUM, overrides=TINY + ["student.encoder=last_obs",
                                                                    "student.options.width=6"]),
                         teacher, tmp_path / "b", None)
    with pytest.raises(UsageError, match="does not fit the config: student width is 5 in the checkpoint but 6"):
        wider.resume(tmp_path / "student" / CHECKPOINT_FILE)
    wider.close()


def test_unknown_encoders_and_options_are_one_line_config_errors(last_obs):
    with pytest.raises(ConfigError) as err:
        rd.load_config(PENDULUM, overrides=["student.encoder=transformer"])
    assert "\n" not in str(err.value)
    assert "student.encoder: unknown encoder 'transformer'; registered: gru, last_obs, lstm, mlp, tcn" in str(err.value)
    with pytest.raises(ConfigError, match="unknown key 'student.options.widht' .did you mean 'width'"):
        rd.load_config(PENDULUM, overrides=["student.encoder=last_obs", "student.options.widht=3"])
    with pytest.raises(ConfigError, match="student.options.width: expected an integer"):
        rd.load_config(PENDULUM, overrides=["student.encoder=last_obs", "student.options.width=wide"])
    with pytest.raises(ConfigError, match="set it as student.history"):
        rd.load_config(PENDULUM, overrides=["student.options.history=3"])
    # the bptt check asks the encoder whether it is recurrent: last_obs is not, gru is
    rd.load_config(PENDULUM, overrides=["student.encoder=last_obs", "distill.steps_per_iteration=7"])
    with pytest.raises(ConfigError, match="multiple of student.bptt_length"):
        rd.load_config(PENDULUM, overrides=["student.encoder=gru", "distill.steps_per_iteration=7"])


def test_an_encoder_must_declare_its_options_and_whether_it_is_recurrent():
    class NoOptions(nn.Module):
        recurrent = False

    class Clashing(LastObsEncoder):
        @dataclass(frozen=True)
        class Options:
            hidden: int = 3

    with pytest.raises(TypeError, match="Options must be a dataclass"):
        register_encoder("no_options", NoOptions)
    with pytest.raises(ValueError, match="clash with the student spec"):
        register_encoder("clashing", Clashing)
    assert "no_options" not in ENCODERS and "clashing" not in ENCODERS


def test_student_files_of_the_older_flat_format_still_load(tmp_path):
    torch.manual_seed(0)
    for encoder, expected in (("gru", {"rnn_hidden": 12, "rnn_layers": 2}),
                              ("tcn", {"history": 6, "tcn_channels": 8}), (None, {"history": 6})):
        old = dict(SPEC) if encoder is None else {**SPEC, "encoder": encoder}  # the first files had no encoder
        if encoder is None:
            for key in ("tcn_channels", "rnn_hidden", "rnn_layers"):
                del old[key]
        weights = build_student(StudentSpec.from_dict({**SPEC, "encoder": encoder or "mlp"})).state_dict()
        torch.save({"format": STUDENT_FORMAT, "spec": old, "state_dict": weights}, tmp_path / "old.pt")
        student = load_student(tmp_path / "old.pt")
        assert student.spec.encoder == (encoder or "mlp")
        assert vars(student.spec.options) == expected
        assert all(torch.equal(student.state_dict()[k], v) for k, v in weights.items())
        # an older checkpoint's spec is compared with today's by the same objects
        assert StudentSpec.from_dict(old).mismatch(student.spec) is None
    torch.save({"format": STUDENT_FORMAT, "spec": {**SPEC, "encoder": "gru", "colour": "red"}, "state_dict": {}},
               tmp_path / "odd.pt")
    with pytest.raises(UsageError, match=r"cannot load student .*unknown student spec keys \['colour'\]"):
        load_student(tmp_path / "odd.pt")

"""Config schema: typos, types, ranges, overrides and the saved resolved config."""

from __future__ import annotations

import pytest
import yaml

import robodistill as rd
from robodistill.config import config_from_dict, save_config
from robodistill.errors import ConfigError

from conftest import PENDULUM, ROOT


def test_shipped_config_loads_with_defaults_filled():
    cfg = rd.load_config(PENDULUM)
    assert cfg.task.name == "pendulum"
    assert cfg.distill.iterations >= 1
    assert cfg.env.randomization["pole_mass"] == [0.7, 1.3]


def test_unknown_key_suggests_nearest():
    with pytest.raises(ConfigError, match=r"unknown key 'distill.iteratons' \(did you mean 'iterations'\?\)"):
        config_from_dict({"distill": {"iteratons": 3}})


def test_unknown_section_suggests_nearest():
    with pytest.raises(ConfigError, match="did you mean 'teacher'"):
        config_from_dict({"teachr": {}})


@pytest.mark.parametrize("raw, message", [
    ({"distill": {"iterations": "three"}}, "expected an integer"),
    ({"distill": {"iterations": 2.5}}, "expected an integer"),
    ({"env": {"randomize": "yes"}}, "expected true or false"),
    ({"teacher": {"net_arch": 64}}, "expected list"),
    ({"distill": {"num_envs": -4}}, "must be >= 1"),
    ({"teacher": {"learning_rate": 0}}, "must be > 0"),
    ({"distill": {"beta": {"start": 1.5}}}, "must be <= 1.0"),
    ({"teacher": {"algo": "ppo2"}}, "did you mean 'ppo'"),
    ({"task": {"name": "pendulm"}}, "did you mean 'pendulum'"),
    ({"env": {"randomization": {"pole_mas": [1, 2]}}}, "did you mean 'pole_mass'"),
    ({"env": {"randomization": {"pole_mass": [2, 1]}}}, "low <= high"),
])
def test_bad_values_are_named(raw, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(raw)


def test_overrides_are_typed_and_validated():
    cfg = config_from_dict({}, overrides=["distill.iterations=5", "distill.beta.schedule=constant",
                                          "teacher.net_arch=[32, 32]", "distill.target_score=0.9"])
    assert cfg.distill.iterations == 5 and cfg.distill.beta.schedule == "constant"
    assert cfg.teacher.net_arch == [32, 32] and cfg.distill.target_score == 0.9
    with pytest.raises(ConfigError, match="did you mean 'iterations'"):
        config_from_dict({}, overrides=["distill.iteration=5"])
    with pytest.raises(ConfigError, match="key.path=value"):
        config_from_dict({}, overrides=["distill.iterations"])


def test_exponents_without_a_dot_are_numbers():
    cfg = config_from_dict({"distill": {"learning_rate": "5e-4"}}, overrides=["teacher.learning_rate=1e-4"])
    assert cfg.teacher.learning_rate == 1e-4 and cfg.distill.learning_rate == 5e-4
    with pytest.raises(ConfigError, match="expected a number"):
        config_from_dict({}, overrides=["teacher.learning_rate=fast"])


def test_broken_and_missing_files(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("task: {name: pendulum\nenv: [")
    with pytest.raises(ConfigError, match="broken YAML at line"):
        rd.load_config(broken)
    with pytest.raises(ConfigError, match="config file not found"):
        rd.load_config(tmp_path / "missing.yaml")


def test_config_is_frozen():
    cfg = rd.load_config(PENDULUM)
    with pytest.raises(Exception):
        cfg.seed = 3  # type: ignore[misc]


def test_saved_config_round_trips(tmp_path):
    cfg = rd.load_config(PENDULUM, overrides=["distill.iterations=7"])
    save_config(cfg, tmp_path / "config.yaml")
    again = rd.load_config(tmp_path / "config.yaml")
    assert again == cfg
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["distill"]["iterations"] == 7
    assert again.hash() == cfg.hash()


def test_a_config_builds_on_its_base(tmp_path):
    (tmp_path / "base.yaml").write_text("task: {name: quadruped}\nteacher: {num_envs: 16, n_steps: 32}\n")
    (tmp_path / "top.yaml").write_text("base: base.yaml\nteacher: {num_envs: 4096}\nenv: {backend: mjx}\n")
    cfg = rd.load_config(tmp_path / "top.yaml")
    assert (cfg.task.name, cfg.teacher.num_envs, cfg.teacher.n_steps, cfg.env.backend) == ("quadruped", 4096, 32, "mjx")
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ConfigError, match="loops back"):
        rd.load_config(tmp_path / "loop.yaml")
    (tmp_path / "orphan.yaml").write_text("base: gone.yaml\n")
    with pytest.raises(ConfigError, match="gone.yaml"):
        rd.load_config(tmp_path / "orphan.yaml")
    assert rd.load_config(ROOT / "configs" / "quadruped_gpu.yaml").env.backend == "warp"

"""The prepared GPU check (``python -m benchmarks gpu``) runs end to end at its tiny CPU sizes, so it never rots."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from conftest import ROOT

pytest.importorskip("jax", reason="the GPU check measures MJX or MuJoCo Warp")


def test_the_gpu_check_runs_every_section_at_tiny_sizes(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    import benchmarks.gpu as gpu

    saved = tmp_path / "gpu.json"  # never the repository's benchmarks/results
    monkeypatch.setattr(gpu, "save", lambda name, rows, quick: (saved.write_text(json.dumps(rows)), saved)[1])
    monkeypatch.setenv("OUT", str(tmp_path / "out"))
    (tmp_path / "out").mkdir()
    rows = gpu.run(quick=True)
    names = {r["name"] for r in rows}
    assert not [n for n in names if n.endswith("_failed")], rows
    assert {"c_engine_physics_steps_per_s", "physics_steps_per_s", "dagger_env_steps_per_s", "ppo_env_steps_per_s",
            "timeboxed_teacher_fall_rate"} <= names
    backend = "warp" if importlib.util.find_spec("warp") else "mjx"
    assert all(backend in r["unit"] for r in rows if r["name"] in ("physics_steps_per_s", "dagger_env_steps_per_s"))
    assert json.loads((tmp_path / "out" / "gpu.json").read_text()) == json.loads(saved.read_text())
    assert "benchmarks.gpu" in sys.modules

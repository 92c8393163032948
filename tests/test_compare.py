"""compare: variants through one code path, the table, and the generated results section."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from robodistill.compare import VARIANTS, _variant_names, markdown_table, write_results_section
from robodistill.config import config_from_dict
from robodistill.errors import UsageError

from conftest import PENDULUM, TINY


def test_every_variant_is_a_valid_config():
    for name, overrides in VARIANTS.items():
        config_from_dict({}, overrides=overrides)
    with pytest.raises(UsageError, match="did you mean 'memoryless'"):
        _variant_names("dagger,memoryles")
    assert _variant_names("all") == list(VARIANTS)


def test_results_section_is_replaced_not_duplicated(tmp_path):
    path = tmp_path / "RESULTS.md"
    write_results_section(path, "pendulum", "table one\n", PENDULUM, 3, ["dagger"], ["distill.iterations=5"])
    write_results_section(path, "hopper", "hopper table\n", PENDULUM, 3, ["dagger"])
    write_results_section(path, "pendulum", "table two\n", PENDULUM, 3, ["dagger", "bc"])
    text = path.read_text()
    assert text.count("## pendulum") == 1 and "table two" in text and "table one" not in text
    assert "hopper table" in text and "--variants dagger,bc" in text


def test_compare_runs_variants_and_writes_json_table_and_plot(tiny_teacher, tmp_path):
    teacher = tmp_path / "teacher.pt"
    tiny_teacher.save(teacher)
    run = tmp_path / "cmp"
    sets = [a for s in TINY for a in ("--set", s)]
    proc = subprocess.run([sys.executable, "-m", "robodistill", "compare", str(PENDULUM), "--seeds", "2",
                           "--variants", "dagger,bc", "--teacher", str(teacher), "--run-dir", str(run),
                           "--results", str(tmp_path / "RESULTS.md"), *sets],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads((run / "compare.json").read_text())
    assert set(out["variants"]) == {"dagger", "bc"}
    for v in out["variants"].values():
        assert len(v["scores"]) == 2 and v["labels"] == 2 * 16 * 20
    # bc differs from dagger only by beta: its collection executed the teacher every step
    bc_metrics = (run / "bc" / "seed0" / "metrics.jsonl").read_text().splitlines()
    assert all(json.loads(line)["teacher_action_fraction"] == 1.0 for line in bc_metrics if '"distill"' in line)
    assert (run / "compare.png").stat().st_size > 1000 and "| dagger |" in (run / "compare.md").read_text()
    assert "## pendulum" in (tmp_path / "RESULTS.md").read_text()


def test_markdown_table_reports_steps_to_target_as_a_fraction_of_the_teacher():
    out = {"task": "t", "seeds": 2, "teacher_env_steps": 100000, "eval_episodes": 10, "variants": {
        "dagger": {"score_mean": 0.96, "score_std": 0.01, "scores": [0.95, 0.97], "labels": 5000, "env_steps": 5000,
                   "wall_seconds": 3.0, "steps_to_0.95": [4000, 6000], "curves": []}}}
    table = markdown_table(out)
    assert "5,000 (5.0%), 2/2 seeds" in table


def test_scores_at_equal_budgets_are_read_from_each_variants_curve():
    from robodistill.compare import score_at_budget

    curve = [(1000, 0.2), (2000, 0.6), (3000, 0.9), (4000, 0.97)]
    assert [score_at_budget(curve, b) for b in (999, 1000, 2500, 4000)] == [None, 0.2, 0.6, 0.97]
    out = {"task": "t", "seeds": 2, "teacher_env_steps": 100000, "eval_episodes": 10, "variants": {
        "dagger": {"score_mean": 0.97, "score_std": 0.0, "scores": [0.97, 0.97], "labels": 4000, "env_steps": 4000,
                   "wall_seconds": 3.0, "steps_to_0.95": [4000, 4000], "seconds_to_0.95": [2.5, 3.0],
                   "curves": [curve, curve]},
        "rsl_rl": {"score_mean": 0.5, "score_std": 0.0, "scores": [0.5, 0.5], "labels": 4000, "env_steps": 4000,
                   "wall_seconds": 1.0, "steps_to_0.95": [None, None], "seconds_to_0.95": [None, None],
                   "curves": [[(2000, 0.3), (4000, 0.5)], [(2000, 0.1), (4000, 0.5)]]}}}
    table = markdown_table(out)
    assert "| dagger | 0.200 | 0.600 | 0.970 | 4,000, 4,000 | 2, 3 |" in table
    assert "| rsl_rl | no evaluation | 0.200 | 0.500 | -, - | -, - |" in table

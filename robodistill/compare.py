"""``robodistill compare CONFIG``: the evidence table, every variant through the same code path.

One teacher (trained here, or given with ``--teacher``) supervises every variant; each variant runs with N seeds
and is scored by the paired protocol on the same held-out episodes. Variants are config overrides of the base
config, so ``dagger`` *is* the default student and ``bc`` differs from it only by β = 1 throughout.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any, Callable

from robodistill.errors import UsageError

log = logging.getLogger(__name__)

VARIANTS: dict[str, list[str]] = {
    "dagger": [],
    "bc": ["distill.beta.schedule=constant", "distill.beta.start=1.0"],
    "memoryless": ["student.history=1"],
    "ppo_proprio": [],  # SB3 PPO from scratch on the proprio group, with the distillation's env steps
    "enc_tcn": ["student.encoder=tcn"],
    "enc_gru": ["student.encoder=gru"],
    "enc_lstm": ["student.encoder=lstm"],
    "loss_huber": ["distill.loss=huber"],
    "loss_nll": ["distill.loss=nll"],
    "loss_forward_kl": ["distill.loss=forward_kl"],
    "loss_reverse_kl": ["distill.loss=reverse_kl"],
    "on_policy_buffer": ["distill.buffer_mode=on_policy"],
    "rsl_rl": [],  # rsl_rl's Distillation, its student exploring at the student's own initial std (exp(-1))
    "rsl_rl_std1": [],  # the same at rsl_rl's default exploration, std 1.0
    # the fairness cross-check: robodistill's runner configured as rsl_rl's algorithm (no teacher actions, on-policy
    # buffer, the same exploration noise, as many optimizer steps per iteration on as many samples; see rsl_rl_like)
    "dagger_as_rsl_rl": ["distill.beta.schedule=constant", "distill.beta.start=0.0", "distill.buffer_mode=on_policy",
                         "distill.exploration=fixed"],
}
DEFAULT_VARIANTS = ["dagger", "bc", "memoryless", "ppo_proprio"]


def register(sub: Any, add_common: Callable) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add the ``compare`` command."""
    p = sub.add_parser("compare", help="ablation table: dagger vs bc, memoryless, PPO on proprio, encoders, losses")
    p.add_argument("config", type=Path)
    p.add_argument("--seeds", type=int, default=3, help="seeds per variant (default 3)")
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                   help=f"comma-separated, or 'all' (known: {', '.join(VARIANTS)})")
    p.add_argument("--teacher", type=Path, default=None, help="teacher file or run directory (default: train one)")
    p.add_argument("--results", type=Path, default=None,
                   help="also write the table into this markdown file (e.g. docs/RESULTS.md), one section per task")
    add_common(p)
    return {"compare": cmd_compare}


def _variant_names(text: str) -> list[str]:
    names = list(VARIANTS) if text == "all" else [v.strip() for v in text.split(",") if v.strip()]
    for name in names:
        if name not in VARIANTS:
            import difflib

            hint = difflib.get_close_matches(name, list(VARIANTS), n=1)
            raise UsageError(f"unknown variant {name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else ""))
    return names


def cmd_compare(args: argparse.Namespace) -> int:
    """Run the grid and write ``compare.json``, ``compare.md`` and ``compare.png``."""
    from robodistill.cli import _new_run_dir, _open_run
    from robodistill.config import load_config
    from robodistill.teacher import Teacher, train_teacher

    if args.seeds < 1:
        raise UsageError(f"--seeds must be >= 1, got {args.seeds}")
    names = _variant_names(args.variants)
    base = load_config(args.config, args.overrides)
    for name in names:  # validate every variant's config before anything runs
        load_config(args.config, args.overrides + VARIANTS[name])
    teacher = Teacher.load(args.teacher) if args.teacher else None
    run = _new_run_dir(args.run_dir, base.task.name, "compare")
    with _open_run(run, base) as metrics:
        if teacher is None:
            teacher, t_info = train_teacher(base, run, metrics)
            teacher_steps = t_info["teacher_env_steps"]
        else:
            teacher.check_compatible(base.task.name, teacher.spec["obs_dim"], teacher.spec["action_dim"])
            teacher_steps = _teacher_steps(args.teacher)
        results = {}
        for name in names:
            runs = [run_variant(name, load_config(args.config, args.overrides + VARIANTS[name]), teacher,
                                run / name / f"seed{k}", base.seed + k) for k in range(args.seeds)]
            results[name] = summarize(runs)
            log.info("%s: score %.3f ± %.3f", name, results[name]["score_mean"], results[name]["score_std"])
        out = {"task": base.task.name, "seeds": args.seeds, "teacher_env_steps": teacher_steps,
               "eval_episodes": base.distill.eval_episodes, "variants": results}
        (run / "compare.json").write_text(json.dumps(out, indent=2) + "\n")
        table = markdown_table(out)
        (run / "compare.md").write_text(table)
        plot(out, run / "compare.png")
        if args.results is not None:
            write_results_section(args.results, base.task.name, table, args.config, args.seeds, names,
                                  args.overrides)
    print(table)
    print(run)
    return 0


def _teacher_steps(path: Path) -> int | None:
    path = Path(path)
    summary = (path if path.is_dir() else path.parent.parent) / "summary.json"
    if summary.is_file():
        return json.loads(summary.read_text()).get("teacher_env_steps")
    return None


def run_variant(name: str, cfg: Any, teacher: Any, out_dir: Path, seed: int) -> dict[str, Any]:
    """One seed of one variant; returns score, labels, env steps, wall time and the score curve."""
    from robodistill.distill.runner import distill
    from robodistill.runs import MetricsLog, read_metrics

    cfg = cfg.replace(seed=seed)
    if name == "dagger_as_rsl_rl":
        cfg = rsl_rl_like(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = MetricsLog(out_dir, tensorboard=False)
    t0 = time.time()
    if name == "ppo_proprio":
        info = _ppo_proprio(cfg, teacher, out_dir, metrics)
    elif name.startswith("rsl_rl"):
        import math

        from robodistill.integrations.rsl_rl import distill_with_rsl_rl

        teacher_file = out_dir / "teacher.pt"
        teacher.save(teacher_file)
        init_std = 1.0 if name == "rsl_rl_std1" else math.exp(cfg.student.init_log_std)
        info = distill_with_rsl_rl(cfg, str(teacher_file), str(out_dir), metrics, init_std)
    else:
        info = distill(cfg, teacher, out_dir, metrics)
    metrics.close()
    records = [r for r in read_metrics(out_dir, "distill") if "score" in r]
    curve = [(r["env_steps"], r["score"]) for r in records]
    first = next((r for r in records if r["score"] is not None and r["score"] >= 0.95), None)
    return {"score": info["score"], "labels": info.get("labels", 0), "env_steps": info["distill_env_steps"],
            "wall_seconds": time.time() - t0, "steps_to_0.95": first["env_steps"] if first else None,
            "seconds_to_0.95": first["time"] - t0 if first and "time" in first else None, "curve": curve}


BUDGETS = (0.25, 0.5, 1.0)  # fractions of the dagger variant's env steps at which every variant's score is read


def score_at_budget(curve: list[tuple[int, float]], budget: float) -> float | None:
    """The score of the last evaluation within ``budget`` env steps (None if none came that early)."""
    within = [score for steps, score in curve if steps <= budget and score is not None]
    return within[-1] if within else None


def rsl_rl_gradient_length(steps_per_iteration: int) -> int:
    """rsl_rl's ``gradient_length`` for a rollout: its 15, or the largest divisor of the rollout below it (rsl_rl
    never backpropagates the steps left over)."""
    return max(d for d in range(1, 16) if steps_per_iteration % d == 0)


def rsl_rl_like(cfg: Any) -> Any:
    """``cfg`` with rsl_rl's update schedule: one optimizer step per ``gradient_length`` steps of the rollout, each on
    ``gradient_length * num_envs`` samples, exploring at the student's initial std (the ``rsl_rl`` variant's)."""
    import dataclasses
    import math

    dc = cfg.distill
    length = rsl_rl_gradient_length(dc.steps_per_iteration)
    return cfg.replace(distill=dataclasses.replace(
        dc, updates_per_iteration=dc.steps_per_iteration // length, batch_size=length * dc.num_envs,
        exploration_std=math.exp(cfg.student.init_log_std)))


def _ppo_proprio(cfg: Any, teacher: Any, out_dir: Path, metrics: Any) -> dict[str, Any]:
    """SB3 PPO from scratch on the proprio group with as many env steps as the distillation uses."""
    from robodistill.evaluation import PairedEvaluator, TeacherPolicy
    from robodistill.teacher import train_sb3

    dc = cfg.distill
    steps = dc.num_envs * dc.steps_per_iteration * dc.iterations
    policy, _ = train_sb3(cfg, out_dir / "ppo_proprio", metrics, group="proprio", total_timesteps=steps,
                          stage="ppo_proprio")
    with PairedEvaluator(cfg, teacher) as evaluator:
        result, score = evaluator.evaluate(TeacherPolicy(policy.to(evaluator.device), group="proprio"))
    return {"score": score, "labels": 0, "distill_env_steps": steps, "student_return": result.mean}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and spread of a variant's seeds."""
    scores = [r["score"] for r in runs]
    reached = [r["steps_to_0.95"] for r in runs]
    return {"score_mean": statistics.fmean(scores), "score_std": statistics.pstdev(scores) if len(scores) > 1 else 0.0,
            "scores": scores, "labels": statistics.fmean(r["labels"] for r in runs),
            "env_steps": statistics.fmean(r["env_steps"] for r in runs),
            "wall_seconds": statistics.fmean(r["wall_seconds"] for r in runs),
            "steps_to_0.95": reached, "seconds_to_0.95": [r.get("seconds_to_0.95") for r in runs],
            "curves": [r["curve"] for r in runs]}


def markdown_table(out: dict[str, Any]) -> str:
    """The comparison as a markdown table."""
    teacher_steps = out.get("teacher_env_steps")
    lines = [f"Task `{out['task']}`, {out['seeds']} seeds per variant, paired evaluation on "
             f"{out['eval_episodes']} held-out randomized episodes; teacher trained on "
             f"{teacher_steps if teacher_steps else 'unknown'} env steps.", "",
             "| variant | score (mean ± std) | scores | labels | env steps | steps to 0.95 (of teacher's) | wall s |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, v in out["variants"].items():
        reached = [s for s in v["steps_to_0.95"] if s is not None]
        if reached and teacher_steps:
            frac = f"{statistics.fmean(reached):,.0f} ({100 * statistics.fmean(reached) / teacher_steps:.1f}%)"
            frac += f", {len(reached)}/{len(v['steps_to_0.95'])} seeds"
        else:
            frac = f"not reached ({len(reached)}/{len(v['steps_to_0.95'])} seeds)" if not reached else \
                f"{statistics.fmean(reached):,.0f}"
        scores = ", ".join(f"{s:.3f}" for s in v["scores"])
        lines.append(f"| {name} | {v['score_mean']:.3f} ± {v['score_std']:.3f} | {scores} | {v['labels']:,.0f} | "
                     f"{v['env_steps']:,.0f} | {frac} | {v['wall_seconds']:.0f} |")
    return "\n".join(lines) + "\n" + budget_table(out)


def budget_table(out: dict[str, Any]) -> str:
    """Every variant's mean held-out score at 25, 50 and 100 % of the dagger variant's env steps, and its steps and
    wall seconds to 0.95 per seed ("-": not reached)."""
    reference = out["variants"].get("dagger") or next(iter(out["variants"].values()))
    ours = reference["env_steps"]
    head = " | ".join(f"score at {int(100 * f)} % ({f * ours:,.0f} steps)" for f in BUDGETS)
    lines = ["", f"| variant | {head} | steps to 0.95, per seed | seconds to 0.95, per seed |",
             "| --- | " + " | ".join("---" for _ in BUDGETS) + " | --- | --- |"]
    for name, v in out["variants"].items():
        cells = []
        for f in BUDGETS:
            at = [score_at_budget([tuple(p) for p in c], f * ours) for c in v["curves"]]
            known = [a for a in at if a is not None]
            cells.append(f"{statistics.fmean(known):.3f}" if len(known) == len(at) and known else "no evaluation")
        steps = ", ".join(f"{s:,.0f}" if s is not None else "-" for s in v["steps_to_0.95"])
        secs = ", ".join(f"{s:.0f}" if s is not None else "-" for s in v.get("seconds_to_0.95", []))
        lines.append(f"| {name} | {' | '.join(cells)} | {steps} | {secs or '-'} |")
    return "\n".join(lines) + "\n"


def plot(out: dict[str, Any], path: Path) -> None:
    """Score against labels used, one line per variant (mean over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, v in out["variants"].items():
        curves = [c for c in v["curves"] if c]
        if not curves:
            ax.axhline(v["score_mean"], ls="--", lw=1, label=f"{name} (final)")
            continue
        n = min(len(c) for c in curves)
        xs = [curves[0][i][0] for i in range(n)]
        ys = [statistics.fmean(c[i][1] for c in curves) for i in range(n)]
        ax.plot(xs, ys, marker="o", ms=3, label=name)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xlabel("labels used (env steps)")
    ax.set_ylabel("score (1 = teacher)")
    ax.set_ylim(-0.5, 1.1)
    ax.set_title(f"{out['task']}: score vs labels")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_results_section(path: Path, task: str, table: str, config: Path, seeds: int, names: list[str],
                          overrides: list[str] | None = None) -> None:
    """Replace (or append) this task's section of a results file; other sections stay as they are."""
    begin, end = f"<!-- compare:{task}:begin -->", f"<!-- compare:{task}:end -->"
    sets = "".join(f" --set {o}" for o in overrides or [])
    command = f"robodistill compare {config} --seeds {seeds} --variants {','.join(names)}{sets}"
    section = f"{begin}\n## {task}\n\nGenerated by `{command}`.\n\n{table}\n{end}"
    text = path.read_text() if path.is_file() else ("# Results\n\nGenerated by `robodistill compare`; "
                                                    "do not edit the sections by hand.\n\n")
    if begin in text and end in text:
        head, _, rest = text.partition(begin)
        _, _, tail = rest.partition(end)
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)

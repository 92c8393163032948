"""The run report: training curves from ``metrics.jsonl``, figures from ``summary.json`` and a robustness map.

The robustness map evaluates the student over a grid of two randomized parameters with the paired protocol
(docs/design.md decision 7) restricted to each cell: both parameters are pinned (``env.randomization.NAME = [v, v]``)
while the others stay randomized as configured, and the teacher, the student and the random policy play the
same held-out episodes in every cell. Plots use matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from robodistill.errors import UsageError
from robodistill.runs import atomic_write_text, read_metrics

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from robodistill.config import Config

log = logging.getLogger(__name__)


@dataclass
class RobustnessMap:
    """Returns and scores of teacher and student over a grid of two parameters (``[len(x), len(y)]`` arrays)."""

    params: tuple[str, str]
    x: np.ndarray  # [Nx] values of params[0]
    y: np.ndarray  # [Ny] values of params[1]
    teacher_return: np.ndarray  # [Nx, Ny]
    student_return: np.ndarray  # [Nx, Ny]
    random_return: np.ndarray  # [Nx, Ny]
    score: np.ndarray  # [Nx, Ny]
    episodes: int
    train_ranges: tuple[tuple[float, float], tuple[float, float]]


def grid_values(lo: float, hi: float, n: int, extend: float = 0.0) -> np.ndarray:
    """``n`` values over ``[lo, hi]`` widened by ``extend`` times its width on each side (never below 0 for a
    parameter whose range starts at or above 0); a fixed parameter gets ±20 % around its value."""
    if hi <= lo:
        half = 0.2 * abs(lo) or 0.1
        lo, hi = lo - half, lo + half
    width = hi - lo
    new_lo = lo - extend * width
    if lo >= 0.0:
        new_lo = max(new_lo, 0.0)
    return np.linspace(new_lo, hi + extend * width, n)


def robustness_map(run: Path, cfg: "Config", params: tuple[str, str], grid: int, episodes: int,
                   extend: float = 0.0, seed: int | None = None) -> RobustnessMap:
    """Paired evaluation of teacher, student and random policy in each cell of a ``grid x grid`` parameter grid
    spanning the training ranges widened by ``extend`` (a fraction of their width) on each side."""
    from tqdm import tqdm

    from robodistill.evaluation import PairedEvaluator, StudentPolicy
    from robodistill.student import load_student
    from robodistill.teacher import Teacher
    from robodistill.viz.common import param_range, pin_params

    teacher = Teacher.load(run)
    student = StudentPolicy(load_student(run / "student" / "student.pt"))
    ranges = (param_range(cfg, params[0]), param_range(cfg, params[1]))
    xs, ys = grid_values(*ranges[0], grid, extend), grid_values(*ranges[1], grid, extend)
    shape = (len(xs), len(ys))
    out = {k: np.full(shape, np.nan) for k in ("teacher", "student", "random", "score")}
    cells = [(i, j) for i in range(len(xs)) for j in range(len(ys))]
    for i, j in tqdm(cells, desc="robustness", unit="cell", leave=False, disable=None):
        cell_cfg = pin_params(cfg, {params[0]: float(xs[i]), params[1]: float(ys[j])})
        with PairedEvaluator(cell_cfg, teacher, episodes=episodes, seed=seed) as evaluator:
            student.student.to(evaluator.device)
            result, score = evaluator.evaluate(student)
        out["teacher"][i, j] = evaluator.teacher_result.mean
        out["random"][i, j] = evaluator.random_result.mean
        out["student"][i, j] = result.mean
        out["score"][i, j] = score
    return RobustnessMap(params, xs, ys, out["teacher"], out["student"], out["random"], out["score"], episodes,
                         ranges)


# ---- plots ---------------------------------------------------------------------------------------------


def _series(records: list[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    pts = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
    if not pts:
        return np.zeros(0), np.zeros(0)
    steps, values = zip(*pts)
    return np.asarray(steps, dtype=float), np.asarray(values, dtype=float)


def _empty(ax: "Axes", title: str, why: str) -> None:
    ax.set_title(title)
    ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes, color="0.5")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_teacher(ax: "Axes", teacher: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    """Teacher's training episode return against environment steps."""
    x, y = _series(teacher, "episode_return")
    if not x.size:
        return _empty(ax, "teacher training", "no teacher records")
    ax.plot(x, y, color="tab:blue", label="training return")
    for key, style, label in (("teacher_return", "-", "teacher (held-out)"), ("random_return", ":", "random")):
        if isinstance(summary.get(key), (int, float)):
            ax.axhline(summary[key], color="0.4", ls=style, lw=1, label=label)
    from matplotlib.ticker import EngFormatter

    ax.xaxis.set_major_formatter(EngFormatter())  # 100k, 1M
    ax.set(title="teacher training", xlabel="environment steps", ylabel="episode return")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)


def plot_score(ax: "Axes", distill: list[dict[str, Any]]) -> None:
    """Student's paired score per DAgger iteration."""
    x, y = _series(distill, "score")
    if not x.size:
        return _empty(ax, "student score", "no distill records")
    ax.plot(x, y, "o-", color="tab:green", ms=3)
    ax.axhline(1.0, color="0.4", lw=1, ls="--", label="teacher")
    ax.axhline(0.0, color="0.4", lw=1, ls=":", label="random")
    ax.set(title="student score (paired)", xlabel="DAgger iteration", ylabel="score")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)


def plot_loss(ax: "Axes", distill: list[dict[str, Any]]) -> None:
    """Imitation loss per DAgger iteration (log scale)."""
    x, y = _series(distill, "loss")
    if not x.size:
        return _empty(ax, "imitation loss", "no distill records")
    ax.plot(x, y, "o-", color="tab:red", ms=3)
    if (y > 0).all():
        ax.set_yscale("log")
    ax.set(title="imitation loss", xlabel="DAgger iteration", ylabel="loss")
    ax.grid(alpha=0.3, which="both")


def plot_schedule(ax: "Axes", distill: list[dict[str, Any]]) -> None:
    """β (teacher-action probability) and aggregation buffer size per iteration."""
    x, beta = _series(distill, "beta")
    if not x.size:
        return _empty(ax, "β and buffer", "no distill records")
    ax.plot(x, beta, "o-", color="tab:purple", ms=3, label="β")
    xf, frac = _series(distill, "teacher_action_fraction")
    if xf.size:
        ax.plot(xf, frac, "x", color="tab:purple", alpha=0.6, label="teacher actions executed")
    ax.set(title="β and buffer size", xlabel="DAgger iteration", ylabel="β", ylim=(-0.05, 1.05))
    xb, size = _series(distill, "buffer_size")
    twin = ax.twinx()
    twin.plot(xb, size, "s-", color="tab:orange", ms=3, label="buffer size")
    twin.set_ylabel("buffer size (labels)")
    lines = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(lines, [ln.get_label() for ln in lines], fontsize=7, loc="upper center", framealpha=0.9)
    ax.grid(alpha=0.3)


def plot_robustness(axes: Sequence["Axes"], rmap: RobustnessMap) -> None:
    """Teacher return, student return (one colour scale) and the student's score over the parameter grid."""
    vmin = float(np.nanmin([rmap.teacher_return, rmap.student_return]))
    vmax = float(np.nanmax([rmap.teacher_return, rmap.student_return]))
    panels = ((rmap.teacher_return, "teacher return", "viridis", vmin, vmax),
              (rmap.student_return, "student return", "viridis", vmin, vmax),
              (rmap.score, "student score", "RdYlGn", 0.0, 1.0))
    dx = (rmap.x[1] - rmap.x[0]) / 2 if len(rmap.x) > 1 else 0.5
    dy = (rmap.y[1] - rmap.y[0]) / 2 if len(rmap.y) > 1 else 0.5
    extent = (rmap.x[0] - dx, rmap.x[-1] + dx, rmap.y[0] - dy, rmap.y[-1] + dy)
    for ax, (values, title, cmap, lo, hi) in zip(axes, panels):
        im = ax.imshow(values.T, origin="lower", extent=extent, aspect="auto", cmap=cmap, vmin=lo, vmax=hi)
        for i, xv in enumerate(rmap.x):
            for j, yv in enumerate(rmap.y):
                v = values[i, j]
                text = "nan" if not math.isfinite(v) else (f"{v:.2f}" if title.endswith("score") else f"{v:.0f}")
                shade = im.cmap(im.norm(v)) if math.isfinite(v) else (1.0, 1.0, 1.0, 1.0)
                dark = 0.299 * shade[0] + 0.587 * shade[1] + 0.114 * shade[2] < 0.5
                ax.text(xv, yv, text, ha="center", va="center", fontsize=7, color="white" if dark else "black")
        (xlo, xhi), (ylo, yhi) = rmap.train_ranges
        ax.add_patch(_rect(xlo, ylo, xhi - xlo, yhi - ylo))
        ax.set(title=title, xlabel=rmap.params[0], ylabel=rmap.params[1])
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)


def _rect(x: float, y: float, w: float, h: float) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), w, h, fill=False, ls="--", lw=1, ec="white")


# ---- the report ----------------------------------------------------------------------------------------


def _figure(nrows: int, ncols: int, width: float, height: float) -> tuple[Any, np.ndarray]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False)
    return fig, axes


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def choose_params(cfg: "Config", requested: str | None) -> tuple[str, str] | None:
    """The two parameters of the robustness map: ``--params A,B`` or the task's first two (None if < 2)."""
    import difflib

    from robodistill.tasks import get_task_class

    names = list(get_task_class(cfg.task).params)
    if requested is None:
        return (names[0], names[1]) if len(names) >= 2 else None
    chosen = [p.strip() for p in requested.split(",")]
    if len(chosen) != 2 or chosen[0] == chosen[1]:
        raise UsageError(f"--params {requested!r}: name two different parameters, e.g. {','.join(names[:2])}")
    for name in chosen:
        if name not in names:
            hint = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
            extra = f" (did you mean {hint[0]!r}?)" if hint else f" (valid: {', '.join(names)})"
            raise UsageError(f"--params: unknown parameter {name!r} for task {cfg.task.name!r}{extra}")
    return chosen[0], chosen[1]


def write_report(run: Path, cfg: "Config", out_dir: Path, params: tuple[str, str] | None, grid: int,
                 episodes: int, extend: float = 0.25) -> Path:
    """Write ``training.png``, ``robustness.png``, ``report.png`` (both) and ``report.md`` into ``out_dir``."""
    summary_path = run / "summary.json"
    summary: dict[str, Any] = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    teacher_recs, distill_recs = read_metrics(run, "teacher"), read_metrics(run, "distill")
    out_dir.mkdir(parents=True, exist_ok=True)

    fig, ax = _figure(2, 2, 10, 7)
    plot_teacher(ax[0, 0], teacher_recs, summary)
    plot_score(ax[0, 1], distill_recs)
    plot_loss(ax[1, 0], distill_recs)
    plot_schedule(ax[1, 1], distill_recs)
    fig.suptitle(f"{cfg.task.name}: {run.name}")
    _save(fig, out_dir / "training.png")

    rmap = None
    has_student = (run / "student" / "student.pt").is_file()
    if params is not None and grid > 0 and has_student:
        rmap = robustness_map(run, cfg, params, grid, episodes, extend)
        fig, ax = _figure(1, 3, 14, 4)
        plot_robustness(ax[0], rmap)
        fig.suptitle(f"robustness ({episodes} paired episodes per cell; dashed box: training range)")
        _save(fig, out_dir / "robustness.png")

    fig, ax = _figure(2 if rmap else 1, 4, 18, 8 if rmap else 4)
    plot_teacher(ax[0, 0], teacher_recs, summary)
    plot_score(ax[0, 1], distill_recs)
    plot_loss(ax[0, 2], distill_recs)
    plot_schedule(ax[0, 3], distill_recs)
    if rmap:
        plot_robustness(ax[1, :3], rmap)
        ax[1, 3].axis("off")
        ax[1, 3].text(0.0, 0.5, _summary_text(summary), family="monospace", fontsize=9, va="center")
    fig.suptitle(f"robodistill report: {cfg.task.name} ({run.name})")
    _save(fig, out_dir / "report.png")

    md = _markdown(run, cfg, summary, teacher_recs, distill_recs, rmap)
    atomic_write_text(out_dir / "report.md", md)
    return out_dir / "report.md"


SUMMARY_KEYS = ("score", "student_return", "teacher_return", "random_return", "teacher_env_steps",
                "distill_env_steps", "distill_iterations", "onnx_max_abs_diff", "wall_seconds")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e-2 or abs(v) >= 1e5 else f"{v:.3f}".rstrip("0").rstrip(".")
    return str(v)


def _summary_text(summary: dict[str, Any]) -> str:
    """The summary's figures for the overview plot (wall time left out: it says more about the machine)."""
    return "\n".join(f"{k:<18} {_fmt(summary[k])}" for k in SUMMARY_KEYS if k in summary and k != "wall_seconds")


def _markdown(run: Path, cfg: "Config", summary: dict[str, Any], teacher_recs: list, distill_recs: list,
              rmap: RobustnessMap | None) -> str:
    lines = [f"# Report: {run.name}", "", f"Task `{cfg.task.name}`, backend `{cfg.env.backend}`.", ""]
    if summary:
        lines += ["| figure | value |", "| --- | --- |"]
        lines += [f"| {k} | {_fmt(summary[k])} |" for k in SUMMARY_KEYS if k in summary]
        lines.append("")
    lines += ["## Training", "", "![training curves](training.png)", "",
              f"{len(teacher_recs)} teacher records (episode return against environment steps), "
              f"{len(distill_recs)} DAgger iterations (score, loss, β, buffer size).", ""]
    if distill_recs:
        last = distill_recs[-1]
        lines += [f"Last iteration {last['step']}: loss {_fmt(last.get('loss'))}, β {_fmt(last.get('beta'))}, "
                  f"buffer {last.get('buffer_size')}, score {_fmt(last.get('score'))}.", ""]
    if rmap is not None:
        a, b = rmap.params
        lines += ["## Robustness", "", "![robustness map](robustness.png)", "",
                  f"Student score over `{a}` × `{b}` ({rmap.episodes} paired episodes per cell, the same in "
                  "every cell; the other parameters randomized as configured). Training ranges (the dashed "
                  f"box): {a} {list(rmap.train_ranges[0])}, {b} {list(rmap.train_ranges[1])}.", "",
                  f"| {a} \\ {b} | " + " | ".join(f"{v:.3g}" for v in rmap.y) + " |",
                  "| --- |" + " --- |" * len(rmap.y)]
        for i, xv in enumerate(rmap.x):
            lines.append(f"| {xv:.3g} | " + " | ".join(_fmt(float(s)) for s in rmap.score[i]) + " |")
        lines += ["", f"Mean score over the grid {_fmt(float(np.nanmean(rmap.score)))}, worst cell "
                  f"{_fmt(float(np.nanmin(rmap.score)))}.", ""]
    lines += ["![overview](report.png)", ""]
    return "\n".join(lines)

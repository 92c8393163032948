"""``view``, ``render`` and ``report``: the command-line side of :mod:`robodistill.viz`.

Heavy imports (mujoco, torch, matplotlib) stay inside the handlers so that ``robodistill --help`` stays fast.
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path
from typing import Any, Callable

from robodistill.errors import UsageError

Handler = Callable[[argparse.Namespace], int]


def _view_epilog() -> str:
    from robodistill.viz.viewer import KEYS_HELP

    keys = "\n".join(f"  {k:<14} {v}" for k, v in KEYS_HELP)
    return ("keys in the viewer window (also shown in its overlay):\n" + keys + "\n\n"
            "MuJoCo's own keys keep working (mouse to move the camera, F1 help, letters toggle visual flags,\n"
            "0-5 geom groups). The viewer needs a display; for a headless machine use `robodistill render`.")


def _scenario_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--param", dest="params", action="append", default=[], metavar="NAME=VALUE",
                   help="pin a randomized parameter to one value (repeatable), e.g. --param pole_mass=1.2")
    p.add_argument("--command", dest="task_command", default=None, metavar="VX,VY,YAW",
                   help="fixed task command for tasks that take one (e.g. the quadruped's base velocity)")
    p.add_argument("--seed", type=int, default=0, help="seed of the episodes (parameters and initial states)")


def register(sub: Any, add_common: Callable[..., None]) -> dict[str, Handler]:
    """Add ``view``, ``render`` and ``report`` to the ``robodistill`` subparsers."""
    p = sub.add_parser("view", help="watch a run's policy in the interactive MuJoCo viewer (needs a display)",
                       description="Open MuJoCo's viewer with RUN's policy driving one environment in real time.",
                       epilog=_view_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path)
    p.add_argument("--policy", default="student", help="policy at start: student, teacher, onnx or random")
    _scenario_args(p)
    p.add_argument("--max-steps", type=int, default=None, metavar="N", help="close the viewer after N control steps")
    p.add_argument("--speed", type=float, default=1.0,
                   help="playback speed as a multiple of real time (0: as fast as possible)")
    add_common(p, run_dir=False)

    p = sub.add_parser("render", help="offscreen video (MP4 or GIF) of policies side by side on the same episode",
                       description=textwrap.dedent("""\
                           Render RUN's policies side by side on the same episode (same seed: same randomized
                           parameters and initial state) to MP4 or GIF, with policy, step and return drawn on
                           each tile. Uses MUJOCO_GL=egl unless MUJOCO_GL is set."""),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path)
    p.add_argument("--out", type=Path, required=True, help="output file: .mp4 or .gif")
    p.add_argument("--steps", type=int, default=None, help="control steps (default: one episode)")
    p.add_argument("--policies", default="teacher,student", help="comma-separated: student, teacher, onnx, random")
    _scenario_args(p)
    p.add_argument("--width", type=int, default=320, help="width of each policy's tile, pixels")
    p.add_argument("--height", type=int, default=240, help="height, pixels")
    p.add_argument("--fps", type=float, default=None, help="frames per second (default: real time, 1 / control dt)")
    p.add_argument("--quality", choices=("fast", "full"), default="fast",
                   help="full adds shadows and reflections (about 5x slower on a software renderer)")
    add_common(p, run_dir=False)

    p = sub.add_parser("report", help="plots and a markdown summary of a run (RUN/report/)",
                       description="Write RUN/report/report.md with training curves (teacher return, student "
                       "score, loss, β, buffer size) and a robustness map of the student over two randomized "
                       "parameters, each grid cell evaluated with the paired protocol.")
    p.add_argument("run", type=Path)
    p.add_argument("--params", default=None, metavar="A,B",
                   help="the two randomized parameters of the robustness map (default: the task's first two)")
    p.add_argument("--grid", type=int, default=5, help="grid points per parameter (0: no robustness map)")
    p.add_argument("--episodes", type=int, default=8, help="paired episodes per grid cell")
    p.add_argument("--extend", type=float, default=0.25,
                   help="widen the grid beyond the training ranges by this fraction of their width on each "
                   "side (0: the training ranges only)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: RUN/report)")
    add_common(p, run_dir=False)
    return {"view": cmd_view, "render": cmd_render, "report": cmd_report}


def cmd_view(args: argparse.Namespace) -> int:
    """``view RUN [--policy P] [--param NAME=VALUE ...] [--command VX,VY,YAW] [--max-steps N]``."""
    from robodistill.viz.common import check_policy_names, load_run, parse_command, parse_params

    _small_batch_torch()
    check_policy_names([args.policy])
    if args.max_steps is not None and args.max_steps < 1:
        raise UsageError(f"--max-steps must be >= 1, got {args.max_steps}")
    if args.speed < 0:
        raise UsageError(f"--speed must be >= 0, got {args.speed}")
    command = parse_command(args.task_command)
    cfg = load_run(args.run, args.overrides, parse_params(args.params))
    _check_command(cfg, command)
    _check_display()
    from robodistill.viz.viewer import run_viewer

    return run_viewer(args.run, cfg, args.policy, args.seed, command, args.max_steps, args.speed)


def cmd_render(args: argparse.Namespace) -> int:
    """``render RUN --out FILE [--steps N] [--policies teacher,student] [--seed S] [--width W --height H]``."""
    from robodistill.viz.common import check_policy_names, load_policy, load_run, parse_command, parse_params
    from robodistill.viz.render import check_output, render_video

    _small_batch_torch()
    names = [n.strip() for n in args.policies.split(",") if n.strip()]
    if not names:
        raise UsageError("--policies names no policy; e.g. --policies teacher,student")
    check_policy_names(names)
    if len(set(names)) != len(names):
        raise UsageError(f"--policies {args.policies!r} names a policy twice")
    check_output(args.out)
    for flag, value, lo in (("--width", args.width, 16), ("--height", args.height, 16), ("--steps", args.steps, 1)):
        if value is not None and value < lo:
            raise UsageError(f"{flag} must be >= {lo}, got {value}")
    if args.fps is not None and args.fps <= 0:
        raise UsageError(f"--fps must be > 0, got {args.fps}")
    command = parse_command(args.task_command)
    # a teacher still in training (or a random policy) renders without a student
    cfg = load_run(args.run, args.overrides, parse_params(args.params),
                   need_student=bool({"student", "onnx"} & set(names)))
    _check_command(cfg, command)
    policies = {name: load_policy(args.run, name, cfg, args.seed) for name in names}
    steps = args.steps
    if steps is None:
        from robodistill.tasks import get_task_class

        steps = cfg.env.episode_length or get_task_class(cfg.task).episode_length
    stats = render_video(cfg, policies, args.out, steps, args.seed, args.width, args.height, args.fps, command,
                         args.quality)
    print(f"{stats.path}: {stats.frames} frames ({len(names)} policies), {stats.bytes / 1024:.0f} KiB, "
          f"{stats.frames_per_second:.1f} frames/s")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """``report RUN [--params A,B] [--grid N] [--episodes N] [--out DIR]``."""
    from robodistill.viz.common import load_run
    from robodistill.viz.report import choose_params, write_report

    _small_batch_torch()
    if args.grid < 0 or args.grid == 1:
        raise UsageError(f"--grid must be 0 (no robustness map) or >= 2, got {args.grid}")
    if args.episodes < 1:
        raise UsageError(f"--episodes must be >= 1, got {args.episodes}")
    if args.extend < 0:
        raise UsageError(f"--extend must be >= 0, got {args.extend}")
    cfg = load_run(args.run, args.overrides, need_student=False)
    params = choose_params(cfg, args.params)
    path = write_report(args.run, cfg, args.out or args.run / "report", params, args.grid, args.episodes,
                        args.extend)
    print(path)
    return 0


def _check_display() -> None:
    """The viewer opens a GLFW window; without a display MuJoCo would abort the process from its own thread."""
    import os
    import sys

    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise UsageError("view needs a display and DISPLAY is not set: run it on a desktop, under "
                         "`xvfb-run -a robodistill view ...`, or record a video with `robodistill render RUN --out "
                         "video.mp4`")


def _small_batch_torch() -> None:
    """One torch thread: these commands run batches of 1-8 observations, where more threads only contend
    (measured: a 128-wide linear layer went from ~0.05 ms to 6 ms on a loaded 2-core machine)."""
    import torch

    torch.set_num_threads(1)


def _check_command(cfg: Any, command: Any) -> None:
    """Check ``--command`` against the task before anything is built."""
    if command is None:
        return
    from robodistill.tasks import get_task_class

    cls = get_task_class(cfg.task)
    if cls.command_dim == 0:
        raise UsageError(f"task {cls.name!r} takes no command; drop --command")
    if command.size != cls.command_dim:
        raise UsageError(f"--command needs {cls.command_dim} comma-separated values for task {cls.name!r}, "
                         f"got {command.size}")

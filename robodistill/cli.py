"""The ``robodistill`` command line (docs/design.md section 3).

Exit codes: 0 done; 2 bad usage, config or input file (one line on stderr, no traceback, no run directory
created); 1 a failure at run time (one line on stderr, the traceback in ``RUN/log.txt``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, NoReturn

from robodistill.errors import UsageError

log = logging.getLogger("robodistill")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"robodistill: error: {message} (see {self.prog} --help)\n")


def _common(p: argparse.ArgumentParser, run_dir: bool = True) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override a config value (repeatable), e.g. --set distill.iterations=5")
    if run_dir:
        p.add_argument("--run-dir", type=Path, default=None, help="run directory (default: runs/<task>-<command>-<time>)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = _Parser(prog="robodistill", description="Privileged SB3 teachers distilled into proprioceptive "
                     "students by DAgger on MuJoCo/MJX, shipped as ONNX.")
    from robodistill import __version__

    parser.add_argument("--version", action="version", version=f"robodistill {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("train-teacher", help="train an SB3 teacher on the privileged observations")
    p.add_argument("config", type=Path, nargs="?", default=None, help="config file (not with --resume)")
    p.add_argument("--resume", type=Path, default=None, metavar="RUN",
                   help="continue RUN's teacher from its last SB3 checkpoint")
    p.add_argument("--init", type=Path, default=None, metavar="TEACHER",
                   help="start a new run from a teacher file or run (fine-tuning; PPO, same network)")
    _common(p)

    p = sub.add_parser("distill", help="distill a proprioceptive student from a teacher (DAgger)")
    p.add_argument("config", type=Path, nargs="?", default=None, help="config file (not with --resume)")
    p.add_argument("--teacher", type=Path, default=None, help="teacher file or run directory")
    p.add_argument("--resume", type=Path, default=None, metavar="RUN",
                   help="continue RUN from its last complete checkpoint")
    _common(p)

    p = sub.add_parser("pipeline", help="teacher, student, export and verification into one run directory")
    p.add_argument("config", type=Path)
    _common(p)

    p = sub.add_parser("export", help="export RUN's student to RUN/export/policy.onnx, parity-checked")
    p.add_argument("run", type=Path)
    _common(p, run_dir=False)

    p = sub.add_parser("eval", help="paired evaluation of a run's policy on held-out episodes")
    p.add_argument("run", type=Path)
    p.add_argument("--policy", default="student", help="student, teacher, onnx or random")
    p.add_argument("--episodes", type=int, default=None, help="number of held-out episodes")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _common(p, run_dir=False)

    for module_name in EXTENSION_MODULES:
        module = importlib.import_module(module_name)
        COMMANDS.update(module.register(sub, _common))
    return parser


# ---- helpers -------------------------------------------------------------------------------------------


def _setup_logging(verbose: bool) -> None:
    """Warnings and errors on the console (everything with ``-v``); the run's ``log.txt`` gets robodistill's INFO
    lines too, so a failure prints exactly one line on stderr (the README's exit-code contract)."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stderr:
            handler.setLevel(logging.DEBUG if verbose else logging.WARNING)
    log.setLevel(logging.DEBUG if verbose else logging.INFO)  # third-party libraries stay at WARNING


def _new_run_dir(requested: Path | None, task: str, command: str) -> Path:
    """Validate (but do not create) the run directory: a new or empty folder."""
    from robodistill.runs import default_run_dir

    path = requested or default_run_dir(task, command)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UsageError(f"run directory {path} already exists and is not empty; choose another --run-dir")
    return path


def _open_run(path: Path, cfg: Any | None) -> Any:
    """Create the run directory and save the resolved config (``cfg``; None continues a run that has them).

    Returns a context manager giving the :class:`~robodistill.runs.MetricsLog`: ``RUN/log.txt`` and the metrics
    are attached inside the ``with`` block, which the command's whole run lives in, and detached when it ends.
    """
    from robodistill.config import save_config
    from robodistill.runs import run_logs

    if cfg is not None:
        path.mkdir(parents=True, exist_ok=True)
        save_config(cfg, path / "config.yaml")
    return run_logs(path, new=cfg is not None)


def _load_run_config(run: Path, overrides: list[str]) -> Any:
    from robodistill.config import load_config
    from robodistill.runs import require_run_dir

    return load_config(require_run_dir(run) / "config.yaml", overrides)


def _record_resume_overrides(run: Path, cfg: Any, overrides: list[str]) -> None:
    """Keep the config the run started with as ``config.<time>.yaml``; ``config.yaml`` becomes ``cfg``."""
    from robodistill.config import save_config

    earlier = run / f"config.{time.strftime('%Y%m%d-%H%M%S')}.yaml"
    shutil.copy2(run / "config.yaml", earlier)
    save_config(cfg, run / "config.yaml")
    log.info("resuming with %s (the earlier config is kept as %s)", " ".join(overrides), earlier.name)


def _once_only_settings_cleared(cfg: Any) -> Any:
    """The config a run directory keeps: without ``teacher.action_std``, which restarts the noise once (the run's
    summary.json records it), not again at every later ``--resume``."""
    import dataclasses

    return cfg.replace(teacher=dataclasses.replace(cfg.teacher, action_std=None))


def _run_student_path(run: Path) -> Path:
    path = run / "student" / "student.pt"
    if not path.is_file():
        raise UsageError(f"run directory {run} has no student (student/student.pt); run distill first")
    return path


# ---- commands ------------------------------------------------------------------------------------------


def cmd_train_teacher(args: argparse.Namespace) -> int:
    """``train-teacher CONFIG [--init TEACHER]`` or ``train-teacher --resume RUN``."""
    from robodistill.config import load_config
    from robodistill.runs import update_summary
    from robodistill.teacher import Teacher, check_init_teacher, resolve_teacher_path, train_teacher

    init, init_path = None, None
    if args.resume is not None:
        if args.config is not None:
            raise UsageError("--resume RUN takes the config from RUN; do not give CONFIG")
        if args.init is not None:
            raise UsageError("--resume continues a run from its own checkpoint; --init starts a new one: give one")
        run = args.resume
        cfg = _load_run_config(run, args.overrides)
        if args.overrides:  # e.g. a longer budget or a new reward scale: the run records what it goes on with
            _record_resume_overrides(run, _once_only_settings_cleared(cfg), args.overrides)
    elif args.config is None:
        raise UsageError("train-teacher needs CONFIG (or --resume RUN)")
    else:
        cfg = load_config(args.config, args.overrides)
        run = _new_run_dir(args.run_dir, cfg.task.name, "teacher")
        if args.init is not None:
            init_path = resolve_teacher_path(args.init)
            init = Teacher.load(init_path)
            _check_teacher_fits(cfg, init)
            check_init_teacher(cfg, init)
    with _open_run(run, None if args.resume is not None else _once_only_settings_cleared(cfg)) as metrics:
        if init is not None:
            log.info("starting from the teacher %s", init_path)
        t0 = time.time()
        _, info = train_teacher(cfg, run, metrics, resume=args.resume is not None, init=init)
        if init_path is not None:
            info["teacher_init"] = str(init_path)
        update_summary(run, task=cfg.task.name, **info, wall_seconds=time.time() - t0)
    print(run)
    return 0


def cmd_distill(args: argparse.Namespace) -> int:
    """``distill CONFIG --teacher RUN_OR_FILE`` or ``distill --resume RUN``; also under torchrun."""
    from robodistill.config import load_config
    from robodistill.distill import distributed
    from robodistill.distill.runner import CHECKPOINT_FILE
    from robodistill.teacher import Teacher, resolve_teacher_path

    if args.resume is not None:
        if args.config is not None or args.teacher is not None:
            raise UsageError("--resume RUN takes the config and the teacher from RUN; give neither CONFIG nor --teacher")
        run = args.resume
        cfg = _load_run_config(run, args.overrides)
        checkpoint = run / "student" / CHECKPOINT_FILE
        if not checkpoint.is_file():
            raise UsageError(f"{run} has no complete checkpoint (student/{CHECKPOINT_FILE}) to resume from")
        teacher_path = resolve_teacher_path(run)
    else:
        if args.config is None:
            raise UsageError("distill needs CONFIG (or --resume RUN)")
        cfg = load_config(args.config, args.overrides)
        if args.teacher is None:
            raise UsageError("distill needs --teacher RUN_OR_FILE (a teacher file or a run directory with one)")
        teacher_path, checkpoint = resolve_teacher_path(args.teacher), None
        if distributed.launched_by_torchrun() and args.run_dir is None:
            raise UsageError("under torchrun, give --run-dir so that every rank agrees on the run directory")
        run = args.run_dir
    teacher = Teacher.load(teacher_path)
    _check_teacher_fits(cfg, teacher)
    rank, _ = distributed.init()
    try:
        info = _distill_in_run(args, cfg, teacher, teacher_path, run, checkpoint, rank)
    except BaseException:
        distributed.shutdown(wait_for_all=False)  # no rank leaves gloo's threads running at interpreter exit
        raise
    distributed.shutdown()
    if rank == 0:
        print(info["run"])
    return 0


def _distill_in_run(args: argparse.Namespace, cfg: Any, teacher: Any, teacher_path: Path, run: Path | None,
                    checkpoint: Path | None, rank: int) -> dict[str, Any]:
    """The distillation of ``cmd_distill`` inside its run directory (rank 0 logs, checkpoints and summarizes)."""
    from contextlib import nullcontext

    from robodistill.distill.runner import distill
    from robodistill.runs import update_summary
    from robodistill.teacher import TEACHER_FILE

    if rank == 0 and checkpoint is None:
        run = _new_run_dir(run, cfg.task.name, "distill")
    teacher_summary = teacher_path.parent.parent / "summary.json"
    extra = {}
    if teacher_summary.is_file() and checkpoint is None:
        teacher_keys = ("teacher_env_steps", "teacher_wall_seconds", "teacher_steps_per_second")
        extra = {k: v for k, v in json.loads(teacher_summary.read_text()).items() if k in teacher_keys}
    # rank 0 logs and checkpoints; the other ranks write nothing
    with _open_run(run, cfg if checkpoint is None else None) if rank == 0 else nullcontext() as metrics:
        if rank == 0 and checkpoint is None:
            (run / "teacher").mkdir(exist_ok=True)
            shutil.copyfile(teacher_path, run / "teacher" / TEACHER_FILE)
        t0 = time.time()
        info = distill(cfg, teacher, run, metrics, resume=checkpoint)
        if rank == 0:
            update_summary(run, **{"task": cfg.task.name, **extra, **info, "wall_seconds": time.time() - t0})
    return {**info, "run": run}


def _check_teacher_fits(cfg: Any, teacher: Any) -> None:
    """Compare the teacher's spec with the task's observation and action sizes before anything runs."""
    from robodistill.env import env_from_config

    env = env_from_config(cfg, 1, seed=0)
    try:
        teacher.check_compatible(cfg.task.name, env.obs_dims["privileged"], env.action_dim)
    finally:
        env.close()


def cmd_pipeline(args: argparse.Namespace) -> int:
    """``pipeline CONFIG``: teacher, student, export."""
    from robodistill.config import load_config
    from robodistill.distill.runner import distill
    from robodistill.onnx_export import export_run
    from robodistill.runs import update_summary
    from robodistill.student import load_student
    from robodistill.teacher import train_teacher

    cfg = load_config(args.config, args.overrides)
    run = _new_run_dir(args.run_dir, cfg.task.name, "pipeline")
    with _open_run(run, cfg) as metrics:
        t0 = time.time()
        update_summary(run, task=cfg.task.name)
        teacher, t_info = train_teacher(cfg, run, metrics)
        update_summary(run, **t_info)
        d_info = distill(cfg, teacher, run, metrics)
        update_summary(run, **d_info)
        t_export = time.time()
        verification = export_run(cfg, load_student(run / "student" / "student.pt"), run / "export")
        summary = update_summary(run, **verification, export_wall_seconds=time.time() - t_export,
                                 wall_seconds=time.time() - t0)
        log.info("score %.3f (student %.1f, teacher %.1f, random %.1f), onnx max abs diff %.1e, %.0f s",
                 summary["score"], summary["student_return"], summary["teacher_return"], summary["random_return"],
                 summary["onnx_max_abs_diff"], summary["wall_seconds"])
    print(run)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """``export RUN``."""
    from robodistill.onnx_export import export_run
    from robodistill.runs import update_summary
    from robodistill.student import load_student

    cfg = _load_run_config(args.run, args.overrides)
    student = load_student(_run_student_path(args.run))
    verification = export_run(cfg, student, args.run / "export")
    update_summary(args.run, **verification)
    print(args.run / "export" / "policy.onnx")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """``eval RUN [--policy student|teacher|onnx|random] [--episodes N] [--json]``."""
    from robodistill.evaluation import (
        PairedEvaluator, RandomPolicy, StudentPolicy, TeacherPolicy, normalized_score,
    )
    from robodistill.teacher import Teacher

    policies = ("student", "teacher", "onnx", "random")
    if args.policy not in policies:
        raise UsageError(f"unknown policy {args.policy!r}; choose one of {', '.join(policies)}")
    if args.episodes is not None and args.episodes < 1:
        raise UsageError(f"--episodes must be >= 1, got {args.episodes}")
    cfg = _load_run_config(args.run, args.overrides)
    teacher = Teacher.load(args.run)
    episodes = args.episodes or cfg.distill.eval_episodes
    if args.policy == "student":
        from robodistill.student import load_student

        policy: Any = StudentPolicy(load_student(_run_student_path(args.run)))
    elif args.policy == "onnx":
        from robodistill.onnx_export import OnnxPolicy

        policy = OnnxPolicy(args.run / "export" / "policy.onnx")
    elif args.policy == "teacher":
        policy = TeacherPolicy(teacher)
    else:
        policy = RandomPolicy(teacher.spec["action_dim"], cfg.distill.eval_seed)
    with PairedEvaluator(cfg, teacher, episodes=episodes) as evaluator:
        if isinstance(policy, StudentPolicy):
            policy.student.to(evaluator.device)
        result = evaluator.run(policy)
    out = {"policy": args.policy, "task": cfg.task.name, "episodes": episodes,
           "mean_return": result.mean, "std_return": float(result.returns.std()),
           "mean_length": float(result.lengths.mean()), "teacher_return": evaluator.teacher_result.mean,
           "random_return": evaluator.random_result.mean,
           "score": normalized_score(result.mean, evaluator.teacher_result.mean, evaluator.random_result.mean),
           **result.metrics}
    if args.json:
        print(json.dumps(out))
    else:
        figures = ", ".join(f"{k} {v:.3g}" for k, v in result.metrics.items())
        print(f"{args.policy}: mean return {out['mean_return']:.2f} ± {out['std_return']:.2f} over {episodes} "
              f"episodes; teacher {out['teacher_return']:.2f}, random {out['random_return']:.2f}, "
              f"score {out['score']:.3f}; {figures}")
    return 0


# Modules that add commands: each has ``register(subparsers, add_common) -> {name: handler}`` and keeps its
# heavy imports inside the handlers, so that ``robodistill --help`` stays fast.
EXTENSION_MODULES: list[str] = ["robodistill.viz.commands", "robodistill.compare"]

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "train-teacher": cmd_train_teacher,
    "distill": cmd_distill,
    "pipeline": cmd_pipeline,
    "export": cmd_export,
    "eval": cmd_eval,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``robodistill`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    _setup_logging(getattr(args, "verbose", False))
    try:
        return COMMANDS[args.command](args)
    except UsageError as exc:
        sys.stderr.write(f"robodistill: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("robodistill: interrupted; checkpoints written so far are complete\n")
        return 130
    except Exception as exc:  # noqa: BLE001 - the top level turns any crash into exit code 1 and a log
        # the run's log.txt already holds the traceback: runs.run_logs wrote it there as the run ended
        log.debug("failure", exc_info=True)
        sys.stderr.write(f"robodistill: failed: {type(exc).__name__}: {exc}. The traceback is in the run's "
                         "log.txt (or rerun with -v); fix the cause and rerun or resume.\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())

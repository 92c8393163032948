"""Run directories: atomic writes, the metrics log and the summary (docs/design.md section 3)."""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import re
import tempfile
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from robodistill.errors import UsageError

log = logging.getLogger(__name__)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write ``path`` via ``write(tmp)`` into a temporary file in the same folder, fsync, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: Path, text: str) -> None:
    """Atomically write a text file."""
    atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_torch_save(obj: Any, path: Path) -> None:
    """Atomically ``torch.save`` an object: a file cut short never replaces a complete one."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def load_plain(path: Path, what: str) -> Any:
    """``torch.load`` of a robodistill file (teacher, student, checkpoint) that holds tensors and plain data only.

    ``weights_only=True``: the unpickler builds tensors, numbers, strings, lists and dicts and refuses any other
    global before calling it, so a shared file cannot run code. A refusal is a :class:`UsageError`; other failures
    (a file cut short, not a torch file) propagate for the caller to word.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        reason = (f"it would import {found.group(1)}; refusing to unpickle code" if found else
                  "corrupted, or a pickle of more than tensors and plain data, which is refused")
        raise UsageError(f"cannot load {what} {path}: not a plain-data robodistill file ({reason})") from None


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, torch.Tensor):
        return _clean(value.item())
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


class MetricsLog:
    """Appends one JSON object per line to ``metrics.jsonl`` and mirrors scalars to TensorBoard."""

    def __init__(self, run_dir: Path, tensorboard: bool = True) -> None:
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))

    def write(self, stage: str, step: int, **metrics: Any) -> None:
        """Record ``metrics`` of ``stage`` at ``step`` (iteration or env step)."""
        record = {"stage": stage, "step": int(step), "time": time.time(), **_clean(metrics)}
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
        if self._writer is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    self._writer.add_scalar(f"{stage}/{key}", value, step)
            self._writer.flush()

    def close(self) -> None:
        """Flush and close the TensorBoard writer."""
        if self._writer is not None:
            self._writer.close()


def _records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(line, record)`` for every parseable line of a JSON-lines file; a torn line is skipped."""
    if not path.is_file():
        return
    for line in path.read_text().splitlines():
        try:
            yield line, json.loads(line)
        except json.JSONDecodeError:
            continue


def read_metrics(run_dir: Path, stage: str | None = None) -> list[dict[str, Any]]:
    """All records of ``metrics.jsonl`` (of one ``stage`` if given); a torn last line is skipped."""
    return [rec for _, rec in _records(Path(run_dir) / "metrics.jsonl") if stage is None or rec.get("stage") == stage]


def truncate_metrics(run_dir: Path, stage: str, last_step: int) -> None:
    """Drop the records of ``stage`` after ``last_step`` (and any torn line), atomically, before a resume."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return
    keep = [line for line, rec in _records(path) if not (rec.get("stage") == stage and rec.get("step", 0) > last_step)]
    atomic_write_text(path, "".join(f"{line}\n" for line in keep))


def update_summary(run_dir: Path, **values: Any) -> dict[str, Any]:
    """Merge ``values`` into ``summary.json`` (atomically) and return the result."""
    path = Path(run_dir) / "summary.json"
    summary = json.loads(path.read_text()) if path.is_file() else {}
    summary.update(_clean(values))
    atomic_write_text(path, json.dumps(summary, indent=2) + "\n")
    return summary


@contextmanager
def run_logs(run_dir: Path, tensorboard: bool = True, new: bool = True) -> Iterator[MetricsLog]:
    """The logs of a run for as long as it lasts: ``RUN/log.txt`` (appended) and the :class:`MetricsLog`.

    The log file's handler sits on the root logger only inside the ``with`` block, so runs that follow in the same
    process (``compare``, tests, notebooks) never write into this one's file. A run that crashes (any exception
    but a :class:`UsageError`: exit code 1 at the CLI) leaves its traceback in the file before the handler goes.
    A ``new`` run announces its directory; a resumed one was named on the command line.
    """
    handler = logging.FileHandler(Path(run_dir) / "log.txt")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    metrics = None
    try:
        if new:
            log.info("run directory: %s", run_dir)
        metrics = MetricsLog(run_dir, tensorboard=tensorboard)
        yield metrics
    except Exception as exc:
        if not isinstance(exc, UsageError):
            handler.stream.write(traceback.format_exc())
            handler.flush()
        raise
    finally:
        if metrics is not None:
            metrics.close()
        root.removeHandler(handler)
        handler.close()


def default_run_dir(task: str, command: str) -> Path:
    """``runs/<task>-<command>-<timestamp>`` (unique)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{task}-{command}-{stamp}"
    path, k = base, 1
    while path.exists():
        k += 1
        path = base.with_name(f"{base.name}-{k}")
    return path


def require_run_dir(path: str | Path, what: str = "a run directory") -> Path:
    """Check that ``path`` is a robodistill run directory (it holds ``config.yaml``)."""
    path = Path(path)
    if not path.is_dir():
        raise UsageError(f"{path} is not {what}: no such directory")
    if not (path / "config.yaml").is_file():
        raise UsageError(f"{path} is not {what}: it has no config.yaml")
    return path

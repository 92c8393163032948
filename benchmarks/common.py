"""Result rows, their JSON files and the generated tables of BENCHMARKS.md."""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MARK_BEGIN, MARK_END = "<!-- results:begin -->", "<!-- results:end -->"


def row(name: str, task: str, batch: int | None, value: float, baseline: float | None = None,
        unit: str = "", **extra: Any) -> dict[str, Any]:
    """One measured figure: ``ratio = value / baseline`` when a baseline was measured in the same process."""
    ratio = value / baseline if baseline else None
    return {"name": name, "task": task, "batch": batch, "value": value, "baseline": baseline, "ratio": ratio,
            "unit": unit, **extra}


def spread(values: list[float]) -> dict[str, float]:
    """Mean, min, max and standard deviation of repeated measurements."""
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values),
            "std": statistics.pstdev(values) if len(values) > 1 else 0.0, "repeats": len(values)}


def save(name: str, rows: list[dict[str, Any]], quick: bool) -> Path:
    """Write ``benchmarks/results/<name>.json`` with the machine it ran on."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    meta = {"benchmark": name, "quick": quick, "date": time.strftime("%Y-%m-%d %H:%M"),
            "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, "
                       f"{__import__('os').cpu_count()} cores", "python": platform.python_version()}
    path.write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")
    return path


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def refresh_markdown() -> None:
    """Regenerate the results section of BENCHMARKS.md from every results file."""
    md = ROOT / "BENCHMARKS.md"
    parts = []
    for path in sorted(RESULTS.glob("*.json")):
        data = json.loads(path.read_text())
        parts.append(f"### {data['benchmark']}  \n_{data['date']}, {data['machine']}"
                     f"{', quick' if data.get('quick') else ''}_\n")
        parts.append("| name | task | batch | value | unit | baseline | ratio | spread |")
        parts.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in data["rows"]:
            sp = r.get("ratio_spread") or r.get("value_spread")
            sp_text = f"{_fmt(sp['min'])}–{_fmt(sp['max'])} (n={sp['repeats']})" if sp else "–"
            parts.append(f"| {r['name']} | {r['task']} | {_fmt(r['batch'])} | {_fmt(r['value'])} | "
                         f"{r.get('unit', '')} | {_fmt(r['baseline'])} | {_fmt(r['ratio'])} | {sp_text} |")
        parts.append("")
    generated = "\n".join(parts)
    text = md.read_text() if md.is_file() else "# Benchmarks\n\n" + MARK_BEGIN + "\n" + MARK_END + "\n"
    head, _, rest = text.partition(MARK_BEGIN)
    _, _, tail = rest.partition(MARK_END)
    md.write_text(f"{head}{MARK_BEGIN}\n{generated}\n{MARK_END}{tail}")

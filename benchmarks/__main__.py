"""``python -m benchmarks [--quick] [NAME ...]``: run benchmarks, save their rows, refresh BENCHMARKS.md."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from benchmarks.common import refresh_markdown, save

BENCHMARKS = ["pipeline", "latency", "throughput", "soak", "mjx", "backend_parity", "gpu", "contacts"]


def main() -> int:
    """Run the named benchmarks (all by default)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("names", nargs="*", default=BENCHMARKS, help=f"any of {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="smaller budgets")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:  # before anything runs: a typo must not cost a long benchmark
        parser.error(f"unknown benchmark {unknown[0]!r}")
    for name in args.names:
        rows = importlib.import_module(f"benchmarks.{name}").run(args.quick)
        path = save(name, rows, args.quick)
        for r in rows:
            logging.info("%-28s %-10s %-6s %12.4g %s%s", r["name"], r["task"], r["batch"] or "", r["value"],
                         r.get("unit", ""), f"  ratio {r['ratio']:.3f}" if r.get("ratio") is not None else "")
        logging.info("saved %s", path)
    refresh_markdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

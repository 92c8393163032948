#!/usr/bin/env bash
# Create .venv and install robodistill with the CPU build of torch and matching MuJoCo/MJX versions.
# Usage: scripts/setup.sh [EXTRAS]   (EXTRAS e.g. "all"; default: none)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
spec="."
[ -n "$extras" ] && spec=".[${extras}]"
.venv/bin/python -m pip install --quiet -c constraints.txt -e "$spec"

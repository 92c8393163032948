#!/usr/bin/env bash
# Create .venv and install robodistill with the CPU build of torch and matching MuJoCo/MJX versions.
# Usage: scripts/setup.sh [EXTRAS]   (EXTRAS e.g. "all"; default: none)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# MuJoCo 4 splits its package into mujoco-core and mujoco-studio; pip upgrading a pre-split mujoco (3.x) in place
# leaves `import mujoco` broken, so an existing .venv sheds that one first.
if .venv/bin/python -c "import importlib.metadata as m, sys; sys.exit(m.version('mujoco')[:2] not in ('2.', '3.'))" 2>/dev/null; then
  .venv/bin/python -m pip uninstall --quiet -y mujoco
fi
spec="."
[ -n "$extras" ] && spec=".[${extras}]"
.venv/bin/python -m pip install --quiet -c constraints.txt -e "$spec"

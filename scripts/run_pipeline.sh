#!/usr/bin/env bash
# One command from a fresh machine: set up, then run the main job (the pipeline on the default task).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/robodistill pipeline configs/pendulum.yaml "$@"

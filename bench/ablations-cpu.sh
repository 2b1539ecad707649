#!/usr/bin/env bash
# Stage-2 ablations on the CPU preset, K=10 seed 0, reusing the stage-1 generators and the judge of the main CPU
# run (run that first: alignflow bench polyp --preset cpu --out bench/results/cpu-64px). One setting changes per
# run; each writes bench/results/cpu-ablation-<name>/results.json. The README's ablation table is made from them.
# Selection among these may use only the held-out-reference MMD² (reference-only); target.test scores are reported
# to locate gaps, never to pick settings.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
base=bench/results/cpu-64px
run() {
  name=$1; shift
  [ -f "bench/results/cpu-ablation-$name/results.json" ] && { echo "skip $name (done)"; return; }
  rm -rf "bench/results/cpu-ablation-$name"
  "$PY" -m AlignFlowLib.cli bench polyp --data ../shared/data/polyp --preset cpu --device cpu \
    --out "bench/results/cpu-ablation-$name" --reuse-stage1 "$base" --references K10_seed0 \
    --methods alignflow --progress jsonl "$@" > "/tmp/ablation-$name.jsonl"
  echo "done $name"
}
run deep-features-only --set align.style_weight=0
run lr-3e-5 --set align.learning_rate=3e-5
run anchor-2 --set align.anchor_weight=2
run segmenter-strong-augment --set segmenter.strong_augment=true
run draft-k3 --set align.grad_last_steps=3
run synthetic-ratio-0.25 --set segmenter.synthetic_ratio=0.25

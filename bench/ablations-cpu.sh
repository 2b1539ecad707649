#!/usr/bin/env bash
# Ablations of the protocol's CPU run (bench/PROTOCOL.md): each changes one setting, reuses the stage-1 generators
# of bench/results/cpu-96px (run that first: alignflow bench polyp --preset cpu --out bench/results/cpu-96px), and
# reruns the alignment control (stage1_synthetic) beside AlignFlow on the K = 10 reference sets, so every row has
# its own paired interval. Each writes bench/results/cpu-ablation-<name>/results.json; the README's ablation table
# is made from them. Settings may be chosen only by reference-only criteria; target-test columns locate gaps.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
base=bench/results/cpu-96px
run() {
  name=$1; shift
  [ -f "bench/results/cpu-ablation-$name/results.json" ] && { echo "skip $name (done)"; return; }
  resume=(); [ -d "bench/results/cpu-ablation-$name/run" ] && resume=(--resume)  # continue a cut-off run
  "$PY" -m AlignFlowLib.cli bench polyp --data ../shared/data/polyp --preset cpu --device cpu \
    --out "bench/results/cpu-ablation-$name" --reuse-stage1 "$base" --references K10_seed0,K10_seed1,K10_seed2 \
    --methods stage1_synthetic,alignflow --progress jsonl "${resume[@]}" "$@" >> "/tmp/ablation-$name.jsonl"
  echo "done $name"
}
run strong-segmenter-recipe --set segmenter.strong_augment=true   # the preferred recipe the source-val check vetoed
run all-reference-selection --set align.selection=all_references
run source-masks --set align.condition_masks=source
run unclamped-reward --set align.clamp_reward_input=false

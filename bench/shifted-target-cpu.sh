#!/usr/bin/env bash
# Positive control: does alignment help where the target's appearance is known to matter? Kvasir-SEG ->
# CVC-ClinicDB with a known camera shift added to every CVC frame (bench/shifted_target.py: hue turned 90 degrees
# about the grey axis, gamma 0.6, illumination fall-off 0.6; fixed before any result). Registered on 2026-11-27
# (session 29) before it ran; descriptive, nothing is adopted from it.
#
# Why. Every change tried for issue 8 moved the pairs towards the references by some measure without moving the
# segmenter, and on the real pair histogram matching and FDA, which close most of the colour gap, score below
# source-only too: the real pair's appearance gap may not be what limits its segmenters at this scale. If so, no
# reward can win there, and the runs so far cannot tell a reward that works from one that does not. Here the gap
# is made to matter: the recipe check chose the plain segmenter recipe (no colour augmentation), so a segmenter
# trained on source colours meets green frames. The same frames, reference sets, source pairs, stage 1, judge
# and seeds as bench/results/cpu-96px-v2, so every method pairs image by image with its unshifted run.
#
# Run: every protocol method, K = 10 and K = 5 (three reference seeds each), three segmenter seeds, stage 1 and the
# judge reused from cpu-96px-v2 -> bench/results/cpu-control-shifted-target; then bench/pair_statistics.py on it
# and bench/compare_runs.py of each method against itself in cpu-96px-v2 (shifted - unshifted).
#
# Expected (written before the run):
#   1. the shift matters: source-only at least 10 points below its unshifted score, paired across the runs;
#   2. stage-1 synthetic (source-styled pairs) also at least 10 points below its unshifted score;
#   3. alignment moves the pairs' colours: the low-pass patch-SWD level of the aligned pairs below stage 1's on all
#      six sets (bench/pair_statistics.py; no test image read);
#   4. the question: AlignFlow - stage-1 >= +3 with the interval's lower end above 0 at K = 10 and at K = 5;
#   5. histogram matching and FDA recover at least half of source-only's drop (their shifted score minus
#      source-only's shifted score >= half of source-only's drop).
# If 1 fails the control says nothing about alignment. If 1-3 hold and 4 fails, the reward moves colours without
# making the pairs useful even where colour matters.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
data=bench/results/shifted-data-polyp
out=bench/results/cpu-control-shifted-target
base=bench/results/cpu-96px-v2
sets=K10_seed0,K10_seed1,K10_seed2,K5_seed0,K5_seed1,K5_seed2
[ -f "$data/shift.json" ] || "$PY" bench/shifted_target.py --data "${DATA:-../shared/data/polyp}" --out "$data"
if [ ! -f "$out/results.json" ]; then
  resume=(); [ -f "$out/run/config.json" ] && resume=(--resume)  # continue a cut-off run
  "$PY" -m AlignFlowLib.cli bench polyp --data "$data" --preset cpu --device cpu --out "$out" \
      --reuse-stage1 "$base" --references "$sets" --progress jsonl ${resume[@]+"${resume[@]}"} "$@"
fi
statistics=bench/results/pair-statistics-cpu-control-shifted-target.json
[ -f "$statistics" ] || "$PY" bench/pair_statistics.py "$out" --out "$statistics"
for k in 10 5; do
  comparison=bench/results/shifted-target-vs-cpu-96px-v2-K$k.json
  [ -f "$comparison" ] || "$PY" bench/compare_runs.py "$out:source_only" "$base:source_only" \
    "$out:stage1_synthetic" "$base:stage1_synthetic" "$out:alignflow" "$base:alignflow" \
    "$out:histogram_matching" "$base:histogram_matching" "$out:fda" "$base:fda" \
    --sets "K${k}_seed0,K${k}_seed1,K${k}_seed2" --out "$comparison"
done

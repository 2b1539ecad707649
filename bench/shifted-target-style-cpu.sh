#!/usr/bin/env bash
# Follow-up of the positive control (bench/shifted-target-cpu.sh), registered on 2026-11-27 (session 29) while the
# control was running and before any of its numbers were read; descriptive, nothing is adopted from it.
#
# Why. Protocol version 2 dropped the reward's early-layer channel statistics (align.style_weight 4 -> 0) because on
# the real pairs they tied alignment to brightness and harmed. Those statistics are the part of the reward that sees
# colour most directly, so on a target whose colours are known to matter they may be what alignment needs. This
# runs version 1's reward (align.style_weight=4) on the shifted target, with the control's data, stage 1, judge,
# reference sets and seeds (stage 1 reused from cpu-96px-v2).
#
# Run: source_only, stage1_synthetic and alignflow, K = 10 and K = 5 -> bench/results/cpu-control-shifted-target-
# style-weight-4; then bench/pair_statistics.py on it and bench/compare_runs.py of its AlignFlow against the
# control's (same stage 1, pairs and seeds; only the reward differs).
#
# Expected (written before either run's numbers were read):
#   1. the aligned pairs' low-pass patch-SWD level below the control's aligned pairs' on at least four of six sets;
#   2. AlignFlow here minus the control's AlignFlow >= 0 at K = 10 and at K = 5;
#   3. source-only and stage-1 synthetic equal to the control's (the same jobs).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
data=bench/results/shifted-data-polyp
control=bench/results/cpu-control-shifted-target
out=bench/results/cpu-control-shifted-target-style-weight-4
sets=K10_seed0,K10_seed1,K10_seed2,K5_seed0,K5_seed1,K5_seed2
[ -f "$data/shift.json" ] || "$PY" bench/shifted_target.py --data "${DATA:-../shared/data/polyp}" --out "$data"
if [ ! -f "$out/results.json" ]; then
  resume=(); [ -f "$out/run/config.json" ] && resume=(--resume)  # continue a cut-off run
  "$PY" -m AlignFlowLib.cli bench polyp --data "$data" --preset cpu --device cpu --out "$out" \
      --reuse-stage1 bench/results/cpu-96px-v2 --references "$sets" --set align.style_weight=4 \
      --methods source_only,stage1_synthetic,alignflow --progress jsonl ${resume[@]+"${resume[@]}"} "$@"
fi
statistics=bench/results/pair-statistics-cpu-control-shifted-target-style-weight-4.json
[ -f "$statistics" ] || "$PY" bench/pair_statistics.py "$out" --out "$statistics"
for k in 10 5; do
  comparison=bench/results/shifted-target-style-weight-4-vs-control-K$k.json
  [ -f "$comparison" ] || "$PY" bench/compare_runs.py "$out:alignflow" "$control:alignflow" \
    --sets "K${k}_seed0,K${k}_seed1,K${k}_seed2" --out "$comparison"
done

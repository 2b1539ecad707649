#!/usr/bin/env bash
# Alignment's checkpoint chosen by a distance no network defines: an ablation of protocol version 2 on Kvasir-SEG ->
# CVC-ClinicDB, CPU preset. Registered on 2026-11-27 (session 27) before any of its numbers were seen.
#
# Why. bench/pair_statistics.py now measures every pair set's distance to the references twice: in the reward's own
# features (EfficientNet-Lite0, MMD²) and with the multi-scale patch SWD (colour and texture per Laplacian level,
# no network; AlignFlowLib/reward/patch_swd.py). On cpu-96px-v2 (bench/results/pair-statistics-cpu-96px-v2.json),
# measured before this registration and reading no target test image, at K = 10 and K = 5:
#   - alignment cuts the reward-feature MMD² 2.7-5.4x, from stage 1's 0.91-1.09 to 0.18-0.39, below the real source
#     images' 0.43-0.59;
#   - in patch SWD (x 1000) the finest level falls 11-28 %, but the middle level (texture at half resolution) rises
#     on all six sets, by 19-150 %, and the low-pass level (colour and layout) moves from 164-231 to 112-206, rising
#     on two of the six sets, while histogram matching and FDA of the source images bring it to 49-61.
# The two distances disagree. Version 2 stops alignment on MMD² to held-out references in the reward's features,
# which keeps falling (best step 50-60 on four of six sets). With
# `align.selection=patch_swd` the reward uses all K references and the checkpoint is the one with the lowest patch
# SWD to them (mean over the three levels of the ratio to stage 1's own; evaluated every 10 steps as before), a choice
# that reads only the references and that nothing in alignment optimises. Everything else as in version 2.
#
# Run: stage 1 (and the judge) reused from bench/results/cpu-96px-v2; all nine reference sets, since with this rule
# K = 1 also gets a choice (version 2 runs all steps there); methods source_only (the best non-generative method of
# cpu-96px-v2 at every K), stage1_synthetic and alignflow -> bench/results/cpu-ablation-patch-swd-selection, then
# bench/pair_statistics.py on it and on the CVC-ClinicDB -> Kvasir-SEG version-2 run (descriptive, for the README).
#
# Registered expectations and rule:
#   - Mechanism (align_summary.json and pair statistics; no target image read): the chosen step is earlier than
#     version 2's on at least four of the six K = 5 and K = 10 sets, and the aligned pairs' middle-level patch SWD is
#     at most 1.2 x stage 1's on at least four of them (version 2: one of six).
#   - Expected: AlignFlow − stage-1 synthetic within ±3 at K = 10 and K = 5 (FDA and histogram matching, which close
#     most of the low-pass gap, did not beat source-only in cpu-96px-v2 either); AlignFlow not 3 points above
#     source-only.
#   - Rule: patch-SWD selection becomes a candidate for a protocol version 3 only if AlignFlow − best non-generative
#     is >= +3 with the interval's lower end above 0 at both K = 5 and K = 10; a candidate must then hold on
#     CVC-ClinicDB -> Kvasir-SEG before any version adopts it. Otherwise it stays an ablation, reported beside the
#     others.
# (A first start, at commit 42a8ffb, was stopped during its second reference set: a review found the pyramid's
# expansion half a pixel out of phase with its reduction. Its folder was deleted with no segmenter score read; the
# numbers above and the middle-level expectation were remade with the corrected pyramid before the restart.)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
out=bench/results/cpu-ablation-patch-swd-selection
if [ ! -f "$out/results.json" ]; then
  resume=(); [ -f "$out/run/config.json" ] && resume=(--resume)  # continue a cut-off run
  "$PY" -m AlignFlowLib.cli bench polyp --data "${DATA:-../shared/data/polyp}" --preset cpu --device cpu \
      --out "$out" --reuse-stage1 bench/results/cpu-96px-v2 --methods source_only,stage1_synthetic,alignflow \
      --set align.selection=patch_swd --progress jsonl ${resume[@]+"${resume[@]}"} "$@"
fi
for run in cpu-ablation-patch-swd-selection cpu-pairs-cvc-to-kvasir-v2; do
  statistics=bench/results/pair-statistics-$run.json
  # (re)made unless it already holds the distances to the references, which older files lack
  grep -q distance_to_references "$statistics" 2>/dev/null || "$PY" bench/pair_statistics.py "bench/results/$run" --out "$statistics"
done

#!/usr/bin/env bash
# The reward scored on random crops of both sides: an ablation of protocol version 2 on Kvasir-SEG -> CVC-ClinicDB,
# CPU preset. Registered on 2026-11-27 (session 28) before any of its numbers were seen.
#
# Why. Version 2's reward (MMD² between EfficientNet-Lite0 features of generated images and the 4K flip views of the
# references) is cut 2.7-5.4x by alignment, to below the real source images' own distance, while a distance no
# network defines (multi-scale patch SWD, bench/pair_statistics.py) rises at half resolution on all six K = 5 and 10
# sets (19-150 %), and the aligned images show bright blobs and streaks stage 1's do not. With at most 40 reference
# feature vectors, the reward can be lowered by matching those vectors through patterns the extractor responds to
# rather than by matching appearance. `align.reward_views=true` (AlignFlowLib/reward/views.py) scores random crops
# (60-100 % of the area, any position) with random flips of both the generated images and the references, drawn anew
# at every step (DiffAugment, Zhao et al. 2020, used on both distributions): each reference becomes a distribution of
# views, and only appearance that survives a change of framing lowers the reward. Colour is never altered. Early
# stopping and the checkpoint choice are version 2's (held-out references, unaugmented).
#
# Run: stage 1 (and the judge) reused from bench/results/cpu-96px-v2; K = 10 and K = 5 (six sets); methods source_only
# (cpu-96px-v2's best non-generative method at both K), stage1_synthetic and alignflow
# -> bench/results/cpu-ablation-reward-views, then bench/pair_statistics.py on it. The same ablation on CVC-ClinicDB ->
# Kvasir-SEG is step 9 of bench/reverse-pair-cpu.sh, registered with this one.
#
# Registered expectations and rule:
#   - Mechanism (bench/pair_statistics.py; no target test image read): the aligned pairs' reward-feature MMD² to the
#     references is below stage 1's on all six sets (alignment still moves), and their middle-level patch SWD is at
#     most 1.2 x stage 1's on at least four of the six (version 2: one of six).
#   - Expected: AlignFlow − stage-1 synthetic within ±3 at K = 10 and K = 5 (FDA and histogram matching, which close
#     most of the colour gap, did not beat source-only in cpu-96px-v2); AlignFlow not 3 points above source-only.
#   - Rule: reward views become a candidate for a protocol version 3 only if AlignFlow − best non-generative is >= +3
#     with the interval's lower end above 0 at both K = 5 and K = 10; a candidate must then hold on CVC-ClinicDB ->
#     Kvasir-SEG before any version adopts it. Otherwise they stay an ablation, reported beside the others.
# (Clarified after a review, while this run was under way and before any of its numbers were read: the mechanism's
# MMD² is bench/pair_statistics.py's, between whole images and the references' four flips, not the viewed reward.)
# Result (2026-11-27, 1321 s, 2-core CPU): reward-feature MMD² cut 2.4-2.9x (below stage 1's on all six sets: held);
# middle-level patch SWD 1.23-2.69x stage 1's (at most 1.2x on none of six: missed); AlignFlow 32.5 (K = 10) and 32.7
# (K = 5), AlignFlow − stage-1 −3.3 [−7.5, +0.3] and −3.1 [−6.2, −0.3] (±3: missed at both), AlignFlow − source-only
# −7.9 and −7.7 (held); −4.5 and −3.8 against version 2's AlignFlow. The rule did not fire.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
out=bench/results/cpu-ablation-reward-views
statistics=bench/results/pair-statistics-cpu-ablation-reward-views.json
if [ ! -f "$out/results.json" ]; then
  resume=(); [ -f "$out/run/config.json" ] && resume=(--resume)  # continue a cut-off run
  "$PY" -m AlignFlowLib.cli bench polyp --data "${DATA:-../shared/data/polyp}" --preset cpu --device cpu \
      --out "$out" --reuse-stage1 bench/results/cpu-96px-v2 \
      --references K10_seed0,K10_seed1,K10_seed2,K5_seed0,K5_seed1,K5_seed2 \
      --methods source_only,stage1_synthetic,alignflow --set align.reward_views=true --progress jsonl \
      ${resume[@]+"${resume[@]}"} "$@"
fi
[ -f "$statistics" ] || "$PY" bench/pair_statistics.py "$out" --out "$statistics"

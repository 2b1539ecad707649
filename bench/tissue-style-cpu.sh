#!/usr/bin/env bash
# Colour statistics over tissue only: version 1's reward weight on the early-layer "style" statistics (4), with the
# statistics computed where the frame shows tissue (align.style_region=tissue, AlignFlowLib/reward/features.py).
# Registered on 2026-11-27 (session 30) before any of its numbers were seen.
#
# Why. The positive control (bench/shifted-target-cpu.sh) showed that version 2's reward (deep features only) does not
# carry a colour shift even where colour is the whole gap, while version 1's style statistics do (AlignFlow +20.6 and
# +25.6 over stage-1 synthetic there). Version 1 was dropped because those statistics cost 3.5-5 points on the real
# pairs. They are means and stds over the whole frame, and on 96 px polyp frames 22-25 % of the pixels are letterbox
# and more are the endoscope's black border (CVC's is wide): a reward on them can be lowered by how much black a
# frame shows and where, which the issue names. Over tissue only, they should carry the colour and not the framing.
#
# Steps (stage 1 and the judge reused; K = 10 and K = 5, three reference seeds x three segmenter seeds; methods
# source_only, stage1_synthetic, alignflow; then bench/pair_statistics.py and bench/compare_runs.py):
#   1. Kvasir-SEG -> CVC-ClinicDB, stage 1 of bench/results/cpu-96px-v2 -> bench/results/cpu-ablation-tissue-style-4.
#   2. The positive control (shifted CVC frames), same stage 1 -> bench/results/cpu-control-shifted-target-tissue-
#      style-4; compared with the control's step 2 (style weight 4 over all pixels: the same run but the region).
#   3. CVC-ClinicDB -> Kvasir-SEG (bench pairs, folders of bench/reverse-pair-cpu.sh), stage 1 of
#      bench/results/cpu-pairs-cvc-to-kvasir-v2 -> bench/results/cpu-pairs-cvc-to-kvasir-v2-tissue-style-4.
#   4. The same as step 3 with the statistics over all pixels (align.style_weight=4 alone) -> bench/results/
#      cpu-pairs-cvc-to-kvasir-v2-style-weight-4: the contrast of the region alone on a real pair (steps 1 and 3 differ
#      from version 2 in weight and region at once; no all-pixel run exists on these stage 1s, and version 1's
#      CVC -> Kvasir stage 1 was not kept).
#
# Registered expectations (mean RGB from bench/pair_statistics.py; no target test image is read for them):
#   - Mechanism: on all three, the aligned pairs' mean colour is nearer the references' than stage 1's (Euclidean
#     distance of the mean RGB) on at least four of the six sets; on the control they are green first (mean G above
#     mean R) on at least four of six, as with style over all pixels.
#   - Control: AlignFlow within ±5 of step 2's AlignFlow (style 4, all pixels) at K = 10 and K = 5; source-only and
#     stage-1 synthetic equal to the control's.
#   - Real pairs: AlignFlow − stage-1 synthetic within ±3 and AlignFlow − source-only below +3 at both K (no earlier
#     change moved a real pair more); AlignFlow minus version 2's AlignFlow (same stage 1) within ±3.
#   - Step 4: AlignFlow within ±3 of step 3's; the aligned pairs' mean colour nearer the references' than step 3's on
#     at most three of six sets (the region changes where colour is measured more than what it is).
#   - Rule: tissue-only style statistics become a candidate for a protocol version 3 only if, on Kvasir -> CVC,
#     AlignFlow − source-only (its best non-generative method) is >= +3 with the interval's lower end above 0 at both
#     K = 5 and K = 10, and they must then hold on CVC -> Kvasir. Otherwise they stay an ablation, reported beside the
#     others, whatever the control shows.
# (Amended 2026-11-27, before any number of these runs existed: the first start was stopped after three minutes, in
# step 1's source-only segmenters, when a review found the cell mask 0.5-1.5 px off the network's receptive fields (a
# cell with 1-3 border pixels in its field kept part of its weight). The mask is now traced through the network's own
# padding and strides, every cell keeps a 1e-3 floor weight, and step 4 was added.)
# Results (2026-11-27, 2-core CPU; mDice in points, K = 10 then K = 5, paired 95 % intervals):
#   1. (1177 s) AlignFlow 38.1, 36.7; − stage-1 +2.3 [−2.1, +7.4], +0.9 [−5.6, +6.4]; − source-only −2.3, −3.7;
#      +1.1, +0.3 against version 2's; colour nearer on 4/6 sets. All expectations held; the rule did not fire.
#   2. (1155 s) green first and nearer the references' colour on 6/6 (held); AlignFlow 25.2, 33.1: +4.5, +7.4 against
#      the all-pixel run (±5 missed at K = 5); − stage-1 +25.1, +33.0 (intervals above 0); − source-only −0.5, +7.4
#      [−3.7, +19.2]; source-only and stage-1 equal the control's (held).
#   3. (1200 s) AlignFlow 32.0, 28.3; − stage-1 −1.8 [−4.2, −0.1], −5.5 [−16.0, +0.3] (±3 missed at K = 5);
#      − source-only −6.3, −10.0; +0.2, −2.5 against version 2's; colour nearer on 2/6 (missed), over tissue on 0/6.
#   4. (1332 s) AlignFlow 28.4, 28.7; − stage-1 −5.4 [−10.2, −1.6], −5.1 [−9.2, −1.6]; step 3 minus step 4 +3.6
#      [+0.2, +7.0], −0.4 [−10.4, +4.7] (±3 missed at K = 10); all-pixel colour nearer than step 3's on 6/6 (missed),
#      tissue colour nearer on 0/6.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
style=(--set align.style_weight=4 --set align.style_region=tissue --methods source_only,stage1_synthetic,alignflow)
source bench/steps.sh

# 1. Kvasir-SEG -> CVC-ClinicDB
forward=bench/results/cpu-ablation-tissue-style-4
polyp "${DATA:-../shared/data/polyp}" "$forward" "${style[@]}"
pair_statistics "$forward"
compare tissue-style-4-vs-cpu-96px-v2 "$forward:alignflow" "$FORWARD_RUN:alignflow"

# 2. The positive control
shifted=bench/results/shifted-data-polyp
"$PY" bench/shifted_target.py --data "${DATA:-../shared/data/polyp}" --out "$shifted"  # made once; refused if it differs
control=bench/results/cpu-control-shifted-target
all_pixels=bench/results/cpu-control-shifted-target-style-weight-4
tissue=bench/results/cpu-control-shifted-target-tissue-style-4
polyp "$shifted" "$tissue" "${style[@]}"
pair_statistics "$tissue"
compare shifted-target-tissue-style-4-vs-style-weight-4 "$tissue:alignflow" "$all_pixels:alignflow" \
  "$tissue:source_only" "$control:source_only" "$tissue:stage1_synthetic" "$control:stage1_synthetic"

# 3. CVC-ClinicDB -> Kvasir-SEG
reverse=bench/results/cpu-pairs-cvc-to-kvasir-v2-tissue-style-4
reverse_pair "$reverse" "${style[@]}"
pair_statistics "$reverse"
compare pairs-cvc-to-kvasir-tissue-style-4-vs-v2 "$reverse:alignflow" "$REVERSE_RUN:alignflow"

# 4. CVC-ClinicDB -> Kvasir-SEG, style statistics over all pixels
all_reverse=bench/results/cpu-pairs-cvc-to-kvasir-v2-style-weight-4
reverse_pair "$all_reverse" --set align.style_weight=4 --methods source_only,stage1_synthetic,alignflow
pair_statistics "$all_reverse"
compare pairs-cvc-to-kvasir-tissue-vs-all-pixel-style-4 "$reverse:alignflow" "$all_reverse:alignflow"

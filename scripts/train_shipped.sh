#!/usr/bin/env bash
# Recipe of the shipped bundle (issues 6, 13 and 16): every stage of configs/shipped.toml trained
# with plandiff's own commands on TinyStories stories (../shared/data/tinystories/
# stories_lowercase.jsonl, one story per record, so every stage learns whole stories), the last
# HOLDOUT (300) stories kept out of every stage for the A/B prompts, evaluated, and exported in
# fp16 to checkpoints/tiny. Each stage resumes where an earlier run
# of this script stopped (Ctrl-C is safe), so the hours it takes on two CPU cores can be
# spread over several sessions. Seeds and steps are those of the config.
#
#   scripts/train_shipped.sh            # the real run
#   QUICK=1 scripts/train_shipped.sh    # a smoke run: 20 steps a stage, into runs/shipped-quick
#
# A bigger bundle on one GPU, same recipe (README, "Training a bigger bundle on one GPU"):
#   CONFIG=configs/base.toml VOCAB=16384 CORPUS=TinyStories-train.txt RUN=runs/base \
#     OUT=checkpoints/base DEVICE=cuda scripts/train_shipped.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/plandiff
SHARED=${PLANDIFF_SHARED:-../shared/data}
CORPUS=${CORPUS:-"$SHARED/tinystories/stories_lowercase.jsonl"}
HOLDOUT=${HOLDOUT:-300}
CONFIG=${CONFIG:-configs/shipped.toml}
VOCAB=${VOCAB:-2048}
DEVICE=${DEVICE:-auto}
if [[ -n "${QUICK:-}" ]]; then
  RUN=runs/shipped-quick; OUT=runs/shipped-quick/export; EXTRA=(--max-steps 20)
else
  RUN=${RUN:-runs/stories}; OUT=${OUT:-checkpoints/tiny}; EXTRA=()
fi
EXTRA+=(--device "$DEVICE")
[[ -e "$CORPUS" ]] || { echo "error: $CORPUS not found; set PLANDIFF_SHARED to the folder holding tinystories/, or CORPUS" >&2; exit 1; }
mkdir -p "$RUN"
START=$(date +%s)

# The last $HOLDOUT records of a JSONL corpus are held out of every stage (python/ab_prompts.py
# --last $HOLDOUT makes the A/B prompts from them); a text corpus is used whole.
TRAIN_INPUT=$CORPUS
if [[ "$CORPUS" == *.jsonl && "$HOLDOUT" -gt 0 ]]; then
  TRAIN_INPUT="$RUN/train-stories.jsonl"
  if [[ ! -f "$TRAIN_INPUT" ]]; then
    head -n "-$HOLDOUT" "$CORPUS" > "$TRAIN_INPUT.tmp" && mv "$TRAIN_INPUT.tmp" "$TRAIN_INPUT"
  fi
fi
if [[ ! -f "$RUN/data/stats.json" ]]; then
  "$BIN" prepare --input "$TRAIN_INPUT" --out "$RUN/data" --vocab-size "$VOCAB" --lowercase
fi
for stage in ar autoencoder planner diffusion masked; do
  if [[ -f "$RUN/bundle/$stage/trainer_state.json" ]]; then
    "$BIN" train "$stage" --data "$RUN/data" --out "$RUN/bundle" --resume "${EXTRA[@]}"
  else
    "$BIN" train "$stage" --config "$CONFIG" --data "$RUN/data" --out "$RUN/bundle" "${EXTRA[@]}"
  fi
done
echo "== evaluation (validation split)"
for stage in ar autoencoder planner diffusion masked; do
  "$BIN" --log-level warn eval --stage "$stage" --checkpoint "$RUN/bundle" --data "$RUN/data" --device "$DEVICE"
done
rm -rf "$OUT"
"$BIN" export --checkpoint "$RUN/bundle" --out "$OUT" --dtype f16
"$BIN" info --checkpoint "$OUT"
echo "wall time of this invocation: $(( $(date +%s) - START )) s (training time per stage: provenance.wall_seconds in each config.json)"

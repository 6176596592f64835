#!/usr/bin/env bash
# Recipe of the shipped bundle (issues 6, 13, 16 and 25): every stage of configs/shipped.toml
# trained with plandiff's own commands on all the TinyStories stories of ../shared/data/
# tinystories/ (stories_lowercase.jsonl less its last HOLDOUT (300) stories, which stay held out
# of every stage for the A/B prompts, plus more_stories_lowercase.jsonl), evaluated, and
# exported in fp16 to checkpoints/tiny. The tokenizer is pinned (TOKENIZER, the 2048-token BPE
# that the first recipe trained on the stories), so the corpus's sentence-embedding cache
# (`plandiff embed`: all-MiniLM-L6-v2, the autoencoder's frozen plan space) is made once. Each
# stage resumes where an earlier run of this script stopped (Ctrl-C is safe), so the hours it
# takes on two CPU cores can be spread over several sessions. Seeds and steps are the config's.
#
#   scripts/train_shipped.sh            # the real run
#   QUICK=1 scripts/train_shipped.sh    # a smoke run: 20 steps a stage, into runs/shipped-quick
#
# A bigger bundle on one GPU, same recipe (docs/training.md):
#   CONFIG=configs/base.toml RUN=runs/base OUT=checkpoints/base DEVICE=cuda scripts/train_shipped.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/plandiff
SHARED=${PLANDIFF_SHARED:-../shared/data}
STORIES=${STORIES:-"$SHARED/tinystories/stories_lowercase.jsonl"}
MORE=${MORE:-"$SHARED/tinystories/more_stories_lowercase.jsonl"}
HOLDOUT=${HOLDOUT:-300}
CONFIG=${CONFIG:-configs/shipped.toml}
TOKENIZER=${TOKENIZER:-checkpoints/tiny/tokenizer.json}
DEVICE=${DEVICE:-auto}
if [[ -n "${QUICK:-}" ]]; then
  RUN=runs/shipped-quick; OUT=runs/shipped-quick/export; EXTRA=(--max-steps 20)
else
  RUN=${RUN:-runs/v2}; OUT=${OUT:-checkpoints/tiny}; EXTRA=()
fi
EXTRA+=(--device "$DEVICE")
for f in "$STORIES" "$MORE" "$TOKENIZER"; do
  [[ -e "$f" ]] || { echo "error: $f not found; set PLANDIFF_SHARED to the folder holding tinystories/ (or STORIES, MORE, TOKENIZER)" >&2; exit 1; }
done
mkdir -p "$RUN"
START=$(date +%s)

# The last $HOLDOUT stories of stories_lowercase.jsonl are held out of every stage
# (python/ab_prompts.py --last $HOLDOUT makes the A/B prompts from them).
TRAIN_INPUT="$RUN/train-stories.jsonl"
if [[ ! -f "$TRAIN_INPUT" ]]; then
  { head -n "-$HOLDOUT" "$STORIES"; cat "$MORE"; } > "$TRAIN_INPUT.tmp" && mv "$TRAIN_INPUT.tmp" "$TRAIN_INPUT"
fi
if [[ ! -f "$RUN/data/stats.json" ]]; then
  "$BIN" prepare --input "$TRAIN_INPUT" --out "$RUN/data" --tokenizer "$TOKENIZER"
fi
# Every sentence's frozen plan-space embedding, once (resumable; about 12 minutes alone on two
# cores, 40 beside another job).
"$BIN" embed --data "$RUN/data" --split train
"$BIN" embed --data "$RUN/data" --split valid
for stage in ar autoencoder planner diffusion masked; do
  if [[ -f "$RUN/bundle/$stage/trainer_state.json" ]]; then
    "$BIN" train "$stage" --data "$RUN/data" --out "$RUN/bundle" --resume "${EXTRA[@]}"
  else
    "$BIN" train "$stage" --config "$CONFIG" --data "$RUN/data" --out "$RUN/bundle" "${EXTRA[@]}"
  fi
done
# A decoder fine-tune that replaces the bundle's autoencoder once done (same plan space, so the
# planner stays paired): `replace_decoder NAME CONFIG` trains CONFIG (already written) into
# $RUN/NAME, resuming a stopped run, then swaps it in (the old one kept as autoencoder.before-NAME).
replace_decoder() {
  local name=$1 config=$2 out="$RUN/$1"
  [[ -f "$RUN/$name.done" ]] && return 0
  if [[ -f "$out/autoencoder/trainer_state.json" ]]; then
    "$BIN" train autoencoder --data "$RUN/data" --out "$out" --resume "${EXTRA[@]}"
  else
    "$BIN" train autoencoder --config "$config" --data "$RUN/data" --out "$out" "${EXTRA[@]}"
  fi
  rm -rf "$RUN/bundle/autoencoder.before-$name" && mv "$RUN/bundle/autoencoder" "$RUN/bundle/autoencoder.before-$name"
  cp -r "$out/autoencoder" "$RUN/bundle/autoencoder" && touch "$RUN/$name.done"
}
if [[ "$CONFIG" == configs/shipped.toml ]]; then
  # (A run from before the distillation marked its re-noised decoder renoised.done.)
  [[ -f "$RUN/renoised.done" && ! -f "$RUN/renoise.done" ]] && mv "$RUN/renoised.done" "$RUN/renoise.done"
  # Issue 39: the plan decoder fine-tuned on re-noised plans (configs/decoder-renoise.toml: a
  # diffusion forward step of each sentence's embedding, noise level up to 0.7), starting from
  # the autoencoder trained above.
  sed "s#^init_from = .*#init_from = \"$RUN/bundle\"#" configs/decoder-renoise.toml > "$RUN/decoder-renoise.toml"
  replace_decoder renoise "$RUN/decoder-renoise.toml"
  # Then the levers it writes with (plan guidance 0.75, the ar prior at 0.5) distilled into it
  # (configs/decoder-distill.toml: the KL from that three-pass sampler), with a frozen copy of
  # the bundle so far as the teacher; the bundle's hybrid defaults (configs/shipped.toml
  # [planner.hybrid]) are the levers off.
  if [[ ! -d "$RUN/teacher" && ! -f "$RUN/distill.done" ]]; then
    rm -rf "$RUN/teacher.tmp" && cp -r "$RUN/bundle" "$RUN/teacher.tmp" && mv "$RUN/teacher.tmp" "$RUN/teacher"
  fi
  sed -e "s#^init_from = .*#init_from = \"$RUN/teacher\"#" -e "s#^teacher = .*#teacher = \"$RUN/teacher\"#" \
    configs/decoder-distill.toml > "$RUN/decoder-distill.toml"
  replace_decoder distill "$RUN/decoder-distill.toml"
fi
echo "== evaluation (validation split)"
for stage in ar autoencoder planner diffusion masked; do
  "$BIN" --log-level warn eval --stage "$stage" --checkpoint "$RUN/bundle" --data "$RUN/data" --device "$DEVICE"
done
# Exported beside the old bundle, which is replaced only once the new one is whole.
rm -rf "$OUT.new"
"$BIN" export --checkpoint "$RUN/bundle" --out "$OUT.new" --dtype f16
"$BIN" info --checkpoint "$OUT.new"
rm -rf "$OUT.old" && { [[ ! -e "$OUT" ]] || mv "$OUT" "$OUT.old"; } && mv "$OUT.new" "$OUT" && rm -rf "$OUT.old"
echo "wall time of this invocation: $(( $(date +%s) - START )) s (training time per stage: provenance.wall_seconds in each config.json)"

#!/usr/bin/env bash
# The interim demo (until a model ships in the repository): prepare a generated story
# corpus, train the small demo bundle (ar, autoencoder, planner; a few minutes on two cores,
# resumed if a previous demo was interrupted), then write the same prompt in hybrid mode
# (showing the plan) and in ar mode, with timings.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/plandiff
DIR=runs/demo
mkdir -p "$DIR"

if [[ ! -f "$DIR/data/stats.json" ]]; then
  python3 python/make_corpus.py --stories 4000 --seed 1 > "$DIR/corpus.txt"
  "$BIN" prepare --input "$DIR/corpus.txt" --out "$DIR/data" --vocab-size 1024 --lowercase --valid-fraction 0.05
fi

# Each stage: a new run, or the interrupted one resumed (a finished run resumes to a no-op).
for stage in ar autoencoder planner; do
  if [[ -f "$DIR/bundle/$stage/trainer_state.json" ]]; then
    "$BIN" --log-level warn train "$stage" --data "$DIR/data" --out "$DIR/bundle" --resume
  else
    "$BIN" --log-level warn train "$stage" --config configs/demo.toml --data "$DIR/data" --out "$DIR/bundle"
  fi
done

"$BIN" info --checkpoint "$DIR/bundle"
PROMPT="Once upon a time, there was a little fox named Leo. He lived near a big forest."
echo
echo "== plandiff generate --mode hybrid --show-plan (seed 1) =="
"$BIN" generate --checkpoint "$DIR/bundle" --mode hybrid --prompt "$PROMPT" --sentences 8 --seed 1 --show-plan
echo
echo "== plandiff generate --mode ar (seed 1) =="
"$BIN" generate --checkpoint "$DIR/bundle" --mode ar --prompt "$PROMPT" --sentences 8 --seed 1 --stream
echo
"$BIN" eval --checkpoint "$DIR/bundle" --data "$DIR/data"
"$BIN" eval --checkpoint "$DIR/bundle" --data "$DIR/data" --stage autoencoder

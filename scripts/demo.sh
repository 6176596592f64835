#!/usr/bin/env bash
# The interim demo: prepare a generated story corpus, train a small AR model for about a
# minute (resumed if a previous demo was interrupted), then generate from it.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/plandiff
DIR=runs/demo
mkdir -p "$DIR"

if [[ ! -f "$DIR/data/stats.json" ]]; then
  python3 python/make_corpus.py --stories 4000 --seed 1 > "$DIR/corpus.txt"
  "$BIN" prepare --input "$DIR/corpus.txt" --out "$DIR/data" --vocab-size 1024 --lowercase --valid-fraction 0.05
fi

if [[ -f "$DIR/bundle/ar/trainer_state.json" ]]; then
  "$BIN" train ar --data "$DIR/data" --out "$DIR/bundle" --resume
else
  "$BIN" train ar --config configs/demo.toml --data "$DIR/data" --out "$DIR/bundle"
fi

"$BIN" info --checkpoint "$DIR/bundle"
echo
echo "== plandiff generate --mode ar (seed 1) =="
"$BIN" generate --checkpoint "$DIR/bundle" --mode ar \
  --prompt "Once upon a time, there was a little fox named Leo." --sentences 6 --seed 1 --stream
echo
"$BIN" eval --checkpoint "$DIR/bundle" --data "$DIR/data"

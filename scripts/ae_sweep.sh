#!/usr/bin/env bash
# The autoencoder experiment of the planner issue: does the decoder use the plan, and which
# training lever makes it use it sooner? Trains variants of configs/tiny.toml's
# [autoencoder] section for the same number of steps and prints oracle/null perplexity.
#   scripts/ae_sweep.sh DATA_DIR OUT_DIR DEVICE [STEPS]
set -euo pipefail
BIN=${BIN:-target/release/plandiff}
DATA=$1; OUT=$2; DEVICE=$3; STEPS=${4:-2500}
mkdir -p "$OUT"
variant() {  # name, then sed expressions applied to the [autoencoder] part of tiny.toml
  local name=$1; shift
  local cfg="$OUT/$name.toml"
  cp configs/tiny.toml "$cfg"
  for e in "$@"; do sed -i "$e" "$cfg"; done
  "$BIN" --log-level warn train autoencoder --config "$cfg" --data "$DATA" --out "$OUT/$name" --device "$DEVICE" --max-steps "$STEPS" --json > "$OUT/$name.train.json"
  "$BIN" --log-level warn eval --stage autoencoder --checkpoint "$OUT/$name" --data "$DATA" --device "$DEVICE" --json > "$OUT/$name.eval.json"
  cp "$OUT/$name/logs/autoencoder-metrics.jsonl" "$OUT/$name.metrics.jsonl"
  python3 -c "import json,sys; r=json.load(open('$OUT/$name.eval.json'))['result']; t=json.load(open('$OUT/$name.train.json')); print(f\"$name: ppl oracle {r['ppl_oracle']:.2f} null {r['ppl_null']:.2f} ratio {r['ppl_ratio']:.3f} acc {r['accuracy_oracle']:.3f}/{r['accuracy_null']:.3f} ({t['tokens_per_s']:.0f} tok/s)\")"
  rm -rf "$OUT/$name"
}
variant baseline
variant ctx25 's/^context_dropout = 0.0/context_dropout = 0.25/'
variant ctx50 's/^context_dropout = 0.0/context_dropout = 0.5/'
variant latent128 's/^d_latent = 64/d_latent = 128/' 's/^context_dropout = 0.0/context_dropout = 0.25/'

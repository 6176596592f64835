#!/usr/bin/env bash
# Mutation fuzzing of the loaders (safetensors headers, config.json, tokenizer.json, run
# configs, prompt files, templates) through the release binary, for a bounded time: no panic,
# no abort, no crash, peak resident size under 2 GB. See scripts/fuzz.py.
#
#   scripts/fuzz.sh [SECONDS] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x target/release/plandiff ]] || { echo "error: target/release/plandiff not built; run \`make build\`" >&2; exit 1; }
exec python3 scripts/fuzz.py --seconds "${1:-60}" --seed "${2:-0}"

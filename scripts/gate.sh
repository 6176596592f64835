#!/usr/bin/env bash
# The plan-space gate (issue 25, part 6): the plan-reading decoder trained at equal steps on the
# same data with (a) frozen all-MiniLM-L6-v2 plans and (b) the jointly learned autoencoder's,
# both starting from the shipped bundle's ar model; their validation figures (oracle-plan and
# null-plan token accuracy and perplexity on held-out stories) land in each bundle's
# logs/autoencoder-metrics.jsonl.
#
#   scripts/gate.sh [learned|frozen]...   # default: both, one after the other
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${PLANDIFF_BIN:-target/release/plandiff}
SHARED=${SHARED:-../shared/data/tinystories}
DATA=runs/all/data
[[ -f "$SHARED/more_stories_lowercase.jsonl" ]] || { echo "error: $SHARED lacks the story corpora" >&2; exit 1; }
if [[ ! -f "$DATA/stats.json" ]]; then
  mkdir -p runs/all
  head -n -300 "$SHARED/stories_lowercase.jsonl" > runs/all/train-stories.jsonl   # the last 300 stay held out
  cat "$SHARED/more_stories_lowercase.jsonl" >> runs/all/train-stories.jsonl
  "$BIN" prepare --input runs/all/train-stories.jsonl --out "$DATA" --tokenizer checkpoints/tiny/tokenizer.json
fi
"$BIN" embed --data "$DATA" --split train
"$BIN" embed --data "$DATA" --split valid
for arm in "${@:-learned frozen}"; do
  for a in $arm; do
    out=runs/gate-$a
    if [[ ! -d "$out/autoencoder" ]]; then
      mkdir -p "$out" && cp checkpoints/tiny/tokenizer.json "$out/" && cp -r checkpoints/tiny/ar "$out/"
      "$BIN" train autoencoder --config "configs/gate-$a.toml" --data "$DATA" --out "$out"
    else
      "$BIN" train autoencoder --data "$DATA" --out "$out" --resume
    fi
  done
done

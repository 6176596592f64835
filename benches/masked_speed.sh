#!/usr/bin/env bash
# Masked generation against ar, tokens/s on the same prompts (issue 26, part 6): plain LLaDA
# sampling, Fast-dLLM's block cache (a full pass every block, every 4 blocks, once), its
# parallel decoding (--threshold), and both, at the
# masked story A/B's settings (10 sentences, blocks of 4, one token a step, temperature 0.8,
# repetition penalty 1.2). Prints a markdown table; rounds alternate the settings.
#
#   benches/masked_speed.sh [BUNDLE] [PROMPTS.jsonl] [N_PROMPTS] [SAMPLES]
#
# BUNDLE defaults to the shipped checkpoints/tiny; PROMPTS to a few story openings built in.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/plandiff
BUNDLE=${1:-checkpoints/tiny}
PROMPTS=${2:-}
N=${3:-8}
SAMPLES=${4:-4}
ROUNDS=${ROUNDS:-2}
[ -x "$BIN" ] || { echo "error: $BIN is missing; run make build first" >&2; exit 1; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
if [ -n "$PROMPTS" ]; then
  python3 -c 'import json,sys
for line in list(open(sys.argv[1]))[:int(sys.argv[2])]:
    print(json.loads(line)["prompt"])' "$PROMPTS" "$N" > "$TMP/prompts.txt"
else
  cat > "$TMP/prompts.txt" <<'TXT'
once upon a time, there was a little girl named lily. she loved to play outside.
tom had a red ball. he liked to throw it high in the sky.
one day, a small cat found a box in the park.
the sun was hot and ben wanted to swim in the lake.
TXT
fi
COMMON=(--checkpoint "$BUNDLE" --sentences 10 --num-samples "$SAMPLES" --seed 0 --temperature 0.8 --repetition-penalty 1.2 --json)
M="--mode masked --steps 128 --block-length 4"
declare -A ARMS=(
  [ar]="--mode ar"
  [masked]="$M"
  [threshold_0.9]="$M --threshold 0.9"
  [block_cache]="$M --block-cache"
  [block_cache_4]="$M --block-cache 4"
  [block_cache_once]="$M --block-cache 1000"
  [block_cache_once_t0.9]="$M --block-cache 1000 --threshold 0.9"
)
ORDER=(ar masked threshold_0.9 block_cache block_cache_4 block_cache_once block_cache_once_t0.9)
for round in $(seq "$ROUNDS"); do
  for arm in "${ORDER[@]}"; do
    while IFS= read -r prompt; do
      # shellcheck disable=SC2086
      "$BIN" generate "${COMMON[@]}" ${ARMS[$arm]} --prompt "$prompt" 2>/dev/null \
        | python3 -c 'import json,sys
d=json.load(sys.stdin); s=d["samples"]
print(sys.argv[1], sum(x["new_tokens"] for x in s), s[0]["seconds"])' "$arm" >> "$TMP/runs.txt"
    done < "$TMP/prompts.txt"
  done
done
python3 - "$TMP/runs.txt" "$SAMPLES" "${ORDER[@]}" <<'PYEOF'
import sys
rows = [l.split() for l in open(sys.argv[1])]
samples, order = sys.argv[2], sys.argv[3:]
tot = {}
for arm, toks, secs in rows:
    t, s = tot.get(arm, (0, 0.0))
    tot[arm] = (t + int(toks), s + float(secs))
ar = tot["ar"][0] / tot["ar"][1]
print(f"batch {samples}, 10 sentences, temperature 0.8, repetition penalty 1.2; masked: 128 steps, blocks of 4")
print("| arm | new tokens | seconds | tokens/s (all rows) | / ar |")
print("|---|---:|---:|---:|---:|")
for arm in order:
    t, s = tot[arm]
    print(f"| {arm} | {t} | {s:.2f} | {t / s:.0f} | {t / s / ar:.2f}x |")
PYEOF

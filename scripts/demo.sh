#!/usr/bin/env bash
# `make demo`: the shipped bundle (checkpoints/tiny, trained by scripts/train_shipped.sh) writes
# a 12-sentence story from one prompt in hybrid mode (plan, then write; the plan shown), then
# the same prompt in ar mode, with timings; then a story to a 4-line outline, each line printed
# beside the sentence written at its slot; then masked diffusion writes a few sentences with its
# denoising steps shown and revises its own weakest words. Nothing is trained here.
#
#   scripts/demo.sh [PROMPT]          # PLANDIFF_CHECKPOINT=DIR to use another bundle
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${PLANDIFF_BIN:-target/release/plandiff}
CKPT=${PLANDIFF_CHECKPOINT:-checkpoints/tiny}
PROMPT=${1:-"once upon a time, there was a little fox named leo. he lived near a big forest."}
SENTENCES=12
SEED=${SEED:-1}
ERRORS="once upon a time, there was a little fox named leo. leo lived near a big forest with his mom. one day, leo went to the river to drink some water. he saw a big fish swimming in the tree. leo was very happy and played with the fish all sky."

[[ -x "$BIN" ]] || { echo "error: $BIN not built; run \`make demo\` (it builds first)" >&2; exit 1; }
[[ -f "$CKPT/planner/config.json" ]] || {
  echo "error: $CKPT has no planner; the shipped bundle is checkpoints/tiny (git checkout it, or rebuild it with scripts/train_shipped.sh)" >&2
  exit 1
}

"$BIN" info --checkpoint "$CKPT"

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

echo
echo "== plandiff generate --mode hybrid --sentences $SENTENCES --show-plan --seed $SEED =="
echo "   (the planner drafts one latent per sentence by DDIM; the decoder writes each sentence reading them)"
t0=$(now)
"$BIN" generate --checkpoint "$CKPT" --mode hybrid --prompt "$PROMPT" --sentences "$SENTENCES" --seed "$SEED" --show-plan
t1=$(now)
echo
echo "== plandiff generate --mode ar --sentences $SENTENCES --no-eos --seed $SEED (the same prompt, no plan) =="
"$BIN" generate --checkpoint "$CKPT" --mode ar --prompt "$PROMPT" --sentences "$SENTENCES" --no-eos --seed "$SEED" --stream
t2=$(now)
echo
echo "wall time, model load included: hybrid $(secs "$t0" "$t1") s, ar $(secs "$t1" "$t2") s on $(nproc) CPU cores"

# Writing to an outline: the user fixes some plan slots in words, the planner fills the rest
# (`_`), the decoder writes every slot; each outline line is printed beside what was written.
OUTLINE=$(mktemp)
printf '%s\n' "leo finds a shiny red ball near the river." "_" \
  "a little rabbit wants to play with the ball too." "leo and the rabbit play with the ball until the sun goes down." > "$OUTLINE"
echo
echo "== plandiff generate --mode hybrid --outline FILE --seed $SEED (4 lines; \"_\" is a slot the planner fills) =="
"$BIN" --log-level warn generate --checkpoint "$CKPT" --mode hybrid --prompt "$PROMPT" --outline "$OUTLINE" --seed "$SEED" --show-plan --json \
  | python3 -c '
import json, sys
s = json.load(sys.stdin)["samples"][0]
print(s["text"])
print()
for p in s["plan"]:
    print("  sentence %2d  outline: %s" % (p["sentence"], p.get("outline") or "_ (the planner fills it)"))
    print("               wrote:   %s" % p["written"])
'
rm -f "$OUTLINE"

if [[ -f "$CKPT/masked/config.json" ]]; then
  MASKED_OUT=$(mktemp)
  trap 'rm -f "$MASKED_OUT"' EXIT
  echo
  echo "== plandiff generate --mode masked --max-tokens 48 --steps 48 --show-steps 8 --seed $SEED =="
  echo "   (masked diffusion: all 48 positions start as masks (_); each step commits the most confident)"
  "$BIN" generate --checkpoint "$CKPT" --mode masked --prompt "$PROMPT" --max-tokens 48 --steps 48 \
    --block-length 48 --no-eos --show-steps 8 --seed "$SEED" | tee "$MASKED_OUT"
  tail -n 1 "$MASKED_OUT" > "$MASKED_OUT.txt"
  echo
  # A story with two deliberate errors ("in the tree", "all sky"): revise remasks its weakest
  # words one at a time and keeps a rewrite only where the ar model scores the text higher.
  printf '%s\n' "$ERRORS" > "$MASKED_OUT.txt"
  echo "== plandiff edit --mode masked --revise-fraction 0.15 --rounds 3 (a story with two deliberate errors, \"swimming in the tree\" and \"all sky\") =="
  echo "input:   $ERRORS"
  printf 'revised: '
  "$BIN" edit --checkpoint "$CKPT" --mode masked --input "$MASKED_OUT.txt" --revise-fraction 0.15 --rounds 3 --seed "$SEED"
  rm -f "$MASKED_OUT.txt"
fi

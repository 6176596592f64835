#!/usr/bin/env bash
# The figures of the shipped bundle (README, "The shipped model"), each with plandiff's own
# `eval` and `ab`, on data no stage trained on: TinyStories' validation file (valid.txt,
# paragraphs) and the last HOLDOUT (300) stories of stories_lowercase.jsonl, which
# scripts/train_shipped.sh keeps out of every stage:
#   1. valid.txt and the held-out stories in the bundle's tokenizer (--valid-fraction 1)
#   2. eval --stage ar | autoencoder | planner | diffusion | masked on each -> OUT/eval-<stage>.json,
#      OUT/eval-stories-<stage>.json (the autoencoder's oracle-plan accuracy on stories)
#   3. 100 story prompts (first two sentences of held-out stories, the rest the reference);
#      ab hybrid vs ar vs oracle, 10 sentences, 4 samples each -> OUT/ab/ (judge: the
#      bundle's own ar model, which favours the ar arm: its samples are that model's own text)
#   4. the same A/B judged by an independent judge -> OUT/ab-judge/: an ar model trained by the
#      shipped recipe with another seed (seed 7) into runs/judge-stories (resumable; about 45 min
#      on two CPU cores). NO_JUDGE=1 skips it; JUDGE=DIR uses another bundle.
#   5. the modes side by side on the same prompts: masked at 32, 64 and 128 steps against
#      Gaussian diffusion (200 steps) and ar -> OUT/ab-modes/ (NO_MODES=1 skips it)
#
#   scripts/eval_shipped.sh            # PLANDIFF_CHECKPOINT=DIR evaluates another bundle
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/plandiff
SHARED=${PLANDIFF_SHARED:-../shared/data}
CKPT=${PLANDIFF_CHECKPOINT:-checkpoints/tiny}
OUT=${OUT:-runs/shipped-eval}
VALID="$SHARED/tinystories/valid.txt"
STORIES=${STORIES:-"$SHARED/tinystories/stories_lowercase.jsonl"}
HOLDOUT=${HOLDOUT:-300}
ARMS=${ARMS:-hybrid,ar,oracle}
PY=${PYTHON:-.venv/bin/python}
[[ -x "$PY" ]] || PY=python3
[[ -f "$VALID" ]] || { echo "error: $VALID not found; set PLANDIFF_SHARED to the folder holding tinystories/" >&2; exit 1; }
mkdir -p "$OUT"
START=$(date +%s)

if [[ ! -f "$OUT/valid/stats.json" ]]; then
  "$BIN" --log-level warn prepare --input "$VALID" --tokenizer "$CKPT/tokenizer.json" --lowercase \
    --valid-fraction 1 --out "$OUT/valid"
fi
if [[ ! -f "$OUT/heldout/stats.json" ]]; then
  tail -n "$HOLDOUT" "$STORIES" > "$OUT/heldout.jsonl"
  "$BIN" --log-level warn prepare --input "$OUT/heldout.jsonl" --tokenizer "$CKPT/tokenizer.json" --lowercase \
    --valid-fraction 1 --out "$OUT/heldout"
fi
summary() {
  "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); r=d.get("result", d); print(json.dumps({k: v for k, v in r.items() if not isinstance(v, (list, dict))}))' "$1"
}
for stage in ar autoencoder planner diffusion masked; do
  [[ -f "$CKPT/$stage/config.json" ]] || continue
  echo "== plandiff eval --stage $stage --checkpoint $CKPT --data $OUT/valid | $OUT/heldout"
  "$BIN" --log-level warn eval --stage "$stage" --checkpoint "$CKPT" --data "$OUT/valid" --json > "$OUT/eval-$stage.json"
  summary "$OUT/eval-$stage.json"
  "$BIN" --log-level warn eval --stage "$stage" --checkpoint "$CKPT" --data "$OUT/heldout" --json > "$OUT/eval-stories-$stage.json"
  summary "$OUT/eval-stories-$stage.json"
done

"$PY" python/ab_prompts.py --input "$STORIES" --last "$HOLDOUT" --n 100 > "$OUT/prompts.jsonl"
echo "== plandiff ab --arms $ARMS (judge: the bundle's ar model)"
"$BIN" --log-level warn ab --checkpoint "$CKPT" --prompts "$OUT/prompts.jsonl" --arms "$ARMS" \
  --samples 4 --sentences 10 --seed 0 --out "$OUT/ab" | tee "$OUT/ab.md"
if [[ -z "${NO_JUDGE:-}" ]]; then
  if [[ -z "${JUDGE:-}" ]]; then
    JUDGE=runs/judge-stories
    DATA=${JUDGE_DATA:-runs/stories/data}
    if [[ -f "$JUDGE/ar/trainer_state.json" ]]; then
      "$BIN" train ar --data "$DATA" --out "$JUDGE" --resume
    else
      "$BIN" train ar --config configs/shipped.toml --data "$DATA" --out "$JUDGE" --seed 7
    fi
  fi
  echo "== plandiff ab --arms $ARMS --judge $JUDGE"
  "$BIN" --log-level warn ab --checkpoint "$CKPT" --prompts "$OUT/prompts.jsonl" --arms "$ARMS" \
    --samples 4 --sentences 10 --seed 0 --judge "$JUDGE" --out "$OUT/ab-judge" | tee "$OUT/ab-judge.md"
fi
if [[ -z "${NO_MODES:-}" ]]; then
  J=(); [[ -n "${JUDGE:-}" && -z "${NO_JUDGE:-}" ]] && J=(--judge "$JUDGE")
  echo "== plandiff ab --arms masked@64,masked@32,masked@128,diffusion,ar ${J[*]}"
  "$BIN" --log-level warn ab --checkpoint "$CKPT" --prompts "$OUT/prompts.jsonl" \
    --arms masked@64,masked@32,masked@128,diffusion,ar --samples 4 --sentences 10 --seed 0 "${J[@]}" \
    --out "$OUT/ab-modes" | tee "$OUT/ab-modes.md"
fi
echo "wall time: $(( $(date +%s) - START )) s; results in $OUT"

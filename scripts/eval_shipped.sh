#!/usr/bin/env bash
# The figures of the shipped bundle (README, "The shipped model"), each with plandiff's own
# `eval` and `ab`, on TinyStories' validation file (valid.txt, lowercased by the bundle's
# tokenizer; none of it is in the training file):
#   1. valid.txt in the bundle's tokenizer, every document held out (--valid-fraction 1)
#   2. eval --stage ar | autoencoder | planner | diffusion | masked  -> OUT/eval-<stage>.json
#   3. 100 prompts from valid.txt; ab hybrid vs ar, 8 sentences, 4 samples each -> OUT/ab/
#      (judge: the bundle's own ar model, which favours the ar arm: its samples are that
#      model's own likely text)
#   4. the same A/B judged by an independent judge -> OUT/ab-judge/: an ar model trained by the
#      shipped recipe with another seed (seed 7) into runs/judge (resumable; about 17 min on
#      two CPU cores). NO_JUDGE=1 skips it; JUDGE=DIR uses another bundle.
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
PY=${PYTHON:-.venv/bin/python}
[[ -x "$PY" ]] || PY=python3
[[ -f "$VALID" ]] || { echo "error: $VALID not found; set PLANDIFF_SHARED to the folder holding tinystories/" >&2; exit 1; }
mkdir -p "$OUT"
START=$(date +%s)

if [[ ! -f "$OUT/valid/stats.json" ]]; then
  "$BIN" --log-level warn prepare --input "$VALID" --tokenizer "$CKPT/tokenizer.json" --lowercase \
    --valid-fraction 1 --out "$OUT/valid"
fi
for stage in ar autoencoder planner diffusion masked; do
  echo "== plandiff eval --stage $stage --checkpoint $CKPT --data $OUT/valid"
  "$BIN" --log-level warn eval --stage "$stage" --checkpoint "$CKPT" --data "$OUT/valid" --json > "$OUT/eval-$stage.json"
  "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); r=d.get("result", d); print(json.dumps({k: v for k, v in r.items() if not isinstance(v, (list, dict))}))' "$OUT/eval-$stage.json"
done

"$PY" python/ab_prompts.py --input "$VALID" --n 100 --lowercase > "$OUT/prompts.jsonl"
echo "== plandiff ab --arms hybrid,ar (judge: the bundle's ar model)"
"$BIN" --log-level warn ab --checkpoint "$CKPT" --prompts "$OUT/prompts.jsonl" --arms hybrid,ar \
  --samples 4 --sentences 8 --seed 0 --out "$OUT/ab" | tee "$OUT/ab.md"
if [[ -z "${NO_JUDGE:-}" ]]; then
  if [[ -z "${JUDGE:-}" ]]; then
    JUDGE=runs/judge
    DATA=runs/shipped/data
    if [[ ! -f "$DATA/stats.json" ]]; then
      DATA=runs/judge-data
      [[ -f "$DATA/stats.json" ]] || "$BIN" --log-level warn prepare --input "$SHARED/tinystories/train_lowercase.txt" \
        --tokenizer "$CKPT/tokenizer.json" --lowercase --out "$DATA"
    fi
    if [[ -f "$JUDGE/ar/trainer_state.json" ]]; then
      "$BIN" train ar --data "$DATA" --out "$JUDGE" --resume
    else
      "$BIN" train ar --config configs/shipped.toml --data "$DATA" --out "$JUDGE" --seed 7
    fi
  fi
  echo "== plandiff ab --arms hybrid,ar --judge $JUDGE"
  "$BIN" --log-level warn ab --checkpoint "$CKPT" --prompts "$OUT/prompts.jsonl" --arms hybrid,ar \
    --samples 4 --sentences 8 --seed 0 --judge "$JUDGE" --out "$OUT/ab-judge" | tee "$OUT/ab-judge.md"
fi
if [[ -z "${NO_MODES:-}" ]]; then
  J=(); [[ -n "${JUDGE:-}" && -z "${NO_JUDGE:-}" ]] && J=(--judge "$JUDGE")
  echo "== plandiff ab --arms masked@64,masked@32,masked@128,diffusion,ar ${J[*]}"
  "$BIN" --log-level warn ab --checkpoint "$CKPT" --prompts "$OUT/prompts.jsonl" \
    --arms masked@64,masked@32,masked@128,diffusion,ar --samples 4 --sentences 8 --seed 0 "${J[@]}" \
    --out "$OUT/ab-modes" | tee "$OUT/ab-modes.md"
fi
echo "wall time: $(( $(date +%s) - START )) s; results in $OUT"

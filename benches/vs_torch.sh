#!/usr/bin/env bash
# `make bench-torch`: plandiff against PyTorch side by side, in one run, same shape (the tiny
# decoder: d 256, 4 layers, 4 heads, vocab 4096), same threads, alternating rounds, medians:
#  - decoding 256 new tokens at batch 1 and 8 (ar; batch 1 with a 16-slot plan: hybrid's
#    decoder) against HF transformers' `generate` on a GPT-2 of that shape, the same sampling;
#    with the operators each dispatches per decoding step (all of them, and top-level ones);
#  - a training step (batch 16 x 256) against a plain PyTorch eager loop of the same model.
# PyTorch is the project's .venv (make venv). ROUNDS=3 THREADS=2 NEW=256 by default.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
NEW=${NEW:-256}
PY=.venv/bin/python
[[ -x $PY ]] || { echo "error: $PY not found; run \`make venv\` first" >&2; exit 1; }
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
cargo bench --locked --quiet --bench vs_torch --no-run 2>/dev/null
cargo bench --locked --quiet --bench train_throughput --no-run 2>/dev/null
for round in $(seq "$ROUNDS"); do
  echo "round $round/$ROUNDS" >&2
  cargo bench --locked --quiet --bench vs_torch -- --threads "$THREADS" --new "$NEW" --reps 1 2>/dev/null | grep '^{' >> "$OUT"
  for b in 1 8; do
    $PY python/plandiff_twin.py bench-generate --batch "$b" --threads "$THREADS" --new "$NEW" --reps 1 2>/dev/null | grep '^{' >> "$OUT"
  done
  cargo bench --locked --quiet --bench train_throughput -- --threads "$THREADS" --steps 10 2>/dev/null | grep '^{' >> "$OUT"
  cargo bench --locked --quiet --bench train_throughput -- --threads "$THREADS" --steps 10 --unfused 2>/dev/null | grep '^{' >> "$OUT"
  $PY python/plandiff_twin.py bench-train --threads "$THREADS" --steps 10 | grep '^{' >> "$OUT"
  # The same step under bf16 autocast (`--precision bf16`; AMX or AVX512-BF16 CPUs run its matmuls natively).
  cargo bench --locked --quiet --bench train_throughput -- --threads "$THREADS" --steps 10 --bf16 2>/dev/null | grep '^{' >> "$OUT"
  $PY python/plandiff_twin.py bench-train --threads "$THREADS" --steps 10 --bf16 | grep '^{' >> "$OUT"
done
python3 - "$OUT" "$THREADS" "$ROUNDS" <<'PYEOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
threads, rounds = sys.argv[2], sys.argv[3]
med = lambda rs, k: statistics.median(r[k] for r in rs)
def pick(impl, what=None, mode=None, batch=None):
    return [r for r in rows if r["impl"] == impl and r.get("what", "train") == (what or "train")
            and (mode is None or r.get("mode") == mode) and (batch is None or r.get("batch") == batch)]
print(f"## Decoding, {threads} threads, {rounds} alternating rounds (median tokens/s, all rows)\n")
print("| batch | plandiff ar | plandiff hybrid (16-slot plan) | HF generate (GPT-2) | plandiff / HF | hybrid / ar | ops per step: plandiff ar (top-level) | HF (top-level) |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|")
for b in (1, 8):
    ar, hf, hy = pick("plandiff", "decode", "ar", b), pick("hf-generate", "decode", "ar", b), pick("plandiff", "decode", "hybrid", b)
    h = f"{med(hy, 'tokens_per_s'):.0f}" if hy else "-"
    ratio = f"{med(hy, 'tokens_per_s') / med(ar, 'tokens_per_s'):.2f}" if hy else "-"
    print(f"| {b} | {med(ar, 'tokens_per_s'):.0f} | {h} | {med(hf, 'tokens_per_s'):.0f} | "
          f"**{med(ar, 'tokens_per_s') / med(hf, 'tokens_per_s'):.2f}x** | {ratio} | "
          f"{med(ar, 'ops_per_step'):.0f} ({med(ar, 'top_ops_per_step'):.0f}) | {med(hf, 'ops_per_step'):.0f} ({med(hf, 'top_ops_per_step'):.0f}) |")
hy = pick("plandiff", "decode", "hybrid", 1)
if hy:
    print(f"\nhybrid's decoder at batch 1: {med(hy, 'ops_per_step'):.0f} ops per step ({med(hy, 'top_ops_per_step'):.0f} top-level)")
fl = pick("plandiff", "floor")
if fl:
    print(f"\nbatch-1 step, model only: {med(fl, 'step_us'):.0f} us; its matmuls alone: {med(fl, 'matmul_us'):.0f} us; "
          f"the same step on a d_model-16 decoder of the same depth (operators' fixed cost): {med(fl, 'd16_step_us'):.0f} us")
pt, pu, pe = pick("plandiff"), pick("plandiff-unfused"), pick("pytorch-eager")
print(f"\n## Training step (batch 16 x 256, AdamW, clip), {threads} threads\n")
print("| implementation | tokens/s, median | per round |")
print("|---|---:|---|")
pb, peb = pick("plandiff-bf16"), pick("pytorch-eager-bf16")
for name, rs in (("plandiff (output head and loss fused)", pt), ("plandiff, logits whole (before)", pu), ("pytorch-eager", pe),
                 ("plandiff, bf16 autocast", pb), ("pytorch-eager, bf16 autocast", peb)):
    print(f"| {name} | {med(rs, 'tokens_per_s'):.0f} | " + ", ".join(f"{r['tokens_per_s']:.0f}" for r in rs) + " |")
print(f"\nplandiff / PyTorch eager: **{med(pt, 'tokens_per_s') / med(pe, 'tokens_per_s'):.2f}x** (fp32); "
      f"under bf16 autocast: **{med(pb, 'tokens_per_s') / med(peb, 'tokens_per_s'):.2f}x**")
PYEOF

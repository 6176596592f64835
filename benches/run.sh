#!/usr/bin/env bash
# Benchmarks of the foundation issue, printed as tables. Run with `make bench`.
# Uses ../shared/data when present (the prepare figures), and skips those rows otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/plandiff
THREADS=${THREADS:-2}
SHARED=${PLANDIFF_SHARED:-../shared/data}
OUT=runs/bench
mkdir -p "$OUT"
PY=.venv/bin/python

# Peak RSS (MB) and wall seconds of a command, via getrusage of the child.
peak() {
  python3 - "$@" <<'PYEOF'
import resource, subprocess, sys, time
t = time.time()
r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
if r.returncode != 0:
    sys.stderr.write(r.stderr.decode()); sys.exit(r.returncode)
print(f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} {time.time() - t:.2f}")
PYEOF
}

echo "## Training throughput (tiny config, batch 16 x 256 tokens, $THREADS threads, 3 alternating rounds, median)"
echo
cargo bench --locked --quiet --bench train_throughput --no-run 2>/dev/null
RUNS=()
for round in 1 2 3; do
  RUNS+=("$(cargo bench --locked --quiet --bench train_throughput -- --threads "$THREADS" --steps 15 2>/dev/null | tail -1)")
  RUNS+=("$($PY python/plandiff_twin.py bench-train --threads "$THREADS" --steps 15)")
done
python3 - "${RUNS[@]}" <<'PYEOF'
import json, statistics, sys
runs = [json.loads(a) for a in sys.argv[1:]]
by = {}
for r in runs:
    by.setdefault(r["impl"], []).append(r)
print("| implementation | params | step (ms), median | tokens/s, median | tokens/s per round |")
print("|---|---:|---:|---:|---|")
med = {}
for impl, rs in by.items():
    med[impl] = statistics.median(r["tokens_per_s"] for r in rs)
    print(f"| {impl} | {rs[0]['params']} | {statistics.median(r['step_ms'] for r in rs):.0f} | {med[impl]:.0f} | "
          + ", ".join(f"{r['tokens_per_s']:.0f}" for r in rs) + " |")
print(f"\nplandiff / PyTorch eager: {med['plandiff'] / med['pytorch-eager']:.2f}x")
PYEOF
echo
echo "## Generation with the KV cache"
echo
cargo bench --locked --quiet --bench generation -- --threads "$THREADS" 2>/dev/null
echo
echo "## prepare"
echo
if [[ -f "$SHARED/tinystories/train_lowercase.txt" ]]; then
  read -r MB S < <(peak "$BIN" prepare --input "$SHARED/tinystories/train_lowercase.txt" --out "$OUT/prep-ts" --vocab-size 4096 --lowercase)
  SIZE=$(stat -c %s "$SHARED/tinystories/train_lowercase.txt")
  echo "| corpus | size (MB) | wall (s) | MB/s | peak RSS (MB) |"
  echo "|---|---:|---:|---:|---:|"
  python3 -c "print(f'| train_lowercase.txt | {$SIZE/1e6:.1f} | $S | {$SIZE/1e6/$S:.2f} | $MB |')"
  BIG="$OUT/corpus-200mb.txt"
  if [[ ! -f "$BIG" ]]; then
    : > "$BIG"
    while [[ $(stat -c %s "$BIG") -lt 200000000 ]]; do
      cat "$SHARED"/tinystories/*.txt "$SHARED"/gutenberg/*.txt >> "$BIG"
    done
  fi
  read -r MB S < <(peak "$BIN" prepare --input "$BIG" --out "$OUT/prep-big" --vocab-size 4096)
  SIZE=$(stat -c %s "$BIG")
  python3 -c "print(f'| 200 MB (shared files repeated) | {$SIZE/1e6:.1f} | $S | {$SIZE/1e6/$S:.2f} | $MB |')"
  rm -rf "$OUT/prep-big"
else
  echo "skipped: $SHARED/tinystories is not here (the prepare benchmark needs the shared corpora)"
fi
echo
echo "## generate: peak memory and time to first token (tiny model, CPU)"
echo
BUNDLE=${BUNDLE:-runs/tiny}
if [[ ! -f "$BUNDLE/ar/config.json" ]]; then
  # Memory and latency do not depend on how well the weights are trained.
  BUNDLE="$OUT/tiny-untrained"
  rm -rf "$BUNDLE"
  python3 python/make_corpus.py --stories 2000 > "$OUT/corpus.txt"
  "$BIN" prepare --input "$OUT/corpus.txt" --out "$OUT/data" --vocab-size 4096 >/dev/null
  "$BIN" --log-level warn train ar --config configs/tiny.toml --data "$OUT/data" --out "$BUNDLE" --max-steps 1 >/dev/null
fi
read -r MB S < <(peak "$BIN" --threads "$THREADS" generate --checkpoint "$BUNDLE" --prompt "once upon a time, there was a girl." --max-tokens 200 --seed 1)
J=$("$BIN" --threads "$THREADS" --log-level warn generate --checkpoint "$BUNDLE" --prompt "once upon a time, there was a girl." --max-tokens 200 --seed 1 --json)
python3 - "$J" "$MB" "$S" <<'PYEOF'
import json, sys
j = json.loads(sys.argv[1]); s = j["samples"][0]
print("| peak RSS (MB) | wall (s) | load (ms) | first token from start (ms) | new tokens | tokens/s |")
print("|---:|---:|---:|---:|---:|---:|")
print(f"| {sys.argv[2]} | {sys.argv[3]} | {j['load_ms']:.0f} | {j['first_token_ms_from_start']:.0f} | {s['new_tokens']} | {s['tokens_per_s']:.0f} |")
PYEOF
echo
echo "## Planner: planning latency against decoding (tiny architectures, random weights)"
echo
cargo bench --locked --quiet --bench planner -- --threads "$THREADS" 2>/dev/null
echo
echo "## Hybrid against ar decoding at the same length (trained bundle, 16 sentences, batch 1)"
echo
HYB=${HYBRID_BUNDLE:-runs/bundle-tiny2}
if [[ -f "$HYB/planner/config.json" && -f "$HYB/ar/config.json" ]]; then
  python3 python/ab_prompts.py --input "$SHARED/tinystories/valid.txt" --n 8 --lowercase > "$OUT/bench-prompts.jsonl" 2>/dev/null \
    || printf '{"prompt": "once upon a time, there was a little girl named lily."}\n{"prompt": "tom had a red ball. he liked to play with it."}\n' > "$OUT/bench-prompts.jsonl"
  "$BIN" --threads "$THREADS" --log-level warn ab --checkpoint "$HYB" --prompts "$OUT/bench-prompts.jsonl" --arms hybrid,ar \
    --samples 1 --sentences 16 --out "$OUT/ab-speed" --resamples 200 --json > "$OUT/ab-speed.json"
  python3 - "$OUT/ab-speed.json" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))
a = r["aggregates"]
print("| arm | new tokens (mean) | latency (s, mean) | tokens/s (mean) |")
print("|---|---:|---:|---:|")
for arm in ("hybrid", "ar"):
    print(f"| {arm} | {a[arm]['tokens']:.0f} | {a[arm]['latency_s']:.3f} | {a[arm]['tokens_per_s']:.0f} |")
print(f"\nhybrid / ar tokens/s: {a['hybrid']['tokens_per_s'] / a['ar']['tokens_per_s']:.2f} (planning included)")
PYEOF
else
  echo "skipped: $HYB needs stages ar, autoencoder and planner (set HYBRID_BUNDLE)"
fi
echo
echo "## Pure diffusion against AR generation of the same length (random weights)"
echo
cargo bench --locked --quiet --bench diffusion -- --threads "$THREADS" 2>/dev/null
echo
benches/dist.sh 20

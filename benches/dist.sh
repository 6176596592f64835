#!/usr/bin/env bash
# Data-parallel scaling on this CPU: stage ar of configs/tiny.toml on 1 process against 2
# Gloo ranks (launched by the venv's torchrun), the same global batch, and the time each step
# spends in collectives. Prints a table. Run with `make bench` or alone:
#   benches/dist.sh [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/plandiff
STEPS=${1:-30}
CORES=$(nproc)
OUT=runs/bench/dist
rm -rf "$OUT" && mkdir -p "$OUT"
# A synthetic corpus (no ../shared needed): 2,000 documents of 4-6 sentences.
python3 - "$OUT/corpus.txt" <<'PY'
import random, sys
r = random.Random(0)
w = "the a little big dog cat girl boy park ball tree sun ran saw liked played went happy sad red blue home".split()
with open(sys.argv[1], "w") as f:
    for _ in range(2000):
        f.write(" ".join(" ".join(r.choice(w) for _ in range(r.randint(5, 10))).capitalize() + "." for _ in range(r.randint(4, 6))) + "\n\n")
PY
"$BIN" --log-level warn prepare --input "$OUT/corpus.txt" --out "$OUT/data" --vocab-size 1024 >/dev/null
# configs/tiny.toml with the ar batch split over ranks: global batch G = 16 (x grad_accum).
python3 - configs/tiny.toml "$OUT" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def with_batch(b):
    head, tail = text.split("[ar.train]", 1)
    return head + "[ar.train]" + re.sub(r"batch_size = \d+", f"batch_size = {b}", tail, count=1)
for b in (8, 16):
    open(f"{sys.argv[2]}/b{b}.toml", "w").write(with_batch(b))
PY
run1() { # threads batch name
  "$BIN" --threads "$1" --log-level warn train ar --config "$OUT/b$2.toml" --data "$OUT/data" --out "$OUT/$3" \
    --device cpu --max-steps "$STEPS" --json --dist off > "$OUT/$3.json"
}
run2() { # threads-per-rank batch name
  OMP_NUM_THREADS=$1 .venv/bin/torchrun --no-python --nproc-per-node 2 --master-port 29517 "$BIN" --threads "$1" \
    --log-level warn train ar --config "$OUT/b$2.toml" --data "$OUT/data" --out "$OUT/$3" --device cpu \
    --max-steps "$STEPS" --json > "$OUT/$3.json" 2>"$OUT/$3.log"
}
half=$(( CORES / 2 > 0 ? CORES / 2 : 1 ))
run1 "$CORES" 16 one-all-cores
run1 "$half" 16 one-half-cores
run2 "$half" 8 two-ranks
run2 "$half" 16 two-ranks-double
echo "## Data-parallel training on CPU (Gloo), stage ar of configs/tiny.toml, $STEPS steps, $CORES cores"
echo
python3 - "$OUT" <<'PY'
import json, sys
o = sys.argv[1]
rows = [
    ("one-all-cores", "1 process", "all cores"),
    ("one-half-cores", "1 process", "half the cores"),
    ("two-ranks", "2 ranks", "half the cores each"),
    ("two-ranks-double", "2 ranks, per-rank batch 16", "half the cores each"),
]
base = json.load(open(f"{o}/one-half-cores.json"))["tokens_per_s"]
print("| run | threads | global batch (x accum) | tokens/s | step (ms) | collectives per step (ms) | share of step | tokens/s vs 1 process on half the cores |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for name, what, threads in rows:
    r = json.load(open(f"{o}/{name}.json"))
    cfg = open(f"{o}/b{16 if name != 'two-ranks' else 8}.toml").read()
    ws = r.get("world_size", 1)
    tps = r["tokens_per_s"]
    step_ms = 1000 * r["seconds"] / max(r["step"], 1)
    comm = 1000 * r.get("comm_seconds_per_step", 0.0)
    batch = {"one-all-cores": 16, "one-half-cores": 16, "two-ranks": 16, "two-ranks-double": 32}[name]
    print(f"| {what} | {threads} | {batch} | {tps:.0f} | {step_ms:.1f} | {comm:.1f} | {comm / step_ms:.0%} | {tps / base:.2f}x |")
PY

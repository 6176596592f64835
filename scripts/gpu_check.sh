#!/usr/bin/env bash
# CUDA check, run on a GPU machine with the release binary built elsewhere:
#   LD_LIBRARY_PATH=<torch>/lib scripts/gpu_check.sh DATA_DIR OUT_DIR
# Trains the tiny and base configs on cuda, generates, evaluates on cuda and cpu, and times
# PyTorch eager on the same GPU with the same shapes.
set -uo pipefail
B=${BIN:-target/release/plandiff}
DATA=$1
OUT=$2
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
echo "--- device errors"
$B generate --checkpoint "$OUT/none" --prompt x --device cuda:7 2>&1 | tail -1
echo "--- tiny, cuda, 300 steps"
$B --log-level warn train ar --config configs/tiny.toml --data "$DATA" --out "$OUT/tiny" --device cuda --max-steps 300 --json | tee "$OUT/tiny.json"
echo "--- base, cuda, 60 steps"
$B --log-level warn train ar --config configs/base.toml --data "$DATA" --out "$OUT/base" --device cuda --max-steps 60 --json | tee "$OUT/base.json"
echo "--- pytorch eager, same shapes"
python3 python/plandiff_twin.py bench-train --device cuda --steps 30 --vocab 532 | tee "$OUT/torch-tiny.json"
python3 python/plandiff_twin.py bench-train --device cuda --steps 20 --vocab 532 --d-model 512 --n-layers 8 --n-heads 8 --d-ff 2048 --batch 64 --seq-len 512 | tee "$OUT/torch-base.json"
echo "--- generate on cuda (auto) and cpu: same seed, same text?"
$B --log-level warn generate --checkpoint "$OUT/tiny" --device auto --prompt "once upon a time, tom had a ball." --max-tokens 200 --seed 3 --json > "$OUT/gen-cuda.json"
$B --log-level warn generate --checkpoint "$OUT/tiny" --device cpu --prompt "once upon a time, tom had a ball." --max-tokens 200 --seed 3 --json > "$OUT/gen-cpu.json"
python3 - "$OUT" <<'PY'
import json, sys
o = sys.argv[1]
c, p = json.load(open(f"{o}/gen-cuda.json")), json.load(open(f"{o}/gen-cpu.json"))
print("cuda tokens/s", round(c["samples"][0]["tokens_per_s"]), "cpu tokens/s", round(p["samples"][0]["tokens_per_s"]))
print("same text on cuda and cpu:", c["samples"][0]["text"] == p["samples"][0]["text"])
print(c["samples"][0]["text"][:300])
PY
$B --log-level warn generate --checkpoint "$OUT/tiny" --device cuda --prompt "once upon a time" --num-samples 8 --max-tokens 256 --seed 1 --json | python3 -c "import json,sys; j=json.load(sys.stdin); print('cuda batch 8 tokens/s per sample', round(j['samples'][0]['tokens_per_s']))"
echo "--- eval cuda vs cpu"
$B --log-level warn eval --checkpoint "$OUT/tiny" --data "$DATA" --device cuda --json | tee "$OUT/eval-cuda.json"
$B --log-level warn eval --checkpoint "$OUT/tiny" --data "$DATA" --device cpu --json | tee "$OUT/eval-cpu.json"
echo "--- resume on cuda"
$B --log-level warn train ar --config configs/tiny.toml --data "$DATA" --out "$OUT/cut" --device cuda --max-steps 40 --stop-at 20 --json > /dev/null
$B --log-level warn train ar --data "$DATA" --out "$OUT/cut" --device cuda --resume --json | python3 -c "import json,sys; j=json.load(sys.stdin); print('resumed to', j['step'], 'loss', j['train_loss'])"
rm -rf "$OUT"/*/ar/optimizer.safetensors "$OUT/none"
echo "--- later stages on cuda: autoencoder, planner, diffusion (short runs), then every mode"
$B --log-level warn train autoencoder --config configs/tiny.toml --data "$DATA" --out "$OUT/tiny" --device cuda --max-steps 200 --json | tee "$OUT/ae.json"
$B --log-level warn train planner --config configs/tiny.toml --data "$DATA" --out "$OUT/tiny" --device cuda --max-steps 300 --json | tee "$OUT/planner.json"
$B --log-level warn train diffusion --config configs/tiny.toml --data "$DATA" --out "$OUT/tiny" --device cuda --max-steps 300 --json | tee "$OUT/diffusion.json"
P="once upon a time, tom had a ball. he went to the park."
for dev in cuda cpu; do
  $B --log-level warn generate --checkpoint "$OUT/tiny" --device $dev --mode hybrid --prompt "$P" --sentences 10 --seed 3 --json > "$OUT/hyb-$dev.json"
  $B --log-level warn generate --checkpoint "$OUT/tiny" --device $dev --mode diffusion --template "once upon a time [MASK:8] the end." --seed 3 --json > "$OUT/dif-$dev.json"
done
python3 - "$OUT" <<'PY'
import json, sys
o = sys.argv[1]
for mode in ("hyb", "dif"):
    c, p = json.load(open(f"{o}/{mode}-cuda.json")), json.load(open(f"{o}/{mode}-cpu.json"))
    # Host-side noise and sampling: the same seed should give the same text up to float
    # differences between the devices' kernels.
    print(mode, "same text on cuda and cpu:", c["samples"][0]["text"] == p["samples"][0]["text"],
          "| cuda tokens/s", round(c["samples"][0].get("tokens_per_s", 0)), "cpu", round(p["samples"][0].get("tokens_per_s", 0)))
PY
$B --log-level warn eval --stage planner --checkpoint "$OUT/tiny" --data "$DATA" --device cuda
$B --log-level warn eval --stage diffusion --checkpoint "$OUT/tiny" --data "$DATA" --device cuda
rm -rf "$OUT"/*/*/optimizer.safetensors
echo "--- distributed (c10d NCCL) and bf16: torchrun, world size 1 (and 2 if there are 2+ GPUs)"
NGPU=$(nvidia-smi -L | wc -l)
TORCHRUN=${TORCHRUN:-torchrun}
for prec in fp32 bf16; do
  $TORCHRUN --no-python --nproc-per-node 1 --master-port 29531 $B --log-level warn train ar --config configs/base.toml \
    --data "$DATA" --out "$OUT/nccl-$prec" --device cuda --max-steps 40 --precision $prec --json | tee "$OUT/nccl-$prec.json"
done
if [ "$NGPU" -ge 2 ]; then
  $TORCHRUN --no-python --nproc-per-node 2 --master-port 29532 $B --log-level warn train ar --config configs/base.toml \
    --data "$DATA" --out "$OUT/nccl-2" --device cuda --max-steps 40 --precision bf16 --check-sync --json | tee "$OUT/nccl-2.json"
fi
python3 - "$OUT" "$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)" <<'PY'
import glob, json, sys
o, gpu = sys.argv[1], sys.argv[2]
# Dense peak FLOP/s (no sparsity): bf16 tensor cores and plain fp32 (tch's fp32 default
# leaves TF32 off), from NVIDIA's datasheets.
peaks = {"H100": (989e12, 67e12), "H200": (989e12, 67e12), "A100": (312e12, 19.5e12)}
bf16_peak, fp32_peak = next((v for k, v in peaks.items() if k in gpu), (None, None))
print("| run | world size | tokens/s | MFU (6 N tokens/s / peak) |")
print("|---|---:|---:|---:|")
for f in sorted(glob.glob(f"{o}/nccl-*.json")):
    r = json.load(open(f))
    peak = bf16_peak if r["precision"] == "bf16" else fp32_peak
    # tokens_per_s is the job's (all ranks); the peak is per GPU.
    mfu = 6 * r["parameters"] * r["tokens_per_s"] / (peak * r.get("world_size", 1)) if peak else float("nan")
    print(f"| {f.split('/')[-1][:-5]} ({r['precision']}) | {r.get('world_size', 1)} | {r['tokens_per_s']:.0f} | {mfu:.1%} |")
PY
rm -rf "$OUT"/nccl-*/ar/optimizer.safetensors

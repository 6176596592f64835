#!/usr/bin/env python3
"""Hybrid against ar end to end, as `generate` reports them: N prompts x 4 samples in one batch,
twice, the two modes alternating (so load on the machine falls on both), one thread. Prints each
mode's tokens/s (new tokens over each batch's seconds, planning and encoding included), hybrid's
planning and prompt-encoding seconds, and hybrid / ar (docs/ab-and-judges.md, "Round 6").

    python3 benches/hybrid_speed.py PROMPTS.jsonl [--bin target/release/plandiff]
        [--checkpoint checkpoints/tiny] [--n 10] [-- HYBRID FLAGS...]
"""
import argparse
import json
import statistics
import subprocess
import sys


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("prompts", help="JSONL with a `prompt` per record (python/ab_prompts.py writes one)")
    ap.add_argument("--bin", default="target/release/plandiff")
    ap.add_argument("--checkpoint", default="checkpoints/tiny")
    ap.add_argument("--n", type=int, default=10)
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    a = ap.parse_args(argv[:cut])
    a.hybrid_flags = argv[cut + 1:]
    prompts = [json.loads(line)["prompt"] for line in open(a.prompts)][: a.n]
    runs = {"ar": [], "hybrid": []}
    for _ in range(2):
        for p in prompts:
            for mode in runs:
                args = [a.bin, "--threads", "1", "generate", "--checkpoint", a.checkpoint, "--mode", mode, "--prompt", p,
                        "--sentences", "10", "--num-samples", "4", "--seed", "0", "--json"]
                out = subprocess.run(args + (a.hybrid_flags if mode == "hybrid" else []), capture_output=True, text=True)
                if out.returncode:
                    print(out.stderr.strip().splitlines()[-1], file=sys.stderr)
                    return 1
                for s in json.loads(out.stdout)["samples"]:
                    runs[mode].append((s["new_tokens"], s["seconds"], s.get("planning_seconds", 0.0), s.get("encoding_seconds", 0.0)))
    rate = {m: sum(r[0] for r in v) / sum(r[1] for r in v) for m, v in runs.items()}
    print("| mode | tokens/s | planning s | prompt encoding s | seconds a batch | new tokens |")
    print("|---|---:|---:|---:|---:|---:|")
    for m, v in runs.items():
        mean = lambda i: statistics.mean(r[i] for r in v)
        print(f"| {m} | {rate[m]:.0f} | {mean(2):.3f} | {mean(3):.3f} | {mean(1):.3f} | {mean(0):.0f} |")
    print(f"\nhybrid / ar: {rate['hybrid'] / rate['ar']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Hybrid's decoding time a step across bundles, against ar's, interleaved prompt by prompt so
the machine's drifting speed falls on all of them (docs/ab-and-judges.md, "Round 8"). Each call
is `generate --num-samples 4 --sentences 10 --seed 0 --json`, one thread; decoding is a
sample's seconds less its planning and prompt encoding.

    python3 benches/decode_step.py PROMPTS.jsonl BUNDLE [BUNDLE...] [--n 6]
"""
import argparse
import json
import subprocess


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("prompts")
    ap.add_argument("bundles", nargs="+")
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--bin", default="target/release/plandiff")
    a = ap.parse_args()
    prompts = [json.loads(line)["prompt"] for line in open(a.prompts)][: a.n]
    runs = {b: [] for b in a.bundles + ["ar"]}
    for _ in range(2):
        for p in prompts:
            for b in runs:
                mode, ck = ("ar", a.bundles[0]) if b == "ar" else ("hybrid", b)
                out = subprocess.run([a.bin, "--threads", "1", "generate", "--checkpoint", ck, "--mode", mode, "--prompt", p,
                                      "--sentences", "10", "--num-samples", "4", "--seed", "0", "--json"],
                                     capture_output=True, text=True, check=True)
                for s in json.loads(out.stdout)["samples"]:
                    t = s["seconds"] - s.get("planning_seconds", 0.0) - s.get("encoding_seconds", 0.0)
                    runs[b].append((s["new_tokens"], t, s["seconds"]))
    ar_rate = sum(r[0] for r in runs["ar"]) / sum(r[2] for r in runs["ar"])
    print("| mode | ms a step, decoding | tokens/s end to end | / ar | tokens a sample |")
    print("|---|---:|---:|---:|---:|")
    for b, v in runs.items():
        n, t, e = (sum(r[i] for r in v) for i in range(3))
        print(f"| {b} | {1000 * t / n:.2f} | {n / e:.1f} | {n / e / ar_rate:.3f} | {n / len(v):.0f} |")


if __name__ == "__main__":
    main()

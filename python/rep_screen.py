#!/usr/bin/env python3
"""A judge-free screen of a sampling lever: rep-2 and rep-3 (the A/B's: share of a sample's word
n-grams that repeat an earlier one) and the invented-word rate (words of no training story, the
bundle's words.txt) of `generate`'s continuations, N prompts x 2 samples, seed 0, 10 sentences
(docs/ab-and-judges.md, "Round 6", the first table).

    python3 python/rep_screen.py PROMPTS.jsonl MODE [--bin B] [--checkpoint C] [--n 30] [-- FLAGS...]
"""
import argparse
import json
import re
import subprocess
import sys


def rep(words, n):
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return 0.0 if not grams else 1 - len(set(grams)) / len(grams)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("prompts")
    ap.add_argument("mode", choices=["ar", "hybrid"])
    ap.add_argument("--bin", default="target/release/plandiff")
    ap.add_argument("--checkpoint", default="checkpoints/tiny")
    ap.add_argument("--n", type=int, default=30)
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    a = ap.parse_args(argv[:cut])
    a.flags = argv[cut + 1:]
    lexicon = set(open(f"{a.checkpoint}/words.txt").read().split())
    prompts = [json.loads(line)["prompt"] for line in open(a.prompts)][: a.n]
    reps2, reps3, invented, words_seen = [], [], 0, 0
    for p in prompts:
        args = [a.bin, "generate", "--checkpoint", a.checkpoint, "--mode", a.mode, "--prompt", p, "--sentences", "10",
                "--num-samples", "2", "--seed", "0", "--json", *a.flags]
        out = subprocess.run(args, capture_output=True, text=True)
        if out.returncode:
            print(out.stderr.strip().splitlines()[-1], file=sys.stderr)
            return 1
        for s in json.loads(out.stdout)["samples"]:
            w = s["continuation"].lower().split()
            reps2.append(rep(w, 2))
            reps3.append(rep(w, 3))
            bare = [re.sub(r"^[^a-z0-9']+|[^a-z0-9']+$", "", x) for x in w]
            bare = [x for x in bare if x.isalpha()]
            invented += sum(x not in lexicon for x in bare)
            words_seen += len(bare)
    mean = lambda v: sum(v) / len(v)
    print(f"rep-2 {mean(reps2):.4f}  rep-3 {mean(reps3):.4f}  invented words {100 * invented / max(words_seen, 1):.2f}%  "
          f"({len(reps2)} samples)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

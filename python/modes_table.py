"""The modes' A/B (`plandiff ab --arms masked@64,masked@8,...,diffusion,ar`) as two compact
Markdown tables: masked at each step count (the steps-quality curve) beside diffusion and ar,
and the paired differences of masked@64 against diffusion and ar.

    python3 python/modes_table.py runs/shipped-eval/ab-modes/results.json
"""
import json
import re
import sys

ROWS = [
    ("tokens", "new tokens", "{:.1f}"),
    ("sentences", "new sentences", "{:.2f}"),
    ("fluency_ppl_median", "fluency perplexity, median (SmolLM2-135M) ↓", "{:.1f}"),
    ("self_ppl", "self perplexity (bundle's ar) ↓", "{:.1f}"),
    ("relevance", "relevance ↑", "{:.3f}"),
    ("coherence", "coherence ↑", "{:.3f}"),
    ("first_last", "first-last ↑", "{:.3f}"),
    ("restarted", "restarted ↓", "{:.1%}"),
    ("mauve", "MAUVE ↑", "{:.3f}"),
    ("rep_2", "rep-2 ↓", "{:.3f}"),
    ("distinct_2", "distinct-2 ↑", "{:.3f}"),
    ("self_bleu", "self-BLEU ↓", "{:.3f}"),
    ("latency_s", "seconds per prompt (4 samples)", "{:.2f}"),
    ("tokens_per_s", "tokens/s per sample", "{:.1f}"),
]


def steps(arm):
    m = re.match(r"masked@(\d+)$", arm)
    return int(m.group(1)) if m else None


def main():
    r = json.load(open(sys.argv[1]))
    agg = r["aggregates"]
    masked = sorted((a for a in agg if steps(a)), key=steps)
    arms = masked + [a for a in ("diffusion", "ar", "reference") if a in agg]
    print(f"{len(r['prompts'])} prompts x {r['samples_per_prompt']} samples, {r['sentences']} sentences, seed {r['seed']}; "
          f"{r['wall_seconds']:.0f} s")
    print()
    print("| metric | " + " | ".join(arms) + " |")
    print("|---|" + "---:|" * len(arms))
    for key, name, fmt in ROWS:
        cells = []
        for a in arms:
            v = agg.get(a, {}).get(key)
            cells.append("-" if v is None else fmt.format(v))
        print(f"| {name} | " + " | ".join(cells) + " |")
    first = r["arms"][0]["name"] if isinstance(r["arms"][0], dict) else r["arms"][0]
    print()
    print(f"Paired differences, {first} minus each arm (95% bootstrap CI over prompts):")
    print()
    pairs = [b for b in ("diffusion", "ar") if b in agg]
    by = {(c["b"], c["metric"]): c for c in r["comparisons"] if c["a"] == first}
    print("| metric | " + " | ".join(f"{first} - {b}" for b in pairs) + " |")
    print("|---|" + "---:|" * len(pairs))
    for key, name, _ in ROWS:
        cells = []
        for b in pairs:
            c = by.get((b, key))
            cells.append("-" if not c else f"{c['diff']:+.3f} [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]")
        if any(x != "-" for x in cells):
            print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

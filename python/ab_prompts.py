"""Prompts for `plandiff ab` from a corpus: JSONL lines {"prompt", "reference"}.

The corpus is plain text (documents are blank-line separated paragraphs) or JSONL with a
"text" field (one record = one document, e.g. one story). Each document with enough
sentences gives its first --prompt-sentences sentences as the prompt and the rest (at most
--reference-sentences, 0 for all of it) as the reference continuation. Documents are taken
evenly spaced through the file (or through its last --last documents: a held-out tail), so
the set is a fixed function of the file and the arguments.

    python3 python/ab_prompts.py --input valid.txt --n 100 --lowercase > prompts.jsonl
    python3 python/ab_prompts.py --input stories_lowercase.jsonl --last 300 --n 100 > story-prompts.jsonl

With --outline sentences|phrases each line also gets an "outline" (the outline benchmark of
`plandiff ab --arms outline,hybrid,ar-outline`): one entry per new sentence up to
--outline-slots, 3 to 5 of them (seeded per document) taken from the reference at their
positions, whole (`sentences`) or cut to their first 4 to 6 words (`phrases`), the rest ""
(a slot the planner fills).

    python3 python/ab_prompts.py --input stories_lowercase.jsonl --last 300 --n 100 --outline phrases > outline-phrases.jsonl
"""
import argparse
import json
import random
import re
import sys

SPLIT = re.compile(r'(?<=[.!?])["\u201d\']?\s+(?=["\u201c\']?[A-Za-z])')


def sentences(text):
    return [p.strip() for p in SPLIT.split(" ".join(text.split())) if p.strip()]


def documents(path):
    with open(path, encoding="utf-8") as f:
        if path.endswith(".jsonl"):
            return [json.loads(line)["text"] for line in f if line.strip()]
        return [d for d in re.split(r"\n\s*\n", f.read()) if d.strip()]


def outline(rest, kind, slots, rng):
    """3 to 5 of the first `slots` reference sentences at their positions, the rest ""."""
    n = min(len(rest), slots)
    picks = sorted(rng.sample(range(n), rng.randint(3, min(5, n))))
    out = [""] * n
    for k in picks:
        out[k] = rest[k] if kind == "sentences" else " ".join(rest[k].split()[: rng.randint(4, 6)])
    while out and not out[-1]:
        out.pop()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", required=True)
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--prompt-sentences", type=int, default=2)
    ap.add_argument("--reference-sentences", type=int, default=0, help="0: the rest of the document")
    ap.add_argument("--min-reference-sentences", type=int, default=2)
    ap.add_argument("--last", type=int, default=0, help="take documents from the last N only (held out)")
    ap.add_argument("--lowercase", action="store_true")
    ap.add_argument("--outline", choices=["sentences", "phrases"], help="add an outline from the reference")
    ap.add_argument("--outline-slots", type=int, default=10, help="new sentences the outline spans")
    ap.add_argument("--seed", type=int, default=0, help="the outlines' choices")
    a = ap.parse_args()
    if a.outline:
        a.min_reference_sentences = max(a.min_reference_sentences, 5)
    docs = documents(a.input)
    if a.last:
        docs = docs[-a.last :]
    need = a.prompt_sentences + a.min_reference_sentences
    ok = [s for s in (sentences(d) for d in docs) if len(s) >= need]
    if len(ok) < a.n:
        sys.exit(f"error: only {len(ok)} documents have {need} or more sentences; lower --n")
    step = len(ok) / a.n
    for i in range(a.n):
        s = ok[int(i * step)]
        if a.lowercase:
            s = [x.lower() for x in s]
        rest = s[a.prompt_sentences :]
        if a.reference_sentences:
            rest = rest[: a.reference_sentences]
        p = " ".join(s[: a.prompt_sentences])
        rec = {"prompt": p, "reference": " ".join(rest)}
        if a.outline:
            rec["outline"] = outline(rest, a.outline, a.outline_slots, random.Random(a.seed * 1000003 + i))
        print(json.dumps(rec, ensure_ascii=False))


if __name__ == "__main__":
    main()

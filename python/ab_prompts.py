"""Prompts for `plandiff ab` from a text corpus: JSONL lines {"prompt", "reference"}.

Each document (blank-line separated paragraph) with enough sentences gives its first
--prompt-sentences sentences as the prompt and the next --reference-sentences as the
reference continuation. Documents are taken evenly spaced through the file, so the set is
a fixed function of the file and the arguments.

    python3 python/ab_prompts.py --input valid.txt --n 50 --lowercase > prompts.jsonl
"""
import argparse
import json
import re
import sys

SPLIT = re.compile(r'(?<=[.!?])["\u201d\']?\s+(?=["\u201c\']?[A-Za-z])')


def sentences(text):
    out = []
    for piece in SPLIT.split(text.strip()):
        piece = piece.strip()
        if piece:
            out.append(piece)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", required=True)
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--prompt-sentences", type=int, default=2)
    ap.add_argument("--reference-sentences", type=int, default=8)
    ap.add_argument("--lowercase", action="store_true")
    a = ap.parse_args()
    with open(a.input, encoding="utf-8") as f:
        docs = [d for d in re.split(r"\n\s*\n", f.read()) if d.strip()]
    need = a.prompt_sentences + 2
    ok = [d for d in docs if len(sentences(" ".join(d.split()))) >= need]
    if len(ok) < a.n:
        sys.exit(f"error: only {len(ok)} documents have {need} or more sentences; lower --n")
    step = len(ok) / a.n
    for i in range(a.n):
        s = sentences(" ".join(ok[int(i * step)].split()))
        if a.lowercase:
            s = [x.lower() for x in s]
        p = " ".join(s[: a.prompt_sentences])
        r = " ".join(s[a.prompt_sentences : a.prompt_sentences + a.reference_sentences])
        print(json.dumps({"prompt": p, "reference": r}, ensure_ascii=False))


if __name__ == "__main__":
    main()

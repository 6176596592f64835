"""Prompts for `plandiff ab` from a corpus: JSONL lines {"prompt", "reference"}.

The corpus is plain text (documents are blank-line separated paragraphs) or JSONL with a
"text" field (one record = one document, e.g. one story). Each document with enough
sentences gives its first --prompt-sentences sentences as the prompt and the rest (at most
--reference-sentences, 0 for all of it) as the reference continuation. Documents are taken
evenly spaced through the file (or through its last --last documents: a held-out tail), so
the set is a fixed function of the file and the arguments.

    python3 python/ab_prompts.py --input valid.txt --n 100 --lowercase > prompts.jsonl
    python3 python/ab_prompts.py --input stories_lowercase.jsonl --last 300 --n 100 > story-prompts.jsonl
"""
import argparse
import json
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", required=True)
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--prompt-sentences", type=int, default=2)
    ap.add_argument("--reference-sentences", type=int, default=0, help="0: the rest of the document")
    ap.add_argument("--min-reference-sentences", type=int, default=2)
    ap.add_argument("--last", type=int, default=0, help="take documents from the last N only (held out)")
    ap.add_argument("--lowercase", action="store_true")
    a = ap.parse_args()
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
        print(json.dumps({"prompt": p, "reference": " ".join(rest)}, ensure_ascii=False))


if __name__ == "__main__":
    main()

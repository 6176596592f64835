#!/usr/bin/env python3
"""The words of a bundle's training stories, for the invented-word rate (`invented_words` in
`plandiff ab` and `eval --metrics`): BUNDLE/words.txt, one word a line, sorted, after a header.

A word is a run of letters with inner apostrophes ("leo's"), lowercased, as
crates/eval/src/lexicon.rs reads text. Held-out records are left out (`--hold-out-last N`
drops the last N records of the first JSONL file: stories_lowercase.jsonl's held-out 300).

    python3 scripts/word_list.py --out checkpoints/tiny/words.txt --hold-out-last 300 \
        ../shared/data/tinystories/stories_lowercase.jsonl ../shared/data/tinystories/more_stories_lowercase.jsonl
"""
import argparse
import json
import os
import re

WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("inputs", nargs="+", help="JSONL files of {\"text\": ...} records")
    ap.add_argument("--out", required=True)
    ap.add_argument("--hold-out-last", type=int, default=0, help="drop the last N records of the first file")
    a = ap.parse_args()
    words = set()
    for i, path in enumerate(a.inputs):
        texts = [json.loads(line)["text"] for line in open(path, encoding="utf-8") if line.strip()]
        if i == 0 and a.hold_out_last:
            texts = texts[: -a.hold_out_last]
        for t in texts:
            words.update(WORD.findall(t.lower()))
    names = ", ".join(os.path.basename(p) for p in a.inputs)
    held = f" less the last {a.hold_out_last} records of the first" if a.hold_out_last else ""
    tmp = a.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(f"# plandiff word list: {len(words)} words of the training stories ({names}{held})\n")
        f.writelines(w + "\n" for w in sorted(words))
    os.replace(tmp, a.out)
    print(f"{len(words)} words -> {a.out}")


if __name__ == "__main__":
    main()

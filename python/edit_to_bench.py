"""The `edit --at K --to PHRASE` benchmark (issue 27): does the rewritten sentence say what the
phrase says, with every other byte of the story kept?

Cases come from an outline benchmark file (python/ab_prompts.py --outline phrases: held-out
stories): story i is its prompt and first 6 reference sentences, K is one of its sentences 3 to
6 (by i), and the phrase is the first outline line of story i + 1 (another story's words, so
the old sentence does not already say it). Each case runs `plandiff edit --json`; the judge
(all-mpnet-base-v2 as sentence-transformers defines it, python/judge_reference.py) scores the
cosine of the old and the new sentence to the phrase. Reported: the share of cases whose new
sentence is closer to the phrase than the old one, the mean cosines, and the share of cases
whose other bytes are all kept.

    python3 python/edit_to_bench.py --checkpoint runs/v2/bundle --cases outline-phrases.jsonl [--n 100] [--json]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from ab_prompts import sentences  # noqa: E402


def judge(model_dir, texts):
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), 32):
            enc = tok(texts[i : i + 32], padding=True, truncation=True, max_length=384, return_tensors="pt")
            h = model(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).float()
            e = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
            out.extend(torch.nn.functional.normalize(e, dim=-1).tolist())
    return out


def cases(path, n):
    items = [json.loads(l) for l in open(path, encoding="utf-8") if l.strip()]
    phrases = [next((o for o in it.get("outline", []) if o and o != "_"), None) for it in items]
    out = []
    for i, it in enumerate(items):
        story = sentences(it["prompt"]) + sentences(it["reference"])[:6]
        phrase = phrases[(i + 1) % len(items)]
        if len(story) < 6 or not phrase:
            continue
        out.append({"story": " ".join(story), "k": 3 + i % 4, "phrase": phrase, "seed": i})
        if len(out) == n:
            break
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--cases", required=True, help="JSONL from python/ab_prompts.py --outline phrases")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--bin", default="target/release/plandiff")
    ap.add_argument("--judge", default=".venv/judge/all-mpnet-base-v2")
    ap.add_argument("--candidates", type=int, default=4)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for c in cases(a.cases, a.n):
            f = os.path.join(tmp, "story.txt")
            with open(f, "w", encoding="utf-8") as fh:
                fh.write(c["story"])
            cmd = [a.bin, "--log-level", "warn", "edit", "--checkpoint", a.checkpoint, "--input", f, "--at", str(c["k"]),
                   "--to", c["phrase"], "--seed", str(c["seed"]), "--candidates", str(a.candidates), "--json"]
            r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            w = r["rewritten"][0]
            head, _, tail = c["story"].partition(w["before"])
            rows.append({**c, "before": w["before"], "after": w["after"],
                         "kept": r["text"] == head + w["after"] + tail})
            print(f"\r{len(rows)} cases", end="", file=sys.stderr)
    print(file=sys.stderr)
    e = judge(a.judge, [t for r in rows for t in (r["phrase"], r["before"], r["after"])])
    dot = lambda x, y: sum(p * q for p, q in zip(x, y))
    for i, r in enumerate(rows):
        p, b, n = e[3 * i : 3 * i + 3]
        r["cos_before"], r["cos_after"] = dot(p, b), dot(p, n)
    n = len(rows)
    summary = {
        "checkpoint": a.checkpoint,
        "cases": n,
        "candidates": a.candidates,
        "closer": sum(r["cos_after"] > r["cos_before"] for r in rows) / n,
        "cos_before": sum(r["cos_before"] for r in rows) / n,
        "cos_after": sum(r["cos_after"] for r in rows) / n,
        "other_bytes_kept": sum(r["kept"] for r in rows) / n,
    }
    if a.json:
        print(json.dumps({**summary, "rows": rows}, ensure_ascii=False, indent=1))
        return
    print("| cases | new sentence closer to the phrase | cosine to the phrase, before -> after | other bytes kept |")
    print("|---:|---:|---|---:|")
    print(f"| {n} | {summary['closer']:.0%} | {summary['cos_before']:.3f} -> {summary['cos_after']:.3f} | {summary['other_bytes_kept']:.0%} |")
    for r in rows[:3]:
        print(f"\n[{r['phrase']}] sentence {r['k']}: {r['before']!r} -> {r['after']!r}")


if __name__ == "__main__":
    main()

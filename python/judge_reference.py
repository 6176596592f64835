"""Reference numbers for plandiff's independent judge (crates/eval/src/judge).

    python judge_reference.py embed MODEL_DIR [MAX_LEN] < texts.json   # -> JSON list of embeddings
    python judge_reference.py mauve < features.json          # {"p": [[...]], "q": [[...]]} -> {"mauve": x}

`embed` is a sentence-transformers encoder (all-MiniLM-L6-v2, all-mpnet-base-v2) as it is
defined, written with transformers' AutoModel: inputs cut at MAX_LEN tokens (256 for MiniLM,
384 for MPNet), mean pooling over the attention mask, L2 normalisation.
`mauve` is the `mauve-text` package on given features (its defaults: PCA to 90% of the
variance, k-means with n/10 clusters, scaling 5, seed 25).
"""
import json
import sys

import numpy as np


def embed(model_dir, max_len=256):
    import torch
    from transformers import AutoModel, AutoTokenizer

    texts = json.load(sys.stdin)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    out = []
    with torch.no_grad():
        for t in texts:
            enc = tok([t], padding=True, truncation=True, max_length=max_len, return_tensors="pt")
            h = model(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).float()
            e = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
            e = torch.nn.functional.normalize(e, p=2, dim=1)
            out.append(e[0].tolist())
    json.dump(out, sys.stdout)


def mauve_score():
    import mauve

    d = json.load(sys.stdin)
    r = mauve.compute_mauve(p_features=np.array(d["p"]), q_features=np.array(d["q"]), verbose=False)
    json.dump({"mauve": float(r.mauve), "num_buckets": int(r.num_buckets)}, sys.stdout)


if __name__ == "__main__":
    if sys.argv[1] == "embed":
        embed(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 256)
    elif sys.argv[1] == "mauve":
        mauve_score()
    else:
        sys.exit("usage: judge_reference.py embed MODEL_DIR | mauve")

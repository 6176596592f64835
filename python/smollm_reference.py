"""transformers' reading of the fluency judge's GGUF file, the reference for its Rust twin
(crates/fluency/tests/parity.rs): token ids, logits and perplexities of fixed texts.

    python smollm_reference.py GGUF OUT_DIR < texts.json
        texts.json: {"texts": [...], "pairs": [[prompt, continuation], ...]}
        -> OUT_DIR/reference.json {"ids": [[...]], "ppl": [...]}, OUT_DIR/logits.safetensors
           ("logits.0", "logits.1", ...: each text's logits, (T, V) f32)
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging

logging.set_verbosity_error()


def main():
    gguf, out = sys.argv[1], sys.argv[2]
    req = json.load(sys.stdin)
    folder, name = os.path.dirname(os.path.abspath(gguf)), os.path.basename(gguf)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
    ids, logits = [], {}
    with torch.no_grad():
        for i, text in enumerate(req["texts"]):
            x = tok(text, add_special_tokens=False).input_ids
            ids.append(x)
            logits[f"logits.{i}"] = model(torch.tensor([x])).logits[0].float().contiguous()
        ppl = []
        for prompt, cont in req["pairs"]:
            p = tok(prompt.rstrip(), add_special_tokens=False).input_ids
            c = tok((" " if p else "") + cont.strip(), add_special_tokens=False).input_ids
            x = torch.tensor([p + c])
            lp = model(x).logits[0].float().log_softmax(-1)
            start = max(len(p), 1)
            nll = -lp[start - 1:-1].gather(1, x[0, start:, None]).mean()
            ppl.append(float(torch.exp(nll)))
    save_file(logits, os.path.join(out, "logits.safetensors"))
    json.dump({"ids": ids, "ppl": ppl}, open(os.path.join(out, "reference.json"), "w"))


if __name__ == "__main__":
    main()

"""PyTorch twin of the plandiff decoder (crates/decoder/src/model.rs).

Same parameter names, same arithmetic, so the Rust model and this one can be compared on
the same safetensors weights, and timed side by side.

    python plandiff_twin.py logits DIR      # DIR/config.json, weights.safetensors, inputs.safetensors
                                            # -> DIR/torch_logits.safetensors
    python plandiff_twin.py train DIR --steps N --lr LR
                                            # the same and inputs' "targets": N steps of plain SGD
                                            # -> DIR/torch_train.safetensors (losses, first gradients)
    python plandiff_twin.py bench-train ... # eager training throughput of the same model
    python plandiff_twin.py bench-generate --batch 1  # HF generate at the same shape
"""
import argparse
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Norm(nn.Module):
    def __init__(self, kind, dim):
        super().__init__()
        self.kind = kind
        if kind == "layer":
            self.weight = nn.Parameter(torch.ones(dim))
            self.bias = nn.Parameter(torch.zeros(dim))
        else:
            self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        if self.kind == "layer":
            return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, 1e-5)
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * self.weight


class Attention(nn.Module):
    def __init__(self, d_model, d_context, n_heads):
        super().__init__()
        self.q_proj = nn.Linear(d_model, d_model)
        self.kv_proj = nn.Linear(d_context, 2 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.h = n_heads

    def heads(self, x):
        b, t, d = x.shape
        return x.view(b, t, self.h, d // self.h).transpose(1, 2)  # (B, H, T, Dh)

    def forward(self, x, context, causal, rope=None, mask=None):
        b, t, d = x.shape
        q = self.heads(self.q_proj(x))
        k, v = self.kv_proj(context).chunk(2, -1)
        k, v = self.heads(k), self.heads(v)
        if rope is not None:
            q, k = rope(q), rope(k)
        if mask is not None:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.out_proj(y.transpose(1, 2).reshape(b, t, d))


def rotary(t, base, device):
    """RoPE of positions 0..t, NeoX layout (dimension i paired with i + Dh/2), angles in f64."""
    def apply(x):
        dh = x.shape[-1]
        half = dh // 2
        inv = base ** (-2.0 * torch.arange(half, dtype=torch.float64) / dh)
        ang = torch.arange(t, dtype=torch.float64)[:, None] * inv[None]  # (T, half)
        cos = torch.cat([ang.cos(), ang.cos()], -1).float().to(device)
        sin = torch.cat([ang.sin(), ang.sin()], -1).float().to(device)
        x1, x2 = x[..., :half], x[..., half:]
        return x * cos + torch.cat([-x2, x1], -1) * sin
    return apply


class Mlp(nn.Module):
    def __init__(self, d, d_ff):
        super().__init__()
        self.fc1 = nn.Linear(d, d_ff)
        self.fc2 = nn.Linear(d_ff, d)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, c, cross):
        super().__init__()
        d = c["d_model"]
        self.norm1 = Norm(c["norm"], d)
        self.attn = Attention(d, d, c["n_heads"])
        if cross:
            self.norm_cross = Norm(c["norm"], d)
            self.cross_attn = Attention(d, d, c["n_heads"])
        self.norm2 = Norm(c["norm"], d)
        self.mlp = Mlp(d, c["d_ff"])
        self.cross = cross

    def forward(self, x, mem, rope=None, self_mask=None, cross_bias=None):
        h = self.norm1(x)
        x = x + self.attn(h, h, True, rope, self_mask)
        if self.cross:
            x = x + self.cross_attn(self.norm_cross(x), mem, False, None, cross_bias)
        return x + self.mlp(self.norm2(x))


class Decoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c["d_model"]
        self.c = c
        self.wte = nn.Embedding(c["vocab_size"], d)
        self.rot = c.get("rotary")
        if not self.rot:
            self.wpe = nn.Embedding(c["max_seq_len"], d)
        plan = c.get("plan")
        if plan:
            if self.rot:
                w = self.rot["window"] + self.rot["lookahead"]
                self.slot_bias = nn.Parameter(torch.zeros(c["n_heads"], w))
            else:
                self.slot_emb = nn.Embedding(plan["max_slots"], d)
            self.plan_proj = nn.Linear(plan["d_latent"], d)
            self.null_plan = nn.Parameter(torch.zeros(plan["max_slots"], plan["d_latent"]))
        # `cross_blocks`: the blocks with cross-attention to the plan (absent: every block).
        cross = c.get("cross_blocks") or range(c["n_layers"])
        self.blocks = nn.ModuleList([Block(c, bool(plan) and i in cross) for i in range(c["n_layers"])])
        self.norm_f = Norm(c["norm"], d)

    def forward(self, tokens, slots=None, plan=None):
        b, t = tokens.shape
        dev = tokens.device
        x = self.wte(tokens)
        rope = self_mask = cross_bias = None
        if self.rot:
            rope = rotary(t, self.rot["base"], dev)
            if slots is not None:
                # The sentence window: key j is seen by query i when j <= i and its sentence
                # is at most window - 1 before i's.
                i = torch.arange(t, device=dev)
                causal = i[None, :] <= i[:, None]
                near = slots[:, None, :] >= slots[:, :, None] - (self.rot["window"] - 1)
                self_mask = (causal[None] & near)[:, None]  # (B, 1, T, T)
        else:
            x = x + self.wpe(torch.arange(t, device=dev))[None]
        mem = None
        if self.c.get("plan"):
            if slots is None:
                slots = torch.zeros_like(tokens)
            if plan is None:
                plan = self.null_plan[None].expand(b, -1, -1)
            s = plan.shape[1]
            if self.rot:
                mem = self.plan_proj(plan)
                w, la = self.rot["window"], self.rot["lookahead"]
                off = torch.arange(s, device=dev)[None, None, :] - slots[:, :, None]  # (B, T, S)
                bias = self.slot_bias[:, (off + w - 1).clamp(0, w + la - 1)]  # (H, B, T, S)
                inside = (off >= -(w - 1)) & (off <= la)
                cross_bias = bias.permute(1, 0, 2, 3).masked_fill(~inside[:, None], -1e4)
            else:
                x = x + self.slot_emb(slots)
                mem = self.plan_proj(plan) + self.slot_emb(torch.arange(s, device=dev))[None]
        for blk in self.blocks:
            x = blk(x, mem, rope, self_mask, cross_bias)
        return self.norm_f(x) @ self.wte.weight.T  # (B, T, V), tied head


def cmd_logits(d):
    from safetensors.torch import load_file, save_file

    cfg = json.load(open(f"{d}/config.json"))
    model = Decoder(cfg)
    model.load_state_dict(load_file(f"{d}/weights.safetensors"), strict=True)
    model.eval()
    inp = load_file(f"{d}/inputs.safetensors")
    with torch.no_grad():
        logits = model(inp["tokens"], inp.get("slots"), inp.get("plan"))
    save_file({"logits": logits.contiguous()}, f"{d}/torch_logits.safetensors")


def cmd_train(d, steps, lr):
    """`steps` steps of plain SGD on the mean next-token cross-entropy against the inputs'
    targets: each step's loss, and the first step's gradient of every parameter (`grad.NAME`)."""
    from safetensors.torch import load_file, save_file

    cfg = json.load(open(f"{d}/config.json"))
    model = Decoder(cfg)
    model.load_state_dict(load_file(f"{d}/weights.safetensors"), strict=True)
    model.train()
    inp = load_file(f"{d}/inputs.safetensors")
    out, losses = {}, []
    for step in range(steps):
        model.zero_grad(set_to_none=True)
        logits = model(inp["tokens"], inp.get("slots"), inp.get("plan"))
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), inp["targets"].reshape(-1))
        loss.backward()
        losses.append(loss.item())
        if step == 0:
            out.update({f"grad.{n}": p.grad.contiguous() for n, p in model.named_parameters() if p.grad is not None})
        with torch.no_grad():
            for p in model.parameters():
                if p.grad is not None:
                    p -= lr * p.grad
    out["losses"] = torch.tensor(losses, dtype=torch.float64)
    save_file(out, f"{d}/torch_train.safetensors")


def cmd_bench_train(a):
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    cfg = dict(vocab_size=a.vocab, d_model=a.d_model, n_layers=a.n_layers, n_heads=a.n_heads, d_ff=a.d_ff,
               max_seq_len=a.max_seq_len, norm="layer", plan=None)
    dev = torch.device(a.device)
    model = Decoder(cfg).to(dev)
    for n, p in model.named_parameters():
        if p.dim() >= 2:
            nn.init.normal_(p, 0.0, 0.02)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.95), foreach=False)
    data = torch.randint(a.vocab, (a.steps + a.warmup, a.batch, a.seq_len + 1), device=dev)
    times = []
    for i in range(a.steps + a.warmup):
        t0 = time.perf_counter()
        x, y = data[i, :, :-1], data[i, :, 1:]
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.bf16):
            logits = model(x)
            loss = F.cross_entropy(logits.reshape(-1, a.vocab), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss.item()  # one host sync per step, as plandiff's loop does
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
    tok = a.batch * a.seq_len * len(times) / sum(times)
    print(json.dumps({"impl": "pytorch-eager-bf16" if a.bf16 else "pytorch-eager", "tokens_per_s": tok, "step_ms": 1e3 * sum(times) / len(times),
                      "params": sum(p.numel() for p in model.parameters()), "threads": torch.get_num_threads(), "device": a.device,
                      "torch": torch.__version__}))


def cmd_bench_generate(a):
    """HF transformers' `generate` on a GPT-2 of the tiny decoder's shape (random weights; the
    project's sampling: temperature 0.8, top-k 50, top-p 0.95, repetition penalty 1.1), and the
    operators it dispatches per decoding step (torch.profiler, a separate run)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    cfg = GPT2Config(vocab_size=a.vocab, n_embd=a.d_model, n_layer=a.n_layers, n_head=a.n_heads, n_inner=a.d_ff,
                     n_positions=a.max_seq_len, bos_token_id=0, eos_token_id=None, pad_token_id=3)
    model = GPT2LMHeadModel(cfg).eval()
    prompt = torch.tensor([[0, 10, 11, 12, 13, 14, 15, 16]] * a.batch)
    kw = dict(do_sample=True, temperature=0.8, top_k=50, top_p=0.95, repetition_penalty=1.1, max_new_tokens=a.new,
              min_new_tokens=a.new, attention_mask=torch.ones_like(prompt), pad_token_id=3)
    with torch.no_grad():
        model.generate(prompt, **{**kw, "max_new_tokens": 16, "min_new_tokens": 16})  # warm-up
        rates = []
        for _ in range(a.reps):
            t0 = time.perf_counter()
            out = model.generate(prompt, **kw)
            rates.append((out.shape[1] - prompt.shape[1]) * a.batch / (time.perf_counter() - t0))
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            out = model.generate(prompt, **kw)
    steps = out.shape[1] - prompt.shape[1]
    events = prof.events()
    top = sum(1 for e in events if e.cpu_parent is None)
    rates.sort()
    print(json.dumps({"impl": "hf-generate", "what": "decode", "mode": "ar", "batch": a.batch, "new": a.new,
                      "tokens_per_s": rates[len(rates) // 2], "ops_per_step": len(events) / steps,
                      "top_ops_per_step": top / steps, "threads": torch.get_num_threads(), "torch": torch.__version__}))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("logits")
    p.add_argument("dir")
    t = sub.add_parser("train")
    t.add_argument("dir")
    t.add_argument("--steps", type=int, default=4)
    t.add_argument("--lr", type=float, default=0.5)
    b = sub.add_parser("bench-train")
    for name, default in [("vocab", 4096), ("d_model", 256), ("n_layers", 4), ("n_heads", 4), ("d_ff", 1024),
                          ("max_seq_len", 1024), ("batch", 16), ("seq_len", 256), ("steps", 20), ("warmup", 3),
                          ("threads", 2)]:
        b.add_argument("--" + name.replace("_", "-"), type=int, default=default)
    b.add_argument("--device", default="cpu")
    b.add_argument("--bf16", action="store_true", help="bf16 autocast for the forward and backward passes")
    g = sub.add_parser("bench-generate")
    for name, default in [("vocab", 4096), ("d_model", 256), ("n_layers", 4), ("n_heads", 4), ("d_ff", 1024),
                          ("max_seq_len", 1024), ("batch", 1), ("new", 256), ("reps", 3), ("threads", 2)]:
        g.add_argument("--" + name.replace("_", "-"), type=int, default=default)
    a = ap.parse_args()
    if a.cmd == "logits":
        cmd_logits(a.dir)
    elif a.cmd == "train":
        cmd_train(a.dir, a.steps, a.lr)
    elif a.cmd == "bench-generate":
        cmd_bench_generate(a)
    else:
        cmd_bench_train(a)


if __name__ == "__main__":
    sys.exit(main())

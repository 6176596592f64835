"""Mutation fuzzing of plandiff's loaders, through the release binary.

Each round copies a pristine input (a bundle's model.safetensors, config.json or
tokenizer.json, a run config, an A/B prompt file, a template), mutates it (flipped bytes,
cuts, repeated chunks, huge numbers, NUL bytes), and runs the command that reads it. Every
run must end cleanly: exit 0, or a failure whose last stderr line starts with "error: " —
never a panic (exit 101, "internal error"), an abort (134), a crash by signal, or a peak
resident size over the limit.

    python3 scripts/fuzz.py --bundle checkpoints/tiny --seconds 60 [--rounds N] [--seed 0] [--max-rss-mb 2048]
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
    ]
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
        code, err, secs = run(a.binary, args, a.timeout)
        if restore is not None:
            with open(path, "wb") as f:
                f.write(restore)
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

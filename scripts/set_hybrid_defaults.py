#!/usr/bin/env python3
"""Sets the hybrid mode's stored defaults of a bundle's planner (BUNDLE/planner/config.json,
`model.hybrid`), the same record `[planner.hybrid]` of a training config writes: the levers
issue 39 measured (docs/ab-and-judges.md, "Fluency levers"), so a bundle trained before them
ships them without retraining. Unset keys keep their value; the file is replaced atomically.

    python3 scripts/set_hybrid_defaults.py checkpoints/tiny ar_prior=0.5 plan_guidance=1
    python3 scripts/set_hybrid_defaults.py checkpoints/tiny outline.ar_prior=0 outline.plan_guidance=1

`outline.KEY` sets the levers used when the text is written to an outline
(`outline.plan_guidance` and `outline.ar_prior` needed; `outline.drafts` optional);
`ngram.size` and `ngram.penalty` hybrid's n-gram penalty (both keys needed; `ngram.allow`, the
free occurrences, and `ngram.grow`, true or false, are optional).
"""
import json
import os
import sys

KEYS = {"plan_guidance": float, "ar_prior": float, "drafts": int, "plan_sphere": lambda v: v == "true", "plan_rescale": float,
        "plan_noise_scale": float, "plan_epsilon_scaling": float, "plan_norm": float, "ngram.size": int, "ngram.penalty": float,
        "ngram.allow": int, "ngram.grow": lambda v: v == "true",
        "outline.plan_guidance": float, "outline.ar_prior": float, "outline.drafts": int}


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    path = os.path.join(sys.argv[1], "planner", "config.json")
    try:
        with open(path) as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        print(f"error: {path}: {e}; give a bundle folder with a trained planner", file=sys.stderr)
        return 1
    hybrid = config["model"].setdefault("hybrid", {})
    for arg in sys.argv[2:]:
        key, _, value = arg.partition("=")
        if key not in KEYS or not value:
            print(f"error: {arg}: use KEY=VALUE with KEY one of {', '.join(KEYS)}", file=sys.stderr)
            return 2
        if "." in key:
            group, name = key.split(".", 1)
            hybrid.setdefault(group, {})[name] = KEYS[key](value)
        else:
            hybrid[key] = KEYS[key](value)
    if "outline" in hybrid and not {"plan_guidance", "ar_prior"} <= set(hybrid["outline"]):
        print("error: give both outline.plan_guidance and outline.ar_prior", file=sys.stderr)
        return 2
    if "ngram" in hybrid and not {"size", "penalty"} <= set(hybrid["ngram"]):
        print("error: give both ngram.size and ngram.penalty", file=sys.stderr)
        return 2
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
    print(f"{path}: hybrid defaults {json.dumps(hybrid)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

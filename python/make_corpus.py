"""A generated corpus of simple stories for the interim demo (no download needed).

    python make_corpus.py --stories 4000 --seed 1 > corpus.txt

Blank-line separated documents; each story is a small chain of events with dialogue, so a
model has some structure to learn in a minute of CPU training.
"""
import argparse
import random

NAMES = ["tom", "lily", "sam", "mia", "ben", "zoe", "max", "anna", "leo", "emma"]
ANIMALS = ["cat", "dog", "bird", "frog", "bunny", "duck", "fox", "bear"]
THINGS = ["ball", "kite", "red car", "little boat", "toy train", "big hat", "blue cup", "shiny stone"]
PLACES = ["park", "garden", "beach", "forest", "shop", "school", "river", "hill"]
FEELINGS = ["happy", "sad", "tired", "excited", "scared", "proud"]
WEATHER = ["sunny", "rainy", "windy", "cold", "warm"]


def story(r):
    n, m = r.sample(NAMES, 2)
    a, t, p, f, w = r.choice(ANIMALS), r.choice(THINGS), r.choice(PLACES), r.choice(FEELINGS), r.choice(WEATHER)
    s = [r.choice([f"once upon a time, there was a little {a} named {n}.",
                   f"one {w} day, {n} went to the {p}.",
                   f"{n} had a {t} that {n} loved very much."])]
    middle = [
        f"{n} met a {a} at the {p}.",
        f"\"can i play with your {t}?\" asked {m}.",
        f"{n} said, \"yes, let's play together!\"",
        f"they ran to the {p} and played all day.",
        f"suddenly, the {t} fell into the {r.choice(PLACES)}.",
        f"{m} felt {f} and began to cry.",
        f"\"don't worry,\" said {n}. \"we can find it.\"",
        f"they looked everywhere for the {t}.",
        f"a kind {a} helped them find it.",
        f"it was {w}, so they went home.",
    ]
    k = r.randint(3, 6)
    s += r.sample(middle, k)
    s.append(r.choice([f"{n} and {m} were {f} friends forever.",
                       f"from that day on, {n} always shared the {t}.",
                       f"the end."]))
    return " ".join(s)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stories", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    r = random.Random(a.seed)
    print("\n\n".join(story(r) for _ in range(a.stories)))


if __name__ == "__main__":
    main()

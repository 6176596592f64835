#!/usr/bin/env python3
"""Layout budget of crates/: no source file over 450 lines, no function over 80 lines,
`#[cfg(test)]` modules and `tests/` folders left out. Prints offenders; exit 1 if any.

    python3 scripts/layout_check.py [--all]   # --all: list every function over 40 lines too
"""
import pathlib
import re
import sys

FILE_MAX, FN_MAX = 450, 80
FN_RE = re.compile(r"^\s*(pub(\([a-z]+\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)")


def strip_tests(lines):
    """Lines before the first `#[cfg(test)]` (test modules sit at the end of a file)."""
    for i, l in enumerate(lines):
        if l.strip() == "#[cfg(test)]":
            return lines[:i]
    return lines


def functions(lines):
    """(name, first line, length) of every fn with a body, by brace matching."""
    out = []
    for i, l in enumerate(lines):
        m = FN_RE.match(l)
        if not m:
            continue
        depth, opened = 0, False
        for j in range(i, len(lines)):
            s = re.sub(r'"(\\.|[^"\\])*"', '""', lines[j])
            s = re.sub(r"'(\\.|[^'\\])'", "''", s).split("//")[0]
            if not opened and ";" in s and "{" not in s:
                break  # a declaration without a body (trait method)
            depth += s.count("{") - s.count("}")
            opened = opened or "{" in s
            if opened and depth <= 0:
                out.append((m.group(6), i + 1, j - i + 1))
                break
    return out


def main():
    root = pathlib.Path(__file__).resolve().parent.parent / "crates"
    show_all = "--all" in sys.argv
    bad = 0
    for p in sorted(root.rglob("*.rs")):
        if "/tests/" in str(p) or "/benches/" in str(p):
            continue
        lines = strip_tests(p.read_text().splitlines())
        rel = p.relative_to(root.parent)
        if len(lines) > FILE_MAX:
            print(f"{rel}: {len(lines)} lines (budget {FILE_MAX})")
            bad += 1
        for name, line, n in functions(lines):
            if n > FN_MAX or (show_all and n > 40):
                print(f"{rel}:{line}: fn {name} is {n} lines (budget {FN_MAX})")
                bad += n > FN_MAX
    print(f"{bad} over budget" if bad else "layout: every file and function within budget")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Layout budget of crates/: no source file over 450 lines, no function over 80 lines,
`#[cfg(test)]` modules and `tests/` folders left out; and no import circle between the
top-level modules of a crate (a module's submodules count as the module; `lib.rs` and
`main.rs`, the crate itself, are not a module). Prints offenders; exit 1 if any.

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


def top_module(src, p):
    """The top-level module a file belongs to (`hybrid` for src/hybrid/edit.rs), or None."""
    rel = p.relative_to(src).parts
    if len(rel) == 1 and rel[0] in ("lib.rs", "main.rs"):
        return None
    return rel[0][:-3] if rel[0].endswith(".rs") else rel[0]


CRATE_PATH = re.compile(r"\bcrate::(\{[^}]*\}|\w+)")


def module_edges(src):
    """{module: {modules it names through `crate::`}} of one crate's src folder."""
    mods = {top_module(src, p) for p in src.rglob("*.rs")} - {None}
    edges = {m: set() for m in mods}
    for p in src.rglob("*.rs"):
        m = top_module(src, p)
        if m is None:
            continue
        text = "\n".join(strip_tests(p.read_text().splitlines()))
        text = re.sub(r"//[^\n]*", "", text)  # comments and doc links are not imports
        for hit in CRATE_PATH.findall(text):
            names = re.findall(r"\w+", hit)
            names = [n.split("::")[0] for n in names] if hit.startswith("{") else names
            for n in names:
                if n in mods and n != m:
                    edges[m].add(n)
    return edges


def circles(edges):
    """The import circles: each group of two or more modules that all reach each other
    (a strongly connected component), sorted."""
    def reach(a):
        seen, todo = set(), [a]
        while todo:
            for b in edges.get(todo.pop(), ()):
                if b not in seen:
                    seen.add(b)
                    todo.append(b)
        return seen
    r = {m: reach(m) for m in edges}
    groups = {tuple(sorted(b for b in r[a] if a in r[b] or a == b)) for a in edges if a in r[a]}
    return sorted(g for g in groups if len(g) > 1)


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
    for src in sorted(root.glob("*/src")):
        edges = module_edges(src)
        for group in circles(edges):
            links = ", ".join(f"{a} -> {b}" for a in group for b in sorted(edges[a]) if b in group)
            print(f"{src.relative_to(root.parent)}: import circle among modules {', '.join(group)} ({links})")
            bad += 1
    print(f"{bad} over budget" if bad else "layout: every file and function within budget, no import circle")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

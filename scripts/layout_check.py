#!/usr/bin/env python3
"""Layout budget of crates/: no source file over 450 lines, no function over 80 lines,
`#[cfg(test)]` modules and `tests/` folders left out; and no import circle between the
top-level modules of a crate (a module's submodules count as the module; `lib.rs` and
`main.rs`, the crate itself, are not a module), nor between files: two files, neither the
other's parent module, that reach each other through `crate::`, `super::` or `self::` paths
(a parent and its own submodules may share items both ways, as split `impl` blocks do).
Prints offenders; exit 1 if any.

    python3 scripts/layout_check.py [--all] [--root DIR]
    # --all: list every function over 40 lines too; --root: check DIR/crates, not this repo's
"""
import pathlib
import re
import sys

FILE_MAX, FN_MAX = 450, 80
FN_RE = re.compile(r"^\s*(pub(\([a-z]+\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)")


def strip_tests(lines):
    """Lines before the first inline `#[cfg(test)] mod tests {` (test modules sit at the end of
    a file); a `#[cfg(test)] mod tests;` declaration (tests in a file of their own) cuts nothing."""
    for i, l in enumerate(lines):
        nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if l.strip() == "#[cfg(test)]" and nxt.endswith("{"):
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


def file_module(src, p):
    """The module path of a file: ('hybrid', 'edit') for src/hybrid/edit.rs, ('hybrid',)
    for src/hybrid/mod.rs, () for lib.rs or main.rs."""
    parts = list(p.relative_to(src).parts)
    last = parts.pop()
    if last not in ("mod.rs", "lib.rs", "main.rs"):
        parts.append(last[:-3])
    return tuple(parts)


PATH_RE = re.compile(r"\b((?:crate|super|self)(?:::(?:super|\w+))*)::(\{|\w+)")


def brace_items(text, i):
    """The first path segments of the items of the `{...}` group opening at text[i]."""
    depth, item, out = 0, "", []
    for c in text[i:]:
        if c == "{":
            depth += 1
            if depth == 1:
                continue
        elif c == "}":
            depth -= 1
            if depth == 0:
                break
        if depth == 1 and c == ",":
            out.append(item)
            item = ""
        else:
            item += c
    out.append(item)
    return [m.group(0) for m in (re.match(r"\w+", x.strip()) for x in out) if m]


def file_edges(src):
    """{file module: {file modules it names}} of one crate, leaving out a file's own
    ancestors and descendants (a parent and its submodules form one unit)."""
    files = {file_module(src, p): p for p in src.rglob("*.rs")}
    edges = {m: set() for m in files}
    for m, p in files.items():
        text = "\n".join(strip_tests(p.read_text().splitlines()))
        text = re.sub(r"//[^\n]*", "", text)
        for hit in PATH_RE.finditer(text):
            path = []
            for seg in hit.group(1).split("::"):
                if seg == "crate":
                    path = []
                elif seg == "self":
                    path = list(m)
                elif seg == "super":
                    path = (path or list(m))[:-1]
                else:
                    path.append(seg)
            nexts = brace_items(text, hit.start(2)) if hit.group(2) == "{" else [hit.group(2)]
            for n in nexts:
                target = tuple(path + [n])
                while target and target not in files:
                    target = target[:-1]
                if target == m or m[: len(target)] == target or target[: len(m)] == m:
                    continue
                edges[m].add(target)
    return edges


def main():
    args = sys.argv[1:]
    base = pathlib.Path(args[args.index("--root") + 1]) if "--root" in args else pathlib.Path(__file__).resolve().parent.parent
    root = base / "crates"
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
        fedges = file_edges(src)
        for group in circles(fedges):
            name = lambda m: "/".join(m) or "lib"
            links = ", ".join(f"{name(a)} -> {name(b)}" for a in group for b in sorted(fedges[a]) if b in group)
            print(f"{src.relative_to(root.parent)}: import circle among files {', '.join(map(name, group))} ({links})")
            bad += 1
    print(f"{bad} over budget" if bad else "layout: every file and function within budget, no import circle")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

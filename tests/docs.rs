//! Every `plandiff` command in README.md and docs/*.md names a subcommand the binary has and
//! only flags that subcommand takes (its `--help`, every mode's flags included), so the
//! documentation cannot drift from the binary. What the commands do is run by the other tests
//! and by the demo.

mod common;

use common::{root, run};
use std::collections::BTreeMap;

/// The `plandiff ...` commands of a Markdown file: lines of its code blocks (a `$ ` prompt and
/// `\` continuations allowed) and inline code spans that start with `plandiff `.
fn commands(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut fence, mut pending) = (false, String::new());
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fence = !fence;
            continue;
        }
        if fence {
            let l = line.trim().trim_start_matches("$ ");
            if !pending.is_empty() || l.starts_with("plandiff ") {
                pending.push_str(l.trim_end_matches('\\'));
                pending.push(' ');
                if !l.ends_with('\\') {
                    out.push(std::mem::take(&mut pending));
                }
            }
        } else {
            out.extend(line.split('`').skip(1).step_by(2).filter(|c| c.starts_with("plandiff ")).map(String::from));
        }
    }
    out
}

/// The flags of `plandiff SUB --help`.
fn flags_of(sub: &str) -> Vec<String> {
    let o = run(&[sub, "--help"]);
    assert!(o.status.success(), "plandiff {sub} --help: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']' || c == '=')
        .filter(|w| w.starts_with("--"))
        .map(String::from)
        .collect()
}

#[test]
fn every_documented_command_uses_real_flags() {
    let mut files = vec![root().join("README.md")];
    let docs = std::fs::read_dir(root().join("docs")).expect("docs/");
    files.extend(docs.map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "md")));
    let mut help: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let (mut checked, mut bad) = (0, Vec::new());
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for cmd in commands(&text) {
            let words: Vec<&str> = cmd.split_whitespace().collect();
            let Some(sub) = words.get(1).filter(|w| !w.starts_with('-')) else { continue };
            let known = help.entry(sub.to_string()).or_insert_with(|| flags_of(sub));
            for w in words.iter().filter(|w| w.starts_with("--")) {
                let flag = w.split('=').next().unwrap_or(w).trim_end_matches(['`', ')', ',', '.', ';']);
                if !known.iter().any(|k| k == flag) {
                    bad.push(format!("{}: `{cmd}`: {flag}", f.display()));
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} commands found in the docs");
    assert!(bad.is_empty(), "flags the binary does not take:\n{}", bad.join("\n"));
}

#[test]
fn the_command_finder_reads_blocks_prompts_and_inline_code() {
    let md = "x `plandiff info --checkpoint b` y\n```sh\n$ plandiff generate --seed 1 \\\n    --json\nls\n```\n";
    assert_eq!(commands(md), vec!["plandiff info --checkpoint b", "plandiff generate --seed 1  --json "]);
}

/// The relative link targets `[text](target)` of a Markdown text (anchors dropped; web
/// addresses and in-page anchors left out).
fn relative_links(text: &str) -> Vec<String> {
    text.split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .map(|t| t.split('#').next().unwrap_or("").trim().to_string())
        .filter(|t| !t.is_empty() && !t.contains("://") && !t.starts_with("mailto:"))
        .collect()
}

/// README and docs link only inside the repository (a user's clone has nothing beside it), to
/// files that exist; the design is one of them.
#[test]
fn readme_and_docs_link_only_to_files_in_the_repository() {
    let root = root().canonicalize().unwrap();
    assert!(root.join("docs/design.md").is_file(), "docs/design.md is the contributors' map");
    let mut files = vec![root.join("README.md")];
    let docs = std::fs::read_dir(root.join("docs")).expect("docs/");
    files.extend(docs.map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "md")));
    let mut bad = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for target in relative_links(&text) {
            let p = f.parent().unwrap().join(&target);
            match p.canonicalize() {
                Ok(p) if p.starts_with(&root) => {}
                Ok(p) => bad.push(format!("{}: {target} leaves the repository ({})", f.display(), p.display())),
                Err(_) => bad.push(format!("{}: {target} does not exist", f.display())),
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    assert_eq!(relative_links("[a](b.md#x) [c](https://x.y) [d](../e)"), vec!["b.md", "../e"]);
}

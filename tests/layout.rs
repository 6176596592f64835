//! `scripts/layout_check.py` (run by `make test` and `make lint`) fails on an import circle
//! between two files of a crate, and lets a parent module and its own submodules share items
//! both ways (split `impl` blocks).

mod common;

use common::root;
use std::path::Path;
use std::process::Command;

fn write(dir: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        let p = dir.join("crates/demo/src").join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

fn check(dir: &Path) -> (bool, String) {
    let o = Command::new("python3")
        .arg(root().join("scripts/layout_check.py"))
        .args(["--root", dir.to_str().unwrap()])
        .output()
        .expect("python3 runs the layout check");
    (o.status.success(), String::from_utf8_lossy(&o.stdout).into_owned())
}

#[test]
fn a_file_level_import_circle_fails_the_layout_check() {
    let dir = tempfile::tempdir().unwrap();
    // Two sibling files of one module that read each other: a circle inside `masked`.
    write(
        dir.path(),
        &[
            ("lib.rs", "pub mod masked;\n"),
            ("masked/mod.rs", "mod edit;\nmod score;\npub struct Gen;\n"),
            (
                "masked/edit.rs",
                "use super::score::pick;\npub struct Doc;\nimpl super::Gen { fn e(&self) { pick(); } }\n",
            ),
            ("masked/score.rs", "use super::{edit::Doc, Gen};\npub fn pick() {}\nfn s(_: &Doc, _: &Gen) {}\n"),
        ],
    );
    let (ok, out) = check(dir.path());
    assert!(!ok, "{out}");
    assert!(out.contains("import circle among files masked/edit, masked/score"), "{out}");

    // Break it (the shared type in a file of its own): the check passes; the parent and its
    // submodules still name each other, which is no circle.
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            ("lib.rs", "pub mod masked;\n"),
            ("masked/mod.rs", "mod doc;\nmod edit;\nmod score;\npub struct Gen;\nfn g() { edit::e(); }\n"),
            ("masked/doc.rs", "pub struct Doc;\n"),
            ("masked/edit.rs", "use super::score::pick;\npub fn e() { pick(); }\nimpl super::Gen {}\n"),
            ("masked/score.rs", "use super::{doc::Doc, Gen};\npub fn pick() {}\nfn s(_: &Doc, _: &Gen) {}\n"),
        ],
    );
    let (ok, out) = check(dir.path());
    assert!(ok, "{out}");
}

#[test]
fn this_repository_has_no_import_circle() {
    let (ok, out) = check(&root());
    assert!(ok, "{out}");
}

//! Helpers for the end-to-end tests: a synthetic corpus, the binary, a shared trained bundle.

#![allow(dead_code)]

pub mod venv;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_plandiff"))
}

pub use venv::root;

pub fn test_config() -> PathBuf {
    root().join("tests/fixtures/test.toml")
}

/// Runs plandiff with one libtorch thread (tests run side by side on two cores).
pub fn run(args: &[&str]) -> Output {
    Command::new(bin()).arg("--threads").arg("1").args(args).output().expect("spawn plandiff")
}

pub fn run_ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "plandiff {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// A deterministic little story corpus: blank-line separated documents of 3-6 sentences.
pub fn corpus(docs: usize, seed: u64) -> String {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut next = move |n: usize| {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((s >> 33) as usize) % n
    };
    let names = ["Tom", "Lily", "Sam", "Mia", "Ben", "Zoe", "Max", "Ann"];
    let things = ["ball", "kite", "red car", "little boat", "toy dog", "big hat", "blue cup"];
    let places = ["park", "garden", "beach", "forest", "shop", "school"];
    let feelings = ["happy", "sad", "tired", "excited", "scared"];
    let mut out = String::new();
    for _ in 0..docs {
        let n = names[next(names.len())];
        let m = names[next(names.len())];
        let t = things[next(things.len())];
        let p = places[next(places.len())];
        let f = feelings[next(feelings.len())];
        let mut sents = vec![format!("Once upon a time, {n} had a {t}.")];
        let extra = [
            format!("{n} went to the {p} with {m}."),
            format!("\"Can I play with your {t}?\" asked {m}."),
            format!("{n} felt {f} and said, \"Yes!\""),
            format!("They played at the {p} all day."),
            format!("Mr. Brown saw the {t} and smiled."),
            format!("Then it started to rain... {m} ran home."),
        ];
        for _ in 0..(2 + next(4)) {
            sents.push(extra[next(extra.len())].clone());
        }
        sents.push(format!("{n} and {m} were {f} friends."));
        out.push_str(&sents.join(" "));
        out.push_str("\n\n");
    }
    out
}

pub struct Fixture {
    pub dir: PathBuf,
    pub data: PathBuf,
    pub bundle: PathBuf,
}

/// Prepared data with its sentence-embedding cache and a trained `ar` bundle, made once per
/// test binary.
pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir").keep();
        let input = dir.join("corpus.txt");
        std::fs::write(&input, corpus(600, 1)).expect("write corpus");
        let data = dir.join("data");
        run_ok(&[
            "prepare",
            "--input",
            s(&input),
            "--out",
            s(&data),
            "--vocab-size",
            "400",
            "--valid-fraction",
            "0.1",
            "--lowercase",
        ]);
        // The plan space's embeddings, cached once (tests train autoencoders on them side by
        // side; the cache admits one writer at a time).
        for split in ["train", "valid"] {
            run_ok(&["embed", "--data", s(&data), "--split", split]);
        }
        let bundle = dir.join("bundle");
        run_ok(&[
            "train",
            "ar",
            "--config",
            s(&test_config()),
            "--data",
            s(&data),
            "--out",
            s(&bundle),
            "--device",
            "cpu",
        ]);
        Fixture { dir, data, bundle }
    })
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Recursively lists files under `dir` (relative paths, sorted).
pub fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(base, &p, out);
                } else {
                    out.push(p.strip_prefix(base).unwrap_or(&p).display().to_string());
                }
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Copies every file under `from` to the same path under `to` (folders made as needed).
pub fn copy_dir(from: &Path, to: &Path) {
    for rel in files(from) {
        let dst = to.join(&rel);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(from.join(&rel), dst).unwrap();
    }
}

//! Issue 26's repair pieces end to end: the masked stage trained with realistic corruption
//! (`substitute_prob`: visible tokens replaced by random, same-row and nearest-neighbour
//! substitutes) resumes exactly and reads errors in view (`--score visible`, refused on a model
//! not trained for it), and `--insert-delete` revisions keep every byte outside their changes.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The test config with `substitute_prob = 0.15` in `[masked.objective]`.
fn substitute_config(dir: &Path) -> PathBuf {
    let cfg = std::fs::read_to_string(test_config()).unwrap();
    let cfg = cfg.replace("random_length_prob = 0.01\n", "random_length_prob = 0.01\nsubstitute_prob = 0.15\n");
    assert!(cfg.contains("substitute_prob"), "the test config's [masked.objective] moved");
    let p = dir.join("substitute.toml");
    std::fs::write(&p, cfg).unwrap();
    p
}

/// A bundle with the fixture's ar model and `extra` masked training into it.
fn train_into(out: &Path, cfg: &Path, extra: &[&str]) -> std::process::Output {
    let f = fixture();
    if !out.join("ar").exists() {
        copy_dir(&f.bundle.join("ar"), &out.join("ar"));
        std::fs::copy(f.bundle.join("tokenizer.json"), out.join("tokenizer.json")).unwrap();
    }
    let mut args =
        vec!["train", "masked", "--config", s(cfg), "--data", s(&f.data), "--out", s(out), "--device", "cpu"];
    args.extend_from_slice(extra);
    run(&args)
}

/// The fixture's ar model and a masked model trained with substitutes (the test config's steps).
fn bundle() -> &'static PathBuf {
    static B: OnceLock<PathBuf> = OnceLock::new();
    B.get_or_init(|| {
        let f = fixture();
        let out = f.dir.join("substitute_bundle");
        let o = train_into(&out, &substitute_config(&f.dir), &[]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        out
    })
}

#[test]
fn substitution_training_is_stored_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = substitute_config(dir.path());
    let (full, parts) = (dir.path().join("full"), dir.path().join("parts"));
    assert!(train_into(&full, &cfg, &["--max-steps", "8"]).status.success());
    assert!(train_into(&parts, &cfg, &["--max-steps", "8", "--stop-at", "3"]).status.success());
    let o = train_into(&parts, &cfg, &["--resume"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for name in ["masked/model.safetensors", "masked/optimizer.safetensors"] {
        assert!(std::fs::read(full.join(name)).unwrap() == std::fs::read(parts.join(name)).unwrap(), "{name} differs");
    }
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(full.join("masked/config.json")).unwrap()).unwrap();
    assert_eq!(c["model"]["objective"]["substitute_prob"], 0.15, "{c}");
    // Out of range: a one-line error naming the field.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&cfg).unwrap().replace("substitute_prob = 0.15", "substitute_prob = 1.5"),
    )
    .unwrap();
    let o = train_into(&dir.path().join("bad"), &bad, &["--max-steps", "2"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("substitute_prob") && err.trim().lines().count() == 1, "{err}");
}

#[test]
fn visible_scores_and_insert_delete_keep_every_other_byte() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("t.txt");
    let text = "tom went to the park. mia saw a big big dog there!\nthey played all day.\n";
    std::fs::write(&input, text).unwrap();
    let edit = |b: &Path, extra: &[&str]| -> std::process::Output {
        let mut a = vec!["edit", "--mode", "masked", "--checkpoint", s(b), "--input", s(&input), "--json"];
        a.extend_from_slice(extra);
        run(&a)
    };
    let json = |o: std::process::Output| -> serde_json::Value {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    // The changed spans rebuild the output from the input: every other byte is kept.
    let rebuilt = |v: &serde_json::Value| -> String {
        let mut at = 0;
        let mut out = String::new();
        for c in v["changed"].as_array().unwrap() {
            let (a, b) = (c["start"].as_u64().unwrap() as usize, c["end"].as_u64().unwrap() as usize);
            assert_eq!(&text[a..b], c["before"].as_str().unwrap());
            out.push_str(&text[at..a]);
            out.push_str(c["after"].as_str().unwrap());
            at = b;
        }
        out + &text[at..]
    };
    let b = bundle();
    for score in ["ar", "visible", "ar+visible"] {
        let v = json(edit(
            b,
            &["--revise-fraction", "0.4", "--rounds", "3", "--min-gain", "0", "--insert-delete", "--score", score],
        ));
        assert_eq!(rebuilt(&v), v["text"].as_str().unwrap(), "{score}: {v}");
        assert!(!v["changed"].as_array().unwrap().is_empty(), "{score}: any gain is kept, something changes: {v}");
        // Nothing clears an impossible bar: the text comes back byte for byte.
        let v = json(edit(b, &["--revise-fraction", "0.4", "--min-gain", "1e9", "--insert-delete", "--score", score]));
        assert_eq!(v["text"].as_str().unwrap(), text, "{score}");
    }
    // A model trained without substitutes cannot read errors in view.
    let plain = dir.path().join("plain");
    let o = train_into(&plain, &test_config(), &["--max-steps", "2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = edit(&plain, &["--revise-fraction", "0.2", "--score", "visible"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("substitute_prob") && err.trim().lines().count() == 1, "{err}");
}

#[test]
fn repair_benchmark_has_insert_and_delete_kinds() {
    let f = fixture();
    let stories = f.dir.join("corpus.txt");
    let args = ["eval", "--checkpoint", s(bundle()), "--data", s(&stories), "--json", "--repair", "insert,delete"];
    let v: serde_json::Value = serde_json::from_str(&run_ok(
        &[&args[..], &["--per-kind", "3", "--min-gain", "1e9", "--insert-delete"]].concat(),
    ))
    .unwrap();
    assert_eq!(v["insert_delete"], true);
    for (i, kind) in ["insert", "delete"].iter().enumerate() {
        let k = &v["kinds"][i];
        assert_eq!((k["kind"].as_str(), k["cases"].as_u64()), (Some(*kind), Some(3)), "{v}");
        assert_eq!((k["corrupted_words"].as_u64(), k["restored_words"].as_u64()), (Some(3), Some(0)), "{k}");
        assert_eq!((k["untouched"].as_f64(), k["changed_words"].as_u64()), (Some(1.0), Some(0)), "{k}");
    }
}

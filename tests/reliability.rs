//! Issue 40's findings on the newer paths, each run through the binary as a user would: a
//! one-line error (non-zero exit, no panic or abort, nothing written over) or a correct
//! result. The embedding cache's own cases are in crates/sentence/tests/cache.rs; the fuzz
//! families over these inputs in `scripts/fuzz.py` (tests/bad_input.rs runs it).

mod common;

use common::{copy_dir, root, run, s};
use std::path::{Path, PathBuf};

/// A one-line error containing `want`: exit 1, no panic, the last line `error: ...`.
fn refused(args: &[&str], want: &str) {
    let o = run(args);
    let err = String::from_utf8_lossy(&o.stderr);
    let last = err.lines().rfind(|l| !l.trim().is_empty()).unwrap_or_default();
    assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
    assert!(!err.contains("panicked") && last.starts_with("error: ") && last.contains(want), "{args:?}: {err}");
    assert_eq!(err.lines().filter(|l| l.starts_with("error")).count(), 1, "{args:?}: {err}");
}

/// A copy of the shipped bundle whose `file`'s JSON has `edit` applied.
fn edited_bundle(dir: &Path, file: &str, edit: impl Fn(&mut serde_json::Value)) -> PathBuf {
    let b = dir.join("bundle");
    if !b.exists() {
        copy_dir(&root().join("checkpoints/tiny"), &b);
    }
    for f in ["planner/config.json", "autoencoder/config.json", "ar/config.json"] {
        std::fs::copy(root().join("checkpoints/tiny").join(f), b.join(f)).unwrap();
    }
    let path = b.join(file);
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&path, v.to_string()).unwrap();
    b
}

/// Sizes in a bundle's config are bounded before anything is allocated: 10^12 or 10^8
/// training timesteps, 10^9 plan slots, a 2^40-wide model; `info` included.
#[test]
fn absurd_sizes_in_a_bundle_config_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    for t in [1_000_000_000_000u64, 100_000_000] {
        let b = edited_bundle(dir.path(), "planner/config.json", |v| {
            v["model"]["schedule"]["num_train_timesteps"] = t.into();
        });
        refused(&["info", "--checkpoint", s(&b)], "num_train_timesteps");
    }
    let b = edited_bundle(dir.path(), "autoencoder/config.json", |v| {
        v["model"]["plan"]["max_slots"] = 1_000_000_000.into()
    });
    refused(&["info", "--checkpoint", s(&b)], "plan.max_slots = 1000000000 must be 1 to 4096");
    refused(&["generate", "--checkpoint", s(&b), "--mode", "hybrid", "--prompt", "tom ran."], "plan.max_slots");
    let b = edited_bundle(dir.path(), "ar/config.json", |v| v["model"]["d_model"] = (1u64 << 40).into());
    refused(&["generate", "--checkpoint", s(&b), "--mode", "ar", "--prompt", "tom ran."], "d_model");
}

/// A damaged plan space (the autoencoder's normaliser statistics) is named as the
/// autoencoder's, not blamed on the planner.
#[test]
fn a_damaged_plan_space_names_the_autoencoder() {
    let dir = tempfile::tempdir().unwrap();
    let b = edited_bundle(dir.path(), "autoencoder/config.json", |v| {
        v["plan_space"]["mean"].as_array_mut().unwrap().truncate(10);
    });
    let g = ["generate", "--checkpoint", s(&b), "--mode", "hybrid", "--prompt", "tom ran."];
    refused(&g, "the autoencoder's plan space");
    // The same bundle folder, its std now negative in one dimension.
    edited_bundle(dir.path(), "autoencoder/config.json", |v| v["plan_space"]["std"][3] = (-1.0).into());
    refused(&g, "retrain the autoencoder");
}

/// A documented limit is enforced, and a value that passes its check writes text.
#[test]
fn numeric_flags_keep_their_limits() {
    let b = root().join("checkpoints/tiny");
    let g = ["generate", "--checkpoint", s(&b), "--mode", "hybrid", "--prompt", "tom ran."];
    refused(
        &[&g[..], &["--sentences", "18446744073709551615"]].concat(),
        "--sentences 18446744073709551615 must be in 1..=1024",
    );
    refused(&[&g[..], &["--sentences", "1025"]].concat(), "must be in 1..=1024");
    refused(&[&g[..], &["--guidance", "3e38"]].concat(), "--guidance");
    refused(&[&g[..], &["--guidance", "101"]].concat(), "from 0 to 100");
}

/// Flags the chosen path does not read are refused, as elsewhere in the CLI.
#[test]
fn flags_the_path_does_not_read_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let b = root().join("checkpoints/tiny");
    let g = ["generate", "--checkpoint", s(&b), "--mode", "hybrid", "--prompt", "tom ran."];
    refused(&[&g[..], &["--outline-hold", "0.5"]].concat(), "--outline-hold acts on an outline");
    refused(&[&g[..], &["--outline-complete"]].concat(), "--outline-complete acts on an outline");
    let text = dir.path().join("t.txt");
    std::fs::write(&text, "tom had a ball. he played all day. the end.\n").unwrap();
    let e = ["edit", "--checkpoint", s(&b), "--mode", "masked", "--input", s(&text), "--rewrite", "2"];
    refused(&[&e[..], &["--min-gain", "2"]].concat(), "--min-gain is read with --revise");
    refused(&[&e[..], &["--insert-delete"]].concat(), "--insert-delete is read with --revise");
    refused(
        &["eval", "--checkpoint", s(&b), "--data", s(&text), "--metrics", "rep", "--repair", "random"],
        "--metrics and --repair",
    );
    // ab: an outline file beside the prompts' own outlines; an outline longer than
    // --sentences, found before anything is generated, with its prompt named.
    let prompts = dir.path().join("p.jsonl");
    std::fs::write(
        &prompts,
        "{\"prompt\": \"tom ran.\", \"outline\": [\"a.\"]}\n{\"prompt\": \"mia sat.\", \"outline\": [\"a.\", \"b.\", \"c.\"]}\n",
    )
    .unwrap();
    let outline = dir.path().join("o.txt");
    std::fs::write(&outline, "a line.\n").unwrap();
    let ab = ["ab", "--checkpoint", s(&b), "--prompts", s(&prompts), "--samples", "1", "--device", "cpu"];
    let out = dir.path().join("ab");
    refused(
        &[&ab[..], &["--arms", "hybrid,ar", "--outline", s(&outline), "--out", s(&out)]].concat(),
        "both give outlines",
    );
    refused(
        &[&ab[..], &["--arms", "outline,ar", "--sentences", "2", "--out", s(&out)]].concat(),
        "prompt 2's outline has 3 lines, more than --sentences 2",
    );
    assert!(!out.exists(), "nothing written");
}

/// `ab --out` writes only into a new or empty folder, or one it wrote before; a folder of
/// someone else's files (their own results.json and report.html, a bundle) is refused and left
/// as it was.
#[test]
fn ab_out_never_writes_over_files_it_did_not_write() {
    let dir = tempfile::tempdir().unwrap();
    let b = root().join("checkpoints/tiny");
    let prompts = dir.path().join("p.txt");
    std::fs::write(&prompts, "tom ran.\n").unwrap();
    let mine = dir.path().join("mine");
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::write(mine.join("results.json"), "my own results").unwrap();
    std::fs::write(mine.join("report.html"), "my own report").unwrap();
    let ab = ["ab", "--checkpoint", s(&b), "--prompts", s(&prompts), "--arms", "ar,hybrid", "--samples", "1"];
    refused(&[&ab[..], &["--out", s(&mine)]].concat(), "holds files plandiff ab did not write");
    assert_eq!(std::fs::read_to_string(mine.join("results.json")).unwrap(), "my own results");
    refused(&[&ab[..], &["--out", s(&b)]].concat(), "holds files plandiff ab did not write");
    let file = dir.path().join("f");
    std::fs::write(&file, "x").unwrap();
    refused(&[&ab[..], &["--out", s(&file)]].concat(), "is a file");
}

/// Issue 39's levers keep their ranges and act only where they are read: the fluency prior and
/// the planner's steering flags out of range, the steering flags on `eval` without `--stage
/// planner`, and out-of-range hybrid defaults in a bundle are one-line errors.
#[test]
fn fluency_levers_keep_their_limits() {
    let gen = |flag: &str, v: &str| {
        vec![
            "generate".to_string(),
            "--checkpoint".into(),
            s(&root().join("checkpoints/tiny")).into(),
            "--mode".into(),
            "hybrid".into(),
            "--prompt".into(),
            "tom ran.".into(),
            flag.into(),
            v.into(),
        ]
    };
    for (flag, v, want) in [
        ("--ar-prior", "1.5", "--ar-prior must be a weight from 0 to 1"),
        ("--plan-rescale", "1.5", "--plan-rescale must be a fraction"),
        ("--plan-noise-scale", "0", "--plan-noise-scale must be from 0.1 to 1"),
        ("--plan-snap", "1.5", "--plan-snap must be a fraction"),
        ("--plan-snap", "0.5", "--plan-snap needs a sentence bank: give --plan-bank"),
        ("--plan-bank", "/nonexistent/bank.safetensors", "--plan-bank is read with --plan-snap or --plan-clip"),
        ("--plan-epsilon-scaling", "3", "--plan-epsilon-scaling must be from 0.5 to 2"),
        ("--plan-norm", "1.5", "--plan-norm must be a fraction from 0 to 1"),
        ("--plan-clip", "0.5", "--plan-clip must be a quantile from 0 to below 0.5"),
        ("--plan-clip", "0.01", "--plan-clip needs a sentence bank: give --plan-bank"),
        ("--ngram-penalty", "-1", "--ngram-penalty -1 must be >= 0"),
        ("--ngram-penalty", "nan", "--ngram-penalty NaN must be >= 0"),
    ] {
        let args = gen(flag, v);
        refused(&args.iter().map(String::as_str).collect::<Vec<_>>(), want);
    }
    let data = root().join("tests/fixtures");
    refused(
        &[
            "eval",
            "--checkpoint",
            s(&root().join("checkpoints/tiny")),
            "--stage",
            "autoencoder",
            "--data",
            s(&data),
            "--plan-sphere",
        ],
        "--plan-sphere steers the planner's sampled plans; give --stage planner",
    );
    // A bank that is not an embedding cache: one line naming the file.
    let dir = tempfile::tempdir().unwrap();
    let bank = dir.path().join("bank.safetensors");
    std::fs::write(&bank, b"not safetensors").unwrap();
    let mut args = gen("--plan-snap", "1");
    args.extend(["--plan-bank".to_string(), s(&bank).to_string()]);
    refused(&args.iter().map(String::as_str).collect::<Vec<_>>(), "bank.safetensors");
    let b = edited_bundle(dir.path(), "planner/config.json", |v| {
        v["model"]["hybrid"] = serde_json::json!({"ar_prior": 3.0})
    });
    refused(
        &["generate", "--checkpoint", s(&b), "--mode", "hybrid", "--prompt", "tom ran."],
        "ar_prior, plan_rescale and plan_norm in [0, 1]",
    );
    let mut args = gen("--ngram-penalty", "1");
    args.extend(["--ngram-size".to_string(), "40".to_string()]);
    refused(&args.iter().map(String::as_str).collect::<Vec<_>>(), "--ngram-size 40 must be from 1 to 16 tokens");
    let mut args = gen("--ngram-penalty", "1");
    args.extend(["--ngram-allow".to_string(), "1000000".to_string()]);
    refused(&args.iter().map(String::as_str).collect::<Vec<_>>(), "--ngram-allow 1000000 must be from 0 to 64");
    let b = edited_bundle(dir.path(), "planner/config.json", |v| {
        v["model"]["hybrid"]["ngram"] = serde_json::json!({"size": 0, "penalty": 1.0})
    });
    refused(
        &["generate", "--checkpoint", s(&b), "--mode", "hybrid", "--prompt", "tom ran."],
        "hybrid defaults' ngram: ngram_size = 0 must be from 1 to 16",
    );
}

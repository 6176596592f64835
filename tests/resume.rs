//! Exact resume: a run stopped (by --stop-at or by Ctrl-C) and resumed ends with the same
//! weights and optimizer state, bit for bit, as an uninterrupted run.

mod common;
use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn train(data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let cfg = test_config();
    let mut args = vec!["train", "ar", "--config", s(&cfg), "--data", s(data), "--out", s(out), "--device", "cpu"];
    args.extend_from_slice(extra);
    run(&args)
}

fn same_files(a: &Path, b: &Path) {
    for name in ["ar/model.safetensors", "ar/optimizer.safetensors"] {
        let x = std::fs::read(a.join(name)).unwrap();
        let y = std::fs::read(b.join(name)).unwrap();
        assert!(x == y, "{name} differs between the resumed and the uninterrupted run");
    }
    let sa: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("ar/trainer_state.json")).unwrap()).unwrap();
    let sb: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(b.join("ar/trainer_state.json")).unwrap()).unwrap();
    assert_eq!(sa["step"], sb["step"]);
    assert_eq!(sa["last_train_loss"], sb["last_train_loss"]);
    assert_eq!(sa["last_val_loss"], sb["last_val_loss"]);
}

#[test]
fn stop_and_resume_equals_uninterrupted() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full");
    let parts = dir.path().join("parts");
    assert!(train(&f.data, &full, &["--max-steps", "17"]).status.success());
    let o = train(&f.data, &parts, &["--max-steps", "17", "--stop-at", "6"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(parts.join("ar/trainer_state.json")).unwrap()).unwrap();
    assert_eq!(st["step"], 6);
    let o = train(&f.data, &parts, &["--resume"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    same_files(&full, &parts);
    // The metrics log of the resumed run reads like one run: each step once.
    let m = std::fs::read_to_string(parts.join("logs/ar-metrics.jsonl")).unwrap();
    let steps: Vec<u64> = m
        .lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            v.get("loss")?;
            v["step"].as_u64()
        })
        .collect();
    let mut dedup = steps.clone();
    dedup.dedup();
    assert_eq!(steps, dedup);
    // A second fresh run into the same bundle is refused instead of overwriting it.
    let o = train(&f.data, &parts, &[]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--resume"));
}

/// Trains 400 steps into `cut` and sends `signal` once the first steps are logged; returns
/// the exit code, stderr and the step saved.
fn interrupted_run(data: &Path, cut: &Path, signal: &str) -> (Option<i32>, String, u64) {
    let child = Command::new(bin())
        .args(["--threads", "1", "train", "ar", "--config", s(&test_config()), "--data", s(data), "--out", s(cut)])
        .args(["--device", "cpu", "--max-steps", "400"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first logged steps, then interrupt.
    let metrics = cut.join("logs/ar-metrics.jsonl");
    let t0 = Instant::now();
    while std::fs::read_to_string(&metrics).map(|m| m.lines().count()).unwrap_or(0) < 2 {
        assert!(t0.elapsed() < Duration::from_secs(60), "training never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!stderr.contains("panicked"));
    let st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cut.join("ar/trainer_state.json")).unwrap()).unwrap();
    let k = st["step"].as_u64().unwrap();
    assert!(k < 400, "the run finished before the {signal} arrived; nothing was tested");
    assert!(!files(cut).iter().any(|p| p.contains("staging") || p.ends_with(".tmp")));
    (out.status.code(), stderr, k)
}

#[test]
fn ctrl_c_saves_and_resume_continues_exactly() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full");
    let cut = dir.path().join("cut");
    let (code, stderr, _) = interrupted_run(&f.data, &cut, "INT");
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("--resume"), "{stderr}");
    let o = train(&f.data, &cut, &["--resume"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(train(&f.data, &full, &["--max-steps", "400"]).status.success());
    same_files(&full, &cut);
}

/// SIGTERM (Slurm, Kubernetes, `timeout`) and SIGHUP save like Ctrl-C and exit with their
/// conventional codes, 143 and 129; the checkpoint resumes.
#[test]
fn sigterm_and_sighup_save_a_checkpoint() {
    let f = fixture();
    for (sig, want) in [("TERM", 143), ("HUP", 129)] {
        let dir = tempfile::tempdir().unwrap();
        let cut = dir.path().join("cut");
        let (code, stderr, k) = interrupted_run(&f.data, &cut, sig);
        assert_eq!(code, Some(want), "SIG{sig}: {stderr}");
        assert!(stderr.contains(&format!("SIG{sig}")) && stderr.contains("--resume"), "{stderr}");
        assert!(k >= 1, "a checkpoint after the first steps");
        let o = train(&f.data, &cut, &["--resume", "--max-steps", &(k + 2).to_string()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}

/// Two writers of one bundle: while a run trains, a second run into the same bundle (resumed
/// or fresh) is refused in one line, and the first run's work is intact. (The first run is
/// long, so it is still writing whatever the machine's speed; SIGTERM ends it.)
#[test]
fn a_second_writer_is_refused() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("b");
    let child = Command::new(bin())
        .args(["--threads", "1", "train", "ar", "--config", s(&test_config()), "--data", s(&f.data), "--out", s(&out)])
        .args(["--device", "cpu", "--max-steps", "100000", "--seed", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !out.join("ar/config.json").exists() {
        assert!(t0.elapsed() < Duration::from_secs(60), "training never saved");
        std::thread::sleep(Duration::from_millis(20));
    }
    for extra in [&["--resume"][..], &[][..]] {
        let o = train(&f.data, &out, extra);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{extra:?}: a second writer ran");
        // A resume waits for nobody: the lock refuses it. A fresh run is refused by the model
        // already there (or, in the instant before the first save, by the lock).
        let by_lock = err.contains("another plandiff") && err.contains("training ar");
        assert!(by_lock || (extra.is_empty() && err.contains("already holds")), "{extra:?}: {err}");
        assert_eq!(err.lines().filter(|l| l.starts_with("error")).count(), 1, "{err}");
    }
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(143), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!out.join(".lock").exists(), "the lock goes with its writer");
    let st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("ar/trainer_state.json")).unwrap()).unwrap();
    assert_eq!(st["seed"], 3, "the first run's checkpoint is the one kept");
}

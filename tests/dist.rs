//! Data-parallel training over c10d's Gloo on CPU: two ranks equal one process with the
//! doubled batch, resume across world sizes, a killed rank stops the others, bf16 autocast.
//! Ranks are launched as torchrun does (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT), and
//! once by torchrun itself.

mod common;

use common::{bin, corpus, run_ok, s, test_config};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tch::Tensor;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// This build has Gloo (`make test` installs its headers and requires it).
fn gloo_or_skip() -> bool {
    // A group of one: joining needs the backend; then the missing data stops the run.
    let out = Command::new(bin())
        .args(["train", "ar", "--data", "/nonexistent", "--out", "/nonexistent", "--dist", "gloo"])
        .envs([("WORLD_SIZE", "1"), ("RANK", "0"), ("LOCAL_RANK", "0"), ("MASTER_ADDR", "127.0.0.1")])
        .env("MASTER_PORT", free_port().to_string())
        .output()
        .expect("spawn plandiff");
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{text}");
    if text.contains("built without Gloo") {
        assert!(std::env::var_os("PLANDIFF_REQUIRE_GLOO").is_none(), "PLANDIFF_REQUIRE_GLOO is set: {text}");
        eprintln!("SKIP: this plandiff has no Gloo (apt-get install libgloo-dev, then rebuild)");
        return false;
    }
    true
}

/// Prepared data (a small synthetic corpus) and the test config with dropout off, so runs
/// that differ only in how the batch is split compute the same thing.
struct Setup {
    dir: tempfile::TempDir,
    data: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("corpus.txt");
        std::fs::write(&input, corpus(300, 5)).unwrap();
        let data = dir.path().join("data");
        run_ok(&["prepare", "--input", s(&input), "--out", s(&data), "--vocab-size", "300", "--lowercase"]);
        Self { dir, data }
    }

    /// The test config with dropout 0 and `batch` per rank in the `[stage.train]` sections.
    fn config(&self, name: &str, batches: &[(&str, usize)]) -> PathBuf {
        let mut text = std::fs::read_to_string(test_config()).unwrap().replace("dropout = 0.1", "dropout = 0.0");
        for (stage, batch) in batches {
            let at = text.find(&format!("[{stage}.train]")).expect("section");
            let b = at + text[at..].find("batch_size = ").unwrap();
            let e = b + text[b..].find('\n').unwrap();
            text.replace_range(b..e, &format!("batch_size = {batch}"));
        }
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Starts `world` ranks of `plandiff args...` with torchrun's variables (rank 0 hosts the store).
fn spawn_ranks(world: usize, args: &[&str]) -> Vec<Child> {
    let port = free_port().to_string();
    (0..world)
        .map(|rank| {
            Command::new(bin())
                .arg("--threads")
                .arg("1")
                .args(args)
                .env("WORLD_SIZE", world.to_string())
                .env("RANK", rank.to_string())
                .env("LOCAL_RANK", rank.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", &port)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn a rank")
        })
        .collect()
}

fn ranks_ok(world: usize, args: &[&str]) -> Vec<Output> {
    let outs: Vec<Output> = spawn_ranks(world, args).into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    for (rank, o) in outs.iter().enumerate() {
        assert!(o.status.success(), "rank {rank} of {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    }
    outs
}

/// Largest absolute difference between two checkpoints' tensors.
fn max_diff(a: &Path, b: &Path) -> f64 {
    let read = |p: &Path| -> std::collections::BTreeMap<String, Tensor> {
        Tensor::read_safetensors(p).unwrap().into_iter().collect()
    };
    let (a, b) = (read(a), read(b));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    a.iter().map(|(k, t)| (t - &b[k]).abs().max().double_value(&[])).fold(0.0, f64::max)
}

fn train_args<'a>(stage: &'a str, cfg: &'a Path, data: &'a Path, out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["train", stage, "--config", s(cfg), "--data", s(data), "--out", s(out), "--device", "cpu"];
    v.extend_from_slice(extra);
    v
}

/// A bundle holding `src`'s tokenizer and autoencoder (the planner trains on top of it).
fn copy_autoencoder(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst.join("autoencoder")).unwrap();
    std::fs::copy(src.join("tokenizer.json"), dst.join("tokenizer.json")).unwrap();
    for e in std::fs::read_dir(src.join("autoencoder")).unwrap().flatten() {
        std::fs::copy(e.path(), dst.join("autoencoder").join(e.file_name())).unwrap();
    }
}

#[test]
fn two_ranks_equal_one_process_with_the_doubled_batch() {
    if !gloo_or_skip() {
        return;
    }
    let st = Setup::new();
    let one_cfg = st.config("one.toml", &[("ar", 8), ("autoencoder", 4), ("planner", 8)]);
    let two_cfg = st.config("two.toml", &[("ar", 4), ("autoencoder", 4), ("planner", 4)]);
    let (one, two) = (st.path("one"), st.path("two"));
    // ar: 10 steps (2 micro-batches each), every rank checked identical after every step.
    run_ok(&train_args("ar", &one_cfg, &st.data, &one, &["--max-steps", "10"]));
    let outs = ranks_ok(2, &train_args("ar", &two_cfg, &st.data, &two, &["--max-steps", "10", "--check-sync"]));
    let d = max_diff(&one.join("ar/model.safetensors"), &two.join("ar/model.safetensors"));
    assert!(d < 1e-5, "ar: 2 ranks x 4 vs 1 x 8 differ by {d}");
    // Rank 0 reports for the job; rank 1 prints nothing.
    assert!(String::from_utf8_lossy(&outs[0].stdout).contains("finished at step 10/10"));
    assert!(outs[1].stdout.is_empty());
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(two.join("ar/trainer_state.json")).unwrap()).unwrap();
    assert_eq!(state["world_size"], 2);
    // A plan stage: the planner over one shared autoencoder.
    let ae = st.path("ae");
    run_ok(&train_args("autoencoder", &one_cfg, &st.data, &ae, &["--max-steps", "4"]));
    let (p1, p2) = (st.path("p1"), st.path("p2"));
    copy_autoencoder(&ae, &p1);
    copy_autoencoder(&ae, &p2);
    run_ok(&train_args("planner", &one_cfg, &st.data, &p1, &["--max-steps", "10"]));
    ranks_ok(2, &train_args("planner", &two_cfg, &st.data, &p2, &["--max-steps", "10", "--check-sync"]));
    let d = max_diff(&p1.join("planner/model.safetensors"), &p2.join("planner/model.safetensors"));
    assert!(d < 1e-5, "planner: 2 ranks x 4 vs 1 x 8 differ by {d}");
    // The batch split is what makes them equal: 2 ranks of 8 (a global 16) train differently.
    let p3 = st.path("p3");
    copy_autoencoder(&ae, &p3);
    ranks_ok(2, &train_args("planner", &one_cfg, &st.data, &p3, &["--max-steps", "10"]));
    let d = max_diff(&p1.join("planner/model.safetensors"), &p3.join("planner/model.safetensors"));
    assert!(d > 1e-4, "a global batch of 16 should differ from 8 (got {d})");
}

#[test]
fn resume_moves_between_world_sizes_and_keeps_the_global_batch() {
    if !gloo_or_skip() {
        return;
    }
    let st = Setup::new();
    let one_cfg = st.config("one.toml", &[("ar", 8)]);
    let two_cfg = st.config("two.toml", &[("ar", 4)]);
    let (whole, moved) = (st.path("whole"), st.path("moved"));
    run_ok(&train_args("ar", &one_cfg, &st.data, &whole, &["--max-steps", "10"]));
    // 2 ranks to step 4, 1 rank to step 7, 2 ranks to the end.
    ranks_ok(2, &train_args("ar", &two_cfg, &st.data, &moved, &["--max-steps", "10", "--stop-at", "4"]));
    let no_cfg = |max_steps: &'static str, extra: &[&'static str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "train",
            "ar",
            "--data",
            s(&st.data),
            "--out",
            s(&moved),
            "--device",
            "cpu",
            "--resume",
            "--max-steps",
            max_steps,
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        v.extend(extra.iter().map(|x| x.to_string()));
        v
    };
    let args = no_cfg("10", &["--stop-at", "7"]);
    let out = run_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.contains("stopped at step 7/10"), "{out}");
    let state = |p: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p.join("ar/trainer_state.json")).unwrap()).unwrap()
    };
    assert_eq!(
        (state(&moved)["world_size"].as_u64(), state(&moved)["train"]["batch_size"].as_u64()),
        (Some(1), Some(8))
    );
    let args = no_cfg("10", &[]);
    ranks_ok(2, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(state(&moved)["train"]["batch_size"], 4);
    let d = max_diff(&whole.join("ar/model.safetensors"), &moved.join("ar/model.safetensors"));
    assert!(d < 1e-5, "2 -> 1 -> 2 ranks vs one uninterrupted process: {d}");
    let d = max_diff(&whole.join("ar/optimizer.safetensors"), &moved.join("ar/optimizer.safetensors"));
    assert!(d < 1e-5, "AdamW moments: {d}");
    // A global batch of 8 cannot be split over 3 ranks: one line, nothing written.
    let before = std::fs::read(moved.join("ar/model.safetensors")).unwrap();
    let args = no_cfg("12", &[]);
    let outs: Vec<Output> = spawn_ranks(3, &args.iter().map(String::as_str).collect::<Vec<_>>())
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for o in &outs {
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains("cannot split evenly"), "{err}");
    }
    assert_eq!(before, std::fs::read(moved.join("ar/model.safetensors")).unwrap());
}

/// Starts 2 ranks of a long `ar` run into `out` with `--dist-timeout timeout` and returns them once
/// the first checkpoint is on disk.
fn two_ranks_past_a_checkpoint(st: &Setup, out: &Path, timeout: &str) -> Vec<Child> {
    let cfg = st.config("two.toml", &[("ar", 4)]);
    let args = train_args("ar", &cfg, &st.data, out, &["--max-steps", "100000", "--dist-timeout", timeout]);
    let ranks = spawn_ranks(2, &args);
    let t0 = Instant::now();
    while !out.join("ar/trainer_state.json").exists() {
        assert!(t0.elapsed() < Duration::from_secs(120), "no checkpoint after 120 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    ranks
}

#[test]
fn a_killed_rank_stops_the_other_and_the_last_checkpoint_resumes() {
    if !gloo_or_skip() {
        return;
    }
    let st = Setup::new();
    let out = st.path("killed");
    // After the checkpoint at step 10, kill rank 1.
    let mut ranks = two_ranks_past_a_checkpoint(&st, &out, "30");
    ranks[1].kill().unwrap();
    let _ = ranks[1].wait();
    let killed_at = Instant::now();
    let rank0 = ranks.remove(0).wait_with_output().unwrap();
    let waited = killed_at.elapsed();
    let err = String::from_utf8_lossy(&rank0.stderr);
    assert!(!rank0.status.success() && rank0.status.code() != Some(101), "{:?}: {err}", rank0.status);
    assert!(waited < Duration::from_secs(45), "rank 0 took {waited:?} to stop");
    let last = err.lines().rev().find(|l| l.starts_with("error:")).unwrap_or_default().to_string();
    assert!(last.contains("distributed") && last.contains("--resume"), "{err}");
    // The last checkpoint is whole and resumes (on one process).
    let step = |p: &Path| -> u64 {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(p.join("ar/trainer_state.json")).unwrap()).unwrap();
        v["step"].as_u64().unwrap()
    };
    let saved = step(&out);
    assert!(saved >= 10 && saved % 10 == 0, "{saved}");
    let target = (saved + 3).to_string();
    let o = run_ok(&[
        "train",
        "ar",
        "--data",
        s(&st.data),
        "--out",
        s(&out),
        "--device",
        "cpu",
        "--resume",
        "--max-steps",
        &target,
    ]);
    assert!(o.contains(&format!("finished at step {target}/{target}")), "{o}");
}

#[test]
fn a_hung_rank_stops_the_other_within_the_timeout() {
    if !gloo_or_skip() {
        return;
    }
    let st = Setup::new();
    let out = st.path("hung");
    let mut ranks = two_ranks_past_a_checkpoint(&st, &out, "10");
    // Rank 1 stops answering (SIGSTOP): rank 0 waits out its 10 s timeout, then fails (10 s, not
    // less: joining the group under a loaded test machine shares the same timeout).
    let pid = ranks[1].id().to_string();
    assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    let stopped_at = Instant::now();
    let rank0 = ranks.remove(0).wait_with_output().unwrap();
    let waited = stopped_at.elapsed();
    let _ = ranks[0].kill();
    let _ = ranks[0].wait();
    let err = String::from_utf8_lossy(&rank0.stderr);
    assert_eq!(rank0.status.code(), Some(1), "{err}");
    assert!(waited >= Duration::from_secs(8) && waited < Duration::from_secs(60), "{waited:?}");
    // Gloo says "Operation timed out!" or "Timed out waiting 10000ms for recv ...".
    assert!(err.to_lowercase().contains("timed out") && err.contains("--resume"), "{err}");
}

#[test]
fn torchrun_launches_two_ranks() {
    let torchrun = common::root().join(".venv/bin/torchrun");
    if !torchrun.exists() {
        assert!(std::env::var_os("PLANDIFF_REQUIRE_TORCHRUN").is_none(), "no {}", torchrun.display());
        eprintln!("SKIP: no torchrun in .venv (make venv installs PyTorch)");
        return;
    }
    if !gloo_or_skip() {
        return;
    }
    let st = Setup::new();
    let cfg = st.config("two.toml", &[("ar", 4)]);
    let out = st.path("tr");
    let port = free_port().to_string();
    let mut args = vec![
        "--no-python".to_string(),
        "--nproc-per-node".into(),
        "2".into(),
        "--master-port".into(),
        port,
        s(&bin()).into(),
        "--threads".into(),
        "1".into(),
    ];
    args.extend(train_args("ar", &cfg, &st.data, &out, &["--max-steps", "6", "--json"]).iter().map(|x| x.to_string()));
    let o = Command::new(&torchrun).args(&args).env("OMP_NUM_THREADS", "1").output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON report (rank 0's)");
    assert_eq!((report["world_size"].as_u64(), report["step"].as_u64()), (Some(2), Some(6)));
}

#[test]
fn bf16_autocast_trains_with_fp32_weights() {
    let st = Setup::new();
    let cfg = st.config("c.toml", &[]);
    let (a, b) = (st.path("fp32"), st.path("bf16"));
    run_ok(&train_args("ar", &cfg, &st.data, &a, &["--max-steps", "20"]));
    let o = run_ok(&train_args("ar", &cfg, &st.data, &b, &["--max-steps", "20", "--precision", "bf16", "--json"]));
    let report: serde_json::Value = serde_json::from_str(o.trim()).unwrap();
    assert_eq!(report["precision"], "bf16");
    let loss = report["train_loss"].as_f64().unwrap();
    assert!(loss.is_finite() && loss < 5.0, "bf16 loss {loss}");
    let w = Tensor::read_safetensors(b.join("ar/model.safetensors")).unwrap();
    assert!(w.iter().all(|(_, t)| t.kind() == tch::Kind::Float), "fp32 master weights");
    let d = max_diff(&a.join("ar/model.safetensors"), &b.join("ar/model.safetensors"));
    assert!(d > 1e-6, "bf16 autocast changed nothing ({d})");
}

#[test]
fn bad_distributed_settings_are_one_line_errors() {
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a str);
    let cases: &[Case] = &[
        (&[], &["--dist", "gloo"], "WORLD_SIZE is not set"),
        (&[("WORLD_SIZE", "two")], &[], "WORLD_SIZE"),
        (&[("WORLD_SIZE", "2"), ("RANK", "0")], &[], "MASTER_ADDR"),
        (&[("WORLD_SIZE", "2"), ("RANK", "5"), ("MASTER_ADDR", "x"), ("MASTER_PORT", "1")], &[], "RANK=5"),
        (&[], &["--dist-timeout", "0"], "--dist-timeout"),
        (&[], &["--dist-timeout", "nan"], "--dist-timeout"),
        (&[], &["--precision", "fp8"], "fp8"),
    ];
    for (env, flags, needle) in cases {
        let mut c = Command::new(bin());
        c.args(["train", "ar", "--config", s(&test_config()), "--data", "/nonexistent", "--out", "/nonexistent/x"]);
        c.args(*flags).env_remove("WORLD_SIZE");
        for (k, v) in *env {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && o.status.code() != Some(101), "{env:?} {flags:?}: {err}");
        assert!(err.contains(needle), "{env:?} {flags:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

//! The Rust judge against transformers reading the same GGUF file (`python/smollm_reference.py`
//! from the project's `.venv`): token ids equal, logits within 1e-3, perplexities within 0.5%.
//! Needs the file `make judge-smollm` fetches and the venv's transformers; skipped, saying so,
//! without them unless `PLANDIFF_REQUIRE_JUDGE` is set (`make test` sets it).

#[path = "../../../tests/common/venv.rs"]
mod venv;

use plandiff_fluency::{find_judge, FluencyJudge};
use std::io::Write;
use std::process::{Command, Stdio};
use tch::{Device, Tensor};

const TEXTS: [&str; 3] = [
    "once upon a time, there was a little fox named leo. he lived near a big forest. one day, leo found a big sack of food.",
    "the gray leaner took a long leather bear's life and was very special. the wild cat was so pleased that leopard.",
    "Émile said: \"42 cats — ça va?\"\n\nThe end.  ",
];

#[test]
fn the_judge_matches_transformers_on_the_same_gguf() {
    let path = match find_judge(None) {
        Ok(p) => p,
        Err(e) => {
            assert!(std::env::var_os("PLANDIFF_REQUIRE_JUDGE").is_none(), "{e}");
            eprintln!("skipped: {e}");
            return;
        }
    };
    let Some(py) = venv::python_with("gguf", "PLANDIFF_REQUIRE_JUDGE") else { return };
    let judge = FluencyJudge::load(&path, Device::Cpu).unwrap();
    let pairs: Vec<(&str, &str)> = vec![
        (
            "once upon a time, there was a little fox named leo.",
            "he lived near a big forest. one day, leo found a big sack of food.",
        ),
        (
            "once upon a time, there was a little fox named leo.",
            "the gray leaner took a long leather bear's life and was very special.",
        ),
        ("", TEXTS[1]),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(&py)
        .arg(venv::root().join("python/smollm_reference.py"))
        .arg(&path)
        .arg(dir.path())
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let req = serde_json::json!({"texts": TEXTS, "pairs": pairs});
    child.stdin.take().unwrap().write_all(req.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("reference.json")).unwrap()).unwrap();
    let logits: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(dir.path().join("logits.safetensors")).unwrap().into_iter().collect();
    for (i, text) in TEXTS.iter().enumerate() {
        let ids = judge.tokenize(text).unwrap();
        let want: Vec<i64> = reference["ids"][i].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        assert_eq!(ids, want, "token ids of {text:?}");
        let x = Tensor::from_slice(&ids).unsqueeze(0);
        let ours = tch::no_grad(|| judge.model().head(&judge.model().hidden(&x))).squeeze_dim(0);
        let theirs = &logits[&format!("logits.{i}")];
        let diff = (&ours - theirs).abs().max().double_value(&[]);
        // Float sums in another order through 30 layers: 1e-3 of logits of size ~10-30.
        assert!(diff < 1e-3, "logits of {text:?} differ by {diff}");
    }
    let ppl = judge.perplexities(&pairs).unwrap();
    for (k, p) in ppl.iter().enumerate() {
        let want = reference["ppl"][k].as_f64().unwrap();
        assert!((p / want - 1.0).abs() < 0.005, "pair {k}: perplexity {p} vs transformers' {want}");
    }
    // A fluent continuation reads better than a garbled one, by far.
    assert!(ppl[0] * 5.0 < ppl[1], "{ppl:?}");
}

/// A missing, truncated or foreign file is a one-line error that names `make judge-smollm`.
#[test]
fn a_missing_truncated_or_foreign_file_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let e = find_judge(Some(&dir.path().join("none.gguf"))).unwrap_err().to_string();
    assert!(e.contains("make judge-smollm") && e.lines().count() == 1, "{e}");
    let foreign = dir.path().join("foreign.gguf");
    std::fs::write(&foreign, b"PK\x03\x04 not a gguf at all").unwrap();
    let e = FluencyJudge::load(&foreign, Device::Cpu).err().unwrap().to_string();
    assert!(e.contains("make judge-smollm") && e.contains("foreign.gguf") && e.lines().count() == 1, "{e}");
    if let Ok(real) = find_judge(None) {
        let bytes = std::fs::read(&real).unwrap();
        for cut in [16, 4096, bytes.len() / 2] {
            let t = dir.path().join("cut.gguf");
            std::fs::write(&t, &bytes[..cut]).unwrap();
            let e = FluencyJudge::load(&t, Device::Cpu).err().unwrap().to_string();
            assert!(e.contains("make judge-smollm") && e.lines().count() == 1, "cut at {cut}: {e}");
        }
    }
}

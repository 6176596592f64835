//! An encoder folder is checked when it loads: a tokenizer whose ids run past the model's
//! embedding table (a folder that mixes two models' files) or tensors that do not fit together
//! are one-line errors naming the file and the fix, never a panic inside libtorch later.
//! Needs the encoder `make venv` installs; skipped, saying so, without it unless
//! `PLANDIFF_REQUIRE_JUDGE` is set (`make test` sets it).

use plandiff_sentence::{find_encoder, SentenceEncoder};
use std::path::Path;

fn copy_of(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for f in ["tokenizer.json", "model.safetensors"] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
}

#[test]
fn a_folder_that_mixes_two_models_is_refused_on_load() {
    let src = match find_encoder(None) {
        Ok(dir) => dir,
        Err(e) => {
            assert!(std::env::var_os("PLANDIFF_REQUIRE_JUDGE").is_none(), "{e}");
            eprintln!("skipped: {e}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    // A tokenizer that gives ids beyond the 30,522-row table.
    let wide = dir.path().join("wide");
    copy_of(&src, &wide);
    let path = wide.join("tokenizer.json");
    let mut t: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let vocab = t["model"]["vocab"].as_object_mut().unwrap();
    for i in 0..100 {
        let n = vocab.len();
        vocab.insert(format!("zzword{i}"), n.into());
    }
    std::fs::write(&path, t.to_string()).unwrap();
    let e = SentenceEncoder::load(&wide, tch::Device::Cpu).err().expect("refused").to_string();
    assert!(e.contains("exceed the model's embedding table") && e.contains("make venv"), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
    // Tensors of another shape (a layer's weight cut) are refused on load, not at the first text.
    let cut = dir.path().join("cut");
    copy_of(&src, &cut);
    let w = cut.join("model.safetensors");
    let mut named = tch::Tensor::read_safetensors(&w).unwrap();
    let (_, t) = named.iter_mut().find(|(n, _)| n.ends_with("attention.self.query.weight")).unwrap();
    *t = t.narrow(0, 0, t.size()[0] - 4);
    tch::Tensor::write_safetensors(&named, &w).unwrap();
    let e = SentenceEncoder::load(&cut, tch::Device::Cpu).err().expect("refused").to_string();
    assert!(e.contains("model.safetensors") && e.contains("reinstall"), "{e}");
    // The untouched folder loads.
    assert!(SentenceEncoder::load(&src, tch::Device::Cpu).is_ok());
}

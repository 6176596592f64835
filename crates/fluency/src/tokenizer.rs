//! The judge's tokenizer, built from its GGUF file's vocabulary and merges as transformers
//! builds it (`GGUF_TOKENIZER_TYPES["gpt2"]`, a `GPT2Tokenizer`): byte-level BPE with GPT-2's
//! split, no prefix space, the tokens the file marks as control added whole as special
//! tokens; through the `tokenizers` crate (the same library transformers runs).

use crate::gguf::{Gguf, GgufError};
use serde_json::{json, Value};
use std::collections::HashMap;
use tokenizers::Tokenizer;

/// GGUF's token type of a control token (`<|endoftext|>`).
const CONTROL: i64 = 3;

/// GPT-2's map of the 256 bytes to printable characters (`bytes_to_unicode`).
fn byte_alphabet() -> Vec<char> {
    let mut printable: Vec<u32> = (u32::from('!')..=u32::from('~')).collect();
    printable.extend(u32::from('¡')..=u32::from('¬'));
    printable.extend(u32::from('®')..=u32::from('ÿ'));
    let mut out = vec!['\0'; 256];
    let mut extra = 0;
    for b in 0..256u32 {
        let c = if printable.contains(&b) {
            b
        } else {
            extra += 1;
            255 + extra
        };
        out[b as usize] = char::from_u32(c).unwrap_or('\u{FFFD}');
    }
    out
}

/// Builds the tokenizer of a byte-level BPE GGUF (`tokenizer.ggml.model` = `gpt2`).
pub fn from_gguf(g: &Gguf) -> Result<Tokenizer, GgufError> {
    let model = g.string("tokenizer.ggml.model")?;
    if model != "gpt2" {
        return Err(g.error(format!("its tokenizer is `{model}`; the judge reads byte-level BPE (`gpt2`) files")));
    }
    let tokens = g.strings("tokenizer.ggml.tokens")?;
    let merges = g.strings("tokenizer.ggml.merges")?;
    let types = g.ints("tokenizer.ggml.token_type").unwrap_or_default();
    let alphabet = byte_alphabet();
    let spelled: std::collections::HashSet<char> = alphabet.iter().copied().collect();
    let respell = |t: &str| -> String {
        if t.chars().all(|c| spelled.contains(&c)) {
            t.to_string()
        } else {
            t.bytes().map(|b| alphabet[b as usize]).collect()
        }
    };
    let vocab: HashMap<String, u32> = tokens.iter().enumerate().map(|(i, t)| (respell(t), i as u32)).collect();
    let pairs: Vec<Value> = merges
        .iter()
        .map(|m| {
            let (a, b) = m.split_once(' ').unwrap_or((m.as_str(), ""));
            json!([a, b])
        })
        .collect();
    let added: Vec<Value> = tokens
        .iter()
        .enumerate()
        .filter(|(i, t)| types.get(*i) == Some(&CONTROL) && t.chars().all(|c| spelled.contains(&c)))
        .map(|(i, t)| {
            json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": true})
        })
        .collect();
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    let spec = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added, "normalizer": null,
        "pre_tokenizer": byte_level, "post_processor": null, "decoder": byte_level,
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": pairs}
    });
    Tokenizer::from_bytes(spec.to_string().as_bytes())
        .map_err(|e| g.error(format!("its tokenizer does not build: {e}")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_byte_alphabet_is_gpt2s() {
        let a = super::byte_alphabet();
        assert_eq!((a[b'!' as usize], a[b' ' as usize], a[b'\n' as usize], a[0]), ('!', 'Ġ', 'Ċ', 'Ā'));
        let mut sorted = a.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 256);
    }
}

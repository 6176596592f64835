//! Byte-level BPE tokenizer (HF `tokenizers`) with plandiff's special tokens.

use crate::{DataError, Result};
use sha2::{Digest, Sha256};
use std::path::Path;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

pub const BOS: &str = "<|bos|>";
pub const EOS: &str = "<|eos|>";
pub const SEP: &str = "<|sep|>";
pub const PAD: &str = "<|pad|>";
const SPECIALS: [&str; 4] = [BOS, EOS, SEP, PAD];

/// Ids of the special tokens in one tokenizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SpecialIds {
    pub bos: u32,
    pub eos: u32,
    pub sep: u32,
    pub pad: u32,
}

impl SpecialIds {
    pub fn is_special(&self, id: u32) -> bool {
        id == self.bos || id == self.eos || id == self.sep || id == self.pad
    }
}

/// A tokenizer plus the facts plandiff needs about it.
pub struct TextTokenizer {
    inner: Tokenizer,
    special: SpecialIds,
    hash: String,
}

fn tok_err(e: impl std::fmt::Display) -> DataError {
    DataError::Tokenizer(e.to_string())
}

impl TextTokenizer {
    /// Trains a byte-level BPE of `vocab_size` tokens (including the 4 special tokens) on
    /// the given texts.
    /// With `lowercase`, the tokenizer lowercases its input itself (a `Lowercase`
    /// normalizer), so prompts need no preprocessing.
    pub fn train<I, S>(texts: I, vocab_size: usize, lowercase: bool) -> Result<Self>
    where
        I: Iterator<Item = S> + Send,
        S: AsRef<str> + Send,
    {
        if !(260..=65_536).contains(&vocab_size) {
            return Err(DataError::Invalid(format!(
                "--vocab-size {vocab_size} is out of range; use 260..=65536 (256 bytes + 4 special tokens at least)"
            )));
        }
        let specials: Vec<AddedToken> = SPECIALS.iter().map(|s| AddedToken::from(*s, true)).collect();
        let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
            .show_progress(false)
            .vocab_size(vocab_size)
            .min_frequency(2)
            .special_tokens(specials)
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .build()
            .into();
        let mut tk = Tokenizer::new(BPE::default());
        if lowercase {
            tk.with_normalizer(Some(tokenizers::normalizers::utils::Lowercase));
        }
        tk.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        tk.with_decoder(Some(ByteLevel::default()));
        tk.train(&mut trainer, texts).map_err(tok_err)?;
        Self::from_tokenizer(tk)
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = crate::read_capped(path, 256 << 20)?;
        Self::from_bytes(&bytes).map_err(|e| DataError::Invalid(format!("{}: {e}", path.display())))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        // Malformed JSON fails here, cleanly; the `tokenizers` crate panics on some of it.
        serde_json::from_slice::<serde_json::Value>(bytes)
            .map_err(|e| DataError::Tokenizer(format!("not a valid tokenizer.json ({e})")))?;
        let tk = crate::expected_panic::quiet(|| Tokenizer::from_bytes(bytes))
            .ok_or_else(|| DataError::Tokenizer("not a valid tokenizer.json (its structure is damaged)".into()))?
            .map_err(|e| DataError::Tokenizer(format!("not a valid tokenizer.json ({e})")))?;
        Self::from_tokenizer(tk)
    }

    fn from_tokenizer(inner: Tokenizer) -> Result<Self> {
        let id = |s: &str| {
            inner.token_to_id(s).ok_or_else(|| {
                DataError::Tokenizer(format!(
                    "tokenizer has no special token {s}; plandiff needs {BOS} {EOS} {SEP} {PAD} (train one with `plandiff prepare --vocab-size N`)"
                ))
            })
        };
        let special = SpecialIds { bos: id(BOS)?, eos: id(EOS)?, sep: id(SEP)?, pad: id(PAD)? };
        let json = inner.to_string(false).map_err(tok_err)?;
        let hash = hex(&Sha256::digest(json.as_bytes()));
        Ok(Self { inner, special, hash })
    }

    /// Canonical JSON (what `save` writes and `hash` is computed over).
    pub fn to_json(&self) -> Result<String> {
        self.inner.to_string(true).map_err(tok_err)
    }

    /// SHA-256 of the canonical serialization: two bundles with the same hash tokenize alike.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    pub fn special(&self) -> SpecialIds {
        self.special
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Which ids begin a word (byte-level BPE: the encoded space `Ġ` alone or before a letter
    /// or digit), by id; a word's later pieces, punctuation, special tokens and a sentence's
    /// first word (encoded without its space) are `false`.
    pub fn word_starts(&self) -> Vec<bool> {
        (0..self.vocab_size() as u32)
            .map(|id| {
                self.inner
                    .id_to_token(id)
                    .is_some_and(|t| t.starts_with('\u{120}') && t.chars().nth(1).is_none_or(char::is_alphanumeric))
            })
            .collect()
    }

    /// Plain encoding, no special tokens added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.inner.encode_fast(text, false).map_err(tok_err)?.get_ids().to_vec())
    }

    pub fn encode_batch(&self, texts: Vec<String>) -> Result<Vec<Vec<u32>>> {
        let enc = self.inner.encode_batch_fast(texts, false).map_err(tok_err)?;
        Ok(enc.into_iter().map(|e| e.get_ids().to_vec()).collect())
    }

    /// Decodes ids, keeping special tokens as text.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(tok_err)
    }

    /// Decodes generated text: special tokens dropped, sentences joined as written.
    pub fn decode_text(&self, ids: &[u32]) -> Result<String> {
        let plain: Vec<u32> = ids.iter().copied().filter(|&i| !self.special.is_special(i)).collect();
        Ok(self.decode(&plain)?.trim_start().to_string())
    }

    /// Encodes a document as `<bos> s1 <sep> s2 <sep> ...`; when `complete` the last
    /// sentence is closed by `<sep>` and the document by `<eos>`, otherwise the text is left
    /// open for the model to continue (a prompt).
    pub fn encode_document(&self, sentences: &[&str], complete: bool) -> Result<Vec<u32>> {
        let texts: Vec<String> = sentences.iter().map(|s| format!(" {s}")).collect();
        let enc = self.encode_batch(texts)?;
        Ok(self.assemble(enc, complete))
    }

    pub fn assemble(&self, sentences: Vec<Vec<u32>>, complete: bool) -> Vec<u32> {
        let n = sentences.len();
        let mut out = vec![self.special.bos];
        for (i, s) in sentences.into_iter().enumerate() {
            out.extend(s);
            if complete || i + 1 < n {
                out.push(self.special.sep);
            }
        }
        if complete {
            out.push(self.special.eos);
        }
        out
    }

    /// Writes the canonical tokenizer.json.
    pub fn save(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_json()?).map_err(|e| DataError::io(path, e))
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> TextTokenizer {
        let corpus = [
            "the cat sat on the mat.",
            "the dog ran to the park and played with a ball.",
            "she said hello to her friend.",
            "once upon a time there was a little girl.",
        ];
        let texts = corpus.iter().cycle().take(200).map(|s| s.to_string());
        TextTokenizer::train(texts, 300, false).unwrap()
    }

    #[test]
    fn special_tokens_are_first_and_vocab_bounded() {
        let t = tiny();
        assert_eq!(t.special(), SpecialIds { bos: 0, eos: 1, sep: 2, pad: 3 });
        assert!(t.vocab_size() <= 300 && t.vocab_size() > 260);
    }

    /// A word's first piece begins a word; its later pieces, punctuation and the text's first
    /// word (no space before it) do not.
    #[test]
    fn word_starts_mark_the_first_piece_of_each_later_word() {
        let t = tiny();
        let starts = t.word_starts();
        assert_eq!(starts.len(), t.vocab_size());
        let ids = t.encode("the the xq.").unwrap();
        let pieces: Vec<String> = ids.iter().map(|&i| t.decode(&[i]).unwrap()).collect();
        let marked: Vec<bool> = ids.iter().map(|&i| starts[i as usize]).collect();
        assert_eq!(pieces, ["the", " the", " ", "x", "q", "."]);
        // A word the merges never reached starts with the space alone.
        assert_eq!(marked, [false, true, true, false, false, false]);
    }

    #[test]
    fn round_trip_edge_cases() {
        let t = tiny();
        let long_word = "a".repeat(5000) + &"zq".repeat(3000);
        let cases = [
            "",
            " ",
            "   \t\n  ",
            "the cat sat",
            "emoji 🦀🚀 and 👩‍👩‍👧 family",
            "日本語のテキスト, Ελληνικά, русский, עברית, العربية",
            "ŝtranĝe àccénts",
            long_word.as_str(),
            "tabs\tand\nnewlines\r\n",
            "<|sep|> literal special text",
        ];
        for c in cases {
            let ids = t.encode(c).unwrap();
            assert_eq!(t.decode(&ids).unwrap(), c, "round trip of {c:?}");
        }
        assert!(t.encode("").unwrap().is_empty());
    }

    #[test]
    fn hash_is_stable_across_save_and_load() {
        let t = tiny();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokenizer.json");
        t.save(&p).unwrap();
        let u = TextTokenizer::from_file(&p).unwrap();
        assert_eq!(t.hash(), u.hash());
        let other = TextTokenizer::train(["x y z w"; 50].iter().map(|s| s.to_string()), 280, true).unwrap();
        assert_ne!(t.hash(), other.hash());
        // The lowercasing tokenizer normalizes its input.
        assert_eq!(other.encode("X Y").unwrap(), other.encode("x y").unwrap());
    }

    #[test]
    fn document_layout() {
        let t = tiny();
        let ids = t.encode_document(&["the cat sat.", "the dog ran."], true).unwrap();
        let s = t.special();
        assert_eq!(ids[0], s.bos);
        assert_eq!(*ids.last().unwrap(), s.eos);
        assert_eq!(ids.iter().filter(|&&i| i == s.sep).count(), 2);
        assert_eq!(t.decode_text(&ids).unwrap(), "the cat sat. the dog ran.");
        let open = t.encode_document(&["the cat sat.", "the dog"], false).unwrap();
        assert_eq!(open.iter().filter(|&&i| i == s.sep).count(), 1);
        assert_ne!(*open.last().unwrap(), s.eos);
    }
}

//! `plandiff prepare`: corpus -> documents -> sentences -> tokens -> shards + stats.json.
//!
//! Two streaming passes: the first trains the BPE on at most `tokenizer_sample_bytes` of
//! text (skipped with a given tokenizer.json), the second encodes everything. Memory holds
//! one batch of documents and the tokenizer's pair counts, never the corpus.

use crate::corpus::{expand_inputs, DocumentReader};
use crate::shards::ShardWriter;
use crate::{split_sentences, DataError, Result, TextTokenizer};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

pub const PREPARED_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone)]
pub struct PrepareOptions {
    pub inputs: Vec<PathBuf>,
    pub out: PathBuf,
    pub vocab_size: usize,
    pub lowercase: bool,
    pub tokenizer: Option<PathBuf>,
    pub valid_fraction: f64,
    pub tokenizer_sample_bytes: u64,
    pub shard_tokens: u64,
    pub progress: bool,
    /// Replace an `out` folder that `prepare` did not make (a bundle, other files).
    pub force: bool,
}

impl PrepareOptions {
    pub fn new(inputs: Vec<PathBuf>, out: PathBuf) -> Self {
        Self {
            inputs,
            out,
            vocab_size: 4096,
            lowercase: false,
            tokenizer: None,
            valid_fraction: 0.01,
            tokenizer_sample_bytes: 64 << 20,
            shard_tokens: 64 << 20,
            progress: false,
            force: false,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SplitStats {
    pub documents: u64,
    pub sentences: u64,
    pub tokens: u64,
    pub shards: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrepareStats {
    pub format_version: u32,
    pub tokenizer_hash: String,
    pub vocab_size: usize,
    pub lowercase: bool,
    pub inputs: Vec<String>,
    pub input_bytes: u64,
    pub seconds: f64,
    pub mb_per_s: f64,
    pub max_sentences_per_document: u64,
    pub train: SplitStats,
    pub valid: SplitStats,
}

impl PrepareStats {
    pub fn load(dir: &Path) -> Result<Self> {
        let p = dir.join("stats.json");
        if !p.is_file() {
            return Err(DataError::Invalid(format!(
                "{}: not found; is {} a folder made by `plandiff prepare`?",
                p.display(),
                dir.display()
            )));
        }
        let s = crate::read_text_capped(&p, crate::SMALL_FILE_CAP)?;
        let st: Self = serde_json::from_str(&s).map_err(|e| {
            DataError::Invalid(format!("{}: not a valid stats.json ({e}); run `plandiff prepare` again", p.display()))
        })?;
        if st.format_version != PREPARED_FORMAT_VERSION {
            return Err(DataError::Invalid(format!(
                "{}: prepared-data format {} but this plandiff reads {PREPARED_FORMAT_VERSION}; run `plandiff prepare` again",
                p.display(),
                st.format_version
            )));
        }
        Ok(st)
    }
}

/// splitmix64: a fixed, seedless hash for the document -> split assignment.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e3779b97f4a7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d049bb133111eb);
    x ^ (x >> 31)
}

fn is_valid_doc(index: u64, fraction: f64) -> bool {
    fraction >= 1.0 || (mix(index) as f64 / u64::MAX as f64) < fraction
}

fn bar(total: u64, show: bool, msg: &'static str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(msg);
    pb
}

/// Files this run created, removed again if the run fails.
struct Created(Vec<PathBuf>, bool);

impl Drop for Created {
    fn drop(&mut self) {
        if !self.1 {
            for p in &self.0 {
                let _ = std::fs::remove_file(p);
                let _ = std::fs::remove_file(p.with_extension("bin.tmp"));
                let _ = std::fs::remove_file(p.with_extension("json.tmp"));
            }
        }
    }
}

/// Refuses an `out` that holds something other than an earlier `prepare`'s output, unless
/// `force`: a prepared folder is replaced whole, anything else is never written into.
fn check_out(out: &Path, force: bool) -> Result<()> {
    if force || crate::staged::is_empty_dir(out) || out.join("stats.json").is_file() {
        return Ok(());
    }
    let what = if out.join("tokenizer.json").exists() {
        "a tokenizer that `plandiff prepare` did not write (a model bundle?)"
    } else {
        "files that `plandiff prepare` did not write"
    };
    Err(DataError::Invalid(format!(
        "{} holds {what}; choose another --out, or pass --force to replace the folder",
        out.display()
    )))
}

/// Prepares `opts.inputs` into `opts.out`, written whole in a staging folder and swapped
/// in: a failure or a kill leaves an existing `out` as it was.
pub fn prepare(opts: &PrepareOptions) -> Result<PrepareStats> {
    if !(0.0..=1.0).contains(&opts.valid_fraction) {
        return Err(DataError::Invalid(format!(
            "--valid-fraction {} must be in [0, 1] (1 makes an evaluation-only folder)",
            opts.valid_fraction
        )));
    }
    let files = expand_inputs(&opts.inputs)?;
    check_out(&opts.out, opts.force)?;
    let staged = crate::StagedDir::begin(&opts.out)?;
    let inner = PrepareOptions { out: staged.path().to_path_buf(), ..opts.clone() };
    let stats = prepare_into(&inner, &files)?;
    staged.commit()?;
    Ok(stats)
}

fn prepare_into(opts: &PrepareOptions, files: &[PathBuf]) -> Result<PrepareStats> {
    let total_bytes: u64 = files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
    let mut created = Created(Vec::new(), false);
    let t0 = Instant::now();

    let tokenizer = match &opts.tokenizer {
        Some(p) => TextTokenizer::from_file(p)?,
        None => train_tokenizer(files, opts)?,
    };
    let tok_path = opts.out.join("tokenizer.json");
    created.0.push(tok_path.clone());
    let tmp = tok_path.with_extension("json.tmp");
    tokenizer.save(&tmp)?;
    std::fs::rename(&tmp, &tok_path).map_err(|e| DataError::io(&tok_path, e))?;

    let vocab = tokenizer.vocab_size();
    let (train, valid, max_sents) = encode_files(files, &tokenizer, opts, total_bytes, &mut created)?;
    if train.tokens + valid.tokens == 0 {
        return Err(DataError::Invalid("the input holds no text; give files with at least one paragraph".into()));
    }
    let seconds = t0.elapsed().as_secs_f64();
    let stats = PrepareStats {
        format_version: PREPARED_FORMAT_VERSION,
        tokenizer_hash: tokenizer.hash().to_string(),
        vocab_size: vocab,
        lowercase: opts.lowercase,
        inputs: files.iter().map(|f| f.display().to_string()).collect(),
        input_bytes: total_bytes,
        seconds,
        mb_per_s: total_bytes as f64 / 1e6 / seconds.max(1e-9),
        max_sentences_per_document: max_sents,
        train,
        valid,
    };
    let sp = opts.out.join("stats.json");
    created.0.push(sp.clone());
    let tmp = sp.with_extension("json.tmp");
    let json = serde_json::to_string_pretty(&stats).map_err(|e| DataError::Invalid(e.to_string()))?;
    std::fs::write(&tmp, json).map_err(|e| DataError::io(&tmp, e))?;
    std::fs::rename(&tmp, &sp).map_err(|e| DataError::io(&sp, e))?;
    created.1 = true;
    Ok(stats)
}

/// Encodes every document of `files` into the train and valid shards; returns both splits'
/// stats and the most sentences a document had.
fn encode_files(
    files: &[PathBuf],
    tokenizer: &TextTokenizer,
    opts: &PrepareOptions,
    total_bytes: u64,
    created: &mut Created,
) -> Result<(SplitStats, SplitStats, u64)> {
    let vocab = tokenizer.vocab_size();
    let pb = bar(total_bytes, opts.progress, "encoding");
    let mut train = SplitState::new("train", &opts.out, vocab);
    let mut valid = SplitState::new("valid", &opts.out, vocab);
    let mut doc_index = 0u64;
    let mut max_sents = 0u64;
    let mut bytes_done = 0u64;
    for f in files {
        let mut reader = DocumentReader::open(f)?;
        loop {
            let mut batch = Vec::with_capacity(256);
            for d in reader.by_ref().take(256) {
                batch.push(d?);
            }
            if batch.is_empty() {
                break;
            }
            let docs: Vec<Vec<String>> = batch
                .iter()
                .map(|d| {
                    let d = if opts.lowercase { d.to_lowercase() } else { d.clone() };
                    split_sentences(&d).into_iter().map(|s| format!(" {s}")).collect()
                })
                .collect();
            let flat: Vec<String> = docs.iter().flatten().cloned().collect();
            let mut enc = tokenizer.encode_batch(flat)?.into_iter();
            for sents in docs {
                if sents.is_empty() {
                    continue;
                }
                let n = sents.len();
                let ids = tokenizer.assemble(enc.by_ref().take(n).collect(), true);
                max_sents = max_sents.max(n as u64);
                let split = if is_valid_doc(doc_index, opts.valid_fraction) { &mut valid } else { &mut train };
                split.push(&ids, n as u64, opts.shard_tokens, created)?;
                doc_index += 1;
            }
            pb.set_position(bytes_done + reader.bytes_read);
        }
        bytes_done += reader.bytes_read;
    }
    pb.finish_and_clear();
    Ok((train.finish()?, valid.finish()?, max_sents))
}

/// The longest run without whitespace the BPE trainer sees. Its pair counting is quadratic in
/// a pre-token's length (a 200 KB word took 22 s), so longer runs are cut for training only;
/// encoding still sees the text as it is.
pub const MAX_PRETOKEN_CHARS: usize = 64;

fn cap_pretokens(s: &str) -> std::borrow::Cow<'_, str> {
    if s.split_whitespace().all(|w| w.chars().count() <= MAX_PRETOKEN_CHARS) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + s.len() / MAX_PRETOKEN_CHARS);
    let mut run = 0;
    for c in s.chars() {
        if c.is_whitespace() {
            run = 0;
        } else if run == MAX_PRETOKEN_CHARS {
            out.push(' ');
            run = 0;
        }
        if !c.is_whitespace() {
            run += 1;
        }
        out.push(c);
    }
    std::borrow::Cow::Owned(out)
}

fn train_tokenizer(files: &[PathBuf], opts: &PrepareOptions) -> Result<TextTokenizer> {
    let error: Mutex<Option<DataError>> = Mutex::new(None);
    let budget = opts.tokenizer_sample_bytes;
    let mut seen = 0u64;
    let lowercase = opts.lowercase;
    let docs = files
        .iter()
        .flat_map(|f| match DocumentReader::open(f) {
            Ok(r) => Box::new(r) as Box<dyn Iterator<Item = Result<String>> + Send>,
            Err(e) => Box::new(std::iter::once(Err(e))),
        })
        .map_while(|d| match d {
            Ok(d) => Some(d),
            Err(e) => {
                *error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                None
            }
        })
        .take_while(move |d| {
            seen += d.len() as u64;
            seen <= budget || seen == d.len() as u64
        })
        .flat_map(move |d| {
            let d = if lowercase { d.to_lowercase() } else { d };
            split_sentences(&d).into_iter().map(|s| format!(" {}", cap_pretokens(s))).collect::<Vec<_>>()
        });
    let tk = TextTokenizer::train(docs, opts.vocab_size, opts.lowercase)?;
    if let Some(e) = error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    Ok(tk)
}

struct SplitState {
    name: &'static str,
    dir: PathBuf,
    vocab: usize,
    writer: Option<ShardWriter>,
    stats: SplitStats,
}

impl SplitState {
    fn new(name: &'static str, dir: &Path, vocab: usize) -> Self {
        Self { name, dir: dir.to_path_buf(), vocab, writer: None, stats: SplitStats::default() }
    }

    fn push(&mut self, ids: &[u32], sentences: u64, shard_tokens: u64, created: &mut Created) -> Result<()> {
        if self.writer.is_none() {
            let name = format!("{}-{:05}.bin", self.name, self.stats.shards.len());
            let p = self.dir.join(&name);
            created.0.push(p.clone());
            self.writer = Some(ShardWriter::create(&p, self.vocab)?);
            self.stats.shards.push(name);
        }
        let w = self.writer.as_mut().expect("writer was just created");
        w.push(ids)?;
        self.stats.documents += 1;
        self.stats.sentences += sentences;
        self.stats.tokens += ids.len() as u64;
        if w.len() >= shard_tokens {
            self.writer.take().map(ShardWriter::finish).transpose()?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<SplitStats> {
        self.writer.take().map(ShardWriter::finish).transpose()?;
        Ok(self.stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read_shard;

    #[test]
    fn pretokens_for_bpe_training_are_cut_at_64_chars() {
        assert!(matches!(cap_pretokens("a short sentence."), std::borrow::Cow::Borrowed(_)));
        let long = "x".repeat(200);
        let text = format!("tom saw {long} today");
        let cut = cap_pretokens(&text);
        let words: Vec<&str> = cut.split_whitespace().collect();
        assert_eq!(words.iter().map(|w| w.len()).collect::<Vec<_>>(), vec![3, 3, 64, 64, 64, 8, 5]);
        assert_eq!(cut.chars().filter(|c| !c.is_whitespace()).count(), 3 + 3 + 200 + 5, "no character lost");
    }

    #[test]
    fn prepares_small_corpus() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("c.txt");
        let mut text = String::new();
        for i in 0..300 {
            text.push_str(&format!("Doc {i} starts here. The cat sat on the mat! Did it?\n\n"));
        }
        std::fs::write(&input, text).unwrap();
        let out = dir.path().join("prep");
        let mut o = PrepareOptions::new(vec![input], out.clone());
        o.vocab_size = 300;
        o.valid_fraction = 0.1;
        o.lowercase = true;
        let st = prepare(&o).unwrap();
        assert_eq!(st.train.documents + st.valid.documents, 300);
        assert!(st.valid.documents > 10 && st.valid.documents < 60, "{}", st.valid.documents);
        assert_eq!(st.train.sentences, 3 * st.train.documents);
        let toks = read_shard(&out.join(&st.train.shards[0])).unwrap();
        assert_eq!(toks.len() as u64, st.train.tokens);
        let tk = TextTokenizer::from_file(&out.join("tokenizer.json")).unwrap();
        assert_eq!(tk.hash(), st.tokenizer_hash);
        let sp = tk.special();
        assert_eq!(toks.iter().filter(|&&t| t == sp.sep).count() as u64, st.train.sentences);
        let first_eos = toks.iter().position(|&t| t == sp.eos).unwrap();
        let text = tk.decode_text(&toks[..first_eos]).unwrap();
        assert!(text.starts_with("doc ") && text.ends_with("the cat sat on the mat! did it?"), "{text}");
        assert!(!out.join("stats.json.tmp").exists());
        assert_eq!(PrepareStats::load(&out).unwrap().tokenizer_hash, st.tokenizer_hash);
    }

    #[test]
    fn failure_leaves_no_files() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("c.jsonl");
        std::fs::write(&input, "{\"text\": \"ok.\"}\nnot json\n").unwrap();
        let out = dir.path().join("prep");
        let mut o = PrepareOptions::new(vec![input], out.clone());
        o.vocab_size = 270;
        let err = prepare(&o).unwrap_err().to_string();
        assert!(err.contains(":2:"), "{err}");
        assert!(!out.exists(), "a failed prepare creates no folder");
        assert!(!dir.path().join(".prep.staging").exists(), "and leaves no staging folder");
    }
}

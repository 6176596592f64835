//! Every sentence of a prepared corpus split, embedded once by a frozen encoder and kept:
//! `DATA/embeddings/SPLIT-KEY.safetensors` with `embeddings` `(N, D)` f32 (the sentences in
//! corpus order) and `doc_offsets` `(M + 1,)` i64 (document `i` owns rows
//! `doc_offsets[i]..doc_offsets[i + 1]`), beside `SPLIT-KEY.json` (encoder, counts, timing).
//!
//! `KEY` is the SHA-256 of the split's tokens, the corpus tokenizer's hash and the encoder's
//! weights and tokenizer, so a changed corpus or encoder never reads stale embeddings. Work is
//! staged in `DATA/embeddings/.SPLIT-KEY.parts/`, one file per chunk of sentences written
//! atomically, under a lock (`.SPLIT-KEY.lock`: one run at a time; a second says which holds
//! it). The staging folder's `stage.json` records the key and the chunk size, so a resumed run
//! continues with the chunks it started with (saying so when asked for another size) and a
//! folder of another key or layout is started afresh. Every part is checked when it is read
//! back (rows, width, no NaN; a damaged one is recomputed, it is derived data), the encoder's
//! output is refused if it holds NaN, and the final file appears whole (temp file + rename)
//! only when its rows equal the corpus's sentences.

use crate::encoder::{EncoderError, EncoderId, SentenceEncoder};
use plandiff_data::{index_documents, TextTokenizer, TokenSet};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(transparent)]
    Data(#[from] plandiff_data::DataError),
    #[error(transparent)]
    Encoder(#[from] EncoderError),
    #[error("{path}: {problem}")]
    File { path: String, problem: String },
}

fn file_err(path: &Path, problem: impl ToString) -> CacheError {
    CacheError::File { path: path.display().to_string(), problem: problem.to_string() }
}

/// The sentences of a split as text, and where each document's sentences start.
pub struct CorpusSentences {
    pub texts: Vec<String>,
    /// `doc_offsets[i]..doc_offsets[i + 1]` are document `i`'s sentences; `M + 1` entries.
    pub doc_offsets: Vec<i64>,
    /// SHA-256 of the split's tokens and the corpus tokenizer's hash.
    pub corpus_sha256: String,
}

/// Reads a prepared split's documents back into sentence texts (each sentence decoded alone,
/// as the corpus tokenizer wrote it).
pub fn corpus_sentences(data: &Path, split: &str) -> Result<CorpusSentences, CacheError> {
    let set = TokenSet::open(data, split)?;
    let tk = TextTokenizer::from_file(&data.join("tokenizer.json"))?;
    let mut h = Sha256::new();
    h.update(tk.hash().as_bytes());
    for t in &set.tokens {
        h.update(t.to_le_bytes());
    }
    let (mut texts, mut doc_offsets) = (Vec::new(), vec![0i64]);
    for d in index_documents(&set.tokens, tk.special()) {
        for &(a, b) in &d.sentences {
            texts.push(tk.decode_text(&set.tokens[a..b])?.trim().to_string());
        }
        doc_offsets.push(texts.len() as i64);
    }
    Ok(CorpusSentences { texts, doc_offsets, corpus_sha256: format!("{:x}", h.finalize()) })
}

/// What a finished cache holds (its `.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CacheInfo {
    pub split: String,
    pub key: String,
    pub encoder: EncoderId,
    pub corpus_sha256: String,
    pub sentences: usize,
    pub documents: usize,
    pub width: i64,
    /// Seconds spent encoding (all runs that built it) and sentences per second.
    pub seconds: f64,
    pub sentences_per_s: f64,
}

/// A split's embeddings, loaded.
pub struct CorpusEmbeddings {
    /// `(N, D)` f32 on the host, unit-length rows.
    pub embeddings: Tensor,
    pub doc_offsets: Vec<i64>,
    pub info: CacheInfo,
    pub path: PathBuf,
}

/// How [`embed_corpus`] runs.
#[derive(Debug, Clone, Copy)]
pub struct CacheOptions {
    /// Texts per encoder batch.
    pub batch: usize,
    /// Sentences per staged chunk (the unit of resume).
    pub chunk: usize,
    /// Show a progress bar (on a terminal).
    pub progress: bool,
    /// Stop with an error after staging this many chunks (an interrupted run, as tests make one).
    pub stop_after_chunks: Option<usize>,
}

impl Default for CacheOptions {
    fn default() -> Self {
        Self { batch: 128, chunk: 8192, progress: true, stop_after_chunks: None }
    }
}

/// A staging folder's record: what its parts are parts of.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Stage {
    key: String,
    chunk: usize,
    sentences: usize,
    width: i64,
}

/// Where a split's cache lives under `DATA/embeddings`.
pub struct CachePaths {
    pub file: PathBuf,
    pub info: PathBuf,
    pub parts: PathBuf,
    pub lock: PathBuf,
}

fn cache_key(corpus_sha256: &str, enc: &EncoderId) -> String {
    let mut h = Sha256::new();
    for part in [corpus_sha256, &enc.name, &enc.weights_sha256, &enc.tokenizer_sha256] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    format!("{:x}", h.finalize())
}

/// Where the cache of `split` with key `key` lives under `data`.
pub fn cache_paths(data: &Path, split: &str, key: &str) -> CachePaths {
    let dir = data.join("embeddings");
    let stem = format!("{split}-{}", &key[..16.min(key.len())]);
    CachePaths {
        file: dir.join(format!("{stem}.safetensors")),
        info: dir.join(format!("{stem}.json")),
        parts: dir.join(format!(".{stem}.parts")),
        lock: dir.join(format!(".{stem}.lock")),
    }
}

/// The staging folder's chunk size: the recorded one when `parts` holds a run of this `stage`
/// (save its chunk size), else `parts` is emptied and recorded afresh for `stage`.
fn staged_chunk(parts: &Path, stage: &Stage) -> Result<usize, CacheError> {
    let record = parts.join("stage.json");
    let found: Option<Stage> = std::fs::read_to_string(&record).ok().and_then(|t| serde_json::from_str(&t).ok());
    match found {
        Some(f) if Stage { chunk: stage.chunk, ..f.clone() } == *stage && f.chunk > 0 => {
            if f.chunk != stage.chunk {
                tracing::warn!(
                    "{}: continuing the interrupted run's chunks of {} sentences (asked for {}); its staged parts are kept",
                    parts.display(),
                    f.chunk,
                    stage.chunk
                );
            }
            return Ok(f.chunk);
        }
        Some(_) => {
            tracing::warn!("{}: staged parts of another corpus, encoder or layout; starting afresh", parts.display())
        }
        None if parts.exists() && !plandiff_data::is_empty_dir(parts) => {
            tracing::warn!("{}: staged parts without a record of their chunk size; starting afresh", parts.display())
        }
        None => {}
    }
    if parts.exists() {
        std::fs::remove_dir_all(parts).map_err(|e| file_err(parts, e))?;
    }
    std::fs::create_dir_all(parts).map_err(|e| file_err(parts, e))?;
    let json = serde_json::to_string(stage).map_err(|e| file_err(&record, e))?;
    write_atomic(&record, json.as_bytes())?;
    Ok(stage.chunk)
}

/// The cached embeddings of a split, computing what is missing first (resuming a staged run).
pub fn embed_corpus(
    enc: &SentenceEncoder,
    data: &Path,
    split: &str,
    opts: CacheOptions,
) -> Result<CorpusEmbeddings, CacheError> {
    let corpus = corpus_sentences(data, split)?;
    let id = enc.id()?;
    let key = cache_key(&corpus.corpus_sha256, &id);
    let CachePaths { file: path, info: info_path, parts, lock } = cache_paths(data, split, &key);
    if path.exists() && info_path.exists() {
        return load(&path, &info_path, &corpus);
    }
    let what = format!("embedding the {split} split");
    let _lock = plandiff_data::FileLock::acquire(&lock, &what, &format!("the {split} split's embedding cache"))?;
    if path.exists() && info_path.exists() {
        return load(&path, &info_path, &corpus); // finished by the run that held the lock
    }
    let n = corpus.texts.len();
    let stage = Stage { key: key.clone(), chunk: opts.chunk.max(1), sentences: n, width: enc.width() };
    let chunk = staged_chunk(&parts, &stage)?;
    let chunks: Vec<&[String]> = corpus.texts.chunks(chunk).collect();
    let pb = progress_bar(opts.progress, n as u64);
    let (t0, before) = (Instant::now(), previous_seconds(&parts));
    let mut all = Vec::with_capacity(chunks.len());
    for (i, texts) in chunks.iter().enumerate() {
        let part = parts.join(format!("part-{i:05}.safetensors"));
        let base = (i * chunk) as u64;
        if let Some(e) = read_part(&part, texts.len(), enc.width()) {
            pb.set_position(base + texts.len() as u64);
            all.push(e);
            continue;
        }
        if opts.stop_after_chunks.is_some_and(|k| i >= k) {
            return Err(file_err(&parts, format!("interrupted after {i} chunks; run again to resume")));
        }
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let e = enc.embed_sorted(&refs, opts.batch, &mut |n| pb.set_position(base + n as u64))?;
        if e.isnan().any().int64_value(&[]) != 0 {
            return Err(file_err(
                &part,
                format!("the sentence encoder wrote NaN for sentences {base}..; its weights are damaged: reinstall it with `make venv`"),
            ));
        }
        write_atomic_tensors(&part, &[("embeddings", &e)])?;
        let spent = before + t0.elapsed().as_secs_f64();
        std::fs::write(parts.join("seconds"), spent.to_string()).map_err(|e| file_err(&parts, e))?;
        all.push(e);
    }
    pb.finish_and_clear();
    let seconds = previous_seconds(&parts);
    let all =
        if all.is_empty() { Tensor::zeros([0, enc.width()], (Kind::Float, Device::Cpu)) } else { Tensor::cat(&all, 0) };
    if all.size() != [n as i64, enc.width()] {
        return Err(file_err(
            &parts,
            format!("the staged parts hold {:?} rows, not {n} sentences; delete the folder to rebuild", all.size()),
        ));
    }
    let info = CacheInfo {
        split: split.to_string(),
        key,
        encoder: id,
        corpus_sha256: corpus.corpus_sha256,
        sentences: n,
        documents: corpus.doc_offsets.len() - 1,
        width: enc.width(),
        seconds,
        sentences_per_s: if seconds > 0.0 { n as f64 / seconds } else { 0.0 },
    };
    let offsets = Tensor::from_slice(&corpus.doc_offsets);
    write_atomic_tensors(&path, &[("embeddings", &all), ("doc_offsets", &offsets)])?;
    let json = serde_json::to_string_pretty(&info).map_err(|e| file_err(&info_path, e))?;
    write_atomic(&info_path, json.as_bytes())?;
    std::fs::remove_dir_all(&parts).map_err(|e| file_err(&parts, e))?;
    tracing::info!(sentences = n, seconds, "embedded the {split} split into {}", path.display());
    Ok(CorpusEmbeddings { embeddings: all, doc_offsets: corpus.doc_offsets, info, path })
}

/// Seconds the staged run has spent so far (0 for a new one).
fn previous_seconds(parts: &Path) -> f64 {
    std::fs::read_to_string(parts.join("seconds")).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0.0)
}

fn progress_bar(on: bool, n: u64) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !on || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(n);
    let style = indicatif::ProgressStyle::with_template(
        "{spinner} embedding [{bar:30}] {pos}/{len} sentences, {per_sec}, eta {eta}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    pb.set_style(style.progress_chars("=> "));
    pb
}

fn load(path: &Path, info_path: &Path, corpus: &CorpusSentences) -> Result<CorpusEmbeddings, CacheError> {
    let offsets = &corpus.doc_offsets;
    let damaged = |p: &Path, m: String| {
        file_err(p, format!("{m}; delete {} and {} to rebuild", path.display(), info_path.display()))
    };
    let text = std::fs::read_to_string(info_path).map_err(|e| damaged(info_path, e.to_string()))?;
    let info: CacheInfo = serde_json::from_str(&text).map_err(|e| damaged(info_path, e.to_string()))?;
    if info.sentences != corpus.texts.len() || info.documents + 1 != offsets.len() {
        return Err(damaged(
            info_path,
            format!(
                "records {} sentences in {} documents, the corpus has {} in {}",
                info.sentences,
                info.documents,
                corpus.texts.len(),
                offsets.len().saturating_sub(1)
            ),
        ));
    }
    let named = Tensor::read_safetensors(path).map_err(|e| damaged(path, first_line(&e.to_string())))?;
    let get = |n: &str| named.iter().find(|(k, _)| k == n).map(|(_, t)| t.shallow_clone());
    let e = get("embeddings").ok_or_else(|| damaged(path, "no `embeddings` tensor".into()))?;
    if e.size() != [info.sentences as i64, info.width] || e.kind() != Kind::Float {
        return Err(damaged(path, format!("holds {:?}, not {} sentences", e.size(), info.sentences)));
    }
    Ok(CorpusEmbeddings { embeddings: e, doc_offsets: offsets.to_vec(), info, path: path.to_path_buf() })
}

/// A staged part of `rows` sentences of width `width`, if it is there and whole; a damaged
/// one (unreadable, another shape, NaN) is removed, with a warning, to be computed again.
fn read_part(path: &Path, rows: usize, width: i64) -> Option<Tensor> {
    if !path.exists() {
        return None;
    }
    let problem = match Tensor::read_safetensors(path) {
        Ok(named) => match named.into_iter().find(|(k, _)| k == "embeddings").map(|(_, t)| t) {
            Some(t) if t.size() != [rows as i64, width] => format!("holds {:?}, not {rows} x {width}", t.size()),
            Some(t) if t.kind() != Kind::Float || t.isnan().any().int64_value(&[]) != 0 => {
                "holds NaN or not f32".into()
            }
            Some(t) => return Some(t),
            None => "no `embeddings` tensor".into(),
        },
        Err(e) => first_line(&e.to_string()),
    };
    tracing::warn!("{}: damaged staged part ({problem}); computing it again", path.display());
    let _ = std::fs::remove_file(path);
    None
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

/// Writes tensors to `path` through a temporary file in the same folder and a rename.
fn write_atomic_tensors(path: &Path, tensors: &[(&str, &Tensor)]) -> Result<(), CacheError> {
    let tmp = path.with_extension("tmp");
    Tensor::write_safetensors(tensors, &tmp).map_err(|e| file_err(&tmp, first_line(&e.to_string())))?;
    std::fs::rename(&tmp, path).map_err(|e| file_err(path, e))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| file_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| file_err(path, e))
}

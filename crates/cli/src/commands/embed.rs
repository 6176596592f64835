use crate::args::EmbedArgs;
use crate::util::parse_device;
use anyhow::{Context, Result};
use plandiff_sentence::{embed_corpus, find_encoder, CacheOptions, SentenceEncoder};
use std::process::ExitCode;

pub fn run(a: EmbedArgs) -> Result<ExitCode> {
    if !(1..=4096).contains(&a.batch) {
        anyhow::bail!("--batch {} must be in 1..=4096", a.batch);
    }
    if !(1..=1 << 20).contains(&a.chunk) {
        anyhow::bail!("--chunk {} must be in 1..=1048576", a.chunk);
    }
    let device = parse_device(&a.device)?;
    let dir = find_encoder(a.encoder.as_deref())?;
    let enc = SentenceEncoder::load(&dir, device).with_context(|| format!("--encoder {}", dir.display()))?;
    let opts = CacheOptions { batch: a.batch, chunk: a.chunk, progress: true, stop_after_chunks: None };
    let c = embed_corpus(&enc, &a.data, &a.split, opts).with_context(|| format!("--data {}", a.data.display()))?;
    if a.json {
        let mut v = serde_json::to_value(&c.info)?;
        v["path"] = c.path.display().to_string().into();
        crate::outln!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let i = &c.info;
        crate::outln!(
            "{}: {} sentences of {} documents, width {}, by {} ({:.0} s, {:.1} sentences/s)",
            c.path.display(),
            i.sentences,
            i.documents,
            i.width,
            i.encoder.name,
            i.seconds,
            i.sentences_per_s
        );
    }
    Ok(ExitCode::SUCCESS)
}

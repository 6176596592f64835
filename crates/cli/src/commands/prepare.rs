use crate::args::PrepareArgs;
use crate::util::stderr_is_tty;
use anyhow::Result;
use plandiff_data::{prepare, PrepareOptions};
use std::process::ExitCode;

pub fn run(a: PrepareArgs) -> Result<ExitCode> {
    let mut o = PrepareOptions::new(a.input, a.out.clone());
    o.vocab_size = a.vocab_size;
    o.lowercase = a.lowercase;
    o.tokenizer = a.tokenizer;
    o.valid_fraction = a.valid_fraction;
    o.tokenizer_sample_bytes = a.tokenizer_sample_mb << 20;
    o.progress = stderr_is_tty();
    o.force = a.force;
    let st = prepare(&o)?;
    if a.json {
        crate::outln!("{}", serde_json::to_string_pretty(&st)?);
    } else {
        crate::outln!(
            "prepared {}: {} train documents ({} sentences, {} tokens), {} valid documents ({} tokens); vocab {}; {:.1} MB in {:.1} s ({:.2} MB/s)",
            a.out.display(),
            st.train.documents,
            st.train.sentences,
            st.train.tokens,
            st.valid.documents,
            st.valid.tokens,
            st.vocab_size,
            st.input_bytes as f64 / 1e6,
            st.seconds,
            st.mb_per_s
        );
    }
    Ok(ExitCode::SUCCESS)
}

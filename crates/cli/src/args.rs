//! Command-line arguments (clap derive).

use clap::builder::{PossibleValue, PossibleValuesParser};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

pub use crate::flags::{DistArgs, SamplingArgs};

/// `plandiff train STAGE`: the stages' one list, with each one's description.
fn stage_values() -> PossibleValuesParser {
    PossibleValuesParser::new(plandiff_train::STAGES.iter().map(|s| PossibleValue::new(s.name()).help(s.about())))
}

/// `--mode`: the generation modes' one list, with each one's description.
fn mode_values() -> PossibleValuesParser {
    PossibleValuesParser::new(plandiff_pipeline::MODES.iter().map(|m| PossibleValue::new(m.name).help(m.about)))
}

#[derive(Parser, Debug)]
#[command(
    name = "plandiff",
    version,
    about = "Plan-then-write text generation: a diffusion planner over sentence latents and an autoregressive decoder, on libtorch"
)]
pub struct Cli {
    /// Log level; RUST_LOG overrides it.
    #[arg(long, global = true, default_value = "info", value_parser = ["error", "warn", "info", "debug", "trace"])]
    pub log_level: String,
    /// Intra-op CPU threads for libtorch, 1 to 4x the machine's cores. Default: all cores for the
    /// batch jobs (`train`, `prepare`, `ab`, `eval`); 1 for the rest (at batch 1 a small model is bound
    /// by op dispatch; 2 threads beside a busy process took 51 s where 1 took 0.9 s).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Turn text files into a tokenizer and token shards.
    Prepare(PrepareArgs),
    /// Train a stage of a model bundle.
    Train(TrainArgs),
    /// Generate text from a bundle.
    Generate(GenerateArgs),
    /// Edit a text in place, every other byte kept: re-plan sentences A..B by inpainting and
    /// rewrite them (hybrid), or remask a span or the model's own weakest tokens and denoise
    /// them (masked).
    Edit(EditArgs),
    /// Validation loss and perplexity of a bundle on prepared data, or text metrics of any
    /// text set (--metrics).
    Eval(Box<EvalArgs>),
    /// A/B comparison of generation arms (hybrid, ar, oracle, diffusion, masked) on the same prompts and seeds,
    /// with paired statistics, results.json and a self-contained report.html.
    Ab(AbArgs),
    /// Embed every sentence of a prepared corpus split with the frozen sentence encoder
    /// (all-MiniLM-L6-v2), once: cached in DATA/embeddings, keyed by the corpus and the
    /// encoder, resumable after an interruption.
    Embed(EmbedArgs),
    /// Describe a bundle.
    Info(InfoArgs),
    /// Write a compact copy of a bundle for shipping: weights stored as fp16 (or bf16),
    /// no optimizer or trainer state. Loading restores f32.
    Export(ExportArgs),
    /// Print a diffusion noise schedule (betas, alphas_cumprod, SNR per timestep).
    Schedule(ScheduleArgs),
}

#[derive(Args, Debug)]
pub struct PrepareArgs {
    /// Text files (blank-line separated paragraphs) or JSONL files with a "text" field, or
    /// folders of them.
    #[arg(long, required = true, num_args = 1..)]
    pub input: Vec<PathBuf>,
    /// Output folder (tokenizer.json, train-*.bin, valid-*.bin, stats.json).
    #[arg(long)]
    pub out: PathBuf,
    /// BPE vocabulary size, special tokens included.
    #[arg(long, default_value_t = 4096)]
    pub vocab_size: usize,
    /// Lowercase the text (the trained tokenizer then lowercases prompts too).
    #[arg(long)]
    pub lowercase: bool,
    /// Use this tokenizer.json instead of training one.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Share of documents held out for validation.
    #[arg(long, default_value_t = 0.01)]
    pub valid_fraction: f64,
    /// Train the BPE on at most this many MB of the input.
    #[arg(long, default_value_t = 64)]
    pub tokenizer_sample_mb: u64,
    /// Print stats.json to stdout.
    #[arg(long)]
    pub json: bool,
    /// Replace --out even when it holds something `prepare` did not write (e.g. a bundle).
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// The stage to train (the planner needs the autoencoder in the same --out first).
    #[arg(value_parser = stage_values())]
    pub stage: String,
    /// Run config (TOML), e.g. configs/tiny.toml. Not needed with --resume.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Prepared data folder (from `plandiff prepare`).
    #[arg(long)]
    pub data: PathBuf,
    /// Bundle folder to write (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Continue the run saved in --out exactly where it stopped.
    #[arg(long)]
    pub resume: bool,
    /// Total optimizer steps (overrides train.max_steps; sets the LR schedule length).
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Stop after this step with a checkpoint, as if interrupted; resume later with --resume.
    #[arg(long)]
    pub stop_at: Option<u64>,
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Overrides train.seed (weights init, data order, dropout).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print the final report as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub dist: DistArgs,
}

/// `plandiff generate`: the flags every mode shares. Each mode's own flags (`--steps`,
/// `--show-plan`, `--template`, ...) are its settings' (see `plandiff_pipeline::registry`),
/// added to this command by `main` from the modes' list.
#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Bundle folder.
    #[arg(long)]
    pub checkpoint: PathBuf,
    #[arg(long, default_value = "ar", value_parser = mode_values())]
    pub mode: String,
    /// Prompt text.
    #[arg(long, conflicts_with = "prompt_file")]
    pub prompt: Option<String>,
    /// Read the prompt from a UTF-8 file.
    #[arg(long)]
    pub prompt_file: Option<PathBuf>,
    /// Most new tokens per sample.
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
    /// Stop after this many new sentences (hybrid: sentences to plan, default 8).
    #[arg(long)]
    pub sentences: Option<usize>,
    /// Mode ar: never end the document (no `<eos>`), so --sentences is reached unless --max-tokens
    /// comes first (hybrid always writes every planned sentence).
    #[arg(long)]
    pub no_eos: bool,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Samples of the prompt, generated as one batch.
    #[arg(long, default_value_t = 1)]
    pub num_samples: usize,
    /// Print tokens as they are generated.
    #[arg(long)]
    pub stream: bool,
    #[arg(long)]
    pub json: bool,
    #[arg(long, default_value = "auto")]
    pub device: String,
}

/// `plandiff edit`: the flags every edit mode reads; each mode's own (`--guidance`, `--chars`,
/// `--revise`, ...) come with its edit operation in the modes' list, added by `main`.
#[derive(Args, Debug)]
pub struct EditArgs {
    /// Bundle folder (hybrid needs stages autoencoder and planner; masked needs masked).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// hybrid: re-plan and rewrite sentences; masked: remask a span or the weakest tokens
    /// and denoise them with the rest fixed.
    #[arg(long, default_value = "hybrid", value_parser = clap::builder::PossibleValuesParser::new(
        plandiff_pipeline::registry::edit_modes().map(|(name, _)| name)
    ))]
    pub mode: String,
    /// UTF-8 text file to edit.
    #[arg(long)]
    pub input: PathBuf,
    /// Sentences to rewrite, 1-based and inclusive: `A..B` (or a single `A`).
    #[arg(long)]
    pub rewrite: Option<String>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Most tokens per rewritten sentence.
    #[arg(long, default_value_t = 64)]
    pub max_tokens: usize,
    /// Print `{"text", "rewritten": [{"sentence", "before", "after"}], ...}`.
    #[arg(long)]
    pub json: bool,
    #[arg(long, default_value = "auto")]
    pub device: String,
}

/// `plandiff ab`: the harness's flags; the arms' modes' own flags (`--steps`, `--remasking`,
/// ...) are added by `main` from the modes' list, each read by the arms that take it.
#[derive(Args, Debug)]
pub struct AbArgs {
    /// Bundle of the arms that name none, of the judge (its `ar` model) and of the sentence
    /// encoder that scores coherence.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Prompts: a text file, one per line, or JSONL with "prompt" and optional "reference"
    /// (the reference continuation: human baseline and the `oracle` arm's plan).
    #[arg(long)]
    pub prompts: PathBuf,
    /// Arms, comma-separated; the first is compared with each other one. `ar`, `hybrid`,
    /// `oracle`, `diffusion`, `masked`, each optionally with its own denoising steps
    /// (`masked@64`) and from another bundle (`ar=path/to/bundle`).
    #[arg(long, default_value = "hybrid,ar")]
    pub arms: String,
    /// Samples per prompt and arm.
    #[arg(long, default_value_t = 4)]
    pub samples: usize,
    /// New sentences per sample.
    #[arg(long, default_value_t = 8)]
    pub sentences: usize,
    /// Prompt i uses seed S + i in every arm.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Folder for results.json and report.html: new, empty, or one `ab` wrote before.
    #[arg(long, default_value = "ab-results")]
    pub out: PathBuf,
    /// Write into --out even when it holds files `ab` did not write (only results.json,
    /// report.html and its mark are replaced).
    #[arg(long)]
    pub force: bool,
    /// The fluency judge's GGUF file (fluency_ppl); default: the one `make judge-smollm`
    /// installs in .venv. A missing or damaged file stops the A/B before it generates.
    #[arg(long)]
    pub fluency_judge: Option<PathBuf>,
    /// Bundle whose `ar` model gives self perplexity (self_ppl); default: --checkpoint.
    #[arg(long)]
    pub judge: Option<PathBuf>,
    /// The folder of the independent sentence encoder (model.safetensors, tokenizer.json of
    /// all-mpnet-base-v2 or all-MiniLM-L6-v2) behind relevance, coherence, first_last, restarts
    /// and MAUVE; default: all-mpnet-base-v2 from .venv/judge (`make judge-mpnet`), else
    /// all-MiniLM-L6-v2 with a note (without either those metrics are left out, with a note).
    /// With all-mpnet-base-v2, all-MiniLM-L6-v2 scores relevance, coherence and first_last
    /// again as *_minilm.
    #[arg(long)]
    pub judge_encoder: Option<PathBuf>,
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Bootstrap resamples and permutations per metric.
    #[arg(long, default_value_t = 2000)]
    pub resamples: usize,
    /// Print results.json to stdout instead of the Markdown table.
    #[arg(long)]
    pub json: bool,
    #[arg(long, default_value = "auto")]
    pub device: String,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Which model of the bundle: `ar` (loss, perplexity), `autoencoder` (perplexity and
    /// token accuracy with the oracle plan and with the null plan) or `planner` (denoising
    /// loss; cosine of sampled latents to the true ones against chance and copy baselines)
    /// or `diffusion` (rounding accuracy on clean embeddings, validation loss). Default:
    /// every stage the bundle holds, in training order (with --json, one JSON document per
    /// stage, each with its "stage").
    #[arg(long)]
    pub stage: Option<String>,
    /// Prepared data folder; with --metrics, text files or a folder of them (documents are
    /// blank-line separated paragraphs, or JSONL "text" records).
    #[arg(long)]
    pub data: PathBuf,
    /// Text metrics of the documents in --data instead of model losses: comma-separated
    /// from rep_2, rep_3, rep_4, distinct_1, distinct_2, distinct_3, self_bleu, fluency_ppl
    /// (the independent fluency judge SmolLM2-135M, of each document's text after its first two
    /// sentences), self_ppl (the bundle's ar model), relevance, coherence, first_last (the
    /// independent sentence encoder; a document's first two sentences are its prompt),
    /// plan_space_coherence (the bundle's sentence encoder), or `all`.
    #[arg(long)]
    pub metrics: Option<String>,
    /// With --metrics: the fluency judge's GGUF file; default: the one `make judge-smollm`
    /// installs in .venv.
    #[arg(long)]
    pub fluency_judge: Option<PathBuf>,
    /// With --metrics: use at most this many documents.
    #[arg(long, default_value_t = 1000)]
    pub max_docs: usize,
    /// With --metrics: the folder of the judge's sentence encoder (model.safetensors,
    /// tokenizer.json); default: all-mpnet-base-v2 from .venv/judge, else all-MiniLM-L6-v2.
    #[arg(long)]
    pub judge_encoder: Option<PathBuf>,
    /// The repair benchmark of the bundle's masked model instead of model losses: sentences
    /// of the stories in --data (text files or JSONL "text" records, e.g. the 300 held-out
    /// stories), each after its previous sentence, with words corrupted by kind (random: a
    /// word of the corpus; swap: another word of the same story; close: the nearest word in
    /// the bundle's ar token embeddings; clean: none), revised as `edit --mode masked
    /// --revise-fraction` does; reports the share of corrupted words restored and of clean
    /// words changed. Comma-separated kinds, or `all`.
    #[arg(long)]
    pub repair: Option<String>,
    /// With --repair: cases per kind.
    #[arg(long, default_value_t = 300)]
    pub per_kind: usize,
    /// With --repair: corrupted words per case.
    #[arg(long, default_value_t = 1)]
    pub corrupt_words: usize,
    /// With --repair: remask the lowest fraction F of the tokens by log-probability.
    #[arg(long, default_value_t = 0.15)]
    pub revise_fraction: f64,
    /// With --repair: remask the tokens whose log-probability is below P instead (as
    /// `edit --revise P`).
    #[arg(long, allow_negative_numbers = true)]
    pub revise_below: Option<f64>,
    /// With --repair: revision rounds (each keeps at most one change).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// With --repair: a change is kept only when it raises the text's score by G nats.
    #[arg(long, default_value_t = 8.0)]
    pub min_gain: f64,
    /// With --repair: also try insert and delete edits (as `edit --insert-delete`).
    #[arg(long)]
    pub insert_delete: bool,
    /// With --repair: the score a kept change must raise, `ar` or `pll` (as `edit --score`;
    /// default: ar+visible, or ar when the masked model was not trained on substitutes).
    #[arg(long)]
    pub score: Option<String>,
    /// With --repair: the refill's sampling temperature (0: the model's likeliest tokens).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// With --repair: the seed of the corruptions and the refills.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// With --stage planner: the planner's steering, as `generate --mode hybrid` takes it.
    #[command(flatten)]
    pub steer: plandiff_pipeline::hybrid::PlanSteering,
    #[arg(long, default_value = "valid")]
    pub split: String,
    /// Tokens per window (default: the training seq_len).
    #[arg(long)]
    pub seq_len: Option<usize>,
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Evaluate at most this many batches (default: the whole split).
    #[arg(long)]
    pub max_batches: Option<usize>,
    #[arg(long)]
    pub json: bool,
    #[arg(long, default_value = "auto")]
    pub device: String,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Folder for the exported bundle (another than --checkpoint).
    #[arg(long)]
    pub out: PathBuf,
    /// Storage dtype of the weights: f16, bf16 or f32.
    #[arg(long, default_value = "f16")]
    pub dtype: String,
    /// Replace --out even when it holds something `export` did not write.
    #[arg(long)]
    pub force: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct EmbedArgs {
    /// Prepared data folder (from `plandiff prepare`).
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, default_value = "train", value_parser = ["train", "valid"])]
    pub split: String,
    /// The sentence encoder's folder (model.safetensors, tokenizer.json); default: the one
    /// `make` installs into .venv.
    #[arg(long)]
    pub encoder: Option<PathBuf>,
    /// Sentences per encoder batch (1 to 4096).
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// Sentences per staged chunk, the unit an interrupted run resumes from (1 to 1048576).
    #[arg(long, default_value_t = 8192)]
    pub chunk: usize,
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Print the cache's description as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ScheduleArgs {
    /// linear, scaled_linear, squaredcos_cap_v2 (cosine) or sqrt (Diffusion-LM).
    #[arg(long, default_value = "squaredcos_cap_v2")]
    pub beta_schedule: String,
    /// Training timesteps T.
    #[arg(long, default_value_t = 1000)]
    pub timesteps: usize,
    #[arg(long, default_value_t = 1e-4)]
    pub beta_start: f64,
    #[arg(long, default_value_t = 0.02)]
    pub beta_end: f64,
    /// Rescale to zero terminal SNR (Lin et al. 2023).
    #[arg(long)]
    pub rescale_zero_snr: bool,
    /// Print every timestep (default: about 50 rows).
    #[arg(long)]
    pub all: bool,
    /// `{"betas": [...], "alphas_cumprod": [...], "snr": [...]}`.
    #[arg(long)]
    pub json: bool,
}

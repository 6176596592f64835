//! Mode `ar`: prompt -> sentences -> tokens -> KV-cached sampling -> text.

use crate::mode::{
    settings_from, ArmInput, ArmVariant, Checked, Event, GenOptions, GenRequest, Generation, Generator, Mode,
    ModeSettings,
};
use crate::text::{ends_sentence, TextStream};
use crate::{PipelineError, Result};
use plandiff_bundle::{stage, Bundle, LoadedDecoder, StageConfigFile};
use plandiff_data::{split_sentences, TextTokenizer};
use plandiff_decoder::{generate, Decoder, GenerateOptions};
use plandiff_layers::FieldError;
use std::path::Path;
use tch::{nn, Device};

pub const MODE: Mode = Mode {
    name: "ar",
    about: "the decoder alone (plain autoregressive), stage `ar`",
    flags: <ArSettings as clap::Args>::augment_args,
    settings: settings_from::<ArSettings>,
    load: |path, device| Ok(Box::new(ArGenerator::load(path, device)?)),
    edit: None,
    arms: &[ArmVariant {
        name: "ar-outline",
        about: "ar given the outline's lines as text before the prompt (the outline arm's baseline)",
        input: ArmInput::OutlineBeforePrompt,
    }],
};

/// Mode `ar` reads only the flags every token-by-token mode shares (sampling, lengths).
#[derive(clap::Args, Debug, Clone, Copy, Default, PartialEq)]
pub struct ArSettings {}

impl Checked for ArSettings {
    fn check(&self) -> Result<()> {
        Ok(())
    }
}

impl ModeSettings for ArSettings {}

pub struct ArGenerator {
    model: Decoder,
    tokenizer: TextTokenizer,
    config: StageConfigFile,
    _vs: nn::VarStore,
}

impl ArGenerator {
    /// Loads `BUNDLE/ar` (every check of [`Bundle::load_decoder`] applies).
    pub fn load(bundle: &Path, device: Device) -> Result<Self> {
        let LoadedDecoder { model, vs, config, tokenizer } = Bundle::new(bundle).load_decoder(stage::AR, device)?;
        Ok(Self { model, tokenizer, config, _vs: vs })
    }

    pub fn config(&self) -> &StageConfigFile {
        &self.config
    }

    pub fn model(&self) -> &Decoder {
        &self.model
    }

    /// `<bos> s1 <sep> s2 <sep> ...`; a prompt whose last sentence is unfinished is left
    /// open so the model completes it. Long prompts keep their last tokens.
    pub fn encode_prompt(&self, prompt: &str, max_new: usize) -> Result<Vec<i64>> {
        if prompt.trim().is_empty() {
            return Err(PipelineError::Invalid("the prompt is empty; give some text to continue".into()));
        }
        let sentences = split_sentences(prompt);
        let ids = self.tokenizer.encode_document(&sentences, false)?;
        let mut ids: Vec<i64> = ids.into_iter().map(i64::from).collect();
        if ends_sentence(prompt) {
            ids.push(self.tokenizer.special().sep as i64);
        }
        let room = (self.model.config().max_seq_len as usize)
            .saturating_sub(max_new.min(self.model.config().max_seq_len as usize / 2));
        if ids.len() > room {
            tracing::warn!(
                tokens = ids.len(),
                kept = room,
                "the prompt is longer than the context allows; keeping its end"
            );
            let cut = ids.len() - room + 1;
            let mut kept = vec![ids[0]];
            kept.extend_from_slice(&ids[cut..]);
            ids = kept;
        }
        Ok(ids)
    }

    fn decode_options(&self, opts: &GenOptions) -> GenerateOptions {
        let sp = self.tokenizer.special();
        let mut banned = vec![sp.bos as i64, sp.pad as i64];
        if opts.no_eos {
            banned.push(sp.eos as i64);
        }
        GenerateOptions {
            max_new_tokens: opts.max_tokens,
            max_sentences: opts.sentences,
            eos_id: sp.eos as i64,
            sep_id: sp.sep as i64,
            pad_id: sp.pad as i64,
            banned,
        }
    }
}

impl Generator for ArGenerator {
    /// Writes `req.samples` samples of one prompt in one batch.
    fn generate(&self, req: &GenRequest, on: &mut dyn FnMut(Event)) -> Result<Vec<Generation>> {
        req.refuse_given(MODE.name)?;
        let opts = &req.gen;
        opts.sampling.validate()?;
        if opts.max_tokens == 0 {
            return Err(FieldError::new("max_tokens", 0, "must be >= 1").into());
        }
        let ids = self.encode_prompt(req.prompt, opts.max_tokens)?;
        let sp = self.tokenizer.special();
        let gopts = self.decode_options(opts);
        let mut lp = crate::text::token_sampler(&self.tokenizer, opts.sampling, opts.seed, &ids);
        let prompts = vec![ids; req.samples.max(1)];
        let mut stream = TextStream::new(&self.tokenizer, req.prompt, prompts.len(), opts.stream);
        let out = generate(&self.model, &prompts, None, &mut lp, &gopts, |row, tok| stream.token(row, tok, on));
        let seconds = stream.seconds();
        let mut gens = Vec::with_capacity(out.tokens.len());
        for (toks, stop) in out.tokens.iter().zip(&out.stop) {
            let ids: Vec<u32> = toks.iter().map(|&t| t as u32).collect();
            let sentences = ids
                .split(|&t| t == sp.sep || t == sp.eos)
                .map(|s| self.tokenizer.decode_text(s))
                .collect::<std::result::Result<Vec<_>, _>>()?
                .into_iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            gens.push(stream.finish(toks, sentences, *stop, seconds)?);
        }
        Ok(gens)
    }

    fn settings(&self, _req: &GenRequest) -> Result<serde_json::Map<String, serde_json::Value>> {
        Ok(serde_json::Map::new())
    }
}

//! Stage `ar`'s model: a plain decoder, loaded with every check.

use crate::format::StageConfigFile;
use crate::store::Bundle;
use crate::weights::load_weights;
use crate::{ModelConfig, Result};
use plandiff_data::TextTokenizer;
use plandiff_decoder::Decoder;
use tch::{nn, Device};

pub struct LoadedDecoder {
    pub model: Decoder,
    pub vs: nn::VarStore,
    pub config: StageConfigFile,
    pub tokenizer: TextTokenizer,
}

impl Bundle {
    /// Loads a decoder stage with every check: the folder, config kind and version,
    /// tokenizer hash and vocabulary, tensor names and shapes.
    pub fn load_decoder(&self, kind: &str, device: Device) -> Result<LoadedDecoder> {
        let b = Bundle::open(self.root())?;
        let config = b.read_config(kind)?;
        let tokenizer = b.load_tokenizer()?;
        b.check_tokenizer(&tokenizer, kind, &config.tokenizer_hash, Some(config.model.vocab_size))?;
        crate::weights::check_fits(&b.weights_path(kind), config.model.min_parameters())?;
        let mut vs = nn::VarStore::new(device);
        let model = Decoder::new(vs.root(), &config.model);
        load_weights(&mut vs, &b.weights_path(kind))?;
        Ok(LoadedDecoder { model, vs, config, tokenizer })
    }
}

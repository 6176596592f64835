//! The model bundle (docs/design.md, section 5): what a trained model is on disk, and the models
//! loaded from it for inference.
//!
//! ```text
//! BUNDLE/tokenizer.json
//! BUNDLE/<stage>/config.json  model.safetensors  [optimizer.safetensors trainer_state.json]
//! ```
//!
//! Holds: the format and its version ([`FORMAT_VERSION`], [`StageConfigFile`],
//! [`Provenance`], [`TrainerState`]), reading and writing weights ([`weights`]), the atomic
//! stage save ([`Bundle::save_stage`]), the one tokenizer check ([`Bundle::check_tokenizer`]),
//! and the loaders that hand a stage's checked config and weights to its model: the plain
//! decoder ([`LoadedDecoder`]), the [`Autoencoder`], the planner ([`LoadedPlanner`]; the model
//! and its sampling are `plandiff_planner::Planner`), the [`DiffusionBundle`] and the masked
//! model ([`LoadedMasked`]).
//!
//! May depend on the model crates (`layers`, `diffusion`, `data`, `decoder`, `planner`,
//! `embedding`, `masked`), never on `train`, `pipeline`, `eval` or `cli`: both training and inference
//! sit on top of it (`cli > eval > pipeline > bundle`, `cli > train > bundle`).

pub mod autoencoder;
pub mod decoder;
pub mod diffusion;
pub mod error;
pub mod format;
pub mod fsutil;
pub mod lock;
pub mod masked;
pub mod planner;
pub mod settings;
pub mod store;
pub mod weights;

pub use autoencoder::{load_autoencoder, Autoencoder, LoadedAutoencoder, PlanEncoder};
pub use decoder::LoadedDecoder;
pub use diffusion::{load_diffusion, DiffusionBundle, DiffusionModel, LoadedDiffusion, TextSamplingDefaults};
pub use error::{BundleError, ModelConfigError, Result};
pub use format::{ExportProvenance, ModelConfig, Objective, Provenance, StageConfigFile, TrainerState, FORMAT_VERSION};
pub use lock::BundleLock;
pub use masked::{load_masked, LoadedMasked, MaskedModel, MaskedSamplingDefaults};
pub use planner::{load_planner, plan_space_sha256, HybridDefaults, LoadedPlanner, OutlineDefaults, PlannerModel};
pub use settings::{Distill, LatentNoise, PlanSection, TrainConfig};
pub use store::{open_split, Bundle};

/// The file a bundle keeps its training corpus's words in (the invented-word check;
/// `scripts/word_list.py` writes it).
pub const WORDS_FILE: &str = "words.txt";
pub use weights::{load_weights, read_weights, save_weights};

/// Stage names of the bundle's folders that the inference models load from.
pub mod stage {
    pub const AR: &str = "ar";
    pub const AUTOENCODER: &str = "autoencoder";
    pub const PLANNER: &str = "planner";
    pub const DIFFUSION: &str = "diffusion";
    pub const MASKED: &str = "masked";
}

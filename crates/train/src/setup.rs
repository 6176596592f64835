//! What a run is before its model exists: the checks of a fresh run or a resume, and the
//! bundle's writer lock.

use crate::config::{PlanSection, TrainConfig};
use crate::run::TrainArgs;
use crate::{Result, TrainError};
use plandiff_bundle::{Bundle, BundleLock, ModelConfig, StageConfigFile, TrainerState, FORMAT_VERSION};
use plandiff_data::TextTokenizer;
use serde::de::DeserializeOwned;

/// The stage's `[kind]` section of `--config` for a fresh run; `None` on resume (a resumed
/// run takes its config from the checkpoint) or without a config.
pub(crate) fn fresh_section<T: DeserializeOwned>(args: &TrainArgs, kind: &str) -> Result<Option<T>> {
    match &args.config {
        Some(c) if !args.resume => Ok(Some(c.section::<T>(kind)?)),
        _ => Ok(None),
    }
}

/// A run's identity before its model exists.
pub(crate) struct RunSetup<M: ModelConfig = plandiff_decoder::DecoderConfig> {
    pub bundle: Bundle,
    /// The bundle's writer lock: taken here on resume, before the first write on a fresh run.
    pub lock: Option<BundleLock>,
    pub tokenizer: TextTokenizer,
    /// `Some` on resume: the checkpoint's config.
    pub resumed: Option<StageConfigFile<M>>,
    pub state: TrainerState,
}

/// Shared checks of a fresh run or a resume: tokenizer of the data against the bundle's,
/// an existing stage only with `--resume`, the seed and max-steps overrides.
pub(crate) fn setup_run<M: ModelConfig>(
    args: &TrainArgs,
    kind: &str,
    fresh: Option<(TrainConfig, Option<PlanSection>)>,
) -> Result<RunSetup<M>> {
    let bundle = Bundle::new(&args.out);
    let tokenizer = TextTokenizer::from_file(&args.data.join("tokenizer.json")).map_err(|e| {
        TrainError::Invalid(format!("--data {}: {e} (make the folder with `plandiff prepare`)", args.data.display()))
    })?;
    if args.resume {
        return resume_setup(args, kind, bundle, tokenizer);
    }
    let (mut train, plan) = fresh.ok_or_else(|| {
        TrainError::Invalid("--config is required for a new run (e.g. --config configs/tiny.toml)".into())
    })?;
    if let Some(m) = args.max_steps {
        train.max_steps = m;
    }
    if let Some(s) = args.seed {
        train.seed = s;
    }
    train.validate()?;
    if bundle.has_stage(kind) {
        return Err(TrainError::Invalid(format!(
            "{} already holds an `{kind}` model; pass --resume to continue it, or choose another --out",
            args.out.display()
        )));
    }
    if bundle.tokenizer_path().exists() {
        let existing = bundle.load_tokenizer()?;
        if existing.hash() != tokenizer.hash() {
            return Err(TrainError::Invalid(format!(
                "{} holds another tokenizer than --data {}; every model of a bundle shares one tokenizer, choose another --out",
                args.out.display(),
                args.data.display()
            )));
        }
    }
    let state = TrainerState {
        format_version: FORMAT_VERSION,
        step: 0,
        tokens_seen: 0,
        seed: train.seed,
        train,
        plan,
        data: args.data.display().to_string(),
        elapsed_seconds: 0.0,
        last_train_loss: None,
        last_val_loss: None,
        world_size: args.world.size(),
    };
    Ok(RunSetup { bundle, lock: None, tokenizer, resumed: None, state })
}

/// The checks of a resume: the checkpoint's config and state, against the data and flags.
fn resume_setup<M: ModelConfig>(
    args: &TrainArgs,
    kind: &str,
    bundle: Bundle,
    tokenizer: TextTokenizer,
) -> Result<RunSetup<M>> {
    // Only rank 0 writes, so only it holds the lock.
    let lock = match args.world.is_main() {
        true => Some(BundleLock::acquire(bundle.root(), &format!("training {kind}"))?),
        false => None,
    };
    let cfg = bundle.read_config_as::<M>(kind)?;
    plandiff_bundle::weights::check_fits(&bundle.weights_path(kind), cfg.model.min_parameters())?;
    let mut state = bundle.read_trainer_state(kind)?;
    if cfg.tokenizer_hash != tokenizer.hash() {
        return Err(TrainError::Invalid(format!(
            "--data {} was tokenized with another tokenizer than the checkpoint in {}; resume with the data it was trained on",
            args.data.display(),
            args.out.display()
        )));
    }
    if args.config.is_some() {
        tracing::warn!("--resume: using the architecture and training config stored in the checkpoint, not --config");
    }
    if let Some(s) = args.seed {
        if s != state.seed {
            return Err(TrainError::Invalid(format!(
                "--seed {s} differs from the checkpoint's seed {}; a resumed run keeps its seed (leave --seed out)",
                state.seed
            )));
        }
    }
    if let Some(m) = args.max_steps {
        state.train.max_steps = m;
    }
    regroup(&mut state, args.world.size())?;
    Ok(RunSetup { bundle, lock, tokenizer, resumed: Some(cfg), state })
}

/// A resume on `world_size` ranks keeps the checkpoint's global batch (per-rank batch x
/// ranks) and so its data order: the per-rank batch becomes global / `world_size`.
fn regroup(state: &mut TrainerState, world_size: usize) -> Result<()> {
    let before = state.world_size.max(1);
    if before == world_size {
        return Ok(());
    }
    let global = state.train.batch_size * before;
    if !global.is_multiple_of(world_size) {
        return Err(TrainError::Invalid(format!(
            "the checkpoint's global batch is {global} ({} per rank x {before} ranks), which {world_size} ranks cannot split evenly; resume on a number of ranks that divides {global}",
            state.train.batch_size
        )));
    }
    tracing::info!(
        "resuming a {before}-rank run on {world_size} ranks: batch_size {} per rank (global batch {global} as before)",
        global / world_size
    );
    state.train.batch_size = global / world_size;
    state.world_size = world_size;
    Ok(())
}

/// The lock of a fresh run, taken before its first write; a run that finished into the same
/// bundle meanwhile is not overwritten.
pub(crate) fn fresh_lock(bundle: &Bundle, kind: &str) -> Result<BundleLock> {
    let lock = BundleLock::acquire(bundle.root(), &format!("training {kind}"))?;
    if bundle.has_stage(kind) {
        return Err(TrainError::Invalid(format!(
            "{} already holds an `{kind}` model (another run just wrote it); pass --resume to continue it, or choose another --out",
            bundle.root().display()
        )));
    }
    Ok(lock)
}

/// The bundle's `ar` model's config, for a stage that starts from its weights (`what`: the
/// setting, e.g. `[masked] init_from_ar`; `fix`: what to do instead).
pub(crate) fn ar_to_start_from(bundle: &Bundle, what: &str, fix: &str) -> Result<plandiff_decoder::DecoderConfig> {
    if !bundle.has_stage(plandiff_bundle::stage::AR) {
        return Err(TrainError::Invalid(format!("{what}: {} has no ar model; {fix}", bundle.root().display())));
    }
    Ok(bundle.read_config(plandiff_bundle::stage::AR)?.model)
}

/// Copies the bundle's `ar` weights into a stage's variables: `target(name, ar tensor)` gives
/// the destination (a view of one of `vs`'s variables) and the part of the ar tensor it takes,
/// or `None` when the stage has no such tensor. Shapes must match. Returns the tensors copied.
pub(crate) fn copy_ar_weights(
    vs: &tch::nn::VarStore,
    bundle: &Bundle,
    what: &str,
    fix: &str,
    target: impl Fn(
        &std::collections::HashMap<String, tch::Tensor>,
        &str,
        tch::Tensor,
    ) -> Option<(tch::Tensor, tch::Tensor)>,
) -> Result<usize> {
    let vars = vs.variables();
    let mut copied = 0;
    tch::no_grad(|| -> Result<()> {
        for (name, src) in plandiff_bundle::read_weights(&bundle.weights_path(plandiff_bundle::stage::AR))? {
            let (dst, src) = target(&vars, &name, src)
                .ok_or_else(|| TrainError::Invalid(format!("{what}: this model has no tensor for `{name}`; {fix}")))?;
            if dst.size() != src.size() {
                return Err(TrainError::Invalid(format!(
                    "{what}: `{name}` is {:?} in the ar model and {:?} here; {fix}",
                    src.size(),
                    dst.size()
                )));
            }
            dst.shallow_clone().copy_(&src.to_kind(dst.kind()));
            copied += 1;
        }
        Ok(())
    })?;
    Ok(copied)
}

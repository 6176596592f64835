//! The one list of stages, [`STAGES`], in training order, and what reads it: `plandiff train`,
//! `eval`, `info` and `export` find a stage by name, and a run config is checked section by
//! section against it ([`load_config`]).

use crate::config::RunConfig;
use crate::stages::Stage;
use crate::{ar, autoencoder, diffusion, masked, planner, Result, TrainError};
use plandiff_bundle::Bundle;
use std::path::Path;

/// Every stage, in training order (also export's: the planner records the fingerprint of the
/// autoencoder exported before it). A new stage is a module with a `STAGE` and one line here.
pub static STAGES: &[&Stage] = &[&ar::STAGE, &autoencoder::STAGE, &planner::STAGE, &diffusion::STAGE, &masked::STAGE];

/// The stage of this name.
pub fn find(name: &str) -> Option<&'static Stage> {
    STAGES.iter().copied().find(|s| s.name() == name)
}

/// Every stage's name, in training order.
pub fn names() -> Vec<&'static str> {
    STAGES.iter().map(|s| s.name()).collect()
}

/// The stages a bundle holds, in training order.
pub fn held_by(bundle: &Bundle) -> Vec<&'static Stage> {
    STAGES.iter().copied().filter(|s| bundle.has_stage(s.name())).collect()
}

/// Reads a run config and checks every section against its stage (an error in `[planner]`
/// is found before `ar` trains).
pub fn load_config(path: &Path) -> Result<RunConfig> {
    let c = RunConfig::read(path)?;
    check_sections(&c).map_err(|e| TrainError::Invalid(format!("{}: {e}", path.display())))?;
    Ok(c)
}

/// [`load_config`] of a config's text.
pub fn parse_config(text: &str) -> Result<RunConfig> {
    let c = RunConfig::parse_text(text)?;
    check_sections(&c)?;
    Ok(c)
}

fn check_sections(c: &RunConfig) -> Result<()> {
    for (name, value) in c.sections() {
        let stage = find(name).ok_or_else(|| {
            TrainError::Invalid(format!(
                "unknown section [{name}]; the sections are the stages: {}",
                names().join(", ")
            ))
        })?;
        stage.check_section(value).map_err(|e| TrainError::Invalid(format!("[{name}]: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_list_of_distinct_stages_in_training_order() {
        let names = names();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "stage names are distinct: {names:?}");
        let at = |n: &str| names.iter().position(|&x| x == n).unwrap();
        // The planner reads the autoencoder's latents (training) and fingerprint (export).
        assert!(at("autoencoder") < at("planner"));
        assert!(names.iter().all(|n| find(n).is_some_and(|s| s.name() == *n)));
        assert!(find("planer").is_none());
    }

    #[test]
    fn a_bundle_holds_the_stages_with_a_config() {
        let dir = tempfile::tempdir().unwrap();
        let b = Bundle::new(dir.path());
        assert!(held_by(&b).is_empty());
        for n in ["planner", "ar"] {
            std::fs::create_dir_all(dir.path().join(n)).unwrap();
            std::fs::write(dir.path().join(n).join("config.json"), "{}").unwrap();
        }
        let held: Vec<&str> = held_by(&b).iter().map(|s| s.name()).collect();
        assert_eq!(held, vec!["ar", "planner"], "in training order");
    }

    #[test]
    fn shipped_configs_parse_and_validate() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        // The last five hold one stage each (four fine-tunes and a larger planner).
        let partial = [
            "decoder-renoise.toml",
            "decoder-distill.toml",
            "decoder-cross.toml",
            "decoder-cross-more.toml",
            "planner-large.toml",
        ];
        for name in ["tiny.toml", "base.toml", "demo.toml", "shipped.toml"].iter().chain(&partial).copied() {
            let c = load_config(&root.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            let mut checked = 0;
            for stage in STAGES.iter().filter(|s| c.sections().any(|(n, _)| n == s.name())) {
                stage.check_config(&c, 4096).unwrap_or_else(|e| panic!("{name} [{}]: {e}", stage.name()));
                checked += 1;
            }
            assert!(checked >= 1 && (partial.contains(&name) || checked == STAGES.len()), "{name}: {checked}");
        }
    }

    #[test]
    fn unknown_field_and_section_are_named() {
        let text =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/tiny.toml")).unwrap();
        let err = parse_config(&text.replace("n_layers", "n_layerz")).unwrap_err().to_string();
        assert!(err.contains("n_layerz"), "{err}");
        assert!(!err.contains('\n'));
        let err = parse_config(&format!("{text}\n[planer]\nx = 1\n")).unwrap_err().to_string();
        assert!(err.contains("unknown section [planer]") && err.contains("planner"), "{err}");
        // `cross_blocks` is for a decoder that reads a plan: the ar model's is refused.
        let c = parse_config(&text.replacen("[ar.model]\n", "[ar.model]\ncross_blocks = [0]\n", 1)).unwrap();
        let ar = STAGES.iter().find(|s| s.name() == "ar").unwrap();
        let err = ar.check_config(&c, 4096).unwrap_err().to_string();
        assert!(err.contains("cross_blocks") && err.contains("with a plan"), "{err}");
    }
}

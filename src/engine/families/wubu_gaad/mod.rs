//! The WuBu-GAAD hybrid VAE-GAN for video (seeds 000 and 001): GAAD regions, DFT/DCT
//! features, WuBu hyperbolic nesting, two critics with switching, Q-learning controllers,
//! heuristic interventions and phased training.

pub mod model;
mod trainer;

pub use trainer::WubuGaadTrainer;

/// The family's trainer, as the registry builds it (`engine::families::make_trainer`).
pub fn trainer(
    preset: &crate::core::preset::WubuGaadPreset,
    device: tch::Device,
) -> Result<Box<dyn crate::engine::trainer::Trainer>, crate::engine::EngineError> {
    Ok(Box::new(WubuGaadTrainer::new(preset, device)?))
}

//! WGAN-GP (seed 004): Gulrajani et al.'s Algorithm 1 with the seed's two architectures.

pub mod model;
mod trainer;

pub use trainer::{gradient_penalty, WganGpTrainer};

/// The family's trainer, as the registry builds it (`engine::families::make_trainer`).
pub fn trainer(
    preset: &crate::core::preset::WganGpPreset,
    device: tch::Device,
) -> Result<Box<dyn crate::engine::trainer::Trainer>, crate::engine::EngineError> {
    Ok(Box::new(WganGpTrainer::new(preset, device)?))
}

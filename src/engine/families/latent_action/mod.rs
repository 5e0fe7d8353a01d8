//! The latent action model (seed 002): a VQ-VAE over latent video that discovers discrete
//! actions, trained from HDF5 latents.

pub mod model;
mod trainer;

pub use trainer::{lr_factor, purity, LatentActionTrainer};

/// The family's trainer, as the registry builds it (`engine::families::make_trainer`).
pub fn trainer(
    preset: &crate::core::preset::LatentActionPreset,
    device: tch::Device,
) -> Result<Box<dyn crate::engine::trainer::Trainer>, crate::engine::EngineError> {
    Ok(Box::new(LatentActionTrainer::new(preset, device)?))
}

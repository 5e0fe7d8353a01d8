//! The 3-D VQ-GAN (seed 003): an EMA-codebook autoencoder on volumes with LPIPS on slices and
//! 2-D and 3-D PatchGAN critics with feature matching (spec section 2).

mod trainer;

pub use trainer::VqGanTrainer;

/// The family's trainer, as the registry builds it (`engine::families::make_trainer`).
pub fn trainer(
    preset: &crate::core::preset::VqGanPreset,
    device: tch::Device,
) -> Result<Box<dyn crate::engine::trainer::Trainer>, crate::engine::EngineError> {
    Ok(Box::new(VqGanTrainer::new(preset, device)?))
}

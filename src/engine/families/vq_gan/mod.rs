//! The 3-D VQ-GAN (seed 003): an EMA-codebook autoencoder on volumes with LPIPS on slices and
//! 2-D and 3-D PatchGAN critics with feature matching (spec section 2).

mod trainer;

pub use trainer::VqGanTrainer;

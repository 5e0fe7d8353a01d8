//! The latent action model (seed 002): a VQ-VAE over latent video that discovers discrete
//! actions, trained from HDF5 latents.

pub mod model;
mod trainer;

pub use trainer::{lr_factor, purity, LatentActionTrainer};

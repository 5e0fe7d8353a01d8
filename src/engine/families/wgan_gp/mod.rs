//! WGAN-GP (seed 004): Gulrajani et al.'s Algorithm 1 with the seed's two architectures.

pub mod model;
mod trainer;

pub use trainer::{gradient_penalty, WganGpTrainer};

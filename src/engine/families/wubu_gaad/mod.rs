//! The WuBu-GAAD hybrid VAE-GAN for video (seeds 000 and 001): GAAD regions, DFT/DCT
//! features, WuBu hyperbolic nesting, two critics with switching, Q-learning controllers,
//! heuristic interventions and phased training.

pub mod model;
mod trainer;

pub use trainer::WubuGaadTrainer;

//! One folder per model family.

pub mod wgan_gp;

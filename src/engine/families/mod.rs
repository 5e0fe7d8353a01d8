//! One folder per model family.

pub mod wgan_gp;
pub mod wubu_gaad;

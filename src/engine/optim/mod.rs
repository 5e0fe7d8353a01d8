//! Optimizers written on tensors, so their state can be checkpointed exactly and their
//! hyperparameters steered every step.

mod adam;
mod rsgd;

pub use adam::Adam;
pub use rsgd::{AdamRule, RiemannianSgd};

//! Optimizers written on tensors, so their state can be checkpointed exactly and their
//! hyperparameters steered every step.

mod adam;

pub use adam::Adam;

//! Generative Workbench: train and watch generative models.
//!
//! Three layers (see `../shared/docs/ARCHITECTURE.md`):
//! - [`core`]: plain Rust, no tensors and no UI: presets, the command/event protocol, the run
//!   directory's event log, loss-health rules, deterministic random numbers.
//! - [`engine`]: libtorch through `tch`: data, models, optimizers, checkpoints and the worker
//!   thread that runs a training session.
//! - `cli` (in the binary): the headless command line.

pub mod core;
pub mod engine;

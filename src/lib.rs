//! Generative Workbench: train and watch generative models.
//!
//! Three layers (see `../shared/docs/ARCHITECTURE.md`):
//! - [`core`]: plain Rust, no tensors and no UI: presets, the command/event protocol, the run
//!   directory's event log, loss-health rules, deterministic random numbers.
//! - [`engine`]: libtorch through `tch`: data, models, optimizers, checkpoints and the worker
//!   thread that runs a training session.
//! - [`gui`]: the desktop app (eframe/egui); talks to the engine only through the worker
//!   handle and events, never to tensors.
//! - `cli` (in the binary): the command line; no subcommand opens the app.

pub mod core;
pub mod engine;
pub mod gui;

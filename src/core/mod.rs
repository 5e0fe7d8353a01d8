//! Pure Rust: no `tch`, no UI. Everything here is plain data and deterministic.

pub mod branch;
pub mod cadence;
pub mod control;
pub mod draw;
pub mod gaad;
pub mod health;
pub mod jobs;
pub mod nifti;
pub mod numfmt;
pub mod preset;
pub mod protocol;
pub mod pruner;
pub mod queue;
pub mod rng;
pub mod rundir;
pub mod runlog;
pub mod runtable;
pub mod runview;
pub mod scheduler;
pub mod series;
pub mod signals;
pub mod slurm;
pub mod sweep;
pub mod synthetic;
pub mod timefmt;
pub mod video;

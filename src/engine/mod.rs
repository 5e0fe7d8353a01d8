//! Everything that touches libtorch. Never imports a UI crate.

pub mod checkpoint;
pub mod convert;
pub mod data;
pub mod device;
pub mod dist;
pub mod emitter;
pub mod explore;
pub mod export;
pub mod families;
pub mod flow;
pub mod hyperbolic;
pub mod lpips;
pub mod lr_control;
pub mod metrics;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod session;
pub mod spectral;
pub mod sysmon;
pub mod timing;
pub mod trainer;
pub mod watch;
pub mod worker;

/// Test hook: `WORKBENCH_FAILPOINT=<name>:<step>` makes the engine fail on purpose at that
/// point (`checkpoint-mid-write`: abort the process half-way through writing the checkpoint of
/// that step or later; `nan-loss`: report a NaN loss at that step; `torch-error` and
/// `torch-panic`: fail the step through libtorch, see `session`; `val-worse`: validations from that
/// step on rank below every earlier one, so the best checkpoint is not the last). Used by the crash-safety
/// tests; inert unless the variable is set.
#[must_use]
pub fn failpoint(name: &str, step: u64) -> bool {
    std::env::var("WORKBENCH_FAILPOINT")
        .ok()
        .and_then(|v| {
            let (n, at) = v.split_once(':')?;
            (n == name).then(|| at.parse::<u64>().ok()).flatten()
        })
        .is_some_and(|at| step >= at)
}

/// Errors of the engine. `BadInput` is the user's to fix (exit code 2); the rest fail a run.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    BadInput(String),
    /// A data-parallel collective failed (a rank died or timed out).
    #[error("{0}")]
    Dist(#[from] crate::engine::dist::DistError),
    #[error("data: {0}")]
    Data(#[from] crate::engine::data::DataError),
    #[error("model: {0}")]
    Model(String),
    /// A trainer refused a configuration or a state it was given.
    #[error("{0}")]
    Trainer(#[from] crate::engine::trainer::TrainerError),
    #[error("{0}")]
    Checkpoint(#[from] checkpoint::CheckpointError),
    #[error("{0}")]
    RunDir(#[from] crate::core::rundir::RunDirError),
    #[error("{0}")]
    RunLog(#[from] crate::core::runlog::RunLogError),
    #[error("{0}")]
    Branch(#[from] crate::core::branch::BranchError),
    #[error("{0}")]
    NonFinite(String),
    /// The guard stopped the run (a `stop` remedy, or too many rollbacks).
    #[error("{0}")]
    Guard(String),
    /// A training step failed (one line: step, phase, what failed and libtorch's first line).
    #[error("{0}")]
    Step(String),
}

/// Seeds libtorch's (process-wide) generator for one draw of a run: `stream` and `counter`
/// (a step, a phase) make every draw repeat exactly on resume.
pub(crate) fn seed_torch(seed: u64, stream: crate::core::rng::Stream, counter: u64) {
    tch::manual_seed((crate::core::rng::derive_seed(seed, stream, counter) >> 1) as i64);
}

//! Steering a trained model by hand: for a family with discrete actions, decode what follows a
//! validation window under any action the user picks, beside what really followed and what
//! the model's own encoded actions give. The desktop app opens one on a run's latest
//! checkpoint, on the CPU, away from any training.

use std::path::Path;

pub use crate::engine::trainer::{ActionExplorer, Explored, Rgba};

/// Why a run's checkpoint cannot be explored.
#[derive(Debug, thiserror::Error)]
pub enum ExploreError {
    #[error(transparent)]
    Preset(#[from] crate::core::preset::PresetError),
    #[error(transparent)]
    Checkpoint(#[from] crate::engine::checkpoint::CheckpointError),
    #[error(transparent)]
    Model(#[from] crate::engine::EngineError),
    /// The run's family has no discrete actions.
    #[error("a {0} run has no discrete actions to explore")]
    NoActions(&'static str),
}

/// Opens the explorer of a run folder's latest checkpoint.
pub fn open(run_dir: &Path) -> Result<Box<dyn ActionExplorer>, ExploreError> {
    let (preset, _) = crate::core::preset::load_file(&run_dir.join("preset.ron"))?;
    let ckpt = crate::engine::checkpoint::resolve(run_dir)?;
    let loaded = crate::engine::checkpoint::read(&ckpt)?;
    let preset = preset.preset();
    let mut trainer = crate::engine::families::make_trainer(preset, tch::Device::Cpu)?;
    trainer.load_state(&loaded)?;
    trainer
        .into_explorer()
        .ok_or(ExploreError::NoActions(preset.family().name()))
}

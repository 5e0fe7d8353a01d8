//! Steering a trained model by hand: for a family with discrete actions, decode what follows a
//! validation window under any action the user picks, beside what really followed and what
//! the model's own encoded actions give. The desktop app opens one on a run's latest
//! checkpoint, on the CPU, away from any training.

use std::path::Path;

use crate::engine::trainer::Rgba;

/// What [`ActionExplorer::explore`] shows: rows of frames side by side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explored {
    /// The frames that really followed.
    pub truth: Rgba,
    /// The rollout under the actions the encoder read from the true frames.
    pub encoded: Rgba,
    /// The rollout under the chosen action.
    pub chosen: Rgba,
    /// The encoded actions, one per transition (a code per slot).
    pub encoded_actions: Vec<Vec<u32>>,
    /// Frames in each row.
    pub frames: u32,
}

/// A model whose transitions are actions of `slots` codes from a codebook of
/// `codebook_size`.
pub trait ActionExplorer: Send + std::fmt::Debug {
    /// Validation windows to start from.
    fn windows(&self) -> usize;
    fn codebook_size(&self) -> usize;
    fn slots(&self) -> usize;
    /// The most steps a rollout can be compared with the truth.
    fn max_steps(&self) -> usize;
    /// Channels of a frame.
    fn channels(&self) -> usize;
    /// Rolls out `steps` frames from the first frame of `window`, applying `action` at every
    /// step; frames in colour (a fixed projection of the channels), or one channel in grey.
    fn explore(
        &mut self,
        window: usize,
        action: &[u32],
        steps: usize,
        channel: Option<usize>,
    ) -> Result<Explored, String>;
    /// A one-line description (model, checkpoint step).
    fn describe(&self) -> String;
}

/// Opens the explorer of a run folder's latest checkpoint.
pub fn open(run_dir: &Path) -> Result<Box<dyn ActionExplorer>, String> {
    let (preset, _) =
        crate::core::preset::load_file(&run_dir.join("preset.ron")).map_err(|e| e.to_string())?;
    let ckpt = crate::engine::checkpoint::resolve(run_dir).map_err(|e| e.to_string())?;
    let loaded = crate::engine::checkpoint::read(&ckpt).map_err(|e| e.to_string())?;
    crate::engine::families::make_explorer(preset.preset(), &loaded)
}

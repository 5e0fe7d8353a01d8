//! What shared code asks of a family's preset: its front door. A family's preset type
//! implements [`FamilyPreset`]; [`super::AnyPreset`] hands it out, and nothing outside the
//! family's own files and `preset/mod.rs` needs to know which family it is.

use serde_json::Value;

use super::data::DataNeed;
use super::{CheckpointConfig, Family, FieldSpec, LoggingConfig, LrControlConfig, Phase, Problem};
use crate::core::health::HealthConfig;

/// A view of the run header every family's preset carries (its files stay flat: the fields
/// sit beside the family's own).
#[derive(Debug, Clone, Copy)]
pub struct Common<'a> {
    pub schema_version: u32,
    pub family: Family,
    pub name: &'a str,
    pub seed: u64,
    pub device: &'a str,
    /// Libtorch CPU threads; 0 keeps libtorch's default.
    pub threads: u32,
    pub health: &'a HealthConfig,
    pub logging: &'a LoggingConfig,
    pub checkpoints: &'a CheckpointConfig,
    pub phases: &'a [Phase],
    /// The session's Q-learning control of the learning rates, for families that offer it.
    pub lr_control: Option<&'a LrControlConfig>,
}

/// The fields `--lr-g` and `--lr-d` set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LrFields {
    /// The generator's (or the model's) learning rate.
    pub generator: &'static str,
    /// The critics' learning rates (`--lr-d` sets each); empty for a family without one.
    pub critic: &'static [&'static str],
}

/// A family's preset, as shared code sees it.
pub trait FamilyPreset: std::fmt::Debug {
    /// The shared run header.
    fn common(&self) -> Common<'_>;
    /// Every field, with kind, range, unit, doc and whether a phase or a live command may
    /// change it.
    fn specs(&self) -> &'static [FieldSpec];
    /// Cross-field rules (single fields are checked against [`Self::specs`]).
    fn check(&self, problems: &mut Vec<Problem>);
    /// The model's shape: a checkpoint loads only into a preset of equal signature.
    fn signature(&self) -> String;
    /// What the run reads, checked before its folder is written.
    fn data_needs(&self) -> Vec<DataNeed<'_>>;
    /// The fields `--data PATH` sets.
    fn data_override(&self, path: &str) -> Vec<(&'static str, Value)>;
    /// The learning-rate fields `--lr-g` and `--lr-d` set.
    fn lr_fields(&self) -> LrFields;
    /// Steps in one epoch, when the data is known before loading it (synthetic data).
    fn steps_per_epoch_hint(&self) -> Option<u64>;
}

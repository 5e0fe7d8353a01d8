//! What shared code asks of a family's preset: its front door. A family's preset type
//! implements [`FamilyPreset`]; [`super::AnyPreset`] hands it out, and nothing outside the
//! family's own files and `preset/mod.rs` needs to know which family it is.

use serde_json::Value;

use super::data::DataNeed;
use super::{
    CheckpointConfig, Family, FieldSpec, LoggingConfig, LrControlConfig, Phase, PresetError,
    Problem, Reports,
};
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
}

/// The run header every family's preset carries, declared once by [`crate::family_preset!`].
pub trait RunHeader {
    /// The shared run header.
    fn common(&self) -> Common<'_>;
    /// The phases, to edit (a tiny test run shortens them).
    fn phases_mut(&mut self) -> &mut Vec<Phase>;
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
pub trait FamilyPreset: RunHeader + std::fmt::Debug {
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
    /// The fields that make this preset train in seconds on a CPU (synthetic data of the
    /// preset's kind, small shapes): the test that trains every shipped preset, and
    /// `workbench train --tiny`.
    fn tiny_overrides(&self) -> Vec<(&'static str, Value)>;
    /// The session's Q-learning control of the learning rates, for families that offer it.
    fn lr_control(&self) -> Option<&LrControlConfig> {
        None
    }
}

/// What the family registry ([`crate::for_each_family!`]) asks of a family's preset type.
pub trait Declared: FamilyPreset + Default + Sized {
    /// What the family's runs report beyond scalars and samples.
    const REPORTS: Reports;
    /// Every field, from the declarations.
    fn specs() -> &'static [FieldSpec];
    /// Parses the family's preset of any known schema version, migrating older ones.
    fn parse_versioned(
        text: &str,
        version: u32,
        file: &str,
    ) -> Result<(Self, Vec<String>), PresetError>;
}

/// A family's [`Declared`] facts, from its module: `declared!(Type, reports)` in a module
/// that has the field specs `SPECS` and `parse_versioned(text, version, file)`.
#[macro_export]
macro_rules! declared {
    ($ty:ident, $reports:expr) => {
        impl $crate::core::preset::Declared for $ty {
            const REPORTS: $crate::core::preset::Reports = $reports;

            fn specs() -> &'static [$crate::core::preset::schema::FieldSpec] {
                SPECS.as_slice()
            }

            fn parse_versioned(
                text: &str,
                version: u32,
                file: &str,
            ) -> Result<(Self, Vec<String>), $crate::core::preset::PresetError> {
                parse_versioned(text, version, file)
            }
        }
    };
}

/// A family's preset type: the run header every family shares, declared once here, around
/// the family's own sections. In order: `schema_version`, `family`, `name`, `seed`,
/// `device`, `threads`, the family's sections, `health`, `logging`, `checkpoints`, the
/// sections given after `then` (if any), `phases`. Implements [`RunHeader`] and the field specs.
#[macro_export]
macro_rules! family_preset {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(
                $(#[$fmeta:meta])*
                pub $field:ident : $ty:ty => $what:ident $( ( $($args:tt)* ) )?
            ),* $(,)?
        }
        $(
            then {
                $(
                    $(#[$tmeta:meta])*
                    pub $tfield:ident : $tty:ty => $twhat:ident $( ( $($targs:tt)* ) )?
                ),* $(,)?
            }
        )?
    ) => {
        $crate::preset_section! {
            $(#[$meta])*
            pub struct $name {
                pub schema_version: u32 => skip,
                pub family: $crate::core::preset::Family => skip,
                pub name: String => field($crate::core::preset::schema::FieldKind::Text, "", [], "Name of the preset; runs are named after it"),
                pub seed: u64 => field($crate::core::preset::schema::FieldKind::Int { min: 0, max: 9223372036854775807 }, "", [], "Seed of every random draw (initialisation, data order, noise, controllers)"),
                /// `auto`, `cpu`, `cuda` or `cuda:N`.
                pub device: String => field($crate::core::preset::schema::FieldKind::Text, "", [], "auto (CUDA when present), cpu, cuda or cuda:N"),
                /// libtorch intra-op threads; 0 keeps libtorch's default.
                pub threads: u32 => field($crate::core::preset::schema::FieldKind::Int { min: 0, max: 1024 }, "threads", [], "libtorch CPU threads; 0 keeps libtorch's default"),
                $(
                    $(#[$fmeta])*
                    pub $field: $ty => $what $( ( $($args)* ) )?,
                )*
                pub health: $crate::core::health::HealthConfig => section,
                pub logging: $crate::core::preset::LoggingConfig => section,
                pub checkpoints: $crate::core::preset::CheckpointConfig => section,
                $($(
                    $(#[$tmeta])*
                    pub $tfield: $tty => $twhat $( ( $($targs)* ) )?,
                )*)?
                pub phases: Vec<$crate::core::preset::Phase> => skip,
            }
        }

        impl $crate::core::preset::family::RunHeader for $name {
            fn common(&self) -> $crate::core::preset::Common<'_> {
                $crate::core::preset::Common {
                    schema_version: self.schema_version,
                    family: self.family,
                    name: &self.name,
                    seed: self.seed,
                    device: &self.device,
                    threads: self.threads,
                    health: &self.health,
                    logging: &self.logging,
                    checkpoints: &self.checkpoints,
                    phases: &self.phases,
                }
            }

            fn phases_mut(&mut self) -> &mut Vec<$crate::core::preset::Phase> {
                &mut self.phases
            }
        }
    };
}

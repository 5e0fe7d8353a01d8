//! One folder per model family. The engine's dispatch on the family comes from the family
//! registry ([`crate::for_each_family!`]): each family's module here has its preset's module
//! name and exports `trainer`, and nothing here names a family.

use tch::Device;

use crate::core::preset::AnyPreset;
use crate::engine::trainer::Trainer;
use crate::engine::EngineError;

/// The family modules and [`make_trainer`], from the registry.
macro_rules! engine_families {
    ($($variant:ident $module:ident $preset:ident),* $(,)?) => {
        $(pub mod $module;)*

        /// Builds the trainer of a preset's family.
        pub fn make_trainer(
            preset: &AnyPreset,
            device: Device,
        ) -> Result<Box<dyn Trainer>, EngineError> {
            match preset {
                $(AnyPreset::$variant(p) => $module::trainer(p, device),)*
            }
        }
    };
}

crate::for_each_family!(engine_families);

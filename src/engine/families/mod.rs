//! One folder per model family, and the engine's one match on the family: a family's
//! preset (`core::preset::<family>`) and its trainer here are its whole front door.

pub mod latent_action;
pub mod vq_gan;
pub mod wgan_gp;
pub mod wubu_gaad;

use tch::Device;

use crate::core::preset::AnyPreset;
use crate::engine::trainer::Trainer;
use crate::engine::EngineError;

/// Builds the trainer of a preset's family.
pub fn make_trainer(preset: &AnyPreset, device: Device) -> Result<Box<dyn Trainer>, EngineError> {
    match preset {
        AnyPreset::WganGp(p) => Ok(Box::new(wgan_gp::WganGpTrainer::new(p, device)?)),
        AnyPreset::WubuGaad(p) => Ok(Box::new(wubu_gaad::WubuGaadTrainer::new(p, device)?)),
        AnyPreset::LatentAction(p) => Ok(Box::new(latent_action::LatentActionTrainer::new(
            p, device,
        )?)),
        AnyPreset::VqGan(p) => Ok(Box::new(vq_gan::VqGanTrainer::new(p, device)?)),
    }
}

/// Opens a checkpoint of a family with discrete actions for exploring by hand, on the CPU.
pub fn make_explorer(
    preset: &AnyPreset,
    ckpt: &crate::engine::checkpoint::Loaded,
) -> Result<Box<dyn crate::engine::explore::ActionExplorer>, String> {
    match preset {
        AnyPreset::LatentAction(p) => {
            let mut t = latent_action::LatentActionTrainer::new(p, Device::Cpu)
                .map_err(|e| e.to_string())?;
            t.load_state(ckpt)?;
            Ok(Box::new(t))
        }
        other => Err(format!(
            "a {} run has no discrete actions to explore",
            other.family().name()
        )),
    }
}

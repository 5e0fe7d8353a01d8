//! The WGAN-GP preset (seed 004: WGAN_small and WGAN_large).

use serde::{Deserialize, Serialize};

pub use super::data::{ImageData, ImageSource, OnBadImage};
use super::schema::{FieldKind as K, FieldSpec};
use super::{
    CheckpointConfig, Family, LoggingConfig, LrControlConfig, Phase, PhaseLength, PresetError,
    Problem, SCHEMA_VERSION,
};
use crate::core::health::HealthConfig;

/// The two architectures of seed 004.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// ConvTranspose generator with BatchNorm; critic with LayerNorm.
    Small,
    /// Upsample+Conv generator with residual blocks and self-attention; spectral-norm critic; EMA.
    Large,
}

/// How the n_critic counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CriticCounter {
    /// As the seed: the batch index restarts every epoch; G steps when (index + 1) % n_critic == 0.
    PerEpoch,
    /// Over the whole run: G steps every n_critic-th step.
    Global,
}

crate::preset_section! {
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Model {
        pub arch: Arch => field(K::Choice(&["small", "large"]), "", [], "small: ConvT+BN G, LayerNorm critic; large: residual+attention G, spectral-norm critic, EMA"),
        pub latent_dim: u32 => field(K::Int { min: 1, max: 4096 }, "", [], "Size of the generator's noise vector"),
        pub g_feature_maps: u32 => field(K::Int { min: 4, max: 1024 }, "channels", [], "Generator width (ngf)"),
        pub d_feature_maps: u32 => field(K::Int { min: 4, max: 1024 }, "channels", [], "Critic width (ndf)"),
        /// EMA decay of the large generator's weights; 0 disables the EMA generator.
        pub ema_decay: f64 => field(K::Float { min: 0.0, max: 0.99999 }, "", [], "EMA decay of the large generator; 0 turns the EMA generator off"),
        /// Also copy BatchNorm running statistics into the EMA generator (the seed did not, so its
        /// EMA samples used stale statistics).
        pub ema_copy_batchnorm_stats: bool => field(K::Bool, "", [], "Copy BatchNorm running stats into the EMA generator (the seed did not)"),
    }
}

crate::preset_section! {
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Train {
        pub batch_size: u32 => field(K::Int { min: 1, max: 4096 }, "images", [phase], "Images per step, per data-parallel rank (the global batch is ranks x this)"),
        pub lr_g: f64 => field(K::Float { min: 1e-9, max: 1.0 }, "", [phase live], "Generator Adam learning rate (TTUR: usually <= lr_d)"),
        pub lr_d: f64 => field(K::Float { min: 1e-9, max: 1.0 }, "", [phase live], "Critic Adam learning rate"),
        pub beta1: f64 => field(K::Float { min: 0.0, max: 0.999 }, "", [phase], "Adam beta1; 0 for WGAN-GP"),
        pub beta2: f64 => field(K::Float { min: 0.0, max: 0.99999 }, "", [phase], "Adam beta2; 0.9 for WGAN-GP"),
        pub n_critic: u32 => field(K::Int { min: 1, max: 100 }, "steps", [phase live], "Critic steps per generator step"),
        pub critic_counter: CriticCounter => field(K::Choice(&["per_epoch", "global"]), "", [phase], "per_epoch: the seed's counter that restarts each epoch; global: over the run"),
        pub lambda_gp: f64 => field(K::Float { min: 0.0, max: 1000.0 }, "", [phase live], "Gradient penalty weight"),
    }
}

crate::family_preset! {
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct WganGpPreset {
        pub data: ImageData => section,
        pub model: Model => section,
        pub train: Train => section,
    }
    then {
        /// Off unless set: presets written before it existed still load.
        #[serde(default)]
        pub lr_control: LrControlConfig => section,
    }
}

impl Default for WganGpPreset {
    /// Seed 004's WGAN_small configuration at 64x64, on the synthetic sprites.
    fn default() -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            family: Family::WganGp,
            name: "wgan_gp_small".into(),
            seed: 42,
            device: "auto".into(),
            threads: 0,
            data: ImageData::default(),
            model: Model {
                arch: Arch::Small,
                latent_dim: 128,
                g_feature_maps: 64,
                d_feature_maps: 64,
                ema_decay: 0.0,
                ema_copy_batchnorm_stats: true,
            },
            train: Train {
                batch_size: 64,
                lr_g: 1e-4,
                lr_d: 1e-4,
                beta1: 0.0,
                beta2: 0.9,
                n_critic: 5,
                critic_counter: CriticCounter::PerEpoch,
                lambda_gp: 10.0,
            },
            health: HealthConfig::default(),
            logging: LoggingConfig {
                log_every_steps: 10,
                sample_every_steps: 500,
                validate_every_steps: 500,
                system_every_ms: 1000,
            },
            checkpoints: CheckpointConfig {
                every_steps: 2000,
                keep_last: 3,
            },
            lr_control: LrControlConfig::default(),
            phases: vec![Phase::single(PhaseLength::Epochs(1000))],
        }
    }
}

/// Every field of the WGAN-GP preset, from its declarations.
pub static SPECS: std::sync::LazyLock<Vec<FieldSpec>> =
    std::sync::LazyLock::new(super::schema::specs_of::<WganGpPreset>);

impl WganGpPreset {
    /// Cross-field rules the per-field ranges cannot express.
    fn check_rules(&self, problems: &mut Vec<Problem>) {
        let mut bad = |path: &str, value: String, allowed: &str| {
            problems.push(Problem {
                path: path.to_string(),
                value,
                allowed: allowed.to_string(),
            });
        };
        let size = self.data.image_size;
        if !size.is_power_of_two() {
            bad(
                "data.image_size",
                size.to_string(),
                "a power of two (16, 32, 64, 128, 256)",
            );
        }
        match self.data.source {
            ImageSource::Folder if self.data.folder.trim().is_empty() => {
                bad(
                    "data.folder",
                    "\"\"".into(),
                    "a folder path when data.source is folder",
                );
            }
            ImageSource::SyntheticSprites => {
                let train = i64::from(self.data.synthetic_count) - i64::from(self.data.holdout);
                if train < i64::from(self.train.batch_size) {
                    bad(
                        "train.batch_size",
                        self.train.batch_size.to_string(),
                        &format!(
                            "at most the training set size (synthetic_count - holdout = {train})"
                        ),
                    );
                }
            }
            ImageSource::Folder => {}
        }
        if self.logging.validate_every_steps > 0 && self.data.holdout < 16 {
            bad(
                "data.holdout",
                self.data.holdout.to_string(),
                "at least 16 images when logging.validate_every_steps > 0 (or set that to 0)",
            );
        }
        if self.model.arch == Arch::Small && self.model.ema_decay > 0.0 {
            bad(
                "model.ema_decay",
                self.model.ema_decay.to_string(),
                "0 for the small architecture (EMA is a large-model feature)",
            );
        }
    }
}

/// Schema version 1: the seed's own layout, with one learning rate (`LEARNING_RATE`, as the
/// seed's `--lr`) and a total epoch count instead of phases.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrainV1 {
    batch_size: u32,
    lr: f64,
    beta1: f64,
    beta2: f64,
    n_critic: u32,
    lambda_gp: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WganGpPresetV1 {
    #[allow(dead_code)]
    schema_version: u32,
    #[allow(dead_code)]
    family: Family,
    name: String,
    seed: u64,
    device: String,
    data: ImageData,
    model: Model,
    train: TrainV1,
    epochs: u64,
}

impl super::FamilyPreset for WganGpPreset {
    fn specs(&self) -> &'static [FieldSpec] {
        SPECS.as_slice()
    }

    fn check(&self, problems: &mut Vec<Problem>) {
        self.check_rules(problems);
    }

    fn signature(&self) -> String {
        let m = &self.model;
        format!(
            "wgan_gp/{:?}/size{}/z{}/g{}/d{}/ema{}",
            m.arch,
            self.data.image_size,
            m.latent_dim,
            m.g_feature_maps,
            m.d_feature_maps,
            m.ema_decay > 0.0
        )
    }

    fn data_needs(&self) -> Vec<super::data::DataNeed<'_>> {
        vec![super::data::DataNeed::Images {
            cfg: &self.data,
            batch_size: self.train.batch_size,
        }]
    }

    fn data_override(&self, path: &str) -> Vec<(&'static str, serde_json::Value)> {
        vec![
            ("data.source", "folder".into()),
            ("data.folder", path.into()),
        ]
    }

    fn lr_fields(&self) -> super::LrFields {
        super::LrFields {
            generator: "train.lr_g",
            critic: &["train.lr_d"],
        }
    }

    fn steps_per_epoch_hint(&self) -> Option<u64> {
        (self.data.source == ImageSource::SyntheticSprites).then(|| {
            let train = self.data.synthetic_count.saturating_sub(self.data.holdout);
            (u64::from(train) / u64::from(self.train.batch_size.max(1))).max(1)
        })
    }

    fn tiny_overrides(&self) -> Vec<(&'static str, serde_json::Value)> {
        vec![
            ("data.source", "synthetic_sprites".into()),
            ("data.image_size", 32.into()),
            ("data.synthetic_count", 48.into()),
            ("data.holdout", 16.into()),
            ("train.batch_size", 4.into()),
        ]
    }

    fn lr_control(&self) -> Option<&LrControlConfig> {
        Some(&self.lr_control)
    }
}

crate::declared!(WganGpPreset, super::Reports::NONE);

/// Parses a WGAN-GP preset of any known schema version, migrating older ones.
pub(super) fn parse_versioned(
    text: &str,
    version: u32,
    file: &str,
) -> Result<(WganGpPreset, Vec<String>), PresetError> {
    match version {
        SCHEMA_VERSION => Ok((super::parse_typed(text, file)?, Vec::new())),
        // Schema 3 changed only WuBu-GAAD fields.
        2 => {
            let mut p: WganGpPreset = super::parse_typed(text, file)?;
            p.schema_version = SCHEMA_VERSION;
            Ok((p, Vec::new()))
        }
        1 => {
            let old: WganGpPresetV1 = super::parse_typed(text, file)?;
            let d = WganGpPreset::default();
            let notes = vec![
                format!(
                    "schema 1 -> 3: train.lr = {} became train.lr_g and train.lr_d (separate learning rates)",
                    old.train.lr
                ),
                format!("schema 1 -> 3: epochs = {} became one phase `main` of {} epochs", old.epochs, old.epochs),
                "schema 1 -> 3: threads, health, logging, checkpoints and train.critic_counter took their defaults".to_string(),
            ];
            let preset = WganGpPreset {
                schema_version: SCHEMA_VERSION,
                family: Family::WganGp,
                name: old.name,
                seed: old.seed,
                device: old.device,
                data: old.data,
                model: old.model,
                train: Train {
                    batch_size: old.train.batch_size,
                    lr_g: old.train.lr,
                    lr_d: old.train.lr,
                    beta1: old.train.beta1,
                    beta2: old.train.beta2,
                    n_critic: old.train.n_critic,
                    lambda_gp: old.train.lambda_gp,
                    critic_counter: d.train.critic_counter,
                },
                phases: vec![Phase::single(PhaseLength::Epochs(old.epochs))],
                ..d
            };
            Ok((preset, notes))
        }
        other => Err(PresetError::Invalid {
            file: file.to_string(),
            problems: vec![Problem {
                path: "schema_version".into(),
                value: other.to_string(),
                allowed: format!("1 ..= {SCHEMA_VERSION}"),
            }],
        }),
    }
}

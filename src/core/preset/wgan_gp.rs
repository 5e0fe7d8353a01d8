//! The WGAN-GP preset (seed 004: WGAN_small and WGAN_large).

use std::collections::BTreeMap;

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    pub arch: Arch,
    pub latent_dim: u32,
    pub g_feature_maps: u32,
    pub d_feature_maps: u32,
    /// EMA decay of the large generator's weights; 0 disables the EMA generator.
    pub ema_decay: f64,
    /// Also copy BatchNorm running statistics into the EMA generator (the seed did not, so its
    /// EMA samples used stale statistics).
    pub ema_copy_batchnorm_stats: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Train {
    pub batch_size: u32,
    pub lr_g: f64,
    pub lr_d: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub n_critic: u32,
    pub critic_counter: CriticCounter,
    pub lambda_gp: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WganGpPreset {
    pub schema_version: u32,
    pub family: Family,
    pub name: String,
    pub seed: u64,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// libtorch intra-op threads; 0 keeps libtorch's default.
    pub threads: u32,
    pub data: ImageData,
    pub model: Model,
    pub train: Train,
    pub health: HealthConfig,
    pub logging: LoggingConfig,
    pub checkpoints: CheckpointConfig,
    /// Off unless set: presets written before it existed still load.
    #[serde(default)]
    pub lr_control: LrControlConfig,
    pub phases: Vec<Phase>,
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
            },
            checkpoints: CheckpointConfig {
                every_steps: 2000,
                keep_last: 3,
            },
            lr_control: LrControlConfig::default(),
            phases: vec![Phase {
                name: "main".into(),
                length: PhaseLength::Epochs(1000),
                overrides: BTreeMap::new(),
                start_from_best: false,
            }],
        }
    }
}

const LR: K = K::Float {
    min: 1e-9,
    max: 1.0,
};
const UNIT: K = K::Float { min: 0.0, max: 1.0 };

/// Every field of the WGAN-GP preset.
pub const SPECS: &[FieldSpec] = &[
    FieldSpec { path: "name", kind: K::Text, unit: "", phase: false, live: false, doc: "Name of the preset; runs are named after it" },
    FieldSpec { path: "seed", kind: K::Int { min: 0, max: i64::MAX }, unit: "", phase: false, live: false, doc: "Seed of every random draw (init, data order, noise, augmentation)" },
    FieldSpec { path: "device", kind: K::Text, unit: "", phase: false, live: false, doc: "auto (CUDA when present), cpu, cuda or cuda:N" },
    FieldSpec { path: "threads", kind: K::Int { min: 0, max: 1024 }, unit: "threads", phase: false, live: false, doc: "libtorch CPU threads; 0 keeps libtorch's default" },
    FieldSpec { path: "data.source", kind: K::Choice(&["synthetic_sprites", "folder"]), unit: "", phase: false, live: false, doc: "Training images: procedural sprites or a folder of PNG/JPEG" },
    FieldSpec { path: "data.folder", kind: K::Path, unit: "", phase: false, live: false, doc: "Image folder (searched recursively) when source is folder" },
    FieldSpec { path: "data.image_size", kind: K::Int { min: 16, max: 256 }, unit: "px", phase: false, live: false, doc: "Square training resolution; a power of two" },
    FieldSpec { path: "data.synthetic_count", kind: K::Int { min: 16, max: 1_000_000 }, unit: "images", phase: false, live: false, doc: "Synthetic training set size" },
    FieldSpec { path: "data.holdout", kind: K::Int { min: 0, max: 100_000 }, unit: "images", phase: false, live: false, doc: "Images held out of training for the validation distance" },
    FieldSpec { path: "data.hflip_prob", kind: UNIT, unit: "", phase: true, live: false, doc: "Probability of a horizontal flip" },
    FieldSpec { path: "data.rotation_deg", kind: K::Float { min: 0.0, max: 180.0 }, unit: "deg", phase: true, live: false, doc: "Random rotation range, +-degrees, white fill" },
    FieldSpec { path: "data.jitter_brightness", kind: UNIT, unit: "", phase: true, live: false, doc: "Colour jitter: brightness factor range 1 +- x" },
    FieldSpec { path: "data.jitter_contrast", kind: UNIT, unit: "", phase: true, live: false, doc: "Colour jitter: contrast factor range 1 +- x" },
    FieldSpec { path: "data.jitter_saturation", kind: UNIT, unit: "", phase: true, live: false, doc: "Colour jitter: saturation factor range 1 +- x" },
    FieldSpec { path: "data.jitter_hue", kind: K::Float { min: 0.0, max: 0.5 }, unit: "turns", phase: true, live: false, doc: "Colour jitter: hue shift range +- x" },
    FieldSpec { path: "data.on_bad_image", kind: K::Choice(&["skip", "fail"]), unit: "", phase: false, live: false, doc: "An unreadable image: skip it with a counted warning, or fail" },
    FieldSpec { path: "model.arch", kind: K::Choice(&["small", "large"]), unit: "", phase: false, live: false, doc: "small: ConvT+BN G, LayerNorm critic; large: residual+attention G, spectral-norm critic, EMA" },
    FieldSpec { path: "model.latent_dim", kind: K::Int { min: 1, max: 4096 }, unit: "", phase: false, live: false, doc: "Size of the generator's noise vector" },
    FieldSpec { path: "model.g_feature_maps", kind: K::Int { min: 4, max: 1024 }, unit: "channels", phase: false, live: false, doc: "Generator width (ngf)" },
    FieldSpec { path: "model.d_feature_maps", kind: K::Int { min: 4, max: 1024 }, unit: "channels", phase: false, live: false, doc: "Critic width (ndf)" },
    FieldSpec { path: "model.ema_decay", kind: K::Float { min: 0.0, max: 0.99999 }, unit: "", phase: false, live: false, doc: "EMA decay of the large generator; 0 turns the EMA generator off" },
    FieldSpec { path: "model.ema_copy_batchnorm_stats", kind: K::Bool, unit: "", phase: false, live: false, doc: "Copy BatchNorm running stats into the EMA generator (the seed did not)" },
    FieldSpec { path: "train.batch_size", kind: K::Int { min: 1, max: 4096 }, unit: "images", phase: true, live: false, doc: "Images per step" },
    FieldSpec { path: "train.lr_g", kind: LR, unit: "", phase: true, live: true, doc: "Generator Adam learning rate (TTUR: usually <= lr_d)" },
    FieldSpec { path: "train.lr_d", kind: LR, unit: "", phase: true, live: true, doc: "Critic Adam learning rate" },
    FieldSpec { path: "train.beta1", kind: K::Float { min: 0.0, max: 0.999 }, unit: "", phase: true, live: false, doc: "Adam beta1; 0 for WGAN-GP" },
    FieldSpec { path: "train.beta2", kind: K::Float { min: 0.0, max: 0.99999 }, unit: "", phase: true, live: false, doc: "Adam beta2; 0.9 for WGAN-GP" },
    FieldSpec { path: "train.n_critic", kind: K::Int { min: 1, max: 100 }, unit: "steps", phase: true, live: true, doc: "Critic steps per generator step" },
    FieldSpec { path: "train.critic_counter", kind: K::Choice(&["per_epoch", "global"]), unit: "", phase: true, live: false, doc: "per_epoch: the seed's counter that restarts each epoch; global: over the run" },
    FieldSpec { path: "train.lambda_gp", kind: K::Float { min: 0.0, max: 1000.0 }, unit: "", phase: true, live: true, doc: "Gradient penalty weight" },
    FieldSpec { path: "health.enabled", kind: K::Bool, unit: "", phase: true, live: false, doc: "Watch the losses and samples for failure modes" },
    FieldSpec { path: "health.warmup_steps", kind: K::Int { min: 0, max: i64::MAX }, unit: "steps", phase: true, live: false, doc: "Steps before any health signal may fire" },
    FieldSpec { path: "health.window", kind: K::Int { min: 2, max: 100_000 }, unit: "logged steps", phase: true, live: false, doc: "Logged values the loss rules look at" },
    FieldSpec { path: "health.critic_dominating", kind: K::Float { min: 0.0, max: 1e9 }, unit: "", phase: true, live: false, doc: "Mean d_loss below minus this: critic dominating" },
    FieldSpec { path: "health.generator_dominating", kind: K::Float { min: 0.0, max: 1e9 }, unit: "", phase: true, live: false, doc: "Mean d_loss above this: generator dominating" },
    FieldSpec { path: "health.oscillation_std", kind: K::Float { min: 0.0, max: 1e9 }, unit: "", phase: true, live: false, doc: "d_loss standard deviation above this: wild oscillation" },
    FieldSpec { path: "health.explode_abs", kind: K::Float { min: 0.0, max: 1e30 }, unit: "", phase: true, live: false, doc: "A loss magnitude above this: exploding" },
    FieldSpec { path: "health.collapse_diversity_ratio", kind: UNIT, unit: "", phase: true, live: false, doc: "Sample diversity / real diversity below this: mode collapse" },
    FieldSpec { path: "health.cooldown_steps", kind: K::Int { min: 0, max: i64::MAX }, unit: "steps", phase: true, live: false, doc: "Steps before the same signal may fire again" },
    FieldSpec { path: "logging.log_every_steps", kind: K::Int { min: 1, max: 1_000_000 }, unit: "steps", phase: true, live: false, doc: "Scalar logging cadence" },
    FieldSpec { path: "logging.sample_every_steps", kind: K::Int { min: 0, max: 10_000_000 }, unit: "steps", phase: true, live: false, doc: "Fixed-noise 8x8 sample grid cadence; 0 = only at the end" },
    FieldSpec { path: "logging.validate_every_steps", kind: K::Int { min: 0, max: 10_000_000 }, unit: "steps", phase: true, live: false, doc: "Validation (sliced Wasserstein distance to held-out images) cadence; 0 = off" },
    FieldSpec { path: "checkpoints.every_steps", kind: K::Int { min: 0, max: 100_000_000 }, unit: "steps", phase: true, live: false, doc: "Checkpoint cadence; 0 = at phase ends and on request only" },
    FieldSpec { path: "checkpoints.keep_last", kind: K::Int { min: 1, max: 10_000 }, unit: "checkpoints", phase: false, live: false, doc: "Latest checkpoints kept (each phase's best is always kept)" },
    FieldSpec { path: "lr_control.enabled", kind: K::Bool, unit: "", phase: true, live: false, doc: "Let a Q-learning controller scale the learning rates (0.7..1.3 of the phase's values)" },
    FieldSpec { path: "lr_control.every_steps", kind: K::Int { min: 1, max: 1_000_000 }, unit: "steps", phase: true, live: false, doc: "Steps between controller decisions" },
    FieldSpec { path: "lr_control.metric", kind: K::Choice(&["g_loss", "d_loss", "wasserstein", "gp"]), unit: "", phase: true, live: false, doc: "The scalar whose movement rewards the controller" },
    FieldSpec { path: "lr_control.better", kind: K::Choice(&["lower", "higher"]), unit: "", phase: true, live: false, doc: "Whether a lower or a higher metric is better" },
    FieldSpec { path: "lr_control.probation_steps", kind: K::Int { min: 0, max: 1_000_000 }, unit: "decisions", phase: true, live: false, doc: "Decisions at the start that keep the phase's learning rates" },
];

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
    fn common(&self) -> super::Common<'_> {
        super::Common {
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
            lr_control: Some(&self.lr_control),
        }
    }

    fn specs(&self) -> &'static [FieldSpec] {
        SPECS
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
}

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
                phases: vec![Phase {
                    name: "main".into(),
                    length: PhaseLength::Epochs(old.epochs),
                    overrides: BTreeMap::new(),
                    start_from_best: false,
                }],
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

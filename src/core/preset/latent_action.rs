//! The latent action model preset (seed 002): a VQ-VAE that infers a discrete action (three
//! codes of one shared codebook) for every transition of a latent video, and a decoder that
//! predicts the next latent frame from the past frames and the actions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use super::data::{LatentData, LatentSource};
use super::schema::{FieldKind as K, FieldSpec};
use super::{
    CheckpointConfig, Family, LoggingConfig, Phase, PhaseLength, PresetError, Problem,
    SCHEMA_VERSION,
};
use crate::core::health::HealthConfig;

/// What the teacher-forced decoder (and the step decoder) may look at to predict frame t+1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecoderContext {
    /// Frames 0..t and actions 0..t (the seed's block-causal mask).
    AllFrames,
    /// Frame t and action t only: the action is the decoder's only source of motion (a lever
    /// of section 4.1 against the collapse of the action channel).
    LastFrame,
}

/// How the codebook learns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodebookUpdate {
    /// The seed's: a codebook loss pulls the codes to the encoder's outputs.
    Loss,
    /// Exponential moving averages of the assigned outputs, with dead codes restarted from
    /// the batch (no codebook loss; the commitment loss stays).
    Ema,
}

/// The learning-rate schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// The base rate throughout (the current trainer without `--scheduler`).
    Constant,
    /// From `min_lr_ratio` to 1 over the warmup, then a cosine down to `min_lr_ratio` at
    /// `cosine_steps`, or at the phase's end when it is 0 (the current trainer's `--scheduler`,
    /// whose cosine spans its epochs; step 0 uses the base rate).
    WarmupCosine,
    /// `lr * step / warmup` then constant (the legacy trainer: step 0 has rate 0).
    LinearWarmup,
}

/// Where a rollout starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Anchor {
    Random,
    Last,
}

crate::preset_section! {
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Model {
        pub patch_size: u32 => field(K::Int { min: 1, max: 64 }, "px", [], "Latent pixels per token side (the seed's 4: 64x64 -> 16x16 tokens)"),
        pub token_dim: u32 => field(K::Int { min: 4, max: 4096 }, "", [], "Token width of the adapters (the seed's 256)"),
        pub embed_dim: u32 => field(K::Int { min: 8, max: 8192 }, "", [], "Transformer width E"),
        pub heads: u32 => field(K::Int { min: 1, max: 64 }, "", [], "Attention heads; divides embed_dim"),
        pub encoder_depth: u32 => field(K::Int { min: 1, max: 48 }, "blocks", [], "Encoder transformer blocks"),
        pub decoder_depth: u32 => field(K::Int { min: 1, max: 48 }, "blocks", [], "Blocks of each decoder"),
        pub mlp_ratio: f64 => field(K::Float { min: 0.5, max: 16.0 }, "", [], "MLP width over embed_dim"),
        pub drop_rate: f64 => field(K::Float { min: 0.0, max: 0.9 }, "", [], "Dropout after the MLP layers (0 in the seed; the overfit test turns it off)"),
        pub attn_drop_rate: f64 => field(K::Float { min: 0.0, max: 0.9 }, "", [], "Dropout of the attention weights (0 in the seed; the overfit test turns it off)"),
        pub codebook_size: u32 => field(K::Int { min: 2, max: 65536 }, "codes", [], "Codebook entries K, shared by the code slots"),
        pub code_dim: u32 => field(K::Int { min: 1, max: 4096 }, "", [], "Width of one code d_c"),
        pub codes_per_action: u32 => field(K::Int { min: 1, max: 16 }, "codes", [], "Codes per transition (the seed's 3: K^3 actions)"),
        pub pre_vq_noise: bool => field(K::Bool, "", [], "Add the seed's VAE-style noise exp(logvar/2)*eps before quantising in training"),
        pub code_layernorm: bool => field(K::Bool, "", [], "LayerNorm on the decoders' code projection (the seed's); off lets the code's scale through"),
        pub codebook_update: CodebookUpdate => field(K::Choice(&["loss", "ema"]), "", [], "loss: the seed's codebook loss; ema: moving averages with dead-code restart"),
        pub ema_decay: f64 => field(K::Float { min: 0.0, max: 0.9999 }, "", [], "EMA decay of the codebook (codebook_update ema)"),
        /// An EMA code whose smoothed count falls below this is restarted from the batch.
        pub dead_code_threshold: f64 => field(K::Float { min: 0.0, max: 1000.0 }, "assignments", [], "Restart an EMA code whose smoothed use per step falls below this (1: TATS's restart_thres, so a code unused for a step restarts at once); 0 = never"),
        pub decoder_context: DecoderContext => field(K::Choice(&["all_frames", "last_frame"]), "", [], "all_frames: the seed's block-causal decoder; last_frame: frame t and action t only"),
        pub separate_step_decoder: bool => field(K::Bool, "", [], "The seed's separate step decoder for rollout and evaluation (trained only by the rollout); off: the teacher-forced decoder steps"),
        /// The decoders predict the change: the next latent is the last one plus the decoded
        /// change, and the output adapter starts at zero, so an untrained model copies the
        /// last frame and training learns what moves (off: the seed's direct prediction).
        #[serde(default)]
        pub predict_change: bool => field(K::Bool, "", [], "Predict the next latent as the last one plus a learned change (the output adapter starts at zero: an untrained model copies the last frame); off: the seed's direct prediction"),
        /// The next latent is the last one moved by a flow the decoders predict (one
        /// displacement per token, spread bilinearly over its patch; the flow head starts at
        /// zero, so an untrained model copies the last frame), plus the decoded change with
        /// `predict_change`: motion is the last latent sampled at full resolution, not redrawn
        /// through the tokens.
        #[serde(default)]
        pub predict_motion: bool => field(K::Bool, "", [], "Predict the next latent as the last one moved by a learned flow (a displacement per token, spread bilinearly; zero at start: an untrained model copies the last frame), plus the learned change with predict_change"),
        /// With `predict_motion`, the learned flow is a correction to the motion measured
        /// between the two last latents (Lucas-Kanade on their channel mean, no weights): an
        /// untrained model continues the last motion at constant velocity, and the actions
        /// learn how the next motion departs from it.
        #[serde(default)]
        pub motion_prior: bool => field(K::Bool, "", [], "With predict_motion: the learned flow corrects the motion measured between the two last latents (Lucas-Kanade, no weights), so an untrained model continues the last motion; off: it corrects standing still"),
        /// The encoder also reads the motion measured from each latent to the next
        /// (Lucas-Kanade on their channel mean, no weights), patch-embedded and added to that
        /// latent's tokens: an action has a motion to say instead of one to find in 8x8
        /// patches. The encoder sees the next latent either way; this hands it the motion in
        /// a form a few hundred clips can teach it to code.
        #[serde(default)]
        pub encoder_motion: bool => field(K::Bool, "", [], "The encoder also reads the motion measured from each latent to the next (Lucas-Kanade, no weights), patch-embedded into that latent's tokens: the action codes a measured motion instead of finding one in the patches"),
        /// With `predict_motion`, the action's codes also say a flow by themselves: a linear
        /// map (zero at start) from the codes alone to a displacement per token, added to the
        /// one the decoders predict. A motion the codes can say without the decoders first
        /// learning to read them, and the same for every frame content.
        #[serde(default)]
        pub action_motion: bool => field(K::Bool, "", [], "With predict_motion: the action's codes alone also say a flow (a linear map to a displacement per token, zero at start), added to the decoders' own"),
    }
}

crate::preset_section! {
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Train {
        pub batch_size: u32 => field(K::Int { min: 1, max: 4096 }, "windows", [phase], "Windows per step, per data-parallel rank (the global batch is ranks x this)"),
        pub lr: f64 => field(K::Float { min: 1e-9, max: 1.0 }, "", [phase live], "AdamW learning rate"),
        pub encoder_lr_scale: f64 => field(K::Float { min: 0.01, max: 100.0 }, "", [phase], "The encoder's learning rate over lr (1 in the seed)"),
        pub beta1: f64 => field(K::Float { min: 0.0, max: 0.999 }, "", [phase], "AdamW beta1"),
        pub beta2: f64 => field(K::Float { min: 0.0, max: 0.99999 }, "", [phase], "AdamW beta2 (0.999 current trainer, 0.95 legacy)"),
        pub weight_decay: f64 => field(K::Float { min: 0.0, max: 1.0 }, "", [phase], "Decoupled weight decay on every parameter"),
        pub schedule: Schedule => field(K::Choice(&["constant", "warmup_cosine", "linear_warmup"]), "", [phase], "constant; warmup_cosine (the seed's --scheduler); linear_warmup (the legacy trainer)"),
        pub warmup_steps: u64 => field(K::Int { min: 0, max: 100000000 }, "steps", [phase], "Warmup length"),
        pub cosine_steps: u64 => field(K::Int { min: 0, max: 100000000 }, "steps", [phase], "Step at which the cosine reaches min_lr_ratio (warmup_cosine); 0: the phase's end (its steps, or a timed phase's time), as the seed's cosine spans its epochs"),
        pub min_lr_ratio: f64 => field(K::Float { min: 0.0, max: 1.0 }, "", [phase], "Floor of the schedule over lr"),
        pub grad_clip: f64 => field(K::Float { min: 0.0, max: 1000.0 }, "", [phase live], "Global gradient norm clip; 0 = off"),
        pub reconstruction_weight: f64 => field(K::Float { min: 0.0, max: 1000.0 }, "", [phase live], "Weight of the teacher-forced MSE"),
        pub commitment_weight: f64 => field(K::Float { min: 0.0, max: 100.0 }, "", [phase live], "beta of the VQ loss"),
        pub rollout_horizon: u32 => field(K::Int { min: 1, max: 64 }, "frames", [phase], "Rollout horizon H; 1 = no rollout (the step decoder then gets no gradient)"),
        pub rollout_weight: f64 => field(K::Float { min: 0.0, max: 1000.0 }, "", [phase live], "Weight of the rollout loss"),
        pub rollout_prob: f64 => field(K::Float { min: 0.0, max: 1.0 }, "", [phase], "Probability of a rollout in a step"),
        pub detach_rollout_first: bool => field(K::Bool, "", [phase], "Detach the rollout's first prediction (the seed's CLI leaves it attached)"),
        pub anchor: Anchor => field(K::Choice(&["random", "last"]), "", [phase], "Where a rollout starts"),
        pub mixed_precision: bool => field(K::Bool, "", [phase], "float16 autocast with a dynamic loss scale on CUDA, as the seed's --mixed_precision (ignored on the CPU)"),
        /// The seed's test mode: one stored batch, dropout off.
        pub overfit_one_batch: bool => field(K::Bool, "", [], "Overfit test: train on the first batch only, dropout off (pass: MSE < 0.01 and MAE < 0.05)"),
    }
}

crate::family_preset! {
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct LatentActionPreset {
        pub data: LatentData => section,
        pub model: Model => section,
        pub train: Train => section,
    }
}

impl Default for LatentActionPreset {
    /// Section 4.1's tiny configuration on the synthetic blobs: a few CPU minutes.
    fn default() -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            family: Family::LatentAction,
            name: "latent_action_tiny".into(),
            seed: 42,
            device: "auto".into(),
            threads: 0,
            data: LatentData::default(),
            model: Model {
                patch_size: 4,
                token_dim: 32,
                embed_dim: 64,
                heads: 4,
                encoder_depth: 2,
                decoder_depth: 2,
                mlp_ratio: 4.0,
                drop_rate: 0.0,
                attn_drop_rate: 0.0,
                codebook_size: 12,
                code_dim: 16,
                codes_per_action: 3,
                pre_vq_noise: true,
                code_layernorm: true,
                codebook_update: CodebookUpdate::Loss,
                ema_decay: 0.99,
                dead_code_threshold: 1.0,
                decoder_context: DecoderContext::AllFrames,
                separate_step_decoder: true,
                predict_change: false,
                predict_motion: false,
                motion_prior: false,
                encoder_motion: false,
                action_motion: false,
            },
            train: Train {
                batch_size: 32,
                lr: 1e-3,
                encoder_lr_scale: 1.0,
                beta1: 0.9,
                beta2: 0.999,
                weight_decay: 0.01,
                schedule: Schedule::WarmupCosine,
                warmup_steps: 100,
                cosine_steps: 0,
                min_lr_ratio: 0.1,
                grad_clip: 1.0,
                reconstruction_weight: 1.0,
                commitment_weight: 0.25,
                rollout_horizon: 2,
                rollout_weight: 1.0,
                rollout_prob: 1.0,
                detach_rollout_first: false,
                anchor: Anchor::Random,
                mixed_precision: false,
                overfit_one_batch: false,
            },
            health: HealthConfig::default(),
            logging: LoggingConfig {
                log_every_steps: 10,
                sample_every_steps: 100,
                validate_every_steps: 100,
                system_every_ms: 1000,
            },
            checkpoints: CheckpointConfig {
                every_steps: 500,
                keep_last: 3,
            },
            phases: vec![Phase::single(PhaseLength::Steps(1200))],
        }
    }
}

impl LatentActionPreset {
    /// The seed's full configuration (its README command): E 512, depth 3/3, 8 heads, K 12,
    /// d_c 128, windows of 8 latent frames of 16x64x64, batch 32, lr 1e-4; on synthetic blob
    /// latents of the seed's size until `--data` names a folder of `.h5` latents.
    #[must_use]
    pub fn seed_full() -> Self {
        let d = Self::default();
        Self {
            name: "latent_action_full".into(),
            data: LatentData {
                sequence_length: 8,
                synthetic_channels: 16,
                synthetic_size: 64,
                synthetic_sigma: 6.0,
                synthetic_move: 8,
                ..d.data.clone()
            },
            model: Model {
                patch_size: 4,
                token_dim: 256,
                embed_dim: 512,
                heads: 8,
                encoder_depth: 3,
                decoder_depth: 3,
                code_dim: 128,
                ..d.model.clone()
            },
            // The README command is the legacy trainer's: betas (0.9, 0.95), a linear warmup
            // over 1000 steps set before each step, full precision.
            train: Train {
                lr: 1e-4,
                beta2: 0.95,
                schedule: Schedule::LinearWarmup,
                warmup_steps: 1000,
                cosine_steps: 0,
                detach_rollout_first: false,
                mixed_precision: false,
                ..d.train.clone()
            },
            logging: LoggingConfig {
                log_every_steps: 20,
                sample_every_steps: 1000,
                validate_every_steps: 1000,
                system_every_ms: 1000,
            },
            checkpoints: CheckpointConfig {
                every_steps: 2000,
                keep_last: 3,
            },
            phases: vec![Phase::single(PhaseLength::Epochs(100))],
            ..d
        }
    }

    /// The tiny configuration with the levers of section 4.1 that made the actions carry the
    /// motion on the synthetic blobs: the decoders see only the last frame (the action is
    /// their only source of motion), an EMA codebook with dead-code restart, no pre-quantiser
    /// noise, 8x8 patches (4 tokens a frame), the encoder at 10x the learning rate, a lighter
    /// commitment (0.05), 3-pixel moves, and the step decoder tied to the teacher-forced one
    /// (the separate one only ever sees predicted frames in training, so decoding from true
    /// frames, as the sensitivity does, is off its distribution).
    #[must_use]
    pub fn levers() -> Self {
        let d = Self::default();
        Self {
            name: "latent_action_levers".into(),
            data: LatentData {
                synthetic_move: 3,
                ..d.data.clone()
            },
            model: Model {
                patch_size: 8,
                pre_vq_noise: false,
                codebook_update: CodebookUpdate::Ema,
                decoder_context: DecoderContext::LastFrame,
                separate_step_decoder: false,
                predict_change: true,
                ..d.model.clone()
            },
            train: Train {
                encoder_lr_scale: 10.0,
                commitment_weight: 0.05,
                ..d.train.clone()
            },
            ..d
        }
    }

    /// The levers for real footage, where most of a frame's change is motion and a few dozen
    /// clips are all there is: the encoder reads the motion measured from each latent to the
    /// next, the action's codes say a flow of their own, and the next latent is the last one
    /// moved by it and by the decoders' flow (no change redrawn through the tokens, which
    /// learned changes that did not carry over to unseen clips); training windows mirrored
    /// and reversed in time. No motion prior: with it the actions learned nothing past it.
    #[must_use]
    pub fn video() -> Self {
        let l = Self::levers();
        Self {
            name: "latent_action_video".into(),
            data: LatentData {
                augment: true,
                ..l.data.clone()
            },
            model: Model {
                predict_change: false,
                predict_motion: true,
                motion_prior: false,
                encoder_motion: true,
                action_motion: true,
                ..l.model.clone()
            },
            ..l
        }
    }

    /// The seed's overfit command at the tiny size: one stored batch of 4, lr 1e-3, constant.
    #[must_use]
    pub fn overfit() -> Self {
        let d = Self::default();
        Self {
            name: "latent_action_overfit".into(),
            train: Train {
                batch_size: 4,
                schedule: Schedule::Constant,
                overfit_one_batch: true,
                ..d.train.clone()
            },
            logging: LoggingConfig {
                log_every_steps: 5,
                sample_every_steps: 100,
                validate_every_steps: 0,
                system_every_ms: 1000,
            },
            checkpoints: CheckpointConfig {
                every_steps: 0,
                keep_last: 2,
            },
            phases: vec![Phase {
                name: "overfit".into(),
                length: PhaseLength::Steps(300),
                overrides: BTreeMap::new(),
                start_from_best: false,
            }],
            ..d
        }
    }
}

/// Every field of the latent action preset, from its declarations.
pub static SPECS: std::sync::LazyLock<Vec<FieldSpec>> =
    std::sync::LazyLock::new(super::schema::specs_of::<LatentActionPreset>);

impl LatentActionPreset {
    fn check_rules(&self, problems: &mut Vec<Problem>) {
        let mut bad = |path: &str, value: String, allowed: String| {
            problems.push(Problem {
                path: path.to_string(),
                value,
                allowed,
            });
        };
        let m = &self.model;
        if !m.embed_dim.is_multiple_of(m.heads) {
            bad(
                "model.heads",
                m.heads.to_string(),
                format!("a divisor of model.embed_dim ({})", m.embed_dim),
            );
        }
        if self.data.source == LatentSource::SyntheticBlobs
            && !self.data.synthetic_size.is_multiple_of(m.patch_size)
        {
            bad(
                "model.patch_size",
                m.patch_size.to_string(),
                format!(
                    "a divisor of data.synthetic_size ({})",
                    self.data.synthetic_size
                ),
            );
        }
        if self.data.source == LatentSource::H5 && self.data.path.trim().is_empty() {
            bad(
                "data.path",
                "\"\"".into(),
                "a folder of .h5 files or a manifest when data.source is h5".into(),
            );
        }
        if self.data.source == LatentSource::SyntheticBlobs
            && self.data.synthetic_frames < self.data.sequence_length
        {
            bad(
                "data.synthetic_frames",
                self.data.synthetic_frames.to_string(),
                format!(
                    "at least data.sequence_length ({})",
                    self.data.sequence_length
                ),
            );
        }
        if m.motion_prior && !m.predict_motion {
            bad(
                "model.motion_prior",
                "true".into(),
                "false unless model.predict_motion is true (the prior is a flow the motion head corrects)".into(),
            );
        }
        if m.action_motion && !m.predict_motion {
            bad(
                "model.action_motion",
                "true".into(),
                "false unless model.predict_motion is true (the actions' flow moves the last latent)".into(),
            );
        }
        if self.train.rollout_horizon >= self.data.sequence_length {
            bad(
                "train.rollout_horizon",
                self.train.rollout_horizon.to_string(),
                format!(
                    "less than data.sequence_length ({}): a rollout needs H + 1 frames",
                    self.data.sequence_length
                ),
            );
        }
    }
}

impl super::FamilyPreset for LatentActionPreset {
    fn specs(&self) -> &'static [FieldSpec] {
        SPECS.as_slice()
    }

    fn check(&self, problems: &mut Vec<Problem>) {
        self.check_rules(problems);
    }

    fn signature(&self) -> String {
        let m = &self.model;
        format!(
            "latent_action/p{}/d{}/e{}/h{}/depth{}-{}/mlp{}/k{}/c{}x{}/len{}/ema{}/step{}",
            m.patch_size,
            m.token_dim,
            m.embed_dim,
            m.heads,
            m.encoder_depth,
            m.decoder_depth,
            m.mlp_ratio,
            m.codebook_size,
            m.codes_per_action,
            m.code_dim,
            self.data.sequence_length,
            m.codebook_update == CodebookUpdate::Ema,
            m.separate_step_decoder
        ) + if m.predict_change { "/change" } else { "" }
            + if m.predict_motion { "/motion" } else { "" }
            + if m.motion_prior { "/prior" } else { "" }
            + if m.encoder_motion { "/encmotion" } else { "" }
            + if m.action_motion { "/actmotion" } else { "" }
    }

    fn data_needs(&self) -> Vec<super::data::DataNeed<'_>> {
        vec![super::data::DataNeed::Latents {
            cfg: &self.data,
            batch_size: self.train.batch_size,
        }]
    }

    fn data_override(&self, path: &str) -> Vec<(&'static str, serde_json::Value)> {
        vec![("data.source", "h5".into()), ("data.path", path.into())]
    }

    fn lr_fields(&self) -> super::LrFields {
        super::LrFields {
            generator: "train.lr",
            critic: &[],
        }
    }

    fn steps_per_epoch_hint(&self) -> Option<u64> {
        None
    }

    fn tiny_overrides(&self) -> Vec<(&'static str, serde_json::Value)> {
        vec![
            ("data.source", "synthetic_blobs".into()),
            ("data.synthetic_channels", 2.into()),
            ("data.synthetic_size", 8.into()),
            ("data.synthetic_files", 10.into()),
            ("data.synthetic_frames", 8.into()),
            ("data.sequence_length", 4.into()),
            ("train.batch_size", 2.into()),
        ]
    }
}

crate::declared!(LatentActionPreset, super::Reports { discrete_actions: true, ..super::Reports::NONE });

/// Parses a latent action preset (new in schema 3).
pub(super) fn parse_versioned(
    text: &str,
    version: u32,
    file: &str,
) -> Result<(LatentActionPreset, Vec<String>), PresetError> {
    match version {
        SCHEMA_VERSION => Ok((super::parse_typed(text, file)?, Vec::new())),
        other => Err(PresetError::Invalid {
            file: file.to_string(),
            problems: vec![Problem {
                path: "schema_version".into(),
                value: other.to_string(),
                allowed: format!(
                    "{SCHEMA_VERSION}: the latent action family is new in schema {SCHEMA_VERSION}"
                ),
            }],
        }),
    }
}

//! The 3-D VQ-GAN preset (seed 003: TATS, medicaldiffusion and the Xray-to-CTPA port): an
//! autoencoder with an EMA codebook, trained with L1, commitment, LPIPS on 2-D slices and two
//! PatchGAN critics (2-D slices and 3-D volumes) with feature matching.

use serde::{Deserialize, Serialize};

pub use super::data::{VolumeData, VolumeSource};
use super::schema::{FieldKind as K, FieldSpec};
use super::{
    CheckpointConfig, Family, LoggingConfig, Phase, PhaseLength, PresetError, Problem,
    SCHEMA_VERSION,
};
use crate::core::health::HealthConfig;

/// How the encoder's convolutions pad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Padding {
    /// TATS and medicaldiffusion.
    Replicate,
    /// The Xray configurations (zeros).
    Constant,
}

/// How the EMA codebook divides its running sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Smoothing {
    /// TATS: Laplace smoothing.
    Laplace,
    /// The Xray port: `max(N, 1)`.
    AtLeastOne,
}

/// The critics' loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscLoss {
    Hinge,
    Vanilla,
}

/// The validation metric that picks the best checkpoint, in its own direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BestMetric {
    /// `val_psnr`, higher is better (the Xray port).
    #[default]
    Psnr,
    /// `val_ssim` (3-D SSIM), higher is better.
    Ssim,
    /// `val_recon_loss` (L1), lower is better (medicaldiffusion).
    ReconLoss,
}

impl BestMetric {
    /// The validation scalar's name.
    #[must_use]
    pub fn scalar(self) -> &'static str {
        match self {
            Self::Psnr => "val_psnr",
            Self::Ssim => "val_ssim",
            Self::ReconLoss => "val_recon_loss",
        }
    }
}

crate::preset_section! {
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Model {
        pub n_hiddens: u32 => field(K::Int { min: 1, max: 1024 }, "channels", [], "Encoder and decoder width h (doubling per stage)"),
        pub embedding_dim: u32 => field(K::Int { min: 1, max: 4096 }, "", [], "Width of a code"),
        pub n_codes: u32 => field(K::Int { min: 2, max: 65536 }, "codes", [], "Codebook entries"),
        pub downsample_d: u32 => field(K::Int { min: 1, max: 64 }, "x", [], "Downsampling of the depth axis (a power of two)"),
        pub downsample_h: u32 => field(K::Int { min: 1, max: 64 }, "x", [], "Downsampling of the height axis (a power of two)"),
        pub downsample_w: u32 => field(K::Int { min: 1, max: 64 }, "x", [], "Downsampling of the width axis (a power of two)"),
        pub num_groups: u32 => field(K::Int { min: 1, max: 256 }, "", [], "GroupNorm groups (the seed's 32)"),
        pub padding: Padding => field(K::Choice(&["replicate", "constant"]), "", [], "Padding of the encoder's convolutions (residual blocks always replicate)"),
        pub smoothing: Smoothing => field(K::Choice(&["laplace", "at_least_one"]), "", [], "EMA codebook: TATS's Laplace smoothing or the Xray port's max(N, 1)"),
        pub random_restart: bool => field(K::Bool, "", [], "Restart codes whose smoothed count falls below restart_threshold"),
        pub restart_threshold: f64 => field(K::Float { min: 0.0, max: 1000.0 }, "", [], "Smoothed count below which a code restarts"),
        pub clamp_output: bool => field(K::Bool, "", [], "Clamp the reconstruction to [-1, 1] (the Xray port)"),
        pub disc_channels: u32 => field(K::Int { min: 1, max: 1024 }, "channels", [], "Critics' first width (doubling, at most 512)"),
        pub disc_layers: u32 => field(K::Int { min: 1, max: 8 }, "", [], "Strided layers of each critic"),
    }
}

crate::preset_section! {
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Train {
        pub batch_size: u32 => field(K::Int { min: 1, max: 4096 }, "volumes", [phase], "Volumes per step, per data-parallel rank (the global batch is ranks x this)"),
        pub lr: f64 => field(K::Float { min: 1e-9, max: 1.0 }, "", [phase live], "Adam learning rate of the autoencoder and the critics"),
        pub beta1: f64 => field(K::Float { min: 0.0, max: 0.999 }, "", [phase], "Adam beta1 (0.5)"),
        pub beta2: f64 => field(K::Float { min: 0.0, max: 0.99999 }, "", [phase], "Adam beta2 (0.9)"),
        pub grad_clip: f64 => field(K::Float { min: 0.0, max: 1000.0 }, "", [phase live], "Global norm clip of the autoencoder's gradients; 0 = off"),
        pub l1_weight: f64 => field(K::Float { min: 0.0, max: 1000.0 }, "", [phase live], "Weight of the L1 reconstruction"),
        pub commitment_weight: f64 => field(K::Float { min: 0.0, max: 100.0 }, "", [phase live], "Commitment factor (0.25 TATS, 2.0 the Xray port)"),
        pub perceptual_weight: f64 => field(K::Float { min: 0.0, max: 100.0 }, "", [phase live], "LPIPS on slices; needs the LPIPS weights (setup makes them), else 0 with a log line"),
        /// Empty: the VGG16 LPIPS setup converts; a `.safetensors` file of those weights; or
        /// any TorchScript LPIPS module (`forward(a, b)`).
        #[serde(default)]
        pub lpips_model: String => field(K::Path, "", [], "LPIPS: empty for the VGG16 weights setup converts, a .safetensors of them, or a TorchScript module"),
        pub image_gan_weight: f64 => field(K::Float { min: 0.0, max: 100.0 }, "", [phase live], "Weight of the 2-D slice critic"),
        pub video_gan_weight: f64 => field(K::Float { min: 0.0, max: 100.0 }, "", [phase live], "Weight of the 3-D volume critic"),
        pub gan_feat_weight: f64 => field(K::Float { min: 0.0, max: 100.0 }, "", [phase live], "Weight of the critics' feature matching"),
        pub disc_start: u64 => field(K::Int { min: 0, max: 100000000 }, "steps", [phase], "Generator steps before the critics start (discriminator_iter_start)"),
        pub disc_loss: DiscLoss => field(K::Choice(&["hinge", "vanilla"]), "", [phase], "The critics' loss"),
        /// The originals run the autoencoder twice per batch (once for its own step, once
        /// for the critics'), so the EMA codebook updates twice; off, the critics reuse the
        /// first forward's reconstruction.
        #[serde(default)]
        pub double_forward: bool => field(K::Bool, "", [phase], "Second autoencoder forward for the critics' step, as the originals (the codebook updates twice per batch)"),
        /// float16 autocast on CUDA with a dynamic loss scale per optimiser (the originals'
        /// `precision: 16`); ignored on the CPU.
        #[serde(default)]
        pub mixed_precision: bool => field(K::Bool, "", [phase], "float16 autocast with a dynamic loss scale on CUDA (the originals' precision 16); ignored on the CPU"),
        #[serde(default)]
        pub best_metric: BestMetric => field(K::Choice(&["psnr", "ssim", "recon_loss"]), "", [], "Validation metric that picks the best checkpoint, in its own direction"),
    }
}

crate::family_preset! {
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct VqGanPreset {
        pub data: VolumeData => section,
        pub model: Model => section,
        pub train: Train => section,
    }
}

impl Default for VqGanPreset {
    /// Spec 4.2's tiny configuration on 16^3 synthetic volumes: a few CPU minutes.
    fn default() -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            family: Family::VqGan,
            name: "vq_gan_tiny".into(),
            seed: 1234,
            device: "auto".into(),
            threads: 0,
            data: VolumeData::default(),
            model: Model {
                n_hiddens: 8,
                embedding_dim: 8,
                n_codes: 64,
                downsample_d: 4,
                downsample_h: 4,
                downsample_w: 4,
                num_groups: 8,
                padding: Padding::Replicate,
                smoothing: Smoothing::Laplace,
                random_restart: true,
                restart_threshold: 1.0,
                clamp_output: false,
                disc_channels: 16,
                disc_layers: 2,
            },
            train: Train {
                batch_size: 4,
                lr: 3e-4,
                beta1: 0.5,
                beta2: 0.9,
                grad_clip: 1.0,
                l1_weight: 1.0,
                commitment_weight: 0.25,
                perceptual_weight: 0.0,
                lpips_model: String::new(),
                image_gan_weight: 1.0,
                video_gan_weight: 0.5,
                gan_feat_weight: 4.0,
                disc_start: 500,
                disc_loss: DiscLoss::Hinge,
                double_forward: false,
                mixed_precision: false,
                best_metric: BestMetric::Psnr,
            },
            health: HealthConfig {
                enabled: false,
                ..HealthConfig::default()
            },
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
            phases: vec![Phase::single(PhaseLength::Steps(1500))],
        }
    }
}

impl VqGanPreset {
    /// The Xray-to-CTPA port's `vq_gan_3d_with_discriminator.yaml`: h 64, 512 codes of 64,
    /// 4x4x4 downsampling, zero padding, `max(N, 1)` smoothing, commitment 2.0, output clamped,
    /// 128^3 patches, both critics from step 10000 with feature matching 4 and LPIPS 0.1, lr
    /// 1e-4. Its volumes are 604x512x512 CTPA scans; set the data size to yours.
    #[must_use]
    pub fn xray() -> Self {
        let d = Self::default();
        Self {
            name: "vq_gan_xray".into(),
            data: VolumeData {
                depth: 128,
                height: 128,
                width: 128,
                patch: 128,
                patch_stride: 128,
                // The port's trainer: one patch per forward, no augmentation.
                patch_batch: 1,
                flip_prob: 0.0,
                synthetic_count: 8,
                synthetic_holdout: 2,
                ..d.data.clone()
            },
            model: Model {
                n_hiddens: 64,
                embedding_dim: 64,
                n_codes: 512,
                num_groups: 32,
                padding: Padding::Constant,
                smoothing: Smoothing::AtLeastOne,
                clamp_output: true,
                disc_channels: 64,
                disc_layers: 3,
                ..d.model.clone()
            },
            train: Train {
                batch_size: 1,
                lr: 1e-4,
                commitment_weight: 2.0,
                perceptual_weight: 0.1,
                image_gan_weight: 1.0,
                video_gan_weight: 0.5,
                gan_feat_weight: 4.0,
                disc_start: 10_000,
                double_forward: true,
                ..d.train.clone()
            },
            phases: vec![Phase::single(PhaseLength::Epochs(50))],
            ..d
        }
    }

    /// The Xray port's `vq_gan_3d_patches.yaml`: the same model with every GAN and perceptual
    /// weight 0 (its reference patchwise trainer ignored them anyway) and the critics' start at
    /// 100000.
    #[must_use]
    pub fn xray_patches() -> Self {
        let x = Self::xray();
        Self {
            name: "vq_gan_xray_patches".into(),
            train: Train {
                perceptual_weight: 0.0,
                image_gan_weight: 0.0,
                video_gan_weight: 0.0,
                gan_feat_weight: 0.0,
                disc_start: 100_000,
                // One forward and one update a step: its trainer has no critic pass.
                double_forward: false,
                ..x.train.clone()
            },
            phases: vec![Phase::single(PhaseLength::Epochs(30))],
            ..x
        }
    }

    /// medicaldiffusion's training script: h 16, 16384 codes of 8, 4x4x4, replicate padding,
    /// Laplace smoothing, commitment 0.25, L1 4, both critics and feature matching 4 from step
    /// 10000, LPIPS 4, batch 2 of 64^3 volumes, at the rate its trainer uses:
    /// `accumulate * (gpus / 8) * (batch / 4) * lr`, 1 x 1/8 x 2/4 x 3e-4 = 1.875e-5 on one GPU.
    #[must_use]
    pub fn medicaldiffusion() -> Self {
        let d = Self::default();
        Self {
            name: "vq_gan_medicaldiffusion".into(),
            data: VolumeData {
                depth: 64,
                height: 64,
                width: 64,
                synthetic_count: 64,
                synthetic_holdout: 8,
                ..d.data.clone()
            },
            model: Model {
                n_hiddens: 16,
                embedding_dim: 8,
                n_codes: 16384,
                num_groups: 32,
                disc_channels: 64,
                disc_layers: 3,
                ..d.model.clone()
            },
            train: Train {
                batch_size: 2,
                lr: 1.875e-5,
                l1_weight: 4.0,
                perceptual_weight: 4.0,
                image_gan_weight: 1.0,
                video_gan_weight: 1.0,
                gan_feat_weight: 4.0,
                disc_start: 10_000,
                double_forward: true,
                best_metric: BestMetric::ReconLoss,
                ..d.train.clone()
            },
            phases: vec![Phase::single(PhaseLength::Steps(100_000))],
            ..d
        }
    }
}

impl VqGanPreset {
    /// TATS's `tats_vqgan.py` defaults on video: h 240, 2048 codes of 256, 4x4x4, replicate
    /// padding, Laplace smoothing, commitment 0.25, L1 4, both critics (weights 1 and 1, no
    /// feature matching, no LPIPS) from step 50000; its trainer's rate rule
    /// (`accumulate * (gpus / 8) * (batch / 4) * lr`) makes its lr 3e-4 1.875e-5 on one GPU at
    /// batch 2; clips of 16 frames at 128x128
    /// (UCF-101's), the codebook updated by the double forward of its two optimiser passes.
    #[must_use]
    pub fn tats() -> Self {
        let d = Self::default();
        Self {
            name: "vq_gan_tats".into(),
            data: VolumeData {
                source: VolumeSource::SyntheticVideo,
                path: String::new(),
                depth: 16,
                height: 128,
                width: 128,
                flip_prob: 0.0,
                synthetic_count: 64,
                synthetic_holdout: 8,
                ..d.data.clone()
            },
            model: Model {
                n_hiddens: 240,
                embedding_dim: 256,
                n_codes: 2048,
                num_groups: 32,
                disc_channels: 64,
                disc_layers: 3,
                ..d.model.clone()
            },
            train: Train {
                batch_size: 2,
                lr: 1.875e-5,
                l1_weight: 4.0,
                commitment_weight: 0.25,
                perceptual_weight: 0.0,
                image_gan_weight: 1.0,
                video_gan_weight: 1.0,
                gan_feat_weight: 0.0,
                disc_start: 50_000,
                double_forward: true,
                ..d.train.clone()
            },
            phases: vec![Phase::single(PhaseLength::Steps(200_000))],
            ..d
        }
    }
}

/// Every field of the VQ-GAN preset, from its declarations.
pub static SPECS: std::sync::LazyLock<Vec<FieldSpec>> =
    std::sync::LazyLock::new(super::schema::specs_of::<VqGanPreset>);

impl VqGanPreset {
    fn check_rules(&self, problems: &mut Vec<Problem>) {
        let mut bad = |path: &str, value: String, allowed: String| {
            problems.push(Problem {
                path: path.to_string(),
                value,
                allowed,
            });
        };
        let m = &self.model;
        let d = &self.data;
        for (path, f, size) in [
            ("model.downsample_d", m.downsample_d, d.depth),
            ("model.downsample_h", m.downsample_h, d.height),
            ("model.downsample_w", m.downsample_w, d.width),
        ] {
            if !f.is_power_of_two() {
                bad(path, f.to_string(), "a power of two".into());
            } else if !size.is_multiple_of(f) {
                bad(
                    path,
                    f.to_string(),
                    format!("a divisor of the volume's {size}"),
                );
            }
        }
        let side = if d.patch == 0 { None } else { Some(d.patch) };
        if let Some(p) = side {
            let smallest = d.depth.min(d.height).min(d.width);
            let factor = m.downsample_d.max(m.downsample_h).max(m.downsample_w);
            if p > smallest || !p.is_multiple_of(factor) {
                bad(
                    "data.patch",
                    p.to_string(),
                    format!("at most the volume's smallest side ({smallest}) and a multiple of the largest downsampling ({factor})"),
                );
            }
        }
        if let Some(p) = side.filter(|p| d.patch_stride > *p) {
            bad(
                "data.patch_stride",
                d.patch_stride.to_string(),
                format!(
                    "at most data.patch ({p}): a larger stride leaves voxels no patch trains on"
                ),
            );
        }
        // GroupNorm splits the encoder's and decoder's stage widths, h 2^j for j = 1 ..
        // log2 of the largest downsampling (h itself without downsampling), into groups.
        let groups = m.num_groups;
        let stages = m
            .downsample_d
            .max(m.downsample_h)
            .max(m.downsample_w)
            .max(1)
            .ilog2();
        let widths: Vec<u32> = if stages == 0 {
            vec![m.n_hiddens]
        } else {
            (1..=stages).map(|j| m.n_hiddens << j).collect()
        };
        if let Some(c) = widths
            .into_iter()
            .find(|c| groups > 0 && groups.min(*c) > 0 && !c.is_multiple_of(groups.min(*c)))
        {
            bad(
                "model.num_groups",
                groups.to_string(),
                format!(
                    "a divisor of the {c} channels of a stage GroupNorm splits (model.n_hiddens {} times 2^j)",
                    m.n_hiddens
                ),
            );
        }
        if d.source == VolumeSource::Nifti && d.path.trim().is_empty() {
            bad(
                "data.path",
                "\"\"".into(),
                "a NIfTI file or folder when data.source is nifti".into(),
            );
        }
        if d.source == VolumeSource::Video && d.path.trim().is_empty() {
            bad(
                "data.path",
                "\"\"".into(),
                "a video file or folder when data.source is video".into(),
            );
        }
        if d.is_video() && (d.height < 16 || d.width < 16) {
            bad(
                "data.height",
                format!("{}x{}", d.height, d.width),
                "frames of at least 16x16 for video".into(),
            );
        }
        let synthetic = matches!(
            d.source,
            VolumeSource::SyntheticVolumes | VolumeSource::SyntheticVideo
        );
        if synthetic && self.train.batch_size > d.synthetic_count {
            bad(
                "train.batch_size",
                self.train.batch_size.to_string(),
                format!("at most data.synthetic_count ({})", d.synthetic_count),
            );
        }
    }
}

impl super::FamilyPreset for VqGanPreset {
    fn specs(&self) -> &'static [FieldSpec] {
        SPECS.as_slice()
    }

    fn check(&self, problems: &mut Vec<Problem>) {
        self.check_rules(problems);
    }

    fn signature(&self) -> String {
        let m = &self.model;
        format!(
            "vq_gan/h{}/e{}/k{}/ds{}x{}x{}/g{}/d{}x{}",
            m.n_hiddens,
            m.embedding_dim,
            m.n_codes,
            m.downsample_d,
            m.downsample_h,
            m.downsample_w,
            m.num_groups,
            m.disc_channels,
            m.disc_layers
        )
    }

    fn data_needs(&self) -> Vec<super::data::DataNeed<'_>> {
        let mut needs = vec![super::data::DataNeed::Volumes {
            cfg: &self.data,
            batch_size: self.train.batch_size,
        }];
        if !self.train.lpips_model.trim().is_empty() {
            needs.push(super::data::DataNeed::File {
                field: "train.lpips_model",
                path: &self.train.lpips_model,
            });
        }
        needs
    }

    /// NIfTI files (a `.nii`/`.nii.gz` file or a folder holding one), else video.
    fn data_override(&self, path: &str) -> Vec<(&'static str, serde_json::Value)> {
        let is_nifti = |p: &std::path::Path| {
            let name = p.to_string_lossy().to_lowercase();
            name.ends_with(".nii") || name.ends_with(".nii.gz")
        };
        let p = std::path::Path::new(path);
        let files: Vec<std::path::PathBuf> = std::fs::read_dir(p)
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        // A video file, or a folder of files none of which is NIfTI; anything else (a
        // missing path, an empty folder) is taken as NIfTI and named as such.
        let video = if p.is_dir() {
            !files.is_empty() && !files.iter().any(|f| is_nifti(f))
        } else {
            p.exists() && !is_nifti(p)
        };
        let source = if video { "video" } else { "nifti" };
        vec![("data.source", source.into()), ("data.path", path.into())]
    }

    fn lr_fields(&self) -> super::LrFields {
        super::LrFields {
            generator: "train.lr",
            critic: &[],
        }
    }

    fn steps_per_epoch_hint(&self) -> Option<u64> {
        matches!(
            self.data.source,
            VolumeSource::SyntheticVolumes | VolumeSource::SyntheticVideo
        )
        .then(|| {
            (u64::from(self.data.synthetic_count) / u64::from(self.train.batch_size.max(1))).max(1)
        })
    }

    fn tiny_overrides(&self) -> Vec<(&'static str, serde_json::Value)> {
        // Video presets train on synthetic clips of 4 frames (3 channels) whole, the others
        // on 16^3 volumes in patches.
        if self.data.is_video() {
            vec![
                ("data.source", "synthetic_video".into()),
                ("data.patch", 0.into()),
                ("data.depth", 4.into()),
                ("data.height", 16.into()),
                ("data.width", 16.into()),
                ("data.synthetic_count", 4.into()),
                ("data.synthetic_holdout", 2.into()),
                ("train.batch_size", 2.into()),
                ("train.disc_start", 1.into()),
            ]
        } else {
            vec![
                ("data.source", "synthetic_volumes".into()),
                ("data.patch", 8.into()),
                ("data.patch_stride", 8.into()),
                ("data.depth", 16.into()),
                ("data.height", 16.into()),
                ("data.width", 16.into()),
                ("data.synthetic_count", 8.into()),
                ("data.synthetic_holdout", 2.into()),
                ("train.batch_size", 2.into()),
                ("train.disc_start", 1.into()),
            ]
        }
    }
}

crate::declared!(VqGanPreset, super::Reports { volumes: true, ..super::Reports::NONE });

/// Parses a VQ-GAN preset (new in schema 3).
pub(super) fn parse_versioned(
    text: &str,
    version: u32,
    file: &str,
) -> Result<(VqGanPreset, Vec<String>), PresetError> {
    match version {
        SCHEMA_VERSION => Ok((super::parse_typed(text, file)?, Vec::new())),
        other => Err(PresetError::Invalid {
            file: file.to_string(),
            problems: vec![Problem {
                path: "schema_version".into(),
                value: other.to_string(),
                allowed: format!(
                    "{SCHEMA_VERSION}: the VQ-GAN family is new in schema {SCHEMA_VERSION}"
                ),
            }],
        }),
    }
}

use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

use crate::core::preset::vq_gan::{DiscLoss, Padding, Smoothing, VqGanPreset};
use crate::core::preset::AnyPreset;
use crate::core::protocol::{Event, HealthRole, Level, MetricDef};
use crate::core::rng::{derive_seed, SplitMix64, Stream};
use crate::engine::data::volumes::{blend, extract, patch_grid, Volume, VolumeSet};
use crate::engine::lpips::Perceptual;
use crate::engine::nn::init::{self, Rule};
use crate::engine::nn::vq3d::{self, Decoder3d, EmaCodebook, Encoder3d, NLayerDiscriminator, Pad};
use crate::engine::optim::{clip_global_norm, scale_grads, Adam, LossScale};
use crate::engine::trainer::{Part, Reconstruction, Rgba, StepCtx, StepError, Trainer, TrainerError, Validation, VolumePair, all_reduce_failed};
use crate::engine::{timing, EngineError};

/// The parts of a step the trainer marks (`engine::timing`); the critics' forward inside the
/// autoencoder's adversarial loss counts as the autoencoder's.
const AE_FORWARD: &str = "autoencoder forward";
const AE_BACKWARD: &str = "autoencoder backward";
const CRITIC_FORWARD: &str = "critics forward";
const CRITIC_BACKWARD: &str = "critics backward";

fn scalar(t: &Tensor) -> f64 {
    t.double_value(&[])
}

/// `PSNR = 10 log10(4 / (MSE + 1e-8))`: data range 2 for [-1, 1].
fn psnr(mse: f64) -> f64 {
    10.0 * (4.0 / (mse + 1e-8)).log10()
}

/// The autoencoder: encoder, 1x1x1 convolutions around the codebook, decoder.
#[derive(Debug)]
struct Autoencoder {
    encoder: Encoder3d,
    pre: nn::Conv3D,
    codebook: EmaCodebook,
    post: nn::Conv3D,
    decoder: Decoder3d,
    clamp: bool,
}

impl Autoencoder {
    fn forward(&self, x: &Tensor, train: bool) -> (Tensor, vq3d::Quantised) {
        let z = self.pre.forward(&self.encoder.forward(x));
        let q = self.codebook.forward(&z, train);
        let xr = self.decoder.forward(&self.post.forward(&q.z_q));
        let xr = if self.clamp { xr.clamp(-1.0, 1.0) } else { xr };
        (xr, q)
    }
}

/// Trains one 3-D VQ-GAN.
#[derive(Debug)]
pub struct VqGanTrainer {
    cfg: VqGanPreset,
    device: Device,
    seed: u64,
    ae_vs: nn::VarStore,
    d_vs: nn::VarStore,
    ae: Autoencoder,
    d2: NLayerDiscriminator,
    d3: NLayerDiscriminator,
    opt_ae: Adam,
    opt_d: Adam,
    lpips: Option<Perceptual>,
    /// The run said why LPIPS is not loaded (it is not tried again).
    lpips_said: bool,
    data: VolumeSet,
    epochs: crate::engine::data::EpochSampler,
    events: Vec<Event>,
    step: u64,
    pending: Option<Reconstruction>,
    pending_volume: Option<VolumePair>,
    /// Mixed precision's loss scales (autoencoder, critics).
    scales: (LossScale, LossScale),
    /// The training set's mean volume (the validation baseline), made at the first
    /// validation.
    mean_volume: Option<Volume>,
}

impl VqGanTrainer {
    pub fn new(cfg: &VqGanPreset, device: Device) -> Result<Self, EngineError> {
        let seed = cfg.seed;
        let data = VolumeSet::load(&cfg.data, seed).map_err(EngineError::Data)?;
        if data.train.len() < cfg.train.batch_size as usize {
            return Err(EngineError::BadInput(format!(
                "train.batch_size = {} is more than the {} training volumes",
                cfg.train.batch_size,
                data.train.len()
            )));
        }
        crate::engine::seed_torch(seed, Stream::Init, 0);
        let ae_vs = nn::VarStore::new(device);
        let d_vs = nn::VarStore::new(device);
        let m = &cfg.model;
        let (h, g) = (i64::from(m.n_hiddens), i64::from(m.num_groups));
        let ds = [
            i64::from(m.downsample_d),
            i64::from(m.downsample_h),
            i64::from(m.downsample_w),
        ];
        let pad = match m.padding {
            Padding::Replicate => Pad::Replicate,
            Padding::Constant => Pad::Zeros,
        };
        let root = ae_vs.root();
        let c = i64::from(cfg.data.channels());
        let encoder = Encoder3d::new(&(&root / "encoder"), c, h, g, ds, pad);
        let top = encoder.out_channels;
        let emb = i64::from(m.embedding_dim);
        let mut codebook = EmaCodebook::new(
            &(&root / "codebook"),
            i64::from(m.n_codes),
            emb,
            match m.smoothing {
                Smoothing::Laplace => vq3d::Smoothing::Laplace,
                Smoothing::AtLeastOne => vq3d::Smoothing::AtLeastOne,
            },
        );
        codebook.random_restart = m.random_restart;
        codebook.restart_threshold = m.restart_threshold;
        let ae = Autoencoder {
            encoder,
            // The originals' `SamePadConv3d(.., 1)`: plain `nn.Conv3d`, PyTorch's defaults.
            pre: init::conv3d(
                &root / "pre_vq_conv",
                top,
                emb,
                1,
                Rule::Torch,
                Default::default(),
            ),
            codebook,
            post: init::conv3d(
                &root / "post_vq_conv",
                emb,
                top,
                1,
                Rule::Torch,
                Default::default(),
            ),
            decoder: Decoder3d::new(&(&root / "decoder"), c, h, g, ds),
            clamp: m.clamp_output,
        };
        let (ndf, layers) = (i64::from(m.disc_channels), m.disc_layers as usize);
        let d2 = NLayerDiscriminator::new(&(d_vs.root() / "image"), c, ndf, layers, false);
        let d3 = NLayerDiscriminator::new(&(d_vs.root() / "video"), c, ndf, layers, true);
        let opt_ae = Adam::new(&ae_vs, cfg.train.lr, cfg.train.beta1, cfg.train.beta2);
        let opt_d = Adam::new(&d_vs, cfg.train.lr, cfg.train.beta1, cfg.train.beta2);
        let mut events = Vec::new();
        // LPIPS's VGG halves a slice four times: sides under 16 voxels have nothing left.
        let side = match cfg.data.patch {
            0 => cfg.data.height.min(cfg.data.width),
            p => p,
        };
        // Loaded when the preset or any of its phases weighs it (a live edit that raises it
        // later loads it then, or is refused with the reason).
        let wanted = cfg.train.perceptual_weight > 0.0
            || cfg.phases.iter().any(|ph| {
                ph.overrides
                    .get("train.perceptual_weight")
                    .and_then(|v| v.to_json().as_f64())
                    .is_some_and(|w| w > 0.0)
            });
        let lpips = if wanted && side < 16 {
            events.push(Event::Log {
                step: 0,
                level: Level::Warning,
                message: format!(
                    "train.perceptual_weight is taken as 0: LPIPS needs slices of at least 16x16, these are {side}x{side}"
                ),
            });
            None
        } else if wanted {
            match Perceptual::load("train.lpips_model", &cfg.train.lpips_model, device) {
                Ok(l) => Some(l),
                // A file the preset names must load; the default weights may be absent.
                Err(e) if !cfg.train.lpips_model.trim().is_empty() => {
                    return Err(EngineError::BadInput(e.to_string()))
                }
                Err(e) => {
                    events.push(Event::Log {
                        step: 0,
                        level: Level::Warning,
                        message: format!("train.perceptual_weight is taken as 0: {e}"),
                    });
                    None
                }
            }
        } else {
            None
        };
        Ok(Self {
            cfg: cfg.clone(),
            device,
            seed,
            ae_vs,
            d_vs,
            ae,
            d2,
            d3,
            opt_ae,
            opt_d,
            lpips_said: wanted && lpips.is_none(),
            lpips,
            data,
            epochs: crate::engine::data::EpochSampler::new(seed),
            events,
            step: 0,
            pending: None,
            pending_volume: None,
            scales: (LossScale::default(), LossScale::default()),
            mean_volume: None,
        })
    }

    fn indices(&mut self, epoch: u64, batch: u64) -> Vec<usize> {
        let (n, b) = (self.data.train.len(), self.cfg.train.batch_size as usize);
        self.epochs.batch(epoch, batch, n, b)
    }

    /// Volumes as `[B, C, D, H, W]`.
    fn stack(&self, vols: &[&Volume]) -> Tensor {
        let data: Vec<f32> = vols.iter().flat_map(|v| v.data.iter().copied()).collect();
        let (c, d) = (vols[0].channels as i64, vols[0].dims);
        Tensor::from_slice(&data)
            .view([vols.len() as i64, c, d[0] as i64, d[1] as i64, d[2] as i64])
            .to_device(self.device)
    }

    /// One depth slice (a video's frame) per sample `[B, C, H, W]` (the same slices of `x` and `xr`).
    fn slices(x: &Tensor, xr: &Tensor, rng: &mut SplitMix64) -> (Tensor, Tensor) {
        let (b, depth) = (x.size()[0], x.size()[2]);
        let t: Vec<i64> = (0..b).map(|_| rng.below(depth as u64) as i64).collect();
        let pick = |v: &Tensor| {
            let rows: Vec<Tensor> = t
                .iter()
                .enumerate()
                .map(|(i, &ti)| v.get(i as i64).select(1, ti))
                .collect();
            Tensor::stack(&rows, 0)
        };
        (pick(x), pick(xr))
    }

    fn disc_pair(&self, r: &Tensor, g: &Tensor) -> Tensor {
        match self.cfg.train.disc_loss {
            DiscLoss::Hinge => {
                ((-r + 1.0).relu().mean(Kind::Float) + (g + 1.0).relu().mean(Kind::Float)) * 0.5
            }
            DiscLoss::Vanilla => {
                ((-r).softplus().mean(Kind::Float) + g.softplus().mean(Kind::Float)) * 0.5
            }
        }
    }

    /// Feature matching over every stage but the logits, weight 1 each: the originals'
    /// `4.0 / (3 + 1)`, written for three critic layers and kept whatever their number.
    fn feature_matching(&self, fake: &[Tensor], real: &[Tensor]) -> Tensor {
        let n = fake.len() - 1;
        let fw = 1.0;
        let terms: Vec<Tensor> = fake[..n]
            .iter()
            .zip(&real[..n])
            .map(|(f, r)| (f - r.detach()).abs().mean(Kind::Float) * fw)
            .collect();
        Tensor::stack(&terms, 0).sum(Kind::Float)
    }

    /// Patches per forward for `total` patches: `data.patch_batch`, or all when it is 0.
    fn patch_batch(&self, total: usize) -> usize {
        match self.cfg.data.patch_batch as usize {
            0 => total.max(1),
            n => n,
        }
    }

    /// Reconstructs volumes `[B, C, D, H, W]` in eval mode: whole, or (patchwise) patch by
    /// patch and blended back; returns the reconstruction and the quantiser's results.
    fn reconstruct(&self, vols: &[&Volume]) -> (Tensor, Vec<vq3d::Quantised>) {
        let patch = self.cfg.data.patch as usize;
        tch::no_grad(|| {
            if patch == 0 {
                let (xr, q) = self.ae.forward(&self.stack(vols), false);
                return (xr, vec![q]);
            }
            let stride = match self.cfg.data.patch_stride as usize {
                0 => patch,
                s => s,
            };
            let mut qs = Vec::new();
            let mut out = Vec::with_capacity(vols.len());
            for v in vols {
                let at = patch_grid(v.dims, [patch; 3], [stride; 3]);
                let mut parts: Vec<([usize; 3], Volume)> = Vec::with_capacity(at.len());
                // Micro-batches of patches through the model (eval mode: no codebook update,
                // so only memory bounds their size).
                for chunk in at.chunks(self.patch_batch(at.len())) {
                    let pieces: Vec<Volume> =
                        chunk.iter().map(|a| extract(v, *a, [patch; 3])).collect();
                    let (xr, q) = self
                        .ae
                        .forward(&self.stack(&pieces.iter().collect::<Vec<_>>()), false);
                    qs.push(q);
                    let xr = xr.to_device(Device::Cpu);
                    for (i, a) in chunk.iter().enumerate() {
                        let data = Vec::<f32>::try_from(xr.get(i as i64).flatten(0, -1))
                            .unwrap_or_default();
                        parts.push((
                            *a,
                            Volume {
                                channels: v.channels,
                                dims: [patch; 3],
                                data,
                            },
                        ));
                    }
                }
                out.push(blend(v.dims, &parts));
            }
            (self.stack(&out.iter().collect::<Vec<_>>()), qs)
        })
    }

    /// The middle depth slices of the first validation volumes: truth and reconstruction.
    fn slice_pictures(&self, count: usize) -> Option<(Tensor, Tensor)> {
        let vols: Vec<&Volume> = self.data.validation.iter().take(count).collect();
        if vols.is_empty() {
            return None;
        }
        let x = self.stack(&vols);
        let (xr, _) = self.reconstruct(&vols);
        let mid = x.size()[2] / 2;
        let to01 = |t: &Tensor| {
            ((t.select(2, mid) + 1.0) / 2.0)
                .clamp(0.0, 1.0)
                .expand([-1, 3, -1, -1], false)
        };
        Some((to01(&x), to01(&xr)))
    }

    /// Depth slices (at most 32, evenly spaced) of a volume `x` `[1, C, D, H, W]` and its
    /// reconstruction, truth beside reconstruction: the Samples tab shows them with their
    /// difference.
    fn depth_slices(&self, x: &Tensor, xr: &Tensor) -> Reconstruction {
        let depth = x.size()[2];
        let n = depth.min(32);
        let idx: Vec<i64> = (0..n).map(|i| i * depth / n).collect();
        let pick = Tensor::from_slice(&idx).to_device(self.device);
        let slices = |t: &Tensor| {
            ((t.get(0).index_select(1, &pick).transpose(0, 1) + 1.0) / 2.0)
                .clamp(0.0, 1.0)
                .expand([-1, 3, -1, -1], false)
        };
        let (truth, recon) = (slices(x), slices(xr));
        Reconstruction {
            split: "validation".into(),
            frames: n as u32,
            truth: crate::engine::convert::strip(&truth),
            recon: crate::engine::convert::strip(&recon),
            boxes: Vec::new(),
            motion_boxes: Vec::new(),
        }
    }
}

impl Trainer for VqGanTrainer {
    fn reseed_data(&mut self, k: u64) {
        self.epochs.reseed(k);
    }

    fn describe(&self) -> String {
        let count = |vs: &nn::VarStore| {
            vs.trainable_variables()
                .iter()
                .map(Tensor::numel)
                .sum::<usize>()
        };
        let m = &self.cfg.model;
        format!(
            "VQ-GAN 3D: h {}, {} codes of {}, downsample {}x{}x{}; autoencoder {:.2} M params, critics {:.2} M; LPIPS {}; data: {}",
            m.n_hiddens,
            m.n_codes,
            m.embedding_dim,
            m.downsample_d,
            m.downsample_h,
            m.downsample_w,
            count(&self.ae_vs) as f64 / 1e6,
            count(&self.d_vs) as f64 / 1e6,
            if self.lpips.is_some() { "on" } else { "off" },
            self.data.description
        )
    }

    fn warnings(&self) -> Vec<String> {
        let mut out = self.data.notes.clone();
        if self.cfg.train.mixed_precision && !self.device.is_cuda() {
            out.push(
                "train.mixed_precision applies on CUDA only; this run trains in float32".into(),
            );
        }
        out
    }

    fn steps_per_epoch(&self) -> u64 {
        crate::engine::dist::steps_per_epoch(
            self.data.train.len(),
            self.cfg.train.batch_size as usize,
        )
    }

    fn metrics(&self) -> Vec<MetricDef> {
        let mut m: Vec<MetricDef> = [
            "recon_loss",
            "commitment_loss",
            "perceptual_loss",
            "aeloss",
            "g_image_loss",
            "g_video_loss",
            "image_gan_feat_loss",
            "video_gan_feat_loss",
            "d_image_loss",
            "d_video_loss",
            "discloss",
        ]
        .iter()
        .map(|n| MetricDef::loss(n))
        .collect();
        m[0] = MetricDef::loss("recon_loss").main();
        m.push(MetricDef::diagnostic("logits_image_real").companion("logits_image_fake"));
        m.push(MetricDef::diagnostic("logits_video_real").companion("logits_video_fake"));
        m.extend(
            [
                "logits_image_fake",
                "logits_video_fake",
                "perplexity",
                "codebook_usage",
                "psnr",
                "grad_norm",
            ]
            .iter()
            .map(|n| MetricDef::diagnostic(n)),
        );
        if let Some(m) = m.iter_mut().find(|m| m.name == "codebook_usage") {
            m.role = Some(HealthRole::CodebookUse);
        }
        m.push(MetricDef::setting("lr"));
        m.push(
            MetricDef::validation("val_psnr", true)
                .main()
                .baseline("val_mean_volume_psnr"),
        );
        m.push(MetricDef::validation("val_mean_volume_psnr", true));
        m.push(MetricDef::validation("val_recon_loss", false));
        m.push(MetricDef::validation("val_perplexity", true));
        m.push(MetricDef::validation("val_codebook_usage", true).main());
        m.push(MetricDef::validation("val_codebook_used", true));
        m.push(MetricDef::validation("val_commitment_loss", false));
        m.push(MetricDef::validation("val_perceptual_loss", false));
        m.push(MetricDef::validation("val_ssim", true));
        m.push(MetricDef::validation("val_corr", true));
        m
    }

    fn apply_preset(&mut self, preset: &AnyPreset) -> Result<(), TrainerError> {
        let AnyPreset::VqGan(p) = preset else {
            return Err(TrainerError::Config(format!(
                "a {} preset given to the VQ-GAN trainer",
                preset.family().name()
            )));
        };
        // A perceptual weight raised where LPIPS was not loaded (a phase's, or a live edit's):
        // load it now; where it cannot be, the weight is taken as 0 and the run says why, once.
        if p.train.perceptual_weight > 0.0 && self.lpips.is_none() && !self.lpips_said {
            let side = match p.data.patch {
                0 => p.data.height.min(p.data.width),
                patch => patch,
            };
            let loaded = if side < 16 {
                Err(format!(
                    "LPIPS needs slices of at least 16x16, these are {side}x{side}"
                ))
            } else {
                Perceptual::load("train.lpips_model", &p.train.lpips_model, self.device)
                    .map_err(|e| e.to_string())
            };
            match loaded {
                Ok(l) => self.lpips = Some(l),
                Err(why) => {
                    self.lpips_said = true;
                    self.events.push(Event::Log {
                        step: self.step,
                        level: Level::Warning,
                        message: format!("train.perceptual_weight is taken as 0: {why}"),
                    });
                }
            }
        }
        for o in [&mut self.opt_ae, &mut self.opt_d] {
            o.lr = p.train.lr;
            o.beta1 = p.train.beta1;
            o.beta2 = p.train.beta2;
        }
        self.cfg = p.clone();
        Ok(())
    }

    fn non_finite_advice(&self) -> &'static str {
        "lower train.lr 3-10x, or the GAN weights, then resume from the last good checkpoint"
    }

    fn timed_parts(&self) -> &'static [&'static str] {
        &[AE_FORWARD, AE_BACKWARD, CRITIC_FORWARD, CRITIC_BACKWARD]
    }

    fn train_step(&mut self, ctx: &StepCtx) -> Result<Vec<(&'static str, f64)>, StepError> {
        crate::engine::trainer::injected_failure(ctx.step)?;
        self.step = ctx.step + 1;
        crate::engine::seed_torch(self.seed, Stream::Step, ctx.step);
        let mut rng = SplitMix64::new(derive_seed(self.seed, Stream::Step, ctx.step));
        let idx = self.indices(ctx.epoch, ctx.batch_in_epoch);
        // The flips are drawn for the whole global batch and each data-parallel rank takes
        // its items' (alone, all of them), so ranks flip as one process would.
        let (rank, world) = crate::engine::dist::rank_and_world();
        let flips: Vec<Option<usize>> = (0..idx.len() * world)
            .map(|_| (rng.next_f64() < self.cfg.data.flip_prob).then(|| rng.below(3) as usize))
            .collect();
        // The batch as one tensor on the device, flipped there; patches are views of it, so
        // no voxel is copied one at a time.
        let data = timing::scope(timing::DATA);
        let vols: Vec<&Volume> = idx.iter().map(|&i| &self.data.train[i]).collect();
        let x = self.stack(&vols);
        let items: Vec<Tensor> = vols
            .iter()
            .zip(flips.into_iter().skip(rank * idx.len()))
            .enumerate()
            .map(|(b, (v, axis))| {
                let item = x.get(b as i64);
                match axis {
                    // A clip of video only mirrors left-right; a volume on any axis (the
                    // item's axes are channel, depth, height, width).
                    Some(axis) => item.flip([1 + if v.channels > 1 { 2 } else { axis as i64 }]),
                    None => item,
                }
            })
            .collect();
        // Whole volumes as one batch, or (patchwise) every patch of every volume, in
        // micro-batches of `data.patch_batch`.
        let patch = self.cfg.data.patch as usize;
        let pieces: Vec<Tensor> = if patch == 0 {
            vec![Tensor::stack(&items, 0)]
        } else {
            let stride = match self.cfg.data.patch_stride as usize {
                0 => patch,
                s => s,
            };
            let p = patch as i64;
            let patches: Vec<Tensor> = vols
                .iter()
                .zip(&items)
                .flat_map(|(v, item)| {
                    patch_grid(v.dims, [patch; 3], [stride; 3])
                        .into_iter()
                        .map(move |at| {
                            item.narrow(1, at[0] as i64, p)
                                .narrow(2, at[1] as i64, p)
                                .narrow(3, at[2] as i64, p)
                        })
                })
                .collect();
            patches
                .chunks(self.patch_batch(usize::MAX))
                .map(|c| Tensor::stack(c, 0))
                .collect()
        };
        // Each piece's losses are means over its items: weighted by its share of the step's
        // items, the step is the mean over all of them.
        drop(data);
        let total: i64 = pieces.iter().map(|p| p.size()[0]).sum();
        let share = |x: &Tensor| x.size()[0] as f64 / total.max(1) as f64;
        let t = self.cfg.train.clone();
        let gan = t.image_gan_weight > 0.0 || t.video_gan_weight > 0.0;
        let disc_on = ctx.step >= t.disc_start && gan;
        if gan && ctx.step == t.disc_start {
            // A marker on every plot: where the critics start.
            self.events.push(Event::DiscriminatorSwitch {
                step: ctx.step,
                from: "none".into(),
                to: "2-D and 3-D critics".into(),
                reason: format!("train.disc_start = {} generator steps", t.disc_start),
                values: Vec::new(),
            });
        }
        let mut sums = std::collections::BTreeMap::<&'static str, f64>::new();
        let mut add = |k: &'static str, v: f64, w: f64| *sums.entry(k).or_insert(0.0) += v * w;
        let mut done = Vec::with_capacity(pieces.len());
        // Mixed precision: float16 autocast on CUDA, each optimiser with its loss scale.
        let amp = t.mixed_precision && self.device.is_cuda();
        let (ae_scale, d_scale) = if amp {
            (self.scales.0.scale, self.scales.1.scale)
        } else {
            (1.0, 1.0)
        };
        self.opt_ae.zero_grad();
        for x in &pieces {
            timing::enter(AE_FORWARD);
            let w = share(x);
            let (xr, q) = tch::autocast(amp, || self.ae.forward(x, true));
            let xr = xr.to_kind(Kind::Float);
            let recon = (&xr - x).abs().mean(Kind::Float) * t.l1_weight;
            let commitment = &q.commitment * t.commitment_weight;
            let (f, fr) = Self::slices(x, &xr, &mut rng);
            let perceptual = match &self.lpips {
                Some(l) if t.perceptual_weight > 0.0 => {
                    tch::autocast(amp, || l.distance(&f, &fr))
                        .map_err(StepError::at("LPIPS"))?
                        .mean(Kind::Float)
                        * t.perceptual_weight
                }
                _ => recon.zeros_like(),
            };
            let zero = || recon.zeros_like();
            let (mut g_img, mut g_vid, mut fm_img, mut fm_vid) = (zero(), zero(), zero(), zero());
            if disc_on {
                if t.image_gan_weight > 0.0 {
                    let (fake_logits, fake_feats) =
                        tch::autocast(amp, || self.d2.forward_t(&fr, true));
                    g_img = -fake_logits.mean(Kind::Float);
                    if t.gan_feat_weight > 0.0 {
                        let (_, real_feats) = tch::autocast(amp, || self.d2.forward_t(&f, true));
                        fm_img = self.feature_matching(&fake_feats, &real_feats);
                    }
                }
                if t.video_gan_weight > 0.0 {
                    let (fake_logits, fake_feats) =
                        tch::autocast(amp, || self.d3.forward_t(&xr, true));
                    g_vid = -fake_logits.mean(Kind::Float);
                    if t.gan_feat_weight > 0.0 {
                        let (_, real_feats) = tch::autocast(amp, || self.d3.forward_t(x, true));
                        fm_vid = self.feature_matching(&fake_feats, &real_feats);
                    }
                }
            }
            let adv = &g_img * t.image_gan_weight + &g_vid * t.video_gan_weight;
            let fm = (&fm_img + &fm_vid) * t.gan_feat_weight;
            let aeloss = &recon + &commitment + &adv + &perceptual + &fm;
            timing::enter(AE_BACKWARD);
            (&aeloss * (w * ae_scale))
                .f_backward()
                .map_err(StepError::at("autoencoder backward"))?;
            add("recon_loss", scalar(&recon), w);
            add("commitment_loss", scalar(&commitment), w);
            add("perceptual_loss", scalar(&perceptual), w);
            add("aeloss", scalar(&aeloss), w);
            add("perplexity", q.perplexity, w);
            add("codebook_usage", q.used as f64, w);
            add(
                "psnr",
                psnr(scalar(&(&xr - x).square().mean(Kind::Float))),
                w,
            );
            if disc_on {
                add("g_image_loss", scalar(&g_img), w);
                add("g_video_loss", scalar(&g_vid), w);
                add("image_gan_feat_loss", scalar(&fm_img), w);
                add("video_gan_feat_loss", scalar(&fm_vid), w);
            }
            done.push(xr.detach());
        }
        // Clip and step the autoencoder only; the critics' gradients from its loss are dropped.
        // By name: the data-parallel all-reduce pairs gradients by position.
        let ae_params = crate::engine::dist::trainable_in_order(&self.ae_vs);
        crate::engine::dist::mean_grads(&ae_params).map_err(all_reduce_failed)?;
        if amp {
            scale_grads(&ae_params, 1.0 / ae_scale);
        }
        let grad_norm = clip_global_norm(&ae_params, t.grad_clip);
        // With mixed precision a step whose gradients overflowed is skipped (the scale halves).
        if !amp || self.scales.0.update(grad_norm) {
            self.opt_ae.step();
        }
        if t.double_forward && gan {
            timing::enter(AE_FORWARD);
            // The originals' second optimiser pass runs the autoencoder again (in training
            // mode, so the EMA codebook updates a second time), even before the critics
            // start, when their loss is multiplied by 0.
            done = tch::no_grad(|| {
                pieces
                    .iter()
                    .map(|x| tch::autocast(amp, || self.ae.forward(x, true).0).to_kind(Kind::Float))
                    .collect()
            });
        }
        if disc_on {
            self.opt_d.zero_grad();
            for (x, xr) in pieces.iter().zip(&done) {
                timing::enter(CRITIC_FORWARD);
                let w = share(x);
                let zero = || x.zeros_like().mean(Kind::Float);
                let (mut d_img, mut d_vid) = (zero(), zero());
                let (f, fr) = Self::slices(x, xr, &mut rng);
                if t.image_gan_weight > 0.0 {
                    let (r, _) = tch::autocast(amp, || self.d2.forward_t(&f, true));
                    let (g, _) = tch::autocast(amp, || self.d2.forward_t(&fr, true));
                    add("logits_image_real", scalar(&r.mean(Kind::Float)), w);
                    add("logits_image_fake", scalar(&g.mean(Kind::Float)), w);
                    d_img = self.disc_pair(&r, &g);
                }
                if t.video_gan_weight > 0.0 {
                    let (r, _) = tch::autocast(amp, || self.d3.forward_t(x, true));
                    let (g, _) = tch::autocast(amp, || self.d3.forward_t(xr, true));
                    add("logits_video_real", scalar(&r.mean(Kind::Float)), w);
                    add("logits_video_fake", scalar(&g.mean(Kind::Float)), w);
                    d_vid = self.disc_pair(&r, &g);
                }
                let dloss = &d_img * t.image_gan_weight + &d_vid * t.video_gan_weight;
                timing::enter(CRITIC_BACKWARD);
                (&dloss * (w * d_scale))
                    .f_backward()
                    .map_err(StepError::at("critic backward"))?;
                add("d_image_loss", scalar(&d_img), w);
                add("d_video_loss", scalar(&d_vid), w);
                add("discloss", scalar(&dloss), w);
            }
            let d_params = crate::engine::dist::trainable_in_order(&self.d_vs);
            crate::engine::dist::mean_grads(&d_params).map_err(all_reduce_failed)?;
            if amp {
                scale_grads(&d_params, 1.0 / d_scale);
                if self.scales.1.update(clip_global_norm(&d_params, 0.0)) {
                    self.opt_d.step();
                }
            } else {
                self.opt_d.step();
            }
        }
        let mut out: Vec<(&'static str, f64)> = sums.into_iter().collect();
        // A mixed-precision step whose gradients overflowed was skipped (the scale halves):
        // its norm is no finding, so it is not logged.
        if !amp || grad_norm.is_finite() {
            out.push(("grad_norm", grad_norm));
        }
        out.push(("lr", self.opt_ae.lr));
        Ok(out)
    }

    fn sample_grid(&mut self) -> Rgba {
        match self.slice_pictures(8) {
            Some((truth, recon)) => {
                let n = truth.size()[0];
                crate::engine::convert::grid_rgba(&Tensor::cat(&[truth, recon], 0), n)
            }
            None => Rgba {
                width: 1,
                height: 1,
                pixels: vec![0, 0, 0, 255],
            },
        }
    }

    /// Depth slices of the first validation volume (at most 32, evenly spaced), truth beside
    /// reconstruction: the Samples tab shows them with their difference.
    fn reconstruction(&mut self) -> Option<Reconstruction> {
        let v = self.data.validation.first()?;
        let (xr, _) = self.reconstruct(&[v]);
        Some(self.depth_slices(&self.stack(&[v]), &xr))
    }

    fn pending_reconstruction(&mut self) -> Option<Reconstruction> {
        self.pending.take()
    }

    fn pending_volume(&mut self) -> Option<VolumePair> {
        self.pending_volume.take()
    }

    fn drain_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    fn validate(&mut self) -> Option<Validation> {
        if self.data.validation.is_empty() {
            return None;
        }
        let b = self.cfg.train.batch_size.max(1) as usize;
        // The training set's mean volume, summed volume by volume on the CPU once (stacking
        // the set on the device cost gigabytes at CT sizes, at every validation).
        let mean = self
            .mean_volume
            .get_or_insert_with(|| {
                let mut sum = vec![0f64; self.data.train.first().map_or(0, |v| v.data.len())];
                for v in &self.data.train {
                    for (s, x) in sum.iter_mut().zip(&v.data) {
                        *s += f64::from(*x);
                    }
                }
                let n = self.data.train.len().max(1) as f64;
                let data: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
                self.data.train.first().map_or_else(
                    || Volume::scalar([1, 1, 1], vec![0.0]),
                    |v| Volume { data, ..v.clone() },
                )
            })
            .clone();
        let mean = self.stack(&[&mean]);
        let t = self.cfg.train.clone();
        let mut rng = SplitMix64::new(derive_seed(self.seed, Stream::Validation, 3));
        let (mut mse, mut base, mut l1, mut commit, mut perp, mut corr, mut ssim) =
            (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
        let mut perceptual: Option<f64> = None;
        let k_codes = i64::from(self.cfg.model.n_codes);
        let mut counts = vec![0u64; k_codes as usize];
        let mut n = 0.0;
        let vols: Vec<&Volume> = self.data.validation.iter().collect();
        // The first volume's truth and reconstruction, for the pictures and the viewer.
        let mut first: Option<(Tensor, Tensor)> = None;
        for chunk in vols.chunks(b) {
            let x = self.stack(chunk);
            let (xr, qs) = self.reconstruct(chunk);
            if first.is_none() {
                first = Some((x.narrow(0, 0, 1), xr.narrow(0, 0, 1)));
            }
            let k = chunk.len() as f64;
            mse += scalar(&(&xr - &x).square().mean(Kind::Float)) * k;
            base += scalar(&(&x - &mean).square().mean(Kind::Float)) * k;
            // Weighted as training logs them (the originals' val/recon_loss is l1_weight x L1),
            // so a plot of both compares like with like.
            l1 += scalar(&(&xr - &x).abs().mean(Kind::Float)) * t.l1_weight * k;
            let m = qs.len().max(1) as f64;
            commit +=
                qs.iter().map(|q| scalar(&q.commitment)).sum::<f64>() / m * t.commitment_weight * k;
            if let Some(l) = self.lpips.as_ref().filter(|_| t.perceptual_weight > 0.0) {
                let (f, fr) = Self::slices(&x, &xr, &mut rng);
                if let Ok(d) = tch::no_grad(|| l.distance(&f, &fr)) {
                    *perceptual.get_or_insert(0.0) +=
                        scalar(&d.mean(Kind::Float)) * t.perceptual_weight * k;
                }
            }
            perp += qs.iter().map(|q| q.perplexity).sum::<f64>() / m * k;
            for q in &qs {
                let hist = q.indices.flatten(0, -1).bincount::<Tensor>(None, k_codes);
                let hist: Vec<i64> = Vec::try_from(hist).unwrap_or_default();
                for (c, h) in counts.iter_mut().zip(hist) {
                    *c += h as u64;
                }
            }
            let (a, r) = (x.flatten(1, -1), xr.flatten(1, -1));
            let (a, r) = (
                &a - a.mean_dim(1, true, Kind::Float),
                &r - r.mean_dim(1, true, Kind::Float),
            );
            let c = (&a * &r).sum_dim_intlist(1, false, Kind::Float)
                / ((a.square().sum_dim_intlist(1, false, Kind::Float)
                    * r.square().sum_dim_intlist(1, false, Kind::Float))
                .sqrt()
                    + 1e-8);
            corr += scalar(&c.sum(Kind::Float));
            ssim += scalar(&crate::engine::metrics::ssim3d(&x, &xr, 2.0).sum(Kind::Float));
            n += k;
        }
        let used = counts.iter().filter(|&&c| c > 0).count();
        self.events.push(Event::Codes {
            step: self.step,
            counts,
            actions: Vec::new(),
        });
        if let (Some((x, xr)), Some(v)) = (first, self.data.validation.first()) {
            self.pending = Some(self.depth_slices(&x, &xr));
            let data =
                Vec::<f32>::try_from(xr.to_device(Device::Cpu).flatten(0, -1)).unwrap_or_default();
            self.pending_volume = Some(VolumePair {
                split: "validation".into(),
                truth: v.clone(),
                recon: Volume { data, ..v.clone() },
            });
        }
        let mut scalars = vec![
            ("val_psnr", psnr(mse / n)),
            ("val_mean_volume_psnr", psnr(base / n)),
            ("val_recon_loss", l1 / n),
            ("val_perplexity", perp / n),
            ("val_codebook_usage", used as f64 / k_codes as f64),
            ("val_codebook_used", used as f64),
            ("val_commitment_loss", commit / n),
            ("val_corr", corr / n),
            ("val_ssim", ssim / n),
        ];
        if let Some(p) = perceptual {
            scalars.push(("val_perceptual_loss", p / n));
        }
        Some(Validation {
            scalars,
            best_by: self.cfg.train.best_metric.scalar(),
            diversity_ratio: None,
        })
    }

    fn parts(&mut self) -> Vec<Part<'_>> {
        vec![
            Part::Vars("ae", &self.ae_vs),
            Part::Vars("d", &self.d_vs),
            Part::Optimizer("opt_ae", &mut self.opt_ae),
            Part::Optimizer("opt_d", &mut self.opt_d),
        ]
    }

    fn family_state(&self) -> serde_json::Value {
        serde_json::json!({ "loss_scales": [self.scales.0, self.scales.1] })
    }

    fn load_family_state(&mut self, state: &serde_json::Value) -> Result<(), TrainerError> {
        if let Some(v) = state.get("loss_scales") {
            let [a, b]: [LossScale; 2] = serde_json::from_value(v.clone())
                .map_err(|e| TrainerError::State(format!("family_state.loss_scales: {e}")))?;
            self.scales = (a, b);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::preset::vq_gan::DiscLoss;

    fn trainer(disc_loss: DiscLoss) -> VqGanTrainer {
        let mut cfg = VqGanPreset::default();
        cfg.data.synthetic_count = 2;
        cfg.data.synthetic_holdout = 1;
        cfg.train.batch_size = 1;
        cfg.train.disc_loss = disc_loss;
        VqGanTrainer::new(&cfg, Device::Cpu).expect("trainer")
    }

    fn t(v: &[f32]) -> Tensor {
        Tensor::from_slice(v)
    }

    /// The critics' losses as the originals write them: hinge
    /// `0.5 (mean relu(1 - real) + mean relu(1 + fake))`, vanilla
    /// `0.5 (mean softplus(-real) + mean softplus(fake))`.
    #[test]
    fn hinge_and_vanilla_critic_losses_have_the_originals_values() {
        let (r, g) = (t(&[2.0, 0.0, -1.0]), t(&[-2.0, 0.5, 1.0]));
        let hinge = trainer(DiscLoss::Hinge).disc_pair(&r, &g).double_value(&[]);
        let want = 0.5 * ((0.0 + 1.0 + 2.0) / 3.0 + (0.0 + 1.5 + 2.0) / 3.0);
        assert!((hinge - want).abs() < 1e-6, "{hinge} {want}");
        let vanilla = trainer(DiscLoss::Vanilla)
            .disc_pair(&r, &g)
            .double_value(&[]);
        let sp = |x: f64| (1.0 + x.exp()).ln();
        let want =
            0.5 * ((sp(-2.0) + sp(0.0) + sp(1.0)) / 3.0 + (sp(-2.0) + sp(0.5) + sp(1.0)) / 3.0);
        assert!((vanilla - want).abs() < 1e-6, "{vanilla} {want}");
    }

    /// Feature matching: the mean absolute difference of every stage's features but the
    /// logits, each at weight 1 (the originals' 4 / (3 + 1)), whatever the critics' depth.
    #[test]
    fn feature_matching_weighs_every_stage_one() {
        let tr = trainer(DiscLoss::Hinge);
        for stages in [3usize, 5] {
            let fake: Vec<Tensor> = (0..stages).map(|i| t(&[i as f32, 1.0])).collect();
            let real: Vec<Tensor> = (0..stages).map(|_| t(&[0.0, 0.0])).collect();
            let got = tr.feature_matching(&fake, &real).double_value(&[]);
            // Stages 0..stages-1 (the last is the logits): mean |[i, 1]| = (i + 1) / 2.
            let want: f64 = (0..stages - 1).map(|i| (i as f64 + 1.0) / 2.0).sum();
            assert!((got - want).abs() < 1e-6, "{stages} stages: {got} {want}");
        }
    }

}

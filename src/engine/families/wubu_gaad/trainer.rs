use tch::{nn, Device, Kind, Tensor};

use super::model::{
    self, box_condition, region_major, roi_boxes, Critic, Dims, Encoder, Generator,
};
use crate::core::control::heuristics::HeuristicState;
use crate::core::control::seed::GenHistory;
use crate::core::control::{ActionSet, Better};
use crate::core::gaad::{self, Region};
use crate::core::preset::wubu_gaad::{FlowMethod, InitialDisc, ValMetric, WubuGaadPreset};
use crate::core::preset::AnyPreset;
use crate::core::protocol::Event;
use crate::core::protocol::{HealthRole, MetricDef};

/// Below this effective KL weight the prior is not trained: the sample view says so.
const PRIOR_UNTRAINED_KL: f64 = 1e-3;
use crate::core::rng::Stream;
use crate::engine::data::VideoSet;
use crate::engine::optim::{AdamRule, RiemannianSgd};
use crate::engine::trainer::{Part, Reconstruction, Rgba, StepCtx, StepError, Trainer, TrainerError, Validation, all_reduce_failed};
use crate::engine::{timing, EngineError};

/// The parts of a step the trainer marks (`engine::timing`): the encoder and generator's
/// shared forward and their loss count as the generator's; the Q-controllers and heuristics
/// as the controllers'.
const GENERATOR_FORWARD: &str = "generator forward";
const GENERATOR_BACKWARD: &str = "generator backward";
const CRITIC_FORWARD: &str = "critic forward";
const CRITIC_BACKWARD: &str = "critic backward";
const CONTROLLERS: &str = "controllers";

mod control;
mod losses;
mod motion;
mod step;

use control::{kind_name, new_q, CriticHist, FamilyState, Interval};

/// Trains the WuBu-GAAD hybrid VAE-GAN.
#[derive(Debug)]
pub struct WubuGaadTrainer {
    cfg: WubuGaadPreset,
    device: Device,
    seed: u64,
    d: Dims,
    data: VideoSet,
    g_vs: nn::VarStore,
    d_vs: [nn::VarStore; 2],
    enc: Encoder,
    gen: Generator,
    critics: [Box<dyn Critic>; 2],
    opt_g: RiemannianSgd,
    opt_d: [RiemannianSgd; 2],
    /// The regions as the model encodes, generates and assembles them: the GAAD layout's,
    /// grown by `model.region_overlap`.
    boxes: Vec<Region>,
    /// The GAAD layout's own boxes (where seams would show).
    layout: Vec<Region>,
    cond: Tensor,
    flow_net: Option<tch::CModule>,
    lpips: Option<crate::engine::lpips::Perceptual>,
    fixed_noise: Tensor,
    epochs: crate::engine::data::EpochSampler,
    st: FamilyState,
    events: Vec<Event>,
    pending_val_recon: Option<Reconstruction>,
    /// The mean training frame, for the validation baseline.
    mean_image: Option<Tensor>,
    notes: Vec<String>,
}

/// The trainable parameters of a var store for the optimizer, sorted by name. All are
/// Euclidean: level descriptors and boundary points are tangent vectors at the origin, which
/// the model maps onto its level's ball with the learned curvature (`expmap0`), so they are
/// optimised as the vectors they are, at the full learning rate. (Optimised as points on the
/// ball, they took a quarter of the rate, a capped norm and the initial curvature.)
fn params(vs: &nn::VarStore) -> Vec<(String, Tensor, Option<f64>)> {
    let mut vars: Vec<(String, Tensor, Option<f64>)> = vs
        .variables()
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .map(|(name, t)| (name, t, None))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

fn adam_rule(t: &crate::core::preset::wubu_gaad::WubuTrain) -> Option<AdamRule> {
    (t.optimizer == crate::core::preset::wubu_gaad::Optimizer::RiemannianAdam).then_some(AdamRule {
        beta2: t.adam_beta2,
        eps: 1e-8,
    })
}

fn value(t: &Tensor) -> f64 {
    t.double_value(&[])
}

/// One forward pass's products.
struct Forward {
    enc: model::Encoded,
    /// The predicted frames' patches, `[B, Np, R, C, ph, pw]`.
    targets: Tensor,
    gen: model::Generated,
    real_pred: Tensor,
    real_coeffs: Tensor,
    fake_coeffs: Tensor,
    motion_boxes: Vec<Region>,
}

impl WubuGaadTrainer {
    pub fn new(cfg: &WubuGaadPreset, device: Device) -> Result<Self, EngineError> {
        let seed = cfg.seed;
        let data = VideoSet::load(&cfg.data, seed).map_err(EngineError::Data)?;
        let d = Dims::new(cfg);
        let kind = gaad::Kind::parse(&cfg.model.decomposition)
            .map_err(|e| EngineError::BadInput(format!("model.decomposition: {e}")))?;
        let boxes = gaad::decompose(
            kind,
            cfg.data.image_w,
            cfg.data.image_h,
            d.regions as usize,
            cfg.model.min_region_px,
        )
        .map_err(|e| EngineError::BadInput(format!("GAAD: {e}")))?;
        let layout = boxes.clone();
        let boxes = gaad::grow(
            &boxes,
            cfg.model.region_overlap,
            cfg.data.image_w,
            cfg.data.image_h,
        );
        crate::engine::seed_torch(seed, Stream::Init, 0);
        let g_vs = nn::VarStore::new(device);
        let enc = Encoder::new(&(g_vs.root() / "encoder"), cfg, &d);
        let gen = Generator::new(&(g_vs.root() / "generator"), cfg, &d);
        let d_vs = [nn::VarStore::new(device), nn::VarStore::new(device)];
        let critics = [
            model::critic(&d_vs[0].root(), cfg.model.disc_primary, cfg, &d),
            model::critic(&d_vs[1].root(), cfg.model.disc_alternative, cfg, &d),
        ];
        let m = &cfg.model;
        let t = &cfg.train;
        let mut opt_g = RiemannianSgd::new(params(&g_vs), t.lr_gen, t.momentum, t.weight_decay);
        let mut opt_d = [
            RiemannianSgd::new(
                params(&d_vs[0]),
                t.lr_disc_primary,
                t.momentum,
                t.weight_decay,
            ),
            RiemannianSgd::new(
                params(&d_vs[1]),
                t.lr_disc_alternative,
                t.momentum,
                t.weight_decay,
            ),
        ];
        for o in std::iter::once(&mut opt_g).chain(opt_d.iter_mut()) {
            o.max_grad_norm = t.param_clip;
            o.adam = adam_rule(t);
        }
        let flow_net = match (m.motion, m.flow) {
            (true, FlowMethod::Torchscript) => Some(
                tch::CModule::load_on_device(&m.flow_model, device).map_err(|e| {
                    EngineError::BadInput(format!("model.flow_model: {}: {e}", m.flow_model))
                })?,
            ),
            _ => None,
        };
        let mut notes = Vec::new();
        let lpips = if cfg.validation.lpips_model.trim().is_empty() {
            notes.push(
                "LPIPS is off: validation.lpips_model names no LPIPS weights or TorchScript file"
                    .to_string(),
            );
            None
        } else {
            Some(
                crate::engine::lpips::Perceptual::load(
                    "validation.lpips_model",
                    &cfg.validation.lpips_model,
                    device,
                )
                .map_err(|e| EngineError::BadInput(e.to_string()))?,
            )
        };
        if cfg.validation.metric == ValMetric::Lpips && lpips.is_none() {
            notes.push("validation.metric is lpips but LPIPS is off: the best checkpoint and lambda_KL follow PSNR instead".into());
        }
        if cfg.train.mixed_precision && !device.is_cuda() {
            notes.push("train.mixed_precision applies on CUDA only; this run is f32".into());
        }
        crate::engine::seed_torch(seed, Stream::FixedNoise, 0);
        let fixed_noise = Tensor::randn([8, d.z_dim()], (Kind::Float, device));
        let active = match cfg.switching.initial {
            InitialDisc::Primary => 0,
            InitialDisc::Alternative => 1,
        };
        let lr_sets = || vec![ActionSet::lr(), ActionSet::momentum()];
        let st = FamilyState {
            active,
            lambda_kl_base: cfg.train.lambda_kl,
            phase_lambda_kl: cfg.train.lambda_kl,
            heur: HeuristicState::default(),
            q_gen: new_q("generator", lr_sets(), seed, 1)?,
            q_d: [
                new_q("critic primary", lr_sets(), seed, 2)?,
                new_q("critic alternative", lr_sets(), seed, 3)?,
            ],
            q_lkl: new_q("lambda_kl", vec![ActionSet::lambda_kl()], seed, 4)?,
            gen_hist: GenHistory::default(),
            d_hist: [CriticHist::default(), CriticHist::default()],
            gen_interval: Interval::default(),
            d_interval: [Interval::default(), Interval::default()],
            lkl_sums: [0.0; 3],
            lkl_count: 0,
            lkl_prev: Vec::new(),
            lkl_acted: false,
            last_val: None,
            last_d_reward: [None, None],
            lr_scale: [1.0; 3],
            mom_scale: [1.0; 3],
        };
        let cond = box_condition(&boxes, d.w, d.h, device);
        Ok(Self {
            cfg: cfg.clone(),
            device,
            seed,
            d,
            data,
            g_vs,
            d_vs,
            enc,
            gen,
            critics,
            opt_g,
            opt_d,
            boxes,
            layout,
            cond,
            flow_net,
            lpips,
            fixed_noise,
            epochs: crate::engine::data::EpochSampler::new(seed),
            st,
            events: Vec::new(),
            pending_val_recon: None,
            mean_image: None,
            notes,
        })
    }

    fn batch_size(&self) -> usize {
        (self.cfg.train.batch_size as usize)
            .min(self.data.train.len())
            .max(1)
    }

    fn starts(&mut self, epoch: u64, batch: u64) -> Vec<i64> {
        let (n, bs) = (self.data.train.len(), self.batch_size());
        self.epochs
            .batch(epoch, batch, n, bs)
            .into_iter()
            .map(|i| self.data.train[i])
            .collect()
    }

    /// Encoder and generator on a batch of windows.
    fn forward(
        &self,
        frames: &Tensor,
        train: bool,
        sample: bool,
    ) -> Result<Forward, TrainerError> {
        let d = &self.d;
        let b = frames.size()[0];
        // The encoder sees the whole window, or (predicting) only its input frames.
        let seen = frames.narrow(1, 0, d.enc_frames());
        let rois = roi_boxes(&self.boxes, b * d.enc_frames(), self.device);
        let (stats, motion_boxes) = if d.motion && d.enc_frames() > 1 {
            let (s, mb) = self.motion(&seen)?;
            (Some(s), mb)
        } else {
            (None, Vec::new())
        };
        let enc = self.enc.forward_t(&seen, &rois, stats.as_ref(), train);
        let z = if sample {
            &enc.mu
                + (&enc.logvar * 0.5).exp()
                    * crate::engine::dist::randn_rows(
                        &enc.mu.size(),
                        (enc.mu.kind(), enc.mu.device()),
                    )
        } else {
            enc.mu.shallow_clone()
        };
        let gen_rois = roi_boxes(&self.boxes, b * d.n_pred, self.device);
        let amp = self.cfg.train.mixed_precision && self.device.is_cuda();
        let gen = tch::autocast(amp, || {
            self.gen.forward(&z, &self.boxes, &self.cond, &gen_rois)
        });
        let gen = model::Generated {
            frames: gen.frames.to_kind(Kind::Float),
            dft: gen.dft.map(|t| t.to_kind(Kind::Float)),
            dct: gen.dct.map(|t| t.to_kind(Kind::Float)),
            patches: gen
                .patches
                .into_iter()
                .map(|t| t.to_kind(Kind::Float))
                .collect(),
        };
        let real_pred = frames.narrow(1, d.n_in, d.n_pred);
        // The reconstruction targets: the predicted frames' patches, `[B, Np, R, C, ph, pw]`.
        let targets = crate::engine::spectral::roi_align(
            &real_pred.reshape([b * d.n_pred, d.c, d.h, d.w]),
            &gen_rois,
            d.ph,
            d.pw,
            1.0,
        )
        .view([b, d.n_pred, d.regions, d.c, d.ph, d.pw])
        .detach();
        let real_coeffs = if d.use_dft || d.use_dct {
            let dft = d.use_dft.then(|| crate::engine::spectral::dft(&targets));
            let dct = d.use_dct.then(|| crate::engine::spectral::dct2(&targets));
            region_major(dft.as_ref(), dct.as_ref(), None)
        } else {
            region_major(None, None, Some(&targets))
        };
        let fake_coeffs = if d.use_dft || d.use_dct {
            // DFT coefficients projected onto spectra of real patches (spec 11.17).
            let dft = gen.dft.as_ref().map(|f| {
                crate::engine::spectral::dft(&crate::engine::spectral::idft(f, d.ph, d.pw))
            });
            region_major(dft.as_ref(), gen.dct.as_ref(), None)
        } else {
            let flat = gen.frames.reshape([b * d.n_pred, d.c, d.h, d.w]);
            let patches = crate::engine::spectral::roi_align(&flat, &gen_rois, d.ph, d.pw, 1.0)
                .view([b, d.n_pred, d.regions, d.c, d.ph, d.pw]);
            region_major(None, None, Some(&patches))
        };
        Ok(Forward {
            enc,
            targets: targets.shallow_clone(),
            gen,
            real_pred,
            real_coeffs,
            fake_coeffs,
            motion_boxes,
        })
    }

    /// The mean training frame `[1, C, H, W]` in [-1, 1] (of up to 256 windows' first
    /// frames, evenly spaced), computed once.
    fn mean_image(&mut self) -> Tensor {
        if let Some(m) = &self.mean_image {
            return m.shallow_clone();
        }
        let n = self.data.train.len();
        let take = n.clamp(1, 256);
        let starts: Vec<i64> = (0..take).map(|i| self.data.train[i * n / take]).collect();
        let mean = tch::no_grad(|| {
            let mut sum = Tensor::zeros(
                [1, self.d.c, self.d.h, self.d.w],
                (Kind::Float, self.device),
            );
            for chunk in starts.chunks(32) {
                let frames = self.data.batch(chunk, self.device).select(1, 0);
                sum += frames.sum_dim_intlist([0i64].as_slice(), true, Kind::Float);
            }
            sum / starts.len().max(1) as f64
        });
        self.mean_image = Some(mean.shallow_clone());
        mean
    }

    fn reconstruct(&mut self, split: &str, start: i64) -> Option<Reconstruction> {
        let frames = self.data.batch(&[start], self.device);
        let f = tch::no_grad(|| self.forward(&frames, false, false)).ok()?;
        let truth = crate::engine::convert::strip(&f.real_pred.select(0, 0));
        let recon = crate::engine::convert::strip(&f.gen.frames.select(0, 0));
        let to_f32 = |v: &[Region]| {
            v.iter()
                .map(|b| [b[0] as f32, b[1] as f32, b[2] as f32, b[3] as f32])
                .collect()
        };
        Some(Reconstruction {
            split: split.to_string(),
            frames: self.d.n_pred as u32,
            truth,
            recon,
            boxes: to_f32(&self.boxes),
            motion_boxes: to_f32(&f.motion_boxes),
        })
    }
}

impl Trainer for WubuGaadTrainer {
    fn reseed_data(&mut self, k: u64) {
        self.epochs.reseed(k);
    }

    fn diagnostics(&self) -> Vec<(String, f64)> {
        let mut out: Vec<(String, f64)> =
            crate::engine::optim::norms_by_module(self.opt_g.grad_norms(), 2)
                .into_iter()
                .map(|(m, n)| (format!("grad {m}"), n))
                .collect();
        let a = self.st.active;
        if let Some(o) = self.opt_d.get(a) {
            out.extend(
                crate::engine::optim::norms_by_module(o.grad_norms(), 1)
                    .into_iter()
                    .map(|(m, n)| (format!("grad critic {m}"), n)),
            );
        }
        out
    }

    fn describe(&self) -> String {
        let count = |vs: &nn::VarStore| -> i64 {
            vs.trainable_variables()
                .iter()
                .map(Tensor::numel)
                .map(|n| n as i64)
                .sum()
        };
        format!(
            "WuBu-GAAD VAE-GAN {}x{}, {}+{} frames, {} regions, patches {}, L {}; encoder+generator {} params, critics {} ({}) / {} ({}); data: {}",
            self.d.w,
            self.d.h,
            self.d.n_in,
            self.d.n_pred,
            self.d.regions,
            self.d.ph,
            self.d.latent,
            count(&self.g_vs),
            count(&self.d_vs[0]),
            kind_name(self.critics[0].kind()),
            count(&self.d_vs[1]),
            kind_name(self.critics[1].kind()),
            self.data.description
        )
    }

    fn metrics(&self) -> Vec<MetricDef> {
        let mut m = vec![
            MetricDef::loss("g_loss")
                .main()
                .role(HealthRole::GeneratorLoss),
            MetricDef::loss("d_loss").role(HealthRole::CriticLoss),
            MetricDef::loss("d_real"),
            MetricDef::loss("d_fake"),
            MetricDef::loss("recon").main(),
            MetricDef::loss("kl"),
            MetricDef::loss("kl_per_dim"),
            MetricDef::loss("g_adv"),
            MetricDef::diagnostic("mse_dft"),
            MetricDef::diagnostic("mse_dct"),
            MetricDef::diagnostic("mse_pixel"),
            MetricDef::loss("feature_match"),
            MetricDef::loss("easy_win_penalty"),
            MetricDef::setting("lr_gen"),
            MetricDef::setting("lr_disc_primary"),
            MetricDef::setting("lr_disc_alternative"),
            MetricDef::setting("lambda_kl_eff"),
            MetricDef::setting("heur_gan_factor"),
            MetricDef::setting("heur_recon_factor"),
            MetricDef::setting("heur_kl_factor"),
            MetricDef::counter("active_critic"),
            MetricDef::setting("momentum_gen"),
            MetricDef::diagnostic("grad_norm_g"),
            MetricDef::diagnostic("grad_norm_d"),
            MetricDef::diagnostic("gan_adaptive_weight"),
            MetricDef::controller("ctl_epsilon_gen"),
            MetricDef::controller("ctl_epsilon_critic"),
        ];
        let (best, _) = self.val_better();
        for v in [
            ValMetric::Psnr,
            ValMetric::Ssim,
            ValMetric::PixelMse,
            ValMetric::Lpips,
        ] {
            let def = MetricDef::validation(v.scalar(), v.better() == Better::Higher);
            let def = if v == ValMetric::Psnr {
                def.baseline("val_copy_last_psnr")
            } else {
                def
            };
            m.push(if v == best { def.main() } else { def });
        }
        // Baselines any model must beat, and how sharp the frames are against the truth.
        m.push(MetricDef::validation("val_copy_last_psnr", true));
        m.push(MetricDef::validation("val_mean_image_psnr", true));
        m.push(MetricDef::validation("val_sharpness", true));
        m.push(MetricDef::validation("val_seam_index", false));
        m.push(MetricDef::validation("val_ceiling_psnr", true));
        m.push(MetricDef::validation("val_latent_rank", true));
        if self.d.region_latent > 0 {
            m.push(MetricDef::validation("val_region_rank", true));
        }
        m
    }

    fn warnings(&self) -> Vec<String> {
        let mut w = self.notes.clone();
        w.extend(
            self.data
                .skipped
                .iter()
                .map(|(f, why)| format!("skipped {f}: {why}")),
        );
        if self.data.val.is_empty() && self.cfg.logging.validate_every_steps > 0 {
            w.push("no validation windows (validation_fraction too small for one window); validation is off".into());
        }
        w
    }

    fn steps_per_epoch(&self) -> u64 {
        crate::engine::dist::steps_per_epoch(self.data.train.len(), self.batch_size())
    }

    fn apply_preset(&mut self, preset: &AnyPreset) -> Result<(), TrainerError> {
        let AnyPreset::WubuGaad(p) = preset else {
            return Err(TrainerError::Config(format!(
                "a {} preset given to the WuBu-GAAD trainer",
                preset.family().name()
            )));
        };
        // The model's shape is fixed for a run; everything a phase may change is taken.
        if p.train.lambda_kl.to_bits() != self.st.phase_lambda_kl.to_bits() {
            self.st.lambda_kl_base = p.train.lambda_kl;
            self.st.phase_lambda_kl = p.train.lambda_kl;
        }
        self.cfg.train = p.train.clone();
        self.cfg.q_control = p.q_control.clone();
        self.cfg.heuristics = p.heuristics.clone();
        // The starting critic belongs to the run, not to a phase.
        self.cfg.switching = crate::core::preset::wubu_gaad::Switching {
            initial: self.cfg.switching.initial,
            ..p.switching.clone()
        };
        self.cfg.validation.metric = p.validation.metric;
        self.cfg.validation.windows = p.validation.windows;
        self.cfg.logging = p.logging.clone();
        self.cfg.checkpoints = p.checkpoints.clone();
        self.cfg.health = p.health.clone();
        let rule = adam_rule(&p.train);
        for o in std::iter::once(&mut self.opt_g).chain(self.opt_d.iter_mut()) {
            o.max_grad_norm = p.train.param_clip;
            o.weight_decay = p.train.weight_decay;
            o.adam = rule;
        }
        for i in 0..3 {
            self.apply_scales(i);
        }
        Ok(())
    }

    fn non_finite_advice(&self) -> &'static str {
        "lower train.lr_gen and the critics' rates 5-10x or tighten train.global_clip, then resume from the last good checkpoint"
    }

    fn timed_parts(&self) -> &'static [&'static str] {
        &[
            GENERATOR_FORWARD,
            GENERATOR_BACKWARD,
            CRITIC_FORWARD,
            CRITIC_BACKWARD,
            CONTROLLERS,
        ]
    }

    fn train_step(&mut self, ctx: &StepCtx) -> Result<Vec<(&'static str, f64)>, StepError> {
        crate::engine::seed_torch(self.seed, Stream::Step, ctx.step);
        let starts = self.starts(ctx.epoch, ctx.batch_in_epoch);
        let frames = timing::data(ctx.step, || self.data.batch(&starts, self.device));
        timing::enter(GENERATOR_FORWARD);
        let f = self
            .forward(&frames, true, true)
            .map_err(|e| StepError::new("forward", e))?;
        let mut critic = self.critic_step(&f)?;
        let mut gen = self.generator_step(&f)?;
        // The controllers and heuristics decide on the means over the data-parallel ranks, so
        // every rank takes the same decisions.
        step::rank_means(&mut critic, &mut gen).map_err(all_reduce_failed)?;
        timing::enter(CONTROLLERS);
        self.control_step(ctx.step, &critic, &gen);
        Ok(self.step_scalars(ctx.step, &critic, &gen))
    }

    fn sample_grid(&mut self) -> Rgba {
        let z = self.fixed_noise.shallow_clone();
        let n = z.size()[0];
        let rois = roi_boxes(&self.boxes, n * self.d.n_pred, self.device);
        let frames = tch::no_grad(|| self.gen.forward(&z, &self.boxes, &self.cond, &rois).frames);
        let cols = if self.d.n_pred == 1 { 4 } else { self.d.n_pred };
        let images = frames.reshape([n * self.d.n_pred, self.d.c, self.d.h, self.d.w]);
        crate::engine::convert::grid_rgba(&images, cols)
    }

    fn sample_note(&self) -> Option<String> {
        // The samples decode draws from the prior; with next to no KL weight the encoder's
        // posterior is free to drift from it, so they are noise by design, not a failure.
        let kl = self.st.lambda_kl_base * self.st.heur.kl_factor;
        (kl < PRIOR_UNTRAINED_KL).then(|| {
            format!(
                "Prior samples (z drawn from N(0, I)): the KL weight is {} in this phase, so the prior is not trained and these look like noise. The reconstructions below show what the model has learned.",
                crate::core::numfmt::num(kl)
            )
        })
    }

    fn reconstruction(&mut self) -> Option<Reconstruction> {
        let start = self.data.train[self.data.train.len() / 2];
        self.reconstruct("train", start)
    }

    fn validate(&mut self) -> Option<Validation> {
        if self.data.val.is_empty() {
            return None;
        }
        let want = (self.cfg.validation.windows as usize)
            .min(self.data.val.len())
            .max(1);
        let stride = self.data.val.len() as f64 / want as f64;
        let starts: Vec<i64> = (0..want)
            .map(|i| self.data.val[(i as f64 * stride) as usize])
            .collect();
        let bs = self.batch_size();
        let (mut psnr, mut ssim, mut mse, mut lp, mut frames_seen, mut lp_n) =
            (0.0, 0.0, 0.0, 0.0, 0usize, 0usize);
        let (mut copy_last, mut mean_img, mut grad_fake, mut grad_real) = (0.0, 0.0, 0.0, 0.0);
        let mut ceiling = 0.0;
        // Edge energy on and off the regions' seams, for the reconstruction and the truth.
        let seam_mask = {
            let d = &self.d;
            let m = gaad::border_mask(&self.layout, d.w as u32, d.h as u32);
            let m: Vec<f32> = m.iter().map(|&b| f32::from(u8::from(b))).collect();
            Tensor::from_slice(&m).view([1, 1, d.h, d.w]).to_device(self.device)
        };
        let has_seams = value(&seam_mask.sum(Kind::Float)) > 0.0;
        let mut seam = [0.0f64; 4];
        let mean_image = self.mean_image();
        let mut mus = Vec::new();
        for chunk in starts.chunks(bs) {
            let batch = self.data.batch(chunk, self.device);
            let Ok(f) = tch::no_grad(|| self.forward(&batch, false, false)) else {
                return None;
            };
            mus.push(f.enc.mu.detach());
            tch::no_grad(|| {
                let d = &self.d;
                let fake = f.gen.frames.reshape([-1, d.c, d.h, d.w]);
                let real = f.real_pred.reshape([-1, d.c, d.h, d.w]);
                let (f01, r01) = ((&fake + 1.0) * 0.5, (&real + 1.0) * 0.5);
                let per =
                    (&f01 - &r01)
                        .square()
                        .mean_dim([1i64, 2, 3].as_slice(), false, Kind::Float);
                let p = ((&per + 1e-10).reciprocal().log10() * 10.0).clamp(0.0, 100.0);
                psnr += value(&p.sum(Kind::Float));
                let psnr_of = |guess: &Tensor| {
                    let e = ((guess + 1.0) * 0.5 - &r01).square().mean_dim(
                        [1i64, 2, 3].as_slice(),
                        false,
                        Kind::Float,
                    );
                    value(
                        &((&e + 1e-10).reciprocal().log10() * 10.0)
                            .clamp(0.0, 100.0)
                            .sum(Kind::Float),
                    )
                };
                // Copy-last: every predicted frame is the last input frame.
                let last = batch
                    .narrow(1, d.n_in - 1, 1)
                    .expand([-1, d.n_pred, -1, -1, -1], false)
                    .reshape([-1, d.c, d.h, d.w]);
                copy_last += psnr_of(&last);
                // The representation's ceiling: the true patches pasted back by the same
                // assembly (what a perfect generator of patches would score).
                if d.use_dft || d.use_dct {
                    let pasted = model::assemble(&f.targets, &self.boxes, d);
                    ceiling += psnr_of(&pasted.reshape([-1, d.c, d.h, d.w]));
                }
                mean_img += psnr_of(&mean_image.expand_as(&real));
                grad_fake += value(&gradient_energy(&f01));
                grad_real += value(&gradient_energy(&r01));
                if has_seams {
                    let (gf, gr) = (gradient_map(&f01), gradient_map(&r01));
                    let off = 1.0 - &seam_mask;
                    for (i, (g, m)) in [(&gf, &seam_mask), (&gr, &seam_mask), (&gf, &off), (&gr, &off)]
                        .into_iter()
                        .enumerate()
                    {
                        seam[i] += value(&(g * m).sum(Kind::Float));
                    }
                }
                mse += value(&per.sum(Kind::Float));
                ssim += value(&crate::engine::metrics::ssim_frames(&f01, &r01).sum(Kind::Float));
                frames_seen += per.size()[0] as usize;
                if let Some(net) = &self.lpips {
                    if let Ok(dist) = net.distance(&fake, &real) {
                        lp += value(&dist.sum(Kind::Float));
                        lp_n += dist.numel();
                    }
                }
            });
        }
        let n = frames_seen.max(1) as f64;
        let mut scalars = vec![
            ("val_psnr", psnr / n),
            ("val_ssim", ssim / n),
            ("val_mse", mse / n),
            ("val_copy_last_psnr", copy_last / n),
            ("val_mean_image_psnr", mean_img / n),
            ("val_sharpness", grad_fake / grad_real.max(1e-12)),
        ];
        if self.d.use_dft || self.d.use_dct {
            scalars.push(("val_ceiling_psnr", ceiling / n));
        }
        if has_seams {
            scalars.push(("val_seam_index", seam_index(seam)));
        }
        // How many directions the posterior means use over the validation windows: the
        // global latent's, and the region codes' (each region of each window a row).
        let mu = Tensor::cat(&mus, 0);
        let d = &self.d;
        scalars.push((
            "val_latent_rank",
            crate::engine::metrics::effective_rank(&mu.narrow(1, 0, d.latent)),
        ));
        if d.region_latent > 0 {
            let codes = mu
                .narrow(1, d.latent, d.n_pred * d.regions * d.region_latent)
                .reshape([-1, d.region_latent]);
            scalars.push((
                "val_region_rank",
                crate::engine::metrics::effective_rank(&codes),
            ));
        }
        if lp_n > 0 {
            scalars.push(("val_lpips", lp / lp_n as f64));
        }
        let (metric, _) = self.val_better();
        let v = scalars
            .iter()
            .find(|(k, _)| *k == metric.scalar())
            .map_or(f64::NAN, |(_, v)| *v);
        self.st.last_val = v.is_finite().then_some(v);
        if let Some(r) = self.reconstruct("validation", starts[0]) {
            self.pending_val_recon = Some(r);
        }
        Some(Validation {
            scalars,
            best_by: metric.scalar(),
            diversity_ratio: None,
        })
    }

    fn drain_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    fn pending_reconstruction(&mut self) -> Option<Reconstruction> {
        self.pending_val_recon.take()
    }

    fn family_state(&self) -> serde_json::Value {
        serde_json::to_value(&self.st).unwrap_or(serde_json::Value::Null)
    }

    fn parts(&mut self) -> Vec<Part<'_>> {
        let [opt_d0, opt_d1] = &mut self.opt_d;
        vec![
            Part::Vars("g", &self.g_vs),
            Part::Vars("d0", &self.d_vs[0]),
            Part::Vars("d1", &self.d_vs[1]),
            Part::Optimizer("opt_g", &mut self.opt_g),
            Part::Optimizer("opt_d0", opt_d0),
            Part::Optimizer("opt_d1", opt_d1),
            Part::Tensor("fixed_noise", &mut self.fixed_noise),
        ]
    }

    fn load_family_state(&mut self, state: &serde_json::Value) -> Result<(), TrainerError> {
        if state.is_null() {
            return Err(TrainerError::State(
                "no family_state (controllers, heuristics, active critic)".into(),
            ));
        }
        self.st = serde_json::from_value(state.clone())
            .map_err(|e| TrainerError::State(format!("bad family state: {e}")))?;
        for i in 0..3 {
            self.apply_scales(i);
        }
        Ok(())
    }
}

/// The summed magnitude of horizontal and vertical differences of frames `[F, C, H, W]`: how
/// much edge a picture holds (a blur lowers it, sharp detail raises it).
/// Per-pixel edge strength `[N, 1, H, W]`: |right neighbour - pixel| + |lower neighbour -
/// pixel|, summed over channels (0 past the last column and row).
fn gradient_map(x: &Tensor) -> Tensor {
    let (h, w) = (x.size()[2], x.size()[3]);
    let dx = (x.narrow(3, 1, w - 1) - x.narrow(3, 0, w - 1))
        .abs()
        .constant_pad_nd([0, 1, 0, 0]);
    let dy = (x.narrow(2, 1, h - 1) - x.narrow(2, 0, h - 1))
        .abs()
        .constant_pad_nd([0, 0, 0, 1]);
    (dx + dy).sum_dim_intlist([1i64].as_slice(), true, Kind::Float)
}

/// How much stronger the reconstruction's edges are on the regions' seams than elsewhere,
/// relative to the truth's: `(fake_on / real_on) / (fake_off / real_off)` from the sums
/// `[fake_on, real_on, fake_off, real_off]`. 1 = the seams look like the rest of the frame;
/// above 1, tiles show; a blurred frame scores 1, not better.
fn seam_index([fake_on, real_on, fake_off, real_off]: [f64; 4]) -> f64 {
    let on = fake_on / real_on.max(1e-12);
    let off = fake_off / real_off.max(1e-12);
    on / off.max(1e-12)
}

fn gradient_energy(x: &Tensor) -> Tensor {
    let (h, w) = (x.size()[2], x.size()[3]);
    let dx = (x.narrow(3, 1, w - 1) - x.narrow(3, 0, w - 1))
        .abs()
        .sum(Kind::Float);
    let dy = (x.narrow(2, 1, h - 1) - x.narrow(2, 0, h - 1))
        .abs()
        .sum(Kind::Float);
    dx + dy
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::preset::{parse_str, wubu_gaad::WubuGaadPreset};

    /// The seam index of `fake` against `real` (`[N, C, H, W]`) for two tiles meeting at the
    /// middle column.
    fn seams_of(fake: &Tensor, real: &Tensor) -> f64 {
        let (h, w) = (real.size()[2], real.size()[3]);
        let half = w as f64 / 2.0;
        let boxes = [[0.0, 0.0, half, h as f64], [half, 0.0, w as f64, h as f64]];
        let m: Vec<f32> = gaad::border_mask(&boxes, w as u32, h as u32)
            .iter()
            .map(|&b| f32::from(u8::from(b)))
            .collect();
        let on = Tensor::from_slice(&m).view([1, 1, h, w]);
        let off = 1.0 - &on;
        let (gf, gr) = (gradient_map(fake), gradient_map(real));
        seam_index([
            value(&(&gf * &on).sum(Kind::Float)),
            value(&(&gr * &on).sum(Kind::Float)),
            value(&(&gf * &off).sum(Kind::Float)),
            value(&(&gr * &off).sum(Kind::Float)),
        ])
    }

    #[test]
    fn seam_index_sees_tiles_not_blur() {
        tch::manual_seed(3);
        // A smooth frame: a ramp with a little texture.
        let ramp = Tensor::linspace(0.1, 0.5, 16, (Kind::Float, Device::Cpu)).view([1, 1, 1, 16]);
        let real = Tensor::rand([2, 3, 16, 16], (Kind::Float, Device::Cpu)) * 0.05 + ramp;
        // The truth itself, and the truth at lower contrast everywhere: no seams.
        assert!((seams_of(&real, &real) - 1.0).abs() < 1e-6);
        assert!((seams_of(&(&real * 0.5 + 0.25), &real) - 1.0).abs() < 1e-5);
        // Tiles pasted with different brightness: a step along the seam.
        let step = Tensor::cat(
            &[
                Tensor::zeros([2, 3, 16, 8], (Kind::Float, Device::Cpu)),
                Tensor::full([2, 3, 16, 8], 0.4, (Kind::Float, Device::Cpu)),
            ],
            3,
        );
        let tiled = seams_of(&(&real + step), &real);
        assert!(tiled > 1.3, "tiles with a step score {tiled}");
    }

    fn tiny() -> WubuGaadPreset {
        let text = include_str!("../../../../presets/wubu_gaad_tiny.ron");
        let AnyPreset::WubuGaad(mut p) = parse_str(text, "tiny").expect("tiny").0 else {
            panic!("tiny is WuBu-GAAD")
        };
        p.device = "cpu".into();
        p
    }

    fn trainer(p: &WubuGaadPreset) -> WubuGaadTrainer {
        WubuGaadTrainer::new(p, Device::Cpu).expect("trainer")
    }

    /// The refiner starts as the identity on the assembled frame, learns what a 3x3
    /// neighbourhood can mend (here, undoing a blur), and trains inside the generator.
    #[test]
    fn the_refiner_starts_as_the_assembled_frame_and_learns_at_full_resolution() {
        tch::manual_seed(5);
        let vs = nn::VarStore::new(Device::Cpu);
        let r = model::Refiner::new(&vs.root(), 3, 8);
        // A 16x16 frame: the whole-frame box over two regions side by side (4 and 12 pixels
        // wide), every region drawn from an 8x8 patch.
        let boxes = [[0.0, 0.0, 16.0, 16.0], [0.0, 0.0, 4.0, 16.0], [4.0, 0.0, 16.0, 16.0]];
        let mut d = model::Dims::new(&tiny());
        (d.h, d.w, d.ph, d.pw) = (16, 16, 8, 8);
        let guide = model::Refiner::guide(&boxes, &d, Device::Cpu);
        let at = |c: i64, y: i64, x: i64| guide.double_value(&[0, c, y, x]);
        // Borders within a pixel of x = 4, not at the frame's own edges.
        assert_eq!([at(0, 5, 3), at(0, 5, 4), at(0, 5, 9), at(0, 0, 9)], [1.0, 1.0, 0.0, 0.0]);
        // The finest region covering each pixel: 4x16 from 8x8 is 1 frame pixel per patch
        // pixel each way (log2 0), 12x16 is sqrt(3) (the whole frame's 2 is coarser).
        assert!(at(1, 5, 1).abs() < 1e-6, "{}", at(1, 5, 1));
        assert!((at(1, 5, 9) - 3f64.sqrt().log2()).abs() < 1e-6, "{}", at(1, 5, 9));
        // Smooth textures: 4x4 noise drawn up to 16x16, then blurred by a 3x3 box.
        let real = Tensor::rand([8, 3, 4, 4], (Kind::Float, Device::Cpu))
            .upsample_bilinear2d([16, 16], false, None, None)
            .view([4, 2, 3, 16, 16]);
        let blurred = real
            .view([8, 3, 16, 16])
            .avg_pool2d([3, 3], [1, 1], [1, 1], false, false, None::<i64>)
            .view([4, 2, 3, 16, 16]);
        assert!(tch::no_grad(|| r.forward(&blurred, &guide)).equal(&blurred));
        let mse = |x: &Tensor| value(&x.mse_loss(&real, tch::Reduction::Mean));
        let before = mse(&blurred);
        let mut opt = crate::engine::optim::Adam::new(&vs, 3e-3, 0.9, 0.999);
        for _ in 0..300 {
            opt.zero_grad();
            r.forward(&blurred, &guide)
                .mse_loss(&real, tch::Reduction::Mean)
                .backward();
            opt.step();
        }
        let after = mse(&tch::no_grad(|| r.forward(&blurred, &guide)));
        assert!(after < 0.5 * before, "blur MSE {before} -> {after}");

        let mut p = tiny();
        p.model.refine_channels = 4;
        // A checkpoint with the refiner loads into no model without it; one from before it
        // keeps its signature.
        use crate::core::preset::family::FamilyPreset;
        let (with, without) = (p.signature(), tiny().signature());
        assert!(with.starts_with(&without) && with.ends_with("/rf4"), "{with} / {without}");
        assert!(without.ends_with(&format!("/rs{}", tiny().model.region_spectrum)));
        let mut t = trainer(&p);
        let last = t
            .g_vs
            .variables()
            .into_iter()
            .find(|(n, _)| n == "generator.refine3.weight")
            .map(|(_, w)| w)
            .expect("the refiner's last layer");
        assert_eq!(value(&last.abs().sum(Kind::Float)), 0.0);
        t.train_step(&StepCtx::default()).expect("step");
        assert!(value(&last.abs().sum(Kind::Float)) > 0.0, "the refiner did not train");
    }

    /// Predicting (`encode_target` off), the generated frame depends on the input frames
    /// only: changing the frame to predict changes nothing but the targets. Reconstructing, it
    /// does change. Per-region latents widen the latent by `Np · R · Lr`.
    #[test]
    fn a_prediction_never_sees_the_frame_it_predicts() {
        for encode_target in [false, true] {
            let mut p = tiny();
            p.model.encode_target = encode_target;
            p.model.region_latent = 8;
            p.model.assembly_sharpness = 2.0;
            let t = trainer(&p);
            let d = t.d.clone();
            assert_eq!(d.z_dim(), d.latent + d.n_pred * d.regions * 8);
            tch::manual_seed(0);
            let frames = Tensor::rand([2, d.frames(), d.c, d.h, d.w], (Kind::Float, Device::Cpu))
                * 2.0
                - 1.0;
            let other = frames.copy();
            other
                .narrow(1, d.n_in, d.n_pred)
                .copy_(&(frames.narrow(1, d.n_in, d.n_pred) * -1.0));
            let (a, b) = tch::no_grad(|| {
                (
                    t.forward(&frames, false, false).expect("forward"),
                    t.forward(&other, false, false).expect("forward"),
                )
            });
            assert_eq!(a.enc.mu.size(), vec![2, d.z_dim()]);
            let same = a.gen.frames.equal(&b.gen.frames);
            assert_eq!(same, !encode_target, "encode_target {encode_target}");
            assert!(!a.targets.equal(&b.targets));
        }
    }

    /// Without the trunk the spectral heads read the global latent and the region codes
    /// directly: there are no trunk weights, a region's patch changes with its own code and
    /// no other, every patch changes with the global latent once trained (its input starts
    /// at zero), and a step trains with a gradient norm for every module it has.
    #[test]
    fn without_the_trunk_each_region_decodes_its_own_code() {
        let mut p = tiny();
        p.model.region_latent = 8;
        p.model.gen_trunk = false;
        let mut t = trainer(&p);
        let names: Vec<String> = t.g_vs.variables().into_keys().collect();
        assert!(names.iter().all(|n| !n.starts_with("generator.fc")
            && !n.starts_with("generator.block")
            && !n.starts_with("generator.cond")));
        assert!(names
            .iter()
            .any(|n| n.starts_with("generator.dct_head_region")));
        let d = t.d.clone();
        tch::manual_seed(0);
        let z = Tensor::randn([1, d.z_dim()], (Kind::Float, Device::Cpu));
        let other = z.copy();
        let region = 1;
        let _ = other
            .narrow(1, d.latent + region * d.region_latent, d.region_latent)
            .fill_(3.0);
        let rois = model::roi_boxes(&t.boxes, d.n_pred, Device::Cpu);
        let (a, b) = tch::no_grad(|| {
            (
                t.gen.forward(&z, &t.boxes, &t.cond, &rois),
                t.gen.forward(&other, &t.boxes, &t.cond, &rois),
            )
        });
        let changed: Vec<bool> = (0..d.regions)
            .map(|r| !a.patches[0].select(2, r).equal(&b.patches[0].select(2, r)))
            .collect();
        let want: Vec<bool> = (0..d.regions).map(|r| r == region).collect();
        assert_eq!(changed, want);
        let spe = t.steps_per_epoch();
        for step in 0..2 {
            t.train_step(&StepCtx {
                step,
                epoch: step / spe,
                batch_in_epoch: step % spe,
                ..Default::default()
            })
            .expect("step");
        }
        // The global latent's input starts at zero, and training opens it.
        let global = z.copy();
        let _ = global.narrow(1, 0, d.latent).fill_(3.0);
        let (a, c) = tch::no_grad(|| {
            (
                t.gen.forward(&z, &t.boxes, &t.cond, &rois),
                t.gen.forward(&global, &t.boxes, &t.cond, &rois),
            )
        });
        for r in 0..d.regions {
            assert!(!a.patches[0].select(2, r).equal(&c.patches[0].select(2, r)));
        }
        let diag = t.diagnostics();
        for module in ["grad encoder.patch_embed", "grad generator.dct_head_region"] {
            let n = diag.iter().find(|(k, _)| k == module).map(|(_, n)| *n);
            assert!(n.is_some_and(|n| n > 0.0), "{module}: {diag:?}");
        }
    }

    /// The adaptive adversarial weight makes the weighted adversarial gradient at the output
    /// layers as large as the reconstruction's, and a training step with it on reports it.
    #[test]
    fn the_adaptive_weight_matches_the_reconstructions_gradient() {
        let mut p = tiny();
        p.train.lambda_gan = 0.5;
        p.train.gan_adaptive_weight = true;
        let mut t = trainer(&p);
        let d = t.d.clone();
        tch::manual_seed(1);
        let frames =
            Tensor::rand([2, d.frames(), d.c, d.h, d.w], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
        let f = t.forward(&frames, true, false).expect("forward");
        let (recon, _) = t.recon_loss(&f);
        let fake_in = t.critic_input(&f.gen.frames, &f.fake_coeffs);
        let adv = super::losses::bce(&t.critics[t.st.active].forward_t(&fake_in, true).0, 1.0);
        let w = t.adaptive_gan_weight(&recon, &adv).expect("weight");
        assert!(w > 0.0 && w < 1e4, "{w}");
        let ws = t.gen.output_weights();
        let norm = |loss: &Tensor| {
            Tensor::run_backward(&[loss], &ws, true, false)
                .iter()
                .map(|g| g.square().sum(Kind::Float).double_value(&[]))
                .sum::<f64>()
                .sqrt()
        };
        // w = r / (a + 1e-4): the weighted norm falls short of the reconstruction's by exactly
        // w * 1e-4 (a share that depends on the random draw, so it is taken out, not tolerated).
        let (r, a) = (norm(&recon), norm(&(&adv * w)));
        assert!(
            (r - a - w * 1e-4).abs() <= 1e-5 * r,
            "recon {r}, weighted adversarial {a}, weight {w}"
        );
        let scalars = t
            .train_step(&StepCtx {
                step: 0,
                epoch: 0,
                batch_in_epoch: 0,
                ..Default::default()
            })
            .expect("step");
        let reported = scalars.iter().find(|(k, _)| *k == "gan_adaptive_weight");
        assert!(reported.is_some_and(|(_, v)| *v > 0.0), "{scalars:?}");
    }

    #[test]
    fn the_ssim_window_fits_every_frame_size() {
        assert_eq!(crate::engine::metrics::ssim_window(64, 64), 11);
        assert_eq!(crate::engine::metrics::ssim_window(8, 8), 7);
        assert_eq!(crate::engine::metrics::ssim_window(10, 12), 9);
        assert_eq!(crate::engine::metrics::ssim_window(9, 30), 9);
        assert_eq!(crate::engine::metrics::ssim_window(1, 1), 1);
        for side in [4i64, 6, 8, 10] {
            let x = Tensor::rand([2, 3, side, side], (Kind::Float, Device::Cpu));
            let s = crate::engine::metrics::ssim_frames(&x, &x);
            assert!(
                (s - 1.0).abs().max().double_value(&[]) < 1e-4,
                "side {side}"
            );
        }
    }

    #[test]
    fn the_easy_win_penalty_trains_recon_not_the_adversarial_loss() {
        let hc = WubuGaadPreset::default().heuristics;
        let recon = Tensor::from(0.115f32).set_requires_grad(true);
        let adv = Tensor::from(0.1f32).set_requires_grad(true);
        let p = losses::easy_win_term(&recon, &adv, &hc);
        let v = p.double_value(&[]);
        assert!(v > 0.0 && v < hc.easy_win_max, "{v}: not clipped");
        p.backward();
        assert!(recon.grad().double_value(&[]) > 0.0);
        assert!(!adv.grad().defined(), "no gradient through the denominator");
    }

    #[test]
    fn every_parameter_is_euclidean() {
        let t = trainer(&tiny());
        let ps = params(&t.g_vs);
        assert!(ps.iter().any(|(n, _, _)| n.ends_with(".descriptor")));
        assert!(ps.iter().any(|(n, _, _)| n.ends_with(".boundaries")));
        assert!(ps.iter().all(|(_, _, c)| c.is_none()));
        // One plain SGD step moves a descriptor by exactly lr times its gradient.
        let mut p = tiny();
        p.train.momentum = 0.0;
        p.train.weight_decay = 0.0;
        p.train.param_clip = 0.0;
        p.train.optimizer = crate::core::preset::wubu_gaad::Optimizer::RiemannianSgd;
        let mut t = trainer(&p);
        let (name, x, _) = params(&t.g_vs)
            .into_iter()
            .find(|(n, _, _)| n.ends_with(".descriptor"))
            .expect("a descriptor");
        let before = x.detach().copy();
        t.opt_g.zero_grad();
        (x.square().sum(Kind::Float)).backward();
        let grad = x.grad().copy();
        t.opt_g.lr = 0.1;
        t.opt_g.step();
        let want = &before - grad * 0.1;
        let err = (x.detach() - want).abs().max().double_value(&[]);
        assert!(err < 1e-6, "{name}: off by {err}");
    }

    #[test]
    fn recon_is_the_plain_weighted_sum_of_its_terms() {
        let _ = tch::no_grad_guard();
        let mut p = tiny();
        p.train.lambda_recon_dft = 0.7;
        p.train.lambda_recon_dct = 0.2;
        p.train.lambda_recon_pixel = 1.3;
        let t = trainer(&p);
        let frames = t.data.batch(&[t.data.train[0]], Device::Cpu);
        let f = t.forward(&frames, false, false).expect("forward");
        let (recon, mses) = t.recon_loss(&f);
        let want = 0.7 * mses[0] + 0.2 * mses[1] + 1.3 * mses[2];
        assert!((recon.double_value(&[]) - want).abs() < 1e-5 * want.max(1.0));
        // Turning one term off leaves the others' weights as they were.
        let mut q = p;
        q.train.lambda_recon_pixel = 0.0;
        let t2 = WubuGaadTrainer { cfg: q, ..t };
        let (recon2, _) = t2.recon_loss(&f);
        let want2 = 0.7 * mses[0] + 0.2 * mses[1];
        assert!((recon2.double_value(&[]) - want2).abs() < 1e-5 * want2.max(1.0));
    }

    #[test]
    fn feature_matching_reads_real_features_in_the_fakes_mode() {
        let _ = tch::no_grad_guard();
        let mut p = tiny();
        p.model.wubu_dropout = 0.5;
        let t = trainer(&p);
        let frames = t
            .data
            .batch(&[t.data.train[0], t.data.train[1]], Device::Cpu);
        let f = t.forward(&frames, false, false).expect("forward");
        let feature = (0..2)
            .find(|&i| t.critics[i].kind() == crate::core::preset::wubu_gaad::DiscKind::WubuFeature)
            .expect("a feature critic");
        // Dropout on: two draws differ, as the fakes' training-mode features do.
        tch::manual_seed(1);
        let a = t.real_features(feature, &f).expect("features");
        tch::manual_seed(2);
        let b = t.real_features(feature, &f).expect("features");
        assert!((a - b).abs().max().double_value(&[]) > 0.0);
    }
}

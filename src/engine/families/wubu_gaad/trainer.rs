use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Reduction, Tensor};

use super::model::{
    self, box_condition, region_major, roi_boxes, Critic, CriticInput, Dims, Encoder, Generator,
};
use crate::core::control::heuristics::{HeuristicState, StepValues};
use crate::core::control::seed::{self as qs, CriticStep, GenHistory, GenStep, KlInterval};
use crate::core::control::{push_bounded, ActionSet, Better, QConfig, QController};
use crate::core::gaad::{self, EnergyMap, MotionSpiral, Region};
use crate::core::preset::wubu_gaad::{
    DiscKind, FlowMethod, InitialDisc, ValMetric, WubuGaadPreset,
};
use crate::core::preset::AnyPreset;
use crate::core::protocol::Event;
use crate::core::protocol::{HealthRole, MetricDef};
use crate::core::rng::{derive_seed, epoch_permutation, Stream};
use crate::engine::checkpoint::Loaded;
use crate::engine::data::VideoSet;
use crate::engine::flow::{self, LkConfig};
use crate::engine::optim::{AdamRule, RiemannianSgd};
use crate::engine::trainer::{Reconstruction, Rgba, StepCtx, StepError, Trainer, Validation};
use crate::engine::EngineError;

fn seed_torch(seed: u64, stream: Stream, counter: u64) {
    tch::manual_seed((derive_seed(seed, stream, counter) >> 1) as i64);
}

/// A critic controller's bounded histories of interval means and of its rewards.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
struct CriticHist {
    d_total: Vec<f64>,
    rewards: Vec<f64>,
}

/// Sums of some values over the current decision interval: controllers decide on interval
/// means, not on the one step that happens to end the interval.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
struct Interval {
    sums: Vec<f64>,
    count: u64,
}

impl Interval {
    fn add(&mut self, values: &[f64]) {
        if self.sums.len() != values.len() {
            self.sums = vec![0.0; values.len()];
            self.count = 0;
        }
        for (s, v) in self.sums.iter_mut().zip(values) {
            *s += v;
        }
        self.count += 1;
    }

    /// The means since the last call; `None` when nothing was added.
    fn take_means(&mut self) -> Option<Vec<f64>> {
        let n = std::mem::take(&mut self.count);
        let sums = std::mem::take(&mut self.sums);
        (n > 0).then(|| sums.iter().map(|s| s / n as f64).collect())
    }
}

/// Everything besides tensors that a checkpoint must hold for an exact resume.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct FamilyState {
    /// 0 = primary, 1 = alternative.
    active: usize,
    lambda_kl_base: f64,
    /// The preset's `train.lambda_kl` the base last started from: a phase that sets another
    /// value restarts the base there, even after loading a checkpoint of an earlier phase.
    phase_lambda_kl: f64,
    heur: HeuristicState,
    q_gen: QController,
    q_d: [QController; 2],
    q_lkl: QController,
    gen_hist: GenHistory,
    d_hist: [CriticHist; 2],
    /// The generator's `[g_total, d_total, recon, kl, g_adv]` over the current interval.
    gen_interval: Interval,
    /// Each critic's `[d_total, d_real, d_fake, g_adv]` over the current interval.
    d_interval: [Interval; 2],
    /// Sums of (recon, kl, d_total) and the count over the current lambda_KL interval.
    lkl_sums: [f64; 3],
    lkl_count: u64,
    /// Previous intervals `[recon, kl, val, lambda, d_total]`.
    lkl_prev: Vec<[f64; 5]>,
    lkl_acted: bool,
    /// Latest validation metric (none before the first validation).
    last_val: Option<f64>,
    last_d_reward: [Option<f64>; 2],
    lr_scale: [f64; 3],
    mom_scale: [f64; 3],
}

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
    boxes: Vec<Region>,
    cond: Tensor,
    flow_net: Option<tch::CModule>,
    lpips: Option<tch::CModule>,
    fixed_noise: Tensor,
    epoch_order: Option<(u64, Vec<u32>)>,
    st: FamilyState,
    events: Vec<Event>,
    pending_val_recon: Option<Reconstruction>,
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

fn new_q(
    name: &str,
    sets: Vec<ActionSet>,
    seed: u64,
    index: u64,
) -> Result<QController, EngineError> {
    QController::new(
        name,
        QConfig::default(),
        sets,
        derive_seed(seed, Stream::Control, index),
    )
    .map_err(|e| EngineError::Model(e.to_string()))
}

const DISC_NAMES: [&str; 2] = ["primary", "alternative"];

fn bce(logits: &Tensor, target: f64) -> Tensor {
    logits.binary_cross_entropy_with_logits::<Tensor>(
        &logits.full_like(target),
        None,
        None,
        Reduction::Mean,
    )
}

fn value(t: &Tensor) -> f64 {
    t.double_value(&[])
}

/// One forward pass's products.
struct Forward {
    enc: model::Encoded,
    gen: model::Generated,
    real_pred: Tensor,
    real_coeffs: Tensor,
    fake_coeffs: Tensor,
    motion_boxes: Vec<Region>,
}

impl WubuGaadTrainer {
    pub fn new(cfg: &WubuGaadPreset, device: Device) -> Result<Self, EngineError> {
        let seed = cfg.seed;
        let data = VideoSet::load(&cfg.data, seed).map_err(|e| EngineError::Data(e.to_string()))?;
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
        seed_torch(seed, Stream::Init, 0);
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
                "LPIPS is off: validation.lpips_model names no TorchScript LPIPS file".to_string(),
            );
            None
        } else {
            Some(
                tch::CModule::load_on_device(&cfg.validation.lpips_model, device).map_err(|e| {
                    EngineError::BadInput(format!(
                        "validation.lpips_model: {}: {e}",
                        cfg.validation.lpips_model
                    ))
                })?,
            )
        };
        if cfg.validation.metric == ValMetric::Lpips && lpips.is_none() {
            notes.push("validation.metric is lpips but LPIPS is off: the best checkpoint and lambda_KL follow PSNR instead".into());
        }
        if cfg.train.mixed_precision && !device.is_cuda() {
            notes.push("train.mixed_precision applies on CUDA only; this run is f32".into());
        }
        seed_torch(seed, Stream::FixedNoise, 0);
        let fixed_noise = Tensor::randn([8, d.latent], (Kind::Float, device));
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
            cond,
            flow_net,
            lpips,
            fixed_noise,
            epoch_order: None,
            st,
            events: Vec::new(),
            pending_val_recon: None,
            notes,
        })
    }

    fn batch_size(&self) -> usize {
        (self.cfg.train.batch_size as usize)
            .min(self.data.train.len())
            .max(1)
    }

    fn starts(&mut self, epoch: u64, batch: u64) -> Vec<i64> {
        let n = self.data.train.len();
        if self.epoch_order.as_ref().is_none_or(|(e, _)| *e != epoch) {
            self.epoch_order = Some((epoch, epoch_permutation(self.seed, epoch, n)));
        }
        let bs = self.batch_size();
        let order = self
            .epoch_order
            .as_ref()
            .map(|(_, o)| o.as_slice())
            .unwrap_or(&[]);
        (0..bs)
            .map(|i| {
                let k = (batch as usize * bs + i) % n.max(1);
                self.data.train[order.get(k).copied().unwrap_or(0) as usize]
            })
            .collect()
    }

    /// Flow of consecutive frames, motion-aware GAAD on its magnitude, and per-region
    /// statistics `[B, N−1, Rm, S]`; also the last pair's motion boxes of sample 0.
    fn motion(&self, frames: &Tensor) -> Result<(Tensor, Vec<Region>), String> {
        let d = &self.d;
        let b = frames.size()[0];
        let n = d.frames();
        let pairs = b * (n - 1);
        let a = frames.narrow(1, 0, n - 1).reshape([pairs, d.c, d.h, d.w]);
        let bb = frames.narrow(1, 1, n - 1).reshape([pairs, d.c, d.h, d.w]);
        let flow = match &self.flow_net {
            Some(net) => tch::no_grad(|| net.forward_ts(&[&a, &bb]))
                .map_err(|e| format!("flow network: {e}"))?
                .to_kind(Kind::Float),
            None => flow::lucas_kanade(&a, &bb, &LkConfig::default()),
        };
        if flow.size() != [pairs, 2, d.h, d.w] {
            return Err(format!(
                "flow network returned {:?}, expected {:?}",
                flow.size(),
                [pairs, 2, d.h, d.w]
            ));
        }
        tch::no_grad(|| {
            let (dx, dy) = (flow.select(1, 0), flow.select(1, 1));
            let mag = (&dx * &dx + &dy * &dy + 1e-12).sqrt();
            let cos = &dx / &mag;
            let sin = &dy / &mag;
            let maps = Tensor::stack(&[&mag, &cos, &sin], 1);
            let mag_cpu: Vec<f32> =
                Vec::try_from(mag.to_device(Device::Cpu).contiguous().view([-1]))
                    .map_err(|e: tch::TchError| e.to_string())?;
            let kind = gaad::Kind::parse(&self.cfg.model.motion_decomposition)
                .map_err(|e| e.to_string())?;
            let rm = d.motion_regions as usize;
            let plane = (d.h * d.w) as usize;
            let mut rois = Vec::with_capacity(pairs as usize * rm * 5);
            let mut last = Vec::new();
            for i in 0..pairs as usize {
                let map = EnergyMap::new(
                    d.w as u32,
                    d.h as u32,
                    mag_cpu[i * plane..(i + 1) * plane].to_vec(),
                )
                .map_err(|e| format!("motion GAAD: pair {i}: {e}"))?;
                let regions = gaad::decompose_motion(
                    kind,
                    &map,
                    rm,
                    self.cfg.model.min_region_px,
                    0.1,
                    &MotionSpiral::default(),
                )
                .map_err(|e| format!("motion GAAD: pair {i}: {e}"))?;
                for r in &regions {
                    rois.extend_from_slice(&[
                        i as f32,
                        r[0] as f32,
                        r[1] as f32,
                        r[2] as f32,
                        r[3] as f32,
                    ]);
                }
                if i as i64 == n - 2 {
                    last = regions;
                }
            }
            let rois = Tensor::from_slice(&rois)
                .view([-1, 5])
                .to_device(self.device);
            let crops = crate::engine::spectral::roi_align(&maps, &rois, 4, 4, 1.0).view([
                pairs * rm as i64,
                3,
                16,
            ]);
            let (m, c, s) = (crops.select(1, 0), crops.select(1, 1), crops.select(1, 2));
            let dims = [1i64];
            let mut stats = Vec::new();
            for name in &d.flow_stats {
                match *name {
                    "mag_mean" => stats.push(m.mean_dim(dims.as_slice(), false, Kind::Float)),
                    "mag_std" => stats.push(m.std_correction(dims.as_slice(), 0, false)),
                    "angle_mean" => {
                        stats.push(c.mean_dim(dims.as_slice(), false, Kind::Float));
                        stats.push(s.mean_dim(dims.as_slice(), false, Kind::Float));
                    }
                    _ => {
                        // Circular standard deviation sqrt(−2 ln R) (the original took the raw
                        // std of angles, which jumps at ±π).
                        let r = (c.mean_dim(dims.as_slice(), false, Kind::Float).square()
                            + s.mean_dim(dims.as_slice(), false, Kind::Float).square())
                        .sqrt()
                        .clamp(1e-6, 1.0);
                        stats.push((r.log() * -2.0).clamp_min(0.0).sqrt());
                    }
                }
            }
            let stats = Tensor::stack(&stats, 1).view([b, n - 1, rm as i64, d.stats_dim()]);
            Ok((stats, if b > 0 { last } else { Vec::new() }))
        })
    }

    /// Encoder and generator on a batch of windows.
    fn forward(&self, frames: &Tensor, train: bool, sample: bool) -> Result<Forward, String> {
        let d = &self.d;
        let b = frames.size()[0];
        let rois = roi_boxes(&self.boxes, b * d.frames(), self.device);
        let (stats, motion_boxes) = if d.motion && d.frames() > 1 {
            let (s, mb) = self.motion(frames)?;
            (Some(s), mb)
        } else {
            (None, Vec::new())
        };
        let enc = self.enc.forward_t(frames, &rois, stats.as_ref(), train);
        let z = if sample {
            &enc.mu + (&enc.logvar * 0.5).exp() * enc.mu.randn_like()
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
        let targets = enc.targets.detach();
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
            gen,
            real_pred,
            real_coeffs,
            fake_coeffs,
            motion_boxes,
        })
    }

    /// `(recon, [dft, dct, pixel] MSEs)`: the weighted sum of the terms in use, each weight
    /// applied once (spec 11.6). A plain sum, so turning one term off leaves the others'
    /// weights as they are (a mean over the active terms raised them).
    fn recon_loss(&self, f: &Forward) -> (Tensor, [f64; 3]) {
        let t = &self.cfg.train;
        let mut terms = Vec::new();
        let mut mses = [f64::NAN; 3];
        let targets = f.enc.targets.detach();
        let mut path = 0;
        for (on, w, slot) in [
            (self.d.use_dft, t.lambda_recon_dft, 0),
            (self.d.use_dct, t.lambda_recon_dct, 1),
        ] {
            if on {
                let mse = f.gen.patches[path].mse_loss(&targets, Reduction::Mean);
                mses[slot] = value(&mse);
                if w > 0.0 {
                    terms.push(mse * w);
                }
                path += 1;
            }
        }
        let pix = f.gen.frames.mse_loss(&f.real_pred, Reduction::Mean);
        mses[2] = value(&pix);
        if t.lambda_recon_pixel > 0.0 {
            terms.push(pix * t.lambda_recon_pixel);
        }
        let sum = terms
            .into_iter()
            .reduce(|a, b| a + b)
            .unwrap_or_else(|| Tensor::zeros([], (Kind::Float, self.device)));
        (sum, mses)
    }

    /// The active critic's features of the real frames for feature matching, taken in the
    /// mode the fakes' features are taken in (training: dropout on), so both sides are the
    /// same function of their input; no gradient.
    fn real_features(&self, a: usize, f: &Forward) -> Option<Tensor> {
        let real_in = self.critic_input(&f.real_pred, &f.real_coeffs);
        tch::no_grad(|| self.critics[a].forward_t(&real_in, true).1)
    }

    fn critic_input<'a>(&'a self, frames: &'a Tensor, coeffs: &'a Tensor) -> CriticInput<'a> {
        CriticInput {
            frames,
            coeffs,
            cond: &self.cond,
        }
    }

    fn lr_base(&self, i: usize) -> f64 {
        let t = &self.cfg.train;
        [t.lr_gen, t.lr_disc_primary, t.lr_disc_alternative][i]
    }

    /// Applies a controller's decision (or neutral scales) to optimizer `i` (0 = generator,
    /// 1/2 = critics), with the heuristic LR boost for the active critic.
    fn apply_scales(&mut self, i: usize) {
        let base = self.lr_base(i);
        let on = self.cfg.q_control.enabled;
        let (ls, ms) = if on {
            (self.st.lr_scale[i], self.st.mom_scale[i])
        } else {
            (1.0, 1.0)
        };
        let mut lr = (base * ls).clamp(1e-8, 1.0);
        if i > 0 && i - 1 == self.st.active && self.st.heur.d_lr_boost {
            lr = (lr * self.cfg.heuristics.d_lr_boost).min(1.0);
        }
        let momentum = (self.cfg.train.momentum * ms).clamp(0.0, 0.999);
        let opt = if i == 0 {
            &mut self.opt_g
        } else {
            &mut self.opt_d[i - 1]
        };
        opt.lr = lr;
        opt.momentum = momentum;
    }

    fn val_better(&self) -> (ValMetric, Better) {
        let m = match self.cfg.validation.metric {
            ValMetric::Lpips if self.lpips.is_none() => ValMetric::Psnr,
            m => m,
        };
        (m, m.better())
    }

    /// The generator's controller at the end of an interval: state and reward from the
    /// interval's means, then new learning-rate and momentum scales.
    fn gen_decision(&mut self, step: u64, lambda_kl: f64) {
        let Some(m) = self.st.gen_interval.take_means() else {
            return;
        };
        let s = GenStep {
            g_total: m[0],
            d_total: m[1],
            recon: m[2],
            kl: m[3],
            kl_per_dim: m[3] / self.d.latent as f64,
            adv: m[4],
            lambda_kl,
            kl_high: self.cfg.heuristics.kl_high,
        };
        let h = &self.st.gen_hist;
        let state = qs::gen_state(h, &s);
        let reward = (!h.recon.is_empty()).then(|| qs::gen_reward(h, &s));
        let len = self.st.q_gen.cfg.history_len;
        let h = &mut self.st.gen_hist;
        push_bounded(&mut h.g_total, s.g_total, len);
        push_bounded(&mut h.recon, s.recon, len);
        push_bounded(&mut h.adv, s.adv, len);
        if let Some(r) = reward {
            push_bounded(&mut h.rewards, r, len);
        }
        let decision = self.st.q_gen.decide(Some(state), reward);
        self.st.lr_scale[0] = decision.actions.first().map_or(1.0, |x| x.2);
        self.st.mom_scale[0] = decision.actions.get(1).map_or(1.0, |x| x.2);
        self.apply_scales(0);
        let applied = vec![
            ("lr".to_string(), self.opt_g.lr),
            ("momentum".to_string(), self.opt_g.momentum),
        ];
        self.events
            .push(decision.into_event(step, "generator", applied));
    }

    /// The active critic's controller at the end of an interval.
    fn critic_decision(&mut self, step: u64, a: usize) {
        let Some(m) = self.st.d_interval[a].take_means() else {
            return;
        };
        let s = CriticStep {
            d_total: m[0],
            d_real: m[1],
            d_fake: m[2],
            g_adv: m[3],
        };
        let h = &self.st.d_hist[a];
        let state = qs::critic_state(&h.d_total, &s);
        let reward = (!h.d_total.is_empty()).then(|| qs::critic_reward(&h.d_total, &h.rewards, &s));
        let len = self.st.q_d[a].cfg.history_len;
        let h = &mut self.st.d_hist[a];
        push_bounded(&mut h.d_total, s.d_total, len);
        if let Some(r) = reward {
            push_bounded(&mut h.rewards, r, len);
        }
        let decision = self.st.q_d[a].decide(Some(state), reward);
        self.st.last_d_reward[a] = decision.reward;
        self.st.lr_scale[a + 1] = decision.actions.first().map_or(1.0, |x| x.2);
        self.st.mom_scale[a + 1] = decision.actions.get(1).map_or(1.0, |x| x.2);
        self.apply_scales(a + 1);
        let applied = vec![
            ("lr".to_string(), self.opt_d[a].lr),
            ("momentum".to_string(), self.opt_d[a].momentum),
        ];
        self.events
            .push(decision.into_event(step, &format!("critic {}", DISC_NAMES[a]), applied));
    }

    fn check_heuristics(&mut self, step: u64) {
        let active_is_feature = self.critics[self.st.active].kind() == DiscKind::WubuFeature;
        let out = self.st.heur.check(
            &self.cfg.heuristics,
            &self.cfg.switching,
            active_is_feature,
            self.cfg.train.lambda_fm,
            self.st.lambda_kl_base,
        );
        for (name, on) in &out.changes {
            self.events.push(Event::Intervention {
                step,
                name: (*name).to_string(),
                on: *on,
                values: out.values.clone(),
            });
        }
        if let Some(reason) = out.switch {
            let from = self.st.active;
            let to = 1 - from;
            self.st.active = to;
            // The newly active critic starts with a fresh controller and no stale momentum.
            self.st.q_d[to].reset();
            self.st.d_hist[to] = CriticHist::default();
            self.st.d_interval[to] = Interval::default();
            self.st.last_d_reward[to] = None;
            self.st.lr_scale[to + 1] = 1.0;
            self.st.mom_scale[to + 1] = 1.0;
            self.opt_d[to].reset_momentum();
            let label =
                |i: usize| format!("{} ({})", DISC_NAMES[i], kind_name(self.critics[i].kind()));
            self.events.push(Event::DiscriminatorSwitch {
                step,
                from: label(from),
                to: label(to),
                reason,
                values: out.values,
            });
        }
        if self.st.heur.force_explore && self.cfg.q_control.enabled {
            let h = &self.cfg.heuristics;
            self.st.q_d[self.st.active]
                .boost_exploration(u64::from(h.explore_decisions), h.explore_epsilon);
        }
    }

    fn lkl_control(&mut self, step: u64) {
        let n = self.st.lkl_count.max(1) as f64;
        let cur = KlInterval {
            recon: self.st.lkl_sums[0] / n,
            kl: self.st.lkl_sums[1] / n,
            val_metric: self.st.last_val.unwrap_or(f64::NAN),
            lambda_kl: self.st.lambda_kl_base,
            d_total: self.st.lkl_sums[2] / n,
        };
        self.st.lkl_sums = [0.0; 3];
        self.st.lkl_count = 0;
        let prev: Vec<KlInterval> = self
            .st
            .lkl_prev
            .iter()
            .map(|a| KlInterval {
                recon: a[0],
                kl: a[1],
                val_metric: a[2],
                lambda_kl: a[3],
                d_total: a[4],
            })
            .collect();
        let Some(state) = qs::kl_state(&prev, &cur) else {
            return;
        };
        let (_, better) = self.val_better();
        let kl_high = self.cfg.heuristics.kl_high;
        let reward = match (self.st.lkl_acted, prev.last()) {
            (true, Some(p)) => Some(qs::kl_reward(p, &cur, better, kl_high)),
            _ => None,
        };
        let decision = self.st.q_lkl.decide(Some(state), reward);
        self.st.lkl_acted = true;
        let scale = decision.actions.first().map_or(1.0, |a| a.2);
        let q = &self.cfg.q_control;
        self.st.lambda_kl_base = (self.st.lambda_kl_base * scale).clamp(q.lkl_min, q.lkl_max);
        self.st.lkl_prev.push([
            cur.recon,
            cur.kl,
            cur.val_metric,
            cur.lambda_kl,
            cur.d_total,
        ]);
        let keep = self.st.q_lkl.cfg.history_len.max(2);
        if self.st.lkl_prev.len() > keep {
            self.st.lkl_prev.remove(0);
        }
        let applied = vec![("lambda_kl".to_string(), self.st.lambda_kl_base)];
        self.events
            .push(decision.into_event(step, "lambda_kl", applied));
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

    fn ssim_frames(x: &Tensor, y: &Tensor) -> Tensor {
        // x, y: [F, C, H, W] in [0, 1]; Gaussian window 11, sigma 1.5; returns [F].
        let (_, c, h, w) = x.size4().unwrap_or((0, 3, 0, 0));
        // The largest odd window up to 11 that fits (an even frame side below 11 gave an even
        // size rounded up past the frame).
        let k = ssim_window(h, w);
        let g: Vec<f32> = (0..k)
            .map(|i| {
                let t = i as f64 - (k / 2) as f64;
                (-t * t / (2.0 * 1.5 * 1.5)).exp() as f32
            })
            .collect();
        let g = Tensor::from_slice(&g).to_device(x.device());
        let g = &g / g.sum(Kind::Float);
        let win = g
            .view([k, 1])
            .matmul(&g.view([1, k]))
            .view([1, 1, k, k])
            .expand([c, 1, k, k], false)
            .contiguous();
        let blur = |t: &Tensor| t.conv2d(&win, None::<Tensor>, [1, 1], [0, 0], [1, 1], c);
        let (mx, my) = (blur(x), blur(y));
        let sxx = blur(&(x * x)) - &mx * &mx;
        let syy = blur(&(y * y)) - &my * &my;
        let sxy = blur(&(x * y)) - &mx * &my;
        let (c1, c2) = (0.01f64.powi(2), 0.03f64.powi(2));
        let map = ((&mx * &my * 2.0 + c1) * (sxy * 2.0 + c2))
            / ((&mx * &mx + &my * &my + c1) * (sxx + syy + c2));
        map.mean_dim([1i64, 2, 3].as_slice(), false, Kind::Float)
    }
}

/// The easy-win penalty (spec 8) as a tensor: `(recon − good)/adv · weight`, clipped. The
/// adversarial loss in the denominator is detached, so the penalty pushes the reconstruction
/// down; through the denominator its gradient (about 90 times the GAN term's at the seed's
/// scales) taught the generator to stop fooling the critic.
fn easy_win_term(
    recon: &Tensor,
    adv: &Tensor,
    hc: &crate::core::preset::wubu_gaad::Heuristics,
) -> Tensor {
    ((recon - hc.good_recon) / (adv.detach() + 1e-5) * hc.easy_win_weight)
        .clamp(0.0, hc.easy_win_max)
}

/// The SSIM window side: 11, or the largest odd size that fits a smaller frame.
fn ssim_window(h: i64, w: i64) -> i64 {
    let k = 11.min(h).min(w).max(1);
    if k % 2 == 0 {
        k - 1
    } else {
        k
    }
}

fn kind_name(k: DiscKind) -> &'static str {
    match k {
        DiscKind::PixelCnn => "pixel_cnn",
        DiscKind::WubuFeature => "wubu_feature",
    }
}

const LIVE: &[&str] = &[
    "train.lr_gen",
    "train.lr_disc_primary",
    "train.lr_disc_alternative",
    "train.lambda_recon_dft",
    "train.lambda_recon_dct",
    "train.lambda_recon_pixel",
    "train.lambda_kl",
    "train.lambda_gan",
    "train.lambda_fm",
];

impl Trainer for WubuGaadTrainer {
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
            m.push(if v == best { def.main() } else { def });
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
        (self.data.train.len() / self.batch_size()).max(1) as u64
    }

    fn apply_preset(&mut self, preset: &AnyPreset) {
        let AnyPreset::WubuGaad(p) = preset else {
            return;
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
    }

    fn non_finite_advice(&self) -> &'static str {
        "lower train.lr_gen and the critics' rates 5-10x or tighten train.global_clip, then resume from the last good checkpoint"
    }

    #[allow(clippy::too_many_lines)]
    fn train_step(&mut self, ctx: &StepCtx) -> Result<Vec<(&'static str, f64)>, StepError> {
        seed_torch(self.seed, Stream::Step, ctx.step);
        let starts = self.starts(ctx.epoch, ctx.batch_in_epoch);
        let frames = self.data.batch(&starts, self.device);
        let f = self
            .forward(&frames, true, true)
            .map_err(|e| StepError::new("forward", e))?;
        let a = self.st.active;
        let step_no = ctx.step + 1;
        let (lambda_gan, lambda_fm, clip) = {
            let t = &self.cfg.train;
            (t.lambda_gan, t.lambda_fm, t.global_clip)
        };
        let gan_on = lambda_gan > 0.0;
        let q_on = self.cfg.q_control.enabled
            && step_no.is_multiple_of(self.cfg.q_control.every_steps.max(1));

        // Critic step on detached fakes.
        let (d_total, d_real, d_fake, d_norm) = {
            let critic = &self.critics[a];
            let real_in = self.critic_input(&f.real_pred, &f.real_coeffs);
            let fake_frames = f.gen.frames.detach();
            let fake_coeffs = f.fake_coeffs.detach();
            let fake_in = self.critic_input(&fake_frames, &fake_coeffs);
            let (lr_real, _) = critic.forward_t(&real_in, true);
            let (lr_fake, _) = critic.forward_t(&fake_in, true);
            let (l_real, l_fake) = (bce(&lr_real, 1.0), bce(&lr_fake, 0.0));
            let loss = (&l_real + &l_fake) * 0.5;
            let (dt, dr, df) = (value(&loss), value(&l_real), value(&l_fake));
            self.opt_d[a].zero_grad();
            let mut norm = 0.0;
            if gan_on {
                loss.f_backward()
                    .map_err(StepError::at("critic backward"))?;
                norm = self.opt_d[a].clip_global(clip);
            }
            (dt, dr, df, norm)
        };
        self.apply_scales(a + 1);
        if gan_on {
            self.opt_d[a].step();
        }

        // Generator and encoder step.
        let (recon, mses) = self.recon_loss(&f);
        let kl = ((&f.enc.mu * &f.enc.mu + f.enc.logvar.exp() - &f.enc.logvar - 1.0)
            .sum_dim_intlist([1i64].as_slice(), false, Kind::Float)
            * 0.5)
            .mean(Kind::Float);
        let h = &self.st.heur;
        let lambda_kl = self.st.lambda_kl_base * h.kl_factor;
        let mut g_loss = &recon * h.recon_factor + &kl * lambda_kl;
        let fake_in = self.critic_input(&f.gen.frames, &f.fake_coeffs);
        let (logits, fake_feats) = self.critics[a].forward_t(&fake_in, true);
        let adv = bce(&logits, 1.0);
        let (adv_v, recon_v) = (value(&adv), value(&recon));
        let mut fm_v = 0.0;
        let mut penalty_v = 0.0;
        if gan_on {
            g_loss += &adv * (lambda_gan * h.gan_factor);
            if h.feature_matching && lambda_fm > 0.0 {
                if let Some(fake_feats) = fake_feats {
                    if let Some(real_feats) = self.real_features(a, &f) {
                        let fm = fake_feats.mse_loss(&real_feats.detach(), Reduction::Mean);
                        fm_v = value(&fm);
                        g_loss += fm * lambda_fm;
                    }
                }
            }
            let hc = &self.cfg.heuristics;
            if h.penalize_easy_win
                && crate::core::control::heuristics::easy_win_penalty(adv_v, recon_v, hc) > 0.0
            {
                let p = easy_win_term(&recon, &adv, hc);
                penalty_v = value(&p);
                g_loss += p;
            }
        }
        let g_total = value(&g_loss);
        self.opt_g.zero_grad();
        g_loss
            .f_backward()
            .map_err(StepError::at("generator backward"))?;
        let g_norm = self.opt_g.clip_global(clip);
        self.apply_scales(0);
        let skipped = self.opt_g.step();
        // Critic grads from the generator's backward are dropped at the critic's next step.
        let kl_v = value(&kl);
        let kl_per_dim = kl_v / self.d.latent as f64;

        // Controllers decide on the means of their interval; new scales apply from the next
        // step.
        self.st
            .gen_interval
            .add(&[g_total, d_total, recon_v, kl_v, adv_v]);
        if gan_on {
            self.st.d_interval[a].add(&[d_total, d_real, d_fake, adv_v]);
        }
        if q_on {
            if gan_on {
                self.critic_decision(step_no, a);
            }
            self.gen_decision(step_no, lambda_kl);
        }

        // Heuristics, switching, lambda_KL.
        self.st.heur.observe(
            &StepValues {
                g_adv: adv_v,
                kl: kl_per_dim,
                recon: recon_v,
                d_total,
                d_reward: self.st.last_d_reward[a],
            },
            &self.cfg.heuristics,
        );
        if step_no.is_multiple_of(self.cfg.heuristics.check_every_steps.max(1)) {
            self.check_heuristics(step_no);
        }
        self.st.lkl_sums[0] += recon_v;
        self.st.lkl_sums[1] += kl_per_dim;
        self.st.lkl_sums[2] += d_total;
        self.st.lkl_count += 1;
        let lkl_every = self.cfg.q_control.lkl_every_steps;
        if self.cfg.q_control.enabled && lkl_every > 0 && step_no.is_multiple_of(lkl_every) {
            self.lkl_control(step_no);
        }
        if !skipped.is_empty() {
            self.events.push(Event::Log {
                step: ctx.step,
                level: crate::core::protocol::Level::Warning,
                message: format!("non-finite gradients skipped: {}", skipped.join(", ")),
            });
        }
        let mut out = vec![
            ("g_loss", g_total),
            ("d_loss", d_total),
            ("d_real", d_real),
            ("d_fake", d_fake),
            ("recon", recon_v),
            ("kl", kl_v),
            ("kl_per_dim", kl_per_dim),
            ("g_adv", adv_v),
            ("lr_gen", self.opt_g.lr),
            ("lr_disc_primary", self.opt_d[0].lr),
            ("lr_disc_alternative", self.opt_d[1].lr),
            ("momentum_gen", self.opt_g.momentum),
            ("lambda_kl_eff", lambda_kl),
            ("heur_gan_factor", self.st.heur.gan_factor),
            ("heur_recon_factor", self.st.heur.recon_factor),
            ("heur_kl_factor", self.st.heur.kl_factor),
            ("active_critic", self.st.active as f64),
            ("grad_norm_g", g_norm),
            ("grad_norm_d", d_norm),
        ];
        for (name, v) in [
            ("mse_dft", mses[0]),
            ("mse_dct", mses[1]),
            ("mse_pixel", mses[2]),
        ] {
            if v.is_finite() {
                out.push((name, v));
            }
        }
        if fm_v > 0.0 {
            out.push(("feature_match", fm_v));
        }
        if penalty_v > 0.0 {
            out.push(("easy_win_penalty", penalty_v));
        }
        if q_on {
            out.push(("ctl_epsilon_gen", self.st.q_gen.epsilon));
            out.push(("ctl_epsilon_critic", self.st.q_d[a].epsilon));
        }
        Ok(out)
    }

    fn live_names(&self) -> &'static [&'static str] {
        LIVE
    }

    fn live_values(&self) -> Vec<(&'static str, f64)> {
        let t = &self.cfg.train;
        vec![
            ("train.lr_gen", t.lr_gen),
            ("train.lr_disc_primary", t.lr_disc_primary),
            ("train.lr_disc_alternative", t.lr_disc_alternative),
            ("train.lambda_recon_dft", t.lambda_recon_dft),
            ("train.lambda_recon_dct", t.lambda_recon_dct),
            ("train.lambda_recon_pixel", t.lambda_recon_pixel),
            ("train.lambda_kl", self.st.lambda_kl_base),
            ("train.lambda_gan", t.lambda_gan),
            ("train.lambda_fm", t.lambda_fm),
        ]
    }

    fn set_live(&mut self, name: &str, value: f64) -> Result<f64, String> {
        let t = &mut self.cfg.train;
        let slot = match name.strip_prefix("train.").unwrap_or(name) {
            "lr_gen" => &mut t.lr_gen,
            "lr_disc_primary" => &mut t.lr_disc_primary,
            "lr_disc_alternative" => &mut t.lr_disc_alternative,
            "lambda_recon_dft" => &mut t.lambda_recon_dft,
            "lambda_recon_dct" => &mut t.lambda_recon_dct,
            "lambda_recon_pixel" => &mut t.lambda_recon_pixel,
            "lambda_gan" => &mut t.lambda_gan,
            "lambda_fm" => &mut t.lambda_fm,
            "lambda_kl" => {
                if !(value.is_finite() && value >= 0.0) {
                    return Err(format!("{name} = {value}: must be finite and >= 0"));
                }
                t.lambda_kl = value;
                self.st.phase_lambda_kl = value;
                return Ok(std::mem::replace(&mut self.st.lambda_kl_base, value));
            }
            other => {
                return Err(format!(
                    "`{other}` is not a live hyperparameter; live: {}",
                    LIVE.join(", ")
                ));
            }
        };
        if !(value.is_finite() && value >= 0.0) {
            return Err(format!("{name} = {value}: must be finite and >= 0"));
        }
        let old = std::mem::replace(slot, value);
        for i in 0..3 {
            self.apply_scales(i);
        }
        Ok(old)
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
        for chunk in starts.chunks(bs) {
            let batch = self.data.batch(chunk, self.device);
            let Ok(f) = tch::no_grad(|| self.forward(&batch, false, false)) else {
                return None;
            };
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
                mse += value(&per.sum(Kind::Float));
                ssim += value(&Self::ssim_frames(&f01, &r01).sum(Kind::Float));
                frames_seen += per.size()[0] as usize;
                if let Some(net) = &self.lpips {
                    if let Ok(dist) = net.forward_ts(&[&fake, &real]) {
                        lp += value(&dist.to_kind(Kind::Float).sum(Kind::Float));
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
        ];
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

    fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (prefix, vs) in [
            ("g", &self.g_vs),
            ("d0", &self.d_vs[0]),
            ("d1", &self.d_vs[1]),
        ] {
            out.extend(
                vs.variables()
                    .into_iter()
                    .map(|(n, t)| (format!("{prefix}.{n}"), t)),
            );
        }
        out.extend(self.opt_g.state_tensors("opt_g"));
        out.extend(self.opt_d[0].state_tensors("opt_d0"));
        out.extend(self.opt_d[1].state_tensors("opt_d1"));
        out.push(("fixed_noise".into(), self.fixed_noise.shallow_clone()));
        out
    }

    fn load_state(&mut self, ckpt: &Loaded) -> Result<(), String> {
        let shown = ckpt.dir.display().to_string();
        for (prefix, vs) in [
            ("g", &self.g_vs),
            ("d0", &self.d_vs[0]),
            ("d1", &self.d_vs[1]),
        ] {
            ckpt.load_vars(prefix, vs)?;
        }
        let get = |k: &str| ckpt.get(k);
        self.opt_g
            .load_state("opt_g", &get)
            .map_err(|e| format!("{shown}: {e}"))?;
        self.opt_d[0]
            .load_state("opt_d0", &get)
            .map_err(|e| format!("{shown}: {e}"))?;
        self.opt_d[1]
            .load_state("opt_d1", &get)
            .map_err(|e| format!("{shown}: {e}"))?;
        if let Some(noise) = ckpt.get("fixed_noise") {
            if noise.size() == self.fixed_noise.size() {
                self.fixed_noise = noise.to_device(self.device);
            }
        }
        match ckpt.state.get("family_state") {
            Some(v) if !v.is_null() => {
                self.st = serde_json::from_value(v.clone())
                    .map_err(|e| format!("{shown}: bad family state: {e}"))?;
            }
            _ => {
                return Err(format!(
                    "{shown}: no family_state (controllers, heuristics, active critic)"
                ))
            }
        }
        for i in 0..3 {
            self.apply_scales(i);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::preset::{parse_str, wubu_gaad::WubuGaadPreset};

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

    #[test]
    fn the_ssim_window_fits_every_frame_size() {
        assert_eq!(ssim_window(64, 64), 11);
        assert_eq!(ssim_window(8, 8), 7);
        assert_eq!(ssim_window(10, 12), 9);
        assert_eq!(ssim_window(9, 30), 9);
        assert_eq!(ssim_window(1, 1), 1);
        for side in [4i64, 6, 8, 10] {
            let x = Tensor::rand([2, 3, side, side], (Kind::Float, Device::Cpu));
            let s = WubuGaadTrainer::ssim_frames(&x, &x);
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
        let p = easy_win_term(&recon, &adv, &hc);
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
            .find(|&i| t.critics[i].kind() == DiscKind::WubuFeature)
            .expect("a feature critic");
        // Dropout on: two draws differ, as the fakes' training-mode features do.
        tch::manual_seed(1);
        let a = t.real_features(feature, &f).expect("features");
        tch::manual_seed(2);
        let b = t.real_features(feature, &f).expect("features");
        assert!((a - b).abs().max().double_value(&[]) > 0.0);
    }
}

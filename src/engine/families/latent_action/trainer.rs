use tch::{nn, Device, Kind, Tensor};

use super::model::{LatentActionModel, Quantised};
use crate::core::preset::latent_action::{
    Anchor, CodebookUpdate, LatentActionPreset, Schedule, Train,
};
use crate::core::preset::AnyPreset;
use crate::core::protocol::{Event, HealthRole, MetricDef};
use crate::core::rng::{derive_seed, SplitMix64, Stream};
use crate::engine::data::latents::{LatentBatch, LatentSet, Split};
use crate::engine::optim::{clip_global_norm, scale_grads, Adam, LossScale};
use crate::engine::trainer::{ActionExplorer, Explored, Part, PhaseAt, Reconstruction, Rgba, StepCtx, StepError, Trainer, TrainerError, Validation, all_reduce_failed};
use crate::engine::{timing, EngineError};

/// The parts of a step the trainer marks (`engine::timing`): the encoder, quantiser and
/// decoder train as one model.
const FORWARD: &str = "model forward";
const BACKWARD: &str = "model backward";

/// A fixed projection of latent channels to RGB for pictures: the identity for 3 channels in
/// [-1, 1] (video pixels), else the first three principal components of a batch of training
/// frames around grey, all scaled by that batch's largest projection (fixed for the run, so
/// colours compare across steps).
#[derive(Debug)]
struct LatentView {
    mean: Tensor,
    basis: Tensor,
    lo: Tensor,
    hi: Tensor,
    /// Each channel's range over the same batch, for one channel in grey.
    ch_lo: Tensor,
    ch_hi: Tensor,
}

impl LatentView {
    fn new(frames: &Tensor) -> Self {
        // frames [M, C, H, W] -> pixels [P, C]
        let c = frames.size()[1];
        let px = frames
            .transpose(0, 1)
            .reshape([c, -1])
            .tr()
            .to_kind(Kind::Float);
        let ch_lo = px.amin(&[0i64][..], false);
        let ch_hi = px.amax(&[0i64][..], false);
        if c == 3 {
            let dev = frames.device();
            return Self {
                mean: Tensor::zeros([3], (Kind::Float, dev)),
                basis: Tensor::eye(3, (Kind::Float, dev)),
                lo: Tensor::full([3], -1.0, (Kind::Float, dev)),
                hi: Tensor::ones([3], (Kind::Float, dev)),
                ch_lo,
                ch_hi,
            };
        }
        let mean = px.mean_dim(0, false, Kind::Float);
        let centred = &px - &mean;
        let cov = centred.tr().matmul(&centred) / (px.size()[0].max(2) - 1) as f64;
        let (_, vectors) = cov.linalg_eigh("L");
        // Largest eigenvalues last; take up to three, pad with zeros.
        let k = c.min(3);
        let top = vectors.narrow(1, c - k, k).flip([1]);
        let basis = if k < 3 {
            Tensor::cat(
                &[top, Tensor::zeros([c, 3 - k], (Kind::Float, px.device()))],
                1,
            )
        } else {
            top
        };
        // One scale for the three components (the largest projection, on the first): a
        // component with little variance stays near grey instead of having its noise
        // stretched over the whole range.
        let scale = centred.matmul(&basis).abs().max().clamp_min(1e-6);
        let lo = -scale.expand([3], false);
        let hi = scale.expand([3], false).copy();
        Self {
            mean,
            basis,
            lo,
            hi,
            ch_lo,
            ch_hi,
        }
    }

    /// Channel `c` of frames `[M, C, H, W]` in grey, scaled by its range: `[M, 3, H, W]`.
    fn channel(&self, frames: &Tensor, c: i64) -> Tensor {
        let (lo, hi) = (self.ch_lo.get(c), self.ch_hi.get(c));
        let x = (frames.select(1, c).to_kind(Kind::Float) - &lo) / (&hi - &lo).clamp_min(1e-6);
        x.clamp(0.0, 1.0)
            .unsqueeze(1)
            .expand([-1, 3, -1, -1], false)
    }

    /// Frames `[M, C, H, W]` as RGB in [0, 1] `[M, 3, H, W]`.
    fn rgb(&self, frames: &Tensor) -> Tensor {
        let s = frames.size();
        let px = frames.permute([0, 2, 3, 1]).to_kind(Kind::Float) - &self.mean;
        let proj = (px.matmul(&self.basis) - &self.lo) / (&self.hi - &self.lo).clamp_min(1e-6);
        proj.clamp(0.0, 1.0)
            .permute([0, 3, 1, 2])
            .reshape([s[0], 3, s[2], s[3]])
    }
}

/// What one forward pass over a batch gives.
#[derive(Debug)]
struct Forward {
    q: Quantised,
    tokens: Tensor,
    pred: Tensor,
    mse: Tensor,
    mae: Tensor,
    vq: Tensor,
    rollout: Option<(Tensor, Tensor)>,
}

/// Trains one latent action model.
#[derive(Debug)]
pub struct LatentActionTrainer {
    cfg: LatentActionPreset,
    device: Device,
    seed: u64,
    enc_vs: nn::VarStore,
    main_vs: nn::VarStore,
    model: LatentActionModel,
    opt_enc: Adam,
    opt_main: Adam,
    data: LatentSet,
    view: LatentView,
    epochs: crate::engine::data::EpochSampler,
    overfit: Option<LatentBatch>,
    /// The validation windows a pass evaluates (a fixed subset).
    val_windows: Vec<usize>,
    test_windows: Vec<usize>,
    /// The learning rate in force (schedule times base).
    lr_now: f64,
    pending: Option<Reconstruction>,
    /// Steps taken (the step events of a validation carry).
    step: u64,
    events: Vec<Event>,
    /// The float16 loss scale, when mixed precision is on (CUDA).
    loss_scale: LossScale,
}

fn subset(n: usize, fraction: f64, seed: u64) -> Vec<usize> {
    let keep = ((n as f64 * fraction).ceil() as usize).clamp(n.min(1), n);
    let mut all: Vec<usize> = (0..n).collect();
    if keep < n {
        SplitMix64::new(derive_seed(seed, Stream::Validation, 0)).shuffle(&mut all);
        all.truncate(keep);
        all.sort_unstable();
    }
    all
}

/// The schedule's factor for the step `step`. The seed's scheduler sets the rate after
/// the optimizer step, so step 0 trains at the base rate and step s at the factor of s-1;
/// the legacy warmup sets it before (step 0 at rate 0).
///
/// `cosine_steps` 0 ties the cosine to the run's length: it counts the phase's steps and
/// ends with the phase (a timed phase: with its time), as the seed's ends with its epochs.
pub fn lr_factor(t: &Train, step: u64, phase: PhaseAt) -> f64 {
    let (w, r) = (t.warmup_steps as f64, t.min_lr_ratio);
    let tied = t.cosine_steps == 0;
    let step = if tied { phase.step } else { step };
    if t.schedule == Schedule::WarmupCosine && step == 0 {
        return 1.0;
    }
    let s = match t.schedule {
        Schedule::WarmupCosine => (step - 1) as f64,
        _ => step as f64,
    };
    match t.schedule {
        Schedule::Constant => 1.0,
        Schedule::LinearWarmup if s < w => s / w,
        Schedule::LinearWarmup => 1.0,
        Schedule::WarmupCosine if s < w => r + (1.0 - r) * s / w,
        Schedule::WarmupCosine => {
            let progress = match (tied, phase.length, phase.done()) {
                (false, _, _) => (s - w) / (t.cosine_steps as f64 - w).max(1.0),
                (true, Some(n), _) => (s - w) / (n as f64 - w).max(1.0),
                (true, None, Some(done)) => done,
                // A phase of unknown length (a bare trainer): the rate stays up.
                (true, None, None) => 0.0,
            };
            let progress = progress.clamp(0.0, 1.0);
            r + (1.0 - r) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
        }
    }
}

fn scalar(t: &Tensor) -> f64 {
    t.double_value(&[])
}

impl LatentActionTrainer {
    pub fn new(cfg: &LatentActionPreset, device: Device) -> Result<Self, EngineError> {
        let seed = cfg.seed;
        let data = LatentSet::load(&cfg.data, seed).map_err(EngineError::Data)?;
        let patch = cfg.model.patch_size as usize;
        if data.height % patch != 0 || data.width % patch != 0 {
            return Err(EngineError::BadInput(format!(
                "model.patch_size = {patch} does not divide the latents' {}x{}",
                data.height, data.width
            )));
        }
        let b = cfg.train.batch_size as usize;
        if data.train.windows.len() < b {
            return Err(EngineError::BadInput(format!(
                "train.batch_size = {b} is more than the {} training windows",
                data.train.windows.len()
            )));
        }
        crate::engine::seed_torch(seed, Stream::Init, 0);
        let enc_vs = nn::VarStore::new(device);
        let main_vs = nn::VarStore::new(device);
        let shape = (data.channels as i64, data.height as i64, data.width as i64);
        let len = i64::from(cfg.data.sequence_length);
        // The overfit test runs without dropout (spec 1.6).
        let mut model_cfg = cfg.model.clone();
        if cfg.train.overfit_one_batch {
            model_cfg.drop_rate = 0.0;
            model_cfg.attn_drop_rate = 0.0;
        }
        let model = LatentActionModel::new(&enc_vs.root(), &main_vs.root(), &model_cfg, shape, len);
        if cfg.model.predict_change {
            model.adapters.zero_output();
        }
        let adamw = |vs: &nn::VarStore| {
            let mut o = Adam::new(vs, cfg.train.lr, cfg.train.beta1, cfg.train.beta2);
            o.weight_decay = cfg.train.weight_decay;
            o
        };
        let (opt_enc, opt_main) = (adamw(&enc_vs), adamw(&main_vs));
        let first: Vec<usize> = (0..b.min(data.train.windows.len())).collect();
        let probe = data
            .batch(Split::Train, &first, device)
            .map_err(EngineError::Data)?;
        let view = LatentView::new(&probe.x.flatten(0, 1));
        let val_windows = subset(
            data.validation.windows.len(),
            cfg.data.validation_fraction,
            seed,
        );
        let test_windows = subset(data.test.windows.len(), cfg.data.validation_fraction, seed);
        let mut t = Self {
            cfg: cfg.clone(),
            device,
            seed,
            enc_vs,
            main_vs,
            model,
            opt_enc,
            opt_main,
            data,
            view,
            epochs: crate::engine::data::EpochSampler::new(seed),
            overfit: None,
            val_windows,
            test_windows,
            lr_now: cfg.train.lr,
            pending: None,
            step: 0,
            events: Vec::new(),
            loss_scale: LossScale::default(),
        };
        if cfg.train.overfit_one_batch {
            let idx = t.indices(0, 0);
            t.overfit = Some(
                t.data
                    .batch(Split::Train, &idx, device)
                    .map_err(EngineError::Data)?,
            );
        }
        Ok(t)
    }

    /// The run's data, for tools and tests.
    #[must_use]
    pub fn data(&self) -> &LatentSet {
        &self.data
    }

    fn indices(&mut self, epoch: u64, batch: u64) -> Vec<usize> {
        let (n, b) = (
            self.data.train.windows.len(),
            self.cfg.train.batch_size as usize,
        );
        self.epochs.batch(epoch, batch, n, b)
    }

    fn set_lrs(&mut self, step: u64, phase: PhaseAt) {
        self.lr_now = self.cfg.train.lr * lr_factor(&self.cfg.train, step, phase);
        self.opt_main.lr = self.lr_now;
        self.opt_enc.lr = self.lr_now * self.cfg.train.encoder_lr_scale;
    }

    /// Teacher-forced prediction, VQ and (optionally) rollout on a batch `[B, T, C, H, W]`.
    fn forward(&self, x: &Tensor, train: bool, rollout_at: Option<i64>) -> Forward {
        let t = x.size()[1];
        let tokens = self.model.adapters.tokens(x, train);
        let motion = self.cfg.model.encoder_motion.then(|| next_motions(x));
        let q = self.model.encode(&tokens, motion.as_ref(), train);
        let pred_tokens = self
            .model
            .decoder
            .forward(&tokens.narrow(1, 0, t - 1), &q.z_q_st, train);
        // Each frame's predecessor (frame 0 its own: no motion before the window).
        let before = Tensor::cat(&[x.narrow(1, 0, 1), x.narrow(1, 0, t - 2)], 1);
        let pred = self.next_frames(&pred_tokens, &q.z_q_st, &x.narrow(1, 0, t - 1), &before);
        let target = x.narrow(1, 1, t - 1);
        let diff = &pred - &target;
        let mse = diff.square().mean(Kind::Float);
        let mae = diff.abs().mean(Kind::Float);
        let vq = match self.cfg.model.codebook_update {
            CodebookUpdate::Loss => {
                &q.codebook_loss + &q.commitment_loss * self.cfg.train.commitment_weight
            }
            CodebookUpdate::Ema => &q.commitment_loss * self.cfg.train.commitment_weight,
        };
        let rollout =
            rollout_at.map(|t0| self.rollout(x, &tokens, &pred_tokens, &q.z_q_st, t0, train));
        Forward {
            q,
            tokens,
            pred,
            mse,
            mae,
            vq,
            rollout,
        }
    }

    /// The rollout of spec 1.4 from anchor `t0`: MSE and MAE over the horizon's steps.
    fn rollout(
        &self,
        x: &Tensor,
        tokens: &Tensor,
        pred_tokens: &Tensor,
        codes: &Tensor,
        t0: i64,
        train: bool,
    ) -> (Tensor, Tensor) {
        let h = i64::from(self.cfg.train.rollout_horizon);
        let mut z = pred_tokens.select(1, t0);
        if self.cfg.train.detach_rollout_first {
            z = z.detach();
        }
        let mut before = x.select(1, (t0 - 1).max(0));
        let mut frame = self.next_frames(&z, &codes.select(1, t0), &x.select(1, t0), &before);
        before = x.select(1, t0);
        let mut hist = tokens.narrow(1, 0, t0 + 1);
        let (mut mse, mut mae) = (Vec::new(), Vec::new());
        for k in 1..h {
            hist = Tensor::cat(&[hist, self.history_tokens(&z, &frame).unsqueeze(1)], 1);
            z = self
                .model
                .step(&hist, &codes.narrow(1, 0, t0 + 1 + k), train);
            let next = self.next_frames(&z, &codes.select(1, t0 + k), &frame, &before);
            before = std::mem::replace(&mut frame, next);
            let diff = &frame - x.select(1, t0 + 1 + k);
            mse.push(diff.square().mean(Kind::Float));
            mae.push(diff.abs().mean(Kind::Float));
        }
        let mean = |v: Vec<Tensor>| Tensor::stack(&v, 0).mean(Kind::Float);
        (mean(mse), mean(mae))
    }

    /// Where this step's rollout starts, if it has one.
    fn rollout_anchor(&self, t: i64, rng: &mut SplitMix64) -> Option<i64> {
        let tr = &self.cfg.train;
        let h = i64::from(tr.rollout_horizon);
        if h <= 1 || t - 1 - h < 0 || rng.next_f64() >= tr.rollout_prob {
            return None;
        }
        Some(match tr.anchor {
            Anchor::Random => rng.below((t - h) as u64) as i64,
            Anchor::Last => t - 1 - h,
        })
    }

    /// All trainable tensors of both stores.
    fn trainable(&self) -> Vec<Tensor> {
        // By name: the data-parallel all-reduce pairs gradients by position.
        crate::engine::dist::trainable_in_order(&self.enc_vs)
            .into_iter()
            .chain(crate::engine::dist::trainable_in_order(&self.main_vs))
            .collect()
    }

    /// Decodes the last frame of windows `x [B, T, ...]` from frames 0..T-2 with the given
    /// codes `[B, T-1, A]` through the step decoder; returns the frames `[B, C, H, W]`.
    fn decode_last(&self, x: &Tensor, tokens: &Tensor, indices: &Tensor) -> Tensor {
        let t = tokens.size()[1];
        let codes = self.model.quantiser.lookup(indices);
        let z = self.model.step(&tokens.narrow(1, 0, t - 1), &codes, false);
        self.next_frames(
            &z,
            &codes.select(1, t - 2),
            &x.select(1, t - 2),
            &x.select(1, (t - 3).max(0)),
        )
    }

    /// The frames the decoders' output tokens `z [.., N, D]` predict after frames `prev
    /// [.., C, H, W]` under the actions' codes `[.., A, d_c]`: the last frame, moved by the
    /// predicted flow with `model.predict_motion` (and the codes' own with
    /// `model.action_motion`; added to the motion from `before`, the frames preceding
    /// `prev`, with `model.motion_prior`), plus the decoded change with
    /// `model.predict_change`; with neither, the decoded frame.
    fn next_frames(&self, z: &Tensor, codes: &Tensor, prev: &Tensor, before: &Tensor) -> Tensor {
        let m = &self.cfg.model;
        if !m.predict_motion {
            let decoded = self.model.adapters.frames(z);
            return if m.predict_change { prev + decoded } else { decoded };
        }
        let prior = m.motion_prior.then(|| last_motion(prev, before));
        let moved = self.model.moved(z, codes, prev, prior.as_ref());
        if m.predict_change {
            moved + self.model.adapters.frames(z)
        } else {
            moved
        }
    }

    /// What a rollout's history holds for a predicted frame: the decoders' own output tokens,
    /// or with `model.predict_change` or `model.predict_motion` (whose tokens are a change or
    /// a flow, not a frame) the predicted
    /// frame made tokens again (the adapter in eval mode: predicted frames leave its
    /// statistics alone).
    fn history_tokens(&self, z: &Tensor, frame: &Tensor) -> Tensor {
        if self.cfg.model.predict_change || self.cfg.model.predict_motion {
            self.model
                .adapters
                .tokens(&frame.unsqueeze(1), false)
                .squeeze_dim(1)
        } else {
            z.shallow_clone()
        }
    }

    /// Rolls out `frames` steps from frame 0 of a window under the given action indices
    /// `[B, >= frames, A]` with the step decoder (open loop): `[B, frames, C, H, W]`.
    pub fn rollout_from_first(&self, x: &Tensor, indices: &Tensor, frames: i64) -> Tensor {
        tch::no_grad(|| {
            let mut hist = self.model.adapters.tokens(&x.narrow(1, 0, 1), false);
            let codes = self.model.quantiser.lookup(indices);
            let mut frame = x.select(1, 0);
            let mut before = frame.shallow_clone();
            let mut out = Vec::new();
            for k in 0..frames {
                let z = self.model.step(&hist, &codes.narrow(1, 0, k + 1), false);
                let next = self.next_frames(&z, &codes.select(1, k), &frame, &before);
                before = std::mem::replace(&mut frame, next);
                out.push(frame.shallow_clone());
                hist = Tensor::cat(&[hist, self.history_tokens(&z, &frame).unsqueeze(1)], 1);
            }
            Tensor::stack(&out, 1)
        })
    }

    /// One evaluation pass over `windows` of a split: scalars named `{prefix}_...`.
    fn evaluate(
        &mut self,
        split: Split,
        windows: &[usize],
        prefix: &str,
    ) -> Option<Vec<(String, f64)>> {
        if windows.is_empty() {
            return None;
        }
        let k = i64::from(self.cfg.model.codebook_size);
        let a = i64::from(self.cfg.model.codes_per_action);
        let b = self.cfg.train.batch_size as usize;
        let mut sums = std::collections::BTreeMap::<&'static str, f64>::new();
        let mut hist = vec![0u64; k as usize];
        // (code triple, true action) pairs for the purity.
        let mut pairs: Vec<(Vec<i64>, i64)> = Vec::new();
        let mut tuples = std::collections::BTreeMap::<Vec<u32>, u64>::new();
        let mut seen = std::collections::HashSet::<(usize, usize)>::new();
        let mut batches = 0.0;
        crate::engine::seed_torch(self.seed, Stream::Validation, 7);
        let mut rng = SplitMix64::new(derive_seed(self.seed, Stream::Validation, 8));
        for chunk in windows.chunks(b) {
            let batch = match self.data.batch(split, chunk, self.device) {
                Ok(b) => b,
                Err(e) => {
                    self.events.push(Event::Log {
                        step: self.step,
                        level: crate::core::protocol::Level::Warning,
                        message: format!("validation skipped: {e}"),
                    });
                    return None;
                }
            };
            let x = &batch.x;
            let t = x.size()[1];
            let anchor = self.rollout_anchor(t, &mut rng);
            let f = tch::no_grad(|| self.forward(x, false, anchor));
            let copy = (x.narrow(1, 0, t - 1) - x.narrow(1, 1, t - 1))
                .square()
                .mean(Kind::Float);
            let mut add = |k: &'static str, v: f64| *sums.entry(k).or_insert(0.0) += v;
            add("mse", scalar(&f.mse));
            add("mae", scalar(&f.mae));
            add("vq_loss", scalar(&f.vq));
            add("copy_mse", scalar(&copy));
            // Continuing the last motion at constant velocity (the first transition of a
            // window, with none before it, copies): the yardstick of `model.motion_prior`.
            let prev = x.narrow(1, 0, t - 1);
            let before = Tensor::cat(&[x.narrow(1, 0, 1), x.narrow(1, 0, t - 2)], 1);
            add(
                "continue_mse",
                scalar(
                    &(continue_motion(&prev, &before) - x.narrow(1, 1, t - 1))
                        .square()
                        .mean(Kind::Float),
                ),
            );
            // Predicting zeros (about the data's mean): the other baseline spec 4.1 quotes.
            add(
                "zero_mse",
                scalar(&x.narrow(1, 1, t - 1).square().mean(Kind::Float)),
            );
            let (roll, roll_mae) = f
                .rollout
                .as_ref()
                .map_or((0.0, 0.0), |(m, e)| (scalar(m), scalar(e)));
            add("rollout_loss", roll);
            add("rollout_mae", roll_mae);
            let w = &self.cfg.train;
            add(
                "loss",
                w.reconstruction_weight * scalar(&f.mse) + scalar(&f.vq) + w.rollout_weight * roll,
            );
            // Action sensitivity: decode the last frame with the true, random and one-slot
            // perturbed codes (spec 1.6).
            let idx = &f.q.indices;
            let target = x.select(1, t - 1).flatten(1, -1);
            let sens = tch::no_grad(|| {
                let rand = Tensor::randint(k, idx.size(), (Kind::Int64, self.device));
                // One slot of the last transition (the action that makes the decoded frame),
                // replaced by a code that always differs from the true one.
                let (b, tr) = (idx.size()[0], idx.size()[1]);
                let slot = Tensor::randint(a, [b, 1, 1], (Kind::Int64, self.device));
                let at = Tensor::arange(a, (Kind::Int64, self.device)).view([1, 1, a]);
                let last = Tensor::arange(tr, (Kind::Int64, self.device))
                    .view([1, tr, 1])
                    .eq(tr - 1);
                let mask = slot.eq_tensor(&at).logical_and(&last);
                let other = (idx
                    + Tensor::randint_low(1, k, idx.size(), (Kind::Int64, self.device)))
                .remainder(k);
                let perturbed = other.where_self(&mask, idx);
                let dec = |i: &Tensor| self.decode_last(x, &f.tokens, i).flatten(1, -1);
                (dec(idx), dec(&rand), dec(&perturbed))
            });
            let dist = |p: &Tensor| {
                let d = p - &target;
                (
                    d.square().sum_dim_intlist(1, false, Kind::Float).sqrt(),
                    d.abs().sum_dim_intlist(1, false, Kind::Float),
                    d.abs().mean_dim(1, false, Kind::Float),
                    -Tensor::cosine_similarity(p, &target, 1, 1e-8) + 1.0,
                )
            };
            let (da, dr, de) = (dist(&sens.0), dist(&sens.1), dist(&sens.2));
            add("sensitivity_l2", scalar(&(&dr.0 - &da.0).mean(Kind::Float)));
            add("sensitivity_l1", scalar(&(&dr.1 - &da.1).mean(Kind::Float)));
            add(
                "sensitivity_mae",
                scalar(&(&dr.2 - &da.2).mean(Kind::Float)),
            );
            add(
                "sensitivity_cos",
                scalar(&(&dr.3 - &da.3).mean(Kind::Float)),
            );
            add("dsnr", scalar(&dsnr(&da.0, &dr.0, &de.0)));
            // Windows overlap (stride below their length): each transition of the split is
            // counted once, from the first window that holds it, so the histograms and the
            // purity are statistics of transitions.
            let flat: Vec<i64> = Vec::try_from(idx.flatten(0, -1)).unwrap_or_default();
            let acts: Option<Vec<i64>> = batch
                .actions
                .as_ref()
                .map(|actions| Vec::try_from(actions.flatten(0, -1)).unwrap_or_default());
            let per_window = (t - 1) as usize;
            for (bi, &w) in chunk.iter().enumerate() {
                let Some(&(file, start)) = self.data.split(split).windows.get(w) else {
                    continue;
                };
                for j in 0..per_window {
                    if !seen.insert((file, start + j)) {
                        continue;
                    }
                    let at = bi * per_window + j;
                    let Some(codes) = flat.get(at * a as usize..(at + 1) * a as usize) else {
                        continue;
                    };
                    for &i in codes {
                        if let Some(h) = hist.get_mut(i as usize) {
                            *h += 1;
                        }
                    }
                    *tuples
                        .entry(codes.iter().map(|&c| c as u32).collect())
                        .or_default() += 1;
                    if let Some(act) = acts.as_ref().and_then(|v| v.get(at)) {
                        pairs.push((codes.to_vec(), *act));
                    }
                }
            }
            batches += 1.0;
        }
        let mut out: Vec<(String, f64)> = sums
            .into_iter()
            .map(|(k, v)| (format!("{prefix}_{k}"), v / batches))
            .collect();
        let used = hist.iter().filter(|&&c| c > 0).count() as f64;
        out.push((format!("{prefix}_codebook_usage"), used / k as f64));
        out.push((format!("{prefix}_distinct_actions"), tuples.len() as f64));
        if !pairs.is_empty() {
            out.push((format!("{prefix}_action_purity"), purity(&pairs)));
        }
        if prefix == "val" {
            let mut actions: Vec<(Vec<u32>, u64)> = tuples.into_iter().collect();
            actions.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            actions.truncate(64);
            self.events.push(Event::Codes {
                step: self.step,
                counts: hist,
                actions,
            });
        }
        Some(out)
    }

    /// The first validation window: truth, teacher-forced prediction and an open-loop rollout
    /// from frame 0 under the encoded actions, as three rows of RGB frames.
    fn window_images(&self) -> Option<(Tensor, Tensor, Tensor)> {
        let split = if self.val_windows.is_empty() {
            Split::Train
        } else {
            Split::Validation
        };
        let first = self.val_windows.first().copied().unwrap_or(0);
        let batch = self.data.batch(split, &[first], self.device).ok()?;
        let x = &batch.x;
        let t = x.size()[1];
        tch::no_grad(|| {
            let f = self.forward(x, false, None);
            let roll = self.rollout_from_first(x, &f.q.indices, t - 1);
            let rgb = |frames: &Tensor| self.view.rgb(&frames.squeeze_dim(0));
            Some((rgb(&x.narrow(1, 1, t - 1)), rgb(&f.pred), rgb(&roll)))
        })
    }
}

/// Of the transitions, the share whose true action is the most common one among the
/// transitions with the same code triple (1 = every triple means one action).
#[must_use]
pub fn purity(pairs: &[(Vec<i64>, i64)]) -> f64 {
    let mut by_triple: std::collections::BTreeMap<&[i64], std::collections::BTreeMap<i64, u64>> =
        std::collections::BTreeMap::new();
    for (t, a) in pairs {
        *by_triple.entry(t).or_default().entry(*a).or_default() += 1;
    }
    let majority: u64 = by_triple
        .values()
        .map(|m| m.values().copied().max().unwrap_or(0))
        .sum();
    majority as f64 / pairs.len().max(1) as f64
}

/// The motion from frames `before` to `prev` (`[.., C, H, W]`) as the flow that continues it
/// one frame at constant velocity, `[M, 2, H, W]` over the flattened leading dimensions:
/// Lucas-Kanade finds `prev(p) ≈ before(p + g)`, so the next frame is `prev(p + g)`.
fn last_motion(prev: &Tensor, before: &Tensor) -> Tensor {
    // On the channels' mean, whatever the latent (three latent channels are not RGB).
    let mean = |x: &Tensor| {
        x.flatten(0, -4)
            .mean_dim([1i64].as_slice(), true, Kind::Float)
    };
    crate::engine::flow::lucas_kanade(&mean(prev), &mean(before), &Default::default())
}

/// What `model.encoder_motion` hands the encoder: the motion from each frame of windows
/// `[B, T, C, H, W]` to the next, `[B, T, 2, H, W]`, the last frame's zero (it has no next).
fn next_motions(x: &Tensor) -> Tensor {
    let s = x.size();
    let (b, t, h, w) = (s[0], s[1], s[3], s[4]);
    let ahead = last_motion(&x.narrow(1, 1, t - 1), &x.narrow(1, 0, t - 1)).reshape([b, t - 1, 2, h, w]);
    Tensor::cat(&[ahead, Tensor::zeros([b, 1, 2, h, w], (Kind::Float, x.device()))], 1)
}

/// The constant-velocity baseline: `prev` moved on by the motion from `before` to it.
fn continue_motion(prev: &Tensor, before: &Tensor) -> Tensor {
    crate::engine::flow::warp_frames(prev, &last_motion(prev, before))
}

/// Windows `[B, T, C, H, W]`, each mirrored left-right, mirrored up-down and reversed in time
/// with probability 1/2 apiece (`data.augment`), from libtorch's generator (seeded per step).
pub fn mirror_reverse(x: &Tensor) -> Tensor {
    let b = x.size()[0];
    let mut x = x.shallow_clone();
    for dim in [4i64, 3, 1] {
        let pick = crate::engine::dist::rand_rows(&[b, 1, 1, 1, 1], (Kind::Float, x.device()))
            .lt(0.5);
        x = x.flip([dim]).where_self(&pick, &x);
    }
    x
}

/// Spec 1.6's DSNR from each sample's L2 distance to the truth of the frame decoded with the
/// encoded action (`d_action`), with random codes (`d_rand`) and with one slot of the encoded
/// action changed (`d_slot`): how much further random codes go than one changed slot, on
/// average.
pub fn dsnr(d_action: &Tensor, d_rand: &Tensor, d_slot: &Tensor) -> Tensor {
    ((d_rand - d_action) / (d_slot - d_action + 1e-8)).mean(Kind::Float)
}

/// Validation metric names: `val_` and `test_` of each.
const EVAL: [&str; 20] = [
    "loss",
    "mse",
    "mae",
    "vq_loss",
    "copy_mse",
    "zero_mse",
    "rollout_loss",
    "rollout_mae",
    "sensitivity_l2",
    "sensitivity_l1",
    "sensitivity_mae",
    "sensitivity_cos",
    "dsnr",
    "codebook_usage",
    "distinct_actions",
    "action_purity",
    "mse_over_copy",
    "psnr_gain_db",
    "continue_mse",
    "mse_over_continue",
];

/// `val_<name>` and `test_<name>` of every [`EVAL`] name, made once: metric names are
/// `&'static str`.
static EVAL_NAMES: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
    ["val", "test"]
        .iter()
        .flat_map(|p| EVAL.iter().map(move |n| format!("{p}_{n}")))
        .collect()
});

/// The static name of an evaluation metric (`val_mse`, ...).
fn eval_name(name: &str) -> Option<&'static str> {
    EVAL_NAMES.iter().find(|n| *n == name).map(String::as_str)
}

impl Trainer for LatentActionTrainer {
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
            "Latent action model: E {}, depth {}/{}, {} heads, K {} x {} codes of {}; {:.2} M params (encoder {:.2} M); data: {}",
            m.embed_dim,
            m.encoder_depth,
            m.decoder_depth,
            m.heads,
            m.codebook_size,
            m.codes_per_action,
            m.code_dim,
            (count(&self.enc_vs) + count(&self.main_vs)) as f64 / 1e6,
            count(&self.enc_vs) as f64 / 1e6,
            self.data.description
        )
    }

    fn warnings(&self) -> Vec<String> {
        let mut w: Vec<String> = [&self.data.train, &self.data.validation, &self.data.test]
            .iter()
            .flat_map(|s| s.short.iter())
            .map(|why| format!("passed over (no window): {why}"))
            .collect();
        if self.cfg.model.separate_step_decoder && self.cfg.train.rollout_horizon <= 1 {
            w.push("train.rollout_horizon is 1: the separate step decoder gets no gradient, so rollouts and the action sensitivity measure an untrained module (spec 1.4); raise the horizon or set model.separate_step_decoder false".into());
        }
        if self.cfg.train.mixed_precision && self.device == Device::Cpu {
            w.push("train.mixed_precision applies on CUDA only; this run trains in float32".into());
        }
        if self.data.validation.windows.is_empty() && self.cfg.logging.validate_every_steps > 0 {
            w.push("the validation split holds no window: validation is skipped".into());
        }
        w
    }

    fn steps_per_epoch(&self) -> u64 {
        if self.overfit.is_some() {
            return 100;
        }
        crate::engine::dist::steps_per_epoch(
            self.data.train.windows.len(),
            self.cfg.train.batch_size as usize,
        )
    }

    fn metrics(&self) -> Vec<MetricDef> {
        let mut m = vec![
            MetricDef::loss("loss").main(),
            MetricDef::loss("loss_mae"),
            MetricDef::loss("mse_loss").main(),
            MetricDef::loss("mae_loss"),
            MetricDef::loss("vq_loss"),
            MetricDef::loss("codebook_loss"),
            MetricDef::loss("commitment_loss"),
            MetricDef::loss("rollout_loss"),
            MetricDef::loss("rollout_loss_mae"),
            MetricDef::diagnostic("codebook_usage").role(HealthRole::CodebookUse),
            MetricDef::diagnostic("grad_norm"),
            MetricDef::setting("lr"),
        ];
        for prefix in ["val", "test"] {
            for name in EVAL {
                let higher = matches!(
                    name,
                    "sensitivity_l2"
                        | "sensitivity_l1"
                        | "sensitivity_mae"
                        | "sensitivity_cos"
                        | "dsnr"
                        | "codebook_usage"
                        | "distinct_actions"
                        | "action_purity"
                        | "psnr_gain_db"
                );
                let def = MetricDef::validation(&format!("{prefix}_{name}"), higher);
                let main = prefix == "val" && matches!(name, "mse" | "action_purity");
                let def = if name == "mse" {
                    def.baseline(&format!("{prefix}_copy_mse"))
                } else {
                    def
                };
                m.push(if main { def.main() } else { def });
            }
        }
        m
    }

    fn apply_preset(&mut self, preset: &AnyPreset) -> Result<(), TrainerError> {
        let AnyPreset::LatentAction(p) = preset else {
            return Err(TrainerError::Config(format!(
                "a {} preset given to the latent action trainer",
                preset.family().name()
            )));
        };
        for o in [&mut self.opt_enc, &mut self.opt_main] {
            o.beta1 = p.train.beta1;
            o.beta2 = p.train.beta2;
            o.weight_decay = p.train.weight_decay;
        }
        if p.data.validation_fraction != self.cfg.data.validation_fraction {
            let f = p.data.validation_fraction;
            self.val_windows = subset(self.data.validation.windows.len(), f, self.seed);
            self.test_windows = subset(self.data.test.windows.len(), f, self.seed);
        }
        self.cfg = p.clone();
        Ok(())
    }

    fn non_finite_advice(&self) -> &'static str {
        "lower train.lr 3-10x or train.grad_clip, then resume from the last good checkpoint"
    }

    fn timed_parts(&self) -> &'static [&'static str] {
        &[FORWARD, BACKWARD]
    }

    fn train_step(&mut self, ctx: &StepCtx) -> Result<Vec<(&'static str, f64)>, StepError> {
        crate::engine::trainer::injected_failure(ctx.step)?;
        self.step = ctx.step + 1;
        crate::engine::seed_torch(self.seed, Stream::Step, ctx.step);
        let mut rng = SplitMix64::new(derive_seed(self.seed, Stream::Step, ctx.step));
        self.set_lrs(ctx.step, ctx.phase);
        let x = match &self.overfit {
            Some(b) => b.x.shallow_clone(),
            None => {
                let idx = self.indices(ctx.epoch, ctx.batch_in_epoch);
                let x =
                    timing::data(ctx.step, || self.data.batch(Split::Train, &idx, self.device))
                        .map_err(|e| StepError::new("reading the batch", e))?
                        .x;
                if self.cfg.data.augment {
                    mirror_reverse(&x)
                } else {
                    x
                }
            }
        };
        timing::enter(FORWARD);
        let t = x.size()[1];
        let anchor = self.rollout_anchor(t, &mut rng);
        // Mixed precision: float16 autocast on CUDA with a dynamic loss scale (GradScaler).
        let amp = self.cfg.train.mixed_precision && self.device.is_cuda();
        let f = tch::autocast(amp, || self.forward(&x, true, anchor));
        let w = &self.cfg.train;
        let (roll, roll_mae) = match &f.rollout {
            Some((m, e)) => (m.shallow_clone(), e.shallow_clone()),
            None => (f.mse.zeros_like(), f.mse.zeros_like()),
        };
        let loss = &f.mse * w.reconstruction_weight + &f.vq + &roll * w.rollout_weight;
        let loss_mae = &f.mae * w.reconstruction_weight + &f.vq + &roll_mae * w.rollout_weight;
        timing::enter(BACKWARD);
        self.opt_enc.zero_grad();
        self.opt_main.zero_grad();
        let params = self.trainable();
        if amp {
            (&loss * self.loss_scale.scale)
                .f_backward()
                .map_err(StepError::at("backward"))?;
            scale_grads(&params, 1.0 / self.loss_scale.scale);
        } else {
            loss.f_backward().map_err(StepError::at("backward"))?;
        }
        crate::engine::dist::mean_grads(&params).map_err(all_reduce_failed)?;
        let grad_norm = clip_global_norm(&params, w.grad_clip);
        // Without mixed precision a non-finite norm steps (and the health check stops the
        // run on the loss); with it, the step is skipped and the scale halved.
        if !amp || self.loss_scale.update(grad_norm) {
            self.opt_enc.step();
            self.opt_main.step();
        }
        let used =
            f.q.indices
                .flatten(0, -1)
                .unique_dim(0, false, false, false)
                .0
                .size()[0];
        let mut row = vec![
            ("loss", scalar(&loss)),
            ("loss_mae", scalar(&loss_mae)),
            ("mse_loss", scalar(&f.mse)),
            ("mae_loss", scalar(&f.mae)),
            ("vq_loss", scalar(&f.vq)),
            ("codebook_loss", scalar(&f.q.codebook_loss)),
            ("commitment_loss", scalar(&f.q.commitment_loss)),
            ("rollout_loss", scalar(&roll)),
            ("rollout_loss_mae", scalar(&roll_mae)),
            ("codebook_usage", used as f64),
            ("grad_norm", grad_norm),
            ("lr", self.lr_now),
        ];
        // A mixed-precision step whose gradients overflowed was skipped (the scale halves):
        // its norm is no finding, so it is not logged (the guard reads a non-finite norm
        // of any other step as a non-finite gradient).
        if amp && !grad_norm.is_finite() {
            row.retain(|(k, _)| *k != "grad_norm");
        }
        Ok(row)
    }

    fn sample_grid(&mut self) -> Rgba {
        match self.window_images() {
            Some((truth, pred, roll)) => {
                let rows = Tensor::cat(&[truth, pred, roll], 0);
                crate::engine::convert::grid_rgba(&rows, rows.size()[0] / 3)
            }
            None => Rgba {
                width: 1,
                height: 1,
                pixels: vec![0, 0, 0, 255],
            },
        }
    }

    fn reconstruction(&mut self) -> Option<Reconstruction> {
        let (truth, pred, _) = self.window_images()?;
        let frames = truth.size()[0] as u32;
        Some(Reconstruction {
            split: "validation".into(),
            frames,
            truth: crate::engine::convert::strip(&truth),
            recon: crate::engine::convert::strip(&pred),
            boxes: Vec::new(),
            motion_boxes: Vec::new(),
        })
    }

    fn pending_reconstruction(&mut self) -> Option<Reconstruction> {
        self.pending.take()
    }

    fn drain_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    fn family_state(&self) -> serde_json::Value {
        serde_json::json!({ "loss_scale": self.loss_scale })
    }

    fn into_explorer(self: Box<Self>) -> Option<Box<dyn ActionExplorer>> {
        Some(self)
    }

    fn validate(&mut self) -> Option<Validation> {
        let windows = self.val_windows.clone();
        let mut scalars = self.evaluate(Split::Validation, &windows, "val")?;
        // The test split only every `data.test_every` regular validations: it is held out for
        // reporting, not for watching.
        let every = self.cfg.logging.validate_every_steps * u64::from(self.cfg.data.test_every);
        if every > 0 && self.step > 0 && self.step.is_multiple_of(every) {
            let tests = self.test_windows.clone();
            if let Some(t) = self.evaluate(Split::Test, &tests, "test") {
                scalars.extend(t);
            }
        }
        for prefix in ["val", "test"] {
            let get = |k: &str| {
                scalars
                    .iter()
                    .find(|(n, _)| n == &format!("{prefix}_{k}"))
                    .map(|(_, v)| *v)
            };
            let (mse, cont, copy) = (get("mse"), get("continue_mse"), get("copy_mse"));
            if let (Some(mse), Some(cont)) = (mse, cont) {
                scalars.push((format!("{prefix}_mse_over_continue"), mse / cont.max(1e-12)));
            }
            if let (Some(mse), Some(copy)) = (mse, copy) {
                scalars.push((format!("{prefix}_mse_over_copy"), mse / copy.max(1e-12)));
                scalars.push((
                    format!("{prefix}_psnr_gain_db"),
                    10.0 * (copy.max(1e-12) / mse.max(1e-12)).log10(),
                ));
            }
        }
        self.pending = self.reconstruction();
        Some(Validation {
            scalars: scalars
                .into_iter()
                .filter_map(|(k, v)| eval_name(&k).map(|k| (k, v)))
                .collect(),
            best_by: "val_loss",
            diversity_ratio: None,
        })
    }

    fn parts(&mut self) -> Vec<Part<'_>> {
        let mut parts = vec![
            Part::Vars("enc", &self.enc_vs),
            Part::Vars("main", &self.main_vs),
            Part::Optimizer("opt_enc", &mut self.opt_enc),
            Part::Optimizer("opt_main", &mut self.opt_main),
        ];
        if let Some(b) = &mut self.overfit {
            parts.push(Part::Tensor("overfit_batch", &mut b.x));
        }
        parts
    }

    fn load_family_state(&mut self, state: &serde_json::Value) -> Result<(), TrainerError> {
        if let Some(v) = state.get("loss_scale") {
            self.loss_scale = serde_json::from_value(v.clone())
                .map_err(|e| TrainerError::State(format!("family_state.loss_scale: {e}")))?;
        }
        Ok(())
    }
}

impl ActionExplorer for LatentActionTrainer {
    fn windows(&self) -> usize {
        self.explore_split().1
    }

    fn codebook_size(&self) -> usize {
        self.cfg.model.codebook_size as usize
    }

    fn slots(&self) -> usize {
        self.cfg.model.codes_per_action as usize
    }

    fn max_steps(&self) -> usize {
        self.data.sequence_length - 1
    }

    fn channels(&self) -> usize {
        self.data.channels
    }

    fn explore(
        &mut self,
        window: usize,
        action: &[u32],
        steps: usize,
        channel: Option<usize>,
    ) -> Result<Explored, TrainerError> {
        if let Some(c) = channel.filter(|&c| c >= self.data.channels) {
            return Err(TrainerError::Explore(format!(
                "channel {c} of {}",
                self.data.channels
            )));
        }
        let (split, n) = self.explore_split();
        if window >= n {
            return Err(TrainerError::Explore(format!("window {window} of {n}")));
        }
        let k = self.codebook_size();
        if action.len() != self.slots() || action.iter().any(|&c| c as usize >= k) {
            return Err(TrainerError::Explore(format!(
                "an action is {} codes below {k}; got {action:?}",
                self.slots()
            )));
        }
        let steps = steps.clamp(1, self.max_steps()) as i64;
        let x = self.data.batch(split, &[window], self.device)?.x;
        let (truth, encoded, chosen, codes) = tch::no_grad(|| {
            let f = self.forward(&x, false, None);
            let encoded = self.rollout_from_first(&x, &f.q.indices, steps);
            let a = action.iter().map(|&c| i64::from(c)).collect::<Vec<_>>();
            let chosen_idx = Tensor::from_slice(&a)
                .to_device(self.device)
                .view([1, 1, -1])
                .expand([1, steps, -1], false)
                .contiguous();
            let chosen = self.rollout_from_first(&x, &chosen_idx, steps);
            let rgb = |frames: &Tensor| {
                let f = frames.squeeze_dim(0);
                match channel {
                    Some(c) => self.view.channel(&f, c as i64),
                    None => self.view.rgb(&f),
                }
            };
            (
                rgb(&x.narrow(1, 1, steps)),
                rgb(&encoded),
                rgb(&chosen),
                f.q.indices.shallow_clone(),
            )
        });
        let codes: Vec<i64> = Vec::try_from(codes.flatten(0, -1)).unwrap_or_default();
        Ok(Explored {
            truth: crate::engine::convert::strip(&truth),
            encoded: crate::engine::convert::strip(&encoded),
            chosen: crate::engine::convert::strip(&chosen),
            encoded_actions: codes
                .chunks(self.slots())
                .map(|c| c.iter().map(|&v| v as u32).collect())
                .collect(),
            frames: steps as u32,
        })
    }

    fn describe(&self) -> String {
        format!(
            "{} codes x {} slots; {} windows of {} frames",
            self.codebook_size(),
            self.slots(),
            self.windows(),
            self.data.sequence_length
        )
    }
}

impl LatentActionTrainer {
    /// The split the explorer starts from: validation, or training when it has no window.
    fn explore_split(&self) -> (Split, usize) {
        match self.data.validation.windows.len() {
            0 => (Split::Train, self.data.train.windows.len()),
            n => (Split::Validation, n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::preset::{AnyPreset, LatentActionPreset};

    #[test]
    fn purity_is_the_majority_share_within_each_code_triple() {
        let t = |a: i64, b: i64| vec![a, b, 0];
        // One triple for one action each: every triple means one action.
        let pure: Vec<_> = (0..8).map(|a| (t(a, 1), a)).collect();
        assert_eq!(purity(&pure), 1.0);
        // One triple for all eight actions, evenly: chance.
        let one: Vec<_> = (0..8).map(|a| (t(5, 5), a)).collect();
        assert!((purity(&one) - 0.125).abs() < 1e-12);
        // Triple A holds actions 0, 0, 1 (majority 2), triple B holds 2 (majority 1): 3 of 4.
        let mixed = vec![(t(0, 0), 0), (t(0, 0), 0), (t(0, 0), 1), (t(1, 1), 2)];
        assert!((purity(&mixed) - 0.75).abs() < 1e-12);
        assert_eq!(purity(&[]), 0.0);
    }

    #[test]
    fn dsnr_is_the_random_gain_over_the_one_slot_gain() {
        let v = |x: &[f64]| Tensor::from_slice(x);
        // (3 - 1) / (2 - 1) = 2 and (6 - 2) / (3 - 2) = 4: the mean is 3.
        let d = dsnr(&v(&[1.0, 2.0]), &v(&[3.0, 6.0]), &v(&[2.0, 3.0]));
        assert!((d.double_value(&[]) - 3.0).abs() < 1e-6, "{d}");
        // Codes the decoder ignores: no gain either way, no division by zero.
        let flat = dsnr(&v(&[1.0]), &v(&[1.0]), &v(&[1.0]));
        assert!(flat.double_value(&[]).abs() < 1e-6);
    }

    /// With the motion prior an untrained model continues the motion between the two last
    /// frames: a smooth pattern sliding one pixel a frame is predicted far better than by
    /// copying, except the window's first transition, which has no motion before it (a
    /// prior of the wrong sign would move it two pixels off).
    #[test]
    fn the_motion_prior_continues_the_last_motion() {
        let t = motion_trainer(|p| {
            p.model.motion_prior = true;
            p.train.rollout_horizon = 3;
        });
        let x = sliding(&t, 5);
        let f = tch::no_grad(|| t.forward(&x, false, None));
        let per_step = |a: &Tensor| {
            (a - x.narrow(1, 1, 4))
                .square()
                .mean_dim([0i64, 2, 3, 4].as_slice(), false, Kind::Float)
        };
        let (pred, copy) = (per_step(&f.pred), per_step(&x.narrow(1, 0, 4)));
        let at = |v: &Tensor, i: i64| v.double_value(&[i]);
        let (p0, c0) = (at(&pred, 0), at(&copy, 0));
        assert!((p0 - c0).abs() < 1e-6 * c0.max(1.0), "step 0: {p0} {c0}");
        for i in 1..4 {
            let (p, c) = (at(&pred, i), at(&copy, i));
            assert!(p < 0.2 * c, "step {i}: {p} against copying {c}");
        }
        // The rollout from frame 1 predicts frame 2 from the truth, then frames 3 and 4 from its
        // own frames and the frame before each: the motion goes on (with the frame before
        // forgotten, a step would copy its own prediction, one pixel behind).
        let f = tch::no_grad(|| t.forward(&x, false, Some(1)));
        let (roll, _) = f.rollout.expect("a rollout");
        let one_behind = (x.select(1, 2) - x.select(1, 3)).square().mean(Kind::Float);
        let (r, c) = (roll.double_value(&[]), one_behind.double_value(&[]));
        // 0.28 of it here (the columns each step brings in are border values); 0.61 with the
        // frame before forgotten.
        assert!(r < 0.4 * c, "rollout {r} against copying its last frame {c}");
    }

    /// One window `[1, frames, C, H, W]` of the trainer's latent shape: a smooth pattern
    /// sliding one pixel to the right a frame.
    fn sliding(t: &LatentActionTrainer, frames: i64) -> Tensor {
        let (c, h, w) = (t.data.channels as i64, t.data.height as i64, t.data.width as i64);
        let frames: Vec<Tensor> = (0..frames)
            .map(|i| {
                let xs = Tensor::arange(w, (Kind::Float, Device::Cpu)).view([1, w]) - i as f64;
                let ys = Tensor::arange(h, (Kind::Float, Device::Cpu)).view([h, 1]);
                ((&xs * 0.4).sin() * (&ys * 0.3 + 0.5).cos())
                    .view([1, 1, h, w])
                    .expand([1, c, h, w], false)
            })
            .collect();
        Tensor::stack(&frames, 1)
    }

    /// `model.encoder_motion` hands the encoder the motion from each frame to the next: on a
    /// pattern sliding one pixel a frame it is one pixel (the last frame's is zero: it has no
    /// next), moving a frame by it comes close to the next, and the encoder's output follows
    /// it (without the lever the motion is not read at all). Its embedding is the encoder's,
    /// trained at the encoder's rate. An action reads its own transition's motion, the
    /// earlier ones, and (as the seed's mask in every layer lets it read one frame further a
    /// layer) the next ones up to the encoder's depth, no further.
    #[test]
    fn the_encoder_reads_the_motion_to_the_next_frame() {
        let wide = |p: &mut LatentActionPreset| {
            p.data.sequence_length = 5;
            p.data.synthetic_size = 32;
        };
        let t = tiny_trainer(|p| {
            wide(p);
            p.model.encoder_motion = true;
        });
        let x = sliding(&t, 5);
        let m = next_motions(&x);
        let (h, w) = (t.data.height as i64, t.data.width as i64);
        assert_eq!(m.size(), [1, 5, 2, h, w]);
        // Away from the borders (where a move brings in border values).
        let inner = m.narrow(1, 0, 4).narrow(3, 4, h - 8).narrow(4, 4, w - 8);
        let dx = inner.select(2, 0).mean(Kind::Float).double_value(&[]);
        let dy = inner.select(2, 1).abs().mean(Kind::Float).double_value(&[]);
        // The next frame samples this one a pixel to the left.
        assert!((dx + 1.0).abs() < 0.1 && dy < 0.1, "motion ({dx}, {dy})");
        assert_eq!(m.select(1, 4).abs().max().double_value(&[]), 0.0);
        let moved = crate::engine::flow::warp_frames(&x.narrow(1, 0, 4), &m.narrow(1, 0, 4).flatten(0, 1));
        let next = x.narrow(1, 1, 4);
        let err = (moved - &next).square().mean(Kind::Float).double_value(&[]);
        let copy = (x.narrow(1, 0, 4) - &next).square().mean(Kind::Float).double_value(&[]);
        assert!(err < 0.2 * copy, "moved by the motion {err}, copied {copy}");
        let enc = |t: &LatentActionTrainer, motion: &Tensor| {
            let tokens = t.model.adapters.tokens(&x, false);
            tch::no_grad(|| t.model.encoder.forward(&tokens, Some(motion), false).0)
        };
        let change = (enc(&t, &m) - enc(&t, &m.neg())).abs().max().double_value(&[]);
        assert!(change > 1e-3, "the encoder ignores the motion ({change})");
        // Transition 3's motion sits on frame 3's tokens: it reaches action 3, and through the
        // shifted-causal mask in every layer (each sees one frame further, as in the seed)
        // the actions up to the encoder's depth before it, and none earlier.
        let depth = i64::from(t.cfg.model.encoder_depth);
        let other = Tensor::cat(&[m.narrow(1, 0, 3), m.narrow(1, 3, 1).neg(), m.narrow(1, 4, 1)], 1);
        let gap = (enc(&t, &m) - enc(&t, &other)).abs().amax([0i64, 2].as_slice(), false);
        assert!(gap.double_value(&[3]) > 1e-3, "action 3 ignores its motion");
        assert!(depth < 3, "the tiny encoder is shallower than the window");
        for action in 0..3 - depth {
            assert!(gap.double_value(&[action]) < 1e-6, "action {action} reads transition 3");
        }
        assert!(t.enc_vs.variables().keys().any(|k| k.contains("motion_embed")));
        let off = tiny_trainer(wide);
        assert!(enc(&off, &m).equal(&enc(&off, &m.neg())));
        assert!(!off.enc_vs.variables().keys().any(|k| k.contains("motion_embed")));
    }

    /// `model.action_motion`: an action's codes alone say a flow. It is zero at start (an
    /// untrained model still copies the last frame) and the loss reaches its map from the
    /// first step; once the map has weights, two actions move the same frame by different
    /// flows whatever the decoders' tokens, and the same action moves it alike.
    #[test]
    fn actions_say_a_motion_of_their_own() {
        let t = motion_trainer(|p| p.model.action_motion = true);
        let x = sliding(&t, 5);
        let f = t.forward(&x, true, None);
        let err = (&f.pred - x.narrow(1, 0, 4)).abs().max().double_value(&[]);
        assert!(err < 1e-5, "an untrained model moved by {err}");
        let map = t.model.action_motion.as_ref().expect("the actions' flow map");
        let grads = Tensor::run_backward(&[&f.mse], &[&map.ws], false, false);
        assert!(grads[0].abs().sum(Kind::Float).double_value(&[]) > 0.0);
        tch::no_grad(|| {
            map.ws.shallow_clone().copy_(&Tensor::randn(map.ws.size(), (Kind::Float, Device::Cpu)));
        });
        let frame = x.select(1, 2);
        let n = t.model.adapters.grid.0 * t.model.adapters.grid.1;
        let d = i64::from(t.cfg.model.token_dim);
        let (a, dc) = (i64::from(t.cfg.model.codes_per_action), i64::from(t.cfg.model.code_dim));
        let codes = t.model.quantiser.lookup(&Tensor::from_slice(&[0i64, 1, 2, 3, 4, 5]).view([2, a]));
        assert_eq!(codes.size(), [2, a, dc]);
        let frames = frame.expand([2, -1, -1, -1], false);
        let moved = |z: &Tensor, codes: &Tensor| tch::no_grad(|| t.model.moved(z, codes, &frames, None));
        let z = Tensor::randn([2, n, d], (Kind::Float, Device::Cpu));
        let one = moved(&z, &codes);
        let gap = (one.get(0) - one.get(1)).abs().max().double_value(&[]);
        assert!(gap > 1e-3, "two actions moved the frame alike ({gap})");
        let same = codes.narrow(0, 0, 1).expand([2, a, dc], false);
        let two = moved(&z, &same);
        let gap = (two.get(0) - two.get(1)).abs().max().double_value(&[]);
        // The decoders' own head is still zero: the same action, the same move.
        assert!(gap < 1e-6, "one action moved the frame two ways ({gap})");
    }

    /// Each predicted frame moves by its own transition's action: with the decoders' head at
    /// zero, teacher-forced frame k+1 is frame k moved by action k's flow, and the open-loop
    /// rollout from frame 0 under a different action at every step moves frame k by action
    /// k's flow (one action late or early, it would not).
    #[test]
    fn each_step_moves_by_its_own_actions_flow() {
        let t = motion_trainer(|p| p.model.action_motion = true);
        let map = t.model.action_motion.as_ref().expect("the actions' flow map");
        tch::no_grad(|| {
            map.ws
                .shallow_clone()
                .copy_(&(Tensor::randn(map.ws.size(), (Kind::Float, Device::Cpu)) * 0.3));
        });
        let x = sliding(&t, 5);
        let n = t.model.adapters.grid.0 * t.model.adapters.grid.1;
        let z = Tensor::zeros([1, n, i64::from(t.cfg.model.token_dim)], (Kind::Float, Device::Cpu));
        let moved = |codes: &Tensor, frame: &Tensor| tch::no_grad(|| t.model.moved(&z, codes, frame, None));
        let f = tch::no_grad(|| t.forward(&x, false, None));
        for k in 0..4 {
            let want = moved(&f.q.z_q_st.select(1, k), &x.select(1, k));
            let err = (f.pred.select(1, k) - want).abs().max().double_value(&[]);
            assert!(err < 1e-5, "teacher-forced frame {} off by {err}", k + 1);
        }
        let (a, k_codes) = (i64::from(t.cfg.model.codes_per_action), i64::from(t.cfg.model.codebook_size));
        let indices = (Tensor::arange(4 * a, (Kind::Int64, Device::Cpu)) * 5).remainder(k_codes).view([1, 4, a]);
        let codes = t.model.quantiser.lookup(&indices);
        let rolled = t.rollout_from_first(&x, &indices, 4);
        let mut frame = x.select(1, 0);
        for k in 0..4 {
            frame = moved(&codes.select(1, k), &frame);
            let err = (rolled.select(1, k) - &frame).abs().max().double_value(&[]);
            assert!(err < 1e-5, "rolled-out frame {} off by {err}", k + 1);
        }
        // The actions differ, so the test would see an action one step off.
        let step = (moved(&codes.select(1, 0), &x.select(1, 0)) - moved(&codes.select(1, 1), &x.select(1, 0)))
            .abs()
            .max()
            .double_value(&[]);
        assert!(step > 1e-3, "two actions moved alike ({step})");
    }

    /// Every augmented window is one of its eight mirrored and reversed versions, drawn
    /// evenly enough that all eight appear in a batch of 64, and reproducibly from the step's
    /// seed.
    #[test]
    fn augmented_windows_are_their_mirrored_and_reversed_versions() {
        let x = Tensor::randn([64, 4, 2, 3, 5], (Kind::Float, Device::Cpu));
        tch::manual_seed(11);
        let y = mirror_reverse(&x);
        tch::manual_seed(11);
        assert!(y.equal(&mirror_reverse(&x)));
        let mut seen = [0u32; 8];
        for i in 0..64 {
            let (a, b) = (x.get(i), y.get(i));
            let versions: Vec<usize> = (0..8usize)
                .filter(|v| {
                    let mut dims = Vec::new();
                    for (bit, dim) in [(1, 3i64), (2, 2), (4, 0)] {
                        if v & bit != 0 {
                            dims.push(dim);
                        }
                    }
                    let w = if dims.is_empty() { a.shallow_clone() } else { a.flip(&dims) };
                    w.equal(&b)
                })
                .collect();
            assert_eq!(versions.len(), 1, "window {i} is not one version: {versions:?}");
            seen[versions[0]] += 1;
        }
        assert!(seen.iter().all(|&n| n > 0), "versions drawn {seen:?}");
    }

    /// A tiny trainer predicting motion alone on windows of 5 latents of 32x32 (wide enough
    /// that the columns a move brings in, border values, weigh little), `edit` applied.
    fn motion_trainer(edit: impl FnOnce(&mut LatentActionPreset)) -> LatentActionTrainer {
        tiny_trainer(|p| {
            p.model.predict_motion = true;
            p.model.predict_change = false;
            p.data.sequence_length = 5;
            p.data.synthetic_size = 32;
            edit(p);
        })
    }

    /// A trainer of the tiny preset with `edit` applied, on the CPU.
    fn tiny_trainer(edit: impl FnOnce(&mut LatentActionPreset)) -> LatentActionTrainer {
        let AnyPreset::LatentAction(mut p) = AnyPreset::LatentAction(LatentActionPreset::default())
            .tiny()
            .expect("tiny")
        else {
            unreachable!()
        };
        edit(&mut p);
        LatentActionTrainer::new(&p, Device::Cpu).expect("trainer")
    }

    /// A model predicting motion alone starts at rest: every predicted frame, teacher-forced
    /// or rolled out, is the last frame as it was, on the real loader's windows.
    #[test]
    fn a_motion_model_starts_by_copying_the_last_frame() {
        let t = tiny_trainer(|p| {
            p.model.predict_motion = true;
            p.model.predict_change = false;
        });
        let x = t.data.batch(Split::Train, &[0, 1], Device::Cpu).expect("batch").x;
        let steps = x.size()[1];
        let f = tch::no_grad(|| t.forward(&x, false, Some(0)));
        let copy = x.narrow(1, 0, steps - 1);
        let err = (&f.pred - &copy).abs().max().double_value(&[]);
        assert!(err < 1e-5, "teacher-forced frames differ from copying by {err}");
        let copy_mse = (&copy - x.narrow(1, 1, steps - 1)).square().mean(Kind::Float);
        assert!((f.mse.double_value(&[]) - copy_mse.double_value(&[])).abs() < 1e-9);
        let codes = f.q.indices.shallow_clone();
        let rolled = t.rollout_from_first(&x, &codes, steps - 1);
        let first = x.narrow(1, 0, 1).expand_as(&rolled);
        let err = (&rolled - first).abs().max().double_value(&[]);
        assert!(err < 1e-5, "the rollout moved by {err}");
    }

    /// A model predicting changes starts by predicting none, so its rollout from anchor `t0`
    /// repeats frame `t0`; the loss then says which frames it was held against. Frames whose
    /// every value is their index make any other indexing give another number.
    #[test]
    fn the_rollout_is_held_against_the_frames_after_its_anchor() {
        let t = tiny_trainer(|p| {
            p.model.predict_change = true;
            p.train.rollout_horizon = 3;
            p.data.sequence_length = 5;
        });
        let p = &t.cfg;
        let (c, h, w) = (t.data.channels, t.data.height, t.data.width);
        let frames: Vec<Tensor> = (0..5)
            .map(|i| {
                Tensor::full(
                    [1, c as i64, h as i64, w as i64],
                    0.1 * f64::from(i),
                    (Kind::Float, Device::Cpu),
                )
            })
            .collect();
        let x = Tensor::stack(&frames, 1);
        for t0 in [0i64, 1] {
            let f = tch::no_grad(|| t.forward(&x, false, Some(t0)));
            let (mse, _) = f.rollout.expect("a rollout");
            // Steps k = 1, 2 predict frames t0 + 2 and t0 + 3 while repeating frame t0.
            let want = ((0.1f64 * 2.0).powi(2) + (0.1f64 * 3.0).powi(2)) / 2.0;
            assert!(
                (mse.double_value(&[]) - want).abs() < 1e-6,
                "anchor {t0}: {} against {want}",
                mse.double_value(&[])
            );
        }
        // The explorer's open-loop rollout reads frame 0 only: the truth after it cannot
        // change what it predicts.
        let codes = Tensor::zeros(
            [1, 4, i64::from(p.model.codes_per_action)],
            (Kind::Int64, Device::Cpu),
        );
        let a = t.rollout_from_first(&x, &codes, 4);
        let other = Tensor::cat(&[x.narrow(1, 0, 1), x.narrow(1, 1, 4) * -3.0 + 0.5], 1);
        let b = t.rollout_from_first(&other, &codes, 4);
        assert!(a.equal(&b));
    }
}

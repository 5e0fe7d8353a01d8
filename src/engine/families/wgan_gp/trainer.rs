use tch::{nn, Device, Kind, Tensor};

use super::model::{self, Critic, Generator};
use crate::core::preset::wgan_gp::{CriticCounter, WganGpPreset};
use crate::core::preset::AnyPreset;
use crate::core::protocol::{HealthRole, MetricDef};
use crate::core::rng::Stream;
use crate::engine::data::{augment, Augment, ImageSet};
use crate::engine::metrics;
use crate::engine::optim::Adam;
use crate::engine::trainer::{Part, Rgba, StepCtx, StepError, Trainer, TrainerError, Validation, all_reduce_failed};
use crate::engine::{timing, EngineError};

/// The parts of a step the trainer marks (`engine::timing`).
const CRITIC_FORWARD: &str = "critic forward";
const CRITIC_BACKWARD: &str = "critic backward";
const GENERATOR_FORWARD: &str = "generator forward";
const GENERATOR_BACKWARD: &str = "generator backward";

/// Trains one WGAN-GP.
#[derive(Debug)]
pub struct WganGpTrainer {
    cfg: WganGpPreset,
    device: Device,
    seed: u64,
    g_vs: nn::VarStore,
    d_vs: nn::VarStore,
    ema_vs: Option<nn::VarStore>,
    g: Box<dyn Generator>,
    d: Box<dyn Critic>,
    ema: Option<Box<dyn Generator>>,
    opt_g: Adam,
    opt_d: Adam,
    data: ImageSet,
    fixed_noise: Tensor,
    epochs: crate::engine::data::EpochSampler,
    /// Held-out images, 4x downsampled and flattened, for the validation distance.
    holdout_eval: Option<Tensor>,
    projections: Option<Tensor>,
    /// The session controller's scales of `train.lr_g` and `train.lr_d`: the rates in force
    /// are the preset's (or live) bases times these.
    lr_scale: [f64; 2],
}

impl WganGpTrainer {
    pub fn new(cfg: &WganGpPreset, device: Device) -> Result<Self, EngineError> {
        let seed = cfg.seed;
        let data = ImageSet::load(&cfg.data, seed).map_err(EngineError::Data)?;
        let size = cfg.data.image_size;
        crate::engine::seed_torch(seed, Stream::Init, 0);
        let g_vs = nn::VarStore::new(device);
        let d_vs = nn::VarStore::new(device);
        let g = model::generator(&g_vs.root(), &cfg.model, size);
        let d = model::critic(&d_vs.root(), &cfg.model, size);
        let (ema_vs, ema) = if cfg.model.ema_decay > 0.0 {
            let mut vs = nn::VarStore::new(device);
            let m = model::generator(&vs.root(), &cfg.model, size);
            vs.copy(&g_vs)
                .map_err(|e| EngineError::Model(e.to_string()))?;
            vs.freeze();
            (Some(vs), Some(m))
        } else {
            (None, None)
        };
        let opt_g = Adam::new(&g_vs, cfg.train.lr_g, cfg.train.beta1, cfg.train.beta2);
        let opt_d = Adam::new(&d_vs, cfg.train.lr_d, cfg.train.beta1, cfg.train.beta2);
        crate::engine::seed_torch(seed, Stream::FixedNoise, 0);
        let fixed_noise =
            Tensor::randn([64, i64::from(cfg.model.latent_dim)], (Kind::Float, device));
        Ok(Self {
            cfg: cfg.clone(),
            device,
            seed,
            g_vs,
            d_vs,
            ema_vs,
            g,
            d,
            ema,
            opt_g,
            opt_d,
            data,
            fixed_noise,
            epochs: crate::engine::data::EpochSampler::new(seed),
            holdout_eval: None,
            projections: None,
            lr_scale: [1.0; 2],
        })
    }

    fn batch_size(&self) -> usize {
        self.cfg.train.batch_size as usize
    }

    fn indices(&mut self, epoch: u64, batch: u64) -> Vec<u32> {
        let (n, b) = (self.data.train_len(), self.batch_size());
        self.epochs
            .batch(epoch, batch, n, b)
            .into_iter()
            .map(|i| i as u32)
            .collect()
    }

    fn augment_cfg(&self) -> Augment {
        let d = &self.cfg.data;
        Augment {
            hflip_prob: d.hflip_prob,
            rotation_deg: d.rotation_deg,
            brightness: d.jitter_brightness,
            contrast: d.jitter_contrast,
            saturation: d.jitter_saturation,
            hue: d.jitter_hue,
        }
    }

    /// The rates in force: each base times its controller scale.
    fn apply_lrs(&mut self) {
        let rate = |base: f64, scale: f64| {
            if scale == 1.0 {
                base
            } else {
                (base * scale).clamp(1e-8, 1.0)
            }
        };
        self.opt_g.lr = rate(self.cfg.train.lr_g, self.lr_scale[0]);
        self.opt_d.lr = rate(self.cfg.train.lr_d, self.lr_scale[1]);
    }

    fn update_ema(&mut self) {
        let (Some(ema_vs), decay) = (&self.ema_vs, self.cfg.model.ema_decay) else {
            return;
        };
        let src = self.g_vs.variables();
        let copy_stats = self.cfg.model.ema_copy_batchnorm_stats;
        tch::no_grad(|| {
            for (name, mut dst) in ema_vs.variables() {
                let Some(p) = src.get(&name) else { continue };
                if p.requires_grad() {
                    let _ = dst.lerp_(p, 1.0 - decay);
                } else if copy_stats {
                    dst.copy_(p);
                }
            }
        });
    }

    fn sampler(&self) -> &dyn Generator {
        self.ema.as_deref().unwrap_or(self.g.as_ref())
    }

    /// Generates images in [0, 1] from `z` in eval mode, in chunks.
    fn generate(&self, z: &Tensor) -> Tensor {
        tch::no_grad(|| {
            let chunks: Vec<Tensor> = z
                .split(64, 0)
                .iter()
                .map(|c| self.sampler().forward_t(c, false))
                .collect();
            (Tensor::cat(&chunks, 0) + 1.0) / 2.0
        })
    }

    fn downsampled(x: &Tensor) -> Tensor {
        let s = x.size()[2];
        let k = if s >= 16 { 4 } else { 1 };
        x.avg_pool2d([k, k], [k, k], [0, 0], false, true, None::<i64>)
            .flatten(1, -1)
    }
}

/// The gradient penalty of Gulrajani et al.: `mean_b (||dD(x~)/dx~||_2 - 1)^2` at random
/// interpolates `x~ = a real + (1 - a) fake`, with the graph kept (double backward) so the
/// penalty trains the critic.
///
/// # Errors
/// libtorch's, when the double backward fails.
pub fn gradient_penalty(
    critic: impl Fn(&Tensor) -> Tensor,
    real: &Tensor,
    fake: &Tensor,
) -> Result<Tensor, tch::TchError> {
    let b = real.size()[0];
    let alpha = crate::engine::dist::rand_rows(&[b, 1, 1, 1], (real.kind(), real.device()));
    let x = (&alpha * real + (-&alpha + 1.0) * fake)
        .detach()
        .set_requires_grad(true);
    let scores = critic(&x);
    let grads = Tensor::f_run_backward(&[scores.sum(Kind::Float)], &[&x], true, true)?;
    let norms = grads[0]
        .view([b, -1])
        .norm_scalaropt_dim(2, [1i64].as_slice(), false);
    Ok((norms - 1.0).square().mean(real.kind()))
}

impl Trainer for WganGpTrainer {
    fn reseed_data(&mut self, k: u64) {
        self.epochs.reseed(k);
    }

    fn describe(&self) -> String {
        format!(
            "WGAN-GP {:?} {}x{}: G {:.2} M params, critic {:.2} M params; data: {}",
            self.cfg.model.arch,
            self.cfg.data.image_size,
            self.cfg.data.image_size,
            model::parameter_count(&self.g_vs) as f64 / 1e6,
            model::parameter_count(&self.d_vs) as f64 / 1e6,
            self.data.description
        )
    }

    fn timed_parts(&self) -> &'static [&'static str] {
        &[
            CRITIC_FORWARD,
            CRITIC_BACKWARD,
            GENERATOR_FORWARD,
            GENERATOR_BACKWARD,
        ]
    }

    fn metrics(&self) -> Vec<MetricDef> {
        vec![
            MetricDef::loss("d_loss")
                .main()
                .role(HealthRole::CriticLoss),
            MetricDef::loss("g_loss")
                .main()
                .role(HealthRole::GeneratorLoss),
            MetricDef::loss("gp"),
            MetricDef::loss("wasserstein").main(),
            MetricDef::setting("lr_g"),
            MetricDef::setting("lr_d"),
            MetricDef::diagnostic("grad_norm_d"),
            MetricDef::diagnostic("grad_norm_g"),
            MetricDef::validation("val_swd", false).main(),
            MetricDef::validation("val_diversity", true),
        ]
    }

    fn warnings(&self) -> Vec<String> {
        let mut w: Vec<String> = self
            .data
            .skipped
            .iter()
            .map(|(p, why)| format!("skipped unreadable image {p}: {why}"))
            .collect();
        // The seed's per-epoch counter restarts every epoch: with fewer batches in an epoch
        // than n_critic, the generator never takes a step.
        let (spe, n) = (
            self.steps_per_epoch(),
            u64::from(self.cfg.train.n_critic.max(1)),
        );
        if self.cfg.train.critic_counter == CriticCounter::PerEpoch && spe < n {
            w.push(format!(
                "an epoch has {spe} batch(es), fewer than train.n_critic = {n}: with train.critic_counter = per_epoch the generator never steps; set it to global, or use more images or a smaller batch"
            ));
        }
        w
    }

    fn steps_per_epoch(&self) -> u64 {
        crate::engine::dist::steps_per_epoch(self.data.train_len(), self.batch_size())
    }

    fn apply_preset(&mut self, preset: &AnyPreset) -> Result<(), TrainerError> {
        let AnyPreset::WganGp(p) = preset else {
            return Err(TrainerError::Config(format!(
                "a {} preset given to the WGAN-GP trainer",
                preset.family().name()
            )));
        };
        for o in [&mut self.opt_g, &mut self.opt_d] {
            o.beta1 = p.train.beta1;
            o.beta2 = p.train.beta2;
        }
        self.cfg = p.clone();
        self.apply_lrs();
        Ok(())
    }

    fn non_finite_advice(&self) -> &'static str {
        "lower train.lr_g and train.lr_d 5-10x or raise train.lambda_gp, then resume from the last good checkpoint"
    }

    fn train_step(&mut self, ctx: &StepCtx) -> Result<Vec<(&'static str, f64)>, StepError> {
        crate::engine::seed_torch(self.seed, Stream::Step, ctx.step);
        let idx = self.indices(ctx.epoch, ctx.batch_in_epoch);
        let b = idx.len() as i64;
        let real = timing::data(ctx.step, || {
            augment(&self.data.batch(&idx, self.device), &self.augment_cfg()) * 2.0 - 1.0
        });
        let z_dim = i64::from(self.cfg.model.latent_dim);

        // Critic step.
        timing::enter(CRITIC_FORWARD);
        let z = crate::engine::dist::randn_rows(&[b, z_dim], (Kind::Float, self.device));
        let fake = tch::no_grad(|| self.g.forward_t(&z, true));
        let d_real = self.d.forward_t(&real, true).mean(Kind::Float);
        let d_fake = self.d.forward_t(&fake, true).mean(Kind::Float);
        let gp = gradient_penalty(|x| self.d.forward_t(x, true), &real, &fake)
            .map_err(StepError::at("gradient penalty"))?;
        let d_loss = &d_fake - &d_real + &gp * self.cfg.train.lambda_gp;
        timing::enter(CRITIC_BACKWARD);
        self.opt_d.zero_grad();
        d_loss
            .f_backward()
            .map_err(StepError::at("critic backward"))?;
        self.opt_d.mean_grads().map_err(all_reduce_failed)?;
        // Test hook: `nan-grad-once:S`, the critic's gradients NaN the first time step S
        // trains in this process (the guard's non-finite gradient).
        static NAN_GRAD_ONCE: std::sync::atomic::AtomicBool =
            std::sync::atomic::AtomicBool::new(false);
        if crate::engine::failpoint("nan-grad-once", ctx.step)
            && !NAN_GRAD_ONCE.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            self.opt_d.poison_grads();
        }
        // `nan-grad-layer-once:S`: only the critic's first tensor (by name), once.
        static NAN_LAYER_ONCE: std::sync::atomic::AtomicBool =
            std::sync::atomic::AtomicBool::new(false);
        if crate::engine::failpoint("nan-grad-layer-once", ctx.step)
            && !NAN_LAYER_ONCE.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            self.opt_d.poison_first_grad();
        }
        let grad_norm_d = self.opt_d.grad_norm();
        self.opt_d.step();

        let mut out = vec![
            ("d_loss", d_loss.double_value(&[])),
            ("gp", gp.double_value(&[])),
            ("wasserstein", (d_real - d_fake).double_value(&[])),
            ("grad_norm_d", grad_norm_d),
        ];

        // Generator step every n_critic-th batch.
        let n_critic = u64::from(self.cfg.train.n_critic.max(1));
        let counter = match self.cfg.train.critic_counter {
            CriticCounter::PerEpoch => ctx.batch_in_epoch,
            CriticCounter::Global => ctx.step,
        };
        if (counter + 1) % n_critic == 0 {
            timing::enter(GENERATOR_FORWARD);
            let z = crate::engine::dist::randn_rows(&[b, z_dim], (Kind::Float, self.device));
            let g_loss = -self
                .d
                .forward_t(&self.g.forward_t(&z, true), true)
                .mean(Kind::Float);
            timing::enter(GENERATOR_BACKWARD);
            self.opt_g.zero_grad();
            g_loss
                .f_backward()
                .map_err(StepError::at("generator backward"))?;
            self.opt_g.mean_grads().map_err(all_reduce_failed)?;
            let grad_norm_g = self.opt_g.grad_norm();
            self.opt_g.step();
            self.update_ema();
            out.push(("g_loss", g_loss.double_value(&[])));
            out.push(("grad_norm_g", grad_norm_g));
        }
        out.push(("lr_g", self.opt_g.lr));
        out.push(("lr_d", self.opt_d.lr));
        Ok(out)
    }

    fn set_lr_scale(&mut self, field: &str, scale: f64) -> Result<(), TrainerError> {
        let i = match field {
            "train.lr_g" => 0,
            "train.lr_d" => 1,
            other => {
                return Err(TrainerError::Config(format!(
                    "`{other}` is not a learning rate of WGAN-GP"
                )))
            }
        };
        self.lr_scale[i] = scale;
        self.apply_lrs();
        Ok(())
    }

    fn sample_grid(&mut self) -> Rgba {
        let images = self.generate(&self.fixed_noise);
        crate::engine::convert::grid_rgba(&images, 8)
    }

    fn validate(&mut self) -> Option<Validation> {
        let n = self.data.holdout.size()[0].min(512);
        if n < 2 {
            return None;
        }
        if self.holdout_eval.is_none() {
            let real = self
                .data
                .holdout
                .narrow(0, 0, n)
                .to_device(self.device)
                .to_kind(Kind::Float)
                / 255.0;
            let real = Self::downsampled(&real);
            crate::engine::seed_torch(self.seed, Stream::Validation, 1);
            let p = Tensor::randn([real.size()[1], 256], (Kind::Float, self.device));
            self.projections = Some(&p / p.norm_scalaropt_dim(2, [0i64].as_slice(), true));
            self.holdout_eval = Some(real);
        }
        let (real, proj) = (self.holdout_eval.as_ref()?, self.projections.as_ref()?);
        crate::engine::seed_torch(self.seed, Stream::Validation, 2);
        let z = Tensor::randn(
            [n, i64::from(self.cfg.model.latent_dim)],
            (Kind::Float, self.device),
        );
        let fake = Self::downsampled(&self.generate(&z));
        let swd = metrics::sliced_wasserstein(&fake, real, proj);
        let diversity = metrics::mean_pairwise_distance(&fake)
            / metrics::mean_pairwise_distance(real).max(1e-12);
        Some(Validation {
            scalars: vec![("val_swd", swd), ("val_diversity", diversity)],
            best_by: "val_swd",
            diversity_ratio: Some(diversity),
        })
    }

    fn parts(&mut self) -> Vec<Part<'_>> {
        let mut parts = vec![Part::Vars("g", &self.g_vs), Part::Vars("d", &self.d_vs)];
        if let Some(ema) = &self.ema_vs {
            parts.push(Part::Vars("ema", ema));
        }
        parts.extend([
            Part::Optimizer("opt_g", &mut self.opt_g),
            Part::Optimizer("opt_d", &mut self.opt_d),
            Part::Tensor("fixed_noise", &mut self.fixed_noise),
        ]);
        parts
    }

}

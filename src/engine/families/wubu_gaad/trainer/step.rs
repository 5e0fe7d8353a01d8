//! One training step, by concern: the active critic's step on detached fakes, the generator
//! and encoder's step, then the controllers, heuristics and lambda_KL on what the two saw.

use tch::{Kind, Reduction, Tensor};

use super::losses::{bce, easy_win_term};
use super::{value, Forward, WubuGaadTrainer};
use crate::core::control::heuristics::StepValues;
use crate::core::protocol::{Event, Level};
use crate::engine::timing;
use crate::engine::trainer::{all_reduce_failed, StepError};

/// What the critic step saw.
#[derive(Debug, Clone, Copy)]
pub(super) struct CriticOut {
    pub d_total: f64,
    pub d_real: f64,
    pub d_fake: f64,
    pub grad_norm: f64,
}

/// What the generator step saw.
#[derive(Debug, Clone)]
pub(super) struct GenOut {
    pub g_total: f64,
    pub recon: f64,
    /// The reconstruction's per-path MSEs `[dft, dct, pixel]` (NaN when off).
    pub mses: [f64; 3],
    pub kl: f64,
    pub adv: f64,
    pub lambda_kl: f64,
    pub feature_match: f64,
    pub easy_win_penalty: f64,
    pub grad_norm: f64,
    /// Parameters whose non-finite gradients were skipped.
    pub skipped: Vec<String>,
    /// The adaptive adversarial weight this step used (NaN when none).
    pub gan_weight: f64,
}

/// Replaces the losses the two steps saw by their means over the data-parallel ranks (as they
/// are alone); the gradient norms are already the same on every rank.
pub(super) fn rank_means(
    c: &mut CriticOut,
    g: &mut GenOut,
) -> Result<(), crate::engine::dist::DistError> {
    if crate::engine::dist::group().is_none() {
        return Ok(());
    }
    let mut slots: [&mut f64; 13] = {
        let [m0, m1, m2] = &mut g.mses;
        [
            &mut c.d_total,
            &mut c.d_real,
            &mut c.d_fake,
            &mut g.g_total,
            &mut g.recon,
            m0,
            m1,
            m2,
            &mut g.kl,
            &mut g.adv,
            &mut g.feature_match,
            &mut g.easy_win_penalty,
            &mut g.gan_weight,
        ]
    };
    let mut values: Vec<f64> = slots.iter().map(|v| **v).collect();
    crate::engine::dist::mean_values(&mut values)?;
    for (slot, v) in slots.iter_mut().zip(values) {
        **slot = v;
    }
    Ok(())
}

impl WubuGaadTrainer {
    fn gan_on(&self) -> bool {
        self.cfg.train.lambda_gan > 0.0
    }

    /// The active critic's step on detached fakes (BCE on real and fake; no step while the
    /// adversarial term is off).
    pub(super) fn critic_step(&mut self, f: &Forward) -> Result<CriticOut, StepError> {
        let a = self.st.active;
        let gan_on = self.gan_on();
        let clip = self.cfg.train.global_clip;
        timing::enter(super::CRITIC_FORWARD);
        let (d_total, d_real, d_fake, grad_norm) = {
            let critic = &self.critics[a];
            let real_in = self.critic_input(&f.real_pred, &f.real_coeffs);
            let fake_frames = f.gen.frames.detach();
            let fake_coeffs = f.fake_coeffs.detach();
            let fake_in = self.critic_input(&fake_frames, &fake_coeffs);
            // While the adversarial term is off the critic only reports (for the controllers
            // and heuristics): no graph.
            let forward = |input| {
                if gan_on {
                    critic.forward_t(input, true)
                } else {
                    tch::no_grad(|| critic.forward_t(input, true))
                }
            };
            let (lr_real, _) = forward(&real_in);
            let (lr_fake, _) = forward(&fake_in);
            let (l_real, l_fake) = (bce(&lr_real, 1.0), bce(&lr_fake, 0.0));
            let loss = (&l_real + &l_fake) * 0.5;
            let (dt, dr, df) = (value(&loss), value(&l_real), value(&l_fake));
            self.opt_d[a].zero_grad();
            let mut norm = 0.0;
            timing::enter(super::CRITIC_BACKWARD);
            if gan_on {
                loss.f_backward()
                    .map_err(StepError::at("critic backward"))?;
                self.opt_d[a].mean_grads().map_err(all_reduce_failed)?;
                norm = self.opt_d[a].clip_global(clip);
            }
            (dt, dr, df, norm)
        };
        self.apply_scales(a + 1);
        if gan_on {
            self.opt_d[a].step();
        }
        Ok(CriticOut {
            d_total,
            d_real,
            d_fake,
            grad_norm,
        })
    }

    /// The generator and encoder's step: reconstruction, KL, and while the adversarial term
    /// is on, the GAN loss, feature matching and the easy-win penalty.
    pub(super) fn generator_step(&mut self, f: &Forward) -> Result<GenOut, StepError> {
        timing::enter(super::GENERATOR_FORWARD);
        let a = self.st.active;
        let gan_on = self.gan_on();
        let (lambda_gan, lambda_fm, clip) = {
            let t = &self.cfg.train;
            (t.lambda_gan, t.lambda_fm, t.global_clip)
        };
        let (recon, mses) = self.recon_loss(f);
        let kl = ((&f.enc.mu * &f.enc.mu + f.enc.logvar.exp() - &f.enc.logvar - 1.0)
            .sum_dim_intlist([1i64].as_slice(), false, Kind::Float)
            * 0.5)
            .mean(Kind::Float);
        let h = &self.st.heur;
        let lambda_kl = self.st.lambda_kl_base * h.kl_factor;
        let mut g_loss = &recon * h.recon_factor + &kl * lambda_kl;
        let fake_in = self.critic_input(&f.gen.frames, &f.fake_coeffs);
        let (logits, fake_feats) = if gan_on {
            self.critics[a].forward_t(&fake_in, true)
        } else {
            tch::no_grad(|| self.critics[a].forward_t(&fake_in, true))
        };
        let adv = bce(&logits, 1.0);
        let (adv_v, recon_v) = (value(&adv), value(&recon));
        let mut fm_v = 0.0;
        let mut penalty_v = 0.0;
        let mut gan_weight = f64::NAN;
        if gan_on {
            let adaptive = if self.cfg.train.gan_adaptive_weight {
                let w = self.adaptive_gan_weight(&recon, &adv)?;
                gan_weight = w;
                w
            } else {
                1.0
            };
            g_loss += &adv * (lambda_gan * h.gan_factor * adaptive);
            if h.feature_matching && lambda_fm > 0.0 {
                if let Some(fake_feats) = fake_feats {
                    if let Some(real_feats) = self.real_features(a, f) {
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
        timing::enter(super::GENERATOR_BACKWARD);
        let g_total = value(&g_loss);
        self.opt_g.zero_grad();
        g_loss
            .f_backward()
            .map_err(StepError::at("generator backward"))?;
        self.opt_g.mean_grads().map_err(all_reduce_failed)?;
        let grad_norm = self.opt_g.clip_global(clip);
        self.apply_scales(0);
        let skipped = self.opt_g.step();
        // Critic grads from the generator's backward are dropped at the critic's next step.
        Ok(GenOut {
            g_total,
            recon: recon_v,
            mses,
            kl: value(&kl),
            adv: adv_v,
            lambda_kl,
            feature_match: fm_v,
            easy_win_penalty: penalty_v,
            grad_norm,
            skipped,
            gan_weight,
        })
    }

    /// VQGAN's adaptive weight (Esser et al., 2021): the norm of the reconstruction's gradient
    /// at the generator's output layers over the adversarial term's, clamped to [0, 10^4].
    pub(super) fn adaptive_gan_weight(
        &self,
        recon: &Tensor,
        adv: &Tensor,
    ) -> Result<f64, StepError> {
        let ws = self.gen.output_weights();
        let norm = |loss: &Tensor| -> Result<f64, StepError> {
            let grads = Tensor::f_run_backward(&[loss], &ws, true, false)
                .map_err(StepError::at("adaptive adversarial weight"))?;
            Ok(grads
                .iter()
                .map(|g| value(&g.square().sum(Kind::Float)))
                .sum::<f64>()
                .sqrt())
        };
        let (r, a) = (norm(recon)?, norm(adv)?);
        Ok((r / (a + 1e-4)).clamp(0.0, 1e4))
    }

    /// After both steps: the controllers decide on the means of their interval (new scales
    /// apply from the next step), then the heuristics, switching and lambda_KL.
    pub(super) fn control_step(&mut self, step: u64, c: &CriticOut, g: &GenOut) {
        let a = self.st.active;
        let step_no = step + 1;
        let gan_on = self.gan_on();
        let kl_per_dim = g.kl / self.d.z_dim() as f64;
        self.st
            .gen_interval
            .add(&[g.g_total, c.d_total, g.recon, g.kl, g.adv]);
        if gan_on {
            self.st.d_interval[a].add(&[c.d_total, c.d_real, c.d_fake, g.adv]);
        }
        if self.q_on(step) {
            if gan_on {
                self.critic_decision(step_no, a);
            }
            self.gen_decision(step_no, g.lambda_kl);
        }
        self.st.heur.observe(
            &StepValues {
                g_adv: g.adv,
                kl: kl_per_dim,
                recon: g.recon,
                d_total: c.d_total,
                d_reward: self.st.last_d_reward[a],
            },
            &self.cfg.heuristics,
        );
        if step_no.is_multiple_of(self.cfg.heuristics.check_every_steps.max(1)) {
            self.check_heuristics(step_no);
        }
        self.st.lkl_sums[0] += g.recon;
        self.st.lkl_sums[1] += kl_per_dim;
        self.st.lkl_sums[2] += c.d_total;
        self.st.lkl_count += 1;
        let lkl_every = self.cfg.q_control.lkl_every_steps;
        if self.cfg.q_control.enabled && lkl_every > 0 && step_no.is_multiple_of(lkl_every) {
            self.lkl_control(step_no);
        }
        if !g.skipped.is_empty() {
            self.events.push(Event::Log {
                step,
                level: Level::Warning,
                message: format!("non-finite gradients skipped: {}", g.skipped.join(", ")),
            });
        }
    }

    /// Whether the generator's and critic's controllers decide after step `step`.
    fn q_on(&self, step: u64) -> bool {
        self.cfg.q_control.enabled
            && (step + 1).is_multiple_of(self.cfg.q_control.every_steps.max(1))
    }

    /// The step's scalars (each declared in `metrics()`).
    pub(super) fn step_scalars(
        &self,
        step: u64,
        c: &CriticOut,
        g: &GenOut,
    ) -> Vec<(&'static str, f64)> {
        let mut out = vec![
            ("g_loss", g.g_total),
            ("d_loss", c.d_total),
            ("d_real", c.d_real),
            ("d_fake", c.d_fake),
            ("recon", g.recon),
            ("kl", g.kl),
            ("kl_per_dim", g.kl / self.d.z_dim() as f64),
            ("g_adv", g.adv),
            ("lr_gen", self.opt_g.lr),
            ("lr_disc_primary", self.opt_d[0].lr),
            ("lr_disc_alternative", self.opt_d[1].lr),
            ("momentum_gen", self.opt_g.momentum),
            ("lambda_kl_eff", g.lambda_kl),
            ("heur_gan_factor", self.st.heur.gan_factor),
            ("heur_recon_factor", self.st.heur.recon_factor),
            ("heur_kl_factor", self.st.heur.kl_factor),
            ("active_critic", self.st.active as f64),
            ("grad_norm_g", g.grad_norm),
            ("grad_norm_d", c.grad_norm),
        ];
        for (name, v) in [
            ("mse_dft", g.mses[0]),
            ("mse_dct", g.mses[1]),
            ("mse_pixel", g.mses[2]),
        ] {
            if v.is_finite() {
                out.push((name, v));
            }
        }
        if g.gan_weight.is_finite() {
            out.push(("gan_adaptive_weight", g.gan_weight));
        }
        if g.feature_match > 0.0 {
            out.push(("feature_match", g.feature_match));
        }
        if g.easy_win_penalty > 0.0 {
            out.push(("easy_win_penalty", g.easy_win_penalty));
        }
        if self.q_on(step) {
            out.push(("ctl_epsilon_gen", self.st.q_gen.epsilon));
            out.push(("ctl_epsilon_critic", self.st.q_d[self.st.active].epsilon));
        }
        out
    }
}

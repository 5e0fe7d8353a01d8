//! Live loss-health signals for adversarial training, from seed 004's "Reading the losses" and
//! "Diagnosing failure modes" tables. Plain numbers in, findings out.
//!
//! WGAN-GP's `d_loss = D(fake) - D(real) + lambda * gp` sits near zero when healthy. It drifting
//! to a large negative value and staying there means the critic dominates (the generator is
//! failing); a large positive value means the critic is failing; large swings mean the
//! learning rates are too high or lambda too low; a huge magnitude means the run is exploding.
//! Mode collapse shows in the samples, not in the losses: their diversity is compared to the
//! real data's.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::core::preset::schema::FieldKind as K;
use crate::core::protocol::HealthSignal;

crate::preset_section! {
    /// Thresholds of the health rules; part of every adversarial preset.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct HealthConfig {
        /// Turns the rules on.
        pub enabled: bool => field(K::Bool, "", [phase], "Watch the losses (and the samples' diversity) for failure modes"),
        /// Steps before any rule may fire (the first steps are always wild).
        pub warmup_steps: u64 => field(K::Int { min: 0, max: 9223372036854775807 }, "steps", [phase], "Steps before any health signal may fire"),
        /// Logged values the rules look at.
        pub window: usize => field(K::Int { min: 2, max: 100000 }, "logged steps", [phase], "Logged values the loss rules look at"),
        /// Mean `d_loss` below `-critic_dominating` over the window: the critic dominates.
        pub critic_dominating: f64 => field(K::Float { min: 0.0, max: 1000000000.0 }, "", [phase], "Mean d_loss below minus this: critic dominating"),
        /// Mean `d_loss` above `generator_dominating`: the generator dominates.
        pub generator_dominating: f64 => field(K::Float { min: 0.0, max: 1000000000.0 }, "", [phase], "Mean d_loss above this: generator dominating"),
        /// Standard deviation of `d_loss` over the window above this: wild oscillation.
        pub oscillation_std: f64 => field(K::Float { min: 0.0, max: 1000000000.0 }, "", [phase], "d_loss standard deviation above this: wild oscillation"),
        /// Any loss magnitude above this: the run is exploding.
        pub explode_abs: f64 => field(K::Float { min: 0.0, max: 1e30 }, "", [phase], "A loss magnitude above this: exploding"),
        /// Sample diversity divided by the real data's diversity below this: mode collapse.
        pub collapse_diversity_ratio: f64 => field(K::Float { min: 0.0, max: 1.0 }, "", [phase], "Sample diversity / real diversity below this: mode collapse (families with samples)"),
        /// Steps after a finding before the same signal may fire again.
        pub cooldown_steps: u64 => field(K::Int { min: 0, max: 9223372036854775807 }, "steps", [phase], "Steps before the same signal may fire again"),
        /// The guard: on a detector's trigger the run reloads its last good checkpoint,
        /// applies the detector's remedy and goes on, instead of failing (a non-finite loss)
        /// or only warning.
        #[serde(default)]
        pub guard: bool => field(K::Bool, "", [], "On a trigger, roll back to the last good checkpoint and apply the detector's remedy instead of failing"),
        /// Rollbacks before the run stops with one line.
        #[serde(default = "three")]
        pub guard_max_rollbacks: u32 => field(K::Int { min: 1, max: 1000 }, "", [], "Rollbacks before the run stops with one line"),
        /// The remedy for a NaN or infinite loss.
        #[serde(default)]
        pub guard_non_finite: Remedy => field(K::Choice(REMEDIES), "", [], "Remedy for a NaN or infinite loss (or weight)"),
        /// A main loss's magnitude above this many times its running mean triggers (0: off).
        #[serde(default)]
        pub guard_spike_factor: f64 => field(K::Float { min: 0.0, max: 1e6 }, "", [], "A main loss above this many times its running mean triggers; 0 = off"),
        #[serde(default)]
        pub guard_spike: Remedy => field(K::Choice(REMEDIES), "", [], "Remedy for a loss spike"),
        /// A critic loss within 1e-4 of zero for this many steps in a row triggers (0: off).
        #[serde(default)]
        pub guard_flat_critic_steps: u64 => field(K::Int { min: 0, max: 9223372036854775807 }, "steps", [], "A critic loss within 1e-4 of zero for this many steps triggers; 0 = off"),
        #[serde(default)]
        pub guard_flat_critic: Remedy => field(K::Choice(REMEDIES), "", [], "Remedy for a flat critic loss"),
        /// Codebook use (the fraction of codes a step uses) below this triggers (0: off).
        #[serde(default)]
        pub guard_codebook_use: f64 => field(K::Float { min: 0.0, max: 1.0 }, "", [], "Codebook use below this fraction triggers (families with a codebook); 0 = off"),
        #[serde(default = "skip_window")]
        pub guard_codebook: Remedy => field(K::Choice(REMEDIES), "", [], "Remedy for a codebook falling out of use"),
        /// The family's own health findings (critic or generator dominating, oscillation,
        /// exploding losses, mode collapse) trigger too, not only warn.
        #[serde(default)]
        pub guard_findings: bool => field(K::Bool, "", [], "The health findings (critic dominating, exploding, mode collapse, ...) trigger a rollback too"),
        #[serde(default)]
        pub guard_finding: Remedy => field(K::Choice(REMEDIES), "", [], "Remedy for a health finding"),
        /// What `scale_lr` multiplies every learning rate by.
        #[serde(default = "half")]
        pub guard_lr_scale: f64 => field(K::Float { min: 1e-6, max: 1.0 }, "", [], "scale_lr multiplies every learning rate by this"),
    }
}

/// What the guard does after rolling back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Remedy {
    /// Every learning rate times `guard_lr_scale` (a live edit, logged).
    #[default]
    ScaleLr,
    /// The batches between the checkpoint and the trigger are skipped: the data position
    /// jumps to where the trigger was.
    SkipWindow,
    /// The data order is drawn again (from the run's seed and the count of reseeds), so the
    /// steps after the checkpoint see other batches.
    Reseed,
    /// No rollback: the run stops with one line.
    Stop,
}

/// The remedies as a field's choices, in [`Remedy`]'s serde names.
pub const REMEDIES: &[&str] = &["scale_lr", "skip_window", "reseed", "stop"];

impl Remedy {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::ScaleLr => "scale_lr",
            Self::SkipWindow => "skip_window",
            Self::Reseed => "reseed",
            Self::Stop => "stop",
        }
    }
}

fn three() -> u32 {
    3
}

fn half() -> f64 {
    0.5
}

fn skip_window() -> Remedy {
    Remedy::SkipWindow
}

/// What tripped the guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Detector {
    NonFinite,
    LossSpike,
    FlatCritic,
    CodebookUse,
    /// One of the family's health findings ([`HealthMonitor`]), with `guard_findings` on.
    HealthFinding,
}

impl Detector {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::NonFinite => "non_finite",
            Self::LossSpike => "loss_spike",
            Self::FlatCritic => "flat_critic",
            Self::CodebookUse => "codebook_use",
            Self::HealthFinding => "health_finding",
        }
    }
}

/// A trigger: the detector, what it saw, and the remedy the preset declares for it (rank 0's
/// is sent to every rank under data parallelism, so all roll back at one step).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    pub detector: Detector,
    pub message: String,
    pub remedy: Remedy,
}

/// What one step showed the guard: its scalars by role.
#[derive(Debug, Clone, Copy, Default)]
pub struct StepView<'a> {
    /// A scalar that is NaN or infinite, by name.
    pub non_finite: Option<(&'a str, f64)>,
    /// The family's main loss.
    pub main_loss: Option<(&'a str, f64)>,
    pub critic_loss: Option<f64>,
    pub codebook_use: Option<f64>,
}

/// The guard's detectors over the steps of one run (`HealthConfig`'s `guard_*` fields).
#[derive(Debug, Clone, Default)]
pub struct Guard {
    /// The main loss's running mean of magnitudes (an exponential average) and its count.
    mean: Option<(f64, u64)>,
    /// Steps in a row with the critic loss near zero.
    flat: u64,
    /// A health finding waiting for the next look.
    pending: Option<Trigger>,
}

/// Steps of running mean a spike is judged against (fewer: no spike yet).
const SPIKE_WARMUP: u64 = 20;

impl Guard {
    /// After a rollback the history starts again.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// Takes a health finding; with `guard_findings` on, the next look triggers on it.
    pub fn finding(&mut self, cfg: &HealthConfig, f: &Finding) {
        if cfg.guard_findings && self.pending.is_none() {
            self.pending = Some(Trigger {
                detector: Detector::HealthFinding,
                message: format!("{} (step {})", f.message, f.step),
                remedy: cfg.guard_finding,
            });
        }
    }

    /// Looks at one step (`step` as the engine counts it); a trigger when a detector fires.
    pub fn observe(&mut self, cfg: &HealthConfig, step: u64, v: &StepView<'_>) -> Option<Trigger> {
        if let Some((name, value)) = v.non_finite {
            return Some(Trigger {
                detector: Detector::NonFinite,
                message: format!("{name} became {value} at step {step}"),
                remedy: cfg.guard_non_finite,
            });
        }
        if let Some(t) = self.pending.take() {
            return Some(t);
        }
        if let Some((name, loss)) = v.main_loss {
            let a = loss.abs();
            if let Some((mean, n)) = self.mean {
                if cfg.guard_spike_factor > 0.0
                    && n >= SPIKE_WARMUP
                    && step >= cfg.warmup_steps
                    && a > cfg.guard_spike_factor * mean
                {
                    return Some(Trigger {
                        detector: Detector::LossSpike,
                        message: format!(
                            "{name} {loss:.4e} at step {step} is {:.1}x its running mean {mean:.4e} (limit {}x)",
                            a / mean.max(1e-300),
                            cfg.guard_spike_factor
                        ),
                        remedy: cfg.guard_spike,
                    });
                }
            }
            self.mean = Some(match self.mean {
                None => (a, 1),
                Some((m, n)) => (m + (a - m) / (n + 1).min(50) as f64, n + 1),
            });
        }
        if let Some(d) = v.critic_loss {
            self.flat = if d.abs() < 1e-4 { self.flat + 1 } else { 0 };
            if cfg.guard_flat_critic_steps > 0 && self.flat >= cfg.guard_flat_critic_steps {
                return Some(Trigger {
                    detector: Detector::FlatCritic,
                    message: format!(
                        "the critic loss has been within 1e-4 of zero for {} steps (at step {step})",
                        self.flat
                    ),
                    remedy: cfg.guard_flat_critic,
                });
            }
        }
        if let Some(u) = v.codebook_use {
            if cfg.guard_codebook_use > 0.0
                && step >= cfg.warmup_steps
                && u < cfg.guard_codebook_use
            {
                return Some(Trigger {
                    detector: Detector::CodebookUse,
                    message: format!(
                        "codebook use {:.1}% at step {step} is below {:.1}%",
                        u * 100.0,
                        cfg.guard_codebook_use * 100.0
                    ),
                    remedy: cfg.guard_codebook,
                });
            }
        }
        None
    }
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            warmup_steps: 200,
            window: 50,
            critic_dominating: 50.0,
            generator_dominating: 10.0,
            oscillation_std: 25.0,
            explode_abs: 1.0e4,
            collapse_diversity_ratio: 0.25,
            cooldown_steps: 1000,
            guard: false,
            guard_max_rollbacks: 3,
            guard_non_finite: Remedy::ScaleLr,
            guard_spike_factor: 0.0,
            guard_spike: Remedy::ScaleLr,
            guard_flat_critic_steps: 0,
            guard_flat_critic: Remedy::ScaleLr,
            guard_codebook_use: 0.0,
            guard_codebook: Remedy::SkipWindow,
            guard_findings: false,
            guard_finding: Remedy::ScaleLr,
            guard_lr_scale: 0.5,
        }
    }
}

/// One finding, with what to change.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub step: u64,
    pub signal: HealthSignal,
    pub message: String,
    pub suggestion: String,
}

/// Watches the losses of one run.
#[derive(Debug, Clone)]
pub struct HealthMonitor {
    cfg: HealthConfig,
    d_losses: VecDeque<f64>,
    last_fired: Vec<(HealthSignal, u64)>,
}

impl HealthMonitor {
    #[must_use]
    pub fn new(cfg: HealthConfig) -> Self {
        Self {
            cfg,
            d_losses: VecDeque::new(),
            last_fired: Vec::new(),
        }
    }

    /// Replaces the thresholds (a phase may override them) and keeps the history.
    pub fn set_config(&mut self, cfg: HealthConfig) {
        self.cfg = cfg;
    }

    fn may_fire(&self, signal: HealthSignal, step: u64) -> bool {
        self.cfg.enabled
            && step >= self.cfg.warmup_steps
            && self
                .last_fired
                .iter()
                .find(|(s, _)| *s == signal)
                .is_none_or(|(_, at)| step >= at + self.cfg.cooldown_steps)
    }

    fn fire(
        &mut self,
        step: u64,
        signal: HealthSignal,
        message: String,
        suggestion: &str,
    ) -> Finding {
        self.last_fired.retain(|(s, _)| *s != signal);
        self.last_fired.push((signal, step));
        Finding {
            step,
            signal,
            message,
            suggestion: suggestion.to_string(),
        }
    }

    /// Observes one logged step. Non-finite losses are not judged here: the engine stops the
    /// run on them before they reach the monitor.
    pub fn observe(&mut self, step: u64, d_loss: f64, g_loss: Option<f64>) -> Vec<Finding> {
        let mut found = Vec::new();
        if !d_loss.is_finite() {
            return found;
        }
        self.d_losses.push_back(d_loss);
        while self.d_losses.len() > self.cfg.window.max(2) {
            self.d_losses.pop_front();
        }

        let worst = g_loss
            .filter(|g| g.is_finite())
            .map_or(d_loss.abs(), |g| d_loss.abs().max(g.abs()));
        if worst > self.cfg.explode_abs && self.may_fire(HealthSignal::ExplodingLoss, step) {
            found.push(self.fire(
                step,
                HealthSignal::ExplodingLoss,
                format!("loss magnitude {worst:.3e} exceeds {:.1e}", self.cfg.explode_abs),
                "lower both learning rates 5-10x (train.lr_g, train.lr_d) and raise train.lambda_gp 10 -> 20",
            ));
        }

        if self.d_losses.len() < self.cfg.window.max(2) {
            return found;
        }
        let n = self.d_losses.len() as f64;
        let mean = self.d_losses.iter().sum::<f64>() / n;
        let std = (self
            .d_losses
            .iter()
            .map(|x| (x - mean).powi(2))
            .sum::<f64>()
            / n)
            .sqrt();

        if mean < -self.cfg.critic_dominating && self.may_fire(HealthSignal::CriticDominating, step)
        {
            found.push(self.fire(
                step,
                HealthSignal::CriticDominating,
                format!(
                    "d_loss has stayed strongly negative (mean {mean:.2} over {} logged steps): the generator is failing",
                    self.d_losses.len()
                ),
                "apply TTUR: lower train.lr_g (e.g. 1e-4 -> 1e-5) or lower train.n_critic 5 -> 3",
            ));
        }
        if mean > self.cfg.generator_dominating
            && self.may_fire(HealthSignal::GeneratorDominating, step)
        {
            found.push(self.fire(
                step,
                HealthSignal::GeneratorDominating,
                format!("d_loss is large and positive (mean {mean:.2}): the critic is failing"),
                "raise train.n_critic (5 -> 7) or raise train.lr_d; check the critic has no BatchNorm",
            ));
        }
        if std > self.cfg.oscillation_std && self.may_fire(HealthSignal::WildOscillation, step) {
            found.push(self.fire(
                step,
                HealthSignal::WildOscillation,
                format!(
                    "d_loss oscillates wildly (std {std:.2} over {} logged steps)",
                    self.d_losses.len()
                ),
                "lower the learning rates or raise train.lambda_gp 10 -> 20",
            ));
        }
        found
    }

    /// Observes the diversity of a batch of samples relative to real data (1.0 = as diverse).
    pub fn observe_diversity(&mut self, step: u64, ratio: f64) -> Option<Finding> {
        if ratio.is_finite()
            && ratio < self.cfg.collapse_diversity_ratio
            && self.may_fire(HealthSignal::ModeCollapse, step)
        {
            return Some(self.fire(
                step,
                HealthSignal::ModeCollapse,
                format!(
                    "samples are {:.0}% as diverse as real images (threshold {:.0}%)",
                    ratio * 100.0,
                    self.cfg.collapse_diversity_ratio * 100.0
                ),
                "raise train.n_critic 5 -> 7..10, then model.latent_dim 128 -> 256, then lower train.lr_g",
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> HealthConfig {
        HealthConfig {
            warmup_steps: 0,
            window: 10,
            cooldown_steps: 100,
            ..HealthConfig::default()
        }
    }

    fn signals(m: &mut HealthMonitor, series: &[f64]) -> Vec<HealthSignal> {
        let mut out = Vec::new();
        for (i, &d) in series.iter().enumerate() {
            out.extend(
                m.observe(i as u64, d, Some(-d))
                    .into_iter()
                    .map(|f| f.signal),
            );
        }
        out
    }

    #[test]
    fn healthy_losses_raise_nothing() {
        let mut m = HealthMonitor::new(cfg());
        let series: Vec<f64> = (0..200)
            .map(|i| -2.0 + (f64::from(i) * 0.7).sin())
            .collect();
        assert!(signals(&mut m, &series).is_empty());
    }

    #[test]
    fn each_rule_fires_on_its_pattern_once_per_cooldown() {
        let mut m = HealthMonitor::new(cfg());
        assert_eq!(
            signals(&mut m, &[-80.0; 30]),
            vec![HealthSignal::CriticDominating]
        );
        let mut m = HealthMonitor::new(cfg());
        assert_eq!(
            signals(&mut m, &[20.0; 30]),
            vec![HealthSignal::GeneratorDominating]
        );
        let mut m = HealthMonitor::new(cfg());
        let wild: Vec<f64> = (0..30)
            .map(|i| if i % 2 == 0 { 40.0 } else { -40.0 })
            .collect();
        assert_eq!(signals(&mut m, &wild), vec![HealthSignal::WildOscillation]);
        let mut m = HealthMonitor::new(cfg());
        assert_eq!(
            signals(&mut m, &[1.0, 2.0, 5.0e4]),
            vec![HealthSignal::ExplodingLoss]
        );
    }

    #[test]
    fn warmup_and_diversity() {
        let mut m = HealthMonitor::new(HealthConfig {
            warmup_steps: 100,
            ..cfg()
        });
        assert!(m.observe_diversity(50, 0.01).is_none(), "inside warm-up");
        assert_eq!(
            m.observe_diversity(150, 0.01).map(|f| f.signal),
            Some(HealthSignal::ModeCollapse)
        );
        assert!(m.observe_diversity(160, 0.01).is_none(), "cooldown");
        assert!(m.observe_diversity(300, 0.9).is_none(), "diverse enough");
    }

    fn guarded() -> HealthConfig {
        HealthConfig {
            guard: true,
            warmup_steps: 0,
            guard_spike_factor: 10.0,
            guard_flat_critic_steps: 5,
            guard_codebook_use: 0.2,
            ..HealthConfig::default()
        }
    }

    #[test]
    fn a_health_finding_triggers_the_next_look_only_when_asked_to() {
        let f = Finding {
            step: 70,
            signal: HealthSignal::CriticDominating,
            message: "d_loss has stayed strongly negative".into(),
            suggestion: String::new(),
        };
        let quiet = StepView::default();
        let mut g = Guard::default();
        g.finding(&guarded(), &f);
        assert_eq!(g.observe(&guarded(), 71, &quiet), None, "off by default");
        let on = HealthConfig {
            guard_findings: true,
            guard_finding: Remedy::Reseed,
            ..guarded()
        };
        g.finding(&on, &f);
        let t = g.observe(&on, 71, &quiet).expect("the finding");
        assert_eq!(
            (t.detector, t.remedy),
            (Detector::HealthFinding, Remedy::Reseed)
        );
        assert!(
            t.message.contains("strongly negative (step 70)"),
            "{}",
            t.message
        );
        assert_eq!(g.observe(&on, 72, &quiet), None, "once");
        g.finding(&on, &f);
        g.reset();
        assert_eq!(g.observe(&on, 73, &quiet), None, "a rollback forgets it");
    }

    #[test]
    fn the_guard_triggers_on_each_detector_with_its_remedy() {
        let cfg = guarded();
        let mut g = Guard::default();
        let loss = |v: f64| StepView {
            main_loss: Some(("recon", v)),
            ..StepView::default()
        };
        // A loss wandering between 1 and 2 for 40 steps: nothing.
        for s in 0..40 {
            assert_eq!(g.observe(&cfg, s, &loss(1.0 + (s % 3) as f64 * 0.5)), None);
        }
        // 9x is not a spike at 10x; 30x is.
        assert_eq!(g.observe(&cfg, 40, &loss(13.0)), None);
        let t = g.observe(&cfg, 41, &loss(60.0)).expect("a spike");
        assert_eq!(
            (t.detector, t.remedy),
            (Detector::LossSpike, Remedy::ScaleLr)
        );
        // No spike before the running mean has its warmup.
        g.reset();
        assert_eq!(g.observe(&cfg, 42, &loss(1.0)), None);
        assert_eq!(g.observe(&cfg, 43, &loss(100.0)), None);
        // A non-finite loss wins over everything.
        let t = g
            .observe(
                &cfg,
                44,
                &StepView {
                    non_finite: Some(("d_loss", f64::NAN)),
                    ..StepView::default()
                },
            )
            .expect("non-finite");
        assert_eq!(t.detector, Detector::NonFinite);
        assert_eq!(t.message, "d_loss became NaN at step 44");
        // A critic loss at zero for 5 steps in a row (one non-zero step starts the count again).
        let critic = |v: f64| StepView {
            critic_loss: Some(v),
            ..StepView::default()
        };
        for (s, v) in [0.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.0]
            .into_iter()
            .enumerate()
        {
            assert_eq!(g.observe(&cfg, 50 + s as u64, &critic(v)), None);
        }
        let t = g.observe(&cfg, 58, &critic(1e-5)).expect("flat");
        assert_eq!(t.detector, Detector::FlatCritic);
        // Codebook use under 20 %, with its own remedy.
        let codes = |u: f64| StepView {
            codebook_use: Some(u),
            ..StepView::default()
        };
        assert_eq!(g.observe(&cfg, 60, &codes(0.5)), None);
        let t = g.observe(&cfg, 61, &codes(0.1)).expect("codebook");
        assert_eq!(
            (t.detector, t.remedy),
            (Detector::CodebookUse, Remedy::SkipWindow)
        );
        // Off, the same steps trigger nothing but a non-finite loss.
        let off = HealthConfig {
            guard_spike_factor: 0.0,
            guard_flat_critic_steps: 0,
            guard_codebook_use: 0.0,
            ..cfg
        };
        let mut g = Guard::default();
        for s in 0..40 {
            assert_eq!(g.observe(&off, s, &loss(1.0)), None);
        }
        assert_eq!(g.observe(&off, 40, &loss(1e9)), None);
        assert_eq!(g.observe(&off, 41, &codes(0.0)), None);
    }
}

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
}

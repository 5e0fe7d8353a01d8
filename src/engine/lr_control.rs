//! The session's Q-learning control of a family's learning rates (`lr_control` in the
//! preset): every `every_steps` steps it picks a scale for each learning-rate field, rewarded
//! by how the interval's mean of a metric moved. The trainer owns its rates: the controller
//! only asks it to scale them ([`Trainer::set_lr_scale`]), and live edits change their bases.
//! Saved in every checkpoint, so a resumed run continues its decisions exactly.

use serde::{Deserialize, Serialize};

use crate::core::control::{
    lr_decision_name, push_bounded, trend3, ActionSet, MetricHistory, QConfig, QController,
};
use crate::core::preset::{AnyPreset, LrControlConfig};
use crate::core::protocol::{Event, MetricDef};
use crate::engine::trainer::Trainer;
use crate::engine::EngineError;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LrControl {
    q: QController,
    metric: MetricHistory,
    critic_history: Vec<f64>,
    /// Sums over the current interval: (metric, critic loss).
    sums: [(f64, u64); 2],
    /// The learning-rate fields it scales (live names), and their current scales.
    fields: Vec<String>,
    scales: Vec<f64>,
}

/// A decision: its event and the scalars it logs.
#[derive(Debug)]
pub struct Decided {
    pub event: Event,
    pub scalars: Vec<(String, f64)>,
}

/// The controller's scalars: its epsilon, its reward and each field's scale.
#[must_use]
pub fn metrics(fields: &[&str]) -> Vec<MetricDef> {
    let mut out = vec![
        MetricDef::controller("ctl_epsilon"),
        MetricDef::controller("ctl_reward"),
    ];
    out.extend(fields.iter().map(|f| MetricDef::controller(&scale_name(f))));
    out
}

fn scale_name(field: &str) -> String {
    format!("ctl_{}_scale", field.rsplit('.').next().unwrap_or(field))
}

impl LrControl {
    pub fn new(cfg: &LrControlConfig, fields: Vec<String>, seed: u64) -> Result<Self, EngineError> {
        let sets = fields
            .iter()
            .map(|f| ActionSet {
                name: f.clone(),
                ..ActionSet::lr()
            })
            .collect();
        let qcfg = QConfig {
            probation_steps: cfg.probation_steps,
            ..QConfig::default()
        };
        let q = QController::new("lr", qcfg, sets, seed)
            .map_err(|e| EngineError::BadInput(e.to_string()))?;
        Ok(Self {
            q,
            metric: MetricHistory::default(),
            critic_history: Vec::new(),
            sums: [(0.0, 0); 2],
            scales: vec![1.0; fields.len()],
            fields,
        })
    }

    /// Whether it scales exactly these fields.
    #[must_use]
    pub fn scales_fields(&self, fields: &[String]) -> bool {
        self.fields == fields
    }

    /// Puts its scales into the trainer (after a resume, or with `reset` at a phase start,
    /// where the phase's rates are the new bases).
    pub fn apply(&mut self, trainer: &mut dyn Trainer, reset: bool) -> Result<(), EngineError> {
        if reset {
            self.scales.fill(1.0);
        }
        for (field, scale) in self.fields.iter().zip(&self.scales) {
            trainer.set_lr_scale(field, *scale)?;
        }
        Ok(())
    }

    /// Takes one step's scalars; at the end of an interval it decides new scales, hands them
    /// to the trainer, and returns the decision's event and scalars. `critic` names the
    /// critic's loss, the second thing it observes.
    pub fn step(
        &mut self,
        cfg: &LrControlConfig,
        step: u64,
        scalars: &[(&'static str, f64)],
        critic: Option<&str>,
        trainer: &mut dyn Trainer,
        preset: &AnyPreset,
    ) -> Result<Option<Decided>, EngineError> {
        for (i, key) in [Some(cfg.metric.as_str()), critic].into_iter().enumerate() {
            if let Some((_, v)) = key.and_then(|key| scalars.iter().find(|(k, _)| *k == key)) {
                self.sums[i].0 += v;
                self.sums[i].1 += 1;
            }
        }
        if !(step + 1).is_multiple_of(cfg.every_steps.max(1)) || self.sums[0].1 == 0 {
            return Ok(None);
        }
        let mean = |(s, n): (f64, u64)| if n > 0 { s / n as f64 } else { f64::NAN };
        let (value, d) = (mean(self.sums[0]), mean(self.sums[1]));
        self.sums = [(0.0, 0); 2];
        let len = self.q.cfg.history_len;
        // What the controller observes, coarsely, so states repeat and the table learns: no
        // bins of its own last scales or of epsilon (spec 11.20).
        let state = vec![
            trend3(&self.metric.values, value),
            trend3(&self.critic_history, d),
        ];
        let first = self.metric.values.is_empty();
        let reward = self.metric.reward(value, cfg.better, len);
        push_bounded(&mut self.critic_history, d, len);
        let decision = self.q.decide(Some(state), (!first).then_some(reward));
        for (i, (_, _, scale)) in decision.actions.iter().enumerate() {
            self.scales[i] = *scale;
        }
        self.apply(trainer, false)?;
        // The rates' bases: the live fields' values (a hand edit sets a base).
        let live = preset.live_values();
        let applied_values: Vec<(String, f64)> = self
            .fields
            .iter()
            .zip(&self.scales)
            .map(|(f, s)| {
                let base = live
                    .iter()
                    .find(|(k, _)| k == f)
                    .map_or(f64::NAN, |(_, v)| *v);
                (f.clone(), (base * s).clamp(1e-8, 1.0))
            })
            .collect();
        let mut scalars = vec![("ctl_epsilon".to_string(), decision.epsilon)];
        if let Some(r) = decision.reward {
            scalars.push(("ctl_reward".to_string(), r));
        }
        let applied: Vec<(String, f64)> = self
            .fields
            .iter()
            .cloned()
            .zip(self.scales.iter().copied())
            .collect();
        for (field, scale) in &applied {
            scalars.push((scale_name(field), *scale));
        }
        let mut event =
            decision.into_event(step + 1, &lr_decision_name(&cfg.metric), applied_values);
        if let Event::Controller { actions, .. } = &mut event {
            // The steered fields by name, rather than the action sets'.
            *actions = applied;
        }
        Ok(Some(Decided { event, scalars }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_controller_knows_its_decisions_by_name() {
        assert!(crate::core::control::is_lr_decision_name(
            &lr_decision_name("wasserstein")
        ));
        assert!(!crate::core::control::is_lr_decision_name("generator"));
    }
}

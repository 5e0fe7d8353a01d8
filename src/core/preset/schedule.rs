//! What a preset schedules over the whole run, phase by phase: the data behind the phase
//! editor's preview plot, computed without starting anything.

use serde_json::Value;

use super::schema::{get_path, FieldKind};
use super::{AnyPreset, PhaseLength};

/// One phase's place on the step axis. `end` is `None` for a timed phase (its length in steps
/// is known only while running; the preview gives it `nominal_steps`).
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseSpan {
    pub name: String,
    pub start: u64,
    pub end: u64,
    /// False when the span is a stand-in (timed phase, or epochs of unknown size).
    pub exact: bool,
}

/// A scheduled quantity: its value in each phase.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantity {
    pub path: &'static str,
    pub unit: &'static str,
    /// One value per phase, in phase order.
    pub values: Vec<f64>,
}

/// The preview of a run's schedule.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Schedule {
    pub phases: Vec<PhaseSpan>,
    pub quantities: Vec<Quantity>,
}

impl Schedule {
    /// The total span of the preview in steps.
    #[must_use]
    pub fn total_steps(&self) -> u64 {
        self.phases.last().map_or(0, |p| p.end)
    }
}

/// Steps a stand-in phase gets on the preview when its length in steps is unknown.
pub const NOMINAL_PHASE_STEPS: u64 = 1000;

/// Steps in one epoch as the preset's data implies, when that is known before training.
#[must_use]
pub fn steps_per_epoch_hint(preset: &AnyPreset) -> Option<u64> {
    preset.front().steps_per_epoch_hint()
}

/// Lays the phases on the step axis and lists every numeric field that a phase may override
/// and that is either live or changes between phases, with its value in each phase.
#[must_use]
pub fn schedule(preset: &AnyPreset) -> Schedule {
    let spe = steps_per_epoch_hint(preset);
    let mut phases = Vec::new();
    let mut at = 0u64;
    for p in preset.phases() {
        let (len, exact) = match (p.length, spe) {
            (PhaseLength::Steps(n), _) => (n, true),
            (PhaseLength::Epochs(n), Some(spe)) => (n * spe, true),
            (PhaseLength::Epochs(_) | PhaseLength::Minutes(_), _) => (NOMINAL_PHASE_STEPS, false),
        };
        phases.push(PhaseSpan {
            name: p.name.clone(),
            start: at,
            end: at + len,
            exact,
        });
        at += len;
    }
    // Each phase's settings as the engine will apply them.
    let per_phase: Vec<Value> = (0..preset.phases().len())
        .map(|i| preset.for_phase(i).to_tree())
        .collect();
    let mut quantities = Vec::new();
    for spec in preset.family().specs() {
        if !spec.phase || !matches!(spec.kind, FieldKind::Int { .. } | FieldKind::Float { .. }) {
            continue;
        }
        let values: Vec<f64> = per_phase
            .iter()
            .map(|t| {
                get_path(t, spec.path)
                    .and_then(Value::as_f64)
                    .unwrap_or(f64::NAN)
            })
            .collect();
        let changes = values.windows(2).any(|w| w[0] != w[1]);
        if spec.live || changes {
            quantities.push(Quantity {
                path: spec.path,
                unit: spec.unit,
                values,
            });
        }
    }
    Schedule { phases, quantities }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::preset::{parse_str, OverrideValue, Phase};

    #[test]
    fn phases_lay_out_in_steps_and_overrides_become_steps_of_the_curve() {
        let text = include_str!("../../../presets/smoke.ron");
        let (p, _) = parse_str(text, "smoke.ron").unwrap();
        let phases = vec![
            Phase {
                name: "warm".into(),
                length: PhaseLength::Steps(100),
                overrides: [("train.lr_g".to_string(), OverrideValue::Float(1e-3))].into(),
                start_from_best: false,
            },
            Phase {
                name: "main".into(),
                length: PhaseLength::Epochs(2),
                overrides: [("data.hflip_prob".to_string(), OverrideValue::Float(0.123))].into(),
                start_from_best: true,
            },
            Phase {
                name: "polish".into(),
                length: PhaseLength::Minutes(5.0),
                overrides: Default::default(),
                start_from_best: false,
            },
        ];
        let mut tree = p.to_tree();
        tree["phases"] = serde_json::to_value(&phases).unwrap();
        let base_lr = tree["train"]["lr_g"].as_f64().unwrap();
        let p = AnyPreset::from_tree(p.family(), tree).unwrap();
        let spe = steps_per_epoch_hint(&p).unwrap();
        let s = schedule(&p);
        assert_eq!(s.phases[0].end, 100);
        assert_eq!(s.phases[1].end, 100 + 2 * spe);
        assert!(s.phases[1].exact && !s.phases[2].exact);
        let lr = s
            .quantities
            .iter()
            .find(|q| q.path == "train.lr_g")
            .unwrap();
        assert_eq!(lr.values[0], 1e-3);
        assert_eq!(lr.values[1], base_lr);
        // Not live, but it changes between phases: listed.
        assert!(s.quantities.iter().any(|q| q.path == "data.hflip_prob"));
        // Neither live nor changing: left out.
        assert!(!s.quantities.iter().any(|q| q.path == "data.rotation_deg"));
    }
}

//! Control, as plain numbers in and decisions out: the tabular Q-learner (`q_learning`), the
//! seed's three controllers' states and rewards (`seed`), and the seed's heuristic
//! interventions and critic switching (`heuristics`). No tensors: every policy is tested on
//! scripted histories.

pub mod heuristics;
pub mod q_learning;
pub mod seed;

pub use q_learning::*;

/// The name the session's learning-rate controller gives its decisions, rewarded by `metric`.
#[must_use]
pub fn lr_decision_name(metric: &str) -> String {
    format!("lr (rewarded by {metric})")
}

/// Whether a controller's name is the learning-rate controller's (its decisions' name).
#[must_use]
pub fn is_lr_decision_name(name: &str) -> bool {
    name.starts_with("lr (rewarded by ")
}

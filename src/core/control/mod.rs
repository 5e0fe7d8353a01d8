//! Control, as plain numbers in and decisions out: the tabular Q-learner (`q_learning`), the
//! seed's three controllers' states and rewards (`seed`), and the seed's heuristic
//! interventions and critic switching (`heuristics`). No tensors: every policy is tested on
//! scripted histories.

pub mod heuristics;
pub mod q_learning;
pub mod seed;

pub use q_learning::*;

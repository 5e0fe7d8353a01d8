//! A run as the GUI sees it: every event folded into plottable series, labelled markers, the
//! sample list and the run's status. Fed the same way from a live worker's channel and from
//! an `events.log` being followed, so a run started elsewhere looks exactly like one started
//! here.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::core::protocol::{Event, Level, Outcome};
use crate::core::series::Series;

/// What kind of moment a marker is; decides its colour and whether it is drawn on plots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerKind {
    Phase,
    Checkpoint,
    Health,
    Hyperparameter,
    Pause,
    Log,
    End,
    /// A heuristic intervention turned on or off.
    Intervention,
    /// The active discriminator changed.
    Switch,
    /// The sweep's scheduler stopped the run (a trial stopped early).
    Sweep,
}

/// A labelled moment of the run: drawn on every plot and listed in the event list.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    pub step: u64,
    pub kind: MarkerKind,
    /// Short, for the plot.
    pub label: String,
    /// Full, for the event list.
    pub detail: String,
    /// A live edit's field, old and new value (what an undo or an A/B branches with).
    pub edit: Option<LiveEdit>,
}

/// A live edit, as a marker keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveEdit {
    pub field: String,
    pub old: f64,
    pub new: f64,
}

/// A logged sample grid. `rgba` is present when it came live over the channel; otherwise
/// the PNG at `path` (relative to the run directory) is loaded when first shown.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleRef {
    pub step: u64,
    pub path: String,
    pub width: u32,
    pub height: u32,
    pub rgba: Vec<u8>,
    /// The trainer's word on what the picture shows (a sample's; none for reconstructions).
    pub note: Option<String>,
}

/// One controller decision, as the controller view shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ControllerDecision {
    pub step: u64,
    pub name: String,
    pub state: Vec<u8>,
    pub actions: Vec<(String, f64)>,
    pub reward: Option<f64>,
    pub epsilon: f64,
    pub q_values: Vec<Vec<f64>>,
    pub explored: Vec<bool>,
    /// The settings it resulted in (learning rate, momentum, lambda_KL).
    pub applied: Vec<(String, f64)>,
    /// The row the reward updated.
    pub updated: Option<crate::core::control::Update>,
    /// Visits of this decision's state, and the table's size.
    pub visits: u64,
    pub table_size: u64,
}

/// A logged ground truth / reconstruction pair; pixels as for [`SampleRef`].
#[derive(Debug, Clone, PartialEq)]
pub struct ReconRef {
    pub step: u64,
    pub split: String,
    pub truth: SampleRef,
    pub recon: SampleRef,
    pub frames: u32,
    pub boxes: Vec<[f32; 4]>,
    pub motion_boxes: Vec<[f32; 4]>,
}

/// Where the run stands.
#[derive(Debug, Clone, PartialEq)]
pub enum RunState {
    /// No event yet.
    Waiting,
    Running,
    Paused,
    Finished(Outcome),
    Failed(String),
}

impl RunState {
    #[must_use]
    pub fn is_over(&self) -> bool {
        matches!(self, Self::Finished(_) | Self::Failed(_))
    }

    #[must_use]
    pub fn label(&self) -> String {
        match self {
            Self::Waiting => "starting".into(),
            Self::Running => "running".into(),
            Self::Paused => "paused".into(),
            Self::Finished(Outcome::Completed) => "finished".into(),
            Self::Finished(Outcome::Stopped) => "stopped".into(),
            Self::Failed(_) => "failed".into(),
        }
    }
}

/// Codebook use at one validation (see [`Event::Codes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeUse {
    pub step: u64,
    pub counts: Vec<u64>,
    pub actions: Vec<(Vec<u32>, u64)>,
}

/// The latest volume pair of a run (see [`Event::Volume`]): the voxels when it came over the
/// channel, else empty and read from its files when shown.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeRef {
    pub step: u64,
    pub split: String,
    pub truth: String,
    pub recon: String,
    pub channels: u32,
    /// `[D, H, W]`.
    pub dims: [u32; 3],
    pub truth_data: Vec<f32>,
    pub recon_data: Vec<f32>,
}

/// One run's history, built from its events.
#[derive(Debug)]
pub struct RunView {
    pub name: String,
    pub family: String,
    pub device: String,
    pub run_dir: String,
    /// Where the run branched from, when it is a branch.
    pub branch_of: Option<crate::core::protocol::BranchOf>,
    pub total_steps: Option<u64>,
    pub state: RunState,
    pub step: u64,
    pub phase: Option<(usize, String)>,
    /// Every scalar by name, in the order first seen.
    pub series: BTreeMap<String, Series>,
    pub markers: Vec<Marker>,
    /// The value each live edit left a field at (`HyperparameterChanged`), and how many
    /// edits were read: a followed run's live fields show what the run trains with.
    pub hyper: BTreeMap<String, f64>,
    pub hyper_edits: u64,
    pub samples: Vec<SampleRef>,
    /// Q-controller decisions, in step order.
    pub decisions: Vec<ControllerDecision>,
    /// The controllers' names, in order of their first decision.
    pub controllers: Vec<String>,
    pub reconstructions: Vec<ReconRef>,
    /// Codebook use at each validation, for families with discrete actions.
    pub codes: Vec<CodeUse>,
    /// The latest whole volume and its reconstruction (volume families); only the latest is
    /// kept, as the run directory keeps only the last few.
    pub volume: Option<VolumeRef>,
    /// The active discriminator, for families that switch.
    pub active_critic: Option<String>,
    /// What each scalar is, as the run declared it (empty for logs written before).
    pub metrics: Vec<crate::core::protocol::MetricDef>,
    rate: RateMeter,
    /// The run's first `RunStarted`, as logged (for the pyramids file a reader writes).
    pub started: Option<Event>,
    /// The trainer's modules (`network.path`) and their parameter counts, for watching.
    pub modules: Vec<(String, u64)>,
    /// Each watched module's latest statistics (its norms are also series `layer/<module>/..`).
    pub layers: BTreeMap<String, crate::core::protocol::LayerStats>,
    /// While a persisted pyramid is shown (`series` holds it): the series folded from the
    /// log so far, which replace it once the log is read ([`RunView::end_preview`]).
    shadow: Option<BTreeMap<String, Series>>,
}

impl Default for RunView {
    fn default() -> Self {
        Self {
            name: String::new(),
            family: String::new(),
            device: String::new(),
            branch_of: None,
            run_dir: String::new(),
            total_steps: None,
            state: RunState::Waiting,
            step: 0,
            phase: None,
            series: BTreeMap::new(),
            markers: Vec::new(),
            hyper: BTreeMap::new(),
            hyper_edits: 0,
            samples: Vec::new(),
            decisions: Vec::new(),
            controllers: Vec::new(),
            reconstructions: Vec::new(),
            codes: Vec::new(),
            volume: None,
            active_critic: None,
            metrics: Vec::new(),
            rate: RateMeter::default(),
            started: None,
            shadow: None,
            modules: Vec::new(),
            layers: BTreeMap::new(),
        }
    }
}

impl RunView {
    /// Every step with a logged scalar, sorted (controller timelines left out).
    #[must_use]
    pub fn logged_steps(&self) -> Vec<u64> {
        let mut steps: Vec<u64> = self
            .series
            .iter()
            .filter(|(name, _)| !name.starts_with("ctl/"))
            .flat_map(|(_, s)| s.points().map(|(x, _)| x as u64))
            .collect();
        steps.sort_unstable();
        steps.dedup();
        steps
    }

    /// Shows a run's persisted pyramids (`core::lod`) until its log is read: the plots draw
    /// at once, from the run's declarations and coarse series; what the log brings meanwhile
    /// is folded aside and takes their place at [`RunView::end_preview`]. Only for a view
    /// nothing was folded into yet.
    pub fn begin_preview(&mut self, p: &crate::core::lod::Pyramids) {
        if self.shadow.is_some() || !self.series.is_empty() || self.started.is_some() {
            return;
        }
        if let Some(Event::RunStarted {
            name,
            family,
            device,
            total_steps,
            metrics,
            ..
        }) = &p.started
        {
            self.name.clone_from(name);
            self.family.clone_from(family);
            self.device.clone_from(device);
            self.total_steps = *total_steps;
            self.metrics.clone_from(metrics);
        }
        self.shadow = Some(std::mem::replace(&mut self.series, p.to_series()));
        self.step = self.step.max(p.last_step);
    }

    /// Whether a persisted pyramid is shown in place of the series being folded.
    #[must_use]
    pub fn in_preview(&self) -> bool {
        self.shadow.is_some()
    }

    /// The log is read: its series replace the persisted pyramid.
    pub fn end_preview(&mut self) {
        if let Some(s) = self.shadow.take() {
            self.series = s;
        }
    }

    /// Where folded scalars go: the series, or aside while a pyramid is shown.
    fn series_mut(&mut self) -> &mut BTreeMap<String, Series> {
        match &mut self.shadow {
            Some(s) => s,
            None => &mut self.series,
        }
    }

    /// Folds one event in. `now` times the step rate (pass `None` when replaying a log).
    pub fn apply(&mut self, event: Event, now: Option<Instant>) {
        if self.started.is_none() && matches!(event, Event::RunStarted { .. }) {
            self.started = Some(event.clone());
        }
        match event {
            Event::RunStarted {
                run_dir,
                name,
                family,
                device,
                total_steps,
                resumed_from,
                restarted,
                branch_of,
                metrics,
                ..
            } => {
                if !metrics.is_empty() {
                    self.metrics = metrics;
                }
                self.name = name;
                self.family = family;
                self.device = device;
                // Where the run was opened wins: a log written on another machine names
                // that machine's path.
                if self.run_dir.is_empty() {
                    self.run_dir = run_dir;
                }
                self.total_steps = total_steps;
                self.state = RunState::Running;
                if branch_of.is_some() {
                    self.branch_of.clone_from(&branch_of);
                }
                if let Some(step) = resumed_from {
                    // The run rewinds to its checkpoint: drop what was logged beyond it.
                    self.rewind(step);
                    let (label, text) = if let Some(b) = &branch_of {
                        ("branched", b.describe())
                    } else if restarted {
                        ("restarted", "trained again from step 0".to_string())
                    } else {
                        (
                            "resumed",
                            format!("resumed from the checkpoint of step {step}"),
                        )
                    };
                    self.marker(step, MarkerKind::Phase, label, text);
                }
            }
            Event::Modules { modules } => self.modules = modules,
            Event::LayerStats { module, stats } => {
                let x = stats.step as f64;
                let ratio = stats.update_ratio();
                let series = self.series_mut();
                let mut put = |what: &str, v: Option<f64>| {
                    if let Some(v) = v {
                        series
                            .entry(format!("layer/{module}/{what}"))
                            .or_default()
                            .push(x, v);
                    }
                };
                put("weight_norm", Some(stats.weight_norm));
                put("grad_norm", stats.grad_norm);
                put("update_ratio", ratio);
                put("non_finite_grads", Some(stats.non_finite_grads as f64));
                self.layers.insert(module, stats);
            }
            Event::Scalars { rows } => {
                for row in rows {
                    let series = self.series_mut();
                    for (name, value) in row.values {
                        series.entry(name).or_default().push(row.step as f64, value);
                    }
                    self.step = self.step.max(row.step);
                    if let Some(now) = now {
                        self.rate.observe(row.step, now);
                    }
                }
            }
            Event::PhaseStarted {
                step,
                index,
                name,
                length,
                loaded_checkpoint,
            } => {
                let detail = match &loaded_checkpoint {
                    Some(c) => format!("phase {index} `{name}` ({length}), from {c}"),
                    None => format!("phase {index} `{name}` ({length})"),
                };
                self.marker(step, MarkerKind::Phase, &format!("phase {name}"), detail);
                self.phase = Some((index, name));
                // A phase starts from the preset with its overrides: earlier edits are undone.
                self.hyper.clear();
                self.hyper_edits += 1;
            }
            Event::CheckpointSaved {
                step,
                path,
                best,
                metric,
            } => {
                let label = if best { "best ckpt" } else { "ckpt" };
                let detail = match metric {
                    Some(m) => format!(
                        "checkpoint {path} (metric {}{})",
                        super::numfmt::num(m),
                        if best { ", best" } else { "" }
                    ),
                    None => format!("checkpoint {path}"),
                };
                self.marker(step, MarkerKind::Checkpoint, label, detail);
            }
            Event::Sample {
                step,
                path,
                width,
                height,
                rgba,
                note,
            } => {
                self.samples.push(SampleRef {
                    step,
                    path,
                    width,
                    height,
                    rgba,
                    note,
                });
            }
            Event::Health {
                step,
                signal,
                message,
                suggestion,
            } => {
                self.marker(
                    step,
                    MarkerKind::Health,
                    signal.label(),
                    format!("{message}. {suggestion}"),
                );
            }
            Event::Paused { step } => {
                self.state = RunState::Paused;
                self.marker(step, MarkerKind::Pause, "paused", "paused".into());
            }
            Event::Resumed { step } => {
                self.state = RunState::Running;
                self.rate = RateMeter::default();
                self.marker(step, MarkerKind::Pause, "resumed", "resumed".into());
            }
            Event::Rollback {
                step,
                to_step,
                detector,
                message,
                remedy,
                count,
                ..
            } => {
                // The rows after the checkpoint are replaced, as a resume's are.
                self.rewind(to_step);
                self.marker(
                    to_step,
                    MarkerKind::Health,
                    &format!("rollback {count}"),
                    format!("guard: {message} ({detector}); rolled back from step {step} to the checkpoint of step {to_step}, remedy {remedy}"),
                );
            }
            Event::TrialStopped {
                step,
                rung,
                metric,
                value,
                cut,
            } => {
                let said = crate::core::pruner::describe_stop(rung, &metric, value, cut);
                self.marker(
                    step,
                    MarkerKind::Sweep,
                    &format!("stopped at rung {rung}"),
                    format!("the sweep's scheduler {said}"),
                );
            }
            Event::HyperparameterChanged {
                step,
                name,
                old,
                new,
            } => {
                self.hyper.insert(name.clone(), new);
                self.hyper_edits += 1;
                self.marker(
                    step,
                    MarkerKind::Hyperparameter,
                    &format!("{name}={}", super::numfmt::num(new)),
                    format!("{name}: {old} -> {new}"),
                );
                if let Some(m) = self.markers.last_mut() {
                    m.edit = Some(LiveEdit {
                        field: name,
                        old,
                        new,
                    });
                }
            }
            // Decisions also reach the plots as `ctl_*` scalars.
            Event::Controller {
                step,
                name,
                state,
                actions,
                reward,
                epsilon,
                q_values,
                explored,
                applied,
                updated,
                visits,
                table_size,
            } => {
                // Each controller's timeline as scalars `ctl/<name>/<what>`: epsilon, reward
                // and the settings it applied, with the dashboard's LOD and cursor.
                let x = step as f64;
                let series = self.series_mut();
                let mut put = |what: &str, v: f64| {
                    series
                        .entry(format!("ctl/{name}/{what}"))
                        .or_default()
                        .push(x, v);
                };
                put("epsilon", epsilon);
                if table_size > 0 {
                    put("states", table_size as f64);
                }
                if let Some(r) = reward {
                    put("reward", r);
                }
                for (field, v) in &applied {
                    put(field, *v);
                }
                if !self.controllers.contains(&name) {
                    self.controllers.push(name.clone());
                }
                self.decisions.push(ControllerDecision {
                    step,
                    name,
                    state,
                    actions,
                    reward,
                    epsilon,
                    q_values,
                    explored,
                    applied,
                    updated,
                    visits,
                    table_size,
                });
            }
            Event::Intervention {
                step,
                name,
                on,
                values,
            } => {
                let state = if on { "on" } else { "off" };
                self.marker(
                    step,
                    MarkerKind::Intervention,
                    &format!("{name} {state}"),
                    format!("{name} {state}: {}", show_values(&values)),
                );
            }
            Event::DiscriminatorSwitch {
                step,
                from,
                to,
                reason,
                values,
            } => {
                self.marker(
                    step,
                    MarkerKind::Switch,
                    &format!("critic -> {}", to.split(' ').next().unwrap_or(&to)),
                    format!("critic {from} -> {to}: {reason}; {}", show_values(&values)),
                );
                self.active_critic = Some(to);
            }
            Event::Reconstruction {
                step,
                split,
                truth,
                recon,
                width,
                height,
                frames,
                boxes,
                motion_boxes,
                truth_rgba,
                recon_rgba,
            } => {
                let image = |path: String, rgba: Vec<u8>| SampleRef {
                    step,
                    path,
                    width,
                    height,
                    rgba,
                    note: None,
                };
                self.reconstructions.push(ReconRef {
                    step,
                    split,
                    truth: image(truth, truth_rgba),
                    recon: image(recon, recon_rgba),
                    frames,
                    boxes,
                    motion_boxes,
                });
            }
            Event::Volume {
                step,
                split,
                truth,
                recon,
                channels,
                dims,
                truth_data,
                recon_data,
            } => {
                self.volume = Some(VolumeRef {
                    step,
                    split,
                    truth,
                    recon,
                    channels,
                    dims,
                    truth_data,
                    recon_data,
                });
            }
            Event::Codes {
                step,
                counts,
                actions,
            } => self.codes.push(CodeUse {
                step,
                counts,
                actions,
            }),
            Event::Log {
                step,
                level,
                message,
            } => {
                if level != Level::Info {
                    self.marker(step, MarkerKind::Log, "warning", message);
                }
            }
            Event::RunFinished { step, outcome, .. } => {
                self.state = RunState::Finished(outcome);
                self.step = self.step.max(step);
                let label = match outcome {
                    Outcome::Completed => "finished",
                    Outcome::Stopped => "stopped",
                };
                self.marker(
                    step,
                    MarkerKind::End,
                    label,
                    format!("run {label} at step {step}"),
                );
            }
            Event::RunFailed { step, message } => {
                self.state = RunState::Failed(message.clone());
                self.marker(step.max(self.step), MarkerKind::End, "failed", message);
            }
        }
    }

    fn marker(&mut self, step: u64, kind: MarkerKind, label: &str, detail: String) {
        self.markers.push(Marker {
            step,
            kind,
            label: label.to_string(),
            detail,
            edit: None,
        });
    }

    fn rewind(&mut self, step: u64) {
        for s in self.series_mut().values_mut() {
            s.truncate_from(step as f64 + 0.5);
        }
        self.markers.retain(|m| m.step <= step);
        // The live values in force at that step: the edits made since its phase started.
        let since = self
            .markers
            .iter()
            .rposition(|m| m.kind == MarkerKind::Phase)
            .map_or(0, |i| i + 1);
        self.hyper = self.markers[since..]
            .iter()
            .filter_map(|m| m.edit.as_ref().map(|e| (e.field.clone(), e.new)))
            .collect();
        self.hyper_edits += 1;
        self.samples.retain(|s| s.step <= step);
        self.decisions.retain(|d| d.step <= step);
        self.reconstructions.retain(|r| r.step <= step);
        self.codes.retain(|c| c.step <= step);
        self.step = step;
    }

    /// Steps per second over the last few seconds of a live run.
    #[must_use]
    pub fn steps_per_second(&self) -> Option<f64> {
        self.rate.rate()
    }

    /// Seconds to the end, when the run's length is known and it is moving.
    #[must_use]
    pub fn eta_seconds(&self) -> Option<f64> {
        let total = self.total_steps?;
        let rate = self.steps_per_second()?;
        (rate > 0.0).then(|| total.saturating_sub(self.step) as f64 / rate)
    }

    /// The decision of controller `name` in force at `step` (its last one at or before it,
    /// else its first).
    #[must_use]
    pub fn decision_at(&self, name: &str, step: u64) -> Option<&ControllerDecision> {
        let i = self.decisions.partition_point(|d| d.step <= step);
        self.decisions[..i]
            .iter()
            .rev()
            .find(|d| d.name == name)
            .or_else(|| self.decisions.iter().find(|d| d.name == name))
    }

    /// The reconstruction of `split` logged nearest to `step` (at or before it, else the
    /// first after).
    #[must_use]
    pub fn reconstruction_near(&self, split: &str, step: u64) -> Option<&ReconRef> {
        let of_split = || self.reconstructions.iter().filter(|r| r.split == split);
        of_split()
            .take_while(|r| r.step <= step)
            .last()
            .or_else(|| of_split().next())
    }

    /// The sample logged nearest to `step` (the one at or before it, else the first after).
    #[must_use]
    pub fn sample_near(&self, step: u64) -> Option<usize> {
        if self.samples.is_empty() {
            return None;
        }
        let i = self.samples.partition_point(|s| s.step <= step);
        Some(i.saturating_sub(1))
    }
}

fn show_values(values: &[(String, f64)]) -> String {
    values
        .iter()
        .map(|(k, v)| format!("{k}={}", super::numfmt::num(*v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Step rate over a sliding window of (step, time) observations.
#[derive(Debug, Default, Clone)]
struct RateMeter {
    window: std::collections::VecDeque<(u64, Instant)>,
}

impl RateMeter {
    const SPAN_SECS: f64 = 5.0;

    fn observe(&mut self, step: u64, now: Instant) {
        self.window.push_back((step, now));
        while self.window.len() > 2
            && now.duration_since(self.window[0].1).as_secs_f64() > Self::SPAN_SECS
        {
            self.window.pop_front();
        }
    }

    fn rate(&self) -> Option<f64> {
        let (s0, t0) = *self.window.front()?;
        let (s1, t1) = *self.window.back()?;
        let dt = t1.duration_since(t0).as_secs_f64();
        (dt > 0.05 && s1 > s0).then(|| (s1 - s0) as f64 / dt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::protocol::ScalarRow;
    use std::time::Duration;

    fn started(resumed_from: Option<u64>) -> Event {
        Event::RunStarted {
            run_dir: "runs/x".into(),
            name: "x".into(),
            family: "wgan_gp".into(),
            device: "cpu".into(),
            total_steps: Some(100),
            resumed_from,
            restarted: resumed_from == Some(0),
            branch_of: None,
            wall_time: 0.0,
            metrics: Vec::new(),
        }
    }

    fn scalars(from: u64, to: u64) -> Event {
        Event::Scalars {
            rows: (from..to)
                .map(|s| ScalarRow {
                    step: s,
                    wall_time: 0.0,
                    values: vec![("d_loss".into(), s as f64)],
                })
                .collect(),
        }
    }

    /// The live values in force: each edit's new value, undone when a phase starts (it
    /// starts from the preset with its overrides) and by a rollback to before the edit.
    #[test]
    fn live_edits_are_in_force_until_a_phase_starts_or_a_rollback_undoes_them() {
        let edit = |step: u64, new: f64| Event::HyperparameterChanged {
            step,
            name: "train.lr_g".into(),
            old: 2e-4,
            new,
        };
        let mut v = RunView::default();
        v.apply(started(None), None);
        v.apply(scalars(0, 5), None);
        v.apply(edit(4, 5e-4), None);
        assert_eq!(v.hyper.get("train.lr_g"), Some(&5e-4));
        let seen = v.hyper_edits;
        v.apply(scalars(5, 12), None);
        v.apply(edit(11, 7e-4), None);
        assert_eq!(v.hyper.get("train.lr_g"), Some(&7e-4));
        assert!(v.hyper_edits > seen);
        v.apply(
            Event::Rollback {
                step: 12,
                to_step: 10,
                detector: "non_finite".into(),
                message: String::new(),
                remedy: "stop".into(),
                count: 1,
                abandoned: None,
            },
            None,
        );
        assert_eq!(
            v.hyper.get("train.lr_g"),
            Some(&5e-4),
            "the edit at 11 is undone"
        );
        v.apply(
            Event::PhaseStarted {
                step: 11,
                index: 1,
                name: "b".into(),
                length: "steps(20)".into(),
                loaded_checkpoint: None,
            },
            None,
        );
        assert!(v.hyper.is_empty());
    }

    /// A guard's rollback replaces the rows after its checkpoint and is a marker there.
    #[test]
    fn a_rollback_rewinds_to_its_checkpoint_with_a_marker() {
        let mut v = RunView::default();
        v.apply(started(None), None);
        v.apply(scalars(0, 14), None);
        v.apply(
            Event::Rollback {
                step: 13,
                to_step: 10,
                detector: "non_finite".into(),
                message: "d_loss became NaN at step 13".into(),
                remedy: "scale_lr".into(),
                count: 1,
                abandoned: None,
            },
            None,
        );
        assert_eq!(v.series["d_loss"].len(), 11, "steps 0..=10 stay");
        let m = v.markers.last().expect("a marker");
        assert_eq!(
            (m.step, m.kind, m.label.as_str()),
            (10, MarkerKind::Health, "rollback 1")
        );
        v.apply(scalars(11, 14), None);
        assert_eq!(v.series["d_loss"].len(), 14);
    }

    #[test]
    fn folds_a_run_and_rewinds_on_resume() {
        let mut v = RunView::default();
        v.apply(started(None), None);
        v.apply(scalars(0, 50), None);
        v.apply(
            Event::CheckpointSaved {
                step: 20,
                path: "checkpoints/step-20".into(),
                best: true,
                metric: Some(0.3),
            },
            None,
        );
        v.apply(
            Event::Sample {
                step: 40,
                path: "media/40.png".into(),
                width: 1,
                height: 1,
                rgba: vec![0; 4],
                note: None,
            },
            None,
        );
        assert_eq!(v.series["d_loss"].len(), 50);
        assert_eq!(v.step, 49);
        // Killed, then resumed from step 20: the tail beyond it is dropped.
        v.apply(started(Some(20)), None);
        assert_eq!(v.series["d_loss"].len(), 21);
        assert!(v.samples.is_empty());
        assert_eq!(
            v.markers
                .iter()
                .filter(|m| m.kind == MarkerKind::Checkpoint)
                .count(),
            1
        );
        v.apply(
            Event::RunFailed {
                step: 30,
                message: "boom".into(),
            },
            None,
        );
        assert_eq!(v.state, RunState::Failed("boom".into()));
        assert!(v.state.is_over());
        // Failed before any checkpoint, then trained again from the start.
        v.apply(started(Some(0)), None);
        let last = v.markers.last().unwrap();
        assert_eq!((last.label.as_str(), last.step), ("restarted", 0));
        assert_eq!(v.series["d_loss"].len(), 1, "only step 0 stays");
    }

    #[test]
    fn rate_eta_and_nearest_sample() {
        let mut v = RunView::default();
        v.apply(started(None), None);
        let t0 = Instant::now();
        v.apply(scalars(0, 1), Some(t0));
        v.apply(scalars(1, 11), Some(t0 + Duration::from_secs(2)));
        let rate = v.steps_per_second().unwrap();
        assert!((rate - 5.0).abs() < 1e-9, "{rate}");
        assert!((v.eta_seconds().unwrap() - 90.0 / 5.0).abs() < 1e-9);
        for step in [10, 20, 30] {
            v.apply(
                Event::Sample {
                    step,
                    path: String::new(),
                    width: 1,
                    height: 1,
                    rgba: Vec::new(),
                    note: None,
                },
                None,
            );
        }
        assert_eq!(v.sample_near(0), Some(0));
        assert_eq!(v.sample_near(25), Some(1));
        assert_eq!(v.sample_near(99), Some(2));
    }
}

//! The messages between the UI (or the CLI) and the training worker.
//!
//! # Order contract
//! - A run is started by spawning a worker (`engine::worker::spawn`); there is no `Start`
//!   command because a worker runs exactly one run.
//! - The first event of a run is [`Event::RunStarted`]; the last is exactly one of
//!   [`Event::RunFinished`] or [`Event::RunFailed`]. Nothing follows it.
//! - Steps never decrease between two events, except right after a `RunStarted` whose
//!   `resumed_from` is set: a resumed run restarts at its checkpoint's step, and a reader
//!   drops whatever it had recorded beyond that step.
//! - Commands are applied between training steps, in the order sent. Each is acknowledged by an
//!   event (`Paused`, `Resumed`, `CheckpointSaved`, `PhaseStarted`, `HyperparameterChanged`),
//!   or by a `Log` event at warning level that says why it was refused.
//! - Events are never sent blocking: scalars are batched about every 100 ms, and when the
//!   channel is full the event is dropped from the channel but is still in the run log, which
//!   is complete.

use serde::{Deserialize, Serialize};

/// UI or CLI to worker (and, as JSON, a file in a run folder's inbox: `core::inbox`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Stop stepping; the model stays on its device.
    Pause,
    /// Continue after a pause.
    Resume,
    /// End the run now without writing a checkpoint.
    Stop,
    /// Write a checkpoint, then end the run.
    StopAndSave,
    /// The process received this stop signal (`SIGTERM`, `SIGINT`, `SIGUSR1`): end the run at
    /// the next step boundary with a checkpoint of that step. Data-parallel ranks agree on the
    /// boundary, so every rank stops at the same step whichever received it.
    StopBySignal(String),
    /// Write a checkpoint now and continue.
    CheckpointNow,
    /// End the current phase now and start the next one (ends the run after the last phase).
    SkipPhase,
    /// Change a live hyperparameter (see the family's `live` fields, e.g. `train.lr_g`).
    SetHyperparameter { name: String, value: f64 },
    /// Capture per-layer statistics of a module from the next step (`steps: Some(0)` ends
    /// the watch of that module).
    Watch(WatchSpec),
}

/// A watched module's statistics at one step: weight, gradient and update norms (the last two
/// `None` when no optimiser stepped it), the gradient's non-finite values and a histogram of
/// its weights over `hist_range`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerStats {
    pub step: u64,
    pub tensors: u32,
    #[serde(deserialize_with = "non_finite::number")]
    pub weight_norm: f64,
    pub grad_norm: Option<f64>,
    pub update_norm: Option<f64>,
    pub non_finite_grads: u64,
    pub hist: Vec<u32>,
    pub hist_range: [f64; 2],
    /// The share of its activations (after the nonlinearity it feeds) at or below zero at
    /// that step: dead units after a ReLU, the negative side of a leaky ReLU, GELU or SiLU;
    /// `None` for a module that feeds no nonlinearity.
    #[serde(default)]
    pub inactive: Option<f64>,
}

impl LayerStats {
    /// The update's size against the weight's (about 1e-3 is healthy for Adam).
    #[must_use]
    pub fn update_ratio(&self) -> Option<f64> {
        self.update_norm.map(|u| u / self.weight_norm.max(1e-12))
    }
}

/// A module to watch: `network.path` (or `*` for every module), at every `every`-th step,
/// for `steps` captures (`None`: until the run ends). Written `MODULE[:every=K,steps=N]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchSpec {
    pub module: String,
    pub every: u64,
    pub steps: Option<u64>,
}

impl std::str::FromStr for WatchSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (module, opts) = s.split_once(':').unwrap_or((s, ""));
        if module.is_empty() {
            return Err(format!("`{s}`: name a module (`d.main.0`, `g`, or `*`)"));
        }
        let mut spec = Self {
            module: module.to_string(),
            every: 1,
            steps: None,
        };
        for opt in opts.split(',').filter(|o| !o.is_empty()) {
            let (k, v) = opt
                .split_once('=')
                .ok_or_else(|| format!("`{opt}` in `{s}`: write every=K or steps=N"))?;
            let n: u64 = v
                .parse()
                .map_err(|_| format!("`{opt}` in `{s}`: {v} is not a whole number"))?;
            match k {
                "every" if n > 0 => spec.every = n,
                "steps" => spec.steps = Some(n),
                _ => {
                    return Err(format!(
                        "`{opt}` in `{s}`: write every=K (K > 0) or steps=N"
                    ))
                }
            }
        }
        Ok(spec)
    }
}

/// How a run that did not fail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every phase ran to its end (or the step limit was reached).
    Completed,
    /// Stopped by a command or a signal.
    Stopped,
}

/// The severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Info,
    Warning,
    Error,
}

/// Where a branch starts: its parent's run folder, the step it forks at, what it changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BranchOf {
    pub parent: String,
    pub fork_step: u64,
    pub changes: String,
}

impl BranchOf {
    #[must_use]
    pub fn describe(&self) -> String {
        format!(
            "branched from {} at step {} ({})",
            self.parent, self.fork_step, self.changes
        )
    }
}

/// One logged step's scalars, e.g. `("d_loss", -1.2)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScalarRow {
    pub step: u64,
    pub wall_time: f64,
    #[serde(deserialize_with = "non_finite::pairs")]
    pub values: Vec<(String, f64)>,
}

/// JSON has no NaN or infinity: `serde_json` writes them as `null`. Numbers that may be
/// non-finite (a diverged loss, a validation of NaN weights) read `null` back as NaN, so one
/// such value never makes a run's log unreadable from that record on.
mod non_finite {
    use serde::{Deserialize, Deserializer};

    pub fn number<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }

    pub fn pairs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, f64)>, D::Error> {
        Ok(Vec::<(String, Option<f64>)>::deserialize(d)?
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or(f64::NAN)))
            .collect())
    }

    pub fn rows<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<f64>>, D::Error> {
        Ok(Vec::<Vec<Option<f64>>>::deserialize(d)?
            .into_iter()
            .map(|r| r.into_iter().map(|v| v.unwrap_or(f64::NAN)).collect())
            .collect())
    }
}

/// A loss-health finding: what was seen and what to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthSignal {
    CriticDominating,
    GeneratorDominating,
    WildOscillation,
    ExplodingLoss,
    ModeCollapse,
    NonFiniteLoss,
    /// One part of the step (data, validation, logging, ...) takes most of its time.
    Bottleneck,
    /// Under data parallelism, one rank's own work makes the others wait.
    Straggler,
}

impl HealthSignal {
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::CriticDominating => "critic dominating",
            Self::GeneratorDominating => "generator dominating",
            Self::WildOscillation => "wild oscillation",
            Self::ExplodingLoss => "exploding loss",
            Self::ModeCollapse => "suspected mode collapse",
            Self::NonFiniteLoss => "non-finite loss",
            Self::Bottleneck => "bottleneck",
            Self::Straggler => "straggler",
        }
    }
}

/// Worker to UI, and the records of `events.log`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        run_dir: String,
        name: String,
        family: String,
        device: String,
        /// Total steps when every phase has a step or epoch length; `None` with timed phases.
        total_steps: Option<u64>,
        /// The checkpoint step this run resumed from, if any; 0 with `restarted`.
        resumed_from: Option<u64>,
        /// Trained again from step 0 in its folder, having written no checkpoint before.
        #[serde(default)]
        restarted: bool,
        /// A branch's first start: its parent's folder, the fork step and what it changed
        /// (`core::branch`), for the marker at the fork and the parent's curve before it.
        #[serde(default)]
        branch_of: Option<BranchOf>,
        wall_time: f64,
        /// What each scalar of the run is (empty in logs written before declarations).
        #[serde(default)]
        metrics: Vec<MetricDef>,
    },
    /// Scalars of several steps, batched.
    Scalars {
        rows: Vec<ScalarRow>,
    },
    /// The trainer's networks and their modules (`network.path`, with its parameter count),
    /// for the module tree a user watches layers from.
    Modules {
        modules: Vec<(String, u64)>,
    },
    /// One watched module's statistics at a step (`engine::watch`).
    LayerStats {
        module: String,
        stats: LayerStats,
    },
    PhaseStarted {
        step: u64,
        index: usize,
        name: String,
        length: String,
        /// The checkpoint whose weights the phase started from, if any.
        loaded_checkpoint: Option<String>,
    },
    CheckpointSaved {
        step: u64,
        path: String,
        /// Whether this is now the best checkpoint of its phase.
        best: bool,
        metric: Option<f64>,
    },
    /// A sample grid; the PNG is at `path` (relative to the run directory).
    Sample {
        step: u64,
        path: String,
        width: u32,
        height: u32,
        /// RGBA8 pixels for live display; not stored in the run log (the PNG is).
        #[serde(skip)]
        rgba: Vec<u8>,
        /// What the picture shows when it is not what it seems (prior samples of a phase
        /// whose KL weight is near zero look like noise by design).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    Health {
        step: u64,
        signal: HealthSignal,
        message: String,
        suggestion: String,
    },
    Paused {
        step: u64,
    },
    Resumed {
        step: u64,
    },
    HyperparameterChanged {
        step: u64,
        name: String,
        #[serde(deserialize_with = "non_finite::number")]
        old: f64,
        #[serde(deserialize_with = "non_finite::number")]
        new: f64,
    },
    /// The guard rolled the run back: a detector fired at `step`, the run reloaded its
    /// checkpoint of `to_step` (rows after it are replaced, as a resume's are) and applies
    /// `remedy`. `abandoned` is the folder that keeps the abandoned rows as a branch.
    Rollback {
        step: u64,
        to_step: u64,
        detector: String,
        message: String,
        remedy: String,
        /// This run's rollbacks so far, this one included.
        count: u32,
        abandoned: Option<String>,
    },
    /// The sweep's scheduler stopped this trial (`core::pruner`): at `rung` its `metric` was
    /// `value`, and the rung's cut (the worst value that went on) was `cut`. The run stops at
    /// this step with a checkpoint; `workbench sweep promote` trains it to its full budget.
    TrialStopped {
        step: u64,
        rung: usize,
        metric: String,
        value: f64,
        cut: f64,
    },
    /// A Q-learning controller's decision (see `core::control`).
    Controller {
        step: u64,
        name: String,
        /// The discretised state, one bin per feature.
        state: Vec<u8>,
        /// `(steered field, chosen scale)`.
        #[serde(deserialize_with = "non_finite::pairs")]
        actions: Vec<(String, f64)>,
        /// The reward credited to the previous decision.
        reward: Option<f64>,
        epsilon: f64,
        /// The state's Q-values per action set, after the update.
        #[serde(deserialize_with = "non_finite::rows")]
        q_values: Vec<Vec<f64>>,
        explored: Vec<bool>,
        /// The settings the decision resulted in, e.g. `("lr", 8.5e-5)`.
        #[serde(default, deserialize_with = "non_finite::pairs")]
        applied: Vec<(String, f64)>,
        /// The row the reward updated: the previous decision's state, its chosen options and
        /// its Q-values after the update.
        #[serde(default)]
        updated: Option<crate::core::control::Update>,
        /// How often this state has been decided in, this decision included.
        #[serde(default)]
        visits: u64,
        /// States in the controller's table.
        #[serde(default)]
        table_size: u64,
    },
    /// A heuristic intervention turned on or off (WuBu-GAAD, spec section 6), with the
    /// values its condition read.
    Intervention {
        step: u64,
        name: String,
        on: bool,
        #[serde(deserialize_with = "non_finite::pairs")]
        values: Vec<(String, f64)>,
    },
    /// The active discriminator changed (spec section 7).
    DiscriminatorSwitch {
        step: u64,
        from: String,
        to: String,
        reason: String,
        #[serde(deserialize_with = "non_finite::pairs")]
        values: Vec<(String, f64)>,
    },
    /// Ground truth and reconstruction of the same frames (each a row of frames, equal size),
    /// with the regions the model used.
    Reconstruction {
        step: u64,
        /// `train` or `validation`.
        split: String,
        truth: String,
        recon: String,
        width: u32,
        height: u32,
        /// Frames side by side in each image.
        frames: u32,
        /// Appearance regions `[x1, y1, x2, y2]` of one frame, in frame pixels.
        boxes: Vec<[f32; 4]>,
        /// Motion regions of the last frame pair.
        motion_boxes: Vec<[f32; 4]>,
        #[serde(skip)]
        truth_rgba: Vec<u8>,
        #[serde(skip)]
        recon_rgba: Vec<u8>,
    },
    /// Ground truth and reconstruction of one whole volume `[C, D, H, W]` (the VQ-GAN
    /// family), written as NIfTI-1 files; the volume viewer shows their slices.
    Volume {
        step: u64,
        /// `validation`.
        split: String,
        /// The files, relative to the run directory.
        truth: String,
        recon: String,
        channels: u32,
        /// `[D, H, W]`.
        dims: [u32; 3],
        #[serde(skip)]
        truth_data: Vec<f32>,
        #[serde(skip)]
        recon_data: Vec<f32>,
    },
    /// How a validation pass of a family with discrete actions used its codebook.
    Codes {
        step: u64,
        /// Uses of each codebook entry.
        counts: Vec<u64>,
        /// The most used actions (one code per slot) with their uses, most used first.
        actions: Vec<(Vec<u32>, u64)>,
    },
    Log {
        step: u64,
        level: Level,
        message: String,
    },
    RunFinished {
        step: u64,
        outcome: Outcome,
        /// The signal that stopped the run (with a checkpoint of its last step).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal: Option<String>,
    },
    RunFailed {
        step: u64,
        message: String,
    },
}

impl Event {
    /// Whether this event ends a run.
    #[must_use]
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::RunFinished { .. } | Self::RunFailed { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A NaN or an infinity in a logged row (JSON writes `null`) reads back as NaN instead of
    /// making the record, and the log from it on, unreadable.
    #[test]
    fn non_finite_values_survive_the_log() {
        let e = Event::Scalars {
            rows: vec![ScalarRow {
                step: 1,
                wall_time: 0.0,
                values: vec![
                    ("val_swd".into(), f64::NAN),
                    ("d_loss".into(), f64::INFINITY),
                ],
            }],
        };
        let text = serde_json::to_string(&e).expect("json");
        let Event::Scalars { rows } = serde_json::from_str(&text).expect("reads back") else {
            panic!("scalars")
        };
        assert!(rows[0].values.iter().all(|(_, v)| v.is_nan()));
        let e = Event::HyperparameterChanged {
            step: 2,
            name: "lr".into(),
            old: f64::NAN,
            new: 1e-4,
        };
        let text = serde_json::to_string(&e).expect("json");
        assert!(matches!(
            serde_json::from_str::<Event>(&text).expect("reads back"),
            Event::HyperparameterChanged { old, new, .. } if old.is_nan() && new == 1e-4
        ));
    }

    #[test]
    fn events_round_trip_through_json_without_pixels() {
        let e = Event::Sample {
            step: 3,
            path: "media/x.png".into(),
            width: 2,
            height: 1,
            rgba: vec![1; 8],
            note: None,
        };
        let text = serde_json::to_string(&e).expect("serialise");
        assert!(!text.contains("rgba"));
        let back: Event = serde_json::from_str(&text).expect("parse");
        match back {
            Event::Sample { rgba, width, .. } => {
                assert!(rgba.is_empty());
                assert_eq!(width, 2);
            }
            other => panic!("wrong event {other:?}"),
        }
    }
}

/// The logged name of a step's total milliseconds; its parts are `time_<part>_ms`
/// (`engine::timing`).
pub const STEP_TIME_MS: &str = "step_time_ms";

/// What a logged scalar is. Trainers declare theirs (the session adds its own); the run log
/// records the declarations when the run starts, and `losses.csv`, the progress line, the
/// health checks, the best-checkpoint choice and the dashboard all read them: no name has a
/// meaning of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricDef {
    pub name: String,
    pub kind: MetricKind,
    /// How the values of the steps between two log points combine.
    pub aggregate: Aggregate,
    /// Written to `losses.csv`.
    pub csv: bool,
    /// Among the family's main numbers: first on the dashboard and on the progress line.
    pub main: bool,
    /// What the health checks read it as, if anything.
    #[serde(default)]
    pub role: Option<HealthRole>,
    /// Another scalar drawn on this one's plot as its reference (a baseline the metric should
    /// beat, such as the copy-last-frame prediction's error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
    /// Another scalar drawn on this one's plot as a second solid line (the critic's logits
    /// on fakes beside those on real data); it gets no plot of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub companion: Option<String>,
}

/// What kind of number a metric is; it decides the dashboard group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// A training loss or a term of one.
    Loss,
    /// A validation metric, better higher or lower.
    Validation { higher_is_better: bool },
    /// A setting in force: a learning rate, a momentum, a loss weight or factor.
    Setting,
    /// A controller's output or internals (epsilon, reward, chosen scale).
    Controller,
    /// A count or an index: epoch, phase, the active critic.
    Counter,
    /// A diagnostic: gradient norms, per-path errors.
    Diagnostic,
    /// Milliseconds a step spent in one of its parts (`engine::timing`), or its total.
    Timing,
    /// The process and its devices, sampled beside the steps: CPU, memory, GPU use, power.
    System,
}

impl MetricKind {
    /// The dashboard group, in the order groups are shown.
    #[must_use]
    pub fn group(self) -> (u8, &'static str) {
        match self {
            Self::Loss => (0, "losses"),
            Self::Validation { .. } => (1, "validation"),
            Self::Diagnostic => (2, "diagnostics"),
            Self::Setting => (3, "settings"),
            Self::Controller => (4, "controllers"),
            Self::Counter => (5, "counters"),
            Self::Timing => (6, "step time"),
            Self::System => (7, "system"),
        }
    }

    /// Settings, controller internals and counters start collapsed on the dashboard.
    #[must_use]
    pub fn collapsed(self) -> bool {
        matches!(
            self,
            Self::Setting | Self::Controller | Self::Counter | Self::Timing | Self::System
        )
    }
}

/// How values between log points combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    /// The mean of the interval's values (losses).
    Mean,
    /// The latest value (settings, counters, controller outputs).
    Last,
}

/// The losses the health checks watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthRole {
    /// The critic's (discriminator's) loss.
    CriticLoss,
    /// The generator's loss.
    GeneratorLoss,
    /// The fraction of a codebook a step uses (what the guard's codebook detector reads).
    CodebookUse,
}

impl MetricDef {
    /// A loss, averaged between log points and written to `losses.csv`.
    #[must_use]
    pub fn loss(name: &str) -> Self {
        Self {
            name: name.to_string(),
            kind: MetricKind::Loss,
            aggregate: Aggregate::Mean,
            csv: true,
            main: false,
            role: None,
            baseline: None,
            companion: None,
        }
    }

    /// A validation metric.
    #[must_use]
    pub fn validation(name: &str, higher_is_better: bool) -> Self {
        Self {
            kind: MetricKind::Validation { higher_is_better },
            ..Self::loss(name)
        }
    }

    /// Milliseconds of a step's part, averaged between log points (`engine::timing`). Not
    /// in `losses.csv`: its rows are the run's numbers, which a resume reproduces exactly.
    #[must_use]
    pub fn timing(name: &str) -> Self {
        Self {
            kind: MetricKind::Timing,
            csv: false,
            ..Self::loss(name)
        }
    }

    /// A sample of the process or a device, averaged over the samples between log points (not
    /// in `losses.csv`, as timings).
    #[must_use]
    pub fn system(name: &str) -> Self {
        Self {
            kind: MetricKind::System,
            csv: false,
            ..Self::loss(name)
        }
    }

    /// A setting in force (its latest value is logged).
    #[must_use]
    pub fn setting(name: &str) -> Self {
        Self {
            kind: MetricKind::Setting,
            aggregate: Aggregate::Last,
            ..Self::loss(name)
        }
    }

    /// A controller output (its latest value is logged).
    #[must_use]
    pub fn controller(name: &str) -> Self {
        Self {
            kind: MetricKind::Controller,
            ..Self::setting(name)
        }
    }

    /// A counter or index (its latest value is logged).
    #[must_use]
    pub fn counter(name: &str) -> Self {
        Self {
            kind: MetricKind::Counter,
            ..Self::setting(name)
        }
    }

    /// A diagnostic, averaged between log points.
    #[must_use]
    pub fn diagnostic(name: &str) -> Self {
        Self {
            kind: MetricKind::Diagnostic,
            ..Self::loss(name)
        }
    }

    /// Draws `other` on this metric's plot as its reference.
    #[must_use]
    pub fn baseline(self, other: &str) -> Self {
        Self {
            baseline: Some(other.to_string()),
            ..self
        }
    }

    /// Draws `other` on this metric's plot as a second solid line, instead of on its own.
    #[must_use]
    pub fn companion(self, other: &str) -> Self {
        Self {
            companion: Some(other.to_string()),
            ..self
        }
    }

    /// Marks it as one of the family's main numbers.
    #[must_use]
    pub fn main(self) -> Self {
        Self { main: true, ..self }
    }

    /// Gives it a role in the health checks.
    #[must_use]
    pub fn role(self, role: HealthRole) -> Self {
        Self {
            role: Some(role),
            ..self
        }
    }

    /// Keeps it out of `losses.csv`.
    #[must_use]
    pub fn no_csv(self) -> Self {
        Self { csv: false, ..self }
    }
}

/// Wakes a UI when events arrive.
pub type Waker = std::sync::Arc<dyn Fn() + Send + Sync>;

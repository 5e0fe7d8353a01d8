//! The contract between the session and a family's trainer, and the plain data a step hands
//! back: scalars, images, reconstructions, validation, typed errors.

use tch::{Device, Tensor};

use crate::core::preset::AnyPreset;
use crate::core::protocol::{Event, MetricDef};
use crate::engine::checkpoint::{CheckpointError, Loaded};

/// RGBA8 pixels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rgba {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

/// Where a step falls.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StepCtx {
    pub step: u64,
    pub epoch: u64,
    pub batch_in_epoch: u64,
    /// Where it falls in its phase (a schedule tied to the run's length reads it).
    pub phase: PhaseAt,
}

/// Where a step stands in its phase: the phase's steps before it, and the phase's length in
/// steps when known (a phase of steps or epochs), else (a timed phase) the share of its time
/// gone.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PhaseAt {
    pub step: u64,
    pub length: Option<u64>,
    pub time_done: Option<f64>,
}

impl PhaseAt {
    /// The share of the phase done before this step, in [0, 1]; `None` when unknown.
    #[must_use]
    pub fn done(&self) -> Option<f64> {
        match (self.length, self.time_done) {
            (Some(n), _) => Some((self.step as f64 / n.max(1) as f64).clamp(0.0, 1.0)),
            (None, Some(f)) => Some(f.clamp(0.0, 1.0)),
            (None, None) => None,
        }
    }
}

/// The result of a validation pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Validation {
    /// Validation metrics, each declared in [`Trainer::metrics`].
    pub scalars: Vec<(&'static str, f64)>,
    /// The metric (one of `scalars`) that picks the best checkpoint, in its declared direction.
    pub best_by: &'static str,
    /// Sample diversity relative to real data, for the mode-collapse signal.
    pub diversity_ratio: Option<f64>,
}

impl Validation {
    /// The value of the metric that picks the best checkpoint (NaN when it is missing).
    #[must_use]
    pub fn best_value(&self) -> f64 {
        self.scalars
            .iter()
            .find(|(k, _)| *k == self.best_by)
            .map_or(f64::NAN, |(_, x)| *x)
    }
}

/// Ground truth and reconstruction of the same frames (see [`Event::Reconstruction`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Reconstruction {
    pub split: String,
    pub frames: u32,
    pub truth: Rgba,
    pub recon: Rgba,
    pub boxes: Vec<[f32; 4]>,
    pub motion_boxes: Vec<[f32; 4]>,
}

/// Ground truth and reconstruction of one whole volume (volume families; see
/// [`Event::Volume`]).
#[derive(Debug, Clone, PartialEq)]
pub struct VolumePair {
    pub split: String,
    pub truth: crate::engine::data::volumes::Volume,
    pub recon: crate::engine::data::volumes::Volume,
}

/// Why a training step failed: which part of the step, and libtorch's (or the family's)
/// message. The session adds the step and phase and fails the run with one line; the whole
/// message goes to the run log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} failed: {}", first_line(.detail))]
pub struct StepError {
    /// The part of the step that failed ("critic backward", "forward", ...).
    pub what: String,
    /// The full message (libtorch's includes its C++ backtrace).
    pub detail: String,
}

impl StepError {
    pub fn new(what: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        Self {
            what: what.into(),
            detail: detail.to_string(),
        }
    }

    /// Adapts a fallible tch call: `t.f_backward().map_err(StepError::at("critic backward"))?`.
    pub fn at(what: &'static str) -> impl Fn(tch::TchError) -> Self {
        move |e| Self::new(what, torch_message(&e))
    }
}

/// A libtorch error's text without tch's wrapping (`Torch("...")`).
fn torch_message(e: &tch::TchError) -> String {
    match e {
        tch::TchError::Torch(m) => m.clone(),
        other => other.to_string(),
    }
}

/// The text of a panic's payload; a tch error's `Torch("...")` wrapping is taken off and its
/// escaped line breaks restored, so [`first_line`] finds libtorch's own first line.
#[must_use]
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    let raw = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_string()))
        .unwrap_or_else(|| "a panic without a message".to_string());
    match raw.split_once("Torch(\"") {
        Some((_, inner)) => inner
            .trim_end_matches("\")")
            .replace("\\n", "\n")
            .replace("\\\"", "\""),
        None => raw,
    }
}

/// Test hooks (see [`crate::engine::failpoint`]): `torch-error:N` fails step N through a
/// fallible libtorch call, `torch-panic:N` through an infallible one that panics, as a bug in
/// a trainer would.
/// A failed gradient all-reduce as the step's error.
pub(crate) fn all_reduce_failed(e: crate::engine::dist::DistError) -> StepError {
    StepError::new("the gradient all-reduce", e)
}

pub(crate) fn injected_failure(step: u64) -> Result<(), StepError> {
    let mismatched = || Tensor::zeros([2, 3], (tch::Kind::Float, Device::Cpu));
    if crate::engine::failpoint("torch-error", step) {
        let _ = mismatched()
            .f_matmul(&mismatched())
            .map_err(StepError::at("the injected matmul"))?;
    }
    if crate::engine::failpoint("torch-panic", step) {
        let _ = mismatched().matmul(&mismatched());
    }
    Ok(())
}

/// The first non-empty line of a message (libtorch's messages carry a C++ backtrace after it).
#[must_use]
pub fn first_line(text: &str) -> &str {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("(no message)")
}

/// What [`ActionExplorer::explore`] shows: rows of frames side by side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explored {
    /// The frames that really followed.
    pub truth: Rgba,
    /// The rollout under the actions the encoder read from the true frames.
    pub encoded: Rgba,
    /// The rollout under the chosen action.
    pub chosen: Rgba,
    /// The encoded actions, one per transition (a code per slot).
    pub encoded_actions: Vec<Vec<u32>>,
    /// Frames in each row.
    pub frames: u32,
}

/// A model whose transitions are actions of `slots` codes from a codebook of
/// `codebook_size`.
pub trait ActionExplorer: Send + std::fmt::Debug {
    /// Validation windows to start from.
    fn windows(&self) -> usize;
    fn codebook_size(&self) -> usize;
    fn slots(&self) -> usize;
    /// The most steps a rollout can be compared with the truth.
    fn max_steps(&self) -> usize;
    /// Channels of a frame.
    fn channels(&self) -> usize;
    /// Rolls out `steps` frames from the first frame of `window`, applying `action` at every
    /// step; frames in colour (a fixed projection of the channels), or one channel in grey.
    fn explore(
        &mut self,
        window: usize,
        action: &[u32],
        steps: usize,
        channel: Option<usize>,
    ) -> Result<Explored, TrainerError>;
    /// A one-line description (model, checkpoint step).
    fn describe(&self) -> String;
}

/// Why a trainer (or its explorer) refused what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum TrainerError {
    /// State that does not fit: a tensor missing or of another shape, a family state it
    /// cannot read.
    #[error("{0}")]
    State(String),
    /// A configuration it cannot take (another family's preset, a field it cannot change).
    #[error("{0}")]
    Config(String),
    /// A rollout outside what the explorer holds (a window, a code).
    #[error("{0}")]
    Explore(String),
    #[error(transparent)]
    Data(#[from] crate::engine::data::DataError),
    /// A libtorch call failed (its first line).
    #[error("{0}")]
    Torch(String),
}

impl From<tch::TchError> for TrainerError {
    fn from(e: tch::TchError) -> Self {
        Self::Torch(first_line(&torch_message(&e)).to_string())
    }
}

/// An optimiser whose state a checkpoint carries.
pub trait OptimizerState {
    /// Its state as named tensors under `prefix`.
    fn state_tensors(&self, prefix: &str) -> Vec<(String, Tensor)>;
    /// Restores state written by [`Self::state_tensors`]; `get` finds a tensor by name.
    fn load_state(
        &mut self,
        prefix: &str,
        get: &dyn Fn(&str) -> Option<Tensor>,
    ) -> Result<(), TrainerError>;
}

/// One part of a trainer's checkpoint.
pub enum Part<'a> {
    /// A model's variables, each saved as `prefix.name`; loading needs every one, of its shape.
    Vars(&'static str, &'a tch::nn::VarStore),
    /// An optimiser's state under `prefix`.
    Optimizer(&'static str, &'a mut dyn OptimizerState),
    /// A tensor kept with the model (fixed noise, an overfit batch): restored when the
    /// checkpoint holds one of the same shape.
    Tensor(&'static str, &'a mut Tensor),
}

impl std::fmt::Debug for Part<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Vars(prefix, _) => write!(f, "Vars({prefix})"),
            Self::Optimizer(prefix, _) => write!(f, "Optimizer({prefix})"),
            Self::Tensor(name, _) => write!(f, "Tensor({name})"),
        }
    }
}

impl dyn Trainer + '_ {
    /// Every variable of the trainer's models, named `network.path.to.tensor`, by name.
    pub fn named_vars(&mut self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for part in self.parts() {
            if let Part::Vars(prefix, vs) = part {
                out.extend(
                    vs.variables()
                        .into_iter()
                        .map(|(n, t)| (format!("{prefix}.{n}"), t)),
                );
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The checkpoint's tensors: every part's, named.
    pub fn state_tensors(&mut self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for part in self.parts() {
            match part {
                Part::Vars(prefix, vs) => out.extend(
                    vs.variables()
                        .into_iter()
                        .map(|(n, t)| (format!("{prefix}.{n}"), t)),
                ),
                Part::Optimizer(prefix, opt) => out.extend(opt.state_tensors(prefix)),
                Part::Tensor(name, t) => out.push((name.to_string(), t.shallow_clone())),
            }
        }
        out
    }

    /// Loads a checkpoint: every part, then the family's own state. Errors name the
    /// checkpoint and the tensor.
    pub fn load_state(&mut self, ckpt: &Loaded) -> Result<(), CheckpointError> {
        let named = |e: TrainerError| CheckpointError {
            path: ckpt.dir.clone(),
            message: e.to_string(),
        };
        for part in self.parts() {
            match part {
                Part::Vars(prefix, vs) => ckpt.load_vars(prefix, vs)?,
                Part::Optimizer(prefix, opt) => {
                    opt.load_state(prefix, &|k| ckpt.get(k)).map_err(named)?;
                }
                Part::Tensor(name, t) => {
                    if let Some(x) = ckpt.get(name).filter(|x| x.size() == t.size()) {
                        *t = x.to_device(t.device());
                    }
                }
            }
        }
        let state = ckpt
            .state
            .get("family_state")
            .unwrap_or(&serde_json::Value::Null);
        self.load_family_state(state).map_err(named)
    }
}

/// What a family implements to be trained by the session. The family's preset is its
/// other half ([`crate::core::preset::FamilyPreset`]); `engine::families::make_trainer` builds
/// one from the other.
pub trait Trainer: std::fmt::Debug {
    fn describe(&self) -> String;
    fn warnings(&self) -> Vec<String>;
    fn steps_per_epoch(&self) -> u64;
    /// What each scalar the trainer reports is: every name [`Self::train_step`] and
    /// [`Self::validate`] return must be declared here.
    fn metrics(&self) -> Vec<MetricDef>;
    /// The parts of a step the trainer marks with `engine::timing::enter` (each network's
    /// forward and backward: "critic forward"), beside the shared ones (`timing::SHARED`);
    /// the session declares a timing scalar for each.
    fn timed_parts(&self) -> &'static [&'static str] {
        &[]
    }
    /// Takes a configuration: a phase's (learning rates, loss weights, augmentation, ...) or
    /// the one a live edit makes. What a trainer cannot take (a model it cannot load for a
    /// weight turned on) it refuses, unchanged, with the reason.
    fn apply_preset(&mut self, preset: &AnyPreset) -> Result<(), TrainerError>;
    /// One training step; returns the step's scalars. Errors fail the run (use tch's
    /// fallible calls, `f_backward` and friends, for what can fail).
    fn train_step(&mut self, ctx: &StepCtx) -> Result<Vec<(&'static str, f64)>, StepError>;
    /// Takes the run's `k`-th data order (0: its own): the guard's `reseed` remedy, and a
    /// resume of a run that had one.
    fn reseed_data(&mut self, k: u64);
    /// What to try when a loss becomes NaN or infinite, in the family's own fields.
    fn non_finite_advice(&self) -> &'static str {
        "lower the learning rates 5-10x, then resume from the last good checkpoint"
    }
    /// Scales a learning-rate field (a live name) for the session's learning-rate
    /// controller: the rate in force becomes its base times `scale`. The trainer is the one
    /// owner of its rates; the controller and live edits only ever ask it.
    fn set_lr_scale(&mut self, field: &str, _scale: f64) -> Result<(), TrainerError> {
        Err(TrainerError::Config(format!(
            "`{field}` cannot be scaled by a controller"
        )))
    }
    fn sample_grid(&mut self) -> Rgba;
    /// A line the sample view shows above the grid when it is not what it seems.
    fn sample_note(&self) -> Option<String> {
        None
    }
    fn validate(&mut self) -> Option<Validation>;
    /// What the trainer's checkpoint is made of, in order: its models' variables, its
    /// optimisers' state and the tensors it keeps. Shared code saves and loads each part
    /// (`state_tensors` and `load_state` on `dyn Trainer`).
    fn parts(&mut self) -> Vec<Part<'_>>;
    /// Takes back the state [`Self::family_state`] gave (`Null` from a checkpoint without
    /// one), after the parts are loaded.
    fn load_family_state(&mut self, _state: &serde_json::Value) -> Result<(), TrainerError> {
        Ok(())
    }
    /// Events the family produced since the last call (controller decisions, interventions,
    /// discriminator switches, warnings).
    fn drain_events(&mut self) -> Vec<Event> {
        Vec::new()
    }
    /// A training reconstruction, taken at the sample cadence (reconstruction families).
    fn reconstruction(&mut self) -> Option<Reconstruction> {
        None
    }
    /// The reconstruction the last validation produced, once.
    fn pending_reconstruction(&mut self) -> Option<Reconstruction> {
        None
    }
    /// The whole volume the last validation reconstructed, once (volume families).
    fn pending_volume(&mut self) -> Option<VolumePair> {
        None
    }
    /// Measurements a learning check prints beside validation, such as each module's
    /// gradient norm at the last step (none by default).
    fn diagnostics(&self) -> Vec<(String, f64)> {
        Vec::new()
    }
    /// Non-tensor state a checkpoint must hold (saved as `family_state`).
    fn family_state(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    /// The trainer as an action explorer, for a family with discrete actions (loaded from a
    /// checkpoint on the CPU; see `engine::explore::open`).
    fn into_explorer(self: Box<Self>) -> Option<Box<dyn ActionExplorer>> {
        None
    }
}

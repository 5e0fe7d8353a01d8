//! The training loop shared by every family: phases, commands between steps, cadences (log,
//! sample, validate, checkpoint), loss health, exact resume.
//!
//! Determinism: every random draw of step N comes from a generator seeded with
//! `(seed, step N)`, and the data order of epoch E from `(seed, E)`, so a run resumed from a
//! checkpoint takes exactly the steps an uninterrupted run takes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use crate::core::cadence::{due, Due};
use crate::core::health::{Finding, HealthMonitor};
use crate::core::preset::{AnyPreset, PhaseLength, ValidatedPreset};
use crate::core::protocol::{Command, Event, HealthSignal, Level, Outcome, ScalarRow};
use crate::core::rundir::{CsvLog, RunDir};
use crate::core::runlog::LogWriter;
use crate::core::timefmt::unix_now;
use crate::engine::checkpoint::{self, BestEntry, Loaded};
use crate::engine::families::wgan_gp::WganGpTrainer;
use crate::engine::families::wubu_gaad::WubuGaadTrainer;
use crate::engine::EngineError;

/// RGBA8 pixels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rgba {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

/// Where a step falls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepCtx {
    pub step: u64,
    pub epoch: u64,
    pub batch_in_epoch: u64,
}

/// The result of a validation pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Validation {
    pub scalars: Vec<(&'static str, f64)>,
    /// The metric that picks the best checkpoint, as logged.
    pub metric: f64,
    /// Whether a higher `metric` is better (PSNR) or a lower one (a distance).
    pub higher_is_better: bool,
    /// Sample diversity relative to real data, for the mode-collapse signal.
    pub diversity_ratio: Option<f64>,
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
fn injected_failure(step: u64) -> Result<(), StepError> {
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

/// What a family implements to be trained by the session.
pub trait Trainer: std::fmt::Debug {
    fn describe(&self) -> String;
    /// Identifies the model's shape; a checkpoint only loads into an equal signature.
    fn signature(&self) -> String;
    fn warnings(&self) -> Vec<String>;
    fn steps_per_epoch(&self) -> u64;
    /// Takes a phase's configuration (learning rates, loss weights, augmentation, ...).
    fn apply_preset(&mut self, preset: &AnyPreset);
    /// One training step; returns the step's scalars. Errors fail the run (use tch's
    /// fallible calls, `f_backward` and friends, for what can fail).
    fn train_step(&mut self, ctx: &StepCtx) -> Result<Vec<(&'static str, f64)>, StepError>;
    /// What to try when a loss becomes NaN or infinite, in the family's own fields.
    fn non_finite_advice(&self) -> &'static str {
        "lower the learning rates 5-10x, then resume from the last good checkpoint"
    }
    fn live_names(&self) -> &'static [&'static str];
    /// Current values of the live hyperparameters (saved in checkpoints).
    fn live_values(&self) -> Vec<(&'static str, f64)>;
    /// Changes a live hyperparameter; returns the old value.
    fn set_live(&mut self, name: &str, value: f64) -> Result<f64, String>;
    fn sample_grid(&mut self) -> Rgba;
    fn validate(&mut self) -> Option<Validation>;
    fn state_tensors(&self) -> Vec<(String, Tensor)>;
    fn load_state(&mut self, ckpt: &Loaded) -> Result<(), String>;
    /// The columns of `scalars.csv`.
    fn csv_columns(&self) -> &'static [&'static str] {
        CSV_COLUMNS
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
    /// Non-tensor state a checkpoint must hold (saved as `family_state`).
    fn family_state(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}

/// Builds the trainer of a preset's family.
pub fn make_trainer(preset: &AnyPreset, device: Device) -> Result<Box<dyn Trainer>, EngineError> {
    match preset {
        AnyPreset::WganGp(p) => Ok(Box::new(WganGpTrainer::new(p, device)?)),
        AnyPreset::WubuGaad(p) => Ok(Box::new(WubuGaadTrainer::new(p, device)?)),
    }
}

/// The model signature a preset builds, without building it.
#[must_use]
pub fn signature_of(preset: &AnyPreset) -> String {
    match preset {
        AnyPreset::WganGp(p) => {
            let m = &p.model;
            format!(
                "wgan_gp/{:?}/size{}/z{}/g{}/d{}/ema{}",
                m.arch,
                p.data.image_size,
                m.latent_dim,
                m.g_feature_maps,
                m.d_feature_maps,
                m.ema_decay > 0.0
            )
        }
        AnyPreset::WubuGaad(p) => {
            let (m, d) = (&p.model, &p.data);
            let stack = |s: &crate::core::preset::wubu_gaad::WubuStack| {
                format!(
                    "[{}|{}|{}|{}|{}|{}]",
                    s.dims,
                    s.curvatures,
                    s.boundary_points,
                    s.rotation,
                    s.combiner_hidden,
                    s.residual
                )
            };
            format!(
                "wubu_gaad/{}x{}/f{}+{}/r{}{}{:?}/rm{}/p{}/z{}/t{}/dft{}/dct{}/roi{}{}/motion{}{}/film{}/h{}{}/S{}M{}T{}D{}/d{:?}+{:?}/sn{}/c{}-{}k{}/dfilm{}/dt{}/aux{}",
                d.image_w, d.image_h, d.input_frames, d.predict_frames, m.regions, m.decomposition, m.region_pooling,
                m.motion_regions, m.patch_size, m.latent_dim, m.tangent_dim, m.use_dft, m.use_dct,
                m.encoder_roi_align, m.encoder_cnn_channels, m.motion, m.flow_stats, m.gen_film,
                m.gen_head_hidden, if m.gen_head_skip { "+skip" } else { "" }, stack(&m.wubu_s), stack(&m.wubu_m), stack(&m.wubu_t),
                stack(&m.wubu_d), m.disc_primary, m.disc_alternative, m.disc_spectral_norm,
                m.disc_base_channels, m.disc_max_channels, m.disc_temporal_kernel, m.disc_film,
                m.disc_feature_tangent_dim, m.disc_feature_stats_aux
            )
        }
    }
}

/// Counters saved in every checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Counters {
    pub step: u64,
    pub epoch: u64,
    pub batch_in_epoch: u64,
    pub phase: usize,
    pub phase_start_step: u64,
    pub phase_end_step: Option<u64>,
    pub phase_elapsed_secs: f64,
    /// Sums and counts of the scalars since the last logged step.
    pub accum: BTreeMap<String, (f64, u64)>,
}

/// Everything a run needs; built by `worker::prepare`.
#[derive(Debug)]
pub struct RunPlan {
    pub preset: ValidatedPreset,
    pub run_dir: RunDir,
    pub device: Device,
    pub resume_from: Option<PathBuf>,
    pub step_limit: Option<u64>,
    /// Live hyperparameters to set right after start (e.g. `--lr-g` on resume).
    pub live_overrides: Vec<(String, f64)>,
    pub notes: Vec<String>,
    /// Trains an existing run folder again from step 0 (it has no checkpoint to resume from):
    /// its `losses.csv` starts afresh and views rewind to step 0.
    pub restart: bool,
}

/// Wakes a UI when events arrive.
pub type Waker = std::sync::Arc<dyn Fn() + Send + Sync>;

/// Sends events to the run log (always) and the channel (never blocking).
pub struct Emitter {
    log: LogWriter,
    tx: Sender<Event>,
    waker: Option<Waker>,
    pending: Vec<ScalarRow>,
    last_flush: Instant,
    pub dropped: u64,
    /// The step being trained, for the final event of a failed run.
    pub step: u64,
}

impl std::fmt::Debug for Emitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emitter")
            .field("log", &self.log)
            .field("dropped", &self.dropped)
            .finish_non_exhaustive()
    }
}

impl Emitter {
    pub fn new(log: LogWriter, tx: Sender<Event>, waker: Option<Waker>) -> Self {
        Self {
            log,
            tx,
            waker,
            pending: Vec::new(),
            last_flush: Instant::now(),
            dropped: 0,
            step: 0,
        }
    }

    fn send(&mut self, event: Event) {
        match self.tx.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.dropped += 1,
            Err(TrySendError::Disconnected(_)) => {}
        }
        if let Some(w) = &self.waker {
            w();
        }
    }

    /// Logs and sends one event (pending scalars first, to keep the order).
    pub fn emit(&mut self, event: Event) -> Result<(), EngineError> {
        self.flush()?;
        self.log.append(&event)?;
        self.send(event);
        Ok(())
    }

    /// Queues a scalar row; rows go out together about every 100 ms.
    pub fn scalars(&mut self, row: ScalarRow) -> Result<(), EngineError> {
        self.pending.push(row);
        if self.last_flush.elapsed() >= Duration::from_millis(100) {
            self.flush()?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), EngineError> {
        self.last_flush = Instant::now();
        if self.pending.is_empty() {
            return Ok(());
        }
        let event = Event::Scalars {
            rows: std::mem::take(&mut self.pending),
        };
        self.log.append(&event)?;
        self.send(event);
        Ok(())
    }

    /// The terminal event: logged, synced, and sent with a short wait (the only one that waits).
    pub fn finish(&mut self, event: Event) {
        let _ = self.flush();
        let _ = self.log.append(&event);
        let _ = self.log.sync();
        let _ = self.tx.send_timeout(event, Duration::from_secs(2));
        if let Some(w) = &self.waker {
            w();
        }
    }

    pub fn sync(&mut self) -> Result<(), EngineError> {
        self.log.sync().map_err(EngineError::from)
    }
}

/// One run of the training loop.
struct Session<'a> {
    plan: &'a RunPlan,
    trainer: Box<dyn Trainer>,
    cfg: AnyPreset,
    c: Counters,
    emitter: &'a mut Emitter,
    csv: CsvLog,
    health: HealthMonitor,
    best: checkpoint::BestIndex,
    last_checkpoint_step: Option<u64>,
    ctl: Option<LrControl>,
    /// This step's `losses.csv` row: its logged scalars and, on validated steps, the
    /// validation's, written as one row once the step is done.
    csv_row: Vec<(String, f64)>,
}

/// Q-learning control of the learning rates (`lr_control` in the preset). Saved in every
/// checkpoint, so a resumed run continues its decisions exactly.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LrControl {
    q: crate::core::control::QController,
    metric: crate::core::control::MetricHistory,
    d_history: Vec<f64>,
    /// Sums over the current interval: (metric, d_loss).
    sums: [(f64, u64); 2],
    /// `(live field, the phase's value)`: the controller scales these.
    bases: Vec<(String, f64)>,
    scales: Vec<f64>,
}

impl LrControl {
    fn new(
        cfg: &crate::core::preset::LrControlConfig,
        fields: Vec<(String, f64)>,
        seed: u64,
    ) -> Result<Self, EngineError> {
        use crate::core::control::{ActionSet, QConfig, QController};
        let sets = fields
            .iter()
            .map(|(f, _)| ActionSet {
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
            metric: Default::default(),
            d_history: Vec::new(),
            sums: [(0.0, 0); 2],
            scales: vec![1.0; fields.len()],
            bases: fields,
        })
    }
}

/// WGAN-GP's `scalars.csv` columns (the default).
pub const CSV_COLUMNS: &[&str] = &[
    "step",
    "epoch",
    "phase",
    "d_loss",
    "g_loss",
    "gp",
    "wasserstein",
    "lr_g",
    "lr_d",
    "val_swd",
    "val_diversity",
];

fn health_cfg(p: &AnyPreset) -> crate::core::health::HealthConfig {
    p.health().clone()
}

fn cadences(p: &AnyPreset) -> (u64, u64, u64, u64, u64) {
    let (l, c) = (p.logging(), p.checkpoints());
    (
        l.log_every_steps,
        l.sample_every_steps,
        l.validate_every_steps,
        c.every_steps,
        c.keep_last,
    )
}

/// Runs a plan to its end. Returns how it ended; errors fail the run.
pub fn run(
    plan: &RunPlan,
    commands: &Receiver<Command>,
    emitter: &mut Emitter,
) -> Result<(u64, Outcome), EngineError> {
    let mut c = Counters::default();
    let mut loaded: Option<Loaded> = None;
    if let Some(dir) = &plan.resume_from {
        let ckpt = checkpoint::read(dir)?;
        c = serde_json::from_value(ckpt.state.get("session").cloned().unwrap_or_default())
            .map_err(|e| {
                EngineError::BadInput(format!("{}: bad session state: {e}", dir.display()))
            })?;
        loaded = Some(ckpt);
    }
    let cfg = plan.preset.for_phase(c.phase);
    let mut trainer = make_trainer(&cfg, plan.device)?;
    if let Some(ckpt) = &loaded {
        trainer.load_state(ckpt).map_err(EngineError::BadInput)?;
        checkpoint::supersede_after(&plan.run_dir.checkpoints(), c.step)?;
        if let Some(live) = ckpt.state.get("live").and_then(|v| v.as_object()) {
            for (k, v) in live {
                if let Some(v) = v.as_f64() {
                    let _ = trainer.set_live(k, v);
                }
            }
        }
    }
    let rewind_to = loaded
        .as_ref()
        .map(|_| c.step)
        .or(plan.restart.then_some(0));
    let csv = CsvLog::open(&plan.run_dir.csv_path(), trainer.csv_columns(), rewind_to)?;
    let total_steps = estimate_total(&plan.preset, trainer.steps_per_epoch())
        .map(|t| plan.step_limit.map_or(t, |l| l.min(t)));
    emitter.emit(Event::RunStarted {
        run_dir: plan.run_dir.root().display().to_string(),
        name: plan.preset.preset().name().to_string(),
        family: plan.preset.preset().family().name().to_string(),
        device: crate::engine::device::describe(plan.device),
        total_steps: total_steps.or(plan.step_limit),
        resumed_from: rewind_to,
        wall_time: unix_now(),
    })?;
    let info = |emitter: &mut Emitter, step, message: String| {
        emitter.emit(Event::Log {
            step,
            level: Level::Info,
            message,
        })
    };
    info(emitter, c.step, trainer.describe())?;
    for note in &plan.notes {
        info(emitter, c.step, note.clone())?;
    }
    for w in trainer.warnings() {
        emitter.emit(Event::Log {
            step: c.step,
            level: Level::Warning,
            message: w,
        })?;
    }
    let fresh = loaded.is_none();
    let mut s = Session {
        plan,
        health: HealthMonitor::new(health_cfg(&cfg)),
        trainer,
        cfg,
        c,
        emitter,
        csv,
        best: checkpoint::read_best(&plan.run_dir.checkpoints()),
        last_checkpoint_step: None,
        ctl: None,
        csv_row: Vec::new(),
    };
    if let Some(saved) = loaded
        .as_ref()
        .and_then(|l| l.state.get("controller"))
        .filter(|v| !v.is_null())
    {
        s.ctl = Some(serde_json::from_value(saved.clone()).map_err(|e| {
            EngineError::BadInput(format!("checkpoint: bad controller state: {e}"))
        })?);
    } else if !fresh {
        // A checkpoint from before control was enabled: start a controller now.
        s.setup_control()?;
    }
    drop(loaded);
    if fresh {
        s.start_phase(0, false)?;
    }
    for (name, value) in &plan.live_overrides {
        s.set_live(name, *value)?;
    }
    s.main_loop(commands)
}

fn decision_name(metric: &str) -> String {
    format!("lr (rewarded by {metric})")
}

fn estimate_total(preset: &ValidatedPreset, steps_per_epoch: u64) -> Option<u64> {
    preset
        .preset()
        .phases()
        .iter()
        .try_fold(0u64, |acc, p| match p.length {
            PhaseLength::Steps(n) => Some(acc + n),
            PhaseLength::Epochs(n) => Some(acc + n * steps_per_epoch),
            PhaseLength::Minutes(_) => None,
        })
}

impl Session<'_> {
    fn start_phase(&mut self, index: usize, load_best: bool) -> Result<(), EngineError> {
        let phases = self.plan.preset.preset().phases();
        let phase = &phases[index];
        self.cfg = self.plan.preset.for_phase(index);
        self.trainer.apply_preset(&self.cfg);
        self.health.set_config(health_cfg(&self.cfg));
        let mut loaded_from = None;
        if load_best && phase.start_from_best {
            let ckpts = self.plan.run_dir.checkpoints();
            let dir = match self.best.phases.get(&(index - 1)) {
                Some(b) => ckpts.join(&b.dir),
                None => {
                    self.emitter.emit(Event::Log {
                        step: self.c.step,
                        level: Level::Warning,
                        message: format!("phase `{}` starts from the previous phase's best checkpoint, but it had no validation; using its last checkpoint", phase.name),
                    })?;
                    checkpoint::resolve(&ckpts)?
                }
            };
            let ckpt = checkpoint::read(&dir)?;
            self.trainer.load_state(&ckpt).map_err(EngineError::Model)?;
            self.trainer.apply_preset(&self.cfg);
            loaded_from = Some(dir.display().to_string());
        }
        self.setup_control()?;
        self.c.phase = index;
        self.c.phase_start_step = self.c.step;
        self.c.phase_elapsed_secs = 0.0;
        self.c.phase_end_step = match phase.length {
            PhaseLength::Steps(n) => Some(self.c.step + n),
            PhaseLength::Epochs(n) => Some(self.c.step + n * self.trainer.steps_per_epoch()),
            PhaseLength::Minutes(_) => None,
        };
        self.emitter.emit(Event::PhaseStarted {
            step: self.c.step,
            index,
            name: phase.name.clone(),
            length: phase.length.to_string(),
            loaded_checkpoint: loaded_from,
        })
    }

    /// Creates the controller when the phase enables it (keeping a running one, whose bases
    /// become the new phase's learning rates), or drops it when the phase disables it.
    fn setup_control(&mut self) -> Result<(), EngineError> {
        let cfg = self.cfg.lr_control().clone();
        if !cfg.enabled {
            self.ctl = None;
            return Ok(());
        }
        let fields: Vec<(String, f64)> = self
            .trainer
            .live_values()
            .into_iter()
            .filter(|(k, _)| {
                k.rsplit('.')
                    .next()
                    .is_some_and(|leaf| leaf.starts_with("lr"))
            })
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        match &mut self.ctl {
            Some(c) if c.bases.iter().map(|b| &b.0).eq(fields.iter().map(|f| &f.0)) => {
                c.bases = fields;
                c.scales.fill(1.0);
            }
            _ => {
                let seed = crate::core::rng::derive_seed(
                    self.cfg.seed(),
                    crate::core::rng::Stream::Control,
                    0,
                );
                self.ctl = Some(LrControl::new(&cfg, fields, seed)?);
            }
        }
        Ok(())
    }

    /// Feeds one step's scalars to the controller; every `every_steps` it decides new scales,
    /// applies them, and emits the decision.
    fn control(&mut self, scalars: &[(&'static str, f64)]) -> Result<(), EngineError> {
        use crate::core::control::trend3;
        // Called every step: nothing is cloned unless a controller runs.
        let Some(ctl) = self.ctl.as_mut() else {
            return Ok(());
        };
        let cfg = self.cfg.lr_control();
        for (i, key) in [cfg.metric.as_str(), "d_loss"].into_iter().enumerate() {
            if let Some((_, v)) = scalars.iter().find(|(k, _)| *k == key) {
                ctl.sums[i].0 += v;
                ctl.sums[i].1 += 1;
            }
        }
        if !(self.c.step + 1).is_multiple_of(cfg.every_steps.max(1)) || ctl.sums[0].1 == 0 {
            return Ok(());
        }
        let mean = |(s, n): (f64, u64)| if n > 0 { s / n as f64 } else { f64::NAN };
        let (value, d) = (mean(ctl.sums[0]), mean(ctl.sums[1]));
        ctl.sums = [(0.0, 0); 2];
        let len = ctl.q.cfg.history_len;
        // What the controller observes, coarsely, so states repeat and the table learns: no
        // bins of its own last scales or of epsilon (spec 11.20).
        let state = vec![trend3(&ctl.metric.values, value), trend3(&ctl.d_history, d)];
        let first = ctl.metric.values.is_empty();
        let reward = ctl.metric.reward(value, cfg.better, len);
        crate::core::control::push_bounded(&mut ctl.d_history, d, len);
        let decision = ctl.q.decide(Some(state), (!first).then_some(reward));
        let mut applied = Vec::new();
        let mut applied_values = Vec::new();
        for (i, (_, _, scale)) in decision.actions.iter().enumerate() {
            ctl.scales[i] = *scale;
            let (field, base) = ctl.bases[i].clone();
            let lr = (base * scale).clamp(1e-8, 1.0);
            self.trainer
                .set_live(&field, lr)
                .map_err(EngineError::Model)?;
            applied_values.push((field.clone(), lr));
            applied.push((field, *scale));
        }
        let step = self.c.step + 1;
        let mut extra = vec![("ctl_epsilon".to_string(), decision.epsilon)];
        if let Some(r) = decision.reward {
            extra.push(("ctl_reward".to_string(), r));
        }
        for (field, scale) in &applied {
            extra.push((
                format!("ctl_{}_scale", field.rsplit('.').next().unwrap_or(field)),
                *scale,
            ));
        }
        for (k, v) in extra {
            self.c.accum.insert(k, (v, 1));
        }
        let mut event = decision.into_event(step, &decision_name(&cfg.metric), applied_values);
        if let Event::Controller { actions, .. } = &mut event {
            // The steered fields by name, rather than the action sets'.
            *actions = applied;
        }
        self.emitter.emit(event)
    }

    fn phase_done(&self) -> bool {
        match self.plan.preset.preset().phases()[self.c.phase].length {
            PhaseLength::Minutes(m) => self.c.phase_elapsed_secs >= m * 60.0,
            _ => self.c.phase_end_step.is_some_and(|end| self.c.step >= end),
        }
    }

    fn main_loop(&mut self, commands: &Receiver<Command>) -> Result<(u64, Outcome), EngineError> {
        let mut paused = false;
        let mut skip_phase = false;
        loop {
            if skip_phase || self.phase_done() {
                skip_phase = false;
                self.checkpoint(false, None)?;
                let next = self.c.phase + 1;
                if next >= self.plan.preset.preset().phases().len() {
                    return self.end(Outcome::Completed);
                }
                self.start_phase(next, true)?;
                continue;
            }
            if self.plan.step_limit.is_some_and(|l| self.c.step >= l) {
                self.checkpoint(false, None)?;
                return self.end(Outcome::Completed);
            }
            // Commands between steps; while paused, wait for them.
            loop {
                let cmd = if paused {
                    match commands.recv_timeout(Duration::from_millis(200)) {
                        Ok(c) => Some(c),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => Some(Command::Stop),
                    }
                } else {
                    commands.try_recv().ok()
                };
                let Some(cmd) = cmd else {
                    if paused {
                        continue;
                    }
                    break;
                };
                match cmd {
                    Command::Pause if !paused => {
                        paused = true;
                        self.emitter.emit(Event::Paused { step: self.c.step })?;
                    }
                    Command::Resume if paused => {
                        paused = false;
                        self.emitter.emit(Event::Resumed { step: self.c.step })?;
                    }
                    Command::Pause | Command::Resume => {}
                    Command::Stop => return self.end(Outcome::Stopped),
                    Command::StopAndSave => {
                        self.checkpoint(false, None)?;
                        return self.end(Outcome::Stopped);
                    }
                    Command::CheckpointNow => self.checkpoint(false, None)?,
                    Command::SkipPhase => {
                        skip_phase = true;
                        if paused {
                            paused = false;
                            self.emitter.emit(Event::Resumed { step: self.c.step })?;
                        }
                        break;
                    }
                    Command::SetHyperparameter { name, value } => self.set_live(&name, value)?,
                }
            }
            if skip_phase {
                continue;
            }
            self.step()?;
        }
    }

    fn set_live(&mut self, name: &str, value: f64) -> Result<(), EngineError> {
        // A controlled learning rate set by hand becomes the controller's new base.
        let scaled = self.ctl.as_mut().and_then(|c| {
            let i = c.bases.iter().position(|(f, _)| f == name)?;
            c.bases[i].1 = value;
            Some(value * c.scales[i])
        });
        match self.trainer.set_live(name, scaled.unwrap_or(value)) {
            Ok(old) => self.emitter.emit(Event::HyperparameterChanged {
                step: self.c.step,
                name: name.to_string(),
                old,
                new: value,
            }),
            Err(why) => self.emitter.emit(Event::Log {
                step: self.c.step,
                level: Level::Warning,
                message: format!("refused: {why}"),
            }),
        }
    }

    fn step(&mut self) -> Result<(), EngineError> {
        let ctx = StepCtx {
            step: self.c.step,
            epoch: self.c.epoch,
            batch_in_epoch: self.c.batch_in_epoch,
        };
        let t0 = Instant::now();
        self.emitter.step = ctx.step;
        // A panic inside a step (an infallible tch call that met a libtorch error) fails the
        // run like an error does; the panic hook keeps it off the terminal.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            injected_failure(ctx.step)?;
            self.trainer.train_step(&ctx)
        }));
        let failed = match result {
            Ok(Ok(scalars)) => Ok(scalars),
            Ok(Err(e)) => Err(e),
            Err(panic) => Err(StepError::new("the training step", panic_text(&*panic))),
        };
        let mut scalars = match failed {
            Ok(s) => s,
            Err(e) => return Err(self.step_failed(&e)),
        };
        if crate::engine::failpoint("nan-loss", ctx.step) {
            scalars.insert(0, ("d_loss", f64::NAN));
        }
        self.c.phase_elapsed_secs += t0.elapsed().as_secs_f64();
        if let Some((name, v)) = scalars.iter().find(|(_, v)| !v.is_finite()) {
            let last = checkpoint::resolve(&self.plan.run_dir.checkpoints()).map_or_else(
                |_| "none was written".to_string(),
                |p| p.display().to_string(),
            );
            let message = format!(
                "{name} became {v} at step {}; the run was stopped. Last good checkpoint: {last}",
                self.c.step
            );
            self.emitter.emit(Event::Health {
                step: self.c.step,
                signal: HealthSignal::NonFiniteLoss,
                message: message.clone(),
                suggestion: self.trainer.non_finite_advice().into(),
            })?;
            return Err(EngineError::NonFinite(message));
        }
        self.control(&scalars)?;
        self.emit_family_events()?;
        for (k, v) in scalars {
            let e = self.c.accum.entry(k.to_string()).or_insert((0.0, 0));
            if ["lr", "ctl_", "momentum", "lambda_", "heur_", "active_"]
                .iter()
                .any(|p| k.starts_with(p))
            {
                // Settings are logged as their current value, not averaged over the interval.
                *e = (v, 1);
            } else {
                e.0 += v;
                e.1 += 1;
            }
        }
        self.c.step += 1;
        self.c.batch_in_epoch += 1;
        if self.c.batch_in_epoch >= self.trainer.steps_per_epoch() {
            self.c.batch_in_epoch = 0;
            self.c.epoch += 1;
        }
        let (log_every, sample_every, validate_every, ckpt_every, _) = cadences(&self.cfg);
        let step = self.c.step;
        if step.is_multiple_of(log_every.max(1)) {
            self.log_scalars(Vec::new())?;
        }
        // Dense early, then every N (`core::cadence`): a new run shows samples and a
        // validation point within its first steps.
        if due(step, sample_every).is_some() {
            self.sample()?;
        }
        if let Some(when) = due(step, validate_every) {
            self.validate(when == Due::Regular)?;
        }
        if ckpt_every > 0 && step.is_multiple_of(ckpt_every) {
            self.checkpoint(false, None)?;
        }
        self.csv_flush()
    }

    /// Adds values to this step's `losses.csv` row.
    fn csv_merge(&mut self, values: &[(String, f64)]) {
        if self.csv_row.is_empty() {
            self.csv_row = vec![
                ("step".into(), self.c.step as f64),
                ("epoch".into(), self.c.epoch as f64),
                ("phase".into(), self.c.phase as f64),
            ];
        }
        for (k, v) in values {
            match self.csv_row.iter_mut().find(|(n, _)| n == k) {
                Some(slot) => slot.1 = *v,
                None => self.csv_row.push((k.clone(), *v)),
            }
        }
    }

    /// Writes this step's row, if it has one.
    fn csv_flush(&mut self) -> Result<(), EngineError> {
        if self.csv_row.is_empty() {
            return Ok(());
        }
        let row = std::mem::take(&mut self.csv_row);
        self.csv.append(&row).map_err(EngineError::from)
    }

    /// Logs a failed step in full and returns the one line that fails the run.
    fn step_failed(&mut self, e: &StepError) -> EngineError {
        let phase = &self.plan.preset.preset().phases()[self.c.phase].name;
        let at = format!("step {} (phase `{phase}`)", self.c.step);
        let _ = self.emitter.emit(Event::Log {
            step: self.c.step,
            level: Level::Error,
            message: format!("{at}: {} failed: {}", e.what, e.detail),
        });
        EngineError::Step(format!("{at}: {e}"))
    }

    fn log_scalars(&mut self, extra: Vec<(String, f64)>) -> Result<(), EngineError> {
        let mut values: Vec<(String, f64)> = vec![
            ("epoch".into(), self.c.epoch as f64),
            ("phase".into(), self.c.phase as f64),
        ];
        for (k, (sum, n)) in std::mem::take(&mut self.c.accum) {
            if n > 0 {
                values.push((k, sum / n as f64));
            }
        }
        values.extend(extra);
        let get = |k: &str| values.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
        if let Some(d) = get("d_loss") {
            let findings = self.health.observe(self.c.step, d, get("g_loss"));
            self.emit_findings(findings)?;
        }
        self.csv_merge(&values);
        self.emitter.scalars(ScalarRow {
            step: self.c.step,
            wall_time: unix_now(),
            values,
        })
    }

    fn emit_family_events(&mut self) -> Result<(), EngineError> {
        for event in self.trainer.drain_events() {
            self.emitter.emit(event)?;
        }
        Ok(())
    }

    /// Writes `img` as PNG at `rel` in the run directory.
    fn save_png(&self, rel: &str, img: &Rgba) -> Result<(), EngineError> {
        let path = self.plan.run_dir.root().join(rel);
        image::save_buffer(
            &path,
            &img.pixels,
            img.width,
            img.height,
            image::ExtendedColorType::Rgba8,
        )
        .map_err(|e| {
            EngineError::RunDir(crate::core::rundir::RunDirError::Io {
                path: path.clone(),
                message: e.to_string(),
            })
        })
    }

    /// Writes a reconstruction's two images and emits its event.
    fn emit_reconstruction(&mut self, r: Reconstruction) -> Result<(), EngineError> {
        let truth_path = format!("media/{}-truth-step-{:08}.png", r.split, self.c.step);
        let recon_path = format!("media/{}-recon-step-{:08}.png", r.split, self.c.step);
        self.save_png(&truth_path, &r.truth)?;
        self.save_png(&recon_path, &r.recon)?;
        self.emitter.emit(Event::Reconstruction {
            step: self.c.step,
            split: r.split,
            truth: truth_path,
            recon: recon_path,
            width: r.truth.width,
            height: r.truth.height,
            frames: r.frames,
            boxes: r.boxes,
            motion_boxes: r.motion_boxes,
            truth_rgba: r.truth.pixels,
            recon_rgba: r.recon.pixels,
        })
    }

    fn emit_findings(&mut self, findings: Vec<Finding>) -> Result<(), EngineError> {
        for f in findings {
            self.emitter.emit(Event::Health {
                step: f.step,
                signal: f.signal,
                message: f.message,
                suggestion: f.suggestion,
            })?;
        }
        Ok(())
    }

    fn sample(&mut self) -> Result<(), EngineError> {
        let grid = self.trainer.sample_grid();
        let rel = format!("media/samples-step-{:08}.png", self.c.step);
        self.save_png(&rel, &grid)?;
        self.emitter.emit(Event::Sample {
            step: self.c.step,
            path: rel,
            width: grid.width,
            height: grid.height,
            rgba: grid.pixels,
        })?;
        if let Some(r) = self.trainer.reconstruction() {
            self.emit_reconstruction(r)?;
        }
        Ok(())
    }

    /// Validates; `may_keep_best`: whether an improvement writes the phase's best checkpoint
    /// (the early points do not, so the first seconds write no checkpoints).
    fn validate(&mut self, may_keep_best: bool) -> Result<(), EngineError> {
        let Some(v) = self.trainer.validate() else {
            return self.emit_family_events();
        };
        self.emit_family_events()?;
        if let Some(r) = self.trainer.pending_reconstruction() {
            self.emit_reconstruction(r)?;
        }
        if let Some(ratio) = v.diversity_ratio {
            if let Some(f) = self.health.observe_diversity(self.c.step, ratio) {
                self.emit_findings(vec![f])?;
            }
        }
        let row: Vec<(String, f64)> = v
            .scalars
            .iter()
            .map(|(k, x)| ((*k).to_string(), *x))
            .collect();
        self.emitter.scalars(ScalarRow {
            step: self.c.step,
            wall_time: unix_now(),
            values: row.clone(),
        })?;
        self.csv_merge(&row);
        let improved = self.best.phases.get(&self.c.phase).is_none_or(|b| {
            if v.higher_is_better {
                v.metric > b.metric
            } else {
                v.metric < b.metric
            }
        });
        if may_keep_best && improved && v.metric.is_finite() {
            self.checkpoint(true, Some(v.metric))?;
        }
        Ok(())
    }

    fn checkpoint(&mut self, best: bool, metric: Option<f64>) -> Result<(), EngineError> {
        // The rows up to this step are on disk before the checkpoint that a resume rewinds to.
        self.csv_flush()?;
        let ckpts = self.plan.run_dir.checkpoints();
        let dir = if self.last_checkpoint_step == Some(self.c.step) {
            ckpts.join(checkpoint::dir_name(self.c.step))
        } else {
            let live: serde_json::Map<String, serde_json::Value> = self
                .trainer
                .live_values()
                .into_iter()
                .map(|(k, v)| (k.to_string(), serde_json::Value::from(v)))
                .collect();
            let state = serde_json::json!({
                "family": self.cfg.family().name(),
                "signature": self.trainer.signature(),
                "session": self.c,
                "live": live,
                "controller": self.ctl,
                "family_state": self.trainer.family_state(),
                "written_at": unix_now(),
            });
            let dir =
                checkpoint::write(&ckpts, self.c.step, &self.trainer.state_tensors(), &state)?;
            self.last_checkpoint_step = Some(self.c.step);
            dir
        };
        let name = checkpoint::dir_name(self.c.step);
        if best {
            self.best.phases.insert(
                self.c.phase,
                BestEntry {
                    dir: name,
                    step: self.c.step,
                    metric: metric.unwrap_or(f64::NAN),
                },
            );
            checkpoint::write_best(&ckpts, &self.best)?;
        }
        let (_, _, _, _, keep_last) = cadences(&self.cfg);
        checkpoint::prune(&ckpts, keep_last as usize)?;
        self.emitter.emit(Event::CheckpointSaved {
            step: self.c.step,
            path: rel_path(self.plan.run_dir.root(), &dir),
            best,
            metric,
        })?;
        self.emitter.sync()
    }

    fn end(&mut self, outcome: Outcome) -> Result<(u64, Outcome), EngineError> {
        if self.c.accum.values().any(|(_, n)| *n > 0) {
            self.log_scalars(Vec::new())?;
        }
        let (_, sample_every, _, _, _) = cadences(&self.cfg);
        if due(self.c.step, sample_every).is_none() {
            self.sample()?;
        }
        self.csv_flush()?;
        Ok((self.c.step, outcome))
    }
}

fn rel_path(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

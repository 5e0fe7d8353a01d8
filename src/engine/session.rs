//! The training loop shared by every family: phases, commands between steps, cadences (log,
//! sample, validate, checkpoint), loss health, exact resume.
//!
//! Determinism: every random draw of step N comes from a generator seeded with
//! `(seed, step N)`, and the data order of epoch E from `(seed, E)`, so a run resumed from a
//! checkpoint takes exactly the steps an uninterrupted run takes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use serde::{Deserialize, Serialize};
use tch::Device;

use crate::core::cadence::{due, Due};
use crate::core::health::{Finding, Guard, HealthMonitor, Remedy, StepView, Trigger};
use crate::core::preset::{AnyPreset, PhaseLength, ValidatedPreset};
use crate::core::protocol::{
    Aggregate, Command, Event, HealthRole, HealthSignal, Level, MetricDef, MetricKind, Outcome,
    ScalarRow,
};
use crate::core::rundir::{CsvLog, RunDir, RunDirError};
use crate::core::signals::StopSignal;
use crate::core::steptime;
use crate::core::timefmt::unix_now;
use crate::engine::checkpoint::{self, BestEntry, Loaded};
use crate::engine::data::volumes::write_nifti;
use crate::engine::emitter::Emitter;
use crate::engine::families::make_trainer;
use crate::engine::lr_control::{self, LrControl};
use crate::engine::trainer::{
    injected_failure, panic_text, PhaseAt, Reconstruction, Rgba, StepCtx, StepError, Trainer,
    VolumePair,
};
use crate::engine::{dist, timing, watch, EngineError};

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
    /// The guard's rollbacks so far (carried across the rollbacks themselves).
    #[serde(default)]
    pub rollbacks: u32,
    /// The data orders the guard drew again (`reseed`); 0 is the run's own order.
    #[serde(default)]
    pub reseeds: u64,
}

/// How a run that did not fail ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Ended {
    pub step: u64,
    pub outcome: Outcome,
    /// The stop signal that ended it, with a checkpoint of `step`.
    pub signal: Option<String>,
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
    /// Modules whose per-layer statistics are captured from the start (`--watch`).
    pub watch: Vec<crate::core::protocol::WatchSpec>,
    /// The run folder's lock, held from preparation to the end of the run.
    pub(crate) _lock: crate::core::rundir::RunLock,
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
    /// Every scalar of the run: the session's, the trainer's and the controller's.
    metrics: Vec<MetricDef>,
    /// Scalars reported without a declaration, said once in the log.
    undeclared: Vec<String>,
    /// When `heartbeat` was last written.
    last_beat: Option<std::time::Instant>,
    /// Rank 0 of a data-parallel run, or the only process: it writes the checkpoints and
    /// media (the other ranks only their log).
    root: bool,
    /// Seconds in training steps since this process started the run.
    step_secs: f64,
    /// A stop signal this rank received, not yet exchanged with the others.
    signal_here: Option<String>,
    /// The stop signal every rank has agreed to stop on, at the next step boundary.
    stop_by: Option<StopBy>,
    /// Live edits a resumed run makes again, at the steps they were made: `(step, field,
    /// value)` in order.
    replay: std::collections::VecDeque<(u64, String, f64)>,
    /// The guard's detectors (`health.guard`).
    guard: Guard,
    /// `losses.csv`'s columns, to open it again after a rollback.
    columns: Vec<String>,
    /// A sweep's trial (rank 0 only): where it reports and what.
    trial: Option<Trial>,
    /// The scheduler stopped this trial; under data parallelism every rank stops after the
    /// next exchange.
    sched_here: bool,
    /// The last steps' parts, for the bottleneck and straggler verdicts.
    times: steptime::Window,
    /// The step times and system samples since the last logged row (`engine::timing`,
    /// `engine::sysmon`): this rank's, kept out of the counters a checkpoint holds (ranks and
    /// resumes measure their own).
    time_accum: BTreeMap<String, (f64, u64)>,
    /// Each timed part and its logged name (`time_<part>_ms`), in the order they are logged.
    time_parts: Vec<(&'static str, String)>,
    /// The process and device sampler (`logging.system_every_ms`).
    sysmon: Option<crate::engine::sysmon::Sampler>,
    /// The modules watched (`engine::watch`) and every variable's name.
    watches: watch::Watches,
    var_names: Vec<String>,
    /// Commands from the run folder's inbox (`core::inbox`) to apply at the next boundary,
    /// with their ids when the sender waits for an answer.
    inbox: std::collections::VecDeque<(Option<String>, Command)>,
    /// Rank 0's inbox commands not yet sent to the other ranks (data parallelism: they go with
    /// the next step's exchange, and every rank applies them at the boundary after it).
    inbox_held: Vec<(Option<String>, Command)>,
    /// When the inbox was last read.
    inbox_read_at: Option<Instant>,
    /// The bottleneck and the straggling rank last said, so each is said when it changes.
    said_bottleneck: Option<&'static str>,
    said_straggler: Option<usize>,
}

/// Why every rank stops at the next step boundary, with a checkpoint.
#[derive(Debug, Clone)]
enum StopBy {
    /// A stop signal (`SIGTERM`), with the ranks it reached when several train.
    Signal { name: String, reach: Option<String> },
    /// The sweep's scheduler stopped this trial.
    Scheduler,
}

/// A sweep's trial: its link to the sweep's state, the metric it reports and its direction.
#[derive(Debug)]
struct Trial {
    link: crate::core::pruner::TrialLink,
    metric: String,
    higher: bool,
}

/// The trial a run folder is, with the metric its scheduler ranks: the one the sweep names,
/// else the family's main validation metric (else its first), in its declared direction.
fn trial_of(
    dir: &Path,
    metrics: &[MetricDef],
) -> Result<Option<Trial>, crate::core::pruner::PrunerError> {
    let Some(link) = crate::core::pruner::TrialLink::read(dir) else {
        return Ok(None);
    };
    let state = crate::core::pruner::read(&link.state)?;
    let validation = |m: &&MetricDef| matches!(m.kind, MetricKind::Validation { .. });
    let named = state
        .scheduler
        .as_ref()
        .and_then(crate::core::pruner::Scheduler::metric);
    let def = match named {
        Some(name) => metrics.iter().filter(validation).find(|m| m.name == name),
        None => metrics
            .iter()
            .filter(validation)
            .find(|m| m.main)
            .or_else(|| metrics.iter().find(validation)),
    };
    let Some(def) = def else {
        return Err(crate::core::pruner::PrunerError::Config(format!(
            "it ranks `{}`, which this family does not validate",
            named.unwrap_or("a validation metric")
        )));
    };
    Ok(Some(Trial {
        link,
        metric: def.name.clone(),
        higher: def.kind
            == (MetricKind::Validation {
                higher_is_better: true,
            }),
    }))
}

/// The trainer's state by name: the same order in every process, as the collectives pair
/// tensors by position.
fn state_in_order(trainer: &mut dyn Trainer) -> Vec<(String, tch::Tensor)> {
    let mut named = trainer.state_tensors();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
}

/// Overwrites the trainer's state tensors that `which` picks by name with rank 0's (a no-op
/// alone). The ranks first agree on the names: lists of different lengths or order would
/// pair unrelated tensors in the broadcast.
fn take_roots(trainer: &mut dyn Trainer, which: impl Fn(&str) -> bool) -> Result<(), EngineError> {
    if dist::group().is_none() {
        return Ok(());
    }
    let (names, tensors): (Vec<String>, Vec<tch::Tensor>) = state_in_order(trainer)
        .into_iter()
        .filter(|(name, _)| which(name))
        .unzip();
    let listed = tch::Tensor::from_slice(names.join("\n").as_bytes());
    if dist::ranks_agree(std::slice::from_ref(&listed))?.is_none() {
        return Err(EngineError::Model(format!(
            "the data-parallel ranks hold different sets of state tensors ({} here); they cannot be made one model",
            names.len()
        )));
    }
    dist::broadcast_from_root(&tensors)?;
    Ok(())
}

/// Rank 0's parameters, buffers and optimiser state: every data-parallel rank starts,
/// resumes and enters a phase with one model.
fn take_roots_state(trainer: &mut dyn Trainer) -> Result<(), EngineError> {
    take_roots(trainer, |_| true)
}

/// Rank 0's BatchNorm running statistics: each rank's follow its own data between these
/// points, as in torch's DDP without SyncBatchNorm; validation, the checks and checkpoints
/// use rank 0's.
fn take_roots_statistics(trainer: &mut dyn Trainer) -> Result<(), EngineError> {
    take_roots(trainer, |name| {
        name.ends_with("running_mean") || name.ends_with("running_var")
    })
}

/// The scalars the session itself logs.
fn session_metrics() -> Vec<MetricDef> {
    vec![MetricDef::counter("epoch"), MetricDef::counter("phase")]
}

/// The learning-rate fields the session's controller scales, as live names.
fn lr_fields(preset: &AnyPreset) -> Vec<String> {
    let f = preset.front().lr_fields();
    std::iter::once(f.generator)
        .chain(f.critic.iter().copied())
        .map(str::to_string)
        .collect()
}

/// Every scalar of a run, in the order of `losses.csv`'s columns.
fn declared_metrics(preset: &ValidatedPreset, trainer: &dyn Trainer) -> Vec<MetricDef> {
    let mut all = session_metrics();
    all.extend(trainer.metrics());
    all.push(MetricDef::timing(timing::STEP_MS));
    all.extend(
        trainer
            .timed_parts()
            .iter()
            .chain(&timing::SHARED)
            .map(|p| MetricDef::timing(&timing::metric_name(p))),
    );
    let controlled = (0..preset.preset().phases().len().max(1))
        .any(|i| preset.for_phase(i).lr_control().enabled);
    if controlled {
        let fields = lr_fields(preset.preset());
        let names: Vec<&str> = fields.iter().map(String::as_str).collect();
        all.extend(lr_control::metrics(&names));
    }
    all
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
) -> Result<Ended, EngineError> {
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
    // Read before anything is written, so a bad checkpoint leaves the run as it was.
    let saved_ctl: Option<LrControl> = match loaded
        .as_ref()
        .and_then(|l| l.state.get("controller"))
        .filter(|v| !v.is_null())
    {
        Some(v) => Some(serde_json::from_value(v.clone()).map_err(|e| {
            EngineError::BadInput(format!("checkpoint: bad controller state: {e}"))
        })?),
        None => None,
    };
    // The phase's configuration, with the live edits in force when the checkpoint was written.
    let mut cfg = plan.preset.for_phase(c.phase);
    let live = loaded
        .as_ref()
        .and_then(|l| l.state.get("live"))
        .and_then(|v| v.as_object());
    for (k, v) in live.into_iter().flatten() {
        if let Some((changed, _, _)) = v.as_f64().and_then(|v| cfg.with_live(k, v).ok()) {
            cfg = changed;
        }
    }
    let mut trainer = make_trainer(&cfg, plan.device)?;
    let mut metrics = declared_metrics(&plan.preset, trainer.as_ref());
    let cuda = match plan.device {
        Device::Cuda(i) => Some(i),
        _ => None,
    };
    let sysmon = match plan.preset.preset().logging().system_every() {
        Some(every) => Some(
            crate::engine::sysmon::Sampler::start(every, cuda)
                .map_err(|e| EngineError::Model(format!("starting the system sampler: {e}")))?,
        ),
        None => None,
    };
    metrics.extend(
        sysmon
            .iter()
            .flat_map(|s| s.names())
            .map(|n| MetricDef::system(n)),
    );
    if let Some(ckpt) = &loaded {
        trainer
            .load_state(ckpt)
            .map_err(|e| EngineError::BadInput(e.to_string()))?;
        trainer
            .apply_preset(&cfg)
            .map_err(|e| EngineError::BadInput(e.to_string()))?;
        trainer.reseed_data(c.reseeds);
        checkpoint::supersede_after(&plan.run_dir.checkpoints(), c.step)?;
    }
    take_roots_state(trainer.as_mut())?;
    let rewind_to = loaded
        .as_ref()
        .map(|_| c.step)
        .or(plan.restart.then_some(0));
    // Read before this start is logged: the run's own edits from the checkpoint's step on (a
    // branch's log starts at its fork, so its parent's later edits are not its).
    let replay: std::collections::VecDeque<_> = match (&loaded, rewind_to) {
        (Some(_), Some(from)) => crate::core::runlog::read_all(&plan.run_dir.events_path())
            .map(|log| edits_to_replay(&log.events, from))
            .unwrap_or_default()
            .into(),
        _ => Default::default(),
    };
    let columns: Vec<&str> = std::iter::once("step")
        .chain(metrics.iter().filter(|m| m.csv).map(|m| m.name.as_str()))
        .collect();
    let csv = CsvLog::open(&plan.run_dir.csv_path(), &columns, rewind_to)?;
    let columns: Vec<String> = columns.iter().map(|c| (*c).to_string()).collect();
    let total_steps = estimate_total(&plan.preset, trainer.steps_per_epoch())
        .map(|t| plan.step_limit.map_or(t, |l| l.min(t)));
    emitter.emit(Event::RunStarted {
        run_dir: plan.run_dir.root().display().to_string(),
        name: plan.preset.preset().name().to_string(),
        family: plan.preset.preset().family().name().to_string(),
        device: crate::engine::device::describe(plan.device),
        total_steps: total_steps.or(plan.step_limit),
        resumed_from: rewind_to,
        restarted: plan.restart,
        branch_of: crate::core::branch::read(plan.run_dir.root())
            .filter(|l| rewind_to == Some(l.fork_step))
            .map(|l| crate::core::protocol::BranchOf {
                parent: l.parent.display().to_string(),
                fork_step: l.fork_step,
                changes: l.describe_changes(),
            }),
        wall_time: unix_now(),
        metrics: metrics.clone(),
    })?;
    let info = |emitter: &mut Emitter, step, message: String| {
        emitter.emit(Event::Log {
            step,
            level: Level::Info,
            message,
        })
    };
    info(emitter, c.step, trainer.describe())?;
    let (rank, world) = dist::rank_and_world();
    if world > 1 {
        info(
            emitter,
            c.step,
            format!("data-parallel rank {rank} of {world} (c10d {:?}): each rank trains the preset's batch, so the global batch is {world} times it; gradients are averaged over the ranks after every backward", dist::group().map_or(dist::Backend::Gloo, dist::ProcessGroup::backend)),
        )?;
    }
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
        health: HealthMonitor::new(cfg.health().clone()),
        trainer,
        cfg,
        c,
        emitter,
        csv,
        best: checkpoint::read_best(&plan.run_dir.checkpoints()),
        last_checkpoint_step: None,
        ctl: None,
        csv_row: Vec::new(),
        metrics,
        undeclared: Vec::new(),
        last_beat: None,
        root: rank == 0,
        step_secs: 0.0,
        signal_here: None,
        stop_by: None,
        replay,
        guard: Guard::default(),
        columns,
        trial: None,
        sched_here: false,
        times: steptime::Window::default(),
        time_accum: BTreeMap::new(),
        time_parts: Vec::new(),
        sysmon,
        watches: watch::Watches::default(),
        var_names: Vec::new(),
        inbox: std::collections::VecDeque::new(),
        inbox_held: Vec::new(),
        inbox_read_at: None,
        said_bottleneck: None,
        said_straggler: None,
    };
    if s.root {
        match trial_of(s.plan.run_dir.root(), &s.metrics) {
            Ok(t) => s.trial = t,
            Err(e) => s.emitter.emit(Event::Log {
                step: s.c.step,
                level: Level::Warning,
                message: format!("sweep trial: {e}; it trains to its full budget"),
            })?,
        }
        if let Some(t) = &s.trial {
            let message = format!(
                "trial `{}` of the sweep in {}: reports {} at each validation to its scheduler",
                t.link.trial,
                t.link.state.parent().unwrap_or(Path::new("")).display(),
                t.metric
            );
            s.emitter.emit(Event::Log {
                step: s.c.step,
                level: Level::Info,
                message,
            })?;
        }
    }
    match saved_ctl {
        // The controller goes on where it was, when the phase still has it on the same rates.
        Some(mut ctl) if s.cfg.lr_control().enabled && ctl.scales_fields(&lr_fields(&s.cfg)) => {
            ctl.apply(s.trainer.as_mut(), false)?;
            s.ctl = Some(ctl);
        }
        // Control was switched off or changed since the checkpoint (or came after it): the
        // phase's own rates, and a new controller if it asks for one.
        _ if !fresh => s.setup_control()?,
        _ => {}
    }
    drop(loaded);
    if fresh {
        s.start_phase(0, false)?;
    }
    for (name, value) in &plan.live_overrides {
        s.set_live(name, *value)?;
    }
    s.register_modules()?;
    for spec in &plan.watch {
        s.watch(spec.clone())?;
    }
    s.main_loop(commands)
}

/// The live edits a run resumed from `from` makes again: those its log holds at or after that
/// step, in order. Each earlier resume in the log discards what the log held from its own step
/// on (that attempt made those edits again, and logged them again).
fn edits_to_replay(events: &[Event], from: u64) -> Vec<(u64, String, f64)> {
    let mut edits: Vec<(u64, String, f64)> = Vec::new();
    for e in events {
        match e {
            Event::RunStarted {
                resumed_from: Some(r),
                ..
            }
            | Event::Rollback { to_step: r, .. } => edits.retain(|(at, _, _)| at < r),
            Event::HyperparameterChanged {
                step, name, new, ..
            } => {
                edits.push((*step, name.clone(), *new));
            }
            _ => {}
        }
    }
    edits.retain(|(at, _, _)| *at >= from);
    edits
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

/// The trigger every rank acts on: its own alone; under data parallelism rank 0's (one scalar
/// broadcast a step, and the trigger's text when there is one), so every rank rolls back at
/// the same step to the same checkpoint. A rank whose own losses went non-finite while rank
/// 0's did not is caught a step later, when the averaged gradients reach rank 0's loss.
fn agree_on_trigger(seen: Option<Trigger>) -> Result<Option<Trigger>, EngineError> {
    if dist::group().is_none() {
        return Ok(seen);
    }
    if dist::root_value(if seen.is_some() { 1.0 } else { 0.0 })? == 0.0 {
        return Ok(None);
    }
    let text = serde_json::to_string(&seen).unwrap_or_default();
    let said = dist::broadcast_text(&text)?;
    serde_json::from_str::<Option<Trigger>>(&said)
        .ok()
        .flatten()
        .map(Some)
        .ok_or_else(|| {
            EngineError::Model(format!("rank 0's guard trigger could not be read: {said}"))
        })
}

impl Session<'_> {
    fn start_phase(&mut self, index: usize, load_best: bool) -> Result<(), EngineError> {
        let phases = self.plan.preset.preset().phases();
        let phase = &phases[index];
        self.cfg = self.plan.preset.for_phase(index);
        self.trainer.apply_preset(&self.cfg)?;
        self.health.set_config(self.cfg.health().clone());
        let mut loaded_from = None;
        if load_best && phase.start_from_best {
            // Rank 0 picks the checkpoint (it alone keeps the best index) and every rank loads
            // it, as every rank loads the checkpoint a run resumes from: optimiser counters,
            // controllers and switching state come with it, which a broadcast of tensors
            // cannot carry.
            let picked = if self.root {
                self.pick_phase_start(index)
            } else {
                Ok(PathBuf::new())
            };
            let message = match &picked {
                Ok(dir) => serde_json::json!({ "dir": dir }),
                Err(e) => serde_json::json!({ "error": e.to_string() }),
            };
            let said: serde_json::Value =
                serde_json::from_str(&dist::broadcast_text(&message.to_string())?)
                    .unwrap_or_default();
            let dir = match (picked, said.get("dir").and_then(|d| d.as_str())) {
                (Err(e), _) => return Err(e),
                (Ok(_), Some(dir)) => PathBuf::from(dir),
                (Ok(_), None) => {
                    return Err(EngineError::Model(format!(
                        "phase `{}`: rank 0 could not pick the checkpoint to start from: {}",
                        phase.name,
                        said.get("error")
                            .and_then(|e| e.as_str())
                            .unwrap_or("no answer")
                    )))
                }
            };
            let ckpt = checkpoint::read(&dir)?;
            self.trainer.load_state(&ckpt)?;
            self.trainer.apply_preset(&self.cfg)?;
            loaded_from = Some(dir.display().to_string());
            // Every rank loaded the same files: proven here rather than assumed.
            self.check_ranks(false)?;
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

    /// The checkpoint phase `index` starts from: the previous phase's best, or its last when
    /// it had no validation (said as a warning).
    fn pick_phase_start(&mut self, index: usize) -> Result<PathBuf, EngineError> {
        let ckpts = self.plan.run_dir.checkpoints();
        if let Some(b) = self.best.phases.get(&(index - 1)) {
            return Ok(ckpts.join(&b.dir));
        }
        let name = &self.plan.preset.preset().phases()[index].name;
        self.emitter.emit(Event::Log {
            step: self.c.step,
            level: Level::Warning,
            message: format!("phase `{name}` starts from the previous phase's best checkpoint, but it had no validation; using its last checkpoint"),
        })?;
        Ok(checkpoint::resolve(&ckpts)?)
    }

    /// Creates the controller when the phase enables it (keeping a running one, whose scales
    /// start again at 1 on the new phase's learning rates), or drops it when the phase
    /// disables it (the rates are then the phase's own).
    fn setup_control(&mut self) -> Result<(), EngineError> {
        let cfg = self.cfg.lr_control().clone();
        if !cfg.enabled {
            if let Some(mut ctl) = self.ctl.take() {
                ctl.apply(self.trainer.as_mut(), true)?;
            }
            return Ok(());
        }
        let fields = lr_fields(&self.cfg);
        match &mut self.ctl {
            Some(c) if c.scales_fields(&fields) => c.apply(self.trainer.as_mut(), true)?,
            _ => {
                let seed = crate::core::rng::derive_seed(
                    self.cfg.seed(),
                    crate::core::rng::Stream::Control,
                    0,
                );
                let mut ctl = LrControl::new(&cfg, fields, seed)?;
                ctl.apply(self.trainer.as_mut(), true)?;
                self.ctl = Some(ctl);
            }
        }
        Ok(())
    }

    /// The name of the declared metric with a health role.
    fn role(&self, role: HealthRole) -> Option<&str> {
        self.metrics
            .iter()
            .find(|m| m.role == Some(role))
            .map(|m| m.name.as_str())
    }

    /// Feeds one step's scalars to the controller; at the end of its interval it decides new
    /// scales, the trainer applies them, and the decision is emitted.
    fn control(&mut self, scalars: &[(&'static str, f64)]) -> Result<(), EngineError> {
        // Called every step: nothing is cloned unless a controller runs.
        let Some(mut ctl) = self.ctl.take() else {
            return Ok(());
        };
        let critic = self.role(HealthRole::CriticLoss).map(str::to_string);
        let decided = ctl.step(
            self.cfg.lr_control(),
            self.c.step,
            scalars,
            critic.as_deref(),
            self.trainer.as_mut(),
            &self.cfg,
        );
        self.ctl = Some(ctl);
        let Some(decided) = decided? else {
            return Ok(());
        };
        for (k, v) in decided.scalars {
            self.c.accum.insert(k, (v, 1));
        }
        self.emitter.emit(decided.event)
    }

    /// Writes the run's heartbeat every [`HEARTBEAT_EVERY_SECS`] (a failed write only delays
    /// the next one: the heartbeat is a hint for viewers on other machines).
    fn beat(&mut self) {
        let due = self
            .last_beat
            .is_none_or(|t| t.elapsed().as_secs_f64() >= crate::core::rundir::HEARTBEAT_EVERY_SECS);
        if due {
            let now = crate::core::timefmt::unix_now().max(0.0) as u64;
            let _ = self.plan.run_dir.write_heartbeat(now);
            self.last_beat = Some(std::time::Instant::now());
        }
    }

    fn phase_done(&self) -> bool {
        match self.plan.preset.preset().phases()[self.c.phase].length {
            PhaseLength::Minutes(m) => self.c.phase_elapsed_secs >= m * 60.0,
            _ => self.c.phase_end_step.is_some_and(|end| self.c.step >= end),
        }
    }

    fn main_loop(&mut self, commands: &Receiver<Command>) -> Result<Ended, EngineError> {
        let mut paused = false;
        let mut skip_phase = false;
        loop {
            self.beat();
            if self.stop_by.is_some() {
                return self.stop_by_signal();
            }
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
            // A resumed run's live edits, at the steps they were made (before any command, as
            // they were: each came between two steps).
            while let Some((_, name, value)) = self
                .replay
                .front()
                .filter(|(at, _, _)| *at <= self.c.step)
                .cloned()
            {
                self.replay.pop_front();
                self.set_live(&name, value)?;
            }
            // Commands between steps, the run folder's first; while paused, wait for them.
            self.read_inbox(false)?;
            loop {
                let from_inbox = self.inbox.pop_front();
                let acked = from_inbox.as_ref().and_then(|(id, _)| id.clone());
                let cmd = if let Some((_, c)) = from_inbox {
                    Some(c)
                } else if paused {
                    match commands.recv_timeout(Duration::from_millis(200)) {
                        Ok(c) => Some(c),
                        Err(RecvTimeoutError::Timeout) => {
                            self.read_inbox(true)?;
                            None
                        }
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
                if let Some(id) = acked {
                    // Answered as it is applied (a stop's answer comes before the run ends).
                    let _ = crate::core::inbox::acknowledge(
                        self.plan.run_dir.root(),
                        &id,
                        &crate::core::inbox::Ack {
                            step: self.c.step,
                            said: String::new(),
                        },
                    );
                }
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
                    Command::StopBySignal(signal) => {
                        if dist::group().is_none() {
                            self.stop_by = Some(StopBy::Signal {
                                name: signal,
                                reach: None,
                            });
                            return self.stop_by_signal();
                        }
                        // Said to the other ranks with the next step's scalars; every rank
                        // stops after that step. A paused group stays paused (its ranks
                        // wait for rank 0's commands together; one rank stepping alone would
                        // hang the others): the signal is said when it is resumed.
                        self.signal_here.get_or_insert(signal);
                        if paused {
                            self.emitter.emit(Event::Log {
                                step: self.c.step,
                                level: Level::Warning,
                                message: "a stop signal arrived while the data-parallel run is paused: it stops with a checkpoint at the step after it is resumed".into(),
                            })?;
                            continue;
                        }
                        break;
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
                    Command::Watch(spec) => self.watch(spec)?,
                }
            }
            if skip_phase {
                continue;
            }
            self.step()?;
        }
    }

    /// Takes the commands waiting in the run folder's inbox. Alone, they are applied at this
    /// boundary. Under data parallelism rank 0 reads them and every rank applies them at the
    /// same boundary: while training they ride the next step's exchange (see `step`); while
    /// paused (`paused_exchange`, every 200 ms on every rank together) rank 0 sends them at
    /// once.
    fn read_inbox(&mut self, paused_exchange: bool) -> Result<(), EngineError> {
        let grouped = dist::group().is_some();
        // A folder read at most every 50 ms while training: on shared cluster storage a
        // directory listing at every fast step would cost more than the step.
        let due = paused_exchange
            || self
                .inbox_read_at
                .is_none_or(|t| t.elapsed() >= Duration::from_millis(50));
        if self.root && due {
            self.inbox_read_at = Some(Instant::now());
            for t in crate::core::inbox::take(self.plan.run_dir.root()) {
                match t {
                    crate::core::inbox::Taken::Command { id, command, ack } => {
                        let entry = (ack.then_some(id), command);
                        if grouped {
                            self.inbox_held.push(entry);
                        } else {
                            self.inbox.push_back(entry);
                        }
                    }
                    crate::core::inbox::Taken::Bad { file, why } => {
                        self.emitter.emit(Event::Log {
                            step: self.c.step,
                            level: Level::Warning,
                            message: format!("{file}: not a command ({why}); removed"),
                        })?;
                    }
                }
            }
        }
        if grouped && paused_exchange {
            self.share_inbox()?;
        }
        Ok(())
    }

    /// Rank 0's held inbox commands, on every rank (a collective: every rank calls it at the
    /// same point). The answers are rank 0's to write.
    fn share_inbox(&mut self) -> Result<(), EngineError> {
        let held = std::mem::take(&mut self.inbox_held);
        let text = serde_json::to_string(&held).unwrap_or_else(|_| "[]".into());
        let shared = dist::broadcast_text(&text)?;
        let cmds: Vec<(Option<String>, Command)> =
            serde_json::from_str(&shared).unwrap_or_default();
        let root = self.root;
        self.inbox
            .extend(cmds.into_iter().map(|(id, c)| (id.filter(|_| root), c)));
        Ok(())
    }

    /// Every variable of the trainer, named `network.path.to.tensor`.
    fn named_vars(&mut self) -> Vec<(String, tch::Tensor)> {
        self.trainer.as_mut().named_vars()
    }

    /// Names the variables for the optimisers and says the module tree (once per process).
    fn register_modules(&mut self) -> Result<(), EngineError> {
        let vars = self.named_vars();
        watch::register(&vars);
        let mut modules: Vec<(String, u64)> = Vec::new();
        for (name, t) in &vars {
            let m = watch::module_of(name);
            let n = t.numel() as u64;
            match modules.last_mut() {
                Some((last, count)) if last == m => *count += n,
                _ => modules.push((m.to_string(), n)),
            }
        }
        self.var_names = vars.into_iter().map(|(n, _)| n).collect();
        self.emitter.emit(Event::Modules { modules })
    }

    /// Watches a module from the next step, or stops watching it.
    fn watch(&mut self, spec: crate::core::protocol::WatchSpec) -> Result<(), EngineError> {
        let matched = self
            .var_names
            .iter()
            .filter(|n| watch::watches(&spec.module, n))
            .count();
        let message = if matched == 0 {
            format!(
                "watch `{}`: no module of that name (the module tree names them: `d.main.0`, `g`, or `*`)",
                spec.module
            )
        } else if spec.steps == Some(0) {
            format!("stopped watching `{}`", spec.module)
        } else {
            format!(
                "watching `{}` ({matched} tensors) from step {}, every {} step(s){}",
                spec.module,
                self.c.step,
                spec.every.max(1),
                spec.steps.map_or(String::new(), |n| format!(", {n} times"))
            )
        };
        let level = if matched == 0 {
            Level::Warning
        } else {
            Level::Info
        };
        if matched > 0 {
            self.watches.set(spec, self.c.step);
        }
        self.emitter.emit(Event::Log {
            step: self.c.step,
            level,
            message,
        })
    }

    /// The guard's look at one step's scalars: a trigger when a detector fires.
    fn guard_looks(&mut self, scalars: &[(&'static str, f64)]) -> Option<Trigger> {
        let find = |name: Option<&str>| {
            name.and_then(|n| scalars.iter().find(|(k, _)| *k == n))
                .copied()
        };
        let main = self
            .metrics
            .iter()
            .find(|m| m.main && m.kind == MetricKind::Loss)
            .map(|m| m.name.as_str());
        let view = StepView {
            non_finite: scalars.iter().find(|(_, v)| !v.is_finite()).copied(),
            main_loss: find(main),
            critic_loss: find(self.role(HealthRole::CriticLoss)).map(|(_, v)| v),
            codebook_use: find(self.role(HealthRole::CodebookUse)).map(|(_, v)| v),
        };
        let cfg = self.cfg.health().clone();
        self.guard.observe(&cfg, self.c.step, &view)
    }

    /// The guard's answer to a trigger: reload the last good checkpoint (its model,
    /// optimisers, counters, live values and controller, as a resume does), keep the
    /// abandoned rows as a branch folder, log the rollback and apply the remedy. A `stop`
    /// remedy, no checkpoint, or one rollback more than the preset allows ends the run with
    /// one line.
    fn roll_back(&mut self, t: &Trigger) -> Result<(), EngineError> {
        let at = self.c.step;
        let count = self.c.rollbacks + 1;
        let max = self.cfg.health().guard_max_rollbacks;
        let ckpts = self.plan.run_dir.checkpoints();
        // Rank 0 owns the checkpoints: it names the one every rank goes back to.
        let last = if self.root {
            checkpoint::resolve(&ckpts).ok()
        } else {
            None
        };
        let last = match dist::group() {
            None => last,
            Some(_) => {
                let said = dist::broadcast_text(&serde_json::json!({ "dir": last }).to_string())?;
                serde_json::from_str::<serde_json::Value>(&said)
                    .ok()
                    .and_then(|v| v.get("dir")?.as_str().map(PathBuf::from))
            }
        };
        let stop = |why: String| {
            Err(EngineError::Guard(format!(
                "guard: {} ({}); {why}",
                t.message,
                t.detector.name()
            )))
        };
        let health = |s: &mut Self| {
            s.emitter.emit(Event::Health {
                step: at,
                signal: HealthSignal::NonFiniteLoss,
                message: t.message.clone(),
                suggestion: s.trainer.non_finite_advice().into(),
            })
        };
        if t.remedy == Remedy::Stop {
            health(self)?;
            return stop("its remedy is to stop".into());
        }
        if count > max {
            health(self)?;
            return stop(format!("rolled back {max} time(s) already, the most the preset allows (health.guard_max_rollbacks); the last good checkpoint is kept"));
        }
        let Some(dir) = last else {
            health(self)?;
            return stop("no checkpoint was written yet to roll back to".into());
        };
        let ckpt = checkpoint::read(&dir)?;
        let c: Counters =
            serde_json::from_value(ckpt.state.get("session").cloned().unwrap_or_default())
                .map_err(|e| {
                    EngineError::BadInput(format!("{}: bad session state: {e}", dir.display()))
                })?;
        // Where the data was when the detector fired (a skipped window starts there).
        let (epoch_at, batch_at) = (self.c.epoch, self.c.batch_in_epoch);
        self.csv_flush()?;
        let abandoned = if self.root {
            self.keep_abandoned(c.step, at, t)
        } else {
            None
        };
        let mut cfg = self.plan.preset.for_phase(c.phase);
        for (k, v) in ckpt
            .state
            .get("live")
            .and_then(|v| v.as_object())
            .into_iter()
            .flatten()
        {
            if let Some((changed, _, _)) = v.as_f64().and_then(|v| cfg.with_live(k, v).ok()) {
                cfg = changed;
            }
        }
        self.trainer.load_state(&ckpt)?;
        self.trainer.apply_preset(&cfg)?;
        self.cfg = cfg;
        let saved_ctl: Option<LrControl> = ckpt
            .state
            .get("controller")
            .filter(|v| !v.is_null())
            .and_then(|v| serde_json::from_value(v.clone()).ok());
        self.ctl = None;
        match saved_ctl {
            Some(mut ctl)
                if self.cfg.lr_control().enabled && ctl.scales_fields(&lr_fields(&self.cfg)) =>
            {
                ctl.apply(self.trainer.as_mut(), false)?;
                self.ctl = Some(ctl);
            }
            _ => self.setup_control()?,
        }
        // Never back to a data order that already failed.
        let reseeds = self.c.reseeds.max(c.reseeds);
        self.c = c;
        self.c.rollbacks = count;
        self.c.reseeds = reseeds;
        if self.root {
            checkpoint::supersede_after(&ckpts, self.c.step)?;
        }
        self.last_checkpoint_step = Some(self.c.step);
        let columns: Vec<&str> = self.columns.iter().map(String::as_str).collect();
        self.csv = CsvLog::open(&self.plan.run_dir.csv_path(), &columns, Some(self.c.step))?;
        self.health = HealthMonitor::new(self.cfg.health().clone());
        self.guard.reset();
        self.emitter.emit(Event::Rollback {
            step: at,
            to_step: self.c.step,
            detector: t.detector.name().into(),
            message: t.message.clone(),
            remedy: t.remedy.name().into(),
            count,
            abandoned: abandoned.map(|p| p.display().to_string()),
        })?;
        match t.remedy {
            Remedy::ScaleLr => {
                let scale = self.cfg.health().guard_lr_scale;
                let tree = self.cfg.to_tree();
                for field in lr_fields(&self.cfg) {
                    let now = crate::core::preset::schema::get_path(&tree, &field)
                        .and_then(serde_json::Value::as_f64);
                    if let Some(now) = now {
                        self.set_live(&field, now * scale)?;
                    }
                }
            }
            Remedy::SkipWindow => {
                self.c.epoch = epoch_at;
                self.c.batch_in_epoch = batch_at;
                self.emitter.emit(Event::Log {
                    step: self.c.step,
                    level: Level::Info,
                    message: format!(
                        "guard: the batches of steps {}..{at} are skipped: the data goes on from epoch {epoch_at}, batch {batch_at}",
                        self.c.step + 1
                    ),
                })?;
            }
            Remedy::Reseed => {
                self.c.reseeds += 1;
                self.emitter.emit(Event::Log {
                    step: self.c.step,
                    level: Level::Info,
                    message: format!(
                        "guard: data order {} from here (drawn from the seed again)",
                        self.c.reseeds
                    ),
                })?;
            }
            Remedy::Stop => {}
        }
        self.trainer.reseed_data(self.c.reseeds);
        // The checkpoint the run goes on from holds the remedy (the data position, the order,
        // the rates), so a resume from it goes on as this run does.
        self.last_checkpoint_step = None;
        self.checkpoint(false, None)?;
        Ok(())
    }

    /// Writes the rows a rollback abandons (those after step `from` in `losses.csv`) as a
    /// branch folder beside the run, so the abandoned segment stays viewable: its lineage
    /// names the run and the checkpoint's step, its log the rows and why they were left. A
    /// failure here only loses that view (said in the log), never the run.
    fn keep_abandoned(&mut self, from: u64, at: u64, t: &Trigger) -> Option<PathBuf> {
        match self.write_abandoned(from, at, t) {
            Ok(dir) => Some(dir),
            Err(e) => {
                let _ = self.emitter.emit(Event::Log {
                    step: at,
                    level: Level::Warning,
                    message: format!(
                        "guard: the abandoned rows could not be kept as a branch: {e}"
                    ),
                });
                None
            }
        }
    }

    /// [`Self::keep_abandoned`]'s folder: the rows of `losses.csv` after step `from`, as a
    /// failed branch of this run at `from`.
    fn write_abandoned(&self, from: u64, at: u64, t: &Trigger) -> Result<PathBuf, EngineError> {
        let csv = self.plan.run_dir.csv_path();
        let text = std::fs::read_to_string(&csv).map_err(|e| RunDirError::Io {
            path: csv.clone(),
            message: e.to_string(),
        })?;
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
        let rows: Vec<ScalarRow> = lines
            .filter_map(|l| {
                let cells: Vec<&str> = l.split(',').collect();
                let step = cells.first()?.parse::<u64>().ok().filter(|s| *s > from)?;
                let values = header
                    .iter()
                    .zip(&cells)
                    .skip(1)
                    .filter_map(|(k, v)| Some(((*k).to_string(), v.parse::<f64>().ok()?)))
                    .collect();
                Some(ScalarRow {
                    step,
                    wall_time: unix_now(),
                    values,
                })
            })
            .collect();
        let preset = self.plan.preset.preset();
        let root = crate::core::rundir::absolute(self.plan.run_dir.root());
        let name = format!("{}-abandoned{at}", preset.name());
        let dir = RunDir::create(root.parent().unwrap_or(Path::new(".")), &name)?;
        dir.write_preset(
            &preset.to_ron(),
            &[
                ("abandoned by the guard of", root.display().to_string()),
                ("rows", format!("{}..{at}", from + 1)),
            ],
        )?;
        crate::core::branch::write_lineage(
            &dir,
            &crate::core::branch::Lineage {
                parent: root,
                parent_name: preset.name().to_string(),
                fork_step: from,
                changes: Vec::new(),
                created: crate::core::timefmt::readable_utc(unix_now() as u64) + " UTC",
            },
        )?;
        let mut log = crate::core::runlog::LogWriter::open(&dir.events_path())?;
        for e in [
            Event::RunStarted {
                run_dir: dir.root().display().to_string(),
                name,
                family: self.cfg.family().name().to_string(),
                device: crate::engine::device::describe(self.plan.device),
                total_steps: None,
                resumed_from: None,
                restarted: false,
                branch_of: None,
                wall_time: unix_now(),
                metrics: self.metrics.clone(),
            },
            Event::Scalars { rows },
            Event::RunFailed {
                step: at,
                message: format!(
                    "abandoned: {} ({}); the run rolled back to step {from}",
                    t.message,
                    t.detector.name()
                ),
            },
        ] {
            log.append(&e)?;
        }
        log.sync()?;
        Ok(dir.root().to_path_buf())
    }

    /// A live edit: the phase's configuration with the field changed, checked against its
    /// spec and the family's rules as any override is, then taken by the trainer as a phase's
    /// configuration is. A learning rate set by hand is its new base: a controller's scale
    /// stays on it. A refused edit changes nothing and says why. An accepted one first writes
    /// a checkpoint of the step (the point an undo or an A/B branches from), is in force from
    /// the next step's row, and is made again at the same step when the run is resumed from
    /// a checkpoint before it.
    fn set_live(&mut self, name: &str, value: f64) -> Result<(), EngineError> {
        let step = self.c.step;
        let refused = |why: String| Event::Log {
            step,
            level: Level::Warning,
            message: format!("refused: {why}"),
        };
        let (changed, path, old) = match self.cfg.with_live(name, value) {
            Ok(c) => c,
            Err(why) => return self.emitter.emit(refused(why)),
        };
        self.checkpoint(false, None)?;
        if let Err(why) = self.trainer.apply_preset(&changed) {
            // Back to the configuration in force.
            self.trainer.apply_preset(&self.cfg)?;
            return self.emitter.emit(refused(why.to_string()));
        }
        self.cfg = changed;
        self.emitter.emit(Event::HyperparameterChanged {
            step: self.c.step,
            name: path.to_string(),
            old,
            new: value,
        })
    }

    fn step(&mut self) -> Result<(), EngineError> {
        let minutes = match self.plan.preset.preset().phases()[self.c.phase].length {
            PhaseLength::Minutes(m) => Some(m),
            _ => None,
        };
        let ctx = StepCtx {
            step: self.c.step,
            epoch: self.c.epoch,
            batch_in_epoch: self.c.batch_in_epoch,
            phase: PhaseAt {
                step: self.c.step - self.c.phase_start_step,
                length: self
                    .c
                    .phase_end_step
                    .map(|end| end.saturating_sub(self.c.phase_start_step)),
                time_done: minutes.map(|m| self.c.phase_elapsed_secs / (m * 60.0).max(1e-9)),
            },
        };
        let t0 = Instant::now();
        timing::start();
        self.emitter.step = ctx.step;
        let mut watching = false;
        if !self.watches.is_empty() {
            let due = self.watches.due(ctx.step, &self.var_names);
            if !due.is_empty() {
                watch::begin(due);
                watching = true;
            }
        }
        // A panic inside a step (an infallible tch call that met a libtorch error) fails the
        // run like an error does; the panic hook keeps it off the terminal.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            injected_failure(ctx.step)?;
            self.trainer.train_step(&ctx)
        }));
        timing::enter(timing::SESSION);
        let layer_stats = if watching {
            let _logging = timing::scope(timing::LOGGING);
            let vars = self.named_vars();
            watch::finish(ctx.step, &vars)
        } else {
            Vec::new()
        };
        let non_finite_grads = watch::take_non_finite();
        let failed = match result {
            Ok(Ok(scalars)) => Ok(scalars),
            Ok(Err(e)) => Err(e),
            Err(panic) => Err(StepError::new("the training step", panic_text(&*panic))),
        };
        let mut scalars = match failed {
            Ok(s) => s,
            Err(e) => return Err(self.step_failed(&e)),
        };
        // Data-parallel: the step's scalars are their means over the ranks, so the log, the
        // health checks and the learning-rate controller see (and decide) the same on each.
        // The same exchange carries the stop signals the ranks received (a share per signal,
        // in `StopSignal::ALL`'s order), so they stop after the same step.
        if dist::group().is_some() {
            let signals = StopSignal::ALL;
            let mut values: Vec<f64> = scalars.iter().map(|(_, v)| *v).collect();
            let here = self.signal_here.take();
            values.extend(
                signals
                    .iter()
                    .map(|s| f64::from(u8::from(here.as_deref() == Some(s.name())))),
            );
            // Whether rank 0 holds inbox commands (they follow this exchange).
            values.push(f64::from(u8::from(!self.inbox_held.is_empty())));
            // And whether rank 0's scheduler stopped this trial.
            values.push(f64::from(u8::from(std::mem::take(&mut self.sched_here))));
            dist::mean_values(&mut values)?;
            let mut shares = values.split_off(scalars.len());
            let scheduled_share = shares.pop().unwrap_or(0.0);
            if shares.pop().unwrap_or(0.0) > 0.0 {
                self.share_inbox()?;
            }
            shares.push(scheduled_share);
            let scheduled = shares.pop().unwrap_or(0.0) > 0.0;
            if scheduled {
                self.stop_by = Some(StopBy::Scheduler);
            }
            for (slot, v) in scalars.iter_mut().zip(values) {
                slot.1 = v;
            }
            if let Some((s, share)) = signals.iter().zip(shares).find(|(_, v)| *v > 0.0) {
                let (_, world) = dist::rank_and_world();
                let ranks = (share * world as f64).round() as usize;
                self.stop_by = Some(StopBy::Signal {
                    name: s.name().to_string(),
                    reach: Some(format!("on {ranks} of {world} ranks")),
                });
            }
        }
        // Test hook: `nan-loss-once:S` is a NaN the first time step S trains in this process
        // (a rolled-back run trains it again, cleanly).
        static NAN_ONCE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        let nan_once = crate::engine::failpoint("nan-loss-once", ctx.step)
            && !NAN_ONCE.swap(true, std::sync::atomic::Ordering::Relaxed);
        if nan_once || crate::engine::failpoint("nan-loss", ctx.step) {
            // The first of the family's main losses.
            let main = |k: &str| {
                self.metrics
                    .iter()
                    .any(|m| m.name == k && m.main && m.kind == MetricKind::Loss)
            };
            if let Some(slot) = scalars.iter_mut().find(|(k, _)| main(k)) {
                slot.1 = f64::NAN;
            }
        }
        self.c.phase_elapsed_secs += t0.elapsed().as_secs_f64();
        self.step_secs += t0.elapsed().as_secs_f64();
        if matches!(
            self.plan.preset.preset().phases()[self.c.phase].length,
            PhaseLength::Minutes(_)
        ) {
            // A timed phase ends on rank 0's clock, at the same step on every rank.
            self.c.phase_elapsed_secs = dist::root_value(self.c.phase_elapsed_secs)?;
        }
        if self.cfg.health().guard {
            let seen = self.guard_looks(&scalars);
            if let Some(t) = agree_on_trigger(seen)? {
                return self.roll_back(&t);
            }
        }
        // Under data parallelism a guarded run leaves the call to rank 0 (above): a rank's own
        // NaN reaches rank 0 through the averaged gradients, and every rank rolls back together.
        let guarded_ranks = self.cfg.health().guard && dist::group().is_some();
        if let Some((name, v)) = scalars
            .iter()
            .find(|(_, v)| !v.is_finite())
            .filter(|_| !guarded_ranks)
        {
            let last = checkpoint::resolve(&self.plan.run_dir.checkpoints()).map_or_else(
                |_| "none was written".to_string(),
                |p| p.display().to_string(),
            );
            let message = format!(
                "{name} became {v} at step {}{}; the run was stopped. Last good checkpoint: {last}",
                self.c.step,
                where_non_finite(&non_finite_grads)
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
        {
            let _logging = timing::scope(timing::LOGGING);
            self.emit_family_events()?;
            for (module, stats) in layer_stats {
                self.emitter.emit(Event::LayerStats { module, stats })?;
            }
        }
        for (k, v) in scalars {
            let aggregate = match self.metrics.iter().find(|m| m.name == k) {
                Some(m) => m.aggregate,
                None => {
                    self.undeclared(k)?;
                    Aggregate::Mean
                }
            };
            let e = self.c.accum.entry(k.to_string()).or_insert((0.0, 0));
            match aggregate {
                // Settings are logged as their current value, not averaged over the interval.
                Aggregate::Last => *e = (v, 1),
                Aggregate::Mean => {
                    e.0 += v;
                    e.1 += 1;
                }
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
        let logging = timing::scope(timing::LOGGING);
        if step.is_multiple_of(log_every.max(1)) {
            self.log_scalars()?;
        }
        // Dense early, then every N (`core::cadence`): a new run shows samples and a
        // validation point within its first steps.
        if due(step, sample_every).is_some() {
            self.sample()?;
        }
        drop(logging);
        if let Some(when) = due(step, validate_every) {
            let _validation = timing::scope(timing::VALIDATION);
            self.validate(when == Due::Regular)?;
        }
        if ckpt_every > 0 && step.is_multiple_of(ckpt_every) {
            let _checkpoint = timing::scope(timing::CHECKPOINT);
            self.check_ranks(false)?;
            self.checkpoint(false, None)?;
        }
        {
            let _logging = timing::scope(timing::LOGGING);
            self.csv_flush()?;
        }
        self.step_timed(t0)
    }

    /// Adds the step's parts and total (to be logged with the next row) and says when one
    /// part dominates the last steps or, under data parallelism, one rank is the straggler.
    fn step_timed(&mut self, t0: Instant) -> Result<(), EngineError> {
        let parts = timing::finish();
        let total = t0.elapsed().as_secs_f64();
        // Every declared part (the trainer's, then the shared ones, then any other a step
        // entered), 0 where the step had none, so each logged mean is over the same steps and
        // the means add up as the steps' times do. Their logged names are made once.
        if self.time_parts.is_empty() {
            let declared = self.trainer.timed_parts().iter().chain(&timing::SHARED);
            self.time_parts = declared.map(|p| (*p, timing::metric_name(p))).collect();
        }
        for (part, _) in &parts {
            if !self.time_parts.iter().any(|(p, _)| p == part) {
                self.time_parts.push((part, timing::metric_name(part)));
            }
        }
        accumulate(&mut self.time_accum, timing::STEP_MS, 1e3 * total);
        for (part, name) in &self.time_parts {
            let secs = parts
                .iter()
                .find(|(p, _)| p == part)
                .map_or(0.0, |(_, s)| *s);
            accumulate(&mut self.time_accum, name, 1e3 * secs);
        }
        self.times.push(parts);
        for sample in self.sysmon.iter().flat_map(|s| s.take()) {
            for (name, v) in sample {
                accumulate(&mut self.time_accum, name, v);
            }
        }
        // Every 20 steps over the last 100: every rank at the same steps (the straggler's
        // exchange is a collective).
        if !(self.c.step.is_multiple_of(20) && self.times.len() >= 20) {
            return Ok(());
        }
        let steps = self.times.len();
        if dist::group().is_some() {
            let (rank, world) = dist::rank_and_world();
            let mut busy = vec![0.0; world];
            busy[rank] = self.times.busy(timing::COLLECTIVES) * world as f64;
            dist::mean_values(&mut busy)?;
            let slow = steptime::straggler(&busy, steps);
            if self.root && slow.as_ref().map(|s| s.0) != self.said_straggler {
                self.said_straggler = slow.as_ref().map(|s| s.0);
                if let Some((_, line)) = slow {
                    self.emitter.emit(Event::Health {
                        step: self.c.step,
                        signal: HealthSignal::Straggler,
                        message: line,
                        suggestion: "check that rank's device and data (a shared GPU, a slow \
                                     disk or a throttled node); the others wait for it at every \
                                     step"
                            .into(),
                    })?;
                }
            }
        }
        let verdict = steptime::verdict(&self.times.totals(), steps);
        if verdict.as_ref().map(|v| v.part) != self.said_bottleneck {
            self.said_bottleneck = verdict.as_ref().map(|v| v.part);
            if let (Some(v), true) = (verdict, self.root) {
                self.emitter.emit(Event::Health {
                    step: self.c.step,
                    signal: HealthSignal::Bottleneck,
                    message: v.line,
                    suggestion: v.suggestion.into(),
                })?;
            }
        }
        Ok(())
    }

    /// Says once that a trainer reported a scalar it did not declare (it is logged, averaged,
    /// but not in `losses.csv`).
    fn undeclared(&mut self, name: &str) -> Result<(), EngineError> {
        if self.undeclared.iter().any(|n| n == name) {
            return Ok(());
        }
        self.undeclared.push(name.to_string());
        self.emitter.emit(Event::Log {
            step: self.c.step,
            level: Level::Warning,
            message: format!("the trainer reported `{name}` without declaring it: it is averaged and left out of losses.csv"),
        })
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

    fn log_scalars(&mut self) -> Result<(), EngineError> {
        let mut values: Vec<(String, f64)> = vec![
            ("epoch".into(), self.c.epoch as f64),
            ("phase".into(), self.c.phase as f64),
        ];
        let times = std::mem::take(&mut self.time_accum);
        for (k, (sum, n)) in std::mem::take(&mut self.c.accum).into_iter().chain(times) {
            if n > 0 {
                values.push((k, sum / n as f64));
            }
        }
        let get = |k: &str| values.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
        let critic = self.role(HealthRole::CriticLoss).and_then(get);
        let generator = self.role(HealthRole::GeneratorLoss).and_then(get);
        if let Some(d) = critic {
            let findings = self.health.observe(self.c.step, d, generator);
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

    /// Writes a volume pair as NIfTI files (keeping the last [`VOLUMES_KEPT`] validations'),
    /// and emits its event.
    fn emit_volume(&mut self, v: VolumePair) -> Result<(), EngineError> {
        let root = self.plan.run_dir.root().to_path_buf();
        let rel = |what: &str| {
            format!(
                "media/{}-volume-{what}-step-{:08}.nii",
                v.split, self.c.step
            )
        };
        let (truth, recon) = (rel("truth"), rel("recon"));
        let io = |path: &Path, message: String| {
            EngineError::RunDir(crate::core::rundir::RunDirError::Io {
                path: path.to_path_buf(),
                message,
            })
        };
        for (file, vol) in [(&truth, &v.truth), (&recon, &v.recon)] {
            let path = root.join(file);
            write_nifti(&path, vol).map_err(|e| io(&path, e.message))?;
        }
        prune_volumes(&root.join("media"), VOLUMES_KEPT);
        let dims = v.truth.dims.map(|d| d as u32);
        self.emitter.emit(Event::Volume {
            step: self.c.step,
            split: v.split,
            truth,
            recon,
            channels: v.truth.channels as u32,
            dims,
            truth_data: v.truth.data,
            recon_data: v.recon.data,
        })
    }

    fn emit_findings(&mut self, findings: Vec<Finding>) -> Result<(), EngineError> {
        for f in findings {
            // With `health.guard_findings`, the guard's next look rolls back on it.
            if self.cfg.health().guard {
                self.guard.finding(self.cfg.health(), &f);
            }
            self.emitter.emit(Event::Health {
                step: f.step,
                signal: f.signal,
                message: f.message,
                suggestion: f.suggestion,
            })?;
        }
        Ok(())
    }

    /// Data-parallel: checks that every rank holds exactly rank 0's model and optimiser state
    /// (bit for bit), and stops the run when one does not; `say` logs the agreement.
    fn check_ranks(&mut self, say: bool) -> Result<(), EngineError> {
        let (_, world) = dist::rank_and_world();
        if world == 1 {
            return Ok(());
        }
        take_roots_statistics(self.trainer.as_mut())?;
        let (mut names, mut tensors): (Vec<String>, Vec<tch::Tensor>) =
            state_in_order(self.trainer.as_mut()).into_iter().unzip();
        // What a checkpoint holds beside the tensors: the counters, the live settings, the
        // learning-rate controller and the family's own state (controllers, switching).
        names.push("the session, controller and family state".into());
        tensors.push(tch::Tensor::from_slice(
            self.json_state().to_string().as_bytes(),
        ));
        let Some(fingerprint) = dist::ranks_agree(&tensors)? else {
            // Every rank learns the disagreement together, so they name the tensors together.
            let mut differ = Vec::new();
            for (name, t) in names.iter().zip(&tensors) {
                if dist::ranks_agree(std::slice::from_ref(t))?.is_none() {
                    differ.push(name.as_str());
                }
            }
            let shown = differ.len().min(4);
            return Err(EngineError::Model(format!(
                "step {}: the data-parallel ranks no longer hold the same model ({} of {} tensors differ: {}{}); the run was stopped (its last checkpoint is rank 0's)",
                self.c.step,
                differ.len(),
                tensors.len(),
                differ[..shown].join(", "),
                if differ.len() > shown { ", ..." } else { "" }
            )));
        };
        if say {
            self.emitter.emit(Event::Log {
                step: self.c.step,
                level: Level::Info,
                message: format!(
                    "all {world} ranks hold identical parameters and optimiser state at step {} (fingerprint {:013x}); the steps' collectives took {:.2} s of {:.2} s in steps ({:.1}%)",
                    self.c.step,
                    fingerprint as u64,
                    dist::step_collective_secs(),
                    self.step_secs,
                    100.0 * dist::step_collective_secs() / self.step_secs.max(1e-9)
                ),
            })?;
        }
        Ok(())
    }

    fn sample(&mut self) -> Result<(), EngineError> {
        if !self.root {
            return Ok(());
        }
        let grid = self.trainer.sample_grid();
        let rel = format!("media/samples-step-{:08}.png", self.c.step);
        self.save_png(&rel, &grid)?;
        self.emitter.emit(Event::Sample {
            step: self.c.step,
            path: rel,
            width: grid.width,
            height: grid.height,
            rgba: grid.pixels,
            note: self.trainer.sample_note(),
        })?;
        if let Some(r) = self.trainer.reconstruction() {
            self.emit_reconstruction(r)?;
        }
        Ok(())
    }

    /// Validates; `may_keep_best`: whether an improvement writes the phase's best checkpoint
    /// (the early points do not, so the first seconds write no checkpoints).
    fn validate(&mut self, may_keep_best: bool) -> Result<(), EngineError> {
        take_roots_statistics(self.trainer.as_mut())?;
        let Some(v) = self.trainer.validate() else {
            return self.emit_family_events();
        };
        self.emit_family_events()?;
        // Every rank validates (the family's controllers may act on it); rank 0 reports.
        if !self.root {
            let _ = (
                self.trainer.pending_reconstruction(),
                self.trainer.pending_volume(),
            );
            return Ok(());
        }
        if let Some(r) = self.trainer.pending_reconstruction() {
            self.emit_reconstruction(r)?;
        }
        if let Some(v) = self.trainer.pending_volume() {
            self.emit_volume(v)?;
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
        // The metric that picks the best checkpoint, in its declared direction.
        let mut metric = v.best_value();
        let higher_is_better = self.metrics.iter().any(|m| {
            m.name == v.best_by
                && m.kind
                    == MetricKind::Validation {
                        higher_is_better: true,
                    }
        });
        if crate::engine::failpoint("val-worse", self.c.step) {
            // Test hook: validations from that step on rank below every earlier one, so the
            // best checkpoint is not the last.
            metric += if higher_is_better { -1e9 } else { 1e9 };
        }
        let improved = self.best.phases.get(&self.c.phase).is_none_or(|b| {
            if higher_is_better {
                metric > b.metric
            } else {
                metric < b.metric
            }
        });
        if may_keep_best && improved && metric.is_finite() {
            self.checkpoint(true, Some(metric))?;
        }
        self.report_to_scheduler(&row)
    }

    /// A sweep's trial reports its metric; when the scheduler stops it, it stops at this step
    /// boundary (every rank, under data parallelism) with a checkpoint. A state that cannot
    /// be read or written is said in the log, and the trial goes on.
    fn report_to_scheduler(&mut self, row: &[(String, f64)]) -> Result<(), EngineError> {
        let Some(t) = &self.trial else {
            return Ok(());
        };
        let Some(value) = row.iter().find(|(k, _)| *k == t.metric).map(|(_, v)| *v) else {
            return Ok(());
        };
        let (step, name, metric, higher) = (
            self.c.step,
            t.link.trial.clone(),
            t.metric.clone(),
            t.higher,
        );
        let decided = crate::core::pruner::update(&t.link.state, |s| {
            s.report(&name, step, value, &metric, higher)
        });
        match decided {
            Ok(crate::core::pruner::Decision::Continue) => Ok(()),
            Ok(crate::core::pruner::Decision::Stop(st)) => {
                self.emitter.emit(Event::TrialStopped {
                    step,
                    rung: st.rung,
                    metric: st.metric.clone(),
                    value: st.value,
                    cut: st.cut,
                })?;
                if dist::group().is_some() {
                    self.sched_here = true;
                } else {
                    self.stop_by = Some(StopBy::Scheduler);
                }
                Ok(())
            }
            Err(e) => self.emitter.emit(Event::Log {
                step,
                level: Level::Warning,
                message: format!("sweep trial: {e}; it goes on"),
            }),
        }
    }

    /// A checkpoint's state beside its tensors, less what differs between ranks (the time
    /// written, the phase's elapsed seconds, which only a timed phase shares): canonical JSON
    /// (objects sorted by key), so equal states print alike on every rank.
    fn json_state(&self) -> serde_json::Value {
        let live: serde_json::Map<String, serde_json::Value> = self
            .cfg
            .live_values()
            .into_iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(v)))
            .collect();
        let mut counters = serde_json::json!(self.c);
        counters["phase_elapsed_secs"] = serde_json::Value::Null;
        serde_json::json!({
            "family": self.cfg.family().name(),
            "signature": self.cfg.front().signature(),
            "session": counters,
            "live": live,
            "controller": self.ctl,
            "family_state": self.trainer.family_state(),
        })
    }

    fn checkpoint(&mut self, best: bool, metric: Option<f64>) -> Result<(), EngineError> {
        // The rows up to this step are on disk before the checkpoint that a resume rewinds to.
        self.csv_flush()?;
        if !self.root {
            return Ok(());
        }
        let ckpts = self.plan.run_dir.checkpoints();
        let dir = if self.last_checkpoint_step == Some(self.c.step) {
            ckpts.join(checkpoint::dir_name(self.c.step))
        } else {
            let tensors = self.trainer.state_tensors();
            if crate::engine::failpoint("nan-weights", self.c.step) {
                // Test hook: a weight gone NaN, as a diverged step leaves it.
                if let Some((_, t)) = tensors.iter().find(|(_, t)| t.is_floating_point()) {
                    let _ = tch::no_grad(|| t.shallow_clone().fill_(f64::NAN));
                }
            }
            if let Some(name) = checkpoint::first_non_finite(&tensors) {
                // The last good checkpoint stays the one a resume or a branch starts from.
                let message = format!(
                    "no checkpoint at step {}: `{name}` holds a NaN or an infinity; the last good one is kept",
                    self.c.step
                );
                return self.emitter.emit(Event::Log {
                    step: self.c.step,
                    level: Level::Warning,
                    message,
                });
            }
            let mut state = self.json_state();
            state["session"] = serde_json::json!(self.c);
            state["written_at"] = serde_json::json!(unix_now());
            let dir = checkpoint::write(&ckpts, self.c.step, &tensors, &state)?;
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

    /// Ends the run on the signal every rank agreed on (or the scheduler's stop), with a
    /// checkpoint of this step.
    fn stop_by_signal(&mut self) -> Result<Ended, EngineError> {
        let stop = self.stop_by.clone();
        self.checkpoint(false, None)?;
        let signal = match &stop {
            Some(StopBy::Signal {
                name,
                reach: Some(r),
            }) => format!("{name} ({r})"),
            Some(StopBy::Signal { name, reach: None }) => name.clone(),
            Some(StopBy::Scheduler) | None => String::new(),
        };
        if self.root && matches!(stop, Some(StopBy::Scheduler)) {
            let root = self.plan.run_dir.root().display().to_string();
            self.emitter.emit(Event::Log {
                step: self.c.step,
                level: Level::Info,
                message: format!(
                    "stopped early by the sweep's scheduler at step {} with a checkpoint; `workbench sweep promote {root}` trains it to its full budget",
                    self.c.step
                ),
            })?;
        } else if self.root {
            let ckpt = self
                .plan
                .run_dir
                .checkpoints()
                .join(checkpoint::dir_name(self.c.step));
            self.emitter.emit(Event::Log {
                step: self.c.step,
                level: Level::Info,
                message: format!(
                    "stopped by {signal} at step {} with its checkpoint {}; `workbench train --resume {}` goes on",
                    self.c.step,
                    ckpt.display(),
                    self.plan.run_dir.root().display()
                ),
            })?;
        }
        self.end(Outcome::Stopped)
    }

    fn end(&mut self, outcome: Outcome) -> Result<Ended, EngineError> {
        if self.c.accum.values().any(|(_, n)| *n > 0) {
            self.log_scalars()?;
        }
        self.check_ranks(true)?;
        let (_, sample_every, _, _, _) = cadences(&self.cfg);
        if due(self.c.step, sample_every).is_none() {
            self.sample()?;
        }
        self.csv_flush()?;
        Ok(Ended {
            step: self.c.step,
            outcome,
            // The signal's own name, without the ranks it reached.
            signal: self.stop_by.as_ref().map(|s| match s {
                StopBy::Signal { name, .. } => name.clone(),
                StopBy::Scheduler => "scheduler".to_string(),
            }),
        })
    }
}

/// Adds `v` to the sum and count of `name` (a key made only the first time it is seen).
fn accumulate(sums: &mut BTreeMap<String, (f64, u64)>, name: &str, v: f64) {
    match sums.get_mut(name) {
        Some(e) => {
            e.0 += v;
            e.1 += 1;
        }
        None => {
            sums.insert(name.to_string(), (v, 1));
        }
    }
}

/// Where a non-finite gradient first appeared, for a message: " (first non-finite gradient:
/// `d.main.3.weight`, module `d.main.3`; 2 tensors in all)", or nothing when none was noted.
fn where_non_finite(tensors: &[String]) -> String {
    let Some(first) = tensors.first() else {
        return String::new();
    };
    let more = match tensors.len() {
        1 => String::new(),
        n => format!("; {n} tensors in all"),
    };
    format!(
        " (first non-finite gradient: `{first}`, module `{}`{more})",
        watch::module_of(first)
    )
}

fn rel_path(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

/// Validations whose volume files a run keeps (the files are large; the event log keeps
/// every validation's numbers).
const VOLUMES_KEPT: usize = 3;

/// Removes the volume files of all but the latest `keep` steps in `media`.
fn prune_volumes(media: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(media) else {
        return;
    };
    let files: Vec<(u64, std::path::PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step = name
                .strip_suffix(".nii")?
                .rsplit_once("-step-")
                .filter(|(head, _)| head.contains("-volume-"))?
                .1
                .parse()
                .ok()?;
            Some((step, e.path()))
        })
        .collect();
    let mut steps: Vec<u64> = files.iter().map(|(s, _)| *s).collect();
    steps.sort_unstable();
    steps.dedup();
    let cut = steps.len().saturating_sub(keep);
    if let Some(&oldest_kept) = steps.get(cut) {
        for (s, p) in &files {
            if *s < oldest_kept {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(resumed_from: Option<u64>) -> Event {
        Event::RunStarted {
            run_dir: String::new(),
            name: String::new(),
            family: String::new(),
            device: String::new(),
            total_steps: None,
            resumed_from,
            restarted: false,
            branch_of: None,
            wall_time: 0.0,
            metrics: Vec::new(),
        }
    }

    fn edit(step: u64, new: f64) -> Event {
        Event::HyperparameterChanged {
            step,
            name: "train.lr_g".into(),
            old: 0.0,
            new,
        }
    }

    /// Edits at 10 and 30; resumed from 20 (a new edit at 25, and 30's made again): a resume
    /// from 20 makes 25's and 30's again, once each.
    #[test]
    fn each_resume_replays_the_edits_of_the_future_it_rewinds() {
        let log = [
            started(None),
            edit(10, 1.0),
            edit(30, 3.0),
            started(Some(20)),
            edit(25, 2.5),
            edit(30, 3.0),
        ];
        let want = |v: &[(u64, f64)]| {
            v.iter()
                .map(|&(s, x)| (s, "train.lr_g".to_string(), x))
                .collect::<Vec<_>>()
        };
        assert_eq!(edits_to_replay(&log, 20), want(&[(25, 2.5), (30, 3.0)]));
        // From 0 (no checkpoint kept its value): every edit still in force, in order.
        assert_eq!(
            edits_to_replay(&log, 0),
            want(&[(10, 1.0), (25, 2.5), (30, 3.0)])
        );
        // Resumed from 28, which made 30's edit again: a resume from 28 makes it once.
        assert_eq!(edits_to_replay(&log, 28), want(&[(30, 3.0)]));
        let mut more = log.to_vec();
        more.extend([started(Some(28)), edit(30, 3.0)]);
        assert_eq!(edits_to_replay(&more, 28), want(&[(30, 3.0)]));
    }
}

//! The training worker: a named thread that owns the model, the data and the device.
//!
//! [`prepare`] checks everything a user can get wrong (device, data folder, checkpoint family
//! and shape, writable runs directory) before any thread starts, so bad input is reported as
//! such. [`spawn`] then runs the plan; any error or panic inside becomes `RunFailed`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::core::preset::{AnyPreset, ValidatedPreset};
use crate::core::protocol::Waker;
use crate::core::protocol::{Command, Event};
use crate::core::rundir::RunDir;
use crate::core::runlog::LogWriter;
use crate::engine::checkpoint;
/// The devices and the libtorch this build runs on, as the app's About window says them.
pub use crate::engine::device::{describe_all as describe_devices, libtorch_version};
use crate::engine::emitter::Emitter;
use crate::engine::session::{self, RunPlan};
use crate::engine::trainer::{first_line, panic_text};
use crate::engine::{device, EngineError};

/// Capacity of the event channel; beyond it events are dropped from the channel (never from
/// the run log).
pub const EVENT_CAPACITY: usize = 4096;
/// Capacity of the command channel.
pub const COMMAND_CAPACITY: usize = 64;

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    /// The preset; for a resume, `None` takes the run's own `preset.ron`.
    pub preset: Option<ValidatedPreset>,
    pub runs_dir: PathBuf,
    /// A run folder (its latest checkpoint) or a checkpoint folder.
    pub resume: Option<PathBuf>,
    pub step_limit: Option<u64>,
    /// Overrides the preset's device.
    pub device: Option<String>,
    pub lr_g: Option<f64>,
    pub lr_d: Option<f64>,
    pub notes: Vec<String>,
    /// Modules whose per-layer statistics are captured from the start (`--watch`).
    pub watch: Vec<crate::core::protocol::WatchSpec>,
}

/// Checks a request and lays out the run directory. Errors here are the user's to fix.
pub fn prepare(req: RunRequest) -> Result<RunPlan, EngineError> {
    let bad = EngineError::BadInput;
    let mut notes = req.notes;
    let mut restart = false;
    let (preset, run_dir, lock, resume_from) = match &req.resume {
        Some(path) if run_without_checkpoint(path) => {
            // Nothing to resume from: train it again from step 0 in its own folder, with its
            // own preset unless one was given.
            let run_dir = RunDir::open(path).map_err(|e| bad(e.to_string()))?;
            // Locked before its preset.ron is rewritten below: a run another process is still
            // writing is left alone.
            let lock = run_dir.lock().map_err(|e| bad(e.to_string()))?;
            let preset = preset_or_runs(req.preset.clone(), &run_dir)?;
            check_data(preset.preset())?;
            notes.push(format!(
                "{}: no checkpoint was written before the run stopped; training starts again from step 0 in the same folder",
                path.display()
            ));
            restart = true;
            (preset, run_dir, lock, None)
        }
        Some(path) => {
            let ckpt = checkpoint::resolve(path).map_err(|e| bad(e.to_string()))?;
            let run_root = ckpt.parent().and_then(Path::parent).ok_or_else(|| {
                bad(format!(
                    "{}: not inside a run's checkpoints folder",
                    ckpt.display()
                ))
            })?;
            let run_dir = RunDir::open(run_root).map_err(|e| bad(e.to_string()))?;
            let lock = run_dir.lock().map_err(|e| bad(e.to_string()))?;
            let preset = preset_or_runs(req.preset.clone(), &run_dir)?;
            let state = checkpoint::read_state(&ckpt).map_err(|e| bad(e.to_string()))?;
            let family = state.get("family").and_then(|v| v.as_str()).unwrap_or("?");
            if family != preset.preset().family().name() {
                return Err(bad(format!(
                    "{}: a `{family}` checkpoint cannot resume a `{}` preset",
                    ckpt.display(),
                    preset.preset().family().name()
                )));
            }
            let want = preset.preset().front().signature();
            let have = state
                .get("signature")
                .and_then(|v| v.as_str())
                .unwrap_or("?");
            if want != have {
                return Err(bad(format!(
                    "{}: the checkpoint's model is {have}, the preset builds {want}",
                    ckpt.display()
                )));
            }
            (preset, run_dir, lock, Some(ckpt))
        }
        None => {
            let preset = req
                .preset
                .clone()
                .ok_or_else(|| bad("no preset given".into()))?;
            check_data(preset.preset())?;
            // The device is checked before the folder exists, like the data.
            resolve_device(req.device.as_deref(), &preset)?;
            let run_dir = RunDir::create(&req.runs_dir, preset.preset().name())
                .map_err(|e| bad(e.to_string()))?;
            let lock = run_dir.lock().map_err(|e| bad(e.to_string()))?;
            (preset, run_dir, lock, None)
        }
    };
    let device = resolve_device(req.device.as_deref(), &preset)?;
    use_threads(&preset);
    if resume_from.is_none() {
        let (_, world) = crate::engine::dist::rank_and_world();
        let mut meta = vec![
            ("workbench", env!("CARGO_PKG_VERSION").to_string()),
            ("git_commit", env!("WORKBENCH_GIT_COMMIT").to_string()),
            ("libtorch", device::libtorch_version().to_string()),
            ("device", device::describe(device)),
            ("seed", preset.preset().seed().to_string()),
            (
                "launched",
                crate::core::timefmt::readable_utc(crate::core::timefmt::unix_now() as u64)
                    + " UTC",
            ),
        ];
        if world > 1 {
            // Each rank trains the preset's batch: the global batch is `world` times it.
            meta.push(("world_size", world.to_string()));
        }
        run_dir
            .write_preset(&preset.preset().to_ron(), &meta)
            .map_err(|e| bad(e.to_string()))?;
    }
    let live_overrides = lr_overrides(&preset, req.lr_g, req.lr_d);
    Ok(RunPlan {
        preset,
        run_dir,
        device,
        resume_from,
        step_limit: req.step_limit,
        live_overrides,
        notes,
        restart,
        watch: req.watch,
        _lock: lock,
    })
}

/// [`prepare`] for every process of a run: alone, or as rank 0 of a data-parallel run (which
/// then tells the other ranks its run directory and checkpoint, or why it could not start);
/// the other ranks follow with [`prepare_rank`].
pub fn prepare_as_rank(req: RunRequest) -> Result<RunPlan, EngineError> {
    let (rank, world) = crate::engine::dist::rank_and_world();
    if world == 1 {
        return prepare(req);
    }
    if rank == 0 {
        let prepared = prepare(req);
        let message = match &prepared {
            Ok(plan) => serde_json::json!({
                "run_dir": plan.run_dir.root(),
                "resume_from": plan.resume_from,
            }),
            Err(e) => serde_json::json!({ "error": e.to_string() }),
        };
        crate::engine::dist::broadcast_text(&message.to_string())?;
        return prepared;
    }
    let text = crate::engine::dist::broadcast_text("")?;
    let message: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| EngineError::Model(format!("rank 0's start message: {e}")))?;
    if let Some(error) = message.get("error").and_then(|v| v.as_str()) {
        return Err(EngineError::BadInput(format!(
            "rank 0 could not start the run: {error}"
        )));
    }
    let root = message
        .get("run_dir")
        .and_then(|v| v.as_str())
        .map(PathBuf::from)
        .ok_or_else(|| EngineError::Model(format!("rank 0's start message: {text}")))?;
    let resume_from = message
        .get("resume_from")
        .and_then(|v| v.as_str())
        .map(PathBuf::from);
    prepare_rank(req, &root, resume_from, rank)
}

/// The plan of a data-parallel rank other than 0: rank 0 prepared run `root` (and resolved
/// the checkpoint to resume from); this rank trains the same preset with its log under
/// `ranks/rank-N`.
pub fn prepare_rank(
    req: RunRequest,
    root: &Path,
    resume_from: Option<PathBuf>,
    rank: usize,
) -> Result<RunPlan, EngineError> {
    let bad = EngineError::BadInput;
    let root_dir = RunDir::open(root).map_err(|e| bad(e.to_string()))?;
    let preset = preset_or_runs(req.preset, &root_dir)?;
    let run_dir = RunDir::create_rank(root, rank).map_err(|e| bad(e.to_string()))?;
    let lock = run_dir.lock().map_err(|e| bad(e.to_string()))?;
    run_dir
        .write_preset(
            &preset.preset().to_ron(),
            &[
                ("rank", rank.to_string()),
                ("run", root.display().to_string()),
            ],
        )
        .map_err(|e| bad(e.to_string()))?;
    let device = resolve_device(req.device.as_deref(), &preset)?;
    use_threads(&preset);
    let live_overrides = lr_overrides(&preset, req.lr_g, req.lr_d);
    Ok(RunPlan {
        preset,
        run_dir,
        device,
        resume_from,
        step_limit: req.step_limit,
        live_overrides,
        notes: req.notes,
        restart: false,
        watch: req.watch,
        _lock: lock,
    })
}

/// The device a request trains on, found before anything is prepared (a data-parallel rank
/// picks its backend by it): `--device`, else the preset's, else, resuming without a preset,
/// the run's own preset's.
pub fn device_for(req: &RunRequest) -> Result<tch::Device, EngineError> {
    if let Some(d) = &req.device {
        return device::resolve(d);
    }
    if let Some(p) = &req.preset {
        return device::resolve(p.preset().device());
    }
    let Some(path) = &req.resume else {
        return device::resolve("auto");
    };
    // A run folder, or a checkpoint folder two levels below its run.
    let run = if path.join("preset.ron").is_file() {
        path.clone()
    } else {
        checkpoint::resolve(path)
            .ok()
            .and_then(|c| Some(c.parent()?.parent()?.to_path_buf()))
            .unwrap_or_else(|| path.clone())
    };
    let run_dir = RunDir::open(&run).map_err(|e| EngineError::BadInput(e.to_string()))?;
    let preset = preset_or_runs(None, &run_dir)?;
    device::resolve(preset.preset().device())
}

/// Sets libtorch's CPU threads to the preset's (0 keeps libtorch's default).
fn use_threads(preset: &ValidatedPreset) {
    let threads = preset.preset().threads();
    if threads > 0 {
        tch::set_num_threads(threads as i32);
    }
}

/// The learning rates set on the command line, as live settings of the family's fields.
fn lr_overrides(
    preset: &ValidatedPreset,
    lr_g: Option<f64>,
    lr_d: Option<f64>,
) -> Vec<(String, f64)> {
    // The family says which fields are its learning rates.
    let lr = preset.preset().front().lr_fields();
    let mut out = Vec::new();
    if let Some(v) = lr_g {
        out.push((lr.generator.to_string(), v));
    }
    if let Some(v) = lr_d {
        out.extend(lr.critic.iter().map(|f| ((*f).to_string(), v)));
    }
    out
}

/// The preset given, or the run's own `preset.ron`.
fn preset_or_runs(
    given: Option<ValidatedPreset>,
    run_dir: &RunDir,
) -> Result<ValidatedPreset, EngineError> {
    match given {
        Some(p) => Ok(p),
        None => crate::core::preset::load_file(&run_dir.preset_path())
            .map(|(p, _)| p)
            .map_err(|e| EngineError::BadInput(e.to_string())),
    }
}

/// The request's device, or the preset's.
fn resolve_device(
    device: Option<&str>,
    preset: &ValidatedPreset,
) -> Result<tch::Device, EngineError> {
    device::resolve(device.unwrap_or_else(|| preset.preset().device()))
}

/// The data preflight as the user's error (exit code 2), before any run directory exists.
fn check_data(preset: &AnyPreset) -> Result<(), EngineError> {
    let (_, world) = crate::engine::dist::rank_and_world();
    crate::engine::data::preflight(preset, world).map_err(|e| EngineError::BadInput(e.to_string()))
}

/// Whether `path` is a run folder that never wrote a checkpoint (killed or failed early).
fn run_without_checkpoint(path: &Path) -> bool {
    path.join("preset.ron").is_file() && !path.join("checkpoints").join("latest").is_file()
}

/// The UI's end of a running worker. Dropping it stops the run and joins the thread.
#[derive(Debug)]
pub struct WorkerHandle {
    commands: Sender<Command>,
    events: Receiver<Event>,
    thread: Option<JoinHandle<()>>,
    run_dir: PathBuf,
}

impl WorkerHandle {
    /// Sends a command; returns false when the worker has ended.
    pub fn send(&self, command: Command) -> bool {
        self.commands.try_send(command).is_ok()
    }

    /// A sender of commands to this run, for another thread (a signal watcher).
    #[must_use]
    pub fn commands(&self) -> Sender<Command> {
        self.commands.clone()
    }

    #[must_use]
    pub fn events(&self) -> &Receiver<Event> {
        &self.events
    }

    #[must_use]
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// Waits for the thread to end.
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = self.commands.try_send(Command::Stop);
            let _ = t.join();
        }
    }
}

/// The name of the training threads.
pub const TRAINER_THREAD: &str = "workbench-trainer";

/// Keeps panics of training threads off the terminal: the session catches them and fails the
/// run with one line, and the whole text (with libtorch's C++ backtrace) goes to the run log.
/// Panics of every other thread reach the previous hook as before.
fn quiet_trainer_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() != Some(TRAINER_THREAD) {
                previous(info);
            }
        }));
    });
}

/// Starts the worker thread on a prepared plan.
pub fn spawn(plan: RunPlan, waker: Option<Waker>) -> Result<WorkerHandle, EngineError> {
    let (cmd_tx, cmd_rx) = bounded(COMMAND_CAPACITY);
    let (ev_tx, ev_rx) = bounded(EVENT_CAPACITY);
    let run_dir = plan.run_dir.root().to_path_buf();
    let log = LogWriter::open(&plan.run_dir.events_path())?;
    quiet_trainer_panics();
    let thread = std::thread::Builder::new()
        .name(TRAINER_THREAD.into())
        .spawn(move || {
            let mut emitter = Emitter::new(log, ev_tx, waker);
            let result = catch_unwind(AssertUnwindSafe(|| {
                session::run(&plan, &cmd_rx, &mut emitter)
            }));
            let step = emitter.step;
            let end = match result {
                Ok(Ok(ended)) => Event::RunFinished {
                    step: ended.step,
                    outcome: ended.outcome,
                    signal: ended.signal,
                },
                Ok(Err(e)) => Event::RunFailed {
                    step,
                    message: first_line(&e.to_string()).to_string(),
                },
                Err(panic) => {
                    let text = panic_text(&*panic);
                    let _ = emitter.emit(Event::Log {
                        step,
                        level: crate::core::protocol::Level::Error,
                        message: format!("internal error: {text}"),
                    });
                    Event::RunFailed {
                        step,
                        message: format!("internal error: {}", first_line(&text)),
                    }
                }
            };
            emitter.finish(end);
        })
        .map_err(|e| EngineError::Model(format!("cannot start the training thread: {e}")))?;
    Ok(WorkerHandle {
        commands: cmd_tx,
        events: ev_rx,
        thread: Some(thread),
        run_dir,
    })
}

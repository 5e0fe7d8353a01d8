//! The training worker: a named thread that owns the model, the data and the device.
//!
//! [`prepare`] checks everything a user can get wrong (device, data folder, checkpoint family
//! and shape, writable runs directory) before any thread starts, so bad input is reported as
//! such. [`spawn`] then runs the plan; any error or panic inside becomes `RunFailed`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::core::preset::wgan_gp::ImageSource;
use crate::core::preset::{AnyPreset, ValidatedPreset};
use crate::core::protocol::{Command, Event};
use crate::core::rundir::RunDir;
use crate::core::runlog::LogWriter;
use crate::engine::checkpoint;
use crate::engine::session::{self, Emitter, RunPlan, Waker};
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
}

/// Checks a request and lays out the run directory. Errors here are the user's to fix.
pub fn prepare(req: RunRequest) -> Result<RunPlan, EngineError> {
    let bad = EngineError::BadInput;
    let (preset, run_dir, resume_from) = match &req.resume {
        Some(path) => {
            let ckpt = checkpoint::resolve(path).map_err(|e| bad(e.to_string()))?;
            let run_root = ckpt.parent().and_then(Path::parent).ok_or_else(|| {
                bad(format!(
                    "{}: not inside a run's checkpoints folder",
                    ckpt.display()
                ))
            })?;
            let run_dir = RunDir::open(run_root).map_err(|e| bad(e.to_string()))?;
            let preset = match req.preset.clone() {
                Some(p) => p,
                None => {
                    crate::core::preset::load_file(&run_dir.preset_path())
                        .map_err(|e| bad(e.to_string()))?
                        .0
                }
            };
            let state = checkpoint::read_state(&ckpt).map_err(|e| bad(e.to_string()))?;
            let family = state.get("family").and_then(|v| v.as_str()).unwrap_or("?");
            if family != preset.preset().family().name() {
                return Err(bad(format!(
                    "{}: a `{family}` checkpoint cannot resume a `{}` preset",
                    ckpt.display(),
                    preset.preset().family().name()
                )));
            }
            let want = session::signature_of(preset.preset());
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
            (preset, run_dir, Some(ckpt))
        }
        None => {
            let preset = req
                .preset
                .clone()
                .ok_or_else(|| bad("no preset given".into()))?;
            check_data(preset.preset())?;
            let run_dir = RunDir::create(&req.runs_dir, preset.preset().name())
                .map_err(|e| bad(e.to_string()))?;
            (preset, run_dir, None)
        }
    };
    let device_text = req
        .device
        .clone()
        .unwrap_or_else(|| preset.preset().device().to_string());
    let device = device::resolve(&device_text)?;
    let threads = preset.preset().threads();
    if threads > 0 {
        tch::set_num_threads(threads as i32);
    }
    if resume_from.is_none() {
        let meta = [
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
        run_dir
            .write_preset(&preset.preset().to_ron(), &meta)
            .map_err(|e| bad(e.to_string()))?;
    }
    let mut live_overrides = Vec::new();
    if let Some(lr) = req.lr_g {
        live_overrides.push(("train.lr_g".to_string(), lr));
    }
    if let Some(lr) = req.lr_d {
        live_overrides.push(("train.lr_d".to_string(), lr));
    }
    Ok(RunPlan {
        preset,
        run_dir,
        device,
        resume_from,
        step_limit: req.step_limit,
        live_overrides,
        notes: req.notes,
    })
}

fn check_data(preset: &AnyPreset) -> Result<(), EngineError> {
    match preset {
        AnyPreset::WganGp(p) if p.data.source == ImageSource::Folder => {
            if Path::new(&p.data.folder).is_dir() {
                Ok(())
            } else {
                Err(EngineError::BadInput(format!(
                    "data.folder: `{}` is not a folder",
                    p.data.folder
                )))
            }
        }
        AnyPreset::WganGp(_) => Ok(()),
        AnyPreset::WubuGaad(p) => {
            use crate::core::preset::wubu_gaad::{FlowMethod, VideoSource};
            let mut files = Vec::new();
            if p.data.source == VideoSource::File {
                files.push(("data.path", p.data.path.as_str()));
            }
            if !p.data.validation_path.trim().is_empty() {
                files.push(("data.validation_path", p.data.validation_path.as_str()));
            }
            if p.model.motion && p.model.flow == FlowMethod::Torchscript {
                files.push(("model.flow_model", p.model.flow_model.as_str()));
            }
            if !p.validation.lpips_model.trim().is_empty() {
                files.push(("validation.lpips_model", p.validation.lpips_model.as_str()));
            }
            for (field, path) in files {
                if !Path::new(path).exists() {
                    return Err(EngineError::BadInput(format!(
                        "{field}: `{path}` does not exist"
                    )));
                }
            }
            Ok(())
        }
    }
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

/// Starts the worker thread on a prepared plan.
pub fn spawn(plan: RunPlan, waker: Option<Waker>) -> Result<WorkerHandle, EngineError> {
    let (cmd_tx, cmd_rx) = bounded(COMMAND_CAPACITY);
    let (ev_tx, ev_rx) = bounded(EVENT_CAPACITY);
    let run_dir = plan.run_dir.root().to_path_buf();
    let lock = plan
        .run_dir
        .lock()
        .map_err(|e| EngineError::BadInput(e.to_string()))?;
    let log = LogWriter::open(&plan.run_dir.events_path())?;
    let thread = std::thread::Builder::new()
        .name("workbench-trainer".into())
        .spawn(move || {
            let _lock = lock;
            let mut emitter = Emitter::new(log, ev_tx, waker);
            let result = catch_unwind(AssertUnwindSafe(|| {
                session::run(&plan, &cmd_rx, &mut emitter)
            }));
            let end = match result {
                Ok(Ok((step, outcome))) => Event::RunFinished { step, outcome },
                Ok(Err(e)) => Event::RunFailed {
                    step: 0,
                    message: e.to_string(),
                },
                Err(panic) => {
                    let message = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
                        .unwrap_or_else(|| "the training thread panicked".to_string());
                    Event::RunFailed {
                        step: 0,
                        message: format!("internal error: {message}"),
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

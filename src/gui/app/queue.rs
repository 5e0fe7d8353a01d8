//! The queue file's operations the Queue tab asks for, run by the app off the UI thread: the
//! same edits as `workbench queue` (each under the file's lock), reads that first ask SLURM
//! about its open jobs, and the runner started as a process of its own.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::core::jobs;
use crate::core::preset::AnyPreset;
use crate::core::queue::{self, JobState, Queue};

/// A read of the queue (with whether a runner works it), after an edit's report, or why it
/// failed.
pub(crate) type Reply = Result<(Queue, bool, Option<Applied>), String>;

/// What an edit did: the line the Queue tab shows, and the branch folder to overlay on the
/// dashboard when the edit asked for it (A/B).
#[derive(Debug, Clone, Default)]
pub(crate) struct Applied {
    pub said: String,
    pub overlay: Option<PathBuf>,
}

impl From<String> for Applied {
    fn from(said: String) -> Self {
        Self {
            said,
            overlay: None,
        }
    }
}

/// How often the tab asks SLURM about its jobs (each ask is one `squeue` and one `scontrol`
/// per job, over ssh for a remote cluster): cluster admins ask for no more.
pub(crate) const SLURM_POLL: Duration = Duration::from_secs(30);

/// An edit of the queue file.
#[derive(Debug, Clone)]
pub(crate) enum QueueEdit {
    /// Add a job for the preset (written under `RUNS_DIR/queued/`); with a SLURM profile and
    /// the `workbench` to run there, submit it.
    AddPreset(Box<AnyPreset>, Option<(PathBuf, PathBuf)>),
    /// Add one job per value of a field, on the preset (one SLURM job array with a profile).
    AddSweep {
        base: Box<AnyPreset>,
        field: String,
        values: Vec<serde_json::Value>,
        slurm: Option<(PathBuf, PathBuf)>,
    },
    Cancel(u64),
    /// Move a pending job by this many places among the pending ones.
    Move(u64, i64),
    /// Pause (no new job starts) or resume the queue.
    Pause(bool),
    /// Promote a trial the sweep's scheduler stopped (`core::pruner`) and queue its resume.
    Promote(PathBuf, Option<(PathBuf, PathBuf)>),
    /// Make a branch of a run (`core::branch`) and queue it (submit it with a profile).
    Branch {
        request: Box<QueueRequestBranch>,
        slurm: Option<(PathBuf, PathBuf)>,
    },
}

/// A branch to make: the parent run, the checkpoint's step, the changed fields, the name.
#[derive(Debug, Clone)]
pub(crate) struct QueueRequestBranch {
    pub parent: PathBuf,
    pub at: Option<u64>,
    pub set: Vec<(String, serde_json::Value)>,
    pub name: Option<String>,
    /// Overlay the branch on the dashboard once it is made (A/B).
    pub overlay: bool,
}

fn now() -> u64 {
    crate::core::timefmt::unix_now().max(0.0) as u64
}

/// Applies an edit to the queue file; returns what it did.
pub(crate) fn apply(path: &Path, runs_dir: &Path, edit: QueueEdit) -> Result<Applied, String> {
    match edit {
        QueueEdit::Branch { request, slurm } => branch(runs_dir, &request, slurm.as_ref()),
        other => apply_text(path, runs_dir, other).map(Applied::from),
    }
}

/// Makes a branch of a run (`core::branch`) and queues it.
fn branch(
    runs_dir: &Path,
    request: &QueueRequestBranch,
    slurm: Option<&(PathBuf, PathBuf)>,
) -> Result<Applied, String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let made = crate::core::branch::create(&crate::core::branch::BranchRequest {
        parent: &request.parent,
        at: request.at,
        set: request.set.clone(),
        name: request.name.clone(),
    })
    .map_err(|e| err(&e))?;
    let dir = made.run.root().display().to_string();
    let args = vec!["--resume".to_string(), dir.clone()];
    let added = add(runs_dir, made.preset.preset().name(), vec![args], slurm)?;
    let what = format!(
        "branch {dir} at step {} ({})",
        made.lineage.fork_step,
        made.lineage.describe_changes()
    );
    let said = match added.slurm_job {
        Some(job) => format!("submitted SLURM job {job}: {what}"),
        None => format!(
            "queued job {}: {what}",
            added.ids.first().copied().unwrap_or_default()
        ),
    };
    Ok(Applied {
        said,
        overlay: request.overlay.then(|| made.run.root().to_path_buf()),
    })
}

fn apply_text(path: &Path, runs_dir: &Path, edit: QueueEdit) -> Result<String, String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    match edit {
        QueueEdit::AddPreset(p, slurm) => {
            let file = write_queued(runs_dir, &p)?;
            let args = vec!["--preset".to_string(), file.display().to_string()];
            let added = add(runs_dir, p.name(), vec![args], slurm.as_ref())?;
            let id = added.ids.first().copied().unwrap_or_default();
            Ok(match added.slurm_job {
                Some(job) => format!("submitted SLURM job {job}: {}", file.display()),
                None => format!("queued job {id}: {}", file.display()),
            })
        }
        QueueEdit::AddSweep {
            base,
            field,
            values,
            slurm,
        } => {
            let name = format!(
                "{}-{}",
                base.name(),
                crate::core::timefmt::compact_utc(now())
            );
            let sweep = crate::core::sweep::Sweep {
                name: name.clone(),
                base: String::new(),
                grid: [(field, values)].into_iter().collect(),
                random: None,
                scheduler: None,
                tpe: None,
            };
            let runs = sweep.plan(&base).map_err(|e| err(&e))?;
            let tasks = crate::core::sweep::write_runs(runs_dir, &sweep, "the Queue tab", &runs)
                .map_err(|e| err(&e))?;
            let added = add(runs_dir, &name, tasks, slurm.as_ref())?;
            Ok(match added.slurm_job {
                Some(job) => format!(
                    "submitted sweep {name} as SLURM job array {job}: {} runs",
                    added.ids.len()
                ),
                None => format!(
                    "queued sweep {name}: {} runs (jobs {:?})",
                    added.ids.len(),
                    added.ids
                ),
            })
        }
        QueueEdit::Cancel(id) => {
            crate::core::jobs::cancel_job(path, id, now()).map_err(|e| err(&e))?;
            Ok(format!("cancelled job {id}"))
        }
        QueueEdit::Pause(on) => {
            queue::update(path, |q| q.paused = on).map_err(|e| err(&e))?;
            Ok(if on {
                "paused: no new job starts"
            } else {
                "resumed"
            }
            .to_string())
        }
        QueueEdit::Branch { .. } => Err("a branch is made by `branch`".into()),
        QueueEdit::Promote(run, slurm) => {
            let (link, was) = crate::core::pruner::promote(&run).map_err(|e| err(&e))?;
            let args = vec!["--resume".to_string(), run.display().to_string()];
            let added = add(runs_dir, &link.trial, vec![args], slurm.as_ref())?;
            let why = was.map_or(String::new(), |s| format!(" ({})", s.describe()));
            Ok(match added.slurm_job {
                Some(job) => format!("promoted `{}`{why}: SLURM job {job} resumes it", link.trial),
                None => format!(
                    "promoted `{}`{why}: queued job {} resumes it to its full budget",
                    link.trial,
                    added.ids.first().copied().unwrap_or_default()
                ),
            })
        }
        QueueEdit::Move(id, by) => {
            queue::update(path, |q| {
                let pending: Vec<u64> = q
                    .jobs
                    .iter()
                    .filter(|j| j.state == JobState::Pending && j.slurm.is_none())
                    .map(|j| j.id)
                    .collect();
                let at = pending.iter().position(|&p| p == id).unwrap_or(0) as i64;
                let to = (at + by).clamp(0, pending.len().saturating_sub(1) as i64) as usize;
                q.move_pending(id, to)
            })
            .map_err(|e| err(&e))?
            .map_err(|e| err(&e))?;
            Ok(format!("moved job {id}"))
        }
    }
}

/// Adds tasks to the local queue, or with a SLURM profile and `workbench` submits them.
fn add(
    runs_dir: &Path,
    name: &str,
    tasks: Vec<Vec<String>>,
    slurm: Option<&(PathBuf, PathBuf)>,
) -> Result<jobs::Added, String> {
    let target = match slurm {
        Some((profile, exe)) => jobs::Target::Slurm { profile, exe },
        None => jobs::Target::Local,
    };
    jobs::add_tasks(runs_dir, name, tasks, target, now()).map_err(|e| e.to_string())
}

/// Writes a preset as `RUNS_DIR/queued/<name>.ron` (a fresh name when taken).
fn write_queued(runs_dir: &Path, p: &AnyPreset) -> Result<PathBuf, String> {
    let dir = crate::core::rundir::absolute(&runs_dir.join("queued"));
    let name = p.name();
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let stem = crate::core::rundir::safe_file_name(name);
    let mut file = dir.join(format!("{stem}.ron"));
    let mut n = 1;
    while file.exists() {
        file = dir.join(format!("{stem}-{n}.ron"));
        n += 1;
    }
    crate::core::rundir::atomic_write(&file, p.to_ron().as_bytes()).map_err(|e| e.to_string())?;
    Ok(file)
}

/// Reads the queue, first asking SLURM about its open jobs when `ask_slurm`, and whether a
/// runner works it.
pub(crate) fn read(path: &Path, runs_dir: &Path, ask_slurm: bool) -> Result<(Queue, bool), String> {
    let q = queue::read(path).map_err(|e| e.to_string())?;
    let open_slurm = q
        .jobs
        .iter()
        .any(|j| j.slurm.is_some() && matches!(j.state, JobState::Pending | JobState::Running));
    let q = if open_slurm && ask_slurm {
        crate::core::slurm::refresh(path, runs_dir, now()).map_err(|e| e.to_string())?;
        queue::read(path).map_err(|e| e.to_string())?
    } else {
        q
    };
    Ok((q, jobs::runner_active(path)))
}

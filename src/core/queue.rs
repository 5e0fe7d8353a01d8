//! The local run queue: a JSON file of jobs (a preset and `workbench train` arguments each)
//! that one runner process works through in order, continuing past failures. The file is the
//! queue: the app and the CLI only read and edit it, each edit under an exclusive lock on a
//! sibling `.lock` file, so closing the app stops nothing and a second editor never loses an
//! edit.

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Pending,
    Running,
    Finished,
    Failed,
    Cancelled,
    /// It was running when its runner stopped; resume its run or add it again.
    Interrupted,
}

impl JobState {
    pub fn name(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Finished => "finished",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Interrupted => "interrupted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: u64,
    /// `workbench train`'s arguments after `train` (`--preset P`, `--set F=V`, ...).
    pub args: Vec<String>,
    pub state: JobState,
    /// Unix seconds.
    pub added: u64,
    #[serde(default)]
    pub started: Option<u64>,
    #[serde(default)]
    pub ended: Option<u64>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// The training process while it runs: its id, machine and start time (`/proc`'s
    /// clock ticks since boot), which together name it even after its id is reused.
    #[serde(default)]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ticks: Option<u64>,
    /// The job's output (standard output and error): under `RUNS_DIR/queue/` until its run
    /// folder exists, then `output.log` in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<PathBuf>,
    /// What the last look at the job found that its state does not say: SLURM's own state,
    /// or that SLURM did not answer (the state shown is then the last known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default)]
    pub run_dir: Option<PathBuf>,
    /// Submitted to SLURM (which runs it; `queue run` leaves it alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm: Option<SlurmRef>,
}

/// A queue job that SLURM runs: its job id, array index and the profile it went with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlurmRef {
    pub job_id: String,
    #[serde(default)]
    pub array_index: Option<u64>,
    pub profile: PathBuf,
}

impl SlurmRef {
    /// SLURM's name of the job: `id`, or `id_index` for an array task.
    pub fn key(&self) -> String {
        match self.array_index {
            Some(i) => format!("{}_{i}", self.job_id),
            None => self.job_id.clone(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Queue {
    pub next_id: u64,
    pub jobs: Vec<Job>,
    /// No new job starts while paused (running ones go on).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("{path}: not a queue file: {message}")]
    Format { path: PathBuf, message: String },
    #[error("no job {0} in the queue")]
    NoJob(u64),
    #[error("job {id} is {state}; only a pending job can move")]
    NotPending { id: u64, state: &'static str },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> QueueError + '_ {
    move |e| QueueError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

impl Queue {
    /// Appends a pending job; returns its id.
    pub fn add(&mut self, args: Vec<String>, now: u64) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.jobs.push(Job {
            id,
            args,
            state: JobState::Pending,
            added: now,
            started: None,
            ended: None,
            exit_code: None,
            pid: None,
            host: None,
            started_ticks: None,
            log: None,
            note: None,
            run_dir: None,
            slurm: None,
        });
        id
    }

    /// Records a job SLURM already accepted; returns its id.
    pub fn add_slurm(&mut self, args: Vec<String>, slurm: SlurmRef, now: u64) -> u64 {
        let id = self.add(args, now);
        if let Some(j) = self.jobs.last_mut() {
            j.slurm = Some(slurm);
        }
        id
    }

    pub fn job_mut(&mut self, id: u64) -> Result<&mut Job, QueueError> {
        self.jobs
            .iter_mut()
            .find(|j| j.id == id)
            .ok_or(QueueError::NoJob(id))
    }

    /// Cancels a pending job, or a running one (whose process the caller stops; returned).
    pub fn cancel(&mut self, id: u64, now: u64) -> Result<Option<u32>, QueueError> {
        let job = self.job_mut(id)?;
        let pid = match job.state {
            JobState::Pending => None,
            JobState::Running => job.pid,
            _ => return Ok(None),
        };
        job.state = JobState::Cancelled;
        job.ended = Some(now);
        Ok(pid)
    }

    /// Moves a pending job to position `to` among the pending jobs (0 = next).
    pub fn move_pending(&mut self, id: u64, to: usize) -> Result<(), QueueError> {
        let from = self
            .jobs
            .iter()
            .position(|j| j.id == id)
            .ok_or(QueueError::NoJob(id))?;
        if self.jobs[from].state != JobState::Pending {
            return Err(QueueError::NotPending {
                id,
                state: self.jobs[from].state.name(),
            });
        }
        let job = self.jobs.remove(from);
        let pending: Vec<usize> = self
            .jobs
            .iter()
            .enumerate()
            .filter(|(_, j)| j.state == JobState::Pending)
            .map(|(i, _)| i)
            .collect();
        let at = pending.get(to).copied().unwrap_or(self.jobs.len());
        self.jobs.insert(at, job);
        Ok(())
    }

    /// The next job to run, marked running.
    pub fn start_next(&mut self, now: u64) -> Option<Job> {
        let job = self
            .jobs
            .iter_mut()
            .find(|j| j.state == JobState::Pending && j.slurm.is_none())?;
        job.state = JobState::Running;
        job.started = Some(now);
        Some(job.clone())
    }

    /// Local jobs marked running whose process is gone: each takes the state its run
    /// folder ended in (`ended(job)`: `None` when it never ended, then interrupted). `alive`
    /// tells whether a job's process still runs. Returns the ids of the running jobs whose
    /// process lives (a new runner watches them to their end).
    pub fn reconcile(
        &mut self,
        alive: impl Fn(&Job) -> bool,
        ended: impl Fn(&Job) -> Option<JobState>,
        now: u64,
    ) -> Vec<u64> {
        let mut live = Vec::new();
        for j in &mut self.jobs {
            if j.state != JobState::Running || j.slurm.is_some() {
                continue;
            }
            if alive(j) {
                live.push(j.id);
                continue;
            }
            j.state = ended(j).unwrap_or(JobState::Interrupted);
            j.ended = Some(now);
            j.pid = None;
        }
        live
    }
}

/// The queue file's lock: held while an edit reads and rewrites the file.
fn lock(path: &Path) -> Result<File, QueueError> {
    super::rundir::lock_beside(path).map_err(io(&path.with_extension("lock")))
}

/// The queue in `path` (empty when the file does not exist).
pub fn read(path: &Path) -> Result<Queue, QueueError> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| QueueError::Format {
            path: path.to_path_buf(),
            message: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Queue::default()),
        Err(e) => Err(io(path)(e)),
    }
}

/// Reads, edits and atomically rewrites the queue under its lock.
pub fn update<T>(path: &Path, edit: impl FnOnce(&mut Queue) -> T) -> Result<T, QueueError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let _guard = lock(path)?;
    let mut q = read(path)?;
    let out = edit(&mut q);
    let text = serde_json::to_string_pretty(&q).map_err(|e| QueueError::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    super::rundir::atomic_write(path, text.as_bytes()).map_err(|e| QueueError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(out)
}

/// Edits job `id` under the queue's lock; a job no longer in the file (removed by hand) is
/// left alone.
pub fn update_job(path: &Path, id: u64, edit: impl FnOnce(&mut Job)) -> Result<(), QueueError> {
    update(path, |q| {
        if let Ok(j) = q.job_mut(id) {
            edit(j);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(p: &str) -> Vec<String> {
        vec!["--preset".into(), p.into()]
    }

    #[test]
    fn jobs_run_in_order_move_and_cancel() {
        let mut q = Queue::default();
        let a = q.add(args("a"), 1);
        let b = q.add(args("b"), 2);
        let c = q.add(args("c"), 3);
        q.move_pending(c, 0).expect("move");
        assert_eq!(q.start_next(10).map(|j| j.id), Some(c));
        assert!(matches!(
            q.move_pending(c, 1),
            Err(QueueError::NotPending { .. })
        ));
        assert_eq!(q.cancel(a, 11).expect("cancel"), None);
        q.job_mut(c).expect("c").pid = Some(42);
        assert_eq!(q.cancel(c, 12).expect("cancel running"), Some(42));
        assert_eq!(q.start_next(13).map(|j| j.id), Some(b));
        assert_eq!(q.start_next(14), None);
        assert!(matches!(q.cancel(99, 0), Err(QueueError::NoJob(99))));
    }

    #[test]
    fn a_running_job_without_a_live_process_is_interrupted() {
        let mut q = Queue::default();
        let a = q.add(args("a"), 1);
        let b = q.add(args("b"), 1);
        q.start_next(2);
        q.start_next(2);
        q.job_mut(a).expect("a").pid = Some(7);
        q.job_mut(b).expect("b").pid = Some(8);
        let live = q.reconcile(|j| j.pid == Some(8), |_| None, 3);
        assert_eq!(live, vec![b]);
        assert_eq!(q.jobs[0].state, JobState::Interrupted);
        assert_eq!(q.jobs[1].state, JobState::Running);
        // A job whose run folder says how it ended takes that state.
        q.job_mut(b).expect("b").pid = Some(9);
        q.reconcile(|j| j.pid == Some(8), |_| Some(JobState::Finished), 4);
        assert_eq!(q.jobs[1].state, JobState::Finished);
    }

    #[test]
    fn edits_persist_through_the_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("q/queue.json");
        let id = update(&path, |q| q.add(args("x"), 5)).expect("add");
        let q = read(&path).expect("read");
        assert_eq!(q.jobs.len(), 1);
        assert_eq!((q.jobs[0].id, q.jobs[0].state), (id, JobState::Pending));
        std::fs::write(&path, "not json").expect("write");
        assert!(matches!(read(&path), Err(QueueError::Format { .. })));
    }
}

//! The queue's jobs as processes: what the CLI and the Queue tab share, above the queue file
//! (`queue`) and SLURM (`slurm`). Adding jobs (locally or to SLURM), cancelling one, the
//! runner that trains the local queue's jobs, and telling whether a job's process still runs.
//!
//! A job outlives its runner: each is its own process in its own process group (Ctrl-C or a
//! closed terminal that ends the runner does not reach it), its output goes to a file (no
//! pipe to break when the runner goes), and it records its run folder in the queue itself. A
//! runner that starts finds the jobs a dead one left: those still training it watches to
//! their end; the others take the state their run folder ended in.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::queue::{self, Job, JobState, QueueError};
use super::rundir::{host_name, RunDir, RunStatus};

/// Where added jobs go.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// This machine's queue (`workbench queue run` trains it).
    Local,
    /// SLURM under a profile file, running `exe` unless the profile names a `workbench`.
    Slurm { profile: &'a Path, exe: &'a Path },
}

/// Jobs added: SLURM's job id when they went there, and the queue's ids.
#[derive(Debug, Clone, PartialEq)]
pub struct Added {
    pub slurm_job: Option<String>,
    pub ids: Vec<u64>,
}

/// Why adding, cancelling or running jobs failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Slurm(#[from] super::slurm::SlurmError),
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("{0}: another runner is working this queue")]
    RunnerActive(PathBuf),
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> JobError + '_ {
    move |e| JobError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Adds `tasks` (`workbench train` arguments, one job each) to `runs_dir`'s queue, or
/// submits them to SLURM (several: one job array named after `name`).
pub fn add_tasks(
    runs_dir: &Path,
    name: &str,
    tasks: Vec<Vec<String>>,
    target: Target<'_>,
    now: u64,
) -> Result<Added, JobError> {
    match target {
        Target::Local => {
            let ids = queue::update(&runs_dir.join("queue.json"), |q| {
                tasks.into_iter().map(|t| q.add(t, now)).collect()
            })?;
            Ok(Added {
                slurm_job: None,
                ids,
            })
        }
        Target::Slurm { profile, exe } => {
            let (job, ids) = super::slurm::submit_tasks(profile, name, tasks, runs_dir, exe, now)?;
            Ok(Added {
                slurm_job: Some(job),
                ids,
            })
        }
    }
}

/// Cancels job `id`: a pending one is dropped, a running one gets SIGTERM (it stops at its
/// next step with a checkpoint, so its run can be resumed), and one SLURM runs is
/// `scancel`ed. A process is signalled only while it is still the job's (its id may have
/// been reused since).
pub fn cancel_job(path: &Path, id: u64, now: u64) -> Result<(), JobError> {
    let job = queue::read(path)?.jobs.into_iter().find(|j| j.id == id);
    if let Some(r) = job.as_ref().and_then(|j| j.slurm.clone()) {
        let profile = super::slurm::Profile::load(&r.profile)?;
        super::slurm::cancel(&profile, &r.key())?;
    }
    queue::update(path, |q| q.cancel(id, now))??;
    if let Some(j) = job.filter(|j| j.state == JobState::Running && process_alive(j)) {
        if let Some(pid) = j.pid {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
    }
    Ok(())
}

/// When process `pid` of this machine started (`/proc/PID/stat`'s clock ticks since boot);
/// `None` when no such process runs (a zombie has ended).
#[must_use]
pub fn process_start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`: the name may hold spaces and parentheses.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    // Field 22 of the line is the 20th after the name.
    fields.get(19)?.parse().ok()
}

/// Whether a job's training process still runs: on this machine, its process id with the
/// start time recorded; on another (a queue on shared storage), its run folder's heartbeat.
#[must_use]
pub fn process_alive(job: &Job) -> bool {
    let here = job.host.as_deref().is_none_or(|h| h == host_name());
    if here {
        let Some(pid) = job.pid else {
            return false;
        };
        return match (process_start_ticks(pid), job.started_ticks) {
            (Some(now), Some(then)) => now == then,
            (Some(_), None) => true,
            (None, _) => false,
        };
    }
    job.run_dir
        .as_deref()
        .and_then(|d| RunDir::open(d).ok())
        .is_some_and(|d| d.unended_status() == RunStatus::Running)
}

/// The state a job's run folder ended in, if it ended: finished, failed, or interrupted
/// (stopped by a signal or by hand with a checkpoint: resumable).
#[must_use]
pub fn ended_state(job: &Job) -> Option<JobState> {
    let status = RunDir::open(job.run_dir.as_deref()?).ok()?.status().ok()?;
    match status.status {
        RunStatus::Finished => Some(JobState::Finished),
        RunStatus::Failed => Some(JobState::Failed),
        RunStatus::Stopped | RunStatus::Interrupted => Some(JobState::Interrupted),
        RunStatus::Running => None,
    }
}

/// The runner lock's file beside the queue file.
fn runner_lock_path(queue_path: &Path) -> PathBuf {
    queue_path.with_extension("runner")
}

/// Whether a runner works the queue in `queue_path` now (it holds the runner lock).
#[must_use]
pub fn runner_active(queue_path: &Path) -> bool {
    let Ok(f) = std::fs::OpenOptions::new()
        .read(true)
        .open(runner_lock_path(queue_path))
    else {
        return false;
    };
    matches!(f.try_lock_shared(), Err(std::fs::TryLockError::WouldBlock))
}

/// The folder of the jobs' output files before their run folders exist.
fn logs_dir(runs_dir: &Path) -> PathBuf {
    runs_dir.join("queue")
}

/// Starts `exe --runs-dir RUNS_DIR queue run --jobs N` as a process of its own that outlives
/// this one (its own process group; output appended to `RUNS_DIR/queue/runner.log`); a
/// thread named `workbench-runner-wait` reaps it. Returns its process id.
pub fn start_runner(exe: &Path, runs_dir: &Path, jobs: usize) -> Result<u32, JobError> {
    use std::os::unix::process::CommandExt as _;
    let dir = logs_dir(runs_dir);
    std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
    let log_path = dir.join("runner.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io_error(&log_path))?;
    let err = log.try_clone().map_err(io_error(&log_path))?;
    let mut child = Command::new(exe)
        .arg("--runs-dir")
        .arg(runs_dir)
        .args(["queue", "run", "--jobs", &jobs.max(1).to_string()])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(io_error(exe))?;
    let pid = child.id();
    std::thread::Builder::new()
        .name("workbench-runner-wait".into())
        .spawn(move || {
            let _ = child.wait();
        })
        .map_err(io_error(exe))?;
    Ok(pid)
}

/// How a job's own process ended, as the queue's state: 0 finished; 128 + a stop signal's
/// number (stopped with a checkpoint), or killed by a signal, interrupted (resumable); any
/// other status failed. A job already cancelled stays cancelled.
#[must_use]
pub fn exit_state(code: Option<i32>) -> JobState {
    let stopped = super::signals::StopSignal::ALL
        .iter()
        .any(|s| Some(i32::from(s.exit_code())) == code);
    match code {
        Some(0) => JobState::Finished,
        None => JobState::Interrupted,
        Some(_) if stopped => JobState::Interrupted,
        Some(_) => JobState::Failed,
    }
}

/// Trains the local queue's pending jobs, `jobs` at a time, each `exe --runs-dir RUNS_DIR
/// train ARGS` in its own process, until none is pending or running; a paused queue starts
/// none. One runner per queue (a lock). It first repairs what a dead runner left: running
/// jobs whose process is gone take their run folder's end, and those still training are
/// watched to their end. `say` reports progress (one line each).
pub fn run_queue(
    path: &Path,
    runs_dir: &Path,
    exe: &Path,
    jobs: usize,
    say: &(dyn Fn(&str) + Sync),
) -> Result<(), JobError> {
    std::fs::create_dir_all(runs_dir).map_err(io_error(runs_dir))?;
    let lock_path = runner_lock_path(path);
    let runner = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_error(&lock_path))?;
    if runner.try_lock().is_err() {
        return Err(JobError::RunnerActive(path.to_path_buf()));
    }
    let now = super::timefmt::unix_now().max(0.0) as u64;
    let adopted = queue::update(path, |q| q.reconcile(process_alive, ended_state, now))?;
    // Output a dead runner left outside its run folder goes there now.
    for j in queue::read(path)?.jobs.iter().filter(|j| j.slurm.is_none()) {
        move_log(path, j);
    }
    std::thread::scope(|scope| -> Result<(), JobError> {
        let mut running: Vec<std::thread::ScopedJoinHandle<'_, ()>> = Vec::new();
        for id in adopted {
            say(&format!(
                "job {id}: still training from an earlier runner; watching it to its end"
            ));
            let handle = std::thread::Builder::new()
                .name(format!("workbench-job-{id}"))
                .spawn_scoped(scope, move || {
                    if let Err(e) = watch_adopted(path, id) {
                        say(&format!("job {id}: {e}"));
                    }
                })
                .map_err(io_error(path))?;
            running.push(handle);
        }
        let mut said_paused = false;
        loop {
            running.retain(|t| !t.is_finished());
            let q = queue::read(path)?;
            if q.paused {
                if !said_paused {
                    say("the queue is paused: `workbench queue resume` goes on");
                    said_paused = true;
                }
            } else {
                said_paused = false;
                while running.len() < jobs.max(1) {
                    let now = super::timefmt::unix_now().max(0.0) as u64;
                    let Some(job) = queue::update(path, |q| q.start_next(now))? else {
                        break;
                    };
                    let id = job.id;
                    let handle = std::thread::Builder::new()
                        .name(format!("workbench-job-{id}"))
                        .spawn_scoped(scope, move || {
                            if let Err(e) = run_job(path, runs_dir, exe, &job, say) {
                                say(&format!("job {id}: {e}"));
                            }
                        })
                        .map_err(io_error(path))?;
                    running.push(handle);
                }
            }
            let pending = q
                .jobs
                .iter()
                .any(|j| j.state == JobState::Pending && j.slurm.is_none());
            if running.is_empty() && !pending {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    })
}

/// Follows a job started by an earlier runner until its process ends, then records the
/// state its run folder ended in.
fn watch_adopted(path: &Path, id: u64) -> Result<(), JobError> {
    loop {
        let Some(job) = queue::read(path)?.jobs.into_iter().find(|j| j.id == id) else {
            return Ok(());
        };
        if job.state != JobState::Running {
            return Ok(());
        }
        if !process_alive(&job) {
            let state = ended_state(&job).unwrap_or(JobState::Interrupted);
            let now = super::timefmt::unix_now().max(0.0) as u64;
            queue::update_job(path, id, |j| {
                if j.state == JobState::Running {
                    j.state = state;
                }
                j.ended = Some(now);
                j.pid = None;
            })?;
            return Ok(());
        }
        move_log(path, &job);
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Moves a job's output file into its run folder (`output.log`) once it has one; the job
/// keeps writing to it (a rename keeps the open file).
fn move_log(path: &Path, job: &Job) {
    let (Some(log), Some(dir)) = (&job.log, &job.run_dir) else {
        return;
    };
    if log.parent() == Some(dir.as_path()) {
        return;
    }
    let to = dir.join("output.log");
    if std::fs::rename(log, &to).is_ok() {
        let _ = queue::update_job(path, job.id, |j| j.log = Some(to));
    }
}

/// Trains one job as its own process and records its process, output, exit code and state.
fn run_job(
    path: &Path,
    runs_dir: &Path,
    exe: &Path,
    job: &Job,
    say: &(dyn Fn(&str) + Sync),
) -> Result<(), JobError> {
    use std::os::unix::process::CommandExt as _;
    let id = job.id;
    say(&format!("job {id}: workbench train {}", job.args.join(" ")));
    let dir = logs_dir(runs_dir);
    std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
    let log_path = super::rundir::absolute(&dir.join(format!("job-{id}.log")));
    let log = std::fs::File::create(&log_path).map_err(io_error(&log_path))?;
    let err = log.try_clone().map_err(io_error(&log_path))?;
    let queue_spec = format!("{}#{id}", super::rundir::absolute(path).display());
    let spawned = Command::new(exe)
        .arg("--runs-dir")
        .arg(runs_dir)
        .arg("train")
        .args(&job.args)
        .env(super::scheduler::QUEUE_JOB_VAR, queue_spec)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .process_group(0)
        .spawn();
    let now = || super::timefmt::unix_now().max(0.0) as u64;
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            say(&format!("job {id}: cannot start: {e}"));
            return Ok(queue::update_job(path, id, |j| {
                j.state = JobState::Failed;
                j.ended = Some(now());
            })?);
        }
    };
    let pid = child.id();
    queue::update_job(path, id, |j| {
        j.pid = Some(pid);
        j.host = Some(host_name());
        j.started_ticks = process_start_ticks(pid);
        j.log = Some(log_path.clone());
    })?;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(_) => break None,
        }
        if let Some(j) = queue::read(path)?.jobs.iter().find(|j| j.id == id) {
            move_log(path, j);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let code = status.and_then(|s| s.code());
    let state = exit_state(code);
    queue::update_job(path, id, |j| {
        if j.state == JobState::Running {
            j.state = state;
        }
        j.exit_code = code;
        j.ended = Some(now());
        j.pid = None;
    })?;
    if let Some(j) = queue::read(path)?.jobs.iter().find(|j| j.id == id) {
        move_log(path, j);
    }
    say(&format!(
        "job {id}: exit {}",
        code.map_or("by signal".into(), |c| c.to_string())
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_reused_id_is_not() {
        let me = std::process::id();
        let ticks = process_start_ticks(me).expect("our own start time");
        let mut job = queue::Queue::default();
        let id = job.add(vec![], 0);
        let j = job.job_mut(id).expect("job");
        j.pid = Some(me);
        j.host = Some(host_name());
        j.started_ticks = Some(ticks);
        assert!(process_alive(j));
        // The same id with another start time is another process.
        j.started_ticks = Some(ticks + 1);
        assert!(!process_alive(j));
        j.pid = Some(u32::MAX - 1);
        assert!(!process_alive(j));
    }

    #[test]
    fn exit_statuses_become_states() {
        assert_eq!(exit_state(Some(0)), JobState::Finished);
        assert_eq!(exit_state(Some(143)), JobState::Interrupted);
        assert_eq!(exit_state(Some(138)), JobState::Interrupted);
        assert_eq!(exit_state(Some(1)), JobState::Failed);
        assert_eq!(exit_state(Some(2)), JobState::Failed);
        assert_eq!(exit_state(None), JobState::Interrupted);
    }
}

//! The SLURM back end of the run queue: a job (or a sweep, as one job array) becomes a batch
//! script submitted with `sbatch --parsable`, followed with `squeue` and `scontrol show job`
//! and cancelled with `scancel`, over the local shell or `ssh` to a login node. The cluster's
//! settings (partition, time, GPUs, CPUs, memory) come from a small profile file; `srun` starts
//! the ranks of a data-parallel run, which take their place from SLURM's environment.
//!
//! Nothing here keeps state of its own: the queue file records each job's id, and each run
//! folder its scheduler (`scheduler.json`, written by the training process) and heartbeat.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use super::queue::JobState;

/// One cluster's settings: `--slurm PROFILE.ron`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Profile {
    /// `sbatch --partition` (empty: the cluster's default).
    pub partition: String,
    /// `--time` (`HH:MM:SS` or `D-HH:MM:SS`).
    pub time: String,
    /// Ranks of each run (`--ntasks`; `srun` starts them): 1 trains alone.
    pub ranks: u32,
    /// `--nodes` (0: as SLURM places the ranks).
    pub nodes: u32,
    /// `--cpus-per-task` (each rank's threads too).
    pub cpus_per_rank: u32,
    /// `--gpus-per-task` (0: none).
    pub gpus_per_rank: u32,
    /// `--mem` per node (`16G`; empty: the cluster's default).
    pub mem: String,
    /// At most this many runs of a sweep at once (`--array=0-N%K`; 0: no limit).
    pub max_parallel: u32,
    /// `ssh` destination of a login node (empty: this machine's shell).
    pub ssh: String,
    /// The `workbench` binary on the cluster (empty: this one's path, on shared storage).
    pub workbench: String,
    /// Shell lines before the run (`module load cuda`, `source venv/bin/activate`).
    pub setup: Vec<String>,
    /// More `#SBATCH` options (`--account=abc`, `--qos=high`).
    pub sbatch: Vec<String>,
    /// Seconds before the time limit at which SLURM warns the run (SIGUSR1): it stops with a
    /// checkpoint and the job requeues itself to go on (0: no warning; the run is then
    /// stopped by the limit's SIGTERM, with a checkpoint, and not requeued).
    pub warn_secs: u32,
    /// `--requeue`: SLURM may start the job again after a preemption or a node failure (it
    /// goes on in its own run folder from its newest checkpoint).
    pub requeue: bool,
}

impl Default for Profile {
    fn default() -> Self {
        Self {
            partition: String::new(),
            time: "24:00:00".into(),
            ranks: 1,
            nodes: 0,
            cpus_per_rank: 1,
            gpus_per_rank: 0,
            mem: String::new(),
            max_parallel: 0,
            ssh: String::new(),
            workbench: String::new(),
            setup: Vec::new(),
            sbatch: Vec::new(),
            warn_secs: 120,
            requeue: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error("{path}: {message}")]
    Profile { path: PathBuf, message: String },
    #[error("`{command}` failed: {message}")]
    Command { command: String, message: String },
    #[error("sbatch answered {0:?}, not a job id")]
    NoJobId(String),
    #[error("job name {name:?}: {why}")]
    BadName { name: String, why: String },
}

impl Profile {
    /// Reads a profile file; errors name the file, the line and the field.
    pub fn load(path: &Path) -> Result<Self, SlurmError> {
        let text = std::fs::read_to_string(path).map_err(|e| SlurmError::Profile {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let p: Self = ron::from_str(&text).map_err(|e| SlurmError::Profile {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if let Some(message) = p.problem() {
            return Err(SlurmError::Profile {
                path: path.to_path_buf(),
                message,
            });
        }
        Ok(p)
    }

    /// The first field that would break a batch script, or a value SLURM cannot take:
    /// `#SBATCH` lines end at a newline, so no value may hold one.
    #[must_use]
    pub fn problem(&self) -> Option<String> {
        if self.ranks == 0 || self.cpus_per_rank == 0 {
            return Some("ranks and cpus_per_rank must be at least 1".into());
        }
        let plain = |v: &str| {
            v.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:,+=@%".contains(c))
        };
        for (field, value) in [
            ("partition", &self.partition),
            ("time", &self.time),
            ("mem", &self.mem),
        ] {
            if !plain(value) {
                return Some(format!(
                    "{field}: {value:?} may hold only letters, digits and -_.:,+=@%"
                ));
            }
        }
        for (i, option) in self.sbatch.iter().enumerate() {
            if !option.starts_with("--") || option.chars().any(char::is_control) {
                return Some(format!(
                    "sbatch[{i}]: {option:?} must be one `--option=value` on one line"
                ));
            }
        }
        for (i, line) in self.setup.iter().enumerate() {
            if line.contains(['\n', '\r']) {
                return Some(format!(
                    "setup[{i}]: one shell line per entry (this one holds a line break)"
                ));
            }
        }
        for (field, value) in [("ssh", &self.ssh), ("workbench", &self.workbench)] {
            if value.chars().any(char::is_control) {
                return Some(format!("{field}: {value:?} holds a control character"));
            }
        }
        None
    }
}

/// `name` as a SLURM job name: ASCII letters, digits, `.`, `_` and `-`, anything else `_`
/// (names are checked where they are made; this keeps a header line one line whatever comes).
#[must_use]
pub fn job_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The exit status of a run that SLURM's warning signal (SIGUSR1) stopped with a checkpoint:
/// the batch script requeues the job on it.
pub const WARNED_EXIT: u8 = 138;

/// What one batch script runs: a job, or a job array whose task `i` runs `tasks[i]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `--job-name`.
    pub name: String,
    /// `workbench train`'s arguments of each task (one: a plain job; more: an array).
    pub tasks: Vec<Vec<String>>,
    /// The runs folder on the cluster (`--runs-dir`).
    pub runs_dir: PathBuf,
    /// Where SLURM writes each task's output.
    pub log_dir: PathBuf,
    /// The `workbench` binary.
    pub workbench: PathBuf,
}

/// `arg` quoted for bash, on one line: single quotes, or ANSI-C quotes (`$'...'`) when it
/// holds a control character such as a newline.
pub fn shell_quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        return arg.to_string();
    }
    if arg.chars().any(char::is_control) {
        let mut out = String::from("$'");
        for c in arg.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\'' => out.push_str("\\'"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
                c => out.push(c),
            }
        }
        out.push('\'');
        return out;
    }
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// The batch script of `batch` under `profile`. Every value is quoted or checked: a job
/// name, a path or an argument cannot end an `#SBATCH` line or run as a command.
pub fn script(profile: &Profile, batch: &Batch) -> String {
    let mut s = String::from("#!/bin/bash\n");
    let mut opt = |line: String| s.push_str(&format!("#SBATCH {line}\n"));
    opt(format!("--job-name={}", job_name(&batch.name)));
    let array = batch.tasks.len() > 1;
    let out = batch
        .log_dir
        .join(if array { "%x-%A_%a.out" } else { "%x-%j.out" });
    opt(format!(
        "--output={}",
        shell_quote(&out.display().to_string())
    ));
    // A requeued job's allocations write one after another into the same file.
    opt("--open-mode=append".into());
    opt(format!("--ntasks={}", profile.ranks));
    if profile.nodes > 0 {
        opt(format!("--nodes={}", profile.nodes));
    }
    opt(format!("--cpus-per-task={}", profile.cpus_per_rank));
    if profile.gpus_per_rank > 0 {
        opt(format!("--gpus-per-task={}", profile.gpus_per_rank));
    }
    if !profile.time.is_empty() {
        opt(format!("--time={}", shell_quote(&profile.time)));
    }
    if !profile.partition.is_empty() {
        opt(format!("--partition={}", shell_quote(&profile.partition)));
    }
    if !profile.mem.is_empty() {
        opt(format!("--mem={}", shell_quote(&profile.mem)));
    }
    // The warning goes to every rank (not the batch shell): each stops at the same step with
    // a checkpoint, and the script requeues the job on their exit status.
    if profile.warn_secs > 0 {
        opt(format!("--signal=USR1@{}", profile.warn_secs));
    }
    if profile.requeue {
        opt("--requeue".into());
    }
    if array {
        let limit = if profile.max_parallel > 0 {
            format!("%{}", profile.max_parallel)
        } else {
            String::new()
        };
        opt(format!("--array=0-{}{limit}", batch.tasks.len() - 1));
    }
    for extra in &profile.sbatch {
        opt(extra.clone());
    }
    s.push_str(
        "# Written by `workbench`: each rank is one `workbench train` process started by srun,\n",
    );
    s.push_str(
        "# which takes its place from SLURM_PROCID, SLURM_STEP_NUM_TASKS and SLURM_LOCALID.\n",
    );
    // The profile's own lines first, before the strict mode (`set -u` breaks many
    // environments' activation scripts).
    for line in &profile.setup {
        s.push_str(line);
        s.push('\n');
    }
    s.push_str("set -uo pipefail\n");
    // sbatch passes the submitting shell's variables on: a torchrun rank's would make every
    // process think it is one.
    s.push_str("unset RANK WORLD_SIZE LOCAL_RANK LOCAL_WORLD_SIZE GROUP_RANK ROLE_RANK MASTER_ADDR MASTER_PORT TORCHELASTIC_USE_AGENT_STORE TORCHELASTIC_RESTART_COUNT TORCHELASTIC_RUN_ID WORKBENCH_QUEUE_JOB\n");
    s.push_str(
        "export MASTER_ADDR=\"$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n 1)\"\n",
    );
    s.push_str("export MASTER_PORT=$((15000 + SLURM_JOB_ID % 15000))\n");
    s.push_str("export OMP_NUM_THREADS=\"${SLURM_CPUS_PER_TASK:-1}\"\n");
    let quoted = |args: &[String]| {
        args.iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" ")
    };
    if array {
        s.push_str("case \"$SLURM_ARRAY_TASK_ID\" in\n");
        for (i, t) in batch.tasks.iter().enumerate() {
            s.push_str(&format!("  {i}) task=({}) ;;\n", quoted(t)));
        }
        s.push_str("  *) echo \"no task $SLURM_ARRAY_TASK_ID\" >&2; exit 2 ;;\nesac\n");
    } else {
        let task = batch.tasks.first().map_or(String::new(), |t| quoted(t));
        s.push_str(&format!("task=({task})\n"));
    }
    // srun of Slurm 22.05 to 23.02 no longer reads SLURM_CPUS_PER_TASK: say it again.
    s.push_str(&format!(
        "code=0\nsrun --kill-on-bad-exit=1 --cpus-per-task=\"${{SLURM_CPUS_PER_TASK:-1}}\" {} --runs-dir {} train \"${{task[@]}}\" || code=$?\n",
        shell_quote(&batch.workbench.display().to_string()),
        shell_quote(&batch.runs_dir.display().to_string())
    ));
    if profile.warn_secs > 0 {
        s.push_str(&format!(
            "if [ \"$code\" -eq {WARNED_EXIT} ]; then\n  echo \"workbench: stopped with a checkpoint before the time limit; requeueing job $SLURM_JOB_ID to go on\" >&2\n  scontrol requeue \"$SLURM_JOB_ID\"\nfi\n"
        ));
    }
    s.push_str("exit \"$code\"\n");
    s
}

/// Runs `args` (a command and its arguments) here or on the profile's login node, with `stdin`.
fn run(profile: &Profile, args: &[String], stdin: Option<&str>) -> Result<String, SlurmError> {
    use std::io::Write as _;
    let command = args.join(" ");
    let mut cmd = if profile.ssh.is_empty() {
        let mut c = Command::new(&args[0]);
        c.args(&args[1..]);
        c
    } else {
        // ssh hands one command line to the remote shell.
        let mut c = Command::new("ssh");
        c.args(["-o", "BatchMode=yes", &profile.ssh, "--"]);
        c.arg(
            args.iter()
                .map(|a| shell_quote(a))
                .collect::<Vec<_>>()
                .join(" "),
        );
        c
    };
    let fail = |message: String| SlurmError::Command {
        command: command.clone(),
        message,
    };
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| fail(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(fail(
            err.lines()
                .last()
                .unwrap_or("no message")
                .trim()
                .to_string(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_string()).collect()
}

/// Submits a batch script; returns the job id (of the array, for one).
pub fn submit(profile: &Profile, script: &str) -> Result<String, SlurmError> {
    let out = run(profile, &strings(&["sbatch", "--parsable"]), Some(script))?;
    // `--parsable` prints `id` or `id;cluster`.
    let id = out.trim().split(';').next().unwrap_or_default().to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        return Err(SlurmError::NoJobId(out.trim().to_string()));
    }
    Ok(id)
}

/// Cancels a job (`id` or `id_index`).
pub fn cancel(profile: &Profile, job: &str) -> Result<(), SlurmError> {
    run(profile, &strings(&["scancel", job]), None).map(|_| ())
}

/// The states SLURM reports for `job_id` and its array tasks, keyed `id` or `id_index`: from
/// `squeue` while they wait or run, from `scontrol show job` once they ended (as long as the
/// controller keeps them, `MinJobAge`). Jobs SLURM answers it does not know are missing; a
/// query that gets no answer (a timeout, ssh down) is an error, never "forgotten".
pub fn states(profile: &Profile, job_id: &str) -> Result<Vec<(String, String)>, SlurmError> {
    let unknown = |e: &SlurmError| matches!(e, SlurmError::Command { message, .. } if message.contains("Invalid job id"));
    let queued = match run(
        profile,
        &strings(&["squeue", "-h", "-r", "-j", job_id, "-o", "%i|%T"]),
        None,
    ) {
        Ok(text) => text,
        Err(e) if unknown(&e) => String::new(),
        Err(e) => return Err(e),
    };
    let mut out = parse_squeue(&queued);
    let shown = match run(
        profile,
        &strings(&["scontrol", "show", "job", job_id]),
        None,
    ) {
        Ok(text) => text,
        Err(e) if unknown(&e) => String::new(),
        Err(e) => return Err(e),
    };
    for (k, v) in parse_scontrol(&shown) {
        if !out.iter().any(|(q, _)| *q == k) {
            out.push((k, v));
        }
    }
    Ok(out)
}

/// `squeue -h -r -o "%i|%T"` lines.
pub fn parse_squeue(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let (id, state) = l.trim().split_once('|')?;
            Some((id.to_string(), state.to_string()))
        })
        .collect()
}

/// `scontrol show job` records (blank-line separated `Key=Value` words): each job's id
/// (`ArrayJobId_ArrayTaskId` for an array task) and `JobState`.
pub fn parse_scontrol(text: &str) -> Vec<(String, String)> {
    text.split("\n\n")
        .filter_map(|record| {
            let field = |key: &str| {
                record
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
                    .map(str::to_string)
            };
            let state = field("JobState")?;
            let id = match (field("ArrayJobId"), field("ArrayTaskId")) {
                (Some(a), Some(t)) => format!("{a}_{t}"),
                _ => field("JobId")?,
            };
            Some((id, state))
        })
        .collect()
}

/// A SLURM state as the queue's.
pub fn job_state(slurm: &str) -> JobState {
    match slurm {
        // A preempted or failed node's job with `--requeue` comes back: still open.
        "PENDING" | "CONFIGURING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED"
        | "SPECIAL_EXIT" | "RESV_DEL_HOLD" | "SUSPENDED" | "PREEMPTED" | "NODE_FAIL" => {
            JobState::Pending
        }
        "RUNNING" | "COMPLETING" | "STAGE_OUT" | "SIGNALING" | "RESIZING" => JobState::Running,
        "COMPLETED" => JobState::Finished,
        "CANCELLED" => JobState::Cancelled,
        _ => JobState::Failed,
    }
}

/// Submits `tasks` (`workbench train` arguments; one: a job, more: a job array) under the
/// profile in `profile_path` and records them in `runs_dir`'s queue file; returns SLURM's job
/// id and the queue's ids. `exe` is the `workbench` to run when the profile names none (on
/// storage the cluster shares). The script is kept beside the jobs' output in `runs_dir/slurm`.
pub fn submit_tasks(
    profile_path: &Path,
    name: &str,
    tasks: Vec<Vec<String>>,
    runs_dir: &Path,
    exe: &Path,
    now: u64,
) -> Result<(String, Vec<u64>), SlurmError> {
    use super::queue;
    let profile = Profile::load(profile_path)?;
    let absolute = super::rundir::absolute;
    let runs = absolute(runs_dir);
    let log_dir = runs.join("slurm");
    std::fs::create_dir_all(&log_dir).map_err(|e| SlurmError::Command {
        command: format!("mkdir {}", log_dir.display()),
        message: e.to_string(),
    })?;
    let workbench = if profile.workbench.is_empty() {
        exe.to_path_buf()
    } else {
        PathBuf::from(&profile.workbench)
    };
    if let Some(why) = super::rundir::name_problem(name) {
        return Err(SlurmError::BadName {
            name: name.to_string(),
            why,
        });
    }
    let batch = Batch {
        name: format!("wb-{name}"),
        tasks: tasks.clone(),
        runs_dir: runs.clone(),
        log_dir: log_dir.clone(),
        workbench,
    };
    let text = script(&profile, &batch);
    let job = submit(&profile, &text)?;
    // The script as submitted, beside the job's output.
    let _ = super::rundir::atomic_write(
        &log_dir.join(format!("{}-{job}.sh", job_name(&batch.name))),
        text.as_bytes(),
    );
    let array = tasks.len() > 1;
    let profile_abs = absolute(profile_path);
    let ids = queue::update(&runs.join("queue.json"), |q| {
        tasks
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                let r = queue::SlurmRef {
                    job_id: job.clone(),
                    array_index: array.then_some(i as u64),
                    profile: profile_abs.clone(),
                };
                q.add_slurm(t, r, now)
            })
            .collect::<Vec<_>>()
    })
    .map_err(|e| SlurmError::Command {
        command: "queue".into(),
        message: e.to_string(),
    })?;
    Ok((job, ids))
}

/// Brings the queue's SLURM jobs up to date: their state from SLURM, their run folder from
/// the `scheduler.json` their training process wrote under `runs_dir`, and for a job SLURM
/// answers it no longer knows, the state of its run folder (one that stopped beating is
/// interrupted: lost, resumable). A query SLURM does not answer changes no state: the jobs
/// keep their last known one, with a note saying so. Returns the number of jobs still
/// pending or running.
pub fn refresh(queue_path: &Path, runs_dir: &Path, now: u64) -> Result<usize, SlurmError> {
    use super::queue::{self, QueueError};
    let as_err = |e: QueueError| SlurmError::Command {
        command: "queue".into(),
        message: e.to_string(),
    };
    let q = queue::read(queue_path).map_err(as_err)?;
    let open = |s: JobState| matches!(s, JobState::Pending | JobState::Running);
    // One query per submitted job (an array answers for all its tasks).
    type Answer = Result<Vec<(String, String)>, String>;
    let mut asked: Vec<(String, Answer)> = Vec::new();
    for j in &q.jobs {
        let Some(r) = j.slurm.as_ref().filter(|_| open(j.state)) else {
            continue;
        };
        if asked.iter().any(|(id, _)| *id == r.job_id) {
            continue;
        }
        let answer = Profile::load(&r.profile)
            .and_then(|profile| states(&profile, &r.job_id))
            .map_err(|e| e.to_string());
        asked.push((r.job_id.clone(), answer));
    }
    // Run folders are looked up only for jobs that have none yet.
    let folders = if q
        .jobs
        .iter()
        .any(|j| j.slurm.is_some() && j.run_dir.is_none())
    {
        scheduler_records(runs_dir)
    } else {
        Vec::new()
    };
    queue::update(queue_path, |q| {
        for j in &mut q.jobs {
            let Some(r) = j.slurm.clone() else {
                continue;
            };
            if j.run_dir.is_none() {
                j.run_dir = folders
                    .iter()
                    .find(|(id, index, _)| *id == r.job_id && *index == r.array_index)
                    .map(|(_, _, dir)| dir.clone());
            }
            if !open(j.state) {
                continue;
            }
            let answer = asked.iter().find(|(id, _)| *id == r.job_id).map(|(_, a)| a);
            let said = match answer {
                Some(Ok(states)) => states.iter().find(|(k, _)| *k == r.key()).map(|(_, s)| s),
                Some(Err(why)) => {
                    j.note = Some(format!(
                        "SLURM did not answer at {} UTC ({why}); the state shown is the last known",
                        super::timefmt::readable_utc(now)
                    ));
                    continue;
                }
                None => continue,
            };
            let state = match said {
                Some(raw) => {
                    let state = job_state(raw);
                    // SLURM's own word where the queue's says less (PREEMPTED, REQUEUED ...).
                    j.note = (raw.to_ascii_lowercase() != state.name()
                        && !matches!(raw.as_str(), "RUNNING" | "COMPLETED" | "CANCELLED"))
                    .then(|| format!("SLURM: {raw}"));
                    state
                }
                None => {
                    // SLURM answered that it does not know the job: its run folder says how
                    // it ended, and a run whose heartbeat went stale is lost.
                    use super::rundir::{RunDir, RunStatus};
                    let status = j
                        .run_dir
                        .as_deref()
                        .and_then(|d| RunDir::open(d).ok()?.status().ok())
                        .map(|s| s.status);
                    j.note = None;
                    match status {
                        Some(RunStatus::Finished) => JobState::Finished,
                        Some(RunStatus::Failed) => JobState::Failed,
                        Some(RunStatus::Running) => JobState::Running,
                        Some(RunStatus::Stopped) => JobState::Interrupted,
                        _ => {
                            j.note = Some(
                                "SLURM no longer knows the job and its run folder stopped beating (lost; resumable from its last checkpoint)".into(),
                            );
                            JobState::Interrupted
                        }
                    }
                }
            };
            if state == JobState::Running && j.started.is_none() {
                j.started = Some(now);
            }
            if !open(state) && j.ended.is_none() {
                j.ended = Some(now);
            }
            j.state = state;
        }
        q.jobs
            .iter()
            .filter(|j| j.slurm.is_some() && open(j.state))
            .count()
    })
    .map_err(as_err)
}

/// `(job id, array index, run folder)` of every run under `runs_dir` that SLURM started.
fn scheduler_records(runs_dir: &Path) -> Vec<(String, Option<u64>, PathBuf)> {
    super::scheduler::records(runs_dir)
        .into_iter()
        .filter_map(|(dir, r)| match r {
            super::scheduler::Record::Slurm {
                job_id,
                array_index,
                ..
            } => Some((job_id, array_index, dir)),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(tasks: Vec<Vec<String>>) -> Batch {
        Batch {
            name: "sweep lr".into(),
            tasks,
            runs_dir: "/shared/runs".into(),
            log_dir: "/shared/runs/slurm".into(),
            workbench: "/opt/wb/workbench".into(),
        }
    }

    #[test]
    fn a_sweep_is_one_array_and_each_task_its_own_arguments() {
        let profile = Profile {
            ranks: 2,
            gpus_per_rank: 1,
            partition: "gpu".into(),
            mem: "32G".into(),
            max_parallel: 2,
            setup: vec!["module load cuda".into()],
            sbatch: vec!["--account=ml".into()],
            ..Profile::default()
        };
        let s = script(
            &profile,
            &batch(vec![
                vec!["--preset".into(), "/shared/a b.ron".into()],
                vec!["--preset".into(), "/shared/it's.ron".into()],
                vec!["--preset".into(), "/shared/c.ron".into()],
            ]),
        );
        for line in [
            "#SBATCH --job-name=sweep_lr",
            "#SBATCH --signal=USR1@120",
            "#SBATCH --requeue",
            "unset RANK WORLD_SIZE LOCAL_RANK LOCAL_WORLD_SIZE GROUP_RANK ROLE_RANK MASTER_ADDR MASTER_PORT TORCHELASTIC_USE_AGENT_STORE TORCHELASTIC_RESTART_COUNT TORCHELASTIC_RUN_ID WORKBENCH_QUEUE_JOB",
            "srun --kill-on-bad-exit=1 --cpus-per-task=\"${SLURM_CPUS_PER_TASK:-1}\" /opt/wb/workbench --runs-dir /shared/runs train \"${task[@]}\" || code=$?",
            "  scontrol requeue \"$SLURM_JOB_ID\"",
            "#SBATCH --output=/shared/runs/slurm/%x-%A_%a.out",
            "#SBATCH --ntasks=2",
            "#SBATCH --gpus-per-task=1",
            "#SBATCH --partition=gpu",
            "#SBATCH --mem=32G",
            "#SBATCH --array=0-2%2",
            "#SBATCH --account=ml",
            "module load cuda",
            "  0) task=(--preset '/shared/a b.ron') ;;",
            r"  1) task=(--preset '/shared/it'\''s.ron') ;;",
        ] {
            assert!(s.lines().any(|l| l == line), "{line}\n{s}");
        }
        // The profile's lines come before the strict mode.
        assert!(
            s.find("module load cuda") < s.find("set -uo pipefail"),
            "{s}"
        );
        let one = script(
            &Profile::default(),
            &batch(vec![vec!["--steps".into(), "5".into()]]),
        );
        assert!(!one.contains("--array"), "{one}");
        assert!(one.contains("%x-%j.out"), "{one}");
        assert!(one.contains("\ntask=(--steps 5)\n"), "{one}");
        assert!(one.ends_with("exit \"$code\"\n"), "{one}");
        let quiet = script(
            &Profile {
                warn_secs: 0,
                requeue: false,
                ..Profile::default()
            },
            &batch(vec![vec![]]),
        );
        assert!(
            !quiet.contains("--signal") && !quiet.contains("requeue"),
            "{quiet}"
        );
    }

    /// A name or a profile value cannot end a header line and run as a command.
    #[test]
    fn names_and_profile_values_cannot_inject_commands() {
        let evil = "x\n#!/bin/sh\ntouch /tmp/owned $(id)";
        let s = script(
            &Profile::default(),
            &Batch {
                name: evil.into(),
                ..batch(vec![vec!["--set".into(), evil.into()]])
            },
        );
        let header = s
            .lines()
            .find(|l| l.starts_with("#SBATCH --job-name="))
            .expect("name line");
        assert_eq!(
            header,
            "#SBATCH --job-name=x____bin_sh_touch__tmp_owned___id_"
        );
        assert!(!s.lines().any(|l| l.starts_with("touch")), "{s}");
        // Every line up to our first command is a header.
        assert_eq!(
            s.lines().skip(1).find(|l| !l.starts_with('#')),
            Some("set -uo pipefail"),
            "{s}"
        );
        assert_eq!(shell_quote("a\nb'c"), r"$'a\nb\'c'");
        assert!(crate::core::rundir::name_problem(evil).is_some());
        for bad in [
            Profile {
                partition: "gpu\nrm -rf /".into(),
                ..Profile::default()
            },
            Profile {
                time: "1:00 $(id)".into(),
                ..Profile::default()
            },
            Profile {
                sbatch: vec!["--qos=x\necho".into()],
                ..Profile::default()
            },
            Profile {
                sbatch: vec!["rm -rf /".into()],
                ..Profile::default()
            },
            Profile {
                setup: vec!["a\nb".into()],
                ..Profile::default()
            },
        ] {
            assert!(bad.problem().is_some(), "{bad:?}");
        }
        assert_eq!(Profile::default().problem(), None);
    }

    #[test]
    fn states_come_from_squeue_and_scontrol() {
        let q = parse_squeue("12_0|RUNNING\n12_1|PENDING\n");
        assert_eq!(
            q,
            vec![
                ("12_0".to_string(), "RUNNING".to_string()),
                ("12_1".to_string(), "PENDING".to_string())
            ]
        );
        let text = "JobId=13 ArrayJobId=12 ArrayTaskId=2 JobName=x\n   JobState=COMPLETED Reason=None ExitCode=0:0\n\nJobId=20 JobName=y\n   JobState=FAILED Reason=NonZeroExitCode\n";
        assert_eq!(
            parse_scontrol(text),
            vec![
                ("12_2".to_string(), "COMPLETED".to_string()),
                ("20".to_string(), "FAILED".to_string())
            ]
        );
        assert_eq!(job_state("PENDING"), JobState::Pending);
        assert_eq!(job_state("COMPLETING"), JobState::Running);
        assert_eq!(job_state("TIMEOUT"), JobState::Failed);
        assert_eq!(job_state("OUT_OF_MEMORY"), JobState::Failed);
        assert_eq!(job_state("CANCELLED"), JobState::Cancelled);
    }

    #[test]
    fn a_profile_names_its_file_and_field() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("cluster.ron");
        std::fs::write(&path, "(partiton: \"gpu\")").expect("write");
        let e = Profile::load(&path).unwrap_err().to_string();
        assert!(e.contains("cluster.ron") && e.contains("partiton"), "{e}");
        std::fs::write(&path, "(partition: \"gpu\", ranks: 4, gpus_per_rank: 1)").expect("write");
        let p = Profile::load(&path).expect("load");
        assert_eq!((p.ranks, p.gpus_per_rank, p.cpus_per_rank), (4, 1, 1));
    }
}

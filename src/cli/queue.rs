//! `workbench queue`: the local run queue and its SLURM jobs.

use std::path::Path;

use anyhow::Context;
use clap::Parser;

use super::train::load_preset;
use super::{bad_input, now_secs, say_line, Failure, QueueCmd, TrainOnly};

/// The local queue's commands.
pub(super) fn run(cmd: QueueCmd, runs_dir: &Path) -> Result<(), Failure> {
    use workbench::core::queue;
    let path = runs_dir.join("queue.json");
    let failed = |e: queue::QueueError| Failure {
        code: 1,
        error: e.into(),
    };
    match cmd {
        QueueCmd::Add { args, slurm } => {
            let parsed = TrainOnly::try_parse_from(
                std::iter::once("train".to_string()).chain(args.iter().cloned()),
            )
            .map_err(|e| {
                let text = e.to_string();
                let first = text.lines().next().unwrap_or_default();
                bad_input(anyhow::anyhow!(
                    "train arguments: {}",
                    first.strip_prefix("error: ").unwrap_or(first)
                ))
            })?;
            if parsed.train.resume.is_none() {
                load_preset(&parsed.train)?;
            }
            let name = parsed
                .train
                .preset
                .as_ref()
                .and_then(|p| p.file_stem())
                .map_or("workbench".to_string(), |s| {
                    s.to_string_lossy().into_owned()
                });
            let added = add_tasks(
                &name,
                vec![absolute_args(&args)],
                slurm.as_deref(),
                runs_dir,
            )?;
            let id = added.ids.first().copied().unwrap_or_default();
            match added.slurm_job {
                Some(job) => out!(
                    "submitted SLURM job {job} as queue job {id} in {}",
                    path.display()
                ),
                None => out!("queued job {id} in {}", path.display()),
            }
        }
        QueueCmd::List => {
            let q = queue::read(&path).map_err(failed)?;
            if q.jobs.iter().any(|j| j.slurm.is_some()) {
                workbench::core::slurm::refresh(&path, runs_dir, now_secs()).map_err(|e| {
                    Failure {
                        code: 1,
                        error: e.into(),
                    }
                })?;
            }
            let q = queue::read(&path).map_err(failed)?;
            for j in &q.jobs {
                out!(
                    "{:>4}  {:<11}  {:>4}  {:<14}  {}  {}",
                    j.id,
                    j.state.name(),
                    j.exit_code.map_or(String::new(), |c| c.to_string()),
                    j.slurm
                        .as_ref()
                        .map_or("local".to_string(), |r| format!("slurm:{}", r.key())),
                    j.args.join(" "),
                    j.run_dir
                        .as_ref()
                        .map_or(String::new(), |d| d.display().to_string())
                );
                if let Some(note) = &j.note {
                    out!("      {note}");
                }
            }
        }
        QueueCmd::Cancel { id } => {
            workbench::core::jobs::cancel_job(&path, id, now_secs()).map_err(job_failed)?;
            out!("cancelled job {id}");
        }
        QueueCmd::Move { id, to } => {
            queue::update(&path, |q| q.move_pending(id, to))
                .map_err(failed)?
                .map_err(failed)?;
        }
        QueueCmd::Run { jobs } => queue_run(&path, runs_dir, jobs)?,
        QueueCmd::Pause => {
            queue::update(&path, |q| q.paused = true).map_err(failed)?;
            out!("paused: no new job starts until `workbench queue resume`");
        }
        QueueCmd::Resume => {
            queue::update(&path, |q| q.paused = false).map_err(failed)?;
            out!("resumed");
        }
    }
    Ok(())
}

/// `train` arguments with the paths they name made absolute (`--preset`, `--data`,
/// `--resume`), so a job started elsewhere (a runner in another folder, a node of a cluster)
/// finds them; a shipped preset's name, which is no path here, stays as it is.
pub(super) fn absolute_args(args: &[String]) -> Vec<String> {
    use workbench::core::rundir::absolute;
    let fix = |v: &str| {
        let p = Path::new(v);
        if p.exists() {
            absolute(p).display().to_string()
        } else {
            v.to_string()
        }
    };
    let mut out = Vec::with_capacity(args.len());
    let mut path_next = false;
    for a in args {
        if std::mem::take(&mut path_next) {
            out.push(fix(a));
            continue;
        }
        match a.split_once('=') {
            Some((flag @ ("--preset" | "--data" | "--resume"), value)) => {
                out.push(format!("{flag}={}", fix(value)));
            }
            _ => {
                path_next = matches!(a.as_str(), "--preset" | "--data" | "--resume");
                out.push(a.clone());
            }
        }
    }
    out
}

/// A failed queue edit or SLURM command; a bad profile is the user's to fix (exit 2).
pub(super) fn job_failed(e: workbench::core::jobs::JobError) -> Failure {
    use workbench::core::{jobs::JobError, slurm::SlurmError};
    match e {
        JobError::Slurm(SlurmError::Profile { .. } | SlurmError::BadName { .. }) => bad_input(e),
        other => Failure {
            code: 1,
            error: other.into(),
        },
    }
}

/// Adds `tasks` to the local queue, or with a SLURM profile submits them (several: one job
/// array) to run this program.
pub(super) fn add_tasks(
    name: &str,
    tasks: Vec<Vec<String>>,
    slurm: Option<&Path>,
    runs_dir: &Path,
) -> Result<workbench::core::jobs::Added, Failure> {
    use workbench::core::jobs::{self, Target};
    let exe = std::env::current_exe()
        .context("cannot find this program's path")
        .map_err(bad_input)?;
    let target = match slurm {
        Some(profile) => Target::Slurm { profile, exe: &exe },
        None => Target::Local,
    };
    jobs::add_tasks(runs_dir, name, tasks, target, now_secs()).map_err(job_failed)
}

/// Trains the queue's pending jobs, `jobs` at a time, each as its own `workbench train`
/// process (`core::jobs::run_queue`).
pub(super) fn queue_run(path: &Path, runs_dir: &Path, jobs: usize) -> Result<(), Failure> {
    use workbench::core::jobs::{self, JobError};
    let exe = std::env::current_exe()
        .context("cannot find this program to start the jobs")
        .map_err(bad_input)?;
    jobs::run_queue(path, runs_dir, &exe, jobs, &say_line).map_err(|e| match e {
        JobError::RunnerActive(_) | JobError::Io { .. } => bad_input(e),
        other => Failure {
            code: 1,
            error: other.into(),
        },
    })
}

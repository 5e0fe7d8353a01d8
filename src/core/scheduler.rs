//! Which scheduler started a run: `scheduler.json` in its folder, written by the training
//! process (rank 0) from its environment. Whoever follows the folder reads it (the queue
//! matches a SLURM job to its folder), and a job started again (a SLURM requeue, torchrun's
//! restarts, a queue job run again) finds its own folder by it and continues there instead
//! of starting a new run.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The variable the local queue's runner sets on a job: `QUEUE_FILE#JOB_ID`.
pub const QUEUE_JOB_VAR: &str = "WORKBENCH_QUEUE_JOB";

/// `scheduler.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "scheduler", rename_all = "snake_case")]
pub enum Record {
    /// A job of the local queue (`workbench queue run`).
    Local {
        queue: PathBuf,
        job: u64,
        host: String,
        pid: u32,
    },
    /// A SLURM job, or one task of a job array.
    Slurm {
        /// The job's id, or the array's for a task.
        job_id: String,
        #[serde(default)]
        array_index: Option<u64>,
        /// SLURM's own id of this job or task.
        slurm_job_id: String,
        #[serde(default)]
        partition: Option<String>,
        #[serde(default)]
        nodes: Option<String>,
        host: String,
        /// How many times SLURM started it again (`SLURM_RESTART_COUNT`).
        #[serde(default)]
        restarts: u32,
    },
    /// Ranks torchrun started (its rendezvous id names the launch).
    Torchrun {
        run_id: String,
        host: String,
        #[serde(default)]
        restarts: u32,
    },
}

impl Record {
    /// The record of this process's launch, from its environment: a local queue job (the
    /// runner's [`QUEUE_JOB_VAR`]), a SLURM job, or torchrun ranks with a rendezvous id of
    /// their own (`--standalone` or `--rdzv-id`); `None` otherwise.
    #[must_use]
    pub fn from_env() -> Option<Self> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// As [`Self::from_env`], reading variables through `get`.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let host = super::rundir::host_name();
        if let Some(spec) = get(QUEUE_JOB_VAR) {
            let (queue, job) = spec.rsplit_once('#')?;
            return Some(Self::Local {
                queue: PathBuf::from(queue),
                job: job.parse().ok()?,
                host,
                pid: std::process::id(),
            });
        }
        if let Some(job) = get("SLURM_JOB_ID") {
            return Some(Self::Slurm {
                job_id: get("SLURM_ARRAY_JOB_ID").unwrap_or_else(|| job.clone()),
                array_index: get("SLURM_ARRAY_TASK_ID").and_then(|v| v.parse().ok()),
                slurm_job_id: job,
                partition: get("SLURM_JOB_PARTITION"),
                nodes: get("SLURM_JOB_NODELIST"),
                host,
                restarts: get("SLURM_RESTART_COUNT")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            });
        }
        // torchrun's default rendezvous id, `none`, is the same for every launch.
        let run_id = get("TORCHELASTIC_RUN_ID").filter(|id| id != "none")?;
        Some(Self::Torchrun {
            run_id,
            host,
            restarts: get("TORCHELASTIC_RESTART_COUNT")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        })
    }

    /// What names the launch across its restarts: the same for a SLURM job requeued, a
    /// torchrun restart and a queue job run again.
    #[must_use]
    pub fn launch_key(&self) -> String {
        match self {
            Self::Local { queue, job, .. } => format!("local:{}#{job}", queue.display()),
            Self::Slurm {
                job_id,
                array_index,
                ..
            } => match array_index {
                Some(i) => format!("slurm:{job_id}_{i}"),
                None => format!("slurm:{job_id}"),
            },
            Self::Torchrun { run_id, .. } => format!("torchrun:{run_id}"),
        }
    }

    /// Started again by its scheduler: a SLURM requeue or a torchrun restart.
    #[must_use]
    pub fn restarts(&self) -> u32 {
        match self {
            Self::Local { .. } => 0,
            Self::Slurm { restarts, .. } | Self::Torchrun { restarts, .. } => *restarts,
        }
    }

    /// Writes it as `dir/scheduler.json` (atomically).
    pub fn write(&self, dir: &Path) -> Result<(), super::rundir::RunDirError> {
        let text = serde_json::to_string_pretty(self).unwrap_or_default();
        super::rundir::atomic_write(&dir.join(FILE), format!("{text}\n").as_bytes())
    }

    /// The record in run folder `dir`, if it has one that reads.
    #[must_use]
    pub fn read(dir: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(dir.join(FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// The record's file name in a run folder.
pub const FILE: &str = "scheduler.json";

/// Every run folder directly under `runs_dir` with a record, and the record.
#[must_use]
pub fn records(runs_dir: &Path) -> Vec<(PathBuf, Record)> {
    let Ok(entries) = std::fs::read_dir(runs_dir) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, Record)> = entries
        .filter_map(|e| {
            let dir = e.ok()?.path();
            Some((dir.clone(), Record::read(&dir)?))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The run folder under `runs_dir` that the launch `key` started (the newest, should there be
/// several).
#[must_use]
pub fn find_run(runs_dir: &Path, key: &str) -> Option<PathBuf> {
    records(runs_dir)
        .into_iter()
        .filter(|(_, r)| r.launch_key() == key)
        .map(|(d, _)| d)
        .next_back()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_string())
        }
    }

    #[test]
    fn each_launch_has_a_key_that_survives_its_restarts() {
        assert_eq!(Record::from_vars(vars(&[])), None);
        let task = Record::from_vars(vars(&[
            ("SLURM_JOB_ID", "57"),
            ("SLURM_ARRAY_JOB_ID", "55"),
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_RESTART_COUNT", "1"),
        ]))
        .expect("slurm");
        assert_eq!(task.launch_key(), "slurm:55_2");
        assert_eq!(task.restarts(), 1);
        let job = Record::from_vars(vars(&[("SLURM_JOB_ID", "9")])).expect("slurm");
        assert_eq!((job.launch_key().as_str(), job.restarts()), ("slurm:9", 0));
        // torchrun's default rendezvous id names no launch.
        assert_eq!(
            Record::from_vars(vars(&[("TORCHELASTIC_RUN_ID", "none")])),
            None
        );
        let t = Record::from_vars(vars(&[
            ("TORCHELASTIC_RUN_ID", "ab12"),
            ("TORCHELASTIC_RESTART_COUNT", "2"),
        ]))
        .expect("torchrun");
        assert_eq!(
            (t.launch_key().as_str(), t.restarts()),
            ("torchrun:ab12", 2)
        );
        let q = Record::from_vars(vars(&[
            (QUEUE_JOB_VAR, "/r/queue.json#4"),
            ("SLURM_JOB_ID", "9"),
        ]))
        .expect("queue");
        assert_eq!(q.launch_key(), "local:/r/queue.json#4");
    }

    #[test]
    fn a_launch_finds_its_own_folder() {
        let tmp = tempfile::tempdir().expect("tmp");
        let slurm = |i: u64| Record::Slurm {
            job_id: "7".into(),
            array_index: Some(i),
            slurm_job_id: format!("{}", 8 + i),
            partition: None,
            nodes: None,
            host: "n1".into(),
            restarts: 0,
        };
        for (name, i) in [("a", 0), ("b", 1)] {
            let d = tmp.path().join(name);
            std::fs::create_dir_all(&d).expect("dir");
            slurm(i).write(&d).expect("write");
        }
        assert_eq!(
            find_run(tmp.path(), "slurm:7_1"),
            Some(tmp.path().join("b"))
        );
        assert_eq!(find_run(tmp.path(), "slurm:7_2"), None);
        // The shape readers before this record knew.
        let text = std::fs::read_to_string(tmp.path().join("a").join(FILE)).expect("read");
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(
            (v["scheduler"].as_str(), v["job_id"].as_str()),
            (Some("slurm"), Some("7"))
        );
        assert_eq!(v["array_index"].as_u64(), Some(0));
    }
}

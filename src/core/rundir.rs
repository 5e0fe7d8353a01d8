//! The run directory: the one source of truth for a run.
//!
//! ```text
//! runs/<name>-<YYYYMMDD-HHMMSS>/
//!   preset.ron      the validated preset as launched, headed by comments with the git commit,
//!                   device and library versions
//!   events.log      framed, checksummed event records (see `runlog`)
//!   losses.csv      one row per logged step, written as the run goes
//!   checkpoints/    step-NNNNNNNN/ (everything needed to resume), `latest`, `best.json`
//!   media/          PNG sample grids referenced by events
//!   run.lock        the pid of the process writing the run, locked while it runs
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use crate::core::protocol::{Event, Outcome};
use crate::core::runlog;

/// Errors of the run directory.
#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("{path}: the run is being written by process {pid}")]
    Locked { path: PathBuf, pid: u32 },
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> RunDirError + '_ {
    move |e| RunDirError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Where runs go unless `--runs-dir` says otherwise, the same wherever the program starts:
/// `$XDG_DATA_HOME/workbench/runs`, else `~/.local/share/workbench/runs` (`./runs` without a
/// home).
#[must_use]
pub fn default_runs_dir() -> PathBuf {
    xdg_dir("XDG_DATA_HOME", ".local/share").map_or_else(
        || PathBuf::from("runs"),
        |d| d.join("workbench").join("runs"),
    )
}

/// An XDG base folder: `$var` when set and not empty, else `$HOME/under_home`; `None`
/// without a home.
#[must_use]
pub fn xdg_dir(var: &str, under_home: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(under_home)))
}

/// `dir/{stem}{ext}`, or the first of `dir/{stem}-2{ext}`, `-3`, ... that does not exist.
fn unused_path(dir: &Path, stem: &str, ext: &str) -> PathBuf {
    let mut path = dir.join(format!("{stem}{ext}"));
    let mut n = 2;
    while path.exists() {
        path = dir.join(format!("{stem}-{n}{ext}"));
        n += 1;
    }
    path
}

/// `name` as a file name: ASCII letters, digits, `-` and `_` kept, anything else `_`.
#[must_use]
pub fn safe_file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Why `name` cannot name a preset, a sweep or a job, if it cannot: a name reaches file
/// names, SLURM batch-script headers and shell lines, so it is 1 to 100 of ASCII letters,
/// digits, space, `.`, `_`, `-` and `+`, not starting with `.` or `-`.
#[must_use]
pub fn name_problem(name: &str) -> Option<String> {
    if name.trim().is_empty() {
        return Some("a name cannot be empty".into());
    }
    if name.len() > 100 {
        return Some(format!("{} characters; at most 100", name.len()));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || " ._-+".contains(*c)))
    {
        return Some(format!(
            "{c:?} is not allowed: a name holds ASCII letters, digits, space, `.`, `_`, `-` and `+`"
        ));
    }
    if name.starts_with('.') || name.starts_with('-') {
        return Some("a name cannot start with `.` or `-`".into());
    }
    None
}

/// `path` made absolute against the working directory (as is when that fails): what a
/// process that starts elsewhere, such as a batch script on a cluster, needs.
#[must_use]
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Takes the exclusive lock of `path`'s `.lock` file (created if missing), held until the
/// file returned is dropped: read-modify-write of a file shared by processes (the queue, a
/// sweep's state) under it.
pub fn lock_beside(path: &Path) -> std::io::Result<fs::File> {
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path.with_extension("lock"))?;
    f.lock()?;
    Ok(f)
}

/// Writes a file atomically: a temporary sibling, fsync, rename, fsync of the folder.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), RunDirError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    // Unique per write: two writers of one file in this process never share a temporary.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
    {
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io_err(path))?;
    sync_dir(dir);
    Ok(())
}

/// Makes a rename inside `dir` durable. Best effort: some filesystems refuse to fsync folders.
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// A run directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// Creates `runs_dir/<name>-<timestamp>` (with a numeric suffix if taken) and its folders.
    pub fn create(runs_dir: &Path, name: &str) -> Result<Self, RunDirError> {
        fs::create_dir_all(runs_dir).map_err(|e| RunDirError::Io {
            path: runs_dir.to_path_buf(),
            message: format!("cannot create the runs directory: {e}"),
        })?;
        let stamp = crate::core::timefmt::compact_utc(crate::core::timefmt::unix_now() as u64);
        let safe = safe_file_name(name);
        let root = unused_path(runs_dir, &format!("{safe}-{stamp}"), "");
        fs::create_dir(&root).map_err(|e| RunDirError::Io {
            path: root.clone(),
            message: format!(
                "cannot create the run directory (is the runs directory writable?): {e}"
            ),
        })?;
        let dir = Self { root };
        dir.ensure_layout()?;
        Ok(dir)
    }

    /// The folder of a data-parallel rank other than 0 inside run `root`: `ranks/rank-N`, with
    /// its own log, heartbeat and lock (rank 0 owns the run's checkpoints and media).
    pub fn create_rank(root: &Path, rank: usize) -> Result<Self, RunDirError> {
        let dir = root.join("ranks").join(format!("rank-{rank}"));
        fs::create_dir_all(&dir).map_err(|e| RunDirError::Io {
            path: dir.clone(),
            message: format!("cannot create the rank's folder: {e}"),
        })?;
        let dir = Self { root: dir };
        dir.ensure_layout()?;
        Ok(dir)
    }

    /// Opens an existing run directory.
    pub fn open(root: &Path) -> Result<Self, RunDirError> {
        if !root.join("preset.ron").is_file() {
            return Err(RunDirError::Io {
                path: root.to_path_buf(),
                message: "not a run directory (no preset.ron)".into(),
            });
        }
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    fn ensure_layout(&self) -> Result<(), RunDirError> {
        for d in [self.checkpoints(), self.media()] {
            fs::create_dir_all(&d).map_err(io_err(&d))?;
        }
        Ok(())
    }

    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }
    #[must_use]
    pub fn preset_path(&self) -> PathBuf {
        self.root.join("preset.ron")
    }
    #[must_use]
    pub fn events_path(&self) -> PathBuf {
        self.root.join("events.log")
    }
    #[must_use]
    pub fn csv_path(&self) -> PathBuf {
        self.root.join("losses.csv")
    }
    #[must_use]
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }
    #[must_use]
    pub fn media(&self) -> PathBuf {
        self.root.join("media")
    }
    #[must_use]
    pub fn lock_path(&self) -> PathBuf {
        self.root.join("run.lock")
    }
    #[must_use]
    pub fn heartbeat_path(&self) -> PathBuf {
        self.root.join("heartbeat")
    }

    /// Writes `heartbeat`: the time (unix seconds), this machine's name and process, so that
    /// an app on another machine reading the folder over shared storage can tell a live run
    /// from a lost one (it cannot see the process).
    pub fn write_heartbeat(&self, unix_secs: u64) -> Result<(), RunDirError> {
        let text = format!("{unix_secs} {} {}\n", host_name(), std::process::id());
        atomic_write(&self.heartbeat_path(), text.as_bytes())
    }

    /// The last heartbeat: its time and machine.
    #[must_use]
    pub fn heartbeat(&self) -> Option<(u64, String)> {
        let text = fs::read_to_string(self.heartbeat_path()).ok()?;
        let mut parts = text.split_whitespace();
        let secs = parts.next()?.parse().ok()?;
        Some((secs, parts.next()?.to_string()))
    }

    /// Writes `preset.ron`: comment lines with the metadata, then the preset.
    pub fn write_preset(
        &self,
        preset_ron: &str,
        meta: &[(&str, String)],
    ) -> Result<(), RunDirError> {
        let mut text = String::new();
        for (k, v) in meta {
            text.push_str(&format!("// {k}: {v}\n"));
        }
        text.push_str(preset_ron);
        text.push('\n');
        atomic_write(&self.preset_path(), text.as_bytes())
    }

    /// Takes the run's lock: an advisory lock on `run.lock` held while the returned guard
    /// lives, with this process's id in the file. The system releases it when the process
    /// dies, so a killed run leaves no stale lock; of two processes taking it at once, one
    /// gets it.
    pub fn lock(&self) -> Result<RunLock, RunDirError> {
        use std::os::unix::fs::MetadataExt;
        /// Linux's "no locks available".
        const ENOLCK: i32 = 37;
        let path = self.lock_path();
        for _ in 0..3 {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io_err(&path))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => {
                    let pid = fs::read_to_string(&path)
                        .ok()
                        .and_then(|t| t.trim().parse().ok())
                        .unwrap_or(0);
                    return Err(RunDirError::Locked {
                        path: self.root.clone(),
                        pid,
                    });
                }
                // A file system without locks (some FUSE and cluster mounts): the pid in
                // the file is all there is, as the status shows it.
                Err(fs::TryLockError::Error(e))
                    if e.kind() == std::io::ErrorKind::Unsupported
                        || e.raw_os_error() == Some(ENOLCK) =>
                {
                    if let Some(pid) = self.lock_holder().filter(|p| *p != std::process::id()) {
                        return Err(RunDirError::Locked {
                            path: self.root.clone(),
                            pid,
                        });
                    }
                }
                Err(fs::TryLockError::Error(e)) => return Err(io_err(&path)(e)),
            }
            // The last holder may have removed the file between our open and our lock: the
            // lock is then on a file nobody else sees, so take the new one.
            let ours = file.metadata().map_err(io_err(&path))?.ino();
            if fs::metadata(&path).ok().map(|m| m.ino()) != Some(ours) {
                continue;
            }
            file.set_len(0).map_err(io_err(&path))?;
            file.write_all(std::process::id().to_string().as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(io_err(&path))?;
            return Ok(RunLock { path, _file: file });
        }
        Err(RunDirError::Io {
            path,
            message: "the lock changed hands three times while it was being taken".into(),
        })
    }

    /// The live process named in the lock file, if any: what a run's status shows (taking
    /// the lock is what decides who writes).
    #[must_use]
    pub fn lock_holder(&self) -> Option<u32> {
        let pid: u32 = fs::read_to_string(self.lock_path())
            .ok()?
            .trim()
            .parse()
            .ok()?;
        Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
    }

    /// The status of a run whose log never ended: running while a process here holds its lock
    /// or, written on another machine (whose process is not ours to see), while its heartbeat
    /// is recent; otherwise interrupted (lost, resumable from its last checkpoint).
    #[must_use]
    pub fn unended_status(&self) -> RunStatus {
        if self.lock_holder().is_some() {
            return RunStatus::Running;
        }
        match self.heartbeat() {
            Some((beat, host))
                if host != host_name()
                    && crate::core::timefmt::unix_now() - (beat as f64) < HEARTBEAT_STALE_SECS =>
            {
                RunStatus::Running
            }
            _ => RunStatus::Interrupted,
        }
    }

    /// The run's status, from its events and its lock.
    pub fn status(&self) -> Result<RunSummary, RunDirError> {
        let contents = runlog::read_all(&self.events_path()).map_err(|e| RunDirError::Io {
            path: self.events_path(),
            message: e.to_string(),
        })?;
        let mut s = RunSummary {
            dir: self.root.clone(),
            ..RunSummary::default()
        };
        for e in &contents.events {
            match e {
                Event::RunStarted {
                    name,
                    family,
                    device,
                    ..
                } => {
                    s.name.clone_from(name);
                    s.family.clone_from(family);
                    s.device.clone_from(device);
                }
                Event::Scalars { rows } => {
                    if let Some(r) = rows.last() {
                        s.last_step = s.last_step.max(r.step);
                    }
                }
                Event::RunFinished { step, outcome, .. } => {
                    s.last_step = s.last_step.max(*step);
                    s.status = match outcome {
                        Outcome::Completed => RunStatus::Finished,
                        Outcome::Stopped => RunStatus::Stopped,
                    };
                }
                Event::RunFailed { step, message } => {
                    s.last_step = s.last_step.max(*step);
                    s.status = RunStatus::Failed;
                    s.message.clone_from(message);
                }
                _ => {}
            }
            if matches!(e, Event::RunStarted { .. }) {
                s.status = RunStatus::Interrupted;
            }
        }
        if s.status == RunStatus::Interrupted {
            s.status = self.unended_status();
        }
        Ok(s)
    }
}

/// How often a run writes its heartbeat.
pub const HEARTBEAT_EVERY_SECS: f64 = 30.0;
/// A heartbeat older than this is a lost run's.
pub const HEARTBEAT_STALE_SECS: f64 = 120.0;

/// This machine's name (`/proc/sys/kernel/hostname`, else `/etc/hostname`).
#[must_use]
pub fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Holds the run's lock; removes the lock file, then releases the lock, when dropped.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    _file: File,
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunStatus {
    Running,
    Finished,
    Stopped,
    Failed,
    /// Started but never ended, and no process holds it: killed or crashed (resumable).
    #[default]
    Interrupted,
}

impl RunStatus {
    /// The status a [`Self::label`] names (an unknown word reads as interrupted).
    #[must_use]
    pub fn from_label(label: &str) -> Self {
        [
            Self::Running,
            Self::Finished,
            Self::Stopped,
            Self::Failed,
            Self::Interrupted,
        ]
        .into_iter()
        .find(|s| s.label() == label)
        .unwrap_or_default()
    }

    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Finished => "finished",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
        }
    }
}

/// One line of `runs list`.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub dir: PathBuf,
    pub name: String,
    pub family: String,
    pub device: String,
    pub status: RunStatus,
    pub last_step: u64,
    pub message: String,
}

/// Every run directory directly under `runs_dir`, sorted by name.
pub fn list_runs(runs_dir: &Path) -> Result<Vec<RunSummary>, RunDirError> {
    let mut out = Vec::new();
    let entries = fs::read_dir(runs_dir).map_err(io_err(runs_dir))?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("preset.ron").is_file())
        .collect();
    dirs.sort();
    for d in dirs {
        out.push(RunDir { root: d }.status()?);
    }
    Ok(out)
}

/// `losses.csv`: a header, then one row per logged step, flushed as written.
#[derive(Debug)]
pub struct CsvLog {
    path: PathBuf,
    file: File,
    columns: Vec<String>,
}

impl CsvLog {
    /// Opens the CSV for appending. Rows beyond `keep_through_step` (left by a run that went
    /// further than the checkpoint it is resumed from) are dropped first, so a resumed run
    /// continues the same curve without duplicates. When the columns changed (a resume with
    /// other logged values), the old rows are carried over by column name and the old file
    /// is kept beside it as `<name>.previous.csv`: no logged value is lost.
    pub fn open(
        path: &Path,
        columns: &[&str],
        keep_through_step: Option<u64>,
    ) -> Result<Self, RunDirError> {
        let header = columns.join(",");
        let mut text = format!("{header}\n");
        if path.exists() {
            let f = File::open(path).map_err(io_err(path))?;
            let lines: Vec<String> = BufReader::new(f).lines().map_while(Result::ok).collect();
            let old: Vec<&str> = lines.first().map_or(Vec::new(), |h| h.split(',').collect());
            // Where each new column was in the old rows.
            let from: Vec<Option<usize>> = columns
                .iter()
                .map(|c| old.iter().position(|o| o == c))
                .collect();
            if old != columns && lines.len() > 1 {
                // Never over an earlier copy: each change of columns keeps its own.
                let stem = path.file_stem().and_then(|n| n.to_str()).unwrap_or("log");
                let dir = path.parent().unwrap_or(Path::new("."));
                let kept = unused_path(dir, &format!("{stem}.previous"), ".csv");
                fs::copy(path, &kept).map_err(io_err(&kept))?;
            }
            let mut last = None;
            for l in lines.iter().skip(1) {
                let cells: Vec<&str> = l.split(',').collect();
                let step = cells.first().and_then(|s| s.parse::<u64>().ok());
                // Steps only go up: a row cut short by a crash (`17,...` left as `1`) goes.
                let keep = match (step, keep_through_step) {
                    (Some(s), _) if last.is_some_and(|l| s <= l) => false,
                    (Some(s), Some(k)) => s <= k,
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                if !keep {
                    continue;
                }
                last = step;
                let row: Vec<&str> = from
                    .iter()
                    .map(|i| i.and_then(|i| cells.get(i).copied()).unwrap_or(""))
                    .collect();
                text.push_str(&row.join(","));
                text.push('\n');
            }
        }
        atomic_write(path, text.as_bytes())?;
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(io_err(path))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            columns: columns.iter().map(|s| (*s).to_string()).collect(),
        })
    }

    /// Appends one row; `values` are matched to columns by name (missing ones stay empty).
    pub fn append(&mut self, values: &[(String, f64)]) -> Result<(), RunDirError> {
        let mut line = String::new();
        for (i, c) in self.columns.iter().enumerate() {
            if i > 0 {
                line.push(',');
            }
            if let Some((_, v)) = values.iter().find(|(k, _)| k == c) {
                if c == "step" || c == "epoch" || c == "phase" {
                    line.push_str(&format!("{}", *v as i64));
                } else {
                    line.push_str(&format!("{v:.6}"));
                }
            }
        }
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .map_err(io_err(&self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run another machine writes: a fresh heartbeat from another host says running, a
    /// stale one says lost (interrupted); this machine's own heartbeat never overrides the
    /// process check.
    #[test]
    fn a_heartbeat_from_another_machine_tells_running_from_lost() {
        let dir = tempfile::tempdir().expect("tmp");
        let run = RunDir::create(dir.path(), "r").expect("run");
        let mut w = runlog::LogWriter::open(&run.events_path()).expect("log");
        w.append(&Event::RunStarted {
            run_dir: run.root().display().to_string(),
            name: "r".into(),
            family: "wgan_gp".into(),
            device: "cpu".into(),
            total_steps: None,
            resumed_from: None,
            restarted: false,
            branch_of: None,
            wall_time: 0.0,
            metrics: Vec::new(),
        })
        .expect("event");
        drop(w);
        let status = |run: &RunDir| run.status().expect("status").status;
        assert_eq!(status(&run), RunStatus::Interrupted);
        let now = crate::core::timefmt::unix_now() as u64;
        fs::write(
            run.heartbeat_path(),
            format!("{} other-node 12\n", now - 10),
        )
        .expect("beat");
        assert_eq!(run.heartbeat(), Some((now - 10, "other-node".to_string())));
        assert_eq!(status(&run), RunStatus::Running);
        fs::write(
            run.heartbeat_path(),
            format!("{} other-node 12\n", now - 600),
        )
        .expect("beat");
        assert_eq!(status(&run), RunStatus::Interrupted);
        run.write_heartbeat(now).expect("ours");
        assert_eq!(run.heartbeat().map(|h| h.1), Some(host_name()));
        assert_eq!(status(&run), RunStatus::Interrupted);
    }

    #[test]
    fn one_holder_at_a_time_and_a_dead_holders_file_is_no_lock() {
        let dir = tempfile::tempdir().expect("tmp");
        let run = RunDir::create(dir.path(), "r").expect("run");
        // A lock file left by a killed process (no lock held on it) is taken over.
        fs::write(run.lock_path(), "4000000000").expect("stale");
        let held = run.lock().expect("lock");
        assert_eq!(run.lock_holder(), Some(std::process::id()));
        let again = run.lock().expect_err("held");
        assert!(
            again
                .to_string()
                .ends_with(&format!("being written by process {}", std::process::id())),
            "{again}"
        );
        drop(held);
        assert!(!run.lock_path().exists());
        assert_eq!(run.lock_holder(), None);
        let taken = std::thread::scope(|s| {
            let tries: Vec<_> = (0..4).map(|_| s.spawn(|| run.lock())).collect();
            tries
                .into_iter()
                .map(|t| t.join().expect("join"))
                .collect::<Vec<_>>()
        });
        assert_eq!(taken.iter().filter(|t| t.is_ok()).count(), 1);
    }

    #[test]
    fn concurrent_atomic_writes_of_one_file_leave_one_whole_version() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("layout.json");
        std::thread::scope(|s| {
            for t in 0..4u8 {
                let p = &p;
                s.spawn(move || {
                    for _ in 0..50 {
                        atomic_write(p, &[b'a' + t; 4096]).expect("write");
                    }
                });
            }
        });
        let bytes = fs::read(&p).expect("read");
        assert_eq!(bytes.len(), 4096);
        assert!(bytes.iter().all(|b| *b == bytes[0]), "a torn file");
        let left: Vec<_> = fs::read_dir(dir.path()).expect("ls").collect();
        assert_eq!(left.len(), 1, "temporaries left behind");
    }

    #[test]
    fn csv_resume_with_other_columns_carries_rows_over_by_name_and_keeps_the_old_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("losses.csv");
        fs::write(&p, "step,d_loss,gone\n1,0.5,7\n2,0.4,8\n3,0.3,9\n").expect("write");
        let mut csv = CsvLog::open(&p, &["step", "new", "d_loss"], Some(2)).expect("open");
        csv.append(&[("step".into(), 3.0), ("new".into(), 1.0)])
            .expect("row");
        drop(csv);
        let text = fs::read_to_string(&p).expect("read");
        assert_eq!(text, "step,new,d_loss\n1,,0.5\n2,,0.4\n3,1.000000,\n");
        let old = fs::read_to_string(dir.path().join("losses.previous.csv")).expect("kept");
        assert_eq!(old, "step,d_loss,gone\n1,0.5,7\n2,0.4,8\n3,0.3,9\n");
        // Changed back: the copy before is kept too, and a row cut short by a crash goes.
        fs::write(&p, format!("{text}1")).expect("torn row");
        drop(CsvLog::open(&p, &["step", "d_loss", "gone"], None).expect("open"));
        let again = fs::read_to_string(dir.path().join("losses.previous-2.csv")).expect("kept");
        assert!(again.starts_with("step,new,d_loss\n"));
        assert_eq!(
            fs::read_to_string(dir.path().join("losses.previous.csv")).expect("kept"),
            old
        );
        let text = fs::read_to_string(&p).expect("read");
        assert_eq!(text, "step,d_loss,gone\n1,0.5,\n2,0.4,\n3,,\n");
    }

    #[test]
    fn csv_resume_drops_rows_beyond_the_checkpoint() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("losses.csv");
        let mut csv = CsvLog::open(&p, &["step", "d_loss"], None).expect("open");
        for s in 1..=5u64 {
            csv.append(&[("step".into(), s as f64), ("d_loss".into(), 0.5)])
                .expect("row");
        }
        drop(csv);
        let _ = CsvLog::open(&p, &["step", "d_loss"], Some(3)).expect("reopen");
        let text = fs::read_to_string(&p).expect("read");
        assert_eq!(text, "step,d_loss\n1,0.500000\n2,0.500000\n3,0.500000\n");
    }

    #[test]
    fn run_dirs_are_unique_and_unwritable_parents_fail_clearly() {
        let dir = tempfile::tempdir().expect("tmp");
        let a = RunDir::create(dir.path(), "x y").expect("a");
        let b = RunDir::create(dir.path(), "x y").expect("b");
        assert_ne!(a.root(), b.root());
        assert!(a
            .root()
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("x_y-")));
        let file = dir.path().join("file");
        fs::write(&file, "x").expect("write");
        let err = RunDir::create(&file.join("sub"), "r").expect_err("must fail");
        assert!(err.to_string().contains("runs directory"), "{err}");
    }
}

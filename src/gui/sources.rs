//! Where a run's events come from: a live worker's channel, or a run log followed on its own
//! thread; and the runs the app tracks.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;
use egui::Color32;

use crate::core::runlog::LogReader;
use crate::core::runview::RunView;
use crate::engine::worker::WorkerHandle;

/// How often followed run logs are read.
const FOLLOW_POLL: Duration = Duration::from_millis(250);

/// Reads a run's `events.log` on its own thread ("workbench-follow") and sends the events,
/// so a long log never stalls a frame; keeps following it while it grows. Dropping it stops
/// the thread.
#[derive(Debug)]
pub struct Follower {
    pub(crate) events: Receiver<crate::core::protocol::Event>,
    pub(crate) stop: Arc<std::sync::atomic::AtomicBool>,
    /// Set once everything in the log at the last read has been sent.
    pub(crate) read_once: Arc<std::sync::atomic::AtomicBool>,
    /// The run's persisted pyramids (`core::lod`), read before its log, until the app takes
    /// them; and the log bytes they covered (`None`: there were none, or not usable).
    pub(crate) preview: Arc<std::sync::Mutex<Option<crate::core::lod::Pyramids>>>,
    pub(crate) lod_covers: Arc<std::sync::Mutex<Option<u64>>>,
    /// Bytes of the log read so far.
    pub(crate) offset: Arc<std::sync::atomic::AtomicU64>,
    /// Whether the app has checked, once caught up, that the pyramids file is current.
    pub(crate) lod_checked: bool,
}

impl Follower {
    pub fn spawn(
        log: PathBuf,
        waker: Option<crate::core::protocol::Waker>,
    ) -> std::io::Result<Self> {
        use std::sync::atomic::Ordering;
        let (tx, events) = crossbeam_channel::bounded(crate::engine::worker::EVENT_CAPACITY);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let read_once = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done = Arc::clone(&read_once);
        let preview = Arc::new(std::sync::Mutex::new(None));
        let lod_covers = Arc::new(std::sync::Mutex::new(None));
        let offset = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (shown, covers, read_to) = (
            Arc::clone(&preview),
            Arc::clone(&lod_covers),
            Arc::clone(&offset),
        );
        std::thread::Builder::new()
            .name("workbench-follow".into())
            .spawn(move || {
                // A long run's pyramids first: its plots draw while its log is read. One that
                // covers more than the log holds belongs to another log (a folder copied
                // half-way): not shown, and rewritten once the log is read.
                let log_len = std::fs::metadata(&log).map_or(0, |m| m.len());
                if let Some(p) = log
                    .parent()
                    .and_then(|dir| crate::core::lod::read(dir).ok().flatten())
                    .filter(|p| p.log_len <= log_len)
                {
                    if let Ok(mut c) = covers.lock() {
                        *c = Some(p.log_len);
                    }
                    if let Ok(mut s) = shown.lock() {
                        *s = Some(p);
                    }
                    if let Some(w) = &waker {
                        w();
                    }
                }
                let mut reader = LogReader::new(&log);
                while !stopped.load(Ordering::Relaxed) {
                    let batch = match reader.poll() {
                        Ok(batch) => batch,
                        Err(e) => {
                            let _ = tx.send(crate::core::protocol::Event::RunFailed {
                                step: 0,
                                message: format!("reading {}: {e}", log.display()),
                            });
                            if let Some(w) = &waker {
                                w();
                            }
                            return;
                        }
                    };
                    let any = !batch.is_empty();
                    read_to.store(reader.offset(), Ordering::Relaxed);
                    // Blocking sends: the UI drains within its frame budget, and this thread
                    // waits for it rather than holding a whole log in memory.
                    for e in batch {
                        if tx.send(e).is_err() {
                            return;
                        }
                    }
                    done.store(true, Ordering::Relaxed);
                    if let (true, Some(w)) = (any, &waker) {
                        w();
                    }
                    std::thread::sleep(FOLLOW_POLL);
                }
            })?;
        Ok(Self {
            events,
            stop,
            read_once,
            preview,
            lod_covers,
            offset,
            lod_checked: false,
        })
    }

    /// The persisted pyramids, once, when there were any.
    pub fn take_preview(&self) -> Option<crate::core::lod::Pyramids> {
        self.preview.lock().ok().and_then(|mut p| p.take())
    }

    /// Whether everything the log held at the last read has been taken from the channel.
    #[must_use]
    pub fn caught_up(&self) -> bool {
        self.read_once.load(std::sync::atomic::Ordering::Relaxed) && self.events.is_empty()
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Follows a run on another machine through `workbench serve --stdio` (`core::remote`) on
/// its own thread ("workbench-remote"): its events as a followed log's, the commands sent to
/// it, and whether the connection is down (it reconnects by itself, from the byte offset it
/// had).
#[derive(Debug)]
pub struct RemoteFollower {
    pub(crate) events: Receiver<crate::core::protocol::Event>,
    commands: crossbeam_channel::Sender<crate::core::protocol::Command>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    /// Why the connection is down, while it is.
    pub(crate) down: Arc<std::sync::Mutex<Option<String>>>,
    /// Set once the log as it was at the first read has been sent.
    pub(crate) read_once: Arc<std::sync::atomic::AtomicBool>,
    /// The run's persisted pyramids, fetched before its log, until the app takes them.
    preview: Arc<std::sync::Mutex<Option<crate::core::lod::Pyramids>>>,
    /// How the remote is reached and the run's folder name there (its files are fetched on
    /// demand: sample images).
    pub(crate) argv: Vec<String>,
    pub(crate) run: String,
}

impl RemoteFollower {
    /// The persisted pyramids, once, when the remote had them.
    pub fn take_preview(&self) -> Option<crate::core::lod::Pyramids> {
        self.preview.lock().ok().and_then(|mut p| p.take())
    }

    /// Whether everything read so far has been taken from the channel.
    #[must_use]
    pub fn caught_up(&self) -> bool {
        self.read_once.load(std::sync::atomic::Ordering::Relaxed) && self.events.is_empty()
    }

    pub fn spawn(
        argv: Vec<String>,
        run: String,
        waker: Option<crate::core::protocol::Waker>,
    ) -> std::io::Result<Self> {
        use std::sync::atomic::Ordering;
        let (tx, events) = crossbeam_channel::bounded(crate::engine::worker::EVENT_CAPACITY);
        let (commands, cmd_rx) = crossbeam_channel::bounded::<crate::core::protocol::Command>(16);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let down = Arc::new(std::sync::Mutex::new(None));
        let read_once = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (stopped, down_w, done) =
            (Arc::clone(&stop), Arc::clone(&down), Arc::clone(&read_once));
        let (argv_kept, run_kept) = (argv.clone(), run.clone());
        let preview = Arc::new(std::sync::Mutex::new(None));
        let shown = Arc::clone(&preview);
        std::thread::Builder::new()
            .name("workbench-remote".into())
            .spawn(move || {
                let mut log = crate::core::remote::RemoteLog::new(argv, run.clone());
                let wake = || {
                    if let Some(w) = &waker {
                        w();
                    }
                };
                // A long run's pyramids first (a megabyte for a million rows), so its plots
                // draw while its log comes over.
                if let Ok(p) = log.file(crate::core::lod::FILE).and_then(|b| {
                    crate::core::lod::parse(&b, std::path::Path::new(&run))
                        .map_err(|e| crate::core::remote::RemoteError::Garbled(e.to_string()))
                }) {
                    if let Ok(mut s) = shown.lock() {
                        *s = Some(p);
                    }
                    wake();
                }
                while !stopped.load(Ordering::Relaxed) {
                    for c in cmd_rx.try_iter() {
                        if let Err(e) = log.send(&c) {
                            let _ = tx.send(crate::core::protocol::Event::Log {
                                step: 0,
                                level: crate::core::protocol::Level::Warning,
                                message: format!("the command did not reach the remote run: {e}"),
                            });
                        }
                    }
                    let batch = match log.poll() {
                        Ok(b) => b,
                        Err(e) => {
                            // Another version, or a run that is not there: no retry helps.
                            let _ = tx.send(crate::core::protocol::Event::RunFailed {
                                step: 0,
                                message: format!("remote: {e}"),
                            });
                            wake();
                            return;
                        }
                    };
                    let was_down = down_w.lock().ok().and_then(|d| d.clone());
                    if was_down != log.down {
                        if let Ok(mut d) = down_w.lock() {
                            d.clone_from(&log.down);
                        }
                        wake();
                    }
                    let any = !batch.is_empty();
                    for e in batch {
                        if tx.send(e).is_err() {
                            return;
                        }
                    }
                    if log.down.is_none() {
                        done.store(true, Ordering::Relaxed);
                    }
                    if any {
                        wake();
                    }
                    std::thread::sleep(FOLLOW_POLL);
                }
            })?;
        Ok(Self {
            events,
            commands,
            stop,
            down,
            read_once,
            preview,
            argv: argv_kept,
            run: run_kept,
        })
    }

    /// Sends a command to the remote run (through its inbox there).
    pub fn send(&self, c: crate::core::protocol::Command) -> bool {
        self.commands.try_send(c).is_ok()
    }

    /// Why the connection is down, while it is.
    #[must_use]
    pub fn down(&self) -> Option<String> {
        self.down.lock().ok().and_then(|d| d.clone())
    }
}

impl Drop for RemoteFollower {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A machine whose runs the app lists and follows over SSH (`workbench serve --stdio`).
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteSite {
    /// As the user's SSH knows it (`user@host`, a `~/.ssh/config` alias).
    pub destination: String,
    /// The command line that reaches it (`core::remote::ssh_argv`).
    pub argv: Vec<String>,
    /// Its runs as the runs table shows them (beside this machine's).
    pub rows: Vec<crate::core::runtable::RunRow>,
    /// Why the last listing failed.
    pub error: Option<String>,
    pub listing: bool,
}

impl RemoteSite {
    /// The remote's `workbench`, as it was given (`core::remote::ssh_argv`'s fifth word).
    #[must_use]
    pub fn workbench(&self) -> String {
        self.argv.get(4).cloned().unwrap_or_default()
    }

    /// The remote's runs folder as it was given (empty: its default).
    #[must_use]
    pub fn runs_dir(&self) -> String {
        self.argv
            .iter()
            .position(|a| a == "--runs-dir")
            .and_then(|k| self.argv.get(k + 1))
            .cloned()
            .unwrap_or_default()
    }
}

/// Where a run's events come from.
pub enum Source {
    /// Started here: the worker's channel (the run log is written too).
    Live(WorkerHandle),
    /// Opened from disk: its `events.log`, read and followed on a named thread.
    Follow(Follower),
    /// On another machine, through `workbench serve --stdio` over SSH.
    Remote(RemoteFollower),
    /// A view with nothing behind it (benchmarks, tests).
    Detached,
}

impl Source {
    /// The channel the run's events arrive on.
    pub fn events(&self) -> Option<&Receiver<crate::core::protocol::Event>> {
        match self {
            Self::Live(h) => Some(h.events()),
            Self::Follow(f) => Some(&f.events),
            Self::Remote(r) => Some(&r.events),
            Self::Detached => None,
        }
    }
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Live(_) => f.write_str("Live"),
            Self::Follow(_) => f.write_str("Follow"),
            Self::Remote(_) => f.write_str("Remote"),
            Self::Detached => f.write_str("Detached"),
        }
    }
}

/// A run drawn on the dashboard, with its colour. The first is the primary run, whose
/// events are drawn as markers.
#[derive(Debug, Clone, Copy)]
pub struct Shown<'a> {
    pub key: usize,
    pub view: &'a RunView,
    pub color: Color32,
    /// Drawn only up to this step (a branch's parent, up to the fork).
    pub before: Option<u64>,
    /// Drawn with the other runs of its group as one mean curve and a min-max band.
    pub band: Option<usize>,
}

/// A run the app shows.
#[derive(Debug)]
pub struct Tracked {
    pub key: usize,
    pub dir: PathBuf,
    pub view: RunView,
    pub(crate) source: Source,
    /// Drawn on the dashboard beside the primary run.
    pub overlay: bool,
    pub color: Color32,
    /// Drawn only up to this step: a branch's parent, opened to show its curve before the
    /// fork.
    pub before: Option<u64>,
    /// The group it is drawn in, as one band (`UiAction::PlotGroup`).
    pub band: Option<usize>,
    /// A remote run whose connection is down: why (it reconnects by itself).
    pub down: Option<String>,
    /// Its preset's live fields with their values in each phase (the view's `hyper` holds
    /// the edits since the phase started): read from its folder, or over its remote's
    /// connection.
    pub live: Vec<Vec<(String, f64)>>,
}

impl Tracked {
    #[must_use]
    pub fn is_live(&self) -> bool {
        matches!(self.source, Source::Live(_))
    }
}

/// The primary run first, then the runs ticked for overlay.
pub fn shown_runs(runs: &[Tracked], current: Option<usize>) -> Vec<Shown<'_>> {
    fn shown(r: &Tracked) -> Shown<'_> {
        Shown {
            key: r.key,
            view: &r.view,
            color: r.color,
            before: r.before,
            band: r.band,
        }
    }
    current
        .and_then(|i| runs.get(i))
        .into_iter()
        .chain(
            runs.iter()
                .enumerate()
                .filter(|(i, r)| r.overlay && Some(*i) != current)
                .map(|(_, r)| r),
        )
        .map(shown)
        .collect()
}

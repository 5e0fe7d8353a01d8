//! The app: its state, `logic()` (drain events within a time budget, apply the actions the
//! panels returned, poll background jobs, dialogs, scripted quit and screenshots) and `show()`
//! (the panels, in `gui::panels`). Drawing never blocks, starts a run or touches a file:
//! those are actions applied between frames, and run preparation and file I/O run on
//! background threads.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use egui::{RichText, Ui};

use crate::core::preset::{AnyPreset, Family};
use crate::core::protocol::Command;
use crate::core::runtable::RunRow;
use crate::core::runview::RunView;
use crate::engine::worker::{self, RunRequest, WorkerHandle};

use super::actions::{background, LaunchOptions, Tab, UiAction};
use super::dashboard::{Dashboard, Shown};
use super::dialogs::{Dialogs, Purpose};
use super::editor::{scan_library, LibraryEntry, PresetEditor};
use super::io::IoDone;
use super::samples::{ReconViewer, SampleViewer};
use super::sources::{shown_runs, Follower, Source, Tracked};
use super::tour::{ScreenshotTour, Shot};

/// How long `logic()` may spend folding events per frame.
pub const EVENT_BUDGET: Duration = Duration::from_millis(8);

/// The workbench app.
pub struct WorkbenchApp {
    pub tab: Tab,
    pub editor: PresetEditor,
    pub library: Vec<LibraryEntry>,
    pub runs: Vec<Tracked>,
    /// Index into `runs` of the primary run.
    pub current: Option<usize>,
    pub cursor: Option<u64>,
    pub dashboard: Dashboard,
    pub samples: SampleViewer,
    pub recon: ReconViewer,
    /// The controller the Controller tab shows (the first one when unset).
    pub controller: Option<String>,
    pub gaad: super::gaad::GaadInspector,
    /// The Actions tab: codebook use and the action explorer.
    pub explorer: super::explorer::ActionsPanel,
    /// The Volume tab: slices of a volume and its reconstruction.
    pub volume: super::volume::VolumeViewer,
    pub dialogs: Dialogs,
    pub run_list: Vec<RunRow>,
    /// The Runs tab's table: filter, order, comparison.
    pub runs_table: super::panels::runs::RunsTable,
    /// The Queue tab: the run queue file.
    pub queue: super::queue::QueuePanel,
    pub(crate) run_list_at: Option<Instant>,
    pub(crate) run_list_rx: Option<Receiver<Vec<RunRow>>>,
    /// The last error to show in the status bar (failed start, bad import, ...).
    pub message: Option<(bool, String)>,
    pub live_values: Vec<(String, f64)>,
    pub(crate) opts: LaunchOptions,
    pub(crate) started_at: Instant,
    pub(crate) waker: Option<crate::core::protocol::Waker>,
    pub(crate) next_key: usize,
    pub(crate) screenshots: ScreenshotTour,
    pub(crate) pending_plot_png: Option<(String, PathBuf)>,
    pub(crate) shots: (Sender<Shot>, Receiver<Shot>),
    /// What the panels asked for during the last frame, applied by `logic()`.
    pub(crate) actions: Vec<UiAction>,
    /// A run being prepared on a background thread.
    pub(crate) starting: Option<Receiver<Result<WorkerHandle, String>>>,
    /// File reads and writes under way on background threads.
    pub(crate) io: Vec<Receiver<IoDone>>,
    /// The window title last asked for.
    pub title: String,
    /// The keyboard shortcuts' overlay (F1 or `?`) and the About window are open.
    pub show_help: bool,
    pub show_about: bool,
    /// The devices, as the About window shows them (probed off the UI thread when it opens).
    pub(crate) about_device: Option<String>,
    pub(crate) about_rx: Option<Receiver<String>>,
    /// The app's own log (its messages, appended on the `workbench-log` thread).
    pub(crate) log_tx: Option<Sender<String>>,
    pub(crate) logged: Option<(bool, String)>,
}

impl std::fmt::Debug for WorkbenchApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkbenchApp")
            .field("tab", &self.tab)
            .field("runs", &self.runs.len())
            .finish_non_exhaustive()
    }
}

impl WorkbenchApp {
    /// Builds the app. `ctx` wakes the UI when the worker sends events.
    #[must_use]
    pub fn new(ctx: &egui::Context, opts: LaunchOptions) -> Self {
        let ctx = ctx.clone();
        let waker: crate::core::protocol::Waker = Arc::new(move || ctx.request_repaint());
        Self::with_waker(opts, Some(waker))
    }

    /// Builds the app with an optional waker (tests drive frames themselves).
    #[must_use]
    pub fn with_waker(opts: LaunchOptions, waker: Option<crate::core::protocol::Waker>) -> Self {
        let (preset, source) = opts
            .preset
            .clone()
            .unwrap_or_else(|| (default_preset(), None));
        let mut app = Self {
            tab: opts.tab,
            editor: PresetEditor::new(&preset, source),
            library: scan_library(&opts.user_presets_dir),
            runs: Vec::new(),
            current: None,
            cursor: None,
            dashboard: Dashboard::default(),
            samples: SampleViewer::default(),
            recon: ReconViewer::default(),
            controller: None,
            gaad: super::gaad::GaadInspector::default(),
            explorer: super::explorer::ActionsPanel::default(),
            volume: super::volume::VolumeViewer::default(),
            dialogs: Dialogs::default(),
            run_list: Vec::new(),
            runs_table: super::panels::runs::RunsTable::default(),
            queue: super::queue::QueuePanel::default(),
            run_list_at: None,
            run_list_rx: None,
            message: None,
            live_values: Vec::new(),
            started_at: Instant::now(),
            waker,
            next_key: 0,
            screenshots: ScreenshotTour::default(),
            pending_plot_png: None,
            shots: crossbeam_channel::bounded(8),
            actions: Vec::new(),
            starting: None,
            io: Vec::new(),
            title: String::new(),
            show_help: false,
            show_about: false,
            about_device: None,
            about_rx: None,
            log_tx: None,
            logged: None,
            opts,
        };
        app.log_tx = app_log(&app.opts.app_log);
        // Remembered layouts (read before the first frame); a damaged file is said once and
        // replaced at the next change.
        if let Ok(text) = std::fs::read_to_string(app.layout_path()) {
            match serde_json::from_str(&text) {
                Ok(layouts) => app.dashboard.layouts = layouts,
                Err(e) => {
                    app.message = Some((
                        true,
                        format!(
                            "{}: not a dashboard layout ({e}); using the defaults",
                            app.layout_path().display()
                        ),
                    ));
                }
            }
        }
        for dir in app.opts.open.clone() {
            app.open_run(&dir);
        }
        app
    }

    /// The primary run.
    #[must_use]
    pub fn current_run(&self) -> Option<&Tracked> {
        self.current.and_then(|i| self.runs.get(i))
    }

    pub(crate) fn live_handle(&self) -> Option<&WorkerHandle> {
        match &self.current_run()?.source {
            Source::Live(h) if !self.current_run()?.view.state.is_over() => Some(h),
            _ => None,
        }
    }

    /// The run this app is training, if any (shown or not).
    pub(crate) fn training_run(&self) -> Option<&str> {
        self.runs
            .iter()
            .find(|r| matches!(r.source, Source::Live(_)) && !r.view.state.is_over())
            .map(|r| r.view.name.as_str())
    }

    /// Starts training the edited preset: the run is prepared (device probe, data checks, run
    /// folder) and its worker spawned on a background thread; `logic()` picks the run up.
    pub fn start_run(&mut self) {
        // Every way of starting (button, shortcut, --start) goes through here: one run at a
        // time, and none while one is being prepared.
        if self.starting.is_some() || self.training_run().is_some() {
            return;
        }
        if let Some(why) = self.editor.start_blocker() {
            self.message = Some((true, format!("cannot start: {why}")));
            return;
        }
        let Some(preset) = self.editor.validated.clone() else {
            return;
        };
        let req = RunRequest {
            preset: Some(preset),
            runs_dir: self.opts.runs_dir.clone(),
            step_limit: self.opts.step_limit,
            ..RunRequest::default()
        };
        let waker = self.waker.clone();
        self.starting = Some(background(
            "workbench-start",
            self.waker.clone(),
            move || {
                worker::prepare(req)
                    .and_then(|plan| worker::spawn(plan, waker))
                    .map_err(|e| e.to_string())
            },
        ));
        self.message = Some((false, "starting: checking the device and the data".into()));
    }

    /// What the About window says, as text to copy into a bug report.
    #[must_use]
    pub fn about_text(&self) -> String {
        [
            format!("workbench {}", env!("CARGO_PKG_VERSION")),
            format!("git commit {}", env!("WORKBENCH_GIT_COMMIT")),
            format!("libtorch {}", crate::engine::device::libtorch_version()),
            format!(
                "devices: {}",
                self.about_device.as_deref().unwrap_or("(probing...)")
            ),
            format!("runs folder: {}", self.opts.runs_dir.display()),
            format!("your presets: {}", self.opts.user_presets_dir.display()),
            format!("app log: {}", self.opts.app_log.display()),
        ]
        .join("\n")
    }

    /// Probes the devices once, off the UI thread, when the About window first opens.
    fn poll_about(&mut self, ctx: &egui::Context) {
        if self.show_about && self.about_device.is_none() && self.about_rx.is_none() {
            self.about_rx = Some(background(
                "workbench-devices",
                self.waker.clone(),
                crate::engine::device::describe_all,
            ));
            ctx.request_repaint_after(Duration::from_millis(100));
        }
        if let Some(rx) = &self.about_rx {
            if let Ok(d) = rx.try_recv() {
                self.about_device = Some(d);
                self.about_rx = None;
            }
        }
    }

    /// Whether a run is being prepared.
    #[must_use]
    pub fn is_starting(&self) -> bool {
        self.starting.is_some()
    }

    /// Takes a prepared run (or its error) when the background thread is done.
    fn poll_start(&mut self) {
        let Some(rx) = &self.starting else {
            return;
        };
        let result = match rx.try_recv() {
            Ok(r) => r,
            Err(crossbeam_channel::TryRecvError::Empty) => return,
            Err(crossbeam_channel::TryRecvError::Disconnected) => {
                Err("the start thread ended without a result".into())
            }
        };
        self.starting = None;
        match result {
            Ok(handle) => {
                let dir = handle.run_dir().to_path_buf();
                self.live_values = self
                    .editor
                    .preset()
                    .map(|p| live_fields(&p))
                    .unwrap_or_default();
                self.add_run(dir, Source::Live(handle));
                self.message = None;
                self.cursor = None;
                self.tab = Tab::Dashboard;
            }
            Err(e) => self.message = Some((true, format!("cannot start: {e}"))),
        }
    }

    /// Asks for a command to the live run (sent between frames).
    pub(crate) fn ask(&mut self, c: Command) {
        self.actions.push(UiAction::Command(c));
    }

    /// Applies one action a panel returned.
    pub fn apply(&mut self, action: UiAction) {
        match action {
            UiAction::Start => self.start_run(),
            UiAction::Command(c) => self.command(c),
            UiAction::OpenRun(dir) => {
                self.open_run(&dir);
                self.tab = Tab::Dashboard;
            }
            UiAction::Overlay(dir, on) => {
                // Followed in the background; the run shown stays the one shown.
                let shown = self.current;
                if on && !self.runs.iter().any(|r| r.dir == dir) {
                    self.open_run(&dir);
                    if shown.is_some() {
                        self.current = shown;
                    }
                }
                if let Some(t) = self.runs.iter_mut().find(|r| r.dir == dir) {
                    t.overlay = on;
                }
            }
            UiAction::LoadPreset(i) => {
                let Some(e) = self.library.get(i).cloned() else {
                    return;
                };
                self.io
                    .push(background("workbench-io", self.waker.clone(), move || {
                        let origin = e.origin();
                        IoDone::Loaded(
                            e.text()
                                .and_then(|t| PresetEditor::load_text(&t, &origin).map(Box::new)),
                        )
                    }));
            }
            UiAction::SavePreset => self.save_as(),
            UiAction::SaveLayout => {
                let path = self.layout_path();
                let text =
                    serde_json::to_string_pretty(&self.dashboard.layouts).unwrap_or_default();
                self.io
                    .push(background("workbench-io", self.waker.clone(), move || {
                        // Quietly: a layout is not worth a message in the status bar.
                        let saved = path
                            .parent()
                            .map_or(Ok(()), std::fs::create_dir_all)
                            .map_err(|e| e.to_string())
                            .and_then(|()| {
                                crate::core::rundir::atomic_write(&path, text.as_bytes())
                                    .map_err(|e| e.to_string())
                            });
                        IoDone::Quiet(saved.map_err(|e| format!("{}: {e}", path.display())))
                    }));
            }
            UiAction::CompareWith(None) => self.editor.compare_with = None,
            UiAction::CompareWith(Some(i)) => {
                let Some(e) = self.library.get(i).cloned() else {
                    return;
                };
                self.io
                    .push(background("workbench-io", self.waker.clone(), move || {
                        IoDone::Compare(e.load().map(|p| (e.name.clone(), p.to_tree())))
                    }));
            }
        }
    }

    /// Opens a run folder and follows its event log (live or finished).
    pub fn open_run(&mut self, dir: &Path) {
        if let Some(i) = self.runs.iter().position(|r| r.dir == dir) {
            self.current = Some(i);
            return;
        }
        let log = dir.join("events.log");
        if !log.is_file() {
            self.message = Some((
                true,
                format!("{}: not a run folder (no events.log)", dir.display()),
            ));
            return;
        }
        match Follower::spawn(log, self.waker.clone()) {
            Ok(f) => self.add_run(dir.to_path_buf(), Source::Follow(f)),
            Err(e) => self.message = Some((true, format!("cannot follow {}: {e}", dir.display()))),
        }
    }

    /// Whether an opened run's log is still being read into its view.
    #[must_use]
    pub fn is_catching_up(&self) -> bool {
        self.runs.iter().any(|r| match &r.source {
            Source::Follow(f) => {
                !f.read_once.load(std::sync::atomic::Ordering::Relaxed) || !f.events.is_empty()
            }
            _ => false,
        })
    }

    /// Shows an already built view as the primary run (benchmarks, tests).
    pub fn show_view(&mut self, view: RunView) {
        let dir = PathBuf::from(&view.run_dir);
        self.add_run(dir, Source::Detached);
        if let Some(r) = self.runs.last_mut() {
            r.view = view;
        }
    }

    fn add_run(&mut self, dir: PathBuf, source: Source) {
        let key = self.next_key;
        self.next_key += 1;
        let mut view = RunView::default();
        view.run_dir = dir.display().to_string();
        view.name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.runs.push(Tracked {
            key,
            dir,
            view,
            source,
            overlay: false,
            color: super::palette(key),
        });
        self.current = Some(self.runs.len() - 1);
    }

    /// Sends a command to the live run.
    pub fn command(&mut self, c: Command) {
        match self.live_handle() {
            Some(h) => {
                if !h.send(c) {
                    self.message = Some((true, "the worker is not accepting commands".into()));
                }
            }
            None => self.message = Some((true, "no live run to command".into())),
        }
    }

    /// Folds pending events into the run views for at most `budget`. Returns whether
    /// anything arrived.
    pub fn drain(&mut self, budget: Duration) -> bool {
        let t0 = Instant::now();
        let mut any = false;
        for run in &mut self.runs {
            let Some(rx) = run.source.events() else {
                continue;
            };
            while t0.elapsed() < budget {
                let Ok(ev) = rx.try_recv() else { break };
                run.view.apply(ev, Some(Instant::now()));
                any = true;
            }
        }
        any
    }

    /// Everything between frames: events, dialogs, scripted quit and screenshots.
    pub fn logic(&mut self, ctx: &egui::Context) {
        // `--start` waits for the first frame, after a remembered state has been restored.
        if std::mem::take(&mut self.opts.start) {
            self.start_run();
        }
        for action in std::mem::take(&mut self.actions) {
            self.apply(action);
        }
        // The title names the run shown, or the preset being edited.
        let subject = self
            .current_run()
            .map(|r| r.view.name.clone())
            .or_else(|| self.editor.tree["name"].as_str().map(str::to_string));
        let title = super::window_title(subject.as_deref());
        if title != self.title {
            ctx.send_viewport_cmd(egui::ViewportCommand::Title(title.clone()));
            self.title = title;
        }
        self.poll_start();
        self.poll_io();
        self.poll_about(ctx);
        if self.message != self.logged {
            if let (Some(tx), Some((error, text))) = (&self.log_tx, &self.message) {
                let level = if *error { "error" } else { "info" };
                let stamp =
                    crate::core::timefmt::readable_utc(crate::core::timefmt::unix_now() as u64);
                let _ = tx.try_send(format!("{stamp} UTC {level}: {text}"));
            }
            self.logged = self.message.clone();
        }
        if self.starting.is_some() || !self.io.is_empty() {
            ctx.request_repaint_after(Duration::from_millis(50));
        }
        if self.drain(EVENT_BUDGET) {
            ctx.request_repaint();
        }
        // Events left over after the frame budget: come back for them.
        if self
            .runs
            .iter()
            .any(|r| r.source.events().is_some_and(|rx| !rx.is_empty()))
        {
            ctx.request_repaint();
        }
        if let Some((purpose, path)) = self.dialogs.poll() {
            self.on_dialog(purpose, &path);
        }
        if self.dialogs.is_open() {
            ctx.request_repaint_after(Duration::from_millis(100));
        }
        self.screenshot_events(ctx);
        if let Some(after) = self.opts.quit_after {
            let elapsed = self.started_at.elapsed();
            if elapsed >= after {
                if self.opts.screenshot_dir.is_some() && !self.screenshots.done {
                    self.tour_step(ctx);
                } else {
                    ctx.send_viewport_cmd(egui::ViewportCommand::Close);
                }
            } else {
                ctx.request_repaint_after(after - elapsed);
            }
        }
    }

    pub(crate) fn shown_runs(&self) -> Vec<Shown<'_>> {
        shown_runs(&self.runs, self.current)
    }

    /// The whole window.
    pub fn show(&mut self, ui: &mut Ui) {
        self.show_panels(ui);
        // What the panels asked for is applied at the next `logic()`: come back at once.
        if !self.actions.is_empty() {
            ui.ctx().request_repaint();
        }
    }

    fn show_panels(&mut self, ui: &mut Ui) {
        let ctx = ui.ctx().clone();
        self.shortcuts(&ctx);
        self.help_ui(&ctx);
        self.about_ui(&ctx);
        egui::Panel::top("top-bar").show(ui, |ui| self.top_bar_ui(ui));
        egui::Panel::bottom("status-bar").show(ui, |ui| self.status_bar_ui(ui));
        egui::CentralPanel::default().show(ui, |ui| match self.tab {
            Tab::Presets => self.presets_tab_ui(ui),
            Tab::Phases => {
                egui::ScrollArea::vertical()
                    .id_salt("phases-scroll")
                    .show(ui, |ui| self.editor.phases_ui(ui));
            }
            Tab::Dashboard => self.dashboard_tab_ui(ui),
            Tab::Samples => self.samples_tab_ui(ui),
            Tab::Gaad => {
                if self.gaad.ui(ui) {
                    self.dialogs.open(Purpose::GaadImage, "");
                }
            }
            Tab::Controller => self.controller_tab_ui(ui),
            Tab::Runs => self.runs_tab_ui(ui),
            Tab::Queue => self.queue_tab_ui(ui),
            Tab::Actions => match self.current {
                Some(i) => self.explorer.ui(ui, &self.runs[i].view, &self.runs[i].dir),
                None => {
                    ui.label(
                        RichText::new("No run: start one or open one from the Runs tab.").weak(),
                    );
                }
            },
            Tab::Volume => match self.current {
                Some(i) => self.volume.ui(ui, &self.runs[i].view, &self.runs[i].dir),
                None => {
                    ui.label(
                        RichText::new("No run: start one or open one from the Runs tab.").weak(),
                    );
                }
            },
        });
    }
}

/// Starts the app's log writer: lines arrive on a bounded channel and are appended on the
/// `workbench-log` thread, so the UI never waits on the file.
fn app_log(path: &Path) -> Option<Sender<String>> {
    let (tx, rx) = crossbeam_channel::bounded::<String>(256);
    let path = path.to_path_buf();
    std::thread::Builder::new()
        .name("workbench-log".into())
        .spawn(move || {
            use std::io::Write as _;
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let Ok(mut file) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
            else {
                return;
            };
            for line in rx {
                let _ = writeln!(file, "{line}");
            }
        })
        .ok()?;
    Some(tx)
}

/// The live fields of a preset, with their current values.
fn live_fields(p: &AnyPreset) -> Vec<(String, f64)> {
    let tree = p.to_tree();
    p.family()
        .specs()
        .iter()
        .filter(|s| s.live)
        .filter_map(|s| {
            crate::core::preset::schema::get_path(&tree, s.path)
                .and_then(serde_json::Value::as_f64)
                .map(|v| (s.path.to_string(), v))
        })
        .collect()
}

/// The embedded default preset (WGAN-GP on synthetic sprites).
#[must_use]
pub fn default_preset() -> AnyPreset {
    const TEXT: &str = include_str!("../../presets/wgan_gp_sprites32.ron");
    crate::core::preset::parse_str(TEXT, "presets/wgan_gp_sprites32.ron")
        .map(|(p, _)| p)
        .unwrap_or_else(|_| Family::ALL[0].default_preset())
}

/// The key of the app's state in eframe's storage.
pub const STATE_KEY: &str = "workbench";
/// The version of [`Remembered`] this app writes.
pub const STATE_VERSION: u32 = 1;

/// What the app remembers between sessions, in eframe's storage (which also keeps the window's
/// size and position and the panels' splits). Versioned: an app reads its own and older
/// versions (missing fields take their defaults); a state from a newer app, or a damaged one,
/// gives the defaults and one notice.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Remembered {
    pub version: u32,
    pub tab: String,
    /// The preset last edited: its file, or `built in: NAME.ron`.
    pub preset: Option<String>,
    /// The runs folder last used (the command line's `--runs-dir` wins).
    pub runs_dir: Option<String>,
    pub smoothing: f64,
    pub log_y: bool,
    pub show_raw: bool,
    pub show_markers: bool,
    pub columns: usize,
    pub filter: String,
}

impl Default for Remembered {
    fn default() -> Self {
        let d = Dashboard::default();
        Self {
            version: STATE_VERSION,
            tab: Tab::Presets.label().to_lowercase(),
            preset: None,
            runs_dir: None,
            smoothing: d.smoothing,
            log_y: d.log_y,
            show_raw: d.show_raw,
            show_markers: d.show_markers,
            columns: d.columns,
            filter: d.filter,
        }
    }
}

impl WorkbenchApp {
    /// What to remember of this session.
    #[must_use]
    pub fn remembered(&self) -> Remembered {
        let d = &self.dashboard;
        Remembered {
            version: STATE_VERSION,
            tab: self.tab.label().to_lowercase(),
            preset: self.editor.source.as_ref().map(|p| p.display().to_string()),
            runs_dir: Some(self.opts.runs_dir.display().to_string()),
            smoothing: d.smoothing,
            log_y: d.log_y,
            show_raw: d.show_raw,
            show_markers: d.show_markers,
            columns: d.columns,
            filter: d.filter.clone(),
        }
    }

    /// Takes back a saved state (its text from eframe's storage). Runs before the first frame.
    pub fn restore(&mut self, saved: Option<&str>) {
        let Some(text) = saved else {
            return;
        };
        let state = match serde_json::from_str::<Remembered>(text) {
            Ok(s) if s.version <= STATE_VERSION => s,
            Ok(s) => {
                self.message = Some((
                    false,
                    format!(
                        "the saved app state is version {}, newer than this app's {STATE_VERSION}: starting from the defaults",
                        s.version
                    ),
                ));
                return;
            }
            Err(e) => {
                self.message = Some((
                    false,
                    format!(
                        "the saved app state could not be read ({e}): starting from the defaults"
                    ),
                ));
                return;
            }
        };
        if !self.opts.explicit_tab {
            if let Ok(tab) = Tab::parse(&state.tab) {
                self.tab = tab;
            }
        }
        if !self.opts.explicit_runs_dir {
            if let Some(dir) = state.runs_dir.map(PathBuf::from).filter(|d| d.is_dir()) {
                self.opts.runs_dir = dir;
                self.run_list_at = None;
            }
        }
        let d = &mut self.dashboard;
        d.smoothing = state.smoothing.clamp(0.0, 0.99);
        d.log_y = state.log_y;
        d.show_raw = state.show_raw;
        d.show_markers = state.show_markers;
        d.columns = state.columns.clamp(1, 4);
        d.filter = state.filter;
        if self.opts.preset.is_some() {
            return;
        }
        if let Some(origin) = state.preset {
            let text = match origin.strip_prefix("built in: ") {
                Some(file) => crate::core::preset::shipped::get(file.trim_end_matches(".ron"))
                    .map(str::to_string)
                    .ok_or_else(|| "no longer built in".to_string()),
                None => std::fs::read_to_string(&origin).map_err(|e| e.to_string()),
            };
            match text.and_then(|t| PresetEditor::load_text(&t, Path::new(&origin))) {
                Ok(ed) => self.editor = ed,
                Err(why) => {
                    self.message = Some((
                        false,
                        format!("your last preset {origin} could not be opened ({why}): showing the embedded default"),
                    ));
                }
            }
        }
    }
}

impl eframe::App for WorkbenchApp {
    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        if self.opts.remember {
            if let Ok(text) = serde_json::to_string(&self.remembered()) {
                storage.set_string(STATE_KEY, text);
            }
        }
    }

    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        WorkbenchApp::logic(self, ctx);
    }

    fn ui(&mut self, ui: &mut Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
    }
}

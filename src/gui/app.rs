//! The app: its state, `logic()` (drain events within a time budget, poll followed logs and
//! dialogs, scripted quit and screenshots) and `ui()` (the panels). Actions that change state
//! are collected while drawing and applied after, so the UI never blocks on training.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use egui::{Color32, RichText, Ui};

use crate::core::preset::{AnyPreset, Family};
use crate::core::protocol::Command;
use crate::core::rundir::{list_runs, RunSummary};
use crate::core::runlog::LogReader;
use crate::core::runview::{RunState, RunView};
use crate::engine::worker::{self, RunRequest, WorkerHandle};

use super::dashboard::{series_csv, DashAction, Dashboard, Shown};
use super::dialogs::{Dialogs, Purpose};
use super::editor::{scan_library, LibraryEntry, PresetEditor};
use super::samples::{ReconViewer, SampleViewer};

/// How long `logic()` may spend folding events per frame.
pub const EVENT_BUDGET: Duration = Duration::from_millis(8);
/// How often followed run logs are read.
const FOLLOW_POLL: Duration = Duration::from_millis(250);

/// The app's tabs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Presets,
    Phases,
    Dashboard,
    Samples,
    Gaad,
    Controller,
    Runs,
}

impl Tab {
    pub const ALL: [Tab; 7] = [
        Tab::Presets,
        Tab::Phases,
        Tab::Dashboard,
        Tab::Samples,
        Tab::Gaad,
        Tab::Controller,
        Tab::Runs,
    ];

    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Presets => "Presets",
            Self::Phases => "Phases",
            Self::Dashboard => "Dashboard",
            Self::Samples => "Samples",
            Self::Gaad => "GAAD",
            Self::Controller => "Controller",
            Self::Runs => "Runs",
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|t| t.label().eq_ignore_ascii_case(text))
            .ok_or_else(|| {
                format!(
                    "unknown tab `{text}`; known: presets, phases, dashboard, samples, gaad, controller, runs"
                )
            })
    }
}

/// How the app starts (from the command line).
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    pub runs_dir: PathBuf,
    /// The user's preset folder (listed beside the shipped presets, which are built in).
    pub user_presets_dir: PathBuf,
    /// The preset to open; `None` opens the embedded default.
    pub preset: Option<(AnyPreset, Option<PathBuf>)>,
    /// Start training the preset at launch.
    pub start: bool,
    /// Run folders to open and follow.
    pub open: Vec<PathBuf>,
    pub tab: Tab,
    /// Close the app after this long.
    pub quit_after: Option<Duration>,
    /// Before quitting, screenshot every tab into this folder (`<tab>.png`).
    pub screenshot_dir: Option<PathBuf>,
    /// Stop after this many steps (scripted runs).
    pub step_limit: Option<u64>,
}

impl LaunchOptions {
    /// The app on the embedded default preset, writing runs under `runs_dir`, with the user
    /// preset folder inside it (tests).
    #[must_use]
    pub fn new(runs_dir: &Path) -> Self {
        Self {
            runs_dir: runs_dir.to_path_buf(),
            user_presets_dir: runs_dir.join("user-presets"),
            preset: None,
            start: false,
            open: Vec::new(),
            tab: Tab::Presets,
            quit_after: None,
            screenshot_dir: None,
            step_limit: None,
        }
    }
}

/// Reads a run's `events.log` on its own thread ("workbench-follow") and sends the events,
/// so a long log never stalls a frame; keeps following it while it grows. Dropping it stops
/// the thread.
struct Follower {
    events: Receiver<crate::core::protocol::Event>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    /// Set once everything in the log at the last read has been sent.
    read_once: Arc<std::sync::atomic::AtomicBool>,
}

impl Follower {
    fn spawn(log: PathBuf, waker: Option<crate::core::protocol::Waker>) -> std::io::Result<Self> {
        use std::sync::atomic::Ordering;
        let (tx, events) = crossbeam_channel::bounded(crate::engine::worker::EVENT_CAPACITY);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let read_once = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done = Arc::clone(&read_once);
        std::thread::Builder::new()
            .name("workbench-follow".into())
            .spawn(move || {
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
        })
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Where a run's events come from.
enum Source {
    /// Started here: the worker's channel (the run log is written too).
    Live(WorkerHandle),
    /// Opened from disk: its `events.log`, read and followed on a named thread.
    Follow(Follower),
    /// A view with nothing behind it (benchmarks, tests).
    Detached,
}

impl Source {
    /// The channel the run's events arrive on.
    fn events(&self) -> Option<&Receiver<crate::core::protocol::Event>> {
        match self {
            Self::Live(h) => Some(h.events()),
            Self::Follow(f) => Some(&f.events),
            Self::Detached => None,
        }
    }
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Live(_) => f.write_str("Live"),
            Self::Follow(_) => f.write_str("Follow"),
            Self::Detached => f.write_str("Detached"),
        }
    }
}

/// A run the app shows.
#[derive(Debug)]
pub struct Tracked {
    pub key: usize,
    pub dir: PathBuf,
    pub view: RunView,
    source: Source,
    /// Drawn on the dashboard beside the primary run.
    pub overlay: bool,
    pub color: Color32,
}

impl Tracked {
    #[must_use]
    pub fn is_live(&self) -> bool {
        matches!(self.source, Source::Live(_))
    }
}

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
    pub dialogs: Dialogs,
    pub run_list: Vec<RunSummary>,
    run_list_at: Option<Instant>,
    run_list_rx: Option<Receiver<Vec<RunSummary>>>,
    /// The last error to show in the status bar (failed start, bad import, ...).
    pub message: Option<(bool, String)>,
    pub live_values: Vec<(String, f64)>,
    opts: LaunchOptions,
    started_at: Instant,
    waker: Option<crate::core::protocol::Waker>,
    next_key: usize,
    screenshots: ScreenshotTour,
    pending_plot_png: Option<(String, PathBuf)>,
    shots: (Sender<Shot>, Receiver<Shot>),
}

impl std::fmt::Debug for WorkbenchApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkbenchApp")
            .field("tab", &self.tab)
            .field("runs", &self.runs.len())
            .finish_non_exhaustive()
    }
}

/// Scripted screenshots of every tab before quitting.
#[derive(Debug, Default)]
struct ScreenshotTour {
    started: bool,
    queue: Vec<Tab>,
    waiting: Option<Tab>,
    frames_on_tab: u32,
    done: bool,
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
            dialogs: Dialogs::default(),
            run_list: Vec::new(),
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
            opts,
        };
        for dir in app.opts.open.clone() {
            app.open_run(&dir);
        }
        if app.opts.start {
            app.start_run();
        }
        app
    }

    /// The primary run.
    #[must_use]
    pub fn current_run(&self) -> Option<&Tracked> {
        self.current.and_then(|i| self.runs.get(i))
    }

    fn live_handle(&self) -> Option<&WorkerHandle> {
        match &self.current_run()?.source {
            Source::Live(h) if !self.current_run()?.view.state.is_over() => Some(h),
            _ => None,
        }
    }

    /// Starts training the edited preset on a worker thread.
    pub fn start_run(&mut self) {
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
        let started = worker::prepare(req).and_then(|plan| worker::spawn(plan, self.waker.clone()));
        match started {
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
            self.on_dialog(ctx, purpose, &path);
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

    fn tour_step(&mut self, ctx: &egui::Context) {
        let t = &mut self.screenshots;
        if !t.started {
            t.queue = Tab::ALL.iter().rev().copied().collect();
            t.started = true;
        }
        if t.waiting.is_none() {
            match t.queue.pop() {
                Some(tab) => {
                    self.tab = tab;
                    t.waiting = Some(tab);
                    t.frames_on_tab = 0;
                }
                None => {
                    t.done = true;
                    return;
                }
            }
        }
        t.frames_on_tab += 1;
        // Let the tab lay out for a few frames, then ask for the screenshot once.
        if t.frames_on_tab == 4 {
            self.request_shot(ctx, ShotFor::Tab(self.tab));
        }
        ctx.request_repaint();
    }

    /// Asks the integration for a screenshot of the next frame; it arrives on `shots`.
    fn request_shot(&self, ctx: &egui::Context, what: ShotFor) {
        let tx = self.shots.0.clone();
        let c = ctx.clone();
        ctx.request_screenshot(move |image| {
            let _ = tx.try_send((image, what));
            c.request_repaint();
        });
    }

    fn screenshot_events(&mut self, ctx: &egui::Context) {
        let shots: Vec<Shot> = self.shots.1.try_iter().collect();
        for (image, what) in shots {
            match what {
                ShotFor::Tab(tab) => {
                    if let Some(dir) = &self.opts.screenshot_dir {
                        let path = dir.join(format!("{}.png", tab.label().to_lowercase()));
                        if let Err(e) = save_png(&image, None, ctx.pixels_per_point(), &path) {
                            self.message =
                                Some((true, format!("screenshot {}: {e}", path.display())));
                        }
                    }
                    self.screenshots.waiting = None;
                }
                ShotFor::Plot(name, path) => {
                    let rect = self.dashboard.plot_rects.get(&name).copied();
                    match save_png(&image, rect, ctx.pixels_per_point(), &path) {
                        Ok(()) => self.message = Some((false, format!("wrote {}", path.display()))),
                        Err(e) => self.message = Some((true, format!("{}: {e}", path.display()))),
                    }
                }
            }
        }
        if let Some((name, path)) = self.pending_plot_png.take() {
            self.request_shot(ctx, ShotFor::Plot(name, path));
        }
    }

    fn on_dialog(&mut self, _ctx: &egui::Context, purpose: Purpose, path: &Path) {
        let result: Result<String, String> = match purpose {
            Purpose::ImportPreset => std::fs::read_to_string(path)
                .map_err(|e| format!("{}: {e}", path.display()))
                .and_then(|text| PresetEditor::load_text(&text, &path.display().to_string()))
                .map(|e| {
                    self.editor = e;
                    format!("imported {}", path.display())
                }),
            Purpose::ExportPreset => match self.editor.to_ron() {
                Some(text) => crate::core::rundir::atomic_write(path, text.as_bytes())
                    .map(|()| format!("wrote {}", path.display()))
                    .map_err(|e| e.to_string()),
                None => Err("the preset does not parse; nothing written".into()),
            },
            Purpose::OpenRun => {
                self.open_run(path);
                self.tab = Tab::Dashboard;
                Ok(format!("opened {}", path.display()))
            }
            Purpose::ExportPlotCsv(name) => {
                let csv = series_csv(&name, &self.shown_runs());
                crate::core::rundir::atomic_write(path, csv.as_bytes())
                    .map(|()| format!("wrote {}", path.display()))
                    .map_err(|e| e.to_string())
            }
            Purpose::ExportPlotPng(name) => {
                self.pending_plot_png = Some((name, path.to_path_buf()));
                Ok(format!("writing {}", path.display()))
            }
            Purpose::ExportSample => self.export_sample(path),
            Purpose::GaadImage => {
                self.gaad.open_image(path.to_path_buf());
                Ok(format!("inspecting {}", path.display()))
            }
        };
        self.message = Some(match result {
            Ok(m) => (false, m),
            Err(m) => (true, m),
        });
    }

    fn export_sample(&self, path: &Path) -> Result<String, String> {
        let run = self.current_run().ok_or("no run")?;
        let s = run
            .view
            .samples
            .get(self.samples.index)
            .ok_or("no sample")?;
        let src = run.dir.join(&s.path);
        if src.is_file() {
            std::fs::copy(&src, path).map_err(|e| format!("{}: {e}", path.display()))?;
        } else {
            image::save_buffer(
                path,
                &s.rgba,
                s.width,
                s.height,
                image::ExtendedColorType::Rgba8,
            )
            .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(format!("wrote {}", path.display()))
    }

    fn shown_runs(&self) -> Vec<Shown<'_>> {
        shown_runs(&self.runs, self.current)
    }

    /// Re-reads the runs folder at most every two seconds.
    pub fn refresh_run_list(&mut self, force: bool) {
        if let Some(rx) = &self.run_list_rx {
            match rx.try_recv() {
                Ok(list) => {
                    self.run_list = list;
                    self.run_list_rx = None;
                }
                Err(crossbeam_channel::TryRecvError::Empty) => return,
                Err(crossbeam_channel::TryRecvError::Disconnected) => self.run_list_rx = None,
            }
        }
        if !force
            && self
                .run_list_at
                .is_some_and(|t| t.elapsed() < Duration::from_secs(2))
        {
            return;
        }
        self.run_list_at = Some(Instant::now());
        // Each run's status comes from reading its whole event log: never on the UI thread.
        let (tx, rx) = crossbeam_channel::bounded(1);
        let dir = self.opts.runs_dir.clone();
        let waker = self.waker.clone();
        let spawned = std::thread::Builder::new()
            .name("workbench-runs".into())
            .spawn(move || {
                let mut list = list_runs(&dir).unwrap_or_default();
                list.reverse();
                let _ = tx.send(list);
                if let Some(w) = waker {
                    w();
                }
            });
        if spawned.is_ok() {
            self.run_list_rx = Some(rx);
        }
    }

    /// Whether the runs folder is being read.
    #[must_use]
    pub fn run_list_pending(&self) -> bool {
        self.run_list_rx.is_some()
    }

    /// The whole window.
    pub fn show(&mut self, ui: &mut Ui) {
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
        });
    }

    fn top_bar_ui(&mut self, ui: &mut Ui) {
        ui.horizontal_wrapped(|ui| {
            ui.heading("Generative Workbench");
            ui.separator();
            for t in Tab::ALL {
                ui.selectable_value(&mut self.tab, t, t.label());
            }
            ui.separator();
            self.controls_ui(ui);
        });
    }

    /// Start, pause/resume, stop, stop and save, checkpoint now, skip phase.
    fn controls_ui(&mut self, ui: &mut Ui) {
        let live = self.live_handle().is_some();
        let state = self.current_run().map(|r| r.view.state.clone());
        let blocker = self.editor.start_blocker();
        let start = ui
            .add_enabled(!live && blocker.is_none(), egui::Button::new("Start"))
            .on_hover_text(format!(
                "train `{}` on a background worker",
                self.editor.save_as_name
            ))
            .on_disabled_hover_text(
                blocker
                    .clone()
                    .unwrap_or_else(|| "a run is already going".into()),
            );
        if start.clicked() {
            self.start_run();
        }
        let paused = matches!(state, Some(RunState::Paused));
        if ui
            .add_enabled(
                live,
                egui::Button::new(if paused { "Resume" } else { "Pause" }),
            )
            .clicked()
        {
            self.command(if paused {
                Command::Resume
            } else {
                Command::Pause
            });
        }
        if ui
            .add_enabled(live, egui::Button::new("Stop"))
            .on_hover_text("end the run without a checkpoint")
            .clicked()
        {
            self.command(Command::Stop);
        }
        if ui
            .add_enabled(live, egui::Button::new("Stop and save"))
            .clicked()
        {
            self.command(Command::StopAndSave);
        }
        if ui
            .add_enabled(live, egui::Button::new("Checkpoint now"))
            .clicked()
        {
            self.command(Command::CheckpointNow);
        }
        if ui
            .add_enabled(live, egui::Button::new("Skip phase"))
            .clicked()
        {
            self.command(Command::SkipPhase);
        }
        if let Some(b) = blocker.filter(|_| !live) {
            ui.colored_label(Color32::from_rgb(235, 80, 80), format!("cannot start: {b}"));
        }
    }

    fn status_bar_ui(&mut self, ui: &mut Ui) {
        ui.horizontal_wrapped(|ui| {
            if let Some(r) = self.current_run() {
                let v = &r.view;
                let state_color = match &v.state {
                    RunState::Failed(_) => Color32::from_rgb(235, 80, 80),
                    RunState::Paused => Color32::from_rgb(230, 200, 90),
                    RunState::Running => Color32::from_rgb(110, 210, 120),
                    _ => ui.visuals().text_color(),
                };
                ui.colored_label(state_color, v.state.label());
                ui.label(format!(
                    "{} · {}",
                    v.name,
                    if v.device.is_empty() {
                        "device ?"
                    } else {
                        &v.device
                    }
                ));
                match v.total_steps {
                    Some(t) => ui.label(format!("step {} / {t}", v.step)),
                    None => ui.label(format!("step {}", v.step)),
                };
                if let Some((i, name)) = &v.phase {
                    ui.label(format!("phase {i} `{name}`"));
                }
                // The active critic of families that switch: the last switch, else the
                // logged `active_critic` (0 = primary).
                let critic = v.active_critic.clone().or_else(|| {
                    v.series
                        .get("active_critic")
                        .and_then(|s| s.last())
                        .map(|(_, a)| if a < 0.5 { "primary" } else { "alternative" }.to_string())
                });
                if let Some(c) = critic {
                    ui.label(format!("critic: {c}"));
                }
                if !v.state.is_over() {
                    if let Some(rate) = v.steps_per_second() {
                        ui.label(format!("{rate:.2} steps/s"));
                    }
                    if let Some(eta) = v.eta_seconds() {
                        ui.label(format!("ETA {}", crate::core::timefmt::human_duration(eta)));
                    }
                }
                if let Some(c) = self.cursor {
                    ui.label(RichText::new(format!("cursor: step {c}")).weak());
                }
                if let RunState::Failed(m) = &v.state {
                    ui.colored_label(Color32::from_rgb(235, 80, 80), m);
                }
            } else {
                ui.label(RichText::new("no run yet").weak());
            }
            if let Some((is_error, m)) = &self.message {
                ui.separator();
                let c = if *is_error {
                    Color32::from_rgb(235, 80, 80)
                } else {
                    ui.visuals().weak_text_color()
                };
                ui.colored_label(c, m);
            }
        });
    }

    fn presets_tab_ui(&mut self, ui: &mut Ui) {
        egui::Panel::left("library")
            .resizable(true)
            .default_size(230.0)
            .show(ui, |ui| {
                ui.heading("Library");
                ui.label(RichText::new("built in, then yours").weak().small())
                    .on_hover_text(format!(
                        "The shipped presets are built into the app; yours are the .ron files in {}",
                        self.opts.user_presets_dir.display()
                    ));
                let mut load = None;
                egui::ScrollArea::vertical()
                    .id_salt("library-scroll")
                    .show(ui, |ui| {
                        for (i, e) in self.library.iter().enumerate() {
                            let label = if e.user() {
                                format!("{} (yours)", e.name)
                            } else {
                                e.name.clone()
                            };
                            let origin = e.origin();
                            let mut r = ui.selectable_label(
                                self.editor.source.as_deref() == Some(origin.as_path()),
                                label,
                            );
                            if let Some(err) = &e.error {
                                r = r.on_hover_text(err);
                            } else {
                                r = r.on_hover_text(origin.display().to_string());
                            }
                            if r.clicked() {
                                load = Some(i);
                            }
                        }
                    });
                ui.separator();
                for family in Family::ALL {
                    if ui
                        .button(format!("New {} from defaults", family.name()))
                        .clicked()
                    {
                        self.editor = PresetEditor::new(&family.default_preset(), None);
                    }
                }
                if ui.button("Import RON...").clicked() {
                    self.dialogs.open(Purpose::ImportPreset, "");
                }
                if ui.button("Export RON...").clicked() {
                    let name = format!("{}.ron", self.editor.save_as_name);
                    self.dialogs.open(Purpose::ExportPreset, &name);
                }
                ui.horizontal(|ui| {
                    let l = ui.label("Name").id;
                    ui.add(
                        egui::TextEdit::singleline(&mut self.editor.save_as_name)
                            .desired_width(110.0),
                    )
                    .labelled_by(l);
                    if ui
                        .button("Save as")
                        .on_hover_text(format!("into {}", self.opts.user_presets_dir.display()))
                        .clicked()
                    {
                        self.save_as();
                    }
                });
                if let Some(i) = load {
                    let e = &self.library[i];
                    let origin = e.origin();
                    match e
                        .text()
                        .and_then(|t| PresetEditor::load_text(&t, &origin.display().to_string()))
                    {
                        Ok(mut ed) => {
                            ed.source = Some(origin);
                            self.editor = ed;
                            self.message = None;
                        }
                        Err(m) => self.message = Some((true, m)),
                    }
                }
            });
        egui::Panel::right("diff")
            .resizable(true)
            .default_size(320.0)
            .show(ui, |ui| self.diff_ui(ui));
        egui::CentralPanel::default().show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.heading(format!("{} preset", self.editor.family.name()));
                if let Some(s) = &self.editor.source {
                    ui.label(RichText::new(s.display().to_string()).weak());
                }
            });
            for n in &self.editor.notes {
                ui.label(RichText::new(format!("migrated: {n}")).weak());
            }
            if !self.editor.problems.is_empty() {
                ui.colored_label(
                    Color32::from_rgb(235, 80, 80),
                    format!(
                        "{} problem(s): each is shown beside its field",
                        self.editor.problems.len()
                    ),
                );
            }
            egui::ScrollArea::vertical()
                .id_salt("form-scroll")
                .show(ui, |ui| self.editor.form_ui(ui));
        });
    }

    fn diff_ui(&mut self, ui: &mut Ui) {
        ui.heading("Diff");
        let current = self
            .editor
            .compare_with
            .as_ref()
            .map_or("family defaults".to_string(), |(n, _)| n.clone());
        let mut pick: Option<Option<usize>> = None;
        let l = ui.label("Compare with").id;
        let _ = egui::ComboBox::from_id_salt("diff-against")
            .selected_text(current)
            .show_ui(ui, |ui| {
                if ui
                    .selectable_label(self.editor.compare_with.is_none(), "family defaults")
                    .clicked()
                {
                    pick = Some(None);
                }
                for (i, e) in self.library.iter().enumerate() {
                    if e.error.is_none() && ui.selectable_label(false, &e.name).clicked() {
                        pick = Some(Some(i));
                    }
                }
            })
            .response
            .labelled_by(l);
        match pick {
            Some(None) => self.editor.compare_with = None,
            Some(Some(i)) => {
                let e = &self.library[i];
                if let Ok(p) = e.load() {
                    self.editor.compare_with = Some((e.name.clone(), p.to_tree()));
                }
            }
            None => {}
        }
        let rows = match &self.editor.compare_with {
            Some((_, tree)) => self.editor.diff(tree),
            None => self
                .editor
                .diff(&self.editor.family.default_preset().to_tree()),
        };
        if rows.is_empty() {
            ui.label(RichText::new("no differences").weak());
        }
        egui::ScrollArea::vertical()
            .id_salt("diff-scroll")
            .show(ui, |ui| {
                egui::Grid::new("diff-grid")
                    .striped(true)
                    .num_columns(3)
                    .show(ui, |ui| {
                        for (path, theirs, ours) in rows {
                            ui.label(path);
                            ui.label(RichText::new(theirs).weak());
                            ui.label(ours);
                            ui.end_row();
                        }
                    });
            });
    }

    fn save_as(&mut self) {
        let name: String = self
            .editor
            .save_as_name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let Some(text) = self.editor.to_ron() else {
            self.message = Some((true, "the preset does not parse; nothing saved".into()));
            return;
        };
        let dir = &self.opts.user_presets_dir;
        let path = dir.join(format!("{name}.ron"));
        let res = std::fs::create_dir_all(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))
            .and_then(|()| {
                crate::core::rundir::atomic_write(&path, text.as_bytes()).map_err(|e| e.to_string())
            });
        match res {
            Ok(()) => {
                self.message = Some((false, format!("saved {}", path.display())));
                self.editor.source = Some(path);
                self.library = scan_library(&self.opts.user_presets_dir);
            }
            Err(m) => self.message = Some((true, m)),
        }
    }

    fn dashboard_tab_ui(&mut self, ui: &mut Ui) {
        self.dashboard.toolbar_ui(ui);
        if self.live_handle().is_some() && !self.live_values.is_empty() {
            self.live_ui(ui);
        }
        let mut cursor = self.cursor;
        if let Some(r) = self.current_run() {
            let view = &r.view;
            egui::Panel::bottom("events-panel")
                .resizable(true)
                .default_size(150.0)
                .show(ui, |ui| {
                    ui.label(RichText::new(format!("Events ({})", view.markers.len())).strong());
                    Dashboard::events_ui(ui, view, &mut cursor);
                });
        }
        let shown = shown_runs(&self.runs, self.current);
        let actions = self.dashboard.plots_ui(ui, &shown, &mut cursor);
        self.cursor = cursor;
        for a in actions {
            match a {
                DashAction::ExportCsv(n) => self
                    .dialogs
                    .open(Purpose::ExportPlotCsv(n.clone()), &format!("{n}.csv")),
                DashAction::ExportPng(n) => self
                    .dialogs
                    .open(Purpose::ExportPlotPng(n.clone()), &format!("{n}.png")),
            }
        }
    }

    /// Live hyperparameters of the running preset, editable in place.
    fn live_ui(&mut self, ui: &mut Ui) {
        let mut send = Vec::new();
        ui.horizontal_wrapped(|ui| {
            ui.label(RichText::new("Live:").strong());
            for (name, value) in &mut self.live_values {
                let l = ui.label(name.as_str()).id;
                let speed = *value * 0.01 + 1e-9;
                let r = ui
                    .add(
                        egui::DragValue::new(value)
                            .speed(speed)
                            .range(0.0..=f64::MAX),
                    )
                    .labelled_by(l);
                if r.lost_focus() || r.drag_stopped() {
                    send.push((name.clone(), *value));
                }
            }
        });
        for (name, value) in send {
            self.command(Command::SetHyperparameter { name, value });
        }
    }

    fn samples_tab_ui(&mut self, ui: &mut Ui) {
        let mut cursor = self.cursor;
        let Some(i) = self.current else {
            ui.label(RichText::new("No run: start one or open one from the Runs tab.").weak());
            return;
        };
        ui.horizontal(|ui| {
            ui.heading("Samples");
            if ui.button("Export PNG...").clicked() {
                self.dialogs.open(Purpose::ExportSample, "samples.png");
            }
        });
        let view = &self.runs[i].view;
        let has_recon = !view.reconstructions.is_empty();
        self.samples.max_height = if has_recon {
            (ui.available_height() * 0.4).max(120.0)
        } else {
            f32::INFINITY
        };
        // Fixed-noise samples carry no regions; reconstructions bring theirs.
        self.samples.ui(ui, view, &mut cursor, &[]);
        if has_recon {
            ui.separator();
            ui.heading("Reconstruction: ground truth | reconstruction | difference");
            self.recon.ui(ui, view, cursor);
        }
        self.cursor = cursor;
    }

    /// One Q-controller of the primary run (chosen among all of the run's controllers): the
    /// decision in force at the cursor (state, actions, reward, epsilon, Q-values) above its
    /// timeline (epsilon, reward and the settings it applied), which shares the cursor.
    fn controller_tab_ui(&mut self, ui: &mut Ui) {
        let Some(i) = self.current else {
            ui.label(RichText::new("No run: start one or open one from the Runs tab.").weak());
            return;
        };
        let view = &self.runs[i].view;
        if view.decisions.is_empty() {
            ui.label(
                RichText::new(
                    "No controller decisions in this run (enable lr_control, or q_control for WuBu-GAAD).",
                )
                .weak(),
            );
            return;
        }
        let name = match &self.controller {
            Some(n) if view.controllers.contains(n) => n.clone(),
            _ => view.controllers.first().cloned().unwrap_or_default(),
        };
        if view.controllers.len() > 1 {
            ui.horizontal_wrapped(|ui| {
                ui.label("Controller");
                for c in &view.controllers {
                    if ui.selectable_label(*c == name, c).clicked() {
                        self.controller = Some(c.clone());
                    }
                }
            });
        }
        let at = self.cursor.unwrap_or(view.step);
        if let Some(d) = view.decision_at(&name, at) {
            ui.horizontal_wrapped(|ui| {
                ui.heading(format!("Decision at step {}", d.step));
                ui.label(RichText::new(format!("controller: {}", d.name)).weak());
                ui.label(format!("epsilon {:.3}", d.epsilon));
                match d.reward {
                    Some(r) => ui.label(format!("reward {r:+.3}")),
                    None => ui.label("no reward yet"),
                };
                ui.label(format!("state {:?}", d.state));
                if d.table_size > 0 {
                    ui.label(format!(
                        "visited {} time(s); {} state(s) in the table",
                        d.visits, d.table_size
                    ));
                }
                for (field, v) in &d.applied {
                    ui.label(format!("{field} = {v:.4e}"));
                }
            });
            egui::Grid::new("decision")
                .striped(true)
                .num_columns(3)
                .show(ui, |ui| {
                    for (k, (field, scale)) in d.actions.iter().enumerate() {
                        let explored = d.explored.get(k).copied().unwrap_or(false);
                        ui.label(field);
                        ui.label(format!(
                            "x{scale}{}",
                            if explored { " (explored)" } else { "" }
                        ));
                        let q: Vec<String> = d
                            .q_values
                            .get(k)
                            .map(|q| q.iter().map(|v| format!("{v:+.3}")).collect())
                            .unwrap_or_default();
                        ui.label(format!("Q [{}]", q.join(", ")));
                        ui.end_row();
                    }
                });
            match &d.updated {
                Some(u) => {
                    ui.label(format!(
                        "The reward {} updated the row of state {:?}:",
                        d.reward.map_or_else(String::new, |r| format!("{r:+.3}")),
                        u.state
                    ));
                    egui::Grid::new("updated-row")
                        .striped(true)
                        .num_columns(2)
                        .show(ui, |ui| {
                            for (k, (field, _)) in d.actions.iter().enumerate() {
                                ui.label(field);
                                let chosen = u.chosen.get(k).copied();
                                let q: Vec<String> = u
                                    .q_values
                                    .get(k)
                                    .map(|q| {
                                        q.iter()
                                            .enumerate()
                                            .map(|(j, v)| {
                                                if Some(j) == chosen {
                                                    format!("[{v:+.3}]")
                                                } else {
                                                    format!("{v:+.3}")
                                                }
                                            })
                                            .collect()
                                    })
                                    .unwrap_or_default();
                                ui.label(format!("Q {}", q.join(", ")))
                                    .on_hover_text("the bracketed value is the option that decision chose; it is the one the reward moved");
                                ui.end_row();
                            }
                        });
                }
                None => {
                    ui.label(
                        RichText::new("No row was updated at this decision (the first, or one without a reward).")
                            .weak(),
                    );
                }
            }
        }
        ui.separator();
        let shown = [Shown {
            key: self.runs[i].key,
            view,
            color: self.runs[i].color,
        }];
        let filter = std::mem::take(&mut self.dashboard.filter);
        // The learning-rate controller of any family also logs `ctl_*` scale scalars and
        // the rates it steers.
        self.dashboard.filter = if name.starts_with("lr (") {
            format!("ctl_, lr, ctl/{name}/")
        } else {
            format!("ctl/{name}/")
        };
        let mut cursor = self.cursor;
        let _ = self.dashboard.plots_ui(ui, &shown, &mut cursor);
        self.dashboard.filter = filter;
        self.cursor = cursor;
    }

    fn runs_tab_ui(&mut self, ui: &mut Ui) {
        self.refresh_run_list(false);
        if self.run_list_pending() {
            ui.ctx().request_repaint_after(Duration::from_millis(50));
        }
        ui.horizontal(|ui| {
            ui.heading("Runs");
            ui.label(RichText::new(self.opts.runs_dir.display().to_string()).weak());
            if ui.button("Refresh").clicked() {
                self.refresh_run_list(true);
            }
            if ui.button("Open run folder...").clicked() {
                self.dialogs.open(Purpose::OpenRun, "");
            }
        });
        ui.label(RichText::new("Open follows a run live, including one being written by `workbench train` in another process. Tick runs to overlay them on the dashboard, aligned by step.").weak());
        let mut open = None;
        egui::Grid::new("run-list")
            .striped(true)
            .num_columns(6)
            .show(ui, |ui| {
                for h in ["", "run", "status", "step", "device", ""] {
                    ui.label(RichText::new(h).strong());
                }
                ui.end_row();
                for s in &self.run_list {
                    let tracked = self.runs.iter().position(|r| r.dir == s.dir);
                    let color = match s.status {
                        crate::core::rundir::RunStatus::Running => Color32::from_rgb(110, 210, 120),
                        crate::core::rundir::RunStatus::Failed => Color32::from_rgb(235, 80, 80),
                        _ => ui.visuals().text_color(),
                    };
                    match tracked {
                        Some(i) => {
                            ui.checkbox(&mut self.runs[i].overlay, "overlay")
                                .on_hover_text("overlay on the dashboard, aligned by step");
                        }
                        None => {
                            ui.label("");
                        }
                    }
                    ui.label(
                        s.dir
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                    )
                    .on_hover_text(if s.message.is_empty() {
                        s.dir.display().to_string()
                    } else {
                        s.message.clone()
                    });
                    ui.colored_label(color, s.status.label());
                    ui.label(s.last_step.to_string());
                    ui.label(&s.device);
                    let label = if tracked == self.current && tracked.is_some() {
                        "shown"
                    } else {
                        "Open"
                    };
                    if ui.button(label).clicked() {
                        open = Some(s.dir.clone());
                    }
                    ui.end_row();
                }
            });
        if let Some(dir) = open {
            self.open_run(&dir);
            self.tab = Tab::Dashboard;
        }
    }
}

/// The primary run first, then the runs ticked for overlay.
fn shown_runs(runs: &[Tracked], current: Option<usize>) -> Vec<Shown<'_>> {
    fn shown(r: &Tracked) -> Shown<'_> {
        Shown {
            key: r.key,
            view: &r.view,
            color: r.color,
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

/// A screenshot and what it was asked for.
type Shot = (Arc<egui::ColorImage>, ShotFor);

/// What a screenshot was asked for.
#[derive(Debug, Clone)]
enum ShotFor {
    Tab(Tab),
    Plot(String, PathBuf),
}

/// Writes a screenshot (or the part of it inside `rect`, in points) as PNG.
fn save_png(
    image: &egui::ColorImage,
    rect: Option<egui::Rect>,
    ppp: f32,
    path: &Path,
) -> Result<(), String> {
    let [w, h] = image.size;
    let (x0, y0, x1, y1) = match rect {
        Some(r) => (
            ((r.min.x * ppp).max(0.0) as usize).min(w),
            ((r.min.y * ppp).max(0.0) as usize).min(h),
            ((r.max.x * ppp) as usize).min(w),
            ((r.max.y * ppp) as usize).min(h),
        ),
        None => (0, 0, w, h),
    };
    if x1 <= x0 || y1 <= y0 {
        return Err("empty region".into());
    }
    let mut bytes = Vec::with_capacity((x1 - x0) * (y1 - y0) * 4);
    for y in y0..y1 {
        for p in &image.pixels[y * w + x0..y * w + x1] {
            bytes.extend_from_slice(&p.to_array());
        }
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    image::save_buffer(
        path,
        &bytes,
        (x1 - x0) as u32,
        (y1 - y0) as u32,
        image::ExtendedColorType::Rgba8,
    )
    .map_err(|e| e.to_string())
}

/// The embedded default preset (WGAN-GP on synthetic sprites).
#[must_use]
pub fn default_preset() -> AnyPreset {
    const TEXT: &str = include_str!("../../presets/wgan_gp_sprites32.ron");
    crate::core::preset::parse_str(TEXT, "presets/wgan_gp_sprites32.ron")
        .map(|(p, _)| p)
        .unwrap_or_else(|_| Family::ALL[0].default_preset())
}

impl eframe::App for WorkbenchApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        WorkbenchApp::logic(self, ctx);
    }

    fn ui(&mut self, ui: &mut Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
    }
}

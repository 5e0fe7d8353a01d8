//! The app's state: the runs it follows and the shared cursor, one struct per panel, and the
//! work it has under way. Only files under `gui/app/` extend it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use crate::core::preset::{AnyPreset, Family};
use crate::core::protocol::Waker;
use crate::core::runtable::RunRow;
use crate::engine::worker::WorkerHandle;
use crate::gui::actions::{LaunchOptions, Tab, UiAction};
use crate::gui::editor::{scan_library, PresetEditor};
use crate::gui::images::Images;
use crate::gui::panels::controller::ControllerPanel;
use crate::gui::panels::dashboard::Dashboard;
use crate::gui::panels::explorer::ExplorerPanel;
use crate::gui::panels::gaad::GaadPanel;
use crate::gui::panels::presets::PresetsPanel;
use crate::gui::panels::queue::QueuePanel;
use crate::gui::panels::run_controls::RunControls;
use crate::gui::panels::runs::RunsTable;
use crate::gui::panels::samples::SamplesPanel;
use crate::gui::panels::shortcuts::Overlays;
use crate::gui::panels::volume::VolumePanel;
use crate::gui::sources::{Source, Tracked};

use super::dialogs::Dialogs;
use super::jobs::Jobs;
use super::tour::{ScreenshotTour, Shot};

/// The workbench app.
pub struct WorkbenchApp {
    pub tab: Tab,
    /// The runs the app follows; `current` is the one shown.
    pub runs: Vec<Tracked>,
    pub current: Option<usize>,
    /// The shared step cursor (`None`: the latest step).
    pub cursor: Option<u64>,
    /// The runs folder as last read (the Runs tab's rows).
    pub run_list: Vec<RunRow>,
    /// The last message for the status bar: (is an error, text).
    pub message: Option<(bool, String)>,
    /// The panels, each with its own widgets' state.
    pub presets: PresetsPanel,
    pub controls: RunControls,
    pub dashboard: Dashboard,
    pub samples: SamplesPanel,
    pub gaad: GaadPanel,
    pub controller: ControllerPanel,
    pub runs_table: RunsTable,
    pub queue: QueuePanel,
    pub explorer: ExplorerPanel,
    pub volume: VolumePanel,
    pub overlays: Overlays,
    /// Native file dialogs, on their own threads (tests answer them).
    pub dialogs: Dialogs,
    /// How often the Queue tab asks SLURM about its jobs (30 s unless set).
    pub slurm_every: Option<std::time::Duration>,
    /// Images decoded from run folders, for the panels.
    pub(crate) images: Images,
    /// The work under way.
    pub(crate) jobs: Jobs,
    pub(crate) opts: LaunchOptions,
    pub(crate) started_at: Instant,
    pub(crate) waker: Option<Waker>,
    pub(crate) next_key: usize,
    /// The branches (by key) whose parent was brought in up to the fork.
    pub(crate) parents_shown: std::collections::HashSet<usize>,
    /// Branches to overlay once they have a run log (queued Undo and A/B branches train
    /// later), and when they were last looked for.
    pub overlay_pending: Vec<std::path::PathBuf>,
    pub(crate) overlay_checked: Option<std::time::Instant>,
    pub(crate) screenshots: ScreenshotTour,
    pub(crate) pending_plot_png: Option<(String, PathBuf)>,
    pub(crate) shots: (Sender<Shot>, Receiver<Shot>),
    /// What the panels asked for during the last frame, applied by `logic()`.
    pub(crate) actions: Vec<UiAction>,
    /// The window title last asked for.
    pub title: String,
    /// The devices, as the About window shows them (probed off the UI thread when it opens).
    pub(crate) about_device: Option<String>,
    /// The app's own log (its messages, appended on the `workbench-log` thread).
    pub(crate) log_tx: Option<Sender<String>>,
    pub(crate) logged: Option<(bool, String)>,
    /// Machines whose runs are listed and followed over SSH.
    pub remotes: Vec<crate::gui::sources::RemoteSite>,
    /// The SSH client: `ssh`, or what `WORKBENCH_SSH` names.
    pub remote_ssh: String,
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
        let waker: Waker = Arc::new(move || ctx.request_repaint());
        Self::with_waker(opts, Some(waker))
    }

    /// Builds the app with an optional waker (tests drive frames themselves).
    #[must_use]
    pub fn with_waker(opts: LaunchOptions, waker: Option<Waker>) -> Self {
        let (preset, source) = opts
            .preset
            .clone()
            .unwrap_or_else(|| (default_preset(), None));
        let mut app = Self {
            tab: opts.tab,
            runs: Vec::new(),
            current: None,
            cursor: None,
            run_list: Vec::new(),
            message: None,
            presets: PresetsPanel {
                editor: PresetEditor::new(&preset, source),
                library: scan_library(&opts.user_presets_dir),
            },
            controls: RunControls::default(),
            dashboard: Dashboard::default(),
            samples: SamplesPanel::default(),
            gaad: GaadPanel::default(),
            controller: ControllerPanel::default(),
            runs_table: RunsTable::default(),
            queue: QueuePanel::default(),
            explorer: ExplorerPanel::default(),
            volume: VolumePanel::default(),
            overlays: Overlays::default(),
            dialogs: Dialogs::default(),
            slurm_every: None,
            images: Images::default(),
            jobs: Jobs::default(),
            started_at: Instant::now(),
            waker,
            next_key: 0,
            parents_shown: std::collections::HashSet::new(),
            overlay_pending: Vec::new(),
            overlay_checked: None,
            screenshots: ScreenshotTour::default(),
            pending_plot_png: None,
            shots: crossbeam_channel::bounded(8),
            actions: Vec::new(),
            title: String::new(),
            about_device: None,
            log_tx: None,
            logged: None,
            remotes: Vec::new(),
            remote_ssh: std::env::var("WORKBENCH_SSH").unwrap_or_else(|_| "ssh".into()),
            opts,
        };
        app.log_tx = super::jobs::app_log(&app.opts.app_log);
        // Remembered layouts (read before the first frame); a damaged file is said once and
        // replaced at the next change.
        let layouts = app.layout_path();
        if let Ok(text) = std::fs::read_to_string(&layouts) {
            match serde_json::from_str(&text) {
                Ok(l) => app.dashboard.layouts = l,
                Err(e) => {
                    app.message = Some((
                        true,
                        format!(
                            "{}: not a dashboard layout ({e}); using the defaults",
                            layouts.display()
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

    /// The worker of the run shown, while it takes commands.
    pub(crate) fn live_handle(&self) -> Option<&WorkerHandle> {
        let run = self.current_run()?;
        match &run.source {
            Source::Live(h) if !run.view.state.is_over() => Some(h),
            _ => None,
        }
    }

    /// The run shown, when it was started elsewhere and is training: it takes commands
    /// through its folder (`core::inbox`).
    pub(crate) fn followed_running(&self) -> Option<std::path::PathBuf> {
        let run = self.current_run()?;
        (matches!(run.source, Source::Follow(_) | Source::Remote(_)) && !run.view.state.is_over())
            .then(|| run.dir.clone())
    }

    /// The run this app is training, if any (shown or not).
    pub(crate) fn training_run(&self) -> Option<&str> {
        self.runs
            .iter()
            .find(|r| matches!(r.source, Source::Live(_)) && !r.view.state.is_over())
            .map(|r| r.view.name.as_str())
    }

    /// Whether a run is being prepared.
    #[must_use]
    pub fn is_starting(&self) -> bool {
        self.jobs.starting.is_some()
    }

    /// Whether an opened run's log is still being read into its view.
    #[must_use]
    pub fn is_catching_up(&self) -> bool {
        self.runs.iter().any(|r| match &r.source {
            Source::Follow(f) => !f.caught_up(),
            Source::Remote(f) => !f.caught_up(),
            _ => false,
        })
    }

    /// Whether the runs folder is being read.
    #[must_use]
    pub fn run_list_pending(&self) -> bool {
        self.jobs.run_list.is_some()
    }

    /// Whether the queue file is being read or edited.
    #[must_use]
    pub fn queue_pending(&self) -> bool {
        self.jobs.queue.is_some()
    }

    /// Whether the action explorer is loading or rolling out.
    #[must_use]
    pub fn explorer_busy(&self) -> bool {
        self.jobs.opening.is_some() || self.jobs.exploring.is_some()
    }

    /// What the About window says, as text to copy into a bug report.
    #[must_use]
    pub fn about_text(&self) -> String {
        [
            format!("workbench {}", env!("CARGO_PKG_VERSION")),
            format!("git commit {}", env!("WORKBENCH_GIT_COMMIT")),
            format!("libtorch {}", crate::engine::worker::libtorch_version()),
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

    /// Where the dashboard layouts are remembered.
    pub(crate) fn layout_path(&self) -> PathBuf {
        crate::gui::style::layout_path(&self.opts.user_presets_dir)
    }
}

/// The embedded default preset (WGAN-GP on synthetic sprites).
#[must_use]
pub fn default_preset() -> AnyPreset {
    const TEXT: &str = include_str!("../../../presets/wgan_gp_sprites32.ron");
    crate::core::preset::parse_str(TEXT, "presets/wgan_gp_sprites32.ron")
        .map(|(p, _)| p)
        .unwrap_or_else(|_| Family::ALL[0].default_preset())
}

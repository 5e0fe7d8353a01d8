//! What the app can be asked to do, and how it starts: the tabs, the launch options, and the
//! actions panels return while drawing, which the app applies between frames.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::core::preset::AnyPreset;
use crate::core::protocol::Command;

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
    Actions,
    Volume,
    Queue,
}

impl Tab {
    pub const ALL: [Tab; 10] = [
        Tab::Presets,
        Tab::Phases,
        Tab::Dashboard,
        Tab::Samples,
        Tab::Gaad,
        Tab::Controller,
        Tab::Runs,
        Tab::Actions,
        Tab::Volume,
        Tab::Queue,
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
            Self::Actions => "Actions",
            Self::Volume => "Volume",
            Self::Queue => "Queue",
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|t| t.label().eq_ignore_ascii_case(text))
            .ok_or_else(|| {
                format!(
                    "unknown tab `{text}`; known: presets, phases, dashboard, samples, gaad, controller, runs, actions, volume, queue"
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
    /// The app's own log (its messages and errors): `$XDG_STATE_HOME/workbench/app.log`.
    pub app_log: PathBuf,
    /// Restore what the app remembers (the tab, the preset, the dashboard settings) from
    /// eframe's storage; `explicit_tab`: the command line named a tab, which wins.
    pub remember: bool,
    pub explicit_tab: bool,
    /// The command line named the runs folder, which wins over the remembered one.
    pub explicit_runs_dir: bool,
}

impl LaunchOptions {
    /// The app on the embedded default preset, writing runs under `runs_dir`, with the user
    /// preset folder inside it (tests).
    #[must_use]
    pub fn new(runs_dir: &Path) -> Self {
        Self {
            runs_dir: runs_dir.to_path_buf(),
            user_presets_dir: runs_dir.join("user-presets"),
            app_log: runs_dir.join("app.log"),
            remember: false,
            explicit_tab: false,
            explicit_runs_dir: false,
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

/// Something a panel asks for while drawing; the app applies it after the frame, so drawing
/// never starts threads, touches files or blocks.
#[derive(Debug, Clone, PartialEq)]
pub enum UiAction {
    /// Start training the edited preset (prepared on a background thread).
    Start,
    /// Send a command to the live run.
    Command(Command),
    /// Open and follow a run folder.
    OpenRun(PathBuf),
    /// Overlay a run's curves on the dashboard (following it if needed) or stop.
    Overlay(PathBuf, bool),
    /// Load the library's preset at this index into the editor.
    LoadPreset(usize),
    /// Save the edited preset into the user's folder under the editor's name.
    SavePreset,
    /// Compare the edited preset with the family defaults (`None`) or a library preset.
    CompareWith(Option<usize>),
    /// Save the dashboard layouts (they changed).
    SaveLayout,
}

/// Runs `job` on a named thread and hands its result back through a channel; `waker` asks
/// for a frame when it is done. File I/O and run preparation go through here.
pub fn background<T: Send + 'static>(
    name: &str,
    waker: Option<crate::core::protocol::Waker>,
    job: impl FnOnce() -> T + Send + 'static,
) -> crossbeam_channel::Receiver<T> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let spawned = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let _ = tx.send(job());
            if let Some(w) = waker {
                w();
            }
        });
    if let Err(e) = spawned {
        // The receiver then reports a disconnect; the app says the job could not start.
        eprintln!("cannot start the {name} thread: {e}");
    }
    rx
}

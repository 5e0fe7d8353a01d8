//! What the app can be asked to do, and how it starts: the tabs and when each is shown, the
//! launch options, and the actions panels return while drawing, which the app alone applies
//! between frames (it starts the threads and processes, and reads and writes the files).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::core::preset::{AnyPreset, Family, Reports};
use crate::core::protocol::Command;
use crate::core::runview::{RunView, VolumeRef};

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

    /// Whether the tab has something to show for what the app shows: the views of a family's
    /// own reports appear for runs (or, with no run, presets) of families that have them.
    #[must_use]
    pub fn shown(self, caps: Reports) -> bool {
        match self {
            Self::Gaad => caps.gaad_regions,
            Self::Controller => caps.controllers,
            Self::Actions => caps.discrete_actions,
            Self::Volume => caps.volumes,
            _ => true,
        }
    }
}

/// What the run shown reports: its family's reports, and controller decisions of any family
/// (learning-rate control); a log of an unknown family by what it has logged. With no run,
/// what the edited preset's family would report.
#[must_use]
pub fn capabilities(run: Option<&RunView>, preset_family: Family) -> Reports {
    let Some(v) = run else {
        return preset_family.reports();
    };
    let controllers = !v.decisions.is_empty();
    match Family::parse(&v.family) {
        Ok(family) => {
            let r = family.reports();
            Reports {
                controllers: r.controllers || controllers,
                ..r
            }
        }
        Err(_) => Reports {
            gaad_regions: v.reconstructions.iter().any(|r| !r.boxes.is_empty()),
            controllers,
            discrete_actions: false,
            volumes: v.volume.is_some(),
        },
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

/// What a chosen path from a file dialog is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    ImportPreset,
    ExportPreset,
    OpenRun,
    ExportPlotCsv(String),
    ExportPlotPng(String),
    ExportSample,
    GaadImage,
}

/// Where the GAAD inspector's frame comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum FrameSource {
    /// Sprite `index` of the synthetic set, at `size` px.
    Synthetic {
        index: u64,
        size: u32,
    },
    Image(PathBuf),
    /// Frame `index` of a video (decoded with FFmpeg).
    Video {
        path: PathBuf,
        index: usize,
    },
}

/// File extensions opened as videos (an animated GIF too: FFmpeg gives all its frames).
pub const VIDEO_EXTENSIONS: &[&str] = &[
    "mp4", "avi", "mkv", "webm", "mov", "m4v", "ogv", "mpg", "mpeg", "gif",
];

impl FrameSource {
    /// An image file, or a video's first frame, by the file's extension.
    #[must_use]
    pub fn file(path: PathBuf) -> Self {
        let video = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| VIDEO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
        if video {
            Self::Video { path, index: 0 }
        } else {
            Self::Image(path)
        }
    }
}

/// An edit of the run queue, as the Queue tab asks for it (the app adds the edited preset and
/// the SLURM profile the tab names).
#[derive(Debug, Clone, PartialEq)]
pub enum QueueRequest {
    /// Add a job for the edited preset.
    AddPreset,
    /// Add one job per value of a field, on the edited preset.
    AddSweep {
        field: String,
        values: Vec<serde_json::Value>,
    },
    Cancel(u64),
    /// Move a pending job by this many places among the pending ones.
    Move(u64, i64),
    /// Pause (no new job starts) or resume the queue.
    Pause(bool),
    /// Make a branch of a run at a checkpoint (`None`: its latest) with fields changed, and
    /// queue it.
    Branch {
        parent: PathBuf,
        at: Option<u64>,
        set: Vec<(String, serde_json::Value)>,
        name: Option<String>,
        /// Overlay the branch on the dashboard once it is made (A/B).
        overlay: bool,
    },
    /// Promote a trial the sweep's scheduler stopped and queue its resume.
    Promote(PathBuf),
}

/// A rollout the action explorer asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExploreRequest {
    pub window: usize,
    pub action: Vec<u32>,
    pub steps: usize,
    /// One latent channel in grey, or every channel through a fixed projection to RGB.
    pub channel: Option<usize>,
}

/// Something a panel asks for while drawing; the app applies it after the frame, so drawing
/// never starts threads or processes, touches files or blocks.
#[derive(Debug, Clone, PartialEq)]
pub enum UiAction {
    /// Show this tab.
    SetTab(Tab),
    /// Set up a branch of this run at this checkpoint step in the Runs tab.
    BranchAt(PathBuf, u64),
    /// Move the shared step cursor (`None`: follow the latest step).
    SetCursor(Option<u64>),
    /// Start training the edited preset (prepared on a background thread).
    Start,
    /// Send a command to the live run.
    Command(Command),
    /// Open and follow a run folder, and show it.
    OpenRun(PathBuf),
    /// Overlay a run's curves on the dashboard (following it if needed) or stop.
    Overlay(PathBuf, bool),
    /// Overlay a group of runs (the same settings, another seed) as one mean curve with a
    /// min-max band.
    PlotGroup(Vec<PathBuf>),
    /// Compute which settings matter for a metric over these runs (off the UI thread); the
    /// Runs tab shows the answer.
    Importance(crate::gui::panels::runs::ImportanceKey),
    /// Load the library's preset at this index into the editor.
    LoadPreset(usize),
    /// Save the edited preset into the user's folder under the editor's name.
    SavePreset,
    /// Compare the edited preset with the family defaults (`None`) or a library preset.
    CompareWith(Option<usize>),
    /// Undo or redo an edit of the preset.
    Undo,
    Redo,
    /// Save the dashboard layouts (they changed).
    SaveLayout,
    /// Ask the user for a path (a native dialog), seeded with a file name.
    Dialog(Purpose, String),
    /// Open or close the keyboard shortcuts' overlay, or the About window.
    ToggleHelp,
    ToggleAbout,
    /// Read the runs folder again now.
    RefreshRuns,
    /// List a remote's runs over SSH (added to the remotes when new).
    AddRemote {
        destination: String,
        workbench: String,
        runs_dir: String,
    },
    /// Add the remote the Queue tab's SLURM profile logs in to (its `ssh` and `workbench`;
    /// the runs folder its jobs write to, this app's).
    RemoteFromSlurmProfile,
    /// Edit the run queue file.
    Queue(QueueRequest),
    /// Start a queue runner process training this many jobs at a time.
    StartRunner(usize),
    /// Load the action explorer from a run folder's latest checkpoint.
    OpenExplorer(PathBuf),
    /// Roll the loaded explorer out.
    Explore(ExploreRequest),
    /// Read a validation volume's files (the run folder, and the event naming them).
    LoadVolume(PathBuf, Box<VolumeRef>),
    /// Decode an image file, or a video's frame, for the GAAD inspector.
    LoadFrame(FrameSource),
    /// Read an image file (a sample or a reconstruction of a run followed from disk).
    LoadImage(PathBuf),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_of(family: &str) -> RunView {
        let mut v = RunView::default();
        v.family = family.into();
        v
    }

    #[test]
    fn tabs_follow_what_the_run_shown_reports() {
        let caps = |v: &RunView| capabilities(Some(v), Family::ALL[0]);
        for family in Family::ALL {
            let r = caps(&run_of(family.name()));
            assert_eq!(r, family.reports(), "{}", family.name());
            assert_eq!(Tab::Actions.shown(r), r.discrete_actions);
            assert_eq!(Tab::Volume.shown(r), r.volumes);
        }
        // Any family's run that logged a controller decision shows the Controller tab.
        let mut v = run_of(Family::ALL[0].name());
        v.decisions.push(crate::core::runview::ControllerDecision {
            step: 50,
            name: "lr (rewarded by wasserstein)".into(),
            state: vec![1, 1],
            actions: Vec::new(),
            reward: None,
            epsilon: 0.5,
            q_values: Vec::new(),
            explored: Vec::new(),
            applied: Vec::new(),
            updated: None,
            visits: 1,
            table_size: 1,
        });
        assert!(Tab::Controller.shown(caps(&v)));
        // No run: the edited preset's family decides; the other tabs are always shown.
        for family in Family::ALL {
            assert_eq!(capabilities(None, family), family.reports());
        }
        assert!(Tab::ALL
            .iter()
            .filter(|t| !matches!(t, Tab::Gaad | Tab::Controller | Tab::Actions | Tab::Volume))
            .all(|t| t.shown(Reports::NONE)));
    }
}

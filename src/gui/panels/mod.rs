//! The app's panels, one struct each. A panel keeps its own widgets' state, draws from a
//! read-only [`Ctx`] and returns the [`UiAction`]s its widgets asked for; it never starts a
//! thread or a process and never reads or writes a file. The app applies the actions between
//! frames and hands what they bring back (a decoded frame, a read of the queue) to the panel.

pub mod controller;
pub mod dashboard;
pub mod explorer;
pub mod gaad;
pub mod presets;
pub mod queue;
pub mod run_controls;
pub mod runs;
pub mod samples;
pub mod shortcuts;
pub mod volume;

use std::path::Path;

use egui::{RichText, Ui};

use crate::core::preset::Reports;
use crate::core::runtable::RunRow;
use crate::gui::actions::{Tab, UiAction};
use crate::gui::images::Images;
use crate::gui::sources::{shown_runs, Shown, Tracked};

/// What every panel may read of the app while it draws.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// The runs the app follows; `current` is the one shown.
    pub runs: &'a [Tracked],
    pub current: Option<usize>,
    /// The shared step cursor (`None`: the latest step).
    pub cursor: Option<u64>,
    pub tab: Tab,
    /// What the run shown (or the edited preset's family) reports: which tabs are shown.
    pub caps: Reports,
    /// Images decoded from run folders.
    pub images: &'a Images,
    /// The runs folder, as last read, and whether a read is under way.
    pub run_list: &'a [RunRow],
    pub run_list_pending: bool,
    /// Machines whose runs are listed over SSH.
    pub remotes: &'a [crate::gui::sources::RemoteSite],
    pub runs_dir: &'a Path,
    pub user_presets_dir: &'a Path,
    /// The run this app is training, shown or not.
    pub training: Option<&'a str>,
    /// Whether a run is being prepared.
    pub starting: bool,
    /// Whether the run shown takes commands.
    pub live: bool,
    /// Why the edited preset cannot start, if it cannot.
    pub start_blocker: Option<String>,
    /// The edited preset's name.
    pub preset_name: &'a str,
    /// The status bar's message: (is an error, text).
    pub message: Option<&'a (bool, String)>,
}

impl Ctx<'_> {
    /// The run shown.
    #[must_use]
    pub fn current_run(&self) -> Option<&Tracked> {
        self.current.and_then(|i| self.runs.get(i))
    }

    /// The run shown first, then the runs ticked for overlay.
    #[must_use]
    pub fn shown_runs(&self) -> Vec<Shown<'_>> {
        shown_runs(self.runs, self.current)
    }
}

/// What a tab about a run says when there is none.
pub(crate) fn no_run(ui: &mut Ui) -> Vec<UiAction> {
    ui.label(RichText::new("No run: start one or open one from the Runs tab.").weak());
    Vec::new()
}

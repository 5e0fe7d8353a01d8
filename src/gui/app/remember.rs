//! What the app remembers between sessions (eframe's storage), and the app as an eframe app.

use std::path::{Path, PathBuf};

use egui::Ui;

use crate::gui::actions::Tab;
use crate::gui::editor::PresetEditor;
use crate::gui::panels::dashboard::Dashboard;

use super::state::WorkbenchApp;

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
    /// The machines added in the Runs tab (listed again on Refresh).
    pub remotes: Vec<RememberedRemote>,
}

/// A remote as remembered: what was typed to add it.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct RememberedRemote {
    pub destination: String,
    pub workbench: String,
    pub runs_dir: String,
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
            remotes: Vec::new(),
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
            preset: self
                .presets
                .editor
                .source
                .as_ref()
                .map(|p| p.display().to_string()),
            runs_dir: Some(self.opts.runs_dir.display().to_string()),
            smoothing: d.smoothing,
            log_y: d.log_y,
            show_raw: d.show_raw,
            show_markers: d.show_markers,
            columns: d.columns,
            filter: d.filter.clone(),
            remotes: self
                .remotes
                .iter()
                .map(|r| RememberedRemote {
                    destination: r.destination.clone(),
                    workbench: r.workbench(),
                    runs_dir: r.runs_dir(),
                })
                .collect(),
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
                self.jobs.run_list_at = None;
            }
        }
        let d = &mut self.dashboard;
        d.smoothing = state.smoothing.clamp(0.0, 0.99);
        d.log_y = state.log_y;
        d.show_raw = state.show_raw;
        d.show_markers = state.show_markers;
        d.columns = state.columns.clamp(1, 4);
        d.filter = state.filter;
        for r in state
            .remotes
            .into_iter()
            .filter(|r| !r.destination.is_empty())
        {
            if self.remotes.iter().all(|s| s.destination != r.destination) {
                self.remotes.push(crate::gui::sources::RemoteSite {
                    argv: crate::core::remote::ssh_argv(
                        &self.remote_ssh,
                        &r.destination,
                        &r.workbench,
                        &r.runs_dir,
                    ),
                    destination: r.destination,
                    rows: Vec::new(),
                    error: None,
                    listing: false,
                });
            }
        }
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
                Ok(ed) => self.presets.editor = ed,
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

//! The app's look and its places, said once: the colours of states and messages, the
//! categorical palette, and where the app keeps its own files.

use std::path::{Path, PathBuf};

use egui::Color32;

/// Errors, failed runs and jobs, problems in a form.
pub const ERROR: Color32 = Color32::from_rgb(235, 80, 80);
/// Interrupted runs and jobs, warnings that are not failures.
pub const WARNING: Color32 = Color32::from_rgb(230, 180, 80);
/// Paused runs.
pub const PAUSED: Color32 = Color32::from_rgb(230, 200, 90);
/// Running runs and jobs.
pub const RUNNING: Color32 = Color32::from_rgb(110, 210, 120);
/// Bars and accents that carry no state.
pub const ACCENT: Color32 = Color32::from_rgb(90, 160, 230);

/// The app's categorical colours (runs, phases), cycling.
#[must_use]
pub fn palette(i: usize) -> Color32 {
    const C: [Color32; 6] = [
        Color32::from_rgb(90, 170, 255),
        Color32::from_rgb(255, 150, 60),
        Color32::from_rgb(110, 210, 120),
        Color32::from_rgb(230, 100, 200),
        Color32::from_rgb(240, 220, 90),
        Color32::from_rgb(160, 140, 255),
    ];
    C[i % C.len()]
}

/// The app's own log: `$XDG_STATE_HOME/workbench/app.log` (or `~/.local/state/...`).
#[must_use]
pub fn app_log_path() -> PathBuf {
    crate::core::rundir::xdg_dir("XDG_STATE_HOME", ".local/state")
        .unwrap_or_else(|| PathBuf::from("."))
        .join("workbench")
        .join("app.log")
}

/// The user's preset folder: `$XDG_CONFIG_HOME/workbench/presets` (or `~/.config/...`).
#[must_use]
pub fn user_presets_dir() -> PathBuf {
    crate::core::rundir::xdg_dir("XDG_CONFIG_HOME", ".config")
        .unwrap_or_else(|| PathBuf::from("."))
        .join("workbench")
        .join("presets")
}

/// Where the dashboard layouts are remembered: beside the user's preset folder
/// (`~/.config/workbench/dashboard.json`).
#[must_use]
pub fn layout_path(user_presets_dir: &Path) -> PathBuf {
    user_presets_dir
        .parent()
        .unwrap_or(Path::new("."))
        .join("dashboard.json")
}

//! The desktop workbench: eframe + egui + egui_plot + rfd. It talks to training only through
//! the worker handle and its events, or by following a run's `events.log`; it never touches
//! tensors (the action explorer asks an engine object, loaded from a checkpoint on a
//! background thread, for pictures).
//!
//! [`app::WorkbenchApp`] holds the state; `logic()` drains events within a time budget and
//! applies the actions the panels returned; `show()` draws the panels (`panels/`), which ask
//! for changes through [`actions::UiAction`] instead of making them while drawing.

pub mod actions;
pub mod app;
pub mod dashboard;
pub mod dialogs;
pub mod editor;
pub mod explorer;
pub mod gaad;
mod io;
mod panels;
pub mod queue;
pub mod samples;
pub mod sources;
mod tour;
pub mod volume;

use std::path::PathBuf;

pub use actions::{LaunchOptions, Tab, UiAction};
pub use app::WorkbenchApp;

/// Opens the app window and runs until it is closed (or `--quit-after` elapses).
pub fn run(options: LaunchOptions) -> Result<(), eframe::Error> {
    let mut viewport = egui::ViewportBuilder::default()
        .with_title("Generative Workbench")
        .with_app_id("workbench")
        .with_inner_size([1400.0, 900.0])
        .with_min_inner_size([800.0, 500.0]);
    if let Some(icon) = icon() {
        viewport = viewport.with_icon(icon);
    }
    let native = eframe::NativeOptions {
        viewport,
        renderer: eframe::Renderer::Wgpu,
        ..Default::default()
    };
    eframe::run_native(
        "Generative Workbench",
        native,
        Box::new(move |cc| {
            let remember = options.remember;
            let mut app = WorkbenchApp::new(&cc.egui_ctx, options);
            if remember {
                let saved = cc.storage.and_then(|s| s.get_string(app::STATE_KEY));
                app.restore(saved.as_deref());
            }
            Ok(Box::new(app))
        }),
    )
}

/// The window icon, embedded (`assets/icons/workbench-256.png`, rendered from
/// `assets/icon.svg`).
#[must_use]
pub fn icon() -> Option<egui::IconData> {
    let img = image::load_from_memory(include_bytes!("../../assets/icons/workbench-256.png"))
        .ok()?
        .to_rgba8();
    let (width, height) = img.dimensions();
    Some(egui::IconData {
        rgba: img.into_raw(),
        width,
        height,
    })
}

/// The window title: the app, and the run or preset it shows.
#[must_use]
pub fn window_title(subject: Option<&str>) -> String {
    match subject {
        Some(s) if !s.is_empty() => format!("{s} - Generative Workbench"),
        _ => "Generative Workbench".to_string(),
    }
}

/// The app's categorical colours (runs, phases), cycling.
#[must_use]
pub fn palette(i: usize) -> egui::Color32 {
    const C: [egui::Color32; 6] = [
        egui::Color32::from_rgb(90, 170, 255),
        egui::Color32::from_rgb(255, 150, 60),
        egui::Color32::from_rgb(110, 210, 120),
        egui::Color32::from_rgb(230, 100, 200),
        egui::Color32::from_rgb(240, 220, 90),
        egui::Color32::from_rgb(160, 140, 255),
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

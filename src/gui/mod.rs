//! The desktop workbench: eframe + egui + egui_plot + rfd. It talks to training only through
//! the worker handle and its events, or by following a run's `events.log`; it never touches
//! tensors (the action explorer asks an engine object, loaded from a checkpoint on a
//! background thread, for pictures).
//!
//! [`app::WorkbenchApp`] owns the state and every side effect; the panels (`panels/`) draw
//! from a read-only context and ask for changes through [`actions::UiAction`], which the app
//! applies between frames.

pub mod actions;
pub mod app;
pub mod editor;
pub mod images;
pub mod panels;
pub mod sources;
pub mod style;

pub use actions::{LaunchOptions, Tab, UiAction};
pub use app::WorkbenchApp;

/// Opens the app window and runs until it is closed (or `--quit-after` elapses).
pub fn run(options: LaunchOptions) -> Result<(), eframe::Error> {
    let mut viewport = egui::ViewportBuilder::default()
        .with_title("Generative Workbench")
        .with_app_id("workbench")
        .with_inner_size([1280.0, 800.0])
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

//! The scripted screenshot tour's state (`--quit-after` with `--screenshot-dir`) and what a
//! screenshot the integration hands back is for, saved as PNG; the app drives the tour in
//! `screenshots.rs`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::gui::actions::Tab;

/// Scripted screenshots of every tab before quitting.
#[derive(Debug, Default)]
pub(crate) struct ScreenshotTour {
    pub(crate) started: bool,
    pub(crate) queue: Vec<Tab>,
    pub(crate) waiting: Option<Tab>,
    pub(crate) frames_on_tab: u32,
    /// Frames spent waiting for the tab's content (the explorer's first decode).
    pub(crate) frames_waited: u32,
    pub(crate) done: bool,
}
/// A screenshot and what it was asked for.
pub(crate) type Shot = (Arc<egui::ColorImage>, ShotFor);

/// What a screenshot was asked for.
#[derive(Debug, Clone)]
pub(crate) enum ShotFor {
    Tab(Tab),
    Plot(String, PathBuf),
}

/// Writes a screenshot (or the part of it inside `rect`, in points) as PNG.
pub(crate) fn save_png(
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

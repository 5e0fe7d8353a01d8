//! The scripted screenshot tour (`--quit-after` with `--screenshot-dir`) and PNG exports of
//! plots: screenshots the integration hands back, saved as PNG.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::actions::Tab;
use super::app::WorkbenchApp;

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

impl WorkbenchApp {
    pub(crate) fn tour_step(&mut self, ctx: &egui::Context) {
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
                    t.frames_waited = 0;
                }
                None => {
                    t.done = true;
                    return;
                }
            }
        }
        t.frames_on_tab += 1;
        // The Actions tab of a run with code statistics: load its latest checkpoint into the
        // explorer and wait (up to about 20 s) for the first decode before the screenshot.
        let mut wait = false;
        if self.tab == Tab::Actions {
            if let Some(r) = self.current.and_then(|i| self.runs.get(i)) {
                let has_codes = !r.view.codes.is_empty();
                let has_ckpt = r.dir.join("checkpoints/latest").is_file();
                if has_codes && has_ckpt {
                    if t.frames_on_tab == 1 && t.frames_waited == 0 {
                        let dir = r.dir.display().to_string();
                        self.explorer.open(&dir, ctx);
                    }
                    wait = (self.explorer.busy() || self.explorer.shown.is_none())
                        && self.explorer.error.is_none()
                        && t.frames_waited < 1200;
                }
            }
        }
        let t = &mut self.screenshots;
        if wait {
            t.frames_waited += 1;
            t.frames_on_tab = t.frames_on_tab.min(2);
            std::thread::sleep(std::time::Duration::from_millis(15));
        }
        // Let the tab lay out for a few frames, then ask for the screenshot once.
        if t.frames_on_tab == 4 {
            self.request_shot(ctx, ShotFor::Tab(self.tab));
        }
        ctx.request_repaint();
    }

    /// Asks the integration for a screenshot of the next frame; it arrives on `shots`.
    pub(crate) fn request_shot(&self, ctx: &egui::Context, what: ShotFor) {
        let tx = self.shots.0.clone();
        let c = ctx.clone();
        ctx.request_screenshot(move |image| {
            let _ = tx.try_send((image, what));
            c.request_repaint();
        });
    }

    pub(crate) fn screenshot_events(&mut self, ctx: &egui::Context) {
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
}

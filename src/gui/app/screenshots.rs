//! The scripted screenshot tour (`--quit-after` with `--screenshot-dir`): every tab the run
//! shown has something for, screenshotted in turn; and PNG exports of plots.

use crate::gui::actions::Tab;

use super::state::WorkbenchApp;
use super::tour::{save_png, Shot, ShotFor};

impl WorkbenchApp {
    pub(crate) fn tour_step(&mut self, ctx: &egui::Context) {
        // The tabs the run shown has something for.
        let caps = self.caps();
        let t = &mut self.screenshots;
        if !t.started {
            t.queue = Tab::ALL
                .iter()
                .rev()
                .copied()
                .filter(|tab| tab.shown(caps))
                .collect();
            t.started = true;
        }
        if t.waiting.is_none() {
            match t.queue.pop() {
                Some(tab) => {
                    self.tab = tab;
                    // The Runs tab compares the folder's sweep in parallel coordinates.
                    if tab == Tab::Runs {
                        self.runs_table.compare = crate::gui::panels::runs::CompareView::Parallel;
                    }
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
                        let open = self.explorer.open(&dir);
                        self.actions.push(open);
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

//! The whole window: a read-only context for the panels, the bars, the tab shown and the
//! overlays. What the panels return is kept for `logic()` to apply before the next frame.

use egui::Ui;

use crate::gui::actions::{Tab, UiAction};
use crate::gui::panels::{shortcuts, Ctx};

use super::state::WorkbenchApp;

impl WorkbenchApp {
    /// Draws the window.
    pub fn show(&mut self, ui: &mut Ui) {
        let actions = self.show_panels(ui);
        self.actions.extend(actions);
        // What the panels asked for is applied at the next `logic()`: come back at once.
        if !self.actions.is_empty() {
            ui.ctx().request_repaint();
        }
    }

    fn show_panels(&mut self, ui: &mut Ui) -> Vec<UiAction> {
        let egui_ctx = ui.ctx().clone();
        let caps = self.caps();
        let start_blocker = self.presets.editor.start_blocker();
        let about = if self.overlays.show_about {
            self.about_text()
        } else {
            String::new()
        };
        let live = self.live_handle().is_some() || self.followed_running().is_some();
        let training = self.training_run().map(str::to_string);
        let starting = self.is_starting();
        let run_list_pending = self.run_list_pending();
        let preset_name = self.presets.editor.save_as_name.clone();
        let ctx = Ctx {
            runs: &self.runs,
            current: self.current,
            cursor: self.cursor,
            tab: self.tab,
            caps,
            images: &self.images,
            run_list: &self.run_list,
            run_list_pending,
            remotes: &self.remotes,
            runs_dir: &self.opts.runs_dir,
            user_presets_dir: &self.opts.user_presets_dir,
            training: training.as_deref(),
            starting,
            live,
            start_blocker,
            preset_name: &preset_name,
            message: self.message.as_ref(),
        };
        let mut actions: Vec<UiAction> = shortcuts::fired(&egui_ctx)
            .into_iter()
            .filter_map(|s| shortcuts::action(s, &ctx))
            .collect();
        self.overlays.ui(&egui_ctx, &about);
        egui::Panel::top("top-bar").show(ui, |ui| {
            actions.extend(self.controls.top_bar_ui(ui, &ctx));
        });
        egui::Panel::bottom("status-bar").show(ui, |ui| {
            actions.extend(self.controls.status_bar_ui(ui, &ctx));
        });
        egui::CentralPanel::default().show(ui, |ui| {
            actions.extend(match self.tab {
                Tab::Presets => self.presets.ui(ui, &ctx),
                Tab::Phases => self.presets.phases_ui(ui),
                Tab::Dashboard => {
                    let mut a = self.controls.live_ui(ui, &ctx);
                    a.extend(self.dashboard.ui(ui, &ctx));
                    a
                }
                Tab::Samples => self.samples.ui(ui, &ctx),
                Tab::Gaad => self.gaad.ui(ui),
                Tab::Controller => self.controller.ui(ui, &ctx, &mut self.dashboard),
                Tab::Runs => self.runs_table.ui(ui, &ctx),
                Tab::Queue => self.queue.ui(ui, &ctx),
                Tab::Actions => self.explorer.ui(ui, &ctx),
                Tab::Volume => self.volume.ui(ui, &ctx),
            });
        });
        actions
    }
}

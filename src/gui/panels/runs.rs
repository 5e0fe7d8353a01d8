//! The Runs tab: the runs folder, read off the UI thread, with status; open and overlay runs.

use egui::{Color32, RichText, Ui};

use crate::gui::actions::UiAction;
use crate::gui::app::WorkbenchApp;
use std::time::{Duration, Instant};

use crate::core::rundir::list_runs;
use crate::gui::dialogs::Purpose;

impl WorkbenchApp {
    pub(crate) fn runs_tab_ui(&mut self, ui: &mut Ui) {
        self.refresh_run_list(false);
        if self.run_list_pending() {
            ui.ctx().request_repaint_after(Duration::from_millis(50));
        }
        ui.horizontal(|ui| {
            ui.heading("Runs");
            ui.label(RichText::new(self.opts.runs_dir.display().to_string()).weak());
            if ui.button("Refresh").clicked() {
                self.refresh_run_list(true);
            }
            if ui.button("Open run folder...").clicked() {
                self.dialogs.open(Purpose::OpenRun, "");
            }
        });
        ui.label(RichText::new("Open follows a run live, including one being written by `workbench train` in another process. Tick runs to overlay them on the dashboard, aligned by step.").weak());
        let mut open = None;
        egui::Grid::new("run-list")
            .striped(true)
            .num_columns(6)
            .show(ui, |ui| {
                for h in ["", "run", "status", "step", "device", ""] {
                    ui.label(RichText::new(h).strong());
                }
                ui.end_row();
                for s in &self.run_list {
                    let tracked = self.runs.iter().position(|r| r.dir == s.dir);
                    let color = match s.status {
                        crate::core::rundir::RunStatus::Running => Color32::from_rgb(110, 210, 120),
                        crate::core::rundir::RunStatus::Failed => Color32::from_rgb(235, 80, 80),
                        _ => ui.visuals().text_color(),
                    };
                    match tracked {
                        Some(i) => {
                            ui.checkbox(&mut self.runs[i].overlay, "overlay")
                                .on_hover_text("overlay on the dashboard, aligned by step");
                        }
                        None => {
                            ui.label("");
                        }
                    }
                    ui.label(
                        s.dir
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                    )
                    .on_hover_text(if s.message.is_empty() {
                        s.dir.display().to_string()
                    } else {
                        s.message.clone()
                    });
                    ui.colored_label(color, s.status.label());
                    ui.label(s.last_step.to_string());
                    ui.label(&s.device);
                    let label = if tracked == self.current && tracked.is_some() {
                        "shown"
                    } else {
                        "Open"
                    };
                    if ui.button(label).clicked() {
                        open = Some(s.dir.clone());
                    }
                    ui.end_row();
                }
            });
        if let Some(dir) = open {
            self.actions.push(UiAction::OpenRun(dir));
        }
    }

    /// Re-reads the runs folder at most every two seconds.
    pub fn refresh_run_list(&mut self, force: bool) {
        if let Some(rx) = &self.run_list_rx {
            match rx.try_recv() {
                Ok(list) => {
                    self.run_list = list;
                    self.run_list_rx = None;
                }
                Err(crossbeam_channel::TryRecvError::Empty) => return,
                Err(crossbeam_channel::TryRecvError::Disconnected) => self.run_list_rx = None,
            }
        }
        if !force
            && self
                .run_list_at
                .is_some_and(|t| t.elapsed() < Duration::from_secs(2))
        {
            return;
        }
        self.run_list_at = Some(Instant::now());
        // Each run's status comes from reading its whole event log: never on the UI thread.
        let dir = self.opts.runs_dir.clone();
        self.run_list_rx = Some(crate::gui::actions::background(
            "workbench-runs",
            self.waker.clone(),
            move || {
                let mut list = list_runs(&dir).unwrap_or_default();
                list.reverse();
                list
            },
        ));
    }

    /// Whether the runs folder is being read.
    #[must_use]
    pub fn run_list_pending(&self) -> bool {
        self.run_list_rx.is_some()
    }
}

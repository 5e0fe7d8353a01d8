//! The Dashboard and Samples tabs of the primary run (and the runs overlaid on it).

use crate::gui::dashboard::Dashboard;
use crate::gui::sources::shown_runs;
use egui::{RichText, Ui};

use crate::gui::actions::UiAction;
use crate::gui::app::WorkbenchApp;
use crate::gui::dashboard::DashAction;
use crate::gui::dialogs::Purpose;

impl WorkbenchApp {
    pub(crate) fn dashboard_tab_ui(&mut self, ui: &mut Ui) {
        self.dashboard.toolbar_ui(ui);
        if self.live_handle().is_some() && !self.live_values.is_empty() {
            self.live_ui(ui);
        }
        let mut cursor = self.cursor;
        if let Some(r) = self.current_run() {
            let view = &r.view;
            egui::Panel::bottom("events-panel")
                .resizable(true)
                .default_size(150.0)
                .show(ui, |ui| {
                    ui.label(RichText::new(format!("Events ({})", view.markers.len())).strong());
                    Dashboard::events_ui(ui, view, &mut cursor);
                });
        }
        let shown = shown_runs(&self.runs, self.current);
        let filter = self.dashboard.filter.clone();
        let actions = self.dashboard.plots_ui(ui, &shown, &mut cursor, &filter);
        self.cursor = cursor;
        self.dash_actions(actions);
    }

    /// What a plot asked for: an export dialog, or saving the layout.
    pub(crate) fn dash_actions(&mut self, actions: Vec<DashAction>) {
        for a in actions {
            match a {
                DashAction::ExportCsv(n) => self
                    .dialogs
                    .open(Purpose::ExportPlotCsv(n.clone()), &format!("{n}.csv")),
                DashAction::ExportPng(n) => self
                    .dialogs
                    .open(Purpose::ExportPlotPng(n.clone()), &format!("{n}.png")),
                DashAction::LayoutChanged => self.actions.push(UiAction::SaveLayout),
            }
        }
    }

    pub(crate) fn samples_tab_ui(&mut self, ui: &mut Ui) {
        let mut cursor = self.cursor;
        let Some(i) = self.current else {
            ui.label(RichText::new("No run: start one or open one from the Runs tab.").weak());
            return;
        };
        ui.horizontal(|ui| {
            ui.heading("Samples");
            if ui.button("Export PNG...").clicked() {
                self.dialogs.open(Purpose::ExportSample, "samples.png");
            }
        });
        let view = &self.runs[i].view;
        let has_recon = !view.reconstructions.is_empty();
        self.samples.max_height = if has_recon {
            (ui.available_height() * 0.4).max(120.0)
        } else {
            f32::INFINITY
        };
        // Fixed-noise samples carry no regions; reconstructions bring theirs.
        self.samples.ui(ui, view, &mut cursor, &[]);
        if has_recon {
            ui.separator();
            ui.heading("Reconstruction: ground truth | reconstruction | difference");
            self.recon.ui(ui, view, cursor);
        }
        self.cursor = cursor;
    }
}

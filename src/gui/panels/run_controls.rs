//! The top bar (tabs and run controls), the status bar, and the live hyperparameters.

use crate::core::runview::RunState;
use egui::{Color32, RichText, Ui};

use crate::core::protocol::Command;
use crate::gui::actions::{Tab, UiAction};
use crate::gui::app::WorkbenchApp;

impl WorkbenchApp {
    pub(crate) fn top_bar_ui(&mut self, ui: &mut Ui) {
        ui.horizontal_wrapped(|ui| {
            ui.heading("Generative Workbench");
            ui.separator();
            for t in Tab::ALL {
                ui.selectable_value(&mut self.tab, t, t.label());
            }
            ui.separator();
            self.controls_ui(ui);
        });
    }

    /// Start, pause/resume, stop, stop and save, checkpoint now, skip phase.
    pub(crate) fn controls_ui(&mut self, ui: &mut Ui) {
        let live = self.live_handle().is_some();
        let state = self.current_run().map(|r| r.view.state.clone());
        // One run at a time: the one training may not be the one shown.
        let blocker = self
            .training_run()
            .map(|name| format!("`{name}` is training: one run at a time"))
            .or_else(|| self.editor.start_blocker());
        let start = ui
            .add_enabled(blocker.is_none(), egui::Button::new("Start"))
            .on_hover_text(format!(
                "train `{}` on a background worker",
                self.editor.save_as_name
            ))
            .on_disabled_hover_text(blocker.clone().unwrap_or_default());
        if start.clicked() {
            self.actions.push(UiAction::Start);
        }
        let paused = matches!(state, Some(RunState::Paused));
        if ui
            .add_enabled(
                live,
                egui::Button::new(if paused { "Resume" } else { "Pause" }),
            )
            .clicked()
        {
            self.ask(if paused {
                Command::Resume
            } else {
                Command::Pause
            });
        }
        if ui
            .add_enabled(live, egui::Button::new("Stop"))
            .on_hover_text("end the run without a checkpoint")
            .clicked()
        {
            self.ask(Command::Stop);
        }
        if ui
            .add_enabled(live, egui::Button::new("Stop and save"))
            .clicked()
        {
            self.ask(Command::StopAndSave);
        }
        if ui
            .add_enabled(live, egui::Button::new("Checkpoint now"))
            .clicked()
        {
            self.ask(Command::CheckpointNow);
        }
        if ui
            .add_enabled(live, egui::Button::new("Skip phase"))
            .clicked()
        {
            self.ask(Command::SkipPhase);
        }
        if let Some(b) = blocker.filter(|_| !live) {
            ui.colored_label(Color32::from_rgb(235, 80, 80), format!("cannot start: {b}"));
        }
    }

    pub(crate) fn status_bar_ui(&mut self, ui: &mut Ui) {
        ui.horizontal_wrapped(|ui| {
            if ui
                .small_button("?")
                .on_hover_text("keyboard shortcuts (F1)")
                .clicked()
            {
                self.show_help = !self.show_help;
            }
            if ui.small_button("About").clicked() {
                self.show_about = !self.show_about;
            }
            ui.separator();
            if let Some(r) = self.current_run() {
                let v = &r.view;
                let state_color = match &v.state {
                    RunState::Failed(_) => Color32::from_rgb(235, 80, 80),
                    RunState::Paused => Color32::from_rgb(230, 200, 90),
                    RunState::Running => Color32::from_rgb(110, 210, 120),
                    _ => ui.visuals().text_color(),
                };
                ui.colored_label(state_color, v.state.label());
                ui.label(format!(
                    "{} · {}",
                    v.name,
                    if v.device.is_empty() {
                        "device ?"
                    } else {
                        &v.device
                    }
                ));
                match v.total_steps {
                    Some(t) => ui.label(format!("step {} / {t}", v.step)),
                    None => ui.label(format!("step {}", v.step)),
                };
                if let Some((i, name)) = &v.phase {
                    ui.label(format!("phase {i} `{name}`"));
                }
                // The active critic of families that switch: the last switch, else the
                // logged `active_critic` (0 = primary).
                let critic = v.active_critic.clone().or_else(|| {
                    v.series
                        .get("active_critic")
                        .and_then(|s| s.last())
                        .map(|(_, a)| if a < 0.5 { "primary" } else { "alternative" }.to_string())
                });
                if let Some(c) = critic {
                    ui.label(format!("critic: {c}"));
                }
                if !v.state.is_over() {
                    if let Some(rate) = v.steps_per_second() {
                        ui.label(format!("{rate:.2} steps/s"));
                    }
                    if let Some(eta) = v.eta_seconds() {
                        ui.label(format!("ETA {}", crate::core::timefmt::human_duration(eta)));
                    }
                }
                if let Some(c) = self.cursor {
                    ui.label(RichText::new(format!("cursor: step {c}")).weak());
                }
                if let RunState::Failed(m) = &v.state {
                    ui.colored_label(Color32::from_rgb(235, 80, 80), m);
                }
            } else {
                ui.label(RichText::new("no run yet").weak());
            }
            if let Some((is_error, m)) = &self.message {
                ui.separator();
                let c = if *is_error {
                    Color32::from_rgb(235, 80, 80)
                } else {
                    ui.visuals().weak_text_color()
                };
                ui.colored_label(c, m);
            }
        });
    }

    /// Live hyperparameters of the running preset, editable in place.
    pub(crate) fn live_ui(&mut self, ui: &mut Ui) {
        let mut send = Vec::new();
        ui.horizontal_wrapped(|ui| {
            ui.label(RichText::new("Live:").strong());
            for (name, value) in &mut self.live_values {
                let l = ui.label(name.as_str()).id;
                let speed = *value * 0.01 + 1e-9;
                let r = ui
                    .add(
                        egui::DragValue::new(value)
                            .speed(speed)
                            .range(0.0..=f64::MAX),
                    )
                    .labelled_by(l);
                if r.lost_focus() || r.drag_stopped() {
                    send.push((name.clone(), *value));
                }
            }
        });
        for (name, value) in send {
            self.ask(Command::SetHyperparameter { name, value });
        }
    }
}

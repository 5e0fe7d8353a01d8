//! The top bar (the tabs shown and the run controls), the status bar, and the live
//! hyperparameters of the running preset.

use egui::{RichText, Ui};

use crate::core::protocol::Command;
use crate::core::runview::RunState;
use crate::gui::actions::{Tab, UiAction};
use crate::gui::style;

use super::Ctx;

/// The run controls' own state: the live fields being edited.
#[derive(Debug, Default)]
pub struct RunControls {
    /// The shown run's live fields and the values shown (the app fills them from the run).
    pub live_values: Vec<(String, f64)>,
    /// Which run and state of it the values were taken from: (its key, its live fields,
    /// its live edits read).
    pub live_of: Option<(usize, usize, u64)>,
}

impl RunControls {
    /// The tabs (those with something to show, and the one shown) and the run controls.
    pub fn top_bar_ui(&self, ui: &mut Ui, ctx: &Ctx<'_>) -> Vec<UiAction> {
        let mut actions = Vec::new();
        // One row at the default 1280-point width; narrower windows wrap between groups.
        ui.horizontal_wrapped(|ui| {
            ui.label(RichText::new("Generative Workbench").strong().size(16.0));
            ui.separator();
            for t in Tab::ALL {
                if (t.shown(ctx.caps) || t == ctx.tab)
                    && ui.selectable_label(ctx.tab == t, t.label()).clicked()
                {
                    actions.push(UiAction::SetTab(t));
                }
            }
            ui.separator();
            controls_ui(ui, ctx, &mut actions);
        });
        actions
    }

    /// State, run, device, step, phase, critic, rate and ETA of the run shown; the cursor; the
    /// last message.
    pub fn status_bar_ui(&self, ui: &mut Ui, ctx: &Ctx<'_>) -> Vec<UiAction> {
        let mut actions = Vec::new();
        ui.horizontal_wrapped(|ui| {
            if ui
                .small_button("?")
                .on_hover_text("keyboard shortcuts (F1)")
                .clicked()
            {
                actions.push(UiAction::ToggleHelp);
            }
            if ui.small_button("About").clicked() {
                actions.push(UiAction::ToggleAbout);
            }
            ui.separator();
            if let Some(r) = ctx.current_run() {
                run_status_ui(ui, &r.view, ctx.cursor);
            } else {
                ui.label(RichText::new("no run yet").weak());
            }
            if let Some((is_error, m)) = ctx.message {
                ui.separator();
                let c = if *is_error {
                    style::ERROR
                } else {
                    ui.visuals().weak_text_color()
                };
                ui.colored_label(c, m);
            }
        });
        actions
    }

    /// Live hyperparameters of the running preset, editable in place; an edit is sent when
    /// the field loses focus or the drag ends.
    pub fn live_ui(&mut self, ui: &mut Ui, ctx: &Ctx<'_>) -> Vec<UiAction> {
        let mut actions = Vec::new();
        if !ctx.live || self.live_values.is_empty() {
            return actions;
        }
        ui.horizontal_wrapped(|ui| {
            ui.label(RichText::new("Live:").strong());
            for (name, value) in &mut self.live_values {
                let l = ui.label(name.as_str()).id;
                let speed = *value * 0.01 + 1e-9;
                let r = ui
                    .add(
                        egui::DragValue::new(value)
                            .speed(speed)
                            .range(0.0..=f64::MAX)
                            // Four significant digits (`300e-6`, not `0.000300`); typing
                            // takes any number Rust reads, `3e-4` included.
                            .custom_formatter(|v, _| crate::core::numfmt::num(v))
                            .custom_parser(|t| t.trim().parse().ok()),
                    )
                    .labelled_by(l)
                    .on_hover_text(value.to_string());
                if r.lost_focus() || r.drag_stopped() {
                    actions.push(UiAction::Command(Command::SetHyperparameter {
                        name: name.clone(),
                        value: *value,
                    }));
                }
            }
        });
        actions
    }
}

/// Start, pause/resume and stop and save as buttons; the rarer checkpoint now, skip phase and
/// stop without saving in the `Run` menu beside them.
fn controls_ui(ui: &mut Ui, ctx: &Ctx<'_>, actions: &mut Vec<UiAction>) {
    let live = ctx.live;
    // One run at a time: the one training may not be the one shown.
    let blocker = ctx
        .training
        .map(|name| format!("`{name}` is training: one run at a time"))
        .or_else(|| ctx.start_blocker.clone());
    let start = ui
        .add_enabled(
            blocker.is_none() && !ctx.starting,
            egui::Button::new("Start"),
        )
        .on_hover_text(format!(
            "train `{}` on a background worker",
            ctx.preset_name
        ))
        .on_disabled_hover_text(blocker.clone().unwrap_or_default());
    if start.clicked() {
        actions.push(UiAction::Start);
    }
    let paused = ctx
        .current_run()
        .is_some_and(|r| matches!(r.view.state, RunState::Paused));
    let mut command = |ui: &mut Ui, label: &str, hover: &str, c: Command| {
        let b = ui.add_enabled(live, egui::Button::new(label));
        let b = if hover.is_empty() {
            b
        } else {
            b.on_hover_text(hover)
        };
        if b.clicked() {
            actions.push(UiAction::Command(c));
        }
    };
    if paused {
        command(ui, "Resume", "", Command::Resume);
    } else {
        command(ui, "Pause", "", Command::Pause);
    }
    command(
        ui,
        "Stop and save",
        "end the run after writing a checkpoint (Ctrl+Shift+S)",
        Command::StopAndSave,
    );
    ui.add_enabled_ui(live, |ui| {
        ui.menu_button("Run...", |ui| {
            let mut item = |ui: &mut Ui, label: &str, hover: &str, c: Command| {
                if ui.button(label).on_hover_text(hover).clicked() {
                    actions.push(UiAction::Command(c));
                    ui.close();
                }
            };
            item(
                ui,
                "Checkpoint now",
                "write a checkpoint at the next step (Ctrl+K)",
                Command::CheckpointNow,
            );
            item(
                ui,
                "Skip phase",
                "end this phase at the next step and start the next one",
                Command::SkipPhase,
            );
            ui.separator();
            item(
                ui,
                "Stop",
                "end the run without a checkpoint",
                Command::Stop,
            );
        })
        .response
        .on_hover_text("checkpoint now, skip phase, stop without saving")
        .on_disabled_hover_text("no run of this app is training");
    });
    if let Some(b) = blocker.filter(|_| !live) {
        ui.colored_label(style::ERROR, format!("cannot start: {b}"));
    }
}

fn run_status_ui(ui: &mut Ui, v: &crate::core::runview::RunView, cursor: Option<u64>) {
    let state_color = match &v.state {
        RunState::Failed(_) => style::ERROR,
        RunState::Paused => style::PAUSED,
        RunState::Running => style::RUNNING,
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
    // The active critic of families that switch: the last switch, else the logged
    // `active_critic` (0 = primary).
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
    if let Some(c) = cursor {
        ui.label(RichText::new(format!("cursor: step {c}")).weak());
    }
    if let RunState::Failed(m) = &v.state {
        ui.colored_label(style::ERROR, m);
    }
}

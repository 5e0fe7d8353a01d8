//! The Controller tab: one Q-controller's decision at the step cursor above its timeline.

use egui::{RichText, Ui};

use crate::gui::actions::UiAction;
use crate::gui::sources::Shown;

use super::dashboard::Dashboard;
use super::Ctx;

/// The Controller tab's own state: the controller shown.
#[derive(Debug, Default)]
pub struct ControllerPanel {
    /// The controller chosen (the run's first when unset or gone).
    pub selected: Option<String>,
}

impl ControllerPanel {
    /// One Q-controller of the primary run (chosen among all of the run's controllers): the
    /// decision in force at the cursor (state, actions, reward, epsilon, Q-values) above its
    /// timeline (epsilon, reward and the settings it applied), drawn by the dashboard's plots
    /// with the same cursor.
    pub fn ui(&mut self, ui: &mut Ui, ctx: &Ctx<'_>, plots: &mut Dashboard) -> Vec<UiAction> {
        let Some(run) = ctx.current_run() else {
            return super::no_run(ui);
        };
        let view = &run.view;
        if view.decisions.is_empty() {
            ui.label(
                RichText::new(
                    "No controller decisions in this run yet (enable lr_control, or q_control for WuBu-GAAD).",
                )
                .weak(),
            );
            return Vec::new();
        }
        let name = match &self.selected {
            Some(n) if view.controllers.contains(n) => n.clone(),
            _ => view.controllers.first().cloned().unwrap_or_default(),
        };
        if view.controllers.len() > 1 {
            ui.horizontal_wrapped(|ui| {
                ui.label("Controller");
                for c in &view.controllers {
                    if ui.selectable_label(*c == name, c).clicked() {
                        self.selected = Some(c.clone());
                    }
                }
            });
        }
        let at = ctx.cursor.unwrap_or(view.step);
        if let Some(d) = view.decision_at(&name, at) {
            ui.horizontal_wrapped(|ui| {
                ui.heading(format!("Decision at step {}", d.step));
                ui.label(RichText::new(format!("controller: {}", d.name)).weak());
                ui.label(format!("epsilon {:.3}", d.epsilon));
                match d.reward {
                    Some(r) => ui.label(format!("reward {r:+.3}")),
                    None => ui.label("no reward yet"),
                };
                ui.label(format!("state {:?}", d.state));
                if d.table_size > 0 {
                    ui.label(format!(
                        "visited {} time(s); {} state(s) in the table",
                        d.visits, d.table_size
                    ));
                }
                for (field, v) in &d.applied {
                    ui.label(format!("{field} = {}", crate::core::numfmt::num(*v)))
                        .on_hover_text(v.to_string());
                }
            });
            egui::Grid::new("decision")
                .striped(true)
                .num_columns(3)
                .show(ui, |ui| {
                    for (k, (field, scale)) in d.actions.iter().enumerate() {
                        let explored = d.explored.get(k).copied().unwrap_or(false);
                        ui.label(field);
                        ui.label(format!(
                            "x{scale}{}",
                            if explored { " (explored)" } else { "" }
                        ));
                        let q: Vec<String> = d
                            .q_values
                            .get(k)
                            .map(|q| q.iter().map(|v| format!("{v:+.3}")).collect())
                            .unwrap_or_default();
                        ui.label(format!("Q [{}]", q.join(", ")));
                        ui.end_row();
                    }
                });
            match &d.updated {
                Some(u) => {
                    ui.label(format!(
                        "The reward {} updated the row of state {:?}:",
                        d.reward.map_or_else(String::new, |r| format!("{r:+.3}")),
                        u.state
                    ));
                    egui::Grid::new("updated-row")
                        .striped(true)
                        .num_columns(2)
                        .show(ui, |ui| {
                            for (k, (field, _)) in d.actions.iter().enumerate() {
                                ui.label(field);
                                let chosen = u.chosen.get(k).copied();
                                let q: Vec<String> = u
                                    .q_values
                                    .get(k)
                                    .map(|q| {
                                        q.iter()
                                            .enumerate()
                                            .map(|(j, v)| {
                                                if Some(j) == chosen {
                                                    format!("[{v:+.3}]")
                                                } else {
                                                    format!("{v:+.3}")
                                                }
                                            })
                                            .collect()
                                    })
                                    .unwrap_or_default();
                                ui.label(format!("Q {}", q.join(", ")))
                                    .on_hover_text("the bracketed value is the option that decision chose; it is the one the reward moved");
                                ui.end_row();
                            }
                        });
                }
                None => {
                    ui.label(
                        RichText::new("No row was updated at this decision (the first, or one without a reward).")
                            .weak(),
                    );
                }
            }
        }
        ui.separator();
        let shown = [Shown {
            key: run.key,
            view,
            color: run.color,
            before: None,
            band: None,
        }];
        // The learning-rate controller of any family also logs `ctl_*` scale scalars and
        // the rates it steers.
        let filter = if crate::core::control::is_lr_decision_name(&name) {
            format!("ctl_, lr, ctl/{name}/")
        } else {
            format!("ctl/{name}/")
        };
        plots.filtered_ui(ui, ctx, &shown, &filter)
    }
}

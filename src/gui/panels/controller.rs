//! The Controller tab: one Q-controller's decision at the step cursor above its timeline.

use egui::{RichText, Ui};

use crate::gui::app::WorkbenchApp;
use crate::gui::dashboard::Shown;

impl WorkbenchApp {
    /// One Q-controller of the primary run (chosen among all of the run's controllers): the
    /// decision in force at the cursor (state, actions, reward, epsilon, Q-values) above its
    /// timeline (epsilon, reward and the settings it applied), which shares the cursor.
    pub(crate) fn controller_tab_ui(&mut self, ui: &mut Ui) {
        let Some(i) = self.current else {
            ui.label(RichText::new("No run: start one or open one from the Runs tab.").weak());
            return;
        };
        let view = &self.runs[i].view;
        if view.decisions.is_empty() {
            ui.label(
                RichText::new(
                    "No controller decisions in this run (enable lr_control, or q_control for WuBu-GAAD).",
                )
                .weak(),
            );
            return;
        }
        let name = match &self.controller {
            Some(n) if view.controllers.contains(n) => n.clone(),
            _ => view.controllers.first().cloned().unwrap_or_default(),
        };
        if view.controllers.len() > 1 {
            ui.horizontal_wrapped(|ui| {
                ui.label("Controller");
                for c in &view.controllers {
                    if ui.selectable_label(*c == name, c).clicked() {
                        self.controller = Some(c.clone());
                    }
                }
            });
        }
        let at = self.cursor.unwrap_or(view.step);
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
                    ui.label(format!("{field} = {v:.4e}"));
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
            key: self.runs[i].key,
            view,
            color: self.runs[i].color,
        }];
        // The learning-rate controller of any family also logs `ctl_*` scale scalars and
        // the rates it steers.
        let filter = if crate::engine::lr_control::is_decision_name(&name) {
            format!("ctl_, lr, ctl/{name}/")
        } else {
            format!("ctl/{name}/")
        };
        let mut cursor = self.cursor;
        let actions = self.dashboard.plots_ui(ui, &shown, &mut cursor, &filter);
        self.cursor = cursor;
        self.dash_actions(actions);
    }
}

//! The Queue tab: the run queue file (`RUNS_DIR/queue.json`) as a table, and the edits the CLI
//! makes (add the edited preset, add a sweep over picked fields, reorder, cancel, start a
//! runner, follow a run). The file is the queue: the app only views and edits it (each edit
//! under the file's lock, off the UI thread), so closing the app stops nothing, and a runner
//! it starts is its own process. SLURM jobs are followed through `squeue` and `scontrol`.

use std::path::PathBuf;

use egui::{Color32, RichText, Ui};

use crate::core::queue::{JobState, Queue};
use crate::gui::actions::{QueueRequest, UiAction};
use crate::gui::style;

use super::Ctx;

/// The Queue tab's state: the queue as last read, and the forms.
#[derive(Debug, Default)]
pub struct QueuePanel {
    pub queue: Queue,
    /// The last read or edit's error.
    pub error: Option<String>,
    /// What the last edit did.
    pub said: Option<String>,
    /// Whether a runner works the local queue (it holds the runner lock).
    pub runner_active: bool,
    /// The sweep being built: a field's path and its values (comma-separated).
    pub sweep_field: String,
    pub sweep_values: String,
    /// The `workbench` binary a runner runs (default: this program).
    pub runner: Option<PathBuf>,
    /// Jobs a runner trains at once.
    pub jobs: usize,
    /// A SLURM profile file: when set, added runs go to SLURM instead of the local queue.
    pub slurm_profile: String,
}

/// The values of a comma-separated list as JSON values (numbers, booleans, else strings).
#[must_use]
pub fn parse_values(text: &str) -> Vec<serde_json::Value> {
    text.split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| {
            serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.to_string()))
        })
        .collect()
}

fn state_color(ui: &Ui, s: JobState) -> Color32 {
    match s {
        JobState::Running => style::RUNNING,
        JobState::Failed => style::ERROR,
        JobState::Interrupted => style::WARNING,
        _ => ui.visuals().text_color(),
    }
}

impl QueuePanel {
    /// The Queue tab. `can_add`: the edited preset is valid.
    pub fn ui(&mut self, ui: &mut Ui, ctx: &Ctx<'_>) -> Vec<UiAction> {
        let mut actions = Vec::new();
        let mut edit = None;
        let can_add = ctx.start_blocker.is_none();
        ui.horizontal(|ui| {
            ui.heading("Queue");
            ui.label(RichText::new(ctx.runs_dir.join("queue.json").display().to_string()).weak());
        });
        ui.label(RichText::new("The queue is a file: `workbench queue list|add|cancel|move|run` edit the same one, and a runner keeps training after the app closes. SLURM jobs (`queue add --slurm`, `sweep submit --slurm`) are followed through squeue and scontrol.").weak());
        ui.horizontal(|ui| {
            let add = ui.add_enabled(can_add, egui::Button::new("Add the edited preset"));
            if add.clicked() {
                edit = Some(QueueRequest::AddPreset);
            }
            let running = self.runner_active;
            let pending = self
                .queue
                .jobs
                .iter()
                .any(|j| j.state == JobState::Pending && j.slurm.is_none());
            if ui
                .add_enabled(pending && !running, egui::Button::new("Start a runner"))
                .on_hover_text(if running {
                    "a runner already works this queue".to_string()
                } else {
                    "`workbench queue run` in its own process: trains the pending jobs, this many at a time".to_string()
                })
                .clicked()
            {
                actions.push(UiAction::StartRunner(self.jobs.max(1)));
            }
            if self.jobs == 0 {
                self.jobs = 1;
            }
            ui.add(egui::DragValue::new(&mut self.jobs).range(1..=64))
                .on_hover_text("jobs at a time");
            ui.label("at a time");
            let paused = self.queue.paused;
            if ui
                .button(if paused { "Resume the queue" } else { "Pause the queue" })
                .on_hover_text("a paused queue starts no new job; running ones go on")
                .clicked()
            {
                edit = Some(QueueRequest::Pause(!paused));
            }
        });
        ui.horizontal(|ui| {
            ui.label("SLURM profile");
            ui.add(
                egui::TextEdit::singleline(&mut self.slurm_profile)
                    .hint_text("empty: the local queue; a profile file: submit with sbatch")
                    .desired_width(360.0),
            );
        });
        ui.horizontal(|ui| {
            ui.label("Sweep the edited preset over");
            ui.add(
                egui::TextEdit::singleline(&mut self.sweep_field)
                    .hint_text("train.lr_g")
                    .desired_width(160.0),
            );
            ui.label("values");
            ui.add(
                egui::TextEdit::singleline(&mut self.sweep_values)
                    .hint_text("1e-4, 2e-4, 4e-4")
                    .desired_width(200.0),
            );
            let values = parse_values(&self.sweep_values);
            let ok = can_add && !self.sweep_field.trim().is_empty() && !values.is_empty();
            if ui
                .add_enabled(
                    ok,
                    egui::Button::new(format!("Add a sweep of {} runs", values.len())),
                )
                .clicked()
            {
                edit = Some(QueueRequest::AddSweep {
                    field: self.sweep_field.trim().to_string(),
                    values,
                });
            }
        });
        if let Some(e) = &self.error {
            ui.colored_label(style::ERROR, e);
        } else if let Some(s) = &self.said {
            ui.label(RichText::new(s).weak());
        }
        ui.separator();
        let mut open = None;
        egui::ScrollArea::vertical().id_salt("queue-table").show(ui, |ui| {
            egui::Grid::new("queue").striped(true).num_columns(8).show(ui, |ui| {
                for h in ["job", "state", "on", "exit", "arguments", "run", "", "note"] {
                    ui.label(RichText::new(h).strong());
                }
                ui.end_row();
                for j in &self.queue.jobs {
                    ui.label(j.id.to_string());
                    ui.colored_label(state_color(ui, j.state), j.state.name());
                    ui.label(
                        j.slurm
                            .as_ref()
                            .map_or("local".to_string(), |r| format!("slurm {}", r.key())),
                    );
                    ui.label(j.exit_code.map_or(String::new(), |c| c.to_string()));
                    ui.label(j.args.join(" "));
                    ui.label(
                        j.run_dir
                            .as_ref()
                            .and_then(|d| d.file_name())
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                    );
                    ui.horizontal(|ui| {
                        if let Some(d) = &j.run_dir {
                            if ui.button("Follow").clicked() {
                                open = Some(d.clone());
                            }
                        }
                        let local_pending = j.state == JobState::Pending && j.slurm.is_none();
                        if local_pending && ui.small_button("up").clicked() {
                            edit = Some(QueueRequest::Move(j.id, -1));
                        }
                        if local_pending && ui.small_button("down").clicked() {
                            edit = Some(QueueRequest::Move(j.id, 1));
                        }
                        if matches!(j.state, JobState::Pending | JobState::Running)
                            && ui.small_button("Cancel").clicked()
                        {
                            edit = Some(QueueRequest::Cancel(j.id));
                        }
                    });
                    ui.label(RichText::new(j.note.as_deref().unwrap_or_default()).weak());
                    ui.end_row();
                }
            });
            if self.queue.jobs.is_empty() {
                ui.label(RichText::new("No jobs: add the edited preset, a sweep, or use `workbench queue add`.").weak());
            }
        });
        if let Some(e) = edit {
            actions.push(UiAction::Queue(e));
        }
        if let Some(d) = open {
            actions.push(UiAction::OpenRun(d));
        }
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_values_parse_as_numbers_booleans_or_text() {
        let v = parse_values(" 1e-4, 2, true , adam,");
        assert_eq!(
            v,
            vec![
                serde_json::json!(1e-4),
                serde_json::json!(2),
                serde_json::json!(true),
                serde_json::json!("adam")
            ]
        );
    }
}

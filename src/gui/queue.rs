//! The Queue tab: the run queue file (`RUNS_DIR/queue.json`) as a table, and the edits the CLI
//! makes (add the edited preset, add a sweep over picked fields, reorder, cancel, start a
//! runner, follow a run). The file is the queue: the app only views and edits it (each edit
//! under the file's lock, off the UI thread), so closing the app stops nothing, and a runner
//! it starts is its own process. SLURM jobs are followed through `squeue` and `scontrol`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use egui::{Color32, RichText, Ui};

use crate::core::jobs;
use crate::core::preset::AnyPreset;
use crate::core::queue::{self, JobState, Queue};
use crate::gui::actions::{background, UiAction};
use crate::gui::app::WorkbenchApp;

/// A read of the queue (with whether a runner works it), after an edit's report, or why it
/// failed.
type Reply = Result<(Queue, bool, Option<String>), String>;

/// How often the tab asks SLURM about its jobs (each ask is one `squeue` and one `scontrol`
/// per job, over ssh for a remote cluster): cluster admins ask for no more.
const SLURM_POLL: Duration = Duration::from_secs(30);

/// The Queue tab's state.
#[derive(Debug, Default)]
pub struct QueuePanel {
    pub queue: Queue,
    /// The last read or edit's error.
    pub error: Option<String>,
    /// What the last edit did.
    pub said: Option<String>,
    read_at: Option<Instant>,
    /// When SLURM was last asked.
    slurm_at: Option<Instant>,
    /// How often SLURM is asked ([`SLURM_POLL`] unless set).
    pub slurm_every: Option<Duration>,
    pending: Option<Receiver<Reply>>,
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

/// An edit of the queue file.
#[derive(Debug, Clone)]
pub enum QueueEdit {
    /// Add a job for the preset (written under `RUNS_DIR/queued/`); with a SLURM profile and
    /// the `workbench` to run there, submit it.
    AddPreset(Box<AnyPreset>, Option<(PathBuf, PathBuf)>),
    /// Add one job per value of a field, on the preset (one SLURM job array with a profile).
    AddSweep {
        base: Box<AnyPreset>,
        field: String,
        values: Vec<serde_json::Value>,
        slurm: Option<(PathBuf, PathBuf)>,
    },
    Cancel(u64),
    /// Move a pending job by this many places among the pending ones.
    Move(u64, i64),
    /// Pause (no new job starts) or resume the queue.
    Pause(bool),
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

fn now() -> u64 {
    crate::core::timefmt::unix_now().max(0.0) as u64
}

/// Applies an edit to the queue file; returns what it did.
fn apply(path: &Path, runs_dir: &Path, edit: QueueEdit) -> Result<String, String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    match edit {
        QueueEdit::AddPreset(p, slurm) => {
            let file = write_queued(runs_dir, &p)?;
            let args = vec!["--preset".to_string(), file.display().to_string()];
            let added = add(runs_dir, p.name(), vec![args], slurm.as_ref())?;
            let id = added.ids.first().copied().unwrap_or_default();
            Ok(match added.slurm_job {
                Some(job) => format!("submitted SLURM job {job}: {}", file.display()),
                None => format!("queued job {id}: {}", file.display()),
            })
        }
        QueueEdit::AddSweep {
            base,
            field,
            values,
            slurm,
        } => {
            let name = format!(
                "{}-{}",
                base.name(),
                crate::core::timefmt::compact_utc(now())
            );
            let sweep = crate::core::sweep::Sweep {
                name: name.clone(),
                base: String::new(),
                grid: [(field, values)].into_iter().collect(),
                random: None,
            };
            let runs = sweep.plan(&base).map_err(|e| err(&e))?;
            let tasks = crate::core::sweep::write_runs(runs_dir, &name, "the Queue tab", &runs)
                .map_err(|e| err(&e))?;
            let added = add(runs_dir, &name, tasks, slurm.as_ref())?;
            Ok(match added.slurm_job {
                Some(job) => format!(
                    "submitted sweep {name} as SLURM job array {job}: {} runs",
                    added.ids.len()
                ),
                None => format!(
                    "queued sweep {name}: {} runs (jobs {:?})",
                    added.ids.len(),
                    added.ids
                ),
            })
        }
        QueueEdit::Cancel(id) => {
            crate::core::jobs::cancel_job(path, id, now()).map_err(|e| err(&e))?;
            Ok(format!("cancelled job {id}"))
        }
        QueueEdit::Pause(on) => {
            queue::update(path, |q| q.paused = on).map_err(|e| err(&e))?;
            Ok(if on {
                "paused: no new job starts"
            } else {
                "resumed"
            }
            .to_string())
        }
        QueueEdit::Move(id, by) => {
            queue::update(path, |q| {
                let pending: Vec<u64> = q
                    .jobs
                    .iter()
                    .filter(|j| j.state == JobState::Pending && j.slurm.is_none())
                    .map(|j| j.id)
                    .collect();
                let at = pending.iter().position(|&p| p == id).unwrap_or(0) as i64;
                let to = (at + by).clamp(0, pending.len().saturating_sub(1) as i64) as usize;
                q.move_pending(id, to)
            })
            .map_err(|e| err(&e))?
            .map_err(|e| err(&e))?;
            Ok(format!("moved job {id}"))
        }
    }
}

/// Adds tasks to the local queue, or with a SLURM profile and `workbench` submits them.
fn add(
    runs_dir: &Path,
    name: &str,
    tasks: Vec<Vec<String>>,
    slurm: Option<&(PathBuf, PathBuf)>,
) -> Result<jobs::Added, String> {
    let target = match slurm {
        Some((profile, exe)) => jobs::Target::Slurm { profile, exe },
        None => jobs::Target::Local,
    };
    jobs::add_tasks(runs_dir, name, tasks, target, now()).map_err(|e| e.to_string())
}

/// Writes a preset as `RUNS_DIR/queued/<name>.ron` (a fresh name when taken).
fn write_queued(runs_dir: &Path, p: &AnyPreset) -> Result<PathBuf, String> {
    let dir = crate::core::rundir::absolute(&runs_dir.join("queued"));
    let name = p.name();
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let stem = crate::core::rundir::safe_file_name(name);
    let mut file = dir.join(format!("{stem}.ron"));
    let mut n = 1;
    while file.exists() {
        file = dir.join(format!("{stem}-{n}.ron"));
        n += 1;
    }
    crate::core::rundir::atomic_write(&file, p.to_ron().as_bytes()).map_err(|e| e.to_string())?;
    Ok(file)
}

/// Reads the queue, first asking SLURM about its open jobs when `ask_slurm`, and whether a
/// runner works it.
fn read(path: &Path, runs_dir: &Path, ask_slurm: bool) -> Result<(Queue, bool), String> {
    let q = queue::read(path).map_err(|e| e.to_string())?;
    let open_slurm = q
        .jobs
        .iter()
        .any(|j| j.slurm.is_some() && matches!(j.state, JobState::Pending | JobState::Running));
    let q = if open_slurm && ask_slurm {
        crate::core::slurm::refresh(path, runs_dir, now()).map_err(|e| e.to_string())?;
        queue::read(path).map_err(|e| e.to_string())?
    } else {
        q
    };
    Ok((q, jobs::runner_active(path)))
}

fn state_color(ui: &Ui, s: JobState) -> Color32 {
    match s {
        JobState::Running => Color32::from_rgb(110, 210, 120),
        JobState::Failed => Color32::from_rgb(235, 80, 80),
        JobState::Interrupted => Color32::from_rgb(230, 180, 80),
        _ => ui.visuals().text_color(),
    }
}

impl WorkbenchApp {
    fn queue_path(&self) -> PathBuf {
        self.opts.runs_dir.join("queue.json")
    }

    /// Reads the queue file at most every two seconds (asking SLURM at most every
    /// [`SLURM_POLL`]), or applies an edit, off the UI thread.
    pub fn refresh_queue(&mut self, edit: Option<QueueEdit>) {
        if let Some(rx) = &self.queue.pending {
            match rx.try_recv() {
                Ok(Ok((q, runner, said))) => {
                    self.queue.queue = q;
                    self.queue.runner_active = runner;
                    self.queue.error = None;
                    if said.is_some() {
                        self.queue.said = said;
                    }
                    self.queue.pending = None;
                }
                Ok(Err(e)) => {
                    self.queue.error = Some(e);
                    self.queue.pending = None;
                }
                Err(crossbeam_channel::TryRecvError::Empty) => {
                    if edit.is_none() {
                        return;
                    }
                }
                Err(crossbeam_channel::TryRecvError::Disconnected) => self.queue.pending = None,
            }
        }
        if edit.is_none()
            && self
                .queue
                .read_at
                .is_some_and(|t| t.elapsed() < Duration::from_secs(2))
        {
            return;
        }
        self.queue.read_at = Some(Instant::now());
        let (path, runs_dir) = (self.queue_path(), self.opts.runs_dir.clone());
        let every = self.queue.slurm_every.unwrap_or(SLURM_POLL);
        let ask_slurm = edit.is_some() || self.queue.slurm_at.is_none_or(|t| t.elapsed() >= every);
        if ask_slurm {
            self.queue.slurm_at = Some(Instant::now());
        }
        self.queue.pending = Some(background(
            "workbench-queue",
            self.waker.clone(),
            move || {
                let said = match edit {
                    Some(e) => Some(apply(&path, &runs_dir, e)?),
                    None => None,
                };
                let (q, runner) = read(&path, &runs_dir, ask_slurm)?;
                Ok((q, runner, said))
            },
        ));
    }

    /// Whether the queue file is being read or edited.
    #[must_use]
    pub fn queue_pending(&self) -> bool {
        self.queue.pending.is_some()
    }

    /// The SLURM profile and the `workbench` its jobs run, when a profile is set.
    fn slurm_target(&self) -> Option<(PathBuf, PathBuf)> {
        let profile = self.queue.slurm_profile.trim();
        if profile.is_empty() {
            return None;
        }
        let exe = self
            .queue
            .runner
            .clone()
            .or_else(|| std::env::current_exe().ok())?;
        Some((PathBuf::from(profile), exe))
    }

    /// Starts `workbench queue run` as a process of its own (its own process group, output in
    /// `RUNS_DIR/queue/runner.log`): it trains the pending jobs and keeps going after the app
    /// closes, and its jobs after it.
    fn start_runner(&mut self) {
        let exe = match &self.queue.runner {
            Some(p) => Ok(p.clone()),
            None => std::env::current_exe().map_err(|e| e.to_string()),
        };
        let started = exe.and_then(|exe| {
            jobs::start_runner(&exe, &self.opts.runs_dir, self.queue.jobs.max(1))
                .map_err(|e| e.to_string())
        });
        self.queue.said = Some(match started {
            Ok(pid) => {
                self.queue.runner_active = true;
                format!("started a queue runner (process {pid})")
            }
            Err(e) => format!("cannot start a queue runner: {e}"),
        });
    }

    pub(crate) fn queue_tab_ui(&mut self, ui: &mut Ui) {
        self.refresh_queue(None);
        if self.queue_pending() {
            ui.ctx().request_repaint_after(Duration::from_millis(50));
        } else {
            ui.ctx().request_repaint_after(Duration::from_secs(2));
        }
        let mut edit = None;
        ui.horizontal(|ui| {
            ui.heading("Queue");
            ui.label(RichText::new(self.queue_path().display().to_string()).weak());
        });
        ui.label(RichText::new("The queue is a file: `workbench queue list|add|cancel|move|run` edit the same one, and a runner keeps training after the app closes. SLURM jobs (`queue add --slurm`, `sweep submit --slurm`) are followed through squeue and scontrol.").weak());
        let preset = self.editor.preset();
        let slurm = self.slurm_target();
        ui.horizontal(|ui| {
            let add = ui.add_enabled(preset.is_some(), egui::Button::new("Add the edited preset"));
            if add.clicked() {
                if let Some(p) = &preset {
                    edit = Some(QueueEdit::AddPreset(Box::new(p.clone()), slurm.clone()));
                }
            }
            let running = self.queue.runner_active;
            let pending = self
                .queue
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
                self.start_runner();
            }
            if self.queue.jobs == 0 {
                self.queue.jobs = 1;
            }
            ui.add(egui::DragValue::new(&mut self.queue.jobs).range(1..=64))
                .on_hover_text("jobs at a time");
            ui.label("at a time");
            let paused = self.queue.queue.paused;
            if ui
                .button(if paused { "Resume the queue" } else { "Pause the queue" })
                .on_hover_text("a paused queue starts no new job; running ones go on")
                .clicked()
            {
                edit = Some(QueueEdit::Pause(!paused));
            }
        });
        ui.horizontal(|ui| {
            ui.label("SLURM profile");
            ui.add(
                egui::TextEdit::singleline(&mut self.queue.slurm_profile)
                    .hint_text("empty: the local queue; a profile file: submit with sbatch")
                    .desired_width(360.0),
            );
        });
        ui.horizontal(|ui| {
            ui.label("Sweep the edited preset over");
            ui.add(
                egui::TextEdit::singleline(&mut self.queue.sweep_field)
                    .hint_text("train.lr_g")
                    .desired_width(160.0),
            );
            ui.label("values");
            ui.add(
                egui::TextEdit::singleline(&mut self.queue.sweep_values)
                    .hint_text("1e-4, 2e-4, 4e-4")
                    .desired_width(200.0),
            );
            let values = parse_values(&self.queue.sweep_values);
            let ok =
                preset.is_some() && !self.queue.sweep_field.trim().is_empty() && !values.is_empty();
            if ui
                .add_enabled(
                    ok,
                    egui::Button::new(format!("Add a sweep of {} runs", values.len())),
                )
                .clicked()
            {
                if let Some(p) = &preset {
                    edit = Some(QueueEdit::AddSweep {
                        base: Box::new(p.clone()),
                        field: self.queue.sweep_field.trim().to_string(),
                        values,
                        slurm: slurm.clone(),
                    });
                }
            }
        });
        if let Some(e) = &self.queue.error {
            ui.colored_label(Color32::from_rgb(235, 80, 80), e);
        } else if let Some(s) = &self.queue.said {
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
                for j in &self.queue.queue.jobs {
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
                            edit = Some(QueueEdit::Move(j.id, -1));
                        }
                        if local_pending && ui.small_button("down").clicked() {
                            edit = Some(QueueEdit::Move(j.id, 1));
                        }
                        if matches!(j.state, JobState::Pending | JobState::Running)
                            && ui.small_button("Cancel").clicked()
                        {
                            edit = Some(QueueEdit::Cancel(j.id));
                        }
                    });
                    ui.label(RichText::new(j.note.as_deref().unwrap_or_default()).weak());
                    ui.end_row();
                }
            });
            if self.queue.queue.jobs.is_empty() {
                ui.label(RichText::new("No jobs: add the edited preset, a sweep, or use `workbench queue add`.").weak());
            }
        });
        if let Some(e) = edit {
            self.refresh_queue(Some(e));
        }
        if let Some(d) = open {
            self.actions.push(UiAction::OpenRun(d));
        }
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

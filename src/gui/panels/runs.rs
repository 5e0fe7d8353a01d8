//! The Runs tab: a table of the runs folder (status, family, duration, step, the fields that
//! vary between the runs shown and each validation metric's best), sortable and filterable;
//! tick runs to overlay their curves on the dashboard, see the same step's samples side by
//! side, or plot a sweep's fields against a metric in parallel coordinates. The app reads the
//! folder incrementally on a background thread ([`crate::core::runtable::RunIndex`]) and hands
//! the rows over.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use egui::{Color32, RichText, TextureHandle, Ui};
use egui_plot::{Line, Plot, PlotPoints};

use crate::core::rundir::RunStatus;
use crate::core::runtable::{self, Column, RunRow};
use crate::gui::actions::{Purpose, QueueRequest, UiAction};
use crate::gui::images::{sample_pixels, Pixels};
use crate::gui::style;

use super::Ctx;

/// What a cached view depends on: the rows' generation, the filter and the order.
type ViewKey = (u64, String, Column, bool);
/// The shown rows' indices, the varying fields and the metrics (`true`: main).
type View = (Vec<usize>, Vec<String>, Vec<(String, bool)>);

/// A row and its index in the table's rows.
struct Indexed<'a>(usize, &'a RunRow);

impl std::borrow::Borrow<RunRow> for Indexed<'_> {
    fn borrow(&self) -> &RunRow {
        self.1
    }
}

/// What the compare area below the table shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompareView {
    #[default]
    Samples,
    Parallel,
    /// Runs that differ only in one field (the seed), one row per group.
    Groups,
    /// The settings of two ticked runs, side by side.
    Diff,
    /// Which settings matter for a metric (functional ANOVA on a random forest).
    Importance,
}

/// The importance computed last: for which runs (their folders), fields and metric.
pub type ImportanceKey = (Vec<PathBuf>, Vec<String>, String);

/// A branch being set up: the parent, the checkpoint's step (blank: the latest), the fields
/// to change (`field=value`, separated by spaces) and a name (blank: the parent's with -at).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BranchForm {
    pub parent: PathBuf,
    pub at: String,
    pub set: String,
    pub name: String,
    pub error: Option<String>,
}

impl BranchForm {
    /// The queue request the form makes, or what is wrong with it.
    pub fn request(&self) -> Result<QueueRequest, String> {
        let at = match self.at.trim() {
            "" => None,
            t => Some(t.parse::<u64>().map_err(|_| {
                format!("step `{t}`: a whole number, or blank for the latest checkpoint")
            })?),
        };
        let set = self
            .set
            .split_whitespace()
            .map(|item| {
                item.split_once('=')
                    .map(|(k, v)| {
                        (
                            k.to_string(),
                            crate::core::preset::schema::parse_cli_value(v),
                        )
                    })
                    .ok_or_else(|| format!("`{item}`: expected field=value"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let name = Some(self.name.trim().to_string()).filter(|n| !n.is_empty());
        Ok(QueueRequest::Branch {
            parent: self.parent.clone(),
            at,
            set,
            name,
            overlay: false,
        })
    }
}

/// The Runs tab's own state.
pub struct RunsTable {
    pub filter: String,
    pub sort: Column,
    pub descending: bool,
    pub compare: CompareView,
    /// The step whose samples are shown side by side (`None`: the latest).
    pub step: Option<u64>,
    /// The metric of the parallel-coordinates plot.
    pub metric: String,
    /// Bumped whenever a new read of the folder arrives.
    generation: u64,
    cache: Option<(ViewKey, View)>,
    /// The branch being set up ("Branch..." on a row).
    pub branching: Option<BranchForm>,
    /// Groups are runs that differ only in this field.
    pub group_by: String,
    /// The diff of two runs shows only the fields that differ.
    pub diff_only: bool,
    /// The last importance computed, and the one being computed off the UI thread.
    pub importance: Option<(ImportanceKey, Option<crate::core::fanova::Importance>)>,
    /// The importance asked of the app (computed off the UI thread).
    importance_asked: Option<ImportanceKey>,
    textures: HashMap<(PathBuf, u64), Result<TextureHandle, String>>,
    /// The remote being added: SSH destination, the remote's `workbench`, its runs folder.
    pub remote_destination: String,
    pub remote_workbench: String,
    pub remote_runs_dir: String,
}

impl std::fmt::Debug for RunsTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunsTable")
            .field("filter", &self.filter)
            .field("sort", &self.sort)
            .field("descending", &self.descending)
            .field("compare", &self.compare)
            .field("textures", &self.textures.len())
            .finish_non_exhaustive()
    }
}

impl Default for RunsTable {
    fn default() -> Self {
        Self {
            filter: String::new(),
            sort: Column::Name,
            descending: true,
            compare: CompareView::Samples,
            step: None,
            metric: String::new(),
            generation: 0,
            cache: None,
            branching: None,
            group_by: "seed".into(),
            diff_only: true,
            importance: None,
            importance_asked: None,
            textures: HashMap::new(),
            remote_destination: String::new(),
            remote_workbench: "workbench".into(),
            remote_runs_dir: String::new(),
        }
    }
}

impl RunsTable {
    /// Machines reached over SSH: add one (destination, its `workbench`, its runs folder),
    /// then each one's runs with an Open button.
    fn remotes_ui(&mut self, ui: &mut Ui, ctx: &Ctx<'_>, actions: &mut Vec<UiAction>) {
        egui::CollapsingHeader::new(format!("Remote machines ({})", ctx.remotes.len()))
            .id_salt("runs-remotes")
            .default_open(!ctx.remotes.is_empty())
            .show(ui, |ui| {
                ui.horizontal_wrapped(|ui| {
                    let l = ui.label("SSH destination").id;
                    ui.add(
                        egui::TextEdit::singleline(&mut self.remote_destination)
                            .hint_text("user@host or a Host of ~/.ssh/config")
                            .desired_width(220.0),
                    )
                    .labelled_by(l);
                    let l = ui.label("workbench there").id;
                    ui.add(
                        egui::TextEdit::singleline(&mut self.remote_workbench)
                            .desired_width(160.0),
                    )
                    .labelled_by(l);
                    let l = ui.label("runs folder there").id;
                    ui.add(
                        egui::TextEdit::singleline(&mut self.remote_runs_dir)
                            .hint_text("its default")
                            .desired_width(200.0),
                    )
                    .labelled_by(l);
                    if ui
                        .button("Add remote")
                        .on_hover_text("runs `ssh DESTINATION WORKBENCH serve --stdio` with your own SSH setup (keys, agent, ProxyJump): no port, no server")
                        .clicked()
                    {
                        actions.push(UiAction::AddRemote {
                            destination: self.remote_destination.clone(),
                            workbench: self.remote_workbench.clone(),
                            runs_dir: self.remote_runs_dir.clone(),
                        });
                    }
                    if ui
                        .button("From SLURM profile")
                        .on_hover_text("the login node, workbench and runs folder of the Queue tab's SLURM profile (its ssh and workbench fields)")
                        .clicked()
                    {
                        actions.push(UiAction::RemoteFromSlurmProfile);
                    }
                });
                for site in ctx.remotes {
                    ui.horizontal(|ui| {
                        ui.label(RichText::new(&site.destination).strong());
                        if site.listing {
                            ui.spinner();
                        } else if ui.small_button("Refresh").clicked() {
                            actions.push(UiAction::AddRemote {
                                destination: site.destination.clone(),
                                workbench: site.workbench(),
                                runs_dir: site.runs_dir(),
                            });
                        }
                        if let Some(e) = &site.error {
                            ui.colored_label(crate::gui::style::ERROR, e);
                        } else if !site.listing {
                            ui.label(
                                RichText::new(format!(
                                    "{} runs, in the table below (machine {})",
                                    site.rows.len(),
                                    site.destination
                                ))
                                .weak(),
                            );
                        }
                    });
                    // Its runs are rows of the table below; a followed one whose connection
                    // dropped says so here.
                    for t in ctx.runs.iter().filter(|t| {
                        t.dir
                            .to_string_lossy()
                            .starts_with(&format!("{}:", site.destination))
                    }) {
                        if let Some(why) = &t.down {
                            ui.colored_label(
                                crate::gui::style::WARNING,
                                format!(
                                    "{}: connection lost, reconnecting: {why}",
                                    t.dir.display()
                                ),
                            );
                        }
                    }
                }
            });
    }

    /// The app brought a new read of the folder: views are computed again.
    pub fn rows_changed(&mut self) {
        self.generation += 1;
    }

    /// The rows that pass the filter, in the table's order.
    #[must_use]
    pub fn shown(&self, rows: &[RunRow]) -> Vec<RunRow> {
        self.compute(rows)
            .0
            .iter()
            .filter_map(|&i| rows.get(i).cloned())
            .collect()
    }

    /// The rows that pass the filter as indices into `rows`, in the table's order, with the
    /// varying fields and the metrics among them: recomputed only when the rows, the filter
    /// or the order changed (a thousand runs cost nothing per frame).
    pub fn view(&mut self, rows: &[RunRow]) -> View {
        let key = (
            self.generation,
            self.filter.clone(),
            self.sort.clone(),
            self.descending,
        );
        if let Some((k, v)) = &self.cache {
            if *k == key {
                return v.clone();
            }
        }
        let v = self.compute(rows);
        self.cache = Some((key, v.clone()));
        v
    }

    fn compute(&self, rows: &[RunRow]) -> View {
        let mut shown: Vec<Indexed<'_>> = rows
            .iter()
            .enumerate()
            .filter(|(_, r)| r.matches(&self.filter))
            .map(|(i, r)| Indexed(i, r))
            .collect();
        runtable::sort(&mut shown, &self.sort, self.descending);
        // Branches right under their parents, in the sorted order among themselves.
        let order = runtable::branches_under_parents(&shown);
        let shown: Vec<Indexed<'_>> = order
            .into_iter()
            .map(|i| Indexed(shown[i].0, shown[i].1))
            .collect();
        let fields: Vec<String> = runtable::varying_fields(&shown)
            .into_iter()
            .take(MAX_FIELD_COLUMNS)
            .collect();
        let metrics = runtable::metrics(&shown);
        (shown.iter().map(|r| r.0).collect(), fields, metrics)
    }

    /// Sorts by `column`, or reverses the order when it already sorts by it.
    pub fn sort_by(&mut self, column: Column) {
        if self.sort == column {
            self.descending = !self.descending;
        } else {
            self.sort = column;
            self.descending = false;
        }
    }
}

fn status_color(ui: &Ui, s: RunStatus) -> Color32 {
    match s {
        RunStatus::Running => style::RUNNING,
        RunStatus::Failed => style::ERROR,
        RunStatus::Interrupted => style::WARNING,
        _ => ui.visuals().text_color(),
    }
}

/// At most this many varying fields become columns (the rest stay filterable).
const MAX_FIELD_COLUMNS: usize = 8;

impl RunsTable {
    /// The Runs tab.
    pub fn ui(&mut self, ui: &mut Ui, ctx: &Ctx<'_>) -> Vec<UiAction> {
        let mut actions = Vec::new();
        if ctx.run_list_pending {
            ui.ctx().request_repaint_after(Duration::from_millis(50));
        }
        ui.horizontal(|ui| {
            ui.heading("Runs");
            ui.label(RichText::new(ctx.runs_dir.display().to_string()).weak());
            if ui.button("Refresh").clicked() {
                actions.push(UiAction::RefreshRuns);
            }
            if ui.button("Open run folder...").clicked() {
                actions.push(UiAction::Dialog(Purpose::OpenRun, String::new()));
            }
        });
        self.remotes_ui(ui, ctx, &mut actions);
        let rows = ctx.run_list;
        ui.horizontal(|ui| {
            ui.label("Filter");
            ui.add(
                egui::TextEdit::singleline(&mut self.filter)
                    .hint_text("text, field=value, lr_g<1e-3, val_psnr>25")
                    .desired_width(320.0),
            );
            let shown = rows.iter().filter(|r| r.matches(&self.filter)).count();
            ui.label(RichText::new(format!("{shown} of {} runs", rows.len())).weak());
        });
        ui.label(RichText::new("Open follows a run live, also one written by `workbench train` in another process or on another machine (shared storage). Tick runs to overlay their curves on the dashboard, aligned by step, and to compare them below.").weak());
        let (order, fields, metrics) = self.view(rows);
        let shown: Vec<&RunRow> = order.iter().filter_map(|&i| rows.get(i)).collect();
        let mut columns = vec![
            Column::Name,
            Column::Status,
            Column::Family,
            Column::Step,
            Column::Duration,
        ];
        if shown.iter().any(|r| r.machine.is_some()) {
            columns.insert(1, Column::Machine);
        }
        if shown.iter().any(|r| r.lineage.is_some() || r.children > 0) {
            columns.push(Column::Branch);
        }
        // The family's main metrics, the sweep's fields, then the other metrics.
        columns.extend(
            metrics
                .iter()
                .filter(|m| m.1)
                .map(|m| Column::Metric(m.0.clone())),
        );
        columns.extend(fields.iter().cloned().map(Column::Field));
        columns.extend(
            metrics
                .iter()
                .filter(|m| !m.1)
                .map(|m| Column::Metric(m.0.clone())),
        );
        let metrics: Vec<String> = metrics.into_iter().map(|m| m.0).collect();
        let mut open = None;
        let mut promote = None;
        let mut toggled = Vec::new();
        let mut sort_by = None;
        let row_height = ui.spacing().interact_size.y + 4.0;
        let height = (ui.available_height() * 0.55).max(160.0);
        egui::ScrollArea::both()
            .id_salt("runs-table")
            .max_height(height)
            .auto_shrink([false, true])
            .show_rows(ui, row_height, shown.len(), |ui, range| {
                egui::Grid::new("run-table")
                    .striped(true)
                    .num_columns(columns.len() + 2)
                    .show(ui, |ui| {
                        ui.label("");
                        for c in &columns {
                            let arrow = match (&self.sort == c, self.descending) {
                                (true, true) => " v",
                                (true, false) => " ^",
                                _ => "",
                            };
                            if ui
                                .add(
                                    egui::Button::new(
                                        RichText::new(format!("{}{arrow}", c.title())).strong(),
                                    )
                                    .frame(false),
                                )
                                .on_hover_text("sort by this column (again: reverse)")
                                .clicked()
                            {
                                sort_by = Some(c.clone());
                            }
                        }
                        ui.label("");
                        ui.end_row();
                        for r in &shown[range] {
                            let tracked = ctx.runs.iter().position(|t| t.dir == r.dir);
                            let mut on = tracked.is_some_and(|i| ctx.runs[i].overlay);
                            if ui
                                .checkbox(&mut on, "overlay")
                                .on_hover_text("overlay on the dashboard and compare below")
                                .changed()
                            {
                                toggled.push((r.dir.clone(), on));
                            }
                            for c in &columns {
                                let text = r.cell(c);
                                match c {
                                    Column::Status => {
                                        let text = if r.stopped_early.is_some() {
                                            format!("{text} (early)")
                                        } else {
                                            text
                                        };
                                        let why = r.stopped_early.as_ref().unwrap_or(&r.message);
                                        ui.colored_label(status_color(ui, r.status), text)
                                            .on_hover_text(why);
                                    }
                                    Column::Name => {
                                        // A branch is indented under its parent.
                                        let text = match r.depth {
                                            0 => text,
                                            d => format!("{}`- {text}", "   ".repeat(d - 1)),
                                        };
                                        let hover = match &r.lineage {
                                            Some(l) => format!(
                                                "{}\nbranch of {} at step {} ({})",
                                                r.dir.display(),
                                                l.parent.display(),
                                                l.fork_step,
                                                l.describe_changes()
                                            ),
                                            None => r.dir.display().to_string(),
                                        };
                                        ui.label(text).on_hover_text(hover);
                                    }
                                    Column::Field(_) | Column::Metric(_) => {
                                        // A few significant digits; the full value on hover.
                                        let shown = r.display(c);
                                        let l = ui.label(&shown);
                                        if shown != text {
                                            l.on_hover_text(text);
                                        }
                                    }
                                    _ => {
                                        ui.label(text);
                                    }
                                }
                            }
                            let label = if tracked.is_some() && tracked == ctx.current {
                                "shown"
                            } else {
                                "Open"
                            };
                            if ui.button(label).clicked() {
                                open = Some(r.dir.clone());
                            }
                            if r.machine.is_none()
                                && ui
                                .button("Branch...")
                                .on_hover_text("a new run from one of this run's checkpoints, with fields changed or none; it goes to the queue (the run itself goes on)")
                                .clicked()
                            {
                                self.branching = Some(BranchForm {
                                    parent: r.dir.clone(),
                                    ..BranchForm::default()
                                });
                            }
                            // A trial the sweep's scheduler stopped: one click trains it on.
                            if let Some(why) = r.stopped_early.as_ref().filter(|_| r.machine.is_none()) {
                                if ui
                                    .button("Promote")
                                    .on_hover_text(format!("{why}\nqueue its resume to the full budget; the scheduler never stops it again"))
                                    .clicked()
                                {
                                    promote = Some(r.dir.clone());
                                }
                            }
                            ui.end_row();
                        }
                    });
            });
        if let Some(c) = sort_by {
            self.sort_by(c);
        }
        for (dir, on) in toggled {
            actions.push(UiAction::Overlay(dir, on));
        }
        if let Some(dir) = open {
            actions.push(UiAction::OpenRun(dir));
        }
        if let Some(dir) = promote {
            actions.push(UiAction::Queue(QueueRequest::Promote(dir)));
        }
        actions.extend(self.branch_ui(ui));
        ui.separator();
        self.compare_ui(ui, ctx, &shown, &fields, &metrics, &mut actions);
        actions
    }

    fn compare_ui(
        &mut self,
        ui: &mut Ui,
        ctx: &Ctx<'_>,
        shown: &[&RunRow],
        fields: &[String],
        metrics: &[String],
        actions: &mut Vec<UiAction>,
    ) {
        ui.horizontal(|ui| {
            ui.strong("Compare");
            ui.selectable_value(
                &mut self.compare,
                CompareView::Samples,
                "Samples side by side",
            );
            ui.selectable_value(
                &mut self.compare,
                CompareView::Parallel,
                "Parallel coordinates",
            );
            ui.selectable_value(&mut self.compare, CompareView::Groups, "Groups");
            ui.selectable_value(&mut self.compare, CompareView::Diff, "Settings diff");
            ui.selectable_value(&mut self.compare, CompareView::Importance, "Importance");
        });
        match self.compare {
            CompareView::Samples => self.side_by_side_ui(ui, ctx, actions),
            CompareView::Parallel => self.parallel_ui(ui, shown, fields, metrics),
            CompareView::Groups => self.groups_ui(ui, shown, fields, metrics, actions),
            CompareView::Diff => self.diff_ui(ui, ctx),
            CompareView::Importance => self.importance_ui(ui, shown, fields, metrics, actions),
        }
    }

    /// Each varying field's share of a metric's variance over the runs shown, with its
    /// interval and marginal, and the strongest pair; computed on a thread of its own whenever
    /// the runs, fields or metric change.
    fn importance_ui(
        &mut self,
        ui: &mut Ui,
        shown: &[&RunRow],
        fields: &[String],
        metrics: &[String],
        actions: &mut Vec<UiAction>,
    ) {
        if metrics.is_empty() || fields.is_empty() {
            ui.label(RichText::new("Importance needs runs that differ in preset fields and report a validation metric.").weak());
            return;
        }
        self.metric_ui(ui, shown, metrics, "metric ");
        let key: ImportanceKey = (
            shown.iter().map(|r| r.dir.clone()).collect(),
            fields.to_vec(),
            self.metric.clone(),
        );
        let current = self.importance.as_ref().is_some_and(|(k, _)| *k == key);
        if !current && self.importance_asked.as_ref() != Some(&key) {
            self.importance_asked = Some(key.clone());
            actions.push(UiAction::Importance(key.clone()));
        }
        let Some((_, result)) = self.importance.as_ref().filter(|(k, _)| *k == key) else {
            ui.label(RichText::new("computing...").weak());
            return;
        };
        let Some(imp) = result else {
            ui.label(
                RichText::new(format!(
                    "Importance of `{}` needs at least four runs that report it.",
                    self.metric
                ))
                .weak(),
            );
            return;
        };
        ui.horizontal(|ui| {
            ui.label(
                RichText::new(format!(
                    "share of {}'s variance over {} runs, above a null field's (functional ANOVA on {} trees; 10-90 % over the trees)",
                    self.metric,
                    imp.runs,
                    crate::core::fanova::TREES
                ))
                .weak(),
            );
            if ui.button("Copy CSV").on_hover_text("the table as CSV, to the clipboard (also `workbench runs importance --csv FILE`)").clicked() {
                ui.ctx().copy_text(imp.csv());
            }
        });
        if let Some((a, b, s)) = &imp.pair {
            ui.label(format!(
                "strongest interaction: {a} x {b} ({:.1} %)",
                100.0 * s
            ));
        }
        egui::ScrollArea::vertical()
            .id_salt("importance")
            .show(ui, |ui| {
                egui::Grid::new("importance-grid")
                    .striped(true)
                    .show(ui, |ui| {
                        for f in &imp.fields {
                            ui.label(&f.field);
                            let bar = egui::ProgressBar::new(f.share.clamp(0.0, 1.0) as f32)
                                .desired_width(160.0)
                                .text(format!(
                                    "{:.1} % [{:.1}, {:.1}]",
                                    100.0 * f.share,
                                    100.0 * f.low,
                                    100.0 * f.high
                                ));
                            ui.add(bar);
                            let pts: Vec<[f64; 2]> =
                                f.marginal.iter().map(|(x, y)| [*x, *y]).collect();
                            let log_x =
                                f.marginal
                                    .first()
                                    .zip(f.marginal.last())
                                    .is_some_and(|(a, b)| {
                                        crate::core::numfmt::wants_log(a.0, b.0)
                                            || shown
                                                .first()
                                                .is_some_and(|r| r.log_fields.contains(&f.field))
                                    });
                            let pts: Vec<[f64; 2]> = if log_x {
                                pts.into_iter()
                                    .filter(|p| p[0] > 0.0)
                                    .map(|p| [p[0].log10(), p[1]])
                                    .collect()
                            } else {
                                pts
                            };
                            Plot::new(("marginal", &f.field))
                                .width(220.0)
                                .height(60.0)
                                .show_axes([true, false])
                                .allow_drag(false)
                                .allow_zoom(false)
                                .allow_scroll(false)
                                .x_axis_formatter(move |m, _| {
                                    let v = if log_x { 10f64.powf(m.value) } else { m.value };
                                    crate::core::numfmt::num(v)
                                })
                                .show(ui, |pu| {
                                    pu.line(Line::new(
                                        format!("marginal of {}", f.field),
                                        PlotPoints::from(pts),
                                    ));
                                });
                            ui.end_row();
                        }
                    });
            });
    }

    /// Runs that differ only in `group_by` (the seed, by default), one row each group: its
    /// shared settings, how many runs, each metric's mean with its range; Plot overlays the
    /// group as one mean curve with a min-max band.
    fn groups_ui(
        &mut self,
        ui: &mut Ui,
        shown: &[&RunRow],
        fields: &[String],
        metrics: &[String],
        actions: &mut Vec<UiAction>,
    ) {
        ui.horizontal(|ui| {
            ui.label("runs that differ only in");
            egui::ComboBox::from_id_salt("group-by")
                .selected_text(&self.group_by)
                .show_ui(ui, |ui| {
                    for f in std::iter::once(&"seed".to_string()).chain(fields) {
                        ui.selectable_value(&mut self.group_by, f.clone(), f);
                    }
                });
        });
        let groups = runtable::groups(shown, &self.group_by);
        let many = groups.iter().filter(|g| g.len() > 1).count();
        if many == 0 {
            ui.label(
                RichText::new(format!(
                    "No two runs shown differ only in `{}`.",
                    self.group_by
                ))
                .weak(),
            );
            return;
        }
        let shared: Vec<&String> = fields.iter().filter(|f| **f != self.group_by).collect();
        egui::ScrollArea::both()
            .id_salt("groups")
            .max_height(ui.available_height())
            .show(ui, |ui| {
                egui::Grid::new("groups-grid").striped(true).show(ui, |ui| {
                    ui.strong("group");
                    ui.strong("runs");
                    for f in &shared {
                        ui.strong(f.as_str());
                    }
                    for m in metrics {
                        ui.strong(format!("{m} mean [min, max]"));
                    }
                    ui.label("");
                    ui.end_row();
                    for g in groups.iter().filter(|g| g.len() > 1) {
                        let first = shown[g[0]];
                        ui.label(&first.name);
                        ui.label(g.len().to_string());
                        for f in &shared {
                            ui.label(first.display(&Column::Field((*f).clone())));
                        }
                        for m in metrics {
                            match runtable::group_metric(shown, g, m) {
                                Some((mean, lo, hi, n)) => {
                                    ui.label(format!(
                                        "{} [{}, {}]",
                                        crate::core::numfmt::num(mean),
                                        crate::core::numfmt::num(lo),
                                        crate::core::numfmt::num(hi)
                                    ))
                                    .on_hover_text(format!("over {n} of {} runs", g.len()));
                                }
                                None => {
                                    ui.label("");
                                }
                            }
                        }
                        if ui
                            .button("Plot")
                            .on_hover_text("overlay the group on the dashboard: its mean as one curve, with a band from its lowest to its highest")
                            .clicked()
                        {
                            actions.push(UiAction::PlotGroup(
                                g.iter().map(|&i| shown[i].dir.clone()).collect(),
                            ));
                        }
                        ui.end_row();
                    }
                });
            });
    }

    /// The settings of the first two ticked runs, side by side: only the fields where they
    /// differ, or all of them with the differences marked.
    fn diff_ui(&mut self, ui: &mut Ui, ctx: &Ctx<'_>) {
        let ticked: Vec<&RunRow> = ctx
            .runs
            .iter()
            .filter(|t| t.overlay)
            .filter_map(|t| ctx.run_list.iter().find(|r| r.dir == t.dir))
            .take(2)
            .collect();
        let [a, b] = ticked[..] else {
            ui.label(RichText::new("Tick two runs above to compare their settings.").weak());
            return;
        };
        ui.checkbox(&mut self.diff_only, "differences only");
        let rows: Vec<(String, String, String, bool)> = if self.diff_only {
            runtable::config_diff(a, b)
                .into_iter()
                .map(|(k, x, y)| (k, x, y, true))
                .collect()
        } else {
            let keys: std::collections::BTreeSet<&String> =
                a.fields.keys().chain(b.fields.keys()).collect();
            keys.into_iter()
                .map(|k| {
                    let (x, y) = (a.fields.get(k), b.fields.get(k));
                    (
                        k.clone(),
                        x.cloned().unwrap_or_default(),
                        y.cloned().unwrap_or_default(),
                        x != y,
                    )
                })
                .collect()
        };
        if rows.is_empty() {
            ui.label(RichText::new("Their settings are the same.").weak());
            return;
        }
        egui::ScrollArea::vertical().id_salt("diff").show(ui, |ui| {
            egui::Grid::new("diff-grid").striped(true).show(ui, |ui| {
                ui.strong("field");
                ui.strong(&a.name);
                ui.strong(&b.name);
                ui.end_row();
                for (k, x, y, differ) in rows {
                    let text = |t: String| {
                        if differ {
                            RichText::new(t).color(style::ACCENT)
                        } else {
                            RichText::new(t)
                        }
                    };
                    ui.label(k);
                    ui.label(text(x));
                    ui.label(text(y));
                    ui.end_row();
                }
            });
        });
    }

    /// The ticked runs' samples at one step (each run's latest at or before it).
    fn side_by_side_ui(&mut self, ui: &mut Ui, ctx: &Ctx<'_>, actions: &mut Vec<UiAction>) {
        let ticked: Vec<usize> = ctx
            .runs
            .iter()
            .enumerate()
            .filter(|(_, t)| t.overlay)
            .map(|(i, _)| i)
            .collect();
        if ticked.is_empty() {
            ui.label(
                RichText::new("Tick runs above to see their samples at the same step.").weak(),
            );
            return;
        }
        let last = ticked
            .iter()
            .filter_map(|&i| ctx.runs[i].view.samples.last().map(|s| s.step))
            .max()
            .unwrap_or(0);
        let mut step = self.step.unwrap_or(last).min(last);
        ui.horizontal(|ui| {
            ui.label("step");
            if ui
                .add(egui::Slider::new(&mut step, 0..=last.max(1)))
                .changed()
            {
                self.step = Some(step);
            }
            if ui.button("latest").clicked() {
                self.step = None;
                step = last;
            }
        });
        let mut drawn = Vec::new();
        egui::ScrollArea::horizontal()
            .id_salt("side-by-side")
            .show(ui, |ui| {
                ui.horizontal_top(|ui| {
                    for i in ticked {
                        let t = &ctx.runs[i];
                        let sample = t.view.samples.iter().rev().find(|s| s.step <= step);
                        ui.vertical(|ui| {
                            ui.label(RichText::new(&t.view.name).color(t.color));
                            let Some(s) = sample else {
                                ui.label(RichText::new("no sample yet").weak());
                                return;
                            };
                            ui.label(RichText::new(format!("step {}", s.step)).weak());
                            let key = (t.dir.clone(), s.step);
                            drawn.push(key.clone());
                            // Decoded once (live pixels, else its PNG read by the app), kept
                            // while shown.
                            if !self.textures.contains_key(&key) {
                                let made =
                                    match sample_pixels(ctx.images, &t.view.run_dir, s, actions) {
                                        Pixels::Ready(img) => Some(Ok(ui.ctx().load_texture(
                                            format!("side-{}-{}", t.dir.display(), s.step),
                                            img,
                                            egui::TextureOptions::NEAREST,
                                        ))),
                                        Pixels::Failed(e) => Some(Err(e)),
                                        Pixels::Waiting => None,
                                    };
                                if let Some(made) = made {
                                    self.textures.insert(key.clone(), made);
                                }
                            }
                            match self.textures.get(&key) {
                                Some(Ok(tex)) => {
                                    let [w, h] = tex.size();
                                    let width = 220.0_f32;
                                    let height = width * h as f32 / w.max(1) as f32;
                                    ui.image((tex.id(), egui::vec2(width, height)));
                                }
                                Some(Err(e)) => {
                                    ui.colored_label(style::ERROR, e.as_str());
                                }
                                None => {
                                    ui.label(RichText::new("reading...").weak());
                                }
                            }
                        });
                    }
                });
            });
        self.textures.retain(|k, _| drawn.contains(k));
    }

    /// The branch form under the table, while one is set up.
    fn branch_ui(&mut self, ui: &mut Ui) -> Option<UiAction> {
        let form = self.branching.as_mut()?;
        let mut action = None;
        let mut close = false;
        ui.separator();
        ui.label(format!("Branch of {}", form.parent.display()));
        egui::Grid::new("branch-form")
            .num_columns(2)
            .show(ui, |ui| {
                ui.label("at step");
                ui.add(egui::TextEdit::singleline(&mut form.at).hint_text("latest checkpoint"));
                ui.end_row();
                ui.label("change");
                ui.add(
                    egui::TextEdit::singleline(&mut form.set)
                        .hint_text("train.lr_g=1e-4 seed=2 (nothing: the same run on)")
                        .desired_width(360.0),
                );
                ui.end_row();
                ui.label("name");
                ui.add(
                    egui::TextEdit::singleline(&mut form.name)
                        .hint_text("the parent's, with -at<step>"),
                );
                ui.end_row();
            });
        ui.horizontal(|ui| {
            if ui
                .button("Branch and queue")
                .on_hover_text("make the branch folder and add it to the queue (SLURM with a profile set in the Queue tab)")
                .clicked()
            {
                match form.request() {
                    Ok(r) => {
                        action = Some(UiAction::Queue(r));
                        close = true;
                    }
                    Err(e) => form.error = Some(e),
                }
            }
            if ui.button("Cancel").clicked() {
                close = true;
            }
        });
        if let Some(e) = &form.error {
            ui.colored_label(ui.visuals().error_fg_color, e);
        }
        if close {
            self.branching = None;
        }
        action
    }

    /// The shown runs' varying fields and a metric, each an axis scaled to its range.
    fn parallel_ui(
        &mut self,
        ui: &mut Ui,
        shown: &[&RunRow],
        fields: &[String],
        metrics: &[String],
    ) {
        if metrics.is_empty() || fields.is_empty() {
            ui.label(RichText::new("Parallel coordinates need runs that differ in preset fields (a sweep) and report a validation metric.").weak());
            return;
        }
        self.metric_ui(ui, shown, metrics, "metric");
        let declared = shown.first().map(|r| r.log_fields.as_ref());
        let none = std::collections::BTreeSet::new();
        let pc =
            runtable::parallel_coordinates(shown, fields, &self.metric, declared.unwrap_or(&none));
        let higher = shown
            .iter()
            .find_map(|r| r.higher_is_better.get(&self.metric).copied())
            .unwrap_or(false);
        let names: Vec<String> = pc
            .axes
            .iter()
            .map(|(n, lo, hi)| format!("{n}\n{lo} .. {hi}"))
            .collect();
        let axes = names.len();
        Plot::new("parallel-coordinates")
            .height(220.0)
            .allow_scroll(false)
            .include_y(-0.05)
            .include_y(1.05)
            .show_axes([true, false])
            .x_axis_formatter(move |m, _| {
                let i = m.value.round();
                if (m.value - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < axes {
                    names[i as usize].clone()
                } else {
                    String::new()
                }
            })
            .show(ui, |pu| {
                let last = pc.axes.len().saturating_sub(1);
                for line in &pc.lines {
                    let (dir, ys) = (&line.dir, &line.ys);
                    // The metric's own axis colours the line: green the best end, red the worst.
                    let q = ys.get(last).copied().unwrap_or(0.5);
                    let good = if higher { q } else { 1.0 - q };
                    let color = Color32::from_rgb(
                        (235.0 * (1.0 - good)) as u8 + 20,
                        (200.0 * good) as u8 + 40,
                        90,
                    );
                    let pts: Vec<[f64; 2]> =
                        ys.iter().enumerate().map(|(i, y)| [i as f64, *y]).collect();
                    let name = dir
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    pu.line(Line::new(name, PlotPoints::from(pts)).color(color));
                }
            });
    }
}

impl RunsTable {
    /// The metric compared (parallel coordinates, importance): the one picked, else the one
    /// most of the shown runs report. `salt` keeps the two views' pickers apart.
    fn metric_ui(&mut self, ui: &mut Ui, shown: &[&RunRow], metrics: &[String], salt: &str) {
        if !metrics.contains(&self.metric) {
            self.metric = most_reported(shown, metrics);
        }
        egui::ComboBox::new(("metric", salt), "metric")
            .selected_text(&self.metric)
            .show_ui(ui, |ui| {
                for m in metrics {
                    ui.selectable_value(&mut self.metric, m.clone(), m);
                }
            });
    }
}

/// The metric most of `rows` report (the first of `metrics` on a tie): what a sweep's runs
/// have in common, not whichever run happens to sort first.
fn most_reported(rows: &[&RunRow], metrics: &[String]) -> String {
    metrics
        .iter()
        .rev()
        .max_by_key(|m| rows.iter().filter(|r| r.best.contains_key(*m)).count())
        .cloned()
        .unwrap_or_default()
}

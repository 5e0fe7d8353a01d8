//! The preset editor: a form for every field, generated from the family's field specs, with
//! validation as you type (the same `validate()` as the CLI), a diff, and the phase timeline
//! with per-phase overrides and a preview of everything scheduled.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use egui::{Color32, RichText, Ui};
use serde_json::Value;

use crate::core::preset::schedule::{schedule, Schedule};
use crate::core::preset::schema::{get_path, set_path, show_value, FieldKind, FieldSpec};
use crate::core::preset::{
    self, AnyPreset, Family, OverrideValue, Phase, PhaseLength, Problem, ValidatedPreset,
};

/// Where a library preset comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LibrarySource {
    /// Shipped with the workbench, embedded in the binary.
    Shipped(&'static str),
    /// A file in the user's preset folder.
    File(PathBuf),
}

/// A preset of the library list.
#[derive(Debug, Clone)]
pub struct LibraryEntry {
    pub name: String,
    pub source: LibrarySource,
    /// Why it does not load, if it does not.
    pub error: Option<String>,
}

impl LibraryEntry {
    /// From the user folder (writable) rather than shipped.
    #[must_use]
    pub fn user(&self) -> bool {
        matches!(self.source, LibrarySource::File(_))
    }

    /// Where it comes from, as shown and as the editor's source.
    #[must_use]
    pub fn origin(&self) -> PathBuf {
        match &self.source {
            LibrarySource::Shipped(_) => PathBuf::from(format!("built in: {}.ron", self.name)),
            LibrarySource::File(p) => p.clone(),
        }
    }

    /// Its text.
    pub fn text(&self) -> Result<String, String> {
        match &self.source {
            LibrarySource::Shipped(t) => Ok((*t).to_string()),
            LibrarySource::File(p) => {
                std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))
            }
        }
    }

    /// The preset, parsed and migrated.
    pub fn load(&self) -> Result<AnyPreset, String> {
        let text = self.text()?;
        preset::parse_str(&text, &self.origin().display().to_string())
            .map(|(p, _)| p)
            .map_err(|e| e.to_string())
    }
}

/// The shipped presets (embedded, so listed wherever the app starts), then the user's folder.
#[must_use]
pub fn scan_library(user: &Path) -> Vec<LibraryEntry> {
    let mut out: Vec<LibraryEntry> = preset::shipped::SHIPPED
        .iter()
        .map(|(name, text)| LibraryEntry {
            name: (*name).to_string(),
            source: LibrarySource::Shipped(text),
            error: None,
        })
        .collect();
    for path in preset::preset_files(user).unwrap_or_default() {
        out.push(LibraryEntry {
            name: path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            source: LibrarySource::File(path),
            error: None,
        });
    }
    for e in &mut out {
        e.error = e.load().err();
    }
    out
}

/// Edits the preset editor remembers for undo.
pub const UNDO_DEPTH: usize = 200;

/// The preset being edited, as a JSON tree the form writes into, and its validation.
#[derive(Debug)]
pub struct PresetEditor {
    pub family: Family,
    pub tree: Value,
    /// Where it was loaded from, if anywhere.
    pub source: Option<PathBuf>,
    /// Problems by field path (`phases[1].overrides.train.lr_g` for overrides).
    pub problems: Vec<Problem>,
    pub validated: Option<ValidatedPreset>,
    /// Text of number fields being typed (so `1e-` can be on its way to `1e-4`).
    drafts: BTreeMap<String, String>,
    pub selected_phase: usize,
    pub compare_with: Option<(String, Value)>,
    pub save_as_name: String,
    schedule: Schedule,
    pub notes: Vec<String>,
    /// Earlier trees, for undo (at most [`UNDO_DEPTH`]), and undone ones, for redo.
    undo: Vec<Value>,
    redo: Vec<Value>,
    /// The tree as last validated: a change against it is one undo step.
    committed: Value,
}

impl PresetEditor {
    #[must_use]
    pub fn new(preset: &AnyPreset, source: Option<PathBuf>) -> Self {
        let mut e = Self {
            family: preset.family(),
            tree: preset.to_tree(),
            source,
            problems: Vec::new(),
            validated: None,
            drafts: BTreeMap::new(),
            selected_phase: 0,
            compare_with: None,
            save_as_name: preset.name().to_string(),
            schedule: Schedule::default(),
            notes: Vec::new(),
            undo: Vec::new(),
            redo: Vec::new(),
            committed: Value::Null,
        };
        e.revalidate();
        e
    }

    /// Loads RON text (any schema version; migrations are listed in `notes`).
    pub fn load_text(text: &str, origin: &Path) -> Result<Self, String> {
        let (p, notes) =
            preset::parse_str(text, &origin.display().to_string()).map_err(|e| e.to_string())?;
        let mut e = Self::new(&p, Some(origin.to_path_buf()));
        e.notes = notes;
        Ok(e)
    }

    /// Undoes the last edit; false when there is nothing to undo.
    pub fn undo(&mut self) -> bool {
        let Some(tree) = self.undo.pop() else {
            return false;
        };
        self.redo.push(std::mem::replace(&mut self.tree, tree));
        self.after_history_move();
        true
    }

    /// Redoes the last undone edit; false when there is nothing to redo.
    pub fn redo(&mut self) -> bool {
        let Some(tree) = self.redo.pop() else {
            return false;
        };
        self.undo.push(std::mem::replace(&mut self.tree, tree));
        self.after_history_move();
        true
    }

    fn after_history_move(&mut self) {
        self.drafts.clear();
        self.committed = self.tree.clone();
        self.revalidate();
    }

    /// Re-reads the tree into a preset and validates it; a changed tree is one undo step.
    pub fn revalidate(&mut self) {
        if self.tree != self.committed {
            if !self.committed.is_null() {
                self.undo
                    .push(std::mem::replace(&mut self.committed, self.tree.clone()));
                if self.undo.len() > UNDO_DEPTH {
                    self.undo.remove(0);
                }
                self.redo.clear();
            } else {
                self.committed = self.tree.clone();
            }
        }
        match AnyPreset::from_tree(self.family, self.tree.clone()) {
            Ok(p) => {
                self.schedule = schedule(&p);
                match preset::validate(p) {
                    Ok(v) => {
                        self.problems.clear();
                        self.validated = Some(v);
                    }
                    Err(problems) => {
                        self.problems = problems;
                        self.validated = None;
                    }
                }
            }
            Err(problem) => {
                self.problems = vec![problem];
                self.validated = None;
            }
        }
    }

    /// Why the preset cannot start, or `None` when it can.
    #[must_use]
    pub fn start_blocker(&self) -> Option<String> {
        match self.problems.len() {
            0 if self.validated.is_some() => None,
            0 => Some("the preset does not validate".into()),
            1 => Some(format!("fix {}", self.problems[0])),
            n => Some(format!("fix {n} problems, first: {}", self.problems[0])),
        }
    }

    /// The preset as it stands, when it parses (valid or not).
    #[must_use]
    pub fn preset(&self) -> Option<AnyPreset> {
        AnyPreset::from_tree(self.family, self.tree.clone()).ok()
    }

    #[must_use]
    pub fn to_ron(&self) -> Option<String> {
        self.preset().map(|p| p.to_ron())
    }

    fn problems_at(&self, path: &str) -> Vec<&Problem> {
        self.problems.iter().filter(|p| p.path == path).collect()
    }

    /// Sets one field from outside the form (tests, scripted runs); revalidates.
    pub fn set_field(&mut self, path: &str, value: Value) -> Result<(), String> {
        set_path(&mut self.tree, path, value)?;
        self.drafts.remove(path);
        self.revalidate();
        Ok(())
    }

    fn phases(&self) -> Vec<Phase> {
        self.tree
            .get("phases")
            .cloned()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default()
    }

    fn set_phases(&mut self, phases: &[Phase]) {
        if let Ok(v) = serde_json::to_value(phases) {
            let _ = set_path(&mut self.tree, "phases", v);
        }
        self.selected_phase = self.selected_phase.min(phases.len().saturating_sub(1));
        self.revalidate();
    }

    /// Fields whose value differs from `other`, as (path, theirs, ours).
    #[must_use]
    pub fn diff(&self, other: &Value) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for spec in self.family.specs() {
            let ours = get_path(&self.tree, spec.path);
            let theirs = get_path(other, spec.path);
            if ours != theirs {
                out.push((
                    spec.path.to_string(),
                    theirs.map_or("-".into(), show_value),
                    ours.map_or("-".into(), show_value),
                ));
            }
        }
        if self.tree.get("phases") != other.get("phases") {
            out.push((
                "phases".into(),
                "(differ)".into(),
                format!("{} phases", self.phases().len()),
            ));
        }
        out
    }

    /// The field form, grouped by section. While a run (`training`, its name) trains, the
    /// fields it can only take at a restart are greyed, with the reason: the form edits the
    /// next run's preset, and the Live row edits the running one.
    pub fn form_ui(&mut self, ui: &mut Ui, training: Option<&str>) {
        if let Some(run) = training {
            ui.label(
                RichText::new(format!(
                    "`{run}` is training: this form edits the next run. Fields in grey change only at a restart; live fields change the running run from the Live row above the plots."
                ))
                .weak(),
            );
        }
        let specs = self.family.specs();
        let mut changed = false;
        // One section per first path segment, in order of first appearance.
        let mut groups: Vec<(&str, Vec<&FieldSpec>)> = Vec::new();
        for s in specs {
            let sec = s.path.split_once('.').map_or("run", |(a, _)| a);
            match groups.iter_mut().find(|(name, _)| *name == sec) {
                Some((_, fields)) => fields.push(s),
                None => groups.push((sec, vec![s])),
            }
        }
        for (sec, fields) in groups {
            egui::CollapsingHeader::new(RichText::new(sec).strong())
                .id_salt(("form", sec))
                .default_open(true)
                .show(ui, |ui| {
                    egui::Grid::new(("grid", sec))
                        .num_columns(3)
                        .striped(true)
                        .spacing([12.0, 4.0])
                        .show(ui, |ui| {
                            for spec in fields {
                                changed |= self.field_row_ui(ui, spec, training);
                            }
                        });
                });
        }
        if changed {
            self.revalidate();
        }
    }

    fn field_row_ui(&mut self, ui: &mut Ui, spec: &FieldSpec, training: Option<&str>) -> bool {
        let label = spec.path.split_once('.').map_or(spec.path, |(_, l)| l);
        let mut tip = format!("{}\n{}: {}", spec.doc, spec.path, spec.kind.allowed());
        if !spec.unit.is_empty() {
            tip.push_str(&format!(" ({})", spec.unit));
        }
        tip.push_str(match spec.takes_effect() {
            crate::core::preset::schema::TakesEffect::NextStep => {
                "\nchanges at: the next step (live: the Live row changes it while training; the edit writes a checkpoint first)"
            }
            crate::core::preset::schema::TakesEffect::NextPhase => {
                "\nchanges at: the next phase (a phase may override it; not while a phase runs)"
            }
            crate::core::preset::schema::TakesEffect::Restart => {
                "\nchanges at: a restart only (a new run, or a branch that keeps the model's shape)"
            }
        });
        let restart_only = matches!(
            spec.takes_effect(),
            crate::core::preset::schema::TakesEffect::Restart
        );
        let name = match training.filter(|_| restart_only) {
            Some(run) => ui
                .label(RichText::new(label).weak())
                .on_hover_text(format!(
                    "`{run}` keeps its value until a restart: an edit here is for the next run\n{tip}"
                ))
                .id,
            None => ui.label(label).on_hover_text(&tip).id,
        };
        let current = get_path(&self.tree, spec.path)
            .cloned()
            .unwrap_or(Value::Null);
        let draft = self.drafts.get(spec.path).cloned();
        let edit = value_widget(ui, spec, &current, draft, ("form", spec.path), name);
        let mut changed = false;
        match edit {
            Edit::None => {}
            Edit::Draft(text) => {
                self.drafts.insert(spec.path.to_string(), text);
            }
            Edit::Value(v) => {
                self.drafts.remove(spec.path);
                changed = set_path(&mut self.tree, spec.path, v).is_ok();
            }
        }
        let problems: Vec<String> = self
            .problems_at(spec.path)
            .iter()
            .map(|p| p.allowed.clone())
            .collect();
        if let Some(text) = self.drafts.get(spec.path) {
            ui.colored_label(
                Color32::from_rgb(230, 140, 40),
                format!("`{text}` is not a number"),
            );
        } else if problems.is_empty() {
            ui.label(RichText::new(spec.unit).weak());
        } else {
            ui.colored_label(crate::gui::style::ERROR, problems.join("; "));
        }
        ui.end_row();
        changed
    }

    /// The phase timeline, the selected phase's settings and overrides, and the preview.
    pub fn phases_ui(&mut self, ui: &mut Ui) {
        let mut phases = self.phases();
        let mut changed = false;
        ui.horizontal(|ui| {
            ui.heading("Phases");
            if ui.button("Add phase").clicked() {
                let n = phases.len();
                phases.push(Phase {
                    name: format!("phase{n}"),
                    length: PhaseLength::Steps(1000),
                    overrides: BTreeMap::new(),
                    start_from_best: false,
                });
                self.selected_phase = n;
                changed = true;
            }
        });
        changed |= self.timeline_ui(ui, &mut phases);
        ui.separator();
        if let Some(i) = (self.selected_phase < phases.len()).then_some(self.selected_phase) {
            changed |= self.phase_detail_ui(ui, &mut phases, i);
        }
        if changed {
            self.set_phases(&phases);
        }
        ui.separator();
        ui.label(RichText::new("Schedule preview").strong());
        schedule_plot_ui(ui, &self.schedule);
    }

    fn timeline_ui(&mut self, ui: &mut Ui, phases: &mut Vec<Phase>) -> bool {
        let total = self.schedule.total_steps().max(1) as f32;
        let width = ui.available_width();
        let (rect, _) = ui.allocate_exact_size(egui::vec2(width, 36.0), egui::Sense::hover());
        let painter = ui.painter_at(rect);
        let mut clicked = None;
        for (i, span) in self.schedule.phases.iter().enumerate() {
            let x0 = rect.left() + width * span.start as f32 / total;
            let x1 = rect.left() + width * span.end as f32 / total;
            let r = egui::Rect::from_min_max(
                egui::pos2(x0, rect.top()),
                egui::pos2(x1 - 2.0, rect.bottom()),
            );
            let color = phase_color(i);
            let fill = if i == self.selected_phase {
                color
            } else {
                color.gamma_multiply(0.55)
            };
            painter.rect_filled(r, 4.0, fill);
            if !span.exact {
                painter.rect_stroke(
                    r,
                    4.0,
                    egui::Stroke::new(1.5, Color32::WHITE),
                    egui::StrokeKind::Inside,
                );
            }
            painter.text(
                r.left_center() + egui::vec2(6.0, 0.0),
                egui::Align2::LEFT_CENTER,
                &span.name,
                egui::FontId::proportional(13.0),
                Color32::BLACK,
            );
            let resp = ui.interact(
                r,
                egui::Id::unique(("phase-block", i)),
                egui::Sense::click(),
            );
            if resp.clicked() {
                clicked = Some(i);
            }
            resp.on_hover_text(format!(
                "{}: steps {}..{}{}",
                span.name,
                span.start,
                span.end,
                if span.exact {
                    ""
                } else {
                    " (length in steps not known before training; drawn nominal)"
                }
            ));
        }
        if let Some(i) = clicked {
            self.selected_phase = i;
        }
        let mut changed = false;
        ui.horizontal_wrapped(|ui| {
            for (i, phase) in phases.iter().enumerate() {
                let selected = i == self.selected_phase;
                if ui
                    .selectable_label(selected, format!("{i}: {}", phase.name))
                    .clicked()
                {
                    self.selected_phase = i;
                }
            }
        });
        let i = self.selected_phase;
        if i < phases.len() {
            ui.horizontal(|ui| {
                if ui
                    .add_enabled(i > 0, egui::Button::new("Move earlier"))
                    .clicked()
                {
                    phases.swap(i, i - 1);
                    self.selected_phase = i - 1;
                    changed = true;
                }
                if ui
                    .add_enabled(i + 1 < phases.len(), egui::Button::new("Move later"))
                    .clicked()
                {
                    phases.swap(i, i + 1);
                    self.selected_phase = i + 1;
                    changed = true;
                }
                if ui
                    .add_enabled(phases.len() > 1, egui::Button::new("Remove"))
                    .on_disabled_hover_text("a preset needs at least one phase")
                    .clicked()
                {
                    phases.remove(i);
                    changed = true;
                }
                if ui.button("Duplicate").clicked() {
                    let mut copy = phases[i].clone();
                    copy.name.push_str("_copy");
                    phases.insert(i + 1, copy);
                    self.selected_phase = i + 1;
                    changed = true;
                }
            });
        }
        changed
    }

    fn phase_detail_ui(&mut self, ui: &mut Ui, phases: &mut [Phase], i: usize) -> bool {
        let mut changed = false;
        let phase = &mut phases[i];
        egui::Grid::new("phase-detail").num_columns(2).spacing([12.0, 4.0]).show(ui, |ui| {
            let l = ui.label("name").id;
            changed |= ui.text_edit_singleline(&mut phase.name).labelled_by(l).changed();
            ui.end_row();
            let l = ui.label("length").id;
            ui.horizontal(|ui| {
                let (mut kind, mut amount) = match phase.length {
                    PhaseLength::Steps(n) => (0, n as f64),
                    PhaseLength::Epochs(n) => (1, n as f64),
                    PhaseLength::Minutes(m) => (2, m),
                };
                let before = (kind, amount);
                ui.add(egui::DragValue::new(&mut amount).range(0.0..=1e9).speed(10.0)).labelled_by(l);
                let _ = egui::ComboBox::from_id_salt("phase-length-kind")
                    .selected_text(["steps", "epochs", "minutes"][kind])
                    .show_ui(ui, |ui| {
                        ui.selectable_value(&mut kind, 0, "steps");
                        ui.selectable_value(&mut kind, 1, "epochs");
                        ui.selectable_value(&mut kind, 2, "minutes");
                    })
                    .response
                    .labelled_by(l);
                if (kind, amount) != before {
                    phase.length = match kind {
                        0 => PhaseLength::Steps(amount.round().max(0.0) as u64),
                        1 => PhaseLength::Epochs(amount.round().max(0.0) as u64),
                        _ => PhaseLength::Minutes(amount.max(0.0)),
                    };
                    changed = true;
                }
            });
            ui.end_row();
            let l = ui.label("start from best").on_hover_text("load the previous phase's best checkpoint (weights and optimizer state) when this phase starts").id;
            changed |= ui
                .add_enabled(i > 0, egui::Checkbox::without_text(&mut phase.start_from_best))
                .labelled_by(l)
                .on_disabled_hover_text("the first phase has no previous phase")
                .changed();
            ui.end_row();
        });
        for p in self.problems.iter().filter(|p| {
            p.path.starts_with(&format!("phases[{i}]")) && !p.path.contains(".overrides")
        }) {
            ui.colored_label(crate::gui::style::ERROR, p.to_string());
        }
        ui.label(RichText::new("Overrides").strong());
        let specs = self.family.specs();
        let mut remove = None;
        egui::Grid::new("phase-overrides")
            .num_columns(4)
            .striped(true)
            .show(ui, |ui| {
                let keys: Vec<String> = phase.overrides.keys().cloned().collect();
                for key in keys {
                    let Some(spec) = specs.iter().find(|s| s.path == key) else {
                        ui.colored_label(crate::gui::style::ERROR, format!("{key}: unknown field"));
                        if ui.small_button("remove").clicked() {
                            remove = Some(key.clone());
                        }
                        ui.end_row();
                        continue;
                    };
                    let name = ui.label(spec.path).on_hover_text(spec.doc).id;
                    let current = phase
                        .overrides
                        .get(&key)
                        .map(OverrideValue::to_json)
                        .unwrap_or(Value::Null);
                    let draft_key = format!("phases[{i}].{key}");
                    let draft = self.drafts.get(&draft_key).cloned();
                    match value_widget(ui, spec, &current, draft, ("ovr", spec.path), name) {
                        Edit::None => {}
                        Edit::Draft(t) => {
                            self.drafts.insert(draft_key.clone(), t);
                        }
                        Edit::Value(v) => {
                            self.drafts.remove(&draft_key);
                            if let Some(o) = to_override(&v) {
                                phase.overrides.insert(key.clone(), o);
                                changed = true;
                            }
                        }
                    }
                    let problems: Vec<String> = self
                        .problems
                        .iter()
                        .filter(|p| {
                            p.path.starts_with(&format!("phases[{i}].overrides"))
                                && p.path.contains(key.as_str())
                        })
                        .map(|p| p.allowed.clone())
                        .collect();
                    if problems.is_empty() {
                        ui.label(RichText::new(spec.unit).weak());
                    } else {
                        ui.colored_label(crate::gui::style::ERROR, problems.join("; "));
                    }
                    if ui
                        .small_button("remove")
                        .on_hover_text("remove this override")
                        .clicked()
                    {
                        remove = Some(key.clone());
                    }
                    ui.end_row();
                }
            });
        if let Some(k) = remove {
            phase.overrides.remove(&k);
            changed = true;
        }
        let mut add = None;
        ui.horizontal(|ui| {
            let l = ui.label("Override a field").id;
            let _ = egui::ComboBox::from_id_salt("add-override")
                .selected_text("choose...")
                .show_ui(ui, |ui| {
                    for spec in specs
                        .iter()
                        .filter(|s| s.phase && !phase.overrides.contains_key(s.path))
                    {
                        if ui
                            .selectable_label(false, spec.path)
                            .on_hover_text(spec.doc)
                            .clicked()
                        {
                            add = Some(spec);
                        }
                    }
                })
                .response
                .labelled_by(l);
        });
        if let Some(spec) = add {
            let v = get_path(&self.tree, spec.path)
                .cloned()
                .unwrap_or(Value::Null);
            if let Some(o) = to_override(&v) {
                phase.overrides.insert(spec.path.to_string(), o);
                changed = true;
            }
        }
        changed
    }

    /// Adds a phase with overrides (scripted set-up and tests); revalidates.
    pub fn push_phase(&mut self, phase: Phase) {
        let mut phases = self.phases();
        phases.push(phase);
        self.selected_phase = phases.len() - 1;
        self.set_phases(&phases);
    }

    #[must_use]
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }
}

fn to_override(v: &Value) -> Option<OverrideValue> {
    match v {
        Value::Bool(b) => Some(OverrideValue::Bool(*b)),
        Value::Number(n) => n
            .as_i64()
            .map(OverrideValue::Int)
            .or_else(|| n.as_f64().map(OverrideValue::Float)),
        Value::String(s) => Some(OverrideValue::Text(s.clone())),
        _ => None,
    }
}

/// What a value widget did this frame.
enum Edit {
    None,
    /// Text that does not parse yet.
    Draft(String),
    Value(Value),
}

/// The widget that fits a field's kind. Numbers are typed as text (so `5e-5` works) and
/// committed when they parse; a range violation is still committed, so validation can say so.
fn value_widget(
    ui: &mut Ui,
    spec: &FieldSpec,
    current: &Value,
    draft: Option<String>,
    id: (&str, &str),
    label: egui::Id,
) -> Edit {
    match spec.kind {
        FieldKind::Bool => {
            let mut b = current.as_bool().unwrap_or(false);
            if ui
                .add(egui::Checkbox::without_text(&mut b))
                .labelled_by(label)
                .changed()
            {
                return Edit::Value(Value::Bool(b));
            }
            Edit::None
        }
        FieldKind::Choice(choices) => {
            let now = current.as_str().unwrap_or("").to_string();
            let mut picked = None;
            let _ = egui::ComboBox::from_id_salt(id)
                .selected_text(&now)
                .show_ui(ui, |ui| {
                    for c in choices {
                        if ui.selectable_label(now == *c, *c).clicked() {
                            picked = Some((*c).to_string());
                        }
                    }
                })
                .response
                .labelled_by(label);
            picked.map_or(Edit::None, |c| Edit::Value(Value::String(c)))
        }
        FieldKind::Text | FieldKind::Path => {
            let mut text = current.as_str().unwrap_or("").to_string();
            let r = ui
                .add(
                    egui::TextEdit::singleline(&mut text)
                        .id_salt(id)
                        .desired_width(220.0)
                        .min_size(egui::vec2(220.0, 0.0)),
                )
                .labelled_by(label);
            if r.changed() {
                return Edit::Value(Value::String(text));
            }
            Edit::None
        }
        FieldKind::Int { .. } | FieldKind::Float { .. } => {
            let mut text = draft.unwrap_or_else(|| show_value(current));
            let r = ui
                .add(
                    egui::TextEdit::singleline(&mut text)
                        .id_salt(id)
                        .desired_width(120.0)
                        .min_size(egui::vec2(120.0, 0.0)),
                )
                .labelled_by(label);
            if !r.changed() {
                return Edit::None;
            }
            let t = text.trim();
            let parsed = if matches!(spec.kind, FieldKind::Int { .. }) {
                t.parse::<i64>().ok().map(Value::from)
            } else {
                t.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
            };
            match parsed {
                Some(v) => Edit::Value(v),
                None => Edit::Draft(text),
            }
        }
    }
}

/// Phase colours on the timeline.
#[must_use]
pub fn phase_color(i: usize) -> Color32 {
    crate::gui::style::palette(i)
}

/// Every scheduled quantity over the whole run, each normalised to its own range so they
/// share one plot; the hover readout gives real values.
fn schedule_plot_ui(ui: &mut Ui, s: &Schedule) {
    use egui_plot::{Legend, Line, Plot, PlotPoints, VLine};
    let total = s.total_steps().max(1) as f64;
    Plot::new("schedule-preview")
        .height(220.0)
        .legend(Legend::default())
        .allow_scroll(false)
        .include_x(0.0)
        .include_x(total)
        .include_y(-0.05)
        .include_y(1.05)
        .y_axis_formatter(|_, _| String::new())
        .label_formatter(|pos| match pos {
            egui_plot::HoverPosition::NearDataPoint {
                plot_name,
                position,
                ..
            } => Some(format!("{plot_name}\nstep {:.0}", position.x)),
            egui_plot::HoverPosition::Elsewhere { position } => {
                Some(format!("step {:.0}", position.x))
            }
        })
        .show(ui, |plot_ui| {
            for span in &s.phases {
                plot_ui.vline(
                    VLine::new(format!("phase {}", span.name), span.start as f64)
                        .color(Color32::GRAY),
                );
            }
            for q in &s.quantities {
                let (lo, hi) = q
                    .values
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                        (a.min(*v), b.max(*v))
                    });
                let norm = |v: f64| if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
                let mut pts = Vec::new();
                for (span, v) in s.phases.iter().zip(&q.values) {
                    pts.push([span.start as f64, norm(*v)]);
                    pts.push([span.end as f64, norm(*v)]);
                }
                let values: Vec<String> = q.values.iter().map(|v| format!("{v}")).collect();
                let name = format!("{} [{}]", q.path, values.join(" -> "));
                // Step functions: no band drawing (it fills between same-x points).
                plot_ui.line(
                    Line::new(name, PlotPoints::from(pts))
                        .width(2.0)
                        .allow_band(false),
                );
            }
        });
}

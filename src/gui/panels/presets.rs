//! The Presets tab (the library, the form and the diff) and the Phases tab, over the preset
//! being edited.

use egui::{RichText, Ui};

use crate::core::preset::Family;
use crate::gui::actions::{Purpose, UiAction};
use crate::gui::editor::{LibraryEntry, PresetEditor};
use crate::gui::style;

use super::Ctx;

/// The preset being edited, and the library beside it (the shipped presets, then the user's).
#[derive(Debug)]
pub struct PresetsPanel {
    pub editor: PresetEditor,
    pub library: Vec<LibraryEntry>,
}

impl PresetsPanel {
    /// The Presets tab.
    pub fn ui(&mut self, ui: &mut Ui, ctx: &Ctx<'_>) -> Vec<UiAction> {
        let mut actions = Vec::new();
        egui::Panel::left("library")
            .resizable(true)
            .default_size(230.0)
            .show(ui, |ui| self.library_ui(ui, ctx, &mut actions));
        egui::Panel::right("diff")
            .resizable(true)
            .default_size(320.0)
            .show(ui, |ui| self.diff_ui(ui, &mut actions));
        egui::CentralPanel::default().show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.heading(format!("{} preset", self.editor.family.name()));
                if let Some(s) = &self.editor.source {
                    ui.label(RichText::new(s.display().to_string()).weak());
                }
            });
            for n in &self.editor.notes {
                ui.label(RichText::new(format!("migrated: {n}")).weak());
            }
            if !self.editor.problems.is_empty() {
                ui.colored_label(
                    style::ERROR,
                    format!(
                        "{} problem(s): each is shown beside its field",
                        self.editor.problems.len()
                    ),
                );
            }
            egui::ScrollArea::vertical()
                .id_salt("form-scroll")
                .show(ui, |ui| self.editor.form_ui(ui, ctx.training));
        });
        actions
    }

    /// The Phases tab.
    pub fn phases_ui(&mut self, ui: &mut Ui) -> Vec<UiAction> {
        egui::ScrollArea::vertical()
            .id_salt("phases-scroll")
            .show(ui, |ui| self.editor.phases_ui(ui));
        Vec::new()
    }

    fn library_ui(&mut self, ui: &mut Ui, ctx: &Ctx<'_>, actions: &mut Vec<UiAction>) {
        ui.heading("Library");
        ui.label(RichText::new("built in, then yours").weak().small())
            .on_hover_text(format!(
                "The shipped presets are built into the app; yours are the .ron files in {}",
                ctx.user_presets_dir.display()
            ));
        egui::ScrollArea::vertical()
            .id_salt("library-scroll")
            .show(ui, |ui| {
                for (i, e) in self.library.iter().enumerate() {
                    let label = if e.user() {
                        format!("{} (yours)", e.name)
                    } else {
                        e.name.clone()
                    };
                    let origin = e.origin();
                    let mut r = ui.selectable_label(
                        self.editor.source.as_deref() == Some(origin.as_path()),
                        label,
                    );
                    if let Some(err) = &e.error {
                        r = r.on_hover_text(err);
                    } else {
                        r = r.on_hover_text(origin.display().to_string());
                    }
                    if r.clicked() {
                        actions.push(UiAction::LoadPreset(i));
                    }
                }
            });
        ui.separator();
        for family in Family::ALL {
            if ui
                .button(format!("New {} from defaults", family.name()))
                .clicked()
            {
                self.editor = PresetEditor::new(&family.default_preset(), None);
            }
        }
        if ui.button("Import RON...").clicked() {
            actions.push(UiAction::Dialog(Purpose::ImportPreset, String::new()));
        }
        if ui.button("Export RON...").clicked() {
            let name = format!("{}.ron", self.editor.save_as_name);
            actions.push(UiAction::Dialog(Purpose::ExportPreset, name));
        }
        ui.horizontal(|ui| {
            let l = ui.label("Name").id;
            ui.add(egui::TextEdit::singleline(&mut self.editor.save_as_name).desired_width(110.0))
                .labelled_by(l);
            if ui
                .button("Save as")
                .on_hover_text(format!("into {}", ctx.user_presets_dir.display()))
                .clicked()
            {
                actions.push(UiAction::SavePreset);
            }
        });
    }

    fn diff_ui(&self, ui: &mut Ui, actions: &mut Vec<UiAction>) {
        ui.heading("Diff");
        let current = self
            .editor
            .compare_with
            .as_ref()
            .map_or("family defaults".to_string(), |(n, _)| n.clone());
        let l = ui.label("Compare with").id;
        let _ = egui::ComboBox::from_id_salt("diff-against")
            .selected_text(current)
            .show_ui(ui, |ui| {
                if ui
                    .selectable_label(self.editor.compare_with.is_none(), "family defaults")
                    .clicked()
                {
                    actions.push(UiAction::CompareWith(None));
                }
                for (i, e) in self.library.iter().enumerate() {
                    if e.error.is_none() && ui.selectable_label(false, &e.name).clicked() {
                        actions.push(UiAction::CompareWith(Some(i)));
                    }
                }
            })
            .response
            .labelled_by(l);
        let rows = match &self.editor.compare_with {
            Some((_, tree)) => self.editor.diff(tree),
            None => self
                .editor
                .diff(&self.editor.family.default_preset().to_tree()),
        };
        if rows.is_empty() {
            ui.label(RichText::new("no differences").weak());
        }
        egui::ScrollArea::vertical()
            .id_salt("diff-scroll")
            .show(ui, |ui| {
                egui::Grid::new("diff-grid")
                    .striped(true)
                    .num_columns(3)
                    .show(ui, |ui| {
                        for (path, theirs, ours) in rows {
                            ui.label(path);
                            ui.label(RichText::new(theirs).weak());
                            ui.label(ours);
                            ui.end_row();
                        }
                    });
            });
    }
}

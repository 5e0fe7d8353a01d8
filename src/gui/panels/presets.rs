//! The Presets tab: the library, the form and the diff.

use egui::{Color32, RichText, Ui};

use crate::core::preset::Family;
use crate::gui::actions::UiAction;
use crate::gui::app::WorkbenchApp;
use crate::gui::dialogs::Purpose;
use crate::gui::editor::PresetEditor;

impl WorkbenchApp {
    pub(crate) fn presets_tab_ui(&mut self, ui: &mut Ui) {
        egui::Panel::left("library")
            .resizable(true)
            .default_size(230.0)
            .show(ui, |ui| {
                ui.heading("Library");
                ui.label(RichText::new("built in, then yours").weak().small())
                    .on_hover_text(format!(
                        "The shipped presets are built into the app; yours are the .ron files in {}",
                        self.opts.user_presets_dir.display()
                    ));
                let mut load = None;
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
                                load = Some(i);
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
                    self.dialogs.open(Purpose::ImportPreset, "");
                }
                if ui.button("Export RON...").clicked() {
                    let name = format!("{}.ron", self.editor.save_as_name);
                    self.dialogs.open(Purpose::ExportPreset, &name);
                }
                ui.horizontal(|ui| {
                    let l = ui.label("Name").id;
                    ui.add(
                        egui::TextEdit::singleline(&mut self.editor.save_as_name)
                            .desired_width(110.0),
                    )
                    .labelled_by(l);
                    if ui
                        .button("Save as")
                        .on_hover_text(format!("into {}", self.opts.user_presets_dir.display()))
                        .clicked()
                    {
                        self.actions.push(UiAction::SavePreset);
                    }
                });
                if let Some(i) = load {
                    self.actions.push(UiAction::LoadPreset(i));
                }
            });
        egui::Panel::right("diff")
            .resizable(true)
            .default_size(320.0)
            .show(ui, |ui| self.diff_ui(ui));
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
                    Color32::from_rgb(235, 80, 80),
                    format!(
                        "{} problem(s): each is shown beside its field",
                        self.editor.problems.len()
                    ),
                );
            }
            egui::ScrollArea::vertical()
                .id_salt("form-scroll")
                .show(ui, |ui| self.editor.form_ui(ui));
        });
    }

    pub(crate) fn diff_ui(&mut self, ui: &mut Ui) {
        ui.heading("Diff");
        let current = self
            .editor
            .compare_with
            .as_ref()
            .map_or("family defaults".to_string(), |(n, _)| n.clone());
        let mut pick: Option<Option<usize>> = None;
        let l = ui.label("Compare with").id;
        let _ = egui::ComboBox::from_id_salt("diff-against")
            .selected_text(current)
            .show_ui(ui, |ui| {
                if ui
                    .selectable_label(self.editor.compare_with.is_none(), "family defaults")
                    .clicked()
                {
                    pick = Some(None);
                }
                for (i, e) in self.library.iter().enumerate() {
                    if e.error.is_none() && ui.selectable_label(false, &e.name).clicked() {
                        pick = Some(Some(i));
                    }
                }
            })
            .response
            .labelled_by(l);
        if let Some(pick) = pick {
            self.actions.push(UiAction::CompareWith(pick));
        }
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

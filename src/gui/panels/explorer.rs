//! The Actions tab: how a run with discrete actions uses its codebook (a heat map of each
//! code's share at every validation, the most used actions), and the action explorer: pick a
//! validation window and any action and see the model's rollout under it beside the truth and
//! beside the rollout under the actions its encoder read. The app loads the model from the
//! run's latest checkpoint, on the CPU, and rolls it out on background threads; the panel asks
//! and shows.

use egui::{Color32, ColorImage, RichText, TextureHandle, Ui};

use crate::core::runview::{CodeUse, RunView};
use crate::engine::explore::Explored;
use crate::gui::actions::{ExploreRequest, UiAction};
use crate::gui::style;

use super::Ctx;

/// What the panel knows of a loaded explorer (the model stays with the app).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExplorerInfo {
    /// Validation windows to start from.
    pub windows: usize,
    pub codebook_size: usize,
    pub slots: usize,
    /// The most steps a rollout can be compared with the truth.
    pub max_steps: usize,
    /// Channels of a frame.
    pub channels: usize,
    /// A one-line description (model, checkpoint step).
    pub describe: String,
}

/// The Actions tab's state.
#[derive(Default)]
pub struct ExplorerPanel {
    /// The run folder the explorer was opened on, and what it is once loaded.
    run_dir: Option<String>,
    info: Option<ExplorerInfo>,
    /// A load or a rollout asked of the app and not back yet.
    opening: bool,
    decoding: bool,
    pub window: usize,
    pub action: Vec<u32>,
    pub steps: usize,
    /// One latent channel in grey, or (`None`) every channel through a fixed projection to RGB.
    pub channel: Option<usize>,
    /// The last rollout, and its textures (truth, encoded, chosen).
    pub shown: Option<Explored>,
    textures: [Option<TextureHandle>; 3],
    /// A rollout arrived and not yet made into textures.
    arrived: bool,
    pub error: Option<String>,
    /// A rollout is wanted once the one under way is back.
    want_decode: bool,
}

impl std::fmt::Debug for ExplorerPanel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExplorerPanel")
            .field("run_dir", &self.run_dir)
            .field("loaded", &self.info.is_some())
            .field("window", &self.window)
            .field("action", &self.action)
            .finish_non_exhaustive()
    }
}

fn color_image(img: &crate::engine::explore::Rgba) -> ColorImage {
    ColorImage::from_rgba_unmultiplied([img.width as usize, img.height as usize], &img.pixels)
}

impl ExplorerPanel {
    /// Whether the explorer is loaded.
    #[must_use]
    pub fn ready(&self) -> bool {
        self.info.is_some()
    }

    /// Whether a load or a rollout is under way.
    #[must_use]
    pub fn busy(&self) -> bool {
        self.opening || self.decoding
    }

    /// Asks for the explorer of a run folder's latest checkpoint.
    pub fn open(&mut self, run_dir: &str) -> UiAction {
        self.run_dir = Some(run_dir.to_string());
        self.info = None;
        self.shown = None;
        self.error = None;
        self.opening = true;
        UiAction::OpenExplorer(std::path::PathBuf::from(run_dir))
    }

    /// The explorer the app loaded for `run_dir` (ignored if the panel moved on).
    pub fn opened(&mut self, run_dir: &str, info: Result<ExplorerInfo, String>) {
        if self.run_dir.as_deref() != Some(run_dir) {
            return;
        }
        self.opening = false;
        match info {
            Ok(i) => {
                self.action = vec![0; i.slots];
                self.steps = i.max_steps;
                self.window = self.window.min(i.windows.saturating_sub(1));
                self.info = Some(i);
                self.error = None;
                self.want_decode = true;
            }
            Err(e) => self.error = Some(e),
        }
    }

    /// A rollout the app made.
    pub fn decoded(&mut self, result: Result<Explored, String>) {
        self.decoding = false;
        match result {
            Ok(x) => {
                self.shown = Some(x);
                self.arrived = true;
                self.error = None;
            }
            Err(e) => self.error = Some(e),
        }
    }

    /// Makes textures of a rollout that arrived, and asks for the next one that is wanted.
    fn sync(&mut self, ctx: &egui::Context, actions: &mut Vec<UiAction>) {
        if std::mem::take(&mut self.arrived) {
            if let Some(x) = &self.shown {
                let names = ["explore-truth", "explore-encoded", "explore-chosen"];
                for ((slot, name), img) in self
                    .textures
                    .iter_mut()
                    .zip(names)
                    .zip([&x.truth, &x.encoded, &x.chosen])
                {
                    crate::gui::panels::samples::show_in(slot, ctx, name, color_image(img));
                }
            }
        }
        if self.want_decode && !self.decoding && self.info.is_some() {
            self.want_decode = false;
            self.decoding = true;
            actions.push(UiAction::Explore(ExploreRequest {
                window: self.window,
                action: self.action.clone(),
                steps: self.steps,
                channel: self.channel,
            }));
        }
    }

    /// The tab for the run `view` followed from the folder `dir`.
    pub fn ui(&mut self, ui: &mut Ui, ctx: &Ctx<'_>) -> Vec<UiAction> {
        let Some(run) = ctx.current_run() else {
            return super::no_run(ui);
        };
        let (view, dir) = (&run.view, &run.dir);
        let mut actions = Vec::new();
        self.sync(ui.ctx(), &mut actions);
        ui.heading("Actions");
        egui::ScrollArea::vertical()
            .id_salt("actions-tab")
            .show(ui, |ui| {
                self.explorer_ui(ui, &dir.display().to_string(), &mut actions);
                ui.separator();
                if view.codes.is_empty() {
                    ui.label(
                        RichText::new(
                            "No codebook statistics yet: each validation of a run with discrete actions (the latent action model) adds them.",
                        )
                        .weak(),
                    );
                    return;
                }
                ui.horizontal_top(|ui| {
                    ui.vertical(|ui| {
                        ui.label(
                            RichText::new("Codebook use at each validation (share of the code slots)")
                                .strong(),
                        );
                        heat_map(ui, &view.codes);
                    });
                    ui.separator();
                    ui.vertical(|ui| self.top_actions_ui(ui, view));
                });
            });
        actions
    }

    fn top_actions_ui(&mut self, ui: &mut Ui, view: &RunView) {
        let Some(last) = view.codes.last() else {
            return;
        };
        let total: u64 = last.actions.iter().map(|(_, n)| n).sum::<u64>().max(1);
        ui.label(
            RichText::new(format!(
                "Most used actions at step {} ({} distinct); click one to explore it",
                last.step,
                last.actions.len()
            ))
            .strong(),
        );
        egui::ScrollArea::vertical()
            .id_salt("actions-top")
            .max_height(220.0)
            .show(ui, |ui| {
                for (codes, n) in last.actions.iter().take(32) {
                    let share = *n as f32 / total as f32;
                    ui.horizontal(|ui| {
                        let label = format!("{codes:?}");
                        let picked = self.action == *codes;
                        if ui.selectable_label(picked, &label).clicked() {
                            self.action.clone_from(codes);
                            self.want_decode = self.info.is_some();
                        }
                        let (rect, _) = ui.allocate_exact_size(
                            egui::vec2(160.0 * share.max(0.01), 12.0),
                            egui::Sense::hover(),
                        );
                        ui.painter().rect_filled(rect, 2.0, style::ACCENT);
                        ui.label(format!("{n} ({:.0}%)", share * 100.0));
                    });
                }
            });
    }

    fn explorer_ui(&mut self, ui: &mut Ui, here: &str, actions: &mut Vec<UiAction>) {
        ui.label(RichText::new("Action explorer").strong());
        let opened_here = self.run_dir.as_deref() == Some(here);
        ui.horizontal(|ui| {
            let label = if opened_here {
                "Reload the latest checkpoint"
            } else {
                "Load the latest checkpoint"
            };
            if ui
                .add_enabled(!self.busy() && !here.is_empty(), egui::Button::new(label))
                .clicked()
            {
                actions.push(self.open(here));
            }
            if self.opening {
                ui.spinner();
                ui.label("loading the model on the CPU...");
            } else if self.decoding {
                ui.spinner();
            }
            if let (true, Some(i)) = (opened_here, &self.info) {
                ui.label(RichText::new(&i.describe).weak());
            }
        });
        if let Some(e) = &self.error {
            ui.colored_label(style::ERROR, e);
        }
        if !opened_here {
            return;
        }
        let limits = self
            .info
            .as_ref()
            .map(|i| (i.windows, i.codebook_size, i.max_steps, i.channels));
        if let Some((windows, k, max_steps, channels)) = limits {
            let mut changed = false;
            ui.horizontal(|ui| {
                let l = ui.label("Window").id;
                changed |= ui
                    .add(egui::Slider::new(
                        &mut self.window,
                        0..=windows.saturating_sub(1),
                    ))
                    .labelled_by(l)
                    .changed();
                let l = ui.label("Steps").id;
                changed |= ui
                    .add(egui::Slider::new(&mut self.steps, 1..=max_steps.max(1)))
                    .labelled_by(l)
                    .changed();
                let shown = match self.channel {
                    None if channels == 3 => "RGB".to_string(),
                    None => "all channels (PCA to RGB)".to_string(),
                    Some(c) => format!("channel {c}"),
                };
                egui::ComboBox::from_label("view")
                    .selected_text(shown)
                    .show_ui(ui, |ui| {
                        let all = if channels == 3 {
                            "RGB"
                        } else {
                            "all channels (PCA to RGB)"
                        };
                        changed |= ui.selectable_value(&mut self.channel, None, all).changed();
                        for c in 0..channels {
                            changed |= ui
                                .selectable_value(
                                    &mut self.channel,
                                    Some(c),
                                    format!("channel {c}"),
                                )
                                .changed();
                        }
                    });
            });
            ui.horizontal(|ui| {
                ui.label("Action:");
                for (slot, code) in self.action.iter_mut().enumerate() {
                    egui::ComboBox::from_label(format!("slot {slot}"))
                        .selected_text(format!("code {code}"))
                        .show_ui(ui, |ui| {
                            for c in 0..k as u32 {
                                changed |=
                                    ui.selectable_value(code, c, format!("code {c}")).changed();
                            }
                        });
                }
            });
            if changed {
                self.want_decode = true;
            }
        }
        let (Some(x), [Some(truth), Some(encoded), Some(chosen)]) = (&self.shown, &self.textures)
        else {
            return;
        };
        let first = x.encoded_actions.first().cloned().unwrap_or_default();
        egui::ScrollArea::both()
            .id_salt("explore-scroll")
            .show(ui, |ui| {
                for (tex, label) in [
                    (truth, "what followed".to_string()),
                    (
                        encoded,
                        format!("rollout under the encoded actions (first {first:?})"),
                    ),
                    (
                        chosen,
                        format!("rollout under {:?} at every step", self.action),
                    ),
                ] {
                    ui.label(label);
                    let size =
                        tex.size_vec2() * (96.0 / tex.size_vec2().y.max(1.0)).clamp(1.0, 8.0);
                    ui.add(egui::Image::new((tex.id(), size)));
                }
            });
    }
}

/// Codes (rows) by validations (columns), each cell shaded by the code's share of that
/// validation's code slots.
pub(crate) fn heat_map(ui: &mut Ui, codes: &[CodeUse]) {
    let k = codes
        .iter()
        .map(|c| c.counts.len())
        .max()
        .unwrap_or(0)
        .min(256);
    let cols = codes.len().min(200);
    let shown = &codes[codes.len() - cols..];
    let cell = egui::vec2(
        (480.0 / cols as f32).clamp(3.0, 24.0),
        (240.0 / k.max(1) as f32).clamp(2.0, 16.0),
    );
    let (rect, resp) = ui.allocate_exact_size(
        egui::vec2(cell.x * cols as f32 + 40.0, cell.y * k as f32),
        egui::Sense::hover(),
    );
    let painter = ui.painter_at(rect);
    for (j, c) in shown.iter().enumerate() {
        let total = c.counts.iter().sum::<u64>().max(1) as f32;
        for (i, n) in c.counts.iter().take(k).enumerate() {
            let share = *n as f32 / total;
            let v = (share.sqrt() * 255.0) as u8;
            let min = rect.min + egui::vec2(40.0 + j as f32 * cell.x, i as f32 * cell.y);
            painter.rect_filled(
                egui::Rect::from_min_size(min, cell - egui::vec2(0.5, 0.5)),
                0.0,
                Color32::from_rgb(v / 3, v / 2 + 20, v),
            );
        }
    }
    for i in (0..k).step_by((k / 12).max(1)) {
        painter.text(
            rect.min + egui::vec2(2.0, i as f32 * cell.y),
            egui::Align2::LEFT_TOP,
            format!("{i}"),
            egui::FontId::monospace(9.0),
            ui.visuals().weak_text_color(),
        );
    }
    if let Some(pos) = resp.hover_pos() {
        let j = ((pos.x - rect.min.x - 40.0) / cell.x).floor();
        let i = ((pos.y - rect.min.y) / cell.y).floor();
        if j >= 0.0 && (j as usize) < shown.len() && i >= 0.0 && (i as usize) < k {
            let c = &shown[j as usize];
            let n = c.counts.get(i as usize).copied().unwrap_or(0);
            let total = c.counts.iter().sum::<u64>().max(1);
            resp.on_hover_text(format!(
                "step {}: code {} used {n} times ({:.1}%)",
                c.step,
                i as usize,
                100.0 * n as f64 / total as f64
            ));
        }
    }
}

//! The GAAD inspector: a frame (a synthetic sprite, or an image file), a decomposition kind
//! and a region count, and the regions numbered in order over it, with their coordinates on
//! hover and in a table.

use std::path::PathBuf;

use egui::{ColorImage, RichText, TextureHandle, Ui};

use crate::core::gaad::{self, Kind, Region};
use crate::gui::actions::{FrameSource, Purpose, UiAction};
use crate::gui::style;

/// The inspector's state.
pub struct GaadPanel {
    pub source: FrameSource,
    pub kind: Kind,
    pub regions: usize,
    pub min_size: f64,
    pub opacity: f32,
    pub zoom: f32,
    pub boxes: Vec<Region>,
    pub error: Option<String>,
    frame: Option<(u32, u32)>,
    texture: Option<TextureHandle>,
    /// The inputs the shown boxes were computed from; any change recomputes them.
    computed: Option<(FrameSource, Kind, usize, u64)>,
    /// The file frame asked of the app, until it arrives.
    loading: Option<FrameSource>,
    /// A file frame the app decoded, shown at the next draw.
    arrived: Option<(FrameSource, Result<ColorImage, String>)>,
}

impl std::fmt::Debug for GaadPanel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GaadPanel")
            .field("source", &self.source)
            .field("kind", &self.kind)
            .field("regions", &self.regions)
            .finish_non_exhaustive()
    }
}

impl Default for GaadPanel {
    fn default() -> Self {
        Self {
            source: FrameSource::Synthetic {
                index: 0,
                size: 256,
            },
            kind: Kind::Hybrid,
            regions: 16,
            min_size: 4.0,
            opacity: 0.9,
            zoom: 2.0,
            boxes: Vec::new(),
            error: None,
            frame: None,
            texture: None,
            computed: None,
            loading: None,
            arrived: None,
        }
    }
}

impl GaadPanel {
    /// Shows `path` next (from the app's file dialog): an image, or a video's first frame.
    pub fn open_image(&mut self, path: PathBuf) {
        self.source = FrameSource::file(path);
    }

    /// A frame of a file the app decoded for `source` (dropped if the user moved on).
    pub fn frame_loaded(&mut self, source: FrameSource, frame: Result<ColorImage, String>) {
        if self.loading.as_ref() == Some(&source) {
            self.arrived = Some((source, frame));
        }
    }

    /// A synthetic sprite, made here (no file behind it).
    fn sprite(index: u64, size: u32) -> ColorImage {
        let rgb = crate::core::synthetic::sprite(7, index, size);
        let rgba: Vec<u8> = rgb
            .chunks(3)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect();
        ColorImage::from_rgba_unmultiplied([size as usize, size as usize], &rgba)
    }

    /// Loads the frame for the current inputs: a sprite at once, a file's frame by asking the
    /// app (seeking a video can take a while; the previous frame stays shown).
    fn refresh(&mut self, ctx: &egui::Context, actions: &mut Vec<UiAction>) {
        match &self.source {
            FrameSource::Synthetic { index, size } => {
                let frame = Self::sprite(*index, *size);
                self.loading = None;
                self.show_frame(ctx, Ok(frame));
            }
            file => {
                self.loading = Some(file.clone());
                actions.push(UiAction::LoadFrame(file.clone()));
            }
        }
    }

    /// Shows a loaded frame (or its error) and recomputes the boxes for it.
    fn show_frame(&mut self, ctx: &egui::Context, frame: Result<ColorImage, String>) {
        match frame {
            Ok(img) => {
                let [w, h] = img.size;
                self.frame = Some((w as u32, h as u32));
                super::samples::show_in(&mut self.texture, ctx, "gaad-frame", img);
                self.error = None;
            }
            Err(e) => {
                self.error = Some(e);
                self.frame = None;
            }
        }
        self.recompute_boxes();
    }

    fn recompute_boxes(&mut self) {
        if let Some((w, h)) = self.frame {
            match gaad::decompose(self.kind, w, h, self.regions, self.min_size) {
                Ok(b) => self.boxes = b,
                Err(e) => {
                    self.boxes.clear();
                    self.error = Some(e.to_string());
                }
            }
        }
    }

    /// Whether a file's frame is being decoded.
    #[must_use]
    pub fn is_loading(&self) -> bool {
        self.loading.is_some()
    }

    /// Controls, the frame with its regions, and the box table.
    pub fn ui(&mut self, ui: &mut Ui) -> Vec<UiAction> {
        let mut actions = Vec::new();
        ui.horizontal_wrapped(|ui| {
            ui.heading("GAAD regions");
            let l = ui.label("Decomposition").id;
            let _ = egui::ComboBox::from_id_salt("gaad-kind")
                .selected_text(format!("{:?}", self.kind).to_lowercase())
                .show_ui(ui, |ui| {
                    for k in [Kind::Subdivide, Kind::Spiral, Kind::Hybrid] {
                        ui.selectable_value(&mut self.kind, k, format!("{k:?}").to_lowercase());
                    }
                })
                .response
                .labelled_by(l);
            let l = ui.label("Regions").id;
            ui.add(egui::DragValue::new(&mut self.regions).range(1..=512))
                .labelled_by(l);
            let l = ui.label("Min size px").id;
            ui.add(egui::DragValue::new(&mut self.min_size).range(1.0..=256.0))
                .labelled_by(l);
            if let FrameSource::Synthetic { index, .. } = &mut self.source {
                let l = ui.label("Sprite").id;
                ui.add(egui::DragValue::new(index).range(0..=9999))
                    .labelled_by(l);
            }
            if ui.button("Synthetic frame").clicked() {
                self.source = FrameSource::Synthetic {
                    index: 0,
                    size: 256,
                };
            }
            if let FrameSource::Video { index, .. } = &mut self.source {
                let l = ui.label("Frame").id;
                ui.add(egui::DragValue::new(index).range(0..=1_000_000))
                    .labelled_by(l);
            }
            if ui.button("Open image or video...").clicked() {
                actions.push(UiAction::Dialog(Purpose::GaadImage, String::new()));
            }
        });
        ui.horizontal(|ui| {
            let l = ui.label("Opacity").id;
            ui.add(egui::Slider::new(&mut self.opacity, 0.0..=1.0))
                .labelled_by(l);
            let l = ui.label("Zoom").id;
            ui.add(egui::Slider::new(&mut self.zoom, 0.25..=6.0))
                .labelled_by(l);
        });
        let inputs = (
            self.source.clone(),
            self.kind,
            self.regions,
            self.min_size.to_bits(),
        );
        if self.computed.as_ref().map(|c| &c.0) != Some(&inputs.0) {
            self.refresh(ui.ctx(), &mut actions);
        } else if self.computed.as_ref() != Some(&inputs) {
            // Same frame, other decomposition: no need to load it again.
            self.recompute_boxes();
        }
        self.computed = Some(inputs);
        if let Some((_, frame)) = self.arrived.take() {
            self.loading = None;
            self.show_frame(ui.ctx(), frame);
        }
        if self.loading.is_some() {
            ui.label(RichText::new("decoding the frame...").weak());
        }
        if let Some(e) = &self.error {
            ui.colored_label(style::ERROR, e);
        }
        let (Some(tex), Some((w, h))) = (&self.texture, self.frame) else {
            return actions;
        };
        ui.label(
            RichText::new(format!(
                "{w}x{h} px, {} regions, in order",
                self.boxes.len()
            ))
            .weak(),
        );
        egui::Panel::right("gaad-table")
            .resizable(true)
            .default_size(300.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical()
                    .id_salt("gaad-boxes")
                    .show(ui, |ui| {
                        egui::Grid::new("gaad-box-grid")
                            .striped(true)
                            .num_columns(2)
                            .show(ui, |ui| {
                                for (i, b) in self.boxes.iter().enumerate() {
                                    ui.colored_label(
                                        super::samples::region_color(i),
                                        format!("#{i}"),
                                    );
                                    ui.label(format!(
                                        "[{:.2}, {:.2}, {:.2}, {:.2}]",
                                        b[0], b[1], b[2], b[3]
                                    ));
                                    ui.end_row();
                                }
                            });
                    });
            });
        egui::ScrollArea::both()
            .id_salt("gaad-frame")
            .show(ui, |ui| {
                let size = tex.size_vec2() * self.zoom;
                let resp = ui.add(egui::Image::new((tex.id(), size)).sense(egui::Sense::hover()));
                let boxes: Vec<[f32; 4]> = self.boxes.iter().map(|b| b.map(|v| v as f32)).collect();
                super::samples::region_overlay(
                    ui,
                    resp.rect,
                    self.zoom,
                    &boxes,
                    self.opacity,
                    &resp,
                );
            });
        actions
    }
}

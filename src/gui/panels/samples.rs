//! Sample grids and frames: a step slider with play, following the shared step cursor, zoom
//! with crisp pixels, and region boxes drawn over any image with index, colour, opacity and
//! coordinates on hover. One texture per view, updated in place when the shown image changes.

use std::time::{Duration, Instant};

use egui::{Color32, ColorImage, RichText, TextureHandle, TextureOptions, Ui};

use crate::core::runview::{RunView, SampleRef};
use crate::gui::actions::{Purpose, UiAction};
use crate::gui::images::{sample_pixels, Images, Pixels};
use crate::gui::style;

use super::Ctx;

/// The Samples tab: the run's sample grids (fixed noise) and, for families that log them, its
/// reconstructions.
#[derive(Debug, Default)]
pub struct SamplesPanel {
    pub viewer: SampleViewer,
    pub recon: ReconViewer,
}

impl SamplesPanel {
    pub fn ui(&mut self, ui: &mut Ui, ctx: &Ctx<'_>) -> Vec<UiAction> {
        let Some(run) = ctx.current_run() else {
            return super::no_run(ui);
        };
        let mut actions = Vec::new();
        ui.horizontal(|ui| {
            ui.heading("Samples");
            if ui.button("Export PNG...").clicked() {
                actions.push(UiAction::Dialog(
                    Purpose::ExportSample,
                    "samples.png".into(),
                ));
            }
        });
        let view = &run.view;
        let has_recon = !view.reconstructions.is_empty();
        self.viewer.max_height = if has_recon {
            (ui.available_height() * 0.4).max(120.0)
        } else {
            f32::INFINITY
        };
        let mut cursor = ctx.cursor;
        // The trainer's word on the sample shown (prior samples of an untrained prior).
        let shown = view
            .samples
            .get(self.viewer.index.min(view.samples.len().saturating_sub(1)));
        if let Some(note) = shown.and_then(|s| s.note.as_deref()) {
            ui.label(RichText::new(note).color(crate::gui::style::WARNING));
        }
        // Fixed-noise samples carry no regions; reconstructions bring theirs.
        self.viewer
            .ui(ui, view, ctx.images, &mut cursor, &[], &mut actions);
        if has_recon {
            ui.separator();
            ui.heading("Reconstruction: ground truth | reconstruction | difference");
            self.recon.ui(ui, view, ctx.images, cursor, &mut actions);
        }
        if cursor != ctx.cursor {
            actions.push(UiAction::SetCursor(cursor));
        }
        actions
    }
}

/// A region box in image pixels: `[x1, y1, x2, y2]`.
pub type RegionBox = [f32; 4];

/// The sample view's state.
pub struct SampleViewer {
    /// Index into the run's samples; follows the cursor unless the user moved the slider.
    pub index: usize,
    pub follow_cursor: bool,
    pub playing: bool,
    pub zoom: f32,
    pub overlay_opacity: f32,
    pub show_boxes: bool,
    /// Largest height of the image area (the reconstruction view shares the tab).
    pub max_height: f32,
    last_advance: Instant,
    texture: Option<TextureHandle>,
    /// The image key shown last frame, and why an image could not be shown.
    pub shown: Option<String>,
    pub error: Option<String>,
}

impl std::fmt::Debug for SampleViewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SampleViewer")
            .field("index", &self.index)
            .field("shown", &self.shown)
            .finish_non_exhaustive()
    }
}

impl Default for SampleViewer {
    fn default() -> Self {
        Self {
            index: 0,
            follow_cursor: true,
            playing: false,
            zoom: 2.0,
            overlay_opacity: 0.8,
            show_boxes: true,
            max_height: f32::INFINITY,
            last_advance: Instant::now(),
            texture: None,
            shown: None,
            error: None,
        }
    }
}

impl SampleViewer {
    /// The sample to show for the cursor (or the slider), if the run has any.
    pub fn pick<'a>(&mut self, view: &'a RunView, cursor: Option<u64>) -> Option<&'a SampleRef> {
        if view.samples.is_empty() {
            return None;
        }
        if self.follow_cursor && !self.playing {
            self.index = match cursor {
                Some(c) => view.sample_near(c).unwrap_or(0),
                None => view.samples.len() - 1,
            };
        }
        self.index = self.index.min(view.samples.len() - 1);
        view.samples.get(self.index)
    }

    /// The controls and the image with its overlay. Moving the slider moves the cursor.
    pub fn ui(
        &mut self,
        ui: &mut Ui,
        view: &RunView,
        images: &Images,
        cursor: &mut Option<u64>,
        boxes: &[RegionBox],
        actions: &mut Vec<UiAction>,
    ) {
        let n = view.samples.len();
        if n == 0 {
            ui.label(
                RichText::new(
                    "No samples yet (the preset's logging.sample_every_steps sets how often).",
                )
                .weak(),
            );
            return;
        }
        if self.playing {
            if self.last_advance.elapsed() >= Duration::from_millis(300) {
                self.index = (self.index + 1) % n;
                self.last_advance = Instant::now();
                *cursor = view.samples.get(self.index).map(|s| s.step);
            }
            ui.ctx().request_repaint_after(Duration::from_millis(300));
        }
        // Borrowed from the view: a live sample's pixels are not copied every frame.
        let Some(sample) = self.pick(view, *cursor) else {
            return;
        };
        ui.horizontal_wrapped(|ui| {
            let mut idx = self.index;
            let slider = ui.add(
                egui::Slider::new(&mut idx, 0..=n - 1)
                    .text(format!("step {}", sample.step))
                    .show_value(false),
            );
            if slider.changed() {
                self.index = idx;
                self.follow_cursor = true;
                *cursor = view.samples.get(idx).map(|s| s.step);
            }
            if ui
                .button(if self.playing { "Pause" } else { "Play" })
                .clicked()
            {
                self.playing = !self.playing;
            }
            ui.checkbox(&mut self.follow_cursor, "follow cursor");
            let l = ui.label("Zoom").id;
            ui.add(egui::Slider::new(&mut self.zoom, 0.5..=8.0).step_by(0.5))
                .labelled_by(l);
            if !boxes.is_empty() {
                ui.checkbox(&mut self.show_boxes, "regions");
                ui.add(egui::Slider::new(&mut self.overlay_opacity, 0.0..=1.0).text("opacity"));
            }
        });
        let key = format!("{}#{}", view.run_dir, sample.step);
        if self.shown.as_deref() != Some(key.as_str()) {
            match sample_pixels(images, &view.run_dir, sample, actions) {
                Pixels::Ready(img) => {
                    show_in(&mut self.texture, ui.ctx(), "sample-view", img);
                    self.error = None;
                    self.shown = Some(key);
                }
                Pixels::Failed(e) => {
                    self.error = Some(e);
                    self.shown = Some(key);
                }
                Pixels::Waiting => {
                    ui.label(RichText::new("reading the sample...").weak());
                }
            }
        }
        if let Some(e) = &self.error {
            ui.colored_label(style::ERROR, e);
            return;
        }
        let Some(tex) = &self.texture else { return };
        ui.label(
            RichText::new(format!(
                "sample {} of {n}, step {}, {}x{} px, {}",
                self.index + 1,
                sample.step,
                sample.width,
                sample.height,
                sample.path
            ))
            .weak(),
        );
        egui::ScrollArea::both()
            .id_salt("sample-scroll")
            .max_height(self.max_height)
            .show(ui, |ui| {
                let size = tex.size_vec2() * self.zoom;
                let resp = ui.add(egui::Image::new((tex.id(), size)).sense(egui::Sense::hover()));
                let opacity = if self.show_boxes {
                    self.overlay_opacity
                } else {
                    0.0
                };
                region_overlay(ui, resp.rect, self.zoom, boxes, opacity, &resp);
            });
    }
}

/// Shows `img` in the texture `slot`: updated in place when it exists, loaded once otherwise
/// (crisp pixels when zoomed).
pub fn show_in(slot: &mut Option<TextureHandle>, ctx: &egui::Context, name: &str, img: ColorImage) {
    match slot {
        Some(t) => t.set(img, TextureOptions::NEAREST),
        None => *slot = Some(ctx.load_texture(name, img, TextureOptions::NEAREST)),
    }
}

/// A distinct colour per region index.
#[must_use]
pub fn region_color(i: usize) -> Color32 {
    // Golden-angle hues: neighbours in index order get far-apart colours.
    let h = (i as f32 * 0.618_034).fract();
    let c = egui::ecolor::Hsva::new(h, 0.85, 1.0, 1.0);
    Color32::from(c)
}

/// Draws region boxes (image pixels) over an image drawn at `rect` with `zoom`, numbered in
/// order; hovering shows the pixel under the pointer and the boxes that contain it.
pub fn region_overlay(
    ui: &Ui,
    rect: egui::Rect,
    zoom: f32,
    boxes: &[RegionBox],
    opacity: f32,
    resp: &egui::Response,
) {
    let painter = ui.painter_at(rect);
    if opacity > 0.0 {
        let font = egui::FontId::monospace(11.0);
        // Labels of boxes that share a corner (box 0 is often the whole frame) sit side by side.
        let mut placed: Vec<egui::Rect> = Vec::new();
        for (i, b) in boxes.iter().enumerate() {
            let r = egui::Rect::from_min_max(
                rect.min + egui::vec2(b[0], b[1]) * zoom,
                rect.min + egui::vec2(b[2], b[3]) * zoom,
            );
            let c = region_color(i).gamma_multiply(opacity);
            painter.rect_stroke(r, 0.0, egui::Stroke::new(1.5, c), egui::StrokeKind::Inside);
            let galley = painter.layout_no_wrap(i.to_string(), font.clone(), c);
            let mut at = egui::Rect::from_min_size(r.min + egui::vec2(3.0, 2.0), galley.size());
            while let Some(o) = placed.iter().find(|o| o.intersects(at)) {
                at = at.translate(egui::vec2(o.right() - at.left() + 4.0, 0.0));
            }
            placed.push(at);
            painter.galley(at.min, galley, c);
        }
    }
    if let Some(p) = resp.hover_pos() {
        let px = (p - rect.min) / zoom;
        let inside: Vec<String> = boxes
            .iter()
            .enumerate()
            .filter(|(_, b)| px.x >= b[0] && px.x < b[2] && px.y >= b[1] && px.y < b[3])
            .map(|(i, b)| format!("#{i} [{:.1}, {:.1}, {:.1}, {:.1}]", b[0], b[1], b[2], b[3]))
            .collect();
        let mut text = format!("x {:.1}, y {:.1}", px.x, px.y);
        if !inside.is_empty() {
            text.push('\n');
            text.push_str(&inside.join("\n"));
        }
        resp.clone().on_hover_text_at_pointer(text);
    }
}

/// Boxes of one frame repeated over `frames` frames laid side by side, `frame_w` apart.
#[must_use]
pub fn boxes_over_frames(boxes: &[RegionBox], frames: u32, frame_w: f32) -> Vec<RegionBox> {
    (0..frames)
        .flat_map(|f| {
            let dx = f as f32 * frame_w;
            boxes
                .iter()
                .map(move |b| [b[0] + dx, b[1], b[2] + dx, b[3]])
        })
        .collect()
}

/// `|a − b|` per channel, times `gain`, opaque.
#[must_use]
pub fn abs_diff(a: &ColorImage, b: &ColorImage, gain: f32) -> ColorImage {
    let pixels = a
        .pixels
        .iter()
        .zip(&b.pixels)
        .map(|(p, q)| {
            let d = |x: u8, y: u8| ((f32::from(x.abs_diff(y)) * gain).min(255.0)) as u8;
            Color32::from_rgb(d(p.r(), q.r()), d(p.g(), q.g()), d(p.b(), q.b()))
        })
        .collect();
    ColorImage {
        size: a.size,
        pixels,
        source_size: a.source_size,
    }
}

/// Ground truth | reconstruction | absolute difference of the logged reconstruction nearest
/// the step cursor, with the appearance and motion regions drawn over each.
pub struct ReconViewer {
    pub validation: bool,
    pub zoom: f32,
    pub gain: f32,
    pub show_boxes: bool,
    pub show_motion: bool,
    pub opacity: f32,
    textures: [Option<TextureHandle>; 3],
    /// What the textures show: run, step, split and gain.
    pub shown: Option<String>,
    pub error: Option<String>,
}

impl std::fmt::Debug for ReconViewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReconViewer")
            .field("shown", &self.shown)
            .finish_non_exhaustive()
    }
}

impl Default for ReconViewer {
    fn default() -> Self {
        Self {
            validation: false,
            zoom: 3.0,
            gain: 2.0,
            show_boxes: true,
            show_motion: false,
            opacity: 0.6,
            textures: [None, None, None],
            shown: None,
            error: None,
        }
    }
}

impl ReconViewer {
    pub fn ui(
        &mut self,
        ui: &mut Ui,
        view: &RunView,
        images: &Images,
        cursor: Option<u64>,
        actions: &mut Vec<UiAction>,
    ) {
        let split = if self.validation {
            "validation"
        } else {
            "train"
        };
        let Some(r) = view.reconstruction_near(split, cursor.unwrap_or(view.step)) else {
            ui.label(RichText::new(format!("No {split} reconstruction logged yet.")).weak());
            ui.checkbox(&mut self.validation, "validation windows");
            return;
        };
        ui.horizontal_wrapped(|ui| {
            ui.checkbox(&mut self.validation, "validation windows");
            ui.checkbox(&mut self.show_boxes, "appearance regions");
            ui.checkbox(&mut self.show_motion, "motion regions");
            ui.add(egui::Slider::new(&mut self.opacity, 0.0..=1.0).text("opacity"));
            ui.add(egui::Slider::new(&mut self.gain, 1.0..=8.0).text("diff gain"));
            let l = ui.label("Zoom").id;
            ui.add(egui::Slider::new(&mut self.zoom, 0.5..=8.0).step_by(0.5))
                .labelled_by(l);
        });
        let key = format!("{}#{}#{split}#{}", view.run_dir, r.step, self.gain);
        if self.shown.as_deref() != Some(key.as_str()) {
            match (
                sample_pixels(images, &view.run_dir, &r.truth, actions),
                sample_pixels(images, &view.run_dir, &r.recon, actions),
            ) {
                (Pixels::Ready(t), Pixels::Ready(rc)) if t.size == rc.size => {
                    let d = abs_diff(&t, &rc, self.gain);
                    let names = ["recon-truth", "recon-recon", "recon-diff"];
                    for ((tex, name), img) in self.textures.iter_mut().zip(names).zip([t, rc, d]) {
                        show_in(tex, ui.ctx(), name, img);
                    }
                    self.error = None;
                    self.shown = Some(key);
                }
                (Pixels::Ready(_), Pixels::Ready(_)) => {
                    self.error = Some("truth and reconstruction differ in size".into());
                    self.shown = Some(key);
                }
                (Pixels::Failed(e), _) | (_, Pixels::Failed(e)) => {
                    self.error = Some(e);
                    self.shown = Some(key);
                }
                _ => {
                    ui.label(RichText::new("reading the reconstruction...").weak());
                }
            }
        }
        if let Some(e) = &self.error {
            ui.colored_label(style::ERROR, e);
            return;
        }
        let [Some(truth), Some(recon), Some(diff)] = &self.textures else {
            return;
        };
        let tex = [truth, recon, diff];
        ui.label(
            RichText::new(format!(
                "{split} window, step {}, {} predicted frame(s), {} regions{}",
                r.step,
                r.frames,
                r.boxes.len(),
                if r.motion_boxes.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", {} motion regions (last frame pair)",
                        r.motion_boxes.len()
                    )
                }
            ))
            .weak(),
        );
        let frame_w = r.truth.width as f32 / r.frames.max(1) as f32;
        let mut boxes = Vec::new();
        if self.show_boxes {
            boxes.extend(boxes_over_frames(&r.boxes, r.frames, frame_w));
        }
        if self.show_motion {
            boxes.extend(boxes_over_frames(&r.motion_boxes, r.frames, frame_w));
        }
        egui::ScrollArea::both()
            .id_salt("recon-scroll")
            .show(ui, |ui| {
                ui.horizontal(|ui| {
                    for (t, label) in
                        tex.iter()
                            .zip(["ground truth", "reconstruction", "|difference|"])
                    {
                        ui.vertical(|ui| {
                            ui.label(label);
                            let size = t.size_vec2() * self.zoom;
                            let resp = ui
                                .add(egui::Image::new((t.id(), size)).sense(egui::Sense::hover()));
                            region_overlay(ui, resp.rect, self.zoom, &boxes, self.opacity, &resp);
                        });
                    }
                });
            });
    }
}

//! The Volume tab: a validation volume and its reconstruction as three orthogonal slices
//! (axial, coronal, sagittal; for a video clip: a frame, a row over time, a column over time)
//! of ground truth | reconstruction | difference. One crosshair is shared by every view:
//! clicking a point in one view moves the other two there. Window and level set the grey
//! scale; below, the codebook's use at each validation and the perplexity.

use egui::{Color32, ColorImage, RichText, Sense, Stroke, TextureHandle, TextureOptions, Ui};

use crate::core::runview::RunView;
use crate::gui::actions::UiAction;
use crate::gui::style;

use super::Ctx;

/// The voxels of a volume pair, `[C, D, H, W]` each, in [-1, 1] (or thereabouts).
#[derive(Debug, Clone, PartialEq)]
pub struct Voxels {
    pub step: u64,
    pub channels: usize,
    /// `[D, H, W]`.
    pub dims: [usize; 3],
    pub truth: Vec<f32>,
    pub recon: Vec<f32>,
}

/// An orthogonal view, named by the axis it holds fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plane {
    /// Fixed depth (a video's frame): an `H x W` image.
    Axial,
    /// Fixed row: a `D x W` image.
    Coronal,
    /// Fixed column: a `D x H` image.
    Sagittal,
}

impl Plane {
    pub const ALL: [Plane; 3] = [Plane::Axial, Plane::Coronal, Plane::Sagittal];

    /// The axis held fixed (0: D, 1: H, 2: W).
    #[must_use]
    pub fn fixed(self) -> usize {
        match self {
            Self::Axial => 0,
            Self::Coronal => 1,
            Self::Sagittal => 2,
        }
    }

    /// The image's (row, column) axes.
    #[must_use]
    pub fn axes(self) -> (usize, usize) {
        match self {
            Self::Axial => (1, 2),
            Self::Coronal => (0, 2),
            Self::Sagittal => (0, 1),
        }
    }

    fn label(self, video: bool) -> &'static str {
        match (self, video) {
            (Self::Axial, false) => "axial (depth)",
            (Self::Coronal, false) => "coronal (row)",
            (Self::Sagittal, false) => "sagittal (column)",
            (Self::Axial, true) => "frame",
            (Self::Coronal, true) => "row over time",
            (Self::Sagittal, true) => "column over time",
        }
    }
}

/// Which image of a view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    Truth,
    Recon,
    /// `|truth - reconstruction|`, black for none, white for a whole window.
    Difference,
}

/// The grey scale: values `level - window / 2 .. level + window / 2` map to black .. white.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowLevel {
    pub window: f32,
    pub level: f32,
}

impl Default for WindowLevel {
    /// The data's whole [-1, 1] range.
    fn default() -> Self {
        Self {
            window: 2.0,
            level: 0.0,
        }
    }
}

impl WindowLevel {
    fn grey(self, v: f32) -> u8 {
        let t = (v - (self.level - self.window / 2.0)) / self.window.max(1e-6);
        (t.clamp(0.0, 1.0) * 255.0).round() as u8
    }

    fn difference(self, d: f32) -> u8 {
        ((d.abs() / self.window.max(1e-6)).clamp(0.0, 1.0) * 255.0).round() as u8
    }
}

impl Voxels {
    fn index(&self, c: usize, at: [usize; 3]) -> usize {
        let [d, h, w] = self.dims;
        ((c * d + at[0]) * h + at[1]) * w + at[2]
    }

    /// The slice of `layer` through `at` in `plane`, in grey (one channel) or colour (three).
    #[must_use]
    pub fn slice(&self, plane: Plane, at: [usize; 3], layer: Layer, wl: WindowLevel) -> ColorImage {
        let (ra, ca) = plane.axes();
        let (rows, cols) = (self.dims[ra], self.dims[ca]);
        let mut pixels = Vec::with_capacity(rows * cols);
        for r in 0..rows {
            for c in 0..cols {
                let mut p = at;
                p[ra] = r;
                p[ca] = c;
                let value = |ch: usize| {
                    let i = self.index(ch, p);
                    let (t, x) = (
                        self.truth.get(i).copied().unwrap_or(0.0),
                        self.recon.get(i).copied().unwrap_or(0.0),
                    );
                    match layer {
                        Layer::Truth => wl.grey(t),
                        Layer::Recon => wl.grey(x),
                        Layer::Difference => wl.difference(t - x),
                    }
                };
                pixels.push(if self.channels >= 3 {
                    Color32::from_rgb(value(0), value(1), value(2))
                } else {
                    let g = value(0);
                    Color32::from_gray(g)
                });
            }
        }
        ColorImage::new([cols, rows], pixels)
    }

    /// The crosshair point in the middle of the volume.
    #[must_use]
    pub fn centre(&self) -> [usize; 3] {
        self.dims.map(|d| d / 2)
    }
}

type TextureKey = (u64, [usize; 3], u32, u32);

/// The Volume tab's state.
#[derive(Default)]
pub struct VolumePanel {
    /// The shared crosshair `[d, h, w]`.
    pub at: [usize; 3],
    pub wl: WindowLevel,
    /// The volume shown, and the run folder it came from.
    pub shown: Option<(String, Voxels)>,
    /// The read asked of the app: the run folder and the step.
    loading: Option<(String, u64)>,
    pub error: Option<String>,
    /// Per plane: what its three textures show, and the textures.
    textures: [Option<(TextureKey, [TextureHandle; 3])>; 3],
}

impl std::fmt::Debug for VolumePanel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumePanel")
            .field("at", &self.at)
            .field("wl", &self.wl)
            .field("step", &self.shown.as_ref().map(|(_, v)| v.step))
            .finish_non_exhaustive()
    }
}

impl VolumePanel {
    /// The voxels the app read for the run folder `key` at `step` (ignored if the panel moved
    /// on); a failed read is kept, so the same files are not read again every frame.
    pub fn loaded(&mut self, key: String, step: u64, voxels: Result<Voxels, String>) {
        if self.loading.as_ref() != Some(&(key.clone(), step)) {
            return;
        }
        self.loading = None;
        match voxels {
            Ok(v) => self.show(key, v),
            Err(e) => {
                self.error = Some(e);
                self.shown = Some((
                    key,
                    Voxels {
                        step,
                        channels: 0,
                        dims: [0; 3],
                        truth: Vec::new(),
                        recon: Vec::new(),
                    },
                ));
            }
        }
    }

    /// Takes the run's latest volume: its voxels when they came over the channel, else asks
    /// the app to read its files.
    fn sync(&mut self, view: &RunView, dir: &std::path::Path, actions: &mut Vec<UiAction>) {
        let key = dir.display().to_string();
        let Some(latest) = &view.volume else {
            return;
        };
        let current = self
            .shown
            .as_ref()
            .is_some_and(|(k, v)| *k == key && v.step == latest.step);
        let under_way = self
            .loading
            .as_ref()
            .is_some_and(|(k, s)| *k == key && *s == latest.step);
        if current || under_way {
            return;
        }
        if !latest.truth_data.is_empty() {
            let d = latest.dims.map(|x| x as usize);
            self.show(
                key,
                Voxels {
                    step: latest.step,
                    channels: latest.channels as usize,
                    dims: d,
                    truth: latest.truth_data.clone(),
                    recon: latest.recon_data.clone(),
                },
            );
            return;
        }
        self.loading = Some((key, latest.step));
        actions.push(UiAction::LoadVolume(
            dir.to_path_buf(),
            Box::new(latest.clone()),
        ));
    }

    /// Shows `v`, keeping the crosshair where it was when the size did not change.
    pub fn show(&mut self, key: String, v: Voxels) {
        let same_size = self.shown.as_ref().is_some_and(|(_, s)| s.dims == v.dims);
        if !same_size {
            self.at = v.centre();
        }
        self.error = None;
        self.shown = Some((key, v));
    }

    /// The tab for the run shown.
    pub fn ui(&mut self, ui: &mut Ui, ctx: &Ctx<'_>) -> Vec<UiAction> {
        let Some(run) = ctx.current_run() else {
            return super::no_run(ui);
        };
        let (view, dir) = (&run.view, &run.dir);
        let mut actions = Vec::new();
        self.sync(view, dir, &mut actions);
        ui.heading("Volume: ground truth | reconstruction | difference");
        egui::ScrollArea::vertical()
            .id_salt("volume-tab")
            .show(ui, |ui| {
                if let Some(e) = &self.error {
                    ui.colored_label(style::WARNING, e);
                }
                match &self.shown {
                    Some((_, v)) if v.channels > 0 => {
                        let v = v.clone();
                        self.viewer_ui(ui, &v);
                    }
                    _ if self.loading.is_some() => {
                        ui.label(RichText::new("Reading the volume...").weak());
                    }
                    _ => {
                        ui.label(
                            RichText::new(
                                "No volume yet: each validation of a volume family (the VQ-GAN) adds one.",
                            )
                            .weak(),
                        );
                    }
                }
                ui.separator();
                codebook_ui(ui, view);
            });
        actions
    }

    fn viewer_ui(&mut self, ui: &mut Ui, v: &Voxels) {
        let video = v.channels >= 3;
        ui.horizontal_wrapped(|ui| {
            ui.label(format!(
                "step {}: {} {}x{}x{}{}",
                v.step,
                if video { "clip" } else { "volume" },
                v.dims[0],
                v.dims[1],
                v.dims[2],
                if video {
                    " (frames x height x width)"
                } else {
                    ""
                }
            ));
            ui.separator();
            ui.add(
                egui::Slider::new(&mut self.wl.window, 0.01..=4.0)
                    .text("window")
                    .logarithmic(true),
            );
            ui.add(egui::Slider::new(&mut self.wl.level, -2.0..=2.0).text("level"));
            if ui
                .button("Reset")
                .on_hover_text("the whole [-1, 1] range, and the crosshair in the middle")
                .clicked()
            {
                self.wl = WindowLevel::default();
                self.at = v.centre();
            }
        });
        ui.label(
            RichText::new(format!(
                "crosshair at ({} {}, y {}, x {}): click a view to move the others there",
                if video { "t" } else { "d" },
                self.at[0],
                self.at[1],
                self.at[2]
            ))
            .weak(),
        );
        // Three rows of three views, sized to fit the tab without scrolling where possible.
        let width = ui.available_width() - 170.0;
        let height = ui.available_height() - 60.0;
        let box_side = (width / 3.0 - 8.0).min(height / 3.0 - 8.0).max(60.0);
        ui.horizontal(|ui| {
            ui.add_space(166.0);
            for title in ["ground truth", "reconstruction", "|difference|"] {
                ui.add_sized(
                    egui::vec2(box_side, 14.0),
                    egui::Label::new(RichText::new(title).weak()),
                );
            }
        });
        for plane in Plane::ALL {
            let axis = plane.fixed();
            let textures = self.textures_for(ui, v, plane);
            let (ra, ca) = plane.axes();
            let (rows, cols) = (v.dims[ra] as f32, v.dims[ca] as f32);
            let scale = (box_side / cols).min(box_side / rows).max(0.1);
            let size = egui::vec2(cols * scale, rows * scale);
            ui.horizontal(|ui| {
                ui.vertical(|ui| {
                    ui.set_width(160.0);
                    ui.label(RichText::new(plane.label(video)).strong());
                    let mut i = self.at[axis];
                    let max = v.dims[axis].saturating_sub(1);
                    ui.spacing_mut().slider_width = 100.0;
                    if ui
                        .add(egui::Slider::new(&mut i, 0..=max).integer().text(
                            if video && axis == 0 {
                                "t"
                            } else {
                                ["d", "y", "x"][axis]
                            },
                        ))
                        .changed()
                    {
                        self.at[axis] = i;
                    }
                });
                for (tex, layer) in
                    textures
                        .iter()
                        .zip(["ground truth", "reconstruction", "difference"])
                {
                    let resp = ui.add_sized(
                        egui::vec2(box_side, box_side),
                        egui::Image::new((tex.id(), size)).sense(Sense::click_and_drag()),
                    );
                    let name = format!("{} {layer}", plane.label(video));
                    resp.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Image, true, &name));
                    let rect = egui::Rect::from_center_size(resp.rect.center(), size);
                    // The crosshair: the other two axes' positions.
                    let x = rect.left() + (self.at[ca] as f32 + 0.5) * scale;
                    let y = rect.top() + (self.at[ra] as f32 + 0.5) * scale;
                    let stroke =
                        Stroke::new(1.0, Color32::from_rgba_unmultiplied(255, 210, 60, 160));
                    ui.painter().vline(x, rect.y_range(), stroke);
                    ui.painter().hline(rect.x_range(), y, stroke);
                    if let Some(p) = resp
                        .interact_pointer_pos()
                        .filter(|p| (resp.clicked() || resp.dragged()) && rect.contains(*p))
                    {
                        let col = ((p.x - rect.left()) / scale).floor().max(0.0) as usize;
                        let row = ((p.y - rect.top()) / scale).floor().max(0.0) as usize;
                        self.at[ca] = col.min(v.dims[ca].saturating_sub(1));
                        self.at[ra] = row.min(v.dims[ra].saturating_sub(1));
                    }
                }
            });
        }
    }

    /// The three textures of a view, made again only when what they show changed.
    fn textures_for(&mut self, ui: &Ui, v: &Voxels, plane: Plane) -> [TextureHandle; 3] {
        let key: TextureKey = (
            v.step,
            self.at,
            self.wl.window.to_bits(),
            self.wl.level.to_bits(),
        );
        let slot = &mut self.textures[plane as usize];
        if let Some((k, t)) = slot {
            // A view changes only with its own fixed axis, but the crosshair lines move; the
            // textures depend on the fixed coordinate and the grey scale alone.
            let fixed = plane.fixed();
            if k.0 == key.0 && k.1[fixed] == key.1[fixed] && k.2 == key.2 && k.3 == key.3 {
                return t.clone();
            }
        }
        let make = |layer: Layer, name: &str| {
            ui.ctx().load_texture(
                format!("volume-{plane:?}-{name}"),
                v.slice(plane, self.at, layer, self.wl),
                TextureOptions::NEAREST,
            )
        };
        let t = [
            make(Layer::Truth, "truth"),
            make(Layer::Recon, "recon"),
            make(Layer::Difference, "difference"),
        ];
        *slot = Some((key, t.clone()));
        t
    }
}

/// The codebook's use at each validation as a heat map, and the perplexity.
fn codebook_ui(ui: &mut Ui, view: &RunView) {
    if view.codes.is_empty() {
        return;
    }
    ui.horizontal_top(|ui| {
        ui.vertical(|ui| {
            ui.label(
                RichText::new("Codebook use at each validation (share of the codes' uses)")
                    .strong(),
            );
            super::explorer::heat_map(ui, &view.codes);
        });
        ui.separator();
        ui.vertical(|ui| {
            ui.label(RichText::new("Perplexity").strong());
            let lines: Vec<(&str, Vec<[f64; 2]>)> = ["perplexity", "val_perplexity"]
                .iter()
                .filter_map(|n| {
                    let s = view.series.get(*n)?;
                    let (x0, x1) = s.bounds().map(|(x, _)| (x[0], x[1]))?;
                    Some((*n, s.visible(x0, x1, 400)))
                })
                .collect();
            egui_plot::Plot::new("volume-perplexity")
                .width(360.0)
                .height(200.0)
                .legend(egui_plot::Legend::default())
                .show(ui, |pu| {
                    for (i, (name, pts)) in lines.into_iter().enumerate() {
                        pu.line(
                            egui_plot::Line::new(name, egui_plot::PlotPoints::from(pts))
                                .color(style::palette(i)),
                        );
                    }
                });
        });
    });
}

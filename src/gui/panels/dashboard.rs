//! Live plots of every scalar: level-of-detail drawing (O(pixels) points a frame, spikes
//! kept), EMA smoothing with the raw curve faint behind it, log-scale y, linked x axes, a
//! hover readout, the run's events as labelled markers, and the shared step cursor.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use egui::{Color32, Rect, RichText, Ui};
use egui_plot::{Legend, Line, Plot, PlotPoint, PlotPoints, VLine};
use serde::{Deserialize, Serialize};

use crate::core::numfmt;
use crate::core::protocol::MetricDef;
use crate::core::runview::{MarkerKind, RunView};
use crate::core::series::{EmaCache, Series};
use crate::gui::actions::{Purpose, QueueRequest, UiAction};
use crate::gui::sources::Shown;

use super::Ctx;

/// A family's dashboard layout, remembered across sessions: pinned plots first in the user's
/// order, hidden plots left out, and the groups the user opened or closed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Layout {
    pub pinned: Vec<String>,
    pub hidden: BTreeSet<String>,
    /// Groups whose open/closed state differs from the default (closed for settings,
    /// controllers and counters, open otherwise).
    pub toggled: BTreeSet<String>,
}

/// One group of plots, in the order they are shown.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    pub title: String,
    pub names: Vec<String>,
    pub open_by_default: bool,
}

/// Orders a run's scalars for the dashboard from its declarations: the pinned plots, then
/// the family's main metrics, then every group in a fixed order (losses, validation,
/// diagnostics, then the collapsed settings, controllers and counters), each in declaration
/// order; scalars nobody declared (older logs) come last, alphabetically. Hidden plots are
/// left out.
#[must_use]
pub fn sections(names: &[&str], metrics: &[MetricDef], layout: &Layout) -> Vec<Section> {
    // A companion is drawn on its host's plot, so it has none of its own while the host is there.
    let hosted = |n: &str| {
        metrics
            .iter()
            .any(|m| m.companion.as_deref() == Some(n) && names.contains(&m.name.as_str()))
    };
    let present = |n: &str| names.contains(&n) && !layout.hidden.contains(n) && !hosted(n);
    let mut taken: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    let mut push = |title: &str, list: Vec<String>, open: bool, taken: &mut BTreeSet<String>| {
        let list: Vec<String> = list
            .into_iter()
            .filter(|n| taken.insert(n.clone()))
            .collect();
        if !list.is_empty() {
            out.push(Section {
                title: title.to_string(),
                names: list,
                open_by_default: open,
            });
        }
    };
    let pinned: Vec<String> = layout
        .pinned
        .iter()
        .filter(|n| present(n))
        .cloned()
        .collect();
    push("pinned", pinned, true, &mut taken);
    let main: Vec<String> = metrics
        .iter()
        .filter(|m| m.main && present(&m.name))
        .map(|m| m.name.clone())
        .collect();
    push("main", main, true, &mut taken);
    let mut groups: BTreeMap<(u8, &str), (bool, Vec<String>)> = BTreeMap::new();
    for m in metrics.iter().filter(|m| present(&m.name)) {
        let g = groups
            .entry(m.kind.group())
            .or_insert_with(|| (!m.kind.collapsed(), Vec::new()));
        g.1.push(m.name.clone());
    }
    for ((_, title), (open, list)) in groups {
        push(title, list, open, &mut taken);
    }
    let (layers, mut other): (Vec<String>, Vec<String>) = names
        .iter()
        .filter(|n| present(n) && !metrics.iter().any(|m| m.name == **n))
        .map(|n| (*n).to_string())
        .partition(|n| n.starts_with("layer/"));
    // Watched modules' statistics (`layer/<module>/<what>`), in module order.
    push("layers", layers, true, &mut taken);
    other.sort();
    push("other", other, true, &mut taken);
    out
}

/// Dashboard settings and caches.
#[derive(Debug)]
pub struct Dashboard {
    /// EMA weight in [0, 0.99].
    pub smoothing: f64,
    pub log_y: bool,
    pub show_raw: bool,
    pub columns: usize,
    pub filter: String,
    pub show_markers: bool,
    ema: HashMap<(usize, String), EmaCache>,
    /// Where each plot was drawn last frame (for PNG export).
    pub plot_rects: HashMap<String, Rect>,
    /// Points drawn last frame, summed over plots: the LOD's work (for the bench and tests).
    pub points_drawn: usize,
    /// Each family's layout (by family name), saved by the app when it changes.
    pub layouts: BTreeMap<String, Layout>,
    /// The step a right click on a plot picked (its menu branches from the checkpoint at or
    /// before it).
    branch_pick: Option<u64>,
    /// Each group's mean, lowest and highest at each step, per plot: `(band, scalar)` to the
    /// members' smoothed lengths it was made from and `[step, mean, min, max]` rows.
    bands: HashMap<(usize, String), BandCache>,
}

/// A band's rows and the members' smoothed lengths they were made from.
type BandCache = (Vec<usize>, Vec<[f64; 4]>);

impl Default for Dashboard {
    fn default() -> Self {
        Self {
            smoothing: 0.6,
            log_y: false,
            show_raw: true,
            columns: 2,
            filter: String::new(),
            show_markers: true,
            ema: HashMap::new(),
            plot_rects: HashMap::new(),
            points_drawn: 0,
            layouts: BTreeMap::new(),
            branch_pick: None,
            bands: HashMap::new(),
        }
    }
}

/// A run's second line (a metric's companion): the run's colour, lightened.
fn companion_color(c: Color32) -> Color32 {
    let mix = |v: u8| ((u16::from(v) + 2 * 255) / 3) as u8;
    Color32::from_rgb(mix(c.r()), mix(c.g()), mix(c.b()))
}

/// Colour of a marker kind.
#[must_use]
pub fn marker_color(kind: MarkerKind) -> Color32 {
    match kind {
        MarkerKind::Phase => Color32::from_rgb(110, 170, 240),
        MarkerKind::Checkpoint => Color32::from_rgb(120, 200, 120),
        MarkerKind::Health => Color32::from_rgb(240, 110, 90),
        MarkerKind::Hyperparameter => Color32::from_rgb(230, 200, 90),
        MarkerKind::Pause => Color32::GRAY,
        MarkerKind::Log => Color32::from_rgb(230, 150, 60),
        MarkerKind::End => Color32::WHITE,
        MarkerKind::Intervention => Color32::from_rgb(200, 130, 230),
        MarkerKind::Switch => Color32::from_rgb(240, 90, 200),
        MarkerKind::Sweep => Color32::from_rgb(90, 210, 220),
    }
}

impl Dashboard {
    /// The Dashboard tab: the toolbar, the primary run's events, and every scalar of the runs
    /// shown (the primary and those overlaid). Clicking a plot or an event moves the cursor.
    pub fn ui(&mut self, ui: &mut Ui, ctx: &Ctx<'_>) -> Vec<UiAction> {
        self.toolbar_ui(ui);
        let mut cursor = ctx.cursor;
        let mut events_actions = Vec::new();
        if let Some(r) = ctx.current_run() {
            let view = &r.view;
            egui::Panel::bottom("events-panel")
                .resizable(true)
                .default_size(150.0)
                .show(ui, |ui| {
                    ui.label(RichText::new(format!("Events ({})", view.markers.len())).strong());
                    events_actions = Self::events_ui(ui, view, &r.dir, &mut cursor);
                });
        }
        let mut module_actions = Vec::new();
        if let Some(r) = ctx.current_run().filter(|r| !r.view.modules.is_empty()) {
            egui::CollapsingHeader::new(format!(
                "Modules ({}): watch a layer",
                r.view.modules.len()
            ))
            .id_salt("dash-modules")
            .default_open(false)
            .show(ui, |ui| module_actions = modules_ui(ui, &r.view, ctx.live));
        }
        let filter = self.filter.clone();
        let mut actions = self.plots_ui(ui, &ctx.shown_runs(), &mut cursor, &filter);
        actions.extend(module_actions);
        actions.extend(events_actions);
        if cursor != ctx.cursor {
            actions.push(UiAction::SetCursor(cursor));
        }
        actions
    }

    /// The plots of `runs` whose names match `filter` (the Controller tab's timeline).
    pub fn filtered_ui(
        &mut self,
        ui: &mut Ui,
        ctx: &Ctx<'_>,
        runs: &[Shown<'_>],
        filter: &str,
    ) -> Vec<UiAction> {
        let mut cursor = ctx.cursor;
        let mut actions = self.plots_ui(ui, runs, &mut cursor, filter);
        if cursor != ctx.cursor {
            actions.push(UiAction::SetCursor(cursor));
        }
        actions
    }

    /// The toolbar: smoothing, log scale, raw curve, layout, filter.
    pub fn toolbar_ui(&mut self, ui: &mut Ui) {
        ui.horizontal_wrapped(|ui| {
            let l = ui.label("Smoothing").id;
            ui.add(egui::Slider::new(&mut self.smoothing, 0.0..=0.99).fixed_decimals(2))
                .labelled_by(l)
                .on_hover_text("EMA weight, debiased (0 = raw)");
            ui.checkbox(&mut self.show_raw, "raw curve");
            ui.checkbox(&mut self.log_y, "log y")
                .on_hover_text("log10 scale; values <= 0 are left out");
            ui.checkbox(&mut self.show_markers, "event markers");
            let l = ui.label("Columns").id;
            ui.add(egui::DragValue::new(&mut self.columns).range(1..=4))
                .labelled_by(l);
            let l = ui.label("Filter").id;
            ui.add(
                egui::TextEdit::singleline(&mut self.filter)
                    .desired_width(140.0)
                    // A placeholder, not a value: italic and dim.
                    .hint_text(
                        RichText::new("e.g. loss, val_")
                            .italics()
                            .color(ui.visuals().weak_text_color().gamma_multiply(0.7)),
                    ),
            )
            .labelled_by(l)
            .on_hover_text("plots whose names contain any of the comma-separated words");
        });
    }

    /// Every scalar of the shown runs that passes `filter` (the dashboard's own, or the
    /// Controller tab's), one plot each. Clicking a plot moves `cursor`.
    fn plots_ui(
        &mut self,
        ui: &mut Ui,
        runs: &[Shown<'_>],
        cursor: &mut Option<u64>,
        filter: &str,
    ) -> Vec<UiAction> {
        let mut actions = Vec::new();
        let filtered: Vec<&str> = {
            let mut names: Vec<&str> = runs
                .iter()
                .flat_map(|r| r.view.series.keys())
                .map(String::as_str)
                .filter(|n| matches_filter(filter, n))
                .collect();
            names.sort_unstable();
            names.dedup();
            names
        };
        self.points_drawn = 0;
        if filtered.is_empty() {
            ui.label(
                RichText::new("No scalars yet: start a run or open one from the Runs tab.").weak(),
            );
            return actions;
        }
        let (family, metrics) = runs.first().map_or(("", &[][..]), |r| {
            (r.view.family.as_str(), &r.view.metrics[..])
        });
        let layout = self.layouts.get(family).cloned().unwrap_or_default();
        // A filter (or the Controller tab) shows its matches in one flat list.
        let sections = if filter.trim().is_empty() {
            sections(&filtered, metrics, &layout)
        } else {
            vec![Section {
                title: String::new(),
                names: sections(&filtered, metrics, &Layout::default())
                    .into_iter()
                    .flat_map(|s| s.names)
                    .collect(),
                open_by_default: true,
            }]
        };
        let hidden = layout.hidden.len();
        let cols = self.columns.max(1);
        let width = (ui.available_width() - 8.0 * (cols as f32 - 1.0)) / cols as f32;
        let group = egui::Id::unique("dash-x-link");
        let mut edit: Option<LayoutEdit> = None;
        egui::ScrollArea::vertical()
            .id_salt("dash-scroll")
            .show(ui, |ui| {
                for section in &sections {
                    let mut draw = |ui: &mut Ui, edit: &mut Option<LayoutEdit>| {
                        for row in section.names.chunks(cols) {
                            ui.horizontal_top(|ui| {
                                for name in row {
                                    ui.allocate_ui(egui::vec2(width, 246.0), |ui| {
                                        ui.vertical(|ui| {
                                            let pinned = layout.pinned.contains(name);
                                            if let Some(a) = self.plot_ui(
                                                ui, name, runs, cursor, group, width, pinned, edit,
                                            ) {
                                                actions.push(a);
                                            }
                                        });
                                    });
                                }
                            });
                        }
                    };
                    if section.title.is_empty() {
                        draw(ui, &mut edit);
                        continue;
                    }
                    let mut draw_section = |ui: &mut Ui, edit: &mut Option<LayoutEdit>| {
                        if section.title == crate::core::protocol::MetricKind::Timing.group().1 {
                            if let Some(r) = runs.first() {
                                stacked_time_ui(ui, r.view, group, width * cols as f32);
                            }
                        }
                        draw(ui, edit);
                    };
                    let open = section.open_by_default != layout.toggled.contains(&section.title);
                    let resp = egui::CollapsingHeader::new(format!(
                        "{} ({})",
                        section.title,
                        section.names.len()
                    ))
                    .id_salt(("dash-section", &section.title))
                    .open(Some(open))
                    .show(ui, |ui| draw_section(ui, &mut edit));
                    if resp.header_response.clicked() {
                        edit = Some(LayoutEdit::Toggle(section.title.clone()));
                    }
                }
                if hidden > 0
                    && filter.trim().is_empty()
                    && ui.button(format!("Show {hidden} hidden plot(s)")).clicked()
                {
                    edit = Some(LayoutEdit::ShowHidden);
                }
            });
        if let Some(e) = edit {
            let layout = self.layouts.entry(family.to_string()).or_default();
            e.apply(layout);
            actions.push(UiAction::SaveLayout);
        }
        actions
    }

    #[allow(clippy::too_many_arguments)]
    fn plot_ui(
        &mut self,
        ui: &mut Ui,
        name: &str,
        runs: &[Shown<'_>],
        cursor: &mut Option<u64>,
        group: egui::Id,
        width: f32,
        pinned: bool,
        edit: &mut Option<LayoutEdit>,
    ) -> Option<UiAction> {
        let mut action = None;
        ui.horizontal(|ui| {
            ui.label(RichText::new(name).strong());
            let pin = if pinned { "unpin" } else { "pin" };
            if ui
                .small_button(pin)
                .on_hover_text("pinned plots come first, in the order you pin them")
                .clicked()
            {
                *edit = Some(LayoutEdit::Pin(name.to_string(), !pinned));
            }
            if pinned
                && ui
                    .small_button("up")
                    .on_hover_text("move it earlier")
                    .clicked()
            {
                *edit = Some(LayoutEdit::Earlier(name.to_string()));
            }
            if ui.small_button("hide").clicked() {
                *edit = Some(LayoutEdit::Hide(name.to_string()));
            }
            if let Some((_, y)) = runs
                .first()
                .and_then(|r| r.view.series.get(name))
                .and_then(Series::last)
            {
                ui.label(RichText::new(numfmt::num(y)).weak())
                    .on_hover_text(format!("last value: {y}"));
            }
            if ui
                .small_button("CSV")
                .on_hover_text("export this plot's data as CSV")
                .clicked()
            {
                action = Some(UiAction::Dialog(
                    Purpose::ExportPlotCsv(name.to_string()),
                    format!("{name}.csv"),
                ));
            }
            if ui
                .small_button("PNG")
                .on_hover_text("export this plot as PNG")
                .clicked()
            {
                action = Some(UiAction::Dialog(
                    Purpose::ExportPlotPng(name.to_string()),
                    format!("{name}.png"),
                ));
            }
        });
        let log_y = self.log_y;
        let ty = move |y: f64| {
            if log_y {
                (y > 0.0).then(|| y.log10())
            } else {
                Some(y)
            }
        };
        // Smooth incrementally (only new points), then draw from borrowed series: nothing
        // proportional to the history is copied per frame.
        for r in runs {
            if let Some(series) = r.view.series.get(name) {
                let cache = self.ema.entry((r.key, name.to_string())).or_default();
                cache.update(series, self.smoothing);
            }
        }
        // Its companion (fake logits beside real ones), smoothed like the metric itself.
        let companion: Vec<(&Shown<'_>, String)> = runs
            .iter()
            .filter_map(|r| {
                let other = r
                    .view
                    .metrics
                    .iter()
                    .find(|m| m.name == name)?
                    .companion
                    .clone()?;
                r.view.series.contains_key(&other).then_some((r, other))
            })
            .collect();
        for (r, other) in &companion {
            if let Some(series) = r.view.series.get(other) {
                let cache = self.ema.entry((r.key, other.clone())).or_default();
                cache.update(series, self.smoothing);
            }
        }
        // Groups drawn as bands: the mean and range of their runs' smoothed curves, made
        // again only when a member's curve grew.
        let mut band_ids: Vec<usize> = runs.iter().filter_map(|r| r.band).collect();
        band_ids.sort_unstable();
        band_ids.dedup();
        for &b in &band_ids {
            let members: Vec<&Series> = runs
                .iter()
                .filter(|r| r.band == Some(b))
                .filter_map(|r| {
                    self.ema
                        .get(&(r.key, name.to_string()))
                        .map(|c| &c.smoothed)
                })
                .collect();
            let lens: Vec<usize> = members.iter().map(|s| s.len()).collect();
            let key = (b, name.to_string());
            if self.bands.get(&key).is_none_or(|(l, _)| *l != lens) {
                self.bands.insert(key, (lens, band_rows(&members)));
            }
        }
        let bands: Vec<(String, Color32, &Vec<[f64; 4]>)> = band_ids
            .iter()
            .filter_map(|b| {
                let first = runs.iter().find(|r| r.band == Some(*b))?;
                let n = runs.iter().filter(|r| r.band == Some(*b)).count();
                let rows = &self.bands.get(&(*b, name.to_string()))?.1;
                Some((
                    format!("{} (mean of {n})", first.view.name),
                    first.color,
                    rows,
                ))
            })
            .collect();
        let ema = &self.ema;
        let prepared: Vec<(&Shown<'_>, &Series, &Series)> = runs
            .iter()
            // A group's runs are drawn as its band.
            .filter(|r| r.band.is_none() || std::ptr::eq(*r, &runs[0]))
            .filter_map(|r| {
                let series = r.view.series.get(name)?;
                let smooth = &ema.get(&(r.key, name.to_string()))?.smoothed;
                Some((r, series, smooth))
            })
            .collect();
        // The metric's declared reference (a baseline), drawn dashed for the primary run.
        let reference = runs.first().and_then(|r| {
            let other = r
                .view
                .metrics
                .iter()
                .find(|m| m.name == name)?
                .baseline
                .as_deref()?;
            Some((format!("{other} (baseline)"), r.view.series.get(other)?))
        });
        let companion: Vec<(String, Color32, &Series)> = companion
            .iter()
            .filter_map(|(r, other)| {
                let smooth = &ema.get(&(r.key, other.clone()))?.smoothed;
                let label = if runs.len() > 1 {
                    format!("{} {other}", r.view.name)
                } else {
                    other.clone()
                };
                Some((label, companion_color(r.color), smooth))
            })
            .collect();
        let markers = self.show_markers;
        let show_raw = self.show_raw && self.smoothing > 0.0;
        let mut drawn = 0usize;
        let label_name = name.to_string();
        // A constant (a learning rate between changes) would otherwise be scaled up until
        // rounding noise fills the plot: give flat curves a visible band around their value.
        let (lo, hi) = prepared
            .iter()
            .filter_map(|(_, s, _)| s.bounds())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (_, y)| {
                (a.min(y[0]), b.max(y[1]))
            });
        let mut plot = Plot::new(("scalar", name));
        // The baseline joins the range when it is near the curves; one far off (a copy-last
        // PSNR of 35 dB beside curves at 10-15) would flatten them, so it is pinned at the
        // plot's edge with its value instead.
        let baseline = reference.as_ref().and_then(|(label, s)| {
            let (_, b) = s.last()?;
            let pinned = !baseline_in_range(b, lo, hi).unwrap_or(true);
            Some((label.clone(), b, pinned))
        });
        let draw_reference = !baseline.as_ref().is_some_and(|(_, _, pinned)| *pinned);
        if let Some(y) = baseline
            .as_ref()
            .filter(|(_, _, pinned)| !pinned)
            .and_then(|(_, b, _)| ty(*b))
        {
            plot = plot.include_y(y);
        }
        if lo.is_finite() && hi - lo <= 1e-6 * lo.abs().max(hi.abs()).max(1e-30) {
            let pad = 0.1 * lo.abs().max(1e-12);
            for y in [lo - pad, hi + pad] {
                if let Some(y) = ty(y) {
                    plot = plot.include_y(y);
                }
            }
        }
        // Marker labels sit in a strip of their own above the plot: the legend and the curves
        // never cover them.
        let strip = markers.then(|| {
            ui.allocate_exact_size(egui::vec2(width, 13.0), egui::Sense::hover())
                .1
        });
        let resp = plot
            .width(width)
            .height(200.0)
            .link_axis(group, [true, false])
            .link_cursor(group, [true, false])
            .allow_scroll(false)
            .legend(Legend::default().follow_insertion_order(true))
            .x_grid_spacer(egui_plot::uniform_grid_spacer(|g| {
                numfmt::grid_steps(g.base_step_size, true)
            }))
            .x_axis_formatter(|m, _| numfmt::tick(m.value, m.step_size))
            .y_grid_spacer(if log_y {
                egui_plot::log_grid_spacer(10)
            } else {
                egui_plot::uniform_grid_spacer(|g| numfmt::grid_steps(g.base_step_size, false))
            })
            .y_axis_formatter(move |m, _| {
                if log_y {
                    // A log axis's ticks are exponents: label them with the value.
                    let v = 10f64.powf(m.value);
                    if m.step_size >= 1.0 {
                        numfmt::sig(v, 1)
                    } else {
                        numfmt::sig(v, 2)
                    }
                } else {
                    numfmt::tick(m.value, m.step_size)
                }
            })
            .label_formatter(move |pos| {
                let p = match pos {
                    egui_plot::HoverPosition::NearDataPoint { position, .. }
                    | egui_plot::HoverPosition::Elsewhere { position } => *position,
                };
                let y = if log_y { 10f64.powf(p.y) } else { p.y };
                Some(format!(
                    "{label_name}\nstep {:.0}\n{}",
                    p.x,
                    numfmt::sig(y, 6)
                ))
            })
            .show(ui, |pu| {
                let bounds = pu.plot_bounds();
                let px = pu.response().rect.width().max(50.0) as usize;
                for (r, series, smooth) in &prepared {
                    let (x0, x1) = if pu.auto_bounds().x {
                        series.bounds().map_or((0.0, 1.0), |(x, _)| (x[0], x[1]))
                    } else {
                        (bounds.min()[0], bounds.max()[0])
                    };
                    // A branch's parent: its curve up to the fork only.
                    let x1 = r.before.map_or(x1, |b| x1.min(b as f64));
                    if x1 < x0 {
                        continue;
                    }
                    let map = |pts: Vec<[f64; 2]>| -> Vec<[f64; 2]> {
                        pts.into_iter()
                            .filter_map(|[x, y]| ty(y).map(|y| [x, y]))
                            .collect()
                    };
                    let run_label = if runs.len() > 1 {
                        r.view.name.clone()
                    } else {
                        name.to_string()
                    };
                    if show_raw {
                        let raw = map(series.visible(x0, x1, px));
                        drawn += raw.len();
                        // Same name as the smoothed line: one legend entry toggles both.
                        pu.line(
                            Line::new(run_label.clone(), PlotPoints::from(raw))
                                .color(r.color.gamma_multiply(0.25))
                                .width(1.0)
                                .allow_band(false),
                        );
                    }
                    let pts = map(smooth.visible(x0, x1, px));
                    drawn += pts.len();
                    pu.line(
                        // egui_plot's own band drawing joins same-column points into
                        // filled shapes that misdraw step changes; the LOD already bounds
                        // the points to about two per pixel.
                        Line::new(run_label, PlotPoints::from(pts))
                            .color(r.color)
                            .width(1.6)
                            .allow_band(false),
                    );
                }
                for (label, color, rows) in &bands {
                    let rows: Vec<&[f64; 4]> = rows
                        .iter()
                        .filter(|r| ty(r[2]).is_some() && ty(r[3]).is_some())
                        .collect();
                    // About two rows per pixel column: a long group stays cheap to draw.
                    let stride = (rows.len() / (2 * px).max(1)).max(1);
                    let rows: Vec<&[f64; 4]> = rows.into_iter().step_by(stride).collect();
                    let xs: Vec<f64> = rows.iter().map(|r| r[0]).collect();
                    let lo: Vec<f64> = rows.iter().filter_map(|r| ty(r[2])).collect();
                    let hi: Vec<f64> = rows.iter().filter_map(|r| ty(r[3])).collect();
                    drawn += 3 * xs.len();
                    pu.add(
                        egui_plot::FilledArea::new(label.clone(), &xs, &lo, &hi)
                            .fill_color(color.gamma_multiply(0.25)),
                    );
                    let mean: Vec<[f64; 2]> = rows
                        .iter()
                        .filter_map(|r| ty(r[1]).map(|y| [r[0], y]))
                        .collect();
                    pu.line(
                        Line::new(label.clone(), PlotPoints::from(mean))
                            .color(*color)
                            .width(1.8)
                            .allow_band(false),
                    );
                }
                // A second line's points over its whole range, or the view's when zoomed.
                let auto_x = pu.auto_bounds().x;
                let points = |s: &Series, follow_view: bool| -> Vec<[f64; 2]> {
                    let (x0, x1) = if follow_view && !auto_x {
                        (bounds.min()[0], bounds.max()[0])
                    } else {
                        s.bounds().map_or((0.0, 1.0), |(x, _)| (x[0], x[1]))
                    };
                    s.visible(x0, x1, px)
                        .into_iter()
                        .filter_map(|[x, y]| ty(y).map(|y| [x, y]))
                        .collect()
                };
                for (label, color, smooth) in &companion {
                    let pts = points(smooth, true);
                    drawn += pts.len();
                    pu.line(
                        Line::new(label.clone(), PlotPoints::from(pts))
                            .color(*color)
                            .width(1.6)
                            .style(egui_plot::LineStyle::dashed_dense())
                            .allow_band(false),
                    );
                }
                if let Some((label, series)) = reference.as_ref().filter(|_| draw_reference) {
                    let pts = points(series, false);
                    drawn += pts.len();
                    pu.line(
                        Line::new(label.clone(), PlotPoints::from(pts))
                            .color(Color32::from_gray(170))
                            .style(egui_plot::LineStyle::dashed_loose())
                            .width(1.2)
                            .allow_band(false),
                    );
                }
                // Marker lines only; their labels are painted in screen space below, so they
                // never feed back into the auto bounds.
                if markers {
                    if let Some(primary) = runs.first() {
                        for m in primary
                            .view
                            .markers
                            .iter()
                            .filter(|m| m.kind != MarkerKind::Pause)
                        {
                            let c = marker_color(m.kind).gamma_multiply(0.6);
                            pu.vline(VLine::new("", m.step as f64).color(c).width(1.0));
                        }
                    }
                    // Each overlaid branch's fork, dashed: where it leaves its parent.
                    for r in runs.iter().skip(1) {
                        for m in r.view.markers.iter().filter(|m| m.label == "branched") {
                            pu.vline(
                                VLine::new("", m.step as f64)
                                    .color(marker_color(m.kind).gamma_multiply(0.6))
                                    .style(egui_plot::LineStyle::dashed_dense())
                                    .width(1.0),
                            );
                        }
                    }
                }
                if let Some(c) = *cursor {
                    pu.vline(VLine::new("", c as f64).color(Color32::WHITE).width(1.5));
                }
                if pu.response().clicked() {
                    pu.pointer_coordinate().map(|p| p.x)
                } else {
                    None
                }
            });
        self.points_drawn += drawn;
        self.plot_rects.insert(name.to_string(), resp.response.rect);
        if let Some(strip) = &strip {
            marker_labels(ui, strip.rect, &resp.transform, runs);
            marker_hover(strip, &resp.transform, runs);
            marker_hover(&resp.response, &resp.transform, runs);
        }
        if let Some((label, b, true)) = &baseline {
            pinned_baseline(ui, resp.transform.frame(), label, *b, *b > hi);
        }
        if let Some(x) = resp.inner {
            *cursor = Some(x.max(0.0).round() as u64);
        }
        // Right click: branch the run shown from its checkpoint at or before that step.
        if resp.response.secondary_clicked() {
            self.branch_pick = resp
                .response
                .interact_pointer_pos()
                .map(|p| resp.transform.value_from_position(p).x.max(0.0).round() as u64);
        }
        if let Some(primary) = runs.first() {
            let at = self.branch_pick.and_then(|pick| {
                primary
                    .view
                    .markers
                    .iter()
                    .filter(|m| m.kind == MarkerKind::Checkpoint && m.step <= pick)
                    .map(|m| m.step)
                    .max()
            });
            resp.response.context_menu(|ui| match at {
                Some(step) => {
                    if ui
                        .button(format!("Branch from the checkpoint of step {step}..."))
                        .clicked()
                    {
                        action = Some(UiAction::BranchAt(
                            std::path::PathBuf::from(&primary.view.run_dir),
                            step,
                        ));
                        ui.close();
                    }
                }
                None => {
                    ui.label("no checkpoint at or before this step");
                }
            });
        }
        action
    }

    /// The primary run's events as a list; clicking a row moves the cursor to its step. A
    /// checkpoint can be branched from ("Branch here..." sets the branch up in the Runs tab);
    /// a live edit can be undone (a branch from the checkpoint it wrote, with the old value)
    /// or tried both ways (A/B: two branches from that checkpoint), each queued.
    fn events_ui(
        ui: &mut Ui,
        view: &RunView,
        dir: &std::path::Path,
        cursor: &mut Option<u64>,
    ) -> Vec<UiAction> {
        let mut actions = Vec::new();
        let branch = |step: u64, field: &str, value: f64, tag: &str| {
            UiAction::Queue(QueueRequest::Branch {
                parent: dir.to_path_buf(),
                at: Some(step),
                set: vec![(field.to_string(), serde_json::Value::from(value))],
                name: Some(format!("{}-{tag}{step}", view.name)),
                // Undo and A/B join the dashboard beside this run as they are made.
                overlay: true,
            })
        };
        egui::ScrollArea::vertical()
            .id_salt("event-list")
            .show(ui, |ui| {
                egui::Grid::new("events")
                    .num_columns(4)
                    .striped(true)
                    .show(ui, |ui| {
                        for m in view.markers.iter().rev() {
                            let selected = *cursor == Some(m.step);
                            if ui
                                .selectable_label(selected, format!("{:>7}", m.step))
                                .clicked()
                            {
                                *cursor = Some(m.step);
                            }
                            ui.colored_label(
                                marker_color(m.kind),
                                format!("{:?}", m.kind).to_lowercase(),
                            );
                            ui.label(&m.detail);
                            ui.horizontal(|ui| match (m.kind, &m.edit) {
                                (MarkerKind::Checkpoint, _)
                                    if ui
                                        .small_button("Branch here...")
                                        .on_hover_text("a new run from this checkpoint, with fields changed or none (set up in the Runs tab)")
                                        .clicked() =>
                                {
                                    actions.push(UiAction::BranchAt(dir.to_path_buf(), m.step));
                                }
                                (MarkerKind::Hyperparameter, Some(e)) => {
                                    if ui
                                        .small_button("Undo")
                                        .on_hover_text(format!("queue a branch from the checkpoint this edit wrote (step {}) with {} = {}", m.step, e.field, e.old))
                                        .clicked()
                                    {
                                        actions.push(branch(m.step, &e.field, e.old, "undo"));
                                    }
                                    if ui
                                        .small_button("A/B")
                                        .on_hover_text(format!("queue two branches from step {}: {} = {} (A) and {} (B), overlaid on this run's plots as they are made", m.step, e.field, e.old, e.new))
                                        .clicked()
                                    {
                                        actions.push(branch(m.step, &e.field, e.old, "A"));
                                        actions.push(branch(m.step, &e.field, e.new, "B"));
                                    }
                                }
                                _ => {}
                            });
                            ui.end_row();
                        }
                    });
            });
        actions
    }
}

/// The run's module tree: each module's parameters and, once watched, its latest statistics
/// and weight histogram; "watch" captures it from the next step (runs started here only).
fn modules_ui(ui: &mut Ui, view: &RunView, live: bool) -> Vec<UiAction> {
    use crate::core::protocol::{Command, WatchSpec};
    let mut actions = Vec::new();
    let watch = |module: &str, steps: Option<u64>| {
        UiAction::Command(Command::Watch(WatchSpec {
            module: module.to_string(),
            every: 1,
            steps,
        }))
    };
    let why = "the run has ended";
    // The generator against the critic: each network's gradient norm over its watched
    // modules (a GAN whose critic's gradients dwarf the generator's, or the other way, shows
    // here first).
    let mut nets: BTreeMap<&str, f64> = BTreeMap::new();
    for (module, s) in &view.layers {
        if let Some(g) = s.grad_norm {
            let net = module.split('.').next().unwrap_or(module);
            *nets.entry(net).or_insert(0.0) += g * g;
        }
    }
    if nets.len() >= 2 {
        let line: Vec<String> = nets
            .iter()
            .map(|(n, sq)| format!("{n} {}", numfmt::num(sq.sqrt())))
            .collect();
        ui.label(format!(
            "Gradient balance over the watched modules (|grad| per network): {}",
            line.join(" : ")
        ));
    }
    egui::ScrollArea::vertical()
        .id_salt("dash-modules-scroll")
        .max_height(260.0)
        .show(ui, |ui| {
            egui::Grid::new("dash-modules-grid")
                .striped(true)
                .num_columns(8)
                .show(ui, |ui| {
                    for (h, hover) in [
                        ("module", ""),
                        ("params", ""),
                        ("|grad|", "the gradient's norm at its optimiser's step"),
                        ("update/weight", "the step's change against the weight (about 1e-3 is healthy for Adam)"),
                        ("inactive", "the share of the activations it feeds at or below zero: dead units after a ReLU, the negative side of a leaky ReLU, GELU or SiLU"),
                        ("non-finite", "NaN or infinite gradient values"),
                        ("weights", "a 64-bin histogram of its weights"),
                        ("", ""),
                    ] {
                        let l = ui.label(RichText::new(h).strong());
                        if !hover.is_empty() {
                            l.on_hover_text(hover);
                        }
                    }
                    ui.end_row();
                    for (module, params) in &view.modules {
                        ui.monospace(module);
                        ui.label(numfmt::num(*params as f64));
                        let stat = view.layers.get(module);
                        let opt = |v: Option<f64>| v.map_or("-".into(), numfmt::num);
                        ui.label(opt(stat.and_then(|s| s.grad_norm)));
                        ui.label(opt(
                            stat.and_then(crate::core::protocol::LayerStats::update_ratio)
                        ));
                        ui.label(
                            stat.and_then(|s| s.inactive)
                                .map_or("-".into(), |v| format!("{:.1} %", 100.0 * v)),
                        );
                        match stat.map(|s| s.non_finite_grads) {
                            Some(n) if n > 0 => {
                                ui.colored_label(crate::gui::style::ERROR, n.to_string())
                            }
                            Some(n) => ui.label(n.to_string()),
                            None => ui.label("-"),
                        };
                        match stat {
                            Some(s) => histogram_ui(ui, &s.hist, s.hist_range, s.step),
                            None => {
                                ui.label("");
                            }
                        }
                        let (label, steps) = if stat.is_some() {
                            ("stop", Some(0))
                        } else {
                            ("watch", None)
                        };
                        if ui
                            .add_enabled(live, egui::Button::new(label).small())
                            .on_disabled_hover_text(why)
                            .clicked()
                        {
                            actions.push(watch(module, steps));
                        }
                        ui.end_row();
                    }
                });
        });
    actions
}

/// A 64-bin histogram as a small bar chart; the range and step on hover.
fn histogram_ui(ui: &mut Ui, hist: &[u32], range: [f64; 2], step: u64) {
    let (rect, resp) = ui.allocate_exact_size(egui::vec2(96.0, 16.0), egui::Sense::hover());
    let top = hist.iter().copied().max().unwrap_or(0).max(1) as f32;
    let w = rect.width() / hist.len().max(1) as f32;
    let color = ui.visuals().text_color().gamma_multiply(0.7);
    for (i, &c) in hist.iter().enumerate() {
        let h = rect.height() * c as f32 / top;
        let x = rect.left() + w * i as f32;
        ui.painter().rect_filled(
            Rect::from_min_max(
                egui::pos2(x, rect.bottom() - h),
                egui::pos2(x + w, rect.bottom()),
            ),
            0.0,
            color,
        );
    }
    resp.on_hover_text(format!(
        "weights from {} to {} at step {step}",
        numfmt::num(range[0]),
        numfmt::num(range[1])
    ));
}

/// The step-time stack of `view` as one plot, with the last verdict above it.
fn stacked_time_ui(ui: &mut Ui, view: &RunView, group: egui::Id, width: f32) {
    let parts = stacked_time(view, width.max(50.0) as usize);
    if parts.is_empty() {
        return;
    }
    let verdict = view.markers.iter().rev().find(|m| {
        m.kind == MarkerKind::Health
            && (m.detail.contains("-bound: ") || m.detail.contains("is the straggler"))
    });
    ui.label(match verdict {
        Some(m) => RichText::new(format!("Step {}: {}", m.step, m.detail)).strong(),
        None => RichText::new("Where each step's time goes (ms), stacked").weak(),
    });
    Plot::new(("stacked-time", &view.run_dir))
        .width(width)
        .height(200.0)
        .link_axis(group, [true, false])
        .link_cursor(group, [true, false])
        .allow_scroll(false)
        .include_y(0.0)
        .legend(Legend::default().follow_insertion_order(true))
        .x_axis_formatter(|m, _| numfmt::tick(m.value, m.step_size))
        .y_axis_formatter(|m, _| numfmt::tick(m.value, m.step_size))
        .show(ui, |pu| {
            for (i, (label, xs, lo, hi)) in parts.iter().enumerate() {
                let color = crate::gui::style::palette(i);
                pu.add(
                    egui_plot::FilledArea::new(label.clone(), xs, lo, hi)
                        .fill_color(color.gamma_multiply(0.6)),
                );
            }
        });
}

/// One part of the step-time stack: its label, steps, and the band it fills (the parts below
/// it to itself).
pub type StackedPart = (String, Vec<f64>, Vec<f64>, Vec<f64>);

/// Where a run's steps went, stacked: each timed part (`time_<part>_ms`, in declaration order)
/// as a band on the parts before it, at up to `columns` of the logged steps, so the top is the
/// step's time. Parts that never took time are left out.
#[must_use]
pub fn stacked_time(view: &RunView, columns: usize) -> Vec<StackedPart> {
    let Some(total) = view.series.get(crate::core::protocol::STEP_TIME_MS) else {
        return Vec::new();
    };
    let parts: Vec<(&str, &Series)> = view
        .metrics
        .iter()
        .filter(|m| m.kind == crate::core::protocol::MetricKind::Timing)
        .filter_map(|m| {
            let part = m.name.strip_prefix("time_")?.strip_suffix("_ms")?;
            Some((part, view.series.get(&m.name)?))
        })
        .filter(|(_, s)| s.bounds().is_some_and(|(_, y)| y[1] > 0.0))
        .collect();
    let steps: Vec<f64> = total.points().map(|(x, _)| x).collect();
    let stride = (steps.len() / columns.max(1)).max(1);
    let xs: Vec<f64> = steps.into_iter().step_by(stride).collect();
    let mut below = vec![0.0; xs.len()];
    let mut out = Vec::with_capacity(parts.len());
    for (part, series) in parts {
        let top: Vec<f64> = xs
            .iter()
            .zip(&below)
            .map(|(&x, &b)| {
                let v = series
                    .nearest(x)
                    .filter(|(at, _)| *at == x)
                    .map_or(0.0, |(_, v)| v);
                b + v
            })
            .collect();
        out.push((part.replace('_', " "), xs.clone(), below, top.clone()));
        below = top;
    }
    out
}

/// A group's rows for a band: at each step any member logged, `[step, mean, min, max]` over
/// the members that have that step.
#[must_use]
pub fn band_rows(members: &[&Series]) -> Vec<[f64; 4]> {
    let mut at: BTreeMap<u64, (f64, f64, f64, usize)> = BTreeMap::new();
    for s in members {
        for (x, y) in s.points().filter(|(_, y)| y.is_finite()) {
            let e =
                at.entry(x.max(0.0) as u64)
                    .or_insert((0.0, f64::INFINITY, f64::NEG_INFINITY, 0));
            e.0 += y;
            e.1 = e.1.min(y);
            e.2 = e.2.max(y);
            e.3 += 1;
        }
    }
    at.into_iter()
        .map(|(x, (sum, lo, hi, n))| [x as f64, sum / n as f64, lo, hi])
        .collect()
}

/// Whether a baseline at `b` belongs in the range of curves spanning `lo..=hi`: within one
/// span of them (`None` when there are no curves).
fn baseline_in_range(b: f64, lo: f64, hi: f64) -> Option<bool> {
    if !(lo.is_finite() && hi.is_finite() && b.is_finite()) {
        return None;
    }
    let span = (hi - lo)
        .max(1e-9 * lo.abs().max(hi.abs()))
        .max(f64::MIN_POSITIVE);
    Some(b >= lo - span && b <= hi + span)
}

/// A baseline outside the plot's range, written at the edge it lies beyond.
fn pinned_baseline(ui: &Ui, frame: &Rect, label: &str, b: f64, above: bool) {
    let (pos, align, arrow) = if above {
        (
            frame.left_top() + egui::vec2(4.0, 2.0),
            egui::Align2::LEFT_TOP,
            "above",
        )
    } else {
        (
            frame.left_bottom() + egui::vec2(4.0, -2.0),
            egui::Align2::LEFT_BOTTOM,
            "below",
        )
    };
    ui.painter_at(*frame).text(
        pos,
        align,
        format!("{label} {} ({arrow} the range)", numfmt::num(b)),
        egui::FontId::proportional(11.0),
        Color32::from_gray(170),
    );
}

/// Where marker labels fit: each marker is `(x, label width, rank)`, and labels are placed by
/// rank (lower first), then left to right, each right of its line, else left of it (at the
/// plot's right edge), only inside `left..right` and 4 points clear of every label placed
/// before it. Gives each label's left edge, `None` for one left out. Every marker keeps its
/// line whatever this says; a label left out is still read by hovering the line.
#[must_use]
pub fn place_labels(markers: &[(f32, f32, u8)], left: f32, right: f32) -> Vec<Option<f32>> {
    let mut order: Vec<usize> = (0..markers.len()).collect();
    order.sort_by(|&a, &b| {
        (markers[a].2, markers[a].0)
            .partial_cmp(&(markers[b].2, markers[b].0))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let mut taken: Vec<(f32, f32)> = Vec::new();
    let mut placed = vec![None; markers.len()];
    for i in order {
        let (x, w, _) = markers[i];
        if x < left || x > right {
            continue;
        }
        let free = |a: f32, b: f32| {
            a >= left && b <= right && taken.iter().all(|&(l, r)| b + 4.0 <= l || a >= r + 4.0)
        };
        let side = [x + 2.0, x - 2.0 - w].into_iter().find(|&a| free(a, a + w));
        if let Some(a) = side {
            taken.push((a, a + w));
            placed[i] = Some(a);
        }
    }
    placed
}

/// Paints the primary run's marker labels in `strip` (above a plot), thinned by
/// [`place_labels`]: where labels meet, the rarer and more telling kind is named (a health
/// finding or a rollback, a live edit, a phase or other event, then a checkpoint).
fn marker_labels(ui: &Ui, strip: Rect, transform: &egui_plot::PlotTransform, runs: &[Shown<'_>]) {
    let Some(primary) = runs.first() else { return };
    let painter = ui.painter_at(strip);
    let font = egui::FontId::proportional(10.0);
    let rank = |k: MarkerKind| match k {
        MarkerKind::Health | MarkerKind::Sweep => 0,
        MarkerKind::Hyperparameter => 1,
        MarkerKind::Checkpoint => 3,
        _ => 2,
    };
    let frame = transform.frame();
    let shown: Vec<_> = primary
        .view
        .markers
        .iter()
        .filter(|m| m.kind != MarkerKind::Pause)
        .map(|m| {
            let x = transform
                .position_from_point(&PlotPoint::new(m.step as f64, 0.0))
                .x;
            let galley =
                painter.layout_no_wrap(m.label.clone(), font.clone(), marker_color(m.kind));
            (x, galley)
        })
        .collect();
    let boxes: Vec<(f32, f32, u8)> = shown
        .iter()
        .zip(
            primary
                .view
                .markers
                .iter()
                .filter(|m| m.kind != MarkerKind::Pause),
        )
        .map(|((x, g), m)| (*x, g.size().x, rank(m.kind)))
        .collect();
    let placed = place_labels(&boxes, frame.left(), frame.right());
    for ((_, galley), at) in shown.into_iter().zip(placed) {
        if let Some(a) = at {
            painter.galley(egui::pos2(a, strip.top()), galley, Color32::WHITE);
        }
    }
}

/// Hovering within a few pixels of a marker shows its full text (an intervention's or a
/// switch's triggering values, a checkpoint's metric, ...).
fn marker_hover(resp: &egui::Response, transform: &egui_plot::PlotTransform, runs: &[Shown<'_>]) {
    let (Some(primary), Some(p)) = (runs.first(), resp.hover_pos()) else {
        return;
    };
    let near: Vec<String> = primary
        .view
        .markers
        .iter()
        .filter(|m| m.kind != MarkerKind::Pause)
        .filter(|m| {
            let x = transform
                .position_from_point(&PlotPoint::new(m.step as f64, 0.0))
                .x;
            (x - p.x).abs() <= 4.0
        })
        .take(6)
        .map(|m| format!("step {}: {}", m.step, m.detail))
        .collect();
    if !near.is_empty() {
        resp.clone().on_hover_text_at_pointer(near.join("\n"));
    }
}

/// The series of `name` of several runs as CSV: `run,step,value`.
#[must_use]
pub fn series_csv(name: &str, runs: &[Shown<'_>]) -> String {
    let mut out = String::from("run,step,value\n");
    for r in runs {
        if let Some(s) = r.view.series.get(name) {
            for (x, y) in s.points() {
                out.push_str(&format!("{},{x},{y}\n", r.view.name));
            }
        }
    }
    out
}

/// A change to a family's layout, made from the dashboard.
#[derive(Debug, Clone, PartialEq)]
pub enum LayoutEdit {
    Pin(String, bool),
    Earlier(String),
    Hide(String),
    ShowHidden,
    Toggle(String),
}

impl LayoutEdit {
    pub fn apply(self, layout: &mut Layout) {
        match self {
            Self::Pin(name, true) => {
                if !layout.pinned.contains(&name) {
                    layout.pinned.push(name);
                }
            }
            Self::Pin(name, false) => layout.pinned.retain(|n| *n != name),
            Self::Earlier(name) => {
                if let Some(i) = layout.pinned.iter().position(|n| *n == name) {
                    if i > 0 {
                        layout.pinned.swap(i, i - 1);
                    }
                }
            }
            Self::Hide(name) => {
                layout.pinned.retain(|n| *n != name);
                layout.hidden.insert(name);
            }
            Self::ShowHidden => layout.hidden.clear(),
            Self::Toggle(group) => {
                if !layout.toggled.remove(&group) {
                    layout.toggled.insert(group);
                }
            }
        }
    }
}

/// Whether a scalar passes `filter` (comma-separated alternatives; controller timelines
/// `ctl/...` live on the Controller tab unless asked for).
fn matches_filter(filter: &str, name: &str) -> bool {
    let mut parts = filter
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .peekable();
    match parts.peek() {
        None => !name.starts_with("ctl/"),
        Some(_) => parts.any(|f| name.contains(f)),
    }
}

#[cfg(test)]
mod layout_tests {
    use super::*;
    use crate::core::protocol::MetricDef;

    #[test]
    fn a_companion_shares_its_hosts_plot_while_the_host_is_there() {
        let metrics = vec![
            MetricDef::diagnostic("logits_real").companion("logits_fake"),
            MetricDef::diagnostic("logits_fake"),
        ];
        let all =
            |s: Vec<Section>| -> Vec<String> { s.into_iter().flat_map(|s| s.names).collect() };
        let both = sections(
            &["logits_fake", "logits_real"],
            &metrics,
            &Layout::default(),
        );
        assert_eq!(all(both), ["logits_real"]);
        let alone = sections(&["logits_fake"], &metrics, &Layout::default());
        assert_eq!(all(alone), ["logits_fake"], "no host: a plot of its own");
    }

    #[test]
    fn what_matters_comes_first_and_the_layout_reorders_and_hides() {
        let metrics = vec![
            MetricDef::counter("epoch"),
            MetricDef::loss("d_loss").main(),
            MetricDef::setting("lr_d"),
            MetricDef::loss("gp"),
            MetricDef::validation("val_swd", false).main(),
            MetricDef::controller("ctl_epsilon"),
        ];
        let names = [
            "active_x",
            "ctl_epsilon",
            "d_loss",
            "epoch",
            "gp",
            "lr_d",
            "val_swd",
        ];
        let s = sections(&names, &metrics, &Layout::default());
        let titles: Vec<&str> = s.iter().map(|s| s.title.as_str()).collect();
        assert_eq!(
            titles,
            [
                "main",
                "losses",
                "settings",
                "controllers",
                "counters",
                "other"
            ]
        );
        assert_eq!(s[0].names, ["d_loss", "val_swd"]);
        assert_eq!(s[1].names, ["gp"]);
        assert!(!s[2].open_by_default && !s[3].open_by_default && !s[4].open_by_default);
        assert_eq!(s[5].names, ["active_x"], "undeclared scalars last");
        let mut layout = Layout::default();
        LayoutEdit::Pin("lr_d".into(), true).apply(&mut layout);
        LayoutEdit::Pin("gp".into(), true).apply(&mut layout);
        LayoutEdit::Earlier("gp".into()).apply(&mut layout);
        LayoutEdit::Hide("epoch".into()).apply(&mut layout);
        let s = sections(&names, &metrics, &layout);
        assert_eq!(s[0].title, "pinned");
        assert_eq!(s[0].names, ["gp", "lr_d"]);
        assert!(s.iter().all(|s| !s.names.contains(&"epoch".to_string())));
        assert!(s.iter().all(|s| s.title != "counters"));
        LayoutEdit::ShowHidden.apply(&mut layout);
        assert!(sections(&names, &metrics, &layout)
            .iter()
            .any(|s| s.names.contains(&"epoch".to_string())));
    }
}

#[cfg(test)]
mod marker_tests {
    use super::*;

    #[test]
    fn the_step_time_stack_tops_out_at_the_steps_time_in_declared_order() {
        use crate::core::protocol::{Event, ScalarRow};
        let mut view = RunView::default();
        view.apply(
            Event::RunStarted {
                run_dir: "r".into(),
                name: "r".into(),
                family: "f".into(),
                device: "cpu".into(),
                total_steps: None,
                resumed_from: None,
                restarted: false,
                branch_of: None,
                wall_time: 0.0,
                metrics: [
                    "step_time_ms",
                    "time_critic_forward_ms",
                    "time_data_ms",
                    "time_checkpoint_ms",
                ]
                .map(MetricDef::timing)
                .into(),
            },
            None,
        );
        let rows = (1..=300u64)
            .map(|s| ScalarRow {
                step: s,
                wall_time: 0.0,
                values: vec![
                    ("step_time_ms".into(), 10.0),
                    ("time_critic_forward_ms".into(), 4.0),
                    ("time_data_ms".into(), 6.0),
                    ("time_checkpoint_ms".into(), 0.0),
                ],
            })
            .collect();
        view.apply(Event::Scalars { rows }, None);
        let stack = stacked_time(&view, 100);
        let labels: Vec<&str> = stack.iter().map(|p| p.0.as_str()).collect();
        assert_eq!(
            labels,
            ["critic forward", "data"],
            "a part that took no time is left out"
        );
        let (_, xs, lo, hi) = &stack[1];
        assert_eq!(xs.len(), 100);
        assert!(lo.iter().all(|v| *v == 4.0) && hi.iter().all(|v| *v == 10.0));
        assert!(stacked_time(&RunView::default(), 100).is_empty());
    }

    #[test]
    fn crowded_labels_are_thinned_by_width_and_rank_and_never_overlap() {
        // Twenty checkpoints 10 points apart with 40-point labels, and one health finding
        // among them: the finding is always named, the checkpoints as room allows.
        let mut m: Vec<(f32, f32, u8)> = (0..20).map(|i| (10.0 * i as f32, 40.0, 3)).collect();
        m[7] = (70.0, 30.0, 0);
        let placed = place_labels(&m, 0.0, 400.0);
        assert_eq!(
            placed.len(),
            m.len(),
            "one answer per marker: every line stays"
        );
        assert_eq!(placed[7], Some(72.0), "the rarer kind wins the room");
        let spans: Vec<(f32, f32)> = m
            .iter()
            .zip(&placed)
            .filter_map(|((_, w, _), p)| p.map(|a| (a, a + w)))
            .collect();
        assert!(spans.len() >= 3 && spans.len() < 10, "{spans:?}");
        for (i, a) in spans.iter().enumerate() {
            for b in &spans[i + 1..] {
                assert!(a.1 + 4.0 <= b.0 || b.1 + 4.0 <= a.0, "{a:?} overlaps {b:?}");
            }
        }
        // With room for all, all are named; one that would run off the right edge goes left
        // of its line; one with no room either side is left out.
        let sparse: Vec<(f32, f32, u8)> = (0..5).map(|i| (100.0 * i as f32, 40.0, 3)).collect();
        let right_of = [
            Some(2.0),
            Some(102.0),
            Some(202.0),
            Some(302.0),
            Some(402.0),
        ];
        assert_eq!(place_labels(&sparse, 0.0, 450.0), right_of);
        let mut edge = right_of;
        edge[4] = Some(358.0);
        assert_eq!(place_labels(&sparse, 0.0, 420.0), edge);
        assert_eq!(
            place_labels(&[(0.0, 40.0, 3), (90.0, 40.0, 3)], 0.0, 110.0),
            [Some(2.0), Some(48.0)]
        );
        assert_eq!(
            place_labels(&[(0.0, 40.0, 3), (30.0, 40.0, 3)], 0.0, 110.0),
            [Some(2.0), None]
        );
    }

    #[test]
    fn a_band_is_the_mean_and_range_of_its_runs_at_each_step() {
        let mut a = Series::new();
        let mut b = Series::new();
        for s in 0..4 {
            a.push(f64::from(s) * 10.0, f64::from(s));
            b.push(f64::from(s) * 10.0, f64::from(s) + 2.0);
        }
        b.push(40.0, 9.0);
        let rows = band_rows(&[&a, &b]);
        assert_eq!(rows.len(), 5);
        assert_eq!(rows[1], [10.0, 2.0, 1.0, 3.0]);
        assert_eq!(rows[4], [40.0, 9.0, 9.0, 9.0], "only b logged step 40");
    }

    #[test]
    fn a_far_baseline_is_pinned_and_a_near_one_joins_the_range() {
        assert_eq!(baseline_in_range(35.3, 10.0, 15.5), Some(false));
        assert_eq!(baseline_in_range(17.0, 10.0, 15.5), Some(true));
        assert_eq!(baseline_in_range(5.0, 10.0, 15.5), Some(true));
        assert_eq!(baseline_in_range(1.0, 10.0, 15.5), Some(false));
        assert_eq!(
            baseline_in_range(1.0, f64::INFINITY, f64::NEG_INFINITY),
            None
        );
        assert_eq!(
            baseline_in_range(2.0, 2.0, 2.0),
            Some(true),
            "flat curve at the baseline"
        );
    }
}

//! GAAD (Golden Aspect Adaptive Decomposition): the region geometry of seeds 000/001, as plain
//! numbers. Boxes are `[x1, y1, x2, y2]` in pixels, in the reference's order
//! (`draftPY/WuBuGAADHybridGen_v0.3.py`; `../shared/docs/wubu_gaad_spec.md` section 2).
//!
//! One deliberate difference: the reference sorts subdivision boxes by areas rounded to f32,
//! and golden cuts make many areas mathematically equal (φ² = φ + 1), so their order came from
//! rounding noise. Here areas equal to 1e-9 of the frame keep generation order, which is what
//! the spec's worked examples show.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashSet};

/// The golden ratio.
pub const PHI: f64 = 1.618_033_988_749_895;
/// The reference's float tolerance.
pub const EPS: f64 = 1e-5;
/// Subdivision stops below this depth.
const MAX_DEPTH: u32 = 6;

/// `[x1, y1, x2, y2]` in pixels.
pub type Region = [f64; 4];

/// How a frame is cut into regions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Golden subdivision, largest first.
    Subdivide,
    /// Squares along a φ-spiral from the centre.
    Spiral,
    /// `floor(n/2)` subdivision boxes, then the rest from the spiral.
    Hybrid,
}

impl Kind {
    pub fn parse(text: &str) -> Result<Self, GaadError> {
        match text {
            "subdivide" => Ok(Self::Subdivide),
            "spiral" => Ok(Self::Spiral),
            "hybrid" => Ok(Self::Hybrid),
            other => Err(GaadError::Kind(other.to_string())),
        }
    }
}

/// Bad input to the geometry.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GaadError {
    #[error("regions: 0 (at least one region is needed)")]
    ZeroRegions,
    #[error("frame {width}x{height}: both sides must be at least 1 px")]
    EmptyFrame { width: u32, height: u32 },
    #[error("min_size_px = {0}: must be a finite number >= 1")]
    MinSize(f64),
    #[error("energy map: {len} values for a {width}x{height} frame")]
    EnergyShape { width: u32, height: u32, len: usize },
    #[error("energy map: value {value} at pixel (x {x}, y {y}) is not finite")]
    EnergyNotFinite { x: usize, y: usize, value: f32 },
    #[error("unknown decomposition `{0}`; known: subdivide, spiral, hybrid")]
    Kind(String),
}

fn check(width: u32, height: u32, n: usize) -> Result<(f64, f64), GaadError> {
    if n == 0 {
        return Err(GaadError::ZeroRegions);
    }
    if width == 0 || height == 0 {
        return Err(GaadError::EmptyFrame { width, height });
    }
    Ok((f64::from(width), f64::from(height)))
}

/// The golden cut of a box `(x, y, w, h)`: its two children, or none for a square too small
/// to cut. Children keep the reference's arithmetic (`x + r1 + r2`, not `x + w`).
fn golden_cut(x: f64, y: f64, w: f64, h: f64, min_size: f64) -> Option<[[f64; 4]; 2]> {
    let landscape = w > h + EPS;
    let portrait = h > w + EPS;
    let square_cut = !landscape && !portrait && (w - h).abs() < EPS && w > min_size * PHI;
    if landscape || square_cut {
        let r1 = w / PHI;
        let r2 = w - r1;
        Some([[x, y, r1, h], [x + r1, y, r2, h]])
    } else if portrait {
        let r1 = h / PHI;
        let r2 = h - r1;
        Some([[x, y, w, r1], [x, y + r1, w, r2]])
    } else {
        None
    }
}

/// `(x, y, w, h)` as `[x1, y1, x2, y2]`.
fn corners(c: [f64; 4]) -> Region {
    [c[0], c[1], c[0] + c[2], c[1] + c[3]]
}

fn area(b: &Region) -> f64 {
    (b[2] - b[0]) * (b[3] - b[1])
}

fn degenerate(b: &Region) -> bool {
    b[0] >= b[2] - EPS || b[1] >= b[3] - EPS
}

fn rounded_key(b: &Region, digits: i32) -> [i64; 4] {
    let s = 10f64.powi(digits);
    b.map(|v| (v * s).round() as i64)
}

/// Pads with copies of the last box (the full frame when there is none) or truncates to `n`.
fn fit(mut boxes: Vec<Region>, n: usize, w: f64, h: f64) -> Vec<Region> {
    let last = boxes.last().copied().unwrap_or([0.0, 0.0, w, h]);
    boxes.resize(n, last);
    boxes
}

/// Static golden subdivision (spec §2.1): breadth-first golden cuts until 3n candidates,
/// de-duplicated, largest first (box 0 is the whole frame). A frame smaller than `min_size`
/// yields the whole frame `n` times, as in the reference.
pub fn golden_subdivide(
    width: u32,
    height: u32,
    n: usize,
    min_size: f64,
) -> Result<Vec<Region>, GaadError> {
    let (w, h) = check(width, height, n)?;
    if !(min_size.is_finite() && min_size >= 1.0) {
        return Err(GaadError::MinSize(min_size));
    }
    let mut all = vec![[0.0, 0.0, w, h]];
    let mut queue = std::collections::VecDeque::from([([0.0, 0.0, w, h], 0u32)]);
    while let Some((c, depth)) = queue.pop_front() {
        if all.len() >= 3 * n {
            break;
        }
        if c[2].min(c[3]) < min_size || depth > MAX_DEPTH {
            continue;
        }
        if let Some(children) = golden_cut(c[0], c[1], c[2], c[3], min_size) {
            for child in children {
                if child[2] >= min_size && child[3] >= min_size {
                    all.push(corners(child));
                    queue.push_back((child, depth + 1));
                }
            }
        }
    }
    let mut seen = HashSet::new();
    let mut unique: Vec<Region> = all
        .into_iter()
        .filter(|b| !degenerate(b) && seen.insert(rounded_key(b, 3)))
        .collect();
    // Stable: equal areas (to 1e-9 of the frame) keep generation order.
    let unit = w * h * 1e-9;
    unique.sort_by_key(|b| std::cmp::Reverse((area(b) / unit).round() as i64));
    unique.truncate(n);
    Ok(fit(unique, n, w, h))
}

/// A spiral point: centre and scale (fraction of the frame's shorter side).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpiralPoint {
    pub x: f64,
    pub y: f64,
    pub scale: f64,
}

/// The φ-spiral's growth rate, ln φ / (π/2).
fn spiral_b() -> f64 {
    PHI.ln() / (std::f64::consts::PI / 2.0)
}

/// Static φ-spiral centres and scales (spec §2.2): the centre at scale 0.25, then `n-1`
/// points over φ·2π radians.
pub fn phi_spiral(width: u32, height: u32, n: usize) -> Result<Vec<SpiralPoint>, GaadError> {
    let (w, h) = check(width, height, n)?;
    let (cx, cy) = (w / 2.0, h / 2.0);
    let mut out = vec![SpiralPoint {
        x: cx,
        y: cy,
        scale: 0.25,
    }];
    let rest = n - 1;
    if rest == 0 {
        return Ok(out);
    }
    let a = 0.05 * w.min(h);
    let b = spiral_b();
    let step = PHI * 2.0 * std::f64::consts::PI / rest as f64;
    let mut angle = 0.0f64;
    for _ in 0..rest {
        let r = (a * (b * angle).exp()).min(w.max(h) * 0.6);
        out.push(SpiralPoint {
            x: (cx + r * angle.cos()).clamp(0.0, w),
            y: (cy + r * angle.sin()).clamp(0.0, h),
            scale: (0.20 * ((-0.5 * r) / (w.min(h) * 0.1)).exp()).max(0.05),
        });
        angle += step;
    }
    Ok(out)
}

/// The square box of a spiral point, clamped into the frame as the reference does.
#[must_use]
pub fn box_from_point(width: u32, height: u32, p: &SpiralPoint) -> Region {
    let (w, h) = (f64::from(width), f64::from(height));
    let half = w.min(h) * p.scale / 2.0;
    let x1 = (p.x - half).clamp(0.0, w - EPS);
    let y1 = (p.y - half).clamp(0.0, h - EPS);
    let x2 = (p.x + half).min(w).max(x1 + EPS);
    let y2 = (p.y + half).min(h).max(y1 + EPS);
    [x1, y1, x2, y2]
}

/// `n` regions of `kind` from a subdivision and a spiral source: hybrid takes `floor(n/2)`
/// subdivision boxes, then the rest from the spiral; padded or truncated to `n`.
fn combine(
    kind: Kind,
    n: usize,
    w: f64,
    h: f64,
    subdivide: impl Fn(usize) -> Result<Vec<Region>, GaadError>,
    spiral: impl Fn(usize) -> Result<Vec<Region>, GaadError>,
) -> Result<Vec<Region>, GaadError> {
    let boxes = match kind {
        Kind::Subdivide => subdivide(n)?,
        Kind::Spiral => spiral(n)?,
        Kind::Hybrid => {
            let n_sub = n / 2;
            let mut b = if n_sub > 0 {
                subdivide(n_sub)?
            } else {
                Vec::new()
            };
            b.extend(spiral(n - n_sub)?);
            b
        }
    };
    Ok(fit(boxes, n, w, h))
}

/// Regions of a static decomposition.
pub fn decompose(
    kind: Kind,
    width: u32,
    height: u32,
    n: usize,
    min_size: f64,
) -> Result<Vec<Region>, GaadError> {
    let (w, h) = check(width, height, n)?;
    let spiral = |k: usize| -> Result<Vec<Region>, GaadError> {
        Ok(phi_spiral(width, height, k)?
            .iter()
            .map(|p| box_from_point(width, height, p))
            .collect())
    };
    combine(
        kind,
        n,
        w,
        h,
        |k| golden_subdivide(width, height, k, min_size),
        spiral,
    )
}

/// A per-pixel energy map (the motion branch uses optical-flow magnitude), row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct EnergyMap {
    pub width: u32,
    pub height: u32,
    pub values: Vec<f32>,
}

impl EnergyMap {
    /// Checks the shape and that every value is finite.
    pub fn new(width: u32, height: u32, values: Vec<f32>) -> Result<Self, GaadError> {
        if values.len() != width as usize * height as usize {
            return Err(GaadError::EnergyShape {
                width,
                height,
                len: values.len(),
            });
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(GaadError::EnergyNotFinite {
                x: i % width.max(1) as usize,
                y: i / width.max(1) as usize,
                value: values[i],
            });
        }
        Ok(Self {
            width,
            height,
            values,
        })
    }

    fn at(&self, x: usize, y: usize) -> f32 {
        self.values[y * self.width as usize + x]
    }

    fn max(&self) -> f32 {
        self.values
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max)
    }

    /// Mean energy inside a box rounded to whole pixels (ties to even, as Python's `round`);
    /// 0 for a box under one pixel.
    #[must_use]
    pub fn box_energy(&self, b: &Region) -> f64 {
        let r = |v: f64| v.round_ties_even() as i64;
        let x1 = r(b[0]).max(0);
        let y1 = r(b[1]).max(0);
        let x2 = r(b[2]).min(i64::from(self.width));
        let y2 = r(b[3]).min(i64::from(self.height));
        if x1 >= x2 || y1 >= y2 {
            return 0.0;
        }
        let mut sum = 0.0f64;
        for y in y1 as usize..y2 as usize {
            for x in x1 as usize..x2 as usize {
                sum += f64::from(self.at(x, y));
            }
        }
        sum / ((x2 - x1) * (y2 - y1)) as f64
    }
}

/// A box waiting to be cut in the motion-aware subdivision: highest energy first, then lower
/// depth, then insertion order.
#[derive(Debug, PartialEq)]
struct Pending {
    energy: f64,
    depth: u32,
    counter: u64,
    c: [f64; 4],
}

impl Eq for Pending {}

impl Ord for Pending {
    fn cmp(&self, o: &Self) -> Ordering {
        self.energy
            .total_cmp(&o.energy)
            .then(o.depth.cmp(&self.depth))
            .then(o.counter.cmp(&self.counter))
    }
}

impl PartialOrd for Pending {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// Motion-aware golden subdivision (spec §2.4): boxes with more energy are cut first; a box
/// below `threshold·max(energy)` past depth 1 is not cut; selection by energy, then smaller
/// area.
pub fn golden_subdivide_motion(
    map: &EnergyMap,
    n: usize,
    min_size: f64,
    threshold: f64,
) -> Result<Vec<Region>, GaadError> {
    let (w, h) = check(map.width, map.height, n)?;
    if !(min_size.is_finite() && min_size >= 1.0) {
        return Err(GaadError::MinSize(min_size));
    }
    let max_e = if map.values.is_empty() {
        1.0
    } else {
        f64::from(map.max())
    };
    let min_e = max_e * threshold;
    let root = [0.0, 0.0, w, h];
    let mut heap = BinaryHeap::from([Pending {
        energy: map.box_energy(&root),
        depth: 0,
        counter: 0,
        c: root,
    }]);
    let mut counter = 0u64;
    let mut cands: Vec<(f64, Region)> = Vec::new();
    while let Some(p) = heap.pop() {
        if cands.len() >= 3 * n {
            break;
        }
        let [x, y, bw, bh] = p.c;
        if bw >= min_size && bh >= min_size {
            cands.push((p.energy, corners(p.c)));
        }
        if bw.min(bh) < min_size || p.depth >= MAX_DEPTH || (p.energy < min_e && p.depth > 1) {
            continue;
        }
        if let Some(children) = golden_cut(x, y, bw, bh, min_size) {
            for child in children {
                if child[2] >= min_size && child[3] >= min_size {
                    counter += 1;
                    heap.push(Pending {
                        energy: map.box_energy(&corners(child)),
                        depth: p.depth + 1,
                        counter,
                        c: child,
                    });
                }
            }
        }
    }
    cands.sort_by(|a, b| b.0.total_cmp(&a.0).then(area(&a.1).total_cmp(&area(&b.1))));
    let mut seen = HashSet::new();
    let picked: Vec<Region> = cands
        .into_iter()
        .map(|(_, b)| b)
        .filter(|b| !degenerate(b) && seen.insert(rounded_key(b, 2)))
        .take(n)
        .collect();
    Ok(fit(picked, n, w, h))
}

/// Settings of the motion-aware spiral (the seed's defaults as its runs used them).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MotionSpiral {
    pub arms: usize,
    pub points_per_arm: usize,
    pub base_scale: f64,
    /// How much energy shrinks a patch: scale · (1 − influence · normalised energy).
    pub influence: f64,
    pub blur_sigma: f64,
    pub min_scale: f64,
    pub max_scale: f64,
}

impl Default for MotionSpiral {
    fn default() -> Self {
        Self {
            arms: 3,
            points_per_arm: 4,
            base_scale: 0.25,
            influence: 0.6,
            blur_sigma: 2.0,
            min_scale: 0.03,
            max_scale: 0.30,
        }
    }
}

/// 5x5 Gaussian blur with reflect padding (as torchvision's `gaussian_blur`).
fn blur5(map: &EnergyMap, sigma: f64) -> Vec<f64> {
    let k: Vec<f64> = (-2..=2)
        .map(|i| (-0.5 * (f64::from(i) / sigma).powi(2)).exp())
        .collect();
    let s: f64 = k.iter().sum();
    let k: Vec<f64> = k.iter().map(|v| v / s).collect();
    let (w, h) = (i64::from(map.width), i64::from(map.height));
    let reflect = |i: i64, n: i64| -> usize {
        if n == 1 {
            return 0;
        }
        let mut i = i;
        while i < 0 || i >= n {
            i = if i < 0 { -i } else { 2 * (n - 1) - i };
        }
        i as usize
    };
    let mut tmp = vec![0.0; (w * h) as usize];
    for y in 0..h {
        for x in 0..w {
            tmp[(y * w + x) as usize] = (0..5)
                .map(|j| k[j] * f64::from(map.at(reflect(x + j as i64 - 2, w), y as usize)))
                .sum();
        }
    }
    let mut out = vec![0.0; (w * h) as usize];
    for y in 0..h {
        for x in 0..w {
            out[(y * w + x) as usize] = (0..5)
                .map(|j| k[j] * tmp[reflect(y + j as i64 - 2, h) * w as usize + x as usize])
                .sum();
        }
    }
    out
}

/// Up to `n` energy peaks of the blurred map, each suppressing a 21x21 window around it;
/// padded with the last one, or the frame centre when the map is flat.
#[must_use]
pub fn hotspots(map: &EnergyMap, n: usize, sigma: f64) -> Vec<(f64, f64)> {
    let (w, h) = (map.width as usize, map.height as usize);
    let centre = (w as f64 / 2.0, h as f64 / 2.0);
    if map.values.is_empty() || n == 0 {
        return vec![centre; n];
    }
    let mut m = blur5(map, sigma);
    let mut out = Vec::new();
    for _ in 0..n {
        let (idx, max) = m
            .iter()
            .enumerate()
            .fold((0, f64::NEG_INFINITY), |best, (i, &v)| {
                if v > best.1 {
                    (i, v)
                } else {
                    best
                }
            });
        if max <= EPS {
            break;
        }
        let (px, py) = (idx % w, idx / w);
        out.push((px as f64, py as f64));
        for y in py.saturating_sub(10)..(py + 11).min(h) {
            for x in px.saturating_sub(10)..(px + 11).min(w) {
                m[y * w + x] = 0.0;
            }
        }
    }
    if out.is_empty() {
        out.push(centre);
    }
    let last = out[out.len() - 1];
    out.resize(n, last);
    out
}

/// Motion-aware φ-spirals (spec §2.4): arms around the energy hotspots, patches shrinking
/// where there is more energy.
pub fn phi_spiral_motion(
    map: &EnergyMap,
    n: usize,
    cfg: &MotionSpiral,
) -> Result<Vec<SpiralPoint>, GaadError> {
    let (w, h) = check(map.width, map.height, n)?;
    let per_spot = (cfg.arms * cfg.points_per_arm).max(1);
    let n_spots = n.div_ceil(per_spot).max(1).min(n).min(5);
    let spots = hotspots(map, n_spots, cfg.blur_sigma);
    let max_e = f64::from(map.max());
    let norm_energy = |x: f64, y: f64| -> f64 {
        let (ix, iy) = (x as usize, y as usize);
        let e = if x >= 0.0 && y >= 0.0 && ix < map.width as usize && iy < map.height as usize {
            f64::from(map.at(ix, iy))
        } else {
            0.1
        };
        if max_e > EPS {
            (e / (max_e + EPS)).min(1.0)
        } else {
            0.1
        }
    };
    let clamp_scale = |s: f64| s.clamp(cfg.min_scale, cfg.max_scale);
    let mut out = Vec::with_capacity(n);
    let (cx0, cy0) = spots[0];
    out.push(SpiralPoint {
        x: cx0,
        y: cy0,
        scale: clamp_scale(cfg.base_scale * (1.0 - cfg.influence * norm_energy(cx0, cy0))),
    });
    let a = 0.03 * w.min(h);
    let b = spiral_b();
    'spots: for &(cx, cy) in &spots {
        for arm in 0..cfg.arms {
            let offset = 2.0 * std::f64::consts::PI / cfg.arms as f64 * arm as f64;
            for p in 0..cfg.points_per_arm {
                if out.len() >= n {
                    break 'spots;
                }
                let theta = (p + 1) as f64
                    * (PHI * std::f64::consts::PI / (2.0 * cfg.points_per_arm as f64));
                let r = (a * (b * theta).exp()).min(w.max(h) * 0.4);
                let x = (cx + r * (offset + theta).cos()).clamp(0.0, w - 1.0);
                let y = (cy + r * (offset + theta).sin()).clamp(0.0, h - 1.0);
                let scale = cfg.base_scale
                    * ((-0.8 * r) / (w.min(h) * 0.1)).exp()
                    * (1.0 - cfg.influence * norm_energy(x, y));
                out.push(SpiralPoint {
                    x,
                    y,
                    scale: clamp_scale(scale),
                });
            }
        }
    }
    let last = out[out.len() - 1];
    out.resize(n, last);
    Ok(out)
}

/// Regions of a motion-aware decomposition (hybrid: half subdivision, half spiral).
pub fn decompose_motion(
    kind: Kind,
    map: &EnergyMap,
    n: usize,
    min_size: f64,
    threshold: f64,
    spiral: &MotionSpiral,
) -> Result<Vec<Region>, GaadError> {
    let (w, h) = check(map.width, map.height, n)?;
    let spiral_boxes = |k: usize| -> Result<Vec<Region>, GaadError> {
        Ok(phi_spiral_motion(map, k, spiral)?
            .iter()
            .map(|p| box_from_point(map.width, map.height, p))
            .collect())
    };
    combine(
        kind,
        n,
        w,
        h,
        |k| golden_subdivide_motion(map, k, min_size, threshold),
        spiral_boxes,
    )
}

/// Each box grown by `share` of its width and height (half on each side), clamped to the
/// frame: neighbours then overlap by that margin.
#[must_use]
pub fn grow(boxes: &[Region], share: f64, width: u32, height: u32) -> Vec<Region> {
    let (w, h) = (f64::from(width), f64::from(height));
    boxes
        .iter()
        .map(|&[x1, y1, x2, y2]| {
            let (mx, my) = (0.5 * share * (x2 - x1), 0.5 * share * (y2 - y1));
            [
                (x1 - mx).max(0.0),
                (y1 - my).max(0.0),
                (x2 + mx).min(w),
                (y2 + my).min(h),
            ]
        })
        .collect()
}

/// Pixels (row-major, `height x width`) within one pixel of a region's edge where that edge
/// lies inside the frame: where pasted regions meet, and so where seams would show. The
/// frame's own border is not a seam.
pub fn border_mask(boxes: &[Region], width: u32, height: u32) -> Vec<bool> {
    let (w, h) = (f64::from(width), f64::from(height));
    let mut mask = vec![false; (width * height) as usize];
    let inside = |edge: f64, size: f64| edge > 0.5 && edge < size - 0.5;
    for y in 0..height {
        let cy = f64::from(y) + 0.5;
        for x in 0..width {
            let cx = f64::from(x) + 0.5;
            mask[(y * width + x) as usize] = boxes.iter().any(|&[x1, y1, x2, y2]| {
                let spans_y = cy >= y1 - 1.0 && cy <= y2 + 1.0;
                let spans_x = cx >= x1 - 1.0 && cx <= x2 + 1.0;
                let vertical = [x1, x2]
                    .iter()
                    .any(|&e| inside(e, w) && (cx - e).abs() <= 1.0 && spans_y);
                let horizontal = [y1, y2]
                    .iter()
                    .any(|&e| inside(e, h) && (cy - e).abs() <= 1.0 && spans_x);
                vertical || horizontal
            });
        }
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: &[Region], want: &[[f64; 4]], tol: f64) {
        assert_eq!(got.len(), want.len(), "{got:?}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            for k in 0..4 {
                assert!((g[k] - w[k]).abs() <= tol, "box {i}: got {g:?}, want {w:?}");
            }
        }
    }

    #[test]
    fn worked_example_256_subdivide_8() {
        let b = golden_subdivide(256, 256, 8, 5.0).unwrap();
        close(
            &b,
            &[
                [0.0, 0.0, 256.0, 256.0],
                [0.0, 0.0, 158.22, 256.0],
                [158.22, 0.0, 256.0, 256.0],
                [0.0, 0.0, 158.22, 158.22],
                [0.0, 158.22, 158.22, 256.0],
                [158.22, 0.0, 256.0, 158.22],
                [0.0, 0.0, 97.78, 158.22],
                [158.22, 158.22, 256.0, 256.0],
            ],
            0.005,
        );
        // min_size 4 gives the same.
        assert_eq!(golden_subdivide(256, 256, 8, 4.0).unwrap(), b);
    }

    #[test]
    fn worked_example_256_hybrid_8() {
        let b = decompose(Kind::Hybrid, 256, 256, 8, 4.0).unwrap();
        close(
            &b,
            &[
                [0.0, 0.0, 256.0, 256.0],
                [0.0, 0.0, 158.22, 256.0],
                [158.22, 0.0, 256.0, 256.0],
                [0.0, 0.0, 158.22, 158.22],
                [96.0, 96.0, 160.0, 160.0],
                [120.86, 108.06, 160.74, 147.94],
                [80.32, 106.52, 105.59, 131.79],
                [211.46, 170.04, 224.26, 182.84],
            ],
            0.01,
        );
        let s = phi_spiral(256, 256, 4).unwrap();
        assert!((s[1].scale - 0.1558).abs() < 1e-4);
        assert!((s[2].scale - 0.0987).abs() < 1e-4);
        assert_eq!(s[3].scale, 0.05);
    }

    #[test]
    fn worked_example_default_64_hybrid_16() {
        let b = decompose(Kind::Hybrid, 64, 64, 16, 4.0).unwrap();
        close(
            &b,
            &[
                [0.0, 0.0, 64.0, 64.0],
                [0.0, 0.0, 39.55, 64.0],
                [39.55, 0.0, 64.0, 64.0],
                [0.0, 0.0, 39.55, 39.55],
                [0.0, 39.55, 39.55, 64.0],
                [39.55, 0.0, 64.0, 39.55],
                [0.0, 0.0, 24.45, 39.55],
                [39.55, 39.55, 64.0, 64.0],
                [24.0, 24.0, 40.0, 40.0],
                [30.22, 27.02, 40.18, 36.98],
                [28.26, 32.63, 36.92, 41.29],
                [20.94, 30.35, 27.91, 37.31],
                [25.29, 18.13, 30.25, 23.08],
                [47.28, 21.74, 50.48, 24.94],
                [46.92, 54.96, 50.12, 58.16],
                [1.30, 55.45, 4.50, 58.65],
            ],
            0.01,
        );
    }

    #[test]
    fn any_shape_gives_n_boxes_inside_the_frame_largest_first() {
        for (w, h) in [
            (640, 360),
            (360, 640),
            (97, 31),
            (1, 1),
            (5, 300),
            (1920, 1080),
        ] {
            for n in [1, 2, 3, 7, 16, 48, 200] {
                for kind in [Kind::Subdivide, Kind::Spiral, Kind::Hybrid] {
                    let b = decompose(kind, w, h, n, 4.0).unwrap();
                    assert_eq!(b.len(), n, "{kind:?} {w}x{h} n={n}");
                    for r in &b {
                        assert!(r.iter().all(|v| v.is_finite()), "{r:?}");
                        assert!(r[0] >= 0.0 && r[1] >= 0.0, "{kind:?} {w}x{h}: {r:?}");
                        assert!(
                            r[2] <= f64::from(w) + 1e-9 && r[3] <= f64::from(h) + 1e-9,
                            "{r:?}"
                        );
                        assert!(r[2] > r[0] && r[3] > r[1], "{r:?}");
                    }
                }
                let s = golden_subdivide(w, h, n, 4.0).unwrap();
                assert_eq!(s[0], [0.0, 0.0, f64::from(w), f64::from(h)]);
                assert!(s
                    .windows(2)
                    .all(|p| area(&p[0]) >= area(&p[1]) * (1.0 - 1e-9)));
            }
        }
        // Landscape cuts vertically first, portrait horizontally.
        let l = golden_subdivide(640, 360, 3, 4.0).unwrap();
        assert!((l[1][2] - 640.0 / PHI).abs() < 1e-9 && l[1][3] == 360.0);
        let p = golden_subdivide(360, 640, 3, 4.0).unwrap();
        assert!((p[1][3] - 640.0 / PHI).abs() < 1e-9 && p[1][2] == 360.0);
    }

    #[test]
    fn bad_input_is_an_error_and_a_tiny_frame_falls_back_to_the_whole_frame() {
        assert_eq!(
            decompose(Kind::Hybrid, 64, 64, 0, 4.0),
            Err(GaadError::ZeroRegions)
        );
        assert!(matches!(
            decompose(Kind::Spiral, 0, 64, 4, 4.0),
            Err(GaadError::EmptyFrame { .. })
        ));
        assert!(matches!(
            golden_subdivide(64, 64, 4, f64::NAN),
            Err(GaadError::MinSize(_))
        ));
        // Smaller than the minimum region size: the whole frame, n times (as the reference).
        assert_eq!(
            golden_subdivide(3, 3, 4, 5.0).unwrap(),
            vec![[0.0, 0.0, 3.0, 3.0]; 4]
        );
        let mut v = vec![0.0f32; 16];
        v[6] = f32::NAN;
        let err = EnergyMap::new(4, 4, v).unwrap_err();
        assert!(
            matches!(err, GaadError::EnergyNotFinite { x: 2, y: 1, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("(x 2, y 1)"), "{err}");
        assert!(matches!(
            EnergyMap::new(4, 4, vec![0.0; 15]),
            Err(GaadError::EnergyShape { .. })
        ));
    }

    fn blob(w: u32, h: u32, cx: f32, cy: f32) -> EnergyMap {
        let mut v = Vec::new();
        for y in 0..h {
            for x in 0..w {
                let d2 = (x as f32 - cx).powi(2) + (y as f32 - cy).powi(2);
                v.push((-d2 / 50.0).exp());
            }
        }
        EnergyMap::new(w, h, v).unwrap()
    }

    #[test]
    fn motion_regions_gather_where_the_energy_is() {
        let map = blob(128, 96, 100.0, 20.0);
        let spots = hotspots(&map, 1, 2.0);
        assert_eq!(spots[0], (100.0, 20.0));
        let sub = golden_subdivide_motion(&map, 8, 4.0, 0.1).unwrap();
        assert_eq!(sub.len(), 8);
        // The highest-energy boxes come first and contain the blob.
        assert!(sub[0][0] <= 100.0 && sub[0][2] >= 100.0 && sub[0][1] <= 20.0 && sub[0][3] >= 20.0);
        let pts = phi_spiral_motion(&map, 13, &MotionSpiral::default()).unwrap();
        assert_eq!(pts.len(), 13);
        assert_eq!((pts[0].x, pts[0].y), (100.0, 20.0));
        // Energy shrinks the patch at the hotspot: 0.25 * (1 - 0.6) = 0.1.
        assert!((pts[0].scale - 0.1).abs() < 1e-3, "{}", pts[0].scale);
        for p in &pts[1..] {
            assert!(
                (p.x - 100.0).abs() < 40.0 && (p.y - 20.0).abs() < 40.0,
                "{p:?}"
            );
        }
        let flat = EnergyMap::new(16, 16, vec![0.0; 256]).unwrap();
        assert_eq!(hotspots(&flat, 2, 2.0), vec![(8.0, 8.0); 2]);
        assert_eq!(
            decompose_motion(Kind::Hybrid, &flat, 6, 4.0, 0.1, &MotionSpiral::default())
                .unwrap()
                .len(),
            6
        );
    }

    #[test]
    fn grown_regions_overlap_their_neighbours_and_stay_in_the_frame() {
        let boxes = [[0.0, 0.0, 10.0, 10.0], [10.0, 0.0, 20.0, 10.0]];
        let grown = grow(&boxes, 0.5, 20, 10);
        assert_eq!(grown, vec![[0.0, 0.0, 12.5, 10.0], [7.5, 0.0, 20.0, 10.0]]);
        assert_eq!(grow(&boxes, 0.0, 20, 10), boxes.to_vec());
    }

    #[test]
    fn border_mask_marks_inner_edges_only() {
        // Two halves of an 8x4 frame meet at x = 4: columns 3 and 4 (centres 3.5, 4.5) are
        // seams, the frame's border is not.
        let boxes = [[0.0, 0.0, 4.0, 4.0], [4.0, 0.0, 8.0, 4.0]];
        let m = border_mask(&boxes, 8, 4);
        for y in 0..4 {
            let row: Vec<bool> = (0..8).map(|x| m[y * 8 + x]).collect();
            assert_eq!(row, [false, false, false, true, true, false, false, false]);
        }
        // One box covering the frame has no seam at all.
        assert!(border_mask(&[[0.0, 0.0, 8.0, 4.0]], 8, 4)
            .iter()
            .all(|b| !b));
    }
}

//! A metric's whole history with a min/max level-of-detail pyramid, so a plot of any range
//! draws O(pixels) points and never hides a spike.
//!
//! Level 0 holds the raw points; each level above groups `FANOUT` buckets of the level below
//! and keeps their extremes with the steps where they occurred. [`Series::visible`] picks the
//! finest level whose buckets in the visible range fit the budget and emits each bucket's min
//! and max in step order, so a single outlier among a million points still reaches the screen.

/// Buckets per bucket of the next level.
const FANOUT: usize = 4;

/// The extremes of a run of consecutive points.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Bucket {
    x_first: f64,
    x_last: f64,
    min: (f64, f64),
    max: (f64, f64),
}

impl Bucket {
    fn point(x: f64, y: f64) -> Self {
        Self {
            x_first: x,
            x_last: x,
            min: (x, y),
            max: (x, y),
        }
    }

    fn merge(&mut self, other: &Self) {
        self.x_last = other.x_last;
        if other.min.1 < self.min.1 {
            self.min = other.min;
        }
        if other.max.1 > self.max.1 {
            self.max = other.max;
        }
    }
}

/// One scalar over steps. Steps are appended in increasing order; non-finite values are
/// counted but kept out of the curve (they are shown as events instead).
#[derive(Debug, Clone, Default)]
pub struct Series {
    /// `levels[0]` are the raw points; `levels[k][i]` merges `levels[k-1][FANOUT*i..]`.
    levels: Vec<Vec<Bucket>>,
    non_finite: u64,
}

impl Series {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a point. A step at or before the last one replaces the tail from that step on
    /// (a resumed run rewinds to its checkpoint).
    pub fn push(&mut self, x: f64, y: f64) {
        if !y.is_finite() {
            self.non_finite += 1;
            return;
        }
        if self.last().is_some_and(|(lx, _)| x <= lx) {
            self.truncate_from(x);
        }
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
        }
        self.levels[0].push(Bucket::point(x, y));
        let mut k = 0;
        // Propagate into the parent of the bucket just changed, creating levels as needed.
        while self.levels[k].len() > 1 {
            let child_idx = self.levels[k].len() - 1;
            let parent_idx = child_idx / FANOUT;
            // Rebuild the parent from its (at most FANOUT) children: a parent level created
            // late must still cover the children that came before it.
            let start = parent_idx * FANOUT;
            let mut parent = self.levels[k][start];
            for c in &self.levels[k][start + 1..=child_idx] {
                parent.merge(c);
            }
            if self.levels.len() == k + 1 {
                self.levels.push(Vec::new());
            }
            let parent_level = &mut self.levels[k + 1];
            if parent_level.len() == parent_idx {
                parent_level.push(parent);
            } else {
                parent_level[parent_idx] = parent;
            }
            k += 1;
        }
    }

    /// Drops every point at or after step `x`, rebuilding the pyramid.
    pub fn truncate_from(&mut self, x: f64) {
        let Some(raw) = self.levels.first() else {
            return;
        };
        let keep = raw.partition_point(|b| b.x_first < x);
        let points: Vec<(f64, f64)> = raw[..keep].iter().map(|b| b.min).collect();
        self.levels.clear();
        for (x, y) in points {
            self.push(x, y);
        }
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.levels.first().map_or(0, Vec::len)
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Non-finite values seen (not plotted).
    #[must_use]
    pub fn non_finite(&self) -> u64 {
        self.non_finite
    }

    #[must_use]
    pub fn last(&self) -> Option<(f64, f64)> {
        self.levels.first().and_then(|l| l.last()).map(|b| b.min)
    }

    /// The raw points, in step order.
    pub fn points(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.levels.first().into_iter().flatten().map(|b| b.min)
    }

    /// The value at the logged step nearest to `x`.
    #[must_use]
    pub fn nearest(&self, x: f64) -> Option<(f64, f64)> {
        let raw = self.levels.first()?;
        let i = raw.partition_point(|b| b.x_first < x);
        let after = raw.get(i).map(|b| b.min);
        let before = i.checked_sub(1).and_then(|j| raw.get(j)).map(|b| b.min);
        match (before, after) {
            (Some(b), Some(a)) => Some(if x - b.0 <= a.0 - x { b } else { a }),
            (b, a) => b.or(a),
        }
    }

    /// The step range and the value range of the whole series.
    #[must_use]
    pub fn bounds(&self) -> Option<([f64; 2], [f64; 2])> {
        let top = self.levels.last()?;
        let first = top.first()?;
        let mut b = *first;
        for t in &top[1..] {
            b.merge(t);
        }
        Some(([b.x_first, b.x_last], [b.min.1, b.max.1]))
    }

    /// The points to draw for steps in `[x_min, x_max]` with at most about `2 * max_buckets`
    /// points: each bucket of the chosen level contributes its min and max in step order. One
    /// bucket beyond each edge is included so the line reaches the plot's borders.
    #[must_use]
    pub fn visible(&self, x_min: f64, x_max: f64, max_buckets: usize) -> Vec<[f64; 2]> {
        let max_buckets = max_buckets.max(1);
        let mut out = Vec::new();
        let top = self.levels.len().saturating_sub(1);
        for (k, level) in self.levels.iter().enumerate() {
            let lo = level
                .partition_point(|b| b.x_last < x_min)
                .saturating_sub(1);
            let hi = (level.partition_point(|b| b.x_first <= x_max) + 1).min(level.len());
            // The finest level that fits the budget; the top level always does.
            if hi.saturating_sub(lo) > max_buckets && k < top {
                continue;
            }
            out.reserve(2 * (hi - lo));
            for b in &level[lo..hi] {
                let (first, second) = if b.min.0 <= b.max.0 {
                    (b.min, b.max)
                } else {
                    (b.max, b.min)
                };
                out.push([first.0, first.1]);
                if second != first {
                    out.push([second.0, second.1]);
                }
            }
            break;
        }
        out
    }
}

/// Debiased exponential moving average (as TensorBoard draws it) of a series' raw points,
/// `weight` in [0, 1): 0 is no smoothing.
#[must_use]
pub fn ema(series: &Series, weight: f64) -> Series {
    let mut cache = EmaCache::default();
    cache.update(series, weight);
    cache.smoothed
}

/// An EMA kept up to date incrementally: each update smooths only the points added since the
/// last one, and starts over when the weight changes or the series was rewound.
#[derive(Debug, Clone, Default)]
pub struct EmaCache {
    weight: f64,
    acc: f64,
    norm: f64,
    done: usize,
    last_x: Option<f64>,
    pub smoothed: Series,
}

impl EmaCache {
    pub fn update(&mut self, raw: &Series, weight: f64) -> &Series {
        let w = weight.clamp(0.0, 0.999_999);
        let rewound = raw.len() < self.done
            || (self.done > 0
                && raw.levels[0].get(self.done - 1).map(|b| b.x_first) != self.last_x);
        if w != self.weight || rewound {
            *self = Self {
                weight: w,
                ..Self::default()
            };
        }
        if let Some(points) = raw.levels.first() {
            for b in &points[self.done..] {
                let (x, y) = b.min;
                self.acc = self.acc * w + (1.0 - w) * y;
                self.norm = self.norm * w + (1.0 - w);
                self.smoothed.push(x, self.acc / self.norm);
                self.last_x = Some(x);
            }
            self.done = points.len();
        }
        &self.smoothed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(n: usize) -> Series {
        let mut s = Series::new();
        for i in 0..n {
            s.push(i as f64, (i % 7) as f64);
        }
        s
    }

    #[test]
    fn a_single_spike_survives_every_zoom_level() {
        let mut s = Series::new();
        for i in 0..1_000_000u32 {
            let y = if i == 612_345 { 1e6 } else { f64::from(i % 10) };
            s.push(f64::from(i), y);
        }
        for budget in [10, 100, 1000, 4000] {
            let pts = s.visible(0.0, 1e6, budget);
            assert!(pts.len() <= 2 * (budget + 2) * FANOUT, "{}", pts.len());
            assert!(
                pts.iter().any(|p| p == &[612_345.0, 1e6]),
                "spike lost at budget {budget}"
            );
            assert!(
                pts.windows(2).all(|w| w[0][0] <= w[1][0]),
                "not in step order"
            );
        }
        // Zoomed in to a window: raw points, spike included.
        let pts = s.visible(612_300.0, 612_400.0, 500);
        assert!(pts.iter().any(|p| p == &[612_345.0, 1e6]));
        assert!(pts.len() < 210, "{}", pts.len());
    }

    #[test]
    fn the_pyramid_agrees_with_a_brute_force_min_max() {
        let s = ramp(1000);
        let (xr, yr) = s.bounds().unwrap();
        assert_eq!(xr, [0.0, 999.0]);
        assert_eq!(yr, [0.0, 6.0]);
        // A mid-level query: every emitted point is a real point of the series.
        let pts = s.visible(100.0, 900.0, 50);
        for p in &pts {
            assert_eq!(p[1], ((p[0] as usize) % 7) as f64);
        }
        // And the global extremes inside the range are present.
        assert!(pts.iter().any(|p| p[1] == 6.0) && pts.iter().any(|p| p[1] == 0.0));
    }

    #[test]
    fn rewinding_replaces_the_tail_and_non_finite_values_are_counted() {
        let mut s = ramp(100);
        s.push(50.0, 42.0);
        assert_eq!(s.len(), 51);
        assert_eq!(s.last(), Some((50.0, 42.0)));
        assert_eq!(s.bounds().unwrap().1, [0.0, 42.0]);
        s.push(51.0, f64::NAN);
        assert_eq!(s.len(), 51);
        assert_eq!(s.non_finite(), 1);
        assert_eq!(s.nearest(49.6), Some((50.0, 42.0)));
        assert_eq!(s.nearest(-3.0), Some((0.0, 0.0)));
    }

    #[test]
    fn the_incremental_ema_equals_the_batch_one_and_restarts_on_rewind() {
        let mut raw = Series::new();
        let mut cache = EmaCache::default();
        for i in 0..500 {
            raw.push(f64::from(i), f64::from(i % 13));
            if i % 37 == 0 {
                cache.update(&raw, 0.8);
            }
        }
        cache.update(&raw, 0.8);
        assert!(cache.smoothed.points().eq(ema(&raw, 0.8).points()));
        raw.push(100.0, 50.0); // rewind
        cache.update(&raw, 0.8);
        assert!(cache.smoothed.points().eq(ema(&raw, 0.8).points()));
        cache.update(&raw, 0.5);
        assert!(cache.smoothed.points().eq(ema(&raw, 0.5).points()));
    }

    #[test]
    fn ema_is_debiased_and_zero_weight_is_identity() {
        let s = ramp(20);
        let same = ema(&s, 0.0);
        assert!(s.points().eq(same.points()));
        let mut c = Series::new();
        for i in 0..10 {
            c.push(f64::from(i), 3.0);
        }
        // A constant stays constant from the first point on (no pull towards zero).
        assert!(ema(&c, 0.9).points().all(|(_, y)| (y - 3.0).abs() < 1e-12));
    }
}

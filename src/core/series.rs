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
    /// A coarse series read back from a persisted pyramid ([`Series::from_coarse`]): its
    /// `levels[0]` are buckets of `FANOUT^base` points, and it holds `points` points in all.
    coarse: Option<(u32, u64)>,
}

/// A bucket as persisted: first step, last step, the minimum's step and value, the
/// maximum's step and value.
pub type BucketRow = [f64; 6];

impl Bucket {
    fn row(&self) -> BucketRow {
        [
            self.x_first,
            self.x_last,
            self.min.0,
            self.min.1,
            self.max.0,
            self.max.1,
        ]
    }

    fn from_row(r: &BucketRow) -> Self {
        Self {
            x_first: r[0],
            x_last: r[1],
            min: (r[2], r[3]),
            max: (r[4], r[5]),
        }
    }
}

/// A series' pyramid above its finest levels, as a file keeps it: the levels from `base` up,
/// each bucket of `levels[0]` merging `FANOUT^base` points (the last one possibly fewer).
#[derive(Debug, Clone, PartialEq)]
pub struct Coarse {
    pub base: u32,
    pub points: u64,
    pub non_finite: u64,
    pub levels: Vec<Vec<BucketRow>>,
}

/// Builds a series' [`Coarse`] pyramid in bounded memory as points arrive: once its finest
/// level holds more than `keep` buckets, that level is dropped and the next one becomes the
/// finest. For a writer that sees every point once (the trainer's run log); it cannot rewind,
/// and says so ([`CoarseBuilder::push`] returns false) so the caller can give up on it.
#[derive(Debug, Clone)]
pub struct CoarseBuilder {
    keep: usize,
    series: Series,
    base: u32,
    /// Points not yet a whole bucket of the finest kept level, and how many.
    pending: Option<(Bucket, u64)>,
    points: u64,
    last_x: Option<f64>,
}

impl CoarseBuilder {
    #[must_use]
    pub fn new(keep: usize) -> Self {
        Self {
            keep: keep.max(FANOUT),
            series: Series::new(),
            base: 0,
            pending: None,
            points: 0,
            last_x: None,
        }
    }

    /// Adds a point; false (and nothing added) when it does not come after the last one.
    pub fn push(&mut self, x: f64, y: f64) -> bool {
        if !y.is_finite() {
            self.series.non_finite += 1;
            return true;
        }
        if self.last_x.is_some_and(|l| x <= l) {
            return false;
        }
        self.last_x = Some(x);
        self.points += 1;
        let point = Bucket::point(x, y);
        let (bucket, n) = match self.pending.take() {
            Some((mut b, n)) => {
                b.merge(&point);
                (b, n + 1)
            }
            None => (point, 1),
        };
        if n == (FANOUT as u64).pow(self.base) {
            self.series.push_bucket(bucket);
            if self.series.levels[0].len() > self.keep && self.series.levels.len() > 1 {
                self.compact();
            }
        } else {
            self.pending = Some((bucket, n));
        }
        true
    }

    /// Drops the finest level: the next one's buckets become the finest, its last one (when
    /// it merges fewer than `FANOUT` buckets) going back to the pending points.
    fn compact(&mut self) {
        let fine = self.series.levels.remove(0);
        let per = (FANOUT as u64).pow(self.base);
        let whole = fine.len() / FANOUT * FANOUT;
        self.base += 1;
        if whole < fine.len() {
            // The coarser level's last bucket is partial: it goes back to pending.
            self.series.levels[0].pop();
            let mut b = fine[whole];
            for c in &fine[whole + 1..] {
                b.merge(c);
            }
            let mut n = (fine.len() - whole) as u64 * per;
            if let Some((p, k)) = self.pending.take() {
                b.merge(&p);
                n += k;
            }
            self.pending = Some((b, n));
        }
        // Levels above rebuilt from the new finest level: a level's last bucket may have
        // covered the dropped partial one.
        let finest = std::mem::take(&mut self.series.levels[0]);
        let non_finite = self.series.non_finite;
        self.series = Series::new();
        self.series.non_finite = non_finite;
        for b in finest {
            self.series.push_bucket(b);
        }
    }

    /// The pyramid so far, pending points included as a last bucket.
    #[must_use]
    pub fn coarse(&self) -> Coarse {
        let mut s = self.series.clone();
        if let Some((b, _)) = self.pending {
            s.push_bucket(b);
        }
        Coarse {
            base: self.base,
            points: self.points,
            non_finite: s.non_finite,
            levels: s
                .levels
                .iter()
                .map(|l| l.iter().map(Bucket::row).collect())
                .collect(),
        }
    }
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
        self.push_bucket(Bucket::point(x, y));
    }

    /// The levels from the first one with at most `keep` buckets up (all of them for a series
    /// that short): what a file keeps so a long run's plot draws before its log is read.
    #[must_use]
    pub fn coarse(&self, keep: usize) -> Coarse {
        let first = self
            .levels
            .iter()
            .position(|l| l.len() <= keep.max(1))
            .unwrap_or(0);
        let (base, points) = self.coarse.unwrap_or((0, self.len() as u64));
        Coarse {
            base: base + first as u32,
            points,
            non_finite: self.non_finite,
            levels: self.levels[first..]
                .iter()
                .map(|l| l.iter().map(Bucket::row).collect())
                .collect(),
        }
    }

    /// A series drawn from a persisted pyramid: `visible`, `bounds` and `last` answer from its
    /// buckets (the extremes of every range are exact; the raw points are not there).
    #[must_use]
    pub fn from_coarse(c: &Coarse) -> Self {
        Self {
            levels: c
                .levels
                .iter()
                .map(|l| l.iter().map(Bucket::from_row).collect())
                .collect(),
            non_finite: c.non_finite,
            coarse: Some((c.base, c.points)),
        }
    }

    /// Whether this is a coarse series read from a persisted pyramid.
    #[must_use]
    pub fn is_coarse(&self) -> bool {
        self.coarse.is_some_and(|(base, _)| base > 0)
    }

    fn push_bucket(&mut self, bucket: Bucket) {
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
        }
        self.levels[0].push(bucket);
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

    /// Points in the series (of a coarse one, the points its buckets merge).
    #[must_use]
    pub fn len(&self) -> usize {
        match self.coarse {
            Some((_, points)) => points as usize,
            None => self.levels.first().map_or(0, Vec::len),
        }
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

    /// The last point (of a coarse series, its last bucket's last step and the value at its
    /// minimum: the bucket holds no later value).
    #[must_use]
    pub fn last(&self) -> Option<(f64, f64)> {
        let b = self.levels.first().and_then(|l| l.last())?;
        Some(if self.is_coarse() {
            (b.x_last, b.min.1)
        } else {
            b.min
        })
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
        let coarse = raw.is_coarse();
        if let Some(points) = raw.levels.first() {
            for b in &points[self.done..] {
                // A coarse series' bucket stands for its points by its middle.
                let (x, y) = if coarse {
                    (0.5 * (b.x_first + b.x_last), 0.5 * (b.min.1 + b.max.1))
                } else {
                    b.min
                };
                self.acc = self.acc * w + (1.0 - w) * y;
                self.norm = self.norm * w + (1.0 - w);
                self.smoothed.push(x, self.acc / self.norm);
                self.last_x = Some(b.x_first);
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

    /// The builder's bounded pyramid is the full series' pyramid from its level on: the same
    /// buckets, whatever the length (partial last buckets included), and a spike survives.
    #[test]
    fn a_built_coarse_pyramid_is_the_full_ones_top() {
        for n in [1usize, 5, 63, 64, 65, 1000, 4097, 70_001] {
            let mut full = Series::new();
            let mut b = CoarseBuilder::new(16);
            for i in 0..n {
                let y = if i == n / 3 {
                    1e9
                } else {
                    ((i * 7919) % 101) as f64
                };
                full.push(i as f64, y);
                assert!(b.push(i as f64, y));
            }
            let built = b.coarse();
            let whole = full.coarse(usize::MAX);
            assert_eq!(built.points, n as u64);
            let from = built.base as usize;
            assert!(built.levels[0].len() <= 16 + 1 || from == 0, "{n}");
            assert_eq!(built.levels, whole.levels[from..].to_vec(), "{n}");
            let s = Series::from_coarse(&built);
            assert_eq!(s.len(), n);
            assert_eq!(s.bounds(), full.bounds(), "{n}");
            assert!(s.visible(0.0, n as f64, 50).iter().any(|p| p[1] == 1e9));
            assert_eq!(s.last().map(|l| l.0), full.last().map(|l| l.0));
        }
        // A rewind is refused.
        let mut b = CoarseBuilder::new(16);
        assert!(b.push(1.0, 1.0) && !b.push(1.0, 2.0) && b.push(2.0, f64::NAN));
        assert_eq!(b.coarse().non_finite, 1);
        // A series' own coarse levels start at the first that fits.
        let s = ramp(1000);
        let c = s.coarse(100);
        assert_eq!((c.base, c.levels[0].len()), (2, 63));
        assert_eq!(Series::from_coarse(&c).bounds(), s.bounds());
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

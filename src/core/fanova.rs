//! Which settings matter: functional ANOVA on a random forest (Hutter, Hoos and Leyton-Brown
//! 2014). Each member of the forest is grown on a bootstrap sample of the runs: a
//! least-squares plane over the fields, and a regression tree on what the plane leaves (the
//! plane takes smooth trends, which a tree alone draws as a staircase whose steps leak variance
//! into every other field). Each member's prediction is decomposed exactly (the plane is linear
//! and the tree's leaves are boxes) into the share of its variance, over the uniform
//! distribution on the fields' ranges, that each field explains alone and that each pair
//! explains together. A null field of fresh noise is grown with every member: a field's
//! importance is its share above the null's, the mean over the members with the 10th-90th
//! percentile over them (each a bootstrap replicate) as its interval, so a field with no effect
//! has an interval around 0. Its marginal is the forest's prediction averaged over every other
//! field. Plain Rust, deterministic from a seed.

use super::rng::SplitMix64;

/// What the forest says of one field.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldImportance {
    pub field: String,
    /// The mean share of the variance it explains alone above what a null field explains by
    /// chance: at most 1, about 0 (and possibly a little below) for a field with no effect.
    pub share: f64,
    /// The 10th and 90th percentiles of that share over the trees.
    pub low: f64,
    pub high: f64,
    /// `(value, predicted metric)` across its observed range (in the field's own units).
    pub marginal: Vec<(f64, f64)>,
}

/// The forest's answer: each field (most important first) and the strongest pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Importance {
    pub fields: Vec<FieldImportance>,
    /// The two fields whose interaction explains the most variance, and its mean share.
    pub pair: Option<(String, String, f64)>,
    pub runs: usize,
}

impl Importance {
    /// `field,share,low,high` rows, then the strongest pair.
    #[must_use]
    pub fn csv(&self) -> String {
        let mut out = String::from("field,share,low,high\n");
        for f in &self.fields {
            out.push_str(&format!("{},{},{},{}\n", f.field, f.share, f.low, f.high));
        }
        if let Some((a, b, s)) = &self.pair {
            out.push_str(&format!("{a} x {b},{s},,\n"));
        }
        out
    }
}

/// Trees in the forest.
pub const TREES: usize = 32;
const MIN_LEAF: usize = 2;
const MAX_DEPTH: usize = 10;
const MARGINAL_POINTS: usize = 24;
/// Pairs are searched among this many fields, those the trees split on most.
const PAIR_FIELDS: usize = 8;

/// The importance of each column of `x` (one row per run; `log[i]`: column `i` is searched on
/// a log scale, so its range is uniform in log space) for `y`. `None` with fewer than four
/// runs or no column that varies.
#[must_use]
pub fn importance(
    names: &[String],
    x: &[Vec<f64>],
    log: &[bool],
    y: &[f64],
    seed: u64,
) -> Option<Importance> {
    let n = x.len().min(y.len());
    let d = names.len();
    if n < 4 || d == 0 {
        return None;
    }
    // Log columns in log space; each column's range.
    let x: Vec<Vec<f64>> = x[..n]
        .iter()
        .map(|row| {
            row.iter()
                .enumerate()
                .map(|(j, v)| {
                    if log.get(j) == Some(&true) && *v > 0.0 {
                        v.ln()
                    } else {
                        *v
                    }
                })
                .collect()
        })
        .collect();
    let ranges: Vec<(f64, f64)> = (0..d)
        .map(|j| {
            x.iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), r| {
                    (lo.min(r[j]), hi.max(r[j]))
                })
        })
        .collect();
    let varying: Vec<usize> = (0..d).filter(|&j| ranges[j].1 > ranges[j].0).collect();
    if varying.is_empty() {
        return None;
    }
    // A null column, drawn afresh for every tree: uniform noise that cannot explain the
    // metric. What a tree gives it is the share a field gets by chance; every field's share is
    // counted above it, so an idle field's interval holds 0.
    let mut rng = SplitMix64::new(seed);
    let null = d;
    let x: Vec<Vec<f64>> = x
        .into_iter()
        .map(|mut row| {
            row.push(0.0);
            row
        })
        .collect();
    let mut ranges = ranges;
    ranges.push((0.0, 1.0));
    let mut columns = varying.clone();
    columns.push(null);
    // Each member's bootstrap sample and null column are drawn here, in order, so the result
    // depends on the seed alone; the members are grown and decomposed on two threads.
    let draws: Vec<(Vec<f64>, Vec<usize>)> = (0..TREES)
        .map(|_| {
            let noise = (0..n).map(|_| rng.next_f64()).collect();
            let sample = (0..n).map(|_| rng.below(n as u64) as usize).collect();
            (noise, sample)
        })
        .collect();
    let grow = |(noise, sample): &(Vec<f64>, Vec<usize>)| {
        let mut x = x.clone();
        for (row, z) in x.iter_mut().zip(noise) {
            row[null] = *z;
        }
        let model = Model::fit(&x, &y[..n], sample, &ranges, &columns);
        let parts = model.decompose(&ranges, &columns);
        (model, parts)
    };
    let half = draws.len().div_ceil(2);
    let models: Vec<(Model, Parts)> = std::thread::scope(|scope| {
        let second = std::thread::Builder::new()
            .name("workbench-fanova".into())
            .spawn_scoped(scope, || draws[half..].iter().map(grow).collect::<Vec<_>>());
        let mut out: Vec<(Model, Parts)> = draws[..half].iter().map(grow).collect();
        // Without a second thread, the second half here too.
        out.extend(
            second
                .ok()
                .and_then(|h| h.join().ok())
                .unwrap_or_else(|| draws[half..].iter().map(grow).collect()),
        );
        out
    });
    let models: Vec<(Model, Parts)> = models
        .into_iter()
        .filter(|(_, p)| p.total > 1e-300)
        .collect();
    if models.is_empty() {
        return None;
    }
    // Per member: each column's share alone (the null's included) and, for the fields that
    // matter most, each pair's share together.
    let raw: Vec<Vec<f64>> = (0..=d)
        .map(|j| models.iter().map(|(_, p)| p.main[j] / p.total).collect())
        .collect();
    let members = models.len() as f64;
    let gain = |j: usize| models.iter().map(|(m, _)| m.tree.gain[j]).sum::<f64>();
    let mut candidates: Vec<usize> = varying;
    candidates.sort_by(|&a, &b| gain(b).total_cmp(&gain(a)));
    candidates.truncate(PAIR_FIELDS);
    let mut pairs: Vec<((usize, usize), f64)> = Vec::new();
    for (i, &a) in candidates.iter().enumerate() {
        for &b in &candidates[i + 1..] {
            let (a, b) = (a.min(b), a.max(b));
            let share: f64 = models
                .iter()
                .map(|(m, p)| {
                    let inter = m.tree.pair_variance(&ranges, a, b, p.tree_mean)
                        - p.tree_main[a]
                        - p.tree_main[b];
                    inter.max(0.0) / p.total
                })
                .sum();
            pairs.push(((a, b), share / members));
        }
    }
    let mut fields: Vec<FieldImportance> = (0..d)
        .map(|j| {
            // The share above chance, model by model.
            let mut s: Vec<f64> = raw[j].iter().zip(&raw[null]).map(|(v, z)| v - z).collect();
            s.sort_by(f64::total_cmp);
            let pct = |q: f64| s[((s.len() - 1) as f64 * q).round() as usize];
            let (lo, hi) = ranges[j];
            let at: Vec<f64> = (0..MARGINAL_POINTS)
                .map(|k| lo + (hi - lo) * k as f64 / (MARGINAL_POINTS - 1) as f64)
                .collect();
            let mut pred = vec![0.0; at.len()];
            for (m, _) in &models {
                for (p, v) in pred.iter_mut().zip(m.marginal(&ranges, j, &at)) {
                    *p += v / models.len() as f64;
                }
            }
            let marginal = at
                .iter()
                .zip(pred)
                .map(|(&v, p)| {
                    (
                        if log.get(j) == Some(&true) {
                            v.exp()
                        } else {
                            v
                        },
                        p,
                    )
                })
                .collect();
            FieldImportance {
                field: names[j].clone(),
                share: s.iter().sum::<f64>() / members,
                low: pct(0.1),
                high: pct(0.9),
                marginal,
            }
        })
        .collect();
    fields.sort_by(|a, b| b.share.total_cmp(&a.share));
    let pair = pairs
        .into_iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|((a, b), s)| (names[a].clone(), names[b].clone(), s));
    Some(Importance {
        fields,
        pair,
        runs: n,
    })
}

/// One member of the forest: a least-squares plane over the columns and a regression tree
/// grown on what the plane leaves. The plane takes the smooth trends (a rate's effect on a
/// log axis is close to one), so the tree's boxes go to curvature and interactions instead of
/// a staircase for a slope, whose steps would leak variance into every other field.
struct Model {
    /// The plane's slope per column (0 for a column that does not vary).
    slope: Vec<f64>,
    tree: Tree,
}

impl Model {
    fn fit(
        x: &[Vec<f64>],
        y: &[f64],
        sample: &[usize],
        ranges: &[(f64, f64)],
        columns: &[usize],
    ) -> Self {
        let slope = plane(x, y, sample, ranges, columns);
        let residual: Vec<f64> = x
            .iter()
            .zip(y)
            .map(|(r, v)| v - columns.iter().map(|&j| slope[j] * r[j]).sum::<f64>())
            .collect();
        let tree = Tree::grow(x, &residual, sample, ranges, columns);
        Self { slope, tree }
    }

    /// The variance of the prediction over the uniform distribution on the ranges (the
    /// plane's, the tree's, and twice their covariance, through each column's profile), and
    /// that of the prediction averaged over every column but one, for each column: for the
    /// whole member and for its tree alone (pairs need the tree's).
    fn decompose(&self, ranges: &[(f64, f64)], columns: &[usize]) -> Parts {
        let m = self.tree.mean();
        let mut parts = Parts {
            total: self.tree.variance(m),
            main: vec![0.0; ranges.len()],
            tree_main: vec![0.0; ranges.len()],
            tree_mean: m,
        };
        for &j in columns {
            let (lo, hi) = ranges[j];
            let b = self.slope[j];
            let (tree_main, cov) = self.tree.column_moments(ranges, j, m);
            let plane = b * b * (hi - lo).powi(2) / 12.0;
            parts.total += plane + 2.0 * b * cov;
            parts.main[j] = plane + tree_main + 2.0 * b * cov;
            parts.tree_main[j] = tree_main;
        }
        parts
    }

    /// The prediction at each of `at` (values of column `j`) averaged over every other
    /// column.
    fn marginal(&self, ranges: &[(f64, f64)], j: usize, at: &[f64]) -> Vec<f64> {
        let centre: f64 = self
            .slope
            .iter()
            .enumerate()
            .map(|(k, b)| b * 0.5 * (ranges[k].0 + ranges[k].1))
            .sum();
        let (cuts, cells) = self.tree.profile(ranges, j);
        at.iter()
            .map(|&v| {
                // The cell holding v (the last one holds the range's upper end).
                let cell = cuts.partition_point(|c| *c <= v).clamp(1, cells.len()) - 1;
                centre + self.slope[j] * (v - 0.5 * (ranges[j].0 + ranges[j].1)) + cells[cell]
            })
            .collect()
    }
}

/// What a member's prediction's variance is made of (see [`Model::decompose`]).
struct Parts {
    total: f64,
    main: Vec<f64>,
    tree_main: Vec<f64>,
    tree_mean: f64,
}

/// A least-squares plane through the sample (a tiny ridge keeps it defined with few runs):
/// the slope per column, in the column's units.
fn plane(
    x: &[Vec<f64>],
    y: &[f64],
    sample: &[usize],
    ranges: &[(f64, f64)],
    columns: &[usize],
) -> Vec<f64> {
    let k = columns.len();
    let n = sample.len() as f64;
    // Columns scaled to their range, centred on the sample.
    let z = |r: usize, i: usize| {
        let (lo, hi) = ranges[columns[i]];
        (x[r][columns[i]] - lo) / (hi - lo)
    };
    let zm: Vec<f64> = (0..k)
        .map(|i| sample.iter().map(|&r| z(r, i)).sum::<f64>() / n)
        .collect();
    let ym = sample.iter().map(|&r| y[r]).sum::<f64>() / n;
    let mut a = vec![vec![0.0; k + 1]; k];
    for &r in sample {
        let zr: Vec<f64> = (0..k).map(|i| z(r, i) - zm[i]).collect();
        for i in 0..k {
            for (jj, &zj) in zr.iter().enumerate() {
                a[i][jj] += zr[i] * zj;
            }
            a[i][k] += zr[i] * (y[r] - ym);
        }
    }
    for (i, row) in a.iter_mut().enumerate() {
        row[i] += 1e-6 * n;
    }
    // Gaussian elimination with partial pivoting.
    for c in 0..k {
        let p = (c..k)
            .max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))
            .unwrap_or(c);
        a.swap(c, p);
        let pivot = a[c][c];
        if pivot.abs() < 1e-300 {
            continue;
        }
        let pivot_row = a[c].clone();
        for (i, row) in a.iter_mut().enumerate() {
            let f = row[c] / pivot;
            if i != c && f != 0.0 {
                for (v, p) in row[c..].iter_mut().zip(&pivot_row[c..]) {
                    *v -= f * p;
                }
            }
        }
    }
    let mut slope = vec![0.0; ranges.len()];
    for (i, &j) in columns.iter().enumerate() {
        let (lo, hi) = ranges[j];
        let beta = if a[i][i].abs() < 1e-300 {
            0.0
        } else {
            a[i][k] / a[i][i]
        };
        slope[j] = beta / (hi - lo);
    }
    slope
}

/// A regression tree as its leaves, with the squared error its splits on each column took
/// away (what the pair search ranks fields by: a field that acts only with another is split
/// on though it explains nothing alone).
struct Tree {
    leaves: Vec<Leaf>,
    gain: Vec<f64>,
}

/// A leaf: its box (`[lo, hi)` per column), its mean, and its share of each column's range
/// and of the whole space (uniform over the ranges).
struct Leaf {
    bounds: Vec<(f64, f64)>,
    value: f64,
    frac: Vec<f64>,
    volume: f64,
}

impl Leaf {
    fn new(bounds: Vec<(f64, f64)>, value: f64, ranges: &[(f64, f64)]) -> Self {
        let frac: Vec<f64> = bounds
            .iter()
            .zip(ranges)
            .map(|((a, b), (lo, hi))| if hi > lo { (b - a) / (hi - lo) } else { 1.0 })
            .collect();
        let volume = frac.iter().product();
        Self {
            bounds,
            value,
            frac,
            volume,
        }
    }

    /// Its share of the space of every column but `skip`.
    fn volume_without(&self, skip: &[usize]) -> f64 {
        let kept: f64 = skip.iter().map(|&j| self.frac[j]).product();
        if kept > 0.0 {
            self.volume / kept
        } else {
            0.0
        }
    }
}

impl Tree {
    fn grow(
        x: &[Vec<f64>],
        y: &[f64],
        sample: &[usize],
        ranges: &[(f64, f64)],
        columns: &[usize],
    ) -> Self {
        // Each node keeps its rows sorted by every column (sorted once at the root, split
        // stably), so finding a split costs one pass per column, not a sort.
        let orders: Vec<Vec<usize>> = columns
            .iter()
            .map(|&j| {
                let mut o = sample.to_vec();
                o.sort_by(|&a, &b| x[a][j].total_cmp(&x[b][j]));
                o
            })
            .collect();
        let mut leaves = Vec::new();
        let mut gain = vec![0.0; ranges.len()];
        let mut stack = vec![(orders, ranges.to_vec(), 0usize)];
        while let Some((orders, bounds, depth)) = stack.pop() {
            let rows = &orders[0];
            let mean = rows.iter().map(|&r| y[r]).sum::<f64>() / rows.len().max(1) as f64;
            let split = if depth < MAX_DEPTH && rows.len() >= 2 * MIN_LEAF {
                best_split(x, y, &orders, columns)
            } else {
                None
            };
            match split {
                Some((j, cut, taken)) => {
                    gain[j] += taken;
                    let (left, right): (Vec<Vec<usize>>, Vec<Vec<usize>>) = orders
                        .iter()
                        .map(|o| o.iter().partition(|&&r| x[r][j] < cut))
                        .unzip();
                    let mut lb = bounds.clone();
                    lb[j].1 = cut;
                    let mut rb = bounds;
                    rb[j].0 = cut;
                    stack.push((left, lb, depth + 1));
                    stack.push((right, rb, depth + 1));
                }
                None => leaves.push(Leaf::new(bounds, mean, ranges)),
            }
        }
        Self { leaves, gain }
    }

    fn mean(&self) -> f64 {
        self.leaves.iter().map(|l| l.value * l.volume).sum()
    }

    fn variance(&self, m: f64) -> f64 {
        self.leaves
            .iter()
            .map(|l| l.volume * (l.value - m).powi(2))
            .sum()
    }

    /// Column `j`'s cuts (its range's ends included) and the prediction averaged over every
    /// other column in each cell between them: one sweep over the leaves.
    fn profile(&self, ranges: &[(f64, f64)], j: usize) -> (Vec<f64>, Vec<f64>) {
        let cuts = self.cuts(ranges, j);
        let mut diff = vec![0.0; cuts.len()];
        for l in &self.leaves {
            let w = l.value * l.volume_without(&[j]);
            diff[position(&cuts, l.bounds[j].0)] += w;
            diff[position(&cuts, l.bounds[j].1)] -= w;
        }
        let mut acc = 0.0;
        let cells = diff[..cuts.len() - 1]
            .iter()
            .map(|d| {
                acc += d;
                acc
            })
            .collect();
        (cuts, cells)
    }

    fn cuts(&self, ranges: &[(f64, f64)], j: usize) -> Vec<f64> {
        let (lo, hi) = ranges[j];
        let mut cuts: Vec<f64> = self
            .leaves
            .iter()
            .flat_map(|l| [l.bounds[j].0, l.bounds[j].1])
            .filter(|c| *c > lo && *c < hi)
            .chain([lo, hi])
            .collect();
        cuts.sort_by(f64::total_cmp);
        cuts.dedup();
        cuts
    }

    /// Over column `j`'s profile (the prediction averaged over every other column): its
    /// variance, and its covariance with the column's value. `m` is the tree's mean.
    fn column_moments(&self, ranges: &[(f64, f64)], j: usize, m: f64) -> (f64, f64) {
        let (lo, hi) = ranges[j];
        let c = 0.5 * (lo + hi);
        let (cuts, cells) = self.profile(ranges, j);
        cells
            .iter()
            .enumerate()
            .fold((0.0, 0.0), |(var, cov), (i, t)| {
                let f = (cuts[i + 1] - cuts[i]) / (hi - lo);
                let mid = 0.5 * (cuts[i] + cuts[i + 1]);
                (var + f * (t - m).powi(2), cov + f * (t - m) * (mid - c))
            })
    }

    /// The variance of the prediction averaged over every column but `a` and `b`: every leaf
    /// adds its weight to a rectangle of the two columns' grid (a 2-D difference array).
    fn pair_variance(&self, ranges: &[(f64, f64)], a: usize, b: usize, m: f64) -> f64 {
        let (ca, cb) = (self.cuts(ranges, a), self.cuts(ranges, b));
        let (na, nb) = (ca.len(), cb.len());
        let mut diff = vec![0.0; na * nb];
        for l in &self.leaves {
            let w = l.value * l.volume_without(&[a, b]);
            let (i0, i1) = (position(&ca, l.bounds[a].0), position(&ca, l.bounds[a].1));
            let (j0, j1) = (position(&cb, l.bounds[b].0), position(&cb, l.bounds[b].1));
            diff[i0 * nb + j0] += w;
            diff[i0 * nb + j1] -= w;
            diff[i1 * nb + j0] -= w;
            diff[i1 * nb + j1] += w;
        }
        for i in 0..na {
            for j in 1..nb {
                diff[i * nb + j] += diff[i * nb + j - 1];
            }
        }
        for i in 1..na {
            for j in 0..nb {
                diff[i * nb + j] += diff[(i - 1) * nb + j];
            }
        }
        let (wa, wb) = (ranges[a].1 - ranges[a].0, ranges[b].1 - ranges[b].0);
        let mut v = 0.0;
        for i in 0..na - 1 {
            for j in 0..nb - 1 {
                let f = (ca[i + 1] - ca[i]) / wa * (cb[j + 1] - cb[j]) / wb;
                v += f * (diff[i * nb + j] - m).powi(2);
            }
        }
        v
    }
}

/// The index of `v` among sorted `cuts` (it is one of them).
fn position(cuts: &[f64], v: f64) -> usize {
    cuts.partition_point(|c| *c < v).min(cuts.len() - 1)
}

/// The split of `rows` that lowers the squared error most: over every column, every midpoint
/// between consecutive distinct values (trees differ by their bootstrap sample, as in
/// Optuna's and scikit-learn's forests).
fn best_split(
    x: &[Vec<f64>],
    y: &[f64],
    orders: &[Vec<usize>],
    columns: &[usize],
) -> Option<(usize, f64, f64)> {
    let rows = &orders[0];
    let total: f64 = rows.iter().map(|&r| y[r]).sum();
    let total_sq: f64 = rows.iter().map(|&r| y[r] * y[r]).sum();
    let n = rows.len() as f64;
    let mut best: Option<(f64, usize, f64)> = None;
    for (order, &j) in orders.iter().zip(columns) {
        let (mut s, mut sq) = (0.0, 0.0);
        for k in 0..order.len() - 1 {
            let r = order[k];
            s += y[r];
            sq += y[r] * y[r];
            let (a, b) = (x[r][j], x[order[k + 1]][j]);
            let left = (k + 1) as f64;
            if a == b || (k + 1) < MIN_LEAF || order.len() - (k + 1) < MIN_LEAF {
                continue;
            }
            let right = n - left;
            let sse = (sq - s * s / left) + ((total_sq - sq) - (total - s).powi(2) / right);
            if best.as_ref().is_none_or(|(e, _, _)| sse < *e) {
                best = Some((sse, j, 0.5 * (a + b)));
            }
        }
    }
    let parent = total_sq - total * total / n;
    best.filter(|(e, _, _)| *e < parent - 1e-12)
        .map(|(e, j, cut)| (j, cut, parent - e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs on a grid of three fields: `y = 5 a + sin-free small b + 0 * c` plus an `a x b`
    /// interaction in the second test.
    fn runs(f: impl Fn(f64, f64, f64) -> f64) -> (Vec<Vec<f64>>, Vec<f64>) {
        let mut rng = SplitMix64::new(9);
        let x: Vec<Vec<f64>> = (0..120)
            .map(|_| vec![rng.next_f64(), rng.next_f64(), rng.next_f64()])
            .collect();
        let y = x.iter().map(|r| f(r[0], r[1], r[2])).collect();
        (x, y)
    }

    fn names() -> Vec<String> {
        vec!["a".into(), "b".into(), "c".into()]
    }

    #[test]
    fn the_field_that_drives_the_metric_explains_most_of_it() {
        let (x, y) = runs(|a, b, _| 5.0 * a + b);
        let imp = importance(&names(), &x, &[false; 3], &y, 1).unwrap();
        let by = |n: &str| imp.fields.iter().find(|f| f.field == n).unwrap().clone();
        let (a, b, c) = (by("a"), by("b"), by("c"));
        assert_eq!(imp.fields[0].field, "a");
        // A linear a explains 25/26 of the variance, b 1/26, c nothing.
        assert!(a.share > 0.8 && a.share < 1.0, "{a:?}");
        assert!(b.share > 0.01 && b.share < 0.15, "{b:?}");
        assert!(c.share < 0.02, "{c:?}");
        assert!(a.low <= a.share && a.share <= a.high);
        // Its marginal rises across its range.
        let m = &a.marginal;
        assert!(m.last().unwrap().1 - m[0].1 > 3.0, "{m:?}");
        assert!(imp.csv().starts_with("field,share,low,high\na,"));
    }

    #[test]
    fn an_interaction_is_found_as_the_strongest_pair() {
        // y depends on a and b only together (their product, centred): little alone.
        let (x, y) = runs(|a, b, _| (a - 0.5) * (b - 0.5) * 10.0);
        let imp = importance(&names(), &x, &[false; 3], &y, 2).unwrap();
        let (p, q, share) = imp.pair.clone().unwrap();
        assert_eq!((p.as_str(), q.as_str()), ("a", "b"), "{imp:?}");
        assert!(share > 0.4, "{share}");
        let alone: f64 = imp.fields.iter().map(|f| f.share).sum();
        assert!(alone < 0.5, "{alone}");
    }

    /// The check: `f = 10 x1 + 3 x2^2 + x1 x3 + 0 x4 + noise` over 100 runs ranks
    /// x1 > x2 > x3 > x4, x4's interval holds 0, and a recomputation gives the same numbers.
    #[test]
    fn a_known_function_is_ranked_and_an_idle_field_is_told_apart() {
        let mut rng = SplitMix64::new(31);
        let x: Vec<Vec<f64>> = (0..100)
            .map(|_| (0..4).map(|_| rng.next_f64()).collect())
            .collect();
        let y: Vec<f64> = x
            .iter()
            .map(|r| {
                10.0 * r[0] + 3.0 * r[1] * r[1] + r[0] * r[2] + 0.02 * rng.range_f64(-1.0, 1.0)
            })
            .collect();
        let names: Vec<String> = ["x1", "x2", "x3", "x4"].map(String::from).to_vec();
        let imp = importance(&names, &x, &[false; 4], &y, 5).unwrap();
        let order: Vec<&str> = imp.fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(order, ["x1", "x2", "x3", "x4"], "{imp:?}");
        let x4 = &imp.fields[3];
        assert!(x4.low <= 0.0 && 0.0 <= x4.high, "{x4:?}");
        for _ in 0..10 {
            assert_eq!(importance(&names, &x, &[false; 4], &y, 5).unwrap(), imp);
        }
    }

    #[test]
    fn log_fields_are_ranged_in_log_space_and_too_few_runs_say_nothing() {
        let mut rng = SplitMix64::new(4);
        let x: Vec<Vec<f64>> = (0..60)
            .map(|_| vec![10f64.powf(rng.range_f64(-5.0, -1.0)), rng.next_f64()])
            .collect();
        let y: Vec<f64> = x.iter().map(|r| r[0].log10()).collect();
        let names = vec!["lr".to_string(), "noise".to_string()];
        let imp = importance(&names, &x, &[true, false], &y, 3).unwrap();
        assert_eq!(imp.fields[0].field, "lr");
        let m = &imp.fields[0].marginal;
        assert!((m[0].0 - x.iter().map(|r| r[0]).fold(f64::INFINITY, f64::min)).abs() < 1e-12);
        assert!(importance(&names, &x[..3], &[true, false], &y[..3], 3).is_none());
    }
}

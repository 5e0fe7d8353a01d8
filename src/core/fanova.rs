//! Which settings matter: functional ANOVA on a random forest (Hutter, Hoos and Leyton-Brown
//! 2014). A forest of regression trees, each grown on a bootstrap sample of the runs, predicts
//! a metric from the fields that vary; each tree's prediction is decomposed exactly (its leaves
//! are boxes) into the share of its variance, over the uniform distribution on the fields'
//! ranges, that each field explains alone and that each pair explains together. A field's
//! importance is the mean share over the trees, with the 10th-90th percentile over them (each
//! tree a bootstrap replicate) as its interval; its marginal is the forest's prediction
//! averaged over every other field. Plain Rust, deterministic from a seed.

use super::rng::SplitMix64;

/// What the forest says of one field.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldImportance {
    pub field: String,
    /// The mean share of the variance it explains alone, in [0, 1].
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
    let mut rng = SplitMix64::new(seed);
    let trees: Vec<Tree> = (0..TREES)
        .map(|_| {
            let sample: Vec<usize> = (0..n).map(|_| rng.below(n as u64) as usize).collect();
            Tree::grow(&x, &y[..n], &sample, &ranges, &varying, &mut rng)
        })
        .collect();
    let mut shares: Vec<Vec<f64>> = vec![Vec::new(); d];
    let mut pairs: Vec<((usize, usize), f64)> = Vec::new();
    for t in &trees {
        let total = t.variance(&ranges);
        if total <= 1e-300 {
            continue;
        }
        let singles: Vec<f64> = (0..d)
            .map(|j| {
                if varying.contains(&j) {
                    t.marginal_variance(&ranges, &[j])
                } else {
                    0.0
                }
            })
            .collect();
        for j in 0..d {
            shares[j].push(singles[j] / total);
        }
        for (a_i, &a) in varying.iter().enumerate() {
            for &b in &varying[a_i + 1..] {
                let joint = t.marginal_variance(&ranges, &[a, b]);
                let inter = (joint - singles[a] - singles[b]).max(0.0) / total;
                match pairs.iter_mut().find(|(k, _)| *k == (a, b)) {
                    Some(p) => p.1 += inter,
                    None => pairs.push(((a, b), inter)),
                }
            }
        }
    }
    let counted = shares.first().map_or(0, Vec::len).max(1) as f64;
    let mut fields: Vec<FieldImportance> = (0..d)
        .map(|j| {
            let mut s = shares[j].clone();
            s.sort_by(f64::total_cmp);
            let pct = |q: f64| {
                if s.is_empty() {
                    0.0
                } else {
                    s[((s.len() - 1) as f64 * q).round() as usize]
                }
            };
            let (lo, hi) = ranges[j];
            let marginal = (0..MARGINAL_POINTS)
                .map(|k| {
                    let v = lo + (hi - lo) * k as f64 / (MARGINAL_POINTS - 1) as f64;
                    let pred = trees
                        .iter()
                        .map(|t| t.marginal_at(&ranges, j, v))
                        .sum::<f64>()
                        / trees.len() as f64;
                    let shown = if log.get(j) == Some(&true) {
                        v.exp()
                    } else {
                        v
                    };
                    (shown, pred)
                })
                .collect();
            FieldImportance {
                field: names[j].clone(),
                share: s.iter().sum::<f64>() / counted,
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
        .map(|((a, b), s)| (names[a].clone(), names[b].clone(), s / counted));
    Some(Importance {
        fields,
        pair,
        runs: n,
    })
}

/// A regression tree as its leaves: each a box (`[lo, hi)` per column) and its mean.
struct Tree {
    leaves: Vec<(Vec<(f64, f64)>, f64)>,
}

impl Tree {
    fn grow(
        x: &[Vec<f64>],
        y: &[f64],
        sample: &[usize],
        ranges: &[(f64, f64)],
        varying: &[usize],
        rng: &mut SplitMix64,
    ) -> Self {
        let mut leaves = Vec::new();
        let mut stack = vec![(sample.to_vec(), ranges.to_vec(), 0usize)];
        while let Some((rows, bounds, depth)) = stack.pop() {
            let mean = rows.iter().map(|&r| y[r]).sum::<f64>() / rows.len().max(1) as f64;
            let split = if depth < MAX_DEPTH && rows.len() >= 2 * MIN_LEAF {
                best_split(x, y, &rows, varying, rng)
            } else {
                None
            };
            match split {
                Some((j, cut)) => {
                    let (left, right): (Vec<usize>, Vec<usize>) =
                        rows.iter().partition(|&&r| x[r][j] < cut);
                    let mut lb = bounds.clone();
                    lb[j].1 = cut;
                    let mut rb = bounds;
                    rb[j].0 = cut;
                    stack.push((left, lb, depth + 1));
                    stack.push((right, rb, depth + 1));
                }
                None => leaves.push((bounds, mean)),
            }
        }
        Self { leaves }
    }

    /// Each leaf's share of the space (uniform over the ranges).
    fn volume(bounds: &[(f64, f64)], ranges: &[(f64, f64)], skip: &[usize]) -> f64 {
        bounds
            .iter()
            .zip(ranges)
            .enumerate()
            .filter(|(j, _)| !skip.contains(j))
            .map(|(_, ((a, b), (lo, hi)))| if hi > lo { (b - a) / (hi - lo) } else { 1.0 })
            .product()
    }

    fn mean(&self, ranges: &[(f64, f64)]) -> f64 {
        self.leaves
            .iter()
            .map(|(b, v)| v * Self::volume(b, ranges, &[]))
            .sum()
    }

    /// The variance of the tree's prediction over the space.
    fn variance(&self, ranges: &[(f64, f64)]) -> f64 {
        let m = self.mean(ranges);
        self.leaves
            .iter()
            .map(|(b, v)| Self::volume(b, ranges, &[]) * (v - m).powi(2))
            .sum()
    }

    /// The prediction at `v` of column `j`, averaged over every other column.
    fn marginal_at(&self, ranges: &[(f64, f64)], j: usize, v: f64) -> f64 {
        let (lo, hi) = ranges[j];
        self.leaves
            .iter()
            .filter(|(b, _)| b[j].0 <= v && (v < b[j].1 || (b[j].1 >= hi && v <= hi) || hi <= lo))
            .map(|(b, val)| val * Self::volume(b, ranges, &[j]))
            .sum()
    }

    /// The variance of the prediction averaged over every column but `cols` (one or two).
    fn marginal_variance(&self, ranges: &[(f64, f64)], cols: &[usize]) -> f64 {
        let m = self.mean(ranges);
        // The cells of the chosen columns: between consecutive cuts of the leaves.
        let cells: Vec<Vec<(f64, f64)>> = cols
            .iter()
            .map(|&j| {
                let (lo, hi) = ranges[j];
                let mut cuts: Vec<f64> = self
                    .leaves
                    .iter()
                    .flat_map(|(b, _)| [b[j].0, b[j].1])
                    .filter(|c| *c > lo && *c < hi)
                    .collect();
                cuts.push(lo);
                cuts.push(hi);
                cuts.sort_by(f64::total_cmp);
                cuts.dedup();
                cuts.windows(2).map(|w| (w[0], w[1])).collect()
            })
            .collect();
        let width = |j: usize, (a, b): (f64, f64)| {
            let (lo, hi) = ranges[j];
            (b - a) / (hi - lo)
        };
        let at = |centre: &[f64]| -> f64 {
            self.leaves
                .iter()
                .filter(|(b, _)| {
                    cols.iter()
                        .zip(centre)
                        .all(|(&j, &c)| b[j].0 <= c && c < b[j].1)
                })
                .map(|(b, v)| v * Self::volume(b, ranges, cols))
                .sum()
        };
        match cells.as_slice() {
            [one] => one
                .iter()
                .map(|&c| width(cols[0], c) * (at(&[0.5 * (c.0 + c.1)]) - m).powi(2))
                .sum(),
            [a, b] => a
                .iter()
                .flat_map(|&ca| b.iter().map(move |&cb| (ca, cb)))
                .map(|(ca, cb)| {
                    let w = width(cols[0], ca) * width(cols[1], cb);
                    w * (at(&[0.5 * (ca.0 + ca.1), 0.5 * (cb.0 + cb.1)]) - m).powi(2)
                })
                .sum(),
            _ => 0.0,
        }
    }
}

/// The split of `rows` that lowers the squared error most: over a random two thirds of the
/// varying columns (at least one), every midpoint between consecutive distinct values.
fn best_split(
    x: &[Vec<f64>],
    y: &[f64],
    rows: &[usize],
    varying: &[usize],
    rng: &mut SplitMix64,
) -> Option<(usize, f64)> {
    let mut cols = varying.to_vec();
    rng.shuffle(&mut cols);
    cols.truncate((varying.len() * 2).div_ceil(3).max(1));
    let mut best: Option<(f64, usize, f64)> = None;
    for j in cols {
        let mut order: Vec<usize> = rows.to_vec();
        order.sort_by(|&a, &b| x[a][j].total_cmp(&x[b][j]));
        let total: f64 = order.iter().map(|&r| y[r]).sum();
        let total_sq: f64 = order.iter().map(|&r| y[r] * y[r]).sum();
        let n = order.len() as f64;
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
    let parent = {
        let n = rows.len() as f64;
        let s: f64 = rows.iter().map(|&r| y[r]).sum();
        rows.iter().map(|&r| y[r] * y[r]).sum::<f64>() - s * s / n
    };
    best.filter(|(e, _, _)| *e < parent - 1e-12)
        .map(|(_, j, cut)| (j, cut))
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

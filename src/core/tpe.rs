//! The tree-structured Parzen estimator (Bergstra et al. 2011), univariate as in Optuna's
//! default sampler: the trials so far are split by their objective into the best `gamma(n)`
//! (`min(ceil(0.1 n), 25)`) and the rest; each field gets a Parzen density of each group (a
//! truncated Gaussian at every observation plus a prior over the whole range, widths from the
//! gaps to the neighbours; for choices, smoothed counts); candidates are drawn from the good
//! density and the one with the largest `l(x) / g(x)` over all fields is proposed. Log fields
//! live in log space, whole numbers are rounded, choices are categorical. Plain Rust: values
//! in, values out; the seed makes it repeatable.

use std::collections::BTreeMap;

use serde_json::Value;

use super::rng::SplitMix64;
use super::sweep::Draw;

/// Candidates drawn from the good density per proposal (Optuna's `n_ei_candidates`).
pub const CANDIDATES: usize = 24;

/// The size of the good group for `n` observations.
#[must_use]
pub fn gamma(n: usize) -> usize {
    n.div_ceil(10).clamp(1, 25)
}

/// One field as TPE sees it: a continuous interval (log or linear, maybe rounded) or choices.
enum Space {
    Interval {
        lo: f64,
        hi: f64,
        log: bool,
        round: bool,
    },
    Choice(usize),
}

impl Space {
    fn of(d: &Draw) -> Self {
        match d {
            Draw::Uniform(lo, hi) => Self::Interval {
                lo: *lo,
                hi: *hi,
                log: false,
                round: false,
            },
            Draw::LogUniform(lo, hi) => Self::Interval {
                lo: lo.ln(),
                hi: hi.ln(),
                log: true,
                round: false,
            },
            Draw::Int(lo, hi) => Self::Interval {
                lo: *lo as f64 - 0.5,
                hi: *hi as f64 + 0.5,
                log: false,
                round: true,
            },
            Draw::Choice(v) => Self::Choice(v.len()),
        }
    }

    /// An observed value in this space's coordinates (`None`: not one of its values).
    fn coord(&self, d: &Draw, v: &Value) -> Option<f64> {
        match (self, d) {
            (Self::Choice(_), Draw::Choice(values)) => {
                values.iter().position(|c| c == v).map(|i| i as f64)
            }
            (Self::Interval { log, .. }, _) => {
                let x = v.as_f64()?;
                if *log {
                    (x > 0.0).then(|| x.ln())
                } else {
                    Some(x)
                }
            }
            _ => None,
        }
    }

    fn value(&self, d: &Draw, x: f64) -> Value {
        match (self, d) {
            (Self::Choice(_), Draw::Choice(values)) => {
                values.get(x as usize).cloned().unwrap_or(Value::Null)
            }
            (Self::Interval { log: true, .. }, Draw::LogUniform(lo, hi)) => {
                Value::from(x.exp().clamp(*lo, *hi))
            }
            (Self::Interval { round: true, .. }, Draw::Int(lo, hi)) => {
                Value::from((x.round() as i64).clamp(*lo, *hi))
            }
            (Self::Interval { lo, hi, .. }, _) => Value::from(x.clamp(*lo, *hi)),
            _ => Value::Null,
        }
    }
}

/// A Parzen density over one field.
enum Density {
    /// Truncated Gaussians `(mean, width)` on `[lo, hi]`, equally weighted.
    Mixture {
        parts: Vec<(f64, f64)>,
        lo: f64,
        hi: f64,
    },
    /// Probabilities of each choice.
    Categorical(Vec<f64>),
}

impl Density {
    fn fit(space: &Space, xs: &[f64]) -> Self {
        match *space {
            Space::Choice(k) => {
                // One pseudo-observation spread over the choices: never a zero.
                let mut p = vec![1.0 / k as f64; k];
                for &x in xs {
                    if let Some(c) = p.get_mut(x as usize) {
                        *c += 1.0;
                    }
                }
                let total: f64 = p.iter().sum();
                Self::Categorical(p.into_iter().map(|c| c / total).collect())
            }
            Space::Interval { lo, hi, .. } => {
                let range = hi - lo;
                // The observations and the prior (at the middle, as wide as the range),
                // in order: each observation is as wide as its larger gap to a neighbour.
                let mut mus: Vec<(f64, bool)> = xs.iter().map(|&x| (x, false)).collect();
                mus.push((0.5 * (lo + hi), true));
                mus.sort_by(|a, b| a.0.total_cmp(&b.0));
                let n = mus.len();
                let min_width = range / (n as f64 + 1.0).min(100.0);
                let parts = mus
                    .iter()
                    .enumerate()
                    .map(|(i, &(mu, prior))| {
                        let left = if i == 0 { mu - lo } else { mu - mus[i - 1].0 };
                        let right = if i + 1 == n {
                            hi - mu
                        } else {
                            mus[i + 1].0 - mu
                        };
                        let width = if prior { range } else { left.max(right) };
                        (mu, width.clamp(min_width.max(1e-12), range.max(1e-12)))
                    })
                    .collect();
                Self::Mixture { parts, lo, hi }
            }
        }
    }

    fn sample(&self, rng: &mut SplitMix64) -> f64 {
        match self {
            Self::Categorical(p) => {
                let mut u = rng.next_f64();
                for (i, pi) in p.iter().enumerate() {
                    if u < *pi {
                        return i as f64;
                    }
                    u -= pi;
                }
                (p.len() - 1) as f64
            }
            Self::Mixture { parts, lo, hi } => {
                let (mu, s) = parts[rng.below(parts.len() as u64) as usize];
                for _ in 0..100 {
                    let x = mu + s * normal(rng);
                    if (*lo..=*hi).contains(&x) {
                        return x;
                    }
                }
                mu.clamp(*lo, *hi)
            }
        }
    }

    fn log_pdf(&self, x: f64) -> f64 {
        match self {
            Self::Categorical(p) => p.get(x as usize).map_or(f64::NEG_INFINITY, |p| p.ln()),
            Self::Mixture { parts, lo, hi } => {
                let w = 1.0 / parts.len() as f64;
                let density: f64 = parts
                    .iter()
                    .map(|&(mu, s)| {
                        let mass = (phi((hi - mu) / s) - phi((lo - mu) / s)).max(1e-300);
                        let z = (x - mu) / s;
                        w * (-0.5 * z * z).exp() / (s * (2.0 * std::f64::consts::PI).sqrt() * mass)
                    })
                    .sum();
                density.max(1e-300).ln()
            }
        }
    }
}

/// The next trial's values for `fields`, from `observed`: each trial's values by field and its
/// loss (lower is better; flip the sign of a metric where higher is better). Observations
/// missing a field's value are left out of that field's densities.
#[must_use]
pub fn suggest(
    fields: &BTreeMap<String, Draw>,
    observed: &[(BTreeMap<String, Value>, f64)],
    rng: &mut SplitMix64,
) -> Vec<(String, Value)> {
    let mut ranked: Vec<&(BTreeMap<String, Value>, f64)> = observed
        .iter()
        .filter(|(_, loss)| loss.is_finite())
        .collect();
    ranked.sort_by(|a, b| a.1.total_cmp(&b.1));
    let n_good = gamma(ranked.len()).min(ranked.len());
    let (good, bad) = ranked.split_at(n_good);
    let models: Vec<(&String, &Draw, Space, Density, Density)> = fields
        .iter()
        .map(|(name, d)| {
            let space = Space::of(d);
            let xs = |group: &[&(BTreeMap<String, Value>, f64)]| -> Vec<f64> {
                group
                    .iter()
                    .filter_map(|(values, _)| space.coord(d, values.get(name)?))
                    .collect()
            };
            let l = Density::fit(&space, &xs(good));
            let g = Density::fit(&space, &xs(bad));
            (name, d, space, l, g)
        })
        .collect();
    let mut best: Option<(f64, Vec<f64>)> = None;
    for _ in 0..CANDIDATES {
        let x: Vec<f64> = models.iter().map(|(_, _, _, l, _)| l.sample(rng)).collect();
        let score: f64 = models
            .iter()
            .zip(&x)
            .map(|((_, _, _, l, g), &x)| l.log_pdf(x) - g.log_pdf(x))
            .sum();
        if best.as_ref().is_none_or(|(s, _)| score > *s) {
            best = Some((score, x));
        }
    }
    let x = best.map(|(_, x)| x).unwrap_or_default();
    models
        .iter()
        .zip(x)
        .map(|((name, d, space, _, _), x)| ((*name).clone(), space.value(d, x)))
        .collect()
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut SplitMix64) -> f64 {
    let u1 = rng.next_f64().max(1e-300);
    let u2 = rng.next_f64();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// The standard normal distribution function, through erf (Abramowitz and Stegun 7.1.26,
/// absolute error below 1.5e-7).
fn phi(z: f64) -> f64 {
    0.5 * (1.0 + erf(z / std::f64::consts::SQRT_2))
}

fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let y = 1.0 - poly * (-x * x).exp();
    if x >= 0.0 {
        y
    } else {
        -y
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> BTreeMap<String, Draw> {
        [
            ("lr".to_string(), Draw::LogUniform(1e-5, 1e-1)),
            ("n".to_string(), Draw::Int(1, 8)),
            ("x".to_string(), Draw::Uniform(-5.0, 5.0)),
            (
                "norm".to_string(),
                Draw::Choice(vec!["batch".into(), "none".into(), "layer".into()]),
            ),
        ]
        .into_iter()
        .collect()
    }

    /// A loss with its minimum at lr 1e-3, n 6, x 1.5 and norm "layer".
    fn loss(v: &BTreeMap<String, Value>) -> f64 {
        let lr = v["lr"].as_f64().unwrap();
        let n = v["n"].as_f64().unwrap();
        let x = v["x"].as_f64().unwrap();
        let norm = if v["norm"] == "layer" { 0.0 } else { 1.0 };
        (lr.log10() + 3.0).powi(2) + 0.1 * (n - 6.0).powi(2) + (x - 1.5).powi(2) + norm
    }

    fn random(rng: &mut SplitMix64) -> BTreeMap<String, Value> {
        fields()
            .iter()
            .map(|(k, d)| {
                let v = match d {
                    Draw::Uniform(lo, hi) => Value::from(rng.range_f64(*lo, *hi)),
                    Draw::LogUniform(lo, hi) => Value::from(rng.range_f64(lo.ln(), hi.ln()).exp()),
                    Draw::Int(lo, hi) => Value::from(*lo + rng.below((hi - lo + 1) as u64) as i64),
                    Draw::Choice(c) => c[rng.below(c.len() as u64) as usize].clone(),
                };
                (k.clone(), v)
            })
            .collect()
    }

    /// 40 trials: 10 random, then TPE's proposals (or random all along).
    fn best_of(seed: u64, tpe: bool, trials: usize) -> f64 {
        let mut rng = SplitMix64::new(seed);
        let mut seen: Vec<(BTreeMap<String, Value>, f64)> = Vec::new();
        for i in 0..trials {
            let v = if tpe && i >= 10 {
                suggest(&fields(), &seen, &mut rng).into_iter().collect()
            } else {
                random(&mut rng)
            };
            let l = loss(&v);
            seen.push((v, l));
        }
        seen.iter().map(|(_, l)| *l).fold(f64::INFINITY, f64::min)
    }

    #[test]
    fn proposals_stay_in_their_fields_and_repeat_from_a_seed() {
        let mut rng = SplitMix64::new(3);
        let seen: Vec<_> = (0..12)
            .map(|_| {
                let v = random(&mut rng);
                let l = loss(&v);
                (v, l)
            })
            .collect();
        for seed in 0..20 {
            let p: BTreeMap<String, Value> = suggest(&fields(), &seen, &mut SplitMix64::new(seed))
                .into_iter()
                .collect();
            let lr = p["lr"].as_f64().unwrap();
            assert!((1e-5..=1e-1).contains(&lr), "{p:?}");
            assert!(
                p["n"].is_i64() && (1..=8).contains(&p["n"].as_i64().unwrap()),
                "{p:?}"
            );
            assert!((-5.0..=5.0).contains(&p["x"].as_f64().unwrap()));
            assert!(["batch", "none", "layer"].contains(&p["norm"].as_str().unwrap()));
            let again: BTreeMap<String, Value> =
                suggest(&fields(), &seen, &mut SplitMix64::new(seed))
                    .into_iter()
                    .collect();
            assert_eq!(p, again, "the same seed, the same proposal");
        }
    }

    #[test]
    fn tpe_finds_better_settings_than_random_search_on_the_same_budget() {
        // Over 20 seeds of a 40-trial search on a four-field problem, TPE's best is better
        // than random search's in most seeds and on the median.
        let pairs: Vec<(f64, f64)> = (0..20)
            .map(|s| (best_of(s, true, 40), best_of(s, false, 40)))
            .collect();
        let wins = pairs.iter().filter(|(t, r)| t < r).count();
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let tpe = median(pairs.iter().map(|p| p.0).collect());
        let rnd = median(pairs.iter().map(|p| p.1).collect());
        assert!(wins >= 13, "TPE better in {wins} of 20: {pairs:?}");
        assert!(tpe < 0.6 * rnd, "median best: TPE {tpe}, random {rnd}");
        // The issue's own check: at 50 trials TPE wins in at least 8 of 10 seeds.
        let wins = (100..110)
            .filter(|&s| best_of(s, true, 50) < best_of(s, false, 50))
            .count();
        assert!(wins >= 8, "TPE better in {wins} of 10 at 50 trials");
    }

    #[test]
    fn the_good_group_follows_optunas_gamma_and_erf_is_accurate() {
        assert_eq!((gamma(1), gamma(10), gamma(11), gamma(300)), (1, 1, 2, 25));
        for (z, want) in [(0.0, 0.5), (1.0, 0.841_344_746), (-2.0, 0.022_750_132)] {
            assert!((phi(z) - want).abs() < 1e-6, "phi({z})");
        }
    }
}

//! Sweeps: a base preset and the runs made from it by a grid over preset fields, a seeded
//! random search, or both (each grid point gets `count` random draws). A sweep is a RON file:
//!
//! ```ron
//! (
//!     name: "lr",
//!     base: "wgan_gp_small",            // a shipped preset, or a preset file beside the sweep
//!     grid: { "train.lr_g": [1e-4, 2e-4], "train.batch_size": [32, 64] },
//!     random: Some((count: 3, seed: 7, fields: {
//!         "train.lr_d": log_uniform(1e-5, 1e-3),
//!         "train.n_critic": int(1, 5),
//!         "model.norm": choice(["batch", "none"]),
//!     })),
//! )
//! ```
//!
//! Every run's preset is the base with its values set through the same schema as `--set`, so a
//! bad field or value names the run and the field before anything is submitted.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::preset::{AnyPreset, Problem};
use super::rng::SplitMix64;

/// The most runs one sweep may expand to.
pub const MAX_RUNS: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sweep {
    pub name: String,
    /// A shipped preset's name, or a preset file (relative to the sweep file).
    pub base: String,
    /// Each field's values; the runs are every combination.
    #[serde(default)]
    pub grid: BTreeMap<String, Vec<Value>>,
    #[serde(default)]
    pub random: Option<RandomSearch>,
    /// Stops trials early (`core::pruner`): `Some(asha(grace: 100, reduction: 3))`.
    #[serde(default)]
    pub scheduler: Option<super::pruner::Scheduler>,
    /// A model-based search instead of the grid and random draws: each trial's values are
    /// proposed by TPE (`core::tpe`) when it starts, from the trials reported so far.
    #[serde(default)]
    pub tpe: Option<TpeSearch>,
}

/// `tpe: Some((count: 30, seed: 1, startup: 10, fields: { ... }))`: `count` trials, the first
/// `startup` drawn at random (from `(seed, index)`), the rest proposed by TPE.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TpeSearch {
    pub count: u32,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "ten")]
    pub startup: u32,
    pub fields: BTreeMap<String, Draw>,
}

fn ten() -> u32 {
    10
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomSearch {
    /// Draws per grid point (per sweep without a grid).
    pub count: u32,
    #[serde(default)]
    pub seed: u64,
    pub fields: BTreeMap<String, Draw>,
}

/// How a random-search field is drawn.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
pub enum Draw {
    /// Uniform in [lo, hi).
    #[serde(rename = "uniform")]
    Uniform(f64, f64),
    /// Log-uniform in [lo, hi): learning rates, weights.
    #[serde(rename = "log_uniform")]
    LogUniform(f64, f64),
    /// A whole number in [lo, hi], both included.
    #[serde(rename = "int")]
    Int(i64, i64),
    /// One of the values, each as likely.
    #[serde(rename = "choice")]
    Choice(Vec<Value>),
}

/// Why a sweep cannot be planned; each names the file, the field or the run.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("{field}: {why}")]
    Field { field: String, why: String },
    #[error("the sweep expands to {0} runs; at most {MAX_RUNS}")]
    TooMany(usize),
    #[error("run {index} ({values}): {problems}")]
    Run {
        index: usize,
        values: String,
        problems: String,
    },
    #[error("{path}: {message}")]
    Io { path: String, message: String },
}

/// The file beside a sweep's presets naming the fields it searched on a log scale
/// (`{"log": ["train.lr_d"]}`): the runs table draws them on log axes.
pub const SCALES_FILE: &str = "scales.json";

/// Writes each planned run's preset to `runs_dir/sweeps/<sweep>/<run>.ron`, headed by a
/// comment naming the run, the sweep, where it came from and its values, and the sweep's
/// [`SCALES_FILE`]; returns each run's `workbench train` arguments (`--preset` and the file's
/// absolute path).
pub fn write_runs(
    runs_dir: &std::path::Path,
    sweep: &Sweep,
    origin: &str,
    runs: &[PlannedRun],
) -> Result<Vec<Vec<String>>, SweepError> {
    let dir = super::rundir::absolute(&runs_dir.join("sweeps").join(&sweep.name));
    let io = |path: &std::path::Path, message: String| SweepError::Io {
        path: path.display().to_string(),
        message,
    };
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, format!("cannot create: {e}")))?;
    let scales = dir.join(SCALES_FILE);
    let text = serde_json::json!({ "log": sweep.log_fields() }).to_string();
    super::rundir::atomic_write(&scales, text.as_bytes())
        .map_err(|e| io(&scales, e.to_string()))?;
    // The state its trials share (a scheduler's reports, TPE's search): every trial by
    // name, with its index (Hyperband's bracket, a random start's draw); a sweep submitted
    // again keeps the reports its trials already made.
    let state = dir.join(super::pruner::STATE_FILE);
    let shared = sweep.scheduler.is_some() || sweep.tpe.is_some();
    if shared {
        let mut s = super::pruner::read(&state)
            .ok()
            .filter(|s| s.scheduler == sweep.scheduler && s.tpe == sweep.tpe)
            .unwrap_or_else(|| super::pruner::SweepState {
                scheduler: sweep.scheduler.clone(),
                tpe: sweep.tpe.clone(),
                ..super::pruner::SweepState::default()
            });
        if sweep.tpe.is_some() {
            s.base = runs.first().map(|r| r.preset.to_ron());
        }
        for r in runs {
            s.trials.entry(r.name.clone()).or_default().index = r.index;
        }
        let text = serde_json::to_string_pretty(&s).map_err(|e| io(&state, e.to_string()))?;
        super::rundir::atomic_write(&state, text.as_bytes())
            .map_err(|e| io(&state, e.to_string()))?;
    }
    let tpe = sweep.tpe.is_some();
    // Under a scheduler a grid is queued in a shuffled order (seeded by the sweep's name): a
    // rung ranks the reports it has so far, so a grid queued in order, one corner first, would
    // let each next trial beat the few before it and go on (measured: 64 % of the steps of
    // a 27-trial grid whose rates improve along the order, against 34-39 % for random draws).
    let mut order: Vec<&PlannedRun> = runs.iter().collect();
    if sweep.scheduler.is_some() && !tpe {
        let seed = super::rng::fnv1a(super::rng::FNV_OFFSET, sweep.name.as_bytes());
        super::rng::SplitMix64::new(super::rng::mix64(seed)).shuffle(&mut order);
    }
    let sweep = &sweep.name;
    order
        .into_iter()
        .map(|r| {
            let path = dir.join(format!("{}.ron", r.name));
            let text = format!(
                "// Run {} of sweep {sweep} ({origin}): {}\n{}\n",
                r.index,
                describe(&r.values),
                r.preset.to_ron()
            );
            super::rundir::atomic_write(&path, text.as_bytes())
                .map_err(|e| io(&path, e.to_string()))?;
            let mut args = vec!["--preset".to_string(), path.display().to_string()];
            if tpe {
                // Its values are proposed when it starts, from the trials reported by then.
                args = vec!["--sweep-trial".to_string(), r.name.clone()];
            }
            if shared {
                args.extend(["--sweep-state".to_string(), state.display().to_string()]);
            }
            Ok(args)
        })
        .collect()
}

/// One run of a sweep: its index, name, the values it sets and its preset.
#[derive(Debug, Clone)]
pub struct PlannedRun {
    pub index: usize,
    pub name: String,
    pub values: Vec<(String, Value)>,
    pub preset: AnyPreset,
}

impl Sweep {
    /// Parses a sweep file's text; `origin` (the file) prefixes errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, SweepError> {
        let sweep: Self = ron::from_str(text).map_err(|e| SweepError::Parse {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        sweep.check()?;
        Ok(sweep)
    }

    fn check(&self) -> Result<(), SweepError> {
        let field = |field: &str, why: &str| SweepError::Field {
            field: field.to_string(),
            why: why.to_string(),
        };
        if let Some(why) = super::rundir::name_problem(&self.name) {
            return Err(field("name", &why));
        }
        for (name, values) in &self.grid {
            if values.is_empty() {
                return Err(field(&format!("grid.{name}"), "needs at least one value"));
            }
        }
        if let Some(r) = &self.random {
            if r.count == 0 {
                return Err(field("random.count", "at least 1"));
            }
            for (name, d) in &r.fields {
                if self.grid.contains_key(name) {
                    return Err(field(name, "is in both the grid and the random search"));
                }
                if !draw_ok(d) {
                    return Err(field(
                        &format!("random.fields.{name}"),
                        "needs lo < hi (lo > 0 for log_uniform, lo <= hi for int) or a value to choose",
                    ));
                }
            }
        }
        if let Some(s) = &self.scheduler {
            s.check().map_err(|e| field("scheduler", &e.to_string()))?;
        }
        if let Some(t) = &self.tpe {
            if !self.grid.is_empty() || self.random.is_some() {
                return Err(field(
                    "tpe",
                    "is a search of its own: no grid or random with it",
                ));
            }
            if t.count == 0 || t.fields.is_empty() {
                return Err(field("tpe", "needs count >= 1 and at least one field"));
            }
            for (name, d) in &t.fields {
                if !draw_ok(d) {
                    return Err(field(
                        &format!("tpe.fields.{name}"),
                        "needs lo < hi (lo > 0 for log_uniform, lo <= hi for int) or a value to choose",
                    ));
                }
            }
        }
        let n = self.len();
        if n > MAX_RUNS {
            return Err(SweepError::TooMany(n));
        }
        Ok(())
    }

    /// How many runs the sweep makes.
    pub fn len(&self) -> usize {
        let grid = self
            .grid
            .values()
            .map(Vec::len)
            .try_fold(1usize, usize::checked_mul)
            .unwrap_or(usize::MAX);
        if let Some(t) = &self.tpe {
            return t.count as usize;
        }
        let draws = self.random.as_ref().map_or(1, |r| r.count as usize);
        grid.saturating_mul(draws)
    }

    /// Whether the sweep makes no runs (never, once parsed).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The fields the runs vary: the grid's, then the random search's.
    pub fn fields(&self) -> Vec<String> {
        let mut out: Vec<String> = self.grid.keys().cloned().collect();
        if let Some(r) = &self.random {
            out.extend(r.fields.keys().cloned());
        }
        if let Some(t) = &self.tpe {
            out.extend(t.fields.keys().cloned());
        }
        out
    }

    /// The fields drawn log-uniformly.
    pub fn log_fields(&self) -> Vec<String> {
        let random = self.random.iter().flat_map(|r| &r.fields);
        let tpe = self.tpe.iter().flat_map(|t| &t.fields);
        random
            .chain(tpe)
            .filter(|(_, d)| matches!(d, Draw::LogUniform(..)))
            .map(|(f, _)| f.clone())
            .collect()
    }

    /// Each run's values, in [`Self::fields`] order: the grid's last field changes fastest,
    /// and run `i`'s draws come from `(seed, i)` alone, so adding runs keeps the earlier ones.
    pub fn points(&self) -> Vec<Vec<(String, Value)>> {
        // TPE's trials get their values when they start.
        if let Some(t) = &self.tpe {
            return vec![Vec::new(); t.count as usize];
        }
        let mut grid: Vec<Vec<(String, Value)>> = vec![Vec::new()];
        for (name, values) in &self.grid {
            grid = grid
                .into_iter()
                .flat_map(|point| {
                    values.iter().map(move |v| {
                        let mut p = point.clone();
                        p.push((name.clone(), v.clone()));
                        p
                    })
                })
                .collect();
        }
        let Some(r) = &self.random else {
            return grid;
        };
        let mut out = Vec::with_capacity(grid.len() * r.count as usize);
        for point in grid {
            for _ in 0..r.count {
                let index = out.len() as u64;
                let mut rng = SplitMix64::new(super::rng::mix64(r.seed ^ super::rng::mix64(index)));
                let mut p = point.clone();
                for (name, d) in &r.fields {
                    p.push((name.clone(), draw(d, &mut rng)));
                }
                out.push(p);
            }
        }
        out
    }

    /// Every run with its preset: the base with the run's values set. The first run whose
    /// values the schema rejects is the error.
    pub fn plan(&self, base: &AnyPreset) -> Result<Vec<PlannedRun>, SweepError> {
        self.points()
            .into_iter()
            .enumerate()
            .map(|(index, values)| {
                let name = format!("{}-{index:03}", self.name);
                let fail = |problems: Vec<Problem>| SweepError::Run {
                    index,
                    values: describe(&values),
                    problems: problems
                        .iter()
                        .map(Problem::to_string)
                        .collect::<Vec<_>>()
                        .join("; "),
                };
                let preset = base
                    .with_overrides(
                        values
                            .iter()
                            .map(|(k, v)| (k.as_str(), v.clone()))
                            .chain([("name", Value::from(name.clone()))]),
                    )
                    .map_err(fail)?;
                let preset = super::preset::validate(preset).map_err(fail)?;
                Ok(PlannedRun {
                    index,
                    name,
                    values,
                    preset: preset.preset().clone(),
                })
            })
            .collect()
    }
}

fn draw_ok(d: &Draw) -> bool {
    match d {
        Draw::Uniform(lo, hi) => lo.is_finite() && hi.is_finite() && lo < hi,
        Draw::LogUniform(lo, hi) => *lo > 0.0 && lo < hi && hi.is_finite(),
        Draw::Int(lo, hi) => lo <= hi,
        Draw::Choice(v) => !v.is_empty(),
    }
}

/// One random draw of a field.
pub(crate) fn draw(d: &Draw, rng: &mut SplitMix64) -> Value {
    match d {
        Draw::Uniform(lo, hi) => Value::from(rng.range_f64(*lo, *hi)),
        Draw::LogUniform(lo, hi) => Value::from(rng.range_f64(lo.ln(), hi.ln()).exp()),
        Draw::Int(lo, hi) => {
            let span = hi.abs_diff(*lo).saturating_add(1);
            Value::from(lo.saturating_add_unsigned(rng.below(span)))
        }
        Draw::Choice(v) => v[rng.below(v.len() as u64) as usize].clone(),
    }
}

/// `field=value, ...` as a run's label.
pub fn describe(values: &[(String, Value)]) -> String {
    values
        .iter()
        .map(|(k, v)| format!("{k}={}", short(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A value as a table cell: numbers in at most 4 significant digits, strings bare.
pub fn short(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_f64() => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if x != 0.0 && (x.abs() < 1e-3 || x.abs() >= 1e5) {
                format!("{x:.3e}")
            } else {
                format!("{}", (x * 1e4).round() / 1e4)
            }
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"(
        name: "lr",
        base: "wgan_gp_small",
        grid: { "train.lr_g": [1e-4, 2e-4, 4e-4], "train.batch_size": [32, 64] },
        random: Some((count: 2, seed: 7, fields: {
            "train.lr_d": log_uniform(1e-5, 1e-3),
            "train.n_critic": int(1, 5),
            "model.kind": choice(["a", "b"]),
        })),
    )"#;

    #[test]
    fn the_log_searched_fields_are_written_beside_the_runs_for_the_runs_table() {
        let s = Sweep::parse(TEXT, "lr.ron").expect("parses");
        assert_eq!(s.log_fields(), ["train.lr_d"]);
        let dir = tempfile::tempdir().expect("tempdir");
        write_runs(dir.path(), &s, "test", &[]).expect("writes");
        let log = crate::core::runtable::declared_log_fields(dir.path());
        assert_eq!(log.into_iter().collect::<Vec<_>>(), ["train.lr_d"]);
    }

    #[test]
    fn a_grid_with_draws_expands_in_order_and_reproducibly() {
        let s = Sweep::parse(TEXT, "lr.ron").expect("parses");
        assert_eq!(s.len(), 12);
        let pts = s.points();
        assert_eq!(pts.len(), 12);
        assert_eq!(
            s.fields(),
            [
                "train.batch_size",
                "train.lr_g",
                "model.kind",
                "train.lr_d",
                "train.n_critic"
            ]
        );
        // The grid's last field changes fastest; each grid point gets two draws.
        let grid: Vec<(i64, f64)> = pts
            .iter()
            .map(|p| {
                (
                    p[0].1.as_i64().expect("batch"),
                    p[1].1.as_f64().expect("lr"),
                )
            })
            .collect();
        assert_eq!(grid[0], (32, 1e-4));
        assert_eq!(grid[1], (32, 1e-4));
        assert_eq!(grid[2], (32, 2e-4));
        assert_eq!(grid[6], (64, 1e-4));
        for p in &pts {
            let lr_d = p[3].1.as_f64().expect("lr_d");
            assert!((1e-5..1e-3).contains(&lr_d), "{lr_d}");
            let n = p[4].1.as_i64().expect("n_critic");
            assert!((1..=5).contains(&n), "{n}");
            assert!(["a", "b"].contains(&p[2].1.as_str().expect("kind")));
        }
        // Draws differ between runs, and the same file plans the same runs.
        assert_ne!(pts[0][3], pts[1][3]);
        assert_eq!(pts, Sweep::parse(TEXT, "lr.ron").expect("again").points());
        // Log-uniform spreads over the decades.
        let many = Sweep::parse(
            r#"(name: "x", base: "b", random: Some((count: 400, fields: { "f": log_uniform(1e-6, 1e-2) })))"#,
            "x",
        )
        .expect("parses");
        let below_1e4 = many
            .points()
            .iter()
            .filter(|p| p[0].1.as_f64().expect("f") < 1e-4)
            .count();
        assert!((150..250).contains(&below_1e4), "{below_1e4} of 400");
    }

    #[test]
    fn bad_sweeps_name_the_file_or_field() {
        let e = Sweep::parse("(name: \"x\")", "s.ron").unwrap_err();
        assert!(e.to_string().starts_with("s.ron:"), "{e}");
        // A name reaches folder names and batch-script headers: a line break, `$(...)` or
        // `../` is refused.
        for bad in ["lr\\n$(id)", "../up", "a$(touch x)"] {
            let e = Sweep::parse(
                &format!(r#"(name: "{bad}", base: "b", grid: {{ "a": [1] }})"#),
                "s",
            )
            .unwrap_err();
            assert!(e.to_string().starts_with("name:"), "{bad}: {e}");
        }
        let e = Sweep::parse(r#"(name: "x", base: "b", grid: { "a": [] })"#, "s").unwrap_err();
        assert_eq!(e.to_string(), "grid.a: needs at least one value");
        let e = Sweep::parse(
            r#"(name: "x", base: "b", random: Some((count: 1, fields: { "a": log_uniform(0.0, 1.0) })))"#,
            "s",
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("random.fields.a:"), "{e}");
        let big: Vec<String> = (0..101).map(|i| i.to_string()).collect();
        let text = format!(
            r#"(name: "x", base: "b", grid: {{ "a": [{0}], "b": [{0}] }})"#,
            big.join(",")
        );
        assert!(matches!(
            Sweep::parse(&text, "s"),
            Err(SweepError::TooMany(10201))
        ));
    }
}

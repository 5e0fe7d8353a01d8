//! Early stopping of a sweep's trials: asynchronous successive halving (ASHA, Li et al. 2020,
//! with the promotion rule of Optuna's `SuccessiveHalvingPruner`), Hyperband as brackets of it,
//! and the median rule. Plain data: a trial reports its validation metric at a step and gets a
//! decision; the state of every trial lives in the sweep's folder (`scheduler.json`), read and
//! written under a lock by each trial's own process, so it survives the app, the runner and
//! the trials restarting, and works the same for local jobs and SLURM array tasks.
//!
//! ASHA, as built: rung `k` of a trial in bracket `s` is reached at step
//! `grace * reduction^(s + k)` (below `max`, when given). On reaching it (at its first
//! validation at or after that step) the trial records its value there; the values recorded at
//! that rung by every trial of its bracket so far, its own included, are ranked, and it goes on
//! only when it is among the best `n / reduction` of them (the best one while fewer than
//! `reduction` have reported). A stopped trial stops at a step boundary with a checkpoint, so
//! promoting it later resumes it to its full budget.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file in a sweep's folder that holds its scheduler and every trial's reports.
pub const STATE_FILE: &str = "scheduler.json";
/// The file in a trial's run folder naming its sweep and its trial.
pub const TRIAL_FILE: &str = "trial.json";

/// How a sweep stops its trials early (`scheduler:` in a sweep file). The metric is the
/// family's main validation metric in its declared direction unless named.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Scheduler {
    /// Asynchronous successive halving.
    #[serde(rename = "asha")]
    Asha {
        #[serde(default)]
        metric: Option<String>,
        /// Steps before the first rung.
        grace: u64,
        /// The rung ratio (eta): a trial goes on when among the best 1/reduction.
        #[serde(default = "three")]
        reduction: u64,
        /// No rung at or after this step.
        #[serde(default)]
        max: Option<u64>,
        /// Trials that must report at rung 0 before any goes past it (Optuna's
        /// `bootstrap_count`; the ones before are stopped).
        #[serde(default)]
        bootstrap: usize,
    },
    /// Hyperband: trials spread over brackets of ASHA that start stopping at `grace`,
    /// `grace * reduction`, ... up to `max`; each bracket ranks its own trials.
    #[serde(rename = "hyperband")]
    Hyperband {
        #[serde(default)]
        metric: Option<String>,
        grace: u64,
        #[serde(default = "three")]
        reduction: u64,
        max: u64,
    },
    /// The median rule: after `warmup` steps, a trial whose best value so far is worse than
    /// the median of the other trials' values at the same step stops, once at least `startup`
    /// others reported there.
    #[serde(rename = "median")]
    Median {
        #[serde(default)]
        metric: Option<String>,
        #[serde(default)]
        warmup: u64,
        #[serde(default = "five")]
        startup: usize,
    },
}

fn three() -> u64 {
    3
}

fn five() -> usize {
    5
}

/// Why a scheduler cannot be used; names the field.
#[derive(Debug, thiserror::Error)]
pub enum PrunerError {
    #[error("scheduler: {0}")]
    Config(String),
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
}

impl Scheduler {
    /// Checks the numbers a user wrote.
    pub fn check(&self) -> Result<(), PrunerError> {
        let bad = |m: &str| Err(PrunerError::Config(m.into()));
        match *self {
            Self::Asha {
                grace, reduction, ..
            } if grace == 0 || reduction < 2 => bad("asha needs grace >= 1 and reduction >= 2"),
            Self::Hyperband {
                grace,
                reduction,
                max,
                ..
            } if grace == 0 || reduction < 2 || max <= grace => {
                bad("hyperband needs grace >= 1, reduction >= 2 and max > grace")
            }
            _ => Ok(()),
        }
    }

    /// The metric named in the sweep file, if any.
    #[must_use]
    pub fn metric(&self) -> Option<&str> {
        match self {
            Self::Asha { metric, .. }
            | Self::Hyperband { metric, .. }
            | Self::Median { metric, .. } => metric.as_deref(),
        }
    }

    /// Hyperband's brackets (1 for the others): `floor(log_reduction(max / grace)) + 1`.
    #[must_use]
    pub fn brackets(&self) -> u32 {
        match *self {
            Self::Hyperband {
                grace,
                reduction,
                max,
                ..
            } => {
                let mut n = 1;
                let mut r = grace;
                while r.saturating_mul(reduction) <= max {
                    r *= reduction;
                    n += 1;
                }
                n
            }
            _ => 1,
        }
    }

    /// The bracket of trial `index`: Hyperband gives bracket `s` (which starts stopping at
    /// `grace * reduction^s`) a share of the trials in proportion to
    /// `ceil(n / (n - s) * reduction^(n - 1 - s))`, as its brackets start that many
    /// configurations, most in the bracket that stops earliest; trials are dealt out in
    /// that proportion by index.
    #[must_use]
    pub fn bracket(&self, index: usize) -> u32 {
        let Self::Hyperband { reduction, .. } = *self else {
            return 0;
        };
        let n = self.brackets();
        let weights: Vec<u64> = (0..n)
            .map(|s| {
                let configs =
                    (f64::from(n) / f64::from(n - s)) * (reduction as f64).powi((n - 1 - s) as i32);
                configs.ceil() as u64
            })
            .collect();
        let total: u64 = weights.iter().sum();
        let mut at = index as u64 % total.max(1);
        for (s, w) in weights.iter().enumerate() {
            if at < *w {
                return s as u32;
            }
            at -= w;
        }
        0
    }
}

/// A trial's decision at a report.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Continue,
    Stop(Stopped),
}

/// Why a trial stopped: the rung (or the step, for the median rule), its value and the cut it
/// missed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stopped {
    pub step: u64,
    pub rung: usize,
    pub value: f64,
    pub cut: f64,
    pub metric: String,
}

impl Stopped {
    /// `stopped at rung 2: val_swd 0.31, rung cut 0.27`.
    #[must_use]
    pub fn describe(&self) -> String {
        describe_stop(self.rung, &self.metric, self.value, self.cut)
    }
}

/// What a stop says, from its parts (as a `TrialStopped` event carries them):
/// `stopped at rung 2: val_swd 0.31, rung cut 0.27`.
#[must_use]
pub fn describe_stop(rung: usize, metric: &str, value: f64, cut: f64) -> String {
    format!(
        "stopped at rung {rung}: {metric} {}, rung cut {}",
        super::numfmt::num(value),
        super::numfmt::num(cut)
    )
}

impl Stopped {}

/// One trial's reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrialRecord {
    /// Its index in the sweep (Hyperband's bracket comes from it).
    pub index: usize,
    /// The value it recorded at each rung it reached, in order.
    pub rungs: Vec<f64>,
    /// Every report: `(step, value)`.
    pub reports: Vec<(u64, f64)>,
    pub stopped: Option<Stopped>,
    /// Promoted by hand: it trains to its full budget, whatever it reports.
    pub promoted: bool,
    /// The values a TPE search proposed for it (empty for a planned trial).
    pub values: BTreeMap<String, serde_json::Value>,
}

/// What a sweep's trials share (`scheduler.json`): its scheduler, its TPE search with the
/// base preset the proposals change, the metric the trials report, and every trial's reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SweepState {
    pub scheduler: Option<Scheduler>,
    pub tpe: Option<super::sweep::TpeSearch>,
    /// The base preset as RON (TPE sweeps: each trial is it with its proposed values).
    pub base: Option<String>,
    /// The metric the trials report and whether higher is better (set by the first report).
    pub objective: Option<(String, bool)>,
    pub trials: BTreeMap<String, TrialRecord>,
}

impl SweepState {
    #[must_use]
    pub fn new(scheduler: Scheduler) -> Self {
        Self {
            scheduler: Some(scheduler),
            ..Self::default()
        }
    }

    /// The values of trial `name`: those it was given, else TPE's proposal from the trials
    /// that reported so far (the first `startup` trials, and any while too few have reported,
    /// drawn at random from the seed and the trial's index). Recorded, so a restarted trial
    /// gets the same values.
    pub fn propose(
        &mut self,
        name: &str,
    ) -> Result<BTreeMap<String, serde_json::Value>, PrunerError> {
        let Some(tpe) = self.tpe.clone() else {
            return Err(PrunerError::Config("this sweep has no tpe search".into()));
        };
        if let Some(t) = self.trials.get(name).filter(|t| !t.values.is_empty()) {
            return Ok(t.values.clone());
        }
        let higher = self.objective.as_ref().is_some_and(|(_, h)| *h);
        let observed: Vec<(BTreeMap<String, serde_json::Value>, f64)> = self
            .trials
            .iter()
            .filter(|(n, t)| n.as_str() != name && !t.values.is_empty())
            .filter_map(|(_, t)| {
                let best = t
                    .reports
                    .iter()
                    .map(|(_, v)| if higher { -v } else { *v })
                    .filter(|v| v.is_finite())
                    .fold(None, |b: Option<f64>, v| Some(b.map_or(v, |b| b.min(v))))?;
                Some((t.values.clone(), best))
            })
            .collect();
        let rec = self.trials.entry(name.to_string()).or_default();
        let seed = super::rng::mix64(tpe.seed ^ super::rng::mix64(rec.index as u64));
        let mut rng = super::rng::SplitMix64::new(seed);
        let values: BTreeMap<String, serde_json::Value> =
            if rec.index < tpe.startup as usize || observed.len() < 2 {
                tpe.fields
                    .iter()
                    .map(|(k, d)| (k.clone(), super::sweep::draw(d, &mut rng)))
                    .collect()
            } else {
                super::tpe::suggest(&tpe.fields, &observed, &mut rng)
                    .into_iter()
                    .collect()
            };
        rec.values.clone_from(&values);
        Ok(values)
    }

    /// Trial `name` reports `value` of `metric` (better when `higher`) at `step`.
    pub fn report(
        &mut self,
        name: &str,
        step: u64,
        value: f64,
        metric: &str,
        higher: bool,
    ) -> Decision {
        self.objective = Some((metric.to_string(), higher));
        let rec = self.trials.entry(name.to_string()).or_default();
        rec.reports.push((step, value));
        if rec.promoted {
            return Decision::Continue;
        }
        let Some(sched) = self.scheduler.clone() else {
            return Decision::Continue;
        };
        let better = |a: f64, b: f64| if higher { a > b } else { a < b };
        let stop = |rung: usize, cut: f64| {
            Decision::Stop(Stopped {
                step,
                rung,
                value,
                cut,
                metric: metric.to_string(),
            })
        };
        let decision = match sched {
            Scheduler::Asha {
                grace,
                reduction,
                max,
                bootstrap,
                ..
            } => self.halving(
                name,
                (step, value, metric),
                higher,
                (grace, reduction, max, bootstrap),
            ),
            Scheduler::Hyperband {
                grace,
                reduction,
                max,
                ..
            } => self.halving(
                name,
                (step, value, metric),
                higher,
                (grace, reduction, Some(max), 0),
            ),
            Scheduler::Median {
                warmup, startup, ..
            } => {
                if step < warmup {
                    Decision::Continue
                } else {
                    let best = self.trials[name]
                        .reports
                        .iter()
                        .map(|(_, v)| *v)
                        .filter(|v| !v.is_nan())
                        .fold(None, |b: Option<f64>, v| match b {
                            Some(b) if !better(v, b) => Some(b),
                            _ => Some(v),
                        });
                    let mut others: Vec<f64> = self
                        .trials
                        .iter()
                        .filter(|(n, _)| n.as_str() != name)
                        .filter_map(|(_, t)| {
                            t.reports.iter().find(|(s, _)| *s == step).map(|(_, v)| *v)
                        })
                        .filter(|v| !v.is_nan())
                        .collect();
                    if others.len() < startup.max(1) {
                        Decision::Continue
                    } else {
                        others.sort_by(f64::total_cmp);
                        let m = others.len();
                        let median = if m % 2 == 1 {
                            others[m / 2]
                        } else {
                            (others[m / 2 - 1] + others[m / 2]) / 2.0
                        };
                        match best {
                            Some(b) if !better(median, b) => Decision::Continue,
                            _ => stop(0, median),
                        }
                    }
                }
            }
        };
        if let Decision::Stop(s) = &decision {
            if let Some(rec) = self.trials.get_mut(name) {
                rec.stopped = Some(s.clone());
            }
        }
        decision
    }

    /// Successive halving within the trial's bracket.
    fn halving(
        &mut self,
        name: &str,
        (step, value, metric): (u64, f64, &str),
        higher: bool,
        (grace, reduction, max, bootstrap): (u64, u64, Option<u64>, usize),
    ) -> Decision {
        let Some(sched) = self.scheduler.clone() else {
            return Decision::Continue;
        };
        let index = self.trials[name].index;
        let bracket = sched.bracket(index);
        loop {
            let rung = self.trials[name].rungs.len();
            let exp = u32::try_from(rung)
                .unwrap_or(u32::MAX)
                .saturating_add(bracket);
            let at = grace.saturating_mul(reduction.saturating_pow(exp));
            if max.is_some_and(|m| at >= m) || step < at {
                return Decision::Continue;
            }
            let stopped = |cut: f64| {
                Decision::Stop(Stopped {
                    step,
                    rung,
                    value,
                    cut,
                    metric: metric.to_string(),
                })
            };
            if value.is_nan() {
                return stopped(f64::NAN);
            }
            if let Some(rec) = self.trials.get_mut(name) {
                rec.rungs.push(value);
            }
            let mut competing: Vec<f64> = self
                .trials
                .values()
                .filter(|t| sched.bracket(t.index) == bracket)
                .filter_map(|t| t.rungs.get(rung).copied())
                .collect();
            // Best first.
            competing.sort_by(|a, b| {
                if higher {
                    b.total_cmp(a)
                } else {
                    a.total_cmp(b)
                }
            });
            if competing.len() <= bootstrap {
                return stopped(f64::NAN);
            }
            let keep = (competing.len() / reduction as usize).max(1);
            let cut = competing[keep - 1];
            let in_top = if higher { value >= cut } else { value <= cut };
            if !in_top {
                return stopped(cut);
            }
        }
    }
}

/// Reads, changes and writes a sweep's state under its lock (the state file's `.lock`); a
/// missing file is an error (the sweep writes it when it is submitted).
pub fn update<T>(path: &Path, change: impl FnOnce(&mut SweepState) -> T) -> Result<T, PrunerError> {
    let io = |e: std::io::Error| PrunerError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let _lock = super::rundir::lock_beside(path).map_err(io)?;
    let mut state = read(path)?;
    let out = change(&mut state);
    let text = serde_json::to_string_pretty(&state).map_err(|e| PrunerError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    super::rundir::atomic_write(path, text.as_bytes()).map_err(|e| PrunerError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(out)
}

/// A sweep's state.
pub fn read(path: &Path) -> Result<SweepState, PrunerError> {
    let text = std::fs::read_to_string(path).map_err(|e| PrunerError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| PrunerError::Io {
        path: path.to_path_buf(),
        message: format!("not a sweep's scheduler state: {e}"),
    })
}

/// Marks the trial in run folder `run` promoted (it reports but is never stopped again);
/// gives its link and why it had stopped, if it had. The caller resumes it.
pub fn promote(run: &Path) -> Result<(TrialLink, Option<Stopped>), PrunerError> {
    let link = TrialLink::read(run).ok_or_else(|| PrunerError::Io {
        path: run.to_path_buf(),
        message: format!("not a sweep trial (no {TRIAL_FILE})"),
    })?;
    let was = update(&link.state, |s| {
        let t = s.trials.entry(link.trial.clone()).or_default();
        t.promoted = true;
        t.stopped.take()
    })?;
    Ok((link, was))
}

/// What a trial's run folder says of its sweep (`trial.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialLink {
    /// The sweep's state file.
    pub state: PathBuf,
    /// The trial's name in it (its preset's name).
    pub trial: String,
}

impl TrialLink {
    /// The link in run folder `dir`, if it is a trial.
    #[must_use]
    pub fn read(dir: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(dir.join(TRIAL_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub fn write(&self, dir: &Path) -> Result<(), PrunerError> {
        let path = dir.join(TRIAL_FILE);
        let text = serde_json::to_string_pretty(self).map_err(|e| PrunerError::Io {
            path: path.clone(),
            message: e.to_string(),
        })?;
        super::rundir::atomic_write(&path, text.as_bytes()).map_err(|e| PrunerError::Io {
            path,
            message: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asha(grace: u64, reduction: u64) -> SweepState {
        SweepState::new(Scheduler::Asha {
            metric: None,
            grace,
            reduction,
            max: None,
            bootstrap: 0,
        })
    }

    fn trial(s: &mut SweepState, name: &str, index: usize) {
        s.trials.insert(
            name.into(),
            TrialRecord {
                index,
                ..TrialRecord::default()
            },
        );
    }

    #[test]
    fn asha_keeps_the_best_fraction_at_each_rung_as_optuna_does() {
        // Lower is better; rungs at steps 10, 20, 40 (grace 10, reduction 2).
        let mut s = asha(10, 2);
        for (i, n) in ["a", "b", "c", "d"].iter().enumerate() {
            trial(&mut s, n, i);
        }
        // Before the first rung nothing is decided.
        assert_eq!(s.report("a", 5, 9.0, "loss", false), Decision::Continue);
        // The first to report at a rung goes on alone (the best of one).
        assert_eq!(s.report("a", 10, 0.5, "loss", false), Decision::Continue);
        // Two at rung 0: keep 2 / 2 = 1, the best; b is worse and stops with a's value as the cut.
        match s.report("b", 10, 0.7, "loss", false) {
            Decision::Stop(st) => {
                assert_eq!((st.rung, st.value, st.cut), (0, 0.7, 0.5));
                assert_eq!(st.describe(), "stopped at rung 0: loss 0.7, rung cut 0.5");
            }
            other => panic!("{other:?}"),
        }
        assert!(s.trials["b"].stopped.is_some());
        // c is better than a: it goes on; with three reported, 3 / 2 = 1 is kept.
        assert_eq!(s.report("c", 10, 0.4, "loss", false), Decision::Continue);
        // Four reported: 4 / 2 = 2 kept, so d at 0.45 is second and goes on.
        assert_eq!(s.report("d", 12, 0.45, "loss", false), Decision::Continue);
        // A report past two rungs at once climbs both, recording the same value.
        assert_eq!(s.report("c", 25, 0.3, "loss", false), Decision::Continue);
        assert_eq!(s.trials["c"].rungs, [0.4, 0.3]);
        assert!(matches!(
            s.report("a", 20, 0.6, "loss", false),
            Decision::Stop(Stopped { rung: 1, cut, .. }) if cut == 0.3
        ));
        // Higher is better, the other way round.
        let mut h = asha(10, 3);
        trial(&mut h, "x", 0);
        trial(&mut h, "y", 1);
        assert_eq!(h.report("x", 10, 20.0, "psnr", true), Decision::Continue);
        assert!(matches!(
            h.report("y", 10, 19.0, "psnr", true),
            Decision::Stop(_)
        ));
        // A NaN stops at once; a promoted trial never stops.
        assert!(matches!(
            h.report("x", 30, f64::NAN, "psnr", true),
            Decision::Stop(_)
        ));
        h.trials.get_mut("y").unwrap().promoted = true;
        assert_eq!(h.report("y", 30, 1.0, "psnr", true), Decision::Continue);
    }

    #[test]
    fn no_rung_at_or_after_max_and_bootstrap_stops_the_first_reports() {
        let mut s = SweepState::new(Scheduler::Asha {
            metric: None,
            grace: 10,
            reduction: 2,
            max: Some(20),
            bootstrap: 2,
        });
        trial(&mut s, "a", 0);
        trial(&mut s, "b", 1);
        trial(&mut s, "c", 2);
        // Optuna's bootstrap_count: while no more than 2 have reported at rung 0, stop.
        assert!(matches!(
            s.report("a", 10, 1.0, "l", false),
            Decision::Stop(_)
        ));
        assert!(matches!(
            s.report("b", 10, 2.0, "l", false),
            Decision::Stop(_)
        ));
        assert_eq!(s.report("c", 10, 0.5, "l", false), Decision::Continue);
        // Rung 1 would be at step 20 = max: none.
        assert_eq!(s.report("c", 30, 9.0, "l", false), Decision::Continue);
    }

    #[test]
    fn hyperband_spreads_trials_over_brackets_that_rank_their_own() {
        let sched = Scheduler::Hyperband {
            metric: None,
            grace: 10,
            reduction: 3,
            max: 270,
        };
        // 10, 30, 90, 270: four brackets.
        assert_eq!(sched.brackets(), 4);
        let counts = (0..1000).fold([0usize; 4], |mut c, i| {
            c[sched.bracket(i) as usize] += 1;
            c
        });
        // The bracket that stops earliest gets the most trials, and each gets some.
        assert!(
            counts.windows(2).all(|w| w[0] > w[1]) && counts[3] > 0,
            "{counts:?}"
        );
        let mut s = SweepState::new(sched.clone());
        // Trials in different brackets never compete: bracket 1 starts at step 30.
        let first_in = |b: u32| (0..100).find(|i| sched.bracket(*i) == b).unwrap();
        trial(&mut s, "early", first_in(0));
        trial(&mut s, "late", first_in(1));
        assert_eq!(s.report("early", 10, 0.1, "l", false), Decision::Continue);
        assert_eq!(
            s.report("late", 10, 5.0, "l", false),
            Decision::Continue,
            "no rung at 10"
        );
        assert_eq!(
            s.report("late", 30, 5.0, "l", false),
            Decision::Continue,
            "alone in its bracket"
        );
        assert!(Scheduler::Hyperband {
            metric: None,
            grace: 10,
            reduction: 3,
            max: 10
        }
        .check()
        .is_err());
    }

    #[test]
    fn the_median_rule_compares_the_best_so_far_with_the_others_at_that_step() {
        let mut s = SweepState::new(Scheduler::Median {
            metric: None,
            warmup: 10,
            startup: 2,
        });
        for (i, n) in ["a", "b", "c"].iter().enumerate() {
            trial(&mut s, n, i);
        }
        for (n, v) in [("a", 1.0), ("b", 3.0)] {
            assert_eq!(
                s.report(n, 20, v, "l", false),
                Decision::Continue,
                "too few others"
            );
        }
        // Median of a and b at step 20 is 2: c at 2.5 (best so far) stops; at 1.5 it would not.
        assert_eq!(
            s.report("c", 5, 1.5, "l", false),
            Decision::Continue,
            "warmup"
        );
        assert_eq!(
            s.report("c", 20, 2.5, "l", false),
            Decision::Continue,
            "its best is 1.5"
        );
        let mut t = s.clone();
        t.trials.get_mut("c").unwrap().reports.clear();
        assert!(matches!(
            t.report("c", 20, 2.5, "l", false),
            Decision::Stop(Stopped { cut, .. }) if cut == 2.0
        ));
    }

    #[test]
    fn a_sweep_file_names_its_scheduler_in_ron() {
        let s: Scheduler = ron::from_str("asha(grace: 100, reduction: 2)").unwrap();
        assert_eq!(
            s,
            Scheduler::Asha {
                metric: None,
                grace: 100,
                reduction: 2,
                max: None,
                bootstrap: 0
            }
        );
        let m: Scheduler = ron::from_str(r#"median(metric: Some("val_swd"))"#).unwrap();
        assert_eq!(m.metric(), Some("val_swd"));
        assert!(Scheduler::Asha {
            metric: None,
            grace: 0,
            reduction: 2,
            max: None,
            bootstrap: 0
        }
        .check()
        .is_err());
    }

    #[test]
    fn the_state_survives_on_disk_under_its_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        let mut s = asha(10, 2);
        trial(&mut s, "a", 0);
        std::fs::write(&path, serde_json::to_string(&s).unwrap()).unwrap();
        let d = update(&path, |s| s.report("a", 10, 1.0, "l", false)).unwrap();
        assert_eq!(d, Decision::Continue);
        assert_eq!(read(&path).unwrap().trials["a"].rungs, [1.0]);
        let link = TrialLink {
            state: path,
            trial: "a".into(),
        };
        link.write(dir.path()).unwrap();
        assert_eq!(TrialLink::read(dir.path()), Some(link));
    }
}

//! The runs table: one row per run folder with its status, family, duration, step, the preset
//! fields that vary between the runs shown (a sweep's axes) and the best value of each declared
//! validation metric; sorted and filtered here, drawn by the GUI.
//!
//! [`RunIndex`] keeps one [`LogReader`] per run and reads only what each log gained since the
//! last refresh (polling with offsets: shared storage such as NFS tells no one of writes from
//! other machines), so a folder of a thousand runs costs a directory listing and a few small
//! reads per refresh, off the UI thread.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::branch::{Lineage, Tree};
use super::numfmt;
use super::protocol::{Event, MetricKind, Outcome};
use super::rundir::{RunDir, RunStatus};
use super::runlog::LogReader;

/// One run, as the table shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunRow {
    pub dir: PathBuf,
    /// The folder's name.
    pub name: String,
    pub family: String,
    pub status: RunStatus,
    /// Why it failed.
    pub message: String,
    pub step: u64,
    /// Unix seconds of its start and of its last event.
    pub started: Option<f64>,
    pub last: Option<f64>,
    /// Every preset field as `path -> value` (`train.lr_g -> 0.0002`); shared, so a refresh
    /// hands rows to the UI without copying them.
    pub fields: std::sync::Arc<BTreeMap<String, String>>,
    /// The best value of each declared validation metric so far.
    pub best: BTreeMap<String, f64>,
    /// Whether higher is better, per validation metric.
    pub higher_is_better: BTreeMap<String, bool>,
    /// The validation metrics the family calls main (shown first).
    pub main: std::collections::BTreeSet<String>,
    /// Where the run branched from, if it is a branch (`core::branch`).
    pub lineage: Option<std::sync::Arc<Lineage>>,
    /// How many of the folder's runs it descends from (0: not a branch of one of them).
    pub depth: usize,
    /// How many of the folder's runs branch from it.
    pub children: usize,
    /// Why the sweep's scheduler stopped it (`stopped at rung 1: val_swd 0.31, rung cut
    /// 0.27`), until it is resumed.
    pub stopped_early: Option<String>,
    /// The fields the folder's sweeps searched on a log scale (shared by every row).
    pub log_fields: std::sync::Arc<std::collections::BTreeSet<String>>,
    /// The SSH destination of the machine it lives on, for a remote's run (its `dir` is then
    /// `DESTINATION:FOLDER`); `None` for this machine's.
    pub machine: Option<String>,
}

/// A row as `workbench serve --stdio` sends it: what the table shows of a remote's run, by
/// its folder's name (paths mean nothing on the other side).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct WireRow {
    pub run: String,
    pub name: String,
    pub family: String,
    pub status: String,
    pub message: String,
    pub step: u64,
    pub started: Option<f64>,
    pub last: Option<f64>,
    pub fields: BTreeMap<String, String>,
    /// Finite values only (JSON has no NaN).
    pub best: BTreeMap<String, f64>,
    pub higher_is_better: BTreeMap<String, bool>,
    pub main: std::collections::BTreeSet<String>,
    /// Its parent's folder name, fork step and changes, for a branch.
    pub lineage: Option<Lineage>,
    pub stopped_early: Option<String>,
    pub log_fields: std::collections::BTreeSet<String>,
}

impl RunRow {
    /// What the table shows of it, for the other side of `serve --stdio`.
    #[must_use]
    pub fn to_wire(&self) -> WireRow {
        let folder = |p: &Path| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        WireRow {
            run: folder(&self.dir),
            name: self.name.clone(),
            family: self.family.clone(),
            status: self.status.label().to_string(),
            message: self.message.clone(),
            step: self.step,
            started: self.started,
            last: self.last,
            fields: (*self.fields).clone(),
            best: self
                .best
                .iter()
                .filter(|(_, v)| v.is_finite())
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            higher_is_better: self.higher_is_better.clone(),
            main: self.main.clone(),
            lineage: self.lineage.as_deref().map(|l| Lineage {
                parent: PathBuf::from(folder(&l.parent)),
                ..l.clone()
            }),
            stopped_early: self.stopped_early.clone(),
            log_fields: (*self.log_fields).clone(),
        }
    }

    /// A remote's row as this side shows it: `machine:folder` for its folder and its parent's.
    #[must_use]
    pub fn from_wire(machine: &str, w: WireRow) -> Self {
        let here = |run: &str| PathBuf::from(format!("{machine}:{run}"));
        Self {
            dir: here(&w.run),
            name: w.name,
            family: w.family,
            status: RunStatus::from_label(&w.status),
            message: w.message,
            step: w.step,
            started: w.started,
            last: w.last,
            fields: std::sync::Arc::new(w.fields),
            best: w.best,
            higher_is_better: w.higher_is_better,
            main: w.main,
            lineage: w.lineage.map(|l| {
                std::sync::Arc::new(Lineage {
                    parent: here(&l.parent.to_string_lossy()),
                    ..l
                })
            }),
            depth: 0,
            children: 0,
            stopped_early: w.stopped_early,
            log_fields: std::sync::Arc::new(w.log_fields),
            machine: Some(machine.to_string()),
        }
    }

    /// Seconds from its start to its last event.
    #[must_use]
    pub fn duration(&self) -> f64 {
        match (self.started, self.last) {
            (Some(a), Some(b)) => (b - a).max(0.0),
            _ => 0.0,
        }
    }

    /// A field's value, or a metric's best (as text), by name.
    #[must_use]
    pub fn cell(&self, column: &Column) -> String {
        match column {
            Column::Name => self.name.clone(),
            Column::Machine => self.machine.clone().unwrap_or_else(|| "here".into()),
            Column::Status => self.status.label().to_string(),
            Column::Family => self.family.clone(),
            Column::Step => self.step.to_string(),
            Column::Branch => match (&self.lineage, self.children) {
                (Some(l), 0) => format!("@{} {}", l.fork_step, l.describe_changes()),
                (Some(l), n) => {
                    format!("@{} {}; {n} branch(es)", l.fork_step, l.describe_changes())
                }
                (None, 0) => String::new(),
                (None, n) => format!("{n} branch(es)"),
            },
            Column::Duration => crate::core::timefmt::human_duration(self.duration()),
            Column::Field(f) => self.fields.get(f).cloned().unwrap_or_default(),
            Column::Metric(m) => self.best.get(m).map_or(String::new(), f64::to_string),
        }
    }

    /// A cell as the table shows it: fractional numbers with four significant digits
    /// (`0.007582`, `300e-6`), whole numbers and text as they are. [`Self::cell`] keeps the full
    /// value (for hovers, sorting and filters).
    #[must_use]
    pub fn display(&self, column: &Column) -> String {
        match column {
            Column::Metric(m) => self.best.get(m).map_or(String::new(), |v| numfmt::num(*v)),
            Column::Field(_) => {
                let text = self.cell(column);
                match text.parse::<f64>() {
                    Ok(v) if text.contains(['.', 'e', 'E']) => numfmt::num(v),
                    _ => text,
                }
            }
            other => self.cell(other),
        }
    }

    /// The value to sort by: numbers as numbers, text as text.
    fn key(&self, column: &Column) -> SortKey {
        match column {
            Column::Step => SortKey::Number(self.step as f64),
            Column::Duration => SortKey::Number(self.duration()),
            Column::Metric(m) => self
                .best
                .get(m)
                .map_or(SortKey::Missing, |v| SortKey::Number(*v)),
            other => {
                let text = self.cell(other);
                match text.parse::<f64>() {
                    Ok(v) => SortKey::Number(v),
                    Err(_) if text.is_empty() => SortKey::Missing,
                    Err(_) => SortKey::Text(text),
                }
            }
        }
    }

    /// Whether the row passes a filter: every word must match. `key=value` (also `<`, `>`)
    /// compares a field (by its full path or last part) or a metric; any other word is looked
    /// for in the name, family, status and message.
    #[must_use]
    pub fn matches(&self, filter: &str) -> bool {
        filter
            .split_whitespace()
            .all(|word| self.matches_word(word))
    }

    fn matches_word(&self, word: &str) -> bool {
        let op = word.find(['=', '<', '>']);
        let Some(at) = op.filter(|&i| i > 0) else {
            let w = word.to_lowercase();
            return [
                &self.name,
                &self.family,
                &self.message,
                &self.status.label().to_string(),
                self.machine.as_ref().unwrap_or(&String::new()),
            ]
            .iter()
            .any(|s| s.to_lowercase().contains(&w));
        };
        let (key, rest) = word.split_at(at);
        let (op, want) = rest.split_at(1);
        let value = self.best.get(key).map(|v| v.to_string()).or_else(|| {
            self.fields
                .iter()
                .find(|(path, _)| *path == key || path.rsplit('.').next() == Some(key))
                .map(|(_, v)| v.clone())
        });
        let Some(value) = value else {
            return false;
        };
        match (value.parse::<f64>(), want.parse::<f64>()) {
            (Ok(v), Ok(w)) => match op {
                "<" => v < w,
                ">" => v > w,
                _ => (v - w).abs() <= 1e-12 * w.abs().max(1e-300),
            },
            _ => op == "=" && value == want,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum SortKey {
    Number(f64),
    Text(String),
    Missing,
}

impl SortKey {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Self::Number(a), Self::Number(b)) => a.total_cmp(b),
            (Self::Text(a), Self::Text(b)) => a.cmp(b),
            (Self::Number(_), Self::Text(_)) => Ordering::Less,
            (Self::Text(_), Self::Number(_)) => Ordering::Greater,
            // Rows without a value go last either way.
            (Self::Missing, Self::Missing) => Ordering::Equal,
            (Self::Missing, _) => Ordering::Greater,
            (_, Self::Missing) => Ordering::Less,
        }
    }
}

/// A column of the table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Column {
    Name,
    Status,
    Family,
    Step,
    Duration,
    /// The machine a run lives on (shown when a remote's runs are in the table).
    Machine,
    /// Where a branch forks from its parent and what it changed; a parent's branch count.
    Branch,
    /// A preset field, by path.
    Field(String),
    /// The best value of a validation metric.
    Metric(String),
}

impl Column {
    #[must_use]
    pub fn title(&self) -> String {
        match self {
            Self::Name => "run".into(),
            Self::Status => "status".into(),
            Self::Family => "family".into(),
            Self::Step => "step".into(),
            Self::Duration => "duration".into(),
            Self::Machine => "machine".into(),
            Self::Branch => "branch".into(),
            Self::Field(f) => f.clone(),
            Self::Metric(m) => format!("best {m}"),
        }
    }
}

/// Rows (sorted) in tree order: each branch right under its parent, when its parent is among
/// them, in the order it had.
pub fn branches_under_parents<R: Borrow<RunRow>>(rows: &[R]) -> Vec<usize> {
    let tree = Tree::new(
        &rows
            .iter()
            .map(|r| (r.borrow().dir.as_path(), r.borrow().lineage.as_deref()))
            .collect::<Vec<_>>(),
    );
    tree.order(&(0..rows.len()).collect::<Vec<_>>())
}

/// Sorts rows by a column (rows without a value last, in either direction; ties by name).
pub fn sort<R: Borrow<RunRow>>(rows: &mut [R], column: &Column, descending: bool) {
    rows.sort_by(|a, b| {
        let (a, b) = (a.borrow(), b.borrow());
        let (ka, kb) = (a.key(column), b.key(column));
        let o = match (&ka, &kb) {
            (SortKey::Missing, _) | (_, SortKey::Missing) => ka.cmp(&kb),
            _ if descending => kb.cmp(&ka),
            _ => ka.cmp(&kb),
        };
        o.then_with(|| a.name.cmp(&b.name))
    });
}

/// The preset fields whose values differ between `rows` (among the fields all of them have):
/// a sweep's axes, shown as columns. With several families shown, among the runs of the most
/// common one (another family's fields all differ); the name and family never count.
#[must_use]
pub fn varying_fields<R: Borrow<RunRow>>(rows: &[R]) -> Vec<String> {
    let mut families: Vec<(&str, usize)> = Vec::new();
    for r in rows {
        let f = r.borrow().family.as_str();
        match families.iter_mut().find(|(n, _)| *n == f) {
            Some(e) => e.1 += 1,
            None => families.push((f, 1)),
        }
    }
    let family = families
        .iter()
        .max_by_key(|(_, n)| *n)
        .map(|(f, _)| *f)
        .unwrap_or_default();
    let rows: Vec<&RunRow> = rows
        .iter()
        .map(Borrow::borrow)
        .filter(|r| r.family == family)
        .collect();
    let Some(first) = rows.first() else {
        return Vec::new();
    };
    first
        .fields
        .keys()
        .filter(|k| k.as_str() != "name" && k.as_str() != "family")
        .filter(|k| {
            let mut values = rows.iter().map(|r| r.fields.get(*k));
            let v0 = values.next().flatten();
            v0.is_some()
                && rows.iter().all(|r| r.fields.contains_key(*k))
                && rows.iter().any(|r| r.fields.get(*k) != v0)
        })
        .cloned()
        .collect()
}

/// The validation metrics any of `rows` declared: the ones a family calls main first, then
/// the others, each part sorted; `true` marks a main one.
#[must_use]
pub fn metrics<R: Borrow<RunRow>>(rows: &[R]) -> Vec<(String, bool)> {
    let mut seen: BTreeMap<String, bool> = BTreeMap::new();
    for r in rows {
        let r = r.borrow();
        for k in r.higher_is_better.keys() {
            *seen.entry(k.clone()).or_default() |= r.main.contains(k);
        }
    }
    let mut out: Vec<(String, bool)> = seen.into_iter().collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
}

/// A parallel-coordinates plot: axes (a sweep's fields, then a metric) and one line per run.
#[derive(Debug, Clone, PartialEq)]
pub struct ParallelCoordinates {
    /// Each axis's name and range as text (low, high).
    pub axes: Vec<(String, String, String)>,
    pub lines: Vec<ParallelLine>,
}

/// One run across the axes: its values scaled to [0, 1] by each axis's range.
#[derive(Debug, Clone, PartialEq)]
pub struct ParallelLine {
    pub dir: PathBuf,
    pub ys: Vec<f64>,
    /// The metric's own value.
    pub value: f64,
}

/// The parallel coordinates of the runs that have `metric`: text values take their rank among
/// the axis's distinct values.
#[must_use]
pub fn parallel_coordinates<R: Borrow<RunRow>>(
    rows: &[R],
    fields: &[String],
    metric: &str,
    declared_log: &std::collections::BTreeSet<String>,
) -> ParallelCoordinates {
    let with: Vec<&RunRow> = rows
        .iter()
        .map(Borrow::borrow)
        .filter(|r| r.best.contains_key(metric))
        .collect();
    let mut axes: Vec<Vec<f64>> = Vec::new();
    let mut ranges = Vec::new();
    for f in fields {
        let FieldColumn {
            values,
            column,
            numeric,
            log,
        } = field_column(&with, f, declared_log);
        let (lo, hi) = min_max(&column);
        // A log axis: learning rates from 1e-5 to 1e-2 spread out instead of lying on the floor.
        let column = if log {
            column.iter().map(|v| v.log10()).collect()
        } else {
            column
        };
        let (lo_text, hi_text) = match numeric {
            true => (short(lo), short(hi)),
            false => {
                let mut d = values.clone();
                d.sort();
                (
                    d.first().cloned().unwrap_or_default(),
                    d.last().cloned().unwrap_or_default(),
                )
            }
        };
        let name = if log { format!("{f} (log)") } else { f.clone() };
        ranges.push((name, lo_text, hi_text));
        axes.push(column);
    }
    let m: Vec<f64> = with.iter().map(|r| r.best[metric]).collect();
    let (lo, hi) = min_max(&m);
    ranges.push((metric.to_string(), short(lo), short(hi)));
    axes.push(m.clone());
    let scale = |v: f64, axis: &[f64]| {
        let (lo, hi) = min_max(axis);
        if hi > lo {
            (v - lo) / (hi - lo)
        } else {
            0.5
        }
    };
    let lines = with
        .iter()
        .enumerate()
        .map(|(i, r)| ParallelLine {
            dir: r.dir.clone(),
            ys: axes.iter().map(|a| scale(a[i], a)).collect(),
            value: m[i],
        })
        .collect();
    ParallelCoordinates {
        axes: ranges,
        lines,
    }
}

/// One field over some runs, as parallel coordinates and importance read it.
struct FieldColumn {
    /// Each run's value as written.
    values: Vec<String>,
    /// The numbers, or for text each value's rank among the field's distinct values.
    column: Vec<f64>,
    numeric: bool,
    /// Searched log-uniformly (declared), or positive over more than two decades.
    log: bool,
}

fn field_column(
    rows: &[&RunRow],
    f: &str,
    declared_log: &std::collections::BTreeSet<String>,
) -> FieldColumn {
    let values: Vec<String> = rows
        .iter()
        .map(|r| r.fields.get(f).cloned().unwrap_or_default())
        .collect();
    let parsed: Option<Vec<f64>> = values.iter().map(|v| v.parse().ok()).collect();
    let numeric = parsed.is_some();
    let column = parsed.unwrap_or_else(|| {
        let mut distinct = values.clone();
        distinct.sort();
        distinct.dedup();
        values
            .iter()
            .map(|v| distinct.iter().position(|d| d == v).unwrap_or(0) as f64)
            .collect()
    });
    let (lo, hi) = min_max(&column);
    let log = numeric && lo > 0.0 && (declared_log.contains(f) || numfmt::wants_log(lo, hi));
    FieldColumn {
        values,
        column,
        numeric,
        log,
    }
}

fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(*x), hi.max(*x))
        })
}

fn short(v: f64) -> String {
    if v.is_finite() {
        numfmt::num(v)
    } else {
        String::new()
    }
}

/// Every leaf of a preset tree as `path -> value`.
fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&p, v, out);
            }
        }
        Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        Value::Array(_) => {
            out.insert(prefix.to_string(), v.to_string());
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// The runs of a folder, read incrementally.
#[derive(Debug, Default)]
pub struct RunIndex {
    runs: HashMap<PathBuf, Tracked>,
}

#[derive(Debug)]
struct Tracked {
    reader: LogReader,
    row: RunRow,
    /// The log's own verdict (finished, stopped, failed), before the lock and heartbeat.
    ended: Option<RunStatus>,
}

impl RunIndex {
    /// The rows of every run folder under `runs_dir` (newest name first), each log read from
    /// where the last refresh stopped.
    pub fn refresh(&mut self, runs_dir: &Path) -> Vec<RunRow> {
        let dirs: Vec<PathBuf> = std::fs::read_dir(runs_dir)
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.join("preset.ron").is_file())
                    .collect()
            })
            .unwrap_or_default();
        // A set: a thousand runs would otherwise cost a million path comparisons a refresh.
        let present: std::collections::HashSet<&PathBuf> = dirs.iter().collect();
        self.runs.retain(|d, _| present.contains(d));
        let mut rows = Vec::with_capacity(dirs.len());
        for dir in dirs {
            let t = self
                .runs
                .entry(dir.clone())
                .or_insert_with(|| Tracked::new(&dir));
            t.poll();
            let mut row = t.row.clone();
            row.status = t.status(&dir);
            rows.push(row);
        }
        rows.sort_by(|a, b| b.name.cmp(&a.name));
        let tree = Tree::new(
            &rows
                .iter()
                .map(|r| (r.dir.as_path(), r.lineage.as_deref()))
                .collect::<Vec<_>>(),
        );
        let log_fields = std::sync::Arc::new(declared_log_fields(runs_dir));
        for (i, r) in rows.iter_mut().enumerate() {
            r.depth = tree.depth[i];
            r.children = tree.children[i];
            r.log_fields = std::sync::Arc::clone(&log_fields);
        }
        rows
    }
}

/// Which of `fields` matter for `metric` over the runs that have it (`core::fanova`): text
/// values by their rank among the field's values, log-searched fields (declared, or positive
/// over more than two decades) in log space. `None` with fewer than four such runs.
#[must_use]
pub fn importance<R: Borrow<RunRow>>(
    rows: &[R],
    fields: &[String],
    metric: &str,
    declared_log: &std::collections::BTreeSet<String>,
) -> Option<super::fanova::Importance> {
    let with: Vec<&RunRow> = rows
        .iter()
        .map(Borrow::borrow)
        .filter(|r| r.best.get(metric).is_some_and(|v| v.is_finite()))
        .collect();
    let mut columns: Vec<Vec<f64>> = Vec::new();
    let mut log = Vec::new();
    for f in fields {
        let c = field_column(&with, f, declared_log);
        log.push(c.log);
        columns.push(c.column);
    }
    let x: Vec<Vec<f64>> = (0..with.len())
        .map(|i| columns.iter().map(|c| c[i]).collect())
        .collect();
    let y: Vec<f64> = with.iter().map(|r| r.best[metric]).collect();
    super::fanova::importance(fields, &x, &log, &y, 0x5eed)
}

/// The fields where two runs' presets differ, as `(field, a's value, b's value)` in field
/// order (a field one of them lacks shows as blank); the run's name is left out.
#[must_use]
pub fn config_diff(a: &RunRow, b: &RunRow) -> Vec<(String, String, String)> {
    let keys: std::collections::BTreeSet<&String> =
        a.fields.keys().chain(b.fields.keys()).collect();
    keys.into_iter()
        .filter(|k| k.as_str() != "name")
        .filter_map(|k| {
            let (x, y) = (a.fields.get(k), b.fields.get(k));
            (x != y).then(|| {
                (
                    k.clone(),
                    x.cloned().unwrap_or_default(),
                    y.cloned().unwrap_or_default(),
                )
            })
        })
        .collect()
}

/// Runs that differ only in `by` (and their names): the indices of each group's rows, in the
/// order of each group's first row. Runs of different families never share a group.
#[must_use]
pub fn groups<R: Borrow<RunRow>>(rows: &[R], by: &str) -> Vec<Vec<usize>> {
    // (the shared settings, the family, the members)
    type Group<'a> = (Vec<(&'a String, &'a String)>, &'a str, Vec<usize>);
    let mut out: Vec<Group<'_>> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let r = r.borrow();
        let key: Vec<(&String, &String)> = r
            .fields
            .iter()
            .filter(|(k, _)| k.as_str() != "name" && k.as_str() != by)
            .collect();
        match out
            .iter_mut()
            .find(|(k, f, _)| *k == key && *f == r.family.as_str())
        {
            Some((_, _, members)) => members.push(i),
            None => out.push((key, r.family.as_str(), vec![i])),
        }
    }
    out.into_iter().map(|(_, _, m)| m).collect()
}

/// The mean, lowest and highest of a metric's best over a group's runs that have it, and how
/// many have it.
#[must_use]
pub fn group_metric<R: Borrow<RunRow>>(
    rows: &[R],
    members: &[usize],
    metric: &str,
) -> Option<(f64, f64, f64, usize)> {
    let v: Vec<f64> = members
        .iter()
        .filter_map(|&i| rows.get(i)?.borrow().best.get(metric).copied())
        .collect();
    if v.is_empty() {
        return None;
    }
    let (lo, hi) = min_max(&v);
    Some((v.iter().sum::<f64>() / v.len() as f64, lo, hi, v.len()))
}

/// The fields any sweep of `runs_dir` searched on a log scale (from each sweep's
/// [`super::sweep::SCALES_FILE`]; a missing or unreadable file adds nothing).
#[must_use]
pub fn declared_log_fields(runs_dir: &Path) -> std::collections::BTreeSet<String> {
    #[derive(serde::Deserialize)]
    struct Scales {
        log: Vec<String>,
    }
    let Ok(sweeps) = std::fs::read_dir(runs_dir.join("sweeps")) else {
        return Default::default();
    };
    sweeps
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read(e.path().join(super::sweep::SCALES_FILE)).ok())
        .filter_map(|b| serde_json::from_slice::<Scales>(&b).ok())
        .flat_map(|s| s.log)
        .collect()
}

impl Tracked {
    fn new(dir: &Path) -> Self {
        let mut fields = BTreeMap::new();
        if let Ok((p, _)) = super::preset::load_file(&dir.join("preset.ron")) {
            flatten("", &p.preset().to_tree(), &mut fields);
        }
        Self {
            reader: LogReader::new(&dir.join("events.log")),
            row: RunRow {
                dir: dir.to_path_buf(),
                name: dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                fields: std::sync::Arc::new(fields),
                lineage: super::branch::read(dir).map(std::sync::Arc::new),
                ..RunRow::default()
            },
            ended: None,
        }
    }

    /// Folds the log's new events into the row.
    fn poll(&mut self) {
        let Ok(events) = self.reader.poll() else {
            return;
        };
        let r = &mut self.row;
        for e in events {
            match e {
                Event::RunStarted {
                    family,
                    wall_time,
                    metrics,
                    ..
                } => {
                    r.family = family;
                    r.stopped_early = None;
                    r.started.get_or_insert(wall_time);
                    r.last = Some(wall_time);
                    for m in metrics {
                        if let MetricKind::Validation { higher_is_better } = m.kind {
                            if m.main {
                                r.main.insert(m.name.clone());
                            }
                            r.higher_is_better.insert(m.name, higher_is_better);
                        }
                    }
                    self.ended = None;
                }
                Event::Scalars { rows } => {
                    for row in rows {
                        r.step = r.step.max(row.step);
                        r.last = Some(row.wall_time);
                        for (k, v) in row.values {
                            let Some(&higher) = r.higher_is_better.get(&k) else {
                                continue;
                            };
                            if !v.is_finite() {
                                continue;
                            }
                            let better =
                                r.best
                                    .get(&k)
                                    .is_none_or(|b| if higher { v > *b } else { v < *b });
                            if better {
                                r.best.insert(k, v);
                            }
                        }
                    }
                }
                Event::TrialStopped {
                    rung,
                    metric,
                    value,
                    cut,
                    ..
                } => {
                    r.stopped_early = Some(super::pruner::describe_stop(rung, &metric, value, cut));
                }
                Event::RunFinished { step, outcome, .. } => {
                    r.step = r.step.max(step);
                    self.ended = Some(match outcome {
                        Outcome::Completed => RunStatus::Finished,
                        Outcome::Stopped => RunStatus::Stopped,
                    });
                }
                Event::RunFailed { step, message } => {
                    r.step = r.step.max(step);
                    r.message = message;
                    self.ended = Some(RunStatus::Failed);
                }
                _ => {}
            }
        }
    }

    /// The log's verdict, or for a run that never ended, whether a process (here, or on
    /// another machine by its heartbeat) still writes it.
    fn status(&self, dir: &Path) -> RunStatus {
        if let Some(s) = self.ended {
            return s;
        }
        RunDir::open(dir).map_or(RunStatus::Interrupted, |run| run.unended_status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, lr: &str, swd: Option<f64>) -> RunRow {
        let mut r = RunRow {
            name: name.into(),
            family: "wgan_gp".into(),
            ..RunRow::default()
        };
        let f = std::sync::Arc::make_mut(&mut r.fields);
        f.insert("name".into(), name.into());
        f.insert("train.lr_g".into(), lr.into());
        f.insert("train.beta1".into(), "0.0".into());
        r.higher_is_better.insert("val_swd".into(), false);
        if let Some(v) = swd {
            r.best.insert("val_swd".into(), v);
        }
        r
    }

    #[test]
    fn a_row_crosses_the_wire_with_its_folder_names_and_finite_bests() {
        let mut r = row("b1", "2e-4", Some(0.25));
        r.dir = PathBuf::from("/runs/b1-20261207");
        r.best.insert("val_psnr".into(), f64::NAN);
        r.lineage = Some(std::sync::Arc::new(Lineage {
            parent: PathBuf::from("/runs/a-20261206"),
            parent_name: "a".into(),
            fork_step: 10,
            changes: Vec::new(),
            created: String::new(),
        }));
        let text = serde_json::to_string(&r.to_wire()).unwrap();
        let back = RunRow::from_wire("gpu1", serde_json::from_str(&text).unwrap());
        assert_eq!(back.dir, PathBuf::from("gpu1:b1-20261207"));
        assert_eq!(back.machine.as_deref(), Some("gpu1"));
        assert_eq!(back.fields, r.fields);
        assert_eq!(back.best.get("val_swd"), Some(&0.25));
        assert!(!back.best.contains_key("val_psnr"), "NaN is not sent");
        assert_eq!(
            back.lineage.as_ref().unwrap().parent,
            PathBuf::from("gpu1:a-20261206")
        );
        assert_eq!(back.cell(&Column::Machine), "gpu1");
        assert!(back.matches("gpu1"));
        assert_eq!(r.cell(&Column::Machine), "here");
    }

    #[test]
    fn sorts_numbers_as_numbers_and_missing_values_last() {
        let mut rows = vec![
            row("a", "0.0003", Some(2.0)),
            row("b", "0.0001", None),
            row("c", "0.001", Some(1.0)),
        ];
        sort(&mut rows, &Column::Metric("val_swd".into()), false);
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["c", "a", "b"]);
        sort(&mut rows, &Column::Metric("val_swd".into()), true);
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a", "c", "b"]);
        sort(&mut rows, &Column::Field("train.lr_g".into()), false);
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["b", "a", "c"]);
    }

    #[test]
    fn filters_by_text_field_and_metric() {
        let a = row("lr-0", "0.0003", Some(2.0));
        assert!(a.matches("lr-0"));
        assert!(a.matches("WGAN"));
        assert!(a.matches("lr_g=3e-4"));
        assert!(a.matches("train.lr_g>0.0002 val_swd<2.5"));
        assert!(!a.matches("val_swd<1.5"));
        assert!(!a.matches("lr_g=1e-4"));
        assert!(!a.matches("no_such_field=1"));
        assert!(!a.matches("vq_gan"));
    }

    #[test]
    fn varying_fields_are_the_sweep_axes() {
        let rows = vec![row("a", "0.0003", None), row("b", "0.0001", None)];
        assert_eq!(varying_fields(&rows), vec!["train.lr_g".to_string()]);
        assert!(varying_fields(&rows[..1]).is_empty());
        // A run of another family does not make every field vary.
        let mut other = row("c", "0.1", None);
        other.family = "vq_gan".into();
        std::sync::Arc::make_mut(&mut other.fields).insert("train.beta1".into(), "0.9".into());
        let mixed = vec![rows[0].clone(), other, rows[1].clone()];
        assert_eq!(varying_fields(&mixed), vec!["train.lr_g".to_string()]);
    }

    #[test]
    fn parallel_coordinates_scale_each_axis() {
        let rows = vec![
            row("a", "0.0003", Some(2.0)),
            row("b", "0.0001", Some(1.0)),
            row("c", "0.0002", None),
        ];
        let linear = Default::default();
        let pc = parallel_coordinates(&rows, &["train.lr_g".into()], "val_swd", &linear);
        assert_eq!(pc.lines.len(), 2);
        assert_eq!(pc.lines[0].ys, vec![1.0, 1.0]);
        assert_eq!(pc.lines[1].ys, vec![0.0, 0.0]);
        assert_eq!(pc.axes[1], ("val_swd".into(), "1".into(), "2".into()));
        assert_eq!(pc.axes[0].1, "100e-6", "engineering notation at the ends");
    }

    #[test]
    fn runs_differing_only_in_seed_group_and_a_diff_shows_only_differences() {
        let mut rows = Vec::new();
        for (name, lr, seed, swd) in [
            ("a", "0.0001", "1", 1.0),
            ("b", "0.0001", "2", 3.0),
            ("c", "0.0002", "1", 0.5),
            ("d", "0.0001", "3", 2.0),
        ] {
            let mut r = row(name, lr, Some(swd));
            std::sync::Arc::make_mut(&mut r.fields).insert("seed".into(), seed.into());
            rows.push(r);
        }
        assert_eq!(groups(&rows, "seed"), vec![vec![0, 1, 3], vec![2]]);
        assert_eq!(
            groups(&rows, "train.lr_g"),
            vec![vec![0, 2], vec![1], vec![3]]
        );
        let (mean, lo, hi, n) = group_metric(&rows, &[0, 1, 3], "val_swd").unwrap();
        assert_eq!((mean, lo, hi, n), (2.0, 1.0, 3.0, 3));
        assert_eq!(group_metric(&rows, &[0], "nothing"), None);
        // Another family never joins a group.
        let mut other = rows[0].clone();
        other.family = "vq_gan".into();
        assert_eq!(
            groups(&[rows[0].clone(), other], "seed"),
            vec![vec![0], vec![1]]
        );
        assert_eq!(
            config_diff(&rows[0], &rows[2]),
            vec![
                ("seed".to_string(), "1".to_string(), "1".to_string()),
                (
                    "train.lr_g".to_string(),
                    "0.0001".to_string(),
                    "0.0002".to_string()
                )
            ]
            .into_iter()
            .filter(|(_, a, b)| a != b)
            .collect::<Vec<_>>()
        );
        assert!(config_diff(&rows[0], &rows[0]).is_empty());
    }

    #[test]
    fn the_table_shows_a_few_significant_digits_and_keeps_the_full_value() {
        let mut r = row("a", "0.007581937400841383", Some(0.123_456_789));
        std::sync::Arc::make_mut(&mut r.fields).insert("train.batch_size".into(), "64".into());
        let lr = Column::Field("train.lr_g".into());
        assert_eq!(r.display(&lr), "0.007582");
        assert_eq!(
            r.cell(&lr),
            "0.007581937400841383",
            "full value for hover and sort"
        );
        assert_eq!(r.display(&Column::Field("train.batch_size".into())), "64");
        assert_eq!(r.display(&Column::Field("name".into())), "a");
        let m = Column::Metric("val_swd".into());
        assert_eq!(r.display(&m), "0.1235");
        assert_eq!(r.cell(&m), "0.123456789");
    }

    #[test]
    fn parallel_coordinates_draw_log_searched_or_wide_fields_on_a_log_axis() {
        let rows = vec![
            row("a", "0.0001", Some(1.0)),
            row("b", "0.001", Some(2.0)),
            row("c", "0.01", Some(3.0)),
        ];
        let field = ["train.lr_g".to_string()];
        let linear = parallel_coordinates(&rows, &field, "val_swd", &Default::default());
        let ys: Vec<f64> = linear.lines.iter().map(|l| l.ys[0]).collect();
        // Two decades on a linear axis: the first two runs sit within 10 % of the floor.
        assert!(ys[0] < 0.1 && ys[1] < 0.1, "{ys:?}");
        assert_eq!(linear.axes[0].0, "train.lr_g");
        let declared = std::iter::once("train.lr_g".to_string()).collect();
        let log = parallel_coordinates(&rows, &field, "val_swd", &declared);
        let ys: Vec<f64> = log.lines.iter().map(|l| l.ys[0]).collect();
        for (y, want) in ys.iter().zip([0.0, 0.5, 1.0]) {
            assert!((y - want).abs() < 1e-9, "{ys:?}: evenly spread by decade");
        }
        assert_eq!(log.axes[0].0, "train.lr_g (log)");
        // Undeclared but over more than two decades: log too.
        let mut wide = rows;
        std::sync::Arc::make_mut(&mut wide[2].fields).insert("train.lr_g".into(), "0.1".into());
        let pc = parallel_coordinates(&wide, &field, "val_swd", &Default::default());
        assert_eq!(pc.axes[0].0, "train.lr_g (log)");
    }
}

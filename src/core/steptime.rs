//! Where the last steps' time went, in one line: the part that dominates a window of steps,
//! and under data parallelism the rank the others wait for.

use std::collections::VecDeque;

/// The steps a verdict looks back over.
pub const WINDOW: usize = 100;
/// A part dominates when it is the largest and takes at least this share of the window.
const DOMINANT: f64 = 0.4;
/// A rank is a straggler when its own work takes this much longer than the others' median.
const STRAGGLER: f64 = 1.25;

/// The last [`WINDOW`] steps' parts (seconds each).
#[derive(Debug, Default)]
pub struct Window {
    steps: VecDeque<Vec<(&'static str, f64)>>,
}

impl Window {
    pub fn push(&mut self, parts: Vec<(&'static str, f64)>) {
        if self.steps.len() == WINDOW {
            self.steps.pop_front();
        }
        self.steps.push_back(parts);
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Each part's seconds over the window, in the order first seen.
    #[must_use]
    pub fn totals(&self) -> Vec<(&'static str, f64)> {
        let mut out: Vec<(&'static str, f64)> = Vec::new();
        for (p, s) in self.steps.iter().flatten() {
            match out.iter_mut().find(|(n, _)| n == p) {
                Some(slot) => slot.1 += s,
                None => out.push((p, *s)),
            }
        }
        out
    }

    /// Seconds of the window not spent waiting for the other ranks.
    #[must_use]
    pub fn busy(&self, collectives: &str) -> f64 {
        self.totals()
            .iter()
            .filter(|(p, _)| *p != collectives)
            .map(|(_, s)| s)
            .sum()
    }
}

/// A bottleneck found in a window: what it is called, the one line, and what to try.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub part: &'static str,
    pub share: f64,
    pub line: String,
    pub suggestion: &'static str,
}

/// The part that dominates `totals` (seconds of `steps` steps), when it is overhead rather than
/// the networks' own work: a forward, a backward or the optimiser dominating is what training
/// is, and says nothing.
#[must_use]
pub fn verdict(totals: &[(&'static str, f64)], steps: usize) -> Option<Verdict> {
    let all: f64 = totals.iter().map(|(_, s)| s).sum();
    let (part, secs) = totals.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1))?;
    let share = secs / all;
    if !(all > 0.0 && share >= DOMINANT) {
        return None;
    }
    let (bound, what, suggestion) = match part {
        "data" => (
            "input-bound",
            "data wait",
            "the data cannot keep up: use local storage, smaller frames or volumes, or fewer \
             augmentations; under data parallelism, more ranks per node share the reads",
        ),
        "validation" => (
            "validation-bound",
            "validation",
            "validate less often (logging.validate_every_steps) or on fewer items",
        ),
        "logging" => (
            "logging-bound",
            "logging and media",
            "log and sample less often (logging.log_every_steps, logging.sample_every_steps)",
        ),
        "checkpoint" => (
            "checkpoint-bound",
            "checkpoints",
            "checkpoint less often (checkpoints.every_steps) or to faster storage",
        ),
        "collectives" => (
            "communication-bound",
            "collectives",
            "larger batches per rank (fewer exchanges per sample), or a faster interconnect; a \
             straggling rank shows here too",
        ),
        "session" => (
            "session-bound",
            "the session's own work",
            "the health checks or controllers take the time: report it, it is a bug",
        ),
        _ => return None,
    };
    Some(Verdict {
        part,
        share,
        line: format!(
            "{bound}: {what} {:.0} % of the last {steps} steps",
            100.0 * share
        ),
        suggestion,
    })
}

/// The rank whose own work (a step's time less its waits for the others) the others wait for,
/// given each rank's seconds over the same window: named when it is at least 25 % slower than
/// the median of the others and by more than a millisecond a step.
#[must_use]
pub fn straggler(busy: &[f64], steps: usize) -> Option<(usize, String)> {
    if busy.len() < 2 || steps == 0 {
        return None;
    }
    let (slow, worst) = busy
        .iter()
        .copied()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    let mut others: Vec<f64> = busy
        .iter()
        .enumerate()
        .filter(|(r, _)| *r != slow)
        .map(|(_, s)| *s)
        .collect();
    others.sort_by(f64::total_cmp);
    let median = others[others.len() / 2];
    let per_step = |s: f64| 1e3 * s / steps as f64;
    if worst < STRAGGLER * median || per_step(worst - median) < 1.0 {
        return None;
    }
    Some((
        slow,
        format!(
            "rank {slow} is the straggler: {} ms of its own work a step against {} ms on the \
             others, over the last {steps} steps",
            crate::core::numfmt::num(per_step(worst)),
            crate::core::numfmt::num(per_step(median)),
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dominant_data_wait_is_input_bound_and_compute_says_nothing() {
        let mut w = Window::default();
        for _ in 0..150 {
            w.push(vec![
                ("data", 0.061),
                ("critic forward", 0.02),
                ("critic backward", 0.019),
            ]);
        }
        assert_eq!(w.len(), WINDOW);
        let v = verdict(&w.totals(), w.len()).expect("input-bound");
        assert_eq!(v.line, "input-bound: data wait 61 % of the last 100 steps");
        let compute = [
            ("data", 0.1),
            ("generator backward", 0.5),
            ("optimiser", 0.4),
        ];
        assert_eq!(verdict(&compute, 10), None);
        // Spread evenly, nothing dominates.
        let even = [("data", 0.3), ("logging", 0.3), ("validation", 0.4)];
        assert_eq!(verdict(&even, 10).map(|v| v.part), Some("validation"));
        let even = [
            ("data", 0.35),
            ("logging", 0.3),
            ("validation", 0.35),
            ("x", 0.3),
        ];
        assert_eq!(verdict(&even, 10), None);
        assert_eq!(verdict(&[], 0), None);
    }

    #[test]
    fn the_slow_rank_is_named_and_equal_ranks_are_not() {
        let (rank, line) = straggler(&[1.0, 2.0, 1.05, 0.98], 100).expect("straggler");
        assert_eq!(rank, 1);
        assert!(line.starts_with("rank 1 is the straggler: 20 ms"), "{line}");
        assert_eq!(straggler(&[1.0, 1.1], 100), None);
        assert_eq!(straggler(&[0.001, 0.002], 100), None); // 10 us a step: noise
        assert_eq!(straggler(&[1.0], 100), None);
    }

    #[test]
    fn busy_time_leaves_out_the_waits() {
        let mut w = Window::default();
        w.push(vec![("collectives", 0.5), ("data", 0.25)]);
        w.push(vec![("critic forward", 0.25)]);
        assert!((w.busy("collectives") - 0.5).abs() < 1e-12);
    }
}

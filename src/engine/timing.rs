//! Where a step's time goes: a clock on the trainer thread that is always in exactly one part
//! of the step, so the parts add up to the step's time by construction.
//!
//! The session starts the clock when a step begins and reads it when the step ends; in
//! between, families say which part they are in (`enter("critic forward")`, [`data`] around a
//! batch's loading), and shared code marks its own parts with [`scope`] (the optimisers'
//! "optimiser", the collectives' "collectives"). Each switch costs one `Instant::now()`; with
//! no clock started (a trainer driven by a test or a benchmark) every call is a no-op.
//!
//! The times are the host's. On a CUDA device the host runs ahead of the kernels it queues
//! and waits where it reads a value back, so a part's time there is the time the host spent in
//! it, waits included; the step's total is exact either way.

use std::cell::RefCell;
use std::time::{Duration, Instant};

/// The part a step is in before anything says otherwise, and the session's own work in a
/// step (health checks, the controllers, the guard).
pub const SESSION: &str = "session";
/// Waiting for the next batch (reading, decoding, augmenting, moving it to the device).
pub const DATA: &str = "data";
pub const OPTIMISER: &str = "optimiser";
pub const COLLECTIVES: &str = "collectives";
/// The scalars, samples and reconstructions a step logs.
pub const LOGGING: &str = "logging";
pub const VALIDATION: &str = "validation";
pub const CHECKPOINT: &str = "checkpoint";

/// The parts every family's steps have, in the order a stacked plot draws them.
pub const SHARED: [&str; 7] = [
    DATA,
    OPTIMISER,
    COLLECTIVES,
    LOGGING,
    VALIDATION,
    CHECKPOINT,
    SESSION,
];

#[derive(Debug)]
struct Clock {
    current: &'static str,
    since: Instant,
    parts: Vec<(&'static str, Duration)>,
}

impl Clock {
    fn switch(&mut self, to: &'static str) -> &'static str {
        let now = Instant::now();
        let spent = now - self.since;
        match self.parts.iter_mut().find(|(p, _)| *p == self.current) {
            Some(slot) => slot.1 += spent,
            None => self.parts.push((self.current, spent)),
        }
        self.since = now;
        std::mem::replace(&mut self.current, to)
    }
}

thread_local! {
    static CLOCK: RefCell<Option<Clock>> = const { RefCell::new(None) };
}

/// Starts timing a step on this thread, in [`SESSION`].
pub fn start() {
    CLOCK.with(|c| {
        *c.borrow_mut() = Some(Clock {
            current: SESSION,
            since: Instant::now(),
            parts: Vec::new(),
        });
    });
}

/// Ends the step: each part's seconds, in the order first entered (empty when no clock was
/// started).
pub fn finish() -> Vec<(&'static str, f64)> {
    CLOCK.with(|c| {
        let Some(mut clock) = c.borrow_mut().take() else {
            return Vec::new();
        };
        clock.switch(SESSION);
        clock
            .parts
            .into_iter()
            .map(|(p, d)| (p, d.as_secs_f64()))
            .collect()
    })
}

/// From now on the step is in `part`; returns the part it was in.
pub fn enter(part: &'static str) -> &'static str {
    CLOCK.with(|c| {
        c.borrow_mut()
            .as_mut()
            .map_or(part, |clock| clock.switch(part))
    })
}

/// The step is in `part` until the guard drops, then back in the part it was in.
#[must_use = "the part ends when the guard drops"]
pub fn scope(part: &'static str) -> Scope {
    Scope {
        back_to: enter(part),
    }
}

/// See [`scope`].
#[derive(Debug)]
pub struct Scope {
    back_to: &'static str,
}

impl Drop for Scope {
    fn drop(&mut self) {
        enter(self.back_to);
    }
}

/// Loads a batch in [`DATA`]. Test hook: the `slow-data` failpoint (`slow-data:S`) adds
/// 50 ms to every load from step S on, as a slow disk would; on the one rank
/// `WORKBENCH_FAILPOINT_RANK` names, when it is set (a straggler).
pub fn data<T>(step: u64, load: impl FnOnce() -> T) -> T {
    let _data = scope(DATA);
    let rank_here = std::env::var("WORKBENCH_FAILPOINT_RANK")
        .ok()
        .and_then(|r| r.parse::<usize>().ok())
        .is_none_or(|r| r == crate::engine::dist::rank_and_world().0);
    if rank_here && crate::engine::failpoint("slow-data", step) {
        std::thread::sleep(Duration::from_millis(50));
    }
    load()
}

/// The logged name of a part's milliseconds per step: `time_critic_forward_ms`.
#[must_use]
pub fn metric_name(part: &str) -> String {
    format!("time_{}_ms", part.replace(' ', "_"))
}

/// The logged name of a step's total milliseconds.
pub const STEP_MS: &str = crate::core::protocol::STEP_TIME_MS;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parts_add_up_to_the_time_between_start_and_finish() {
        let t0 = Instant::now();
        start();
        std::thread::sleep(Duration::from_millis(3));
        enter("critic forward");
        std::thread::sleep(Duration::from_millis(5));
        {
            let _opt = scope(OPTIMISER);
            std::thread::sleep(Duration::from_millis(4));
        }
        // Back in the critic's forward after the optimiser's scope.
        std::thread::sleep(Duration::from_millis(2));
        let loaded = data(0, || 7);
        let parts = finish();
        let total = t0.elapsed().as_secs_f64();
        assert_eq!(loaded, 7);
        let names: Vec<&str> = parts.iter().map(|(p, _)| *p).collect();
        assert_eq!(names, [SESSION, "critic forward", OPTIMISER, DATA]);
        let get = |p: &str| parts.iter().find(|(n, _)| *n == p).map_or(0.0, |(_, s)| *s);
        assert!(get("critic forward") >= 0.007, "{parts:?}");
        assert!(get(OPTIMISER) >= 0.004, "{parts:?}");
        let sum: f64 = parts.iter().map(|(_, s)| s).sum();
        assert!(sum <= total && sum >= 0.98 * total, "{sum} of {total}");
        // No clock: calls are no-ops and finish says nothing.
        assert_eq!(enter(DATA), DATA);
        assert!(finish().is_empty());
    }

    #[test]
    fn metric_names_are_one_word() {
        assert_eq!(metric_name("critic forward"), "time_critic_forward_ms");
        assert_eq!(metric_name(DATA), "time_data_ms");
    }
}

//! Stopping well on a signal: SIGTERM (a scheduler's time limit or preemption, `kill`), SIGINT
//! (Ctrl-C) and SIGUSR1 (SLURM's warning before the time limit, `--signal=USR1@N`) each ask a
//! run to stop at its next step boundary with a checkpoint of that step; a second SIGINT or
//! SIGTERM ends the process at once.
//!
//! A named thread waits for the signals (the handler itself only records them, as
//! `signal-hook` does) and hands each to a callback, so what a signal means stays with the
//! program: the CLI sends the worker [`crate::core::protocol::Command::StopBySignal`].

use std::io;

use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};

/// A signal that stops a run with a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    Term,
    Int,
    Usr1,
}

impl StopSignal {
    /// Every one, in the order data-parallel ranks exchange them.
    pub const ALL: [Self; 3] = [Self::Term, Self::Int, Self::Usr1];

    /// Its usual name: `SIGTERM`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Term => "SIGTERM",
            Self::Int => "SIGINT",
            Self::Usr1 => "SIGUSR1",
        }
    }

    /// Its number on this system.
    #[must_use]
    pub fn number(self) -> i32 {
        match self {
            Self::Term => SIGTERM,
            Self::Int => SIGINT,
            Self::Usr1 => SIGUSR1,
        }
    }

    /// The exit status of a process it stopped: 128 + its number, as a shell reports it.
    #[must_use]
    pub fn exit_code(self) -> u8 {
        u8::try_from(128 + self.number()).unwrap_or(u8::MAX)
    }

    /// The signal of that name (`SIGTERM` or `TERM`).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        let bare = name.strip_prefix("SIG").unwrap_or(name);
        Self::ALL
            .into_iter()
            .find(|s| s.name().strip_prefix("SIG") == Some(bare))
    }

    fn from_number(n: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.number() == n)
    }
}

/// Watches SIGTERM, SIGINT and SIGUSR1 for the rest of the process on a thread named
/// `workbench-signals`: each arrival calls `on_signal` with the signal and how many stop
/// signals came before it. Installing replaces the default action (ending the process), so
/// `on_signal` decides what each means.
pub fn watch(on_signal: impl Fn(StopSignal, usize) + Send + 'static) -> io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGUSR1])?;
    std::thread::Builder::new()
        .name("workbench-signals".into())
        .spawn(move || {
            let mut before = 0;
            for n in signals.forever() {
                if let Some(s) = StopSignal::from_number(n) {
                    on_signal(s, before);
                    before += 1;
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_exit_codes() {
        assert_eq!(StopSignal::from_name("SIGTERM"), Some(StopSignal::Term));
        assert_eq!(StopSignal::from_name("USR1"), Some(StopSignal::Usr1));
        assert_eq!(StopSignal::from_name("SIGHUP"), None);
        assert_eq!(StopSignal::Term.exit_code(), 143);
        assert_eq!(StopSignal::Int.exit_code(), 130);
        assert_eq!(StopSignal::Usr1.exit_code(), 138);
        for s in StopSignal::ALL {
            assert_eq!(StopSignal::from_number(s.number()), Some(s));
        }
    }
}

//! The progress display of `workbench train`: a bar on a terminal, plain lines otherwise.

use std::time::{Duration, Instant};

use workbench::core::protocol::{Event, Level, Outcome};
use workbench::core::timefmt::human_duration;

use super::say_line;

/// Progress display: a bar on a terminal, plain lines otherwise.
pub(super) struct Progress {
    tty: bool,
    pub(super) step: u64,
    total: Option<u64>,
    started: Instant,
    first_step: u64,
    last_values: Vec<(String, f64)>,
    last_plain: Instant,
    phase: String,
    /// The family's main metrics, as the run declared them: what the line shows.
    main: Vec<String>,
    /// Prints nothing (a data-parallel rank other than 0).
    pub(super) silent: bool,
}

impl Progress {
    pub(super) fn new(tty: bool) -> Self {
        Self {
            tty,
            step: 0,
            total: None,
            started: Instant::now(),
            first_step: 0,
            last_values: Vec::new(),
            main: Vec::new(),
            last_plain: Instant::now(),
            phase: String::new(),
            silent: false,
        }
    }

    pub(super) fn line(&self) -> String {
        let rate =
            (self.step - self.first_step) as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        // The declared main metrics, in their declared order.
        let losses: Vec<String> = self
            .main
            .iter()
            .filter_map(|k| {
                let (_, v) = self.last_values.iter().find(|(n, _)| n == k)?;
                Some(format!("{k} {v:.4}"))
            })
            .collect();
        match self.total {
            Some(total) if total > 0 => {
                let frac = (self.step as f64 / total as f64).clamp(0.0, 1.0);
                let width = 24;
                let filled = (frac * width as f64) as usize;
                let eta = if rate > 0.0 {
                    human_duration((total.saturating_sub(self.step)) as f64 / rate)
                } else {
                    "?".into()
                };
                format!(
                    "[{}{}] {}/{} {:.1} it/s ETA {} {} {}",
                    "#".repeat(filled),
                    ".".repeat(width - filled),
                    self.step,
                    total,
                    rate,
                    eta,
                    self.phase,
                    losses.join(" ")
                )
            }
            _ => format!(
                "step {} {:.1} it/s {} {}",
                self.step,
                rate,
                self.phase,
                losses.join(" ")
            ),
        }
    }

    pub(super) fn redraw(&mut self) {
        if self.silent {
            return;
        }
        use std::io::Write as _;
        if self.tty {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K{}", self.line());
        } else if self.last_plain.elapsed() >= Duration::from_secs(5) {
            say_line(&self.line());
            self.last_plain = Instant::now();
        }
    }

    pub(super) fn say(&self, text: &str) {
        if self.silent {
            return;
        }
        if self.tty {
            say_line(&format!("\r\x1b[2K{text}"));
        } else {
            say_line(text);
        }
    }

    pub(super) fn on_event(
        &mut self,
        event: &Event,
    ) -> Option<Result<(Outcome, Option<String>), String>> {
        match event {
            Event::RunStarted {
                device,
                total_steps,
                resumed_from,
                metrics,
                ..
            } => {
                self.main = metrics
                    .iter()
                    .filter(|m| m.main)
                    .map(|m| m.name.clone())
                    .collect();
                self.total = *total_steps;
                self.first_step = resumed_from.unwrap_or(0);
                self.step = self.first_step;
                self.started = Instant::now();
                self.say(&format!(
                    "device: {device}{}",
                    resumed_from
                        .map(|s| format!(", resumed from step {s}"))
                        .unwrap_or_default()
                ));
            }
            Event::Scalars { rows } => {
                if let Some(r) = rows.last() {
                    self.step = r.step;
                    for (k, v) in &r.values {
                        if let Some(slot) = self.last_values.iter_mut().find(|(n, _)| n == k) {
                            slot.1 = *v;
                        } else {
                            self.last_values.push((k.clone(), *v));
                        }
                    }
                }
                self.redraw();
            }
            Event::PhaseStarted {
                index,
                name,
                length,
                loaded_checkpoint,
                ..
            } => {
                self.phase = format!("phase {name}");
                self.say(&format!(
                    "phase {index} `{name}` ({length}){}",
                    loaded_checkpoint
                        .as_ref()
                        .map(|c| format!(" from {c}"))
                        .unwrap_or_default()
                ));
            }
            Event::Health {
                step,
                signal,
                message,
                suggestion,
            } => self.say(&format!(
                "health at step {step}: {}: {message}; suggestion: {suggestion}",
                signal.label()
            )),
            // An error's one line comes with the run's end; its detail stays in the run log.
            Event::Log {
                level: Level::Error,
                ..
            } => {}
            Event::Log { level, message, .. } => self.say(&format!(
                "{}{message}",
                if *level == Level::Info {
                    ""
                } else {
                    "warning: "
                }
            )),
            Event::HyperparameterChanged {
                name,
                old,
                new,
                step,
            } => self.say(&format!("step {step}: {name} {old} -> {new}")),
            Event::Rollback {
                step,
                to_step,
                message,
                remedy,
                count,
                abandoned,
                ..
            } => self.say(&format!(
                "guard: {message}; rollback {count} to step {to_step} (from {step}), remedy {remedy}{}",
                abandoned
                    .as_ref()
                    .map_or(String::new(), |a| format!("; the abandoned rows: {a}"))
            )),
            Event::TrialStopped {
                rung,
                metric,
                value,
                cut,
                ..
            } => self.say(&format!(
                "the sweep's scheduler {}",
                workbench::core::pruner::describe_stop(*rung, metric, *value, *cut)
            )),
            Event::CheckpointSaved { path, best, .. } if *best => {
                self.say(&format!("best checkpoint: {path}"));
            }
            Event::RunFinished {
                outcome,
                step,
                signal,
            } => {
                self.step = *step;
                return Some(Ok((*outcome, signal.clone())));
            }
            Event::RunFailed { message, .. } => return Some(Err(message.clone())),
            _ => {}
        }
        None
    }

    pub(super) fn finish(&self) {
        if self.tty && !self.silent {
            say_line(&format!("\r\x1b[2K{}", self.line()));
        }
    }
}

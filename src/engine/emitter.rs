//! The worker's one way out: every event goes to the run log (always) and to the channel
//! (never blocking; dropped when the UI is behind, the log keeps it). Scalars are batched.

use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};

use crate::core::protocol::{Event, ScalarRow, Waker};
use crate::core::runlog::LogWriter;
use crate::engine::EngineError;

/// Sends events to the run log (always) and the channel (never blocking).
pub struct Emitter {
    log: LogWriter,
    tx: Sender<Event>,
    waker: Option<Waker>,
    pending: Vec<ScalarRow>,
    last_flush: Instant,
    pub dropped: u64,
    /// The step being trained, for the final event of a failed run.
    pub step: u64,
    /// The scalars' pyramids, written beside the log whenever it is synced (`core::lod`).
    lod: crate::core::lod::Builder,
}

impl std::fmt::Debug for Emitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emitter")
            .field("log", &self.log)
            .field("dropped", &self.dropped)
            .finish_non_exhaustive()
    }
}

impl Emitter {
    pub fn new(log: LogWriter, tx: Sender<Event>, waker: Option<Waker>) -> Self {
        let mut lod = crate::core::lod::Builder::default();
        if log.had_records() {
            // The records before this process are not seen here: readers rebuild the file.
            lod.give_up();
        }
        Self {
            lod,
            log,
            tx,
            waker,
            pending: Vec::new(),
            last_flush: Instant::now(),
            dropped: 0,
            step: 0,
        }
    }

    fn send(&mut self, event: Event) {
        match self.tx.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.dropped += 1,
            Err(TrySendError::Disconnected(_)) => {}
        }
        if let Some(w) = &self.waker {
            w();
        }
    }

    /// Logs and sends one event (pending scalars first, to keep the order).
    pub fn emit(&mut self, event: Event) -> Result<(), EngineError> {
        self.flush()?;
        self.log.append(&event)?;
        self.lod.observe(&event);
        self.send(event);
        Ok(())
    }

    /// Queues a scalar row; rows go out together about every 100 ms.
    pub fn scalars(&mut self, row: ScalarRow) -> Result<(), EngineError> {
        self.pending.push(row);
        if self.last_flush.elapsed() >= Duration::from_millis(100) {
            self.flush()?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), EngineError> {
        self.last_flush = Instant::now();
        if self.pending.is_empty() {
            return Ok(());
        }
        let event = Event::Scalars {
            rows: std::mem::take(&mut self.pending),
        };
        self.log.append(&event)?;
        self.lod.observe(&event);
        self.send(event);
        Ok(())
    }

    /// The terminal event: logged, synced, and sent with a short wait (the only one that waits).
    pub fn finish(&mut self, event: Event) {
        let _ = self.flush();
        let _ = self.log.append(&event);
        let _ = self.log.sync();
        self.write_lod();
        let _ = self.tx.send_timeout(event, Duration::from_secs(2));
        if let Some(w) = &self.waker {
            w();
        }
    }

    pub fn sync(&mut self) -> Result<(), EngineError> {
        self.log.sync().map_err(EngineError::from)?;
        self.write_lod();
        Ok(())
    }

    /// Writes the pyramids of what the log holds now; one this process cannot build (its
    /// log was resumed) is removed, for readers to rebuild. Best effort: a reader rebuilds a
    /// missing or stale file, so a failure here loses nothing.
    fn write_lod(&mut self) {
        let Some(dir) = self.log.path().parent() else {
            return;
        };
        match self.lod.pyramids(self.log.bytes()) {
            Some(p) => {
                let _ = crate::core::lod::write(dir, &p);
            }
            None => {
                let _ = std::fs::remove_file(dir.join(crate::core::lod::FILE));
            }
        }
    }
}

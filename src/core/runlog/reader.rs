use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::{decode_frames, RunLogError};
use crate::core::protocol::Event;

/// Everything readable in a log right now.
#[derive(Debug, Clone, Default)]
pub struct LogContents {
    pub events: Vec<Event>,
    /// Bytes after the last valid record: a torn tail, or a record being written.
    pub tail_bytes: u64,
}

/// Reads a whole log, ignoring a torn tail.
pub fn read_all(path: &Path) -> Result<LogContents, RunLogError> {
    let mut reader = LogReader::new(path);
    let events = reader.poll()?;
    Ok(LogContents {
        events,
        tail_bytes: reader.pending_bytes(),
    })
}

/// Follows a log that may still be written: each [`LogReader::poll`] returns the records that
/// became complete since the last one.
#[derive(Debug)]
pub struct LogReader {
    path: PathBuf,
    offset: u64,
    pending: Vec<u8>,
}

impl LogReader {
    #[must_use]
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            offset: 0,
            pending: Vec::new(),
        }
    }

    /// Reads new bytes and decodes the complete records among them. A missing file reads as
    /// empty (the writer may not have created it yet).
    pub fn poll(&mut self) -> Result<Vec<Event>, RunLogError> {
        let io = |source| RunLogError::Io {
            path: self.path.clone(),
            source,
        };
        // One stat when nothing was written since the last poll (the common case of a folder
        // of finished runs); open and read only when the length moved.
        let len = match std::fs::metadata(&self.path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(e)),
        };
        if len == self.offset + self.pending.len() as u64 {
            return Ok(Vec::new());
        }
        let mut file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(e)),
        };
        let len = file.metadata().map_err(io)?.len();
        let read_from = self.offset + self.pending.len() as u64;
        if len < read_from {
            // The writer cut a torn tail that we had buffered: drop it and re-read.
            self.pending.clear();
            if len < self.offset {
                self.offset = 0;
            }
        }
        let read_from = self.offset + self.pending.len() as u64;
        file.seek(SeekFrom::Start(read_from)).map_err(io)?;
        file.read_to_end(&mut self.pending).map_err(io)?;

        let (payloads, used) = decode_frames(&self.pending);
        let mut events = Vec::with_capacity(payloads.len());
        let mut at = self.offset;
        for payload in payloads {
            let event: Event =
                serde_json::from_slice(payload).map_err(|e| RunLogError::BadRecord {
                    path: self.path.clone(),
                    offset: at,
                    message: e.to_string(),
                })?;
            at += (payload.len() + super::HEADER_LEN) as u64;
            events.push(event);
        }
        self.pending.drain(..used);
        self.offset += used as u64;
        Ok(events)
    }

    /// Bytes of the log decoded so far.
    #[must_use]
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes read but not yet part of a complete record.
    #[must_use]
    pub fn pending_bytes(&self) -> u64 {
        self.pending.len() as u64
    }
}

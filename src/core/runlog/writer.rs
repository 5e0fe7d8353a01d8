use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{decode_frames, encode_frame, RunLogError};
use crate::core::protocol::Event;

/// Appends events to `events.log`.
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    file: File,
    /// The log's length in bytes, and what it was when opened.
    len: u64,
    opened_at: u64,
}

impl LogWriter {
    /// Opens (or creates) the log for appending, cutting a torn tail left by a crash.
    pub fn open(path: &Path) -> Result<Self, RunLogError> {
        let io = |source| RunLogError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf).map_err(io)?;
        let (_, valid) = decode_frames(&buf);
        if valid < buf.len() {
            file.set_len(valid as u64).map_err(io)?;
        }
        file.seek(SeekFrom::End(0)).map_err(io)?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            len: valid as u64,
            opened_at: valid as u64,
        })
    }

    /// Appends one event as one frame, written with a single call.
    pub fn append(&mut self, event: &Event) -> Result<(), RunLogError> {
        let payload = serde_json::to_vec(event).map_err(|e| RunLogError::BadRecord {
            path: self.path.clone(),
            offset: 0,
            message: e.to_string(),
        })?;
        let frame = encode_frame(&payload);
        self.file
            .write_all(&frame)
            .map_err(|source| RunLogError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.len += frame.len() as u64;
        Ok(())
    }

    /// The log's length in bytes.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.len
    }

    /// Whether the log held records before this writer opened it (a resumed run's).
    #[must_use]
    pub fn had_records(&self) -> bool {
        self.opened_at > 0
    }

    /// Forces what was written to stable storage (used at checkpoints and at the end of a run).
    pub fn sync(&mut self) -> Result<(), RunLogError> {
        self.file.sync_data().map_err(|source| RunLogError::Io {
            path: self.path.clone(),
            source,
        })
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

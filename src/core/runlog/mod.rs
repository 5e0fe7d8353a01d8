//! The run directory's event log: append-only, framed, checksummed.
//!
//! Each record is `[len: u32 LE][crc32c(payload): u32 LE][payload: len bytes of JSON]`.
//! A writer appends whole frames with one `write` call; a reader stops at the first frame that
//! is incomplete or fails its checksum. A file killed mid-write therefore reads as every record
//! before the torn one, and a reader following a live writer simply sees the torn frame
//! complete itself on a later poll. A writer reopening a log cuts any torn tail first, so
//! records appended after a crash are reachable.

mod reader;
mod writer;

pub use reader::{read_all, LogContents, LogReader};
pub use writer::LogWriter;

use std::path::PathBuf;

/// Frame header size in bytes.
pub const HEADER_LEN: usize = 8;
/// Larger lengths are treated as corruption rather than allocated.
pub const MAX_RECORD_LEN: u32 = 64 << 20;

/// Errors of the event log.
#[derive(Debug, thiserror::Error)]
pub enum RunLogError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: record at byte {offset} is not a valid event: {message}")]
    BadRecord {
        path: PathBuf,
        offset: u64,
        message: String,
    },
}

/// Encodes one frame.
#[must_use]
pub fn encode_frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(HEADER_LEN + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// Splits `buf` into the payloads of its complete, valid frames. Returns them and the number of
/// bytes they span; anything after that is a torn or not yet written tail.
#[must_use]
pub fn decode_frames(buf: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut payloads = Vec::new();
    let mut at = 0usize;
    while buf.len() - at >= HEADER_LEN {
        let len = u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
        let crc = u32::from_le_bytes([buf[at + 4], buf[at + 5], buf[at + 6], buf[at + 7]]);
        if len > MAX_RECORD_LEN {
            break;
        }
        let end = at + HEADER_LEN + len as usize;
        if end > buf.len() {
            break;
        }
        let payload = &buf[at + HEADER_LEN..end];
        if crc32c::crc32c(payload) != crc {
            break;
        }
        payloads.push(payload);
        at = end;
    }
    (payloads, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_torn_tails_are_ignored() {
        let mut buf = encode_frame(b"one");
        buf.extend(encode_frame(b"two"));
        let whole = buf.len();
        buf.extend(encode_frame(b"three"));
        for cut in whole..buf.len() {
            let (payloads, used) = decode_frames(&buf[..cut]);
            assert_eq!(payloads, vec![b"one".as_slice(), b"two".as_slice()]);
            assert_eq!(used, whole);
        }
        let (payloads, used) = decode_frames(&buf);
        assert_eq!(payloads.len(), 3);
        assert_eq!(used, buf.len());
    }

    #[test]
    fn a_flipped_bit_ends_the_valid_prefix() {
        let mut buf = encode_frame(b"one");
        let first = buf.len();
        buf.extend(encode_frame(b"two"));
        let last = buf.len() - 1;
        buf[last] ^= 1;
        let (payloads, used) = decode_frames(&buf);
        assert_eq!(payloads, vec![b"one".as_slice()]);
        assert_eq!(used, first);
    }
}

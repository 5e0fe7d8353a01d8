//! The event log survives torn writes and can be followed while it is written.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::Write;

use workbench::core::protocol::{Event, Level};
use workbench::core::runlog::{encode_frame, read_all, LogReader, LogWriter};

fn log_event(i: u64) -> Event {
    Event::Log {
        step: i,
        level: Level::Info,
        message: format!("event {i}"),
    }
}

#[test]
fn a_torn_tail_is_ignored_and_cut_by_the_next_writer() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("events.log");
    let mut w = LogWriter::open(&path).expect("open");
    for i in 0..5 {
        w.append(&log_event(i)).expect("append");
    }
    drop(w);
    // A crash half-way through the sixth record.
    let frame = encode_frame(&serde_json::to_vec(&log_event(5)).expect("json"));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("append");
    f.write_all(&frame[..frame.len() / 2]).expect("torn write");
    drop(f);
    let contents = read_all(&path).expect("read");
    assert_eq!(contents.events.len(), 5);
    assert_eq!(contents.tail_bytes, (frame.len() / 2) as u64);
    // Reopening cuts the torn tail, so new records are reachable.
    let mut w = LogWriter::open(&path).expect("reopen");
    w.append(&log_event(6)).expect("append");
    let contents = read_all(&path).expect("read");
    assert_eq!(contents.events.len(), 6);
    assert_eq!(contents.events[5], log_event(6));
    assert_eq!(contents.tail_bytes, 0);
}

#[test]
fn a_reader_follows_a_live_writer_through_partial_records() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("events.log");
    let mut reader = LogReader::new(&path);
    assert!(reader.poll().expect("missing file reads empty").is_empty());
    let mut file = std::fs::File::create(&path).expect("create");
    let mut seen = Vec::new();
    for i in 0..50u64 {
        let frame = encode_frame(&serde_json::to_vec(&log_event(i)).expect("json"));
        let cut = (i as usize * 7) % frame.len();
        file.write_all(&frame[..cut]).expect("first part");
        file.flush().expect("flush");
        seen.extend(reader.poll().expect("poll mid-record"));
        assert_eq!(seen.len() as u64, i, "no half record is ever returned");
        file.write_all(&frame[cut..]).expect("rest");
        file.flush().expect("flush");
        seen.extend(reader.poll().expect("poll"));
        assert_eq!(seen.len() as u64, i + 1);
    }
    assert_eq!(seen.last(), Some(&log_event(49)));
}

#[test]
fn a_writer_thread_and_a_reader_thread_agree() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("events.log");
    let p2 = path.clone();
    let writer = std::thread::Builder::new()
        .name("test-log-writer".into())
        .spawn(move || {
            let mut w = LogWriter::open(&p2).expect("open");
            for i in 0..2000 {
                w.append(&log_event(i)).expect("append");
            }
        })
        .expect("spawn");
    let mut reader = LogReader::new(&path);
    let mut got = Vec::new();
    while got.len() < 2000 {
        got.extend(reader.poll().expect("poll"));
        if writer.is_finished() && got.len() < 2000 {
            got.extend(reader.poll().expect("poll"));
            break;
        }
    }
    writer.join().expect("writer");
    assert_eq!(got.len(), 2000);
    assert!(got
        .iter()
        .enumerate()
        .all(|(i, e)| *e == log_event(i as u64)));
}

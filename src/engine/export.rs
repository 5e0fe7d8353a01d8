//! Exports of a run: a wide CSV of every scalar, and TensorBoard event files (scalars and the
//! sample images). The TensorBoard writer encodes the few protobuf messages it needs by hand.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::core::protocol::Event;
use crate::core::rundir::RunDir;
use crate::core::runlog;

/// Errors of exports.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ExportError {
    pub path: PathBuf,
    pub message: String,
}

fn err(path: &Path, m: impl std::fmt::Display) -> ExportError {
    ExportError {
        path: path.to_path_buf(),
        message: m.to_string(),
    }
}

/// Scalars by step: the wall time and the named values.
pub type ScalarsByStep = BTreeMap<u64, (f64, BTreeMap<String, f64>)>;

/// The run's scalars by step (a resumed run's replaced history is dropped).
pub fn scalars_by_step(run: &RunDir) -> Result<(ScalarsByStep, Vec<Event>), ExportError> {
    let log = runlog::read_all(&run.events_path()).map_err(|e| err(&run.events_path(), e))?;
    let mut by_step = ScalarsByStep::new();
    for e in &log.events {
        match e {
            Event::RunStarted {
                resumed_from: Some(from),
                ..
            }
            | Event::Rollback { to_step: from, .. } => {
                by_step.retain(|s, _| s <= from);
            }
            Event::Scalars { rows } => {
                for r in rows {
                    let entry = by_step
                        .entry(r.step)
                        .or_insert((r.wall_time, BTreeMap::new()));
                    entry.1.extend(r.values.iter().cloned());
                }
            }
            _ => {}
        }
    }
    Ok((by_step, log.events))
}

/// Writes every scalar of the run as one CSV: `step,wall_time,<names...>`.
pub fn export_csv(run: &RunDir, out: &Path) -> Result<usize, ExportError> {
    let (by_step, _) = scalars_by_step(run)?;
    let names: BTreeSet<&String> = by_step.values().flat_map(|(_, m)| m.keys()).collect();
    let mut text = String::from("step,wall_time");
    for n in &names {
        text.push(',');
        text.push_str(n);
    }
    text.push('\n');
    for (step, (wall, values)) in &by_step {
        text.push_str(&format!("{step},{wall:.3}"));
        for n in &names {
            text.push(',');
            if let Some(v) = values.get(*n) {
                text.push_str(&format!("{v}"));
            }
        }
        text.push('\n');
    }
    crate::core::rundir::atomic_write(out, text.as_bytes()).map_err(|e| err(out, e))?;
    Ok(by_step.len())
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field_bytes(field: u32, bytes: &[u8], out: &mut Vec<u8>) {
    varint(u64::from(field << 3 | 2), out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

fn field_varint(field: u32, v: u64, out: &mut Vec<u8>) {
    varint(u64::from(field << 3), out);
    varint(v, out);
}

fn event(wall_time: f64, step: u64, body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut e = Vec::new();
    varint(1 << 3 | 1, &mut e); // wall_time: double
    e.extend_from_slice(&wall_time.to_le_bytes());
    field_varint(2, step, &mut e);
    body(&mut e);
    e
}

fn summary_value(tag: &str, fill: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut value = Vec::new();
    field_bytes(1, tag.as_bytes(), &mut value);
    fill(&mut value);
    let mut summary = Vec::new();
    field_bytes(1, &value, &mut summary);
    summary
}

fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c::crc32c(data);
    (c.rotate_right(15)).wrapping_add(0xa282_ead8)
}

fn record(data: &[u8], out: &mut Vec<u8>) {
    let len = (data.len() as u64).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
}

/// Writes a TensorBoard event file into `out_dir` with every scalar and every sample grid.
/// Returns the file written.
pub fn export_tensorboard(run: &RunDir, out_dir: &Path) -> Result<PathBuf, ExportError> {
    let (by_step, events) = scalars_by_step(run)?;
    std::fs::create_dir_all(out_dir).map_err(|e| err(out_dir, e))?;
    let start = by_step.values().next().map_or(0.0, |(w, _)| *w);
    let mut buf = Vec::new();
    record(
        &event(start, 0, |e| {
            field_bytes(3, b"brain.Event:2", e);
        }),
        &mut buf,
    );
    for (step, (wall, values)) in &by_step {
        for (name, v) in values {
            let s = summary_value(name, |val| {
                varint(2 << 3 | 5, val); // simple_value: float
                val.extend_from_slice(&(*v as f32).to_le_bytes());
            });
            record(&event(*wall, *step, |e| field_bytes(5, &s, e)), &mut buf);
        }
    }
    for e in &events {
        if let Event::Sample {
            step,
            path,
            width,
            height,
            ..
        } = e
        {
            let Ok(png) = std::fs::read(run.root().join(path)) else {
                continue;
            };
            let wall = by_step
                .range(..=step)
                .next_back()
                .map_or(start, |(_, (w, _))| *w);
            let s = summary_value("samples", |val| {
                let mut img = Vec::new();
                field_varint(1, u64::from(*height), &mut img);
                field_varint(2, u64::from(*width), &mut img);
                field_varint(3, 4, &mut img);
                field_bytes(4, &png, &mut img);
                field_bytes(4, &img, val);
            });
            record(&event(wall, *step, |e| field_bytes(5, &s, e)), &mut buf);
        }
    }
    let name = format!("events.out.tfevents.{}.workbench", start as u64);
    let path = out_dir.join(name);
    let mut f = std::fs::File::create(&path).map_err(|e| err(&path, e))?;
    f.write_all(&buf).map_err(|e| err(&path, e))?;
    f.sync_all().map_err(|e| err(&path, e))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_crc_matches_tensorflow() {
        // TFRecord framing of an empty payload, as TensorFlow writes it.
        let mut out = Vec::new();
        record(b"", &mut out);
        assert_eq!(&out[..8], &[0u8; 8]);
        assert_eq!(
            u32::from_le_bytes([out[8], out[9], out[10], out[11]]),
            masked_crc(&[0u8; 8])
        );
        assert_eq!(masked_crc(b""), 0xa282_ead8);
    }

    #[test]
    fn varints() {
        let mut v = Vec::new();
        varint(300, &mut v);
        assert_eq!(v, vec![0xac, 0x02]);
    }
}

//! A run's scalars as persisted level-of-detail pyramids, `scalars.lod` beside `events.log`,
//! so a run of a million logged steps draws its plots before its log is read.
//!
//! The trainer builds the pyramids as it logs ([`Builder`], bounded memory: the levels of at
//! most [`KEEP`] buckets and up) and writes them whenever the log is synced (checkpoints and
//! the end); a reader that finds them missing or behind the log writes them from what it
//! folded. The file says how many bytes of the log it covers, so a reader shows the pyramids
//! at once and replaces them with the full series when its own read of the log catches up.
//!
//! Format (little-endian): `WBLOD01\n`, the log bytes covered (u64), the last step (u64), the
//! run's first `RunStarted` as JSON (u32 length, bytes; its declarations give the dashboard
//! its groups), the series (u32 count; each: name as u32 length and bytes, base level u32,
//! points u64, non-finite count u64, levels u32, and per level u64 buckets then 6 f64 each),
//! then a CRC-32C of everything before it. Written to a temporary file and renamed over.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::core::protocol::Event;
use crate::core::series::{BucketRow, Coarse, CoarseBuilder, Series};

/// The file's name in a run folder.
pub const FILE: &str = "scalars.lod";
/// Buckets kept at a pyramid's finest persisted level: enough for a plot as wide as a screen.
pub const KEEP: usize = 4096;
const MAGIC: &[u8; 8] = b"WBLOD01\n";

/// Errors reading a pyramid file.
#[derive(Debug, thiserror::Error)]
pub enum LodError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a pyramid file of this version, or damaged ({what})")]
    Bad { path: PathBuf, what: &'static str },
}

/// A run's persisted pyramids.
#[derive(Debug, Clone, PartialEq)]
pub struct Pyramids {
    /// Bytes of `events.log` they cover.
    pub log_len: u64,
    pub last_step: u64,
    /// The run's first `RunStarted`, for its declarations.
    pub started: Option<Event>,
    pub series: Vec<(String, Coarse)>,
}

impl Pyramids {
    /// The pyramids as series to draw.
    #[must_use]
    pub fn to_series(&self) -> BTreeMap<String, Series> {
        self.series
            .iter()
            .map(|(n, c)| (n.clone(), Series::from_coarse(c)))
            .collect()
    }

    /// From a reader's folded series (every level kept in memory).
    #[must_use]
    pub fn of_series<'a>(
        series: impl IntoIterator<Item = (&'a String, &'a Series)>,
        started: Option<Event>,
        last_step: u64,
        log_len: u64,
    ) -> Self {
        Self {
            log_len,
            last_step,
            started,
            series: series
                .into_iter()
                .filter(|(_, s)| !s.is_empty())
                .map(|(n, s)| (n.clone(), s.coarse(KEEP)))
                .collect(),
        }
    }
}

/// Builds a run's pyramids from its events as they are logged, in bounded memory. A run that
/// rewinds (a resume from an earlier step, a rollback) cannot be followed by a builder that
/// keeps no raw points: it gives up, and readers rebuild the file.
#[derive(Debug, Default)]
pub struct Builder {
    series: BTreeMap<String, CoarseBuilder>,
    started: Option<Event>,
    last_step: u64,
    broken: bool,
}

impl Builder {
    pub fn observe(&mut self, e: &Event) {
        match e {
            Event::RunStarted { resumed_from, .. } => {
                if resumed_from.is_some() && !self.series.is_empty() {
                    self.broken = true;
                }
                if self.started.is_none() {
                    self.started = Some(e.clone());
                }
            }
            Event::Rollback { .. } => self.broken = true,
            Event::Scalars { rows } => {
                for r in rows {
                    self.last_step = self.last_step.max(r.step);
                    for (name, v) in &r.values {
                        if !self.series.contains_key(name) {
                            self.series.insert(name.clone(), CoarseBuilder::new(KEEP));
                        }
                        let Some(b) = self.series.get_mut(name) else {
                            continue;
                        };
                        if !b.push(r.step as f64, *v) {
                            self.broken = true;
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// Gives up: the log was not seen from its start.
    pub fn give_up(&mut self) {
        self.broken = true;
    }

    /// The pyramids of what was observed, covering `log_len` bytes; `None` after a rewind.
    #[must_use]
    pub fn pyramids(&self, log_len: u64) -> Option<Pyramids> {
        (!self.broken).then(|| Pyramids {
            log_len,
            last_step: self.last_step,
            started: self.started.clone(),
            series: self
                .series
                .iter()
                .map(|(n, b)| (n.clone(), b.coarse()))
                .filter(|(_, c)| c.points > 0 || c.non_finite > 0)
                .collect(),
        })
    }
}

/// Writes `dir/scalars.lod` atomically.
pub fn write(dir: &Path, p: &Pyramids) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(
        64 + p
            .series
            .iter()
            .map(|(n, c)| n.len() + 48 * c.levels.iter().map(Vec::len).sum::<usize>() + 40)
            .sum::<usize>(),
    );
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&p.log_len.to_le_bytes());
    out.extend_from_slice(&p.last_step.to_le_bytes());
    let started = match &p.started {
        Some(e) => serde_json::to_vec(e).map_err(std::io::Error::other)?,
        None => Vec::new(),
    };
    put_bytes(&mut out, &started);
    out.extend_from_slice(&(p.series.len() as u32).to_le_bytes());
    for (name, c) in &p.series {
        put_bytes(&mut out, name.as_bytes());
        out.extend_from_slice(&c.base.to_le_bytes());
        out.extend_from_slice(&c.points.to_le_bytes());
        out.extend_from_slice(&c.non_finite.to_le_bytes());
        out.extend_from_slice(&(c.levels.len() as u32).to_le_bytes());
        for level in &c.levels {
            out.extend_from_slice(&(level.len() as u64).to_le_bytes());
            for row in level {
                for v in row {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    let tmp = dir.join(format!("{FILE}.tmp"));
    std::fs::write(&tmp, &out)?;
    std::fs::rename(&tmp, dir.join(FILE))
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// Reads `dir/scalars.lod`: `None` when there is none.
pub fn read(dir: &Path) -> Result<Option<Pyramids>, LodError> {
    let path = dir.join(FILE);
    let buf = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(LodError::Io { path, source }),
    };
    parse(&buf, &path).map(Some)
}

/// A pyramid file's bytes (read from `path`, which errors name).
pub fn parse(buf: &[u8], path: &Path) -> Result<Pyramids, LodError> {
    let path = path.to_path_buf();
    let bad = |what| LodError::Bad {
        path: path.clone(),
        what,
    };
    if buf.len() < MAGIC.len() + 4 || &buf[..MAGIC.len()] != MAGIC {
        return Err(bad("its first bytes"));
    }
    let (body, crc) = buf.split_at(buf.len() - 4);
    if crc32c::crc32c(body).to_le_bytes() != crc {
        return Err(bad("its checksum"));
    }
    let mut r = Cursor {
        buf: body,
        at: MAGIC.len(),
    };
    let short = || bad("it ends early");
    let log_len = r.u64().ok_or_else(short)?;
    let last_step = r.u64().ok_or_else(short)?;
    let started = r.bytes().ok_or_else(short)?;
    let started = if started.is_empty() {
        None
    } else {
        Some(serde_json::from_slice(started).map_err(|_| bad("its run header"))?)
    };
    let n = r.u32().ok_or_else(short)?;
    let mut series = Vec::with_capacity(n.min(1 << 16) as usize);
    for _ in 0..n {
        let name = String::from_utf8(r.bytes().ok_or_else(short)?.to_vec())
            .map_err(|_| bad("a series name"))?;
        let base = r.u32().ok_or_else(short)?;
        let points = r.u64().ok_or_else(short)?;
        let non_finite = r.u64().ok_or_else(short)?;
        let levels_n = r.u32().ok_or_else(short)?;
        let mut levels = Vec::with_capacity(levels_n.min(64) as usize);
        for _ in 0..levels_n {
            let count = r.u64().ok_or_else(short)? as usize;
            if count > r.left() / 48 {
                return Err(short());
            }
            let mut level: Vec<BucketRow> = Vec::with_capacity(count);
            for _ in 0..count {
                let mut row = [0.0; 6];
                for v in &mut row {
                    *v = r.f64().ok_or_else(short)?;
                }
                level.push(row);
            }
            levels.push(level);
        }
        series.push((
            name,
            Coarse {
                base,
                points,
                non_finite,
                levels,
            },
        ));
    }
    Ok(Pyramids {
        log_len,
        last_step,
        started,
        series,
    })
}

struct Cursor<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let b = self.buf.get(self.at..end)?;
        self.at = end;
        Some(b)
    }
    fn left(&self) -> usize {
        self.buf.len() - self.at
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn f64(&mut self) -> Option<f64> {
        Some(f64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::protocol::ScalarRow;

    fn started(resumed_from: Option<u64>) -> Event {
        Event::RunStarted {
            run_dir: "r".into(),
            name: "r".into(),
            family: "wgan_gp".into(),
            device: "cpu".into(),
            total_steps: None,
            resumed_from,
            restarted: false,
            branch_of: None,
            wall_time: 0.0,
            metrics: vec![crate::core::protocol::MetricDef::loss("d_loss")],
        }
    }

    fn rows(from: u64, to: u64) -> Event {
        Event::Scalars {
            rows: (from..to)
                .map(|s| ScalarRow {
                    step: s,
                    wall_time: 0.0,
                    values: vec![("d_loss".into(), (s % 17) as f64), ("g".into(), 1.0)],
                })
                .collect(),
        }
    }

    #[test]
    fn pyramids_round_trip_and_draw_what_the_full_series_draws() {
        let tmp = tempfile::tempdir().expect("tmp");
        let mut b = Builder::default();
        let mut full = Series::new();
        b.observe(&started(None));
        for chunk in 0..100 {
            let e = rows(chunk * 1000, (chunk + 1) * 1000);
            b.observe(&e);
            if let Event::Scalars { rows } = &e {
                for r in rows {
                    full.push(r.step as f64, r.values[0].1);
                }
            }
        }
        let p = b.pyramids(1234).expect("pyramids");
        write(tmp.path(), &p).expect("write");
        let back = read(tmp.path()).expect("read").expect("there");
        assert_eq!(back, p);
        let s = &back.to_series()["d_loss"];
        assert_eq!(s.len(), 100_000);
        assert_eq!(s.bounds(), full.bounds());
        // At a screen's width, the persisted pyramid draws what the full series draws.
        assert_eq!(s.visible(0.0, 1e5, 1000), full.visible(0.0, 1e5, 1000));
        // A reader's pyramids from full series are the same file.
        let mut m = BTreeMap::new();
        m.insert("d_loss".to_string(), full);
        let of = Pyramids::of_series(&m, None, 99_999, 1);
        assert_eq!(of.series[0].1.levels, p.series[0].1.levels);
    }

    #[test]
    fn a_rewind_gives_up_and_damage_is_an_error_not_a_panic() {
        let mut b = Builder::default();
        b.observe(&started(None));
        b.observe(&rows(0, 10));
        b.observe(&started(Some(5)));
        assert!(b.pyramids(1).is_none());
        let tmp = tempfile::tempdir().expect("tmp");
        assert!(read(tmp.path()).expect("none").is_none());
        let mut ok = Builder::default();
        ok.observe(&rows(0, 100));
        write(tmp.path(), &ok.pyramids(9).expect("p")).expect("write");
        let good = std::fs::read(tmp.path().join(FILE)).expect("file");
        for cut in [0, 5, good.len() / 2, good.len() - 1] {
            std::fs::write(tmp.path().join(FILE), &good[..cut]).expect("write");
            assert!(read(tmp.path()).is_err(), "{cut}");
        }
        let mut flipped = good;
        flipped[40] ^= 1;
        std::fs::write(tmp.path().join(FILE), &flipped).expect("write");
        let e = read(tmp.path()).expect_err("damaged").to_string();
        assert!(e.contains("scalars.lod") && e.contains("checksum"), "{e}");
    }
}

//! Video windows for the WuBu-GAAD family: frames decoded by FFmpeg on a named thread through a
//! bounded channel, resized to the preset's size, and kept in memory as u8 (as the original
//! keeps its clip in RAM). A window is `input + predict` frames `frame_skip` apart; training
//! and validation windows come from disjoint frame ranges, so they never share a frame.

use std::path::{Path, PathBuf};

use crossbeam_channel::bounded;
use tch::{Device, Kind, Tensor};

use super::DataError;
use crate::core::preset::data::{Resize, VideoData, VideoSource};
use crate::core::video::{VideoError, VideoReader};

/// Frames in memory and the windows over them.
#[derive(Debug)]
pub struct VideoSet {
    /// `[T, 3, H, W]` u8 on the CPU: every segment one after another.
    frames: Tensor,
    /// First frame of each training window.
    pub train: Vec<i64>,
    /// First frame of each validation window.
    pub val: Vec<i64>,
    skip: i64,
    len: i64,
    pub description: String,
    /// Files of a folder that FFmpeg could not open as video, with the reason.
    pub skipped: Vec<(String, String)>,
}

/// One decoded clip.
struct Segment {
    name: String,
    frames: Vec<u8>,
    count: usize,
    validation_only: bool,
}

fn resize(frame: crate::core::video::Frame, cfg: &VideoData) -> Option<Vec<u8>> {
    let img = image::RgbaImage::from_raw(frame.width, frame.height, frame.rgba)?;
    let mut img = image::DynamicImage::ImageRgba8(img);
    let (tw, th) = (cfg.image_w, cfg.image_h);
    if cfg.resize == Resize::CenterCrop {
        let (w, h) = (f64::from(frame.width), f64::from(frame.height));
        let target = f64::from(tw) / f64::from(th);
        let (cw, ch) = if w / h > target {
            ((h * target).round(), h)
        } else {
            (w, (w / target).round())
        };
        let (cw, ch) = (cw.max(1.0) as u32, ch.max(1.0) as u32);
        img = img.crop_imm((frame.width - cw) / 2, (frame.height - ch) / 2, cw, ch);
    }
    let out = if img.width() == tw && img.height() == th {
        img.to_rgb8()
    } else {
        img.resize_exact(tw, th, image::imageops::FilterType::Triangle)
            .to_rgb8()
    };
    Some(out.into_raw())
}

/// The frames one window spans: `input + predict` frames `frame_skip` apart.
pub(super) fn window_span(cfg: &VideoData) -> i64 {
    let n = i64::from(cfg.input_frames + cfg.predict_frames);
    (n - 1) * i64::from(cfg.frame_skip.max(1)) + 1
}

/// The frames of a clip that training windows may use: all of them when validation has its
/// own source, else those before the held-out validation fraction.
pub(super) fn train_frames(count: i64, cfg: &VideoData) -> i64 {
    if cfg.validation_path.trim().is_empty() {
        // A gap of one window's span between the training frames and the validation tail,
        // so no validation window continues the footage a training window ends on.
        validation_start(count, cfg) - window_span(cfg)
    } else {
        count
    }
}

/// Where a clip of `count` frames' validation tail starts (its end, with a separate
/// validation set).
pub(super) fn validation_start(count: i64, cfg: &VideoData) -> i64 {
    if cfg.validation_path.trim().is_empty() {
        count - (count as f64 * cfg.validation_fraction).round() as i64
    } else {
        count
    }
}

/// Why `frames` frames hold no training window.
pub(super) fn too_short(frames: usize, cfg: &VideoData) -> String {
    format!(
        "{frames} frame(s) are too few: one window needs {} ({} input + {} predicted frames, frame_skip {}){}",
        window_span(cfg),
        cfg.input_frames,
        cfg.predict_frames,
        cfg.frame_skip.max(1),
        if cfg.validation_path.trim().is_empty() {
            ", after the validation fraction and a gap of one window before it are held out"
        } else {
            ""
        }
    )
}

/// The video files of a path: the file itself, or a folder's regular files, sorted.
pub(super) fn video_files(path: &Path) -> Result<Vec<PathBuf>, DataError> {
    let file_err = |message: String| DataError::File {
        path: path.display().to_string(),
        message,
    };
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    if !path.is_dir() {
        return Err(file_err("no such file or folder".into()));
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| file_err(e.to_string()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(file_err("the folder has no files".into()));
    }
    Ok(files)
}

enum Msg {
    Start { name: String, validation_only: bool },
    Frame(Vec<u8>),
    Skipped(String, String),
}

/// `(file, reason)` of files a folder held that are not video.
type Skipped = Vec<(String, String)>;

/// Decodes `jobs` on the `workbench-decode` thread; frames come back through a bounded
/// channel (at most 16 frames in flight).
fn decode(
    jobs: Vec<(PathBuf, bool, bool)>,
    cfg: &VideoData,
) -> Result<(Vec<Segment>, Skipped), DataError> {
    let (tx, rx) = bounded::<Result<Msg, DataError>>(16);
    let cfg_t = cfg.clone();
    let handle = std::thread::Builder::new()
        .name("workbench-decode".into())
        .spawn(move || {
            for (path, validation_only, in_folder) in jobs {
                let name = path.display().to_string();
                let mut reader = match VideoReader::open(&path) {
                    Ok(r) => r,
                    Err(e @ (VideoError::Open { .. } | VideoError::NoVideo { .. }))
                        if in_folder =>
                    {
                        let _ = tx.send(Ok(Msg::Skipped(name, e.to_string())));
                        continue;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(DataError::Other(e.to_string())));
                        return;
                    }
                };
                if tx
                    .send(Ok(Msg::Start {
                        name: name.clone(),
                        validation_only,
                    }))
                    .is_err()
                {
                    return;
                }
                let mut index = 0usize;
                loop {
                    if cfg_t.max_frames > 0 && index >= cfg_t.max_frames as usize {
                        break;
                    }
                    match reader.next_frame() {
                        Ok(Some(frame)) => {
                            let msg = resize(frame, &cfg_t).map(Msg::Frame).ok_or_else(|| {
                                DataError::File {
                                    path: name.clone(),
                                    message: format!("frame {index}: bad frame size"),
                                }
                            });
                            if tx.send(msg).is_err() {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            let _ = tx.send(Err(DataError::Other(e.to_string())));
                            return;
                        }
                    }
                    index += 1;
                }
            }
        })
        .map_err(|e| DataError::Other(format!("cannot start the decoding thread: {e}")))?;
    let mut segments: Vec<Segment> = Vec::new();
    let mut skipped = Vec::new();
    let frame_bytes = (cfg.image_w * cfg.image_h * 3) as usize;
    for msg in rx {
        match msg? {
            Msg::Start {
                name,
                validation_only,
            } => segments.push(Segment {
                name,
                frames: Vec::new(),
                count: 0,
                validation_only,
            }),
            Msg::Frame(f) => {
                if let Some(s) = segments.last_mut() {
                    debug_assert_eq!(f.len(), frame_bytes);
                    s.frames.extend_from_slice(&f);
                    s.count += 1;
                }
            }
            Msg::Skipped(name, why) => skipped.push((name, why)),
        }
    }
    handle
        .join()
        .map_err(|_| DataError::Other("the decoding thread panicked".into()))?;
    Ok((segments, skipped))
}

impl VideoSet {
    /// Loads the frames the preset describes and lays out the windows.
    pub fn load(cfg: &VideoData, seed: u64) -> Result<Self, DataError> {
        let (w, h) = (cfg.image_w, cfg.image_h);
        let mut skipped = Vec::new();
        let mut segments = match cfg.source {
            VideoSource::SyntheticShapes => vec![Segment {
                name: "synthetic shapes".into(),
                frames: crate::core::synthetic::moving_shapes(seed, cfg.synthetic_frames, w, h),
                count: cfg.synthetic_frames as usize,
                validation_only: false,
            }],
            VideoSource::File => {
                let root = Path::new(&cfg.path);
                let files = video_files(root)?;
                let in_folder = root.is_dir();
                let (segs, skip) = decode(
                    files.into_iter().map(|p| (p, false, in_folder)).collect(),
                    cfg,
                )?;
                skipped.extend(skip);
                if segs.is_empty() {
                    return Err(DataError::File {
                        path: cfg.path.clone(),
                        message: "no file FFmpeg can decode as video".into(),
                    });
                }
                segs
            }
        };
        if !cfg.validation_path.trim().is_empty() {
            let root = Path::new(&cfg.validation_path);
            let in_folder = root.is_dir();
            let files = video_files(root)?;
            let (segs, skip) = decode(
                files.into_iter().map(|p| (p, true, in_folder)).collect(),
                cfg,
            )?;
            skipped.extend(skip);
            segments.extend(segs);
        }
        let skip = i64::from(cfg.frame_skip.max(1));
        let n = i64::from(cfg.input_frames + cfg.predict_frames);
        let span = window_span(cfg);
        let (mut train, mut val) = (Vec::new(), Vec::new());
        let mut offset = 0i64;
        let mut shortest: Option<(String, usize)> = None;
        for s in &segments {
            let count = s.count as i64;
            if count < span {
                shortest = Some((s.name.clone(), s.count));
            }
            let (train_end, val_start) = if s.validation_only {
                (0, 0)
            } else {
                (train_frames(count, cfg), validation_start(count, cfg))
            };
            for start in 0..=(train_end - span).max(-1) {
                train.push(offset + start);
            }
            for start in val_start..=(count - span).max(val_start - 1) {
                val.push(offset + start);
            }
            offset += count;
        }
        if train.is_empty() {
            let (name, frames) = shortest.unwrap_or_else(|| {
                (
                    segments.first().map(|s| s.name.clone()).unwrap_or_default(),
                    segments.first().map_or(0, |s| s.count),
                )
            });
            return Err(DataError::File {
                path: name,
                message: too_short(frames, cfg),
            });
        }
        let total: usize = segments.iter().map(|s| s.count).sum();
        let mut bytes = Vec::with_capacity(total * (w * h * 3) as usize);
        for s in &segments {
            bytes.extend_from_slice(&s.frames);
        }
        let frames = Tensor::from_slice(&bytes)
            .view([total as i64, i64::from(h), i64::from(w), 3])
            .permute([0, 3, 1, 2])
            .contiguous();
        let description = format!(
            "{} ({} clip(s), {total} frames at {w}x{h}; {} training and {} validation windows of {n} frames)",
            match cfg.source {
                VideoSource::SyntheticShapes => "synthetic moving shapes".to_string(),
                VideoSource::File => cfg.path.clone(),
            },
            segments.len(),
            train.len(),
            val.len()
        );
        Ok(Self {
            frames,
            train,
            val,
            skip,
            len: n,
            description,
            skipped,
        })
    }

    /// Windows starting at `starts` as `[B, N, 3, H, W]` floats in [-1, 1] on `device`.
    pub fn batch(&self, starts: &[i64], device: Device) -> Tensor {
        let idx: Vec<i64> = starts
            .iter()
            .flat_map(|&s| (0..self.len).map(move |i| s + i * self.skip))
            .collect();
        let (_, c, h, w) = self.frames.size4().unwrap_or((0, 3, 0, 0));
        self.frames
            .index_select(0, &Tensor::from_slice(&idx))
            .view([starts.len() as i64, self.len, c, h, w])
            .to_device(device)
            .to_kind(Kind::Float)
            / 127.5
            - 1.0
    }
}

/// One clip as the probe saw it: its name and its frame count, when the container says.
struct Probed {
    name: String,
    frames: Option<u64>,
}

/// Opens every video of `path` and decodes its first frame. A folder's files that are not
/// video are passed over, as the loader does; a named file must be one.
fn probe(field: &str, path: &str, max_frames: u32) -> Result<Vec<Probed>, DataError> {
    let root = Path::new(path);
    let in_folder = root.is_dir();
    let files = video_files(root).map_err(|e| e.in_field(field))?;
    let mut out = Vec::new();
    let mut first_bad = None;
    for f in files {
        let opened = VideoReader::open(&f).and_then(|mut r| {
            let first = r.next_frame()?;
            Ok((r.frames_hint(), first.is_some()))
        });
        match opened {
            Ok((hint, has_frame)) => {
                let frames = if has_frame { hint } else { Some(0) };
                let cap = (max_frames > 0).then_some(u64::from(max_frames));
                out.push(Probed {
                    name: f.display().to_string(),
                    frames: frames.map(|n| cap.map_or(n, |c| n.min(c))),
                });
            }
            Err(e) if in_folder => {
                first_bad.get_or_insert(e.to_string());
            }
            Err(e) => return Err(DataError::from(e).in_field(field)),
        }
    }
    if out.is_empty() {
        return Err(DataError::field(
            field,
            format!(
                "`{path}` holds no file FFmpeg can decode as video{}",
                first_bad
                    .map(|b| format!(" (first: {b})"))
                    .unwrap_or_default()
            ),
        ));
    }
    Ok(out)
}

/// Checks a preset's video before a run folder exists: every clip opens and decodes its first
/// frame, and one holds a training window when the clips say their lengths.
pub(super) fn preflight(cfg: &VideoData) -> Result<(), DataError> {
    let separate_val = !cfg.validation_path.trim().is_empty();
    if separate_val {
        probe("data.validation_path", &cfg.validation_path, cfg.max_frames)?;
    }
    if cfg.source != VideoSource::File {
        return Ok(());
    }
    let clips = probe("data.path", &cfg.path, cfg.max_frames)?;
    // Too short only when every clip says its length and none holds a training window.
    let span = window_span(cfg);
    let lengths: Option<Vec<(&str, u64)>> = clips
        .iter()
        .map(|c| c.frames.map(|n| (c.name.as_str(), n)))
        .collect();
    if let Some(lengths) = lengths {
        let any_window = lengths
            .iter()
            .any(|(_, n)| train_frames(*n as i64, cfg) >= span);
        if !any_window {
            let (name, n) = lengths
                .iter()
                .max_by_key(|(_, n)| *n)
                .copied()
                .unwrap_or(("?", 0));
            return Err(DataError::field(
                "data.path",
                format!("{name}: {}", too_short(n as usize, cfg)),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
/// An animated GIF of `frames` frames, `w` x `h`, written without compression (a clear
/// code every 250 codes keeps the LZW codes 9 bits wide): pixel `(x, y)` of frame `k` is
/// palette entry `(k * 40 + x * 4 + y) % 256`, whose colour is `(i, 255 - i, 0)`.
pub(crate) fn write_gif(path: &Path, w: u16, h: u16, frames: u16) {
    let mut out = b"GIF89a".to_vec();
    out.extend(w.to_le_bytes());
    out.extend(h.to_le_bytes());
    out.extend([0xF7, 0, 0]);
    for i in 0..=255u8 {
        out.extend([i, 255 - i, 0]);
    }
    for k in 0..frames {
        out.extend([0x21, 0xF9, 4, 0x04, 10, 0, 0, 0]);
        out.push(0x2C);
        for v in [0, 0, w, h] {
            out.extend(v.to_le_bytes());
        }
        out.extend([0, 8]);
        let mut codes = vec![256u16];
        for y in 0..h {
            for x in 0..w {
                if codes.len() % 250 == 0 {
                    codes.push(256);
                }
                codes.push((k * 40 + x * 4 + y) % 256);
            }
        }
        codes.push(257);
        let (mut bits, mut acc, mut n) = (Vec::new(), 0u32, 0);
        for c in codes {
            acc |= u32::from(c) << n;
            n += 9;
            while n >= 8 {
                bits.push((acc & 0xFF) as u8);
                acc >>= 8;
                n -= 8;
            }
        }
        if n > 0 {
            bits.push(acc as u8);
        }
        for block in bits.chunks(255) {
            out.push(block.len() as u8);
            out.extend(block);
        }
        out.push(0);
    }
    out.push(0x3B);
    std::fs::write(path, out).expect("write the GIF");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> String {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/testsrc_64x48_10f.avi")
            .display()
            .to_string()
    }

    /// One video file at `side` x `side`.
    fn one_file(path: String, side: u32, validation_fraction: f64) -> VideoData {
        VideoData {
            source: VideoSource::File,
            path,
            image_w: side,
            image_h: side,
            validation_fraction,
            ..VideoData::default()
        }
    }

    #[test]
    fn an_animated_gif_is_a_clip() {
        let dir = tempfile::tempdir().unwrap();
        let gif = dir.path().join("screencast.gif");
        write_gif(&gif, 16, 16, 8);
        let cfg = one_file(gif.display().to_string(), 16, 0.25);
        let set = VideoSet::load(&cfg, 1).unwrap();
        assert_eq!(set.frames.size(), vec![8, 3, 16, 16]);
        // The colours of the palette entries, frame by frame: red is the entry's index.
        for (k, x, y) in [(0i64, 0i64, 0i64), (1, 3, 5), (7, 15, 15)] {
            let want = (k * 40 + x * 4 + y) % 256;
            let red = set.frames.int64_value(&[k, 0, y, x]);
            let green = set.frames.int64_value(&[k, 1, y, x]);
            assert!(
                (red - want).abs() <= 3,
                "frame {k} ({x},{y}): {red} vs {want}"
            );
            assert!((green - (255 - want)).abs() <= 3, "{green}");
        }
    }

    #[test]
    fn windows_split_without_sharing_a_frame() {
        let cfg = VideoData {
            synthetic_frames: 100,
            image_w: 32,
            image_h: 16,
            frame_skip: 2,
            ..VideoData::default()
        };
        let set = VideoSet::load(&cfg, 1).unwrap();
        let span = 5; // 3 frames, 2 apart
        let last_train = set.train.iter().max().unwrap() + span - 1;
        let first_val = *set.val.iter().min().unwrap();
        // A gap of one window's span between the last training frame and the first
        // validation frame: no validation window continues a training window's footage.
        assert_eq!(
            first_val - last_train - 1,
            span,
            "{last_train} vs {first_val}"
        );
        assert_eq!(set.train.len(), 90 - 2 * span as usize + 1);
        assert_eq!(set.val.len(), 10 - span as usize + 1);
        let b = set.batch(&[0, 3], Device::Cpu);
        assert_eq!(b.size(), vec![2, 3, 3, 16, 32]);
        assert!(b.max().double_value(&[]) <= 1.0 && b.min().double_value(&[]) >= -1.0);
    }

    #[test]
    fn a_real_video_decodes_resized_and_errors_name_the_file() {
        let mut cfg = one_file(fixture(), 32, 0.3);
        let set = VideoSet::load(&cfg, 1).unwrap();
        assert_eq!(set.frames.size(), vec![10, 3, 32, 32]);
        // 7 frames before the validation tail of 3, less a gap of one window (3 frames).
        assert_eq!(set.train.len(), 2);
        assert_eq!(set.val.len(), 1);
        cfg.resize = Resize::CenterCrop;
        assert!(VideoSet::load(&cfg, 1).is_ok());
        // Too short for one window.
        cfg.input_frames = 12;
        let e = VideoSet::load(&cfg, 1).unwrap_err().to_string();
        assert!(
            e.contains("testsrc_64x48_10f.avi") && e.contains("too few"),
            "{e}"
        );
        // Missing.
        cfg.path = "/no/such/clip.mp4".into();
        let e = VideoSet::load(&cfg, 1).unwrap_err().to_string();
        assert!(e.starts_with("/no/such/clip.mp4"), "{e}");
    }

    #[test]
    fn a_truncated_video_fails_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = std::fs::read(fixture()).unwrap();
        let cut = dir.path().join("cut.avi");
        std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
        let cfg = VideoData {
            source: VideoSource::File,
            path: cut.display().to_string(),
            validation_fraction: 0.0,
            ..VideoData::default()
        };
        match VideoSet::load(&cfg, 1) {
            // FFmpeg stops at the cut: fewer frames than a window, or a decode error at a frame.
            Err(e) => assert!(e.to_string().contains("cut.avi"), "{e}"),
            Ok(set) => assert!(set.frames.size()[0] < 10),
        }
    }
}

//! Checks that a preset's data can be read before a run directory is written. Missing, empty,
//! unreadable and too-short data are the user's to fix (exit code 2): found after the run
//! folder exists, they left a failed run behind. The checks read headers and one frame, not
//! the data itself: the loaders still name any file that fails later.

use std::path::Path;

use super::folder::image_files;
use super::video::{too_short, train_frames, video_files, window_span};
use crate::core::preset::data::{
    DataNeed, ImageData, ImageSource, OnBadImage, VideoData, VideoSource,
};
use crate::core::preset::AnyPreset;
use crate::core::video::VideoReader;

/// Every data problem of `preset` that can be found without training, as one line naming the
/// field and the file, for `world` data-parallel ranks (each trains the preset's batch, so a
/// step takes `world` times it from the training set).
pub fn preflight(preset: &AnyPreset, world: usize) -> Result<(), String> {
    // A phase may ask for a bigger batch than the preset's own: the largest must fit.
    let largest_batch = (0..preset.phases().len())
        .filter_map(|i| {
            preset
                .for_phase(i)
                .front()
                .data_needs()
                .iter()
                .find_map(|n| match n {
                    DataNeed::Images { batch_size, .. }
                    | DataNeed::Latents { batch_size, .. }
                    | DataNeed::Volumes { batch_size, .. } => Some(*batch_size),
                    _ => None,
                })
        })
        .max()
        .unwrap_or(0);
    let batch = |b: u32| Batch {
        per_rank: b.max(largest_batch) as usize,
        world: world.max(1),
    };
    for need in preset.front().data_needs() {
        match need {
            DataNeed::File { field, path } => {
                if !Path::new(path).is_file() {
                    return Err(format!("{field}: `{path}` does not exist"));
                }
            }
            DataNeed::Images { cfg, batch_size } => images(cfg, batch(batch_size))?,
            DataNeed::Video(cfg) => video(cfg)?,
            DataNeed::Volumes { cfg, batch_size } => {
                let train = super::volumes::preflight(cfg, preset.seed())?;
                batch(batch_size).fits(train, "training volume(s)", "data.path", &cfg.path)?;
            }
            DataNeed::Latents { cfg, batch_size } => {
                if let Some(train) = super::latents::preflight(cfg, preset.seed())? {
                    batch(batch_size).fits(train, "training window(s)", "data.path", &cfg.path)?;
                }
            }
        }
    }
    Ok(())
}

/// The items one training step takes: the preset's batch on each data-parallel rank.
#[derive(Debug, Clone, Copy)]
pub struct Batch {
    pub per_rank: usize,
    pub world: usize,
}

impl Batch {
    pub fn global(self) -> usize {
        self.per_rank * self.world
    }

    /// Refuses a training set of `have` items (`what`, from `field` = `path`) smaller than one
    /// step's batch, naming both counts.
    pub fn fits(self, have: usize, what: &str, field: &str, path: &str) -> Result<(), String> {
        if have >= self.global() {
            return Ok(());
        }
        let need = if self.world > 1 {
            format!(
                "train.batch_size {} on each of {} ranks, {} a step",
                self.per_rank,
                self.world,
                self.global()
            )
        } else {
            format!("train.batch_size {}", self.per_rank)
        };
        Err(format!(
            "{field}: `{path}` gives {have} {what}, fewer than one batch ({need})"
        ))
    }
}

fn images(cfg: &ImageData, batch: Batch) -> Result<(), String> {
    if cfg.source != ImageSource::Folder {
        return Ok(());
    }
    let dir = Path::new(&cfg.folder);
    if !dir.is_dir() {
        return Err(format!("data.folder: `{}` is not a folder", cfg.folder));
    }
    let files = image_files(dir).map_err(|e| format!("data.folder: {e}"))?;
    if files.is_empty() {
        return Err(format!(
            "data.folder: `{}` holds no PNG or JPEG images",
            cfg.folder
        ));
    }
    let mut readable = 0usize;
    let mut first_bad = None;
    for f in &files {
        let dims = image::ImageReader::open(f)
            .and_then(image::ImageReader::with_guessed_format)
            .map_err(|e| e.to_string())
            .and_then(|r| r.into_dimensions().map_err(|e| e.to_string()));
        let why = match dims {
            Ok((w, h)) if w > 0 && h > 0 => {
                readable += 1;
                continue;
            }
            Ok(_) => "an empty image".to_string(),
            Err(e) => e,
        };
        if cfg.on_bad_image == OnBadImage::Fail {
            return Err(format!(
                "data.folder: {}: cannot read the image: {why} (data.on_bad_image is fail)",
                f.display()
            ));
        }
        first_bad.get_or_insert_with(|| format!("{}: {why}", f.display()));
    }
    if readable == 0 {
        return Err(format!(
            "data.folder: none of the {} image file(s) in `{}` can be read (first: {})",
            files.len(),
            cfg.folder,
            first_bad.unwrap_or_default()
        ));
    }
    let hold = (cfg.holdout as usize).min(readable / 2);
    let train = readable - hold;
    batch.fits(
        train,
        &format!("images for training ({readable} readable, {hold} held out)"),
        "data.folder",
        &cfg.folder,
    )
}

/// One clip as the probe saw it: its name and its frame count, when the container says.
struct Probed {
    name: String,
    frames: Option<u64>,
}

/// Opens every video of `path` and decodes its first frame. A folder's files that are not
/// video are passed over, as the loader does; a named file must be one.
fn probe(field: &str, path: &str, max_frames: u32) -> Result<Vec<Probed>, String> {
    let root = Path::new(path);
    let in_folder = root.is_dir();
    let files = video_files(root).map_err(|e| format!("{field}: {e}"))?;
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
            Err(e) => return Err(format!("{field}: {e}")),
        }
    }
    if out.is_empty() {
        return Err(format!(
            "{field}: `{path}` holds no file FFmpeg can decode as video{}",
            first_bad
                .map(|b| format!(" (first: {b})"))
                .unwrap_or_default()
        ));
    }
    Ok(out)
}

pub(super) fn video(cfg: &VideoData) -> Result<(), String> {
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
            return Err(format!("data.path: {name}: {}", too_short(n as usize, cfg)));
        }
    }
    Ok(())
}

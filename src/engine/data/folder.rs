use std::path::{Path, PathBuf};

use image::imageops::FilterType;

use super::{Batch, DataError};
use crate::core::preset::data::{ImageData, ImageSource, OnBadImage};

/// Decoded images of a folder, RGB8, `size` x `size`.
#[derive(Debug, Default)]
pub struct FolderImages {
    pub rgb: Vec<u8>,
    pub count: usize,
    pub skipped: Vec<(String, String)>,
}

impl FolderImages {
    #[must_use]
    pub fn skipped_count(&self) -> usize {
        self.skipped.len()
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// The PNG and JPEG files under `dir`, recursively, in path order.
pub(super) fn image_files(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut files = Vec::new();
    collect(dir, &mut files).map_err(|e| DataError::File {
        path: dir.display().to_string(),
        message: e.to_string(),
    })?;
    files.sort();
    Ok(files)
}

/// Loads every PNG and JPEG under `dir` (recursively, in path order): alpha composited over
/// white, the shorter side resized to `size`, then centre-cropped (seed 004's pipeline).
pub fn load_folder(dir: &Path, size: u32, on_bad: OnBadImage) -> Result<FolderImages, DataError> {
    let shown = dir.display().to_string();
    if !dir.is_dir() {
        return Err(DataError::File {
            path: shown,
            message: "not a folder (data.folder)".into(),
        });
    }
    let files = image_files(dir)?;
    let mut out = FolderImages::default();
    for file in files {
        match load_one(&file, size) {
            Ok(rgb) => {
                out.rgb.extend(rgb);
                out.count += 1;
            }
            Err(e) => match on_bad {
                OnBadImage::Fail => return Err(e),
                OnBadImage::Skip => {
                    let message = match e {
                        DataError::File { message, .. } => message,
                        other => other.to_string(),
                    };
                    out.skipped.push((file.display().to_string(), message));
                }
            },
        }
    }
    if out.count == 0 {
        return Err(DataError::File {
            path: shown,
            message: "no readable PNG or JPEG images".into(),
        });
    }
    Ok(out)
}

fn load_one(path: &Path, size: u32) -> Result<Vec<u8>, DataError> {
    let img = image::open(path)
        .map_err(|e| DataError::file(path, format!("cannot decode image: {e}")))?
        .to_rgba8();
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 {
        return Err(DataError::file(path, "empty image"));
    }
    let scale = f64::from(size) / f64::from(w.min(h));
    let (nw, nh) = (
        ((f64::from(w) * scale).round() as u32).max(size),
        ((f64::from(h) * scale).round() as u32).max(size),
    );
    let resized = image::imageops::resize(&img, nw, nh, FilterType::Triangle);
    let (x0, y0) = ((nw - size) / 2, (nh - size) / 2);
    let mut rgb = Vec::with_capacity((size * size * 3) as usize);
    for y in 0..size {
        for x in 0..size {
            let p = resized.get_pixel(x0 + x, y0 + y).0;
            let a = u32::from(p[3]);
            for c in &p[..3] {
                // Composite over white.
                rgb.push(((u32::from(*c) * a + 255 * (255 - a) + 127) / 255) as u8);
            }
        }
    }
    Ok(rgb)
}

/// Checks an image folder before a run folder exists: it holds images, enough of them read
/// (headers only), and a batch fits the training share.
pub(super) fn preflight(cfg: &ImageData, batch: Batch) -> Result<(), DataError> {
    if cfg.source != ImageSource::Folder {
        return Ok(());
    }
    let dir = Path::new(&cfg.folder);
    if !dir.is_dir() {
        return Err(DataError::field(
            "data.folder",
            format!("`{}` is not a folder", cfg.folder),
        ));
    }
    let files = image_files(dir).map_err(|e| e.in_field("data.folder"))?;
    if files.is_empty() {
        return Err(DataError::field(
            "data.folder",
            format!("`{}` holds no PNG or JPEG images", cfg.folder),
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
            return Err(DataError::field(
                "data.folder",
                format!(
                    "{}: cannot read the image: {why} (data.on_bad_image is fail)",
                    f.display()
                ),
            ));
        }
        first_bad.get_or_insert_with(|| format!("{}: {why}", f.display()));
    }
    if readable == 0 {
        return Err(DataError::field(
            "data.folder",
            format!(
                "none of the {} image file(s) in `{}` can be read (first: {})",
                files.len(),
                cfg.folder,
                first_bad.unwrap_or_default()
            ),
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

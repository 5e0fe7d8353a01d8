//! 3-D volumes as the VQ-GAN family of seed 003 reads them (spec section 2.2): NIfTI-1 files
//! (read by [`crate::core::nifti`]), video clips or synthetic shapes, rescaled to [-1, 1] per
//! volume, cropped or padded (with -1) to a size, flipped on an axis; cut into patches whose
//! last position is pushed to the end of each axis, and blended back into a whole volume.

use std::path::{Path, PathBuf};

use crate::core::preset::data::{VolumeData, VolumeSource};

use super::DataError;

pub use crate::core::nifti::{
    read_channels as read_nifti_channels, read_nifti, write_nifti, Volume,
};

/// Min-max rescaling to [-1, 1] (a constant volume becomes -1).
pub fn rescale(v: &mut Volume) {
    let (lo, hi) = v
        .data
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    let span = hi - lo;
    for x in &mut v.data {
        *x = if span > 0.0 {
            (*x - lo) / span * 2.0 - 1.0
        } else {
            -1.0
        };
    }
}

/// `f` applied to each channel of `v`.
fn each_channel(v: &Volume, f: impl Fn(&Volume) -> Volume) -> Volume {
    if v.channels == 1 {
        f(v)
    } else {
        Volume::join(v.planes().iter().map(f).collect())
    }
}

/// Centre crop or pad (with -1) to `dims`.
#[must_use]
pub fn crop_or_pad(v: &Volume, dims: [usize; 3]) -> Volume {
    each_channel(v, |v| crop_or_pad_plane(v, dims))
}

fn crop_or_pad_plane(v: &Volume, dims: [usize; 3]) -> Volume {
    // Per axis: the source start (crop) and the target start (pad).
    let offsets: Vec<(usize, usize)> = (0..3)
        .map(|a| {
            let (have, want) = (v.dims[a], dims[a]);
            if have >= want {
                ((have - want) / 2, 0)
            } else {
                (0, (want - have) / 2)
            }
        })
        .collect();
    let mut data = vec![-1.0; dims.iter().product()];
    for z in 0..dims[0] {
        let Some(sz) = (z + offsets[0].0).checked_sub(offsets[0].1) else {
            continue;
        };
        if sz >= v.dims[0] {
            continue;
        }
        for y in 0..dims[1] {
            let Some(sy) = (y + offsets[1].0).checked_sub(offsets[1].1) else {
                continue;
            };
            if sy >= v.dims[1] {
                continue;
            }
            for x in 0..dims[2] {
                let Some(sx) = (x + offsets[2].0).checked_sub(offsets[2].1) else {
                    continue;
                };
                if sx < v.dims[2] {
                    data[(z * dims[1] + y) * dims[2] + x] = v.at(sz, sy, sx);
                }
            }
        }
    }
    Volume::scalar(dims, data)
}

/// Mirrors a volume along `axis` (0: D, 1: H, 2: W).
#[must_use]
pub fn flip(v: &Volume, axis: usize) -> Volume {
    each_channel(v, |v| flip_plane(v, axis))
}

fn flip_plane(v: &Volume, axis: usize) -> Volume {
    let [d, h, w] = v.dims;
    let mut data = Vec::with_capacity(v.len());
    for z in 0..d {
        for y in 0..h {
            for x in 0..w {
                let (z, y, x) = match axis {
                    0 => (d - 1 - z, y, x),
                    1 => (z, h - 1 - y, x),
                    _ => (z, y, w - 1 - x),
                };
                data.push(v.at(z, y, x));
            }
        }
    }
    Volume::scalar(v.dims, data)
}

/// Patch start positions along an axis of `size`: every `stride`, with the last pushed to
/// `size - patch` so the axis is covered (spec 2.2).
#[must_use]
pub fn patch_starts(size: usize, patch: usize, stride: usize) -> Vec<usize> {
    if patch >= size {
        return vec![0];
    }
    let mut starts: Vec<usize> = (0..=size - patch).step_by(stride.max(1)).collect();
    if starts.last().is_some_and(|&s| s + patch < size) {
        starts.push(size - patch);
    }
    starts
}

/// Every patch position `[z, y, x]` of a volume.
#[must_use]
pub fn patch_grid(dims: [usize; 3], patch: [usize; 3], stride: [usize; 3]) -> Vec<[usize; 3]> {
    let axes: Vec<Vec<usize>> = (0..3)
        .map(|a| patch_starts(dims[a], patch[a], stride[a]))
        .collect();
    let mut out = Vec::new();
    for &z in &axes[0] {
        for &y in &axes[1] {
            for &x in &axes[2] {
                out.push([z, y, x]);
            }
        }
    }
    out
}

/// Cuts the patch at `at`.
#[must_use]
pub fn extract(v: &Volume, at: [usize; 3], patch: [usize; 3]) -> Volume {
    each_channel(v, |v| extract_plane(v, at, patch))
}

fn extract_plane(v: &Volume, at: [usize; 3], patch: [usize; 3]) -> Volume {
    let mut data = Vec::with_capacity(patch.iter().product());
    for z in 0..patch[0] {
        for y in 0..patch[1] {
            for x in 0..patch[2] {
                data.push(v.at(at[0] + z, at[1] + y, at[2] + x));
            }
        }
    }
    Volume::scalar(patch, data)
}

/// Blends patches back into a volume of `dims`: each voxel is the mean of the patches that
/// cover it.
#[must_use]
pub fn blend(dims: [usize; 3], patches: &[([usize; 3], Volume)]) -> Volume {
    let channels = patches.first().map_or(1, |(_, p)| p.channels);
    if channels == 1 {
        return blend_plane(dims, patches);
    }
    let planes: Vec<Vec<([usize; 3], Volume)>> = patches
        .iter()
        .map(|(at, p)| p.planes().into_iter().map(|q| (*at, q)).collect())
        .collect();
    Volume::join(
        (0..channels)
            .map(|c| {
                let one: Vec<([usize; 3], Volume)> =
                    planes.iter().map(|ps| ps[c].clone()).collect();
                blend_plane(dims, &one)
            })
            .collect(),
    )
}

fn blend_plane(dims: [usize; 3], patches: &[([usize; 3], Volume)]) -> Volume {
    let n: usize = dims.iter().product();
    let mut sum = vec![0.0f64; n];
    let mut count = vec![0u32; n];
    for (at, p) in patches {
        for z in 0..p.dims[0] {
            for y in 0..p.dims[1] {
                for x in 0..p.dims[2] {
                    let i = ((at[0] + z) * dims[1] + at[1] + y) * dims[2] + at[2] + x;
                    sum[i] += f64::from(p.at(z, y, x));
                    count[i] += 1;
                }
            }
        }
    }
    let data = sum
        .iter()
        .zip(&count)
        .map(|(s, &c)| {
            if c == 0 {
                0.0
            } else {
                (s / f64::from(c)) as f32
            }
        })
        .collect();
    Volume::scalar(dims, data)
}

/// The `.nii` and `.nii.gz` files of a folder, sorted (a file is itself).
pub fn nifti_files(path: &Path) -> Result<Vec<PathBuf>, DataError> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = std::fs::read_dir(path).map_err(|e| DataError::file(path, e))?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().to_lowercase());
            name.is_some_and(|n| n.ends_with(".nii") || n.ends_with(".nii.gz"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The seed's 80/20 split by file, after a seeded shuffle: `(train, validation)`; a single
/// file trains and validates.
#[must_use]
pub fn split_files(mut files: Vec<PathBuf>, seed: u64) -> (Vec<PathBuf>, Vec<PathBuf>) {
    if files.len() < 2 {
        return (files.clone(), files);
    }
    crate::core::rng::SplitMix64::new(seed).shuffle(&mut files);
    let n_train = ((files.len() as f64 * 0.8).floor() as usize).clamp(1, files.len() - 1);
    let val = files.split_off(n_train);
    (files, val)
}

/// Spec 4.2's synthetic volume `index`: background -1, one to three random boxes or ellipsoids
/// (semi-axes 2 to 5 voxels) of intensity `U[-0.5, 1]`, deterministic by seed.
#[must_use]
pub fn synthetic_volume(size: usize, seed: u64, index: u64) -> Volume {
    use crate::core::rng::{derive_seed, SplitMix64, Stream};
    let mut rng = SplitMix64::new(derive_seed(seed, Stream::Synthetic, index));
    let mut data = vec![-1.0f32; size * size * size];
    let shapes = 1 + rng.below(3);
    let s = size as f64;
    for _ in 0..shapes {
        let ellipsoid = rng.below(2) == 0;
        let centre = [0; 3].map(|_| rng.range_f64(0.0, s));
        let axes = [0; 3].map(|_| rng.range_f64(2.0, 5.0));
        let value = rng.range_f64(-0.5, 1.0) as f32;
        for z in 0..size {
            for y in 0..size {
                for x in 0..size {
                    let at = [z, y, x];
                    let d: [f64; 3] = [0, 1, 2].map(|i| (at[i] as f64 + 0.5 - centre[i]) / axes[i]);
                    let inside = if ellipsoid {
                        d.iter().map(|v| v * v).sum::<f64>() <= 1.0
                    } else {
                        d.iter().map(|v| v.abs()).fold(0.0, f64::max) <= 1.0
                    };
                    if inside {
                        data[(z * size + y) * size + x] = value;
                    }
                }
            }
        }
    }
    Volume::scalar([size; 3], data)
}

/// Training and validation volumes at the preset's size, in memory, in [-1, 1].
#[derive(Debug)]
pub struct VolumeSet {
    pub train: Vec<Volume>,
    pub validation: Vec<Volume>,
    pub description: String,
    /// What a run should be told about its data (one line each): a crop that discards most
    /// of each volume, a single file that is both training and validation.
    pub notes: Vec<String>,
}

fn prepared(mut v: Volume, dims: [usize; 3]) -> Volume {
    rescale(&mut v);
    crop_or_pad(&v, dims)
}

impl VolumeSet {
    /// Loads the volumes a preset names; a file that cannot be read is named.
    pub fn load(cfg: &VolumeData, seed: u64) -> Result<Self, DataError> {
        let dims = [cfg.depth as usize, cfg.height as usize, cfg.width as usize];
        match cfg.source {
            VolumeSource::SyntheticVolumes => {
                let size = dims.iter().copied().max().unwrap_or(16);
                let make = |i: u64| crop_or_pad(&synthetic_volume(size, seed, i), dims);
                let n = u64::from(cfg.synthetic_count);
                let train = (0..n).map(make).collect();
                let validation = (n..n + u64::from(cfg.synthetic_holdout))
                    .map(make)
                    .collect();
                Ok(Self {
                    notes: Vec::new(),
                    train,
                    validation,
                    description: format!(
                        "{} + {} synthetic volumes of {}x{}x{}",
                        cfg.synthetic_count, cfg.synthetic_holdout, dims[0], dims[1], dims[2]
                    ),
                })
            }
            VolumeSource::Video | VolumeSource::SyntheticVideo => video_clips(cfg, seed),
            VolumeSource::Nifti => {
                let files = nifti_files(Path::new(&cfg.path))?;
                if files.is_empty() {
                    return Err(DataError::file(
                        Path::new(&cfg.path),
                        "holds no .nii or .nii.gz file",
                    ));
                }
                let n = files.len();
                let (train, val) = split_files(files, seed);
                let mut notes = Vec::new();
                if n == 1 {
                    notes.push(format!(
                        "data.path holds one NIfTI file ({}): it is both the training and the validation volume, so validation measures the training volume",
                        train.first().map_or(String::new(), |f| f.display().to_string())
                    ));
                }
                let mut cropped: Option<String> = None;
                let mut read = |fs: &[PathBuf]| -> Result<Vec<Volume>, DataError> {
                    fs.iter()
                        .map(|f| {
                            let v = read_nifti(f)?;
                            let kept: f64 = (0..3)
                                .map(|i| (dims[i].min(v.dims[i]) as f64) / v.dims[i].max(1) as f64)
                                .product();
                            if kept < 0.5 && cropped.is_none() {
                                cropped = Some(format!(
                                    "{} is {}x{}x{}: cropping its centre to {}x{}x{} keeps {:.0}% of it (and of volumes like it); set data.depth/height/width to its size (with data.patch for patchwise training) to train on all of it",
                                    f.display(),
                                    v.dims[0],
                                    v.dims[1],
                                    v.dims[2],
                                    dims[0],
                                    dims[1],
                                    dims[2],
                                    100.0 * kept
                                ));
                            }
                            Ok(prepared(v, dims))
                        })
                        .collect()
                };
                let (train_vols, val_vols) = (read(&train)?, read(&val)?);
                notes.extend(cropped);
                Ok(Self {
                    notes,
                    train: train_vols,
                    validation: val_vols,
                    description: format!(
                        "{n} NIfTI volume(s) from {} ({} / {} by file), rescaled to [-1, 1], cropped or padded to {}x{}x{}",
                        cfg.path,
                        train.len(),
                        val.len(),
                        dims[0],
                        dims[1],
                        dims[2]
                    ),
                })
            }
        }
    }
}

/// Video as volumes: FFmpeg's frames (the centre cropped to the aspect, resized) cut into
/// clips `[3, T, H, W]` of `depth` frames `frame_skip` apart, one after another; the last 20%
/// of each file's frames give the validation clips.
fn video_clips(cfg: &VolumeData, seed: u64) -> Result<VolumeSet, DataError> {
    let video = cfg.as_video();
    let set = super::video::VideoSet::load(&video, seed)?;
    let t = cfg.depth as usize;
    let span = (t - 1) * cfg.frame_skip.max(1) as usize + 1;
    // Windows start at every frame; clips take every `span`-th so that none overlap.
    let clips = |starts: &[i64]| -> Vec<Volume> {
        let mut out = Vec::new();
        let mut next = i64::MIN;
        for &s in starts {
            if s < next {
                continue;
            }
            next = s + span as i64;
            let x = set
                .batch(&[s], tch::Device::Cpu)
                .get(0)
                .permute([1, 0, 2, 3]);
            let data = Vec::<f32>::try_from(x.contiguous().view([-1])).unwrap_or_default();
            out.push(Volume {
                channels: 3,
                dims: [t, cfg.height as usize, cfg.width as usize],
                data,
            });
        }
        out
    };
    let (train, validation) = (clips(&set.train), clips(&set.val));
    if validation.is_empty() {
        return Err(DataError::file(
            Path::new(&cfg.path),
            format!("no validation clip of {t} frames fits in the last 20% of the frames; use a longer video or a smaller data.depth"),
        ));
    }
    // VideoSet's own description ends with its window counts, which clips replace.
    let frames = match set.description.split_once("; ") {
        Some((head, _)) => format!("{head})"),
        None => set.description.clone(),
    };
    Ok(VolumeSet {
        notes: Vec::new(),
        description: format!(
            "{frames}: {} training and {} validation clips of {t} frames",
            train.len(),
            validation.len()
        ),
        train,
        validation,
    })
}

/// Checks a preset's volumes before a run folder exists: every file reads (so a truncated
/// one is found now, at the cost of reading the data twice).
/// Checks that the volumes read; returns how many the training set holds.
pub fn preflight(cfg: &VolumeData, seed: u64) -> Result<usize, DataError> {
    match cfg.source {
        VolumeSource::Video => {
            // The whole decode, as for NIfTI: a video too short for a validation clip is
            // found now, not after the run folder exists.
            super::video::preflight(&cfg.as_video())?;
            return video_clips(cfg, seed)
                .map(|set| set.train.len())
                .map_err(|e| e.in_field("data.path"));
        }
        VolumeSource::SyntheticVolumes => return Ok(cfg.synthetic_count as usize),
        VolumeSource::SyntheticVideo => {
            return video_clips(cfg, seed)
                .map(|set| set.train.len())
                .map_err(|e| e.in_field("data.path"));
        }
        VolumeSource::Nifti => {}
    }
    let path = Path::new(&cfg.path);
    if !path.exists() {
        return Err(DataError::field(
            "data.path",
            format!("`{}` does not exist", cfg.path),
        ));
    }
    let files = nifti_files(path).map_err(|e| e.in_field("data.path"))?;
    if files.is_empty() {
        return Err(DataError::field(
            "data.path",
            format!("`{}` holds no .nii or .nii.gz file", cfg.path),
        ));
    }
    for f in &files {
        read_nifti(f).map_err(|e| DataError::from(e).in_field("data.path"))?;
    }
    Ok(split_files(files, seed).0.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(dims: [usize; 3]) -> Volume {
        Volume::scalar(
            dims,
            (0..dims.iter().product::<usize>())
                .map(|i| i as f32)
                .collect(),
        )
    }

    #[test]
    fn the_last_patch_is_pushed_to_the_end_of_each_axis() {
        assert_eq!(patch_starts(10, 4, 4), vec![0, 4, 6]);
        assert_eq!(patch_starts(8, 4, 4), vec![0, 4]);
        assert_eq!(patch_starts(9, 4, 2), vec![0, 2, 4, 5]);
        assert_eq!(patch_starts(3, 4, 2), vec![0]);
        assert_eq!(patch_grid([8, 10, 4], [4, 4, 4], [4, 4, 4]).len(), 2 * 3);
    }

    #[test]
    fn patches_blend_back_into_the_volume() {
        let v = ramp([5, 7, 6]);
        let (patch, stride) = ([4, 4, 4], [2, 3, 2]);
        let patches: Vec<([usize; 3], Volume)> = patch_grid(v.dims, patch, stride)
            .into_iter()
            .map(|at| (at, extract(&v, at, patch)))
            .collect();
        assert_eq!(blend(v.dims, &patches), v);
    }

    #[test]
    fn crop_pad_flip_and_rescale() {
        let v = ramp([2, 3, 4]);
        let padded = crop_or_pad(&v, [4, 3, 2]);
        // z: padded by 1 before; x: cropped from 1.
        assert_eq!(padded.data[..6], [-1.0; 6]);
        assert_eq!(padded.at(1, 0, 0), v.at(0, 0, 1));
        assert_eq!(padded.at(2, 2, 1), v.at(1, 2, 2));
        assert_eq!(padded.at(3, 0, 0), -1.0);
        let f = flip(&v, 2);
        assert_eq!(f.at(1, 2, 0), v.at(1, 2, 3));
        assert_eq!(flip(&f, 2), v);
        let mut r = v;
        rescale(&mut r);
        assert_eq!(r.data[0], -1.0);
        assert_eq!(r.data[r.len() - 1], 1.0);
    }

    #[test]
    fn synthetic_volumes_have_a_background_and_shapes_in_range() {
        let a = synthetic_volume(16, 7, 0);
        assert_eq!(a, synthetic_volume(16, 7, 0), "deterministic");
        assert_ne!(a, synthetic_volume(16, 7, 1));
        let background = a.data.iter().filter(|&&v| v == -1.0).count();
        assert!(
            background > a.len() / 2 && background < a.len(),
            "{background}"
        );
        assert!(a
            .data
            .iter()
            .all(|&v| v == -1.0 || (-0.5..=1.0).contains(&v)));
    }

    #[test]
    fn video_clips_are_three_channel_volumes_of_depth_frames() {
        let dir = tempfile::tempdir().expect("tmp");
        let gif = dir.path().join("clip.gif");
        super::super::video::write_gif(&gif, 16, 16, 20);
        let cfg = VolumeData {
            source: VolumeSource::Video,
            path: gif.display().to_string(),
            depth: 4,
            height: 16,
            width: 16,
            ..VolumeData::default()
        };
        let set = VolumeSet::load(&cfg, 1).unwrap_or_else(|e| panic!("{e}"));
        // 20 frames: the last 4 validate (1 clip); before them a gap of one clip, and the
        // first 12 train (3 clips).
        assert_eq!((set.train.len(), set.validation.len()), (3, 1));
        let clip = &set.train[1];
        assert_eq!((clip.channels, clip.dims), (3, [4, 16, 16]));
        // Pixel (x, y) of frame k is palette entry i = (k * 40 + x * 4 + y) % 256, colour
        // (i, 255 - i, 0); clip 1 starts at frame 4.
        let at =
            |c: usize, t: usize, y: usize, x: usize| clip.data[((c * 4 + t) * 16 + y) * 16 + x];
        for (t, y, x) in [(0, 0, 0), (2, 5, 3), (3, 15, 15)] {
            let i = ((4 + t) * 40 + x * 4 + y) % 256;
            let want = i as f32 / 127.5 - 1.0;
            assert!((at(0, t, y, x) - want).abs() < 1e-5, "t {t} y {y} x {x}");
            assert!((at(1, t, y, x) + want).abs() < 1e-5);
            assert_eq!(at(2, t, y, x), -1.0);
        }
        assert_eq!(
            set.validation[0].data[0],
            (((16 * 40) % 256) as f32) / 127.5 - 1.0
        );
        // Channel-wise operations keep the channels apart.
        let f = flip(clip, 2);
        assert_eq!(f.channels, 3);
        assert_eq!(flip(&f, 2), *clip);
        let parts: Vec<([usize; 3], Volume)> = patch_grid(clip.dims, [4, 8, 8], [4, 8, 8])
            .into_iter()
            .map(|at| (at, extract(clip, at, [4, 8, 8])))
            .collect();
        assert_eq!(blend(clip.dims, &parts), *clip);
        // Too short for a validation clip: named.
        let short = VolumeData { depth: 8, ..cfg };
        let e = VolumeSet::load(&short, 1)
            .expect_err("too short")
            .to_string();
        assert!(e.contains("clip.gif"), "{e}");
    }

    #[test]
    fn written_volumes_read_back_with_every_channel() {
        let dir = tempfile::tempdir().expect("tmp");
        let one = ramp([3, 4, 5]);
        let p = dir.path().join("one.nii");
        write_nifti(&p, &one).expect("write");
        assert_eq!(read_nifti(&p), Ok(one.clone()));
        let three = Volume::join(vec![one.clone(), flip(&one, 0), flip(&one, 2)]);
        let p = dir.path().join("three.nii");
        write_nifti(&p, &three).expect("write");
        assert_eq!(read_nifti_channels(&p), Ok(three));
        assert_eq!(read_nifti(&p), Ok(one), "the first volume");
        assert!(!dir.path().join("three.nii.part").exists());
    }

    #[test]
    fn the_split_is_by_file_eighty_twenty() {
        let files: Vec<PathBuf> = (0..10).map(|i| PathBuf::from(format!("{i}.nii"))).collect();
        let (train, val) = split_files(files.clone(), 42);
        assert_eq!((train.len(), val.len()), (8, 2));
        assert!(val.iter().all(|v| !train.contains(v)));
        assert_eq!(
            split_files(files, 42).1,
            val,
            "the same seed, the same split"
        );
    }
}

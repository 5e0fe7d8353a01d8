//! Latent video in HDF5 files, as seed 002 stores it: one `.h5` file per video holding
//! `embeddings`, float32 `[N_chunks, C, T_lat, H, W]` (gzip-compressed, `T_lat` 1 or 2), and
//! optionally `actions`, int32 `[frames - 1]` (ground truth, which only synthetic data has).
//! Frames are `chunk * T_lat + t`; windows of `L` consecutive frames never cross a file. Reads
//! are hyperslabs of the chunks a window covers, so a file is never loaded whole.
//!
//! The manifest is the seed's JSON (`splits.train/validation/test` by file name, per-split
//! statistics), made by `workbench data manifest DIR`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use crate::core::preset::data::{LatentData, LatentSource};
use crate::core::rng::{derive_seed, SplitMix64, Stream};

use super::DataError;

/// The dataset holding the latents.
pub const EMBEDDINGS: &str = "embeddings";
/// The optional dataset of ground-truth actions, one per transition.
pub const ACTIONS: &str = "actions";

/// The shape of one file's `embeddings`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatentShape {
    pub chunks: usize,
    pub channels: usize,
    pub t_lat: usize,
    pub height: usize,
    pub width: usize,
}

impl LatentShape {
    /// Latent frames in the file.
    #[must_use]
    pub fn frames(&self) -> usize {
        self.chunks * self.t_lat
    }

    /// Values in one frame.
    #[must_use]
    pub fn frame_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    fn dims(&self) -> [usize; 5] {
        [
            self.chunks,
            self.channels,
            self.t_lat,
            self.height,
            self.width,
        ]
    }
}

impl std::fmt::Display for LatentShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.dims())
    }
}

/// One readable latent file.
#[derive(Debug)]
pub struct LatentFile {
    pub path: PathBuf,
    pub shape: LatentShape,
    dataset: hdf5::Dataset,
}

fn named(path: &Path, what: impl std::fmt::Display) -> DataError {
    DataError::file(path, what)
}

impl LatentFile {
    /// Opens a file and checks its `embeddings`: present, float, rank 5, `T_lat` 1 or 2.
    pub fn open(path: &Path) -> Result<Self, DataError> {
        if !path.is_file() {
            return Err(named(path, "no such file"));
        }
        let file = hdf5::File::with_options()
            .with_fapl(|p| p.file_locking(false))
            .open(path)
            .map_err(|e| named(path, format!("not a readable HDF5 file ({e})")))?;
        let dataset = file.dataset(EMBEDDINGS).map_err(|_| {
            let names = file.member_names().unwrap_or_default();
            named(
                path,
                format!(
                    "no dataset `{EMBEDDINGS}` (the file holds: {})",
                    if names.is_empty() {
                        "nothing".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            )
        })?;
        let dims = dataset.shape();
        let float = dataset
            .dtype()
            .and_then(|t| t.to_descriptor())
            .is_ok_and(|d| matches!(d, hdf5::types::TypeDescriptor::Float(_)));
        if !float {
            return Err(named(
                path,
                format!("`{EMBEDDINGS}` {dims:?} is not floating point"),
            ));
        }
        let [chunks, channels, t_lat, height, width] = dims[..] else {
            return Err(named(
                path,
                format!("`{EMBEDDINGS}` has shape {dims:?}, rank {}; expected rank 5 [N_chunks, C, T_lat, H, W]", dims.len()),
            ));
        };
        if !(1..=2).contains(&t_lat) || channels == 0 || height == 0 || width == 0 {
            return Err(named(
                path,
                format!("`{EMBEDDINGS}` has shape {dims:?}; expected [N_chunks, C, T_lat, H, W] with T_lat 1 or 2"),
            ));
        }
        Ok(Self {
            path: path.into(),
            shape: LatentShape {
                chunks,
                channels,
                t_lat,
                height,
                width,
            },
            dataset,
        })
    }

    /// Frames `start .. start + len` as `[len, C, H, W]` values, read as one hyperslab of the
    /// chunks they fall in.
    pub fn read_frames(&self, start: usize, len: usize) -> Result<Vec<f32>, DataError> {
        let s = self.shape;
        if len == 0 || start + len > s.frames() {
            return Err(named(
                &self.path,
                format!(
                    "frames {start}..{} are outside `{EMBEDDINGS}` {s} ({} frames)",
                    start + len,
                    s.frames()
                ),
            ));
        }
        let (c0, c1) = (start / s.t_lat, (start + len - 1) / s.t_lat + 1);
        let block: ndarray::Array5<f32> = self
            .dataset
            .read_slice(ndarray::s![c0..c1, .., .., .., ..])
            .map_err(|e| {
                named(
                    &self.path,
                    format!("cannot read chunks {c0}..{c1} of `{EMBEDDINGS}` {s}: {e}"),
                )
            })?;
        // [n, C, T_lat, H, W] -> [n * T_lat, C, H, W], then the window.
        let frames = block.permuted_axes([0, 2, 1, 3, 4]);
        let skip = start - c0 * s.t_lat;
        let mut out = Vec::with_capacity(len * s.frame_len());
        for chunk in frames.outer_iter() {
            for frame in chunk.outer_iter() {
                out.extend(frame.iter().copied());
            }
        }
        let flen = s.frame_len();
        Ok(out[skip * flen..(skip + len) * flen].to_vec())
    }

    /// The ground-truth actions (one per transition), when the file has them.
    pub fn actions(&self) -> Result<Option<Vec<i64>>, DataError> {
        let Ok(file) = self.dataset.file() else {
            return Ok(None);
        };
        let Ok(ds) = file.dataset(ACTIONS) else {
            return Ok(None);
        };
        let values: Vec<i32> = ds
            .read_raw()
            .map_err(|e| named(&self.path, format!("cannot read `{ACTIONS}`: {e}")))?;
        if values.len() + 1 != self.shape.frames() {
            return Err(named(
                &self.path,
                format!(
                    "`{ACTIONS}` holds {} values; {} frames need {}",
                    values.len(),
                    self.shape.frames(),
                    self.shape.frames().saturating_sub(1)
                ),
            ));
        }
        Ok(Some(values.into_iter().map(i64::from).collect()))
    }
}

/// Writes `frames` (`[N, C, H, W]` values, `N = shape.frames()`) as `embeddings`
/// `[N_chunks, C, T_lat, H, W]`, gzip level 4 in chunks of one file chunk, as the seed's
/// preprocessing does; with `actions`, also those. Written to a temporary name and renamed, so
/// a reader never sees half a file.
pub fn write_latents(
    path: &Path,
    frames: &[f32],
    shape: LatentShape,
    actions: Option<&[i32]>,
) -> Result<(), DataError> {
    if frames.len() != shape.frames() * shape.frame_len() {
        return Err(named(
            path,
            format!("{} values do not fill `{EMBEDDINGS}` {shape}", frames.len()),
        ));
    }
    let tmp = path.with_extension(format!("h5.{}", unique_suffix()));
    let result = (|| -> Result<(), hdf5::Error> {
        // No HDF5 file locks: files are written under a private name and renamed into
        // place, and read only after that (the locks failed spuriously between threads).
        let file = hdf5::File::with_options()
            .with_fapl(|p| p.file_locking(false))
            .create(&tmp)?;
        // [N_chunks, T_lat, C, H, W] in memory order -> [N_chunks, C, T_lat, H, W].
        let by_time = ndarray::Array5::from_shape_vec(
            (
                shape.chunks,
                shape.t_lat,
                shape.channels,
                shape.height,
                shape.width,
            ),
            frames.to_vec(),
        )
        .map_err(|e| hdf5::Error::from(e.to_string().as_str()))?;
        let data = by_time
            .permuted_axes([0, 2, 1, 3, 4])
            .as_standard_layout()
            .to_owned();
        file.new_dataset_builder()
            .with_data(&data)
            .chunk((1, shape.channels, shape.t_lat, shape.height, shape.width))
            .deflate(4)
            .create(EMBEDDINGS)?;
        if let Some(a) = actions {
            file.new_dataset_builder()
                .with_data(a)
                .deflate(4)
                .create(ACTIONS)?;
        }
        file.flush()?;
        file.close()
    })();
    result.map_err(|e| named(path, format!("cannot write: {e}")))?;
    std::fs::rename(&tmp, path).map_err(|e| named(path, format!("cannot rename into place: {e}")))
}

/// The seed's manifest (`create_vvae_manifest.py`'s JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub metadata: ManifestMeta,
    pub data_format: BTreeMap<String, String>,
    pub splits: Splits,
    pub statistics: BTreeMap<String, SplitStats>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestMeta {
    pub created_at: String,
    pub data_directory: String,
    pub total_files: usize,
    pub seed: u64,
    pub split_ratios: Ratios,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Ratios {
    pub train: f64,
    pub validation: f64,
    pub test: f64,
}

impl Default for Ratios {
    fn default() -> Self {
        Self {
            train: 0.8,
            validation: 0.1,
            test: 0.1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Splits {
    pub train: Vec<String>,
    pub validation: Vec<String>,
    pub test: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitStats {
    pub num_files: usize,
    pub num_chunks: usize,
    pub num_latent_frames: usize,
}

/// How many files go to train, validation and test: `floor(0.8 n)`, `floor(0.1 n)`, the rest.
pub fn split_counts(n: usize, ratios: Ratios) -> Result<(usize, usize, usize), DataError> {
    let sum = ratios.train + ratios.validation + ratios.test;
    let ok = |r: f64| (0.0..=1.0).contains(&r);
    if (sum - 1.0).abs() > 1e-6 || !ok(ratios.train) || !ok(ratios.validation) || !ok(ratios.test) {
        return Err(DataError::Other(format!(
            "split ratios {} / {} / {} must each be in [0, 1] and sum to 1",
            ratios.train, ratios.validation, ratios.test
        )));
    }
    let train = (n as f64 * ratios.train + 1e-9).floor() as usize;
    let val = ((n as f64 * ratios.validation + 1e-9).floor() as usize).min(n - train);
    Ok((train, val, n - train - val))
}

/// The `.h5` files of a folder, sorted by name.
pub fn h5_files(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let entries = std::fs::read_dir(dir).map_err(|e| named(dir, format!("cannot list: {e}")))?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "h5"))
        .collect();
    files.sort();
    Ok(files)
}

/// Makes the manifest of a folder: sorted `.h5` files, the readable ones kept (the others
/// returned with why), permuted by `seed`, split by file.
pub fn make_manifest(
    dir: &Path,
    ratios: Ratios,
    seed: u64,
) -> Result<(Manifest, Vec<String>), DataError> {
    let mut valid = Vec::new();
    let mut skipped = Vec::new();
    for f in h5_files(dir)? {
        match LatentFile::open(&f) {
            Ok(lf) => valid.push((file_name(&f), lf.shape)),
            Err(e) => skipped.push(e.to_string()),
        }
    }
    if valid.is_empty() {
        return Err(named(
            dir,
            format!(
                "no readable .h5 file with `{EMBEDDINGS}` [N_chunks, C, T_lat, H, W]{}",
                skipped
                    .first()
                    .map(|s| format!(" (first: {s})"))
                    .unwrap_or_default()
            ),
        ));
    }
    let (n_train, n_val, _) = split_counts(valid.len(), ratios)?;
    let mut rng = SplitMix64::new(seed);
    rng.shuffle(&mut valid);
    let names = |part: &[(String, LatentShape)]| part.iter().map(|(n, _)| n.clone()).collect();
    let stats = |part: &[(String, LatentShape)]| SplitStats {
        num_files: part.len(),
        num_chunks: part.iter().map(|(_, s)| s.chunks).sum(),
        num_latent_frames: part.iter().map(|(_, s)| s.frames()).sum(),
    };
    let (train, rest) = valid.split_at(n_train);
    let (val, test) = rest.split_at(n_val);
    let first = valid[0].1;
    let manifest = Manifest {
        metadata: ManifestMeta {
            created_at: crate::core::timefmt::readable_utc(crate::core::timefmt::unix_now() as u64),
            data_directory: std::fs::canonicalize(dir)
                .unwrap_or_else(|_| dir.into())
                .display()
                .to_string(),
            total_files: valid.len(),
            seed,
            split_ratios: ratios,
        },
        data_format: BTreeMap::from([
            ("file_type".into(), "HDF5 (.h5), one file per video".into()),
            (
                "dataset_key".into(),
                format!("{EMBEDDINGS}: float32 [N_chunks, C, T_lat, H, W]"),
            ),
            (
                "embedding_shape".into(),
                format!(
                    "[N_chunks, {}, {}, {}, {}] (first file)",
                    first.channels, first.t_lat, first.height, first.width
                ),
            ),
            (
                "frames".into(),
                "N_chunks * T_lat latent frames; windows never cross files".into(),
            ),
        ]),
        splits: Splits {
            train: names(train),
            validation: names(val),
            test: names(test),
        },
        statistics: BTreeMap::from([
            ("train".into(), stats(train)),
            ("validation".into(), stats(val)),
            ("test".into(), stats(test)),
        ]),
    };
    Ok((manifest, skipped))
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Writes a manifest as pretty JSON (atomically).
pub fn write_manifest(path: &Path, m: &Manifest) -> Result<(), DataError> {
    let text = serde_json::to_string_pretty(m).map_err(|e| named(path, e))?;
    let tmp = path.with_extension(format!("json.{}", unique_suffix()));
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| named(path, format!("cannot write: {e}")))
}

/// Reads a manifest, naming the file and the field on failure.
pub fn read_manifest(path: &Path) -> Result<Manifest, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| named(path, e))?;
    let de = &mut serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        named(
            path,
            format!("not a latent manifest: at `{}`: {}", e.path(), e.inner()),
        )
    })
}

/// One split's files and windows.
#[derive(Debug, Default)]
pub struct LatentSplit {
    pub files: Vec<LatentFile>,
    /// Ground-truth actions per file, when every file of the split has them.
    pub actions: Option<Vec<Vec<i64>>>,
    /// `(file, first frame)` of every window.
    pub windows: Vec<(usize, usize)>,
    /// Files passed over for being shorter than one window, with why.
    pub short: Vec<String>,
}

impl LatentSplit {
    /// Opens a split's files; a file shorter than one window gives no window (and is
    /// named in `short`), as the seed's loader.
    fn open(paths: &[PathBuf], len: usize, stride: usize) -> Result<Self, DataError> {
        let mut files = Vec::with_capacity(paths.len());
        let mut actions = Some(Vec::new());
        let mut windows = Vec::new();
        let mut short = Vec::new();
        for p in paths {
            let f = LatentFile::open(p)?;
            let frames = f.shape.frames();
            if frames < len {
                short.push(
                    named(
                        p,
                        format!(
                            "`{EMBEDDINGS}` {} holds {frames} latent frames, fewer than one window of data.sequence_length {len}",
                            f.shape
                        ),
                    )
                    .to_string(),
                );
                continue;
            }
            match (f.actions()?, actions.as_mut()) {
                (Some(a), Some(all)) => all.push(a),
                _ => actions = None,
            }
            let i = files.len();
            windows.extend((0..=frames - len).step_by(stride).map(|s| (i, s)));
            files.push(f);
        }
        Ok(Self {
            files,
            actions,
            windows,
            short,
        })
    }
}

/// Latent windows of the train, validation and test splits.
#[derive(Debug)]
pub struct LatentSet {
    pub train: LatentSplit,
    pub validation: LatentSplit,
    pub test: LatentSplit,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub sequence_length: usize,
    pub description: String,
}

/// Which split to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Validation,
    Test,
}

/// A batch of windows: `x` `[B, L, C, H, W]`, and the ground-truth actions `[B, L - 1]` when
/// the files have them.
#[derive(Debug)]
pub struct LatentBatch {
    pub x: Tensor,
    pub actions: Option<Tensor>,
}

impl LatentSet {
    /// Opens the data a preset names; every problem names the file, its dataset and shape.
    pub fn load(cfg: &LatentData, seed: u64) -> Result<Self, DataError> {
        let (manifest_dir, manifest) = match cfg.source {
            LatentSource::SyntheticBlobs => {
                let dir = synthetic_dir(cfg, seed);
                ensure_synthetic(cfg, seed, &dir)?;
                let m = read_manifest(&dir.join("manifest.json"))?;
                (dir, m)
            }
            LatentSource::H5 => resolve_manifest(Path::new(&cfg.path))?,
        };
        let len = cfg.sequence_length as usize;
        let paths = |names: &[String]| -> Vec<PathBuf> {
            names.iter().map(|n| manifest_dir.join(n)).collect()
        };
        let train = LatentSplit::open(
            &paths(&manifest.splits.train),
            len,
            cfg.stride_train as usize,
        )?;
        let validation = LatentSplit::open(
            &paths(&manifest.splits.validation),
            len,
            cfg.stride_val as usize,
        )?;
        let test = LatentSplit::open(&paths(&manifest.splits.test), len, cfg.stride_val as usize)?;
        let Some(first) = train.files.first() else {
            return Err(match train.short.first() {
                Some(why) => DataError::Other(format!(
                    "no training file holds one window ({} of {} too short; first: {why})",
                    train.short.len(),
                    manifest.splits.train.len()
                )),
                None => named(&manifest_dir, "the manifest's train split is empty"),
            });
        };
        let s = first.shape;
        for f in train
            .files
            .iter()
            .chain(&validation.files)
            .chain(&test.files)
        {
            let o = f.shape;
            if (o.channels, o.height, o.width) != (s.channels, s.height, s.width) {
                return Err(named(
                    &f.path,
                    format!(
                        "`{EMBEDDINGS}` {o} differs in C, H, W from {} {s}: every file of a run needs the same latent size",
                        first.path.display()
                    ),
                ));
            }
        }
        let description = format!(
            "{} latents {}x{}x{} from {} ({} / {} / {} files; {} / {} / {} windows of {len})",
            match cfg.source {
                LatentSource::SyntheticBlobs => "synthetic blob",
                LatentSource::H5 => "HDF5",
            },
            s.channels,
            s.height,
            s.width,
            manifest_dir.display(),
            train.files.len(),
            validation.files.len(),
            test.files.len(),
            train.windows.len(),
            validation.windows.len(),
            test.windows.len(),
        );
        Ok(Self {
            train,
            validation,
            test,
            channels: s.channels,
            height: s.height,
            width: s.width,
            sequence_length: len,
            description,
        })
    }

    #[must_use]
    pub fn split(&self, split: Split) -> &LatentSplit {
        match split {
            Split::Train => &self.train,
            Split::Validation => &self.validation,
            Split::Test => &self.test,
        }
    }

    /// Windows `indices` of a split as one batch.
    pub fn batch(
        &self,
        split: Split,
        indices: &[usize],
        device: Device,
    ) -> Result<LatentBatch, DataError> {
        let part = self.split(split);
        let len = self.sequence_length;
        let mut values = Vec::new();
        let mut acts = part.actions.as_ref().map(|_| Vec::new());
        for &i in indices {
            let (f, start) = part.windows[i];
            values.extend(part.files[f].read_frames(start, len)?);
            if let (Some(out), Some(all)) = (acts.as_mut(), part.actions.as_ref()) {
                out.extend_from_slice(&all[f][start..start + len - 1]);
            }
        }
        let b = indices.len() as i64;
        let shape = [
            b,
            len as i64,
            self.channels as i64,
            self.height as i64,
            self.width as i64,
        ];
        let x = Tensor::from_slice(&values).view(shape).to_device(device);
        let actions = acts.map(|a| {
            Tensor::from_slice(&a)
                .view([b, len as i64 - 1])
                .to_device(device)
        });
        Ok(LatentBatch { x, actions })
    }
}

/// A folder (its `manifest.json`, or the seed's split made now) or a manifest file.
fn resolve_manifest(path: &Path) -> Result<(PathBuf, Manifest), DataError> {
    if path.is_dir() {
        let file = path.join("manifest.json");
        if file.is_file() {
            return Ok((path.into(), read_manifest(&file)?));
        }
        let (m, _) = make_manifest(path, Ratios::default(), 42)?;
        return Ok((path.into(), m));
    }
    if !path.is_file() {
        return Err(named(path, "neither a folder of .h5 files nor a manifest"));
    }
    let m = read_manifest(path)?;
    // File names are relative to the manifest's folder, or else to its data_directory.
    let beside = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let first = m
        .splits
        .train
        .first()
        .or(m.splits.validation.first())
        .cloned()
        .unwrap_or_default();
    let dir = if beside.join(&first).is_file() {
        beside
    } else {
        PathBuf::from(&m.metadata.data_directory)
    };
    Ok((dir, m))
}

/// The cache folder of a synthetic configuration (the same content is made once).
fn synthetic_dir(cfg: &LatentData, seed: u64) -> PathBuf {
    let key = format!(
        "{seed}-{}-{}-{}-{}-{}-{}",
        cfg.synthetic_channels,
        cfg.synthetic_size,
        cfg.synthetic_files,
        cfg.synthetic_frames,
        cfg.synthetic_sigma,
        cfg.synthetic_move
    );
    let hash = crate::core::rng::mix64(crc32c::crc32c(key.as_bytes()).into());
    crate::core::rundir::xdg_dir("XDG_CACHE_HOME", ".cache")
        .unwrap_or_else(std::env::temp_dir)
        .join("workbench")
        .join("latents")
        .join(format!("synthetic-blobs-{hash:016x}"))
}

/// The eight moves of the synthetic blob: `(dx, dy)` in {-1, 0, 1}^2 without (0, 0).
pub const MOVES: [(i32, i32); 8] = [
    (-1, -1),
    (0, -1),
    (1, -1),
    (-1, 0),
    (1, 0),
    (-1, 1),
    (0, 1),
    (1, 1),
];

/// One synthetic latent video: a Gaussian blob on a torus with fixed per-channel amplitudes,
/// moved `move_px` by a random one of [`MOVES`] each frame. Returns `[frames, C, S, S]` values
/// and the actions.
#[must_use]
pub fn synthetic_video(cfg: &LatentData, seed: u64, index: u64) -> (Vec<f32>, Vec<i32>) {
    let mut rng = SplitMix64::new(derive_seed(seed, Stream::Synthetic, index));
    let (c, s, n) = (
        cfg.synthetic_channels as usize,
        cfg.synthetic_size as usize,
        cfg.synthetic_frames as usize,
    );
    let amps: Vec<f64> = (0..c)
        .map(|_| {
            let a = rng.range_f64(0.5, 1.5);
            if rng.below(2) == 0 {
                -a
            } else {
                a
            }
        })
        .collect();
    let sf = s as f64;
    let (mut px, mut py) = (rng.range_f64(0.0, sf), rng.range_f64(0.0, sf));
    let two_s2 = 2.0 * cfg.synthetic_sigma * cfg.synthetic_sigma;
    let mut frames = Vec::with_capacity(n * c * s * s);
    let mut actions = Vec::with_capacity(n.saturating_sub(1));
    let torus = |d: f64| {
        let d = d.rem_euclid(sf);
        d.min(sf - d)
    };
    for t in 0..n {
        let mut plane = vec![0f64; s * s];
        for y in 0..s {
            for x in 0..s {
                let (dx, dy) = (torus(x as f64 - px), torus(y as f64 - py));
                plane[y * s + x] = (-(dx * dx + dy * dy) / two_s2).exp();
            }
        }
        for a in &amps {
            frames.extend(plane.iter().map(|v| (v * a) as f32));
        }
        if t + 1 < n {
            let a = rng.below(8) as usize;
            actions.push(a as i32);
            let step = f64::from(cfg.synthetic_move);
            px = (px + step * f64::from(MOVES[a].0)).rem_euclid(sf);
            py = (py + step * f64::from(MOVES[a].1)).rem_euclid(sf);
        }
    }
    (frames, actions)
}

/// Writes the synthetic files and their manifest into `dir` unless it exists. They are
/// written into a private folder first and renamed into place, so runs and tests that start
/// together never see (or write) half a data set.
fn ensure_synthetic(cfg: &LatentData, seed: u64, dir: &Path) -> Result<(), DataError> {
    if dir.join("manifest.json").is_file() {
        return Ok(());
    }
    let tmp = dir.with_extension(unique_suffix());
    std::fs::create_dir_all(&tmp).map_err(|e| named(&tmp, format!("cannot create: {e}")))?;
    let written = write_synthetic(cfg, seed, &tmp, dir);
    let placed = written.and_then(|()| {
        std::fs::rename(&tmp, dir).or_else(|e| {
            if dir.join("manifest.json").is_file() {
                Ok(()) // another run made it first
            } else {
                Err(named(dir, format!("cannot move the data into place: {e}")))
            }
        })
    });
    let _ = std::fs::remove_dir_all(&tmp);
    placed
}

fn write_synthetic(cfg: &LatentData, seed: u64, tmp: &Path, dir: &Path) -> Result<(), DataError> {
    let s = cfg.synthetic_size as usize;
    let shape = LatentShape {
        chunks: cfg.synthetic_frames as usize,
        channels: cfg.synthetic_channels as usize,
        t_lat: 1,
        height: s,
        width: s,
    };
    for i in 0..cfg.synthetic_files {
        let (frames, actions) = synthetic_video(cfg, seed, u64::from(i));
        write_latents(
            &tmp.join(format!("blobs_{i:04}.h5")),
            &frames,
            shape,
            Some(&actions),
        )?;
    }
    let (mut m, skipped) = make_manifest(tmp, Ratios::default(), 42)?;
    if let Some(first) = skipped.first() {
        return Err(DataError::Other(first.clone()));
    }
    m.metadata.data_directory = dir.display().to_string();
    write_manifest(&tmp.join("manifest.json"), &m)
}

/// A file-name suffix no other process or thread uses at the same time.
fn unique_suffix() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("part-{}-{n}", std::process::id())
}

/// Checks a preset's latents before a run folder exists: the files open, have the right rank
/// and shape, and hold at least one window; a batch fits the training windows.
/// Checks that the latents load; returns their training windows (`None` for the synthetic
/// set, made when the run starts).
pub fn preflight(cfg: &LatentData, seed: u64) -> Result<Option<usize>, DataError> {
    if cfg.source == LatentSource::SyntheticBlobs {
        return Ok(None);
    }
    let set = LatentSet::load(cfg, seed).map_err(|e| e.in_field("data.path"))?;
    Ok(Some(set.train.windows.len()))
}

/// Video to latent-layout `.h5`: decoded frames resized to `height x width` (stretched), pixels
/// in [-1, 1] as C = 3 channels, `T_lat` 1; `fps` keeps about that many frames per second;
/// `split_every` cuts the video into files of that many frames (`<stem>_000.h5`, ...), so one
/// long video can be split by file into train, validation and test. Returns the files written
/// and their frame counts.
pub fn video_to_h5(
    video: &Path,
    out_dir: &Path,
    height: u32,
    width: u32,
    fps: Option<f64>,
    split_every: Option<usize>,
) -> Result<Vec<(PathBuf, usize)>, DataError> {
    use crate::core::video::VideoReader;
    let mut reader = VideoReader::open(video)?;
    let source_fps = reader.fps();
    let keep_every = match (fps, source_fps) {
        (Some(want), Some(have)) if want > 0.0 && have > want => have / want,
        _ => 1.0,
    };
    let mut values = Vec::new();
    let (mut index, mut next_keep) = (0usize, 0.0f64);
    while let Some(frame) = reader.next_frame()? {
        let keep = index as f64 + 1e-9 >= next_keep;
        index += 1;
        if !keep {
            continue;
        }
        next_keep += keep_every;
        let img = image::RgbaImage::from_raw(frame.width, frame.height, frame.rgba)
            .ok_or_else(|| named(video, format!("frame {} has a bad size", index - 1)))?;
        let img =
            image::imageops::resize(&img, width, height, image::imageops::FilterType::Triangle);
        for ch in 0..3 {
            values.extend(img.pixels().map(|p| f32::from(p.0[ch]) / 127.5 - 1.0));
        }
    }
    let frame_len = 3 * (height * width) as usize;
    let n = values.len() / frame_len;
    if n < 2 {
        return Err(named(
            video,
            format!("{n} frame(s) decoded; a latent video needs at least 2"),
        ));
    }
    std::fs::create_dir_all(out_dir).map_err(|e| named(out_dir, format!("cannot create: {e}")))?;
    let stem = video
        .file_stem()
        .map_or_else(|| "video".into(), |s| s.to_string_lossy().into_owned());
    let stem = crate::core::rundir::safe_file_name(&stem);
    let per = split_every.unwrap_or(n).max(2);
    let mut written = Vec::new();
    for (i, part) in values.chunks(per * frame_len).enumerate() {
        let frames = part.len() / frame_len;
        if frames < 2 {
            continue; // a last piece of one frame holds no transition
        }
        let out = if split_every.is_some() {
            out_dir.join(format!("{stem}_{i:03}.h5"))
        } else {
            out_dir.join(format!("{stem}.h5"))
        };
        let shape = LatentShape {
            chunks: frames,
            channels: 3,
            t_lat: 1,
            height: height as usize,
            width: width as usize,
        };
        write_latents(&out, part, shape, None)?;
        written.push((out, frames));
    }
    Ok(written)
}

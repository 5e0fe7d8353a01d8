//! Training data: the synthetic sprites (embedded default) and image folders, held in memory as
//! u8 tensors and augmented on the device.

mod augment;
mod folder;
pub mod latents;
pub mod video;
pub mod volumes;

pub use augment::{augment, Augment};
pub use folder::{load_folder, FolderImages};
pub use video::VideoSet;

use tch::{Device, Kind, Tensor};

use crate::core::preset::data::{DataNeed, ImageData, ImageSource};
use crate::core::preset::AnyPreset;
use crate::core::synthetic;

/// A dataset in memory: training and held-out images as `[N, 3, S, S]` u8 on the CPU.
#[derive(Debug)]
pub struct ImageSet {
    pub train: Tensor,
    pub holdout: Tensor,
    /// Files that could not be read, with the reason (skipped when the preset says so).
    pub skipped: Vec<(String, String)>,
    pub description: String,
}

/// Errors of the data layer: each names the file, or the preset field, it is about.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file that is missing, unreadable or holds the wrong thing (its dataset, its frame).
    #[error("{path}: {message}")]
    File { path: String, message: String },
    /// A preset field whose data cannot serve (too little of it, none readable).
    #[error("{field}: {message}")]
    Field { field: String, message: String },
    #[error(transparent)]
    Video(#[from] crate::core::video::VideoError),
    #[error(transparent)]
    Nifti(#[from] crate::core::nifti::NiftiError),
    /// The loader's own machinery (a thread that could not start, or stopped).
    #[error("{0}")]
    Other(String),
}

impl DataError {
    /// An error about the file at `path`.
    pub fn file(path: &std::path::Path, message: impl std::fmt::Display) -> Self {
        Self::File {
            path: path.display().to_string(),
            message: message.to_string(),
        }
    }

    /// An error about the preset field `field`.
    pub fn field(field: &str, message: impl std::fmt::Display) -> Self {
        Self::Field {
            field: field.to_string(),
            message: message.to_string(),
        }
    }

    /// The error as met through the preset field `field` (`data.path: <error>`).
    #[must_use]
    pub fn in_field(self, field: &str) -> Self {
        Self::field(field, self)
    }
}

/// Every data problem of `preset` that can be found without training, as one line naming the
/// field and the file, for `world` data-parallel ranks (each trains the preset's batch, so a
/// step takes `world` times it from the training set).
pub fn preflight(preset: &AnyPreset, world: usize) -> Result<(), DataError> {
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
                if !std::path::Path::new(path).is_file() {
                    return Err(DataError::field(field, format!("`{path}` does not exist")));
                }
            }
            DataNeed::Images { cfg, batch_size } => folder::preflight(cfg, batch(batch_size))?,
            DataNeed::Video(cfg) => video::preflight(cfg)?,
            DataNeed::Volumes { cfg, batch_size } => {
                let train = volumes::preflight(cfg, preset.seed())?;
                batch(batch_size).fits(train, "training volume(s)", "data.path", &cfg.path)?;
            }
            DataNeed::Latents { cfg, batch_size } => {
                if let Some(train) = latents::preflight(cfg, preset.seed())? {
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
    pub fn fits(self, have: usize, what: &str, field: &str, path: &str) -> Result<(), DataError> {
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
        Err(DataError::field(
            field,
            format!("`{path}` gives {have} {what}, fewer than one batch ({need})"),
        ))
    }
}

impl ImageSet {
    /// Builds the dataset the preset describes.
    pub fn load(cfg: &ImageData, seed: u64) -> Result<Self, DataError> {
        let size = cfg.image_size;
        match cfg.source {
            ImageSource::SyntheticSprites => {
                let n = cfg.synthetic_count as usize;
                let px = (size * size * 3) as usize;
                let mut bytes = Vec::with_capacity(n * px);
                for i in 0..n {
                    bytes.extend(synthetic::sprite(seed, i as u64, size));
                }
                let all = hwc_to_tensor(&bytes, n, size);
                let hold = i64::from(cfg.holdout);
                let n = n as i64;
                Ok(Self {
                    train: all.narrow(0, 0, n - hold),
                    holdout: all.narrow(0, n - hold, hold),
                    skipped: Vec::new(),
                    description: format!(
                        "synthetic sprites {size}x{size}: {} train, {hold} held out",
                        n - hold
                    ),
                })
            }
            ImageSource::Folder => {
                let imgs = load_folder(std::path::Path::new(&cfg.folder), size, cfg.on_bad_image)?;
                let n = imgs.count;
                let hold = (cfg.holdout as usize).min(n / 2);
                if n - hold == 0 {
                    return Err(DataError::File {
                        path: cfg.folder.clone(),
                        message: "no readable PNG or JPEG images".into(),
                    });
                }
                // Hold out a fixed, seed-chosen subset so validation never sees training images.
                let mut order: Vec<u32> = (0..n as u32).collect();
                crate::core::rng::SplitMix64::new(crate::core::rng::derive_seed(
                    seed,
                    crate::core::rng::Stream::Validation,
                    0,
                ))
                .shuffle(&mut order);
                let all = hwc_to_tensor(&imgs.rgb, n, size);
                let idx = |v: &[u32]| {
                    Tensor::from_slice(&v.iter().map(|&i| i64::from(i)).collect::<Vec<_>>())
                };
                let (h, t) = order.split_at(hold);
                let skipped_count = imgs.skipped_count();
                Ok(Self {
                    train: all.index_select(0, &idx(t)),
                    holdout: all.index_select(0, &idx(h)),
                    skipped: imgs.skipped,
                    description: format!(
                        "{}: {} train, {hold} held out, {} skipped",
                        cfg.folder,
                        n - hold,
                        skipped_count
                    ),
                })
            }
        }
    }

    #[must_use]
    pub fn train_len(&self) -> usize {
        self.train.size()[0] as usize
    }

    /// Training images by index, as floats in [0, 1] on `device`.
    pub fn batch(&self, indices: &[u32], device: Device) -> Tensor {
        let idx = Tensor::from_slice(&indices.iter().map(|&i| i64::from(i)).collect::<Vec<_>>());
        self.train
            .index_select(0, &idx)
            .to_device(device)
            .to_kind(Kind::Float)
            / 255.0
    }
}

fn hwc_to_tensor(bytes: &[u8], n: usize, size: u32) -> Tensor {
    let s = i64::from(size);
    Tensor::from_slice(bytes)
        .view([n as i64, s, s, 3])
        .permute([0, 3, 1, 2])
        .contiguous()
}

/// Each epoch's seeded shuffle of a training set, and this data-parallel rank's part of each
/// global batch (all of it alone): the sampler every family shares. Batch `k` of an epoch is
/// `world * b` consecutive items of the shuffled order; a set smaller than a batch wraps.
#[derive(Debug, Clone)]
pub struct EpochSampler {
    seed: u64,
    /// The seed every order comes from: `seed`, or drawn from it after a reseed.
    order_seed: u64,
    order: Option<(u64, Vec<u32>)>,
}

impl EpochSampler {
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            order_seed: seed,
            order: None,
        }
    }

    /// The `k`-th data order of the run (0: the run's own): every epoch is shuffled from a
    /// seed drawn from the run's seed and `k`, so a guard's `reseed` remedy gives other
    /// batches, and a resume with the same `k` the same ones.
    pub fn reseed(&mut self, k: u64) {
        self.order_seed = match k {
            0 => self.seed,
            k => crate::core::rng::derive_seed(self.seed, crate::core::rng::Stream::DataOrder, k),
        };
        self.order = None;
    }

    /// The training-set indices of batch `batch` of epoch `epoch`, `b` of them, for a set of
    /// `n` items.
    pub fn batch(&mut self, epoch: u64, batch: u64, n: usize, b: usize) -> Vec<usize> {
        if n == 0 {
            return Vec::new();
        }
        if self
            .order
            .as_ref()
            .is_none_or(|(e, o)| *e != epoch || o.len() != n)
        {
            self.order = Some((
                epoch,
                crate::core::rng::epoch_permutation(self.order_seed, epoch, n),
            ));
        }
        let Some((_, order)) = &self.order else {
            return Vec::new();
        };
        let first = crate::engine::dist::batch_start(batch as usize, b);
        if n >= b {
            let start = first.min(n - b);
            order[start..start + b]
                .iter()
                .map(|&i| i as usize)
                .collect()
        } else {
            (0..b).map(|i| order[(first + i) % n] as usize).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::EpochSampler;

    #[test]
    fn a_reseed_draws_another_order_and_the_same_again_for_the_same_count() {
        let order = |k: u64| {
            let mut s = EpochSampler::new(7);
            s.reseed(k);
            (0..4)
                .flat_map(|b| s.batch(0, b, 20, 5))
                .collect::<Vec<_>>()
        };
        let own: Vec<usize> = {
            let mut s = EpochSampler::new(7);
            (0..4).flat_map(|b| s.batch(0, b, 20, 5)).collect()
        };
        assert_eq!(order(0), own, "k = 0 is the run's own order");
        assert_ne!(order(1), own);
        assert_ne!(order(2), order(1));
        assert_eq!(order(1), order(1));
    }

    #[test]
    fn an_epochs_batches_are_disjoint_and_epochs_reshuffle() {
        let mut s = EpochSampler::new(7);
        let mut seen: Vec<usize> = (0..3).flat_map(|k| s.batch(0, k, 10, 3)).collect();
        let first = seen.clone();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 9);
        let next: Vec<usize> = (0..3).flat_map(|k| s.batch(1, k, 10, 3)).collect();
        assert_ne!(first, next);
        // The same seed repeats exactly (a resume).
        let mut again = EpochSampler::new(7);
        assert_eq!(again.batch(0, 1, 10, 3), first[3..6].to_vec());
        // A set smaller than a batch wraps.
        let small = s.batch(0, 0, 2, 5);
        assert_eq!(small.len(), 5);
        assert!(small.iter().all(|&i| i < 2));
        assert!(s.batch(0, 0, 0, 4).is_empty());
    }
}

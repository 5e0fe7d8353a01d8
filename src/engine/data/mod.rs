//! Training data: the synthetic sprites (embedded default) and image folders, held in memory as
//! u8 tensors and augmented on the device.

mod augment;
mod folder;
pub mod latents;
mod preflight;
pub mod video;
pub mod volumes;

pub use augment::{augment, Augment};
pub use folder::{load_folder, FolderImages};
pub use preflight::preflight;
pub use video::VideoSet;

use tch::{Device, Kind, Tensor};

use crate::core::preset::data::{ImageData, ImageSource};
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

/// Errors of the data layer.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("{0}")]
    Other(String),
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
    order: Option<(u64, Vec<u32>)>,
}

impl EpochSampler {
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self { seed, order: None }
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
                crate::core::rng::epoch_permutation(self.seed, epoch, n),
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

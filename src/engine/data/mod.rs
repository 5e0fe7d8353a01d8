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

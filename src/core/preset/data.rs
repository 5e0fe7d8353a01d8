//! Data configurations shared by families: an image folder (or synthetic sprites) and a video
//! (or synthetic shapes). A family's preset holds one as its `data` section; the engine's
//! loaders and the data preflight read them without knowing the family.

use serde::{Deserialize, Serialize};

/// Where the training images come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageSource {
    /// Procedural coloured sprites on white, deterministic by seed (the embedded default).
    SyntheticSprites,
    /// A folder of PNG and JPEG files, searched recursively.
    Folder,
}

/// What to do with an image that cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnBadImage {
    /// Skip it, count it, and report the paths.
    Skip,
    /// Fail the run naming the file.
    Fail,
}

/// The images a run trains on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageData {
    pub source: ImageSource,
    /// The image folder when `source` is `folder`.
    pub folder: String,
    pub image_size: u32,
    /// Number of synthetic training images.
    pub synthetic_count: u32,
    /// Images held out from training for validation (sliced Wasserstein distance).
    pub holdout: u32,
    pub hflip_prob: f64,
    pub rotation_deg: f64,
    pub jitter_brightness: f64,
    pub jitter_contrast: f64,
    pub jitter_saturation: f64,
    pub jitter_hue: f64,
    pub on_bad_image: OnBadImage,
}

/// Where the frames come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VideoSource {
    /// Moving coloured shapes generated in memory, deterministic by seed (the embedded default).
    SyntheticShapes,
    /// One video file, or a folder of videos, in any format FFmpeg decodes.
    File,
}

/// How frames are brought to the preset's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resize {
    /// Resize to exactly `image_w x image_h`, as the original (the aspect ratio changes).
    Stretch,
    /// Crop the centre to the target aspect ratio, then resize.
    CenterCrop,
}

/// The video a run trains on, cut into windows of `input_frames + predict_frames`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoData {
    pub source: VideoSource,
    /// A video file or a folder of videos when `source` is `file`.
    pub path: String,
    /// A separate validation video; empty takes the end of the training frames instead.
    pub validation_path: String,
    /// Of the training frames, the final fraction kept for validation (no window crosses).
    pub validation_fraction: f64,
    pub image_h: u32,
    pub image_w: u32,
    pub resize: Resize,
    /// Frames skipped between the frames of a window, plus one (1 = consecutive).
    pub frame_skip: u32,
    pub input_frames: u32,
    pub predict_frames: u32,
    /// Length of the synthetic video.
    pub synthetic_frames: u32,
    /// Read at most this many frames of each video (0 = all).
    pub max_frames: u32,
}

impl Default for ImageData {
    /// Seed 004's data at 64x64, on the synthetic sprites.
    fn default() -> Self {
        Self {
            source: ImageSource::SyntheticSprites,
            folder: String::new(),
            image_size: 64,
            synthetic_count: 2048,
            holdout: 256,
            hflip_prob: 0.5,
            rotation_deg: 10.0,
            jitter_brightness: 0.1,
            jitter_contrast: 0.1,
            jitter_saturation: 0.1,
            jitter_hue: 0.02,
            on_bad_image: OnBadImage::Skip,
        }
    }
}

impl Default for VideoData {
    /// 64x64 synthetic moving shapes, 2 input and 1 predicted frame.
    fn default() -> Self {
        Self {
            source: VideoSource::SyntheticShapes,
            path: String::new(),
            validation_path: String::new(),
            validation_fraction: 0.1,
            image_h: 64,
            image_w: 64,
            resize: Resize::Stretch,
            frame_skip: 1,
            input_frames: 2,
            predict_frames: 1,
            synthetic_frames: 2000,
            max_frames: 0,
        }
    }
}

/// What a run will read, for the checks made before its folder is written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DataNeed<'a> {
    /// Images, with the batch size one training step needs.
    Images {
        cfg: &'a ImageData,
        batch_size: u32,
    },
    Video(&'a VideoData),
    /// A file the run loads (a model, weights), by its preset field.
    File {
        field: &'static str,
        path: &'a str,
    },
}

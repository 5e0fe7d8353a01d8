//! Data configurations shared by families: an image folder (or synthetic sprites) and a video
//! (or synthetic shapes). A family's preset holds one as its `data` section; the engine's
//! loaders and the data preflight read them without knowing the family.

use serde::{Deserialize, Serialize};

use crate::core::preset::schema::FieldKind as K;

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

crate::preset_section! {
    /// The images a run trains on.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct ImageData {
        pub source: ImageSource => field(K::Choice(&["synthetic_sprites", "folder"]), "", [], "Training images: procedural sprites or a folder of PNG/JPEG"),
        /// The image folder when `source` is `folder`.
        pub folder: String => field(K::Path, "", [], "Image folder (searched recursively) when source is folder"),
        pub image_size: u32 => field(K::Int { min: 16, max: 256 }, "px", [], "Square training resolution; a power of two"),
        /// Number of synthetic training images.
        pub synthetic_count: u32 => field(K::Int { min: 16, max: 1000000 }, "images", [], "Synthetic training set size"),
        /// Images held out from training for validation (sliced Wasserstein distance).
        pub holdout: u32 => field(K::Int { min: 0, max: 100000 }, "images", [], "Images held out of training for the validation distance"),
        pub hflip_prob: f64 => field(K::Float { min: 0.0, max: 1.0 }, "", [phase], "Probability of a horizontal flip"),
        pub rotation_deg: f64 => field(K::Float { min: 0.0, max: 180.0 }, "deg", [phase], "Random rotation range, +-degrees, white fill"),
        pub jitter_brightness: f64 => field(K::Float { min: 0.0, max: 1.0 }, "", [phase], "Colour jitter: brightness factor range 1 +- x"),
        pub jitter_contrast: f64 => field(K::Float { min: 0.0, max: 1.0 }, "", [phase], "Colour jitter: contrast factor range 1 +- x"),
        pub jitter_saturation: f64 => field(K::Float { min: 0.0, max: 1.0 }, "", [phase], "Colour jitter: saturation factor range 1 +- x"),
        pub jitter_hue: f64 => field(K::Float { min: 0.0, max: 0.5 }, "turns", [phase], "Colour jitter: hue shift range +- x"),
        pub on_bad_image: OnBadImage => field(K::Choice(&["skip", "fail"]), "", [], "An unreadable image: skip it with a counted warning, or fail"),
    }
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

crate::preset_section! {
    /// The video a run trains on, cut into windows of `input_frames + predict_frames`.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct VideoData {
        pub source: VideoSource => field(K::Choice(&["synthetic_shapes", "file"]), "", [], "Frames: moving shapes generated in memory, or a video file or folder"),
        /// A video file or a folder of videos when `source` is `file`.
        pub path: String => field(K::Path, "", [], "Video file, or a folder of videos, when source is file"),
        /// A separate validation video; empty takes the end of the training frames instead.
        pub validation_path: String => field(K::Path, "", [], "A separate validation video; empty: the end of the training frames"),
        /// Of the training frames, the final fraction kept for validation (no window crosses).
        pub validation_fraction: f64 => field(K::Float { min: 0.0, max: 0.9 }, "", [], "Final fraction of the frames held out for validation (windows never cross it)"),
        pub image_h: u32 => field(K::Int { min: 16, max: 1024 }, "px", [], "Frame height"),
        pub image_w: u32 => field(K::Int { min: 16, max: 1024 }, "px", [], "Frame width"),
        pub resize: Resize => field(K::Choice(&["stretch", "center_crop"]), "", [], "stretch to the size (the original), or crop the centre to keep the aspect"),
        /// Frames skipped between the frames of a window, plus one (1 = consecutive).
        pub frame_skip: u32 => field(K::Int { min: 1, max: 100 }, "frames", [], "Source frames between consecutive frames of a window"),
        pub input_frames: u32 => field(K::Int { min: 1, max: 64 }, "frames", [], "Context frames per window"),
        pub predict_frames: u32 => field(K::Int { min: 1, max: 16 }, "frames", [], "Predicted frames per window (Np)"),
        /// Length of the synthetic video.
        pub synthetic_frames: u32 => field(K::Int { min: 8, max: 1000000 }, "frames", [], "Length of the synthetic video"),
        /// Read at most this many frames of each video (0 = all).
        pub max_frames: u32 => field(K::Int { min: 0, max: 100000000 }, "frames", [], "Read at most this many frames per video; 0 = all"),
    }
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
    /// Volumes (NIfTI files, video clips), with the batch size one training step needs.
    Volumes {
        cfg: &'a VolumeData,
        batch_size: u32,
    },
    /// Latent frames in `.h5` files, with the largest batch a step needs.
    Latents {
        cfg: &'a LatentData,
        batch_size: u32,
    },
    /// A file the run loads (a model, weights), by its preset field.
    File {
        field: &'static str,
        path: &'a str,
    },
}

/// Where the latent video comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LatentSource {
    /// Gaussian blobs moved by known actions on a torus, written as real `.h5` files in the
    /// cache, so the HDF5 loader is the path exercised (the embedded default).
    SyntheticBlobs,
    /// `.h5` files holding `embeddings [N_chunks, C, T_lat, H, W]`: a folder (its
    /// `manifest.json` when present, else the seed's split made on the fly) or a manifest.
    H5,
}

crate::preset_section! {
    /// The latent video a latent action model trains on: windows of `sequence_length`
    /// consecutive latent frames inside one file.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct LatentData {
        pub source: LatentSource => field(K::Choice(&["synthetic_blobs", "h5"]), "", [], "Latents: synthetic moving blobs with known actions, or .h5 files"),
        /// A folder of `.h5` files or a `manifest.json` when `source` is `h5`.
        pub path: String => field(K::Path, "", [], "A folder of .h5 files (its manifest.json when present) or a manifest, when source is h5"),
        pub sequence_length: u32 => field(K::Int { min: 2, max: 64 }, "frames", [], "Latent frames per window (the seed's context_length; also the model's max_seq_len)"),
        pub stride_train: u32 => field(K::Int { min: 1, max: 64 }, "frames", [], "Window start stride in training files"),
        pub stride_val: u32 => field(K::Int { min: 1, max: 64 }, "frames", [], "Window start stride in validation and test files"),
        /// Of the validation windows, the fraction one validation pass evaluates (a fixed subset).
        pub validation_fraction: f64 => field(K::Float { min: 0.001, max: 1.0 }, "", [phase], "Fraction of the validation windows a validation pass evaluates (a fixed subset)"),
        /// The test split, held out for reporting, is evaluated at every this many regular
        /// validations (the seed evaluates it once, at the end).
        #[serde(default = "ten")]
        pub test_every: u32 => field(K::Int { min: 0, max: 100000 }, "validations", [phase], "Evaluate the test split every this many regular validations; 0 = never"),
        pub synthetic_channels: u32 => field(K::Int { min: 1, max: 64 }, "channels", [], "Synthetic latent channels"),
        pub synthetic_size: u32 => field(K::Int { min: 4, max: 256 }, "px", [], "Synthetic latent height and width (a torus)"),
        pub synthetic_files: u32 => field(K::Int { min: 3, max: 10000 }, "files", [], "Synthetic .h5 files (videos); split 80/10/10 by file"),
        pub synthetic_frames: u32 => field(K::Int { min: 2, max: 100000 }, "frames", [], "Latent frames per synthetic file"),
        pub synthetic_sigma: f64 => field(K::Float { min: 0.2, max: 64.0 }, "px", [], "Width (sigma) of the synthetic blob"),
        pub synthetic_move: u32 => field(K::Int { min: 1, max: 64 }, "px", [], "How far one of the 8 synthetic actions moves the blob"),
        /// Each training window is mirrored left-right, mirrored up-down and reversed in time,
        /// each with probability 1/2: eight versions of every motion in the clips. Exact for
        /// pixel latents; for an encoder's feature grid a mirror is an approximation.
        #[serde(default)]
        pub augment: bool => field(K::Bool, "", [], "Mirror each training window left-right and up-down and reverse it in time, each with probability 1/2 (eight versions of every motion; exact for pixel latents, approximate for an encoder's feature grid)"),
    }
}

fn ten() -> u32 {
    10
}

impl Default for LatentData {
    /// Section 4.1's synthetic latents: 4 channels of 16x16, one blob of sigma 1.5 px moved
    /// 2 px per step by one of 8 actions; windows of 5 frames.
    fn default() -> Self {
        Self {
            source: LatentSource::SyntheticBlobs,
            path: String::new(),
            sequence_length: 5,
            stride_train: 1,
            stride_val: 2,
            validation_fraction: 1.0,
            test_every: 10,
            synthetic_channels: 4,
            synthetic_size: 16,
            synthetic_files: 40,
            synthetic_frames: 64,
            synthetic_sigma: 1.5,
            synthetic_move: 2,
            augment: false,
        }
    }
}

/// Where the volumes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VolumeSource {
    /// Boxes and ellipsoids on a -1 background, deterministic by seed (the embedded default).
    SyntheticVolumes,
    /// A NIfTI-1 file (`.nii`, `.nii.gz`) or a folder of them, split 80/20 by file.
    Nifti,
    /// A video file or a folder of them, decoded by FFmpeg into clips `[3, T, H, W]` of
    /// `depth` frames (as TATS trains); the last 20% of each video's frames validate.
    Video,
    /// Clips of synthetic moving shapes (the WuBu-GAAD family's), `synthetic_count` for
    /// training and `synthetic_holdout` for validation.
    SyntheticVideo,
}

crate::preset_section! {
    /// The volumes a run trains on, `[1, D, H, W]` in [-1, 1].
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct VolumeData {
        pub source: VolumeSource => field(K::Choice(&["synthetic_volumes", "nifti", "video", "synthetic_video"]), "", [], "Volumes: synthetic shapes, NIfTI-1 files, clips of a video, or clips of synthetic moving shapes"),
        /// A NIfTI file or a folder of them when `source` is `nifti`; a video file or a
        /// folder of them when it is `video`.
        pub path: String => field(K::Path, "", [], "A .nii/.nii.gz file or a folder of them (nifti), or a video file or folder (video)"),
        pub depth: u32 => field(K::Int { min: 4, max: 1024 }, "voxels", [], "Depth D (the axis slices are taken across) after crop or pad; for video, the frames of a clip"),
        pub height: u32 => field(K::Int { min: 4, max: 1024 }, "voxels", [], "Height H after crop or pad"),
        pub width: u32 => field(K::Int { min: 4, max: 1024 }, "voxels", [], "Width W after crop or pad"),
        pub flip_prob: f64 => field(K::Float { min: 0.0, max: 1.0 }, "", [phase], "Probability of a flip on one random axis"),
        /// Patchwise training (the Xray port): cubes of this side, every patch of a volume in
        /// one optimiser step; 0 trains on whole volumes.
        #[serde(default)]
        pub patch: u32 => field(K::Int { min: 0, max: 1024 }, "voxels", [], "Patch side for patchwise training (all patches of a volume in one step); 0 = whole volumes"),
        #[serde(default)]
        pub patch_stride: u32 => field(K::Int { min: 0, max: 1024 }, "voxels", [], "Patch stride (the last patch is pushed to the end of each axis); 0 = the patch side"),
        /// Patches through the model at once in patchwise training: each micro-batch is one
        /// forward (and one EMA codebook update), the step one optimiser update over all. The
        /// Xray port's trainer takes one patch at a time.
        #[serde(default)]
        pub patch_batch: u32 => field(K::Int { min: 0, max: 4096 }, "patches", [phase], "Patches per forward in patchwise training (each forward updates the EMA codebook once; the step is one update over all); 0 = every patch of the step at once; 1 = the Xray port's one at a time"),
        /// Video: source frames between consecutive frames of a clip (TATS's
        /// `sample_every_n_frames`).
        #[serde(default = "one")]
        pub frame_skip: u32 => field(K::Int { min: 1, max: 100 }, "frames", [], "Video: source frames between consecutive frames of a clip"),
        /// Video: frames read per file at most (0 = all), to bound memory on long videos.
        #[serde(default)]
        pub max_frames: u32 => field(K::Int { min: 0, max: 100000000 }, "frames", [], "Video: read at most this many frames per file; 0 = all"),
        pub synthetic_count: u32 => field(K::Int { min: 2, max: 100000 }, "volumes", [], "Synthetic training volumes"),
        pub synthetic_holdout: u32 => field(K::Int { min: 1, max: 10000 }, "volumes", [], "Synthetic validation volumes"),
    }
}

fn one() -> u32 {
    1
}

impl VolumeData {
    /// Channels of a volume: 3 for video clips, 1 otherwise.
    #[must_use]
    pub fn channels(&self) -> u32 {
        if self.is_video() {
            3
        } else {
            1
        }
    }

    /// Clips of video (from a file or synthetic).
    #[must_use]
    pub fn is_video(&self) -> bool {
        matches!(
            self.source,
            VolumeSource::Video | VolumeSource::SyntheticVideo
        )
    }

    /// The video decoding this data asks for (`source` video): clips of `depth` frames at
    /// `height x width`, the centre cropped to keep the aspect, the last 20% validating.
    #[must_use]
    pub fn as_video(&self) -> VideoData {
        let synthetic = self.source == VolumeSource::SyntheticVideo;
        let clips = self.synthetic_count + self.synthetic_holdout;
        let span = self.depth.saturating_sub(1) * self.frame_skip.max(1) + 1;
        VideoData {
            source: if synthetic {
                VideoSource::SyntheticShapes
            } else {
                VideoSource::File
            },
            path: self.path.clone(),
            validation_path: String::new(),
            validation_fraction: if synthetic {
                f64::from(self.synthetic_holdout) / f64::from(clips.max(1))
            } else {
                0.2
            },
            synthetic_frames: if synthetic { clips * span } else { 0 },
            image_h: self.height,
            image_w: self.width,
            resize: Resize::CenterCrop,
            frame_skip: self.frame_skip.max(1),
            input_frames: self.depth.saturating_sub(1).max(1),
            predict_frames: 1,
            max_frames: self.max_frames,
        }
    }
}

impl Default for VolumeData {
    /// Spec 4.2's synthetic volumes: 16^3, 512 for training and 64 for validation.
    fn default() -> Self {
        Self {
            source: VolumeSource::SyntheticVolumes,
            path: String::new(),
            depth: 16,
            height: 16,
            width: 16,
            flip_prob: 0.5,
            patch: 0,
            patch_stride: 0,
            patch_batch: 0,
            frame_skip: 1,
            max_frames: 0,
            synthetic_count: 512,
            synthetic_holdout: 64,
        }
    }
}

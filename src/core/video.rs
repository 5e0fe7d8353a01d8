//! Video frames as RGBA8 through FFmpeg (ffmpeg-next): no tensors, so the GUI's GAAD
//! inspector and the engine's video data can share it. Errors name the file and the frame.

use std::path::{Path, PathBuf};

use ffmpeg_next as ffmpeg;

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub width: u32,
    pub height: u32,
    /// Row-major RGBA8, `width * height * 4` bytes.
    pub rgba: Vec<u8>,
}

/// Why a video could not be read.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    #[error("{path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error("{path}: no video stream")]
    NoVideo { path: PathBuf },
    #[error("{path}: frame {index}: {message}")]
    Decode {
        path: PathBuf,
        index: usize,
        message: String,
    },
    #[error("{path}: frame {index} asked for, the video has {frames} frame(s)")]
    TooShort {
        path: PathBuf,
        index: usize,
        frames: usize,
    },
}

/// Decodes frames in order, converted to RGBA at the stream's size.
pub struct VideoReader {
    path: PathBuf,
    input: ffmpeg::format::context::Input,
    stream: usize,
    decoder: ffmpeg::decoder::Video,
    scaler: ffmpeg::software::scaling::Context,
    pending: std::collections::VecDeque<Frame>,
    decoded: usize,
    eof: bool,
    frames_hint: Option<u64>,
    fps: Option<f64>,
}

impl std::fmt::Debug for VideoReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoReader")
            .field("path", &self.path)
            .field("decoded", &self.decoded)
            .finish_non_exhaustive()
    }
}

impl VideoReader {
    pub fn open(path: &Path) -> Result<Self, VideoError> {
        let open_err = |e: ffmpeg::Error| VideoError::Open {
            path: path.into(),
            message: e.to_string(),
        };
        ffmpeg::init().map_err(open_err)?;
        // FFmpeg's own notices (a deprecated pixel format, ...) are not the user's business.
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Error);
        let input = ffmpeg::format::input(&path).map_err(open_err)?;
        let stream = input
            .streams()
            .best(ffmpeg::media::Type::Video)
            .ok_or_else(|| VideoError::NoVideo { path: path.into() })?;
        let index = stream.index();
        let frames_hint = frame_count_hint(&stream);
        let rate = stream.avg_frame_rate();
        let fps = (rate.denominator() != 0 && rate.numerator() > 0)
            .then(|| f64::from(rate.numerator()) / f64::from(rate.denominator()));
        let ctx = ffmpeg::codec::context::Context::from_parameters(stream.parameters())
            .map_err(open_err)?;
        let decoder = ctx.decoder().video().map_err(open_err)?;
        let scaler = ffmpeg::software::scaling::Context::get(
            decoder.format(),
            decoder.width(),
            decoder.height(),
            ffmpeg::format::Pixel::RGBA,
            decoder.width(),
            decoder.height(),
            ffmpeg::software::scaling::Flags::BILINEAR,
        )
        .map_err(open_err)?;
        Ok(Self {
            path: path.into(),
            input,
            stream: index,
            decoder,
            scaler,
            pending: Default::default(),
            decoded: 0,
            eof: false,
            frames_hint,
            fps,
        })
    }

    /// The stream's average frame rate, when the container says.
    #[must_use]
    pub fn fps(&self) -> Option<f64> {
        self.fps
    }

    /// The number of frames the container declares, or its duration times its frame rate;
    /// `None` when it says neither (then only decoding to the end tells).
    #[must_use]
    pub fn frames_hint(&self) -> Option<u64> {
        self.frames_hint
    }

    /// `(width, height)` of the frames.
    #[must_use]
    pub fn size(&self) -> (u32, u32) {
        (self.decoder.width(), self.decoder.height())
    }

    fn receive(&mut self) -> Result<(), VideoError> {
        let mut decoded = ffmpeg::frame::Video::empty();
        while self.decoder.receive_frame(&mut decoded).is_ok() {
            let mut rgba = ffmpeg::frame::Video::empty();
            self.scaler
                .run(&decoded, &mut rgba)
                .map_err(|e| VideoError::Decode {
                    path: self.path.clone(),
                    index: self.decoded,
                    message: e.to_string(),
                })?;
            let (w, h) = (rgba.width() as usize, rgba.height() as usize);
            let stride = rgba.stride(0);
            let data = rgba.data(0);
            let mut out = Vec::with_capacity(w * h * 4);
            // Rows are padded to `stride` bytes.
            for row in 0..h {
                out.extend_from_slice(&data[row * stride..row * stride + w * 4]);
            }
            self.pending.push_back(Frame {
                width: w as u32,
                height: h as u32,
                rgba: out,
            });
            self.decoded += 1;
        }
        Ok(())
    }

    /// The next frame, or `None` at the end.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, VideoError> {
        loop {
            if let Some(f) = self.pending.pop_front() {
                return Ok(Some(f));
            }
            if self.eof {
                return Ok(None);
            }
            let packet = self
                .input
                .packets()
                .find(|(s, _)| s.index() == self.stream)
                .map(|(_, p)| p);
            let (path, index) = (self.path.clone(), self.decoded);
            let err = |e: ffmpeg::Error| VideoError::Decode {
                path,
                index,
                message: e.to_string(),
            };
            match packet {
                Some(p) => self.decoder.send_packet(&p).map_err(err)?,
                None => {
                    self.decoder.send_eof().map_err(err)?;
                    self.eof = true;
                }
            }
            self.receive()?;
        }
    }
}

/// What a stream declares of its length, in frames.
fn frame_count_hint(stream: &ffmpeg::format::stream::Stream<'_>) -> Option<u64> {
    if stream.frames() > 0 {
        return Some(stream.frames() as u64);
    }
    let (tb, rate) = (stream.time_base(), stream.avg_frame_rate());
    if stream.duration() > 0 && tb.denominator() != 0 && rate.denominator() != 0 {
        let seconds = stream.duration() as f64 * f64::from(tb);
        let frames = (seconds * f64::from(rate)).round();
        return (frames.is_finite() && frames > 0.0).then_some(frames as u64);
    }
    None
}

/// Frame `index` (0-based) of a video.
pub fn read_frame(path: &Path, index: usize) -> Result<Frame, VideoError> {
    let mut r = VideoReader::open(path)?;
    let mut i = 0;
    while let Some(f) = r.next_frame()? {
        if i == index {
            return Ok(f);
        }
        i += 1;
    }
    Err(VideoError::TooShort {
        path: path.into(),
        index,
        frames: i,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/testsrc_64x48_10f.avi")
    }

    #[test]
    fn decodes_every_frame_as_rgba_matching_ffmpegs_own_conversion() {
        let mut r = VideoReader::open(&fixture()).unwrap();
        assert_eq!(r.size(), (64, 48));
        let mut frames = Vec::new();
        while let Some(f) = r.next_frame().unwrap() {
            assert_eq!(f.rgba.len(), 64 * 48 * 4);
            frames.push(f);
        }
        assert_eq!(frames.len(), 10);
        assert_eq!(
            VideoReader::open(&fixture()).unwrap().frames_hint(),
            Some(10)
        );
        assert_ne!(frames[0], frames[9], "testsrc moves");
        // Frame 3 as the ffmpeg command line converted it (tests/fixtures/testsrc_frame3.png).
        let want = image::open(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/testsrc_frame3.png"),
        )
        .unwrap()
        .to_rgba8();
        let diff: f64 = frames[3]
            .rgba
            .iter()
            .zip(want.as_raw())
            .map(|(a, b)| f64::from((i16::from(*a) - i16::from(*b)).abs()))
            .sum::<f64>()
            / frames[3].rgba.len() as f64;
        assert!(diff < 4.0, "mean abs difference {diff}");
        assert_eq!(read_frame(&fixture(), 3).unwrap(), frames[3]);
    }

    #[test]
    fn errors_name_the_file_and_the_frame() {
        let e = read_frame(&fixture(), 10).unwrap_err();
        assert!(
            e.to_string()
                .contains("frame 10 asked for, the video has 10"),
            "{e}"
        );
        let e = read_frame(Path::new("/no/such/video.mp4"), 0).unwrap_err();
        assert!(e.to_string().starts_with("/no/such/video.mp4:"), "{e}");
        let png = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/testsrc_frame3.png");
        assert!(read_frame(&png, 5).is_err());
    }
}

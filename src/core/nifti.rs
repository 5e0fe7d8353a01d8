//! NIfTI-1 volumes (`.nii`, `.nii.gz`) read and written in plain Rust: any scalar data type in
//! either byte order, `scl_slope` and `scl_inter` applied, the first volume of a 4-D file (or
//! every channel, for the files the VQ-GAN's validation writes). A NIfTI-2 file, a 2-D image, a
//! non-scalar data type and a file that ends before its data are named with the header field
//! that says so.

use std::io::Read;
use std::path::Path;

use nifti::{NiftiHeader, NiftiObject, NiftiType, ReaderOptions};

/// A volume `[C, D, H, W]` (NIfTI's z, y, x; a video clip's t, y, x), x fastest, as NIfTI
/// stores it. NIfTI volumes have one channel, video clips three.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    pub channels: usize,
    /// `[D, H, W]`.
    pub dims: [usize; 3],
    pub data: Vec<f32>,
}

impl Volume {
    /// A one-channel volume.
    #[must_use]
    pub fn scalar(dims: [usize; 3], data: Vec<f32>) -> Self {
        Self {
            channels: 1,
            dims,
            data,
        }
    }

    /// Voxels of one channel.
    #[must_use]
    pub fn len(&self) -> usize {
        self.dims.iter().product()
    }

    /// The channels one by one, as one-channel volumes.
    #[must_use]
    pub fn planes(&self) -> Vec<Volume> {
        self.data
            .chunks(self.len().max(1))
            .map(|c| Volume::scalar(self.dims, c.to_vec()))
            .collect()
    }

    /// The inverse of [`Volume::planes`].
    #[must_use]
    pub fn join(planes: Vec<Volume>) -> Volume {
        let dims = planes.first().map_or([0; 3], |p| p.dims);
        Volume {
            channels: planes.len(),
            dims,
            data: planes.into_iter().flat_map(|p| p.data).collect(),
        }
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value of the first channel at `(z, y, x)`.
    #[must_use]
    pub fn at(&self, z: usize, y: usize, x: usize) -> f32 {
        self.data[(z * self.dims[1] + y) * self.dims[2] + x]
    }
}

/// A NIfTI file that cannot be read or written, named, with the header field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct NiftiError {
    pub path: String,
    pub message: String,
}

fn named(path: &Path, what: impl std::fmt::Display) -> NiftiError {
    NiftiError {
        path: path.display().to_string(),
        message: what.to_string(),
    }
}

/// The first four bytes (`sizeof_hdr`), through gzip for `.gz` files.
fn sizeof_hdr(path: &Path) -> Result<i32, NiftiError> {
    let file = std::fs::File::open(path).map_err(|e| named(path, e))?;
    let gz = path.extension().is_some_and(|e| e == "gz");
    let mut first = [0u8; 4];
    let read = if gz {
        flate2::read::GzDecoder::new(file).read_exact(&mut first)
    } else {
        std::io::BufReader::new(file).read_exact(&mut first)
    };
    read.map_err(|e| named(path, format!("cannot read the header's sizeof_hdr: {e}")))?;
    Ok(i32::from_le_bytes(first))
}

/// Reads a NIfTI-1 volume (the first of a 4-D file) as floats, with the header's scaling.
pub fn read_nifti(path: &Path) -> Result<Volume, NiftiError> {
    read(path, false)
}

fn read(path: &Path, all_channels: bool) -> Result<Volume, NiftiError> {
    let size = sizeof_hdr(path)?;
    if size == 540 || size.swap_bytes() == 540 {
        return Err(named(
            path,
            "a NIfTI-2 file (sizeof_hdr = 540); only NIfTI-1 (sizeof_hdr = 348) is read: convert it, e.g. nibabel.save(nibabel.Nifti1Image(img.dataobj, img.affine), ...)",
        ));
    }
    if size != 348 && size.swap_bytes() != 348 {
        return Err(named(
            path,
            format!("not a NIfTI-1 file (sizeof_hdr = {size}, expected 348)"),
        ));
    }
    let obj = ReaderOptions::new()
        .read_file(path)
        .map_err(|e| named(path, format!("cannot read the volume: {e}")))?;
    let header: NiftiHeader = obj.header().clone();
    let rank = header.dim[0];
    if !(3..=7).contains(&rank) {
        return Err(named(
            path,
            format!(
                "dim[0] = {rank}: {}; a volume needs 3 dimensions",
                if rank == 2 {
                    "a 2-D image".to_string()
                } else {
                    format!("{rank} dimensions")
                }
            ),
        ));
    }
    let kind = header
        .data_type()
        .map_err(|_| named(path, format!("datatype = {} is unknown", header.datatype)))?;
    let scalar = matches!(
        kind,
        NiftiType::Uint8
            | NiftiType::Int8
            | NiftiType::Uint16
            | NiftiType::Int16
            | NiftiType::Uint32
            | NiftiType::Int32
            | NiftiType::Uint64
            | NiftiType::Int64
            | NiftiType::Float32
            | NiftiType::Float64
    );
    if !scalar {
        return Err(named(
            path,
            format!(
                "datatype = {} ({kind:?}) is not a real scalar type",
                header.datatype
            ),
        ));
    }
    let dims = [
        usize::from(header.dim[3]),
        usize::from(header.dim[2]),
        usize::from(header.dim[1]),
    ];
    let (slope, inter) = (header.scl_slope, header.scl_inter);
    let channels = if all_channels && rank >= 4 {
        usize::from(header.dim[4]).max(1)
    } else {
        1
    };
    let n: usize = dims.iter().product::<usize>() * channels;
    let volume = obj.into_volume();
    // The reader checks the element type against the header; convert after reading.
    macro_rules! as_f32 {
        ($t:ty) => {
            volume
                .into_nifti_typed_data::<$t>()
                .map(|v| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>())
        };
    }
    // `as`: the wide integer and float64 types round to the nearest float32, on purpose.
    #[allow(clippy::cast_lossless)]
    let values = match kind {
        NiftiType::Uint8 => as_f32!(u8),
        NiftiType::Int8 => as_f32!(i8),
        NiftiType::Uint16 => as_f32!(u16),
        NiftiType::Int16 => as_f32!(i16),
        NiftiType::Uint32 => as_f32!(u32),
        NiftiType::Int32 => as_f32!(i32),
        NiftiType::Uint64 => as_f32!(u64),
        NiftiType::Int64 => as_f32!(i64),
        NiftiType::Float64 => as_f32!(f64),
        _ => as_f32!(f32),
    }
    .map_err(|e| named(path, format!("cannot read the data as {kind:?}: {e}")))?;
    if values.len() < n || n == 0 {
        return Err(named(
            path,
            format!(
                "the data holds {} values; dim = {:?} needs {n}",
                values.len(),
                &header.dim[1..=usize::from(rank).min(7)]
            ),
        ));
    }
    // NIfTI: a slope of 0 means "not scaled".
    let data = values[..n]
        .iter()
        .map(|&v| if slope == 0.0 { v } else { v * slope + inter })
        .collect();
    Ok(Volume {
        channels,
        dims,
        data,
    })
}

/// Writes `v` as an uncompressed little-endian NIfTI-1 file of float32 (`x` fastest; a
/// volume of several channels is 4-D with the channels as `t`), under a private name renamed
/// into place, so that a reader never sees half a file. Any NIfTI viewer opens it.
pub fn write_nifti(path: &Path, v: &Volume) -> Result<(), NiftiError> {
    let mut h = vec![0u8; 352];
    let put_i16 =
        |h: &mut Vec<u8>, at: usize, x: i16| h[at..at + 2].copy_from_slice(&x.to_le_bytes());
    let put_f32 =
        |h: &mut Vec<u8>, at: usize, x: f32| h[at..at + 4].copy_from_slice(&x.to_le_bytes());
    h[0..4].copy_from_slice(&348i32.to_le_bytes());
    let [d, hh, w] = v.dims.map(|x| i16::try_from(x).unwrap_or(i16::MAX));
    let c = i16::try_from(v.channels).unwrap_or(i16::MAX);
    let dim: [i16; 8] = [if c > 1 { 4 } else { 3 }, w, hh, d, c.max(1), 1, 1, 1];
    for (i, x) in dim.iter().enumerate() {
        put_i16(&mut h, 40 + 2 * i, *x);
    }
    put_i16(&mut h, 70, 16); // datatype: float32
    put_i16(&mut h, 72, 32); // bitpix
    for i in 0..8 {
        put_f32(&mut h, 76 + 4 * i, 1.0); // pixdim
    }
    put_f32(&mut h, 108, 352.0); // vox_offset
    put_f32(&mut h, 112, 1.0); // scl_slope
    h[148..148 + 20].copy_from_slice(b"workbench volume   \0");
    h[344..348].copy_from_slice(b"n+1\0");
    let mut bytes = h;
    bytes.reserve(v.data.len() * 4);
    for x in &v.data {
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    let tmp = path.with_extension("nii.part");
    std::fs::write(&tmp, &bytes).map_err(|e| named(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| named(path, e))
}

/// Reads every channel of a NIfTI-1 file (the 4th dimension as channels), as the volume
/// viewer reads the files [`write_nifti`] wrote.
pub fn read_channels(path: &Path) -> Result<Volume, NiftiError> {
    read(path, true)
}

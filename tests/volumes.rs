//! The NIfTI volume reader (seed 003's data): files written byte by byte by the test (both
//! byte orders, scaling, gzip, 4-D) and the bad cases, then nibabel's own test volumes,
//! fetched from its wheel into the cache by `scripts/setup.sh`.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};

use workbench::engine::data::volumes::{read_nifti, Volume};

/// A NIfTI-1 single file: a 348-byte header, 4 bytes of extension flag, then the data.
struct Nii {
    dims: Vec<u16>,
    datatype: i16,
    bitpix: i16,
    slope: f32,
    inter: f32,
    big_endian: bool,
    data: Vec<u8>,
    sizeof_hdr: i32,
}

impl Nii {
    fn bytes(&self) -> Vec<u8> {
        let mut h = vec![0u8; 352];
        let be = self.big_endian;
        let put16 = |h: &mut Vec<u8>, at: usize, v: i16| {
            let b = if be { v.to_be_bytes() } else { v.to_le_bytes() };
            h[at..at + 2].copy_from_slice(&b);
        };
        let put32 = |h: &mut Vec<u8>, at: usize, v: [u8; 4]| h[at..at + 4].copy_from_slice(&v);
        let i32b = |v: i32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        let f32b = |v: f32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        put32(&mut h, 0, i32b(self.sizeof_hdr));
        put16(&mut h, 40, self.dims.len() as i16);
        for (i, d) in self.dims.iter().enumerate() {
            put16(&mut h, 42 + 2 * i, *d as i16);
        }
        for i in self.dims.len()..7 {
            put16(&mut h, 42 + 2 * i, 1);
        }
        put16(&mut h, 70, self.datatype);
        put16(&mut h, 72, self.bitpix);
        for i in 0..8 {
            put32(&mut h, 76 + 4 * i, f32b(1.0)); // pixdim
        }
        put32(&mut h, 108, f32b(352.0)); // vox_offset
        put32(&mut h, 112, f32b(self.slope));
        put32(&mut h, 116, f32b(self.inter));
        h[344..348].copy_from_slice(b"n+1\0");
        h.extend_from_slice(&self.data);
        h
    }

    fn write(&self, path: &Path) {
        let bytes = self.bytes();
        if path.extension().is_some_and(|e| e == "gz") {
            let f = std::fs::File::create(path).unwrap();
            let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::default());
            gz.write_all(&bytes).unwrap();
            gz.finish().unwrap();
        } else {
            std::fs::write(path, bytes).unwrap();
        }
    }
}

fn int16_volume(dims: &[u16], big_endian: bool) -> Nii {
    let n: usize = dims.iter().map(|&d| usize::from(d)).product();
    let data = (0..n as i16)
        .flat_map(|v| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        })
        .collect();
    Nii {
        dims: dims.to_vec(),
        datatype: 4,
        bitpix: 16,
        slope: 0.0,
        inter: 0.0,
        big_endian,
        data,
        sizeof_hdr: 348,
    }
}

#[test]
fn both_byte_orders_scaling_gzip_and_the_first_of_four_dimensions() {
    let dir = tempfile::tempdir().unwrap();
    let want: Vec<f32> = (0..4 * 3 * 2).map(|v| v as f32).collect();
    for (name, big) in [
        ("le.nii", false),
        ("be.nii", true),
        ("le.nii.gz", false),
        ("be.nii.gz", true),
    ] {
        let p = dir.path().join(name);
        int16_volume(&[4, 3, 2], big).write(&p);
        let v = read_nifti(&p).unwrap_or_else(|e| panic!("{e}"));
        // x fastest: [D, H, W] = [z, y, x] = [2, 3, 4].
        assert_eq!(v, Volume::scalar([2, 3, 4], want.clone()), "{name}");
    }
    // scl_slope and scl_inter apply; a slope of 0 means unscaled (above).
    let mut scaled = int16_volume(&[4, 3, 2], true);
    scaled.slope = 0.5;
    scaled.inter = -3.0;
    let p = dir.path().join("scaled.nii");
    scaled.write(&p);
    let v = read_nifti(&p).unwrap();
    assert_eq!(v.data[10], 10.0 * 0.5 - 3.0);
    // A 4-D file gives its first volume.
    let p = dir.path().join("t.nii.gz");
    int16_volume(&[4, 3, 2, 3], false).write(&p);
    let v = read_nifti(&p).unwrap();
    assert_eq!((v.dims, &v.data[..]), ([2, 3, 4], &want[..]));
    // float32 too.
    let mut f = int16_volume(&[2, 2, 2], false);
    f.datatype = 16;
    f.bitpix = 32;
    f.data = (0..8)
        .flat_map(|v| (v as f32 * 0.25).to_le_bytes())
        .collect();
    let p = dir.path().join("f.nii");
    f.write(&p);
    assert_eq!(read_nifti(&p).unwrap().data[3], 0.75);
}

#[test]
fn nifti_two_two_dimensions_colour_and_truncation_name_their_field() {
    let dir = tempfile::tempdir().unwrap();
    let case = |name: &str, nii: Nii| -> String {
        let p = dir.path().join(name);
        nii.write(&p);
        read_nifti(&p).unwrap_err().to_string()
    };
    let mut two = int16_volume(&[4, 3, 2], false);
    two.sizeof_hdr = 540;
    let e = case("v2.nii.gz", two);
    assert!(
        e.contains("v2.nii.gz") && e.contains("NIfTI-2 file (sizeof_hdr = 540)"),
        "{e}"
    );
    let e = case("flat.nii", int16_volume(&[4, 3], false));
    assert!(e.contains("dim[0] = 2: a 2-D image"), "{e}");
    let mut rgb = int16_volume(&[2, 2, 2], false);
    rgb.datatype = 128;
    rgb.bitpix = 24;
    rgb.data = vec![0; 8 * 3];
    let e = case("rgb.nii", rgb);
    assert!(
        e.contains("datatype = 128") && e.contains("not a real scalar type"),
        "{e}"
    );
    let mut cut = int16_volume(&[4, 3, 2], false);
    cut.data.truncate(10);
    let e = case("cut.nii", cut);
    assert!(e.contains("cut.nii"), "{e}");
    let p = dir.path().join("text.nii");
    std::fs::write(&p, "not a volume at all").unwrap();
    let e = read_nifti(&p).unwrap_err().to_string();
    assert!(e.contains("sizeof_hdr"), "{e}");
}

fn nibabel(name: &str) -> PathBuf {
    let dir = std::env::var_os("WORKBENCH_VOLUMES").map_or_else(
        || {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/workbench/volumes/nibabel-5.4.2")
        },
        PathBuf::from,
    );
    let p = dir.join(name);
    assert!(
        p.is_file(),
        "{} is missing: scripts/setup.sh fetches nibabel's test volumes",
        p.display()
    );
    p
}

/// nibabel's own test volumes: a big-endian int16 anatomical scan, a gzipped 4-D functional
/// series, and a NIfTI-2 file that must be refused by name.
#[test]
fn real_volumes_from_nibabels_wheel() {
    let v = read_nifti(&nibabel("anatomical.nii")).unwrap();
    // 33 x 41 x 25 (x, y, z), big-endian int16.
    assert_eq!(v.dims, [25, 41, 33]);
    // The range and mean an independent parse of the file gives (struct.unpack, big-endian).
    let (lo, hi) = v
        .data
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    assert_eq!((lo, hi), (-610.0, 30393.0));
    let mean = v.data.iter().map(|&x| f64::from(x)).sum::<f64>() / v.data.len() as f64;
    assert!((mean - 8401.0667).abs() < 1e-3, "{mean}");
    let t = read_nifti(&nibabel("example4d.nii.gz")).unwrap();
    assert_eq!(t.dims, [24, 96, 128]);
    let e = read_nifti(&nibabel("example_nifti2.nii.gz"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("NIfTI-2"), "{e}");
}

//! Tensors to RGBA images for the run log and the GUI: sample grids and frame strips.

use tch::{Device, Kind, Tensor};

use crate::engine::trainer::Rgba;

/// Lays out `[N, 3, S, S]` images in [0, 1] as a grid with 2 px white gaps.
#[must_use]
pub fn grid_rgba(images: &Tensor, cols: i64) -> Rgba {
    let (n, _, s, _) = images.size4().unwrap_or((0, 3, 0, 0));
    let rows = (n + cols - 1) / cols;
    let pad = 2;
    let (w, h) = (cols * (s + pad) + pad, rows * (s + pad) + pad);
    let bytes: Vec<u8> = Vec::try_from(
        (images.clamp(0.0, 1.0) * 255.0)
            .round()
            .to_kind(Kind::Uint8)
            .to_device(Device::Cpu)
            .permute([0, 2, 3, 1])
            .contiguous()
            .flatten(0, -1),
    )
    .unwrap_or_default();
    let mut rgba = vec![255u8; (w * h * 4) as usize];
    for i in 0..n {
        let (gx, gy) = ((i % cols) * (s + pad) + pad, (i / cols) * (s + pad) + pad);
        for y in 0..s {
            for x in 0..s {
                let src = (((i * s + y) * s + x) * 3) as usize;
                let dst = (((gy + y) * w + gx + x) * 4) as usize;
                if src + 3 <= bytes.len() {
                    rgba[dst..dst + 3].copy_from_slice(&bytes[src..src + 3]);
                }
            }
        }
    }
    Rgba {
        width: w as u32,
        height: h as u32,
        pixels: rgba,
    }
}

/// Frames `[F, C, H, W]` in [-1, 1] side by side as RGBA.
pub fn strip(frames: &Tensor) -> Rgba {
    let (f, _, h, w) = frames.size4().unwrap_or((0, 3, 0, 0));
    let img = ((frames
        .detach()
        .to_device(Device::Cpu)
        .to_kind(Kind::Float)
        .clamp(-1.0, 1.0)
        + 1.0)
        * 127.5)
        .round()
        .to_kind(Kind::Uint8)
        .permute([2, 0, 3, 1])
        .reshape([h, f * w, 3]);
    let alpha = Tensor::full([h, f * w, 1], 255, (Kind::Uint8, Device::Cpu));
    let rgba = Tensor::cat(&[img, alpha], 2).contiguous().view([-1]);
    Rgba {
        width: (f * w) as u32,
        height: h as u32,
        pixels: Vec::try_from(rgba).unwrap_or_default(),
    }
}

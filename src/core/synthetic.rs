//! The embedded default dataset: procedural sprites (other_seeds_spec §4.3), deterministic by
//! seed. One disc or square in one of five palette colours, of random size and position, on a
//! white background.

use crate::core::rng::{derive_seed, SplitMix64, Stream};

/// Palette of the sprites (RGB).
pub const PALETTE: [[u8; 3]; 5] = [
    [220, 40, 40],
    [40, 110, 220],
    [40, 170, 70],
    [240, 180, 20],
    [140, 60, 180],
];

/// Renders sprite `index` of the set `seed` as RGB8, `size` x `size`, row-major HWC.
#[must_use]
pub fn sprite(seed: u64, index: u64, size: u32) -> Vec<u8> {
    let mut rng = SplitMix64::new(derive_seed(seed, Stream::Synthetic, index));
    let s = f64::from(size);
    let colour = PALETTE[rng.below(PALETTE.len() as u64) as usize];
    let square = rng.below(2) == 0;
    let radius = rng.range_f64(0.15 * s, 0.32 * s);
    let cx = rng.range_f64(radius, s - radius);
    let cy = rng.range_f64(radius, s - radius);
    let mut out = vec![255u8; (size * size * 3) as usize];
    for y in 0..size {
        for x in 0..size {
            let (px, py) = (f64::from(x) + 0.5 - cx, f64::from(y) + 0.5 - cy);
            let inside = if square {
                px.abs() <= radius * 0.85 && py.abs() <= radius * 0.85
            } else {
                px * px + py * py <= radius * radius
            };
            if inside {
                let at = ((y * size + x) * 3) as usize;
                out[at..at + 3].copy_from_slice(&colour);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_varied() {
        assert_eq!(sprite(1, 5, 32), sprite(1, 5, 32));
        assert_ne!(sprite(1, 5, 32), sprite(1, 6, 32));
        let img = sprite(3, 0, 32);
        let white = img.chunks(3).filter(|p| p == &[255, 255, 255]).count();
        assert!(
            white > 32 * 32 / 3 && white < 32 * 32,
            "background and a shape: {white}"
        );
    }
}

/// The embedded default video: `frames` frames of `w x h` RGB8 (row-major HWC, one frame after
/// another), deterministic by seed. Three to five discs and squares in the palette's colours
/// move at constant speeds and bounce off the borders, over a background whose colour drifts
/// slowly: appearance, motion and occlusion, all learnable.
#[must_use]
pub fn moving_shapes(seed: u64, frames: u32, w: u32, h: u32) -> Vec<u8> {
    struct Shape {
        colour: [u8; 3],
        square: bool,
        r: f64,
        x: f64,
        y: f64,
        vx: f64,
        vy: f64,
    }
    let mut rng = SplitMix64::new(derive_seed(seed, Stream::Synthetic, u64::MAX));
    let (wf, hf) = (f64::from(w), f64::from(h));
    let side = wf.min(hf);
    let count = 3 + rng.below(3) as usize;
    let mut shapes: Vec<Shape> = (0..count)
        .map(|_| {
            let r = rng.range_f64(0.08 * side, 0.18 * side);
            let speed = rng.range_f64(0.01, 0.03) * side;
            let angle = rng.range_f64(0.0, std::f64::consts::TAU);
            Shape {
                colour: PALETTE[rng.below(PALETTE.len() as u64) as usize],
                square: rng.below(2) == 0,
                r,
                x: rng.range_f64(r, wf - r),
                y: rng.range_f64(r, hf - r),
                vx: speed * angle.cos(),
                vy: speed * angle.sin(),
            }
        })
        .collect();
    let phase = rng.range_f64(0.0, std::f64::consts::TAU);
    let mut out = Vec::with_capacity((frames * w * h * 3) as usize);
    for t in 0..frames {
        let tt = f64::from(t) * 0.01 + phase;
        let bg = [
            (200.0 + 40.0 * tt.sin()) as u8,
            (200.0 + 40.0 * (tt * 1.3).cos()) as u8,
            (210.0 + 30.0 * (tt * 0.7).sin()) as u8,
        ];
        let start = out.len();
        for y in 0..h {
            for _ in 0..w {
                // A gentle vertical gradient so that the background is not flat.
                let g = (f64::from(y) / hf * 30.0) as u8;
                out.extend_from_slice(&[
                    bg[0].saturating_sub(g),
                    bg[1].saturating_sub(g),
                    bg[2].saturating_sub(g / 2),
                ]);
            }
        }
        let frame = &mut out[start..];
        for s in &shapes {
            let (x0, x1) = (
                (s.x - s.r).floor().max(0.0) as u32,
                (s.x + s.r).ceil().min(wf) as u32,
            );
            let (y0, y1) = (
                (s.y - s.r).floor().max(0.0) as u32,
                (s.y + s.r).ceil().min(hf) as u32,
            );
            for y in y0..y1 {
                for x in x0..x1 {
                    let (dx, dy) = (f64::from(x) + 0.5 - s.x, f64::from(y) + 0.5 - s.y);
                    let inside = if s.square {
                        dx.abs() <= s.r && dy.abs() <= s.r
                    } else {
                        dx * dx + dy * dy <= s.r * s.r
                    };
                    if inside {
                        let i = ((y * w + x) * 3) as usize;
                        frame[i..i + 3].copy_from_slice(&s.colour);
                    }
                }
            }
        }
        for s in &mut shapes {
            s.x += s.vx;
            s.y += s.vy;
            if s.x < s.r || s.x > wf - s.r {
                s.vx = -s.vx;
                s.x = s.x.clamp(s.r, wf - s.r);
            }
            if s.y < s.r || s.y > hf - s.r {
                s.vy = -s.vy;
                s.y = s.y.clamp(s.r, hf - s.r);
            }
        }
    }
    out
}

#[cfg(test)]
mod video_tests {
    use super::*;

    #[test]
    fn moving_shapes_are_deterministic_and_move() {
        let a = moving_shapes(7, 5, 32, 24);
        assert_eq!(a.len(), 5 * 32 * 24 * 3);
        assert_eq!(a, moving_shapes(7, 5, 32, 24));
        assert_ne!(a, moving_shapes(8, 5, 32, 24));
        let f = 32 * 24 * 3;
        assert_ne!(a[..f], a[4 * f..5 * f], "frames differ over time");
    }
}

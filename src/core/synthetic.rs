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

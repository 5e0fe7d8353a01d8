//! Drawing on RGBA8 buffers without a font library: box outlines and numbers in a 3x5 pixel
//! font. Used to render GAAD regions over a frame (`workbench gaad --image`).

/// Rows of the digits 0-9, 3 bits wide (bit 2 is the left column).
const DIGITS: [[u8; 5]; 10] = [
    [0b111, 0b101, 0b101, 0b101, 0b111],
    [0b010, 0b110, 0b010, 0b010, 0b111],
    [0b111, 0b001, 0b111, 0b100, 0b111],
    [0b111, 0b001, 0b111, 0b001, 0b111],
    [0b101, 0b101, 0b111, 0b001, 0b001],
    [0b111, 0b100, 0b111, 0b001, 0b111],
    [0b111, 0b100, 0b111, 0b101, 0b111],
    [0b111, 0b001, 0b010, 0b010, 0b010],
    [0b111, 0b101, 0b111, 0b101, 0b111],
    [0b111, 0b101, 0b111, 0b001, 0b111],
];

/// An RGBA8 image being drawn on.
#[derive(Debug)]
pub struct Canvas<'a> {
    pub width: u32,
    pub height: u32,
    pub rgba: &'a mut [u8],
}

impl Canvas<'_> {
    fn put(&mut self, x: i64, y: i64, c: [u8; 4]) {
        if x < 0 || y < 0 || x >= i64::from(self.width) || y >= i64::from(self.height) {
            return;
        }
        let i = (y as usize * self.width as usize + x as usize) * 4;
        if let Some(px) = self.rgba.get_mut(i..i + 4) {
            let a = f32::from(c[3]) / 255.0;
            for k in 0..3 {
                px[k] = (f32::from(c[k]) * a + f32::from(px[k]) * (1.0 - a)).round() as u8;
            }
            px[3] = 255;
        }
    }

    /// The outline of `[x1, y1, x2, y2]` (pixels, floats), `thickness` px inside the box.
    pub fn rect(&mut self, b: [f64; 4], thickness: i64, c: [u8; 4]) {
        let (x1, y1) = (b[0].floor() as i64, b[1].floor() as i64);
        let (x2, y2) = ((b[2].ceil() as i64) - 1, (b[3].ceil() as i64) - 1);
        for t in 0..thickness {
            for x in x1..=x2 {
                self.put(x, y1 + t, c);
                self.put(x, y2 - t, c);
            }
            for y in y1..=y2 {
                self.put(x1 + t, y, c);
                self.put(x2 - t, y, c);
            }
        }
    }

    /// A number in the 3x5 font at `(x, y)`, each font pixel `scale` px, on a dark backing.
    pub fn number(&mut self, x: i64, y: i64, n: usize, scale: i64, c: [u8; 4]) {
        let text = n.to_string();
        let w = text.len() as i64 * 4 * scale + scale;
        for yy in y..y + 7 * scale {
            for xx in x..x + w {
                self.put(xx, yy, [0, 0, 0, 160]);
            }
        }
        for (i, ch) in text.bytes().enumerate() {
            let glyph = DIGITS[usize::from(ch - b'0')];
            let gx = x + scale + i as i64 * 4 * scale;
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..3 {
                    if bits & (0b100 >> col) != 0 {
                        for dy in 0..scale {
                            for dx in 0..scale {
                                self.put(
                                    gx + col * scale + dx,
                                    y + scale + row as i64 * scale + dy,
                                    c,
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A distinct colour per region index (golden-angle hues).
#[must_use]
pub fn region_rgb(i: usize) -> [u8; 3] {
    let h = (i as f64 * 0.618_034).fract() * 6.0;
    let x = 1.0 - (h % 2.0 - 1.0).abs();
    let (r, g, b) = match h as u32 {
        0 => (1.0, x, 0.0),
        1 => (x, 1.0, 0.0),
        2 => (0.0, 1.0, x),
        3 => (0.0, x, 1.0),
        4 => (x, 0.0, 1.0),
        _ => (1.0, 0.0, x),
    };
    [(r * 255.0) as u8, (g * 255.0) as u8, (b * 255.0) as u8]
}

/// Draws regions over an RGBA8 frame: outlines and their index, in order.
pub fn regions(canvas: &mut Canvas<'_>, boxes: &[[f64; 4]]) {
    let scale = i64::from((canvas.width.min(canvas.height) / 160).max(1));
    for (i, b) in boxes.iter().enumerate() {
        let [r, g, bl] = region_rgb(i);
        canvas.rect(*b, scale, [r, g, bl, 230]);
    }
    // Labels of boxes that share a corner (box 0 is the whole frame) are set side by side.
    let mut placed: Vec<(i64, i64, i64)> = Vec::new();
    for (i, b) in boxes.iter().enumerate() {
        let [r, g, bl] = region_rgb(i);
        let width = (i.to_string().len() as i64 * 4 + 1) * scale;
        let (mut x, y) = (b[0].floor() as i64 + scale, b[1].floor() as i64 + scale);
        while let Some(&(px, _, pw)) = placed
            .iter()
            .find(|(px, py, pw)| (y - py).abs() < 7 * scale && x < px + pw && *px < x + width)
        {
            x = px + pw + scale;
        }
        placed.push((x, y, width));
        canvas.number(x, y, i, scale, [r, g, bl, 255]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outlines_and_digits_land_on_the_right_pixels() {
        let (w, h) = (20u32, 12u32);
        let mut px = vec![255u8; (w * h * 4) as usize];
        let mut c = Canvas {
            width: w,
            height: h,
            rgba: &mut px,
        };
        c.rect([2.0, 3.0, 10.0, 9.0], 1, [255, 0, 0, 255]);
        let at = |px: &[u8], x: u32, y: u32| {
            let i = ((y * w + x) * 4) as usize;
            [px[i], px[i + 1], px[i + 2]]
        };
        assert_eq!(at(&px, 2, 3), [255, 0, 0]);
        assert_eq!(at(&px, 9, 8), [255, 0, 0]);
        assert_eq!(at(&px, 5, 5), [255, 255, 255], "inside stays untouched");
        let mut c = Canvas {
            width: w,
            height: h,
            rgba: &mut px,
        };
        c.number(12, 0, 7, 1, [0, 255, 0, 255]);
        // The 7's top row is lit, its bottom-left is not (backing only).
        assert_eq!(at(&px, 13, 1), [0, 255, 0]);
        assert_ne!(at(&px, 13, 5), [0, 255, 0]);
        // Drawing off the canvas is clipped, not a panic.
        let mut c = Canvas {
            width: w,
            height: h,
            rgba: &mut px,
        };
        c.rect([-5.0, -5.0, 50.0, 50.0], 2, [0, 0, 255, 255]);
        regions(&mut c, &[[0.0, 0.0, 20.0, 12.0], [15.0, 8.0, 25.0, 20.0]]);
    }
}

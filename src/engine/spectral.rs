//! Region crops and spectral patch transforms of the WuBu-GAAD model (spec section 3), batched
//! on the device and differentiable:
//! - [`roi_align`]: crop-and-resize of boxes to `ph x pw` (RoIAlign, aligned sampling);
//! - [`dft`] / [`idft`]: `rfft2` with ortho norm, real and imaginary parts kept;
//! - [`dct2`] / [`idct2`]: the orthonormal 2-D DCT-II as two matrix products;
//! - [`tanh_normalise`] / [`tanh_denormalise`]: guide 000's optional squashing, with a safe
//!   inverse;
//! - [`assemble`]: patches pasted back into frames, averaged by a coverage count, with
//!   gradients (the original ran this under `no_grad`, which cut the pixel critic's signal to
//!   the generator; spec 11.1).

use tch::{Kind, Tensor};

/// Bilinear sampling with border clamping, as `grid_sampler` codes it.
const BILINEAR: i64 = 0;
const PAD_BORDER: i64 = 1;

/// Crops `boxes` (`[K, 5]`: batch index, x1, y1, x2, y2 in input pixels times
/// `1 / spatial_scale`) from `input` (`[B, C, H, W]`) to `[K, C, ph, pw]`, as torchvision's
/// `roi_align(aligned=True, sampling_ratio=-1)`: each bin is the mean of a
/// `ceil(box_h / ph) x ceil(box_w / pw)` grid of bilinear samples, with the half-pixel shift.
/// Boxes are batched by their sampling grid. Differentiable with respect to `input`. (Unlike
/// torchvision, samples beyond a pixel outside the frame take the edge value, not 0.)
pub fn roi_align(input: &Tensor, boxes: &Tensor, ph: i64, pw: i64, spatial_scale: f64) -> Tensor {
    let (_, c, _, _) = input.size4().unwrap_or((0, 0, 0, 0));
    let k = boxes.size()[0];
    let flat: Vec<f32> = Vec::try_from(
        boxes
            .to_kind(Kind::Float)
            .to_device(tch::Device::Cpu)
            .contiguous()
            .view([-1]),
    )
    .unwrap_or_default();
    let mut groups: std::collections::BTreeMap<(i64, i64), Vec<i64>> = Default::default();
    for (i, b) in flat.chunks(5).enumerate() {
        let rw = f64::from(b[3] - b[1]) * spatial_scale;
        let rh = f64::from(b[4] - b[2]) * spatial_scale;
        let gw = ((rw / pw as f64).ceil() as i64).max(1);
        let gh = ((rh / ph as f64).ceil() as i64).max(1);
        groups.entry((gh, gw)).or_default().push(i as i64);
    }
    if groups.len() == 1 {
        let (&(gh, gw), _) = groups.iter().next().unwrap_or((&(1, 1), &Vec::new()));
        return roi_align_grid(input, boxes, ph, pw, spatial_scale, gh, gw);
    }
    let mut out = Tensor::zeros([k, c, ph, pw], (input.kind(), input.device()));
    for ((gh, gw), idx) in groups {
        let idx = Tensor::from_slice(&idx).to_device(input.device());
        let crops = roi_align_grid(
            input,
            &boxes.index_select(0, &idx),
            ph,
            pw,
            spatial_scale,
            gh,
            gw,
        );
        out = out.index_copy(0, &idx, &crops);
    }
    out
}

/// [`roi_align`] with a fixed `gh x gw` sampling grid per bin.
fn roi_align_grid(
    input: &Tensor,
    boxes: &Tensor,
    ph: i64,
    pw: i64,
    spatial_scale: f64,
    gh: i64,
    gw: i64,
) -> Tensor {
    let (_, c, h, w) = input.size4().unwrap_or((0, 0, 0, 0));
    let k = boxes.size()[0];
    let opts = (input.kind(), input.device());
    let b = boxes.to_kind(input.kind());
    let col = |i: i64| b.select(1, i).view([k, 1]);
    let (x1, y1) = (col(1) * spatial_scale - 0.5, col(2) * spatial_scale - 0.5);
    let (x2, y2) = (col(3) * spatial_scale - 0.5, col(4) * spatial_scale - 0.5);
    // Sample positions inside the box, in input pixel indices (pixel i's centre at i).
    let frac = |n: i64| (Tensor::arange(n, opts) + 0.5) / n as f64;
    let xs = &x1 + (&x2 - &x1) * frac(pw * gw).view([1, pw * gw]);
    let ys = &y1 + (&y2 - &y1) * frac(ph * gh).view([1, ph * gh]);
    // To grid_sample's normalised coordinates (align_corners = false).
    let gx = (xs * 2.0 + 1.0) / w as f64 - 1.0;
    let gy = (ys * 2.0 + 1.0) / h as f64 - 1.0;
    let grid = Tensor::stack(
        &[
            gx.view([k, 1, pw * gw])
                .expand([k, ph * gh, pw * gw], false),
            gy.view([k, ph * gh, 1])
                .expand([k, ph * gh, pw * gw], false),
        ],
        3,
    );
    let idx = boxes.select(1, 0).to_kind(Kind::Int64);
    let feats = input.index_select(0, &idx);
    let sampled = Tensor::grid_sampler(&feats, &grid, BILINEAR, PAD_BORDER, false);
    sampled
        .avg_pool2d([gh, gw], [gh, gw], [0, 0], false, true, None::<i64>)
        .view([k, c, ph, pw])
}

/// `[.., ph, pw]` real patches to `[.., 2, ph, pw/2+1]` (real, imaginary) ortho spectra.
pub fn dft(patches: &Tensor) -> Tensor {
    let f = patches.fft_rfft2(None::<&[i64]>, [-2i64, -1].as_slice(), "ortho");
    Tensor::stack(&[f.real(), f.imag()], -3)
}

/// The inverse of [`dft`]: `[.., 2, ph, pw/2+1]` back to `[.., ph, pw]`.
pub fn idft(coeffs: &Tensor, ph: i64, pw: i64) -> Tensor {
    let re = coeffs.select(-3, 0);
    let im = coeffs.select(-3, 1);
    Tensor::complex(&re.contiguous(), &im.contiguous()).fft_irfft2(
        Some([ph, pw].as_slice()),
        [-2i64, -1].as_slice(),
        "ortho",
    )
}

/// The orthonormal DCT-II matrix `D` (`n x n`, `D[k][i] = a_k cos(pi (2i+1) k / 2n)`), so that
/// `D x` is the DCT of `x` and `D^T y` its inverse.
pub fn dct_matrix(n: i64, kind: Kind, device: tch::Device) -> Tensor {
    let nf = n as f64;
    let mut m = Vec::with_capacity((n * n) as usize);
    for k in 0..n {
        let a = if k == 0 {
            (1.0 / nf).sqrt()
        } else {
            (2.0 / nf).sqrt()
        };
        for i in 0..n {
            m.push(
                a * (std::f64::consts::PI * (2.0 * i as f64 + 1.0) * k as f64 / (2.0 * nf)).cos(),
            );
        }
    }
    Tensor::from_slice(&m)
        .view([n, n])
        .to_kind(kind)
        .to_device(device)
}

/// Orthonormal 2-D DCT-II over the last two dimensions.
pub fn dct2(x: &Tensor) -> Tensor {
    let s = x.size();
    let (h, w) = (s[s.len() - 2], s[s.len() - 1]);
    let dh = dct_matrix(h, x.kind(), x.device());
    let dw = dct_matrix(w, x.kind(), x.device());
    dh.matmul(x).matmul(&dw.tr())
}

/// The inverse of [`dct2`].
pub fn idct2(y: &Tensor) -> Tensor {
    let s = y.size();
    let (h, w) = (s[s.len() - 2], s[s.len() - 1]);
    let dh = dct_matrix(h, y.kind(), y.device());
    let dw = dct_matrix(w, y.kind(), y.device());
    dh.tr().matmul(y).matmul(&dw)
}

/// Guide 000's squashing of coefficients into (-1, 1): `tanh(x / scale)`.
pub fn tanh_normalise(x: &Tensor, scale: f64) -> Tensor {
    (x / scale).tanh()
}

/// The inverse of [`tanh_normalise`], safe at ±1: the input is clamped to
/// `±(1 − 8·eps_f32)` first, so a saturated value maps to a large finite coefficient.
pub fn tanh_denormalise(y: &Tensor, scale: f64) -> Tensor {
    let lim = 1.0 - 8.0 * f64::from(f32::EPSILON);
    y.clamp(-lim, lim).atanh() * scale
}

/// `x` clamped to [-1, 1] with the identity's gradient: a pixel driven out of range is still
/// pulled back by its loss, where a plain clamp would give it no gradient at all and leave it
/// stuck (a generator that overshoots early would never recover).
pub fn straight_through_clamp(x: &Tensor) -> Tensor {
    x + (x.clamp(-1.0, 1.0) - x).detach()
}

/// Pastes patches (`[R, C, ph, pw]`) into an `[C, H, W]` frame: each patch is resized
/// (bilinear) to its box rounded to whole pixels and clamped to the frame, summed, and the
/// sum divided by how many boxes cover each pixel; uncovered pixels are 0; the result is
/// clamped to [-1, 1] by [`straight_through_clamp`]. Differentiable with respect to the patches.
pub fn assemble(patches: &Tensor, boxes: &[[f64; 4]], h: i64, w: i64) -> Tensor {
    assemble_weighted(patches, boxes, h, w, 0.0, 0.0)
}

/// [`assemble`] where overlapping boxes weigh `(patch pixels per frame pixel)^sharpness`: 0
/// is the plain mean, and higher values let the finest box covering a pixel decide it. With
/// `feather` above 0 a box's weight also falls linearly to (almost) 0 over that share of its
/// half-width and half-height at its edges, so boxes that overlap cross-fade instead of meeting
/// at a step (a pixel only one box covers is that box's, whatever its weight).
pub fn assemble_weighted(
    patches: &Tensor,
    boxes: &[[f64; 4]],
    h: i64,
    w: i64,
    sharpness: f64,
    feather: f64,
) -> Tensor {
    let (r, c, ph, pw) = patches.size4().unwrap_or((0, 0, 0, 0));
    let mut weights = Vec::with_capacity(boxes.len());
    let opts = (patches.kind(), patches.device());
    let mut grids = Vec::with_capacity(boxes.len());
    let mut masks = Vec::with_capacity(boxes.len());
    let xs = Tensor::arange(w, opts) + 0.5;
    let ys = Tensor::arange(h, opts) + 0.5;
    for b in boxes.iter().take(r as usize) {
        let x1 = (b[0].round_ties_even()).clamp(0.0, w as f64);
        let y1 = (b[1].round_ties_even()).clamp(0.0, h as f64);
        let x2 = (b[2].round_ties_even()).clamp(0.0, w as f64).max(x1);
        let y2 = (b[3].round_ties_even()).clamp(0.0, h as f64).max(y1);
        let (bw, bh) = ((x2 - x1).max(1e-6), (y2 - y1).max(1e-6));
        let density = ((ph * pw) as f64 / (bw * bh)).max(1e-6);
        weights.push(density.powf(sharpness) as f32);
        let u = (&xs - x1) / bw * 2.0 - 1.0;
        let v = (&ys - y1) / bh * 2.0 - 1.0;
        grids.push(Tensor::stack(
            &[
                u.view([1, w]).expand([h, w], false),
                v.view([h, 1]).expand([h, w], false),
            ],
            2,
        ));
        let mut mx = xs.ge(x1).logical_and(&xs.lt(x2)).to_kind(patches.kind());
        let mut my = ys.ge(y1).logical_and(&ys.lt(y2)).to_kind(patches.kind());
        if feather > 0.0 {
            let ramp = |t: &Tensor| ((-t.abs() + 1.0) / feather).clamp(1e-3, 1.0);
            mx *= ramp(&u);
            my *= ramp(&v);
        }
        masks.push(my.view([h, 1]) * mx.view([1, w]));
    }
    let grid = Tensor::stack(&grids, 0);
    let mask = Tensor::stack(&masks, 0).view([r, 1, h, w]);
    let mask = if sharpness == 0.0 {
        mask
    } else {
        // Normalised by the largest weight, so that no weight underflows.
        let top = weights.iter().copied().fold(f32::MIN_POSITIVE, f32::max);
        let wts: Vec<f32> = weights.iter().map(|x| x / top).collect();
        mask * Tensor::from_slice(&wts)
            .to_device(patches.device())
            .to_kind(patches.kind())
            .view([r, 1, 1, 1])
    };
    let pasted = Tensor::grid_sampler(patches, &grid, BILINEAR, PAD_BORDER, false) * &mask;
    let sum = pasted.sum_dim_intlist([0i64].as_slice(), false, patches.kind());
    let count = mask.sum_dim_intlist([0i64].as_slice(), false, patches.kind());
    let covered = count.gt(0.0).to_kind(patches.kind());
    straight_through_clamp(&((sum / (count + 1e-12)) * covered)).view([c, h, w])
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().double_value(&[])
    }

    /// Sharpness 0 is the plain mean; a high sharpness lets the finer of two overlapping
    /// boxes decide the pixels they share.
    #[test]
    fn weighted_assembly_lets_the_finest_box_decide() {
        let boxes = [[0.0, 0.0, 8.0, 8.0], [0.0, 0.0, 4.0, 4.0]];
        let patches = Tensor::cat(
            &[
                Tensor::full([1, 1, 2, 2], -0.5, (Kind::Float, Device::Cpu)),
                Tensor::full([1, 1, 2, 2], 0.5, (Kind::Float, Device::Cpu)),
            ],
            0,
        );
        let plain = assemble(&patches, &boxes, 8, 8);
        assert!(plain.equal(&assemble_weighted(&patches, &boxes, 8, 8, 0.0, 0.0)));
        let at = |t: &Tensor, y: i64, x: i64| t.double_value(&[0, y, x]);
        assert!(
            (at(&plain, 1, 1) - 0.0).abs() < 1e-6,
            "the mean of -0.5 and 0.5"
        );
        let sharp = assemble_weighted(&patches, &boxes, 8, 8, 8.0, 0.0);
        // The small box samples 4x as densely: weight 4^8 against 1.
        assert!(
            (at(&sharp, 1, 1) - 0.5).abs() < 1e-4,
            "{}",
            at(&sharp, 1, 1)
        );
        assert!(
            (at(&sharp, 6, 6) + 0.5).abs() < 1e-6,
            "only the big box covers it"
        );
    }

    /// Two boxes of -0.5 and 0.5 that overlap by 8 pixels: hard boxes meet at a step of 0.5
    /// (the mean, then the other's value); feathered, the overlap is a ramp with no step
    /// larger than a few hundredths, and a pixel one box alone covers keeps its value.
    #[test]
    fn feathered_boxes_cross_fade_where_they_overlap() {
        let boxes = [[0.0, 0.0, 20.0, 4.0], [12.0, 0.0, 32.0, 4.0]];
        let patches = Tensor::cat(
            &[
                Tensor::full([1, 1, 2, 2], -0.5, (Kind::Float, Device::Cpu)),
                Tensor::full([1, 1, 2, 2], 0.5, (Kind::Float, Device::Cpu)),
            ],
            0,
        );
        let row =
            |t: &Tensor| -> Vec<f64> { (0..32).map(|x| t.double_value(&[0, 2, x])).collect() };
        let step = |r: &[f64]| {
            r.windows(2)
                .map(|p| (p[1] - p[0]).abs())
                .fold(0.0, f64::max)
        };
        let hard = row(&assemble_weighted(&patches, &boxes, 4, 32, 0.0, 0.0));
        assert!(step(&hard) >= 0.49, "{hard:?}");
        // The overlap is 8 of each box's 20 pixels: a ramp over 0.8 of the half-width.
        let soft = row(&assemble_weighted(&patches, &boxes, 4, 32, 0.0, 0.8));
        assert!(step(&soft) < 0.15, "{soft:?}");
        assert!((soft[2] + 0.5).abs() < 1e-6 && (soft[29] - 0.5).abs() < 1e-6);
        assert!(soft[16].abs() < 0.07, "the middle of the overlap: {soft:?}");
    }

    #[test]
    fn the_straight_through_clamp_clamps_values_but_not_gradients() {
        let x = Tensor::from_slice(&[-3.0f32, -0.5, 0.25, 2.0]).set_requires_grad(true);
        let y = straight_through_clamp(&x);
        assert_eq!(Vec::<f32>::try_from(&y).unwrap(), [-1.0, -0.5, 0.25, 1.0]);
        // d/dx of sum((y - 0)^2) = 2y for every element, the saturated ones included.
        y.square().sum(Kind::Float).backward();
        assert_eq!(
            Vec::<f32>::try_from(x.grad()).unwrap(),
            [-2.0, -1.0, 0.5, 2.0]
        );
    }

    #[test]
    fn dft_round_trips_and_keeps_real_and_imaginary_parts() {
        tch::manual_seed(0);
        let x = Tensor::rand([5, 3, 16, 16], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
        let f = dft(&x);
        assert_eq!(f.size(), [5, 3, 2, 16, 9]);
        assert_eq!(
            f.numel(),
            5 * 864,
            "864 values per 3x16x16 patch, as the spec says"
        );
        assert!(max_abs(&idft(&f, 16, 16), &x) < 1e-5);
        // Odd widths too.
        let y = Tensor::rand([2, 1, 7, 9], (Kind::Float, Device::Cpu));
        assert!(max_abs(&idft(&dft(&y), 7, 9), &y) < 1e-5);
        // Ortho: the DC term of a constant 16x16 patch of ones is 16.
        let dc = dft(&Tensor::ones([1, 1, 16, 16], (Kind::Float, Device::Cpu)));
        assert!((dc.double_value(&[0, 0, 0, 0, 0]) - 16.0).abs() < 1e-5);
    }

    #[test]
    fn dct_matches_a_float64_reference_and_round_trips() {
        let (h, w) = (6usize, 5usize);
        let vals: Vec<f64> = (0..h * w)
            .map(|i| ((i * 37 % 11) as f64 / 5.0) - 1.0)
            .collect();
        let x = Tensor::from_slice(&vals).view([1, 1, h as i64, w as i64]);
        let got = dct2(&x.to_kind(Kind::Float)).to_kind(Kind::Double);
        let pi = std::f64::consts::PI;
        let a = |k: usize, n: usize| {
            if k == 0 {
                (1.0 / n as f64).sqrt()
            } else {
                (2.0 / n as f64).sqrt()
            }
        };
        for u in 0..h {
            for v in 0..w {
                let mut s = 0.0;
                for y in 0..h {
                    for x in 0..w {
                        s += vals[y * w + x]
                            * (pi * (2 * y + 1) as f64 * u as f64 / (2 * h) as f64).cos()
                            * (pi * (2 * x + 1) as f64 * v as f64 / (2 * w) as f64).cos();
                    }
                }
                let want = a(u, h) * a(v, w) * s;
                let g = got.double_value(&[0, 0, u as i64, v as i64]);
                assert!((g - want).abs() < 1e-5, "({u},{v}): {g} vs {want}");
            }
        }
        tch::manual_seed(1);
        let p = Tensor::rand([4, 3, 8, 8], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
        assert!(max_abs(&idct2(&dct2(&p)), &p) < 1e-5);
    }

    #[test]
    fn the_tanh_normalisation_inverts_safely() {
        let x = Tensor::from_slice(&[-40.0f32, -3.0, 0.0, 2.5, 30.0]);
        let back = tanh_denormalise(&tanh_normalise(&x, 25.0), 25.0);
        assert!(max_abs(&back, &x) < 1e-3, "{back:?}");
        let edge = tanh_denormalise(&Tensor::from_slice(&[-1.0f32, 1.0, 1.5]), 25.0);
        assert!(edge.isfinite().all().int64_value(&[]) == 1);
    }

    #[test]
    fn roi_align_samples_bin_centres() {
        // A ramp image (value = x): a bin's mean is its centre's x.
        let (h, w) = (8i64, 12i64);
        let ramp = Tensor::arange(w, (Kind::Float, Device::Cpu))
            .view([1, 1, 1, w])
            .expand([1, 1, h, w], false)
            .contiguous();
        let boxes = Tensor::from_slice(&[0.0f32, 2.0, 1.0, 10.0, 7.0]).view([1, 5]);
        let out = roi_align(&ramp, &boxes, 3, 4, 1.0);
        assert_eq!(out.size(), [1, 1, 3, 4]);
        // aligned=True: bins of 2 px, 2 samples each, centred at x = 2 - 0.5 + 2j + 1:
        // 2.5, 4.5, 6.5, 8.5.
        for (j, want) in [2.5f64, 4.5, 6.5, 8.5].iter().enumerate() {
            assert!((out.double_value(&[0, 0, 1, j as i64]) - want).abs() < 1e-5);
        }
        // The whole frame at its own size returns the frame itself.
        tch::manual_seed(2);
        let img = Tensor::rand([2, 3, h, w], (Kind::Float, Device::Cpu));
        let full = Tensor::from_slice(&[1.0f32, 0.0, 0.0, w as f32, h as f32]).view([1, 5]);
        let same = roi_align(&img, &full, h, w, 1.0);
        assert!(max_abs(&same, &img.narrow(0, 1, 1)) < 1e-5);
        // Boxes with different sampling grids in one call equal separate calls, in order.
        let mixed = Tensor::from_slice(&[0.0f32, 0.0, 0.0, 12.0, 8.0, 1.0, 3.0, 2.0, 5.0, 4.0])
            .view([2, 5]);
        let both = roi_align(&img, &mixed, 2, 2, 1.0);
        for i in 0..2 {
            let one = roi_align(&img, &mixed.narrow(0, i, 1), 2, 2, 1.0);
            assert!(max_abs(&both.narrow(0, i, 1), &one) < 1e-6);
        }
    }

    #[test]
    fn crops_assemble_back_into_the_frame_with_gradients() {
        tch::manual_seed(3);
        let (h, w) = (16i64, 20i64);
        let img = Tensor::rand([1, 3, h, w], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
        // Integer boxes that cover the frame, overlapping; patches at each box's own size.
        let boxes = [
            [0.0, 0.0, 20.0, 16.0],
            [0.0, 0.0, 12.0, 16.0],
            [8.0, 4.0, 20.0, 12.0],
        ];
        let mut patches = Vec::new();
        for b in &boxes {
            let (bw, bh) = ((b[2] - b[0]) as i64, (b[3] - b[1]) as i64);
            let bt =
                Tensor::from_slice(&[0.0f32, b[0] as f32, b[1] as f32, b[2] as f32, b[3] as f32])
                    .view([1, 5]);
            let p = roi_align(&img, &bt, bh, bw, 1.0);
            patches.push(p);
        }
        for (p, b) in patches.iter().zip(&boxes) {
            let one = assemble(p, &[*b], h, w);
            let (x1, y1, x2, y2) = (b[0] as i64, b[1] as i64, b[2] as i64, b[3] as i64);
            let inside = one.narrow(1, y1, y2 - y1).narrow(2, x1, x2 - x1);
            let want = img.get(0).narrow(1, y1, y2 - y1).narrow(2, x1, x2 - x1);
            assert!(max_abs(&inside, &want) < 1e-5, "box {b:?}");
        }
        // Coverage averaging: two constant patches over the same box give their mean.
        let two = Tensor::cat(
            &[
                Tensor::full([1, 1, 4, 4], 0.2, (Kind::Float, Device::Cpu)),
                Tensor::full([1, 1, 4, 4], -0.6, (Kind::Float, Device::Cpu)),
            ],
            0,
        )
        .set_requires_grad(true);
        let out = assemble(&two, &[[2.0, 2.0, 6.0, 6.0], [2.0, 2.0, 6.0, 6.0]], 8, 8);
        assert!((out.double_value(&[0, 3, 3]) + 0.2).abs() < 1e-6);
        assert_eq!(out.double_value(&[0, 0, 0]), 0.0, "uncovered pixels are 0");
        out.sum(Kind::Float).backward();
        let g = two.grad();
        assert!(
            g.abs().sum(Kind::Float).double_value(&[]) > 0.0,
            "gradients reach the patches"
        );
    }
}

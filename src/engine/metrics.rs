//! Sample-quality metrics that need no pretrained network.

use tch::{Kind, Tensor};

/// Sliced Wasserstein-1 distance between two equally sized sets of flattened images `[N, D]`,
/// along the unit directions in the columns of `projections` `[D, P]`.
#[must_use]
pub fn sliced_wasserstein(a: &Tensor, b: &Tensor, projections: &Tensor) -> f64 {
    tch::no_grad(|| {
        let n = a.size()[0].min(b.size()[0]);
        let pa = a.narrow(0, 0, n).matmul(projections).sort(0, false).0;
        let pb = b.narrow(0, 0, n).matmul(projections).sort(0, false).0;
        (pa - pb).abs().mean(Kind::Float).double_value(&[])
    })
}

/// The effective rank (Roy and Vetterli, 2007) of the rows of `x` `[N, D]` after centring:
/// the exponential of the entropy of its normalised singular values, between 1 and
/// `min(N, D)`; 0 when the rows are all equal.
pub fn effective_rank(x: &Tensor) -> f64 {
    let x = x.to_kind(Kind::Double);
    let centred = &x - x.mean_dim([0i64].as_slice(), true, Kind::Double);
    // Singular values as the roots of the smaller Gram matrix's eigenvalues (the SVD's
    // `driver` argument is CUDA-only, and this needs no choice of one).
    let (n, d) = (centred.size()[0], centred.size()[1]);
    let gram = if n <= d {
        centred.matmul(&centred.tr())
    } else {
        centred.tr().matmul(&centred)
    };
    let s = Tensor::linalg_eigvalsh(&gram, "L").clamp_min(0.0).sqrt();
    let total = s.sum(Kind::Double).double_value(&[]);
    if total.is_nan() || total <= 1e-12 {
        return 0.0;
    }
    let p = (&s / total).clamp_min(1e-300);
    let entropy = -(&p * p.log()).sum(Kind::Double).double_value(&[]);
    entropy.exp()
}

/// Mean Euclidean distance between distinct rows of `x` `[N, D]`.
#[must_use]
pub fn mean_pairwise_distance(x: &Tensor) -> f64 {
    tch::no_grad(|| {
        let n = x.size()[0];
        if n < 2 {
            return 0.0;
        }
        let d = Tensor::cdist(x, x, 2.0, None::<i64>);
        d.sum(Kind::Float).double_value(&[]) / (n * (n - 1)) as f64
    })
}

/// SSIM per frame of `x` and `y` (`[F, C, H, W]` in [0, 1]): a Gaussian window of 11 (sigma
/// 1.5), or the largest odd window that fits a smaller frame; returns `[F]`.
pub fn ssim_frames(x: &Tensor, y: &Tensor) -> Tensor {
    // x, y: [F, C, H, W] in [0, 1]; Gaussian window 11, sigma 1.5; returns [F].
    let (_, c, h, w) = x.size4().unwrap_or((0, 3, 0, 0));
    // The largest odd window up to 11 that fits (an even frame side below 11 gave an even
    // size rounded up past the frame).
    let k = ssim_window(h, w);
    let g = gaussian_window(k, x.device());
    let win = g
        .view([k, 1])
        .matmul(&g.view([1, k]))
        .view([1, 1, k, k])
        .expand([c, 1, k, k], false)
        .contiguous();
    let blur = |t: &Tensor| t.conv2d(&win, None::<Tensor>, [1, 1], [0, 0], [1, 1], c);
    ssim_map(x, y, blur, 1.0).mean_dim([1i64, 2, 3].as_slice(), false, Kind::Float)
}

/// The normalised 1-D Gaussian window of `k` taps, sigma 1.5.
fn gaussian_window(k: i64, device: tch::Device) -> Tensor {
    let g: Vec<f32> = (0..k)
        .map(|i| {
            let t = i as f64 - (k / 2) as f64;
            (-t * t / (2.0 * 1.5 * 1.5)).exp() as f32
        })
        .collect();
    let g = Tensor::from_slice(&g).to_device(device);
    &g / g.sum(Kind::Float)
}

/// The SSIM map of `x` and `y` under the local mean `blur`, for values spanning `range`:
/// `C1 = (0.01 L)^2`, `C2 = (0.03 L)^2`.
fn ssim_map(x: &Tensor, y: &Tensor, blur: impl Fn(&Tensor) -> Tensor, range: f64) -> Tensor {
    let (mx, my) = (blur(x), blur(y));
    let sxx = blur(&(x * x)) - &mx * &mx;
    let syy = blur(&(y * y)) - &my * &my;
    let sxy = blur(&(x * y)) - &mx * &my;
    let (c1, c2) = ((0.01 * range).powi(2), (0.03 * range).powi(2));
    ((&mx * &my * 2.0 + c1) * (sxy * 2.0 + c2)) / ((&mx * &mx + &my * &my + c1) * (sxx + syy + c2))
}

/// SSIM of volumes `x` and `y` (`[B, C, D, H, W]`, values spanning `range`): a 3-D Gaussian
/// window of 11 (sigma 1.5) per axis, or the largest odd size that fits a smaller axis,
/// applied separably without padding; `C1 = (0.01 L)^2`, `C2 = (0.03 L)^2`. Returns `[B]`,
/// the mean over voxels and channels.
pub fn ssim3d(x: &Tensor, y: &Tensor, range: f64) -> Tensor {
    let size = x.size();
    let c = size[1];
    let kernels: Vec<Tensor> = (0..3)
        .map(|axis| {
            let k = ssim_window(size[2 + axis], size[2 + axis]);
            let mut shape = vec![1i64, 1, 1, 1, 1];
            shape[2 + axis] = k;
            gaussian_window(k, x.device())
                .view(shape.as_slice())
                .expand([c, 1, -1, -1, -1], false)
                .contiguous()
        })
        .collect();
    let blur = |t: &Tensor| {
        kernels.iter().fold(t.shallow_clone(), |t, w| {
            t.conv3d(w, None::<Tensor>, [1, 1, 1], [0, 0, 0], [1, 1, 1], c)
        })
    };
    ssim_map(x, y, blur, range)
        .flatten(1, -1)
        .mean_dim(1, false, Kind::Float)
}

/// The SSIM window side: 11, or the largest odd size that fits a smaller frame.
pub fn ssim_window(h: i64, w: i64) -> i64 {
    let k = 11.min(h).min(w).max(1);
    if k % 2 == 0 {
        k - 1
    } else {
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssim3d_is_one_for_equal_volumes_and_ranks_distortions() {
        tch::manual_seed(3);
        let opts = (Kind::Float, tch::Device::Cpu);
        // A smooth volume: noise blurred along every axis.
        let x = Tensor::rand([2, 1, 16, 16, 16], opts).avg_pool3d(
            [5, 5, 5],
            [1, 1, 1],
            [2, 2, 2],
            false,
            false,
            None::<i64>,
        ) * 4.0
            - 2.0;
        let same = ssim3d(&x, &x, 2.0);
        assert_eq!(same.size(), vec![2]);
        assert!((same.double_value(&[0]) - 1.0).abs() < 1e-6, "{same}");
        let light = &x + Tensor::randn([2, 1, 16, 16, 16], opts) * 0.05;
        let strong = &x + Tensor::randn([2, 1, 16, 16, 16], opts) * 0.5;
        let (a, b) = (
            ssim3d(&x, &light, 2.0).double_value(&[1]),
            ssim3d(&x, &strong, 2.0).double_value(&[1]),
        );
        assert!(a < 1.0 && b < a && b > -1.0, "light {a}, strong {b}");
        // Symmetric, and a window that fits an axis of 6.
        let small = x.narrow(2, 0, 6);
        let (p, q) = (small.shallow_clone(), small.narrow(1, 0, 1) * 0.5);
        assert!(
            (ssim3d(&p, &q, 2.0) - ssim3d(&q, &p, 2.0))
                .abs()
                .max()
                .double_value(&[])
                < 1e-6
        );
    }

    #[test]
    fn swd_is_zero_for_identical_sets_and_grows_with_shift() {
        tch::manual_seed(0);
        let a = Tensor::randn([64, 8], (Kind::Float, tch::Device::Cpu));
        let p = Tensor::randn([8, 32], (Kind::Float, tch::Device::Cpu));
        let p = &p / p.norm_scalaropt_dim(2, [0i64].as_slice(), true);
        assert!(sliced_wasserstein(&a, &a, &p) < 1e-6);
        let near = sliced_wasserstein(&a, &(&a + 0.1), &p);
        let far = sliced_wasserstein(&a, &(&a + 1.0), &p);
        assert!(far > near * 5.0, "{near} {far}");
        assert!(mean_pairwise_distance(&(&a * 0.0)) < 1e-9);
    }
}

#[cfg(test)]
mod rank_tests {
    use tch::{Kind, Tensor};

    #[test]
    fn effective_rank_counts_equal_directions() {
        // Rows ±e_i for i < 3 (centred already): three equal singular values.
        let eye = Tensor::eye(3, (Kind::Float, tch::Device::Cpu));
        let x = Tensor::cat(&[&eye, &(-&eye)], 0);
        let x = Tensor::cat(
            &[x, Tensor::zeros([6, 5], (Kind::Float, tch::Device::Cpu))],
            1,
        );
        assert!((super::effective_rank(&x) - 3.0).abs() < 1e-6);
        // One direction only.
        let line = Tensor::arange(5, (Kind::Float, tch::Device::Cpu))
            .unsqueeze(1)
            .matmul(&Tensor::ones([1, 4], (Kind::Float, tch::Device::Cpu)));
        assert!((super::effective_rank(&line) - 1.0).abs() < 1e-6);
        assert_eq!(
            super::effective_rank(&Tensor::ones([4, 4], (Kind::Float, tch::Device::Cpu))),
            0.0
        );
    }
}

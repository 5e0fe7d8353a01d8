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

#[cfg(test)]
mod tests {
    use super::*;

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

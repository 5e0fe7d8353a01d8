//! Seed 004's augmentations on a batch in [0, 1], each image drawing its own parameters from
//! libtorch's generator (seeded per step, so augmentation is reproducible and resumable):
//! horizontal flip, rotation with white fill, and colour jitter in the fixed order brightness,
//! contrast, saturation, hue.

use tch::{Kind, Tensor};

/// Augmentation strengths.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Augment {
    pub hflip_prob: f64,
    pub rotation_deg: f64,
    pub brightness: f64,
    pub contrast: f64,
    pub saturation: f64,
    pub hue: f64,
}

fn uniform(b: i64, lo: f64, hi: f64, like: &Tensor) -> Tensor {
    crate::engine::dist::rand_rows(&[b, 1, 1, 1], (Kind::Float, like.device())) * (hi - lo) + lo
}

fn grey(x: &Tensor) -> Tensor {
    let w = Tensor::from_slice(&[0.299f32, 0.587, 0.114])
        .to_device(x.device())
        .view([1, 3, 1, 1]);
    (x * w).sum_dim_intlist([1i64].as_slice(), true, Kind::Float)
}

/// Augments `x` (`[B, 3, H, W]` in [0, 1]).
pub fn augment(x: &Tensor, a: &Augment) -> Tensor {
    let b = x.size()[0];
    let mut x = x.shallow_clone();
    if a.hflip_prob > 0.0 {
        let flip = crate::engine::dist::rand_rows(&[b, 1, 1, 1], (Kind::Float, x.device()))
            .lt(a.hflip_prob);
        x = x.flip([3]).where_self(&flip, &x);
    }
    if a.rotation_deg > 0.0 {
        let angle = uniform(b, -a.rotation_deg, a.rotation_deg, &x).view([b])
            * (std::f64::consts::PI / 180.0);
        let (c, s) = (angle.cos(), angle.sin());
        let zero = c.zeros_like();
        let theta = Tensor::stack(
            &[
                Tensor::stack(&[&c, &(-&s), &zero], 1),
                Tensor::stack(&[&s, &c, &zero], 1),
            ],
            1,
        );
        let grid = Tensor::affine_grid_generator(&theta, x.size(), false);
        // Sample (x - 1) with zero padding, then add 1: the area outside becomes white.
        x = (x - 1.0).grid_sampler(&grid, 0, 0, false) + 1.0;
    }
    if a.brightness > 0.0 {
        x = (&x * uniform(b, 1.0 - a.brightness, 1.0 + a.brightness, &x)).clamp(0.0, 1.0);
    }
    if a.contrast > 0.0 {
        let mean = grey(&x).mean_dim([1i64, 2, 3].as_slice(), true, Kind::Float);
        x = ((&x - &mean) * uniform(b, 1.0 - a.contrast, 1.0 + a.contrast, &x) + &mean)
            .clamp(0.0, 1.0);
    }
    if a.saturation > 0.0 {
        let g = grey(&x);
        x = ((&x - &g) * uniform(b, 1.0 - a.saturation, 1.0 + a.saturation, &x) + &g)
            .clamp(0.0, 1.0);
    }
    if a.hue > 0.0 {
        x = shift_hue(&x, &uniform(b, -a.hue, a.hue, &x));
    }
    x
}

/// Rotates hue by `shift` turns through HSV.
fn shift_hue(x: &Tensor, shift: &Tensor) -> Tensor {
    let r = x.narrow(1, 0, 1);
    let g = x.narrow(1, 1, 1);
    let bl = x.narrow(1, 2, 1);
    let maxc = x.amax([1i64].as_slice(), true);
    let minc = x.amin([1i64].as_slice(), true);
    let delta = &maxc - &minc;
    let safe = delta.clamp_min(1e-8);
    let rc = (&maxc - &r) / &safe;
    let gc = (&maxc - &g) / &safe;
    let bc = (&maxc - &bl) / &safe;
    let h_r = &bc - &gc;
    let h_g = (&rc - &bc) + 2.0;
    let h_b = (&gc - &rc) + 4.0;
    let h = h_b.where_self(
        &maxc.ne_tensor(&g).logical_and(&maxc.ne_tensor(&r)),
        &h_g.where_self(&maxc.eq_tensor(&g).logical_and(&maxc.ne_tensor(&r)), &h_r),
    );
    let h = ((h / 6.0).remainder(1.0) + shift).remainder(1.0);
    let s = &delta / maxc.clamp_min(1e-8);
    let v = maxc;
    // HSV -> RGB with the continuous formula f(n) = v - v*s*max(0, min(k, 4-k, 1)).
    let channel = |n: f64| {
        let k = (&h * 6.0 + n).remainder(6.0);
        let m = k.minimum(&(-&k + 4.0)).clamp(0.0, 1.0);
        &v - &v * &s * m
    };
    let out = Tensor::cat(&[channel(5.0), channel(3.0), channel(1.0)], 1);
    // Grey pixels have no hue: keep them exactly.
    out.where_self(&delta.gt(1e-8), x).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_hue_shift_is_identity_and_full_turn_too() {
        tch::manual_seed(0);
        let x = Tensor::rand([4, 3, 8, 8], (Kind::Float, tch::Device::Cpu));
        for turn in [0.0, 1.0] {
            let y = shift_hue(
                &x,
                &Tensor::full([4, 1, 1, 1], turn, (Kind::Float, tch::Device::Cpu)),
            );
            let err = f64::try_from((y - &x).abs().max()).unwrap_or(1.0);
            assert!(err < 1e-5, "turn {turn}: {err}");
        }
    }

    #[test]
    fn pure_red_shifted_a_third_is_green() {
        let red = Tensor::from_slice(&[1.0f32, 0.0, 0.0]).view([1, 3, 1, 1]);
        let y = shift_hue(
            &red,
            &Tensor::full([1, 1, 1, 1], 1.0 / 3.0, (Kind::Float, tch::Device::Cpu)),
        );
        let v: Vec<f32> = Vec::try_from(y.flatten(0, -1)).unwrap_or_default();
        assert!(
            (v[0]).abs() < 1e-5 && (v[1] - 1.0).abs() < 1e-5 && v[2].abs() < 1e-5,
            "{v:?}"
        );
    }

    #[test]
    fn rotation_fills_white_and_flip_mirrors() {
        tch::manual_seed(1);
        let x = Tensor::zeros([2, 3, 16, 16], (Kind::Float, tch::Device::Cpu));
        let a = Augment {
            hflip_prob: 0.0,
            rotation_deg: 45.0,
            brightness: 0.0,
            contrast: 0.0,
            saturation: 0.0,
            hue: 0.0,
        };
        let y = augment(&x, &a);
        // A black image rotated by up to 45 degrees shows white corners unless the angle is ~0.
        assert!(f64::try_from(y.max()).unwrap_or(0.0) > 0.5);
        let ramp = Tensor::arange(16, (Kind::Float, tch::Device::Cpu))
            .view([1, 1, 1, 16])
            .expand([1, 3, 16, 16], false)
            / 15.0;
        let f = augment(
            &ramp,
            &Augment {
                hflip_prob: 1.0,
                rotation_deg: 0.0,
                ..a
            },
        );
        assert!(f64::try_from((f - ramp.flip([3])).abs().max()).unwrap_or(1.0) < 1e-6);
    }
}

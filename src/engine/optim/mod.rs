//! Optimizers written on tensors, so their state can be checkpointed exactly and their
//! hyperparameters steered every step.

mod adam;
mod rsgd;

pub use adam::Adam;
pub use rsgd::{AdamRule, RiemannianSgd};

use tch::{Kind, Tensor};

/// Scales the gradients of `params` so that their global L2 norm is at most `max` (as
/// PyTorch's `clip_grad_norm_`: `max / (norm + 1e-6)` when the norm exceeds `max`); `max` 0
/// leaves them. Returns the norm before clipping (0 without gradients).
pub fn clip_global_norm(params: &[Tensor], max: f64) -> f64 {
    tch::no_grad(|| {
        let grads: Vec<Tensor> = params
            .iter()
            .map(Tensor::grad)
            .filter(Tensor::defined)
            .collect();
        if grads.is_empty() {
            return 0.0;
        }
        let squares: Vec<Tensor> = grads
            .iter()
            .map(|g| g.to_kind(Kind::Float).square().sum(Kind::Float))
            .collect();
        let norm = Tensor::stack(&squares, 0)
            .sum(Kind::Float)
            .sqrt()
            .double_value(&[]);
        if !norm.is_finite() {
            crate::engine::watch::note_non_finite(params);
        }
        if max > 0.0 && norm > max {
            let scale = max / (norm + 1e-6);
            for g in &grads {
                let _ = g.shallow_clone().g_mul_scalar_(scale);
            }
        }
        norm
    })
}

/// Multiplies the gradients of `params` by `factor` (unscaling a scaled loss's gradients).
pub fn scale_grads(params: &[Tensor], factor: f64) {
    tch::no_grad(|| {
        for g in params.iter().map(Tensor::grad).filter(Tensor::defined) {
            let _ = g.shallow_clone().g_mul_scalar_(factor);
        }
    });
}

/// A dynamic loss scale for float16 autocast, as PyTorch's `GradScaler`: the loss is
/// multiplied by `scale` before backward and the gradients divided after; a step whose
/// gradients overflow is skipped and halves the scale, and every `growth_interval` good steps
/// double it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LossScale {
    pub scale: f64,
    pub good_steps: u64,
}

impl Default for LossScale {
    fn default() -> Self {
        Self {
            scale: 65536.0,
            good_steps: 0,
        }
    }
}

impl LossScale {
    const GROWTH_INTERVAL: u64 = 2000;

    /// After an unscaled gradient norm: whether to step.
    pub fn update(&mut self, grad_norm: f64) -> bool {
        if !grad_norm.is_finite() {
            self.scale = (self.scale / 2.0).max(1.0);
            self.good_steps = 0;
            return false;
        }
        self.good_steps += 1;
        if self.good_steps.is_multiple_of(Self::GROWTH_INTERVAL) {
            self.scale *= 2.0;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipping_scales_every_gradient_to_the_global_norm() {
        let vs = tch::nn::VarStore::new(tch::Device::Cpu);
        let a = vs.root().var("a", &[2], tch::nn::Init::Const(1.0));
        let b = vs.root().var("b", &[1], tch::nn::Init::Const(1.0));
        // Gradients (3, 0) and (4): global norm 5.
        let loss = (&a * Tensor::from_slice(&[3.0f32, 0.0])).sum(Kind::Float)
            + (&b * 4.0).sum(Kind::Float);
        loss.backward();
        let norm = clip_global_norm(&[a.shallow_clone(), b.shallow_clone()], 1.0);
        assert!((norm - 5.0).abs() < 1e-5, "{norm}");
        let ga = f64::try_from(a.grad().get(0)).unwrap();
        let gb = f64::try_from(b.grad().get(0)).unwrap();
        assert!(
            (ga - 0.6).abs() < 1e-5 && (gb - 0.8).abs() < 1e-5,
            "{ga} {gb}"
        );
    }

    #[test]
    fn the_loss_scale_halves_on_overflow_and_grows_after_good_steps() {
        let mut s = LossScale::default();
        assert!(!s.update(f64::INFINITY));
        assert_eq!(s.scale, 32768.0);
        assert!(!s.update(f64::NAN));
        assert_eq!(s.scale, 16384.0);
        for _ in 0..LossScale::GROWTH_INTERVAL {
            assert!(s.update(1.0));
        }
        assert_eq!(s.scale, 32768.0);
    }
}

/// Norms per module: each parameter's `(name, norm)` grouped by the first `depth` parts of its
/// dotted name, combined as the root of the sum of squares, in the order modules first appear.
pub fn norms_by_module<'a>(
    norms: impl IntoIterator<Item = (&'a str, f64)>,
    depth: usize,
) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for (name, n) in norms {
        let module = name.split('.').take(depth).collect::<Vec<_>>().join(".");
        match out.iter_mut().find(|(m, _)| *m == module) {
            Some((_, sq)) => *sq += n * n,
            None => out.push((module, n * n)),
        }
    }
    for (_, sq) in &mut out {
        *sq = sq.sqrt();
    }
    out
}

#[cfg(test)]
mod module_norm_tests {
    #[test]
    fn groups_by_leading_parts() {
        let got = super::norms_by_module(
            [
                ("enc.a.w", 3.0),
                ("gen.fc.w", 1.0),
                ("enc.a.b", 4.0),
                ("enc.b", 2.0),
            ],
            2,
        );
        assert_eq!(
            got,
            vec![
                ("enc.a".to_string(), 5.0),
                ("gen.fc".to_string(), 1.0),
                ("enc.b".to_string(), 2.0)
            ]
        );
    }
}

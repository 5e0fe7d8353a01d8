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
        if max > 0.0 && norm > max {
            let scale = max / (norm + 1e-6);
            for g in &grads {
                let _ = g.shallow_clone().g_mul_scalar_(scale);
            }
        }
        norm
    })
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
}

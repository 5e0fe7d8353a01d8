use tch::{Kind, Tensor};

use crate::engine::trainer::{OptimizerState, TrainerError};

/// Adam (Kingma & Ba) as PyTorch's single-tensor implementation computes it, with optional
/// decoupled weight decay (AdamW).
#[derive(Debug)]
pub struct Adam {
    params: Vec<(String, Tensor)>,
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
    /// Steps taken.
    pub step: u64,
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Adam {
    /// Optimises the trainable variables of `vs` (those that require grad).
    pub fn new(vs: &tch::nn::VarStore, lr: f64, beta1: f64, beta2: f64) -> Self {
        let mut params: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let exp_avg = params.iter().map(|(_, p)| p.zeros_like()).collect();
        let exp_avg_sq = params.iter().map(|(_, p)| p.zeros_like()).collect();
        Self {
            params,
            exp_avg,
            exp_avg_sq,
            step: 0,
            lr,
            beta1,
            beta2,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }

    /// Drops the gradients of the optimised parameters (set to none, as PyTorch does by
    /// default): the next backward writes them afresh.
    pub fn zero_grad(&mut self) {
        crate::engine::ops::drop_grads(self.params.iter_mut().map(|(_, p)| p));
    }

    /// Replaces the gradients by their mean over the data-parallel ranks (a no-op alone): after
    /// the backward, before clipping and the step.
    ///
    /// # Errors
    /// A rank died or timed out.
    pub fn mean_grads(&self) -> Result<(), crate::engine::dist::DistError> {
        crate::engine::dist::mean_grads(self.params.iter().map(|(_, p)| p))
    }

    /// The global L2 norm of the gradients (one reduction, one read back): a NaN or an
    /// infinity here is the guard's non-finite gradient.
    #[must_use]
    pub fn grad_norm(&self) -> f64 {
        tch::no_grad(|| {
            let squares: Vec<Tensor> = self
                .params
                .iter()
                .map(|(_, p)| p.grad())
                .filter(Tensor::defined)
                .map(|g| g.square().sum(Kind::Float))
                .collect();
            if squares.is_empty() {
                return 0.0;
            }
            let norm = Tensor::stack(&squares, 0)
                .sum(Kind::Float)
                .sqrt()
                .double_value(&[]);
            if !norm.is_finite() {
                crate::engine::watch::note_non_finite(self.params.iter().map(|(_, p)| p));
            }
            norm
        })
    }

    /// Test hook: every gradient becomes NaN, as an overflowing backward leaves them.
    pub(crate) fn poison_grads(&self) {
        tch::no_grad(|| {
            for (_, p) in &self.params {
                let g = p.grad();
                if g.defined() {
                    let _ = g.shallow_clone().fill_(f64::NAN);
                }
            }
        });
    }

    /// Test hook: the first parameter's gradient becomes NaN, as one layer's overflow leaves
    /// it.
    pub(crate) fn poison_first_grad(&self) {
        tch::no_grad(|| {
            if let Some((_, p)) = self.params.first() {
                let g = p.grad();
                if g.defined() {
                    let _ = g.shallow_clone().fill_(f64::NAN);
                }
            }
        });
    }

    /// One update with the current hyperparameters. Parameters without a gradient are skipped.
    pub fn step(&mut self) {
        let _part = crate::engine::timing::scope(crate::engine::timing::OPTIMISER);
        self.step += 1;
        let t = self.step as f64;
        let bias1 = 1.0 - self.beta1.powf(t);
        let bias2_sqrt = (1.0 - self.beta2.powf(t)).sqrt();
        let step_size = self.lr / bias1;
        let watched = crate::engine::watch::before_step(self.params.iter().map(|(_, p)| p));
        tch::no_grad(|| {
            for (i, (_, p)) in self.params.iter_mut().enumerate() {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                if self.weight_decay > 0.0 {
                    let _ = p.g_mul_scalar_(1.0 - self.lr * self.weight_decay);
                }
                let _ = self.exp_avg[i].lerp_(&g, 1.0 - self.beta1);
                let _ = self.exp_avg_sq[i].g_mul_scalar_(self.beta2);
                let _ = self.exp_avg_sq[i].addcmul_(&(&g * (1.0 - self.beta2)), &g);
                let denom = (self.exp_avg_sq[i].sqrt() / bias2_sqrt) + self.eps;
                let _ = p.addcdiv_(&(&self.exp_avg[i] * (-step_size)), &denom);
            }
        });
        crate::engine::watch::after_step(watched);
    }
}

impl OptimizerState for Adam {
    /// Named state tensors (`<prefix>.<param>.exp_avg` ...) and the step as a tensor.
    fn state_tensors(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(self.params.len() * 2 + 1);
        for (i, (name, _)) in self.params.iter().enumerate() {
            out.push((
                format!("{prefix}.{name}.exp_avg"),
                self.exp_avg[i].shallow_clone(),
            ));
            out.push((
                format!("{prefix}.{name}.exp_avg_sq"),
                self.exp_avg_sq[i].shallow_clone(),
            ));
        }
        out.push((
            format!("{prefix}.step"),
            Tensor::from_slice(&[self.step as i64]),
        ));
        out
    }

    /// Restores state written by `state_tensors`; `get` finds a tensor by name.
    fn load_state(
        &mut self,
        prefix: &str,
        get: &dyn Fn(&str) -> Option<Tensor>,
    ) -> Result<(), TrainerError> {
        for (i, (name, p)) in self.params.iter().enumerate() {
            for (suffix, slot) in [
                ("exp_avg", &mut self.exp_avg[i]),
                ("exp_avg_sq", &mut self.exp_avg_sq[i]),
            ] {
                let key = format!("{prefix}.{name}.{suffix}");
                let t = get(&key).ok_or_else(|| {
                    TrainerError::State(format!("missing optimizer state `{key}`"))
                })?;
                if t.size() != p.size() {
                    return Err(TrainerError::State(format!(
                        "`{key}` has shape {:?}, the model needs {:?}",
                        t.size(),
                        p.size()
                    )));
                }
                tch::no_grad(|| slot.copy_(&t.to_kind(Kind::Float)));
            }
        }
        let key = format!("{prefix}.step");
        let step = get(&key)
            .ok_or_else(|| TrainerError::State(format!("missing optimizer state `{key}`")))?;
        self.step = step.int64_value(&[0]).max(0) as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_closed_form_first_step() {
        // After one step Adam moves every coordinate by lr * sign(g) (up to eps).
        let vs = tch::nn::VarStore::new(tch::Device::Cpu);
        let w = vs.root().var("w", &[3], tch::nn::Init::Const(1.0));
        let mut opt = Adam::new(&vs, 0.1, 0.9, 0.999);
        let loss = (&w * Tensor::from_slice(&[1.0f32, -2.0, 3.0])).sum(Kind::Float);
        opt.zero_grad();
        loss.backward();
        opt.step();
        let got: Vec<f32> = Vec::try_from(&w.detach()).unwrap_or_default();
        for (g, want) in got.iter().zip([0.9f32, 1.1, 0.9]) {
            assert!((g - want).abs() < 1e-5, "{got:?}");
        }
    }

    #[test]
    fn minimises_a_quadratic_and_restores_state() {
        let vs = tch::nn::VarStore::new(tch::Device::Cpu);
        let w = vs.root().var("w", &[4], tch::nn::Init::Const(3.0));
        let mut opt = Adam::new(&vs, 0.05, 0.0, 0.9);
        for _ in 0..300 {
            let loss = (&w * &w).sum(Kind::Float);
            opt.zero_grad();
            loss.backward();
            opt.step();
        }
        assert!(f64::try_from(w.abs().max()).unwrap_or(9.0) < 0.1);
        let saved = opt.state_tensors("opt");
        let mut other = Adam::new(&vs, 0.05, 0.0, 0.9);
        let lookup = |k: &str| saved.iter().find(|(n, _)| n == k).map(|(_, t)| t.copy());
        other.load_state("opt", &lookup).expect("load");
        assert_eq!(other.step, 300);
    }
}

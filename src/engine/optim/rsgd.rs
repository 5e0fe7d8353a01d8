use tch::{Kind, Tensor};

use crate::engine::hyperbolic::{egrad2rgrad, project};

use crate::engine::trainer::{OptimizerState, TrainerError};

/// The seed's RiemannianEnhancedSGD (spec 5.8): momentum SGD with each parameter's gradient
/// clipped to its own norm limit, and Riemannian steps for parameters that live on a Poincaré
/// ball (gradient rescaled by the inverse conformal factor, then a retraction back inside).
///
/// Differences from the seed, on purpose: clipping does not modify `p.grad` in place, and
/// weight decay is not applied to points on a ball (pulling them towards the Euclidean origin
/// has no meaning there; spec 11.21).
///
/// With [`RiemannianSgd::adam`] set, the update is Riemannian Adam instead (Bécigneul and
/// Ganea 2019, without parallel transport of the moments, as geoopt's): the same clipping and
/// Riemannian gradient, first and second moments with bias correction, `momentum` as beta1,
/// and decoupled weight decay on Euclidean parameters.
#[derive(Debug)]
pub struct RiemannianSgd {
    params: Vec<Param>,
    /// Steps taken.
    pub step: u64,
    pub lr: f64,
    /// SGD momentum, or Adam's beta1.
    pub momentum: f64,
    pub weight_decay: f64,
    /// Each parameter's gradient norm is clipped to this (0 turns clipping off).
    pub max_grad_norm: f64,
    pub adam: Option<AdamRule>,
}

/// Riemannian Adam's second-moment settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamRule {
    pub beta2: f64,
    pub eps: f64,
}

#[derive(Debug)]
struct Param {
    name: String,
    tensor: Tensor,
    /// The ball's curvature for hyperbolic parameters (rows are points).
    curvature: Option<f64>,
    buf: Option<Tensor>,
    /// Adam's second moment.
    sq: Option<Tensor>,
    /// The gradient's norm as [`RiemannianSgd::clip_global`] left it, so `step` need not
    /// read the gradient again to clip it.
    grad_norm: Option<f64>,
    /// The norm of the gradient the last step used (after [`RiemannianSgd::clip_global`]'s
    /// scaling), for diagnostics.
    last_norm: Option<f64>,
}

impl Param {
    /// The gradient (sharing storage with `p.grad`, which stays untouched) and the factor that
    /// clips it to the per-parameter limit; `None` without a gradient, or with a non-finite
    /// one, which also drops the moments and adds the name to `skipped`.
    fn clipped_grad(&mut self, clip: f64, skipped: &mut Vec<String>) -> Option<(Tensor, f64)> {
        let grad = self.tensor.grad();
        self.last_norm = None;
        if !grad.defined() {
            return None;
        }
        // One pass and one sync (none after `clip_global`): the norm is finite exactly when
        // every element is.
        let n = self
            .grad_norm
            .take()
            .unwrap_or_else(|| grad.norm().double_value(&[]));
        self.last_norm = Some(n);
        if !n.is_finite() {
            self.buf = None;
            self.sq = None;
            skipped.push(self.name.clone());
            return None;
        }
        let scale = if clip > 0.0 && n > clip {
            clip / (n + 1e-6)
        } else {
            1.0
        };
        Some((grad, scale))
    }

    /// The curvature as a tensor like the parameter's, for points on a ball.
    fn curvature_tensor(&self) -> Option<Tensor> {
        self.curvature.map(|c| {
            Tensor::from(c)
                .to_kind(self.tensor.kind())
                .to_device(self.tensor.device())
        })
    }

    /// Moves a ball parameter to `x − lr·dir`, projected back into the ball (to the origin
    /// if that is not finite).
    fn retract(&mut self, x: &Tensor, dir: &Tensor, lr: f64, c: &Tensor) {
        let next = project(&(x - dir * lr), c);
        let next = if next.isfinite().all().int64_value(&[]) == 1 {
            next
        } else {
            next.zeros_like()
        };
        self.tensor.copy_(&next);
    }
}

impl RiemannianSgd {
    /// `params`: `(name, tensor, curvature)`, curvature `Some(c)` for points on a ball.
    #[must_use]
    pub fn new(
        params: Vec<(String, Tensor, Option<f64>)>,
        lr: f64,
        momentum: f64,
        weight_decay: f64,
    ) -> Self {
        Self {
            params: params
                .into_iter()
                .map(|(name, tensor, curvature)| Param {
                    name,
                    tensor,
                    curvature,
                    buf: None,
                    sq: None,
                    grad_norm: None,
                    last_norm: None,
                })
                .collect(),
            step: 0,
            lr,
            momentum,
            weight_decay,
            max_grad_norm: 2.0,
            adam: None,
        }
    }

    /// Drops every momentum buffer (a critic that becomes active again starts afresh).
    pub fn reset_momentum(&mut self) {
        for p in &mut self.params {
            p.buf = None;
            p.sq = None;
        }
    }

    /// Replaces the gradients by their mean over the data-parallel ranks (a no-op alone): after
    /// the backward, before clipping and the step.
    ///
    /// # Errors
    /// A rank died or timed out.
    pub fn mean_grads(&self) -> Result<(), crate::engine::dist::DistError> {
        crate::engine::dist::mean_grads(self.params.iter().map(|p| &p.tensor))
    }

    /// Scales every gradient so that their joint norm is at most `max` (0 = off); returns the
    /// norm before clipping. Non-finite gradients are left to [`RiemannianSgd::step`].
    pub fn clip_global(&mut self, max: f64) -> f64 {
        let grads: Vec<(usize, Tensor)> = self
            .params
            .iter()
            .enumerate()
            .map(|(i, p)| (i, p.tensor.grad()))
            .filter(|(_, g)| g.defined())
            .collect();
        if grads.is_empty() {
            return 0.0;
        }
        let norms: Vec<Tensor> = grads
            .iter()
            .map(|(_, g)| g.norm().to_kind(Kind::Double))
            .collect();
        let norms = Vec::<f64>::try_from(Tensor::stack(&norms, 0)).unwrap_or_default();
        let total = norms.iter().map(|n| n * n).sum::<f64>().sqrt();
        if !total.is_finite() {
            crate::engine::watch::note_non_finite(self.params.iter().map(|p| &p.tensor));
        }
        let scale = if max > 0.0 && total.is_finite() && total > max {
            max / (total + 1e-6)
        } else {
            1.0
        };
        for ((i, mut g), n) in grads.into_iter().zip(norms) {
            if scale < 1.0 {
                let _ = g.g_mul_scalar_(scale);
            }
            self.params[i].grad_norm = Some(n * scale);
        }
        total
    }

    /// Each parameter's name and the norm of the gradient the last [`Self::step`] used (a
    /// global clip scales every norm by the same factor); parameters without a gradient then
    /// are left out.
    pub fn grad_norms(&self) -> impl Iterator<Item = (&str, f64)> + '_ {
        self.params
            .iter()
            .filter_map(|p| p.last_norm.map(|n| (p.name.as_str(), n)))
    }

    /// Drops the gradients (set to none).
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.grad_norm = None;
        }
        crate::engine::ops::drop_grads(self.params.iter_mut().map(|p| &mut p.tensor));
    }

    /// One update with the current `lr` and `momentum`. Returns the names of parameters whose
    /// gradient was not finite (skipped, their momentum dropped).
    pub fn step(&mut self) -> Vec<String> {
        let _part = crate::engine::timing::scope(crate::engine::timing::OPTIMISER);
        let watched = crate::engine::watch::before_step(self.params.iter().map(|p| &p.tensor));
        let skipped = self.update();
        crate::engine::watch::after_step(watched);
        skipped
    }

    fn update(&mut self) -> Vec<String> {
        self.step += 1;
        let (lr, m, wd, clip) = (
            self.lr,
            self.momentum,
            self.weight_decay,
            self.max_grad_norm,
        );
        let mut skipped = Vec::new();
        if let Some(rule) = self.adam {
            self.adam_step(rule, &mut skipped);
            return skipped;
        }
        tch::no_grad(|| {
            for p in &mut self.params {
                let Some((grad, scale)) = p.clipped_grad(clip, &mut skipped) else {
                    continue;
                };
                match p.curvature_tensor() {
                    Some(ct) => {
                        let x = project(&p.tensor, &ct);
                        let rgrad = egrad2rgrad(&x, &(&grad * scale), &ct);
                        let buf = match p.buf.take() {
                            Some(b) => b * m + &rgrad,
                            None => rgrad,
                        };
                        p.retract(&x, &buf, lr, &ct);
                        p.buf = Some(buf);
                    }
                    None => {
                        // buf = m·buf + (scale·g + wd·p); p -= lr·buf, in place: `addcmul_`
                        // with a 0-d factor is an axpy without a temporary.
                        let opts = (p.tensor.kind(), p.tensor.device());
                        let mut buf = match p.buf.take() {
                            Some(mut b) => {
                                let _ = b.g_mul_scalar_(m);
                                let _ = b.addcmul_(&grad, &Tensor::scalar_tensor(scale, opts));
                                b
                            }
                            None => &grad * scale,
                        };
                        if wd > 0.0 {
                            let _ = buf.addcmul_(&p.tensor, &Tensor::scalar_tensor(wd, opts));
                        }
                        let _ = p.tensor.addcmul_(&buf, &Tensor::scalar_tensor(-lr, opts));
                        p.buf = Some(buf);
                    }
                }
            }
        });
        skipped
    }

    fn adam_step(&mut self, rule: AdamRule, skipped: &mut Vec<String>) {
        let (lr, b1, wd, clip) = (
            self.lr,
            self.momentum.clamp(0.0, 0.999_999),
            self.weight_decay,
            self.max_grad_norm,
        );
        let b2 = rule.beta2;
        let t = self.step.min(i32::MAX as u64) as i32;
        let (bc1, bc2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        tch::no_grad(|| {
            for p in &mut self.params {
                let Some((grad, scale)) = p.clipped_grad(clip, skipped) else {
                    continue;
                };
                let opts = (p.tensor.kind(), p.tensor.device());
                let ct = p.curvature_tensor();
                let x = ct.as_ref().map(|c| project(&p.tensor, c));
                let g = match (&x, &ct) {
                    (Some(x), Some(c)) => egrad2rgrad(x, &(&grad * scale), c),
                    _ => &grad * scale,
                };
                let m = match p.buf.take() {
                    Some(mut b) => {
                        let _ = b.g_mul_scalar_(b1);
                        let _ = b.addcmul_(&g, &Tensor::scalar_tensor(1.0 - b1, opts));
                        b
                    }
                    None => &g * (1.0 - b1),
                };
                let v = match p.sq.take() {
                    Some(mut s) => {
                        let _ = s.g_mul_scalar_(b2);
                        let _ = s.addcmul_(&g, &(&g * (1.0 - b2)));
                        s
                    }
                    None => &g * &g * (1.0 - b2),
                };
                let dir = (&m / bc1) / ((&v / bc2).sqrt() + rule.eps);
                match (&x, &ct) {
                    (Some(x), Some(c)) => p.retract(x, &dir, lr, c),
                    _ => {
                        if wd > 0.0 {
                            let _ = p.tensor.g_mul_scalar_(1.0 - lr * wd);
                        }
                        let _ = p.tensor.addcmul_(&dir, &Tensor::scalar_tensor(-lr, opts));
                    }
                }
                p.buf = Some(m);
                p.sq = Some(v);
            }
        });
    }
}

impl OptimizerState for RiemannianSgd {
    /// Named momentum buffers (`<prefix>.<param>.momentum`) and the step.
    fn state_tensors(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut out: Vec<(String, Tensor)> = self
            .params
            .iter()
            .filter_map(|p| {
                p.buf
                    .as_ref()
                    .map(|b| (format!("{prefix}.{}.momentum", p.name), b.shallow_clone()))
            })
            .chain(self.params.iter().filter_map(|p| {
                p.sq.as_ref().map(|s| {
                    (
                        format!("{prefix}.{}.second_moment", p.name),
                        s.shallow_clone(),
                    )
                })
            }))
            .collect();
        out.push((
            format!("{prefix}.step"),
            Tensor::from_slice(&[self.step as i64]),
        ));
        out
    }

    /// Restores state written by `state_tensors`; a parameter without a
    /// saved buffer starts without momentum, as it had none.
    fn load_state(
        &mut self,
        prefix: &str,
        get: &dyn Fn(&str) -> Option<Tensor>,
    ) -> Result<(), TrainerError> {
        let load = |key: String, like: &Tensor| -> Result<Option<Tensor>, TrainerError> {
            match get(&key) {
                Some(t) if t.size() == like.size() => {
                    Ok(Some(t.to_kind(like.kind()).to_device(like.device())))
                }
                Some(t) => Err(TrainerError::State(format!(
                    "`{key}` has shape {:?}, the parameter {:?}",
                    t.size(),
                    like.size()
                ))),
                None => Ok(None),
            }
        };
        for p in &mut self.params {
            p.buf = load(format!("{prefix}.{}.momentum", p.name), &p.tensor)?;
            p.sq = load(format!("{prefix}.{}.second_moment", p.name), &p.tensor)?;
        }
        let key = format!("{prefix}.step");
        let step = get(&key)
            .ok_or_else(|| TrainerError::State(format!("missing optimizer state `{key}`")))?;
        self.step = step.to_kind(Kind::Int64).int64_value(&[0]).max(0) as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(v: &[f64]) -> Tensor {
        Tensor::from_slice(v).set_requires_grad(true)
    }

    /// One Euclidean parameter, lr 0.1, momentum (beta1) 0.9, no decay and no clipping.
    fn unclipped(w: &Tensor) -> RiemannianSgd {
        let mut opt =
            RiemannianSgd::new(vec![("w".into(), w.shallow_clone(), None)], 0.1, 0.9, 0.0);
        opt.max_grad_norm = 0.0;
        opt
    }

    #[test]
    fn adam_steps_match_the_closed_form_and_stay_in_the_ball() {
        // Euclidean: the first Adam step moves each coordinate by lr·sign(g) (bias-corrected
        // moments of one gradient), whatever its size.
        let w = var(&[1.0, 2.0]);
        let mut opt = unclipped(&w);
        opt.adam = Some(AdamRule {
            beta2: 0.999,
            eps: 1e-12,
        });
        (&w * Tensor::from_slice(&[3.0f64, -0.01]))
            .sum(Kind::Double)
            .backward();
        opt.step();
        let after: Vec<f64> = Vec::try_from(w.detach()).unwrap();
        assert!(
            (after[0] - 0.9).abs() < 1e-9 && (after[1] - 2.1).abs() < 1e-9,
            "{after:?}"
        );
        // Hyperbolic points stay inside their ball however large the step.
        let x = var(&[0.5, 0.5]);
        let mut opt = RiemannianSgd::new(
            vec![("x".into(), x.shallow_clone(), Some(1.0))],
            10.0,
            0.9,
            0.0,
        );
        opt.adam = Some(AdamRule {
            beta2: 0.999,
            eps: 1e-8,
        });
        for _ in 0..3 {
            opt.zero_grad();
            (&x * Tensor::from_slice(&[-1.0f64, -1.0]))
                .sum(Kind::Double)
                .backward();
            opt.step();
        }
        let norm = x.detach().norm().double_value(&[]);
        assert!(norm < 1.0, "{norm}");
        // Both moments are saved and restored.
        let saved = opt.state_tensors("o");
        assert!(saved.iter().any(|(k, _)| k == "o.x.second_moment"));
    }

    #[test]
    fn euclidean_steps_are_momentum_sgd_with_per_parameter_clipping() {
        let w = var(&[1.0, 2.0]);
        let mut opt = unclipped(&w);
        for _ in 0..2 {
            opt.zero_grad();
            (&w * Tensor::from_slice(&[3.0f64, -1.0]))
                .sum(Kind::Double)
                .backward();
            opt.step();
        }
        // buf1 = g, buf2 = 0.9 g + g = 1.9 g; w = w0 - 0.1 (g + 1.9 g) = w0 - 0.29 g.
        let got: Vec<f64> = Vec::try_from(&w.detach()).unwrap();
        assert!(
            (got[0] - (1.0 - 0.29 * 3.0)).abs() < 1e-12 && (got[1] - (2.0 + 0.29)).abs() < 1e-12,
            "{got:?}"
        );
        // Clipping: a gradient of norm 50 moves the parameter by lr * 2 at most.
        let v = var(&[0.0, 0.0]);
        let mut opt =
            RiemannianSgd::new(vec![("v".into(), v.shallow_clone(), None)], 1.0, 0.0, 0.0);
        (&v * Tensor::from_slice(&[30.0f64, 40.0]))
            .sum(Kind::Double)
            .backward();
        opt.step();
        assert!((v.detach().norm().double_value(&[]) - 2.0).abs() < 1e-5);
        assert!(
            (v.grad().norm().double_value(&[]) - 50.0).abs() < 1e-9,
            "the gradient itself is untouched"
        );
    }

    #[test]
    fn hyperbolic_parameters_stay_in_the_ball_and_descend() {
        let c = 1.0;
        let p = var(&[0.5, 0.0, -0.3, 0.2])
            .view([2, 2])
            .detach()
            .set_requires_grad(true);
        let target = Tensor::from_slice(&[0.9f64, 0.3, -0.9, 0.3]).view([2, 2]);
        let mut opt = RiemannianSgd::new(
            vec![("p".into(), p.shallow_clone(), Some(c))],
            0.5,
            0.9,
            0.0,
        );
        let loss = |p: &Tensor| (p - &target).square().sum(Kind::Double);
        let l0 = loss(&p).double_value(&[]);
        for _ in 0..200 {
            opt.zero_grad();
            loss(&p).backward();
            opt.step();
            let n = p
                .detach()
                .square()
                .sum_dim_intlist([1i64].as_slice(), false, Kind::Double)
                .sqrt();
            assert!(n.max().double_value(&[]) < 1.0, "left the ball");
        }
        assert!(loss(&p).double_value(&[]) < l0 * 0.5);
    }

    #[test]
    fn non_finite_gradients_are_skipped_and_state_round_trips() {
        let a = var(&[1.0]);
        let b = var(&[1.0]);
        let mut opt = RiemannianSgd::new(
            vec![
                ("a".into(), a.shallow_clone(), None),
                ("b".into(), b.shallow_clone(), None),
            ],
            0.1,
            0.9,
            0.01,
        );
        ((&a * f64::NAN) + &b * 2.0).sum(Kind::Double).backward();
        assert_eq!(opt.step(), vec!["a".to_string()]);
        assert_eq!(a.double_value(&[0]), 1.0);
        let saved = opt.state_tensors("rsgd");
        let mut other = RiemannianSgd::new(
            vec![
                ("a".into(), a.copy().set_requires_grad(true), None),
                ("b".into(), b.copy().set_requires_grad(true), None),
            ],
            0.1,
            0.9,
            0.01,
        );
        let lookup = |k: &str| saved.iter().find(|(n, _)| n == k).map(|(_, t)| t.copy());
        other.load_state("rsgd", &lookup).unwrap();
        assert_eq!(other.step, 1);
        assert!(other.params[0].buf.is_none() && other.params[1].buf.is_some());
    }
}

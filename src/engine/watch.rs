//! What each layer is doing, on demand: weight, gradient and update norms, the update's size
//! against the weight's, a weight histogram and the gradient's non-finite values, captured
//! inside the optimisers' steps for the modules a user watches (`--watch MODULE`, or a click
//! on the module tree), and the tensors a non-finite gradient first appeared in.
//!
//! The session registers every variable of the trainer by name at the start ([`register`]);
//! the optimisers call [`before_step`] and [`after_step`] around their update, which cost one
//! thread-local look when nothing is watched. Gradients are read where the optimiser consumes
//! them, so a critic's statistics are its own step's even when a later backward (the
//! generator's) writes its gradients again. Activations: libtorch's modules as tch builds them
//! have no forward hooks, so each family's forward passes its nonlinearities' outputs through
//! [`act`], naming the layer that fed them by its weight; for a watched layer the share of
//! those activations at or below zero is counted on the device and read once at the step's
//! end (after a ReLU: the dead units; after a leaky ReLU, GELU or SiLU: the units on their
//! negative side).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use tch::{Kind, Tensor};

use crate::core::protocol::{LayerStats, WatchSpec};

/// Bins of a module's weight histogram.
pub const BINS: i64 = 64;

/// What one step's optimiser updates saw of one tensor.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    grad_sq: f64,
    update_sq: f64,
    non_finite: u64,
}

thread_local! {
    /// Every variable's name by its storage (`data_ptr`), for the optimisers, which hold
    /// tensors without the trainer's names.
    static NAMES: RefCell<HashMap<usize, String>> = RefCell::new(HashMap::new());
    /// The tensors watched at this step, by name, and what their updates saw.
    static CAPTURE: RefCell<Option<BTreeMap<String, Option<Seen>>>> = const { RefCell::new(None) };
    /// Tensors whose gradient was not finite when an optimiser measured it, in order.
    static NON_FINITE: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    /// Watched modules' activations at this step: how many were at or below zero (a count on
    /// the device, read at the step's end) and how many there were.
    static ACTS: RefCell<BTreeMap<String, (Tensor, i64)>> = const { RefCell::new(BTreeMap::new()) };
}

/// A nonlinearity's output `out`, fed by the layer whose weight is `producer`: passed
/// through unchanged, and when that layer is watched at this step, its activations at or below
/// zero are counted (one comparison and sum on the device; nothing when nothing is watched).
pub fn act(producer: &Tensor, out: Tensor) -> Tensor {
    // The producer's module, when one of its tensors is captured at this step.
    let watched = CAPTURE.with(|c| {
        let c = c.borrow();
        let capture = c.as_ref()?;
        let name = name_of(producer)?;
        let module = module_of(&name);
        capture
            .keys()
            .any(|k| module_of(k) == module)
            .then(|| module.to_string())
    });
    if let Some(module) = watched {
        let inactive = tch::no_grad(|| out.le(0.0).sum(Kind::Int64));
        let n = out.numel() as i64;
        ACTS.with(|a| {
            let mut a = a.borrow_mut();
            match a.get_mut(&module) {
                Some((count, total)) => {
                    *count = &*count + &inactive;
                    *total += n;
                }
                None => {
                    a.insert(module, (inactive, n));
                }
            }
        });
    }
    out
}

fn key(t: &Tensor) -> usize {
    t.data_ptr() as usize
}

/// Names every variable of the trainer (`network.path.to.weight`) for the optimisers.
pub fn register(named: &[(String, Tensor)]) {
    NAMES.with(|n| {
        let mut n = n.borrow_mut();
        n.clear();
        n.extend(named.iter().map(|(name, t)| (key(t), name.clone())));
    });
}

fn name_of(t: &Tensor) -> Option<String> {
    NAMES.with(|n| n.borrow().get(&key(t)).cloned())
}

/// The module a tensor belongs to: its name less the last part (`d.main.0` of
/// `d.main.0.weight`).
#[must_use]
pub fn module_of(tensor: &str) -> &str {
    tensor.rsplit_once('.').map_or(tensor, |(m, _)| m)
}

/// Whether `spec` watches `tensor`: `*` every module, else the module itself or any below it.
#[must_use]
pub fn watches(spec: &str, tensor: &str) -> bool {
    spec == "*" || tensor.starts_with(spec) && tensor[spec.len()..].starts_with('.')
}

/// Starts capturing this step's updates of `tensors`.
pub fn begin(tensors: impl IntoIterator<Item = String>) {
    CAPTURE.with(|c| *c.borrow_mut() = Some(tensors.into_iter().map(|t| (t, None)).collect()));
}

/// What [`before_step`] took of the watched parameters, for [`after_step`]: empty (no
/// allocation, `params` not even walked) when nothing is watched.
#[derive(Debug, Default)]
#[must_use = "give it to after_step once the update is made"]
pub struct Watched(Vec<(String, Tensor, Tensor, Seen)>);

/// Before an optimiser's update of `params`: for the watched ones, the gradient's squared
/// norm and non-finite count, and a copy of the values (the update's size is measured
/// against it by [`after_step`]).
pub fn before_step<'a>(params: impl IntoIterator<Item = &'a Tensor>) -> Watched {
    Watched(CAPTURE.with(|c| {
        let c = c.borrow();
        let Some(capture) = c.as_ref() else {
            return Vec::new();
        };
        tch::no_grad(|| {
            params
                .into_iter()
                .filter_map(|p| {
                    let name = name_of(p).filter(|n| capture.contains_key(n))?;
                    let g = p.grad();
                    let mut seen = Seen::default();
                    if g.defined() {
                        let g = g.to_kind(Kind::Double);
                        seen.non_finite =
                            g.isfinite().logical_not().sum(Kind::Int64).int64_value(&[]) as u64;
                        seen.grad_sq = g
                            .nan_to_num(0.0, 0.0, 0.0)
                            .square()
                            .sum(Kind::Double)
                            .double_value(&[]);
                    }
                    Some((name, p.shallow_clone(), p.detach().copy(), seen))
                })
                .collect()
        })
    }))
}

/// After the update [`before_step`] saw: the squared size of the change to each watched
/// parameter, added to the step's capture.
pub fn after_step(watched: Watched) {
    if watched.0.is_empty() {
        return;
    }
    let done: Vec<(String, Seen)> = tch::no_grad(|| {
        watched
            .0
            .into_iter()
            .map(|(name, p, before, mut seen)| {
                seen.update_sq = (&p - &before)
                    .to_kind(Kind::Double)
                    .square()
                    .sum(Kind::Double)
                    .double_value(&[]);
                (name, seen)
            })
            .collect()
    });
    CAPTURE.with(|c| {
        if let Some(capture) = c.borrow_mut().as_mut() {
            for (name, seen) in done {
                // A tensor two optimisers step (none do) would add up.
                let slot = capture.entry(name).or_insert(None);
                let s = slot.get_or_insert_with(Seen::default);
                s.grad_sq += seen.grad_sq;
                s.update_sq += seen.update_sq;
                s.non_finite += seen.non_finite;
            }
        }
    });
}

/// An optimiser found its gradients' joint norm not finite: notes which of `params` hold a
/// NaN or an infinity (read once, only then).
pub fn note_non_finite<'a>(params: impl IntoIterator<Item = &'a Tensor>) {
    let bad: Vec<String> = tch::no_grad(|| {
        params
            .into_iter()
            .filter(|p| {
                let g = p.grad();
                g.defined() && g.isfinite().all().int64_value(&[]) == 0
            })
            .map(|p| name_of(p).unwrap_or_else(|| "an unnamed tensor".into()))
            .collect()
    });
    NON_FINITE.with(|n| n.borrow_mut().extend(bad));
}

/// The tensors noted by [`note_non_finite`] since the last call.
pub fn take_non_finite() -> Vec<String> {
    NON_FINITE.with(|n| std::mem::take(&mut *n.borrow_mut()))
}

/// Ends the step's capture: each watched module's statistics at `step` from what the
/// optimisers saw and the weights now (`vars`: every named variable).
pub fn finish(step: u64, vars: &[(String, Tensor)]) -> Vec<(String, LayerStats)> {
    let acts = ACTS.with(|a| std::mem::take(&mut *a.borrow_mut()));
    let Some(capture) = CAPTURE.with(|c| c.borrow_mut().take()) else {
        return Vec::new();
    };
    let mut modules: BTreeMap<&str, Vec<(&Tensor, Option<Seen>)>> = BTreeMap::new();
    for (name, t) in vars {
        if let Some(seen) = capture.get(name) {
            modules.entry(module_of(name)).or_default().push((t, *seen));
        }
    }
    tch::no_grad(|| {
        modules
            .into_iter()
            .map(|(module, tensors)| {
                let flat: Vec<Tensor> = tensors
                    .iter()
                    .map(|(t, _)| t.detach().to_kind(Kind::Float).flatten(0, -1))
                    .collect();
                let all = Tensor::cat(&flat, 0);
                let weight_norm = all.to_kind(Kind::Double).norm().double_value(&[]);
                let finite = all.nan_to_num(0.0, 0.0, 0.0);
                let (lo, hi) = (
                    finite.min().double_value(&[]),
                    finite.max().double_value(&[]),
                );
                // libtorch's own range for equal extremes.
                let (lo, hi) = if hi > lo {
                    (lo, hi)
                } else {
                    (lo - 1.0, hi + 1.0)
                };
                let hist = Vec::<f64>::try_from(finite.histc(BINS).to_kind(Kind::Double))
                    .unwrap_or_default()
                    .into_iter()
                    .map(|c| c as u32)
                    .collect();
                let stepped: Vec<Seen> = tensors.iter().filter_map(|(_, s)| *s).collect();
                let inactive = acts
                    .get(module)
                    .filter(|(_, n)| *n > 0)
                    .map(|(count, n)| count.int64_value(&[]) as f64 / *n as f64);
                let sum = |f: fn(&Seen) -> f64| stepped.iter().map(f).sum::<f64>().sqrt();
                (
                    module.to_string(),
                    LayerStats {
                        step,
                        tensors: tensors.len() as u32,
                        weight_norm,
                        grad_norm: (!stepped.is_empty()).then(|| sum(|s| s.grad_sq)),
                        update_norm: (!stepped.is_empty()).then(|| sum(|s| s.update_sq)),
                        non_finite_grads: stepped.iter().map(|s| s.non_finite).sum(),
                        hist,
                        hist_range: [lo, hi],
                        inactive,
                    },
                )
            })
            .collect()
    })
}

/// The watches in force and when each captures.
#[derive(Debug, Default)]
pub struct Watches {
    specs: Vec<(WatchSpec, u64)>,
}

impl Watches {
    /// Adds (or replaces) a watch from step `from` on; `steps: Some(0)` ends one.
    pub fn set(&mut self, spec: WatchSpec, from: u64) {
        self.specs.retain(|(s, _)| s.module != spec.module);
        if spec.steps != Some(0) {
            self.specs.push((spec, from));
        }
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// The tensors (of `names`) watched at `step`; counts the step against each watch's steps.
    pub fn due(&mut self, step: u64, names: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (spec, from) in &mut self.specs {
            let every = spec.every.max(1);
            if step < *from || !(step - *from).is_multiple_of(every) {
                continue;
            }
            if let Some(n) = &mut spec.steps {
                *n = n.saturating_sub(1);
            }
            out.extend(names.iter().filter(|n| watches(&spec.module, n)).cloned());
        }
        self.specs.retain(|(s, _)| s.steps != Some(0));
        out.sort();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watched_modules_update_is_what_the_step_changed() {
        let w = Tensor::from_slice(&[1.0f32, -2.0, 3.0, 0.5])
            .view([2, 2])
            .set_requires_grad(true);
        let b = Tensor::from_slice(&[0.0f32, 0.0]).set_requires_grad(true);
        let other = Tensor::from_slice(&[7.0f32]).set_requires_grad(true);
        let vars = vec![
            ("d.fc.weight".to_string(), w.shallow_clone()),
            ("d.fc.bias".to_string(), b.shallow_clone()),
            ("g.out.weight".to_string(), other.shallow_clone()),
        ];
        register(&vars);
        let loss = (w.sum(Kind::Float) * 2.0 + b.sum(Kind::Float) + other.sum(Kind::Float))
            .sum(Kind::Float);
        loss.backward();
        let names: Vec<String> = vars.iter().map(|(n, _)| n.clone()).collect();
        let mut watches = Watches::default();
        watches.set(
            WatchSpec {
                module: "d.fc".into(),
                every: 1,
                steps: Some(2),
            },
            0,
        );
        let due = watches.due(0, &names);
        assert_eq!(due, ["d.fc.bias", "d.fc.weight"]);
        begin(due);
        // Plain SGD with lr 0.1 on every parameter.
        let watched = before_step(vars.iter().map(|(_, t)| t));
        tch::no_grad(|| {
            for (_, t) in &vars {
                let _ = t.shallow_clone().g_sub_(&(t.grad() * 0.1));
            }
        });
        after_step(watched);
        let stats = finish(0, &vars);
        assert_eq!(stats.len(), 1);
        let (module, s) = &stats[0];
        assert_eq!((module.as_str(), s.tensors), ("d.fc", 2));
        // Gradients: 2 for each of the 4 weights, 1 for each of the 2 biases.
        let grad = (4.0f64 * 4.0 + 2.0).sqrt();
        assert!((s.grad_norm.expect("stepped") - grad).abs() < 1e-9);
        assert!((s.update_norm.expect("stepped") - 0.1 * grad).abs() < 1e-6);
        let after: Vec<f64> = vec![0.8, -2.2, 2.8, 0.3, -0.1, -0.1];
        let norm = after.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!((s.weight_norm - norm).abs() < 1e-5, "{}", s.weight_norm);
        assert_eq!(s.hist.iter().sum::<u32>(), 6);
        assert_eq!(s.hist_range, [f64::from(-2.2f32), f64::from(2.8f32)]);
        assert_eq!(s.non_finite_grads, 0);
        // Nothing captured when nothing is watched; the watch ends after its two steps.
        assert!(finish(1, &vars).is_empty());
        assert_eq!(watches.due(1, &names).len(), 2);
        assert!(watches.is_empty());
        assert!(watches.due(2, &names).is_empty());
    }

    /// A watched layer's activations at or below zero are counted over every forward of the
    /// step; an unwatched layer's, and any when nothing is watched, are not.
    #[test]
    fn the_activations_a_watched_layer_feeds_are_counted_at_or_below_zero() {
        let w = Tensor::from_slice(&[1.0f32]).set_requires_grad(true);
        let other = Tensor::from_slice(&[2.0f32]).set_requires_grad(true);
        let vars = vec![
            ("g.l0.weight".to_string(), w.shallow_clone()),
            ("g.l1.weight".to_string(), other.shallow_clone()),
        ];
        register(&vars);
        let out = Tensor::from_slice(&[-1.0f32, 0.0, 2.0, 3.0]).relu();
        // Nothing watched: passed through, nothing counted.
        assert_eq!(act(&w, out.shallow_clone()), out);
        begin(["g.l0.weight".to_string()]);
        let _ = act(&w, out.shallow_clone());
        let _ = act(&w, Tensor::from_slice(&[5.0f32, -0.5]).relu());
        let _ = act(&other, out.shallow_clone());
        let stats = finish(3, &vars);
        assert_eq!(stats.len(), 1);
        // Two of four, then one of two: three of six.
        assert_eq!(stats[0].1.inactive, Some(0.5));
        begin(["g.l1.weight".to_string()]);
        let stats = finish(4, &vars);
        assert_eq!(stats[0].1.inactive, None, "a layer that fed no activation");
    }

    #[test]
    fn a_non_finite_gradient_is_named_by_its_tensor() {
        let a = Tensor::from_slice(&[1.0f32, 2.0]).set_requires_grad(true);
        let b = Tensor::from_slice(&[3.0f32]).set_requires_grad(true);
        register(&[
            ("d.a.weight".into(), a.shallow_clone()),
            ("d.b.weight".into(), b.shallow_clone()),
        ]);
        (a.sum(Kind::Float) + b.sum(Kind::Float)).backward();
        let _ = b.grad().fill_(f64::NAN);
        note_non_finite([&a, &b]);
        assert_eq!(take_non_finite(), ["d.b.weight"]);
        assert!(take_non_finite().is_empty());
        assert!(watches("*", "g.x.weight") && watches("d", "d.a.weight"));
        assert!(!watches("d.a", "d.ab.weight") && module_of("d.a.weight") == "d.a");
    }
}

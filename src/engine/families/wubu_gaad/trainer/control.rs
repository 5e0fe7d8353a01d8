//! The WuBu-GAAD trainer's control: the three Q-controllers (generator, active critic,
//! lambda_KL) deciding on interval means, the heuristics and critic switching, and the one
//! place that sets each optimizer's rate and momentum (the base times the controller's scale
//! and the heuristic boost).

use serde::{Deserialize, Serialize};

use super::WubuGaadTrainer;
use crate::core::control::heuristics::HeuristicState;
use crate::core::control::seed::{self as qs, CriticStep, GenHistory, GenStep, KlInterval};
use crate::core::control::{push_bounded, ActionSet, Better, QConfig, QController};
use crate::core::preset::wubu_gaad::{DiscKind, ValMetric};
use crate::core::protocol::Event;
use crate::core::rng::{derive_seed, Stream};
use crate::engine::EngineError;

/// The critics' names in events and logs.
pub(super) const DISC_NAMES: [&str; 2] = ["primary", "alternative"];

/// A critic controller's bounded histories of interval means and of its rewards.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub(super) struct CriticHist {
    pub(super) d_total: Vec<f64>,
    pub(super) rewards: Vec<f64>,
}
/// Sums of some values over the current decision interval: controllers decide on interval
/// means, not on the one step that happens to end the interval.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub(super) struct Interval {
    pub(super) sums: Vec<f64>,
    pub(super) count: u64,
}
impl Interval {
    pub(super) fn add(&mut self, values: &[f64]) {
        if self.sums.len() != values.len() {
            self.sums = vec![0.0; values.len()];
            self.count = 0;
        }
        for (s, v) in self.sums.iter_mut().zip(values) {
            *s += v;
        }
        self.count += 1;
    }

    /// The means since the last call; `None` when nothing was added.
    pub(super) fn take_means(&mut self) -> Option<Vec<f64>> {
        let n = std::mem::take(&mut self.count);
        let sums = std::mem::take(&mut self.sums);
        (n > 0).then(|| sums.iter().map(|s| s / n as f64).collect())
    }
}
/// Everything besides tensors that a checkpoint must hold for an exact resume.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct FamilyState {
    /// 0 = primary, 1 = alternative.
    pub(super) active: usize,
    pub(super) lambda_kl_base: f64,
    /// The preset's `train.lambda_kl` the base last started from: a phase that sets another
    /// value restarts the base there, even after loading a checkpoint of an earlier phase.
    pub(super) phase_lambda_kl: f64,
    pub(super) heur: HeuristicState,
    pub(super) q_gen: QController,
    pub(super) q_d: [QController; 2],
    pub(super) q_lkl: QController,
    pub(super) gen_hist: GenHistory,
    pub(super) d_hist: [CriticHist; 2],
    /// The generator's `[g_total, d_total, recon, kl, g_adv]` over the current interval.
    pub(super) gen_interval: Interval,
    /// Each critic's `[d_total, d_real, d_fake, g_adv]` over the current interval.
    pub(super) d_interval: [Interval; 2],
    /// Sums of (recon, kl, d_total) and the count over the current lambda_KL interval.
    pub(super) lkl_sums: [f64; 3],
    pub(super) lkl_count: u64,
    /// Previous intervals `[recon, kl, val, lambda, d_total]`.
    pub(super) lkl_prev: Vec<[f64; 5]>,
    pub(super) lkl_acted: bool,
    /// Latest validation metric (none before the first validation).
    pub(super) last_val: Option<f64>,
    pub(super) last_d_reward: [Option<f64>; 2],
    pub(super) lr_scale: [f64; 3],
    pub(super) mom_scale: [f64; 3],
}
pub(super) fn new_q(
    name: &str,
    sets: Vec<ActionSet>,
    seed: u64,
    index: u64,
) -> Result<QController, EngineError> {
    QController::new(
        name,
        QConfig::default(),
        sets,
        derive_seed(seed, Stream::Control, index),
    )
    .map_err(|e| EngineError::Model(e.to_string()))
}
pub(super) fn kind_name(k: DiscKind) -> &'static str {
    match k {
        DiscKind::PixelCnn => "pixel_cnn",
        DiscKind::WubuFeature => "wubu_feature",
    }
}

impl WubuGaadTrainer {
    pub(super) fn lr_base(&self, i: usize) -> f64 {
        let t = &self.cfg.train;
        [t.lr_gen, t.lr_disc_primary, t.lr_disc_alternative][i]
    }
    /// Applies a controller's decision (or neutral scales) to optimizer `i` (0 = generator,
    /// 1/2 = critics), with the heuristic LR boost for the active critic.
    pub(super) fn apply_scales(&mut self, i: usize) {
        let base = self.lr_base(i);
        let on = self.cfg.q_control.enabled;
        let (ls, ms) = if on {
            (self.st.lr_scale[i], self.st.mom_scale[i])
        } else {
            (1.0, 1.0)
        };
        let mut lr = (base * ls).clamp(1e-8, 1.0);
        if i > 0 && i - 1 == self.st.active && self.st.heur.d_lr_boost {
            lr = (lr * self.cfg.heuristics.d_lr_boost).min(1.0);
        }
        let momentum = (self.cfg.train.momentum * ms).clamp(0.0, 0.999);
        let opt = if i == 0 {
            &mut self.opt_g
        } else {
            &mut self.opt_d[i - 1]
        };
        opt.lr = lr;
        opt.momentum = momentum;
    }
    pub(super) fn val_better(&self) -> (ValMetric, Better) {
        let m = match self.cfg.validation.metric {
            ValMetric::Lpips if self.lpips.is_none() => ValMetric::Psnr,
            m => m,
        };
        (m, m.better())
    }
    /// The generator's controller at the end of an interval: state and reward from the
    /// interval's means, then new learning-rate and momentum scales.
    pub(super) fn gen_decision(&mut self, step: u64, lambda_kl: f64) {
        let Some(m) = self.st.gen_interval.take_means() else {
            return;
        };
        let s = GenStep {
            g_total: m[0],
            d_total: m[1],
            recon: m[2],
            kl: m[3],
            kl_per_dim: m[3] / self.d.z_dim() as f64,
            adv: m[4],
            lambda_kl,
            kl_high: self.cfg.heuristics.kl_high,
        };
        let h = &self.st.gen_hist;
        let state = qs::gen_state(h, &s);
        let reward = (!h.recon.is_empty()).then(|| qs::gen_reward(h, &s));
        let len = self.st.q_gen.cfg.history_len;
        let h = &mut self.st.gen_hist;
        push_bounded(&mut h.g_total, s.g_total, len);
        push_bounded(&mut h.recon, s.recon, len);
        push_bounded(&mut h.adv, s.adv, len);
        if let Some(r) = reward {
            push_bounded(&mut h.rewards, r, len);
        }
        let decision = self.st.q_gen.decide(Some(state), reward);
        self.st.lr_scale[0] = decision.actions.first().map_or(1.0, |x| x.2);
        self.st.mom_scale[0] = decision.actions.get(1).map_or(1.0, |x| x.2);
        self.apply_scales(0);
        let applied = vec![
            ("lr".to_string(), self.opt_g.lr),
            ("momentum".to_string(), self.opt_g.momentum),
        ];
        self.events
            .push(decision.into_event(step, "generator", applied));
    }
    /// The active critic's controller at the end of an interval.
    pub(super) fn critic_decision(&mut self, step: u64, a: usize) {
        let Some(m) = self.st.d_interval[a].take_means() else {
            return;
        };
        let s = CriticStep {
            d_total: m[0],
            d_real: m[1],
            d_fake: m[2],
            g_adv: m[3],
        };
        let h = &self.st.d_hist[a];
        let state = qs::critic_state(&h.d_total, &s);
        let reward = (!h.d_total.is_empty()).then(|| qs::critic_reward(&h.d_total, &h.rewards, &s));
        let len = self.st.q_d[a].cfg.history_len;
        let h = &mut self.st.d_hist[a];
        push_bounded(&mut h.d_total, s.d_total, len);
        if let Some(r) = reward {
            push_bounded(&mut h.rewards, r, len);
        }
        let decision = self.st.q_d[a].decide(Some(state), reward);
        self.st.last_d_reward[a] = decision.reward;
        self.st.lr_scale[a + 1] = decision.actions.first().map_or(1.0, |x| x.2);
        self.st.mom_scale[a + 1] = decision.actions.get(1).map_or(1.0, |x| x.2);
        self.apply_scales(a + 1);
        let applied = vec![
            ("lr".to_string(), self.opt_d[a].lr),
            ("momentum".to_string(), self.opt_d[a].momentum),
        ];
        self.events
            .push(decision.into_event(step, &format!("critic {}", DISC_NAMES[a]), applied));
    }
    pub(super) fn check_heuristics(&mut self, step: u64) {
        let active_is_feature = self.critics[self.st.active].kind() == DiscKind::WubuFeature;
        let out = self.st.heur.check(
            &self.cfg.heuristics,
            &self.cfg.switching,
            active_is_feature,
            self.cfg.train.lambda_fm,
            self.st.lambda_kl_base,
        );
        for (name, on) in &out.changes {
            self.events.push(Event::Intervention {
                step,
                name: (*name).to_string(),
                on: *on,
                values: out.values.clone(),
            });
        }
        if let Some(reason) = out.switch {
            let from = self.st.active;
            let to = 1 - from;
            self.st.active = to;
            // The newly active critic starts with a fresh controller and no stale momentum.
            self.st.q_d[to].reset();
            self.st.d_hist[to] = CriticHist::default();
            self.st.d_interval[to] = Interval::default();
            self.st.last_d_reward[to] = None;
            self.st.lr_scale[to + 1] = 1.0;
            self.st.mom_scale[to + 1] = 1.0;
            self.opt_d[to].reset_momentum();
            let label =
                |i: usize| format!("{} ({})", DISC_NAMES[i], kind_name(self.critics[i].kind()));
            self.events.push(Event::DiscriminatorSwitch {
                step,
                from: label(from),
                to: label(to),
                reason,
                values: out.values,
            });
        }
        if self.st.heur.force_explore && self.cfg.q_control.enabled {
            let h = &self.cfg.heuristics;
            self.st.q_d[self.st.active]
                .boost_exploration(u64::from(h.explore_decisions), h.explore_epsilon);
        }
    }
    pub(super) fn lkl_control(&mut self, step: u64) {
        let n = self.st.lkl_count.max(1) as f64;
        let cur = KlInterval {
            recon: self.st.lkl_sums[0] / n,
            kl: self.st.lkl_sums[1] / n,
            val_metric: self.st.last_val.unwrap_or(f64::NAN),
            lambda_kl: self.st.lambda_kl_base,
            d_total: self.st.lkl_sums[2] / n,
        };
        self.st.lkl_sums = [0.0; 3];
        self.st.lkl_count = 0;
        let prev: Vec<KlInterval> = self
            .st
            .lkl_prev
            .iter()
            .map(|a| KlInterval {
                recon: a[0],
                kl: a[1],
                val_metric: a[2],
                lambda_kl: a[3],
                d_total: a[4],
            })
            .collect();
        let Some(state) = qs::kl_state(&prev, &cur) else {
            return;
        };
        let (_, better) = self.val_better();
        let kl_high = self.cfg.heuristics.kl_high;
        let reward = match (self.st.lkl_acted, prev.last()) {
            (true, Some(p)) => Some(qs::kl_reward(p, &cur, better, kl_high)),
            _ => None,
        };
        let decision = self.st.q_lkl.decide(Some(state), reward);
        self.st.lkl_acted = true;
        let scale = decision.actions.first().map_or(1.0, |a| a.2);
        let q = &self.cfg.q_control;
        self.st.lambda_kl_base = (self.st.lambda_kl_base * scale).clamp(q.lkl_min, q.lkl_max);
        self.st.lkl_prev.push([
            cur.recon,
            cur.kl,
            cur.val_metric,
            cur.lambda_kl,
            cur.d_total,
        ]);
        let keep = self.st.q_lkl.cfg.history_len.max(2);
        if self.st.lkl_prev.len() > keep {
            self.st.lkl_prev.remove(0);
        }
        let applied = vec![("lambda_kl".to_string(), self.st.lambda_kl_base)];
        self.events
            .push(decision.into_event(step, "lambda_kl", applied));
    }
}

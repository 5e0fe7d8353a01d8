//! The WuBu-GAAD trainer's heuristic interventions and discriminator switching (spec sections
//! 6 and 7), as a pure state machine over loss histories: no tensors, so every trigger is
//! testable on scripted histories.
//!
//! Differences from the original, on purpose (spec 11.7):
//! - Switching works whichever discriminator is primary: "the critic is too weak" and "the
//!   critic is too strong" each switch away from the active one, whatever its kind.
//! - Switching runs whether or not the other interventions are enabled.
//! - The minimum distance between switches is counted in optimizer steps.
//! - KL is read per latent dimension (nats), the unit of `heuristics.kl_high`: the seed
//!   compared a KL summed over 512 dimensions with 15, so "KL high" always held and the
//!   strong-critic switch (KL below 1.5 times it) could never fire.
//! - KL reduction always cuts the KL factor by 30% (`max(0.5, factor·0.7)`); the seed's
//!   "1.05 when feature matching fired" is that cut applied to feature matching's 1.5 boost,
//!   not a value to set when there was no boost.

use serde::{Deserialize, Serialize};

use crate::core::preset::schema::FieldKind as K;

use crate::core::control::median;

/// The default of `heuristics.kl_high`, in nats per latent dimension. The encoder starts at
/// about 2.5 nats per dimension (its log-variance bias is −6, a posterior deviation of e^−3),
/// so "high" means the posterior has drifted tighter or further from the prior than it
/// started; the strong-critic switch, which needs KL below 1.5 times this, can fire from the
/// first steps.
pub const KL_HIGH_PER_DIM: f64 = 3.0;

/// Which discriminator trains first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitialDisc {
    Primary,
    Alternative,
}

crate::preset_section! {
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Heuristics {
        pub enabled: bool => field(K::Bool, "", [phase], "Heuristic interventions (section 6)"),
        pub check_every_steps: u64 => field(K::Int { min: 1, max: 1000000 }, "steps", [phase], "Steps between heuristic and switch checks"),
        pub short_history: u32 => field(K::Int { min: 1, max: 10000 }, "steps", [phase], "Recent values whose median the checks read"),
        pub trigger_count: u32 => field(K::Int { min: 1, max: 1000 }, "checks", [phase], "Consecutive checks a condition must hold"),
        pub d_strong: f64 => field(K::Float { min: 0.0, max: 1000000.0 }, "", [phase], "d_total below this: the critic is strong"),
        pub d_very_weak: f64 => field(K::Float { min: 0.0, max: 1000000.0 }, "", [phase], "d_total above this: the critic is very weak"),
        pub g_stalled: f64 => field(K::Float { min: 0.0, max: 1000000.0 }, "", [phase], "g_adv above this: the generator is stalled"),
        pub g_winning: f64 => field(K::Float { min: 0.0, max: 1000000.0 }, "", [phase], "g_adv below this gates the easy-win penalty"),
        pub g_very_much_winning: f64 => field(K::Float { min: 0.0, max: 1000000.0 }, "", [phase], "g_adv below this: the generator wins very easily"),
        /// KL per latent dimension (nats) above which KL counts as high.
        pub kl_high: f64 => field(K::Float { min: 0.0, max: 1000000.0 }, "nats/dim", [phase], "KL per latent dimension above this is high (KL reduction; the strong-critic switch needs less than 1.5x it)"),
        pub recon_stagnation_rel: f64 => field(K::Float { min: 0.0, max: 1.0 }, "", [phase], "Relative recon improvement below this counts as stagnant"),
        pub good_recon: f64 => field(K::Float { min: 0.0, max: 1000000.0 }, "", [phase], "Recon below 1.25x this is never called stagnant"),
        pub q_reward_stagnation: f64 => field(K::Float { min: -10.0, max: 10.0 }, "", [phase], "Active critic's median reward below this: its controller is stagnant"),
        pub recon_boost: f64 => field(K::Float { min: 1.0, max: 100.0 }, "x", [phase], "Recon factor while rebalancing or reducing KL"),
        pub easy_win_weight: f64 => field(K::Float { min: 0.0, max: 1000000.0 }, "", [phase], "Weight of the easy-win penalty"),
        pub easy_win_max: f64 => field(K::Float { min: 0.0, max: 1000000.0 }, "", [phase], "Cap of the easy-win penalty"),
        pub d_lr_boost: f64 => field(K::Float { min: 1.0, max: 100.0 }, "x", [phase], "Active critic's LR multiplier while its controller is stagnant"),
        pub explore_epsilon: f64 => field(K::Float { min: 0.0, max: 1.0 }, "", [phase], "Epsilon of a forced exploration of the critic's controller"),
        pub explore_decisions: u32 => field(K::Int { min: 0, max: 100000 }, "decisions", [phase], "Length of a forced exploration"),
        pub gan_factor_min: f64 => field(K::Float { min: 0.0, max: 10.0 }, "x", [phase], "Lowest GAN factor"),
        pub gan_factor_max: f64 => field(K::Float { min: 0.0, max: 10.0 }, "x", [phase], "Highest GAN factor"),
    }
}

crate::preset_section! {
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Switching {
        pub enabled: bool => field(K::Bool, "", [phase], "Switch between the two discriminators (section 7)"),
        pub initial: InitialDisc => field(K::Choice(&["primary", "alternative"]), "", [], "The discriminator a fresh run starts with"),
        pub min_steps_between: u64 => field(K::Int { min: 0, max: 100000000 }, "steps", [phase], "Steps after a switch before the next"),
        pub trigger_count: u32 => field(K::Int { min: 1, max: 1000 }, "checks", [phase], "Consecutive checks a switch condition must hold"),
    }
}

impl Default for Heuristics {
    /// The original's command-line defaults, KL per latent dimension.
    fn default() -> Self {
        Self {
            enabled: true,
            check_every_steps: 10,
            short_history: 7,
            trigger_count: 2,
            d_strong: 0.20,
            d_very_weak: 2.0,
            g_stalled: 1.8,
            g_winning: 0.15,
            g_very_much_winning: 0.03,
            kl_high: KL_HIGH_PER_DIM,
            recon_stagnation_rel: 0.001,
            good_recon: 0.015,
            q_reward_stagnation: -0.3,
            recon_boost: 1.5,
            easy_win_weight: 1.0,
            easy_win_max: 10.0,
            d_lr_boost: 2.0,
            explore_epsilon: 0.75,
            explore_decisions: 15,
            gan_factor_min: 0.5,
            gan_factor_max: 1.5,
        }
    }
}

impl Default for Switching {
    fn default() -> Self {
        Self {
            enabled: true,
            initial: InitialDisc::Primary,
            min_steps_between: 50,
            trigger_count: 2,
        }
    }
}

/// One step's values the checks read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepValues {
    pub g_adv: f64,
    /// KL per latent dimension (nats).
    pub kl: f64,
    pub recon: f64,
    /// The active discriminator's total loss.
    pub d_total: f64,
    /// The active discriminator controller's latest reward, when it has one.
    pub d_reward: Option<f64>,
}

/// What one check decided.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Outcome {
    /// `Some(reason)` when the active discriminator must change.
    pub switch: Option<String>,
    /// Interventions that turned on or off at this check: `(name, on)`.
    pub changes: Vec<(&'static str, bool)>,
    /// The values the check read, for events and hover text.
    pub values: Vec<(String, f64)>,
}

/// Interventions' state; saved in checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeuristicState {
    g_adv: Vec<f64>,
    kl: Vec<f64>,
    d_total: Vec<f64>,
    d_reward: Vec<f64>,
    recon: Vec<f64>,
    /// Short-term recon medians, one per check (stagnation is judged on these).
    recon_checks: Vec<f64>,
    pub rec_stagnant: bool,
    rebalance_count: u32,
    fm_count: u32,
    kl_count: u32,
    weak_count: u32,
    strong_count: u32,
    pub steps_since_switch: u64,
    pub gan_factor: f64,
    pub recon_factor: f64,
    pub kl_factor: f64,
    /// The easy-win penalty is on.
    pub penalize_easy_win: bool,
    pub feature_matching: bool,
    pub kl_reduction: bool,
    pub d_lr_boost: bool,
    /// Forced exploration of the active critic's controller was requested at the last check.
    pub force_explore: bool,
}

impl Default for HeuristicState {
    fn default() -> Self {
        Self {
            g_adv: Vec::new(),
            kl: Vec::new(),
            d_total: Vec::new(),
            d_reward: Vec::new(),
            recon: Vec::new(),
            recon_checks: Vec::new(),
            rec_stagnant: false,
            rebalance_count: 0,
            fm_count: 0,
            kl_count: 0,
            weak_count: 0,
            strong_count: 0,
            steps_since_switch: 0,
            gan_factor: 1.0,
            recon_factor: 1.0,
            kl_factor: 1.0,
            penalize_easy_win: false,
            feature_matching: false,
            kl_reduction: false,
            d_lr_boost: false,
            force_explore: false,
        }
    }
}

fn push(v: &mut Vec<f64>, x: f64, len: usize) {
    if x.is_finite() {
        v.push(x);
        if v.len() > len {
            v.drain(..v.len() - len);
        }
    }
}

impl HeuristicState {
    /// Records one optimizer step.
    pub fn observe(&mut self, s: &StepValues, cfg: &Heuristics) {
        let len = cfg.short_history.max(1) as usize;
        push(&mut self.g_adv, s.g_adv, len);
        push(&mut self.kl, s.kl, len);
        push(&mut self.recon, s.recon, len);
        push(&mut self.d_total, s.d_total, len);
        if let Some(r) = s.d_reward {
            push(&mut self.d_reward, r, len);
        }
        self.steps_since_switch += 1;
    }

    /// Forgets the active critic's history and every trigger (after a switch or a reset).
    fn reset_after_switch(&mut self) {
        self.d_total.clear();
        self.d_reward.clear();
        self.recon_checks.clear();
        self.rec_stagnant = false;
        self.weak_count = 0;
        self.strong_count = 0;
        self.steps_since_switch = 0;
        self.clear_interventions();
    }

    /// Ends every intervention: counters, factors back to 1 and flags off.
    fn clear_interventions(&mut self) {
        self.rebalance_count = 0;
        self.fm_count = 0;
        self.kl_count = 0;
        self.gan_factor = 1.0;
        self.recon_factor = 1.0;
        self.kl_factor = 1.0;
        self.penalize_easy_win = false;
        self.feature_matching = false;
        self.kl_reduction = false;
        self.d_lr_boost = false;
        self.force_explore = false;
    }

    /// One check (every `check_every_steps`). `active_is_feature`: whether the active
    /// critic gives features for feature matching; `lambda_kl`: the base KL weight.
    pub fn check(
        &mut self,
        cfg: &Heuristics,
        sw: &Switching,
        active_is_feature: bool,
        lambda_fm: f64,
        lambda_kl: f64,
    ) -> Outcome {
        let g_adv = median(&self.g_adv).unwrap_or(0.7);
        let d_total = median(&self.d_total).unwrap_or(0.7);
        let kl = median(&self.kl).unwrap_or(0.0);
        let d_reward = median(&self.d_reward).unwrap_or(0.0);
        let recon = median(&self.recon);
        // Recon stagnation against the previous checks' medians.
        if let Some(r) = recon {
            let keep = cfg.short_history.max(3) as usize;
            push(&mut self.recon_checks, r, keep);
        }
        self.rec_stagnant = match (self.recon_checks.split_last(), recon) {
            (Some((&cur, past)), Some(_)) if past.len() >= 2 => {
                let prev = median(past).unwrap_or(cur);
                prev - cur < cfg.recon_stagnation_rel * prev.abs() && cur > 1.25 * cfg.good_recon
            }
            _ => false,
        };
        let g_very_winning = g_adv < cfg.g_very_much_winning;
        let d_very_weak = d_total > cfg.d_very_weak;
        let d_q_stagnant = d_reward < cfg.q_reward_stagnation;
        let d_strong = d_total < cfg.d_strong;
        let g_stalled = g_adv > cfg.g_stalled;
        let kl_high = kl > cfg.kl_high;
        let mut out = Outcome {
            values: vec![
                ("g_adv_median".into(), g_adv),
                ("d_total_median".into(), d_total),
                ("kl_median".into(), kl),
                ("d_reward_median".into(), d_reward),
                ("recon_median".into(), recon.unwrap_or(f64::NAN)),
                (
                    "rec_stagnant".into(),
                    f64::from(u8::from(self.rec_stagnant)),
                ),
            ],
            ..Outcome::default()
        };
        let before = self.flags();

        // Switching (section 7), type-agnostic.
        if sw.enabled && self.steps_since_switch >= sw.min_steps_between {
            let weak = g_very_winning && (d_very_weak || d_q_stagnant) && self.rec_stagnant;
            let strong = d_strong && g_stalled && kl < 1.5 * cfg.kl_high;
            self.weak_count = if weak { self.weak_count + 1 } else { 0 };
            self.strong_count = if strong { self.strong_count + 1 } else { 0 };
            let need = sw.trigger_count.max(1);
            let reason = if self.weak_count >= need {
                Some(format!(
                    "the active critic is too weak for {} checks: g_adv {g_adv:.4} < {}, d_total {d_total:.3} > {} or its reward {d_reward:.3} < {}, recon stagnant",
                    self.weak_count, cfg.g_very_much_winning, cfg.d_very_weak, cfg.q_reward_stagnation
                ))
            } else if self.strong_count >= need {
                Some(format!(
                    "the active critic is too strong for {} checks: d_total {d_total:.3} < {}, g_adv {g_adv:.3} > {}, KL {kl:.2} < {}",
                    self.strong_count, cfg.d_strong, cfg.g_stalled, 1.5 * cfg.kl_high
                ))
            } else {
                None
            };
            if let Some(reason) = reason {
                self.reset_after_switch();
                out.switch = Some(reason);
                out.changes = diff(before, self.flags());
                return out;
            }
        }

        if !cfg.enabled {
            self.clear_interventions();
            out.changes = diff(before, self.flags());
            return out;
        }

        let prev_kl_factor = self.kl_factor;
        self.recon_factor = 1.0;
        self.kl_factor = 1.0;
        let need = cfg.trigger_count.max(1);

        // GAN rebalance.
        let rebalance = g_very_winning && (d_very_weak || d_q_stagnant) && self.rec_stagnant;
        self.rebalance_count = if rebalance {
            self.rebalance_count + 1
        } else {
            0
        };
        self.penalize_easy_win = self.rebalance_count >= need;
        self.d_lr_boost = self.penalize_easy_win && d_q_stagnant;
        self.force_explore = self.d_lr_boost;
        if self.penalize_easy_win {
            self.recon_factor = cfg.recon_boost;
            self.gan_factor = (self.gan_factor * 1.05).min(cfg.gan_factor_max);
        } else if self.gan_factor > 1.0 {
            self.gan_factor = (self.gan_factor * 0.98).max(1.0);
        }

        // VAE feature matching.
        let fm = active_is_feature
            && lambda_fm > 0.0
            && !g_very_winning
            && !d_very_weak
            && (d_strong || !d_q_stagnant)
            && self.rec_stagnant;
        self.fm_count = if fm { self.fm_count + 1 } else { 0 };
        self.feature_matching = self.fm_count >= need;
        if self.feature_matching {
            if lambda_kl * self.kl_factor < 1e-4 {
                self.kl_factor = 1.5;
            }
            self.gan_factor = (self.gan_factor * 0.95).max(cfg.gan_factor_min);
        } else if self.gan_factor < 1.0 {
            self.gan_factor = (self.gan_factor * 1.02).min(1.0);
        }

        // KL reduction.
        let klr = kl_high && self.rec_stagnant;
        self.kl_count = if klr { self.kl_count + 1 } else { 0 };
        self.kl_reduction = self.kl_count >= need;
        if self.kl_reduction {
            // From feature matching's boost (1.5) when it gave one, else from 1.0.
            self.kl_factor = (self.kl_factor * 0.7).max(0.5);
            self.recon_factor = cfg.recon_boost;
        } else if prev_kl_factor < 1.0 && !self.feature_matching {
            self.kl_factor = (prev_kl_factor * 1.02).min(1.0);
        }
        self.gan_factor = self
            .gan_factor
            .clamp(cfg.gan_factor_min.min(1.0), cfg.gan_factor_max.max(1.0));
        out.changes = diff(before, self.flags());
        out.values.extend([
            ("gan_factor".to_string(), self.gan_factor),
            ("recon_factor".to_string(), self.recon_factor),
            ("kl_factor".to_string(), self.kl_factor),
        ]);
        out
    }

    fn flags(&self) -> [(&'static str, bool); 5] {
        [
            ("easy-win penalty", self.penalize_easy_win),
            ("feature matching", self.feature_matching),
            ("kl reduction", self.kl_reduction),
            ("critic lr boost", self.d_lr_boost),
            ("forced exploration", self.force_explore),
        ]
    }
}

fn diff(a: [(&'static str, bool); 5], b: [(&'static str, bool); 5]) -> Vec<(&'static str, bool)> {
    a.iter()
        .zip(b)
        .filter(|(x, y)| x.1 != y.1)
        .map(|(_, y)| y)
        .collect()
}

/// The easy-win penalty (spec 8), with a gradient this time: the caller evaluates the same
/// formula on tensors. Here for the gate and for tests.
#[must_use]
pub fn easy_win_penalty(adv: f64, recon: f64, cfg: &Heuristics) -> f64 {
    if adv < cfg.g_winning && recon > cfg.good_recon {
        ((recon - cfg.good_recon) / (adv + 1e-5) * cfg.easy_win_weight).clamp(0.0, cfg.easy_win_max)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfgs() -> (Heuristics, Switching) {
        (Heuristics::default(), Switching::default())
    }

    /// Feeds `checks` checks of `every` identical steps; recon falls by `recon_drop` per step.
    fn run(
        st: &mut HeuristicState,
        h: &Heuristics,
        sw: &Switching,
        feature: bool,
        checks: usize,
        v: StepValues,
        recon_drop: f64,
    ) -> Vec<Outcome> {
        run_kl(st, h, sw, feature, checks, v, recon_drop, 1e-3)
    }

    /// [`run`] with the base lambda_KL given.
    #[allow(clippy::too_many_arguments)]
    fn run_kl(
        st: &mut HeuristicState,
        h: &Heuristics,
        sw: &Switching,
        feature: bool,
        checks: usize,
        v: StepValues,
        recon_drop: f64,
        lambda_kl: f64,
    ) -> Vec<Outcome> {
        let mut out = Vec::new();
        let mut recon = v.recon;
        for _ in 0..checks {
            for _ in 0..h.check_every_steps {
                st.observe(&StepValues { recon, ..v }, h);
                recon -= recon_drop;
            }
            out.push(st.check(h, sw, feature, 0.1, lambda_kl));
        }
        out
    }

    fn fired(out: &[Outcome], name: &str, on: bool) -> bool {
        out.iter()
            .any(|o| o.changes.contains(&(name_static(name), on)))
    }

    fn name_static(name: &str) -> &'static str {
        [
            "easy-win penalty",
            "feature matching",
            "kl reduction",
            "critic lr boost",
            "forced exploration",
        ]
        .into_iter()
        .find(|n| *n == name)
        .unwrap_or("?")
    }

    /// KL per dimension of the default encoder at initialisation: KL summed over its 512
    /// latent dimensions starts near 1,300 (log-variance bias −6).
    fn kl_at_start() -> f64 {
        1300.0 / 512.0
    }

    /// With the default preset's thresholds and the KL the default model really has, each
    /// switch direction and each intervention fires when its condition holds and stops when
    /// it ends. The screenshot run that found the scale bug (critic dominant: d_total 0.031,
    /// g_adv 3.54, KL as at the start) must switch.
    #[test]
    fn default_scales_fire_and_stop_every_switch_and_intervention() {
        let (h, sw) = cfgs();
        let kl = kl_at_start();
        assert!(kl < h.kl_high, "the start is not 'KL high': {kl}");
        // Too strong a critic: switches.
        let dominant = StepValues {
            g_adv: 3.54,
            kl,
            recon: 0.05,
            d_total: 0.031,
            d_reward: Some(0.2),
        };
        let mut st = HeuristicState::default();
        let out = run(&mut st, &h, &sw, false, 12, dominant, 0.0);
        let reason = out.iter().find_map(|o| o.switch.clone());
        assert!(
            reason.as_deref().is_some_and(|r| r.contains("too strong")),
            "{out:?}"
        );
        // Too weak a critic (generator fools it, recon stuck): switches the other way.
        let weak = StepValues {
            g_adv: 0.01,
            kl,
            recon: 0.05,
            d_total: 2.5,
            d_reward: Some(-1.0),
        };
        let mut st = HeuristicState::default();
        let out = run(&mut st, &h, &sw, false, 12, weak, 0.0);
        assert!(out
            .iter()
            .any(|o| o.switch.as_deref().is_some_and(|r| r.contains("too weak"))));
        // With switching off, the same conditions fire the interventions, which stop when the
        // conditions end.
        let mut sw_off = sw.clone();
        sw_off.enabled = false;
        let calm = StepValues {
            g_adv: 0.7,
            kl,
            recon: 0.05,
            d_total: 0.6,
            d_reward: Some(0.5),
        };
        let mut st = HeuristicState::default();
        let on = run(&mut st, &h, &sw_off, false, 8, weak, 0.0);
        for name in ["easy-win penalty", "critic lr boost", "forced exploration"] {
            assert!(fired(&on, name, true), "{name} never fired: {on:?}");
        }
        let off = run(&mut st, &h, &sw_off, false, 2, calm, 0.0);
        for name in ["easy-win penalty", "critic lr boost", "forced exploration"] {
            assert!(fired(&off, name, false), "{name} never stopped: {off:?}");
        }
        // Feature matching: a strong feature critic while recon is stuck.
        let strong_feature = StepValues {
            g_adv: 0.9,
            d_total: 0.1,
            ..calm
        };
        let mut st = HeuristicState::default();
        let on = run(&mut st, &h, &sw_off, true, 8, strong_feature, 0.0);
        assert!(fired(&on, "feature matching", true), "{on:?}");
        let off = run(
            &mut st,
            &h,
            &sw_off,
            true,
            2,
            StepValues {
                g_adv: 0.01,
                ..calm
            },
            0.0,
        );
        assert!(fired(&off, "feature matching", false), "{off:?}");
        // KL reduction: the posterior drifted to twice the start's KL per dimension.
        let mut st = HeuristicState::default();
        let on = run(
            &mut st,
            &h,
            &sw_off,
            false,
            8,
            StepValues {
                kl: 2.0 * kl,
                ..calm
            },
            0.0,
        );
        assert!(fired(&on, "kl reduction", true), "{on:?}");
        assert!((st.kl_factor - 0.7).abs() < 1e-12);
        let off = run(&mut st, &h, &sw_off, false, 2, calm, 0.0);
        assert!(fired(&off, "kl reduction", false), "{off:?}");
        assert!(st.kl_factor > 0.7, "the factor recovers towards 1");
        // Balanced training at the start's KL changes nothing.
        let mut st = HeuristicState::default();
        let out = run(&mut st, &h, &sw, false, 20, calm, 0.0);
        assert!(
            out.iter()
                .all(|o| o.changes.is_empty() && o.switch.is_none()),
            "{out:?}"
        );
    }

    #[test]
    fn kl_reduction_cuts_feature_matchings_boost_and_never_raises_the_factor() {
        let (h, mut sw) = cfgs();
        sw.enabled = false;
        // A strong feature critic with stuck recon (feature matching) and high KL.
        let v = StepValues {
            g_adv: 0.9,
            kl: 2.0 * kl_at_start(),
            recon: 0.5,
            d_total: 0.1,
            d_reward: Some(0.5),
        };
        // lambda_KL large enough that feature matching gives no boost: a plain 30% cut.
        let mut st = HeuristicState::default();
        run_kl(&mut st, &h, &sw, true, 8, v, 0.0, 1e-3);
        assert!(st.feature_matching && st.kl_reduction);
        assert!((st.kl_factor - 0.7).abs() < 1e-12, "{}", st.kl_factor);
        // A tiny lambda_KL: feature matching boosts to 1.5, KL reduction cuts that to 1.05.
        let mut st = HeuristicState::default();
        run_kl(&mut st, &h, &sw, true, 8, v, 0.0, 1e-5);
        assert!(st.feature_matching && st.kl_reduction);
        assert!((st.kl_factor - 1.05).abs() < 1e-12, "{}", st.kl_factor);
    }

    /// Neither side winning, a moderate KL.
    const BALANCED: StepValues = StepValues {
        g_adv: 0.7,
        kl: 1.0,
        recon: 0.5,
        d_total: 0.6,
        d_reward: Some(0.5),
    };

    const G_WINS_D_WEAK: StepValues = StepValues {
        g_adv: 0.01,
        kl: 1.0,
        recon: 0.5,
        d_total: 2.5,
        d_reward: Some(0.0),
    };

    #[test]
    fn rebalance_fires_after_the_trigger_count_and_only_when_recon_stagnates() {
        let (h, mut sw) = cfgs();
        sw.enabled = false;
        let mut st = HeuristicState::default();
        // Recon still improving fast: nothing fires.
        let out = run(&mut st, &h, &sw, false, 6, G_WINS_D_WEAK, 0.005);
        assert!(out.iter().all(|o| o.changes.is_empty()), "{out:?}");
        assert!(!st.penalize_easy_win);
        // Recon flat: stagnation needs 3 check medians, then 2 consecutive checks.
        let mut st = HeuristicState::default();
        let out = run(&mut st, &h, &sw, false, 4, G_WINS_D_WEAK, 0.0);
        let fired: Vec<usize> = out
            .iter()
            .enumerate()
            .filter(|(_, o)| o.changes.contains(&("easy-win penalty", true)))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(fired, vec![3], "{out:?}");
        assert!((st.recon_factor - h.recon_boost).abs() < 1e-12);
        assert!(st.gan_factor > 1.0);
        assert!(!st.d_lr_boost, "the critic's reward is not stagnant");
        // The condition ends: the penalty turns off and the GAN factor decays towards 1.
        let g = st.gan_factor;
        let out = run(
            &mut st,
            &h,
            &sw,
            false,
            1,
            StepValues {
                g_adv: 0.8,
                ..G_WINS_D_WEAK
            },
            0.0,
        );
        assert_eq!(out[0].changes, vec![("easy-win penalty", false)]);
        assert!(st.gan_factor < g && st.gan_factor >= 1.0);
    }

    #[test]
    fn a_stagnant_critic_reward_boosts_its_lr_and_forces_exploration() {
        let (h, mut sw) = cfgs();
        sw.enabled = false;
        let mut st = HeuristicState::default();
        let v = StepValues {
            d_total: 0.5,
            d_reward: Some(-1.0),
            ..G_WINS_D_WEAK
        };
        run(&mut st, &h, &sw, false, 4, v, 0.0);
        assert!(st.penalize_easy_win && st.d_lr_boost && st.force_explore);
    }

    #[test]
    fn feature_matching_needs_a_feature_critic() {
        let (h, mut sw) = cfgs();
        sw.enabled = false;
        let v = StepValues {
            d_total: 0.1,
            ..BALANCED
        };
        let mut st = HeuristicState::default();
        run(&mut st, &h, &sw, false, 6, v, 0.0);
        assert!(!st.feature_matching);
        let mut st = HeuristicState::default();
        run(&mut st, &h, &sw, true, 6, v, 0.0);
        assert!(st.feature_matching);
        assert!(st.gan_factor < 1.0 && st.gan_factor >= h.gan_factor_min);
    }

    #[test]
    fn kl_reduction_fires_on_high_kl_with_stagnant_recon() {
        let (h, mut sw) = cfgs();
        sw.enabled = false;
        let v = StepValues {
            kl: 40.0,
            ..BALANCED
        };
        let mut st = HeuristicState::default();
        run(&mut st, &h, &sw, false, 6, v, 0.0);
        assert!(st.kl_reduction);
        assert!((st.kl_factor - 0.7).abs() < 1e-12);
        let mut st = HeuristicState::default();
        run(&mut st, &h, &sw, false, 6, StepValues { kl: 2.5, ..v }, 0.0);
        assert!(!st.kl_reduction);
        assert!((st.kl_factor - 1.0).abs() < 1e-12);
    }

    #[test]
    fn switching_fires_either_way_respects_the_gap_and_resets() {
        let (h, mut sw) = cfgs();
        sw.min_steps_between = 30;
        // Too weak a critic, whichever kind it is.
        for feature in [false, true] {
            let mut st = HeuristicState::default();
            let out = run(&mut st, &h, &sw, feature, 5, G_WINS_D_WEAK, 0.0);
            let at: Vec<usize> = out
                .iter()
                .enumerate()
                .filter(|(_, o)| o.switch.is_some())
                .map(|(i, _)| i)
                .collect();
            assert_eq!(at, vec![3], "feature={feature}: {out:?}");
            assert_eq!(st.steps_since_switch, 10);
            assert!(!st.rec_stagnant);
        }
        // Too strong a critic.
        let v = StepValues {
            g_adv: 2.5,
            kl: 1.0,
            recon: 0.5,
            d_total: 0.05,
            d_reward: Some(0.5),
        };
        let mut st = HeuristicState::default();
        let out = run(&mut st, &h, &sw, false, 4, v, 0.01);
        // The gap of 30 steps holds the first two checks back.
        assert!(out[0].switch.is_none() && out[1].switch.is_none());
        assert!(out[3].switch.as_deref().unwrap().contains("too strong"));
        // Balanced training never switches.
        let mut st = HeuristicState::default();
        let v = StepValues {
            g_adv: 0.7,
            kl: 1.0,
            recon: 0.5,
            d_total: 0.6,
            d_reward: Some(0.5),
        };
        let out = run(&mut st, &h, &sw, false, 20, v, 0.0);
        assert!(out.iter().all(|o| o.switch.is_none()));
    }

    #[test]
    fn disabled_interventions_stay_neutral_but_switching_still_works() {
        let (mut h, sw) = cfgs();
        h.enabled = false;
        let mut st = HeuristicState::default();
        let out = run(&mut st, &h, &sw, false, 8, G_WINS_D_WEAK, 0.0);
        assert!(!st.penalize_easy_win);
        assert!((st.gan_factor - 1.0).abs() < 1e-12);
        assert!(out.iter().any(|o| o.switch.is_some()));
    }

    #[test]
    fn easy_win_penalty_gate_and_cap() {
        let (h, _) = cfgs();
        assert_eq!(easy_win_penalty(0.5, 1.0, &h), 0.0);
        assert_eq!(easy_win_penalty(0.01, 0.01, &h), 0.0);
        let p = easy_win_penalty(0.1, 0.115, &h);
        assert!((p - 0.1 / (0.1 + 1e-5)).abs() < 1e-9, "{p}");
        assert_eq!(easy_win_penalty(1e-6, 1.0, &h), h.easy_win_max);
    }
}

//! The seed's three controllers' inputs and rewards (spec 5.3 and 5.6), as pure functions of
//! numbers, so any family with the same losses can use them. Histories hold the means of
//! earlier decision intervals, without the current one.
//!
//! Differences from the seed, on purpose (spec 11.20):
//! - States hold only what the controller observes: no bins of its own previous learning
//!   rate, momentum or lambda (its last actions) and no epsilon bin, and trends are coarse
//!   (falling, flat, rising). The seed's states almost never repeated, so its tables never
//!   learned; these have at most 81 (generator), 36 (critic) and 36 (lambda_KL) states.
//! - KL thresholds are in nats per latent dimension, against `kl_high` (the heuristics'
//!   threshold): the seed compared KL summed over 512 dimensions with per-model numbers
//!   (100, 150), so its "KL is large" always held.
//! - The generator's and critics' rewards carry the seed's shared penalties
//!   ([`super::shared_penalty`]) on their total loss, as the seed's rewards do.

use super::q_learning::{bin, median, shared_penalty, trend3, Better, State};

/// Relative change `(prev − cur)/|prev|`, 0 when there is no usable previous value.
fn improvement(prev: Option<f64>, cur: f64) -> f64 {
    match prev {
        Some(p) if p.is_finite() && cur.is_finite() && p.abs() > 1e-12 => (p - cur) / p.abs(),
        _ => 0.0,
    }
}

/// One decision interval's means of the generator's (or encoder's) losses and settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenStep {
    pub g_total: f64,
    pub d_total: f64,
    pub recon: f64,
    /// KL summed over the latent dimensions, as it enters the loss.
    pub kl: f64,
    /// KL per latent dimension (nats).
    pub kl_per_dim: f64,
    pub adv: f64,
    pub lambda_kl: f64,
    /// KL per dimension that counts as high (`heuristics.kl_high`).
    pub kl_high: f64,
}

/// The loss-problem flag of the generator state: 1 when the weighted KL dwarfs the
/// reconstruction, 2 when the KL per dimension is more than twice `kl_high`, else 0.
#[must_use]
pub fn kl_problem(s: &GenStep) -> u8 {
    if s.lambda_kl * s.kl > 5.0 * s.recon && s.recon > 0.10 && s.lambda_kl > 5e-4 {
        1
    } else if s.kl_per_dim > 2.0 * s.kl_high && s.recon > 0.15 && s.lambda_kl > 5e-3 {
        2
    } else {
        0
    }
}

/// Histories the trends are taken against (without the current interval).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GenHistory {
    pub g_total: Vec<f64>,
    pub recon: Vec<f64>,
    pub adv: Vec<f64>,
    /// The controller's last rewards (for the oscillation penalty).
    pub rewards: Vec<f64>,
}

/// The generator state ("LRM_G"): recon trend, adversarial loss band, critic balance
/// band, KL problem. 81 states at most.
#[must_use]
pub fn gen_state(h: &GenHistory, s: &GenStep) -> State {
    vec![
        trend3(&h.recon, s.recon),
        bin(s.adv, &[0.3, 1.0]),
        bin(s.d_total, &[0.3, 0.75]),
        kl_problem(s),
    ]
}

/// The generator's reward: reconstruction gains (weighted up while it is still high),
/// adversarial gains, a KL penalty, a bonus for a balanced critic, total-loss gains, and
/// the shared penalties on the total loss.
#[must_use]
pub fn gen_reward(h: &GenHistory, s: &GenStep) -> f64 {
    let mut r = 0.0;
    if let Some(prev) = median(&h.recon) {
        let weight = 1.0 + (1.0 + 20.0 * (s.recon - 0.02).max(0.0)).ln();
        r += 2.5 * ((prev - s.recon) / (prev.abs() + 0.01) * weight).tanh();
    }
    r += 1.2 * improvement(median(&h.adv), s.adv).tanh();
    if s.kl_per_dim > s.kl_high && s.lambda_kl >= 5e-4 && s.recon > 0.1 {
        r -= 0.3 * ((s.kl_per_dim - s.kl_high) / (2.0 * s.kl_high)).min(1.0);
    }
    if s.d_total > 0.4 && s.d_total < 0.75 {
        r += 0.3;
    } else if s.d_total <= 0.3 {
        r -= 0.45;
    }
    r + 0.1 * improvement(median(&h.g_total), s.g_total).tanh()
        + shared_penalty(s.g_total, &h.rewards)
}

/// One decision interval's means of a critic's losses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CriticStep {
    pub d_total: f64,
    pub d_real: f64,
    pub d_fake: f64,
    pub g_adv: f64,
}

/// The critic state ("LRM_D"): its loss trend, its loss band and the generator's
/// adversarial band. 36 states at most.
#[must_use]
pub fn critic_state(d_hist: &[f64], s: &CriticStep) -> State {
    vec![
        trend3(d_hist, s.d_total),
        bin(s.d_total, &[0.35, 0.65, 0.85]),
        bin(s.g_adv, &[0.2, 0.5]),
    ]
}

/// The critic's reward: a balanced loss band, confident real and fake scores while the
/// generator is still fooled, total-loss gains, and the shared penalties on its loss.
#[must_use]
pub fn critic_reward(d_hist: &[f64], rewards: &[f64], s: &CriticStep) -> f64 {
    let d = s.d_total;
    let mut r = if d > 0.4 && d < 0.65 {
        1.5
    } else if d < 0.3 {
        -0.75
    } else if d > 0.8 {
        -1.125
    } else {
        0.0
    };
    if s.d_real < 0.3 {
        r += 0.7 * (0.3 - s.d_real) / 0.3;
    }
    if s.d_fake < 0.3 && s.g_adv > 0.4 {
        r += 0.7 * (0.3 - s.d_fake) / 0.3;
    }
    if s.g_adv < 0.25 {
        r -= 0.3;
    }
    r + 0.1 * improvement(median(d_hist), d).tanh() + shared_penalty(d, rewards)
}

/// One lambda_KL interval's averages.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KlInterval {
    pub recon: f64,
    /// KL per latent dimension (nats).
    pub kl: f64,
    pub val_metric: f64,
    pub lambda_kl: f64,
    pub d_total: f64,
}

/// The lambda_KL state ("LKL"): validation trend, KL trend, lambda_KL band; `None` until
/// every input is finite (the seed's controller does nothing before the first validation).
#[must_use]
pub fn kl_state(prev: &[KlInterval], cur: &KlInterval) -> Option<State> {
    let vals = [
        cur.recon,
        cur.kl,
        cur.val_metric,
        cur.lambda_kl,
        cur.d_total,
    ];
    if vals.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let col = |f: fn(&KlInterval) -> f64| prev.iter().map(f).collect::<Vec<_>>();
    Some(vec![
        trend3(&col(|k| k.val_metric), cur.val_metric),
        trend3(&col(|k| k.kl), cur.kl),
        bin(cur.lambda_kl, &[5e-4, 5e-3, 5e-2]),
    ])
}

/// The lambda_KL reward against the previous interval; the validation metric's direction
/// comes from `better` (the seed assumed higher is better). `kl_high` is in nats per
/// dimension, like the intervals' KL.
#[must_use]
pub fn kl_reward(prev: &KlInterval, cur: &KlInterval, better: Better, kl_high: f64) -> f64 {
    let dv = cur.val_metric - prev.val_metric;
    let mut r = 2.0 * (5.0 * if better == Better::Higher { dv } else { -dv }).tanh();
    let dr = prev.recon - cur.recon;
    let factor = if dr >= -0.05 {
        1.0
    } else {
        1.0 + 10.0 * dr.abs()
    };
    r += 1.5 * (10.0 * dr / factor).tanh();
    if cur.kl > kl_high {
        r += ((prev.kl - cur.kl) / (0.5 * kl_high)).tanh();
    } else if cur.kl < 0.2 * kl_high && cur.recon > 0.05 {
        r -= 0.5;
    }
    let dd = (cur.d_total - prev.d_total).abs();
    if dd > 0.2 {
        r -= 0.5 * dd / 0.2;
    }
    if cur.lambda_kl > 0.5 && cur.recon > 0.15 {
        r -= 0.5;
    }
    if r.is_finite() {
        r
    } else {
        -2.5
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gen_step() -> GenStep {
        GenStep {
            g_total: 0.8,
            d_total: 0.5,
            recon: 0.1,
            kl: 1000.0,
            kl_per_dim: 2.0,
            adv: 0.7,
            lambda_kl: 1e-3,
            kl_high: 3.0,
        }
    }

    #[test]
    fn generator_state_and_reward_follow_the_spec() {
        let h = GenHistory {
            g_total: vec![1.0; 5],
            recon: vec![0.2; 5],
            adv: vec![0.7; 5],
            rewards: Vec::new(),
        };
        let s = gen_step();
        assert_eq!(gen_state(&h, &s), vec![0, 1, 1, 0]);
        // Recon halved (+), adv flat, balanced critic (+0.3), total down 20%.
        let w = 1.0 + (1.0 + 20.0 * 0.08f64).ln();
        let want = 2.5 * (0.1 / 0.21 * w).tanh() + 0.3 + 0.1 * (0.2f64).tanh();
        assert!((gen_reward(&h, &s) - want).abs() < 1e-12);
        // The shared penalties reach the generator's reward.
        let blown = GenStep {
            g_total: f64::NAN,
            ..s
        };
        assert!(gen_reward(&h, &blown) <= gen_reward(&h, &s) - 3.75 + 0.1 + 1e-9);
        let huge = GenStep {
            g_total: 1000.0,
            ..s
        };
        assert!(gen_reward(&h, &huge) < gen_reward(&h, &s) - 1.4);
        let flip = GenHistory {
            rewards: (0..10)
                .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
                .collect(),
            ..h.clone()
        };
        assert!((gen_reward(&h, &s) - gen_reward(&flip, &s) - 0.25 * 0.9).abs() < 1e-12);
        // KL problems: the weighted KL dwarfs recon; the KL per dimension is far too high.
        let weighted = GenStep {
            lambda_kl: 0.1,
            kl: 100.0,
            recon: 0.2,
            ..s
        };
        assert_eq!(kl_problem(&weighted), 1);
        let high = GenStep {
            lambda_kl: 0.006,
            kl: 10.0,
            kl_per_dim: 7.0,
            recon: 0.2,
            ..s
        };
        assert_eq!(kl_problem(&high), 2);
        assert_eq!(
            kl_problem(&GenStep {
                kl_per_dim: 5.0,
                ..high
            }),
            0
        );
    }

    #[test]
    fn critic_reward_prefers_the_balanced_band() {
        let calm = CriticStep {
            d_total: 0.5,
            d_real: 0.4,
            d_fake: 0.4,
            g_adv: 0.5,
        };
        let over = CriticStep {
            d_total: 0.9,
            ..calm
        };
        let under = CriticStep {
            d_total: 0.2,
            g_adv: 0.1,
            ..calm
        };
        assert!(critic_reward(&[0.5], &[], &calm) > critic_reward(&[0.5], &[], &over));
        assert!(critic_reward(&[0.5], &[], &over) > critic_reward(&[0.5], &[], &under) - 1.0);
        assert_eq!(critic_state(&[0.5], &calm), vec![1, 1, 2]);
        let nan = CriticStep {
            d_total: f64::NAN,
            ..calm
        };
        assert!(critic_reward(&[0.5], &[], &nan) < -3.0);
    }

    #[test]
    fn the_kl_controller_waits_for_finite_inputs_and_reads_the_metric_direction() {
        let prev = KlInterval {
            recon: 0.2,
            kl: 2.0,
            val_metric: 20.0,
            lambda_kl: 0.01,
            d_total: 0.5,
        };
        let not_yet = KlInterval {
            val_metric: f64::NAN,
            ..prev
        };
        assert!(kl_state(&[prev], &not_yet).is_none());
        let better_psnr = KlInterval {
            val_metric: 21.0,
            ..prev
        };
        assert!(kl_reward(&prev, &better_psnr, Better::Higher, 3.0) > 1.5);
        assert!(kl_reward(&prev, &better_psnr, Better::Lower, 3.0) < -1.5);
        let collapse = KlInterval { kl: 0.1, ..prev };
        assert!(kl_reward(&prev, &collapse, Better::Higher, 3.0) <= -0.5 + 1e-12);
        // Falling KL is rewarded while it is above the threshold.
        let high = KlInterval { kl: 6.0, ..prev };
        let lower = KlInterval { kl: 5.0, ..prev };
        assert!(kl_reward(&high, &lower, Better::Higher, 3.0) > 0.5);
    }

    /// A replay of a plausible run: noisy, slowly improving interval means. The seed's
    /// states, with action and epsilon bins and five-way trends, gave about 110 distinct
    /// states in 150 decisions; these must repeat.
    #[test]
    fn states_repeat_over_a_realistic_run() {
        let mut rng = crate::core::rng::SplitMix64::new(11);
        let mut h = GenHistory::default();
        let mut d_hist = Vec::new();
        let mut gen_states = std::collections::BTreeSet::new();
        let mut critic_states = std::collections::BTreeSet::new();
        for i in 0..150 {
            let noise = |rng: &mut crate::core::rng::SplitMix64| rng.next_f64() - 0.5;
            let recon = 0.3 * (-f64::from(i) / 100.0).exp() + 0.02 * noise(&mut rng);
            let s = GenStep {
                g_total: recon + 0.7,
                d_total: 0.6 + 0.2 * noise(&mut rng),
                recon,
                kl: 1300.0,
                kl_per_dim: 2.5 + 0.3 * noise(&mut rng),
                adv: 0.7 + 0.4 * noise(&mut rng),
                lambda_kl: 1e-4,
                kl_high: 3.0,
            };
            gen_states.insert(gen_state(&h, &s));
            let c = CriticStep {
                d_total: s.d_total,
                d_real: 0.3,
                d_fake: 0.3,
                g_adv: s.adv,
            };
            critic_states.insert(critic_state(&d_hist, &c));
            for (v, x) in [
                (&mut h.recon, recon),
                (&mut h.g_total, s.g_total),
                (&mut h.adv, s.adv),
            ] {
                crate::core::control::push_bounded(v, x, 10);
            }
            crate::core::control::push_bounded(&mut d_hist, s.d_total, 10);
        }
        assert!(
            gen_states.len() <= 20,
            "{} generator states",
            gen_states.len()
        );
        assert!(
            critic_states.len() <= 24,
            "{} critic states",
            critic_states.len()
        );
    }
}

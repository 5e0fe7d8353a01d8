//! The losses: the reconstruction's weighted terms, the critics' BCE, the easy-win penalty
//! and feature matching's real features.

use tch::{Kind, Reduction, Tensor};

use super::{value, Forward, WubuGaadTrainer};
use crate::engine::families::wubu_gaad::model::CriticInput;

pub(super) fn bce(logits: &Tensor, target: f64) -> Tensor {
    logits.binary_cross_entropy_with_logits::<Tensor>(
        &logits.full_like(target),
        None,
        None,
        Reduction::Mean,
    )
}
/// The easy-win penalty (spec 8) as a tensor: `(recon − good)/adv · weight`, clipped. The
/// adversarial loss in the denominator is detached, so the penalty pushes the reconstruction
/// down; through the denominator its gradient (about 90 times the GAN term's at the seed's
/// scales) taught the generator to stop fooling the critic.
pub(super) fn easy_win_term(
    recon: &Tensor,
    adv: &Tensor,
    hc: &crate::core::preset::wubu_gaad::Heuristics,
) -> Tensor {
    ((recon - hc.good_recon) / (adv.detach() + 1e-5) * hc.easy_win_weight)
        .clamp(0.0, hc.easy_win_max)
}

impl WubuGaadTrainer {
    /// `(recon, [dft, dct, pixel] MSEs)`: the weighted sum of the terms in use, each weight
    /// applied once (spec 11.6). A plain sum, so turning one term off leaves the others'
    /// weights as they are (a mean over the active terms raised them).
    pub(super) fn recon_loss(&self, f: &Forward) -> (Tensor, [f64; 3]) {
        let t = &self.cfg.train;
        let mut terms = Vec::new();
        let mut mses = [f64::NAN; 3];
        let targets = f.targets.shallow_clone();
        let mut path = 0;
        for (on, w, slot) in [
            (self.d.use_dft, t.lambda_recon_dft, 0),
            (self.d.use_dct, t.lambda_recon_dct, 1),
        ] {
            if on {
                let mse = f.gen.patches[path].mse_loss(&targets, Reduction::Mean);
                mses[slot] = value(&mse);
                if w > 0.0 {
                    terms.push(mse * w);
                }
                path += 1;
            }
        }
        let pix = f.gen.frames.mse_loss(&f.real_pred, Reduction::Mean);
        mses[2] = value(&pix);
        if t.lambda_recon_pixel > 0.0 {
            terms.push(pix * t.lambda_recon_pixel);
        }
        let sum = terms
            .into_iter()
            .reduce(|a, b| a + b)
            .unwrap_or_else(|| Tensor::zeros([], (Kind::Float, self.device)));
        (sum, mses)
    }
    /// The active critic's features of the real frames for feature matching, taken in the
    /// mode the fakes' features are taken in (training: dropout on), so both sides are the
    /// same function of their input; no gradient.
    pub(super) fn real_features(&self, a: usize, f: &Forward) -> Option<Tensor> {
        let real_in = self.critic_input(&f.real_pred, &f.real_coeffs);
        tch::no_grad(|| self.critics[a].forward_t(&real_in, true).1)
    }
    pub(super) fn critic_input<'a>(
        &'a self,
        frames: &'a Tensor,
        coeffs: &'a Tensor,
    ) -> CriticInput<'a> {
        CriticInput {
            frames,
            coeffs,
            cond: &self.cond,
        }
    }
}

//! The WGAN-GP learning check: the sliced Wasserstein distance to held-out images and the
//! Wasserstein estimate over 1500 critic steps.

use std::time::Instant;

use anyhow::Context;
use workbench::engine::families::make_trainer;
use workbench::engine::trainer::StepCtx;

use super::Opts;

pub fn wgan_gp(args: &Opts) -> anyhow::Result<()> {
    let p = super::shipped(
        "wgan_gp_sprites32",
        vec![("device", args.device.as_str().into())],
    )?;
    let device = workbench::engine::device::resolve(&args.device)?;
    let mut trainer = make_trainer(&p, device)?;
    let spe = trainer.steps_per_epoch();
    let total = 1500u64;
    let v0 = trainer
        .validate()
        .context("validation needs held-out images")?;
    println!("critic step {:>5}: SWD {:.4}", 0, v0.best_value());
    // The Wasserstein estimate is averaged over windows of 25 critic steps (its rise comes in
    // the first few dozen steps); SWD is measured every 250.
    const W_WINDOW: u64 = 25;
    let mut w_window = Vec::new();
    let mut w_curve: Vec<(u64, f64)> = Vec::new();
    let t0 = Instant::now();
    for i in 0..total {
        let s = trainer.train_step(&StepCtx {
            step: i,
            epoch: i / spe,
            batch_in_epoch: i % spe,
        })?;
        if let Some((_, w)) = s.iter().find(|(k, _)| *k == "wasserstein") {
            w_window.push(*w);
        }
        if (i + 1) % W_WINDOW == 0 {
            let w = w_window.iter().sum::<f64>() / w_window.len().max(1) as f64;
            w_window.clear();
            w_curve.push((i + 1, w));
        }
        if (i + 1) % 250 == 0 {
            let v = trainer.validate().context("validation")?;
            let recent: Vec<String> = w_curve
                .iter()
                .rev()
                .take(10)
                .rev()
                .map(|(_, w)| format!("{w:.2}"))
                .collect();
            println!(
                "critic step {:>5}: SWD {:.4}  W estimate per {W_WINDOW} steps: {}  ({:.0} s)",
                i + 1,
                v.best_value(),
                recent.join(" "),
                t0.elapsed().as_secs_f64()
            );
        }
    }
    let v1 = trainer.validate().context("validation")?;
    let drop = 1.0 - v1.best_value() / v0.best_value();
    let (peak_step, peak) =
        w_curve
            .iter()
            .copied()
            .fold((0, f64::MIN), |a, b| if b.1 > a.1 { b } else { a });
    let first = w_curve.first().map_or(f64::NAN, |w| w.1);
    let last = w_curve.last().map_or(f64::NAN, |w| w.1);
    println!(
        "SWD {:.4} -> {:.4}: fell {:.1}% (target >= 15%)",
        v0.best_value(),
        v1.best_value(),
        drop * 100.0
    );
    println!(
        "W estimate: {first:.3} over the first {W_WINDOW} steps, peak {peak:.3} in the window \
         ending at step {peak_step}, {last:.3} at the end ({:.1}% below the peak)",
        (1.0 - last / peak) * 100.0
    );
    Ok(())
}

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
            ..Default::default()
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

/// The latent action model's learning check (spec 4.1): trains a shipped preset for some
/// minutes, validating every `every` steps, and reports validation MSE against the
/// copy-last-frame baseline on the same windows (pass: below 0.75x), action purity against
/// the ground-truth actions (synthetic data; chance is 1/8) and action sensitivity.
pub fn latent_action(args: &super::LearnOpts) -> anyhow::Result<()> {
    let p = learning_preset(args, "latent_action_tiny")?;
    // With the prior, continuing the motion is where an untrained model starts: only a gain
    // past it is learned. Without it, the model starts at copy-last and all of a gain is.
    let prior = p.to_tree()["model"]["motion_prior"]
        .as_bool()
        .unwrap_or(false);
    let device = workbench::engine::device::resolve(&args.device)?;
    let mut trainer = make_trainer(&p, device)?;
    println!("{}", trainer.describe());
    let spe = trainer.steps_per_epoch();
    let show = |step: u64, secs: f64, v: &workbench::engine::trainer::Validation| {
        let get = |k: &str| {
            v.scalars
                .iter()
                .find(|(n, _)| *n == k)
                .map_or(f64::NAN, |(_, x)| *x)
        };
        let purity = match get("val_action_purity") {
            p if p.is_nan() => "n/a (no true actions)".to_string(),
            p => format!("{p:.3}"),
        };
        println!(
            "step {step:>6} ({secs:>5.0} s): val MSE {:.5}  copy-last {:.5}  zeros {:.5}  ratio {:.3}  over continuing the motion {:.3}  purity {purity}  distinct actions {:>3}  codebook use {:.2}  sensitivity L2 {:+.4}  DSNR {:.3e}",
            get("val_mse"),
            get("val_copy_mse"),
            get("val_zero_mse"),
            get("val_mse_over_copy"),
            get("val_mse_over_continue"),
            get("val_distinct_actions"),
            get("val_codebook_usage"),
            get("val_sensitivity_l2"),
            get("val_dsnr")
        );
        (
            get("val_mse_over_copy"),
            get("val_action_purity"),
            get("val_sensitivity_l2"),
            get("val_mse_over_continue"),
        )
    };
    let t0 = Instant::now();
    let v = trainer
        .validate()
        .context("validation needs a validation split")?;
    show(0, 0.0, &v);
    let mut best = (f64::INFINITY, 0.0, 0.0, f64::NAN);
    let mut last = best;
    let mut step = 0u64;
    while t0.elapsed().as_secs_f64() < args.minutes * 60.0 {
        // A timed run: a schedule tied to the run's length follows its time.
        trainer.train_step(&StepCtx {
            step,
            epoch: step / spe,
            batch_in_epoch: step % spe,
            phase: workbench::engine::trainer::PhaseAt {
                step,
                length: None,
                time_done: Some(t0.elapsed().as_secs_f64() / (args.minutes * 60.0)),
            },
        })?;
        step += 1;
        if step.is_multiple_of(args.every) {
            let v = trainer.validate().context("validation")?;
            last = show(step, t0.elapsed().as_secs_f64(), &v);
            if last.0 < best.0 {
                best = last;
            }
        }
    }
    let purity = |p: f64| {
        if p.is_nan() {
            "n/a".to_string()
        } else {
            format!("{p:.3}")
        }
    };
    println!(
        "{step} steps in {:.1} min: best val MSE / copy-last {:.3} ({:.3} of continuing the motion, purity {}, sensitivity L2 {:+.4}); last {:.3} ({:.3}, purity {}, sensitivity L2 {:+.4}); {}",
        t0.elapsed().as_secs_f64() / 60.0,
        best.0,
        best.3,
        purity(best.1),
        best.2,
        last.0,
        last.3,
        purity(last.1),
        last.2,
        verdict(best.0, best.3, best.2, prior)
    );
    Ok(())
}

/// The latent action check's verdict on its best validation: MSE over copy-last, over
/// continuing the last motion (NaN when not reported) and the L2 sensitivity, for a model
/// with or without the motion prior. With the prior an untrained model already continues the
/// motion, so only a gain past it is learned; without it the model starts at copy-last and
/// every gain is, through the actions or not (sensitivities within 0.1 of 0 are noise: runs
/// whose actions say nothing land there).
fn verdict(over_copy: f64, over_continue: f64, sensitivity: f64, prior: bool) -> String {
    if over_copy >= 0.75 {
        return "NOT below 0.75x the copy baseline".into();
    }
    if !prior {
        let through = if sensitivity > 0.1 {
            "and the actions carry it (sensitivity above 0.1)"
        } else {
            "but not through the actions (sensitivity within noise of 0, or below)"
        };
        let against = if over_continue.is_nan() {
            String::new()
        } else if over_continue < 1.0 {
            format!("; {over_continue:.2}x of continuing the last motion")
        } else {
            format!("; worse than continuing the last motion, which needs no learning ({over_continue:.2}x of it)")
        };
        return format!("learned, with no motion prior: below 0.75x copy-last, {through}{against}");
    }
    if over_continue.is_nan() {
        "below 0.75x copy-last (no constant-velocity baseline reported)"
    } else if over_continue >= 1.0 {
        "below 0.75x copy-last, but no better than continuing the last motion: the gain is the constant-velocity baseline's, not learned"
    } else if over_continue > 0.95 {
        "below 0.75x copy-last, but within 5 % of continuing the last motion: the gain is the constant-velocity baseline's, not learned"
    } else {
        "the dynamics are learned (< 0.75x copy-last, < 0.95x continuing the motion)"
    }
    .into()
}

/// The VQ-GAN learning check of spec 4.2: `vq_gan_tiny` (or `--preset`) for 1500 steps, or
/// `--minutes`, whichever ends first, validating every `every` steps. Criteria: validation PSNR
/// at least the mean-volume baseline + 3 dB by step 300; codebook use at least 25 %; after the
/// critics start, PSNR back within 1 dB of its value before them within 500 steps.
pub fn vq_gan(args: &super::LearnOpts) -> anyhow::Result<()> {
    let p = learning_preset(args, "vq_gan_tiny")?;
    let disc_start = p.to_tree()["train"]["disc_start"]
        .as_u64()
        .unwrap_or(u64::MAX);
    let device = workbench::engine::device::resolve(&args.device)?;
    let mut trainer = make_trainer(&p, device)?;
    println!("{}", trainer.describe());
    let spe = trainer.steps_per_epoch();
    let t0 = Instant::now();
    let mut curve: Vec<(u64, f64, f64, f64)> = Vec::new();
    let mut d_loss = f64::NAN;
    let mut step = 0u64;
    let every = args.every.clamp(1, 100);
    loop {
        if step.is_multiple_of(every) {
            let v = trainer
                .validate()
                .context("validation needs validation volumes")?;
            let (psnr, base, usage) = (
                get(&v, "val_psnr"),
                get(&v, "val_mean_volume_psnr"),
                get(&v, "val_codebook_usage"),
            );
            println!(
                "step {step:>5} ({:>4.0} s): val PSNR {psnr:.2} dB (mean volume {base:.2})  SSIM {:.3}  codebook use {:.0} %  critic loss {d_loss:.3}",
                t0.elapsed().as_secs_f64(),
                get(&v, "val_ssim"),
                usage * 100.0
            );
            curve.push((step, psnr, base, usage));
        }
        if step >= 1500 || t0.elapsed().as_secs_f64() > args.minutes * 60.0 {
            break;
        }
        let s = trainer.train_step(&StepCtx {
            step,
            epoch: step / spe,
            batch_in_epoch: step % spe,
            ..Default::default()
        })?;
        if let Some((_, d)) = s.iter().find(|(k, _)| *k == "discloss") {
            d_loss = *d;
        }
        step += 1;
    }
    let at = |s: u64| curve.iter().find(|c| c.0 >= s).copied();
    if let Some((s, psnr, base, _)) = at(300) {
        println!(
            "by step {s}: {psnr:.2} dB against the baseline's {base:.2} + 3 = {:.2}: {}",
            base + 3.0,
            if psnr >= base + 3.0 {
                "pass"
            } else {
                "NOT reached"
            }
        );
    }
    let usage = curve.iter().map(|c| c.3).fold(f64::INFINITY, f64::min);
    println!(
        "lowest codebook use after step 0: {:.0} % ({})",
        curve
            .iter()
            .skip(1)
            .map(|c| c.3)
            .fold(f64::INFINITY, f64::min)
            * 100.0,
        if usage >= 0.25 {
            "pass"
        } else {
            "below 25 % somewhere"
        }
    );
    let before = curve.iter().rev().find(|c| c.0 <= disc_start).copied();
    if let Some((_, p0, _, _)) = before {
        let recovered = curve
            .iter()
            .filter(|c| c.0 > disc_start && c.0 <= disc_start + 500)
            .any(|c| c.1 >= p0 - 1.0);
        println!(
            "critics from step {disc_start}: PSNR {p0:.2} dB before them; {} within 500 steps",
            if recovered {
                "back within 1 dB"
            } else {
                "NOT back within 1 dB"
            }
        );
    }
    Ok(())
}

/// The shipped preset a learning check trains (`--preset`, else `default`), on `--data` as the
/// family's front door sets it, on `--device`, with the `--set` overrides.
/// The WuBu-GAAD learning check (issue: 20 dB within 10 CPU minutes on real footage):
/// `wubu_gaad_learning` or `--preset`, validated every `every` steps for `--minutes`.
pub fn wubu_gaad(args: &super::LearnOpts, out: &std::path::Path) -> anyhow::Result<()> {
    let p = learning_preset(args, "wubu_gaad_learning")?;
    let device = workbench::engine::device::resolve(&args.device)?;
    let mut trainer = make_trainer(&p, device)?;
    println!("{}", trainer.describe());
    let spe = trainer.steps_per_epoch();
    let t0 = Instant::now();
    let mut train_secs = 0.0;
    let mut step = 0u64;
    let mut best = f64::NEG_INFINITY;
    let every = args.every.max(1);
    loop {
        let done = t0.elapsed().as_secs_f64() > args.minutes * 60.0;
        if step.is_multiple_of(every) || done {
            let v = trainer
                .validate()
                .context("validation needs validation windows")?;
            let psnr = get(&v, "val_psnr");
            best = best.max(psnr);
            println!(
                "step {step:>5} ({:>4.0} s, {:.2} s/step): val PSNR {psnr:.2} dB  SSIM {:.3}  sharpness {:.2}  seams {:.2}  (copy-last {:.2}, mean image {:.2}, ceiling {:.2})",
                t0.elapsed().as_secs_f64(),
                train_secs / step.max(1) as f64,
                get(&v, "val_ssim"),
                get(&v, "val_sharpness"),
                get(&v, "val_seam_index"),
                get(&v, "val_copy_last_psnr"),
                get(&v, "val_mean_image_psnr"),
                get(&v, "val_ceiling_psnr"),
            );
            if step > 0 {
                let ranks = format!(
                    "effective rank of the latent {:.1}, of the region codes {:.1}",
                    get(&v, "val_latent_rank"),
                    get(&v, "val_region_rank")
                );
                let norms: Vec<String> = trainer
                    .diagnostics()
                    .iter()
                    .map(|(k, n)| format!("{k} {n:.3}"))
                    .collect();
                println!("        {ranks}; {}", norms.join(", "));
            }
        }
        if done {
            break;
        }
        let ts = Instant::now();
        trainer.train_step(&StepCtx {
            step,
            epoch: step / spe,
            batch_in_epoch: step % spe,
            ..Default::default()
        })?;
        train_secs += ts.elapsed().as_secs_f64();
        step += 1;
    }
    println!(
        "best validation PSNR {best:.2} dB in {:.1} minutes ({step} steps): {}",
        args.minutes,
        if best >= 20.0 {
            "20 dB reached"
        } else {
            "below 20 dB"
        }
    );
    if let Some(r) = trainer.pending_reconstruction() {
        // Truth above reconstruction.
        let (w, h) = (r.truth.width, r.truth.height);
        let mut pixels = r.truth.pixels.clone();
        pixels.extend_from_slice(&r.recon.pixels);
        image::save_buffer(out, &pixels, w, 2 * h, image::ExtendedColorType::Rgba8)
            .with_context(|| format!("{}", out.display()))?;
        println!("truth over reconstruction: {}", out.display());
    }
    Ok(())
}

/// A validation scalar by name (NaN when absent).
fn get(v: &workbench::engine::trainer::Validation, k: &str) -> f64 {
    v.scalars
        .iter()
        .find(|(n, _)| *n == k)
        .map_or(f64::NAN, |(_, x)| *x)
}

fn learning_preset(
    args: &super::LearnOpts,
    default: &str,
) -> anyhow::Result<workbench::core::preset::AnyPreset> {
    let name = args.preset.as_deref().unwrap_or(default);
    let base = super::shipped(name, Vec::new())?;
    let data = args.data.as_ref().map(|d| d.display().to_string());
    let mut sets: Vec<(&str, serde_json::Value)> = vec![("device", args.device.as_str().into())];
    if let Some(d) = &data {
        sets.extend(base.front().data_override(d));
    }
    for s in &args.set {
        let (k, v) = s
            .split_once('=')
            .with_context(|| format!("--set {s}: expected FIELD.PATH=VALUE"))?;
        sets.push((k, workbench::core::preset::schema::parse_cli_value(v)));
    }
    let p = base
        .with_overrides(sets)
        .map_err(|e| anyhow::anyhow!("{name}: {e:?}"))?;
    // As a run applies it (`threads` 0 keeps libtorch's default, one per core).
    if p.threads() > 0 {
        tch::set_num_threads(p.threads() as i32);
    }
    Ok(p)
}

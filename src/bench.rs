//! `workbench bench`: step rate and peak memory side by side with a PyTorch script of the same
//! computation, and the learning check. Benchmarks, never timed tests.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use workbench::core::preset::{self, AnyPreset};
use workbench::engine::session::{make_trainer, StepCtx};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// wgan-gp (step time vs PyTorch) or wgan-gp-learning (SWD and Wasserstein estimate).
    which: String,
    /// Timed steps (after 3 warm-up steps).
    #[arg(long, default_value_t = 20)]
    steps: u64,
    #[arg(long, default_value_t = 64)]
    batch: u32,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// The Python with torch for the side-by-side run.
    #[arg(long, default_value = ".venv/bin/python")]
    python: PathBuf,
    /// Skip the PyTorch side.
    #[arg(long)]
    no_python: bool,
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    match args.which.as_str() {
        "wgan-gp" => step_rate(args),
        "wgan-gp-learning" => learning(args),
        other => bail!("unknown benchmark `{other}`; known: wgan-gp, wgan-gp-learning"),
    }
}

fn small_preset(batch: u32, device: &str) -> anyhow::Result<AnyPreset> {
    let text = std::fs::read_to_string("presets/wgan_gp_small.ron")
        .context("presets/wgan_gp_small.ron")?;
    let (p, _) = preset::parse_str(&text, "presets/wgan_gp_small.ron")?;
    let p = p
        .with_overrides([
            ("train.batch_size", batch.into()),
            ("device", device.into()),
            ("data.synthetic_count", 1024.into()),
            ("data.holdout", 64.into()),
            ("data.hflip_prob", 0.0.into()),
            ("data.rotation_deg", 0.0.into()),
            ("data.jitter_brightness", 0.0.into()),
            ("data.jitter_contrast", 0.0.into()),
            ("data.jitter_saturation", 0.0.into()),
            ("data.jitter_hue", 0.0.into()),
        ])
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(p)
}

fn step_rate(args: &BenchArgs) -> anyhow::Result<()> {
    let p = small_preset(args.batch, &args.device)?;
    let device = workbench::engine::device::resolve(&args.device)?;
    let mut trainer = make_trainer(&p, device)?;
    let spe = trainer.steps_per_epoch();
    let ctx = |i: u64| StepCtx {
        step: i,
        epoch: i / spe,
        batch_in_epoch: i % spe,
    };
    // n_critic = 5 in the preset: time whole cycles so G steps are counted fairly.
    for i in 0..3 {
        trainer.train_step(&ctx(i));
    }
    let t0 = Instant::now();
    for i in 3..3 + args.steps {
        trainer.train_step(&ctx(i));
    }
    let rust_step = t0.elapsed().as_secs_f64() / args.steps as f64;
    let rust_mem = peak_rss_mib();
    println!(
        "WGAN-GP small 64x64, batch {}, n_critic 5, device {}, {} timed steps",
        args.batch,
        workbench::engine::device::describe(device),
        args.steps
    );
    println!(
        "  workbench (tch): {:.1} ms/step  {:.2} steps/s  peak RSS {:.0} MiB",
        rust_step * 1e3,
        1.0 / rust_step,
        rust_mem
    );
    if args.no_python {
        return Ok(());
    }
    let out = Command::new(&args.python)
        .args([
            "bench/wgan_gp_small.py",
            "--steps",
            &args.steps.to_string(),
            "--batch",
            &args.batch.to_string(),
            "--device",
            &args.device,
            "--threads",
            &tch::get_num_threads().to_string(),
        ])
        .output()
        .with_context(|| format!("running {} bench/wgan_gp_small.py", args.python.display()))?;
    if !out.status.success() {
        bail!(
            "the PyTorch script failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .context("no JSON line from the PyTorch script")?;
    let v: serde_json::Value = serde_json::from_str(line)?;
    let py_step = v["step_s"].as_f64().unwrap_or(f64::NAN);
    let py_mem = v["peak_rss_mib"].as_f64().unwrap_or(f64::NAN);
    println!(
        "  PyTorch eager:   {:.1} ms/step  {:.2} steps/s  peak RSS {:.0} MiB",
        py_step * 1e3,
        1.0 / py_step,
        py_mem
    );
    println!(
        "  ratio workbench/PyTorch step time: {:.3} (target <= 1.0)",
        rust_step / py_step
    );
    Ok(())
}

fn learning(args: &BenchArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string("presets/wgan_gp_sprites32.ron")
        .context("presets/wgan_gp_sprites32.ron")?;
    let (p, _) = preset::parse_str(&text, "presets/wgan_gp_sprites32.ron")?;
    let p = p
        .with_overrides([("device", args.device.as_str().into())])
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let device = workbench::engine::device::resolve(&args.device)?;
    let mut trainer = make_trainer(&p, device)?;
    let spe = trainer.steps_per_epoch();
    let total = 1500u64;
    let v0 = trainer
        .validate()
        .context("validation needs held-out images")?;
    println!("critic step {:>5}: SWD {:.4}", 0, v0.metric);
    let mut w_window = Vec::new();
    let mut w_curve = Vec::new();
    let t0 = Instant::now();
    for i in 0..total {
        let s = trainer.train_step(&StepCtx {
            step: i,
            epoch: i / spe,
            batch_in_epoch: i % spe,
        });
        if let Some((_, w)) = s.iter().find(|(k, _)| *k == "wasserstein") {
            w_window.push(*w);
        }
        if (i + 1) % 250 == 0 {
            let w = w_window.iter().sum::<f64>() / w_window.len().max(1) as f64;
            w_window.clear();
            w_curve.push(w);
            let v = trainer.validate().context("validation")?;
            println!(
                "critic step {:>5}: SWD {:.4}  mean W estimate {:.3}  ({:.0} s)",
                i + 1,
                v.metric,
                w,
                t0.elapsed().as_secs_f64()
            );
        }
    }
    let v1 = trainer.validate().context("validation")?;
    let drop = 1.0 - v1.metric / v0.metric;
    let peak = w_curve.iter().cloned().fold(f64::MIN, f64::max);
    let last = w_curve.last().copied().unwrap_or(f64::NAN);
    println!(
        "SWD {:.4} -> {:.4}: fell {:.1}% (target >= 15%)",
        v0.metric,
        v1.metric,
        drop * 100.0
    );
    println!(
        "W estimate peaked at {peak:.3} and ended at {last:.3} ({:.1}% below the peak)",
        (1.0 - last / peak) * 100.0
    );
    Ok(())
}

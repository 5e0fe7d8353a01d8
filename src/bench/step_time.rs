//! Step time and peak memory: WGAN-GP small beside PyTorch eager running the same
//! computation, and WuBu-GAAD at the CPU configuration or the original launcher's.

use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use workbench::core::preset::AnyPreset;
use workbench::engine::families::make_trainer;

use super::{median, peak_rss_mib, Opts};

fn small_preset(batch: u32, device: &str) -> anyhow::Result<AnyPreset> {
    super::shipped(
        "wgan_gp_small",
        vec![
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
        ],
    )
}

pub fn wgan_gp(args: &Opts) -> anyhow::Result<()> {
    let p = small_preset(args.batch, &args.device)?;
    let device = workbench::engine::device::resolve(&args.device)?;
    let mut trainer = make_trainer(&p, device)?;
    let spe = trainer.steps_per_epoch();
    let ctx = |i: u64| super::step_ctx(i, spe);
    println!(
        "WGAN-GP small 64x64, batch {}, n_critic 5, device {}, {} rounds of {} timed steps, \
         the two sides alternating",
        args.batch,
        workbench::engine::device::describe(device),
        args.rounds,
        args.steps
    );
    // Warm-up, then alternate: a round of ours, a round of PyTorch's, so drift in the
    // machine's speed hits both sides alike. Rounds are whole n_critic cycles when steps is a
    // multiple of 5, so generator steps are counted fairly.
    let mut step = 0u64;
    for _ in 0..3 {
        trainer.train_step(&ctx(step))?;
        step += 1;
    }
    let (mut ours, mut theirs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let mut py_mem = f64::NAN;
    for round in 0..args.rounds {
        let t0 = Instant::now();
        for _ in 0..args.steps {
            trainer.train_step(&ctx(step))?;
            step += 1;
        }
        let rust_step = t0.elapsed().as_secs_f64() / args.steps as f64;
        ours.push(rust_step);
        let line = if args.no_python {
            format!("  round {round}: workbench {:.1} ms/step", rust_step * 1e3)
        } else {
            let PyRound {
                step_s: py_step,
                peak_rss_mib: mem,
                ..
            } = python_round(args, device, "bench/wgan_gp_small.py", &[])?;
            py_mem = py_mem.max(mem); // f64::max ignores the initial NaN
            theirs.push(py_step);
            ratios.push(rust_step / py_step);
            format!(
                "  round {round}: workbench {:.1} ms/step, PyTorch {:.1} ms/step, ratio {:.3}",
                rust_step * 1e3,
                py_step * 1e3,
                rust_step / py_step
            )
        };
        println!("{line}");
    }
    let rust_mem = peak_rss_mib();
    let rust_med = median(&mut ours);
    println!(
        "  workbench (tch): median {:.1} ms/step  {:.2} steps/s  peak RSS {:.0} MiB",
        rust_med * 1e3,
        1.0 / rust_med,
        rust_mem
    );
    if args.no_python {
        return Ok(());
    }
    let py_med = median(&mut theirs);
    println!(
        "  PyTorch eager:   median {:.1} ms/step  {:.2} steps/s  peak RSS {:.0} MiB",
        py_med * 1e3,
        1.0 / py_med,
        py_mem
    );
    let (lo, hi) = (
        ratios.iter().copied().fold(f64::INFINITY, f64::min),
        ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    println!(
        "  step-time ratio workbench/PyTorch: median {:.3} (rounds {lo:.3}..{hi:.3}), target <= 1.0",
        median(&mut ratios)
    );
    Ok(())
}

/// WuBu-GAAD step time and peak memory. `wubu-gaad`: the CPU configuration (128x128,
/// batch 2, 2 input + 1 predicted frames, 8 regions, motion on, the rest at the original's
/// defaults); `wubu-gaad-bat`: the original launcher's configuration on synthetic frames.
pub fn wubu_gaad(args: &Opts, bat: bool) -> anyhow::Result<()> {
    let device = workbench::engine::device::resolve(&args.device)?;
    let mut sets: Vec<(&str, serde_json::Value)> = vec![
        ("device", args.device.as_str().into()),
        ("data.synthetic_frames", 200.into()),
    ];
    if !bat {
        sets.extend([
            ("data.image_h", 128.into()),
            ("data.image_w", 128.into()),
            ("data.input_frames", 2.into()),
            ("data.predict_frames", 1.into()),
            ("model.regions", 8.into()),
            ("model.motion", true.into()),
            ("train.batch_size", args.batch.into()),
            ("model.gen_head_hidden", args.head_hidden.into()),
        ]);
    }
    let preset = super::shipped(if bat { "wubu_gaad_bat" } else { "wubu_gaad" }, sets)?;
    let tree = preset.to_tree();
    let (batch, heads) = (
        tree["train"]["batch_size"].as_u64().unwrap_or(0),
        tree["model"]["gen_head_hidden"].as_u64().unwrap_or(0),
    );
    let mut trainer = make_trainer(&preset, device)?;
    println!("{}", trainer.describe());
    println!(
        "device {}, batch {}, heads {}, {} rounds of {} timed steps after 3 warm-up steps",
        workbench::engine::device::describe(device),
        batch,
        heads,
        args.rounds,
        args.steps
    );
    let spe = trainer.steps_per_epoch();
    let ctx = |i: u64| super::step_ctx(i, spe);
    let sync = || {
        if let tch::Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
    };
    let mut step = 0;
    for _ in 0..3 {
        trainer.train_step(&ctx(step))?;
        step += 1;
    }
    sync();
    let mut rounds = Vec::new();
    for round in 0..args.rounds {
        let t0 = Instant::now();
        for _ in 0..args.steps {
            let s = trainer.train_step(&ctx(step))?;
            if let Some((k, v)) = s.iter().find(|(_, v)| !v.is_finite()) {
                bail!("{k} became {v} at step {step}");
            }
            step += 1;
        }
        sync();
        let per = t0.elapsed().as_secs_f64() / args.steps as f64;
        println!("  round {round}: {:.1} ms/step", per * 1e3);
        rounds.push(per);
    }
    let lo = rounds.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = rounds.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let med = median(&mut rounds);
    println!(
        "  median {:.1} ms/step (rounds {:.1}..{:.1}), peak RSS {:.0} MiB",
        med * 1e3,
        lo * 1e3,
        hi * 1e3,
        peak_rss_mib()
    );
    if device.is_cuda() {
        println!("  (GPU memory: see nvidia-smi's peak for this process)");
    } else if !bat {
        println!(
            "  against the original's 2.9 s/step on this machine kind's CPU (the issue's figure): {:.2}x faster, target >= 3x",
            2.9 / med
        );
    }
    Ok(())
}

/// The latent action model's step time beside PyTorch eager at the tiny size (spec 4.1), the
/// two sides alternating round by round; or, with `full`, the seed's full configuration alone.
pub fn latent_action(args: &Opts, full: bool) -> anyhow::Result<()> {
    let device = workbench::engine::device::resolve(&args.device)?;
    let preset = if full {
        super::shipped(
            "latent_action_full",
            vec![
                ("device", args.device.as_str().into()),
                ("train.batch_size", args.batch.into()),
                ("data.synthetic_files", 10.into()),
                ("data.synthetic_frames", 40.into()),
            ],
        )?
    } else {
        super::shipped(
            "latent_action_tiny",
            vec![
                ("device", args.device.as_str().into()),
                ("train.batch_size", args.batch.into()),
            ],
        )?
    };
    let mut trainer = make_trainer(&preset, device)?;
    println!("{}", trainer.describe());
    println!(
        "device {}, batch {}, {} rounds of {} timed steps after 3 warm-up steps{}",
        workbench::engine::device::describe(device),
        args.batch,
        args.rounds,
        args.steps,
        if full || args.no_python {
            ""
        } else {
            ", alternating with PyTorch eager (bench/latent_action_tiny.py)"
        }
    );
    let script = (!full).then_some("bench/latent_action_tiny.py");
    side_by_side(
        trainer.as_mut(),
        args,
        device,
        script,
        ["with the HDF5 reads of every batch", "batches in memory"],
    )
}

pub fn vq_gan(args: &Opts, size: u32, patch: u32, no_critics: bool) -> anyhow::Result<()> {
    let device = workbench::engine::device::resolve(&args.device)?;
    let preset = super::shipped(
        "vq_gan_tiny",
        vec![
            ("device", args.device.as_str().into()),
            ("train.batch_size", args.batch.into()),
            (
                "train.disc_start",
                if no_critics { 100_000_000 } else { 0 }.into(),
            ),
            ("data.synthetic_count", 64.into()),
            ("data.synthetic_holdout", 4.into()),
            ("data.depth", size.into()),
            ("data.height", size.into()),
            ("data.width", size.into()),
            ("data.patch", patch.into()),
            ("data.patch_batch", 0.into()),
        ],
    )?;
    let mut trainer = make_trainer(&preset, device)?;
    println!("{}", trainer.describe());
    let pieces = if let Some(per) = size.checked_div(patch).map(|n| n.pow(3)) {
        format!(
            "{} volumes of {size}^3 as {} patches of {patch}^3 through the model at once",
            args.batch,
            args.batch * per
        )
    } else {
        format!("{} volumes of {size}^3", args.batch)
    };
    println!(
        "device {}, {pieces}, critics {}, {} rounds of {} timed steps after 3 warm-up steps, alternating with PyTorch eager (bench/vq_gan_tiny.py)",
        workbench::engine::device::describe(device),
        if no_critics { "off" } else { "on" },
        args.rounds,
        args.steps
    );
    let mut extra = vec![
        "--size".to_string(),
        size.to_string(),
        "--patch".to_string(),
        patch.to_string(),
    ];
    if no_critics {
        extra.push("--no-critics".into());
    }
    side_by_side_with(
        trainer.as_mut(),
        args,
        device,
        Some("bench/vq_gan_tiny.py"),
        ["with its logged metrics", "no metrics"],
        &extra,
    )
}

/// Three warm-up steps, then `args.rounds` rounds of `args.steps` timed steps, each followed
/// (unless `script` is `None` or `--no-python`) by a round of the PyTorch script, so drift in
/// the machine's speed hits both sides alike; prints each round, the medians, peak memory and
/// the ratio. `notes` qualify the two sides' figures.
fn side_by_side(
    trainer: &mut dyn workbench::engine::trainer::Trainer,
    args: &Opts,
    device: tch::Device,
    script: Option<&str>,
    notes: [&str; 2],
) -> anyhow::Result<()> {
    side_by_side_with(trainer, args, device, script, notes, &[])
}

/// [`side_by_side`], passing `extra` arguments to the PyTorch script.
fn side_by_side_with(
    trainer: &mut dyn workbench::engine::trainer::Trainer,
    args: &Opts,
    device: tch::Device,
    script: Option<&str>,
    notes: [&str; 2],
    extra: &[String],
) -> anyhow::Result<()> {
    let script = script.filter(|_| !args.no_python);
    let spe = trainer.steps_per_epoch();
    let ctx = |i: u64| super::step_ctx(i, spe);
    let sync = || {
        if let tch::Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
    };
    let mut step = 0;
    for _ in 0..3 {
        trainer.train_step(&ctx(step))?;
        step += 1;
    }
    sync();
    let (mut ours, mut theirs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let mut py_mem = f64::NAN;
    // Where each side's timed steps went, summed over all rounds (host clocks: on a GPU the
    // host runs ahead, so a part's time is the host's, as in a run's own breakdown).
    let mut our_parts: Vec<(&'static str, f64)> = Vec::new();
    let mut their_parts: Vec<(String, f64)> = Vec::new();
    for round in 0..args.rounds {
        let t0 = Instant::now();
        for _ in 0..args.steps {
            workbench::engine::timing::start();
            trainer.train_step(&ctx(step))?;
            for (part, s) in workbench::engine::timing::finish() {
                add_part(&mut our_parts, part, s);
            }
            step += 1;
        }
        sync();
        let per = t0.elapsed().as_secs_f64() / args.steps as f64;
        ours.push(per);
        let Some(script) = script else {
            println!("  round {round}: workbench {:.1} ms/step", per * 1e3);
            continue;
        };
        let PyRound {
            step_s: py,
            peak_rss_mib: mem,
            parts,
        } = python_round(args, device, script, extra)?;
        for (part, s) in parts {
            add_part(&mut their_parts, part, s);
        }
        py_mem = py_mem.max(mem);
        theirs.push(py);
        ratios.push(per / py);
        println!(
            "  round {round}: workbench {:.1} ms/step, PyTorch {:.1} ms/step, ratio {:.3}",
            per * 1e3,
            py * 1e3,
            per / py
        );
    }
    println!(
        "  workbench (tch): median {:.1} ms/step, peak RSS {:.0} MiB ({})",
        median(&mut ours) * 1e3,
        peak_rss_mib(),
        notes[0]
    );
    let steps = (u64::from(args.rounds) * args.steps).max(1) as f64;
    println!(
        "  workbench's step by part: {}",
        parts_line(&our_parts, steps)
    );
    if !theirs.is_empty() {
        println!(
            "  PyTorch eager:   median {:.1} ms/step, peak RSS {:.0} MiB ({})",
            median(&mut theirs) * 1e3,
            py_mem,
            notes[1]
        );
        if !their_parts.is_empty() {
            println!(
                "  PyTorch's step by part:    {}",
                parts_line(&their_parts, steps)
            );
        }
        let (lo, hi) = (
            ratios.iter().copied().fold(f64::INFINITY, f64::min),
            ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        );
        println!(
            "  step-time ratio workbench/PyTorch: median {:.3} (rounds {lo:.3}..{hi:.3}), target <= 1.0",
            median(&mut ratios)
        );
    }
    Ok(())
}

/// Adds `s` seconds to `part`'s sum, a new part at the end.
fn add_part<S: PartialEq>(parts: &mut Vec<(S, f64)>, part: S, s: f64) {
    match parts.iter_mut().find(|(p, _)| *p == part) {
        Some(slot) => slot.1 += s,
        None => parts.push((part, s)),
    }
}

/// `part 12.3 ms, ...`: each part's mean milliseconds over `steps` steps.
fn parts_line<S: AsRef<str>>(parts: &[(S, f64)], steps: f64) -> String {
    parts
        .iter()
        .map(|(p, s)| format!("{} {:.1} ms", p.as_ref(), s / steps * 1e3))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What one round of a PyTorch script reported.
struct PyRound {
    /// Seconds per timed step.
    step_s: f64,
    /// The process's peak RSS.
    peak_rss_mib: f64,
    /// The seconds of each part of its timed steps, where the script reports them
    /// (`"parts": {"autoencoder forward": s, ...}`).
    parts: Vec<(String, f64)>,
}

/// One round of a PyTorch script: its own warm-up, then `steps` timed steps.
fn python_round(
    args: &Opts,
    device: tch::Device,
    script: &str,
    extra: &[String],
) -> anyhow::Result<PyRound> {
    // The device the workbench resolved (PyTorch knows no `auto`).
    let device = match device {
        tch::Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".to_string(),
    };
    let out = Command::new(&args.python)
        .args([
            script,
            "--steps",
            &args.steps.to_string(),
            "--batch",
            &args.batch.to_string(),
            "--device",
            &device,
            "--threads",
            &tch::get_num_threads().to_string(),
        ])
        .args(extra)
        .output()
        .with_context(|| format!("running {} {script}", args.python.display()))?;
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
    let parts = v["parts"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, s)| (k.clone(), s.as_f64().unwrap_or(f64::NAN)))
                .collect()
        })
        .unwrap_or_default();
    Ok(PyRound {
        step_s: v["step_s"].as_f64().unwrap_or(f64::NAN),
        peak_rss_mib: v["peak_rss_mib"].as_f64().unwrap_or(f64::NAN),
        parts,
    })
}

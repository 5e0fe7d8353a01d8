//! Sweep benchmarks: the importance analysis over many runs, and an ASHA sweep's budget and
//! result against running every trial to the end.

use std::time::Instant;

use workbench::core::fanova;
use workbench::core::rng::SplitMix64;

/// `--runs` runs of `--fields` fields (`10 f00 + 3 f01^2 + 4 f02 f03 + noise`: a few that
/// matter, one pair that acts together, the rest idle, as a real sweep's table is),
/// `--rounds` computations: time each, and say what it found.
pub fn importance(runs: usize, fields: usize, rounds: usize) -> anyhow::Result<()> {
    anyhow::ensure!(fields >= 4, "--fields must be at least 4");
    let mut rng = SplitMix64::new(7);
    let x: Vec<Vec<f64>> = (0..runs)
        .map(|_| (0..fields).map(|_| rng.next_f64()).collect())
        .collect();
    let y: Vec<f64> = x
        .iter()
        .map(|r| {
            10.0 * r[0] + 3.0 * r[1] * r[1] + 4.0 * r[2] * r[3] + 0.1 * rng.range_f64(-1.0, 1.0)
        })
        .collect();
    let names: Vec<String> = (0..fields).map(|j| format!("f{j:02}")).collect();
    let log = vec![false; fields];
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..rounds.max(1) {
        let t = Instant::now();
        last = fanova::importance(&names, &x, &log, &y, 0x5eed);
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let imp = last.ok_or_else(|| anyhow::anyhow!("no importance computed"))?;
    let top: Vec<String> = imp
        .fields
        .iter()
        .take(4)
        .map(|f| format!("{} {:.1} %", f.field, 100.0 * f.share))
        .collect();
    println!(
        "importance over {runs} runs x {fields} fields, {} trees: median {:.0} ms, min {:.0}, max {:.0} ({} rounds)",
        fanova::TREES,
        super::median(&mut times.clone()),
        times.iter().copied().fold(f64::INFINITY, f64::min),
        times.iter().copied().fold(0.0, f64::max),
        times.len()
    );
    println!("  most important: {}", top.join(", "));
    if let Some((a, b, s)) = &imp.pair {
        println!("  strongest pair: {a} x {b}, {:.1} %", 100.0 * s);
    }
    Ok(())
}

/// A 27-trial random search of the smoke preset (`train.lr_g` and `train.lr_d` log-uniform in
/// [1e-4, 1e-2], the same 27 draws from `seed` in both arms, or with `grid` a 9 x 3 grid over
/// the same ranges; `steps` each, validated every 9) run twice through the local queue with
/// `--jobs` workers: with ASHA (`grace`, reduction 3, no rung at or after `steps`) and with
/// every trial trained to the end. Prints the steps each trained, its wall time and the best `val_swd`
/// any trial reached.
pub fn asha(
    jobs: usize,
    seed: u64,
    grid: bool,
    (steps, grace): (u64, u64),
    keep: bool,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let exe = std::env::current_exe()?.with_file_name("workbench");
    anyhow::ensure!(
        exe.is_file(),
        "{} is missing: build it beside workbench-bench (cargo build --bin workbench)",
        exe.display()
    );
    let root = std::env::temp_dir().join(format!("workbench-bench-asha-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root)?;
    // The smoke preset as one phase of `steps`, validated every 9 steps, one thread a trial.
    let smoke = include_str!("../../presets/smoke.ron");
    let phases = smoke
        .find("    phases: [")
        .context("the smoke preset has no phases list")?;
    let base = format!(
        "{}    phases: [(name: \"all\", length: steps({steps}), overrides: {{}}, start_from_best: false)],\n)\n",
        &smoke[..phases]
    )
    .replace("validate_every_steps: 10", "validate_every_steps: 9")
    .replace("sample_every_steps: 10", "sample_every_steps: 1000")
    .replace("every_steps: 10,", "every_steps: 1000,")
    .replace("threads: 0,", "threads: 1,");
    let base_path = root.join("base.ron");
    std::fs::write(&base_path, base)?;
    let search = if grid {
        // Nine rates from 1e-4 to 1e-2 for the generator, three for the critic.
        let rates: Vec<String> = (0..9)
            .map(|i| format!("{:e}", 1e-4 * 10f64.powf(f64::from(i) / 4.0)))
            .collect();
        format!(
            "grid: {{ \"train.lr_g\": [{}], \"train.lr_d\": [1e-4, 1e-3, 1e-2] }}",
            rates.join(", ")
        )
    } else {
        format!("random: Some((count: 27, seed: {seed}, fields: {{ \"train.lr_g\": log_uniform(1e-4, 1e-2), \"train.lr_d\": log_uniform(1e-4, 1e-2) }}))")
    };
    let mut arms = Vec::new();
    for (arm, scheduler) in [
        (
            "asha",
            format!("scheduler: Some(asha(grace: {grace}, reduction: 3, max: Some({steps}))),"),
        ),
        ("full", String::new()),
    ] {
        let runs = root.join(arm);
        std::fs::create_dir_all(&runs)?;
        let sweep = runs.join(format!("{arm}.ron"));
        std::fs::write(
            &sweep,
            format!(
                "(name: \"{arm}\", base: \"{}\", {search}, {scheduler})",
                base_path.display(),
            ),
        )?;
        let run = |args: &[&str]| -> anyhow::Result<()> {
            let out = std::process::Command::new(&exe)
                .arg("--runs-dir")
                .arg(&runs)
                .args(args)
                .env("OMP_NUM_THREADS", "1")
                .output()?;
            anyhow::ensure!(
                out.status.success(),
                "workbench {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
            Ok(())
        };
        run(&["sweep", "submit", &sweep.to_string_lossy()])?;
        let t = Instant::now();
        run(&["queue", "run", "--jobs", &jobs.to_string()])?;
        let wall = t.elapsed().as_secs_f64();
        let rows = workbench::core::runtable::RunIndex::default().refresh(&runs);
        let trials: Vec<_> = rows.iter().filter(|r| r.name.starts_with(arm)).collect();
        anyhow::ensure!(
            trials.len() == 27,
            "{arm}: {} trials ran, not 27",
            trials.len()
        );
        let trained: u64 = trials.iter().map(|r| r.step).sum();
        let best = trials
            .iter()
            .filter_map(|r| r.best.get("val_swd").copied())
            .filter(|v| v.is_finite())
            .fold(f64::INFINITY, f64::min);
        let to_end = trials.iter().filter(|r| r.step >= steps).count();
        println!(
            "{arm}: 27 trials, {trained} steps trained ({to_end} to step {steps}), {wall:.0} s with --jobs {jobs}, best val_swd {best:.4}"
        );
        arms.push((trained, wall, best));
    }
    let ((s_a, w_a, b_a), (s_f, w_f, b_f)) = (arms[0], arms[1]);
    println!(
        "asha against the full grid: {:.1} % of the steps (goal <= 40 %), {:.1} % of the time, best val_swd {:+.1} % (goal within 2 %)",
        100.0 * s_a as f64 / s_f as f64,
        100.0 * w_a / w_f,
        100.0 * (b_a - b_f) / b_f
    );
    if keep {
        println!("runs kept in {}", root.display());
    } else {
        let _ = std::fs::remove_dir_all(&root);
    }
    Ok(())
}

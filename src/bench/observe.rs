//! What observing a run costs: the step-time breakdown with the system sampler, one watched
//! layer at every step, and every layer at every 10th step, each against plain steps of the
//! same trainer in alternating rounds.

use std::time::{Duration, Instant};

use workbench::engine::families::make_trainer;
use workbench::engine::{sysmon, timing, watch};

use super::{median, Opts};

/// The ways a round observes its steps.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Off,
    /// The step clock (always on in a run) and the system sampler at its fastest, 100 ms.
    Breakdown,
    /// One module, every step.
    OneLayer,
    /// Every module, every 10th step.
    AllLayersStride10,
}

/// See `BenchCmd::Observe`.
pub fn overhead(args: &Opts, preset: &str) -> anyhow::Result<()> {
    let p = super::shipped(
        preset,
        vec![
            ("train.batch_size", args.batch.into()),
            ("device", args.device.clone().into()),
        ],
    )?;
    let device = workbench::engine::device::resolve(&args.device)?;
    let mut trainer = make_trainer(&p, device)?;
    let vars = trainer.as_mut().named_vars();
    watch::register(&vars);
    let names: Vec<String> = vars.iter().map(|(n, _)| n.clone()).collect();
    // The largest module: the dearest single watch.
    let mut sizes: Vec<(String, i64)> = Vec::new();
    for (n, t) in &vars {
        let m = watch::module_of(n).to_string();
        match sizes.iter_mut().find(|(k, _)| *k == m) {
            Some(s) => s.1 += t.numel() as i64,
            None => sizes.push((m, t.numel() as i64)),
        }
    }
    let (big, big_params) = sizes
        .iter()
        .max_by_key(|(_, n)| *n)
        .cloned()
        .unwrap_or_default();
    let one: Vec<String> = names
        .iter()
        .filter(|n| watch::watches(&big, n))
        .cloned()
        .collect();
    let spe = trainer.steps_per_epoch();
    let ctx = |i: u64| super::step_ctx(i, spe);
    println!(
        "observe: {preset}, batch {}, device {}, {} rounds of {} steps per mode, modes alternating; \
         one layer = `{big}` ({big_params} parameters of {}), every layer = {} modules",
        args.batch,
        workbench::engine::device::describe(device),
        args.rounds,
        args.steps,
        sizes.iter().map(|(_, n)| n).sum::<i64>(),
        sizes.len()
    );
    let mut step = 0u64;
    for _ in 0..3 {
        trainer.train_step(&ctx(step))?;
        step += 1;
    }
    let modes = [
        Mode::Off,
        Mode::Breakdown,
        Mode::OneLayer,
        Mode::AllLayersStride10,
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    for round in 0..args.rounds {
        for (k, mode) in modes.iter().enumerate() {
            let sampler = (*mode == Mode::Breakdown)
                .then(|| sysmon::Sampler::start(Duration::from_millis(100), None))
                .transpose()?;
            let t0 = Instant::now();
            for i in 0..args.steps {
                match mode {
                    Mode::Off => {
                        trainer.train_step(&ctx(step))?;
                    }
                    Mode::Breakdown => {
                        timing::start();
                        trainer.train_step(&ctx(step))?;
                        std::hint::black_box(timing::finish());
                        if let Some(s) = &sampler {
                            std::hint::black_box(s.take());
                        }
                    }
                    Mode::OneLayer | Mode::AllLayersStride10 => {
                        let due = match mode {
                            Mode::OneLayer => one.clone(),
                            _ if i % 10 == 0 => names.clone(),
                            _ => Vec::new(),
                        };
                        let watching = !due.is_empty();
                        if watching {
                            watch::begin(due);
                        }
                        trainer.train_step(&ctx(step))?;
                        if watching {
                            let vars = trainer.as_mut().named_vars();
                            std::hint::black_box(watch::finish(step, &vars));
                        }
                    }
                }
                step += 1;
            }
            times[k].push(t0.elapsed().as_secs_f64() / args.steps as f64);
        }
        println!(
            "  round {round}: {}",
            modes
                .iter()
                .zip(&times)
                .map(|(m, t)| format!("{m:?} {:.2} ms", t[round as usize] * 1e3))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let base = median(&mut times[0].clone());
    for (m, t) in modes.iter().zip(&mut times) {
        let med = median(t);
        println!(
            "  {m:?}: median {:.2} ms/step, {:+.1} % against off",
            med * 1e3,
            100.0 * (med / base - 1.0)
        );
    }
    Ok(())
}

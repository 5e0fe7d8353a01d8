//! `bench data-parallel`: `workbench train` as several CPU ranks (c10d Gloo on 127.0.0.1)
//! against one process on the same global batch with as many threads, side by side in rounds.
//! Each side's step rate comes from its event log (the steps after the warm-up, so start-up is
//! left out); the ranks' share of step time in collectives from rank 0's closing line.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context};
use workbench::core::protocol::Event;

/// Options of the data-parallel benchmark.
#[derive(clap::Args, Debug)]
pub struct DistOpts {
    /// A shipped preset or a preset file.
    #[arg(long, default_value = "wgan_gp_small")]
    preset: String,
    /// Ranks (processes) of the data-parallel side.
    #[arg(long, default_value_t = 2)]
    ranks: u32,
    /// The batch of each rank; the single process trains `ranks` times it.
    #[arg(long, default_value_t = 32)]
    batch: u32,
    /// Steps per run; the first fifth are warm-up and not timed.
    #[arg(long, default_value_t = 60)]
    steps: u64,
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Override a preset field (repeatable), on both sides.
    #[arg(long = "set", value_name = "FIELD.PATH=VALUE")]
    set: Vec<String>,
}

/// Steps per second between the first logged step at or after `warm` and the last.
fn step_rate(run: &Path, warm: u64) -> anyhow::Result<(f64, Option<String>)> {
    let log = workbench::core::runlog::read_all(&run.join("events.log"))?;
    let mut first: Option<(u64, f64)> = None;
    let mut last: Option<(u64, f64)> = None;
    let mut said = None;
    for e in &log.events {
        match e {
            Event::Scalars { rows } => {
                for r in rows.iter().filter(|r| r.step >= warm) {
                    if first.is_none() {
                        first = Some((r.step, r.wall_time));
                    }
                    last = Some((r.step, r.wall_time));
                }
            }
            Event::Log { message, .. } if message.contains("collectives took") => {
                said = Some(message.clone());
            }
            _ => {}
        }
    }
    match (first, last) {
        (Some((s0, t0)), Some((s1, t1))) if s1 > s0 && t1 > t0 => {
            Ok(((s1 - s0) as f64 / (t1 - t0), said))
        }
        _ => bail!("{}: too few logged steps to time", run.display()),
    }
}

fn only_run(runs: &Path) -> anyhow::Result<std::path::PathBuf> {
    std::fs::read_dir(runs)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.join("preset.ron").is_file())
        .with_context(|| format!("{}: no run", runs.display()))
}

pub fn data_parallel(o: &DistOpts) -> anyhow::Result<()> {
    // The `workbench` binary beside this one trains the ranks.
    let exe = std::env::current_exe()?.with_file_name("workbench");
    anyhow::ensure!(
        exe.is_file(),
        "{} is missing: build it beside workbench-bench (cargo build --bin workbench)",
        exe.display()
    );
    let warm = o.steps / 5;
    let common = |batch: u32, threads: u32| -> Vec<String> {
        let mut a = vec![
            "train".to_string(),
            "--preset".into(),
            o.preset.clone(),
            "--steps".into(),
            o.steps.to_string(),
            "--device".into(),
            "cpu".into(),
            "--set".into(),
            format!("train.batch_size={batch}"),
            "--set".into(),
            format!("threads={threads}"),
            "--set".into(),
            "logging.log_every_steps=1".into(),
        ];
        for s in &o.set {
            a.push("--set".into());
            a.push(s.clone());
        }
        a
    };
    println!(
        "data-parallel: {} ranks x batch {} (1 thread each) against 1 process x batch {} ({} threads), {} steps ({} warm-up), {}",
        o.ranks,
        o.batch,
        o.batch * o.ranks,
        o.ranks,
        o.steps,
        warm,
        o.preset
    );
    let (mut one, mut many, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..o.rounds {
        let tmp =
            std::env::temp_dir().join(format!("workbench-bench-dp-{}-{round}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        // Alone, with as many threads as the ranks have in all.
        let runs = tmp.join("one");
        let out = Command::new(&exe)
            .arg("--runs-dir")
            .arg(&runs)
            .args(common(o.batch * o.ranks, o.ranks))
            .stdout(Stdio::null())
            .output()?;
        if !out.status.success() {
            bail!("one process: {}", String::from_utf8_lossy(&out.stderr));
        }
        let (alone, _) = step_rate(&only_run(&runs)?, warm)?;
        // The ranks, one thread each.
        let runs = tmp.join("ranks");
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let children: Vec<_> = (0..o.ranks)
            .map(|r| {
                Command::new(&exe)
                    .arg("--runs-dir")
                    .arg(&runs)
                    .args(common(o.batch, 1))
                    .env("RANK", r.to_string())
                    .env("WORLD_SIZE", o.ranks.to_string())
                    .env("LOCAL_RANK", r.to_string())
                    .env("MASTER_ADDR", "127.0.0.1")
                    .env("MASTER_PORT", port.to_string())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
            })
            .collect::<Result<_, _>>()?;
        for (r, c) in children.into_iter().enumerate() {
            let out = c.wait_with_output()?;
            if !out.status.success() {
                bail!("rank {r}: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
        let (ranked, said) = step_rate(&only_run(&runs)?, warm)?;
        let global = f64::from(o.batch * o.ranks);
        println!(
            "round {round}: one process {:.2} steps/s ({:.0} samples/s); {} ranks {:.2} steps/s ({:.0} samples/s): x{:.2}",
            alone,
            alone * global,
            o.ranks,
            ranked,
            ranked * global,
            ranked / alone
        );
        if let Some(s) = said {
            println!("  rank 0: {}", s.split("; ").nth(1).unwrap_or(&s));
        }
        let _ = std::fs::remove_dir_all(&tmp);
        one.push(alone);
        many.push(ranked);
        ratios.push(ranked / alone);
    }
    println!(
        "median: one process {:.2} steps/s, {} ranks {:.2} steps/s, ratio x{:.2} (min x{:.2}, max x{:.2})",
        super::median(&mut one),
        o.ranks,
        super::median(&mut many),
        super::median(&mut ratios.clone()),
        ratios.iter().copied().fold(f64::INFINITY, f64::min),
        ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    );
    Ok(())
}

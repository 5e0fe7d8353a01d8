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

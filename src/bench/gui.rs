//! The GUI's costs: the dashboard's frame time against history length, and the worker's
//! steps per second with the app attached against headless.

use std::time::Instant;

use super::{median, percentile, screen_input, Opts};

/// The worker's steps per second with the app attached (draining events and drawing the
/// dashboard at 60 frames a second on this thread) against headless, in alternating rounds.
pub fn overhead(args: &Opts) -> anyhow::Result<()> {
    use workbench::gui::{LaunchOptions, Tab, WorkbenchApp};
    let p = super::shipped(
        "wgan_gp_sprites32",
        vec![
            ("device", args.device.clone().into()),
            ("threads", 1.into()),
            ("logging.log_every_steps", 1.into()),
        ],
    )?;
    let steps = args.steps.max(50);
    let runs = std::env::temp_dir().join(format!("workbench-gui-bench-{}", std::process::id()));
    println!(
        "worker steps/s, WGAN-GP sprites32 on 1 libtorch thread, {steps} steps a run, logging every step; \
         the app drains and draws the dashboard at 60 fps on this thread"
    );
    let headless = |runs: &std::path::Path| -> anyhow::Result<f64> {
        let req = workbench::engine::worker::RunRequest {
            preset: Some(
                workbench::core::preset::validate(p.clone())
                    .map_err(|e| anyhow::anyhow!("{e:?}"))?,
            ),
            runs_dir: runs.into(),
            step_limit: Some(steps),
            ..Default::default()
        };
        let h = workbench::engine::worker::spawn(workbench::engine::worker::prepare(req)?, None)?;
        let t0 = Instant::now();
        while let Ok(e) = h.events().recv() {
            if e.is_terminal() {
                break;
            }
        }
        let dt = t0.elapsed().as_secs_f64();
        h.join();
        Ok(steps as f64 / dt)
    };
    let attached = |runs: &std::path::Path| -> anyhow::Result<f64> {
        let mut opts = LaunchOptions::new(runs);
        opts.preset = Some((p.clone(), None));
        opts.tab = Tab::Dashboard;
        opts.step_limit = Some(steps);
        let mut app = WorkbenchApp::with_waker(opts, None);
        let ctx = egui::Context::default();
        app.start_run();
        let t0 = Instant::now();
        let frame = std::time::Duration::from_micros(16_667);
        loop {
            let t = Instant::now();
            app.logic(&ctx);
            let mut out = ctx.run_ui(screen_input(), |ui| app.show(ui));
            let _meshes = ctx.tessellate(out.shapes, out.pixels_per_point);
            out.textures_delta.clear();
            if app
                .current_run()
                .is_some_and(|r| r.view.state.is_over() && !app.is_catching_up())
            {
                break;
            }
            if let Some(rest) = frame.checked_sub(t.elapsed()) {
                std::thread::sleep(rest);
            }
        }
        Ok(steps as f64 / t0.elapsed().as_secs_f64())
    };
    let (mut h, mut g, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..args.rounds {
        let a = headless(&runs)?;
        let b = attached(&runs)?;
        println!(
            "  round {round}: headless {a:.2} steps/s, with the app {b:.2} steps/s, ratio {:.3}",
            b / a
        );
        h.push(a);
        g.push(b);
        ratios.push(b / a);
    }
    let _ = std::fs::remove_dir_all(&runs);
    println!(
        "  median: headless {:.2}, with the app {:.2} steps/s; ratio median {:.3} (target >= 0.98)",
        median(&mut h),
        median(&mut g),
        median(&mut ratios)
    );
    Ok(())
}

/// Frame time of the dashboard (layout and tessellation, no GPU) with 8 scalars of growing
/// history: the level-of-detail drawing should keep it flat, because each frame draws
/// O(pixels) points whatever the history holds. Also times folding events into the view.
pub fn dashboard() -> anyhow::Result<()> {
    use workbench::core::protocol::{Event, ScalarRow};
    use workbench::core::runview::RunView;
    use workbench::gui::{LaunchOptions, Tab, WorkbenchApp};

    const SERIES: usize = 12;
    const FRAMES: usize = 100;
    let tmp = std::env::temp_dir().join(format!("workbench-bench-{}", std::process::id()));
    println!(
        "dashboard: {SERIES} scalars, 1400x900 points, {FRAMES} frames each, layout + tessellation"
    );
    let mut base = f64::NAN;
    for n in [1_000u64, 100_000, 1_000_000] {
        let mut view = RunView::default();
        view.name = format!("bench-{n}");
        let t0 = Instant::now();
        let names: Vec<String> = (0..SERIES).map(|i| format!("scalar_{i}")).collect();
        for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
            let rows = chunk
                .iter()
                .map(|&s| ScalarRow {
                    step: s,
                    wall_time: 0.0,
                    values: names
                        .iter()
                        .enumerate()
                        .map(|(i, k)| (k.clone(), ((s as f64) * 0.001 * (i + 1) as f64).sin()))
                        .collect(),
                })
                .collect();
            view.apply(Event::Scalars { rows }, None);
        }
        let fold = t0.elapsed().as_secs_f64();
        let mut opts = LaunchOptions::new(&tmp);
        opts.tab = Tab::Dashboard;
        let mut app = WorkbenchApp::with_waker(opts, None);
        app.show_view(view);
        app.dashboard.columns = 2;
        let ctx = egui::Context::default();
        let mut times = Vec::new();
        for frame in 0..FRAMES + 3 {
            let t = Instant::now();
            let mut out = ctx.run_ui(screen_input(), |ui| app.show(ui));
            let _meshes = ctx.tessellate(out.shapes, out.pixels_per_point);
            // No renderer here: the font atlas uploads are dropped on purpose.
            out.textures_delta.clear();
            if frame >= 3 {
                times.push(t.elapsed().as_secs_f64());
            }
        }
        let p99 = percentile(&mut times, 0.99);
        let med = median(&mut times);
        if base.is_nan() {
            base = med;
        }
        println!(
            "  {n:>9} points/scalar: fold {:>6.0} ns/row, frame median {:>6.2} ms, p99 {:>6.2} ms ({:.2}x the 1k median), {} points drawn",
            fold / n as f64 * 1e9,
            med * 1e3,
            p99 * 1e3,
            med / base,
            app.dashboard.points_drawn
        );
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

/// The runs table against a folder of many runs: the first read of every log, a refresh when
/// nothing changed, one after a few logs grew, and the Runs tab's frame time.
pub fn runs_table(runs: usize) -> anyhow::Result<()> {
    use workbench::core::protocol::{Event, MetricDef, Outcome, ScalarRow};
    use workbench::core::runtable::RunIndex;
    use workbench::gui::{LaunchOptions, Tab, WorkbenchApp};

    let tmp = std::env::temp_dir().join(format!("workbench-bench-runs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let base = workbench::core::preset::shipped::get("smoke")
        .ok_or_else(|| anyhow::anyhow!("no shipped preset `smoke`"))?;
    const ROWS: u64 = 200;
    let t0 = Instant::now();
    let mut writers = Vec::new();
    for i in 0..runs {
        let dir = tmp.join(format!("sweep-{i:04}"));
        std::fs::create_dir_all(&dir)?;
        let lr = 1e-5 * (1 + i % 50) as f64;
        std::fs::write(
            dir.join("preset.ron"),
            base.replace("lr_g: 2e-4", &format!("lr_g: {lr:e}")),
        )?;
        let mut w = workbench::core::runlog::LogWriter::open(&dir.join("events.log"))?;
        w.append(&Event::RunStarted {
            run_dir: dir.display().to_string(),
            name: format!("sweep-{i:04}"),
            family: "wgan_gp".into(),
            device: "cpu".into(),
            total_steps: Some(ROWS * 10),
            resumed_from: None,
            restarted: false,
            branch_of: None,
            wall_time: 0.0,
            metrics: vec![
                MetricDef::loss("d_loss"),
                MetricDef::validation("val_swd", false),
            ],
        })?;
        let rows = (0..ROWS)
            .map(|s| ScalarRow {
                step: s * 10,
                wall_time: s as f64,
                values: vec![
                    ("d_loss".into(), (s as f64).sin()),
                    ("val_swd".into(), 1.0 / (1.0 + s as f64 + i as f64)),
                ],
            })
            .collect();
        w.append(&Event::Scalars { rows })?;
        if i % 10 != 0 {
            w.append(&Event::RunFinished {
                step: ROWS * 10,
                outcome: Outcome::Completed,
                signal: None,
            })?;
        }
        w.sync()?;
        if i % 10 == 0 {
            writers.push(w);
        }
        // Ten branches in three levels: 1-4 of run 0, 5-7 of run 1, 8-10 of run 5.
        let parent = match i {
            1..=4 => Some(0),
            5..=7 => Some(1),
            8..=10 => Some(5),
            _ => None,
        };
        if let Some(p) = parent.filter(|_| runs > 10) {
            let lineage = workbench::core::branch::Lineage {
                parent: tmp.join(format!("sweep-{p:04}")),
                parent_name: "smoke".into(),
                fork_step: 100,
                changes: vec![workbench::core::branch::Change {
                    field: "train.lr_g".into(),
                    from: 2e-4.into(),
                    to: lr.into(),
                }],
                created: String::new(),
            };
            std::fs::write(
                dir.join(workbench::core::branch::LINEAGE_FILE),
                serde_json::to_vec(&lineage)?,
            )?;
        }
    }
    println!(
        "runs table: {runs} runs of {ROWS} logged steps each, ten of them branches in three levels (written in {:.2} s)",
        t0.elapsed().as_secs_f64()
    );
    let mut index = RunIndex::default();
    let t = Instant::now();
    let rows = index.refresh(&tmp);
    println!(
        "first read of every log: {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let t = Instant::now();
    let again = index.refresh(&tmp);
    println!(
        "refresh with nothing new: {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    anyhow::ensure!(again.len() == rows.len(), "rows changed");
    let t = Instant::now();
    let order = workbench::core::runtable::branches_under_parents(&again);
    println!(
        "the lineage tree of {} rows: {:.3} ms",
        order.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    if runs > 10 {
        let deepest = again.iter().map(|r| r.depth).max().unwrap_or(0);
        let branches = again.iter().filter(|r| r.lineage.is_some()).count();
        anyhow::ensure!(
            deepest == 3 && branches == 10,
            "lineage: depth {deepest}, {branches} branches"
        );
    }
    for w in &mut writers {
        w.append(&Event::Scalars {
            rows: vec![ScalarRow {
                step: ROWS * 10 + 10,
                wall_time: ROWS as f64,
                values: vec![("d_loss".into(), 0.0)],
            }],
        })?;
        w.sync()?;
    }
    let t = Instant::now();
    let rows = index.refresh(&tmp);
    println!(
        "refresh after {} logs grew: {:.1} ms",
        writers.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    let mut opts = LaunchOptions::new(&tmp);
    opts.tab = Tab::Runs;
    let mut app = WorkbenchApp::with_waker(opts, None);
    app.set_run_list(rows);
    let ctx = egui::Context::default();
    let mut times = Vec::new();
    for frame in 0..53 {
        let t = Instant::now();
        let mut out = ctx.run_ui(screen_input(), |ui| app.show(ui));
        let _ = ctx.tessellate(out.shapes, out.pixels_per_point);
        out.textures_delta.clear();
        if frame >= 3 {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    println!(
        "Runs tab frame (layout + tessellation): median {:.2} ms, p95 {:.2} ms",
        median(&mut times.clone()),
        percentile(&mut times, 0.95)
    );
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

/// Writes a finished run of `rows` steps of `scalars` scalars, as training does: the log in
/// batches of 100 rows and the pyramids built as it is written.
fn write_long_run(dir: &std::path::Path, rows: u64, scalars: usize) -> anyhow::Result<()> {
    use workbench::core::protocol::{Event, MetricDef, Outcome, ScalarRow};
    std::fs::create_dir_all(dir)?;
    let mut log = workbench::core::runlog::LogWriter::open(&dir.join("events.log"))?;
    let mut lod = workbench::core::lod::Builder::default();
    let names: Vec<String> = (0..scalars).map(|i| format!("loss_{i}")).collect();
    let mut put = |e: Event| -> anyhow::Result<()> {
        log.append(&e)?;
        lod.observe(&e);
        Ok(())
    };
    put(Event::RunStarted {
        run_dir: dir.display().to_string(),
        name: "long".into(),
        family: "wgan_gp".into(),
        device: "cpu".into(),
        total_steps: Some(rows),
        resumed_from: None,
        restarted: false,
        branch_of: None,
        wall_time: 0.0,
        metrics: names.iter().map(|n| MetricDef::loss(n)).collect(),
    })?;
    let mut step = 0;
    while step < rows {
        let end = (step + 100).min(rows);
        put(Event::Scalars {
            rows: (step..end)
                .map(|s| ScalarRow {
                    step: s,
                    wall_time: s as f64 * 0.01,
                    values: names
                        .iter()
                        .enumerate()
                        .map(|(i, n)| {
                            let x = s as f64;
                            (
                                n.clone(),
                                (x * 1e-4 * (i + 1) as f64).sin() + 1e-3 * (x % 97.0),
                            )
                        })
                        .collect(),
                })
                .collect(),
        })?;
        step = end;
    }
    put(Event::RunFinished {
        step: rows,
        outcome: Outcome::Completed,
        signal: None,
    })?;
    log.sync()?;
    let p = lod
        .pyramids(log.bytes())
        .ok_or_else(|| anyhow::anyhow!("the pyramids gave up"))?;
    workbench::core::lod::write(dir, &p)?;
    Ok(())
}

/// Draws the app's frames (layout and tessellation) until its dashboard draws points, then
/// until the runs it follows are read: both times since `t0`, in seconds.
fn draw_until_read(
    app: &mut workbench::gui::WorkbenchApp,
    t0: Instant,
) -> anyhow::Result<(f64, f64)> {
    let ctx = egui::Context::default();
    let mut first = None;
    loop {
        app.logic(&ctx);
        let mut out = ctx.run_ui(screen_input(), |ui| app.show(ui));
        let _meshes = ctx.tessellate(out.shapes, out.pixels_per_point);
        // No renderer here: the font atlas uploads are dropped on purpose.
        out.textures_delta.clear();
        if first.is_none() && app.dashboard.points_drawn > 0 {
            first = Some(t0.elapsed().as_secs_f64());
        }
        if let (Some(f), false) = (first, app.is_catching_up()) {
            return Ok((f, t0.elapsed().as_secs_f64()));
        }
        anyhow::ensure!(
            t0.elapsed().as_secs() < 900,
            "the run was not read in 15 minutes"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// See `BenchCmd::OpenRun`.
pub fn open_run(rows: u64, scalars: usize, rounds: usize) -> anyhow::Result<()> {
    use workbench::gui::{LaunchOptions, Tab, WorkbenchApp};
    let tmp = std::env::temp_dir().join(format!("workbench-bench-open-{}", std::process::id()));
    let run = tmp.join("runs").join("long");
    let t0 = Instant::now();
    write_long_run(&run, rows, scalars)?;
    let size = |f: &str| std::fs::metadata(run.join(f)).map_or(0, |m| m.len());
    let pyramids = std::fs::read(run.join(workbench::core::lod::FILE))?;
    println!(
        "open-run: {rows} rows x {scalars} scalars; events.log {:.1} MB, scalars.lod {:.1} KB (written in {:.1} s)",
        size("events.log") as f64 / 1e6,
        size(workbench::core::lod::FILE) as f64 / 1e3,
        t0.elapsed().as_secs_f64()
    );
    // Opens the run in a fresh app and draws frames until the first plot has points, then
    // until the log is read; returns both times in seconds.
    let open = || -> anyhow::Result<(f64, f64)> {
        let mut opts = LaunchOptions::new(&tmp);
        opts.tab = Tab::Dashboard;
        let mut app = WorkbenchApp::with_waker(opts, None);
        let t0 = Instant::now();
        app.open_run(&run);
        draw_until_read(&mut app, t0)
    };
    let mut with = (Vec::new(), Vec::new());
    let mut without = (Vec::new(), Vec::new());
    for round in 0..rounds {
        std::fs::write(run.join(workbench::core::lod::FILE), &pyramids)?;
        let (f, all) = open()?;
        with.0.push(f);
        with.1.push(all);
        // Without: the first round only (a whole read of the log each time).
        if round == 0 {
            std::fs::remove_file(run.join(workbench::core::lod::FILE))?;
            let (f, all) = open()?;
            without.0.push(f);
            without.1.push(all);
        }
    }
    let rebuilt = run.join(workbench::core::lod::FILE).is_file();
    println!(
        "  with scalars.lod:    first plot median {:.2} s (min {:.2}, {} rounds), whole log read {:.1} s",
        median(&mut with.0.clone()),
        with.0.iter().copied().fold(f64::INFINITY, f64::min),
        with.0.len(),
        median(&mut with.1)
    );
    println!(
        "  without scalars.lod: first plot {:.2} s, whole log read {:.1} s ({:.0}x slower to the first plot; the app wrote the file again: {rebuilt})",
        without.0[0],
        without.1[0],
        without.0[0] / median(&mut with.0)
    );
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

/// See `BenchCmd::Remote`.
pub fn remote(rows: u64, ssh: bool, seconds: u64) -> anyhow::Result<()> {
    use workbench::core::protocol::{Event, ScalarRow};
    use workbench::gui::{LaunchOptions, Tab, WorkbenchApp};
    let tmp = std::env::temp_dir().join(format!("workbench-bench-remote-{}", std::process::id()));
    let runs = tmp.join("runs");
    write_long_run(&runs.join("long"), rows, 4)?;
    let exe = std::env::current_exe()?
        .with_file_name("workbench")
        .display()
        .to_string();
    let mut argv: Vec<String> = if ssh {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/sshd-local.sh");
        let out = std::process::Command::new("bash")
            .arg(script)
            .arg(tmp.join("sshd"))
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "no sshd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(String::from)
            .collect()
    } else {
        Vec::new()
    };
    argv.extend([
        exe,
        "--runs-dir".into(),
        runs.display().to_string(),
        "serve".into(),
        "--stdio".into(),
    ]);
    println!(
        "remote: through {}; a finished run of {rows} rows x 4 scalars",
        if ssh {
            "ssh to a loopback sshd"
        } else {
            "the binary as the pipe"
        }
    );
    // Time to the first plot, the app's way.
    let mut opts = LaunchOptions::new(&tmp.join("local"));
    opts.tab = Tab::Dashboard;
    let mut app = WorkbenchApp::with_waker(opts, None);
    app.remotes.push(workbench::gui::sources::RemoteSite {
        destination: "bench".into(),
        argv: argv.clone(),
        rows: Vec::new(),
        error: None,
        listing: false,
    });
    let t0 = Instant::now();
    app.open_remote(0, "long");
    let (first, all) = draw_until_read(&mut app, t0)?;
    println!(
        "  first plot {first:.2} s (from its scalars.lod), whole log over the pipe {all:.1} s"
    );
    drop(app);
    // A live run: 50 scalars, 10 steps a second, followed by a client polling as the app does.
    let live = runs.join("live");
    std::fs::create_dir_all(&live)?;
    let mut w = workbench::core::runlog::LogWriter::open(&live.join("events.log"))?;
    w.append(&Event::Paused { step: 0 })?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = std::sync::Arc::clone(&stop);
    let writer = std::thread::Builder::new()
        .name("bench-live-writer".into())
        .spawn(move || -> anyhow::Result<()> {
            let names: Vec<String> = (0..50).map(|i| format!("scalar_{i}")).collect();
            let t0 = Instant::now();
            let mut step = 0u64;
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_secs_f64();
                w.append(&Event::Scalars {
                    rows: vec![ScalarRow {
                        step,
                        wall_time: now,
                        values: names
                            .iter()
                            .map(|n| (n.clone(), step as f64 * 0.5))
                            .collect(),
                    }],
                })?;
                step += 1;
                let next = std::time::Duration::from_millis(100 * step);
                if let Some(wait) = next.checked_sub(t0.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            Ok(())
        })?;
    let mut log = workbench::core::remote::RemoteLog::new(argv, "live".into());
    let mut latencies = Vec::new();
    let t0 = Instant::now();
    let mut start_bytes = None;
    while t0.elapsed().as_secs() < seconds {
        for e in log.poll()? {
            if let Event::Scalars { rows } = e {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_secs_f64();
                latencies.extend(rows.iter().map(|r| now - r.wall_time));
            }
        }
        if start_bytes.is_none() && t0.elapsed().as_secs() >= 2 {
            start_bytes = Some((log.received, Instant::now()));
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = writer.join();
    let (b0, at) = start_bytes.unwrap_or((0, t0));
    let rate = (log.received - b0) as f64 / at.elapsed().as_secs_f64();
    let max = latencies.iter().copied().fold(0.0, f64::max);
    println!(
        "  live, 50 scalars at 10 steps/s for {seconds} s: latency of new points median {:.2} s, max {:.2} s; {:.1} KB/s of log over the pipe",
        median(&mut latencies),
        max,
        rate / 1e3
    );
    if ssh {
        let pid = std::fs::read_to_string(tmp.join("sshd/sshd.pid")).unwrap_or_default();
        let _ = std::process::Command::new("kill").arg(pid.trim()).status();
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

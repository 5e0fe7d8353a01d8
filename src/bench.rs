//! `workbench bench`: step rate and peak memory side by side with a PyTorch script of the same
//! computation, and the learning check. Benchmarks, never timed tests.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use workbench::core::preset::{self, AnyPreset};
use workbench::engine::families::make_trainer;
use workbench::engine::trainer::StepCtx;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// wgan-gp (step time vs PyTorch), wgan-gp-learning (SWD and Wasserstein estimate) or
    /// dashboard (GUI frame time against history length).
    which: String,
    /// Timed steps per round (after 3 warm-up steps).
    #[arg(long, default_value_t = 10)]
    steps: u64,
    /// Rounds; wgan-gp alternates a round of ours with a round of PyTorch's.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
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
    /// wubu-gaad: hidden width of the generator's spectral heads (the original's is 4096).
    #[arg(long, default_value_t = 512)]
    head_hidden: u32,
    /// wubu-gaad-encoder: only the variants whose name contains this.
    #[arg(long)]
    only: Option<String>,
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
        "dashboard" => dashboard(),
        "wubu-gaad" | "wubu-gaad-bat" => wubu_gaad(args),
        "gui-overhead" => gui_overhead(args),
        "wubu-gaad-encoder" => wubu_gaad_encoder(args),
        other => bail!("unknown benchmark `{other}`; known: wgan-gp, wgan-gp-learning, dashboard, gui-overhead, wubu-gaad, wubu-gaad-bat, wubu-gaad-encoder"),
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
            let (py_step, mem) = python_round(args)?;
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
fn wubu_gaad(args: &BenchArgs) -> anyhow::Result<()> {
    use workbench::core::preset::wubu_gaad::WubuGaadPreset;
    let device = workbench::engine::device::resolve(&args.device)?;
    let mut p = if args.which == "wubu-gaad-bat" {
        WubuGaadPreset::bat()
    } else {
        let mut p = WubuGaadPreset::default();
        p.data.image_h = 128;
        p.data.image_w = 128;
        p.data.input_frames = 2;
        p.data.predict_frames = 1;
        p.model.regions = 8;
        p.model.motion = true;
        p.train.batch_size = args.batch;
        p.model.gen_head_hidden = args.head_hidden;
        p
    };
    p.device = args.device.clone();
    p.data.synthetic_frames = 200;
    let preset = preset::validate(AnyPreset::WubuGaad(p.clone()))
        .map_err(|e| anyhow::anyhow!("{e:?}"))?
        .preset()
        .clone();
    let mut trainer = make_trainer(&preset, device)?;
    println!("{}", trainer.describe());
    println!(
        "device {}, batch {}, heads {}, {} rounds of {} timed steps after 3 warm-up steps",
        workbench::engine::device::describe(device),
        p.train.batch_size,
        p.model.gen_head_hidden,
        args.rounds,
        args.steps
    );
    let spe = trainer.steps_per_epoch();
    let ctx = |i: u64| StepCtx {
        step: i,
        epoch: i / spe,
        batch_in_epoch: i % spe,
    };
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
    } else if args.which == "wubu-gaad" {
        println!(
            "  against the original's 2.9 s/step on this machine kind's CPU (the issue's figure): {:.2}x faster, target >= 3x",
            2.9 / med
        );
    }
    Ok(())
}

/// Which encoder lets the WuBu-GAAD generator learn: the same generator (pixel head) and
/// Adam, trained as a plain autoencoder on random batches of the synthetic video, fed by the
/// regional GAAD/WuBu encoder (regions averaged, as the original, or side by side; WuBu levels
/// as the original's, residual and as wide as the level, or none), and by a small conv encoder;
/// with the pixel head, or with the spectral heads with and without their locality prior.
/// The figure is the pixel MSE against the dataset's mean image (what a model that ignores its
/// input reaches).
fn wubu_gaad_encoder(args: &BenchArgs) -> anyhow::Result<()> {
    use tch::nn::{self, Module, OptimizerConfig};
    use tch::{Device, Kind, Tensor};
    use workbench::core::gaad;
    use workbench::core::preset::wubu_gaad::{RegionPooling, WubuGaadPreset};
    use workbench::engine::data::VideoSet;
    use workbench::engine::families::wubu_gaad::model::{
        assemble, box_condition, roi_boxes, Dims, Encoder, Generator,
    };
    use workbench::engine::spectral::roi_align;
    let steps = args.steps.max(50);
    let base = WubuGaadPreset::default();
    let set = VideoSet::load(&base.data, base.seed)?;
    let all = set.batch(&set.train, Device::Cpu).narrow(1, 2, 1);
    let mean = all.mean_dim([0i64].as_slice(), true, Kind::Float);
    let val = set.batch(&set.val, Device::Cpu).narrow(1, 2, 1);
    let floor = (&val - &mean).square().mean(Kind::Float).double_value(&[]);
    // What the regions' patches can hold: the true frames cut into the 8 regions' patches
    // and pasted back (the spectral generator's output space).
    let boxes = gaad::decompose(gaad::Kind::Hybrid, 64, 64, 8, 4.0)?;
    let pasted = {
        let d = Dims::new(&base);
        let v = val.squeeze_dim(1);
        let n = v.size()[0];
        let patches = roi_align(&v, &roi_boxes(&boxes, n, Device::Cpu), d.ph, d.pw, 1.0)
            .view([n, 1, d.regions, d.c, d.ph, d.pw]);
        (assemble(&patches, &boxes, &d).squeeze_dim(1) - v)
            .square()
            .mean(Kind::Float)
            .double_value(&[])
    };
    println!(
        "autoencoder on the synthetic video, 64x64, batch 4, Adam 1e-3, {steps} steps; validation pixel MSE ([-1,1]); \
         the mean image gives {floor:.4}; the true frames through the 8 regions' 16x16 patches give {pasted:.4} ({:.2}x)",
        pasted / floor
    );
    /// What the generator ends in, and what the encoder reads.
    #[derive(Clone, Copy, PartialEq)]
    enum Head {
        /// Pixel patches in, the pixel head out.
        Pixel,
        /// DFT and DCT features in, the spectral heads with their locality prior out.
        Spectral,
        /// The same with the original's dense spectral heads alone.
        Dense,
    }
    // (name, regions side by side, WuBu levels: None = none, Some(residual and wide), head)
    let variants: [(&str, bool, Option<bool>, Head); 11] = [
        ("mean, original levels", false, Some(false), Head::Pixel),
        ("mean, residual levels", false, Some(true), Head::Pixel),
        ("mean, no levels", false, None, Head::Pixel),
        ("concat, original levels", true, Some(false), Head::Pixel),
        ("concat, residual levels", true, Some(true), Head::Pixel),
        ("concat, no levels", true, None, Head::Pixel),
        ("conv", false, None, Head::Pixel),
        (
            "spectral concat, residual",
            true,
            Some(true),
            Head::Spectral,
        ),
        ("dense concat, residual", true, Some(true), Head::Dense),
        ("spectral conv", false, None, Head::Spectral),
        ("dense conv", false, None, Head::Dense),
    ];
    for (which, concat, levels, head) in variants {
        if !args
            .only
            .as_ref()
            .is_none_or(|o| which.contains(o.as_str()))
        {
            continue;
        }
        tch::manual_seed(0);
        let mut p = base.clone();
        p.model.motion = false;
        p.model.use_dft = head != Head::Pixel;
        p.model.use_dct = head != Head::Pixel;
        p.model.gen_head_skip = head == Head::Spectral;
        p.model.wubu_dropout = 0.0;
        if concat {
            p.model.region_pooling = RegionPooling::Concat;
        }
        for s in [&mut p.model.wubu_s, &mut p.model.wubu_t] {
            match levels {
                None => s.dims = String::new(),
                // The original's combiner: 32 wide, replacing the tangent vector.
                Some(false) => (s.combiner_hidden, s.residual) = (32, false),
                Some(true) => (s.combiner_hidden, s.residual) = (0, true),
            }
        }
        let d = Dims::new(&p);
        let cond = box_condition(&boxes, 64, 64, Device::Cpu);
        let vs = nn::VarStore::new(Device::Cpu);
        let enc = Encoder::new(&(vs.root() / "encoder"), &p, &d);
        let gen = Generator::new(&(vs.root() / "generator"), &p, &d);
        let r = vs.root() / "conv";
        let conv_cfg = nn::ConvConfig {
            stride: 2,
            padding: 1,
            ..Default::default()
        };
        let conv = nn::seq()
            .add(nn::conv2d(&r / "c1", 9, 32, 4, conv_cfg))
            .add_fn(Tensor::relu)
            .add(nn::conv2d(&r / "c2", 32, 64, 4, conv_cfg))
            .add_fn(Tensor::relu)
            .add(nn::conv2d(&r / "c3", 64, 128, 4, conv_cfg))
            .add_fn(Tensor::relu)
            .add_fn(|x| x.flatten(1, -1))
            .add(nn::linear(
                &r / "fc",
                128 * 8 * 8,
                d.latent,
                Default::default(),
            ));
        let mut opt = nn::Adam::default().build(&vs, 1e-3)?;
        let mut rng = workbench::core::rng::SplitMix64::new(5);
        let encode = |frames: &Tensor, train: bool| {
            let b = frames.size()[0];
            if which.ends_with("conv") {
                conv.forward(&frames.reshape([b, 9, 64, 64]))
            } else {
                enc.forward_t(frames, &roi_boxes(&boxes, b * 3, Device::Cpu), None, train)
                    .mu
            }
        };
        let t0 = Instant::now();
        for _ in 0..steps {
            let starts: Vec<i64> = (0..4)
                .map(|_| set.train[rng.below(set.train.len() as u64) as usize])
                .collect();
            let frames = set.batch(&starts, Device::Cpu);
            let out = gen.forward(
                &encode(&frames, true),
                &boxes,
                &cond,
                &roi_boxes(&boxes, 4, Device::Cpu),
            );
            let loss = out
                .frames
                .mse_loss(&frames.narrow(1, 2, 1), tch::Reduction::Mean);
            opt.backward_step(&loss);
        }
        let starts: Vec<i64> = set.val.iter().copied().step_by(4).take(32).collect();
        let frames = set.batch(&starts, Device::Cpu);
        let mse = tch::no_grad(|| {
            let out = gen.forward(
                &encode(&frames, false),
                &boxes,
                &cond,
                &roi_boxes(&boxes, starts.len() as i64, Device::Cpu),
            );
            out.frames
                .mse_loss(&frames.narrow(1, 2, 1), tch::Reduction::Mean)
                .double_value(&[])
        });
        println!(
            "  {which:<24} validation MSE {mse:.4} ({:.2}x the mean image's), {:.0} s",
            mse / floor,
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// One frame's input: a 1400x900 window, nothing else.
fn screen_input() -> egui::RawInput {
    egui::RawInput {
        screen_rect: Some(egui::Rect::from_min_size(
            egui::Pos2::ZERO,
            egui::vec2(1400.0, 900.0),
        )),
        ..Default::default()
    }
}

/// The `q` quantile (nearest rank).
fn percentile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

/// The worker's steps per second with the app attached (draining events and drawing the
/// dashboard at 60 frames a second on this thread) against headless, in alternating rounds.
fn gui_overhead(args: &BenchArgs) -> anyhow::Result<()> {
    use workbench::gui::{LaunchOptions, Tab, WorkbenchApp};
    let text = std::fs::read_to_string("presets/wgan_gp_sprites32.ron")
        .context("presets/wgan_gp_sprites32.ron")?;
    let (p, _) = preset::parse_str(&text, "presets/wgan_gp_sprites32.ron")?;
    let p = p
        .with_overrides([
            ("device", args.device.clone().into()),
            ("threads", 1.into()),
            ("logging.log_every_steps", 1.into()),
        ])
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let steps = args.steps.max(50);
    let runs = std::env::temp_dir().join(format!("workbench-gui-bench-{}", std::process::id()));
    println!(
        "worker steps/s, WGAN-GP sprites32 on 1 libtorch thread, {steps} steps a run, logging every step; \
         the app drains and draws the dashboard at 60 fps on this thread"
    );
    let headless = |runs: &std::path::Path| -> anyhow::Result<f64> {
        let req = workbench::engine::worker::RunRequest {
            preset: Some(preset::validate(p.clone()).map_err(|e| anyhow::anyhow!("{e:?}"))?),
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

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => 0.5 * (v[n / 2 - 1] + v[n / 2]),
    }
}

/// One round of the PyTorch script (its own warm-up, then `steps` timed steps): seconds per
/// step and the process's peak RSS in MiB.
fn python_round(args: &BenchArgs) -> anyhow::Result<(f64, f64)> {
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
    Ok((
        v["step_s"].as_f64().unwrap_or(f64::NAN),
        v["peak_rss_mib"].as_f64().unwrap_or(f64::NAN),
    ))
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

/// Frame time of the dashboard (layout and tessellation, no GPU) with 8 scalars of growing
/// history: the level-of-detail drawing should keep it flat, because each frame draws
/// O(pixels) points whatever the history holds. Also times folding events into the view.
fn dashboard() -> anyhow::Result<()> {
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

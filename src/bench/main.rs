//! `workbench-bench`, the benchmarks, a binary of their own beside `workbench` (whose `--help`
//! is the product): step rate and peak memory side by side with a PyTorch script of the same
//! computation, the learning checks, and the GUI's frame time and overhead, one subcommand
//! each. Benchmarks, never timed tests. The WuBu-GAAD encoder ablation is an example:
//! `cargo run --release --example wubu_gaad_encoder`.

mod dist;
mod gui;
mod learning;
mod observe;
mod step_time;
mod sweeps;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use workbench::core::preset::{self, AnyPreset};

#[derive(Parser, Debug)]
#[command(
    name = "workbench-bench",
    version,
    about = "Generative Workbench's benchmarks: step time beside PyTorch, learning checks, GUI cost"
)]
struct Cli {
    #[command(subcommand)]
    command: BenchCmd,
}

fn main() -> ExitCode {
    // As the workbench runs (the PyTorch scripts it runs beside keep glibc's defaults).
    workbench::engine::ops::keep_large_host_allocations();
    let cli = Cli::parse();
    match run(&cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// The benchmarks.
#[derive(clap::Subcommand, Debug)]
pub enum BenchCmd {
    /// WGAN-GP small: step time and peak memory beside PyTorch eager (bench/wgan_gp_small.py).
    WganGp(Opts),
    /// WGAN-GP: sliced Wasserstein distance and Wasserstein estimate over 1500 critic steps.
    WganGpLearning(Opts),
    /// GUI frame time (layout and tessellation) against 1k, 100k and 1M points per scalar.
    Dashboard,
    /// The runs table against a folder of `--runs` runs: reading every log, refreshing, and
    /// the Runs tab's frame time.
    RunsTable {
        #[arg(long, default_value_t = 1000)]
        runs: usize,
    },
    /// Worker steps/s with the app attached (draining and drawing at 60 fps) against headless.
    GuiOverhead(Opts),
    /// What observing costs: the step-time breakdown with system samples every 100 ms, one
    /// watched layer (the largest) every step, every layer every 10th step, each against
    /// plain steps, in alternating rounds.
    Observe {
        #[command(flatten)]
        opts: Opts,
        #[arg(long, default_value = "wgan_gp_small")]
        preset: String,
    },
    /// Opening a finished run of `--rows` logged steps of `--scalars` scalars in the app: time
    /// to the first drawn plot and to the whole log read, with its persisted pyramids
    /// (`scalars.lod`, as training writes them) against without.
    /// A remote run over `workbench serve --stdio`, through a real sshd on loopback
    /// (scripts/sshd-local.sh) with `--ssh`, else through the binary as the pipe: time to
    /// the first plot of a finished run of `--rows` rows of 4 scalars, the latency of new
    /// points and the bandwidth of a live run logging 50 scalars at 10 steps a second.
    Remote {
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
        #[arg(long)]
        ssh: bool,
        /// Seconds of the live run.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
    },
    OpenRun {
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
        #[arg(long, default_value_t = 4)]
        scalars: usize,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// WuBu-GAAD step time and peak RSS at 128x128, 2+1 frames, 8 regions, motion on.
    WubuGaad(Opts),
    /// WuBu-GAAD at the original launcher's configuration (256x256, 12+3 frames, 96 regions).
    WubuGaadBat(Opts),
    /// Latent action model, tiny: step time and peak memory beside PyTorch eager
    /// (bench/latent_action_tiny.py); `--full` times the seed's full configuration instead.
    LatentAction {
        #[command(flatten)]
        opts: Opts,
        #[arg(long)]
        full: bool,
    },
    /// VQ-GAN, tiny, critics on: step time and peak memory beside PyTorch eager
    /// (bench/vq_gan_tiny.py).
    VqGan {
        #[command(flatten)]
        opts: Opts,
        /// Volume side (synthetic volumes).
        #[arg(long, default_value_t = 16)]
        size: u32,
        /// Patchwise: patch side (0: whole volumes). Every patch of the step goes through
        /// the model at once (`data.patch_batch` 0), as the PyTorch side does.
        #[arg(long, default_value_t = 0)]
        patch: u32,
        /// The autoencoder alone (the critics not started).
        #[arg(long)]
        no_critics: bool,
    },
    /// Which settings matter: the importance analysis (functional ANOVA on a random forest)
    /// over `--runs` runs of `--fields` fields, as the Runs tab computes it.
    Importance {
        #[arg(long, default_value_t = 1000)]
        runs: usize,
        #[arg(long, default_value_t = 20)]
        fields: usize,
        #[arg(long, default_value_t = 5)]
        rounds: usize,
    },
    /// An ASHA sweep's budget and result against training every trial to the end: 27 trials of
    /// the smoke preset through the local queue, with and without `asha(grace: 27, reduction: 3)`.
    AshaSweep {
        /// Queue workers.
        #[arg(long, default_value_t = 2)]
        jobs: usize,
        /// The random search's seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// A 9 x 3 grid instead of 27 random draws.
        #[arg(long)]
        grid: bool,
        /// Each trial's full budget.
        #[arg(long, default_value_t = 243)]
        steps: u64,
        /// ASHA's first rung (then every 3x: 27, 81 below 243).
        #[arg(long, default_value_t = 27)]
        grace: u64,
        /// Keep the two runs folders (printed).
        #[arg(long)]
        keep: bool,
    },
    /// VQ-GAN learning check (spec 4.2): 1500 steps of `vq_gan_tiny`, validation PSNR against
    /// the mean-volume baseline, codebook use and the recovery after the critics start.
    VqGanLearning(LearnOpts),
    /// WuBu-GAAD learning check: `wubu_gaad_learning` (or `--preset`) for `--minutes` (10),
    /// validating every `--every` steps: PSNR and SSIM against the copy-last-frame and
    /// mean-image baselines and the representation's ceiling, sharpness, seconds per step, and
    /// the last truth | reconstruction written as a PNG (`--out`).
    WubuGaadLearning {
        #[command(flatten)]
        opts: LearnOpts,
        /// Where the final truth | reconstruction image goes.
        #[arg(long, default_value = "wubu_gaad_learning.png")]
        out: PathBuf,
    },
    /// Latent action model learning check: train for some minutes, validating as it goes:
    /// validation MSE against the copy-last-frame baseline, action purity and sensitivity.
    LatentActionLearning(LearnOpts),
    /// Data parallelism on the CPU: `--ranks` c10d Gloo ranks against one process with as many
    /// threads on the same global batch (step rate, ratio, the collectives' share of a step).
    DataParallel(dist::DistOpts),
}

/// Options of a learning check.
#[derive(clap::Args, Debug)]
pub struct LearnOpts {
    /// A shipped preset [default: the family's tiny one].
    #[arg(long)]
    preset: Option<String>,
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Validate every this many steps.
    #[arg(long, default_value_t = 200)]
    every: u64,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Data instead of the preset's, as `train --data` takes it for the family (.h5 latents, NIfTI volumes or a video).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Override a preset field (repeatable).
    #[arg(long = "set", value_name = "FIELD.PATH=VALUE")]
    set: Vec<String>,
}

/// Options the benchmarks share.
#[derive(clap::Args, Debug)]
pub struct Opts {
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
}

pub fn run(cmd: &BenchCmd) -> anyhow::Result<()> {
    match cmd {
        BenchCmd::WganGp(o) => step_time::wgan_gp(o),
        BenchCmd::WganGpLearning(o) => learning::wgan_gp(o),
        BenchCmd::Dashboard => gui::dashboard(),
        BenchCmd::RunsTable { runs } => gui::runs_table(*runs),
        BenchCmd::GuiOverhead(o) => gui::overhead(o),
        BenchCmd::Observe { opts, preset } => observe::overhead(opts, preset),
        BenchCmd::Remote { rows, ssh, seconds } => gui::remote(*rows, *ssh, *seconds),
        BenchCmd::OpenRun {
            rows,
            scalars,
            rounds,
        } => gui::open_run(*rows, *scalars, *rounds),
        BenchCmd::WubuGaad(o) => step_time::wubu_gaad(o, false),
        BenchCmd::WubuGaadBat(o) => step_time::wubu_gaad(o, true),
        BenchCmd::LatentAction { opts, full } => step_time::latent_action(opts, *full),
        BenchCmd::LatentActionLearning(o) => learning::latent_action(o),
        BenchCmd::VqGanLearning(o) => learning::vq_gan(o),
        BenchCmd::WubuGaadLearning { opts, out } => learning::wubu_gaad(opts, out),
        BenchCmd::VqGan {
            opts,
            size,
            patch,
            no_critics,
        } => step_time::vq_gan(opts, *size, *patch, *no_critics),
        BenchCmd::DataParallel(o) => dist::data_parallel(o),
        BenchCmd::Importance {
            runs,
            fields,
            rounds,
        } => sweeps::importance(*runs, *fields, *rounds),
        BenchCmd::AshaSweep {
            jobs,
            seed,
            grid,
            steps,
            grace,
            keep,
        } => sweeps::asha(*jobs, *seed, *grid, (*steps, *grace), *keep),
    }
}

/// A shipped preset (built into the binary) with overrides.
/// The context of the `i`-th step of a trainer with `spe` steps an epoch.
fn step_ctx(i: u64, spe: u64) -> workbench::engine::trainer::StepCtx {
    workbench::engine::trainer::StepCtx {
        step: i,
        epoch: i / spe.max(1),
        batch_in_epoch: i % spe.max(1),
        ..Default::default()
    }
}

fn shipped(name: &str, overrides: Vec<(&str, serde_json::Value)>) -> anyhow::Result<AnyPreset> {
    let text = preset::shipped::get(name).with_context(|| format!("no shipped preset `{name}`"))?;
    let (p, _) = preset::parse_str(text, name)?;
    p.with_overrides(overrides)
        .map_err(|e| anyhow::anyhow!("{name}: {e:?}"))
}

pub(crate) fn peak_rss_mib() -> f64 {
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

pub(crate) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => 0.5 * (v[n / 2 - 1] + v[n / 2]),
    }
}

/// The `q` quantile (nearest rank).
pub(crate) fn percentile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

/// One frame's input: a 1400x900 window, nothing else.
pub(crate) fn screen_input() -> egui::RawInput {
    egui::RawInput {
        screen_rect: Some(egui::Rect::from_min_size(
            egui::Pos2::ZERO,
            egui::vec2(1400.0, 900.0),
        )),
        ..Default::default()
    }
}

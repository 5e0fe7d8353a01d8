//! `workbench`: with no subcommand, the desktop app (on the embedded default preset unless
//! told otherwise); `train`, `presets`, `runs` and `bench` are headless.

/// `println!` that ends the program quietly when standard output is closed
/// (`workbench presets show wubu_gaad | head`), as command-line tools do, instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout().lock(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

mod bench;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};

use workbench::core::preset::{self, schema, Family, ValidatedPreset};
use workbench::core::protocol::{Event, Level, Outcome};
use workbench::core::rundir::{list_runs, RunDir};
use workbench::core::timefmt::human_duration;
use workbench::engine::worker::{self, RunRequest};
use workbench::engine::{export, EngineError};

/// The embedded default preset: WGAN-GP on the synthetic sprites at 32x32, a few CPU minutes.
pub const DEFAULT_PRESET: &str = include_str!("../presets/wgan_gp_sprites32.ron");

#[derive(Parser, Debug)]
#[command(
    name = "workbench",
    version,
    about = "Generative Workbench: train and watch generative models"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Where runs are written and listed [default: ~/.local/share/workbench/runs, or under
    /// $XDG_DATA_HOME].
    #[arg(long, global = true)]
    runs_dir: Option<PathBuf>,
    #[command(flatten)]
    app: AppArgs,
}

/// Options of the desktop app (no subcommand).
#[derive(clap::Args, Debug, Default)]
struct AppArgs {
    /// Open this preset instead of the embedded default.
    #[arg(long)]
    preset: Option<PathBuf>,
    /// Start training the preset at launch.
    #[arg(long)]
    start: bool,
    /// Open and follow a run folder (repeatable).
    #[arg(long = "open", value_name = "RUN")]
    open: Vec<PathBuf>,
    /// The tab to show first: presets, phases, dashboard, samples, gaad, controller, runs, actions
    /// (default: the tab the app was closed on).
    #[arg(long)]
    tab: Option<String>,
    /// Close the app after this many seconds (scripted checks).
    #[arg(long, value_name = "SECONDS")]
    quit_after: Option<f64>,
    /// With --quit-after: screenshot every tab into this folder before closing.
    #[arg(long, value_name = "DIR")]
    screenshot_dir: Option<PathBuf>,
    /// Stop a run started by --start after this many steps.
    #[arg(long)]
    steps: Option<u64>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Train a preset headless.
    Train(TrainArgs),
    /// Validate and describe presets.
    #[command(subcommand)]
    Presets(PresetsCmd),
    /// List and export runs.
    #[command(subcommand)]
    Runs(RunsCmd),
    /// Benchmarks (steps per second, peak memory, learning checks).
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// GAAD regions of a frame: print them, or draw them numbered over an image.
    Gaad(GaadArgs),
    /// Latent data for the latent action model: manifests and latents made from video.
    #[command(subcommand)]
    Data(DataCmd),
    /// Sweeps: a base preset and the runs a grid or a seeded random search makes of it.
    #[command(subcommand)]
    Sweep(SweepCmd),
    /// The local run queue (`RUNS_DIR/queue.json`): `queue run` trains its jobs one after
    /// another and keeps going when one fails; the file is the queue, so it outlives the app.
    #[command(subcommand)]
    Queue(QueueCmd),
}

#[derive(Subcommand, Debug)]
enum QueueCmd {
    /// Add a job: `workbench train`'s arguments after `--`
    /// (`queue add -- --preset wgan_gp_small --steps 500`), checked before it is queued.
    Add {
        /// Submit it to SLURM with this cluster profile (a RON file) instead of the local queue.
        #[arg(long, value_name = "PROFILE")]
        slurm: Option<PathBuf>,
        #[arg(last = true, required = true)]
        args: Vec<String>,
    },
    /// The jobs: state, exit code and run directory.
    List,
    /// Cancel a pending job, or stop a running one.
    Cancel { id: u64 },
    /// Move a pending job to a place among the pending ones (0 = next).
    Move { id: u64, to: usize },
    /// Train the pending jobs, `--jobs` at a time (1), until none is left (one runner per
    /// queue); a paused queue waits.
    Run {
        #[arg(long, default_value_t = 1)]
        jobs: usize,
    },
    /// Start no new job until `resume` (running ones go on).
    Pause,
    /// Start jobs again.
    Resume,
}

/// `train`'s arguments alone, to check a queued job's before it is queued.
#[derive(Parser, Debug)]
#[command(name = "train")]
struct TrainOnly {
    #[command(flatten)]
    train: TrainArgs,
}

#[derive(Subcommand, Debug)]
enum SweepCmd {
    /// Show the runs a sweep file makes, each validated, without starting any.
    Plan { file: PathBuf },
    /// Write each run's preset to `RUNS_DIR/sweeps/NAME/` and add the runs to the local queue
    /// (`workbench queue run` trains them), or submit them to SLURM as one job array.
    Submit {
        file: PathBuf,
        /// Submit to SLURM with this cluster profile (a RON file): one job array.
        #[arg(long, value_name = "PROFILE")]
        slurm: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum DataCmd {
    /// Split a folder of `.h5` latent files by file into train / validation / test and write
    /// the seed's manifest JSON (default DIR/manifest.json).
    Manifest {
        dir: PathBuf,
        #[arg(long)]
        output: Option<PathBuf>,
        #[arg(long, default_value_t = 0.8)]
        train_ratio: f64,
        #[arg(long, default_value_t = 0.1)]
        val_ratio: f64,
        #[arg(long, default_value_t = 0.1)]
        test_ratio: f64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Decode videos into the latent layout (`embeddings [N, 3, 1, H, W]`, pixels in [-1, 1]),
    /// one `.h5` per video, so the latent action model trains without a video VAE.
    VideoToH5 {
        #[arg(required = true)]
        videos: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        /// Frame size HxW.
        #[arg(long, default_value = "64x64")]
        size: String,
        /// Keep about this many frames per second (default: every frame).
        #[arg(long)]
        fps: Option<f64>,
        /// Cut each video into files of this many frames (`<name>_000.h5`, ...), so that one
        /// long video can be split by file into train, validation and test.
        #[arg(long, value_name = "FRAMES")]
        split_every: Option<usize>,
    },
}

#[derive(clap::Args, Debug, Default)]
struct TrainArgs {
    /// The preset file (default: the embedded default; with --resume: the run's own preset).
    #[arg(long)]
    preset: Option<PathBuf>,
    /// Stop after this many steps in total.
    #[arg(long)]
    steps: Option<u64>,
    /// cpu, cuda or cuda:N (default: the preset's, normally auto).
    #[arg(long)]
    device: Option<String>,
    /// Train on this data instead of the preset's: an image folder (WGAN-GP), a video (WuBu-GAAD), a folder of .h5 latents (latent action), NIfTI volumes or a video (VQ-GAN).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Override a preset field: --set train.lr_g=5e-5 (repeatable).
    #[arg(long = "set", value_name = "FIELD.PATH=VALUE")]
    set: Vec<String>,
    /// Resume a run (its latest checkpoint) or a given checkpoint folder.
    #[arg(long, value_name = "RUN_OR_CHECKPOINT")]
    resume: Option<PathBuf>,
    /// New generator learning rate (applied after loading a checkpoint).
    #[arg(long)]
    lr_g: Option<f64>,
    /// New critic learning rate (applied after loading a checkpoint).
    #[arg(long)]
    lr_d: Option<f64>,
}

#[derive(Subcommand, Debug)]
enum PresetsCmd {
    /// Load and validate preset files; every problem is listed.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Every field of a family's preset with its default, range and meaning.
    Show { family: String },
}

#[derive(Subcommand, Debug)]
enum RunsCmd {
    /// List the runs in a folder with their status.
    List { dir: Option<PathBuf> },
    /// Export a run's scalars as CSV or TensorBoard event files.
    Export {
        run: PathBuf,
        #[arg(long, conflicts_with = "tensorboard")]
        csv: Option<PathBuf>,
        #[arg(long)]
        tensorboard: Option<PathBuf>,
    },
}

/// A failure with its exit code: 2 for bad input, 1 for a failed run.
#[derive(Debug)]
struct Failure {
    code: u8,
    error: anyhow::Error,
}

fn bad_input(e: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: 2,
        error: e.into(),
    }
}

fn app(args: AppArgs, runs_dir: &Path, explicit_runs_dir: bool) -> Result<(), Failure> {
    let tab = workbench::gui::Tab::parse(args.tab.as_deref().unwrap_or("presets"))
        .map_err(|e| bad_input(anyhow::anyhow!(e)))?;
    let preset = match &args.preset {
        Some(path) => {
            let (text, origin) = preset_text(path)?;
            let (p, _) =
                preset::parse_str(&text, &origin.display().to_string()).map_err(bad_input)?;
            Some((p, Some(origin)))
        }
        None => None,
    };
    if let Some(q) = args.quit_after.filter(|q| !(q.is_finite() && *q >= 0.0)) {
        return Err(bad_input(anyhow::anyhow!(
            "--quit-after {q}: a number of seconds >= 0"
        )));
    }
    let opts = workbench::gui::LaunchOptions {
        runs_dir: runs_dir.to_path_buf(),
        user_presets_dir: workbench::gui::user_presets_dir(),
        app_log: workbench::gui::app_log_path(),
        remember: true,
        explicit_tab: args.tab.is_some(),
        explicit_runs_dir,
        preset,
        start: args.start,
        open: args.open,
        tab,
        quit_after: args.quit_after.map(Duration::from_secs_f64),
        screenshot_dir: args.screenshot_dir,
        step_limit: args.steps,
    };
    workbench::gui::run(opts).map_err(|e| {
        let no_display =
            std::env::var_os("DISPLAY").is_none() && std::env::var_os("WAYLAND_DISPLAY").is_none();
        let hint = if no_display {
            "\nno display (DISPLAY and WAYLAND_DISPLAY are unset): run under a desktop or Xvfb, \
             or train headless with `workbench train`"
        } else {
            ""
        };
        Failure {
            code: 1,
            error: anyhow::anyhow!("cannot open the app window: {e}{hint}"),
        }
    })
}

#[derive(clap::Args, Debug)]
struct GaadArgs {
    /// Frame width in pixels (default: the image's).
    #[arg(long)]
    width: Option<u32>,
    /// Frame height in pixels (default: the image's).
    #[arg(long)]
    height: Option<u32>,
    /// Number of regions.
    #[arg(long)]
    regions: usize,
    /// subdivide, spiral or hybrid.
    #[arg(long, default_value = "hybrid")]
    kind: String,
    /// Smallest side a subdivision box may have, in pixels.
    #[arg(long, default_value_t = 4.0)]
    min_size: f64,
    /// Print a JSON array of [x1, y1, x2, y2].
    #[arg(long)]
    json: bool,
    /// Draw the regions over this image (PNG or JPEG)...
    #[arg(long, requires = "out")]
    image: Option<PathBuf>,
    /// ...into this PNG.
    #[arg(long, requires = "image")]
    out: Option<PathBuf>,
}

fn data(cmd: DataCmd) -> Result<(), Failure> {
    use workbench::engine::data::latents;
    match cmd {
        DataCmd::Manifest {
            dir,
            output,
            train_ratio,
            val_ratio,
            test_ratio,
            seed,
        } => {
            let ratios = latents::Ratios {
                train: train_ratio,
                validation: val_ratio,
                test: test_ratio,
            };
            let (m, skipped) = latents::make_manifest(&dir, ratios, seed)
                .map_err(|e| bad_input(anyhow::anyhow!(e)))?;
            for s in &skipped {
                eprintln!("skipped {s}");
            }
            let out = output.unwrap_or_else(|| dir.join("manifest.json"));
            latents::write_manifest(&out, &m).map_err(|e| Failure {
                code: 1,
                error: anyhow::anyhow!(e),
            })?;
            for (split, st) in &m.statistics {
                out!(
                    "{split:>10}: {} files, {} chunks, {} latent frames",
                    st.num_files,
                    st.num_chunks,
                    st.num_latent_frames
                );
            }
            eprintln!("wrote {}", out.display());
            Ok(())
        }
        DataCmd::VideoToH5 {
            videos,
            out,
            size,
            fps,
            split_every,
        } => {
            let parsed = size
                .split_once(['x', 'X'])
                .and_then(|(h, w)| {
                    Some((h.trim().parse::<u32>().ok()?, w.trim().parse::<u32>().ok()?))
                })
                .filter(|(h, w)| (1..=4096).contains(h) && (1..=4096).contains(w));
            let Some((h, w)) = parsed else {
                return Err(bad_input(anyhow::anyhow!(
                    "--size {size}: expected HxW, e.g. 64x64"
                )));
            };
            if fps.is_some_and(|f| !(f.is_finite() && f > 0.0)) {
                return Err(bad_input(anyhow::anyhow!("--fps: a positive number")));
            }
            if split_every.is_some_and(|n| n < 2) {
                return Err(bad_input(anyhow::anyhow!(
                    "--split-every: at least 2 frames"
                )));
            }
            for v in &videos {
                let files = latents::video_to_h5(v, &out, h, w, fps, split_every)
                    .map_err(|e| bad_input(anyhow::anyhow!(e)))?;
                for (path, n) in files {
                    out!("{}: {n} frames of 3x{h}x{w}", path.display());
                }
            }
            Ok(())
        }
    }
}

fn gaad(args: &GaadArgs) -> Result<(), Failure> {
    use workbench::core::gaad;
    let kind = gaad::Kind::parse(&args.kind).map_err(bad_input)?;
    let image = match &args.image {
        Some(path) => Some(
            image::open(path)
                .with_context(|| format!("{}: cannot read the image", path.display()))
                .map_err(bad_input)?
                .to_rgba8(),
        ),
        None => None,
    };
    let width = args.width.or(image.as_ref().map(image::RgbaImage::width));
    let height = args.height.or(image.as_ref().map(image::RgbaImage::height));
    let (Some(width), Some(height)) = (width, height) else {
        return Err(bad_input(anyhow::anyhow!(
            "--width and --height are needed without --image"
        )));
    };
    if let Some(img) = &image {
        if (img.width(), img.height()) != (width, height) {
            return Err(bad_input(anyhow::anyhow!(
                "--width/--height {width}x{height} differ from the image's {}x{}",
                img.width(),
                img.height()
            )));
        }
    }
    let boxes =
        gaad::decompose(kind, width, height, args.regions, args.min_size).map_err(bad_input)?;
    if args.json {
        out!(
            "{}",
            serde_json::to_string(&boxes).map_err(|e| bad_input(anyhow::anyhow!(e)))?
        );
    } else {
        for (i, b) in boxes.iter().enumerate() {
            out!(
                "{i:>3}: [{:.2}, {:.2}, {:.2}, {:.2}]",
                b[0],
                b[1],
                b[2],
                b[3]
            );
        }
    }
    if let (Some(mut img), Some(out)) = (image, &args.out) {
        let (w, h) = (img.width(), img.height());
        let mut canvas = workbench::core::draw::Canvas {
            width: w,
            height: h,
            rgba: &mut img,
        };
        workbench::core::draw::regions(&mut canvas, &boxes);
        img.save(out)
            .with_context(|| format!("{}: cannot write the PNG", out.display()))
            .map_err(|e| Failure { code: 1, error: e })?;
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let explicit_runs_dir = cli.runs_dir.is_some();
    let runs_dir = cli
        .runs_dir
        .unwrap_or_else(workbench::core::rundir::default_runs_dir);
    let result = match cli.command {
        Some(Cmd::Train(args)) => match train(&args, &runs_dir) {
            Ok(code) => return ExitCode::from(code),
            Err(f) => Err(f),
        },
        None => app(cli.app, &runs_dir, explicit_runs_dir),
        Some(Cmd::Presets(cmd)) => presets(cmd),
        Some(Cmd::Runs(cmd)) => runs(cmd, &runs_dir),
        Some(Cmd::Bench(args)) => bench::run(&args).map_err(|e| Failure { code: 1, error: e }),
        Some(Cmd::Gaad(args)) => gaad(&args),
        Some(Cmd::Data(cmd)) => data(cmd),
        Some(Cmd::Sweep(cmd)) => sweep(cmd, &runs_dir),
        Some(Cmd::Queue(cmd)) => queue(cmd, &runs_dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {:#}", f.error);
            ExitCode::from(f.code)
        }
    }
}

/// The text of `--preset`: the file, or, when no such file exists, the shipped preset of that
/// name (`wgan_gp_small`, `presets/wgan_gp_small.ron`), which is built into the binary, so the
/// README's commands work from any folder. Returns the text and where it came from.
fn preset_text(path: &Path) -> Result<(String, PathBuf), Failure> {
    if !path.exists() {
        let in_presets = path
            .parent()
            .is_none_or(|p| p.as_os_str().is_empty() || p.ends_with("presets"));
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        if let Some(text) = preset::shipped::get(name).filter(|_| in_presets) {
            return Ok((
                text.to_string(),
                PathBuf::from(format!("built in: {name}.ron")),
            ));
        }
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))
        .map_err(bad_input)?;
    Ok((text, path.to_path_buf()))
}

fn now_secs() -> u64 {
    workbench::core::timefmt::unix_now().max(0.0) as u64
}

/// The local queue's commands.
fn queue(cmd: QueueCmd, runs_dir: &Path) -> Result<(), Failure> {
    use workbench::core::queue;
    let path = runs_dir.join("queue.json");
    let failed = |e: queue::QueueError| Failure {
        code: 1,
        error: e.into(),
    };
    match cmd {
        QueueCmd::Add { args, slurm } => {
            let parsed = TrainOnly::try_parse_from(
                std::iter::once("train".to_string()).chain(args.iter().cloned()),
            )
            .map_err(|e| {
                let text = e.to_string();
                let first = text.lines().next().unwrap_or_default();
                bad_input(anyhow::anyhow!(
                    "train arguments: {}",
                    first.strip_prefix("error: ").unwrap_or(first)
                ))
            })?;
            if parsed.train.resume.is_none() {
                load_preset(&parsed.train)?;
            }
            let name = parsed
                .train
                .preset
                .as_ref()
                .and_then(|p| p.file_stem())
                .map_or("workbench".to_string(), |s| {
                    s.to_string_lossy().into_owned()
                });
            let added = add_tasks(
                &name,
                vec![absolute_args(&args)],
                slurm.as_deref(),
                runs_dir,
            )?;
            let id = added.ids.first().copied().unwrap_or_default();
            match added.slurm_job {
                Some(job) => out!(
                    "submitted SLURM job {job} as queue job {id} in {}",
                    path.display()
                ),
                None => out!("queued job {id} in {}", path.display()),
            }
        }
        QueueCmd::List => {
            let q = queue::read(&path).map_err(failed)?;
            if q.jobs.iter().any(|j| j.slurm.is_some()) {
                workbench::core::slurm::refresh(&path, runs_dir, now_secs()).map_err(|e| {
                    Failure {
                        code: 1,
                        error: e.into(),
                    }
                })?;
            }
            let q = queue::read(&path).map_err(failed)?;
            for j in &q.jobs {
                out!(
                    "{:>4}  {:<11}  {:>4}  {:<14}  {}  {}",
                    j.id,
                    j.state.name(),
                    j.exit_code.map_or(String::new(), |c| c.to_string()),
                    j.slurm
                        .as_ref()
                        .map_or("local".to_string(), |r| format!("slurm:{}", r.key())),
                    j.args.join(" "),
                    j.run_dir
                        .as_ref()
                        .map_or(String::new(), |d| d.display().to_string())
                );
                if let Some(note) = &j.note {
                    out!("      {note}");
                }
            }
        }
        QueueCmd::Cancel { id } => {
            workbench::core::jobs::cancel_job(&path, id, now_secs()).map_err(job_failed)?;
            out!("cancelled job {id}");
        }
        QueueCmd::Move { id, to } => {
            queue::update(&path, |q| q.move_pending(id, to))
                .map_err(failed)?
                .map_err(failed)?;
        }
        QueueCmd::Run { jobs } => queue_run(&path, runs_dir, jobs)?,
        QueueCmd::Pause => {
            queue::update(&path, |q| q.paused = true).map_err(failed)?;
            out!("paused: no new job starts until `workbench queue resume`");
        }
        QueueCmd::Resume => {
            queue::update(&path, |q| q.paused = false).map_err(failed)?;
            out!("resumed");
        }
    }
    Ok(())
}

/// `train` arguments with the paths they name made absolute (`--preset`, `--data`,
/// `--resume`), so a job started elsewhere (a runner in another folder, a node of a cluster)
/// finds them; a shipped preset's name, which is no path here, stays as it is.
fn absolute_args(args: &[String]) -> Vec<String> {
    use workbench::core::rundir::absolute;
    let fix = |v: &str| {
        let p = Path::new(v);
        if p.exists() {
            absolute(p).display().to_string()
        } else {
            v.to_string()
        }
    };
    let mut out = Vec::with_capacity(args.len());
    let mut path_next = false;
    for a in args {
        if std::mem::take(&mut path_next) {
            out.push(fix(a));
            continue;
        }
        match a.split_once('=') {
            Some((flag @ ("--preset" | "--data" | "--resume"), value)) => {
                out.push(format!("{flag}={}", fix(value)));
            }
            _ => {
                path_next = matches!(a.as_str(), "--preset" | "--data" | "--resume");
                out.push(a.clone());
            }
        }
    }
    out
}

/// A failed queue edit or SLURM command; a bad profile is the user's to fix (exit 2).
fn job_failed(e: workbench::core::jobs::JobError) -> Failure {
    use workbench::core::{jobs::JobError, slurm::SlurmError};
    match e {
        JobError::Slurm(SlurmError::Profile { .. } | SlurmError::BadName { .. }) => bad_input(e),
        other => Failure {
            code: 1,
            error: other.into(),
        },
    }
}

/// Adds `tasks` to the local queue, or with a SLURM profile submits them (several: one job
/// array) to run this program.
fn add_tasks(
    name: &str,
    tasks: Vec<Vec<String>>,
    slurm: Option<&Path>,
    runs_dir: &Path,
) -> Result<workbench::core::jobs::Added, Failure> {
    use workbench::core::jobs::{self, Target};
    let exe = std::env::current_exe()
        .context("cannot find this program's path")
        .map_err(bad_input)?;
    let target = match slurm {
        Some(profile) => Target::Slurm { profile, exe: &exe },
        None => Target::Local,
    };
    jobs::add_tasks(runs_dir, name, tasks, target, now_secs()).map_err(job_failed)
}

/// Trains the queue's pending jobs, `jobs` at a time, each as its own `workbench train`
/// process (`core::jobs::run_queue`).
fn queue_run(path: &Path, runs_dir: &Path, jobs: usize) -> Result<(), Failure> {
    use workbench::core::jobs::{self, JobError};
    let exe = std::env::current_exe()
        .context("cannot find this program to start the jobs")
        .map_err(bad_input)?;
    jobs::run_queue(path, runs_dir, &exe, jobs, &say_line).map_err(|e| match e {
        JobError::RunnerActive(_) | JobError::Io { .. } => bad_input(e),
        other => Failure {
            code: 1,
            error: other.into(),
        },
    })
}

/// `workbench sweep plan FILE`: the runs a sweep makes, as a table; `submit`: the same, queued.
fn sweep(cmd: SweepCmd, runs_dir: &Path) -> Result<(), Failure> {
    let (file, submit) = match cmd {
        SweepCmd::Plan { file } => (file, None),
        SweepCmd::Submit { file, slurm } => (file, Some(slurm)),
    };
    let origin = file.display().to_string();
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("{origin}: cannot read"))
        .map_err(bad_input)?;
    let s = workbench::core::sweep::Sweep::parse(&text, &origin).map_err(bad_input)?;
    // A bare name is a shipped preset; anything else is a file beside the sweep.
    let base_path = if s.base.contains('/') || s.base.ends_with(".ron") {
        file.parent().unwrap_or(Path::new("")).join(&s.base)
    } else {
        PathBuf::from(&s.base)
    };
    let (base_text, base_origin) = preset_text(&base_path)?;
    let (base, _) =
        preset::parse_str(&base_text, &base_origin.display().to_string()).map_err(bad_input)?;
    let runs = s
        .plan(&base)
        .map_err(|e| bad_input(anyhow::anyhow!("{origin}: {e}")))?;
    out!(
        "sweep {}: {} runs of {}",
        s.name,
        runs.len(),
        base_origin.display()
    );
    let fields = s.fields();
    let mut rows = vec![std::iter::once("run".to_string())
        .chain(fields.iter().cloned())
        .collect::<Vec<_>>()];
    for r in &runs {
        rows.push(
            std::iter::once(r.name.clone())
                .chain(
                    r.values
                        .iter()
                        .map(|(_, v)| workbench::core::sweep::short(v)),
                )
                .collect(),
        );
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out!("{}", line.join("  ").trim_end());
    }
    if let Some(slurm) = submit {
        let tasks = workbench::core::sweep::write_runs(runs_dir, &s.name, &origin, &runs)
            .map_err(bad_input)?;
        let added = add_tasks(&s.name, tasks, slurm.as_deref(), runs_dir)?;
        let (first, last) = (
            added.ids.first().copied().unwrap_or_default(),
            added.ids.last().copied().unwrap_or_default(),
        );
        let queue_path = runs_dir.join("queue.json");
        match added.slurm_job {
            Some(job) => out!(
                "submitted SLURM job array {job} (tasks 0..={}) as queue jobs {first}..={last} in {}; `workbench queue list` follows them",
                added.ids.len().saturating_sub(1),
                queue_path.display()
            ),
            None => out!(
                "queued jobs {first}..={last} in {} (presets in {}); `workbench queue run` trains them",
                queue_path.display(),
                runs_dir.join("sweeps").join(&s.name).display()
            ),
        }
    }
    Ok(())
}

/// Loads a preset file (or the embedded default) and applies `--data` and `--set`.
fn load_preset(args: &TrainArgs) -> Result<Option<(ValidatedPreset, Vec<String>)>, Failure> {
    let (preset, notes, origin) = match &args.preset {
        Some(path) => {
            let (text, origin) = preset_text(path)?;
            let origin = origin.display().to_string();
            let (p, notes) = preset::parse_str(&text, &origin).map_err(bad_input)?;
            (p, notes, origin)
        }
        None if args.resume.is_some() => {
            if args.data.is_some() || !args.set.is_empty() {
                return Err(bad_input(anyhow::anyhow!("--data and --set with --resume need --preset (the run's preset is used as launched)")));
            }
            return Ok(None);
        }
        None => {
            let (p, notes) = preset::parse_str(DEFAULT_PRESET, "<embedded default preset>")
                .map_err(bad_input)?;
            (p, notes, "<embedded default preset>".to_string())
        }
    };
    let mut pairs: Vec<(String, serde_json::Value)> = Vec::new();
    if let Some(data) = &args.data {
        let path = data.display().to_string();
        pairs.extend(
            preset
                .front()
                .data_override(&path)
                .into_iter()
                .map(|(k, v)| (k.to_string(), v)),
        );
    }
    for item in &args.set {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| bad_input(anyhow::anyhow!("--set {item}: expected FIELD.PATH=VALUE")))?;
        pairs.push((k.trim().to_string(), schema::parse_cli_value(v)));
    }
    let preset = preset
        .with_overrides(pairs.iter().map(|(k, v)| (k.as_str(), v.clone())))
        .map_err(|problems| {
            bad_input(preset::PresetError::Invalid {
                file: format!("{origin} with --set/--data"),
                problems,
            })
        })?;
    let validated = preset::validate(preset).map_err(|problems| {
        bad_input(preset::PresetError::Invalid {
            file: origin,
            problems,
        })
    })?;
    Ok(Some((validated, notes)))
}

/// `workbench train`: alone, or as one rank of a data-parallel run. Returns the exit status:
/// 0 when the run finished or was stopped by hand, 128 + the signal's number when a stop
/// signal ended it (with a checkpoint of its last step), so a launcher tells the two apart.
fn train(args: &TrainArgs, runs_dir: &Path) -> Result<u8, Failure> {
    use workbench::core::protocol::Command;
    use workbench::core::scheduler::{self, Record};
    use workbench::core::signals::{self, StopSignal};
    use workbench::engine::dist::{self, DistError, RankEnv};
    // Stop signals from the start: before the run exists they end the process at once (there
    // is nothing to save); then the first stops the run at its next step with a checkpoint,
    // and a second SIGINT or SIGTERM ends the process at once.
    let worker: std::sync::Arc<std::sync::Mutex<Option<crossbeam_channel::Sender<Command>>>> =
        std::sync::Arc::default();
    let to_worker = worker.clone();
    signals::watch(move |signal, before| {
        let sender = to_worker.lock().ok().and_then(|w| w.clone());
        let again = before > 0 && signal != StopSignal::Usr1;
        match sender {
            Some(tx) if !again && tx.try_send(Command::StopBySignal(signal.name().into())).is_ok() => {
                say_line(&format!(
                    "{}: stopping at the end of this step with a checkpoint ({} again stops at once)",
                    signal.name(),
                    if signal == StopSignal::Int { "Ctrl-C" } else { "the signal" }
                ));
            }
            _ => {
                say_line(&format!("{}: stopped at once", signal.name()));
                // `_exit`: no static destructors run under a training thread still in libtorch
                // (they crashed the process instead of ending it).
                signal_hook::low_level::exit(i32::from(signal.exit_code()));
            }
        }
    })
    .map_err(|e| bad_input(anyhow::anyhow!("cannot watch for stop signals: {e}")))?;

    let loaded = load_preset(args)?;
    let (preset, notes) = match loaded {
        Some((p, n)) => (Some(p), n),
        None => (None, Vec::new()),
    };
    for n in &notes {
        eprintln!("note: {n}");
    }
    let detected = RankEnv::from_env().map_err(bad_input)?;
    if let Some(note) = &detected.note {
        eprintln!("note: {note}");
    }
    // A job started again (a SLURM requeue, torchrun's restart, a queue job run again)
    // continues the folder it started before.
    let record = Record::from_env();
    let mut resume = args.resume.clone();
    if resume.is_none() {
        if let Some(r) = &record {
            if let Some(dir) = scheduler::find_run(runs_dir, &r.launch_key()) {
                eprintln!(
                    "note: {} was started by this same job ({}); it goes on there from its newest checkpoint",
                    dir.display(),
                    r.launch_key()
                );
                resume = Some(dir);
            }
        }
    }
    let req = RunRequest {
        preset,
        runs_dir: runs_dir.to_path_buf(),
        resume,
        step_limit: args.steps,
        device: args.device.clone(),
        lr_g: args.lr_g,
        lr_d: args.lr_d,
        notes,
    };
    let engine_failure = |e: EngineError| match e {
        EngineError::BadInput(_) | EngineError::Dist(DistError::Env { .. }) => bad_input(e),
        other => Failure {
            code: 1,
            error: other.into(),
        },
    };
    // A data-parallel rank joins its group first, over the backend its device needs.
    let rank = match &detected.rank {
        Some(env) => {
            dist::set_rank_env(env);
            let device = worker::device_for(&req).map_err(engine_failure)?;
            dist::join(env, device).map_err(|e| engine_failure(e.into()))?;
            Some(env.rank)
        }
        None => None,
    };
    let plan = worker::prepare_as_rank(req).map_err(engine_failure)?;
    let handle = worker::spawn(plan, None).map_err(|e| Failure {
        code: 1,
        error: e.into(),
    })?;
    if let Ok(mut w) = worker.lock() {
        *w = Some(handle.commands());
    }
    let run_dir = handle.run_dir().to_path_buf();
    // The other data-parallel ranks keep quiet: rank 0 speaks for the run.
    let follower = rank.is_some_and(|r| r > 0);
    if !follower {
        if let Some(r) = &record {
            if let Err(e) = r.write(&run_dir) {
                eprintln!("note: cannot record the scheduler: {e}");
            }
            if let Record::Local { queue, job, .. } = r {
                let dir = run_dir.clone();
                if let Err(e) = workbench::core::queue::update_job(queue, *job, |j| {
                    j.run_dir = Some(dir);
                }) {
                    eprintln!("note: cannot record the run folder in the queue: {e}");
                }
            }
        }
    }
    if follower {
        eprintln!("rank log: {}", run_dir.display());
    } else {
        eprintln!("run directory: {}", run_dir.display());
    }
    let mut progress = Progress::new(std::io::stderr().is_terminal());
    progress.silent = follower;
    let end = loop {
        match handle.events().recv_timeout(Duration::from_millis(500)) {
            Ok(event) => {
                if let Some(end) = progress.on_event(&event) {
                    break end;
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => progress.redraw(),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                break Err("the training thread ended without a final event".to_string())
            }
        }
    };
    handle.join();
    progress.finish();
    match end {
        Ok((outcome, signal)) => {
            // The ranks leave together: a launcher that ends the others when one exits
            // (`srun --kill-on-bad-exit`) then takes nothing unfinished.
            let _ = dist::all_here();
            let stopped_by = signal.as_deref().and_then(StopSignal::from_name);
            let what = match (outcome, &signal) {
                (_, Some(s)) => format!(
                    "stopped by {s} at step {} with its checkpoint",
                    progress.step
                ),
                (Outcome::Completed, None) => format!("finished after {} steps", progress.step),
                (Outcome::Stopped, None) => format!("stopped after {} steps", progress.step),
            };
            if !follower {
                out!("{what}: {}", run_dir.display());
            }
            Ok(stopped_by.map_or(0, StopSignal::exit_code))
        }
        Err(message) => Err(Failure {
            code: 1,
            error: anyhow::anyhow!(
                "run failed: {message}\nrun directory: {}",
                run_dir.display()
            ),
        }),
    }
}

/// One line on standard error, ignoring a closed stream (a job whose reader went away keeps
/// training rather than failing on its next progress line).
fn say_line(text: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// Progress display: a bar on a terminal, plain lines otherwise.
struct Progress {
    tty: bool,
    step: u64,
    total: Option<u64>,
    started: Instant,
    first_step: u64,
    last_values: Vec<(String, f64)>,
    last_plain: Instant,
    phase: String,
    /// The family's main metrics, as the run declared them: what the line shows.
    main: Vec<String>,
    /// Prints nothing (a data-parallel rank other than 0).
    silent: bool,
}

impl Progress {
    fn new(tty: bool) -> Self {
        Self {
            tty,
            step: 0,
            total: None,
            started: Instant::now(),
            first_step: 0,
            last_values: Vec::new(),
            main: Vec::new(),
            last_plain: Instant::now(),
            phase: String::new(),
            silent: false,
        }
    }

    fn line(&self) -> String {
        let rate =
            (self.step - self.first_step) as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        // The declared main metrics, in their declared order.
        let losses: Vec<String> = self
            .main
            .iter()
            .filter_map(|k| {
                let (_, v) = self.last_values.iter().find(|(n, _)| n == k)?;
                Some(format!("{k} {v:.4}"))
            })
            .collect();
        match self.total {
            Some(total) if total > 0 => {
                let frac = (self.step as f64 / total as f64).clamp(0.0, 1.0);
                let width = 24;
                let filled = (frac * width as f64) as usize;
                let eta = if rate > 0.0 {
                    human_duration((total.saturating_sub(self.step)) as f64 / rate)
                } else {
                    "?".into()
                };
                format!(
                    "[{}{}] {}/{} {:.1} it/s ETA {} {} {}",
                    "#".repeat(filled),
                    ".".repeat(width - filled),
                    self.step,
                    total,
                    rate,
                    eta,
                    self.phase,
                    losses.join(" ")
                )
            }
            _ => format!(
                "step {} {:.1} it/s {} {}",
                self.step,
                rate,
                self.phase,
                losses.join(" ")
            ),
        }
    }

    fn redraw(&mut self) {
        if self.silent {
            return;
        }
        use std::io::Write as _;
        if self.tty {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K{}", self.line());
        } else if self.last_plain.elapsed() >= Duration::from_secs(5) {
            say_line(&self.line());
            self.last_plain = Instant::now();
        }
    }

    fn say(&self, text: &str) {
        if self.silent {
            return;
        }
        if self.tty {
            say_line(&format!("\r\x1b[2K{text}"));
        } else {
            say_line(text);
        }
    }

    fn on_event(&mut self, event: &Event) -> Option<Result<(Outcome, Option<String>), String>> {
        match event {
            Event::RunStarted {
                device,
                total_steps,
                resumed_from,
                metrics,
                ..
            } => {
                self.main = metrics
                    .iter()
                    .filter(|m| m.main)
                    .map(|m| m.name.clone())
                    .collect();
                self.total = *total_steps;
                self.first_step = resumed_from.unwrap_or(0);
                self.step = self.first_step;
                self.started = Instant::now();
                self.say(&format!(
                    "device: {device}{}",
                    resumed_from
                        .map(|s| format!(", resumed from step {s}"))
                        .unwrap_or_default()
                ));
            }
            Event::Scalars { rows } => {
                if let Some(r) = rows.last() {
                    self.step = r.step;
                    for (k, v) in &r.values {
                        if let Some(slot) = self.last_values.iter_mut().find(|(n, _)| n == k) {
                            slot.1 = *v;
                        } else {
                            self.last_values.push((k.clone(), *v));
                        }
                    }
                }
                self.redraw();
            }
            Event::PhaseStarted {
                index,
                name,
                length,
                loaded_checkpoint,
                ..
            } => {
                self.phase = format!("phase {name}");
                self.say(&format!(
                    "phase {index} `{name}` ({length}){}",
                    loaded_checkpoint
                        .as_ref()
                        .map(|c| format!(" from {c}"))
                        .unwrap_or_default()
                ));
            }
            Event::Health {
                step,
                signal,
                message,
                suggestion,
            } => self.say(&format!(
                "health at step {step}: {}: {message}; suggestion: {suggestion}",
                signal.label()
            )),
            // An error's one line comes with the run's end; its detail stays in the run log.
            Event::Log {
                level: Level::Error,
                ..
            } => {}
            Event::Log { level, message, .. } => self.say(&format!(
                "{}{message}",
                if *level == Level::Info {
                    ""
                } else {
                    "warning: "
                }
            )),
            Event::HyperparameterChanged {
                name,
                old,
                new,
                step,
            } => self.say(&format!("step {step}: {name} {old} -> {new}")),
            Event::CheckpointSaved { path, best, .. } if *best => {
                self.say(&format!("best checkpoint: {path}"));
            }
            Event::RunFinished {
                outcome,
                step,
                signal,
            } => {
                self.step = *step;
                return Some(Ok((*outcome, signal.clone())));
            }
            Event::RunFailed { message, .. } => return Some(Err(message.clone())),
            _ => {}
        }
        None
    }

    fn finish(&self) {
        if self.tty && !self.silent {
            say_line(&format!("\r\x1b[2K{}", self.line()));
        }
    }
}

fn presets(cmd: PresetsCmd) -> Result<(), Failure> {
    match cmd {
        PresetsCmd::Validate { files } => {
            let mut failed = 0;
            for f in &files {
                match preset::load_file(f) {
                    Ok((p, notes)) => {
                        out!(
                            "ok: {} ({}, {} phase(s))",
                            f.display(),
                            p.preset().family().name(),
                            p.preset().phases().len()
                        );
                        for n in notes {
                            out!("  migrated: {n}");
                        }
                    }
                    Err(e) => {
                        failed += 1;
                        eprintln!("{e}");
                    }
                }
            }
            if failed > 0 {
                return Err(bad_input(anyhow::anyhow!(
                    "{failed} of {} preset(s) invalid",
                    files.len()
                )));
            }
            Ok(())
        }
        PresetsCmd::Show { family } => {
            let family = Family::parse(&family).map_err(|e| bad_input(anyhow::anyhow!(e)))?;
            let tree = family.default_preset().to_tree();
            out!("{:<34} {:<18} {:<44} doc", "field", "default", "allowed");
            for spec in family.specs() {
                let default = schema::get_path(&tree, spec.path)
                    .map(schema::show_value)
                    .unwrap_or_default();
                let mut flags = Vec::new();
                if spec.phase {
                    flags.push("phase");
                }
                if spec.live {
                    flags.push("live");
                }
                let unit = if spec.unit.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", spec.unit)
                };
                let flags = if flags.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", flags.join(", "))
                };
                out!(
                    "{:<34} {:<18} {:<44} {}{unit}{flags}",
                    spec.path,
                    default,
                    spec.kind.allowed(),
                    spec.doc
                );
            }
            out!("{:<34} {:<18} {:<44} Ordered phases: name, length steps(N)|epochs(N)|minutes(X), overrides {{\"field\": value}}, start_from_best", "phases", "[main: epochs(1000)]", "at least one phase");
            Ok(())
        }
    }
}

fn runs(cmd: RunsCmd, default_dir: &Path) -> Result<(), Failure> {
    match cmd {
        RunsCmd::List { dir } => {
            let dir = dir.unwrap_or_else(|| default_dir.to_path_buf());
            let list = list_runs(&dir).map_err(bad_input)?;
            if list.is_empty() {
                out!("no runs in {}", dir.display());
            }
            for r in list {
                let name = r
                    .dir
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                out!(
                    "{:<12} step {:>8}  {:<8} {:<40} {}{}",
                    r.status.label(),
                    r.last_step,
                    r.family,
                    name,
                    r.device,
                    if r.message.is_empty() {
                        String::new()
                    } else {
                        format!("  ({})", r.message)
                    }
                );
            }
            Ok(())
        }
        RunsCmd::Export {
            run,
            csv,
            tensorboard,
        } => {
            let dir = RunDir::open(&run).map_err(bad_input)?;
            match (csv, tensorboard) {
                (Some(out), None) => {
                    let rows = export::export_csv(&dir, &out).map_err(bad_input)?;
                    out!("wrote {rows} rows to {}", out.display());
                }
                (None, Some(out)) => {
                    let file = export::export_tensorboard(&dir, &out).map_err(bad_input)?;
                    out!("wrote {}", file.display());
                }
                _ => {
                    return Err(bad_input(anyhow::anyhow!(
                        "give --csv FILE or --tensorboard DIR"
                    )))
                }
            }
            Ok(())
        }
    }
}

//! The command line: `workbench` with no subcommand opens the desktop app; `train`, `presets`,
//! `runs`, `gaad`, `data`, `sweep` and `queue` are headless. Each subcommand's arguments are
//! declared here and its work is in the file of its name; benchmarks are their own binary,
//! `workbench-bench`.

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

mod app;
mod branch;
mod data;
mod presets;
mod progress;
mod queue;
mod runs;
mod sweep;
mod train;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use workbench::core::preset;

/// The embedded default preset: WGAN-GP on the synthetic sprites at 32x32, a few CPU minutes.
pub const DEFAULT_PRESET: &str = include_str!("../../presets/wgan_gp_sprites32.ron");

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
    /// Serve the runs folder to an app on another machine over standard input and output
    /// (`ssh HOST workbench serve --stdio`): its runs, their logs from any byte offset, their
    /// files, and commands for them. No port is opened.
    Serve {
        /// Speak the protocol on standard input and output (the only transport).
        #[arg(long, required = true)]
        stdio: bool,
    },
    /// Validate and describe presets.
    #[command(subcommand)]
    Presets(PresetsCmd),
    /// List and export runs.
    #[command(subcommand)]
    Runs(RunsCmd),
    /// GAAD regions of a frame: print them, or draw them numbered over an image.
    Gaad(GaadArgs),
    /// Latent data for the latent action model: manifests and latents made from video.
    #[command(subcommand)]
    Data(DataCmd),
    /// Sweeps: a base preset and the runs a grid or a seeded random search makes of it.
    #[command(subcommand)]
    Sweep(SweepCmd),
    /// Branch a run at one of its checkpoints: a new run folder beside it that records its
    /// parent, the fork step and the changed fields, and starts from that checkpoint (model,
    /// optimisers, random streams, controllers, data position). Trains at once, or goes to the
    /// local queue or SLURM like any job. The parent goes on undisturbed.
    Branch(BranchArgs),
    /// The local run queue (`RUNS_DIR/queue.json`): `queue run` trains its jobs one after
    /// another and keeps going when one fails; the file is the queue, so it outlives the app.
    #[command(subcommand)]
    Queue(QueueCmd),
}

#[derive(clap::Args, Debug)]
struct BranchArgs {
    /// The run folder to branch.
    run: PathBuf,
    /// The step of the checkpoint to start from (default: the run's latest).
    #[arg(long)]
    at: Option<u64>,
    /// Change a field in the branch: --set train.lr_g=5e-5 (repeatable; not fields that change
    /// the model's shape).
    #[arg(long = "set", value_name = "FIELD.PATH=VALUE")]
    set: Vec<String>,
    /// The branch's name (default: the parent's with -at<STEP>).
    #[arg(long)]
    name: Option<String>,
    /// Make the branch and add it to the local queue instead of training it now.
    #[arg(long, conflicts_with = "slurm")]
    queue: bool,
    /// Make the branch and submit it to SLURM with this cluster profile (a RON file).
    #[arg(long, value_name = "PROFILE")]
    slurm: Option<PathBuf>,
    /// Make the branch folder only.
    #[arg(long, conflicts_with_all = ["queue", "slurm"])]
    no_train: bool,
    /// Stop the branch after this many steps in total.
    #[arg(long)]
    steps: Option<u64>,
    /// cpu, cuda or cuda:N (default: the preset's).
    #[arg(long)]
    device: Option<String>,
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
    /// Train a trial the sweep's scheduler stopped to its full budget: marks it promoted (it
    /// reports but is never stopped again) and resumes it from its checkpoint, here or queued.
    Promote {
        /// The trial's run folder.
        run: PathBuf,
        /// Add the resume to the local queue instead of training here.
        #[arg(long)]
        queue: bool,
        /// Submit the resume to SLURM with this cluster profile.
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

#[derive(clap::Args, Debug, Default, Clone)]
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
    /// Train the preset at its tiny test size (the CPU, small shapes, synthetic data of its
    /// kind, two steps a phase): a check that a preset trains, in seconds. --data and --set
    /// apply after it.
    #[arg(long)]
    tiny: bool,
    /// Resume a run (its latest checkpoint) or a given checkpoint folder.
    #[arg(long, value_name = "RUN_OR_CHECKPOINT")]
    resume: Option<PathBuf>,
    /// New generator learning rate (applied after loading a checkpoint).
    #[arg(long)]
    lr_g: Option<f64>,
    /// New critic learning rate (applied after loading a checkpoint).
    #[arg(long)]
    lr_d: Option<f64>,
    /// Per-layer statistics of a module from the first step: `MODULE[:every=K,steps=N]`
    /// (`d.main.0`, a whole network `g`, or `*` for every module; the run's log names its
    /// modules). Repeatable.
    #[arg(long, value_name = "MODULE[:every=K,steps=N]")]
    watch: Vec<workbench::core::protocol::WatchSpec>,
    /// A trial of a sweep with a scheduler: the sweep's `scheduler.json` (written by `sweep
    /// submit`); the run reports there at each validation and stops early when it says so.
    #[arg(long, value_name = "SCHEDULER_JSON")]
    sweep_state: Option<PathBuf>,
    /// A trial of a TPE sweep (with --sweep-state): its values are proposed now, from the
    /// trials reported so far, and its preset written beside the sweep's.
    #[arg(
        long,
        value_name = "NAME",
        requires = "sweep_state",
        conflicts_with = "preset"
    )]
    sweep_trial: Option<String>,
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
    /// Which settings matter: each varying field's share of a metric's variance over the runs
    /// (functional ANOVA on a random forest), with its 10-90 % interval over the trees, and
    /// the strongest pair.
    Importance {
        /// The runs folder (default: --runs-dir).
        dir: Option<PathBuf>,
        /// A validation metric (default: the first main one the runs report).
        #[arg(long)]
        metric: Option<String>,
        /// Only runs whose name, family or settings match (the Runs tab's filter syntax).
        #[arg(long, default_value = "")]
        filter: String,
        /// Write the table as CSV here.
        #[arg(long)]
        csv: Option<PathBuf>,
    },
    /// Command a run that is training, wherever it was started (alone, queued, SLURM, or rank
    /// 0 of a data-parallel run: every rank applies it at the same step), through its folder:
    /// pause, resume, stop, stop-and-save, checkpoint, skip-phase, set FIELD=VALUE,
    /// watch MODULE[:every=K,steps=N], unwatch MODULE. Waits for the run to apply it.
    Control {
        run: PathBuf,
        #[arg(required = true, num_args = 1..=2)]
        command: Vec<String>,
        /// Seconds to wait for the run to take the command.
        #[arg(long, default_value_t = 60.0)]
        timeout: f64,
    },
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

/// Parses the command line and runs it; the process exit status.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let explicit_runs_dir = cli.runs_dir.is_some();
    let runs_dir = cli
        .runs_dir
        .unwrap_or_else(workbench::core::rundir::default_runs_dir);
    let result = match cli.command {
        Some(Cmd::Train(args)) => match train::run(&args, &runs_dir) {
            Ok(code) => return ExitCode::from(code),
            Err(f) => Err(f),
        },
        None => app::run(cli.app, &runs_dir, explicit_runs_dir),
        Some(Cmd::Serve { .. }) => {
            let (stdin, stdout) = (std::io::stdin(), std::io::stdout());
            workbench::core::remote::serve(&runs_dir, &mut stdin.lock(), &mut stdout.lock())
                .map_err(|e| Failure {
                    code: 1,
                    error: e.into(),
                })
        }
        Some(Cmd::Presets(cmd)) => presets::run(cmd),
        Some(Cmd::Runs(cmd)) => runs::run(cmd, &runs_dir),
        Some(Cmd::Gaad(args)) => data::gaad(&args),
        Some(Cmd::Data(cmd)) => data::run(cmd),
        Some(Cmd::Sweep(SweepCmd::Promote { run, queue, slurm })) => {
            match sweep::promote(&run, queue, slurm.as_deref(), &runs_dir) {
                Ok(code) => return ExitCode::from(code),
                Err(f) => Err(f),
            }
        }
        Some(Cmd::Sweep(cmd)) => sweep::run(cmd, &runs_dir),
        Some(Cmd::Queue(cmd)) => queue::run(cmd, &runs_dir),
        Some(Cmd::Branch(args)) => match branch::run(&args, &runs_dir) {
            Ok(code) => return ExitCode::from(code),
            Err(f) => Err(f),
        },
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

/// One line on standard error, ignoring a closed stream (a job whose reader went away keeps
/// training rather than failing on its next progress line).
fn say_line(text: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

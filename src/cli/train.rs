//! `workbench train`: alone, or one rank of a data-parallel run.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use workbench::core::preset::{self, schema, ValidatedPreset};
use workbench::core::protocol::Outcome;
use workbench::engine::worker::{self, RunRequest};
use workbench::engine::EngineError;

use super::progress::Progress;
use super::{bad_input, preset_text, say_line, Failure, TrainArgs, DEFAULT_PRESET};

/// Loads a preset file (or the embedded default) and applies `--data` and `--set`.
pub(super) fn load_preset(
    args: &TrainArgs,
) -> Result<Option<(ValidatedPreset, Vec<String>)>, Failure> {
    let (preset, notes, origin) = match &args.preset {
        Some(path) => {
            let (text, origin) = preset_text(path)?;
            let origin = origin.display().to_string();
            let (p, notes) = preset::parse_str(&text, &origin).map_err(bad_input)?;
            (p, notes, origin)
        }
        None if args.resume.is_some() => {
            if args.data.is_some() || !args.set.is_empty() || args.tiny {
                return Err(bad_input(anyhow::anyhow!("--data, --set and --tiny with --resume need --preset (the run's preset is used as launched)")));
            }
            return Ok(None);
        }
        None => {
            let (p, notes) = preset::parse_str(DEFAULT_PRESET, "<embedded default preset>")
                .map_err(bad_input)?;
            (p, notes, "<embedded default preset>".to_string())
        }
    };
    let preset = if args.tiny {
        preset.tiny().map_err(|problems| {
            bad_input(preset::PresetError::Invalid {
                file: format!("{origin} at its tiny size"),
                problems,
            })
        })?
    } else {
        preset
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
pub(super) fn run(args: &TrainArgs, runs_dir: &Path) -> Result<u8, Failure> {
    // A TPE trial: its values now, its preset beside the sweep's; then it trains as any run.
    let proposed;
    let args = match (&args.sweep_trial, &args.sweep_state) {
        (Some(trial), Some(state)) if args.resume.is_none() => {
            proposed = TrainArgs {
                preset: Some(propose_trial(state, trial)?),
                ..args.clone()
            };
            &proposed
        }
        _ => args,
    };
    run_args(args, runs_dir)
}

/// Asks the sweep's state for trial `trial`'s values (under its lock), and writes the base
/// preset with them as `<trial>.ron` beside the state file; gives the file.
fn propose_trial(state: &Path, trial: &str) -> Result<std::path::PathBuf, Failure> {
    use workbench::core::pruner;
    let (values, base) = pruner::update(state, |s| {
        Ok::<_, pruner::PrunerError>((s.propose(trial)?, s.base.clone()))
    })
    .and_then(|r| r)
    .map_err(bad_input)?;
    let base = base.ok_or_else(|| {
        bad_input(anyhow::anyhow!(
            "{}: no base preset for a TPE trial",
            state.display()
        ))
    })?;
    let origin = state.display().to_string();
    let (p, _) = preset::parse_str(&base, &origin).map_err(bad_input)?;
    let p = p
        .with_overrides(
            values
                .iter()
                .map(|(k, v)| (k.as_str(), v.clone()))
                .chain([("name", serde_json::Value::from(trial))]),
        )
        .map_err(|problems| {
            bad_input(preset::PresetError::Invalid {
                file: format!("{origin}: trial {trial}'s proposal"),
                problems,
            })
        })?;
    let described: Vec<String> = values
        .iter()
        .map(|(k, v)| format!("{k}={}", workbench::core::sweep::short(v)))
        .collect();
    let file = state.with_file_name(format!("{trial}.ron"));
    let text = format!(
        "// Trial {trial} of a TPE sweep: {}\n{}\n",
        described.join(", "),
        p.to_ron()
    );
    workbench::core::rundir::atomic_write(&file, text.as_bytes()).map_err(bad_input)?;
    say_line(&format!("trial {trial}: {}", described.join(", ")));
    Ok(file)
}

fn run_args(args: &TrainArgs, runs_dir: &Path) -> Result<u8, Failure> {
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
        watch: args.watch.clone(),
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
    // A sweep's trial: the run folder names its sweep and trial before the session starts
    // (a resume finds the link already there).
    if let (Some(state), false) = (&args.sweep_state, rank.is_some_and(|r| r > 0)) {
        let link = workbench::core::pruner::TrialLink {
            state: workbench::core::rundir::absolute(state),
            trial: plan.preset.preset().name().to_string(),
        };
        link.write(plan.run_dir.root()).map_err(bad_input)?;
    }
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

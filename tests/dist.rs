//! Data parallelism over c10d: real Gloo process groups on 127.0.0.1, each rank its own
//! process (this test binary run again with the rank's environment, as torchrun would).
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tch::{Kind, Tensor};
use workbench::engine::dist::{ProcessGroup, RankEnv};

/// Set in a child: which scenario it plays.
const ROLE: &str = "WORKBENCH_DIST_TEST_ROLE";

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Runs `test` once per rank, each in its own process, and checks that every rank passed.
fn ranks(test: &str, role: &str, world: usize) {
    let port = free_port().to_string();
    let exe = std::env::current_exe().expect("test binary");
    let children: Vec<_> = (0..world)
        .map(|rank| {
            Command::new(&exe)
                .args([test, "--exact", "--nocapture", "--test-threads=1"])
                .env(ROLE, role)
                .env("RANK", rank.to_string())
                .env("WORLD_SIZE", world.to_string())
                .env("LOCAL_RANK", rank.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", &port)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn a rank")
        })
        .collect();
    for (rank, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().expect("rank output");
        assert!(
            out.status.success(),
            "rank {rank}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn join() -> ProcessGroup {
    let env = RankEnv::from_env()
        .expect("env")
        .rank
        .expect("a world of two");
    ProcessGroup::join(&env, Duration::from_secs(20)).expect("join")
}

/// All-reduce, mean, broadcast and barrier give every rank the same, right values.
#[test]
fn two_gloo_ranks_reduce_and_broadcast() {
    if std::env::var(ROLE).is_ok_and(|r| r == "collectives") {
        let g = join();
        let r = g.rank() as f64;
        let t = Tensor::full([5], r + 1.0, (Kind::Float, tch::Device::Cpu));
        g.all_reduce_sum(&t).expect("all-reduce");
        assert_eq!(Vec::<f32>::try_from(&t).expect("values"), vec![3.0; 5]);
        // Two kinds, odd shapes: the buckets give each tensor back its own mean.
        let a = Tensor::full([2, 3], r, (Kind::Float, tch::Device::Cpu));
        let b = Tensor::full([7], 10.0 * r, (Kind::Double, tch::Device::Cpu));
        g.mean(&[a.shallow_clone(), b.shallow_clone()])
            .expect("mean");
        assert_eq!(
            Vec::<f32>::try_from(&a.reshape([-1])).expect("a"),
            vec![0.5; 6]
        );
        assert_eq!(Vec::<f64>::try_from(&b).expect("b"), vec![5.0; 7]);
        let c = Tensor::full([4], r + 7.0, (Kind::Float, tch::Device::Cpu));
        g.broadcast_all(&[c.shallow_clone()]).expect("broadcast");
        assert_eq!(Vec::<f32>::try_from(&c).expect("c"), vec![7.0; 4]);
        g.barrier().expect("barrier");
        return;
    }
    ranks("two_gloo_ranks_reduce_and_broadcast", "collectives", 2);
}

/// A rank that dies ends its peer's next collective with an error, well within the timeout,
/// instead of a hang.
#[test]
fn a_dead_rank_ends_the_other_with_an_error() {
    if std::env::var(ROLE).is_ok_and(|r| r == "dies") {
        let g = join();
        g.barrier().expect("both joined");
        if g.rank() == 1 {
            std::process::exit(0);
        }
        let started = Instant::now();
        let t = Tensor::ones([3], (Kind::Float, tch::Device::Cpu));
        let e = g.all_reduce_sum(&t).expect_err("the peer is gone");
        let text = e.to_string();
        assert!(text.starts_with("all-reduce failed on rank 0"), "{text}");
        assert!(!text.contains('\n'), "one line: {text}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
        println!("peer death seen after {:?}: {text}", started.elapsed());
        return;
    }
    ranks("a_dead_rank_ends_the_other_with_an_error", "dies", 2);
}

fn presets() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("presets")
}

/// `workbench train ARGS` as ranks 0..world of one run on 127.0.0.1, each its own process with
/// torchrun's variables; returns the children to wait on.
fn spawn_train(world: usize, runs: &std::path::Path, args: &[&str]) -> Vec<std::process::Child> {
    spawn_train_env(world, runs, args, &[])
}

/// [`spawn_train`] with more environment variables for every rank.
fn spawn_train_env(
    world: usize,
    runs: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Vec<std::process::Child> {
    let port = free_port().to_string();
    (0..world)
        .map(|rank| {
            Command::new(env!("CARGO_BIN_EXE_workbench"))
                .arg("--runs-dir")
                .arg(runs)
                .arg("train")
                .args(args)
                .env("RANK", rank.to_string())
                .env("WORLD_SIZE", world.to_string())
                .env("LOCAL_RANK", rank.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", &port)
                .env("WORKBENCH_DIST_TIMEOUT_SECS", "60")
                .env("OMP_NUM_THREADS", "1")
                .envs(env.iter().copied())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn a rank")
        })
        .collect()
}

/// Each rank's stderr, after checking that every rank succeeded.
fn train_ranks(world: usize, runs: &std::path::Path, args: &[&str]) -> Vec<String> {
    train_ranks_env(world, runs, args, &[])
}

/// [`train_ranks`] with more environment variables for every rank.
fn train_ranks_env(
    world: usize,
    runs: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Vec<String> {
    spawn_train_env(world, runs, args, env)
        .into_iter()
        .enumerate()
        .map(|(rank, child)| {
            let out = child.wait_with_output().expect("rank output");
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(out.status.success(), "rank {rank} failed: {err}");
            err
        })
        .collect()
}

/// The one run folder in `runs`.
fn only_run(runs: &std::path::Path) -> std::path::PathBuf {
    let dirs: Vec<_> = std::fs::read_dir(runs)
        .expect("runs")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}

/// Two ranks of WGAN-GP (BatchNorm generator, gradient penalty), WuBu-GAAD (dual critics,
/// Q-controllers, heuristics) and the latent action model (EMA codebook) train one model: the
/// session checks at every checkpoint and at the end that both ranks hold the same parameters
/// and optimiser state bit for bit, and fails the run otherwise. Rank 0 owns the run folder;
/// rank 1 writes only its own log under `ranks/rank-1`.
#[test]
fn two_ranks_of_each_family_hold_one_model_bit_for_bit() {
    for (preset, steps) in [
        ("smoke.ron", "30"),
        ("wubu_gaad_tiny.ron", "20"),
        ("latent_action_tiny.ron", "12"),
    ] {
        let tmp = tempfile::tempdir().expect("tmp");
        let p = presets().join(preset);
        let errs = train_ranks(
            2,
            tmp.path(),
            &["--preset", p.to_str().expect("utf-8"), "--steps", steps],
        );
        let run = only_run(tmp.path());
        let said =
            format!("all 2 ranks hold identical parameters and optimiser state at step {steps}");
        assert!(errs[0].contains(&said), "{preset}: {}", errs[0]);
        let rank1_log = String::from_utf8_lossy(
            &std::fs::read(run.join("ranks/rank-1/events.log")).expect("rank 1's log"),
        )
        .into_owned();
        assert!(rank1_log.contains(&said), "{preset}: {rank1_log}");
        let preset_ron = std::fs::read_to_string(run.join("preset.ron")).expect("preset");
        assert!(preset_ron.contains("// world_size: 2"), "{preset_ron}");
        // Only rank 0 writes checkpoints and media.
        assert!(run.join("checkpoints/latest").is_file(), "{preset}");
        assert!(
            !run.join("ranks/rank-1/checkpoints/latest").exists(),
            "{preset}"
        );
        let media = std::fs::read_dir(run.join("ranks/rank-1/media"))
            .expect("media")
            .count();
        assert_eq!(media, 0, "{preset}: rank 1 wrote media");
    }
}

/// The guard under data parallelism: a NaN at step 13 on every rank becomes rank 0's trigger
/// on both; both reload the step-10 checkpoint, halve their rates, and finish holding one
/// model bit for bit. Rank 0 alone keeps the abandoned rows as a branch folder.
#[test]
fn two_guarded_ranks_roll_back_together_and_finish_as_one_model() {
    use workbench::core::protocol::Event;
    let tmp = tempfile::tempdir().expect("tmp");
    let p = presets().join("smoke.ron");
    let errs = train_ranks_env(
        2,
        tmp.path(),
        &[
            "--preset",
            p.to_str().expect("utf-8"),
            "--set",
            "health.guard=true",
            "--steps",
            "20",
        ],
        &[("WORKBENCH_FAILPOINT", "nan-loss-once:13")],
    );
    assert!(
        errs[0].contains("all 2 ranks hold identical parameters and optimiser state at step 20"),
        "{}",
        errs[0]
    );
    let mut dirs: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("runs")
        .map(|e| e.expect("entry").path())
        .collect();
    dirs.sort();
    let (abandoned, run): (Vec<_>, Vec<_>) = dirs
        .into_iter()
        .partition(|d| d.to_string_lossy().contains("abandoned13"));
    assert_eq!(
        (abandoned.len(), run.len()),
        (1, 1),
        "one run, one abandoned segment"
    );
    let rollbacks = |log: std::path::PathBuf| -> Vec<(u64, u64)> {
        workbench::core::runlog::LogReader::new(&log)
            .poll()
            .expect("log")
            .into_iter()
            .filter_map(|e| match e {
                Event::Rollback { step, to_step, .. } => Some((step, to_step)),
                _ => None,
            })
            .collect()
    };
    assert_eq!(rollbacks(run[0].join("events.log")), [(13, 10)], "rank 0");
    assert_eq!(
        rollbacks(run[0].join("ranks/rank-1/events.log")),
        [(13, 10)],
        "rank 1 rolled back at the same step"
    );
}

/// A two-rank run started from a shell takes commands through rank 0's folder: both ranks
/// pause at the same step, take a live edit there, resume, and stop at one step.
#[test]
fn two_ranks_are_paused_edited_and_stopped_through_the_run_folder() {
    use workbench::core::protocol::Event;
    let tmp = tempfile::tempdir().expect("tmp");
    let text = std::fs::read_to_string(presets().join("smoke.ron"))
        .expect("smoke")
        .replace("steps(20)", "steps(1000000)");
    let preset = tmp.path().join("long.ron");
    std::fs::write(&preset, text).expect("preset");
    let runs = tmp.path().join("runs");
    let children = spawn_train(2, &runs, &["--preset", preset.to_str().expect("utf-8")]);
    let run = loop {
        if let Some(r) = std::fs::read_dir(&runs)
            .ok()
            .and_then(|mut d| d.find_map(|e| e.ok().map(|e| e.path())))
            .filter(|r| r.join("ranks/rank-1/events.log").is_file())
        {
            break r;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let control = |words: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_workbench"))
            .args(["runs", "control"])
            .arg(&run)
            .args(words)
            .output()
            .expect("control");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    control(&["pause"]);
    control(&["set", "train.lr_d=0.0005"]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    control(&["resume"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    control(&["stop-and-save"]);
    for (rank, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().expect("rank");
        assert!(
            out.status.success(),
            "rank {rank}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let steps = |log: std::path::PathBuf| {
        let events = workbench::core::runlog::read_all(&log).expect("log").events;
        let find = |f: &dyn Fn(&Event) -> Option<u64>| events.iter().find_map(f);
        (
            find(&|e| match e {
                Event::Paused { step } => Some(*step),
                _ => None,
            }),
            find(&|e| match e {
                Event::HyperparameterChanged { step, name, .. } if name == "train.lr_d" => {
                    Some(*step)
                }
                _ => None,
            }),
            find(&|e| match e {
                Event::Resumed { step } => Some(*step),
                _ => None,
            }),
            find(&|e| match e {
                Event::RunFinished { step, .. } => Some(*step),
                _ => None,
            }),
        )
    };
    let zero = steps(run.join("events.log"));
    let one = steps(run.join("ranks/rank-1/events.log"));
    assert!(
        zero.0.is_some() && zero.1 == zero.0 && zero.2 == zero.0 && zero.3.is_some(),
        "{zero:?}"
    );
    assert_eq!(zero, one, "both ranks at the same steps");
}

/// A rank slowed by 50 ms a batch (the `slow-data` failpoint on rank 1 only) is named the
/// straggler by rank 0 at the first verdict, step 20; rank 0, which waits for it, is told
/// the time goes to the collectives.
#[test]
fn a_slowed_rank_is_named_the_straggler() {
    use workbench::core::protocol::{Event, HealthSignal};
    let tmp = tempfile::tempdir().expect("tmp");
    let p = presets().join("smoke.ron");
    train_ranks_env(
        2,
        tmp.path(),
        &["--preset", p.to_str().expect("utf-8"), "--steps", "20"],
        &[
            ("WORKBENCH_FAILPOINT", "slow-data:0"),
            ("WORKBENCH_FAILPOINT_RANK", "1"),
        ],
    );
    let run = only_run(tmp.path());
    let log = workbench::core::runlog::read_all(&run.join("events.log")).expect("log");
    let said: Vec<(u64, HealthSignal, String)> = log
        .events
        .into_iter()
        .filter_map(|e| match e {
            Event::Health {
                step,
                signal: s @ (HealthSignal::Straggler | HealthSignal::Bottleneck),
                message,
                ..
            } => Some((step, s, message)),
            _ => None,
        })
        .collect();
    assert!(
        said.iter().any(|(step, s, m)| *step == 20
            && *s == HealthSignal::Straggler
            && m.starts_with("rank 1 is the straggler: ")),
        "{said:?}"
    );
    assert!(
        said.iter().any(|(_, s, m)| *s == HealthSignal::Bottleneck
            && m.starts_with("communication-bound: collectives")),
        "{said:?}"
    );
}

/// Data parallelism changes nothing but the speed: two ranks of 2 volumes train the VQ-GAN (no
/// BatchNorm before its critics start; EMA codebook with lazy initialisation and restarts) to
/// the parameters one process reaches on the same 4 volumes a step, up to float rounding.
#[test]
fn two_ranks_train_the_vq_gan_as_one_process_on_the_global_batch() {
    let p = presets().join("vq_gan_tiny.ron");
    let p = p.to_str().expect("utf-8");
    let two = tempfile::tempdir().expect("tmp");
    train_ranks(
        2,
        two.path(),
        &["--preset", p, "--steps", "6", "--set", "train.batch_size=2"],
    );
    let one = tempfile::tempdir().expect("tmp");
    let out = Command::new(env!("CARGO_BIN_EXE_workbench"))
        .arg("--runs-dir")
        .arg(one.path())
        .args([
            "train",
            "--preset",
            p,
            "--steps",
            "6",
            "--set",
            "train.batch_size=4",
        ])
        .env("OMP_NUM_THREADS", "1")
        .output()
        .expect("one process");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |runs: &std::path::Path| {
        workbench::engine::checkpoint::read(&only_run(runs).join("checkpoints/step-00000006"))
            .expect("checkpoint")
    };
    let (a, b) = (read(two.path()), read(one.path()));
    let mut worst = (0.0f64, String::new());
    let mut compared = 0;
    for (name, t) in &a.tensors {
        if !name.starts_with("ae.") {
            continue;
        }
        let u = &b.tensors[name];
        let scale = u.abs().max().double_value(&[]).max(1e-6);
        let rel = (t - u).abs().max().double_value(&[]) / scale;
        if rel > worst.0 {
            worst = (rel, name.clone());
        }
        compared += 1;
    }
    assert!(compared > 50, "{compared}");
    assert!(worst.0 < 1e-3, "{worst:?}");
    // Not a trivially equal pair: the parameters moved from their start.
    let moved = a
        .tensors
        .iter()
        .filter(|(n, _)| n.starts_with("opt_ae.") && n.ends_with(".exp_avg"))
        .any(|(_, t)| t.abs().max().double_value(&[]) > 0.0);
    assert!(moved);
}

/// A rank killed in the middle of training ends the other with one clear line naming the
/// failed all-reduce, well within the timeout, instead of a hang.
#[test]
fn a_rank_killed_mid_training_ends_the_run_with_an_error() {
    let tmp = tempfile::tempdir().expect("tmp");
    let p = presets().join("vq_gan_tiny.ron");
    let mut children = spawn_train(
        2,
        tmp.path(),
        &["--preset", p.to_str().expect("utf-8"), "--steps", "100000"],
    );
    // Wait until training runs (rank 0 has logged scalars), then kill rank 1.
    let started = Instant::now();
    loop {
        let csv = std::fs::read_dir(tmp.path())
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| std::fs::read_to_string(e.ok()?.path().join("losses.csv")).ok());
        if csv.is_some_and(|c| c.lines().count() > 3) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "never trained"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut rank1 = children.pop().expect("rank 1");
    rank1.kill().expect("kill rank 1");
    let _ = rank1.wait();
    let killed = Instant::now();
    let out = children
        .pop()
        .expect("rank 0")
        .wait_with_output()
        .expect("rank 0");
    let waited = killed.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(waited < Duration::from_secs(30), "{waited:?}");
    let line = err
        .lines()
        .find(|l| l.starts_with("error: run failed"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.contains("failed on rank 0 (a rank died or timed out?)"),
        "{line}"
    );
    assert!(!line.contains("GLHF"), "{line}");
    println!("rank 0 stopped {waited:?} after rank 1 was killed: {line}");
}

/// Every rank resumes from rank 0's checkpoint: a two-rank run stopped at step 10 goes on to
/// step 20 with both ranks holding one model, each appending to its own log.
#[test]
fn two_ranks_resume_from_the_same_checkpoint() {
    let tmp = tempfile::tempdir().expect("tmp");
    let p = presets().join("smoke.ron");
    train_ranks(
        2,
        tmp.path(),
        &["--preset", p.to_str().expect("utf-8"), "--steps", "10"],
    );
    let run = only_run(tmp.path());
    let errs = train_ranks(
        2,
        tmp.path(),
        &["--resume", run.to_str().expect("utf-8"), "--steps", "20"],
    );
    assert!(
        errs[0].contains("all 2 ranks hold identical parameters and optimiser state at step 20"),
        "{}",
        errs[0]
    );
    assert_eq!(
        only_run(tmp.path()),
        run,
        "the resume wrote into the same run"
    );
    let rank1 = String::from_utf8_lossy(
        &std::fs::read(run.join("ranks/rank-1/events.log")).expect("rank 1's log"),
    )
    .into_owned();
    assert!(
        rank1.contains("step 10") && rank1.contains("step 20"),
        "{rank1}"
    );
}

/// `preset`'s text with its phases replaced by two: `a` of `a_steps`, then `b` of `b_steps`
/// starting from `a`'s best checkpoint; written as a file in `dir`.
fn two_phase_preset(dir: &std::path::Path, preset: &str, a_steps: u64, b_steps: u64) -> String {
    let text = std::fs::read_to_string(presets().join(preset)).expect("preset");
    let head = &text[..text.find("    phases: [").expect("phases")];
    let path = dir.join(format!("two-phase-{preset}"));
    std::fs::write(
        &path,
        format!(
            "{head}    phases: [\n        (name: \"a\", length: steps({a_steps}), overrides: {{}}, start_from_best: false),\n        (name: \"b\", length: steps({b_steps}), overrides: {{}}, start_from_best: true),\n    ],\n)\n"
        ),
    )
    .expect("write");
    path.display().to_string()
}

/// The checkpoint phase `b` of `run` started from, as its rank 0 logged it.
fn phase_b_start(run: &std::path::Path) -> String {
    let events = workbench::core::runlog::read_all(&run.join("events.log"))
        .expect("events")
        .events;
    events
        .iter()
        .find_map(|e| match e {
            workbench::core::protocol::Event::PhaseStarted {
                index: 1,
                loaded_checkpoint,
                ..
            } => loaded_checkpoint.clone(),
            _ => None,
        })
        .expect("phase b started from a checkpoint")
}

/// A phase that starts from the previous phase's best checkpoint, when that best is not its
/// last, leaves every rank with one model: WGAN-GP, WuBu-GAAD (dual critics, Q-controllers,
/// heuristics and switching, whose state lives beside the tensors) and the latent action
/// model (EMA codebook). Each rank loads the checkpoint itself; the run checks the ranks bit
/// for bit after the load, at every checkpoint and at the end, and fails otherwise.
#[test]
fn two_ranks_start_a_phase_from_a_best_checkpoint_that_is_not_the_last() {
    for (preset, extra) in [
        ("smoke.ron", vec![]),
        ("wubu_gaad_tiny.ron", vec![]),
        (
            "latent_action_tiny.ron",
            vec!["--set", "logging.log_every_steps=2"],
        ),
    ] {
        let tmp = tempfile::tempdir().expect("tmp");
        let p = two_phase_preset(tmp.path(), preset, 12, 8);
        let runs = tmp.path().join("runs");
        let mut args = vec![
            "--preset",
            p.as_str(),
            "--set",
            "logging.validate_every_steps=2",
        ];
        args.extend(extra);
        let port = free_port().to_string();
        // Validations from step 6 on rank below every earlier one: the best is at step 2 or 4.
        let children: Vec<_> = (0..2)
            .map(|rank| {
                Command::new(env!("CARGO_BIN_EXE_workbench"))
                    .arg("--runs-dir")
                    .arg(&runs)
                    .arg("train")
                    .args(&args)
                    .env("RANK", rank.to_string())
                    .env("WORLD_SIZE", "2")
                    .env("LOCAL_RANK", rank.to_string())
                    .env("MASTER_ADDR", "127.0.0.1")
                    .env("MASTER_PORT", &port)
                    .env("WORKBENCH_DIST_TIMEOUT_SECS", "60")
                    .env("WORKBENCH_FAILPOINT", "val-worse:6")
                    .env("OMP_NUM_THREADS", "1")
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn a rank")
            })
            .collect();
        let errs: Vec<String> = children
            .into_iter()
            .enumerate()
            .map(|(rank, child)| {
                let out = child.wait_with_output().expect("rank output");
                let err = String::from_utf8_lossy(&out.stderr).into_owned();
                assert!(out.status.success(), "{preset}: rank {rank} failed: {err}");
                err
            })
            .collect();
        let run = only_run(&runs);
        let from = phase_b_start(&run);
        assert!(
            from.ends_with("step-00000002") || from.ends_with("step-00000004"),
            "{preset}: phase b started from {from}, not a best before step 6"
        );
        let said = "all 2 ranks hold identical parameters and optimiser state at step 20";
        assert!(errs[0].contains(said), "{preset}: {}", errs[0]);
        let rank1_log = String::from_utf8_lossy(
            &std::fs::read(run.join("ranks/rank-1/events.log")).expect("rank 1's log"),
        )
        .into_owned();
        assert!(rank1_log.contains(said), "{preset}: {rank1_log}");
    }
}

/// A stop signal stops both ranks at the same step with a checkpoint of that step (exit 128 +
/// the signal's number), whether it reached one rank (SIGTERM to rank 1, as `kill` would) or
/// both (SIGINT, as Ctrl-C under torchrun does); both ranks resume from it and go on to the
/// end with the losses an uninterrupted two-rank run has.
#[test]
fn a_signal_stops_both_ranks_at_one_step_and_they_resume_exactly() {
    let p = presets().join("smoke.ron");
    let p = p.to_str().expect("utf-8");
    let base = [
        "--preset",
        p,
        "--steps",
        "60",
        "--set",
        "logging.log_every_steps=1",
        "--set",
        "checkpoints.every_steps=0",
    ];
    let whole = tempfile::tempdir().expect("tmp");
    train_ranks(2, whole.path(), &base);
    let uninterrupted =
        std::fs::read_to_string(only_run(whole.path()).join("losses.csv")).expect("csv");
    for (signal, ranks, code) in [("TERM", &[1][..], 143), ("INT", &[0, 1][..], 130)] {
        let tmp = tempfile::tempdir().expect("tmp");
        let children = spawn_train(2, tmp.path(), &base);
        // A random moment once training runs.
        let wait_rows = 3 + (std::process::id() as usize + code) % 20;
        let started = Instant::now();
        loop {
            let csv = std::fs::read_dir(tmp.path())
                .ok()
                .and_then(|mut d| d.next())
                .and_then(|e| std::fs::read_to_string(e.ok()?.path().join("losses.csv")).ok());
            if csv.is_some_and(|c| c.lines().count() > wait_rows) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "never trained"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        for &r in ranks {
            assert!(Command::new("kill")
                .args([&format!("-{signal}"), &children[r].id().to_string()])
                .status()
                .expect("kill")
                .success());
        }
        let outs: Vec<_> = children
            .into_iter()
            .map(|c| c.wait_with_output().expect("rank output"))
            .collect();
        for (rank, out) in outs.iter().enumerate() {
            assert_eq!(
                out.status.code(),
                Some(code as i32),
                "SIG{signal}, rank {rank}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let said = String::from_utf8_lossy(&outs[0].stdout).into_owned();
        let step: u64 = said
            .strip_prefix(&format!("stopped by SIG{signal} at step "))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{said}"));
        assert!(step < 60, "{said}");
        let run = only_run(tmp.path());
        assert!(
            run.join(format!("checkpoints/step-{step:08}")).is_dir(),
            "a checkpoint of the stopped step {step}"
        );
        let rank1_log = String::from_utf8_lossy(
            &std::fs::read(run.join("ranks/rank-1/events.log")).expect("rank 1's log"),
        )
        .into_owned();
        assert!(
            rank1_log.contains(&format!(
                "all 2 ranks hold identical parameters and optimiser state at step {step}"
            )),
            "both ranks stopped at step {step}: {rank1_log}"
        );
        train_ranks(
            2,
            tmp.path(),
            &["--resume", run.to_str().expect("utf-8"), "--steps", "60"],
        );
        let resumed = std::fs::read_to_string(run.join("losses.csv")).expect("csv");
        assert_eq!(
            uninterrupted, resumed,
            "SIG{signal} at {step} and resumed: the same rows as uninterrupted"
        );
    }
}

/// Two network namespaces joined by a veth pair, each with an address that exists only
/// inside it: two "nodes". Removed when dropped.
struct TwoNodes {
    names: [String; 2],
    links: [String; 2],
    addrs: [&'static str; 2],
}

impl TwoNodes {
    /// `None` (with the reason) where namespaces cannot be made: not root, no `ip`.
    fn make() -> Result<Self, String> {
        let tag = std::process::id() % 100_000;
        let nodes = Self {
            names: [format!("wb-a-{tag}"), format!("wb-b-{tag}")],
            links: [format!("wba{tag}"), format!("wbb{tag}")],
            addrs: ["10.213.7.1", "10.213.7.2"],
        };
        let ip = |args: &[&str]| -> Result<(), String> {
            let out = Command::new("ip")
                .args(args)
                .output()
                .map_err(|e| format!("ip: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "ip {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        };
        for n in &nodes.names {
            ip(&["netns", "add", n])?;
        }
        ip(&[
            "link",
            "add",
            &nodes.links[0],
            "type",
            "veth",
            "peer",
            "name",
            &nodes.links[1],
        ])?;
        for i in 0..2 {
            let (ns, link) = (&nodes.names[i], &nodes.links[i]);
            ip(&["link", "set", link, "netns", ns])?;
            let cidr = format!("{}/24", nodes.addrs[i]);
            ip(&["-n", ns, "addr", "add", &cidr, "dev", link])?;
            ip(&["-n", ns, "link", "set", link, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(nodes)
    }
}

impl Drop for TwoNodes {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

/// Two ranks on two "nodes" (network namespaces whose addresses exist only inside them;
/// `MASTER_ADDR` is the first's) train one model: each rank's Gloo device listens on its own
/// node's address (rank 1 by `GLOO_SOCKET_IFNAME`, rank 0 by the route to `MASTER_ADDR`),
/// never on `MASTER_ADDR`, which is no address of rank 1's node.
#[test]
fn two_ranks_on_two_nodes_join_and_train_one_model() {
    let nodes = match TwoNodes::make() {
        Ok(n) => n,
        Err(why) => {
            println!("skipped: cannot make two network namespaces here ({why})");
            return;
        }
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let p = presets().join("smoke.ron");
    let port = "29622";
    let children: Vec<_> = (0..2)
        .map(|rank| {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &nodes.names[rank]])
                .arg(env!("CARGO_BIN_EXE_workbench"))
                .arg("--runs-dir")
                .arg(tmp.path().join(format!("node{rank}")))
                .args([
                    "train",
                    "--preset",
                    p.to_str().expect("utf-8"),
                    "--steps",
                    "10",
                ])
                .env("RANK", rank.to_string())
                .env("WORLD_SIZE", "2")
                .env("LOCAL_RANK", "0")
                .env("MASTER_ADDR", nodes.addrs[0])
                .env("MASTER_PORT", port)
                .env("WORKBENCH_DIST_TIMEOUT_SECS", "60")
                .env("OMP_NUM_THREADS", "1")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            if rank == 1 {
                c.env("GLOO_SOCKET_IFNAME", &nodes.links[1]);
            }
            c.spawn().expect("spawn a rank")
        })
        .collect();
    let errs: Vec<String> = children
        .into_iter()
        .enumerate()
        .map(|(rank, child)| {
            let out = child.wait_with_output().expect("rank output");
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(out.status.success(), "rank {rank} failed: {err}");
            err
        })
        .collect();
    assert!(
        errs[0].contains("all 2 ranks hold identical parameters and optimiser state at step 10"),
        "{}",
        errs[0]
    );
}

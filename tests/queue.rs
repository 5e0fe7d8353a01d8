//! The local queue through the binary: jobs are checked when added, run one after another in
//! the queue's order, a failing job does not stop the rest, and a job whose runner died is
//! marked interrupted by the next runner.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use workbench::core::queue::{self, JobState};

/// `workbench --runs-dir RUNS queue ARGS...`.
fn workbench(runs: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_workbench"))
        .arg("--runs-dir")
        .arg(runs)
        .arg("queue")
        .args(args)
        .output()
        .expect("workbench runs")
}

/// The output of a command that must succeed (its error output otherwise).
fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn the_queue_runs_in_order_past_a_failure_and_outlives_its_runner() {
    let runs = tempfile::tempdir().unwrap();
    let r = runs.path();
    // Checked when added: nothing is queued.
    let bad = workbench(r, &["add", "--", "--preset", "no_such_preset_anywhere"]);
    assert_eq!(
        bad.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let smoke = [
        "add",
        "--",
        "--preset",
        "smoke",
        "--steps",
        "2",
        "--set",
        "logging.validate_every_steps=0",
    ];
    for args in [
        smoke.to_vec(),
        // Fails when it runs: the data folder does not exist (exit 2).
        [smoke.as_slice(), &["--data", "/no/such/folder"]].concat(),
        smoke.to_vec(),
    ] {
        ok(workbench(r, &args));
    }
    ok(workbench(r, &["move", "2", "0"]));
    ok(workbench(r, &["run"]));
    let q = queue::read(&r.join("queue.json")).unwrap();
    let by_id = |id: u64| q.jobs.iter().find(|j| j.id == id).unwrap();
    assert_eq!(
        [0, 1, 2].map(|i| (by_id(i).state, by_id(i).exit_code)),
        [
            (JobState::Finished, Some(0)),
            (JobState::Failed, Some(2)),
            (JobState::Finished, Some(0))
        ]
    );
    assert!(
        by_id(2).started <= by_id(0).started,
        "job 2 was moved first"
    );
    for id in [0, 2] {
        let dir = by_id(id).run_dir.clone().expect("a run directory");
        assert!(dir.join("events.log").exists(), "{}", dir.display());
        let record: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("scheduler.json")).unwrap())
                .unwrap();
        assert_eq!(record["scheduler"], "local");
        assert_eq!(record["job"], id);
    }
    let listed = ok(workbench(r, &["list"]));
    let text = String::from_utf8_lossy(&listed.stdout);
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(text.contains("failed"), "{text}");
    // A job left running by a runner that died is interrupted by the next one; nothing else
    // runs again.
    queue::update(&r.join("queue.json"), |q| {
        let id = q.add(vec!["--preset".into(), "smoke".into()], 0);
        q.start_next(0);
        q.job_mut(id).unwrap().pid = Some(u32::MAX - 1);
    })
    .unwrap();
    ok(workbench(r, &["run"]));
    let q = queue::read(&r.join("queue.json")).unwrap();
    assert_eq!(q.jobs[3].state, JobState::Interrupted);
    assert_eq!(
        q.jobs
            .iter()
            .filter(|j| j.state == JobState::Finished)
            .count(),
        2
    );
}

/// A submitted sweep becomes one queued job per run, each on its own preset file, and the
/// runner trains them with the sweep's values.
#[test]
fn a_submitted_sweep_trains_each_run_with_its_values() {
    let runs = tempfile::tempdir().unwrap();
    let r = runs.path();
    let sweep = r.join("lr.ron");
    std::fs::write(
        &sweep,
        r#"(name: "lr", base: "smoke", grid: { "train.lr_g": [1e-4, 3e-4] })"#,
    )
    .unwrap();
    ok(Command::new(env!("CARGO_BIN_EXE_workbench"))
        .arg("--runs-dir")
        .arg(r)
        .args(["sweep", "submit"])
        .arg(&sweep)
        .output()
        .unwrap());
    ok(workbench(r, &["run"]));
    let q = queue::read(&r.join("queue.json")).unwrap();
    assert_eq!(q.jobs.len(), 2);
    for (job, (name, lr)) in q.jobs.iter().zip([("lr-000", 1e-4), ("lr-001", 3e-4)]) {
        assert_eq!(job.state, JobState::Finished, "{job:?}");
        let dir = job.run_dir.clone().expect("a run directory");
        let text = std::fs::read_to_string(dir.join("preset.ron")).unwrap();
        let (p, _) = workbench::core::preset::parse_str(&text, "preset.ron").unwrap();
        let workbench::core::preset::AnyPreset::WganGp(p) = p else {
            panic!("the base's family")
        };
        assert_eq!((p.name.as_str(), p.train.lr_g), (name, lr));
    }
}

/// A paused queue starts nothing until resumed; `run --jobs 2` trains two jobs at once.
#[test]
fn a_paused_queue_waits_and_a_runner_trains_jobs_side_by_side() {
    let runs = tempfile::tempdir().unwrap();
    let r = runs.path();
    for _ in 0..2 {
        ok(workbench(
            r,
            &["add", "--", "--preset", "smoke", "--steps", "20"],
        ));
    }
    ok(workbench(r, &["pause"]));
    let mut runner = Command::new(env!("CARGO_BIN_EXE_workbench"))
        .arg("--runs-dir")
        .arg(r)
        .args(["queue", "run", "--jobs", "2"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("runner");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let q = queue::read(&r.join("queue.json")).unwrap();
    assert!(q.paused);
    assert!(q.jobs.iter().all(|j| j.state == JobState::Pending), "{q:?}");
    ok(workbench(r, &["resume"]));
    // Side by side: both run at once at some point.
    let mut most = 0;
    while runner.try_wait().expect("runner").is_none() {
        if let Ok(q) = queue::read(&r.join("queue.json")) {
            let n = q
                .jobs
                .iter()
                .filter(|j| j.state == JobState::Running)
                .count();
            most = most.max(n);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let q = queue::read(&r.join("queue.json")).unwrap();
    assert!(
        q.jobs.iter().all(|j| j.state == JobState::Finished),
        "{q:?}"
    );
    assert_eq!(most, 2);
}

/// A runner killed while a job trains takes nothing with it: the job (its own process group,
/// its output in a file) trains to its end, and the next runner finds it finished from its
/// run folder, with its output moved there.
#[test]
fn killing_the_runner_leaves_its_job_training_to_the_end() {
    let runs = tempfile::tempdir().unwrap();
    let r = runs.path();
    // The embedded default preset, cut to 150 steps: several seconds of training.
    ok(workbench(
        r,
        &[
            "add",
            "--",
            "--steps",
            "150",
            "--set",
            "threads=1",
            "--device",
            "cpu",
        ],
    ));
    let mut runner = Command::new(env!("CARGO_BIN_EXE_workbench"))
        .arg("--runs-dir")
        .arg(r)
        .args(["queue", "run"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("runner");
    // Until the job has a run folder with logged rows.
    let started = std::time::Instant::now();
    let job = loop {
        let q = queue::read(&r.join("queue.json")).unwrap();
        let j = q.jobs[0].clone();
        let rows = j
            .run_dir
            .as_ref()
            .and_then(|d| std::fs::read_to_string(d.join("losses.csv")).ok())
            .map_or(0, |c| c.lines().count());
        if rows > 2 {
            break j;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "{q:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(job.state, JobState::Running);
    assert_eq!(
        job.host.as_deref(),
        Some(workbench::core::rundir::host_name().as_str())
    );
    assert!(job.started_ticks.is_some());
    runner.kill().expect("kill the runner");
    runner.wait().expect("reaped");
    let pid = job.pid.expect("the job's process");
    // The job trains on alone to its end.
    let dir = job.run_dir.expect("run folder");
    let started = std::time::Instant::now();
    while workbench::core::jobs::process_start_ticks(pid).is_some() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(300),
            "the job never ended"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let status = workbench::core::rundir::RunDir::open(&dir)
        .unwrap()
        .status()
        .unwrap();
    assert_eq!(
        (status.status, status.last_step),
        (workbench::core::rundir::RunStatus::Finished, 150)
    );
    // The queue still says running until a runner looks; the next one repairs it.
    assert_eq!(
        queue::read(&r.join("queue.json")).unwrap().jobs[0].state,
        JobState::Running
    );
    ok(workbench(r, &["run"]));
    let j = queue::read(&r.join("queue.json")).unwrap().jobs[0].clone();
    assert_eq!(j.state, JobState::Finished, "{j:?}");
    let log = j.log.expect("its output");
    assert_eq!(log, dir.join("output.log"));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("finished after 150 steps"), "{text}");
}

/// A preset whose name would break out of a batch script's header (a line break, `$(...)`) is
/// refused when it is validated, before anything is queued or submitted.
#[test]
fn a_name_that_could_run_a_command_is_refused_at_validation() {
    let runs = tempfile::tempdir().unwrap();
    let r = runs.path();
    let smoke =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("presets/smoke.ron"))
            .unwrap();
    let evil = r.join("evil.ron");
    let marker = r.join("owned");
    std::fs::write(
        &evil,
        smoke.replace(
            "name: \"smoke\"",
            &format!("name: \"x\\n$(touch {})\"", marker.display()),
        ),
    )
    .unwrap();
    let profile = r.join("cluster.ron");
    std::fs::write(&profile, "(ranks: 1)").unwrap();
    for args in [
        vec!["add", "--", "--preset", evil.to_str().unwrap()],
        vec![
            "add",
            "--slurm",
            profile.to_str().unwrap(),
            "--",
            "--preset",
            evil.to_str().unwrap(),
        ],
    ] {
        let out = workbench(r, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("name") && err.contains("not allowed"), "{err}");
    }
    assert!(!marker.exists());
    assert!(!r.join("queue.json").exists(), "nothing was queued");
}

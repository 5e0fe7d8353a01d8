//! A real one-node SLURM (Debian's slurm-wlm and munge, started on loopback by
//! `scripts/slurm-local.sh`): a three-run sweep goes in as one job array and a two-rank run
//! through `srun`, and the queue sees each through to finished. Needs root, as the daemons do
//! (CI runs as root); the script installs the packages when they are missing.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use workbench::core::queue::{self, JobState};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The local SLURM, stopped when dropped. One at a time: each claims the machine's CPUs.
struct Cluster {
    dir: tempfile::TempDir,
    conf: String,
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
}

static ONE_CLUSTER: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Cluster {
    fn start() -> Self {
        let guard = ONE_CLUSTER
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let dir = tempfile::tempdir().expect("tmp");
        let port = {
            // Two consecutive free ports for slurmctld and slurmd.
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port().clamp(20_000, 60_000)
        };
        let out = Command::new(root().join("scripts/slurm-local.sh"))
            .arg("start")
            .env("WORKBENCH_SLURM_DIR", dir.path())
            .env("WORKBENCH_SLURM_PORT", port.to_string())
            .output()
            .expect("slurm-local.sh");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "the one-node SLURM did not start: {}{}",
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
        let conf = stdout
            .lines()
            .find_map(|l| l.strip_prefix("SLURM_CONF="))
            .expect("SLURM_CONF")
            .to_string();
        Self {
            dir,
            conf,
            _one_at_a_time: guard,
        }
    }

    fn workbench(&self, runs: &Path, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_workbench"))
            .arg("--runs-dir")
            .arg(runs)
            .args(args)
            .env("SLURM_CONF", &self.conf)
            .output()
            .expect("workbench");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "workbench {args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(root().join("scripts/slurm-local.sh"))
            .arg("stop")
            .env("WORKBENCH_SLURM_DIR", self.dir.path())
            .output();
    }
}

#[test]
fn a_sweep_array_and_a_two_rank_run_go_through_a_real_slurm() {
    let cluster = Cluster::start();
    let work = tempfile::tempdir().expect("tmp");
    let runs = work.path().join("runs");
    let smoke = root().join("presets/smoke.ron");
    let one = profile(work.path(), 1);
    let two = profile(work.path(), 2);
    let sweep = work.path().join("lr.ron");
    std::fs::write(
        &sweep,
        format!(
            r#"(name: "lr", base: "{}", grid: {{ "train.lr_g": [1e-4, 2e-4, 4e-4] }})"#,
            smoke.display()
        ),
    )
    .expect("sweep");

    submit_array(&cluster, &runs, &sweep, &one);
    let said = cluster.workbench(
        &runs,
        &[
            "queue",
            "add",
            "--slurm",
            two.to_str().unwrap(),
            "--",
            "--preset",
            smoke.to_str().unwrap(),
            "--steps",
            "12",
        ],
    );
    assert!(said.contains("submitted SLURM job"), "{said}");

    // Follow the queue as the app does, until nothing is pending or running.
    let q = follow_all(&cluster, &runs);
    assert_eq!(q.jobs.len(), 4);
    let logs = || {
        std::fs::read_dir(runs.join("slurm"))
            .map(|d| {
                d.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    };
    for j in &q.jobs {
        assert_eq!(j.state, JobState::Finished, "{j:?}\n{}", logs());
        let r = j.slurm.as_ref().expect("a SLURM job");
        let dir = j.run_dir.as_ref().expect("its run folder");
        let record: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("scheduler.json")).expect("scheduler.json"),
        )
        .expect("json");
        assert_eq!(record["scheduler"], "slurm");
        assert_eq!(record["job_id"].as_str(), Some(r.job_id.as_str()));
        assert_eq!(record["array_index"].as_u64(), r.array_index);
        let status = workbench::core::rundir::RunDir::open(dir)
            .expect("run")
            .status()
            .expect("status");
        assert_eq!(
            status.status,
            workbench::core::rundir::RunStatus::Finished,
            "{dir:?}"
        );
    }
    // The sweep is one array of three tasks; the two-rank run has its second rank's log.
    let arrays: Vec<_> = q
        .jobs
        .iter()
        .filter_map(|j| j.slurm.as_ref()?.array_index)
        .collect();
    assert_eq!(arrays, vec![0, 1, 2]);
    let pair = q
        .jobs
        .iter()
        .find(|j| j.slurm.as_ref().is_some_and(|r| r.array_index.is_none()));
    let pair_dir = pair
        .and_then(|j| j.run_dir.clone())
        .expect("the two-rank run");
    let rank1 = std::fs::read(pair_dir.join("ranks/rank-1/events.log")).expect("rank 1's log");
    assert!(
        String::from_utf8_lossy(&rank1).contains("all 2 ranks hold identical parameters"),
        "{}",
        logs()
    );

    // The app's Queue tab submits the edited preset to the same cluster and follows it.
    use egui_kittest::kittest::Queryable;
    use workbench::gui::{LaunchOptions, Tab, WorkbenchApp};
    std::env::set_var("SLURM_CONF", &cluster.conf);
    let smoke_preset = workbench::core::preset::load_file(&smoke).expect("smoke").0;
    let mut opts = LaunchOptions::new(&runs);
    opts.preset = Some((smoke_preset.preset().clone(), None));
    opts.tab = Tab::Queue;
    let mut h = common::harness(WorkbenchApp::with_waker(opts, None));
    h.state_mut().queue.runner = Some(env!("CARGO_BIN_EXE_workbench").into());
    h.state_mut().queue.slurm_profile = one.display().to_string();
    h.state_mut().slurm_every = Some(Duration::from_secs(1));
    h.run_steps(2);
    h.get_by_label("Add the edited preset").click();
    let started = Instant::now();
    loop {
        h.step();
        let q = &h.state().queue.queue;
        if let Some(j) = q.jobs.get(4) {
            assert!(j.slurm.is_some(), "{j:?}");
            if j.state == JobState::Finished && j.run_dir.is_some() {
                break;
            }
            assert!(
                matches!(j.state, JobState::Pending | JobState::Running),
                "{j:?}\n{}",
                logs()
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "the app's SLURM job did not finish: {:?} {:?}",
            h.state().queue.said,
            h.state().queue.error
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(h.state().queue.said.is_some());
}

/// An ASHA sweep as a job array: every task reports to the sweep's state on the shared disk,
/// and a task the scheduler stops ends itself at that step boundary with a checkpoint (exit 0),
/// so SLURM frees its slot at once and the queue closes it as finished. Three trials against a
/// recorded best at rung 0 that none can beat: each stops at step 10 of 40.
#[test]
fn an_asha_sweep_array_ends_its_stopped_tasks_at_their_rung() {
    use workbench::core::protocol::{Event, Outcome};
    use workbench::core::pruner;
    let cluster = Cluster::start();
    let work = tempfile::tempdir().expect("tmp");
    let runs = work.path().join("runs");
    let smoke = root().join("presets/smoke.ron");
    let one = profile(work.path(), 1);
    let sweep = work.path().join("asha.ron");
    std::fs::write(
        &sweep,
        format!(
            r#"(name: "asha", base: "{}", grid: {{ "train.lr_g": [1e-4, 2e-4, 4e-4], "threads": [1] }},
                scheduler: Some(asha(grace: 10, reduction: 2)))"#,
            smoke.display()
        ),
    )
    .expect("sweep");
    submit_array(&cluster, &runs, &sweep, &one);
    // A trial that already recorded the best possible value (val_swd is never below 0) at
    // rung 0, written before the array's tasks get there (they start from a cold binary).
    let state = runs.join("sweeps/asha").join(pruner::STATE_FILE);
    pruner::update(&state, |s| {
        s.trials.insert(
            "ghost".into(),
            pruner::TrialRecord {
                index: 3,
                rungs: vec![0.0],
                ..Default::default()
            },
        );
    })
    .expect("state");
    let q = follow_all(&cluster, &runs);
    assert_eq!(q.jobs.len(), 3);
    for j in &q.jobs {
        assert_eq!(j.state, JobState::Finished, "{j:?}\n{}", slurm_logs(&runs));
        let dir = j.run_dir.as_ref().expect("its run folder");
        let events = workbench::core::runlog::read_all(&dir.join("events.log"))
            .expect("log")
            .events;
        assert!(
            events.iter().any(|e| matches!(
                e,
                Event::TrialStopped {
                    step: 10,
                    rung: 0,
                    ..
                }
            )),
            "{dir:?}: {events:?}"
        );
        assert!(
            matches!(
                events.last(),
                Some(Event::RunFinished {
                    step: 10,
                    outcome: Outcome::Stopped,
                    ..
                })
            ),
            "{dir:?}: {:?}",
            events.last()
        );
        assert!(dir.join("checkpoints/step-00000010").is_dir(), "{dir:?}");
    }
    // SLURM has nothing of the array left running.
    let squeue = Command::new("squeue")
        .args(["-h", "-o", "%i %T"])
        .env("SLURM_CONF", &cluster.conf)
        .output()
        .expect("squeue");
    assert!(
        String::from_utf8_lossy(&squeue.stdout).trim().is_empty(),
        "{}",
        String::from_utf8_lossy(&squeue.stdout)
    );
    let s = pruner::read(&state).expect("state");
    assert_eq!(s.trials.values().filter(|t| t.stopped.is_some()).count(), 3);
}

/// A SLURM profile in `dir` of `ranks` ranks of one CPU each, ten minutes.
fn profile(dir: &Path, ranks: u32) -> PathBuf {
    let path = dir.join(format!("ranks{ranks}.ron"));
    std::fs::write(
        &path,
        format!("(ranks: {ranks}, cpus_per_rank: 1, time: \"00:10:00\")"),
    )
    .expect("profile");
    path
}

/// Submits the sweep file `sweep` to the cluster as one job array under SLURM profile
/// `profile`.
fn submit_array(cluster: &Cluster, runs: &Path, sweep: &Path, profile: &Path) {
    let said = cluster.workbench(
        runs,
        &[
            "sweep",
            "submit",
            sweep.to_str().unwrap(),
            "--slurm",
            profile.to_str().unwrap(),
        ],
    );
    assert!(said.contains("submitted SLURM job array"), "{said}");
}

/// Follows the queue (as `queue list` does) until no job is pending or running (at most five
/// minutes).
fn follow_all(cluster: &Cluster, runs: &Path) -> queue::Queue {
    let started = Instant::now();
    loop {
        let listed = cluster.workbench(runs, &["queue", "list"]);
        let q = queue::read(&runs.join("queue.json")).expect("queue");
        if q.jobs
            .iter()
            .all(|j| !matches!(j.state, JobState::Pending | JobState::Running))
        {
            return q;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "SLURM jobs did not end: {listed}\n{}",
            slurm_logs(runs)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The queue's view of job `id`.
fn job(runs: &Path, id: u64) -> queue::Job {
    queue::read(&runs.join("queue.json"))
        .expect("queue")
        .jobs
        .into_iter()
        .find(|j| j.id == id)
        .expect("the job")
}

/// Follows the queue (as `queue list` does) until job `id` satisfies `done`.
fn follow_until(
    cluster: &Cluster,
    runs: &Path,
    id: u64,
    limit: Duration,
    done: impl Fn(&queue::Job) -> bool,
) -> queue::Job {
    let started = Instant::now();
    loop {
        let listed = cluster.workbench(runs, &["queue", "list"]);
        let j = job(runs, id);
        if done(&j) {
            return j;
        }
        assert!(
            started.elapsed() < limit,
            "job {id} did not get there: {listed}\n{}",
            slurm_logs(runs)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Every job output file SLURM wrote under `runs/slurm`.
fn slurm_logs(runs: &Path) -> String {
    std::fs::read_dir(runs.join("slurm"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// The embedded default preset for `steps` steps on one thread, a row every step, no
/// periodic checkpoint (a stop writes the only ones).
fn long_args(steps: &str) -> Vec<String> {
    [
        "--steps",
        steps,
        "--device",
        "cpu",
        "--set",
        "threads=1",
        "--set",
        "logging.log_every_steps=1",
        "--set",
        "checkpoints.every_steps=0",
    ]
    .map(str::to_string)
    .to_vec()
}

/// `scontrol requeue` on a running job: SLURM stops it (SIGTERM: a checkpoint of that step)
/// and starts it again, and the job goes on in its own run folder from that checkpoint, with
/// the losses an uninterrupted run has. Meanwhile a `squeue` and `scontrol` that cannot reach
/// the controller change no job's state: the queue keeps the last known one and says so.
#[test]
fn a_requeued_job_continues_its_own_run_and_a_silent_scheduler_closes_nothing() {
    let cluster = Cluster::start();
    let work = tempfile::tempdir().expect("tmp");
    let runs = work.path().join("runs");
    let one = profile(work.path(), 1);
    let args = long_args("150");
    let mut add = vec!["queue", "add", "--slurm", one.to_str().unwrap(), "--"];
    add.extend(args.iter().map(String::as_str));
    cluster.workbench(&runs, &add);
    let id = 0;
    // Running, with rows logged.
    let running = follow_until(&cluster, &runs, id, Duration::from_secs(120), |j| {
        j.state == JobState::Running
            && j.run_dir.as_ref().is_some_and(|d| {
                std::fs::read_to_string(d.join("losses.csv")).is_ok_and(|c| c.lines().count() > 8)
            })
    });
    let run = running.run_dir.clone().expect("its run folder");

    // The controller stops answering: every job keeps its state, with a note.
    let shims = work.path().join("shims");
    std::fs::create_dir(&shims).expect("dir");
    for tool in ["squeue", "scontrol"] {
        let path = shims.join(tool);
        std::fs::write(
            &path,
            "#!/bin/sh\necho 'slurm_load_jobs error: Socket timed out on send/recv operation' >&2\nexit 1\n",
        )
        .expect("shim");
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let path = format!(
        "{}:{}",
        shims.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_workbench"))
        .arg("--runs-dir")
        .arg(&runs)
        .args(["queue", "list"])
        .env("SLURM_CONF", &cluster.conf)
        .env("PATH", &path)
        .output()
        .expect("queue list");
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{listed}");
    let j = job(&runs, id);
    assert_eq!(j.state, JobState::Running, "{listed}");
    assert!(
        j.note
            .as_deref()
            .is_some_and(|n| n.contains("SLURM did not answer") && n.contains("Socket timed out")),
        "{j:?}"
    );
    assert!(listed.contains("SLURM did not answer"), "{listed}");

    let slurm_id = running.slurm.as_ref().expect("slurm").job_id.clone();
    let out = Command::new("scontrol")
        .args(["requeue", &slurm_id])
        .env("SLURM_CONF", &cluster.conf)
        .output()
        .expect("scontrol requeue");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done = follow_until(&cluster, &runs, id, Duration::from_secs(300), |j| {
        !matches!(j.state, JobState::Pending | JobState::Running)
    });
    assert_eq!(
        done.state,
        JobState::Finished,
        "{done:?}\n{}",
        slurm_logs(&runs)
    );
    assert_eq!(done.run_dir.as_ref(), Some(&run), "the same run folder");
    let folders = std::fs::read_dir(&runs)
        .expect("runs")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().join("preset.ron").is_file())
        })
        .count();
    assert_eq!(folders, 1, "no second run folder");
    let record = workbench::core::scheduler::Record::read(&run).expect("scheduler.json");
    assert_eq!(record.restarts(), 1, "{record:?}");
    let log =
        String::from_utf8_lossy(&std::fs::read(run.join("events.log")).expect("log")).into_owned();
    assert!(log.contains("stopped by SIGTERM"), "{}", slurm_logs(&runs));

    // The same arguments, uninterrupted, outside SLURM.
    let plain = work.path().join("plain");
    let out = Command::new(env!("CARGO_BIN_EXE_workbench"))
        .arg("--runs-dir")
        .arg(&plain)
        .arg("train")
        .args(&args)
        .output()
        .expect("train");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plain_run = std::fs::read_dir(&plain)
        .expect("runs")
        .next()
        .expect("a run")
        .expect("entry")
        .path();
    assert_eq!(
        std::fs::read_to_string(plain_run.join("losses.csv")).expect("csv"),
        std::fs::read_to_string(run.join("losses.csv")).expect("csv"),
        "requeued and uninterrupted runs log the same rows"
    );
}

/// A sweep whose jobs outlast a one-minute time limit finishes by itself: SLURM's warning
/// (SIGUSR1) stops each run with a checkpoint, the job requeues itself, and each allocation
/// goes on where the last stopped, until every run reaches its last step.
#[test]
fn a_sweep_past_its_time_limit_finishes_by_requeue() {
    let cluster = Cluster::start();
    let work = tempfile::tempdir().expect("tmp");
    let runs = work.path().join("runs");
    let profile = work.path().join("short.ron");
    std::fs::write(
        &profile,
        "(ranks: 1, cpus_per_rank: 1, time: \"00:01:00\", warn_secs: 10)",
    )
    .expect("profile");
    // The embedded default as one phase of 450 steps (about a minute of training at 7 steps
    // a second on one thread: more than one allocation's share), no periodic checkpoint.
    let text =
        std::fs::read_to_string(root().join("presets/wgan_gp_sprites32.ron")).expect("preset");
    let head = &text[..text.find("    phases: [").expect("phases")];
    std::fs::write(
        work.path().join("long.ron"),
        format!("{head}    phases: [(name: \"main\", length: steps(450), overrides: {{}}, start_from_best: false)],\n)\n"),
    )
    .expect("base");
    let sweep = work.path().join("seeds.ron");
    std::fs::write(
        &sweep,
        r#"(name: "seeds", base: "long.ron", grid: { "seed": [1, 2], "threads": [1], "checkpoints.every_steps": [0] })"#,
    )
    .expect("sweep");
    submit_array(&cluster, &runs, &sweep, &profile);
    let ids: Vec<u64> = queue::read(&runs.join("queue.json"))
        .expect("queue")
        .jobs
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(ids.len(), 2);
    for id in ids {
        let j = follow_until(&cluster, &runs, id, Duration::from_secs(600), |j| {
            !matches!(j.state, JobState::Pending | JobState::Running)
        });
        assert_eq!(j.state, JobState::Finished, "{j:?}\n{}", slurm_logs(&runs));
        let run = j.run_dir.clone().expect("run folder");
        let log = String::from_utf8_lossy(&std::fs::read(run.join("events.log")).expect("log"))
            .into_owned();
        assert!(
            log.contains("stopped by SIGUSR1"),
            "job {id} never needed a second allocation\n{}",
            slurm_logs(&runs)
        );
        let record = workbench::core::scheduler::Record::read(&run).expect("scheduler.json");
        assert!(record.restarts() >= 1, "{record:?}");
        let status = workbench::core::rundir::RunDir::open(&run)
            .expect("run")
            .status()
            .expect("status");
        assert_eq!(status.last_step, 450, "{}", slurm_logs(&runs));
    }
}

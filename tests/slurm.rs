//! A real one-node SLURM (Debian's slurm-wlm and munge, started on loopback by
//! `scripts/slurm-local.sh`): a three-run sweep goes in as one job array and a two-rank run
//! through `srun`, and the queue sees each through to finished. Needs root, as the daemons do
//! (CI runs as root); the script installs the packages when they are missing.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use workbench::core::queue::{self, JobState};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The local SLURM, stopped when dropped.
struct Cluster {
    dir: tempfile::TempDir,
    conf: String,
}

impl Cluster {
    fn start() -> Self {
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
        Self { dir, conf }
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
    let one = work.path().join("one.ron");
    std::fs::write(&one, "(ranks: 1, cpus_per_rank: 1, time: \"00:10:00\")").expect("profile");
    let two = work.path().join("two.ron");
    std::fs::write(&two, "(ranks: 2, cpus_per_rank: 1, time: \"00:10:00\")").expect("profile");
    let sweep = work.path().join("lr.ron");
    std::fs::write(
        &sweep,
        format!(
            r#"(name: "lr", base: "{}", grid: {{ "train.lr_g": [1e-4, 2e-4, 4e-4] }})"#,
            smoke.display()
        ),
    )
    .expect("sweep");

    let said = cluster.workbench(
        &runs,
        &[
            "sweep",
            "submit",
            sweep.to_str().unwrap(),
            "--slurm",
            one.to_str().unwrap(),
        ],
    );
    assert!(said.contains("submitted SLURM job array"), "{said}");
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
    let started = Instant::now();
    let q = loop {
        let listed = cluster.workbench(&runs, &["queue", "list"]);
        let q = queue::read(&runs.join("queue.json")).expect("queue");
        assert_eq!(q.jobs.len(), 4, "{listed}");
        if q.jobs
            .iter()
            .all(|j| !matches!(j.state, JobState::Pending | JobState::Running))
        {
            break q;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "SLURM jobs did not end: {listed}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
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
    let mut h = egui_kittest::Harness::builder()
        .with_size(egui::vec2(1280.0, 860.0))
        .build_ui_state(
            |ui, app: &mut WorkbenchApp| {
                app.logic(&ui.ctx().clone());
                app.show(ui);
            },
            WorkbenchApp::with_waker(opts, None),
        );
    h.state_mut().queue.runner = Some(env!("CARGO_BIN_EXE_workbench").into());
    h.state_mut().queue.slurm_profile = one.display().to_string();
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

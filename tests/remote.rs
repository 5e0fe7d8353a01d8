//! Runs on another machine over a pipe (`workbench serve --stdio`): here the pipe is the
//! binary itself, or a real `sshd` on loopback when the machine has one (`scripts/sshd-local.sh`).

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use workbench::core::protocol::{Event, Outcome};
use workbench::core::remote::{Connection, RemoteLog, Reply, Request};

/// A headless run training into `runs`, slowed so that it lasts (50 ms a batch).
fn headless(runs: &Path, preset: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_workbench"))
        .args(["train", "--preset"])
        .arg(preset)
        .arg("--runs-dir")
        .arg(runs)
        .args(["--device", "cpu", "--set", "threads=1"])
        .env("WORKBENCH_FAILPOINT", "slow-data:0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("train")
}

fn the_run(runs: &Path) -> String {
    let t0 = Instant::now();
    loop {
        if let Some(d) = std::fs::read_dir(runs)
            .ok()
            .and_then(|mut d| d.find_map(|e| e.ok()))
            .filter(|e| e.path().join("events.log").is_file())
        {
            return d.file_name().to_string_lossy().into_owned();
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "no run");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Follows `run` through `argv` (a `serve --stdio` command), cutting the connection once in
/// the middle and stopping the run through the same pipe; returns what arrived.
fn follow_cut_and_stop(
    argv: &[String],
    runs: &Path,
    run: &str,
    child: std::process::Child,
) -> Vec<Event> {
    let mut log = RemoteLog::new(argv.to_vec(), run.to_string());
    let mut got: Vec<Event> = Vec::new();
    let t0 = Instant::now();
    let mut cut = false;
    let mut stopped = false;
    loop {
        got.extend(log.poll().expect("poll"));
        let rows = got
            .iter()
            .filter(|e| matches!(e, Event::Scalars { .. }))
            .count();
        if !cut && rows >= 3 {
            // The connection dies mid-stream, as a dropped SSH would.
            let pid = log.connection().expect("connected").pid();
            Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status()
                .expect("kill");
            cut = true;
        }
        if cut && !stopped && log.down.is_none() && rows >= 6 {
            let (mut c, _) = Connection::open(argv).expect("connect");
            let (reply, _) = c
                .ask(&Request::Command {
                    run: run.to_string(),
                    command: workbench::core::protocol::Command::StopAndSave,
                })
                .expect("command");
            assert!(matches!(reply, Reply::Sent { .. }));
            stopped = true;
        }
        if got.last().is_some_and(Event::is_terminal) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "the run did not end: {:?}",
            log.down
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("train");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(cut && stopped);
    // No gap and no duplicate: exactly the run's log, and the rows of its losses.csv.
    let whole = workbench::core::runlog::read_all(&runs.join(run).join("events.log")).expect("log");
    assert_eq!(got, whole.events);
    assert!(matches!(
        got.last(),
        Some(Event::RunFinished {
            outcome: Outcome::Stopped,
            ..
        })
    ));
    let csv = std::fs::read_to_string(runs.join(run).join("losses.csv")).expect("csv");
    let csv_steps: Vec<u64> = csv
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next()?.parse().ok())
        .collect();
    let mut row_steps: Vec<u64> = got
        .iter()
        .filter_map(|e| match e {
            Event::Scalars { rows } => Some(rows.iter().map(|r| r.step).collect::<Vec<_>>()),
            _ => None,
        })
        .flatten()
        .collect();
    row_steps.dedup();
    assert_eq!(row_steps, csv_steps);
    got
}

/// Through the binary as the pipe: a run followed while it trains, its connection killed
/// mid-stream and reopened from the same byte offset, stopped through the pipe; what arrived
/// is exactly its log.
#[test]
fn a_remote_run_is_followed_across_a_dropped_connection_with_no_gap() {
    let tmp = tempfile::tempdir().expect("tmp");
    let runs = tmp.path().join("runs");
    let child = headless(&runs, &common::long_smoke(tmp.path()));
    let run = the_run(&runs);
    let argv: Vec<String> = vec![
        env!("CARGO_BIN_EXE_workbench").into(),
        "--runs-dir".into(),
        runs.display().to_string(),
        "serve".into(),
        "--stdio".into(),
    ];
    let (mut c, hello) = Connection::open(&argv).expect("connect");
    assert!(matches!(
        hello,
        Reply::Hello {
            version: workbench::core::remote::VERSION,
            ..
        }
    ));
    let (list, _) = c.ask(&Request::List).expect("list");
    assert!(
        matches!(&list, Reply::Runs { runs } if runs.iter().any(|r| r.run == run && r.status == "running")),
        "{list:?}"
    );
    drop(c);
    follow_cut_and_stop(&argv, &runs, &run, child);
}

/// The same through a real `sshd` on loopback (its own port, host key and client key, made by
/// `scripts/sshd-local.sh`), when the machine can run one; skipped, saying why, otherwise.
#[test]
fn a_remote_run_is_followed_over_real_ssh() {
    let tmp = tempfile::tempdir().expect("tmp");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/sshd-local.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(tmp.path())
        .output()
        .expect("sshd-local");
    if !out.status.success() {
        eprintln!(
            "skipped: no sshd here ({})",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return;
    }
    // The script prints the ssh command line that reaches it.
    let ssh: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect();
    let runs = tmp.path().join("runs");
    let child = headless(&runs, &common::long_smoke(tmp.path()));
    let run = the_run(&runs);
    let mut argv = ssh;
    argv.extend([
        env!("CARGO_BIN_EXE_workbench").to_string(),
        "--runs-dir".into(),
        runs.display().to_string(),
        "serve".into(),
        "--stdio".into(),
    ]);
    follow_cut_and_stop(&argv, &runs, &run, child);
    let pid = std::fs::read_to_string(tmp.path().join("sshd.pid")).unwrap_or_default();
    let _ = Command::new("kill").arg(pid.trim()).status();
}

//! Runs on another machine over a pipe (`workbench serve --stdio`): here the pipe is the
//! binary itself, or a real `sshd` on loopback when the machine has one (`scripts/sshd-local.sh`).

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use workbench::core::protocol::{Event, Outcome};
use workbench::core::remote::{Connection, RemoteLog, Reply, Request};

/// A headless run training into `runs`, slowed so that it lasts (50 ms a batch).
fn headless(runs: &Path, preset: &Path) -> std::process::Child {
    common::headless(runs, preset, Some("slow-data:0"))
}

/// The folder name of the run training into `runs`.
fn the_run(runs: &Path) -> String {
    common::first_run(runs)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
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
/// Then the app's own model over it: a remote added, a run followed from its row, paused,
/// resumed, its connection killed and taken up again, stopped, with exactly its CSV's rows.
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
    // The app's own model over the same sshd: it adds the remote, follows a run from its row,
    // pauses and resumes it, loses the connection and reconnects, and stops it.
    let words: Vec<String> = argv[..argv.len() - 5].to_vec();
    app_follows_a_run_over_ssh(&words, tmp.path());
    let pid = std::fs::read_to_string(tmp.path().join("sshd.pid")).unwrap_or_default();
    let _ = Command::new("kill").arg(pid.trim()).status();
}

/// `ssh_words`: the ssh command line that reaches the sshd, its destination last.
fn app_follows_a_run_over_ssh(ssh_words: &[String], tmp: &Path) {
    use egui_kittest::kittest::Queryable;
    use workbench::core::runview::RunState;
    use workbench::gui::{LaunchOptions, Tab, WorkbenchApp};
    let runs = tmp.join("app-runs");
    let child = headless(&runs, &common::long_smoke(tmp));
    let run = the_run(&runs);
    // The app runs `PROGRAM -o BatchMode=yes DESTINATION workbench ...`: the program is the
    // ssh command line with this sshd's port and keys.
    let (host, options) = ssh_words.split_last().expect("ssh words");
    let wrap = tmp.join("ssh-wrap.sh");
    std::fs::write(
        &wrap,
        format!("#!/bin/sh\nexec {} \"$@\"\n", options.join(" ")),
    )
    .expect("wrapper");
    Command::new("chmod")
        .arg("+x")
        .arg(&wrap)
        .status()
        .expect("chmod");
    let mut opts = LaunchOptions::new(&tmp.join("local-runs"));
    opts.tab = Tab::Runs;
    let mut app = WorkbenchApp::with_waker(opts, None);
    app.remote_ssh = wrap.display().to_string();
    app.add_remote(
        host,
        env!("CARGO_BIN_EXE_workbench"),
        &runs.display().to_string(),
    );
    let mut h = common::harness(app);
    let row = std::path::PathBuf::from(format!("{host}:{run}"));
    common::step_until(&mut h, "the remote's rows", |a| {
        a.run_list.iter().any(|r| r.dir == row)
            || a.remotes.first().is_some_and(|s| s.error.is_some())
    });
    assert_eq!(h.state().remotes[0].error, None);
    h.state_mut().open_run(&row);
    h.state_mut().tab = Tab::Dashboard;
    common::step_until(&mut h, "the run followed", |a| {
        a.current_run()
            .is_some_and(|r| r.view.state == RunState::Running && r.view.step > 0)
    });
    h.get_by_label("Pause").click();
    common::step_until(&mut h, "the pause", |a| {
        a.current_run()
            .is_some_and(|r| r.view.state == RunState::Paused)
    });
    h.get_by_label("Resume").click();
    common::step_until(&mut h, "the resume", |a| {
        a.current_run()
            .is_some_and(|r| r.view.state == RunState::Running)
    });
    // The connection drops mid-stream: both ends of this follow (the ssh client here and
    // `serve` on the other side carry the runs folder and `serve --stdio`).
    let before = h.state().current_run().map_or(0, |r| r.view.step);
    let killed = Command::new("pkill")
        .args(["-9", "-f", &format!("{} serve --stdio", runs.display())])
        .status()
        .expect("pkill");
    assert!(killed.success(), "no ssh process of the follow to kill");
    common::step_until(&mut h, "new rows after the reconnection", |a| {
        a.current_run()
            .is_some_and(|r| r.view.step > before + 5 && r.down.is_none())
    });
    common::stop_and_save(&mut h, child);
    // Exactly the rows of its losses.csv: no gap, no duplicate.
    let csv = std::fs::read_to_string(runs.join(&run).join("losses.csv")).expect("csv");
    let csv_steps: Vec<f64> = csv
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next()?.parse().ok())
        .collect();
    let view = &h.state().current_run().expect("shown").view;
    let d_loss: Vec<f64> = view.series["d_loss"].points().map(|(x, _)| x).collect();
    assert!(d_loss.windows(2).all(|w| w[0] < w[1]), "{d_loss:?}");
    // Every step the view has a scalar at (system samples aside, which the CSV leaves out).
    let mut steps: Vec<f64> = view
        .series
        .iter()
        .filter(|(name, _)| !name.starts_with("sys_"))
        .flat_map(|(_, s)| s.points().map(|(x, _)| x).collect::<Vec<_>>())
        .collect();
    steps.sort_by(f64::total_cmp);
    steps.dedup();
    assert_eq!(steps, csv_steps);
}

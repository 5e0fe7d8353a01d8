//! Helpers the engine-level test files share.

#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use workbench::core::protocol::Event;
use workbench::core::rundir::RunDir;
use workbench::engine::export;
use workbench::engine::worker::{self, RunRequest};

/// Asserts that a run's last event says it completed at `step`.
pub fn assert_completed(events: &[Event], step: u64) {
    assert!(
        matches!(
            events.last(),
            Some(Event::RunFinished {
                outcome: workbench::core::protocol::Outcome::Completed,
                step: s,
                ..
            }) if *s == step
        ),
        "not completed at step {step}: {:?}",
        events.last()
    );
}

/// Runs to the end and returns the run's folder and every event.
pub fn run_to_end(req: RunRequest) -> (PathBuf, Vec<Event>) {
    let handle = worker::spawn(worker::prepare(req).expect("prepare"), None).expect("spawn");
    let dir = handle.run_dir().to_path_buf();
    let mut events = Vec::new();
    loop {
        let e = handle
            .events()
            .recv_timeout(Duration::from_secs(300))
            .expect("event");
        let end = e.is_terminal();
        events.push(e);
        if end {
            break;
        }
    }
    handle.join();
    (dir, events)
}

/// Every logged scalar by step, but the measurements of the machine (step times, system
/// samples), which no two runs share: what an exact resume or branch must reproduce.
pub fn scalars(run: &Path) -> BTreeMap<u64, BTreeMap<String, f64>> {
    let mut all = all_scalars(run);
    for row in all.values_mut() {
        row.retain(|k, _| !measured(k));
    }
    all
}

/// Every logged scalar by step, the machine's measurements included.
pub fn all_scalars(run: &Path) -> BTreeMap<u64, BTreeMap<String, f64>> {
    let (by_step, _) = export::scalars_by_step(&RunDir::open(run).expect("run")).expect("scalars");
    by_step.into_iter().map(|(s, (_, v))| (s, v)).collect()
}

/// A step time or a system sample (`MetricKind::Timing` and `System`).
pub fn measured(name: &str) -> bool {
    name == "step_time_ms" || name.starts_with("time_") || name.starts_with("sys_")
}

/// Held by every test of a binary that trains in-process where exact repetition matters:
/// libtorch's random generator is one per process, so two runs training at once would draw
/// from each other's stream.
pub fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The smoke preset with phases too long to end by themselves (a run stopped by a command),
/// written into `dir`.
pub fn long_smoke(dir: &Path) -> PathBuf {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("presets/smoke.ron"))
            .expect("smoke")
            .replace("steps(20)", "steps(1000000)");
    let path = dir.join("long_smoke.ron");
    std::fs::write(&path, text).expect("preset");
    path
}

/// The app driven as its window drives it (its logic, then its frame), at 1280x860.
pub fn harness(
    app: workbench::gui::WorkbenchApp,
) -> egui_kittest::Harness<'static, workbench::gui::WorkbenchApp> {
    egui_kittest::Harness::builder()
        .with_size(egui::vec2(1280.0, 860.0))
        .build_ui_state(
            |ui, app: &mut workbench::gui::WorkbenchApp| {
                app.logic(&ui.ctx().clone());
                app.show(ui);
            },
            app,
        )
}

/// Steps the app until `done` holds (at most three minutes), then two frames more.
pub fn step_until(
    h: &mut egui_kittest::Harness<'_, workbench::gui::WorkbenchApp>,
    what: &str,
    done: impl Fn(&workbench::gui::WorkbenchApp) -> bool,
) {
    let t0 = std::time::Instant::now();
    while !done(h.state()) {
        assert!(
            t0.elapsed() < Duration::from_secs(180),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
        h.step();
    }
    h.run_steps(2);
}

/// A `workbench train` of `preset` into `runs` in a process of its own, on one CPU thread
/// (with `failpoint`, e.g. `slow-data:0` for 50 ms a batch, so that it lasts).
pub fn headless(runs: &Path, preset: &Path, failpoint: Option<&str>) -> std::process::Child {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_workbench"));
    c.args(["train", "--preset"])
        .arg(preset)
        .arg("--runs-dir")
        .arg(runs)
        .args(["--device", "cpu", "--set", "threads=1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    if let Some(f) = failpoint {
        c.env("WORKBENCH_FAILPOINT", f);
    }
    c.spawn().expect("train")
}

/// The folder of the first run under `runs` that has begun its log (waits up to a minute).
pub fn first_run(runs: &Path) -> PathBuf {
    let t0 = std::time::Instant::now();
    loop {
        if let Some(d) = std::fs::read_dir(runs).ok().and_then(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| p.join("events.log").is_file())
        }) {
            return d;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no run in {}",
            runs.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Clicks the top bar's Stop and save for the run shown, waits until its view says it
/// stopped, and checks that its process (`child`, a headless run) ended well.
pub fn stop_and_save(
    h: &mut egui_kittest::Harness<'_, workbench::gui::WorkbenchApp>,
    child: std::process::Child,
) {
    use egui_kittest::kittest::Queryable;
    h.get_by_label("Stop and save").click();
    step_until(h, "the run to stop", |a| {
        a.current_run().is_some_and(|r| {
            r.view.state
                == workbench::core::runview::RunState::Finished(
                    workbench::core::protocol::Outcome::Stopped,
                )
        })
    });
    let out = child.wait_with_output().expect("train");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

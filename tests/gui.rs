//! GUI tests with egui_kittest: the app's logic driven through its widgets (no renderer), and
//! a few image snapshots rendered with software wgpu (lavapipe or llvmpipe).

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use common::{harness, step_until};

use std::path::Path;
use std::time::{Duration, Instant};

use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use serde_json::json;

use workbench::core::preset::{self, Phase, PhaseLength};
use workbench::core::protocol::{Event, MetricDef, ScalarRow};
use workbench::core::runview::RunState;
use workbench::gui::{LaunchOptions, Tab, WorkbenchApp};

fn smoke_options(runs: &Path) -> LaunchOptions {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("presets/smoke.ron");
    let (p, _) = preset::load_file(&path).expect("smoke");
    let p = p
        .preset()
        .with_overrides([("threads", 1.into()), ("device", "cpu".into())])
        .expect("overrides");
    // Shown as the source, so relative: snapshots must not depend on the checkout's path.
    LaunchOptions {
        preset: Some((p, Some(std::path::PathBuf::from("presets/smoke.ron")))),
        ..LaunchOptions::new(runs)
    }
}

/// The app following the run at `dir`, on `tab`, with the step cursor at `cursor`.
fn following(runs: &Path, dir: std::path::PathBuf, tab: Tab, cursor: Option<u64>) -> WorkbenchApp {
    let mut opts = LaunchOptions::new(runs);
    opts.open = vec![dir];
    opts.tab = tab;
    let mut app = WorkbenchApp::with_waker(opts, None);
    app.cursor = cursor;
    app
}

#[test]
fn an_invalid_field_disables_start_and_says_why_beside_the_field() {
    let runs = tempfile::tempdir().unwrap();
    let mut h = harness(WorkbenchApp::with_waker(smoke_options(runs.path()), None));
    h.run_steps(2);
    h.state_mut()
        .presets
        .editor
        .set_field("train.lr_g", json!(-1.0))
        .unwrap();
    h.run_steps(2);
    let why = h.state().presets.editor.start_blocker().expect("blocked");
    assert!(why.contains("train.lr_g"), "{why}");
    // The problem is shown beside the field and in the top bar.
    let spec = preset::Family::WganGp
        .specs()
        .iter()
        .find(|s| s.path == "train.lr_g")
        .unwrap();
    h.get_by_label(&format!("out of range; allowed: {}", spec.kind.allowed()));
    h.get_by_label_contains("cannot start: fix train.lr_g");
    // Clicking the disabled Start does nothing.
    h.get_by_label("Start").click();
    h.run_steps(2);
    assert!(h.state().runs.is_empty());
    // Fixing it enables Start again.
    h.state_mut()
        .presets
        .editor
        .set_field("train.lr_g", json!(2e-4))
        .unwrap();
    h.run_steps(1);
    assert!(h.state().presets.editor.start_blocker().is_none());
}

#[test]
fn phases_are_added_and_reordered_by_clicking_and_the_preview_follows() {
    let runs = tempfile::tempdir().unwrap();
    let mut opts = smoke_options(runs.path());
    opts.tab = Tab::Phases;
    let mut h = harness(WorkbenchApp::with_waker(opts, None));
    h.run_steps(2);
    let before = h.state().presets.editor.schedule().phases.len();
    h.get_by_label("Add phase").click();
    h.run_steps(2);
    let s = h.state().presets.editor.schedule().clone();
    assert_eq!(s.phases.len(), before + 1);
    assert_eq!(
        s.phases.last().unwrap().end - s.phases.last().unwrap().start,
        1000
    );
    // The new phase is selected; move it earlier.
    h.get_by_label("Move earlier").click();
    h.run_steps(2);
    let names: Vec<String> = h
        .state()
        .presets
        .editor
        .schedule()
        .phases
        .iter()
        .map(|p| p.name.clone())
        .collect();
    assert_eq!(names[before - 1], format!("phase{before}"));
    assert!(h.state().presets.editor.start_blocker().is_none());
    // An override added to a phase shows up as a step in the scheduled quantity.
    h.state_mut().presets.editor.push_phase(Phase {
        name: "slow".into(),
        length: PhaseLength::Steps(50),
        overrides: [("train.lr_g".to_string(), preset::OverrideValue::Float(1e-5))].into(),
        start_from_best: true,
    });
    h.run_steps(2);
    let sched = h.state().presets.editor.schedule();
    let lr = sched
        .quantities
        .iter()
        .find(|q| q.path == "train.lr_g")
        .unwrap();
    assert_eq!(*lr.values.last().unwrap(), 1e-5);
}

#[test]
fn start_trains_on_the_worker_and_the_dashboard_fills_in() {
    let runs = tempfile::tempdir().unwrap();
    let mut h = harness(WorkbenchApp::with_waker(smoke_options(runs.path()), None));
    h.run_steps(2);
    h.get_by_label("Start").click();
    // The run is prepared off the UI thread (device probe, data checks, run folder): the
    // frame after the click returns at once, and a later frame picks the run up.
    h.run_steps(2);
    assert!(h.state().is_starting() || !h.state().runs.is_empty());
    step_until(&mut h, "the run to start", |a| !a.runs.is_empty());
    assert_eq!(h.state().tab, Tab::Dashboard);
    assert!(h.state().runs[0].is_live());
    step_until(&mut h, "the run to finish", |a| {
        a.current_run().is_some_and(|r| r.view.state.is_over())
    });
    let run = h.state().current_run().unwrap();
    assert_eq!(
        run.view.state,
        RunState::Finished(workbench::core::protocol::Outcome::Completed)
    );
    assert!(run.view.series["d_loss"].len() >= 10);
    assert!(!run.view.samples.is_empty());
    // Every scalar has a plot, and the event list has the phase starts.
    assert!(h.get_all_by_label("d_loss").next().is_some());
    h.get_by_label_contains("phase 1 `b` (");
    // Clicking an event row (the newest is at the top) moves the cursor; the sample view
    // then shows the sample logged nearest to it.
    let newest = run.view.markers.last().unwrap().step;
    h.get_all_by_label(&format!("{newest:>7}"))
        .next()
        .unwrap()
        .click();
    h.run_steps(2);
    assert_eq!(h.state().cursor, Some(newest));
    h.state_mut().tab = Tab::Samples;
    h.run_steps(3);
    let view = &h.state().current_run().unwrap().view;
    let want = &view.samples[view.sample_near(newest).unwrap()];
    let shown = h
        .state()
        .samples
        .viewer
        .shown
        .clone()
        .expect("a sample is shown");
    assert!(
        shown.ends_with(&format!("#{}", want.step)),
        "{shown} vs step {}",
        want.step
    );
}

/// At the default 1280x800 window the top bar is one row: the tabs and the run controls
/// (Start, Pause, Stop and save, and the Run... menu with the rarer commands) share it; a
/// narrow window wraps it without losing a control. The menu's commands reach the run.
#[test]
fn the_top_bar_is_one_row_at_1280_and_its_menu_drives_the_run() {
    let runs = tempfile::tempdir().unwrap();
    let mut h = Harness::builder()
        .with_size(egui::vec2(1280.0, 800.0))
        .build_ui_state(
            |ui, app: &mut WorkbenchApp| {
                app.logic(&ui.ctx().clone());
                app.show(ui);
            },
            WorkbenchApp::with_waker(smoke_options(runs.path()), None),
        );
    h.run_steps(2);
    h.get_by_label("Start").click();
    step_until(&mut h, "the run to start", |a| {
        a.current_run().is_some_and(|r| r.is_live())
    });
    h.get_by_label("Pause").click();
    step_until(&mut h, "the run to pause", |a| {
        a.current_run()
            .is_some_and(|r| r.view.state == RunState::Paused)
    });
    let top = [
        "Generative Workbench",
        "Presets",
        "Dashboard",
        "Queue",
        "Start",
        "Resume",
        "Stop and save",
        "Run...",
    ];
    let rows = |h: &Harness<'_, WorkbenchApp>| -> Vec<f32> {
        top.iter()
            .map(|l| h.get_by_label(l).rect().center().y)
            .collect()
    };
    let ys = rows(&h);
    assert!(
        ys.iter().all(|y| (y - ys[0]).abs() < 4.0),
        "one row at 1280: {:?}",
        top.iter().zip(&ys).collect::<Vec<_>>()
    );
    let right = h.get_by_label("Run...").rect().right();
    assert!(right <= 1280.0, "the menu fits: {right}");
    // Checkpoint now from the menu, while paused: a checkpoint marker appears.
    let marks = |a: &WorkbenchApp| {
        a.current_run().map_or(0, |r| {
            r.view
                .markers
                .iter()
                .filter(|m| m.label.starts_with("ckpt"))
                .count()
        })
    };
    let n = marks(h.state());
    h.get_by_label("Run...").click();
    h.run_steps(2);
    h.get_by_label("Checkpoint now").click();
    step_until(&mut h, "the checkpoint", |a| marks(a) > n);
    // A narrow window wraps the bar onto a second row, every control still there.
    h.set_size(egui::vec2(760.0, 800.0));
    h.run_steps(3);
    let ys = rows(&h);
    assert!(
        ys.iter().any(|y| (y - ys[0]).abs() > 8.0),
        "wraps when narrow: {ys:?}"
    );
    for l in top {
        assert!(h.get_by_label(l).rect().right() <= 760.0, "{l} on screen");
    }
    // While it trains, the preset form says it edits the next run and greys what only a
    // restart changes.
    h.get_by_label("Presets").click();
    h.run_steps(3);
    h.get_by_label_contains("is training: this form edits the next run");
    // Stop and save ends the run with a checkpoint.
    h.get_by_label("Stop and save").click();
    step_until(&mut h, "the run to stop", |a| {
        a.current_run().is_some_and(|r| r.view.state.is_over())
    });
}

#[test]
fn a_run_written_elsewhere_is_opened_and_followed_from_its_log() {
    let runs = tempfile::tempdir().unwrap();
    // Write a run directory the way `workbench train` in another process would.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_workbench"))
        .args(["train", "--preset"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("presets/smoke.ron"))
        .arg("--runs-dir")
        .arg(runs.path())
        .args(["--device", "cpu", "--set", "threads=1", "--steps", "25"])
        .output()
        .expect("train");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = std::fs::read_dir(runs.path())
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let mut opts = smoke_options(runs.path());
    opts.tab = Tab::Runs;
    let mut h = harness(WorkbenchApp::with_waker(opts, None));
    h.run_steps(2);
    step_until(&mut h, "the runs list", |a| !a.run_list_pending());
    // The runs list shows it with its status; Open follows it.
    h.get_by_label("finished");
    h.get_by_label("Open").click();
    h.run_steps(2);
    wait_for_logs(&mut h);
    let run = h.state().current_run().unwrap();
    assert_eq!(run.dir, dir);
    assert!(!run.is_live());
    assert!(run.view.series["d_loss"].len() > 5);
    // Samples come from the PNGs under media/, read by the app off the UI thread.
    h.state_mut().tab = Tab::Samples;
    wait_for_images(&mut h);
    assert!(
        h.state().samples.viewer.error.is_none(),
        "{:?}",
        h.state().samples.viewer.error
    );
    assert!(h.state().samples.viewer.shown.is_some());
}

#[test]
fn draining_a_flood_of_events_stays_within_the_frame_budget() {
    let runs = tempfile::tempdir().unwrap();
    let dir = runs.path().join("flood");
    std::fs::create_dir_all(&dir).unwrap();
    let mut w = started_log(&dir, "flood", None, Vec::new());
    for chunk in 0..200u64 {
        let rows = (0..1000u64)
            .map(|i| ScalarRow {
                step: chunk * 1000 + i,
                wall_time: 0.0,
                values: vec![
                    ("d_loss".into(), ((chunk * 1000 + i) as f64).sin()),
                    ("g_loss".into(), 1.0),
                ],
            })
            .collect();
        w.append(&Event::Scalars { rows }).unwrap();
    }
    w.sync().unwrap();
    let mut opts = LaunchOptions::new(runs.path());
    opts.open = vec![dir];
    opts.tab = Tab::Dashboard;
    let mut h = harness(WorkbenchApp::with_waker(opts, None));
    h.run_steps(3);
    wait_for_logs(&mut h);
    let view = &h.state().current_run().unwrap().view;
    assert_eq!(view.series["d_loss"].len(), 200_000);
    // Every point is kept, but each frame draws O(pixels) of them.
    let drawn = h.state().dashboard.points_drawn;
    assert!(drawn > 0 && drawn < 20_000, "drew {drawn} points");
}

/// A run's event log in `dir`, begun with the run's start (a WGAN-GP run on the CPU).
fn started_log(
    dir: &Path,
    name: &str,
    total_steps: Option<u64>,
    metrics: Vec<MetricDef>,
) -> workbench::core::runlog::LogWriter {
    let mut w = workbench::core::runlog::LogWriter::open(&dir.join("events.log")).unwrap();
    w.append(&Event::RunStarted {
        run_dir: name.into(),
        name: name.into(),
        family: "wgan_gp".into(),
        device: "cpu".into(),
        total_steps,
        resumed_from: None,
        restarted: false,
        branch_of: None,
        wall_time: 0.0,
        metrics,
    })
    .unwrap();
    w
}

/// A run folder with `n` steps of d_loss (scaled by `k`) in its event log.
fn synthetic_run(runs: &Path, name: &str, n: u64, k: f64) -> std::path::PathBuf {
    let dir = runs.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("preset.ron"), "").unwrap();
    let mut w = started_log(&dir, name, Some(n), Vec::new());
    let rows = (0..n)
        .map(|s| ScalarRow {
            step: s,
            wall_time: 0.0,
            values: vec![("d_loss".into(), k * s as f64)],
        })
        .collect();
    w.append(&Event::Scalars { rows }).unwrap();
    w.append(&Event::RunFinished {
        step: n - 1,
        outcome: workbench::core::protocol::Outcome::Completed,
        signal: None,
    })
    .unwrap();
    w.sync().unwrap();
    dir
}

/// Runs that differ only in their seed form one row in the Runs tab's Groups view, with each
/// metric's mean and range; Plot overlays them as one mean curve with a min-max band. The
/// settings diff of two ticked runs shows only what differs.
#[test]
fn seeds_group_into_one_band_and_two_ticked_runs_diff_their_settings() {
    let runs = tempfile::tempdir().unwrap();
    let base =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("presets/smoke.ron"))
            .unwrap();
    let mut dirs = Vec::new();
    for (name, seed, lr, k) in [
        ("s1", 1, "2e-4", 1.0),
        ("s2", 2, "2e-4", 2.0),
        ("s3", 3, "2e-4", 3.0),
        ("other", 1, "5e-4", 1.0),
    ] {
        let dir = synthetic_run(runs.path(), name, 20, k);
        let text = base
            .replace("seed: 42", &format!("seed: {seed}"))
            .replace("lr_g: 2e-4", &format!("lr_g: {lr}"));
        std::fs::write(dir.join("preset.ron"), text).unwrap();
        dirs.push(dir);
    }
    let mut opts = LaunchOptions::new(runs.path());
    opts.tab = Tab::Runs;
    let mut h = harness(WorkbenchApp::with_waker(opts, None));
    h.run_steps(2);
    step_until(&mut h, "the runs list", |a| !a.run_list_pending());
    h.run_steps(2);
    h.get_by_label("Groups").click();
    h.run_steps(3);
    h.get_by_label("Plot").click();
    h.run_steps(3);
    wait_for_logs(&mut h);
    let banded: Vec<_> = h
        .state()
        .runs
        .iter()
        .filter(|r| r.band.is_some())
        .map(|r| r.dir.clone())
        .collect();
    assert_eq!(banded.len(), 3, "{banded:?}");
    assert!(!banded.contains(&dirs[3]));
    h.state_mut().tab = Tab::Dashboard;
    h.run_steps(4);
    h.get_by_label_contains("(mean of 3)");
    // Two ticked runs: their settings differ in the seed alone.
    h.state_mut().tab = Tab::Runs;
    h.run_steps(2);
    h.get_by_label("Settings diff").click();
    h.run_steps(3);
    h.get_by_label("differences only");
    assert!(h.query_by_label("Their settings are the same.").is_none());
    // The seed is a column of the table and the one row of the diff.
    assert!(h.get_all_by_label("seed").count() >= 2);
    assert!(
        h.query_by_label("train.beta1").is_none(),
        "only what differs"
    );
}

/// The Importance view asks the app (off the UI thread) which settings matter for a metric
/// over the runs shown, and draws a bar with its interval and a marginal per field.
#[test]
fn the_importance_view_names_the_setting_that_drives_the_metric() {
    let runs = tempfile::tempdir().unwrap();
    let base =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("presets/smoke.ron"))
            .unwrap();
    for i in 0..12u32 {
        let lr = 1e-5 * 2f64.powi(i as i32 % 6);
        let seed = i / 6;
        let dir = runs.path().join(format!("r{i:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("preset.ron"),
            base.replace("lr_g: 2e-4", &format!("lr_g: {lr:e}"))
                .replace("seed: 42", &format!("seed: {seed}")),
        )
        .unwrap();
        let mut w = started_log(
            &dir,
            &format!("r{i:02}"),
            Some(10),
            vec![MetricDef::validation("val_swd", false).main()],
        );
        w.append(&Event::Scalars {
            rows: vec![ScalarRow {
                step: 10,
                wall_time: 1.0,
                values: vec![("val_swd".into(), lr.log2() + 0.01 * f64::from(seed))],
            }],
        })
        .unwrap();
        w.sync().unwrap();
    }
    let mut opts = LaunchOptions::new(runs.path());
    opts.tab = Tab::Runs;
    let mut h = harness(WorkbenchApp::with_waker(opts, None));
    h.run_steps(2);
    step_until(&mut h, "the runs list", |a| !a.run_list_pending());
    h.run_steps(2);
    h.get_by_label("Importance").click();
    h.run_steps(2);
    step_until(&mut h, "the importance", |a| {
        a.runs_table.importance.is_some()
    });
    h.run_steps(2);
    let (_, imp) = h.state().runs_table.importance.clone().unwrap();
    let imp = imp.expect("twelve runs report val_swd");
    assert_eq!(imp.fields[0].field, "train.lr_g", "{imp:?}");
    assert!(imp.fields[0].share > 0.8, "{imp:?}");
    h.get_by_label_contains("share of val_swd's variance over 12 runs");
    h.get_by_label("Copy CSV");
}

/// A trial the sweep's scheduler stopped says so in the Runs table ("stopped (early)", the
/// reason on hover) and one click on Promote marks it promoted and queues its resume.
#[test]
fn a_trial_stopped_early_is_promoted_with_one_click() {
    use workbench::core::pruner;
    let runs = tempfile::tempdir().unwrap();
    let state = runs.path().join("sweeps/s").join(pruner::STATE_FILE);
    std::fs::create_dir_all(state.parent().unwrap()).unwrap();
    let mut s = pruner::SweepState::new(pruner::Scheduler::Asha {
        metric: None,
        grace: 10,
        reduction: 2,
        max: None,
        bootstrap: 0,
    });
    s.report("s-000", 10, 0.1, "val_swd", false);
    s.report("s-001", 10, 0.4, "val_swd", false);
    std::fs::write(&state, serde_json::to_string(&s).unwrap()).unwrap();
    let dir = runs.path().join("s-001-20261207-000000");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("preset.ron"), "").unwrap();
    pruner::TrialLink {
        state: state.clone(),
        trial: "s-001".into(),
    }
    .write(&dir)
    .unwrap();
    let mut w = started_log(&dir, "s-001", Some(40), Vec::new());
    w.append(&Event::TrialStopped {
        step: 10,
        rung: 0,
        metric: "val_swd".into(),
        value: 0.4,
        cut: 0.1,
    })
    .unwrap();
    w.append(&Event::RunFinished {
        step: 10,
        outcome: workbench::core::protocol::Outcome::Stopped,
        signal: Some("scheduler".into()),
    })
    .unwrap();
    w.sync().unwrap();
    let mut opts = LaunchOptions::new(runs.path());
    opts.tab = Tab::Runs;
    let mut h = harness(WorkbenchApp::with_waker(opts, None));
    h.run_steps(2);
    step_until(&mut h, "the runs list", |a| !a.run_list_pending());
    h.run_steps(2);
    h.get_by_label("stopped (early)");
    h.get_by_label("Promote").click();
    h.run_steps(2);
    step_until(&mut h, "the promotion", |a| {
        !a.queue_pending()
            && a.queue
                .said
                .as_deref()
                .is_some_and(|s| s.contains("promoted"))
    });
    let said = h.state().queue.said.clone().unwrap();
    assert!(
        said.contains("stopped at rung 0: val_swd 0.4, rung cut 0.1"),
        "{said}"
    );
    let s = pruner::read(&state).unwrap();
    assert!(s.trials["s-001"].promoted && s.trials["s-001"].stopped.is_none());
    let queue = workbench::core::queue::read(&runs.path().join("queue.json")).unwrap();
    assert_eq!(queue.jobs.len(), 1);
    assert!(
        queue.jobs[0].args.contains(&dir.display().to_string()),
        "{:?}",
        queue.jobs[0].args
    );
}

/// A sample the trainer says is not what it seems (prior samples of a phase with no KL
/// weight) carries its note into the Samples tab, above the grid.
#[test]
fn the_samples_tab_says_why_prior_samples_look_like_noise() {
    let runs = tempfile::tempdir().unwrap();
    let dir = runs.path().join("recon-phase");
    std::fs::create_dir_all(dir.join("media")).unwrap();
    std::fs::write(dir.join("preset.ron"), "").unwrap();
    image::save_buffer(
        dir.join("media/samples-step-00000010.png"),
        &[90u8; 16],
        2,
        2,
        image::ExtendedColorType::Rgba8,
    )
    .unwrap();
    let note = "Prior samples: the KL weight is 10e-6 in this phase, so the prior is not trained";
    let mut w = started_log(&dir, "recon-phase", Some(20), Vec::new());
    w.append(&Event::Sample {
        step: 10,
        path: "media/samples-step-00000010.png".into(),
        width: 2,
        height: 2,
        rgba: vec![90; 16],
        note: Some(note.into()),
    })
    .unwrap();
    w.sync().unwrap();
    let mut h = harness(following(runs.path(), dir, Tab::Samples, None));
    h.run_steps(2);
    wait_for_logs(&mut h);
    h.run_steps(3);
    h.get_by_label(note);
}

#[test]
fn runs_overlay_on_one_plot_and_a_plot_exports_as_csv() {
    let runs = tempfile::tempdir().unwrap();
    let a = synthetic_run(runs.path(), "run-a", 100, 1.0);
    let b = synthetic_run(runs.path(), "run-b", 50, -2.0);
    let mut opts = LaunchOptions::new(runs.path());
    opts.tab = Tab::Runs;
    let mut h = harness(WorkbenchApp::with_waker(opts, None));
    h.run_steps(2);
    step_until(&mut h, "the runs list", |a| !a.run_list_pending());
    // Both are listed as finished; open both, then overlay b on a.
    assert_eq!(h.get_all_by_label("finished").count(), 2);
    h.state_mut().open_run(&b);
    h.state_mut().open_run(&a);
    h.state_mut().tab = Tab::Runs;
    h.run_steps(2);
    wait_for_logs(&mut h);
    let bi = h.state().runs.iter().position(|r| r.dir == b).unwrap();
    h.get_all_by_label("overlay").nth(bi).unwrap().click();
    h.run_steps(2);
    assert!(h.state().runs[bi].overlay);
    h.state_mut().tab = Tab::Dashboard;
    h.run_steps(3);
    // With two runs the legend names the runs.
    assert!(h.get_all_by_label("run-a").next().is_some());
    assert!(h.get_all_by_label("run-b").next().is_some());
    // CSV export through the (scripted) save dialog holds both runs' points.
    let out = runs.path().join("d_loss.csv");
    h.state_mut().dialogs.answer(
        workbench::gui::actions::Purpose::ExportPlotCsv("d_loss".into()),
        Some(out.clone()),
    );
    h.get_all_by_label("CSV").next().unwrap().click();
    // Written on a background thread: the status bar says when.
    step_until(&mut h, "the CSV to be written", |a| {
        a.message
            .as_ref()
            .is_some_and(|(_, m)| m.starts_with("wrote"))
    });
    let csv = std::fs::read_to_string(&out).expect("csv written");
    assert_eq!(csv.lines().count(), 1 + 100 + 50);
    assert!(csv.contains("run-b,49,-98"));
}

/// Opened runs are read on their own threads: step frames until every view has caught up.
fn wait_for_logs(h: &mut Harness<'_, WorkbenchApp>) {
    step_until(h, "the run logs", |a| !a.is_catching_up());
}

/// Images of runs followed from disk are read by the app on background threads: step frames
/// until the Samples tab shows them (or says why not).
fn wait_for_images(h: &mut Harness<'_, WorkbenchApp>) {
    step_until(h, "the sample images", |a| {
        let s = &a.samples;
        let viewer = s.viewer.shown.is_some() || s.viewer.error.is_some();
        let recon = a
            .current_run()
            .is_none_or(|r| r.view.reconstructions.is_empty())
            || s.recon.shown.is_some()
            || s.recon.error.is_some();
        viewer && recon
    });
}

/// File frames decode on a background thread: step frames until it is done.
fn wait_for_frame(h: &mut Harness<'_, WorkbenchApp>) {
    step_until(h, "the video frame", |a| !a.gaad.is_loading());
}

#[test]
fn the_gaad_inspector_numbers_the_regions_of_a_frame() {
    let runs = tempfile::tempdir().unwrap();
    let mut opts = LaunchOptions::new(runs.path());
    opts.tab = Tab::Gaad;
    let mut h = harness(WorkbenchApp::with_waker(opts, None));
    h.run_steps(3);
    let want =
        workbench::core::gaad::decompose(workbench::core::gaad::Kind::Hybrid, 256, 256, 16, 4.0)
            .unwrap();
    assert_eq!(h.state().gaad.boxes, want);
    h.get_by_label("#15");
    h.get_by_label("[0.00, 0.00, 256.00, 256.00]");
    // A different kind and count recompute the boxes.
    h.state_mut().gaad.kind = workbench::core::gaad::Kind::Subdivide;
    h.state_mut().gaad.regions = 8;
    h.run_steps(2);
    assert_eq!(h.state().gaad.boxes.len(), 8);
    h.get_by_label("[158.22, 158.22, 256.00, 256.00]");
    // A video's frames, by index.
    let video = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/testsrc_64x48_10f.avi");
    h.state_mut().gaad.open_image(video);
    h.run_steps(1);
    wait_for_frame(&mut h);
    assert!(h.state().gaad.error.is_none(), "{:?}", h.state().gaad.error);
    h.get_by_label_contains("64x48 px");
    if let workbench::gui::actions::FrameSource::Video { index, .. } =
        &mut h.state_mut().gaad.source
    {
        *index = 12;
    }
    h.run_steps(1);
    wait_for_frame(&mut h);
    assert!(h
        .state()
        .gaad
        .error
        .as_deref()
        .unwrap_or("")
        .contains("frame 12 asked for"));
    // An unreadable image is reported by path, not a panic.
    h.state_mut().gaad.open_image("/no/such/frame.png".into());
    h.run_steps(1);
    wait_for_frame(&mut h);
    assert!(h
        .state()
        .gaad
        .error
        .as_deref()
        .unwrap_or("")
        .contains("/no/such/frame.png"));
}

#[test]
fn snapshot_gaad_tab() {
    let runs = tempfile::tempdir().unwrap();
    let mut opts = LaunchOptions::new(runs.path());
    opts.tab = Tab::Gaad;
    let mut h = harness(WorkbenchApp::with_waker(opts, None));
    h.run_steps(3);
    h.snapshot("gaad_tab");
}

#[test]
fn the_controller_view_shows_the_decision_in_force_at_the_cursor() {
    let runs = tempfile::tempdir().unwrap();
    let dir = synthetic_run(runs.path(), "controlled", 20, 1.0);
    let mut w = workbench::core::runlog::LogWriter::open(&dir.join("events.log")).unwrap();
    for (step, scale) in [(4u64, 0.85), (8, 1.3)] {
        w.append(&Event::Controller {
            step,
            name: "lr (rewarded by g_loss)".into(),
            state: vec![2, 1, 2, 2],
            actions: vec![("train.lr_g".into(), scale), ("train.lr_d".into(), 1.0)],
            reward: Some(0.5),
            epsilon: 0.59,
            q_values: vec![vec![0.0, 0.1, 0.0, 0.0, 0.2], vec![0.0; 5]],
            explored: vec![true, false],
            applied: vec![
                ("train.lr_g".into(), 1e-4 * scale),
                ("train.lr_d".into(), 1e-4),
            ],
            updated: Some(workbench::core::control::Update {
                state: vec![1, 1],
                chosen: vec![3, 2],
                q_values: vec![
                    vec![0.0, 0.0, 0.0, 0.025, 0.0],
                    vec![0.0, 0.0, 0.025, 0.0, 0.0],
                ],
            }),
            visits: step / 4,
            table_size: 3,
        })
        .unwrap();
        w.append(&Event::Scalars {
            rows: vec![ScalarRow {
                step,
                wall_time: 0.0,
                values: vec![
                    ("ctl_lr_g_scale".into(), scale),
                    ("lr_g".into(), 2e-4 * scale),
                ],
            }],
        })
        .unwrap();
    }
    w.sync().unwrap();
    let mut h = harness(following(runs.path(), dir, Tab::Controller, Some(6)));
    wait_for_logs(&mut h);
    h.get_by_label("Decision at step 4");
    h.get_by_label("x0.85 (explored)");
    h.get_by_label("Q [+0.000, +0.100, +0.000, +0.000, +0.200]");
    // What was learned is visible even when this state's row is still all zeros.
    h.get_by_label("visited 1 time(s); 3 state(s) in the table");
    h.get_by_label("The reward +0.500 updated the row of state [1, 1]:");
    h.get_by_label("Q +0.000, +0.000, +0.000, [+0.025], +0.000");
    assert!(h.get_all_by_label("ctl_lr_g_scale").next().is_some());
    assert!(h.get_all_by_label("lr_g").next().is_some());
    assert!(
        h.query_by_label("d_loss").is_none(),
        "only controller scalars"
    );
    h.state_mut().cursor = Some(19);
    h.run_steps(2);
    h.get_by_label("Decision at step 8");
}

#[test]
fn snapshot_phases_tab_with_schedule_preview() {
    let runs = tempfile::tempdir().unwrap();
    let mut opts = smoke_options(runs.path());
    opts.tab = Tab::Phases;
    let mut h = harness(WorkbenchApp::with_waker(opts, None));
    h.run_steps(3);
    h.snapshot("phases_tab");
}

#[test]
fn snapshot_presets_tab() {
    let runs = tempfile::tempdir().unwrap();
    let mut h = harness(WorkbenchApp::with_waker(smoke_options(runs.path()), None));
    h.run_steps(3);
    h.snapshot("presets_tab");
}

#[test]
fn snapshot_dashboard_with_markers_and_cursor() {
    let runs = tempfile::tempdir().unwrap();
    let dir = runs.path().join("synthetic-run");
    std::fs::create_dir_all(&dir).unwrap();
    let mut w = started_log(&dir, "synthetic-run", Some(2000), Vec::new());
    let rows = (0..2000u64)
        .map(|s| {
            let x = s as f64;
            let spike = if s == 1234 { 8.0 } else { 0.0 };
            ScalarRow {
                step: s,
                wall_time: 0.0,
                values: vec![
                    (
                        "d_loss".into(),
                        -3.0 * (-x / 600.0).exp() + 0.3 * (x / 7.0).sin() + spike,
                    ),
                    ("g_loss".into(), 1.0 + 0.5 * (x / 300.0).cos()),
                ],
            }
        })
        .collect();
    w.append(&Event::Scalars { rows }).unwrap();
    w.append(&Event::PhaseStarted {
        step: 1000,
        index: 1,
        name: "b".into(),
        length: "1000 steps".into(),
        loaded_checkpoint: None,
    })
    .unwrap();
    w.sync().unwrap();
    let mut h = harness(following(runs.path(), dir, Tab::Dashboard, Some(1500)));
    wait_for_logs(&mut h);
    // Many frames: anything that fed back into the auto bounds (as marker labels once did)
    // would have blown the y axis up by now.
    h.run_steps(30);
    h.snapshot("dashboard");
}

/// A finished WuBu-GAAD run written by the real engine (tiny shapes, 20 steps).
fn wubu_run(runs: &Path) -> std::path::PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("presets/wubu_gaad_tiny.ron");
    let (p, _) = preset::load_file(&path).unwrap();
    let p = p
        .preset()
        .with_overrides([("threads", 1.into()), ("device", "cpu".into())])
        .unwrap();
    let req = workbench::engine::worker::RunRequest {
        preset: Some(preset::validate(p).unwrap()),
        runs_dir: runs.into(),
        ..Default::default()
    };
    let handle =
        workbench::engine::worker::spawn(workbench::engine::worker::prepare(req).unwrap(), None)
            .unwrap();
    let dir = handle.run_dir().to_path_buf();
    while let Ok(e) = handle.events().recv_timeout(Duration::from_secs(120)) {
        if e.is_terminal() {
            break;
        }
    }
    handle.join();
    dir
}

#[test]
fn a_wubu_gaad_run_shows_truth_reconstruction_difference_controllers_and_the_critic() {
    let runs = tempfile::tempdir().unwrap();
    let dir = wubu_run(runs.path());
    let mut h = harness(following(runs.path(), dir, Tab::Samples, Some(10)));
    wait_for_logs(&mut h);
    wait_for_images(&mut h);
    h.get_by_label("Reconstruction: ground truth | reconstruction | difference");
    for l in ["ground truth", "reconstruction", "|difference|"] {
        h.get_by_label(l);
    }
    h.get_by_label_contains("train window, step 10, 1 predicted frame(s), 4 regions");
    h.get_by_label("critic: primary");
    let view = &h.state().runs[0].view;
    let r = view.reconstruction_near("train", 10).unwrap();
    assert_eq!((r.truth.width, r.truth.height), (32, 32));
    // The validation windows' reconstruction, with the motion regions over it.
    h.get_by_label("validation windows").click();
    h.get_by_label("motion regions").click();
    h.run_steps(2);
    h.get_by_label_contains("validation window, step 10");
    h.get_by_label_contains("4 motion regions (last frame pair)");

    // The Controller tab lists every controller and shows the chosen one's timeline.
    h.state_mut().tab = Tab::Controller;
    h.run_steps(2);
    h.get_by_label("critic primary").click();
    h.run_steps(2);
    h.get_by_label_contains("Decision at step");
    assert!(h
        .get_all_by_label("ctl/critic primary/epsilon")
        .next()
        .is_some());
    assert!(h.get_all_by_label("ctl/critic primary/lr").next().is_some());
    assert!(
        h.query_by_label("ctl/generator/lr").is_none(),
        "one controller at a time"
    );
    // The dashboard keeps controller timelines to the Controller tab.
    h.state_mut().tab = Tab::Dashboard;
    h.run_steps(2);
    assert!(h.get_all_by_label("recon").next().is_some());
    assert!(h.query_by_label("ctl/generator/epsilon").is_none());
}

/// Types into a text field labelled `label`, replacing its content.
fn type_into(h: &mut Harness<'_, WorkbenchApp>, label: &str, text: &str) {
    h.get_by_label(label).focus();
    h.run_steps(1);
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    h.run_steps(1);
    h.get_by_label(label).type_text(text);
    h.run_steps(1);
    h.key_press(egui::Key::Enter); // done typing: the field gives up focus
    h.run_steps(2);
}

/// Adds an override of `field` to the selected phase through the "Override a field" menu.
fn add_override(h: &mut Harness<'_, WorkbenchApp>, field: &str) {
    h.get_by_label("Override a field").click_accesskit();
    h.run_steps(2);
    // The menu scrolls: click through accesskit, as a screen reader would, so an entry
    // below the fold is clicked too.
    h.get_by_label(field).click_accesskit();
    h.run_steps(1);
    h.key_press(egui::Key::Escape); // the menu stays open after an accesskit click
    h.run_steps(2);
}

#[test]
fn seed_000_phases_0_to_5_are_set_up_by_pointing_and_clicking() {
    let runs = tempfile::tempdir().unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("presets/wubu_gaad.ron");
    let (p, _) = preset::load_file(&path).unwrap();
    let mut opts = LaunchOptions::new(runs.path());
    opts.preset = Some((
        p.preset().clone(),
        Some(std::path::PathBuf::from("presets/wubu_gaad.ron")),
    ));
    opts.tab = Tab::Phases;
    let mut h = harness(WorkbenchApp::with_waker(opts, None));
    h.run_steps(3);
    // Guide 000: what each phase turns off or changes (booleans are on in the preset).
    /// A phase: its name, the switches it turns off, and the values it types.
    type PhasePlan<'a> = (&'a str, &'a [&'a str], &'a [(&'a str, &'a str)]);
    let plan: [PhasePlan<'_>; 6] = [
        (
            "0 sanity",
            &[
                "q_control.enabled",
                "heuristics.enabled",
                "switching.enabled",
            ],
            &[],
        ),
        (
            "1 vae recon",
            &["heuristics.enabled", "switching.enabled"],
            &[("train.lambda_kl", "1e-5"), ("train.lambda_gan", "0")],
        ),
        (
            "2 gan primary",
            &["heuristics.enabled", "switching.enabled"],
            &[("train.lambda_gan", "0.5")],
        ),
        (
            "3 kl and heuristics",
            &["switching.enabled"],
            &[("q_control.lkl_every_steps", "50")],
        ),
        ("4 dual discriminators", &[], &[]),
        ("5 fine tune", &[], &[("train.lr_gen", "5e-5")]),
    ];
    for (i, (name, off, values)) in plan.iter().enumerate() {
        if i > 0 {
            h.get_by_label("Add phase").click();
            h.run_steps(2);
            h.get_by_label("start from best").click();
            h.run_steps(1);
        }
        type_into(&mut h, "name", name);
        for field in *off {
            add_override(&mut h, field);
            h.get_by_label(field).click(); // the override's checkbox: on -> off
            h.run_steps(1);
        }
        for (field, v) in *values {
            add_override(&mut h, field);
            type_into(&mut h, field, v);
        }
    }
    let p = h
        .state()
        .presets
        .editor
        .preset()
        .expect("the preset parses");
    let phases = p.phases();
    assert_eq!(phases.len(), 6);
    for (i, (name, off, values)) in plan.iter().enumerate() {
        let ph = &phases[i];
        assert_eq!(ph.name, *name);
        assert_eq!(ph.start_from_best, i > 0, "{name}");
        for f in *off {
            assert_eq!(
                ph.overrides.get(*f),
                Some(&preset::OverrideValue::Bool(false)),
                "{name} {f}"
            );
        }
        for (f, v) in *values {
            let got = ph.overrides.get(*f).map(|o| o.to_json().as_f64().unwrap());
            assert_eq!(got, Some(v.parse::<f64>().unwrap()), "{name} {f}");
        }
    }
    preset::validate(p.clone()).expect("the clicked preset is valid");
    assert!(h.state().presets.editor.start_blocker().is_none());
}

/// Started from a folder without `presets/`, the library lists every shipped preset (they are
/// built into the binary) and opens one. The check runs in a child process started in an
/// empty folder: changing this process's folder would move the other tests' snapshots.
#[test]
fn the_library_lists_the_shipped_presets_from_any_folder() {
    const CHILD: &str = "WORKBENCH_TEST_LIBRARY_CHILD";
    if std::env::var_os(CHILD).is_none() {
        let cwd = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "the_library_lists_the_shipped_presets_from_any_folder",
                "--exact",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .current_dir(cwd.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("1 passed"),
            "{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    assert!(!Path::new("presets").exists(), "runs outside the checkout");
    let runs = tempfile::tempdir().unwrap();
    let mut h = harness(WorkbenchApp::with_waker(
        LaunchOptions::new(runs.path()),
        None,
    ));
    h.run_steps(2);
    let shipped: Vec<String> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("presets"))
            .unwrap()
            .flatten()
            .filter_map(|e| {
                let p = e.path();
                (p.extension()? == "ron")
                    .then(|| p.file_stem().unwrap().to_string_lossy().into_owned())
            })
            .collect();
    assert!(shipped.len() >= 8, "{shipped:?}");
    for name in &shipped {
        assert!(
            h.get_all_by_label(name).next().is_some(),
            "{name} is not listed"
        );
    }
    h.get_all_by_label("wgan_gp_large").next().unwrap().click();
    step_until(&mut h, "the preset to load", |a| {
        a.presets.editor.source.is_some()
    });
    assert_eq!(
        h.state().presets.editor.source.as_deref(),
        Some(Path::new("built in: wgan_gp_large.ron"))
    );
    assert!(h.state().presets.editor.validated.is_some());
}

/// The dashboard puts the family's main numbers first and settings and counters in
/// collapsed groups, from the run's declarations; a pinned plot comes first, and the layout is
/// remembered for the family by the next app.
#[test]
fn the_dashboard_puts_what_matters_first_and_remembers_the_layout() {
    let runs = tempfile::tempdir().unwrap();
    let dir = runs.path().join("declared");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("preset.ron"), "").unwrap();
    let mut w = started_log(
        &dir,
        "declared",
        Some(20),
        vec![
            MetricDef::counter("epoch"),
            MetricDef::setting("lr_d"),
            MetricDef::loss("gp"),
            MetricDef::loss("d_loss").main(),
        ],
    );
    let rows = (0..20u64)
        .map(|s| ScalarRow {
            step: s,
            wall_time: 0.0,
            values: ["epoch", "lr_d", "gp", "d_loss"]
                .iter()
                .map(|k| ((*k).to_string(), s as f64))
                .collect(),
        })
        .collect();
    w.append(&Event::Scalars { rows }).unwrap();
    w.sync().unwrap();
    let app = || following(runs.path(), dir.clone(), Tab::Dashboard, None);
    let mut h = harness(app());
    wait_for_logs(&mut h);
    h.get_by_label("main (1)");
    h.get_by_label("losses (1)");
    h.get_by_label("settings (1)");
    h.get_by_label("counters (1)");
    // Settings and counters start collapsed: their plots are not drawn.
    assert!(h.query_by_label("lr_d").is_none() && h.query_by_label("epoch").is_none());
    // The first plot is the main loss; pin the loss term instead, and it comes first.
    let pins: Vec<_> = h.get_all_by_label("pin").collect();
    assert_eq!(pins.len(), 2, "d_loss and gp are drawn");
    pins[1].click();
    h.run_steps(3);
    assert_eq!(
        h.state().dashboard.layouts["wgan_gp"].pinned,
        vec!["gp".to_string()]
    );
    h.get_by_label("pinned (1)");
    let saved = runs.path().join("dashboard.json");
    step_until(&mut h, "the layout to be saved", |_| saved.is_file());
    // The next app remembers it for the family.
    let mut again = harness(app());
    wait_for_logs(&mut again);
    again.get_by_label("pinned (1)");
    assert_eq!(
        again.state().dashboard.layouts["wgan_gp"].pinned,
        vec!["gp".to_string()]
    );
}

/// The keyboard shortcuts do what the buttons do: start, pause, checkpoint now, switch tabs,
/// move the step cursor by logged step and by event, undo and redo a preset edit; F1 lists
/// them, and About says what a bug report needs.
#[test]
fn shortcuts_drive_the_same_actions_as_the_buttons() {
    use egui::{Key, Modifiers};
    let runs = tempfile::tempdir().unwrap();
    let mut h = harness(WorkbenchApp::with_waker(smoke_options(runs.path()), None));
    h.run_steps(2);
    // Undo and redo an edit of the preset.
    let before = h.state().presets.editor.tree["train"]["lr_g"].clone();
    h.state_mut()
        .presets
        .editor
        .set_field("train.lr_g", json!(5e-5))
        .unwrap();
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.run_steps(1);
    assert_eq!(h.state().presets.editor.tree["train"]["lr_g"], before);
    h.key_press_modifiers(Modifiers::COMMAND.plus(Modifiers::SHIFT), Key::Z);
    h.run_steps(1);
    assert_eq!(h.state().presets.editor.tree["train"]["lr_g"], json!(5e-5));
    // F1 lists the shortcuts.
    h.key_press(Key::F1);
    h.run_steps(2);
    h.get_by_label("Keyboard shortcuts");
    h.get_by_label("Stop the run and save a checkpoint");
    h.key_press(Key::F1);
    // Start, as the Start button does; then pause it.
    h.key_press_modifiers(Modifiers::COMMAND, Key::Enter);
    step_until(&mut h, "the run to start", |a| !a.runs.is_empty());
    assert_eq!(h.state().tab, Tab::Dashboard);
    h.key_press_modifiers(Modifiers::COMMAND, Key::P);
    step_until(&mut h, "the run to pause", |a| {
        a.current_run()
            .is_some_and(|r| r.view.state == RunState::Paused)
    });
    // Start again while the run is live (paused): nothing new starts, as the disabled
    // Start button says.
    h.key_press_modifiers(Modifiers::COMMAND, Key::Enter);
    h.run_steps(3);
    assert_eq!(h.state().runs.len(), 1);
    assert!(!h.state().is_starting());
    // Nor while another run is shown.
    let other = synthetic_run(runs.path(), "other", 5, 1.0);
    h.state_mut().open_run(&other);
    h.run_steps(2);
    assert_eq!(h.state().current, Some(1));
    h.key_press_modifiers(Modifiers::COMMAND, Key::Enter);
    h.run_steps(3);
    assert_eq!(h.state().runs.len(), 2);
    assert!(!h.state().is_starting());
    h.state_mut().current = Some(0);
    // Checkpoint now, while paused: a checkpoint marker appears.
    let marks = |a: &WorkbenchApp| {
        a.current_run().map_or(0, |r| {
            r.view
                .markers
                .iter()
                .filter(|m| m.label.starts_with("ckpt"))
                .count()
        })
    };
    let n = marks(h.state());
    h.key_press_modifiers(Modifiers::COMMAND, Key::K);
    step_until(&mut h, "the checkpoint", |a| marks(a) > n);
    h.key_press_modifiers(Modifiers::COMMAND, Key::P);
    step_until(&mut h, "the run to finish", |a| {
        a.current_run().is_some_and(|r| r.view.state.is_over())
    });
    // The step cursor moves by logged step and by event.
    h.state_mut().cursor = Some(0);
    h.key_press(Key::ArrowRight);
    h.run_steps(1);
    let first_after_zero = h
        .state()
        .current_run()
        .unwrap()
        .view
        .logged_steps()
        .into_iter()
        .find(|s| *s > 0);
    assert_eq!(h.state().cursor, first_after_zero);
    h.state_mut().cursor = Some(0);
    h.key_press_modifiers(Modifiers::SHIFT, Key::ArrowRight);
    h.run_steps(1);
    let next_event = h
        .state()
        .current_run()
        .unwrap()
        .view
        .markers
        .iter()
        .map(|m| m.step)
        .filter(|s| *s > 0)
        .min();
    assert_eq!(h.state().cursor, next_event);
    // Switch tabs.
    h.key_press_modifiers(Modifiers::COMMAND, Key::Num7);
    h.run_steps(1);
    assert_eq!(h.state().tab, Tab::Runs);
    // About: the version, libtorch, the folders and the app's log, with a Copy button.
    h.get_by_label("About").click();
    step_until(&mut h, "the devices to be probed", |a| {
        a.about_text().contains("devices: cpu")
    });
    let about = h.state().about_text();
    for want in ["libtorch 2.13.0", "git commit", "runs folder:", "app log:"] {
        assert!(about.contains(want), "{about}");
    }
    h.get_by_label("Copy");
}

/// What the app remembers survives a restart: the tab, the preset, the dashboard settings;
/// a damaged state, or one written by a newer app, gives the defaults and one notice; a
/// remembered preset whose file is gone gives the default preset and says so.
#[test]
fn the_app_remembers_its_state_and_survives_a_bad_state_file() {
    use workbench::gui::app::{Remembered, STATE_VERSION};
    let runs = tempfile::tempdir().unwrap();
    let opts = || {
        let mut o = LaunchOptions::new(runs.path());
        o.remember = true;
        o
    };
    let mut a = WorkbenchApp::with_waker(opts(), None);
    a.tab = Tab::Controller;
    a.dashboard.smoothing = 0.9;
    a.dashboard.log_y = true;
    a.dashboard.columns = 3;
    a.dashboard.filter = "loss".into();
    let preset = runs.path().join("mine.ron");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("presets/smoke.ron"),
        &preset,
    )
    .unwrap();
    a.presets.editor = workbench::gui::editor::PresetEditor::load_text(
        &std::fs::read_to_string(&preset).unwrap(),
        &preset,
    )
    .unwrap();
    let saved = serde_json::to_string(&a.remembered()).unwrap();

    let mut b = WorkbenchApp::with_waker(opts(), None);
    b.restore(Some(&saved));
    assert_eq!(b.tab, Tab::Controller);
    assert_eq!(b.presets.editor.source.as_deref(), Some(preset.as_path()));
    assert_eq!(b.presets.editor.preset().unwrap().name(), "smoke");
    assert_eq!(
        (
            b.dashboard.smoothing,
            b.dashboard.log_y,
            b.dashboard.columns
        ),
        (0.9, true, 3)
    );
    assert_eq!(b.dashboard.filter, "loss");
    assert!(b.message.is_none(), "{:?}", b.message);
    // The runs folder last used comes back too, unless the command line names one.
    let other_runs = tempfile::tempdir().unwrap();
    let used = WorkbenchApp::with_waker(
        LaunchOptions {
            remember: true,
            ..LaunchOptions::new(other_runs.path())
        },
        None,
    );
    let with_runs = serde_json::to_string(&used.remembered()).unwrap();
    let mut f = WorkbenchApp::with_waker(opts(), None);
    f.restore(Some(&with_runs));
    assert_eq!(f.remembered().runs_dir, used.remembered().runs_dir);
    let mut g = WorkbenchApp::with_waker(
        LaunchOptions {
            explicit_runs_dir: true,
            ..opts()
        },
        None,
    );
    g.restore(Some(&with_runs));
    assert_ne!(g.remembered().runs_dir, used.remembered().runs_dir);
    assert_eq!(b.remembered(), a.remembered());

    // The preset's file is gone: the default preset, and a note.
    std::fs::remove_file(&preset).unwrap();
    let mut c = WorkbenchApp::with_waker(opts(), None);
    c.restore(Some(&saved));
    assert_eq!(c.tab, Tab::Controller, "the rest is still restored");
    assert!(c.message.as_ref().unwrap().1.contains("mine.ron"));

    // Damaged, or from a newer app: defaults and one notice.
    for bad in [
        "{not json".to_string(),
        serde_json::to_string(&Remembered {
            version: STATE_VERSION + 1,
            tab: "runs".into(),
            ..Remembered::default()
        })
        .unwrap(),
    ] {
        let mut d = WorkbenchApp::with_waker(opts(), None);
        d.restore(Some(&bad));
        assert_eq!(d.tab, Tab::Presets);
        assert_eq!(d.dashboard.smoothing, 0.6);
        assert!(d
            .message
            .as_ref()
            .is_some_and(|(_, m)| m.contains("starting from the defaults")));
    }
    // An older state (fewer fields) still loads: missing fields take their defaults.
    let mut e = WorkbenchApp::with_waker(opts(), None);
    e.restore(Some(r#"{"version":1,"tab":"samples"}"#));
    assert_eq!(e.tab, Tab::Samples);
    assert!(e.message.is_none());
}

/// A finished tiny latent action run with validations and checkpoints.
fn latent_action_run(runs: &Path) -> std::path::PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("presets/latent_action_tiny.ron");
    let (p, _) = preset::load_file(&path).unwrap();
    let mut p = p
        .preset()
        .with_overrides([
            ("threads", 1.into()),
            ("device", "cpu".into()),
            ("data.synthetic_files", 10.into()),
            ("data.synthetic_frames", 24.into()),
            ("train.batch_size", 8.into()),
            ("logging.validate_every_steps", 3.into()),
            ("logging.sample_every_steps", 3.into()),
            ("checkpoints.every_steps", 3.into()),
        ])
        .unwrap();
    if let preset::AnyPreset::LatentAction(l) = &mut p {
        l.phases[0].length = PhaseLength::Steps(6);
    }
    finished_run(runs, p)
}

/// Trains `p` to its end on the worker, as the app would; returns its run folder.
fn finished_run(runs: &Path, p: preset::AnyPreset) -> std::path::PathBuf {
    let req = workbench::engine::worker::RunRequest {
        preset: Some(preset::validate(p).unwrap()),
        runs_dir: runs.into(),
        ..Default::default()
    };
    let handle =
        workbench::engine::worker::spawn(workbench::engine::worker::prepare(req).unwrap(), None)
            .unwrap();
    let dir = handle.run_dir().to_path_buf();
    while let Ok(e) = handle.events().recv_timeout(Duration::from_secs(120)) {
        if e.is_terminal() {
            break;
        }
    }
    handle.join();
    dir
}

/// The Actions tab shows the codebook's use, loads the run's latest checkpoint, and decodes a
/// chosen action beside the truth and the encoded actions' rollout.
#[test]
fn the_action_explorer_decodes_a_chosen_action_beside_the_truth() {
    let runs = tempfile::tempdir().unwrap();
    let dir = latent_action_run(runs.path());
    let mut h = harness(following(runs.path(), dir, Tab::Actions, None));
    wait_for_logs(&mut h);
    let codes = &h.state().runs[0].view.codes;
    let steps: Vec<u64> = codes.iter().map(|c| c.step).collect();
    assert!(steps.len() >= 3 && steps.ends_with(&[3, 6]), "{steps:?}");
    let last = codes.last().unwrap();
    assert_eq!(last.counts.len(), 12);
    // Every transition of every validation window has one action of three codes.
    let uses: u64 = last.actions.iter().map(|(_, n)| n).sum();
    assert_eq!(3 * uses, last.counts.iter().sum::<u64>());
    h.get_by_label_contains("Codebook use at each validation");
    h.get_by_label_contains("Most used actions at step 6");
    h.get_by_label("Load the latest checkpoint").click();
    step_until(&mut h, "the first decode", |a| {
        a.explorer.error.is_some() || (a.explorer.ready() && a.explorer.shown.is_some())
    });
    assert_eq!(h.state().explorer.error, None);
    h.get_by_label("what followed");
    h.get_by_label_contains("rollout under the encoded actions");
    let first = h.state().explorer.shown.clone().unwrap();
    assert_eq!(first.frames, 4, "windows of 5 frames: 4 steps");
    assert_eq!(first.truth.width, 4 * 16);
    assert_eq!(h.state().explorer.action, vec![0, 0, 0]);
    // Pick code 7 for the first slot from its drop-down: the explorer decodes again.
    h.get_by_label("slot 0").click();
    h.run_steps(2);
    h.get_by_label("code 7").click();
    step_until(&mut h, "the second decode", |a| {
        a.explorer.ready()
            && a.explorer.action == vec![7, 0, 0]
            && a.explorer.shown.as_ref() != Some(&first)
    });
    h.get_by_label("rollout under [7, 0, 0] at every step");
    let second = h.state().explorer.shown.clone().unwrap();
    assert_eq!(second.truth, first.truth, "the same window");
    assert_eq!(second.encoded, first.encoded, "the same encoded actions");
    assert_ne!(
        second.chosen, first.chosen,
        "another action, another rollout"
    );
}

fn vq_gan_run(runs: &Path) -> std::path::PathBuf {
    let mut p = preset::AnyPreset::VqGan(preset::VqGanPreset::default())
        .with_overrides([
            ("threads", 1.into()),
            ("device", "cpu".into()),
            ("data.synthetic_count", 4.into()),
            ("data.synthetic_holdout", 1.into()),
            ("train.batch_size", 2.into()),
            ("train.disc_start", 2.into()),
            ("logging.log_every_steps", 1.into()),
            ("logging.validate_every_steps", 2.into()),
            ("logging.sample_every_steps", 2.into()),
        ])
        .unwrap();
    if let preset::AnyPreset::VqGan(v) = &mut p {
        v.phases[0].length = PhaseLength::Steps(4);
    }
    finished_run(runs, p)
}

/// The Volume tab of a VQ-GAN run followed from its folder: the latest validation volume is
/// read from its NIfTI files; the three orthogonal views share one crosshair (a click in one
/// moves the others); the codebook's use is a heat map; the critics' start is a marker and the
/// fake logits share the real logits' plot.
#[test]
fn the_volume_viewer_shares_one_crosshair_between_the_three_views() {
    let runs = tempfile::tempdir().unwrap();
    let dir = vq_gan_run(runs.path());
    let mut h = harness(following(runs.path(), dir, Tab::Volume, None));
    wait_for_logs(&mut h);
    step_until(&mut h, "the volume files", |a| {
        a.volume.error.is_some() || a.volume.shown.as_ref().is_some_and(|(_, v)| v.step == 4)
    });
    assert_eq!(h.state().volume.error, None);
    let (_, v) = h.state().volume.shown.clone().unwrap();
    assert_eq!((v.channels, v.dims), (1, [16, 16, 16]));
    assert_ne!(v.truth, v.recon);
    assert_eq!(
        h.state().volume.at,
        [8, 8, 8],
        "the crosshair starts in the middle"
    );
    // Click voxel (y 12, x 3) of the axial view: the coronal and sagittal views move there.
    let click = |h: &mut Harness<'_, WorkbenchApp>, label: &str, row: f32, col: f32| {
        let r = h.get_by_label(label).rect();
        let pos = r.min
            + egui::vec2(
                (col + 0.5) * r.width() / 16.0,
                (row + 0.5) * r.height() / 16.0,
            );
        h.hover_at(pos);
        for pressed in [true, false] {
            h.event(egui::Event::PointerButton {
                pos,
                button: egui::PointerButton::Primary,
                pressed,
                modifiers: egui::Modifiers::default(),
            });
        }
        h.run_steps(2);
    };
    click(&mut h, "axial (depth) ground truth", 12.0, 3.0);
    assert_eq!(h.state().volume.at, [8, 12, 3]);
    // Then depth 5, x 10 in the coronal difference view (rows are depth, columns x).
    click(&mut h, "coronal (row) difference", 5.0, 10.0);
    assert_eq!(h.state().volume.at, [5, 12, 10]);
    h.get_by_label_contains("crosshair at (d 5, y 12, x 10)");
    h.get_by_label_contains("Codebook use at each validation");
    let view = &h.state().runs[0].view;
    assert!(view
        .markers
        .iter()
        .any(|m| m.step == 2 && m.label.contains("critic")));
    let real = view
        .metrics
        .iter()
        .find(|m| m.name == "logits_image_real")
        .unwrap();
    assert_eq!(real.companion.as_deref(), Some("logits_image_fake"));
}

/// A finished run of a small sweep: its preset sets `train.lr_g`, its log a validation metric
/// (`val_swd`, lower is better) and one sample.
fn sweep_run(runs: &Path, name: &str, lr: f64, swd: &[f64]) -> std::path::PathBuf {
    let dir = runs.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let base =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("presets/smoke.ron"))
            .unwrap();
    let text = base.replace("lr_g: 2e-4", &format!("lr_g: {lr:e}"));
    assert_ne!(text, base);
    std::fs::write(dir.join("preset.ron"), text).unwrap();
    let mut w = started_log(
        &dir,
        name,
        Some(swd.len() as u64 * 10),
        vec![MetricDef::validation("val_swd", false)],
    );
    let rows = swd
        .iter()
        .enumerate()
        .map(|(i, v)| ScalarRow {
            step: (i as u64 + 1) * 10,
            wall_time: i as f64 * 60.0,
            values: vec![("val_swd".into(), *v)],
        })
        .collect();
    w.append(&Event::Scalars { rows }).unwrap();
    std::fs::create_dir_all(dir.join("media")).unwrap();
    image::save_buffer(
        dir.join("media/samples-step-00000010.png"),
        &[200u8; 16],
        2,
        2,
        image::ExtendedColorType::Rgba8,
    )
    .unwrap();
    w.append(&Event::Sample {
        step: 10,
        path: "media/samples-step-00000010.png".into(),
        width: 2,
        height: 2,
        rgba: vec![200; 16],
        note: None,
    })
    .unwrap();
    w.append(&Event::RunFinished {
        step: swd.len() as u64 * 10,
        outcome: workbench::core::protocol::Outcome::Completed,
        signal: None,
    })
    .unwrap();
    w.sync().unwrap();
    dir
}

/// The runs table: the sweep's varying field and the metric's best are columns; a header
/// sorts (again: reverses), the filter narrows by field value or metric, and ticking a run
/// follows it as an overlay and shows its sample side by side; the parallel-coordinates view
/// draws one line per run.
#[test]
fn the_runs_table_sorts_filters_overlays_and_compares_a_sweep() {
    let runs = tempfile::tempdir().unwrap();
    let a = sweep_run(runs.path(), "lr-000", 1e-4, &[3.0, 2.0]);
    let b = sweep_run(runs.path(), "lr-001", 3e-4, &[1.5, 0.5]);
    let c = sweep_run(runs.path(), "lr-002", 5e-4, &[4.0, 5.0]);
    let mut opts = LaunchOptions::new(runs.path());
    opts.tab = Tab::Runs;
    let mut h = harness(WorkbenchApp::with_waker(opts, None));
    h.run_steps(2);
    step_until(&mut h, "the runs table", |a| {
        !a.run_list_pending() && a.run_list.len() == 3
    });
    h.run_steps(2);
    // The varying field and the metric's best are columns; the best is the lowest value.
    h.get_by_label("train.lr_g");
    h.get_by_label("best val_swd");
    h.get_by_label("0.5");
    h.get_by_label("2");
    let order = |h: &Harness<'_, WorkbenchApp>| -> Vec<String> {
        let t = &h.state().runs_table;
        t.shown(&h.state().run_list)
            .iter()
            .map(|r| r.name.clone())
            .collect()
    };
    assert_eq!(order(&h), ["lr-002", "lr-001", "lr-000"]);
    // Sort by the metric: best first, then reversed.
    h.get_by_label("best val_swd").click();
    h.run_steps(2);
    assert_eq!(order(&h), ["lr-001", "lr-000", "lr-002"]);
    h.get_by_label("best val_swd ^").click();
    h.run_steps(2);
    assert_eq!(order(&h), ["lr-002", "lr-000", "lr-001"]);
    // Filter by a field's value, then by the metric.
    h.state_mut().runs_table.filter = "lr_g=3e-4".into();
    h.run_steps(2);
    assert_eq!(order(&h), ["lr-001"]);
    h.get_by_label("1 of 3 runs");
    h.state_mut().runs_table.filter = "val_swd<2.5".into();
    h.run_steps(2);
    assert_eq!(order(&h).len(), 2);
    h.state_mut().runs_table.filter.clear();
    h.run_steps(2);
    // Tick two runs: each is followed as an overlay, the shown run stays.
    let boxes: Vec<_> = h.get_all_by_label("overlay").collect();
    assert_eq!(boxes.len(), 3);
    boxes[0].click();
    h.run_steps(2);
    h.get_all_by_label("overlay").nth(2).unwrap().click();
    h.run_steps(2);
    wait_for_logs(&mut h);
    let overlaid: Vec<_> = h
        .state()
        .runs
        .iter()
        .filter(|r| r.overlay)
        .map(|r| r.dir.clone())
        .collect();
    assert_eq!(overlaid.len(), 2, "{overlaid:?}");
    assert!(
        overlaid.contains(&c) && overlaid.contains(&b),
        "{overlaid:?} vs {a:?}"
    );
    // Their samples side by side at one step.
    h.run_steps(3);
    assert_eq!(h.get_all_by_label("step 10").count(), 2);
    // Parallel coordinates: the field and the metric as axes, one line per run.
    h.get_by_label("Parallel coordinates").click();
    h.run_steps(3);
    let shown = h.state().runs_table.shown(&h.state().run_list);
    let pc = workbench::core::runtable::parallel_coordinates(
        &shown,
        &["train.lr_g".to_string()],
        "val_swd",
        &Default::default(),
    );
    assert_eq!(pc.lines.len(), 3);
    assert_eq!(pc.axes.len(), 2);
    assert_eq!(h.state().runs_table.metric, "val_swd");
}

/// The Queue tab edits the same queue file as the CLI: it adds the edited preset and a sweep
/// over a picked field, reorders and cancels, starts a runner that trains in its own process,
/// and a new app (a restart) finds the queue as it was left.
#[test]
fn the_queue_tab_adds_sweeps_reorders_cancels_and_runs() {
    let runs = tempfile::tempdir().unwrap();
    let smoke = preset::load_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("presets/smoke.ron"))
        .unwrap()
        .0;
    let mut opts = LaunchOptions::new(runs.path());
    opts.preset = Some((smoke.preset().clone(), None));
    opts.tab = Tab::Queue;
    let mut h = harness(WorkbenchApp::with_waker(opts, None));
    h.state_mut().queue.runner = Some(env!("CARGO_BIN_EXE_workbench").into());
    h.run_steps(2);
    step_until(&mut h, "the queue", |a| !a.queue_pending());
    h.get_by_label("Add the edited preset").click();
    h.run_steps(1);
    step_until(&mut h, "the added job", |a| {
        !a.queue_pending() && a.queue.queue.jobs.len() == 1
    });
    h.state_mut().queue.sweep_field = "train.lr_g".into();
    h.state_mut().queue.sweep_values = "1e-4, 3e-4".into();
    h.run_steps(1);
    h.get_by_label("Add a sweep of 2 runs").click();
    h.run_steps(1);
    step_until(&mut h, "the sweep", |a| {
        !a.queue_pending() && a.queue.queue.jobs.len() == 3
    });
    let path = runs.path().join("queue.json");
    let q = workbench::core::queue::read(&path).unwrap();
    let sweep_preset = std::fs::read_to_string(&q.jobs[2].args[1]).unwrap();
    assert!(sweep_preset.contains("lr_g: 0.0003"), "{sweep_preset}");
    // The last job moves up to the front; the first is cancelled.
    let ids: Vec<u64> = q.jobs.iter().map(|j| j.id).collect();
    h.get_all_by_label("up").nth(2).unwrap().click();
    h.run_steps(1);
    step_until(&mut h, "the move", |a| {
        !a.queue_pending() && a.queue.queue.jobs[1].id == ids[2]
    });
    h.get_all_by_label("up").nth(1).unwrap().click();
    h.run_steps(1);
    step_until(&mut h, "the move", |a| {
        !a.queue_pending() && a.queue.queue.jobs[0].id == ids[2]
    });
    let first_added = h
        .state()
        .queue
        .queue
        .jobs
        .iter()
        .position(|j| j.id == ids[0])
        .unwrap();
    h.get_all_by_label("Cancel")
        .nth(first_added)
        .unwrap()
        .click();
    h.run_steps(1);
    step_until(&mut h, "the cancel", |a| {
        !a.queue_pending()
            && a.queue
                .queue
                .jobs
                .iter()
                .any(|j| j.id == ids[0] && j.state == workbench::core::queue::JobState::Cancelled)
    });
    drop(h);
    // A restarted app sees the same queue, and its runner trains the two pending jobs.
    let mut opts = LaunchOptions::new(runs.path());
    opts.tab = Tab::Queue;
    let mut h = harness(WorkbenchApp::with_waker(opts, None));
    h.state_mut().queue.runner = Some(env!("CARGO_BIN_EXE_workbench").into());
    h.run_steps(2);
    step_until(&mut h, "the queue", |a| {
        !a.queue_pending() && a.queue.queue.jobs.len() == 3
    });
    h.get_by_label("Start a runner").click();
    h.run_steps(2);
    assert!(
        h.state()
            .queue
            .said
            .as_deref()
            .is_some_and(|s| s.starts_with("started a queue runner")),
        "{:?}",
        h.state().queue.said
    );
    let started = Instant::now();
    loop {
        let q = workbench::core::queue::read(&path).unwrap();
        let states: Vec<_> = q.jobs.iter().map(|j| j.state).collect();
        use workbench::core::queue::JobState::{Cancelled, Finished};
        if states.iter().filter(|s| **s == Finished).count() == 2 {
            assert_eq!(states.iter().filter(|s| **s == Cancelled).count(), 1);
            assert!(q
                .jobs
                .iter()
                .all(|j| j.state != Finished || j.run_dir.is_some()));
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "{states:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// "Branch..." on a run's row makes a branch at its latest checkpoint with a field changed and
/// queues it; the table then shows it under its parent, with the fork and the change.
#[test]
fn a_run_is_branched_from_the_runs_table_and_shown_under_its_parent() {
    let runs = tempfile::tempdir().unwrap();
    let p = preset::Family::WganGp.default_preset().tiny().unwrap();
    let parent = finished_run(runs.path(), p);
    let mut opts = LaunchOptions::new(runs.path());
    opts.tab = Tab::Runs;
    let mut h = harness(WorkbenchApp::with_waker(opts, None));
    h.run_steps(2);
    step_until(&mut h, "the runs list", |a| !a.run_list_pending());
    h.get_by_label("Branch...").click();
    h.run_steps(2);
    let form = h
        .state_mut()
        .runs_table
        .branching
        .as_mut()
        .expect("the form opens");
    assert_eq!(form.parent, parent);
    form.set = "train.lr_g=1e-5".into();
    h.run_steps(1);
    h.get_by_label("Branch and queue").click();
    h.run_steps(2);
    step_until(&mut h, "the branch to be queued", |a| {
        !a.queue_pending() && a.queue.said.is_some()
    });
    let said = h.state().queue.said.clone().unwrap();
    assert!(
        said.starts_with("queued job"),
        "{said} / {:?}",
        h.state().queue.error
    );
    let queue = std::fs::read_to_string(runs.path().join("queue.json")).unwrap();
    assert!(queue.contains("--resume"), "{queue}");
    h.state_mut().refresh_run_list(true);
    h.run_steps(2);
    step_until(&mut h, "the runs list", |a| !a.run_list_pending());
    let rows = &h.state().run_list;
    assert_eq!(rows.len(), 2);
    let branch = rows
        .iter()
        .find(|r| r.lineage.is_some())
        .expect("a branch row");
    assert_eq!(branch.depth, 1);
    assert_eq!(rows.iter().find(|r| r.dir == parent).unwrap().children, 1);
    h.run_steps(2);
    h.get_by_label_contains("`- wgan_gp_small-at2");
    h.get_by_label_contains("@2 train.lr_g 0.0001 -> 0.00001");
    h.get_by_label_contains("1 branch(es)");
}

/// A tiny WGAN-GP run whose critic learning rate was edited live before its first step.
fn edited_run(runs: &Path) -> std::path::PathBuf {
    use workbench::core::protocol::Command;
    let p = preset::Family::WganGp.default_preset().tiny().unwrap();
    let req = workbench::engine::worker::RunRequest {
        preset: Some(preset::validate(p).unwrap()),
        runs_dir: runs.into(),
        ..Default::default()
    };
    let handle =
        workbench::engine::worker::spawn(workbench::engine::worker::prepare(req).unwrap(), None)
            .unwrap();
    handle.send(Command::SetHyperparameter {
        name: "lr_d".into(),
        value: 5e-4,
    });
    let dir = handle.run_dir().to_path_buf();
    while let Ok(e) = handle.events().recv_timeout(Duration::from_secs(120)) {
        if e.is_terminal() {
            break;
        }
    }
    handle.join();
    dir
}

/// A live edit's row in the events list undoes it (a branch from the checkpoint it wrote,
/// with the old value) or tries both values (A/B: two branches), each queued and overlaid on
/// the dashboard; a checkpoint's row sets a branch up in the Runs tab.
#[test]
fn a_live_edit_is_undone_or_tried_both_ways_as_branches() {
    let runs = tempfile::tempdir().unwrap();
    let dir = edited_run(runs.path());
    let mut h = harness(following(runs.path(), dir.clone(), Tab::Dashboard, None));
    h.run_steps(2);
    wait_for_logs(&mut h);
    h.get_by_label("Undo").click_accesskit();
    h.run_steps(2);
    step_until(&mut h, "the undo branch", |a| {
        !a.queue_pending() && a.queue.said.is_some()
    });
    let said = h.state().queue.said.clone().unwrap();
    // The checkpoint was written before the edit: the rate in force there is the old one.
    assert!(said.contains("train.lr_d 0.0001 -> 0.0001"), "{said}");
    h.get_by_label("A/B").click_accesskit();
    h.run_steps(2);
    step_until(&mut h, "the A/B branches", |a| {
        !a.queue_pending()
            && a.queue
                .said
                .as_deref()
                .is_some_and(|s| s.contains("0.0001 -> 0.0005"))
    });
    let queue = workbench::core::queue::read(&runs.path().join("queue.json")).unwrap();
    assert_eq!(queue.jobs.len(), 3, "undo, A and B");
    let mut changes: Vec<String> = std::fs::read_dir(runs.path())
        .unwrap()
        .flatten()
        .filter_map(|e| workbench::core::branch::read(&e.path()))
        .map(|l| {
            assert_eq!(l.parent, dir);
            assert_eq!(l.fork_step, 0, "from the checkpoint the edit wrote");
            l.describe_changes()
        })
        .collect();
    changes.sort();
    assert_eq!(
        changes,
        [
            "train.lr_d 0.0001 -> 0.0001",
            "train.lr_d 0.0001 -> 0.0001",
            "train.lr_d 0.0001 -> 0.0005"
        ]
    );
    // Each joins the dashboard as an overlay when it starts training (its run log appears),
    // beside the run it came from, which stays the one shown.
    let pending = h.state().overlay_pending.clone();
    assert_eq!(pending.len(), 3, "undo, A and B wait for their logs");
    assert!(h.state().runs.iter().all(|r| !r.overlay));
    let b = pending
        .iter()
        .find(|d| d.file_name().unwrap().to_string_lossy().contains("-B"))
        .unwrap()
        .clone();
    started_log(&b, "B", Some(10), Vec::new()).sync().unwrap();
    step_until(&mut h, "B overlaid", |a| {
        a.runs.iter().any(|r| r.dir == b && r.overlay)
    });
    assert_eq!(h.state().overlay_pending.len(), 2);
    assert_eq!(h.state().current_run().unwrap().dir, dir);
    // "Branch here..." on a checkpoint opens the form in the Runs tab at its step.
    h.get_all_by_label("Branch here...")
        .next()
        .unwrap()
        .click_accesskit();
    h.run_steps(2);
    assert_eq!(h.state().tab, Tab::Runs);
    let form = h.state().runs_table.branching.clone().expect("the form");
    assert_eq!(form.parent, dir);
    assert!(form.at.parse::<u64>().is_ok());
}

/// A branch shown on the dashboard brings its parent's curve in, up to the fork, and stays the
/// run shown.
#[test]
fn a_branch_shows_its_parents_curve_up_to_the_fork() {
    let runs = tempfile::tempdir().unwrap();
    let p = preset::Family::WganGp.default_preset().tiny().unwrap();
    let parent = finished_run(runs.path(), p);
    let b = workbench::core::branch::create(&workbench::core::branch::BranchRequest {
        parent: &parent,
        at: None,
        set: vec![("train.lr_d".into(), json!(5e-4))],
        name: None,
    })
    .unwrap();
    let fork = b.lineage.fork_step;
    let req = workbench::engine::worker::RunRequest {
        resume: Some(b.run.root().to_path_buf()),
        runs_dir: runs.path().into(),
        ..Default::default()
    };
    let handle =
        workbench::engine::worker::spawn(workbench::engine::worker::prepare(req).unwrap(), None)
            .unwrap();
    while let Ok(e) = handle.events().recv_timeout(Duration::from_secs(120)) {
        if e.is_terminal() {
            break;
        }
    }
    handle.join();
    let branch = b.run.root().to_path_buf();
    let mut h = harness(following(runs.path(), branch.clone(), Tab::Dashboard, None));
    h.run_steps(2);
    wait_for_logs(&mut h);
    step_until(&mut h, "the parent to be opened", |a| {
        a.runs.iter().any(|r| r.dir == parent)
    });
    let shown = h.state().runs.iter().find(|r| r.dir == parent).unwrap();
    assert!(shown.overlay, "the parent is overlaid");
    assert_eq!(shown.before, Some(fork), "up to the fork");
    assert_eq!(h.state().current_run().unwrap().dir, branch);
    h.get_by_label_contains("branched");
}

/// Right-clicking a plot offers a branch from the shown run's checkpoint at or before that
/// step; it sets the branch up in the Runs tab.
#[test]
fn a_right_click_on_a_plot_branches_from_the_checkpoint_before_it() {
    let runs = tempfile::tempdir().unwrap();
    let p = preset::Family::WganGp.default_preset().tiny().unwrap();
    let dir = finished_run(runs.path(), p);
    let mut h = harness(following(runs.path(), dir.clone(), Tab::Dashboard, None));
    h.run_steps(2);
    wait_for_logs(&mut h);
    h.run_steps(2);
    let rect = h.state().dashboard.plot_rects["d_loss"];
    let pos = rect.right_center() - egui::vec2(4.0, 0.0);
    for pressed in [true, false] {
        h.input_mut().events.push(egui::Event::PointerMoved(pos));
        h.input_mut().events.push(egui::Event::PointerButton {
            pos,
            button: egui::PointerButton::Secondary,
            pressed,
            modifiers: egui::Modifiers::default(),
        });
        h.step();
    }
    h.run_steps(2);
    h.get_by_label_contains("Branch from the checkpoint of step 2")
        .click();
    h.run_steps(2);
    assert_eq!(h.state().tab, Tab::Runs);
    let form = h.state().runs_table.branching.clone().expect("the form");
    assert_eq!((form.parent, form.at.as_str()), (dir, "2"));
}

/// A finished run of `rows` steps of two scalars, written as training writes it: the log and
/// its pyramids (`scalars.lod`), built as the log is written. Returns the pyramids.
fn long_run(dir: &Path, rows: u64) -> workbench::core::lod::Pyramids {
    use workbench::core::protocol::Outcome;
    std::fs::create_dir_all(dir).unwrap();
    let mut w = workbench::core::runlog::LogWriter::open(&dir.join("events.log")).unwrap();
    let mut lod = workbench::core::lod::Builder::default();
    let mut put = |e: Event| {
        w.append(&e).unwrap();
        lod.observe(&e);
    };
    put(Event::RunStarted {
        run_dir: dir.display().to_string(),
        name: "long".into(),
        family: "wgan_gp".into(),
        device: "cpu".into(),
        total_steps: Some(rows),
        resumed_from: None,
        restarted: false,
        branch_of: None,
        wall_time: 0.0,
        metrics: vec![MetricDef::loss("d_loss"), MetricDef::loss("g_loss")],
    });
    for start in (0..rows).step_by(100) {
        put(Event::Scalars {
            rows: (start..(start + 100).min(rows))
                .map(|s| ScalarRow {
                    step: s,
                    wall_time: 0.0,
                    values: vec![
                        (
                            "d_loss".into(),
                            (s as f64 * 1e-3).sin() + 1e-2 * (s % 89) as f64,
                        ),
                        // One spike, which every level keeps.
                        ("g_loss".into(), if s == 123_457 { 50.0 } else { 1.0 }),
                    ],
                })
                .collect(),
        });
    }
    put(Event::RunFinished {
        step: rows,
        outcome: Outcome::Completed,
        signal: None,
    });
    w.sync().unwrap();
    let p = lod.pyramids(w.bytes()).expect("pyramids");
    workbench::core::lod::write(dir, &p).unwrap();
    p
}

/// A long run's persisted pyramids draw its plots before its log is read: the same points a
/// view folded from the whole log draws at the dashboard's width, its spike included. Once
/// the log is read its own series take over; a folder without the file gets it written back,
/// the same as training wrote it.
#[test]
fn a_persisted_pyramid_opens_to_the_plot_the_whole_log_draws() {
    use workbench::core::runview::RunView;
    const ROWS: u64 = 200_000;
    let runs = tempfile::tempdir().unwrap();
    let dir = runs.path().join("long");
    let written = long_run(&dir, ROWS);
    let mut full = RunView::default();
    for e in workbench::core::runlog::read_all(&dir.join("events.log"))
        .unwrap()
        .events
    {
        full.apply(e, None);
    }
    let mut h = harness(following(runs.path(), dir.clone(), Tab::Dashboard, None));
    step_until(&mut h, "the first plot", |a| {
        a.current_run().is_some_and(|r| !r.view.series.is_empty())
    });
    {
        let view = &h.state().current_run().unwrap().view;
        assert!(
            view.in_preview(),
            "the pyramids come before the log is read"
        );
        assert_eq!(view.family, "wgan_gp");
        assert_eq!(view.metrics.len(), 2);
        for name in ["d_loss", "g_loss"] {
            let (shown, whole) = (&view.series[name], &full.series[name]);
            assert_eq!(shown.len(), ROWS as usize);
            assert_eq!(shown.bounds(), whole.bounds(), "{name}");
            for budget in [300, 1000, 2000] {
                assert_eq!(
                    shown.visible(0.0, ROWS as f64, budget),
                    whole.visible(0.0, ROWS as f64, budget),
                    "{name} at {budget} buckets"
                );
            }
        }
        assert!(view.series["g_loss"]
            .visible(0.0, ROWS as f64, 500)
            .contains(&[123_457.0, 50.0]));
    }
    h.run_steps(2);
    assert!(h.state().dashboard.points_drawn > 0);
    wait_for_logs(&mut h);
    h.run_steps(1);
    let view = &h.state().current_run().unwrap().view;
    assert!(!view.in_preview());
    assert_eq!(view.series["d_loss"].points().count(), ROWS as usize);
    drop(h);

    // Without the file: the log is read, and the file written back.
    std::fs::remove_file(dir.join(workbench::core::lod::FILE)).unwrap();
    let mut h = harness(following(runs.path(), dir.clone(), Tab::Dashboard, None));
    wait_for_logs(&mut h);
    step_until(&mut h, "the pyramids written back", |_| {
        dir.join(workbench::core::lod::FILE).is_file()
    });
    let back = workbench::core::lod::read(&dir).unwrap().unwrap();
    assert_eq!(back.log_len, written.log_len);
    assert_eq!(back.series, written.series);
}

/// A module watched from the module tree of a run started here gets its statistics from the
/// step the run is at when the click arrives: the run paused, "watch" clicked, the run
/// resumed, and the first capture is of the step it resumed at.
#[test]
fn a_module_watched_from_the_dashboard_gets_its_statistics_within_one_step() {
    let runs = tempfile::tempdir().unwrap();
    let mut opts = smoke_options(runs.path());
    if let Some((p, _)) = &mut opts.preset {
        // Long enough to pause while it trains.
        for ph in p.phases_mut() {
            ph.length = PhaseLength::Steps(100_000);
        }
    }
    let mut h = harness(WorkbenchApp::with_waker(opts, None));
    h.run_steps(2);
    h.get_by_label("Start").click();
    step_until(&mut h, "the module tree", |a| {
        a.current_run().is_some_and(|r| !r.view.modules.is_empty())
    });
    h.get_by_label("Pause").click();
    step_until(&mut h, "the pause", |a| {
        a.current_run()
            .is_some_and(|r| r.view.state == RunState::Paused)
    });
    // The step the worker paused at (the scalars shown may lag it by a batch).
    let paused_at = h
        .state()
        .current_run()
        .unwrap()
        .view
        .markers
        .iter()
        .rev()
        .find(|m| m.kind == workbench::core::runview::MarkerKind::Pause)
        .expect("the pause's marker")
        .step;
    h.get_by_label_contains("Modules (").click();
    h.run_steps(2);
    let module = h.state().current_run().unwrap().view.modules[0].0.clone();
    h.get_all_by_label("watch")
        .next()
        .expect("a watch button")
        .click();
    h.run_steps(3);
    h.get_by_label("Resume").click();
    step_until(&mut h, "the module's statistics", |a| {
        a.current_run()
            .is_some_and(|r| r.view.layers.contains_key(&module))
    });
    // The first capture (the view keeps the latest; the watch goes on every step).
    let view = &h.state().current_run().unwrap().view;
    let stat = view.layers[&module].clone();
    let first = view.series[&format!("layer/{module}/weight_norm")]
        .points()
        .next()
        .expect("a first capture")
        .0 as u64;
    assert!(
        first <= paused_at + 1,
        "{first} after pausing at {paused_at}"
    );
    assert!(stat.weight_norm > 0.0 && stat.hist.iter().sum::<u32>() > 0);
    h.get_by_label("Stop and save").click();
    step_until(&mut h, "the run to stop", |a| {
        a.current_run().is_some_and(|r| r.view.state.is_over())
    });
}

/// A run started from a shell, opened in the app, is paused, resumed and stopped from the
/// top bar: the commands go through its folder, and the view shows what the run did.
#[test]
fn a_headless_run_opened_in_the_app_is_paused_and_stopped_from_it() {
    let runs = tempfile::tempdir().unwrap();
    let preset = common::long_smoke(runs.path());
    let child = common::headless(runs.path(), &preset, None);
    let dir = common::first_run(runs.path());
    let mut h = harness(following(runs.path(), dir, Tab::Dashboard, None));
    step_until(&mut h, "the run to be followed", |a| {
        a.current_run()
            .is_some_and(|r| r.view.state == RunState::Running && r.view.step > 0)
    });
    // Its live fields come from its own preset.
    step_until(&mut h, "the run's live fields", |a| {
        a.controls
            .live_values
            .iter()
            .any(|(k, v)| k == "train.lr_g" && (*v - 2e-4).abs() < 1e-12)
    });
    h.get_by_label("Pause").click();
    step_until(&mut h, "the pause", |a| {
        a.current_run()
            .is_some_and(|r| r.view.state == RunState::Paused)
    });
    // A live edit (what the field sends when it loses focus) goes through the run's folder,
    // and the field then shows the value the run logged as in force.
    h.state_mut()
        .command(workbench::core::protocol::Command::SetHyperparameter {
            name: "train.lr_g".into(),
            value: 5e-4,
        });
    step_until(&mut h, "the edit read back from the run", |a| {
        a.controls
            .live_values
            .iter()
            .any(|(k, v)| k == "train.lr_g" && (*v - 5e-4).abs() < 1e-12)
    });
    h.get_by_label("Resume").click();
    step_until(&mut h, "the resume", |a| {
        a.current_run()
            .is_some_and(|r| r.view.state == RunState::Running)
    });
    common::stop_and_save(&mut h, child);
}

/// A machine added in the Runs tab lists its runs over "SSH" (here a stand-in for `ssh` that
/// runs the command on this machine, as `WORKBENCH_SSH` allows), and a run opened from it is
/// followed, paused and stopped from the top bar through `workbench serve --stdio`.
#[test]
fn a_remote_run_is_listed_followed_and_steered_from_the_app() {
    let tmp = tempfile::tempdir().unwrap();
    let preset = common::long_smoke(tmp.path());
    let remote_runs = tmp.path().join("cluster-runs");
    let child = common::headless(&remote_runs, &preset, None);
    common::first_run(&remote_runs);
    let ssh = ssh_here(tmp.path());
    let local_runs = tmp.path().join("local");
    let mut opts = LaunchOptions::new(&local_runs);
    opts.tab = Tab::Runs;
    let mut app = WorkbenchApp::with_waker(opts, None);
    app.remote_ssh = ssh.display().to_string();
    app.runs_table.remote_destination = "cluster".into();
    app.runs_table.remote_workbench = env!("CARGO_BIN_EXE_workbench").into();
    app.runs_table.remote_runs_dir = remote_runs.display().to_string();
    let mut h = harness(app);
    h.run_steps(2);
    h.get_by_label("Remote machines (0)").click();
    h.run_steps(2);
    h.get_by_label("Add remote").click();
    step_until(&mut h, "the remote's runs", |a| {
        a.remotes
            .first()
            .is_some_and(|r| !r.rows.is_empty() || r.error.is_some())
    });
    assert_eq!(h.state().remotes[0].error, None);
    // The remote's run is a row of the runs table, its machine named, beside this machine's.
    let row = h.state().remotes[0].rows[0].clone();
    assert_eq!(row.status, workbench::core::rundir::RunStatus::Running);
    assert!(row.dir.to_string_lossy().starts_with("cluster:"), "{row:?}");
    assert!(h.state().run_list.iter().any(|r| r.dir == row.dir));
    h.run_steps(2);
    h.get_by_label("machine");
    h.get_by_label("Open").click();
    step_until(&mut h, "the remote run to be followed", |a| {
        a.current_run().is_some_and(|r| {
            r.dir.to_string_lossy().starts_with("cluster:")
                && r.view.state == RunState::Running
                && r.view.step > 0
        })
    });
    // Its live fields come over the connection, from its preset there.
    step_until(&mut h, "the remote run's live fields", |a| {
        a.controls
            .live_values
            .iter()
            .any(|(k, v)| k == "train.lr_g" && (*v - 2e-4).abs() < 1e-12)
    });
    h.state_mut().tab = Tab::Dashboard;
    h.run_steps(2);
    h.get_by_label("Pause").click();
    step_until(&mut h, "the remote pause", |a| {
        a.current_run()
            .is_some_and(|r| r.view.state == RunState::Paused)
    });
    // Its sample images come over the connection too (paused: the newest stays the newest).
    h.state_mut().tab = Tab::Samples;
    h.run_steps(2);
    step_until(&mut h, "a remote sample", |a| {
        a.samples.viewer.shown.is_some()
    });
    assert_eq!(h.state().samples.viewer.error, None);
    h.state_mut().tab = Tab::Dashboard;
    h.run_steps(2);
    common::stop_and_save(&mut h, child);
}

/// "From SLURM profile" adds the remote the Queue tab's profile logs in to: its `ssh`
/// destination, its `workbench`, and the runs folder its jobs write to (this app's, as
/// submitted); a profile without `ssh` says why nothing was added.
#[test]
fn a_slurm_profiles_login_node_becomes_a_remote() {
    let tmp = tempfile::tempdir().unwrap();
    let local_runs = tmp.path().join("runs");
    let run = local_runs.join("r1");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("preset.ron"), "()").unwrap();
    let mut w = workbench::core::runlog::LogWriter::open(&run.join("events.log")).unwrap();
    w.append(&workbench::core::protocol::Event::Paused { step: 3 })
        .unwrap();
    drop(w);
    let ssh = ssh_here(tmp.path());
    let bare = tmp.path().join("here.ron");
    std::fs::write(&bare, "(time: \"01:00:00\")").unwrap();
    let login = tmp.path().join("login.ron");
    std::fs::write(
        &login,
        format!(
            "(ssh: \"login1\", workbench: \"{}\")",
            env!("CARGO_BIN_EXE_workbench")
        ),
    )
    .unwrap();
    let mut opts = LaunchOptions::new(&local_runs);
    opts.tab = Tab::Runs;
    let mut app = WorkbenchApp::with_waker(opts, None);
    app.remote_ssh = ssh.display().to_string();
    app.queue.slurm_profile = bare.display().to_string();
    let mut h = harness(app);
    h.run_steps(2);
    h.get_by_label("Remote machines (0)").click();
    h.run_steps(2);
    h.get_by_label("From SLURM profile").click();
    h.run_steps(2);
    let said = h.state().message.clone().map(|m| m.1).unwrap_or_default();
    assert!(said.contains("no `ssh` destination"), "{said}");
    assert!(h.state().remotes.is_empty());
    h.state_mut().queue.slurm_profile = login.display().to_string();
    h.get_by_label("From SLURM profile").click();
    step_until(&mut h, "the profile's remote listed", |a| {
        a.remotes
            .first()
            .is_some_and(|r| !r.rows.is_empty() || r.error.is_some())
    });
    let site = &h.state().remotes[0];
    assert_eq!(site.error, None);
    assert_eq!(site.destination, "login1");
    assert_eq!(
        site.runs_dir(),
        workbench::core::rundir::absolute(&local_runs)
            .display()
            .to_string()
    );
    assert_eq!(site.rows[0].dir, std::path::Path::new("login1:r1"));
    assert_eq!(h.state().runs_table.remote_destination, "login1");
}

/// A stand-in for `ssh` that runs `ssh -o BatchMode=yes HOST COMMAND...`'s command here.
fn ssh_here(dir: &Path) -> std::path::PathBuf {
    let ssh = dir.join("ssh-here.sh");
    std::fs::write(&ssh, "#!/bin/sh\nshift 3\nexec \"$@\"\n").unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&ssh)
        .status()
        .unwrap();
    ssh
}

/// A remote's VQ-GAN volume and latent action checkpoint come over its connection: the Volume
/// tab reads the latest validation volume's two files, the Actions tab loads the latest
/// checkpoint (copied here, then removed) and decodes an action.
#[test]
fn a_remote_runs_volumes_and_checkpoint_are_fetched_for_its_views() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = tmp.path().join("cluster-runs");
    let vq = vq_gan_run(&cluster);
    let lam = latent_action_run(&cluster);
    let ssh = ssh_here(tmp.path());
    let mut opts = LaunchOptions::new(&tmp.path().join("local"));
    opts.tab = Tab::Runs;
    let mut app = WorkbenchApp::with_waker(opts, None);
    app.remote_ssh = ssh.display().to_string();
    app.add_remote(
        "cluster",
        env!("CARGO_BIN_EXE_workbench"),
        &cluster.display().to_string(),
    );
    let mut h = harness(app);
    step_until(&mut h, "the remote's rows", |a| {
        a.remotes
            .first()
            .is_some_and(|r| r.rows.len() == 2 || r.error.is_some())
    });
    let remote = |dir: &Path| {
        std::path::PathBuf::from(format!(
            "cluster:{}",
            dir.file_name().unwrap().to_string_lossy()
        ))
    };
    h.state_mut().open_run(&remote(&vq));
    h.state_mut().tab = Tab::Volume;
    step_until(&mut h, "the remote volume", |a| {
        a.volume.error.is_some() || a.volume.shown.as_ref().is_some_and(|(_, v)| v.step == 4)
    });
    assert_eq!(h.state().volume.error, None);
    let (_, v) = h.state().volume.shown.clone().unwrap();
    assert_eq!((v.channels, v.dims), (1, [16, 16, 16]));
    assert_ne!(v.truth, v.recon);
    h.state_mut().open_run(&remote(&lam));
    h.state_mut().tab = Tab::Actions;
    step_until(&mut h, "the remote run's codes", |a| {
        a.current_run().is_some_and(|r| r.view.codes.len() >= 3)
    });
    h.get_by_label("Load the latest checkpoint").click();
    step_until(&mut h, "the remote checkpoint's first decode", |a| {
        a.explorer.error.is_some() || (a.explorer.ready() && a.explorer.shown.is_some())
    });
    assert_eq!(h.state().explorer.error, None);
    assert_eq!(h.state().explorer.shown.as_ref().unwrap().frames, 4);
}

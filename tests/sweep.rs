//! Sweeps planned against a shipped preset: every run's preset is the base with its values,
//! named after the sweep, and a value the schema rejects names the run and the field.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use workbench::core::preset::{self, AnyPreset};
use workbench::core::sweep::Sweep;

fn base() -> AnyPreset {
    let text = preset::shipped::get("wgan_gp_small").expect("shipped");
    preset::parse_str(text, "wgan_gp_small").expect("parses").0
}

#[test]
fn a_sweep_plans_validated_presets_with_its_values() {
    let s = Sweep::parse(
        r#"(name: "lr", base: "wgan_gp_small",
            grid: { "train.lr_g": [1e-4, 3e-4] },
            random: Some((count: 3, seed: 1, fields: { "train.n_critic": int(2, 4) })))"#,
        "lr.ron",
    )
    .expect("parses");
    let runs = s.plan(&base()).expect("plans");
    assert_eq!(runs.len(), 6);
    for (i, r) in runs.iter().enumerate() {
        let AnyPreset::WganGp(p) = &r.preset else {
            panic!("the base's family")
        };
        assert_eq!(p.name, format!("lr-{i:03}"));
        assert_eq!(p.train.lr_g, if i < 3 { 1e-4 } else { 3e-4 });
        assert_eq!(
            Some(i64::from(p.train.n_critic)),
            r.values[1].1.as_i64(),
            "{i}"
        );
        assert!((2..=4).contains(&p.train.n_critic));
    }
}

#[test]
fn a_rejected_value_names_the_run_and_the_field() {
    let s = Sweep::parse(
        r#"(name: "x", base: "wgan_gp_small", grid: { "train.batch_size": [16, 0] })"#,
        "x.ron",
    )
    .expect("parses");
    let e = s.plan(&base()).unwrap_err().to_string();
    assert!(
        e.starts_with("run 1 (train.batch_size=0): train.batch_size = 0"),
        "{e}"
    );
    let s = Sweep::parse(
        r#"(name: "x", base: "wgan_gp_small", grid: { "train.no_such": [1] })"#,
        "x.ron",
    )
    .expect("parses");
    let e = s.plan(&base()).unwrap_err().to_string();
    assert!(e.contains("train.no_such"), "{e}");
}

fn workbench(runs: &std::path::Path) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_workbench"));
    c.arg("--runs-dir").arg(runs).env("OMP_NUM_THREADS", "1");
    c
}

fn ok(out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    String::from_utf8_lossy(&out.stdout).into_owned() + &err
}

/// ASHA end to end, with no user code: `sweep submit` writes the scheduler's state beside the
/// trials' presets, each trial reports its validation metric there and stops when it misses
/// the rung's cut, at a step boundary with a checkpoint and an event that says why;
/// `sweep promote` trains a stopped trial on to its full budget, never stopped again.
#[test]
fn asha_stops_trials_at_their_rung_and_promote_trains_one_to_the_end() {
    use workbench::core::protocol::{Event, Outcome};
    use workbench::core::pruner;
    let runs = tempfile::tempdir().unwrap();
    let smoke = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("presets/smoke.ron");
    let file = runs.path().join("asha.ron");
    std::fs::write(
        &file,
        format!(
            r#"(name: "asha", base: "{}", grid: {{ "train.lr_g": [1e-4, 3e-4], "threads": [1] }},
                scheduler: Some(asha(grace: 10, reduction: 2)))"#,
            smoke.display()
        ),
    )
    .unwrap();
    ok(&workbench(runs.path())
        .args(["sweep", "submit"])
        .arg(&file)
        .output()
        .unwrap());
    // A trial of the sweep that already reported the best value there is at rung 0 (val_swd
    // is never below 0): every real trial misses the cut, deterministically.
    let state = runs.path().join("sweeps/asha").join(pruner::STATE_FILE);
    pruner::update(&state, |s| {
        s.trials.insert(
            "ghost".into(),
            pruner::TrialRecord {
                index: 2,
                rungs: vec![0.0],
                ..Default::default()
            },
        );
    })
    .unwrap();
    ok(&workbench(runs.path())
        .args(["queue", "run", "--jobs", "1"])
        .output()
        .unwrap());
    let trials: Vec<std::path::PathBuf> = std::fs::read_dir(runs.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join(pruner::TRIAL_FILE).is_file())
        .collect();
    assert_eq!(trials.len(), 2, "{trials:?}");
    let events = |run: &std::path::Path| {
        workbench::core::runlog::read_all(&run.join("events.log"))
            .unwrap()
            .events
    };
    for t in &trials {
        let ev = events(t);
        assert!(
            ev.iter().any(
                |e| matches!(e, Event::TrialStopped { step: 10, rung: 0, cut, metric, .. }
                if *cut == 0.0 && metric == "val_swd")
            ),
            "{t:?}: {ev:?}"
        );
        assert!(
            matches!(
                ev.last(),
                Some(Event::RunFinished {
                    step: 10,
                    outcome: Outcome::Stopped,
                    ..
                })
            ),
            "{t:?}: {:?}",
            ev.last()
        );
        assert!(t.join("checkpoints/step-00000010").is_dir(), "{t:?}");
    }
    let s = pruner::read(&state).unwrap();
    assert_eq!(s.trials.values().filter(|t| t.stopped.is_some()).count(), 2);
    // Promote one: it resumes from step 10 and trains to the preset's 40 steps.
    let said = ok(&workbench(runs.path())
        .args(["sweep", "promote"])
        .arg(&trials[0])
        .output()
        .unwrap());
    assert!(said.contains("promoted trial `asha-"), "{said}");
    let ev = events(&trials[0]);
    assert!(
        matches!(
            ev.last(),
            Some(Event::RunFinished {
                step: 40,
                outcome: Outcome::Completed,
                ..
            })
        ),
        "{:?}",
        ev.last()
    );
    assert_eq!(
        ev.iter()
            .filter(|e| matches!(e, Event::TrialStopped { .. }))
            .count(),
        1,
        "never stopped again"
    );
    let s = pruner::read(&state).unwrap();
    let promoted: Vec<_> = s.trials.values().filter(|t| t.promoted).collect();
    assert_eq!(promoted.len(), 1);
    assert!(
        promoted[0].stopped.is_none() && promoted[0].reports.len() >= 3,
        "{promoted:?}"
    );
}

/// TPE end to end: each queued trial gets its values when it starts (the first two at random,
/// the rest proposed from the trials reported by then), its preset is written beside the
/// sweep's with them, and it reports its metric to the shared state.
#[test]
fn a_tpe_sweep_proposes_each_trials_values_when_it_starts() {
    use workbench::core::pruner;
    let runs = tempfile::tempdir().unwrap();
    let smoke = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("presets/smoke.ron");
    let file = runs.path().join("tpe.ron");
    std::fs::write(
        &file,
        format!(
            r#"(name: "tpe", base: "{}",
                tpe: Some((count: 4, seed: 5, startup: 2, fields: {{
                    "train.lr_g": log_uniform(1e-5, 1e-2), "train.n_critic": int(1, 3) }})))"#,
            smoke.display()
        ),
    )
    .unwrap();
    let said = ok(&workbench(runs.path())
        .args(["sweep", "plan"])
        .arg(&file)
        .output()
        .unwrap());
    assert!(said.contains("sweep tpe: 4 runs"), "{said}");
    ok(&workbench(runs.path())
        .args(["sweep", "submit"])
        .arg(&file)
        .output()
        .unwrap());
    ok(&workbench(runs.path())
        .args(["queue", "run", "--jobs", "1"])
        .output()
        .unwrap());
    let state = pruner::read(&runs.path().join("sweeps/tpe").join(pruner::STATE_FILE)).unwrap();
    assert_eq!(state.trials.len(), 4);
    assert_eq!(state.objective, Some(("val_swd".to_string(), false)));
    for (name, t) in &state.trials {
        let lr = t.values["train.lr_g"].as_f64().unwrap();
        let n = t.values["train.n_critic"].as_i64().unwrap();
        assert!(
            (1e-5..=1e-2).contains(&lr) && (1..=3).contains(&n),
            "{name}: {:?}",
            t.values
        );
        assert!(!t.reports.is_empty(), "{name} reported");
        let preset =
            std::fs::read_to_string(runs.path().join("sweeps/tpe").join(format!("{name}.ron")))
                .unwrap();
        assert!(
            preset.starts_with(&format!("// Trial {name} of a TPE sweep: train.lr_g=")),
            "{preset}"
        );
        assert!(preset.contains(&format!("n_critic: {n},")), "{preset}");
    }
    // Distinct proposals: TPE does not repeat the random start.
    let lrs: std::collections::BTreeSet<u64> = state
        .trials
        .values()
        .map(|t| t.values["train.lr_g"].as_f64().unwrap().to_bits())
        .collect();
    assert_eq!(lrs.len(), 4);
}

/// `workbench runs importance`: over 30 runs where the metric follows the generator's rate and
/// barely the critic's steps, the rate explains most of its variance (on a log axis, as it
/// spans three decades), with an interval, and the table is written as CSV.
#[test]
fn runs_importance_names_the_setting_that_matters() {
    use workbench::core::protocol::{Event, MetricDef, Outcome, ScalarRow};
    let runs = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("presets/smoke.ron"),
    )
    .unwrap();
    let mut rng = workbench::core::rng::SplitMix64::new(11);
    for i in 0..30 {
        let lr = 10f64.powf(rng.range_f64(-5.0, -2.0));
        let n_critic = 1 + rng.below(5);
        let dir = runs.path().join(format!("r{i:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("preset.ron"),
            base.replace("lr_g: 2e-4", &format!("lr_g: {lr:e}"))
                .replace("n_critic: 2", &format!("n_critic: {n_critic}")),
        )
        .unwrap();
        let swd = (lr.log10() + 3.5).powi(2) + 0.02 * n_critic as f64;
        let mut w = workbench::core::runlog::LogWriter::open(&dir.join("events.log")).unwrap();
        w.append(&Event::RunStarted {
            run_dir: dir.display().to_string(),
            name: format!("r{i:02}"),
            family: "wgan_gp".into(),
            device: "cpu".into(),
            total_steps: Some(10),
            resumed_from: None,
            restarted: false,
            branch_of: None,
            wall_time: 0.0,
            metrics: vec![MetricDef::validation("val_swd", false).main()],
        })
        .unwrap();
        w.append(&Event::Scalars {
            rows: vec![ScalarRow {
                step: 10,
                wall_time: 1.0,
                values: vec![("val_swd".into(), swd)],
            }],
        })
        .unwrap();
        w.append(&Event::RunFinished {
            step: 10,
            outcome: Outcome::Completed,
            signal: None,
        })
        .unwrap();
        w.sync().unwrap();
    }
    let csv = runs.path().join("importance.csv");
    let said = ok(&workbench(runs.path())
        .args(["runs", "importance", "--csv"])
        .arg(&csv)
        .output()
        .unwrap());
    assert!(
        said.contains("importance of val_swd over 30 runs"),
        "{said}"
    );
    let first = said.lines().nth(1).unwrap_or_default();
    assert!(first.trim_start().starts_with("train.lr_g"), "{said}");
    let text = std::fs::read_to_string(&csv).unwrap();
    let lr: Vec<f64> = text
        .lines()
        .find(|l| l.starts_with("train.lr_g,"))
        .unwrap()
        .split(',')
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(lr[0] > 0.7 && lr[1] <= lr[0] && lr[0] <= lr[2], "{text}");
}

/// ASHA's stop and promote decisions equal Optuna's `SuccessiveHalvingPruner`'s on 81
/// recorded synthetic curves, reported by four workers in the order the fixture's script
/// replays them (`tests/fixtures/make_asha_reference.py`, run once with optuna): two cases,
/// one minimising with eta 3, one maximising with eta 2 and a bootstrap of 2, some trials
/// validating every second step (their rung is reached at the first report after it).
#[test]
fn asha_decides_as_optunas_successive_halving_pruner_on_81_recorded_trials() {
    use workbench::core::pruner::{Decision, Scheduler, SweepState};
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/asha_reference.json")).expect("fixture");
    let curves: Vec<Vec<(u64, f64)>> =
        serde_json::from_value(fixture["curves"].clone()).expect("curves");
    assert_eq!(curves.len(), 81);
    let workers = fixture["workers"].as_u64().expect("workers") as usize;
    for case in fixture["cases"].as_array().expect("cases") {
        let higher = case["higher"].as_bool().expect("higher");
        let mut state = SweepState::new(Scheduler::Asha {
            metric: None,
            grace: case["grace"].as_u64().expect("grace"),
            reduction: case["reduction"].as_u64().expect("reduction"),
            max: None,
            bootstrap: case["bootstrap"].as_u64().expect("bootstrap") as usize,
        });
        let mut stopped_at: Vec<Option<u64>> = vec![None; curves.len()];
        let mut slots: Vec<Option<(usize, usize)>> = vec![None; workers];
        let mut started = 0;
        let mut fill = |slot: &mut Option<(usize, usize)>, state: &mut SweepState| {
            *slot = (started < curves.len()).then(|| {
                state
                    .trials
                    .entry(format!("t{started:02}"))
                    .or_default()
                    .index = started;
                started += 1;
                (started - 1, 0)
            });
        };
        for slot in &mut slots {
            fill(slot, &mut state);
        }
        while slots.iter().any(Option::is_some) {
            for slot in &mut slots {
                let Some((t, pos)) = *slot else { continue };
                let (step, value) = curves[t][pos];
                let decision = state.report(&format!("t{t:02}"), step, value, "val", higher);
                if let Decision::Stop(s) = decision {
                    assert_eq!(s.step, step);
                    stopped_at[t] = Some(step);
                    fill(slot, &mut state);
                } else if pos + 1 == curves[t].len() {
                    fill(slot, &mut state);
                } else {
                    *slot = Some((t, pos + 1));
                }
            }
        }
        let want: Vec<Option<u64>> =
            serde_json::from_value(case["stopped_at"].clone()).expect("stopped_at");
        let want_rungs: Vec<usize> = serde_json::from_value(case["rungs"].clone()).expect("rungs");
        let rungs: Vec<usize> = (0..curves.len())
            .map(|t| state.trials[&format!("t{t:02}")].rungs.len())
            .collect();
        assert_eq!(stopped_at, want, "stop steps, grace {}", case["grace"]);
        assert_eq!(rungs, want_rungs, "rungs reached");
        // Not a trivial reference: some trials stop at every rung and some go to the end.
        assert!(
            want.iter().any(Option::is_none) && want.iter().filter(|s| s.is_some()).count() > 40
        );
    }
}

//! Exact resumption, once for every family of the registry: a run stopped mid-phase and
//! resumed from its checkpoint repeats the uninterrupted run's scalars bit for bit, across a
//! phase boundary that starts from the previous phase's best checkpoint. Model, optimisers,
//! the family's own state (loss scales, codebooks, controllers, fixed noise) and the data
//! order all have to come back for that to hold. A branch of the stopped run at its
//! checkpoint (`core::branch`), with nothing changed, repeats the same rows in its own folder;
//! with one field changed it starts at the fork and goes elsewhere.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use common::{run_to_end, scalars};
use workbench::core::branch::{self, BranchRequest};
use workbench::core::preset::{self, schema, Family, Phase, PhaseLength, ValidatedPreset};
use workbench::core::protocol::{Event, Outcome};
use workbench::engine::worker::RunRequest;

#[test]
fn every_family_resumes_a_stopped_run_bit_for_bit() {
    let _serial = common::exclusive();
    for family in Family::ALL {
        let name = family.name();
        let runs = tempfile::tempdir().unwrap();
        let mut p = family
            .default_preset()
            .tiny()
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let phase = |name: &str, start_from_best| Phase {
            name: name.into(),
            length: PhaseLength::Steps(6),
            overrides: Default::default(),
            start_from_best,
        };
        *p.phases_mut() = vec![phase("a", false), phase("b", true)];
        let p = preset::validate(p).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let req = |limit| RunRequest {
            preset: Some(p.clone()),
            runs_dir: runs.path().into(),
            step_limit: limit,
            ..RunRequest::default()
        };
        let (whole, events) = run_to_end(req(None));
        assert!(
            matches!(
                events.last(),
                Some(Event::RunFinished {
                    step: 12,
                    outcome: Outcome::Completed,
                    ..
                })
            ),
            "{name}: {:?}",
            events.last()
        );
        // Stopped at step 5: mid-phase, between two checkpoints; the resumed part crosses the
        // boundary into phase `b`, which loads phase `a`'s best checkpoint.
        let (part, _) = run_to_end(req(Some(5)));
        let branch_of = |set: Vec<(String, serde_json::Value)>| {
            let b = branch::create(&BranchRequest {
                parent: &part,
                at: Some(5),
                set,
                name: None,
            })
            .unwrap_or_else(|e| panic!("{name}: {e}"));
            let own = branch::own_bytes(b.run.root());
            assert!(
                own <= 64 * 1024,
                "{name}: a new branch holds {own} bytes of its own"
            );
            let (dir, events) = run_to_end(RunRequest {
                resume: Some(b.run.root().into()),
                runs_dir: runs.path().into(),
                ..RunRequest::default()
            });
            assert!(
                events
                    .iter()
                    .any(|e| matches!(e, Event::RunStarted { branch_of: Some(l), .. }
                    if l.parent == part.display().to_string() && l.fork_step == 5)),
                "{name}: the branch's start names its parent"
            );
            assert_eq!(
                dir,
                b.run.root(),
                "{name}: a branch trains in its own folder"
            );
            assert_eq!(branch::read(&dir).map(|l| l.fork_step), Some(5));
            scalars(&dir)
        };
        let same = branch_of(Vec::new());
        assert_eq!(
            same.keys().next(),
            Some(&6),
            "{name}: a branch logs from the fork on"
        );
        // Every learning rate: a WGAN-GP's generator, say, does not step in twelve steps.
        let fields = p.preset().front().lr_fields();
        let lrs: Vec<&str> = std::iter::once(fields.generator)
            .chain(fields.critic.iter().copied())
            .collect();
        let other = branch_of(
            lrs.iter()
                .map(|f| {
                    (
                        f.to_string(),
                        serde_json::Value::from(10.0 * lr_value(&p, f)),
                    )
                })
                .collect(),
        );
        assert_eq!(other.keys().next(), Some(&6));
        let (again, events) = run_to_end(RunRequest {
            resume: Some(part.clone()),
            runs_dir: runs.path().into(),
            ..RunRequest::default()
        });
        assert_eq!(again, part, "{name}: a resume continues in its own folder");
        assert!(
            events.iter().any(|e| matches!(
                e,
                Event::RunStarted {
                    resumed_from: Some(5),
                    ..
                }
            )),
            "{name}: resumed from the stop's checkpoint"
        );
        assert!(
            matches!(events.last(), Some(Event::RunFinished { step: 12, .. })),
            "{name}: {:?}",
            events.last()
        );
        let (a, b) = (scalars(&whole), scalars(&part));
        assert_eq!(a.len(), b.len(), "{name}: the same logged steps");
        // The unchanged branch is the whole run after the fork, bit for bit; the branch with
        // ten times the learning rates is not.
        let after: std::collections::BTreeMap<u64, _> = a
            .iter()
            .filter(|(s, _)| **s > 5)
            .map(|(s, r)| (*s, r.clone()))
            .collect();
        assert_eq!(same.len(), after.len(), "{name}: the branch's steps");
        for (step, row) in &after {
            for (k, v) in row {
                let w = same[step].get(k);
                assert!(
                    w.is_some_and(|w| w.to_bits() == v.to_bits() || (v.is_nan() && w.is_nan())),
                    "{name}: step {step} {k}: {v} in the run, {w:?} in its branch"
                );
            }
        }
        // In force from the fork's first row: a checkpoint's live values do not undo it.
        let rates = |row: &std::collections::BTreeMap<String, f64>| {
            row.iter()
                .filter(|(k, _)| k.starts_with("lr"))
                .map(|(k, v)| (k.clone(), *v))
                .collect::<Vec<_>>()
        };
        assert!(
            !rates(&after[&6]).is_empty(),
            "{name}: no learning rate logged"
        );
        assert_ne!(
            rates(&after[&6]),
            rates(&other[&6]),
            "{name}: the rates at the fork"
        );
        let moved = after.iter().any(|(step, row)| {
            row.iter()
                .any(|(k, v)| !k.starts_with("lr") && other[step].get(k).is_some_and(|w| w != v))
        });
        assert!(
            moved,
            "{name}: ten times {lrs:?} changed nothing after the fork:\n{after:?}\n{other:?}"
        );
        assert!(
            a.values()
                .any(|row| row.keys().any(|k| k.starts_with("val_"))),
            "{name}: validation ran"
        );
        let mut differ = Vec::new();
        for (step, row) in &a {
            let other = b
                .get(step)
                .unwrap_or_else(|| panic!("{name}: step {step} missing after resume"));
            for (k, v) in row {
                match other.get(k) {
                    Some(w) if v.to_bits() == w.to_bits() || (v.is_nan() && w.is_nan()) => {}
                    w => differ.push(format!("step {step} {k}: {v} vs {w:?}")),
                }
            }
        }
        assert!(differ.is_empty(), "{name}:\n{}", differ.join("\n"));
    }
}

/// A number field's value in a preset.
fn lr_value(p: &ValidatedPreset, path: &str) -> f64 {
    schema::get_path(&p.preset().to_tree(), path)
        .and_then(serde_json::Value::as_f64)
        .unwrap_or_else(|| panic!("{path} is not a number"))
}

/// A live edit made while training writes a checkpoint first; resuming from that checkpoint
/// makes the edit again at the same step, so the resumed run repeats the edited run's rows
/// bit for bit.
#[test]
fn a_resumed_run_replays_its_live_edits() {
    use workbench::core::protocol::Command;
    use workbench::engine::worker;
    let _serial = common::exclusive();
    let runs = tempfile::tempdir().unwrap();
    let mut p = Family::WganGp.default_preset().tiny().unwrap();
    *p.phases_mut() = vec![Phase {
        name: "a".into(),
        length: PhaseLength::Steps(40),
        overrides: Default::default(),
        start_from_best: false,
    }];
    let p = p
        .with_overrides([("checkpoints.keep_last", serde_json::json!(1000))])
        .unwrap();
    let p = preset::validate(p).unwrap();
    let lr_d = lr_value(&p, "train.lr_d");
    let req = RunRequest {
        preset: Some(p),
        runs_dir: runs.path().into(),
        ..RunRequest::default()
    };
    let handle = worker::spawn(worker::prepare(req).unwrap(), None).unwrap();
    let dir = handle.run_dir().to_path_buf();
    // Pause once a few rows are in, edit, go on: the edit lands between two steps.
    let mut edited_at = None;
    let mut sent = false;
    loop {
        let e = handle
            .events()
            .recv_timeout(std::time::Duration::from_secs(300))
            .unwrap();
        match &e {
            Event::Scalars { rows } if !sent && rows.iter().any(|r| r.step >= 3) => {
                handle.send(Command::Pause);
                handle.send(Command::SetHyperparameter {
                    name: "lr_d".into(),
                    value: 10.0 * lr_d,
                });
                handle.send(Command::Resume);
                sent = true;
            }
            Event::HyperparameterChanged { step, .. } => edited_at = Some(*step),
            _ => {}
        }
        if e.is_terminal() {
            break;
        }
    }
    handle.join();
    let at = edited_at.expect("the edit was made");
    assert!((3..40).contains(&at), "edited at {at}");
    let before = scalars(&dir);
    assert!(
        before[&(at + 1)]["lr_d"] > before[&at]["lr_d"] * 5.0,
        "in force from the next row"
    );
    let ckpt = dir.join("checkpoints").join(format!("step-{at:08}"));
    assert!(
        ckpt.is_dir(),
        "the edit wrote a checkpoint of its step first"
    );
    let (again, events) = run_to_end(RunRequest {
        resume: Some(ckpt),
        runs_dir: runs.path().into(),
        ..RunRequest::default()
    });
    assert_eq!(again, dir);
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::HyperparameterChanged { step, .. } if *step == at)));
    let after = scalars(&dir);
    assert_eq!(before.len(), after.len());
    for (step, row) in &before {
        for (k, v) in row {
            let w = after[step].get(k);
            assert!(
                w.is_some_and(|w| w.to_bits() == v.to_bits() || (v.is_nan() && w.is_nan())),
                "step {step} {k}: {v} before, {w:?} resumed"
            );
        }
    }
}

/// Over a long stretch too: a branch with nothing changed, made at step 5 of a run stopped
/// there, repeats the uninterrupted run's next 200 rows bit for bit, for every family (with
/// the samples, validations and checkpoints of the family's tiny cadences on the way).
#[test]
fn an_unchanged_branch_repeats_its_parent_for_200_rows() {
    let _serial = common::exclusive();
    for family in Family::ALL {
        let name = family.name();
        let runs = tempfile::tempdir().unwrap();
        let mut p = family
            .default_preset()
            .tiny()
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        *p.phases_mut() = vec![Phase {
            name: "long".into(),
            length: PhaseLength::Steps(205),
            overrides: Default::default(),
            start_from_best: false,
        }];
        let p = preset::validate(p).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let req = |limit| RunRequest {
            preset: Some(p.clone()),
            runs_dir: runs.path().into(),
            step_limit: limit,
            ..RunRequest::default()
        };
        let (whole, _) = run_to_end(req(None));
        let (part, _) = run_to_end(req(Some(5)));
        let b = branch::create(&BranchRequest {
            parent: &part,
            at: Some(5),
            set: Vec::new(),
            name: None,
        })
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let (dir, _) = run_to_end(RunRequest {
            resume: Some(b.run.root().into()),
            runs_dir: runs.path().into(),
            ..RunRequest::default()
        });
        let (a, same) = (scalars(&whole), scalars(&dir));
        let after: Vec<_> = a.iter().filter(|(s, _)| **s > 5).collect();
        assert!(after.len() >= 200, "{name}: {} rows", after.len());
        assert_eq!(same.len(), after.len(), "{name}: the branch's rows");
        for (step, row) in after {
            for (k, v) in row {
                let w = same[step].get(k);
                assert!(
                    w.is_some_and(|w| w.to_bits() == v.to_bits() || (v.is_nan() && w.is_nan())),
                    "{name}: step {step} {k}: {v} in the run, {w:?} in its branch"
                );
            }
        }
    }
}

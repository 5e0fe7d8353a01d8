//! Exact resumption, once for every family of the registry: a run stopped mid-phase and
//! resumed from its checkpoint repeats the uninterrupted run's scalars bit for bit, across a
//! phase boundary that starts from the previous phase's best checkpoint. Model, optimisers,
//! the family's own state (loss scales, codebooks, controllers, fixed noise) and the data
//! order all have to come back for that to hold.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use common::{run_to_end, scalars};
use workbench::core::preset::{self, Family, Phase, PhaseLength};
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

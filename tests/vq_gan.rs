//! The VQ-GAN family (seed 003) end to end on CPU libtorch: exact resume across the critics'
//! start, and bad volumes refused by name before any run folder exists.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command as Process;

use common::{run_to_end, scalars};
use workbench::core::preset::{self, AnyPreset, VqGanPreset};
use workbench::core::protocol::Event;
use workbench::engine::worker::RunRequest;

#[test]
fn a_resumed_run_repeats_the_uninterrupted_losses_exactly() {
    let _serial = common::exclusive();
    let runs = tempfile::tempdir().unwrap();
    let mut p = AnyPreset::VqGan(VqGanPreset::default())
        .with_overrides([
            ("device", "cpu".into()),
            ("threads", 1.into()),
            ("data.synthetic_count", 8.into()),
            ("data.synthetic_holdout", 2.into()),
            ("train.batch_size", 2.into()),
            ("train.disc_start", 4.into()),
            ("train.perceptual_weight", 0.1.into()),
            ("logging.log_every_steps", 1.into()),
            ("logging.validate_every_steps", 5.into()),
            ("checkpoints.every_steps", 3.into()),
        ])
        .unwrap();
    if let AnyPreset::VqGan(v) = &mut p {
        v.phases[0].length = preset::PhaseLength::Steps(10);
    }
    let p = preset::validate(p).unwrap();
    let req = |limit| RunRequest {
        preset: Some(p.clone()),
        runs_dir: runs.path().into(),
        step_limit: limit,
        ..RunRequest::default()
    };
    let (whole, events) = run_to_end(req(None));
    assert!(
        matches!(events.last(), Some(Event::RunFinished { step: 10, .. })),
        "{:?}",
        events.last()
    );
    let (part, _) = run_to_end(req(Some(6)));
    let (_, events) = run_to_end(RunRequest {
        resume: Some(part.clone()),
        runs_dir: runs.path().into(),
        ..RunRequest::default()
    });
    assert!(matches!(
        events.last(),
        Some(Event::RunFinished { step: 10, .. })
    ));
    let (a, b) = (scalars(&whole), scalars(&part));
    assert!(
        a.values().any(|r| r.contains_key("discloss")),
        "the critics ran"
    );
    assert!(a.values().any(|r| r.contains_key("val_psnr")));
    let mut differ = Vec::new();
    for (step, row) in &a {
        for (k, v) in row {
            if Some(v) != b[step].get(k) {
                differ.push(format!("step {step} {k}: {v} vs {:?}", b[step].get(k)));
            }
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}

#[test]
fn bad_volumes_are_exit_2_before_any_run_directory() {
    let runs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let train = |path: &Path| {
        Process::new(env!("CARGO_BIN_EXE_workbench"))
            .args(["train", "--preset"])
            .arg(root.join("presets/vq_gan_tiny.ron"))
            .arg("--runs-dir")
            .arg(runs.path())
            .args(["--device", "cpu", "--steps", "1", "--data"])
            .arg(path)
            .output()
            .unwrap()
    };
    let empty = data.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let text = data.path().join("text.nii");
    std::fs::write(&text, "not a volume").unwrap();
    for (out, want) in [
        (train(&empty), "holds no .nii or .nii.gz file"),
        (train(&text), "text.nii"),
        (train(&data.path().join("missing")), "does not exist"),
    ] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("data.path") && stderr.contains(want),
            "{stderr}"
        );
    }
    assert_eq!(std::fs::read_dir(runs.path()).map_or(0, Iterator::count), 0);
}

/// Patchwise training (the Xray port's path): every patch of a volume in one optimiser step,
/// validation on whole volumes blended back from their patches.
#[test]
fn patchwise_training_steps_once_per_batch_and_validates_whole_volumes() {
    let _serial = common::exclusive();
    let runs = tempfile::tempdir().unwrap();
    let mut p = AnyPreset::VqGan(VqGanPreset::default())
        .with_overrides([
            ("device", "cpu".into()),
            ("threads", 1.into()),
            ("data.synthetic_count", 4.into()),
            ("data.synthetic_holdout", 1.into()),
            ("data.patch", 8.into()),
            ("data.patch_stride", 4.into()),
            ("train.batch_size", 1.into()),
            ("train.disc_start", 2.into()),
            ("logging.log_every_steps", 1.into()),
            ("logging.validate_every_steps", 4.into()),
        ])
        .unwrap();
    if let AnyPreset::VqGan(v) = &mut p {
        v.phases[0].length = preset::PhaseLength::Steps(4);
    }
    let (dir, events) = run_to_end(RunRequest {
        preset: Some(preset::validate(p).unwrap()),
        runs_dir: runs.path().into(),
        ..RunRequest::default()
    });
    assert!(
        matches!(events.last(), Some(Event::RunFinished { step: 4, .. })),
        "{:?}",
        events.last()
    );
    let rows = scalars(&dir);
    let last = &rows[&4];
    assert!(
        last["val_psnr"].is_finite() && last["discloss"].is_finite(),
        "{last:?}"
    );
    // A patch of 8 with stride 4 in 16: positions 0, 4, 8 per axis, 27 patches a volume.
    assert!(last["codebook_usage"] >= 1.0);
    let bad = AnyPreset::VqGan(VqGanPreset::default())
        .with_overrides([("data.patch", 6.into())])
        .unwrap();
    let problems = preset::validate(bad).unwrap_err();
    assert!(
        problems.iter().any(|p| p.path == "data.patch"),
        "{problems:?}"
    );
}

/// A TorchScript LPIPS named by the preset goes through the loader WuBu-GAAD uses; a missing
/// one is exit 2 before any run folder exists.
#[test]
fn a_torchscript_lpips_file_is_shared_with_wubu_gaads_loader() {
    let _serial = common::exclusive();
    let runs = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let standin = root.join("tests/fixtures/lpips_standin.pt");
    let mut p = AnyPreset::VqGan(VqGanPreset::default())
        .with_overrides([
            ("device", "cpu".into()),
            ("threads", 1.into()),
            ("data.synthetic_count", 4.into()),
            ("data.synthetic_holdout", 1.into()),
            ("train.batch_size", 2.into()),
            ("train.perceptual_weight", 1.0.into()),
            ("train.lpips_model", standin.display().to_string().into()),
            ("logging.log_every_steps", 1.into()),
        ])
        .unwrap();
    if let AnyPreset::VqGan(v) = &mut p {
        v.phases[0].length = preset::PhaseLength::Steps(2);
    }
    let (dir, events) = run_to_end(RunRequest {
        preset: Some(preset::validate(p).unwrap()),
        runs_dir: runs.path().into(),
        ..RunRequest::default()
    });
    assert!(
        matches!(events.last(), Some(Event::RunFinished { step: 2, .. })),
        "{:?}",
        events.last()
    );
    let rows = scalars(&dir);
    assert!(rows[&2]["perceptual_loss"] > 0.0, "{:?}", rows[&2]);
    let out = Process::new(env!("CARGO_BIN_EXE_workbench"))
        .args(["train", "--preset"])
        .arg(root.join("presets/vq_gan_tiny.ron"))
        .arg("--runs-dir")
        .arg(runs.path().join("other"))
        .args([
            "--device",
            "cpu",
            "--steps",
            "1",
            "--set",
            "train.lpips_model=/nowhere/lpips.pt",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("train.lpips_model") && stderr.contains("/nowhere/lpips.pt"),
        "{stderr}"
    );
    assert!(
        !runs.path().join("other").exists()
            || std::fs::read_dir(runs.path().join("other"))
                .unwrap()
                .count()
                == 0
    );
}

//! The VQ-GAN family (seed 003) end to end on CPU libtorch: its two optimisers kept apart,
//! the critics' start, and bad volumes refused by name before any run folder exists.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command as Process;

use common::{run_to_end, scalars};
use workbench::core::preset::{self, AnyPreset, VqGanPreset};
use workbench::core::protocol::Event;
use workbench::engine::worker::RunRequest;

/// The tiny preset on the CPU, one thread, for `steps` steps, with `overrides`.
fn tiny<const N: usize>(
    steps: u64,
    overrides: [(&str, serde_json::Value); N],
) -> preset::ValidatedPreset {
    let mut p = AnyPreset::VqGan(VqGanPreset::default())
        .with_overrides([("device", "cpu".into()), ("threads", 1.into())])
        .unwrap()
        .with_overrides(overrides)
        .unwrap();
    if let AnyPreset::VqGan(v) = &mut p {
        v.phases[0].length = preset::PhaseLength::Steps(steps);
    }
    preset::validate(p).unwrap()
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
    // A video with no room for a validation clip in its last 20%: 10 frames, clips of 16.
    let short_video = root.join("tests/fixtures/testsrc_64x48_10f.avi");
    for (out, want) in [
        (train(&empty), "holds no .nii or .nii.gz file"),
        (train(&text), "text.nii"),
        (train(&data.path().join("missing")), "does not exist"),
        (train(&short_video), "testsrc_64x48_10f.avi"),
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

/// Patchwise training (the Xray port's path): every patch of a batch in one optimiser update,
/// whether the patches go through the model one at a time or all at once, and the losses are
/// the step's means: a single patch covering the volume trains and validates exactly as the
/// whole volume does.
#[test]
fn patchwise_training_steps_once_per_batch_and_validates_whole_volumes() {
    let _serial = common::exclusive();
    let runs = tempfile::tempdir().unwrap();
    let run = |sets: Vec<(&'static str, serde_json::Value)>| {
        let mut all: Vec<(&str, serde_json::Value)> = vec![
            ("data.synthetic_count", 4.into()),
            ("data.synthetic_holdout", 1.into()),
            ("train.batch_size", 1.into()),
            ("train.disc_start", 2.into()),
            ("logging.log_every_steps", 1.into()),
            ("logging.validate_every_steps", 4.into()),
            ("checkpoints.every_steps", 4.into()),
        ];
        all.extend(sets);
        let mut p = AnyPreset::VqGan(VqGanPreset::default())
            .with_overrides([("device", "cpu".into()), ("threads", 1.into())])
            .unwrap()
            .with_overrides(all)
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
        let ckpt = workbench::engine::checkpoint::read(&dir.join("checkpoints/step-00000004"))
            .expect("checkpoint");
        let adam_steps = |name: &str| ckpt.tensors[name].int64_value(&[0]);
        (
            scalars(&dir),
            adam_steps("opt_ae.step"),
            adam_steps("opt_d.step"),
        )
    };
    // A patch of 8 with stride 4 in 16: positions 0, 4, 8 per axis, 27 patches a volume; one
    // at a time (27 forwards, 27 codebook updates) and all at once, each step is one update of
    // each optimiser (the critics from step 2).
    for batch in [1, 0] {
        let (rows, ae, d) = run(vec![
            ("data.patch", 8.into()),
            ("data.patch_stride", 4.into()),
            ("data.patch_batch", batch.into()),
        ]);
        assert_eq!((ae, d), (4, 2), "patch_batch {batch}");
        let last = &rows[&4];
        assert!(
            last["val_psnr"].is_finite() && last["discloss"].is_finite(),
            "{last:?}"
        );
    }
    // One patch as large as the volume: the same numbers as whole volumes, step by step.
    let (whole, _, _) = run(vec![]);
    let (one, _, _) = run(vec![
        ("data.patch", 16.into()),
        ("data.patch_batch", 1.into()),
    ]);
    for step in [1u64, 2, 3, 4] {
        for k in ["recon_loss", "commitment_loss", "aeloss"] {
            assert_eq!(whole[&step][k], one[&step][k], "step {step} {k}");
        }
    }
    assert_eq!(whole[&4]["val_psnr"], one[&4]["val_psnr"]);
    let bad = AnyPreset::VqGan(VqGanPreset::default())
        .with_overrides([("data.patch", 6.into())])
        .unwrap();
    let problems = preset::validate(bad).unwrap_err();
    assert!(
        problems.iter().any(|p| p.path == "data.patch"),
        "{problems:?}"
    );
    // A stride beyond the patch would leave voxels no patch trains on.
    let gaps = AnyPreset::VqGan(VqGanPreset::default())
        .with_overrides([("data.patch", 8.into()), ("data.patch_stride", 12.into())])
        .unwrap();
    let problems = preset::validate(gaps).unwrap_err();
    assert!(
        problems.iter().any(|p| p.path == "data.patch_stride"),
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
    let p = tiny(
        2,
        [
            ("data.synthetic_count", 4.into()),
            ("data.synthetic_holdout", 1.into()),
            ("train.batch_size", 2.into()),
            ("train.perceptual_weight", 1.0.into()),
            ("train.lpips_model", standin.display().to_string().into()),
            ("logging.log_every_steps", 1.into()),
        ],
    );
    let (dir, events) = run_to_end(RunRequest {
        preset: Some(p),
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

/// Video as volumes: clips `[3, T, H, W]` of synthetic moving shapes train the 3-channel
/// model; each validation writes the first clip and its reconstruction as NIfTI files (the
/// last three validations' kept), reports the codebook's use and a 3-D SSIM, and the critics'
/// start is an event (a marker on every plot).
#[test]
fn video_clips_train_and_validations_write_volumes_and_codebook_use() {
    let _serial = common::exclusive();
    let runs = tempfile::tempdir().unwrap();
    let p = tiny(
        6,
        [
            ("data.source", "synthetic_video".into()),
            ("data.depth", 4.into()),
            ("data.height", 16.into()),
            ("data.width", 16.into()),
            ("data.synthetic_count", 4.into()),
            ("data.synthetic_holdout", 2.into()),
            ("train.batch_size", 2.into()),
            ("train.disc_start", 3.into()),
            ("train.double_forward", true.into()),
            ("logging.log_every_steps", 1.into()),
            ("logging.validate_every_steps", 1.into()),
        ],
    );
    let (dir, events) = run_to_end(RunRequest {
        preset: Some(p),
        runs_dir: runs.path().into(),
        ..RunRequest::default()
    });
    assert!(
        matches!(events.last(), Some(Event::RunFinished { step: 6, .. })),
        "{:?}",
        events.last()
    );
    let volumes: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(e, Event::Volume { .. }))
        .collect();
    assert!(volumes.len() >= 4, "{}", volumes.len());
    let Some(Event::Volume {
        step,
        truth,
        recon,
        channels,
        dims,
        truth_data,
        recon_data,
        ..
    }) = volumes.last().copied()
    else {
        unreachable!()
    };
    assert_eq!((*channels, *dims), (3, [4, 16, 16]));
    let read =
        |rel: &str| workbench::engine::data::volumes::read_nifti_channels(&dir.join(rel)).unwrap();
    let (t, r) = (read(truth), read(recon));
    assert_eq!((t.channels, t.dims), (3, [4, 16, 16]));
    assert_eq!(&t.data, truth_data, "the file holds what the event carried");
    assert_eq!(&r.data, recon_data);
    assert_ne!(t.data, r.data);
    // Only the last three validations' files are kept.
    let kept: Vec<String> = std::fs::read_dir(dir.join("media"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("-volume-"))
        .collect();
    assert_eq!(kept.len(), 6, "{kept:?}");
    assert!(kept.iter().any(|n| n.contains(&format!("step-{step:08}"))));
    // Codebook use: every latent position of the two validation clips is counted once.
    let Some(Event::Codes { counts, .. }) = events
        .iter()
        .rev()
        .find(|e| matches!(e, Event::Codes { .. }))
    else {
        panic!("no codebook use")
    };
    assert_eq!(counts.len(), 64);
    assert_eq!(
        counts.iter().sum::<u64>(),
        2 * (16 / 4) * (16 / 4),
        "2 clips of 1 x 4 x 4 codes"
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::DiscriminatorSwitch { step: 3, .. })));
    let rows = scalars(&dir);
    let ssim = rows.values().find_map(|r| r.get("val_ssim")).unwrap();
    assert!(ssim.is_finite() && ssim.abs() <= 1.0, "{ssim}");
    assert!(rows.values().any(|r| r.contains_key("discloss")));
}

/// The originals' double forward updates the EMA codebook a second time per batch: the
/// next step quantises with other codes than the shared forward's, so its losses differ,
/// while the first step (before any second update) is the same.
#[test]
fn the_double_forward_updates_the_codebook_twice() {
    let _serial = common::exclusive();
    let runs = tempfile::tempdir().unwrap();
    let run = |double: bool| {
        let p = tiny(
            3,
            [
                ("data.synthetic_count", 4.into()),
                ("data.synthetic_holdout", 1.into()),
                ("train.batch_size", 2.into()),
                ("train.double_forward", double.into()),
                ("logging.log_every_steps", 1.into()),
            ],
        );
        let (dir, _) = run_to_end(RunRequest {
            preset: Some(p),
            runs_dir: runs.path().into(),
            ..RunRequest::default()
        });
        scalars(&dir)
    };
    let (single, double) = (run(false), run(true));
    assert_eq!(single[&1]["aeloss"], double[&1]["aeloss"]);
    assert_ne!(single[&3]["commitment_loss"], double[&3]["commitment_loss"]);
}

/// The codebook's EMA moves once per training forward: after one step of the double forward
/// its counts are those of two updates of the same batch, `N = d^2 N0 + (1 - d)(1 + d) n`
/// when both forwards pick the same codes (a batch of one volume, read before and after).
#[test]
fn the_double_forward_moves_the_codebook_statistics_twice() {
    // It seeds and draws from libtorch's one generator: never beside a test that trains.
    let _serial = common::exclusive();
    use workbench::engine::nn::vq3d::{EmaCodebook, Smoothing};
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let mut cb = EmaCodebook::new(&vs.root(), 8, 4, Smoothing::Laplace);
    cb.random_restart = false;
    tch::manual_seed(1);
    let z = tch::Tensor::randn([1, 4, 2, 2, 2], (tch::Kind::Float, tch::Device::Cpu));
    let _ = cb.forward(&z, true); // the lazy initialisation from the batch
    let n0 = cb.n.copy();
    let q1 = cb.forward(&z, true);
    let hist = q1
        .indices
        .flatten(0, -1)
        .bincount::<tch::Tensor>(None, 8)
        .to_kind(tch::Kind::Float);
    let q2 = cb.forward(&z, true);
    assert!(q1.indices.equal(&q2.indices), "the same codes both times");
    let d = 0.99;
    let want = &n0 * (d * d) + &hist * ((1.0 - d) * (1.0 + d));
    let diff = (&cb.n - want).abs().max().double_value(&[]);
    assert!(diff < 1e-5, "{diff}");
}

/// A trainer of the tiny preset on synthetic volumes, batch 1, with `sets`.
fn trainer(sets: &[(&str, serde_json::Value)]) -> Box<dyn workbench::engine::trainer::Trainer> {
    let mut all: Vec<(&str, serde_json::Value)> = vec![
        ("data.synthetic_count", 2.into()),
        ("data.synthetic_holdout", 1.into()),
        ("train.batch_size", 1.into()),
    ];
    all.extend(sets.iter().cloned());
    let p = AnyPreset::VqGan(VqGanPreset::default())
        .with_overrides(all)
        .unwrap();
    workbench::engine::families::make_trainer(&p, tch::Device::Cpu).expect("trainer")
}

/// The critics' parameters (`d.*` of the checkpoint, less BatchNorm's running statistics,
/// which every training-mode forward moves), copied.
fn critics(t: &mut Box<dyn workbench::engine::trainer::Trainer>) -> Vec<(String, tch::Tensor)> {
    let mut v: Vec<(String, tch::Tensor)> = t
        .state_tensors()
        .into_iter()
        .filter(|(n, _)| {
            n.starts_with("d.") && !n.contains("running_") && !n.contains("num_batches")
        })
        .map(|(n, x)| (n, x.copy()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!v.is_empty());
    v
}

fn step(t: &mut Box<dyn workbench::engine::trainer::Trainer>, step: u64) -> Vec<String> {
    t.train_step(&workbench::engine::trainer::StepCtx {
        step,
        ..Default::default()
    })
    .expect("step")
    .into_iter()
    .map(|(k, _)| k.to_string())
    .collect()
}

/// One step with the critics on, changing only what the autoencoder's loss and clipping
/// see: feature matching (whose gradient reaches the critics' weights through their
/// features) and the clip norm. The critics' step comes out the same: their optimiser sees
/// only their own loss's gradient, and only the autoencoder is clipped. "The same" for all
/// but a few elements, not bit for bit: libtorch's threaded reductions may sum in another
/// order from one trainer to the next, and Adam's first step moves each weight by about the
/// learning rate in the sign of its gradient, so a gradient within rounding of zero may step
/// either way (seen twice in many runs, one bias element each time). A leak of feature
/// matching at weight 40, or the autoencoder's clip on the critics, changes the sign or size
/// of the step of a large share of the critics' elements.
#[test]
fn the_critics_step_on_their_own_loss_alone() {
    let _serial = common::exclusive();
    let make = |feat: f64, clip: f64| {
        trainer(&[
            ("train.disc_start", 0.into()),
            ("train.gan_feat_weight", feat.into()),
            ("train.grad_clip", clip.into()),
        ])
    };
    let mut base = make(0.0, 1.0);
    let before = critics(&mut base);
    assert!(
        step(&mut base, 0).iter().any(|k| k == "discloss"),
        "the critics ran"
    );
    let after = critics(&mut base);
    assert!(
        before.iter().zip(&after).any(|(a, b)| !a.1.equal(&b.1)),
        "the critics learned"
    );
    let total: i64 = after.iter().map(|(_, t)| t.numel() as i64).sum();
    for (feat, clip) in [(40.0, 1.0), (0.0, 1e-6)] {
        let mut other = make(feat, clip);
        step(&mut other, 0);
        let mut differ = Vec::new();
        for ((name, a), (_, b)) in after.iter().zip(critics(&mut other)) {
            let off = ((a - &b).abs() - (b.abs() * 1e-5 + 1e-7))
                .gt(0.0)
                .sum(tch::Kind::Int64)
                .int64_value(&[]);
            if off > 0 {
                differ.push(format!("{name}: {off}"));
            }
        }
        let off: i64 = differ
            .iter()
            .filter_map(|d| d.rsplit(": ").next()?.parse::<i64>().ok())
            .sum();
        assert!(
            off <= (total / 1000).max(2),
            "feature matching {feat}, clip {clip}: {off} of {total} critic elements differ: {differ:?}"
        );
    }
}

/// Before `train.disc_start` neither the adversarial nor the feature-matching term enters
/// the autoencoder's loss and the critics do not step; from it, both do.
#[test]
fn disc_start_gates_both_terms_and_the_critics_step() {
    let _serial = common::exclusive();
    let mut t = trainer(&[("train.disc_start", 1.into())]);
    let before = critics(&mut t);
    let early = step(&mut t, 0);
    for k in [
        "g_image_loss",
        "g_video_loss",
        "image_gan_feat_loss",
        "discloss",
    ] {
        assert!(!early.iter().any(|n| n == k), "{k} before disc_start");
    }
    for ((name, a), (_, b)) in before.iter().zip(critics(&mut t)) {
        assert!(a.equal(&b), "critic tensor {name} moved before disc_start");
    }
    let on = step(&mut t, 1);
    for k in [
        "g_image_loss",
        "g_video_loss",
        "image_gan_feat_loss",
        "video_gan_feat_loss",
        "discloss",
    ] {
        assert!(on.iter().any(|n| n == k), "{k} from disc_start");
    }
    assert!(before
        .iter()
        .zip(critics(&mut t))
        .any(|(a, b)| !a.1.equal(&b.1)));
}

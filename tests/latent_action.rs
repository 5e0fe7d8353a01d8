//! The latent action family (seed 002): HDF5 latents, the manifest, the overfit criterion,
//! exact checkpoints, bad input, and the command-line data tools.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command as Process;

use common::{run_to_end, scalars};
use workbench::core::preset::{self, AnyPreset, LatentActionPreset, ValidatedPreset};
use workbench::core::protocol::{Event, Outcome};
use workbench::engine::data::latents::{
    make_manifest, read_manifest, split_counts, write_latents, write_manifest, LatentFile,
    LatentShape, Ratios,
};
use workbench::engine::worker::RunRequest;

fn workbench() -> Process {
    Process::new(env!("CARGO_BIN_EXE_workbench"))
}

/// Frames whose every value says where it is: `frame * 1000 + index in the frame`.
fn labelled(frames: usize, len: usize) -> Vec<f32> {
    (0..frames)
        .flat_map(|f| (0..len).map(move |i| (f * 1000 + i) as f32))
        .collect()
}

#[test]
fn both_time_layouts_read_back_frame_by_frame_across_chunks() {
    let dir = tempfile::tempdir().unwrap();
    for t_lat in [1, 2] {
        let shape = LatentShape {
            chunks: 5,
            channels: 2,
            t_lat,
            height: 3,
            width: 4,
        };
        let path = dir.path().join(format!("t{t_lat}.h5"));
        let values = labelled(shape.frames(), shape.frame_len());
        write_latents(&path, &values, shape, None).unwrap();
        // On disk as the seed stores it: [N_chunks, C, T_lat, H, W], gzip-compressed.
        {
            let file = hdf5::File::open(&path).unwrap();
            let ds = file.dataset("embeddings").unwrap();
            assert_eq!(ds.shape(), vec![5, 2, t_lat, 3, 4]);
            assert!(ds
                .filters()
                .iter()
                .any(|f| matches!(f, hdf5::filters::Filter::Deflate(_))));
            let raw: ndarray::Array5<f32> = ds.read().unwrap();
            // Chunk 1, channel 1, time t, row 2, column 3 is frame t_lat + t, value 12 + 11.
            let t = t_lat - 1;
            assert_eq!(raw[[1, 1, t, 2, 3]], ((t_lat + t) * 1000 + 23) as f32);
        }
        let lf = LatentFile::open(&path).unwrap();
        assert_eq!(lf.shape, shape);
        let frames = shape.frames();
        for (start, len) in [(0, 2), (1, 3), (frames - 4, 4), (3, 1)] {
            let got = lf.read_frames(start, len).unwrap();
            let want = &values[start * 24..(start + len) * 24];
            assert_eq!(got, want, "T_lat {t_lat}, frames {start}..{}", start + len);
        }
        let err = lf.read_frames(frames - 1, 2).unwrap_err().to_string();
        assert!(
            err.contains(&format!("t{t_lat}.h5")) && err.contains("outside"),
            "{err}"
        );
    }
}

#[test]
fn wrong_rank_missing_dataset_and_truncated_files_are_named_with_their_shape() {
    let dir = tempfile::tempdir().unwrap();
    let rank4 = dir.path().join("rank4.h5");
    {
        let f = hdf5::File::create(&rank4).unwrap();
        let a = ndarray::Array4::<f32>::zeros((3, 16, 8, 8));
        f.new_dataset_builder()
            .with_data(&a)
            .create("embeddings")
            .unwrap();
        f.new_dataset_builder()
            .with_data(&[1.0f32, 2.0])
            .create("motion_energy")
            .unwrap();
    }
    let err = LatentFile::open(&rank4).unwrap_err().to_string();
    assert!(
        err.contains("rank4.h5") && err.contains("[3, 16, 8, 8]") && err.contains("rank 4"),
        "{err}"
    );
    let other = dir.path().join("other.h5");
    {
        let f = hdf5::File::create(&other).unwrap();
        f.new_dataset_builder()
            .with_data(&[1.0f32, 2.0])
            .create("latents")
            .unwrap();
    }
    let err = LatentFile::open(&other).unwrap_err().to_string();
    assert!(
        err.contains("no dataset `embeddings`") && err.contains("latents"),
        "{err}"
    );
    let good = dir.path().join("good.h5");
    let shape = LatentShape {
        chunks: 6,
        channels: 2,
        t_lat: 1,
        height: 4,
        width: 4,
    };
    write_latents(&good, &labelled(6, 32), shape, None).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.path().join("cut.h5");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = LatentFile::open(&cut)
        .and_then(|f| f.read_frames(0, 6).map(|_| ()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("cut.h5"), "{err}");
}

#[test]
fn split_arithmetic_is_the_seeds() {
    let r = Ratios::default();
    assert_eq!(split_counts(10, r).unwrap(), (8, 1, 1));
    assert_eq!(split_counts(7, r).unwrap(), (5, 0, 2));
    assert_eq!(split_counts(1, r).unwrap(), (0, 0, 1));
    assert_eq!(split_counts(40, r).unwrap(), (32, 4, 4));
    let bad = Ratios {
        train: 0.7,
        validation: 0.1,
        test: 0.1,
    };
    assert!(split_counts(10, bad)
        .unwrap_err()
        .to_string()
        .contains("sum to 1"));
}

#[test]
fn the_manifest_round_trips_in_the_seeds_format() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..10 {
        let shape = LatentShape {
            chunks: 3 + i,
            channels: 1,
            t_lat: 2,
            height: 2,
            width: 2,
        };
        let path = dir.path().join(format!("video_{i:02}.h5"));
        write_latents(&path, &labelled(shape.frames(), 4), shape, None).unwrap();
    }
    std::fs::write(dir.path().join("broken.h5"), b"not hdf5").unwrap();
    let (m, skipped) = make_manifest(dir.path(), Ratios::default(), 42).unwrap();
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(skipped[0].contains("broken.h5"));
    let s = &m.splits;
    assert_eq!((s.train.len(), s.validation.len(), s.test.len()), (8, 1, 1));
    let mut all: Vec<&String> = s.train.iter().chain(&s.validation).chain(&s.test).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 10, "every file in exactly one split");
    let stats = &m.statistics["train"];
    let chunks: usize = s
        .train
        .iter()
        .map(|n| 3 + n[6..8].parse::<usize>().unwrap())
        .sum();
    assert_eq!(
        (stats.num_files, stats.num_chunks, stats.num_latent_frames),
        (8, chunks, 2 * chunks)
    );
    let path = dir.path().join("manifest.json");
    write_manifest(&path, &m).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    for key in [
        "\"validation\"",
        "\"split_ratios\"",
        "\"num_latent_frames\"",
        "\"data_directory\"",
    ] {
        assert!(text.contains(key), "{key} missing");
    }
    assert_eq!(read_manifest(&path).unwrap(), m);
    // The same seed splits the same way.
    assert_eq!(
        make_manifest(dir.path(), Ratios::default(), 42)
            .unwrap()
            .0
            .splits,
        m.splits
    );
    std::fs::write(&path, text.replace("\"validation\"", "\"val\"")).unwrap();
    let err = read_manifest(&path).unwrap_err().to_string();
    assert!(
        err.contains("manifest.json") && err.contains("validation"),
        "{err}"
    );
}

fn tiny(sets: &[(&str, serde_json::Value)], base: LatentActionPreset) -> ValidatedPreset {
    let mut all: Vec<(&str, serde_json::Value)> = vec![
        ("device", "cpu".into()),
        ("threads", 1.into()),
        ("data.synthetic_files", 10.into()),
        ("data.synthetic_frames", 24.into()),
    ];
    all.extend(sets.iter().cloned());
    preset::validate(
        AnyPreset::LatentAction(base)
            .with_overrides(all)
            .expect("overrides"),
    )
    .expect("valid")
}

/// The seed's overfit test passes on the tiny model: MSE < 0.01 and MAE < 0.05 on its one
/// stored batch within 300 steps.
#[test]
fn the_overfit_test_passes_on_the_tiny_model() {
    let _serial = common::exclusive();
    let runs = tempfile::tempdir().unwrap();
    let (dir, events) = run_to_end(RunRequest {
        preset: Some(tiny(&[], LatentActionPreset::overfit())),
        runs_dir: runs.path().into(),
        ..RunRequest::default()
    });
    assert!(matches!(
        events.last(),
        Some(Event::RunFinished {
            outcome: Outcome::Completed,
            step: 300,
            ..
        })
    ));
    let rows = scalars(&dir);
    let last = rows.values().next_back().unwrap();
    let first = rows.values().next().unwrap();
    assert!(first["mse_loss"] > 0.02, "it starts untrained: {first:?}");
    assert!(last["mse_loss"] < 0.01, "{last:?}");
    assert!(last["mae_loss"] < 0.05, "{last:?}");
}

/// The shipped levers for real footage make actions that say the motion: on the synthetic
/// blobs (eight moves of 3 pixels) `latent_action_video` starts at copy-last (its flows are
/// zero) and within 400 steps predicts the moved blob at under half copy-last's error, with
/// the actions carrying it (decoding with random codes is further off than with the encoded
/// ones) and the code triples sorted by the true moves. With `model.encoder_motion` or
/// `model.action_motion` broken the actions say nothing in that time.
#[test]
fn the_video_levers_learn_actions_that_say_the_motion() {
    let _serial = common::exclusive();
    let runs = tempfile::tempdir().unwrap();
    let mut video = LatentActionPreset::video();
    video.phases = vec![preset::Phase::single(preset::PhaseLength::Steps(400))];
    let (dir, events) = run_to_end(RunRequest {
        preset: Some(tiny(
            &[
                ("threads", 2.into()),
                ("logging.validate_every_steps", 400.into()),
                ("logging.sample_every_steps", 1000.into()),
                ("checkpoints.every_steps", 1000.into()),
            ],
            video,
        )),
        runs_dir: runs.path().into(),
        ..RunRequest::default()
    });
    common::assert_completed(&events, 400);
    let rows = scalars(&dir);
    let val: Vec<_> = rows
        .values()
        .filter(|r| r.contains_key("val_mse_over_copy"))
        .collect();
    let (first, last) = (val.first().unwrap(), val.last().unwrap());
    assert!(
        first["val_mse_over_copy"] > 0.9,
        "it starts at copy-last: {first:?}"
    );
    assert!(last["val_mse_over_copy"] < 0.5, "{last:?}");
    assert!(last["val_sensitivity_l2"] > 0.5, "{last:?}");
    assert!(last["val_action_purity"] > 0.8, "{last:?}");
}

/// Bad latent data is exit 2, names the file, its dataset and shape, and leaves no run
/// directory behind; `data manifest` and `data video-to-h5` make data the trainer reads.
#[test]
fn data_tools_and_bad_latents_from_the_command_line() {
    let runs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let clips = data.path().join("clips");
    // The fixture clip, decoded into the latent layout three times (three "videos").
    for i in 0..3 {
        let out = workbench()
            .args(["data", "video-to-h5"])
            .arg(root.join("tests/fixtures/testsrc_64x48_10f.avi"))
            .arg("--out")
            .arg(data.path().join(format!("v{i}")))
            .args(["--size", "16x16"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::create_dir_all(&clips).unwrap();
        std::fs::rename(
            data.path().join(format!("v{i}/testsrc_64x48_10f.h5")),
            clips.join(format!("clip{i}.h5")),
        )
        .unwrap();
    }
    // One video cut into pieces of 4 frames: 4 + 4 + 2.
    let out = workbench()
        .args(["data", "video-to-h5"])
        .arg(root.join("tests/fixtures/testsrc_64x48_10f.avi"))
        .arg("--out")
        .arg(data.path().join("pieces"))
        .args(["--size", "8x8", "--split-every", "4"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let frames: Vec<usize> = (0..3)
        .map(|i| {
            let p = data
                .path()
                .join(format!("pieces/testsrc_64x48_10f_{i:03}.h5"));
            LatentFile::open(&p).unwrap().shape.frames()
        })
        .collect();
    assert_eq!(frames, vec![4, 4, 2]);
    let f = LatentFile::open(&clips.join("clip0.h5")).unwrap();
    assert_eq!(
        (f.shape.frames(), f.shape.channels, f.shape.height),
        (10, 3, 16)
    );
    let v = f.read_frames(0, 10).unwrap();
    assert!(v.iter().all(|x| (-1.0..=1.0).contains(x)) && v.iter().any(|x| *x > 0.5));

    let out = workbench()
        .args(["data", "manifest"])
        .arg(&clips)
        .args([
            "--train-ratio",
            "0.34",
            "--val-ratio",
            "0.34",
            "--test-ratio",
            "0.32",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = read_manifest(&clips.join("manifest.json")).unwrap();
    assert_eq!(m.metadata.total_files, 3);

    let train = |data: &Path, sets: &[&str]| {
        let mut p = workbench();
        p.args(["train", "--preset"])
            .arg(root.join("presets/latent_action_tiny.ron"))
            .arg("--runs-dir")
            .arg(runs.path())
            .args([
                "--device",
                "cpu",
                "--steps",
                "2",
                "--set",
                "threads=1",
                "--data",
            ])
            .arg(data);
        for s in sets {
            p.args(["--set", s]);
        }
        p.output().unwrap()
    };
    // Real decoded frames train (16x16 with patch 4).
    let ok = train(
        &clips.join("manifest.json"),
        &["train.batch_size=2", "logging.validate_every_steps=1"],
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let made = std::fs::read_dir(runs.path()).unwrap().count();
    // It trained on those frames: two steps, each validation against the copy-last baseline
    // of the decoded clips, whose frames change (the fixture moves), so the baseline is not 0.
    let run = std::fs::read_dir(runs.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("events.log").is_file())
        .expect("the run folder");
    let s = scalars(&run);
    assert_eq!(s.keys().max(), Some(&2), "{s:?}");
    let validated: Vec<_> = s.values().filter(|r| r.contains_key("val_mse")).collect();
    assert!(!validated.is_empty(), "{s:?}");
    for r in validated {
        assert!(r["val_mse"].is_finite() && r["val_mse"] > 0.0, "{r:?}");
        assert!(r["val_copy_mse"] > 1e-4, "the clips move: {r:?}");
        assert!(
            (r["val_mse_over_copy"] - r["val_mse"] / r["val_copy_mse"]).abs()
                < 1e-3 * r["val_mse_over_copy"],
            "{r:?}"
        );
    }

    let bad = data.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    {
        let f = hdf5::File::create(bad.join("flat.h5")).unwrap();
        f.new_dataset_builder()
            .with_data(&ndarray::Array3::<f32>::zeros((4, 8, 8)))
            .create("embeddings")
            .unwrap();
    }
    let short = data.path().join("short");
    std::fs::create_dir(&short).unwrap();
    let shape = LatentShape {
        chunks: 3,
        channels: 3,
        t_lat: 1,
        height: 16,
        width: 16,
    };
    for i in 0..3 {
        write_latents(
            &short.join(format!("s{i}.h5")),
            &labelled(3, 768),
            shape,
            None,
        )
        .unwrap();
    }
    let cases = [
        (
            train(&data.path().join("nowhere"), &[]),
            vec!["data.path", "nowhere"],
        ),
        (train(&bad, &[]), vec!["data.path", "flat.h5", "[4, 8, 8]"]),
        (
            train(&short, &[]),
            vec!["data.path", "3 latent frames", "sequence_length 5"],
        ),
        (
            train(&clips, &["train.batch_size=64"]),
            vec!["fewer than one batch"],
        ),
    ];
    for (out, wants) in cases {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        for w in wants {
            assert!(stderr.contains(w), "`{w}` not in {stderr}");
        }
    }
    assert_eq!(
        std::fs::read_dir(runs.path()).unwrap().count(),
        made,
        "bad data left a run directory"
    );
}

/// The warmup-cosine schedule: step 0 at the base rate, a linear warmup from the floor, then a
/// cosine that reaches the floor where `train.cosine_steps` says, or with 0 at the phase's end
/// (its steps, or a timed phase's share of its time), whatever the run's length.
#[test]
fn the_schedule_is_tied_to_the_phase_unless_its_length_is_set() {
    use workbench::core::preset::latent_action::Schedule;
    use workbench::engine::families::latent_action::lr_factor;
    use workbench::engine::trainer::PhaseAt;
    let mut t = LatentActionPreset::default().train;
    t.schedule = Schedule::WarmupCosine;
    t.warmup_steps = 10;
    t.min_lr_ratio = 0.1;
    t.cosine_steps = 0;
    let at = |step: u64, length: u64| PhaseAt {
        step,
        length: Some(length),
        time_done: None,
    };
    let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
    // Step 0 trains at the base rate; step s at the factor of s - 1 (the seed's scheduler
    // steps after the optimiser).
    assert!(close(lr_factor(&t, 0, at(0, 1000)), 1.0));
    assert!(close(lr_factor(&t, 1, at(1, 1000)), 0.1));
    assert!(close(lr_factor(&t, 6, at(6, 1000)), 0.1 + 0.9 * 5.0 / 10.0));
    // The cosine's middle is halfway between the warmup's end and the phase's end.
    assert!(close(lr_factor(&t, 506, at(506, 1000)), 0.1 + 0.9 * 0.5));
    // It ends at the floor with the phase, for a long phase as for a short one.
    for length in [200u64, 10_000] {
        assert!(close(
            lr_factor(&t, length + 1, at(length + 1, length)),
            0.1
        ));
        assert!(lr_factor(&t, length / 2, at(length / 2, length)) > 0.5);
    }
    // A later phase counts its own steps, not the run's.
    assert!(close(lr_factor(&t, 5000, at(0, 1000)), 1.0));
    // A timed phase follows its time.
    let timed = |done: f64| PhaseAt {
        step: 500,
        length: None,
        time_done: Some(done),
    };
    assert!(close(lr_factor(&t, 500, timed(0.5)), 0.1 + 0.9 * 0.5));
    assert!(close(lr_factor(&t, 500, timed(1.0)), 0.1));
    // A set length is the step where the cosine ends, counted over the run.
    t.cosine_steps = 110;
    assert!(close(lr_factor(&t, 61, at(61, 5000)), 0.1 + 0.9 * 0.5));
    assert!(close(lr_factor(&t, 500, at(500, 5000)), 0.1));
}

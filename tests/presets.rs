//! Presets: every shipped file validates, round trips, and bad input is reported precisely.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::path::Path;

use workbench::core::preset::{self, AnyPreset, PresetError};
use workbench::core::protocol::{Event, Outcome};
use workbench::engine::worker::RunRequest;

fn presets_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("presets")
}

#[test]
fn every_shipped_preset_loads_validates_and_round_trips() {
    let files = preset::preset_files(&presets_dir()).expect("presets/");
    assert!(files.len() >= 4, "{files:?}");
    for f in files {
        let (validated, notes) = preset::load_file(&f).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            notes.is_empty(),
            "{}: shipped presets are current: {notes:?}",
            f.display()
        );
        let text = validated.preset().to_ron();
        let (again, _) = preset::parse_str(&text, "round trip")
            .unwrap_or_else(|e| panic!("{}: {e}\n{text}", f.display()));
        assert_eq!(&again, validated.preset(), "{}", f.display());
    }
}

#[test]
fn seed_values_are_in_the_shipped_presets() {
    let load = |n: &str| match preset::load_file(&presets_dir().join(n))
        .expect(n)
        .0
        .preset()
        .clone()
    {
        AnyPreset::WganGp(p) => p,
        _ => panic!("{n} is not a WGAN-GP preset"),
    };
    let small = load("wgan_gp_small.ron");
    assert_eq!(
        (
            small.train.lr_g,
            small.train.lr_d,
            small.train.n_critic,
            small.train.batch_size
        ),
        (1e-4, 1e-4, 5, 64)
    );
    let head = load("wgan_gp_large.ron");
    assert_eq!(
        (
            head.train.n_critic,
            head.train.batch_size,
            head.model.ema_decay
        ),
        (3, 32, 0.995)
    );
    let ttur = load("wgan_gp_large_ttur.ron");
    assert_eq!(
        (
            ttur.train.lr_g,
            ttur.train.lr_d,
            ttur.train.n_critic,
            ttur.model.ema_decay
        ),
        (5e-5, 1e-4, 5, 0.999)
    );
}

#[test]
fn validation_reports_every_problem_with_path_value_and_range() {
    let text = std::fs::read_to_string(presets_dir().join("smoke.ron")).expect("smoke");
    let text = text
        .replace("lr_g: 2e-4", "lr_g: 5.0")
        .replace("n_critic: 2", "n_critic: 0")
        .replace("image_size: 16", "image_size: 24");
    let (p, _) = preset::parse_str(&text, "bad.ron").expect("parses");
    let problems = preset::validate(p).expect_err("invalid");
    let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let find = |path: &str| {
        shown
            .iter()
            .find(|s| s.starts_with(path))
            .unwrap_or_else(|| panic!("no {path} in {shown:#?}"))
    };
    assert!(find("train.lr_g = 5").contains("1e-9"));
    assert!(find("train.n_critic = 0").contains("1 ..= 100"));
    assert!(find("data.image_size = 24").contains("power of two"));
}

#[test]
fn parse_errors_have_line_column_and_field() {
    let text = std::fs::read_to_string(presets_dir().join("smoke.ron")).expect("smoke");
    let unknown = text.replace("lambda_gp: 10.0,", "lambda_gp: 10.0,\n        lamda: 3,");
    match preset::parse_str(&unknown, "typo.ron") {
        Err(PresetError::Parse {
            file,
            line,
            message,
            ..
        }) => {
            assert_eq!(file, "typo.ron");
            assert!(line > 30, "line {line}");
            assert!(message.contains("lamda"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let wrong_type = text.replace("batch_size: 16", "batch_size: \"big\"");
    let err = preset::parse_str(&wrong_type, "type.ron")
        .expect_err("type error")
        .to_string();
    assert!(err.starts_with("type.ron:"), "{err}");
    assert!(err.contains("train.batch_size"), "{err}");
}

#[test]
fn phase_overrides_are_checked_and_applied() {
    let text = std::fs::read_to_string(presets_dir().join("smoke.ron")).expect("smoke");
    let (p, _) = preset::parse_str(&text, "smoke").expect("parse");
    let v = preset::validate(p).expect("valid");
    match v.for_phase(1) {
        AnyPreset::WganGp(p) => assert_eq!((p.train.lr_g, p.train.n_critic), (1e-4, 3)),
        _ => panic!("smoke is WGAN-GP"),
    }
    let bad = text.replace(
        r#"{"train.lr_g": 1e-4, "train.n_critic": 3}"#,
        r#"{"model.latent_dim": 32, "train.lr_gg": 1e-4, "train.lambda_gp": -1.0}"#,
    );
    let (p, _) = preset::parse_str(&bad, "phases").expect("parse");
    let shown: Vec<String> = preset::validate(p)
        .expect_err("bad overrides")
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        shown
            .iter()
            .any(|s| s.contains("model.latent_dim") && s.contains("phase may change")),
        "{shown:#?}"
    );
    assert!(
        shown
            .iter()
            .any(|s| s.contains("train.lr_gg") && s.contains("did you mean")),
        "{shown:#?}"
    );
    assert!(
        shown
            .iter()
            .any(|s| s.contains("train.lambda_gp") && s.contains("out of range")),
        "{shown:#?}"
    );
}

#[test]
fn cli_style_overrides_validate_like_the_preset() {
    let p = preset::Family::WganGp.default_preset();
    let q = p
        .with_overrides([
            ("train.lr_d", preset::schema::parse_cli_value("3e-4")),
            ("model.arch", preset::schema::parse_cli_value("large")),
        ])
        .expect("ok");
    match &q {
        AnyPreset::WganGp(w) => assert_eq!(
            (w.train.lr_d, w.model.arch),
            (3e-4, preset::wgan_gp::Arch::Large)
        ),
        _ => panic!("not WGAN-GP"),
    }
    let errs = p
        .with_overrides([("model.arch", preset::schema::parse_cli_value("huge"))])
        .expect_err("bad choice");
    assert!(
        errs[0].to_string().contains("one of small, large"),
        "{:?}",
        errs
    );
}

#[test]
fn schema_one_is_migrated_with_notes() {
    let v1 = r#"(
        schema_version: 1, family: wgan_gp, name: "old", seed: 1, device: "cpu",
        data: (source: synthetic_sprites, folder: "", image_size: 32, synthetic_count: 512, holdout: 64,
               hflip_prob: 0.5, rotation_deg: 10.0, jitter_brightness: 0.1, jitter_contrast: 0.1,
               jitter_saturation: 0.1, jitter_hue: 0.02, on_bad_image: fail),
        model: (arch: small, latent_dim: 64, g_feature_maps: 16, d_feature_maps: 16, ema_decay: 0.0, ema_copy_batchnorm_stats: true),
        train: (batch_size: 32, lr: 3e-4, beta1: 0.0, beta2: 0.9, n_critic: 5, lambda_gp: 10.0),
        epochs: 7,
    )"#;
    let (p, notes) = preset::parse_str(v1, "v1.ron").expect("migrates");
    assert_eq!(notes.len(), 3, "{notes:?}");
    assert!(notes[0].contains("train.lr = 0.0003"), "{notes:?}");
    let AnyPreset::WganGp(w) = &p else {
        panic!("not WGAN-GP")
    };
    assert_eq!(
        (w.train.lr_g, w.train.lr_d, w.schema_version),
        (3e-4, 3e-4, preset::SCHEMA_VERSION)
    );
    assert_eq!(w.phases[0].length, preset::PhaseLength::Epochs(7));
    preset::validate(p).expect("migrated preset is valid");
    let future = v1.replace("schema_version: 1", "schema_version: 99");
    assert!(preset::parse_str(&future, "f.ron")
        .expect_err("newer")
        .to_string()
        .contains("newer workbench"));
}

/// Each shipped preset file equals its constructor's output (`UPDATE_PRESETS=1` rewrites the
/// files from the constructors), so the files and the code cannot drift apart.
fn files_are_the_constructors(files: Vec<(&str, &str, preset::AnyPreset)>) {
    for (file, header, p) in files {
        let path = presets_dir().join(file);
        let text = format!("{header}\n{}\n", p.to_ron());
        if std::env::var_os("UPDATE_PRESETS").is_some() {
            std::fs::write(&path, &text).unwrap();
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        let (parsed, _) = preset::parse_str(&on_disk, file).unwrap();
        assert_eq!(parsed, p, "{file} differs; UPDATE_PRESETS=1 rewrites it");
    }
}

/// The WuBu-GAAD presets shipped in `presets/` are the constructors' output, so the files and
/// the code cannot drift apart. `UPDATE_PRESETS=1` rewrites them.
#[test]
#[allow(clippy::field_reassign_with_default)]
fn wubu_gaad_presets_are_the_constructors() {
    use workbench::core::preset::WubuGaadPreset;
    let tiny = {
        let mut p = WubuGaadPreset::default();
        p.name = "wubu_gaad_tiny".into();
        p.data.image_h = 32;
        p.data.image_w = 32;
        p.data.synthetic_frames = 120;
        p.model.latent_dim = 32;
        p.model.regions = 4;
        p.model.motion_regions = 4;
        p.model.patch_size = 8;
        p.model.tangent_dim = 32;
        p.model.wubu_s.dims = "24 16".into();
        p.model.wubu_s.curvatures = "1.0 0.8".into();
        p.model.wubu_m.dims = "16".into();
        p.model.wubu_m.curvatures = "0.7".into();
        p.model.wubu_t.dims = "32".into();
        p.model.wubu_t.curvatures = "0.5".into();
        p.model.wubu_d.dims = "32 16".into();
        p.model.wubu_d.curvatures = "0.8 0.6".into();
        p.model.gen_head_hidden = 64;
        p.model.disc_base_channels = 8;
        p.model.disc_max_channels = 32;
        p.model.disc_feature_tangent_dim = 32;
        p.train.batch_size = 2;
        p.logging.log_every_steps = 2;
        p.logging.sample_every_steps = 10;
        p.logging.validate_every_steps = 10;
        p.validation.windows = 4;
        p.heuristics.check_every_steps = 2;
        p.switching.min_steps_between = 4;
        p.checkpoints.every_steps = 0;
        p.phases[0].length = preset::PhaseLength::Steps(20);
        p
    };
    let learning = {
        let mut p = WubuGaadPreset::default();
        p.name = "wubu_gaad_learning".into();
        p.threads = 2;
        // Guide 000's phase 1 (reconstruction only: no adversarial term, KL nearly off,
        // heuristics, switching and the lambda_KL controller off) with Riemannian Adam: with
        // the original's SGD at 1e-4 ten CPU minutes only reach the mean image. Regions side
        // by side keep their layout (`bench wubu-gaad-encoder`).
        p.train.optimizer = preset::wubu_gaad::Optimizer::RiemannianAdam;
        p.model.region_pooling = preset::wubu_gaad::RegionPooling::Concat;
        // The learning levers that measured best (README, WuBu-GAAD): 32 golden-subdivision
        // regions whose finest box decides a pixel (the 8 hybrid regions' own ceiling at
        // 128x128 is 21.7 dB on real footage, 32 subdivided ones' 26.8), a 64-wide latent per
        // region that reads its spectral embedding and WuBu-S output, and no dropout.
        p.model.regions = 32;
        p.model.decomposition = "subdivide".into();
        p.model.assembly_sharpness = 2.0;
        p.model.region_latent = 64;
        p.model.wubu_dropout = 0.0;
        // The spectral heads read each region's code (and the global latent) directly, not
        // the transposed-convolution trunk's RoI features: 3.4x faster steps, and on real
        // street footage 24.4 dB in 10 CPU minutes where the trunk stalled at 18.0.
        p.model.gen_trunk = false;
        p.train.lr_gen = 3e-4;
        p.train.lambda_kl = 1e-5;
        p.train.lambda_gan = 0.0;
        p.heuristics.enabled = false;
        p.switching.enabled = false;
        p.q_control.lkl_every_steps = 0;
        p.logging.validate_every_steps = 50;
        p.logging.sample_every_steps = 100;
        p.validation.windows = 32;
        p.phases[0].length = preset::PhaseLength::Minutes(10.0);
        p
    };
    // The learning configuration's adversarial follow-up: 5 minutes of reconstruction, then
    // 5 with the pixel critic, its gradient at the heads scaled to a tenth of the
    // reconstruction's (VQGAN's adaptive weight) and its learning rate a tenth of the
    // original's, so it wins slowly and the frames sharpen while PSNR holds.
    let learning_gan = {
        let mut p = learning.clone();
        p.name = "wubu_gaad_learning_gan".into();
        p.logging.validate_every_steps = 100;
        let mut recon = preset::Phase::single(preset::PhaseLength::Minutes(5.0));
        recon.name = "1 reconstruction".into();
        let mut gan = preset::Phase::single(preset::PhaseLength::Minutes(5.0));
        gan.name = "2 adversarial".into();
        gan.start_from_best = true;
        gan.overrides = [
            ("train.lambda_gan", preset::OverrideValue::Float(0.1)),
            (
                "train.gan_adaptive_weight",
                preset::OverrideValue::Bool(true),
            ),
            ("train.lr_disc_primary", preset::OverrideValue::Float(2e-5)),
            ("train.lambda_kl", preset::OverrideValue::Float(1e-4)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        p.phases = vec![recon, gan];
        p.health.guard = true;
        p
    };
    let files = [
        ("wubu_gaad_learning_gan.ron", "// The learning configuration's adversarial follow-up: 5 CPU minutes of reconstruction, then 5 with the pixel critic, whose gradient at the spectral heads is scaled to a tenth of the reconstruction's (VQGAN's adaptive weight) and whose learning rate is a tenth of the original's. Add --data VIDEO for a real clip.", learning_gan),
        ("wubu_gaad_learning.ron", "// The learning check: 10 minutes of CPU training, validated every 50 steps: guide 000's phase 1 (reconstruction, KL nearly off, no adversarial term) with Riemannian Adam at 3e-4, the regions side by side, 32 subdivided regions assembled finest-first, a latent per region, and spectral heads that read the region codes and the global latent directly (no convolution trunk). Add --data VIDEO for a real clip.", learning),
        ("wubu_gaad.ron", "// The workbench's improved WuBu-GAAD (seeds 000/001) at 64x64 on the synthetic moving shapes: the original's defaults with its defects fixed and these changes, each a preset field: residual WuBu levels, a skip into the spectral heads, a loss on the assembled frames, BatchNorm before a posterior that starts narrow, the DC gain. The seed's own model is wubu_gaad_bat.ron.", WubuGaadPreset::default()),
        ("wubu_gaad_phased_adaptive.ron", "// The workbench's variant of guide 000's phases 0 to 5, not the guide's own settings: each phase starts from the previous phase's best checkpoint, the adversarial phases use VQGAN's adaptive weight at lambda_gan 0.1 (the guide: a fixed 1.0, or 0.1-0.5 at first) and both critics learn at a tenth of the launcher's rates, because the guide's settings let the pixel critic win within a few hundred steps (README, WuBu-GAAD).", WubuGaadPreset::phased_adaptive()),
        ("wubu_gaad_bat.ron", "// The seed's whole model as its launcher (run_wubu_GANVAE_HYBRIDv.0.3.bat) sets it: 256x256, 12+3 frames, 96 regions, WuBu stacks with rotation, 32-wide replacing combiners and phi-scaled curvatures, no head skip, no BatchNorm before the posterior, log-variance bias 0, no DC gain, each spectral path at 105 and no frame loss, 5000 epochs. Still different: WuBu-T reads the whole window (the original: each frame, then the last), Lucas-Kanade flow (the original's RAFT-small was left untrained), the pixel critic's FiLM width 64 (128) and the feature critic's statistics width 64 (128), AMP off until checked on a GPU, switching off (the original's never fires with the feature critic primary). Needs a GPU; set data.path to a video.", WubuGaadPreset::bat()),
        ("wubu_gaad_tiny.ron", "// A tiny WuBu-GAAD run on 32x32 synthetic shapes: seconds on a CPU. Used by the test suite.", tiny),
    ];
    files_are_the_constructors(
        files
            .into_iter()
            .map(|(f, h, p)| (f, h, preset::AnyPreset::WubuGaad(p)))
            .collect(),
    );
}

/// The latent action presets shipped in `presets/` are the constructors' output.
/// `UPDATE_PRESETS=1` rewrites them.
#[test]
fn latent_action_presets_are_the_constructors() {
    use workbench::core::preset::LatentActionPreset;
    let files = [
        ("latent_action_tiny.ron", "// Seed 002's latent action model at section 4.1's tiny size on synthetic moving blobs with known actions (written as real .h5 files): a few CPU minutes. Add --data DIR for a folder of .h5 latents.", LatentActionPreset::default()),
        ("latent_action_levers.ron", "// The tiny configuration with the levers of spec section 4.1 that made actions carry the motion of the synthetic blobs: last-frame decoders, EMA codebook with dead-code restart, no pre-quantiser noise, 8x8 patches, the encoder at 10x the learning rate, commitment 0.05, 3-pixel moves, the step decoder tied to the teacher-forced one, and the next latent predicted as the last one plus a learned change.", LatentActionPreset::levers()),
        ("latent_action_video.ron", "// The levers for real footage (--data DIR of .h5 latents, e.g. from `workbench data video-to-h5`): the encoder reads the motion measured from each latent to the next (Lucas-Kanade, no weights), the action's codes say a flow, and the next latent is the last one moved by it (no change redrawn through the tokens); training windows mirrored and reversed in time. Validation reports the model against copying the last frame and against continuing the motion (a baseline, not a prior: the motion is the actions').", LatentActionPreset::video()),
        ("latent_action_overfit.ron", "// Seed 002's overfit test at the tiny size: one stored batch of 4, lr 1e-3, dropout off; passes at MSE < 0.01 and MAE < 0.05.", LatentActionPreset::overfit()),
        ("latent_action_full.ron", "// Seed 002's full configuration (its README command): E 512, depth 3/3, 8 heads, K 12, d_c 128, windows of 8 latent frames, the legacy trainer's AdamW betas (0.9, 0.95) and linear warmup; train.mixed_precision turns float16 autocast on. Needs a GPU. Trains on synthetic blob latents of the seed's size until --data names a folder of .h5 latents (16x64x64 from VideoVAE+, or any size from `workbench data video-to-h5`).", LatentActionPreset::seed_full()),
    ];
    files_are_the_constructors(
        files
            .into_iter()
            .map(|(f, h, p)| (f, h, preset::AnyPreset::LatentAction(p)))
            .collect(),
    );
}

/// The VQ-GAN presets shipped in `presets/` are the constructor's output.
/// `UPDATE_PRESETS=1` rewrites them.
#[test]
fn vq_gan_presets_are_the_constructors() {
    use workbench::core::preset::VqGanPreset;
    let files = [
        ("vq_gan_tiny.ron", "// Seed 003's 3-D VQ-GAN at spec 4.2's tiny size on 16^3 synthetic volumes: h 8, 64 codes of 8, 2-D and 3-D critics from step 500 with feature matching, LPIPS off (set train.perceptual_weight to use the weights setup converts). Add --data for a NIfTI file or folder.", VqGanPreset::default()),
        ("vq_gan_xray.ron", "// The Xray-to-CTPA port's vq_gan_3d_with_discriminator.yaml: h 64, 512 codes of 64, 128^3 patches, commitment 2.0, max(N, 1) smoothing, clamped output, critics from step 10000 with feature matching 4, LPIPS 0.1, lr 1e-4 as its patchwise trainer takes it (no rescaling), one patch per forward, no flips. Needs a GPU; its CTPA volumes are 604x512x512: set data.depth/height/width and --data.", VqGanPreset::xray()),
        ("vq_gan_xray_patches.ron", "// The Xray port's vq_gan_3d_patches.yaml: the same model, L1 and commitment only (its reference patchwise trainer built the critics and LPIPS but never used them), one forward and one update a step. Needs a GPU.", VqGanPreset::xray_patches()),
        ("vq_gan_tats.ron", "// TATS's tats_vqgan.py defaults on video: h 240, 2048 codes of 256, L1 4, both critics from step 50000 (no feature matching, no LPIPS), lr 1.875e-5 (its trainer's rule, accumulate x gpus/8 x batch/4, on lr 3e-4 for one GPU at batch 2), clips of 16 frames at 128x128, the codebook updated twice per batch as in its two optimiser passes. Trains on synthetic moving shapes; add --data for a video file or folder. Needs a GPU.", VqGanPreset::tats()),
        ("vq_gan_medicaldiffusion.ron", "// medicaldiffusion's training script: h 16, 16384 codes of 8, L1 4, critics and feature matching 4 from step 10000, LPIPS 4, batch 2 of 64^3 volumes, lr 1.875e-5: its trainer scales lr 3e-4 by accumulate x gpus/8 x batch/4 (one GPU, batch 2). Needs a GPU.", VqGanPreset::medicaldiffusion()),
    ];
    files_are_the_constructors(
        files
            .into_iter()
            .map(|(f, h, p)| (f, h, preset::AnyPreset::VqGan(p)))
            .collect(),
    );
}

/// Every preset shipped in `presets/` trains: each of its phases for two steps, at a tiny size
/// set through the same overrides as `--set` (frame size, region count, data), with samples,
/// validation and checkpoints on the way. The architecture, losses, controllers and phases
/// are the preset's own, so a preset that cannot train can never ship again.
#[test]
fn every_shipped_preset_trains_each_phase_at_a_tiny_size() {
    let runs = tempfile::tempdir().expect("tmp");
    for f in preset::preset_files(&presets_dir()).expect("presets/") {
        let (validated, _) = preset::load_file(&f).unwrap_or_else(|e| panic!("{e}"));
        let base = validated.preset().clone();
        // The preset's own tiny size: every phase two steps long.
        let p = base
            .tiny()
            .unwrap_or_else(|e| panic!("{}: {e:?}", f.display()));
        let count = p.phases().len();
        let p = preset::validate(p).unwrap_or_else(|e| panic!("{}: {e:?}", f.display()));
        let (dir, events) = common::run_to_end(RunRequest {
            preset: Some(p),
            runs_dir: runs.path().into(),
            ..RunRequest::default()
        });
        let shown = f.display();
        match events.last() {
            Some(Event::RunFinished { step, outcome, .. }) => {
                assert_eq!(*outcome, Outcome::Completed, "{shown}");
                assert_eq!(*step, 2 * count as u64, "{shown}");
            }
            other => panic!("{shown}: the run ended with {other:?}"),
        }
        let count_of = |f: fn(&Event) -> bool| events.iter().filter(|e| f(e)).count();
        assert_eq!(
            count_of(|e| matches!(e, Event::PhaseStarted { .. })),
            count,
            "{shown}"
        );
        assert!(
            count_of(|e| matches!(e, Event::Sample { .. })) >= count,
            "{shown}"
        );
        // Prior samples say so where the KL weight leaves the prior untrained (1e-5 in the
        // learning preset), and nowhere else (1e-3 in the seed's own).
        let notes = count_of(|e| matches!(e, Event::Sample { note: Some(_), .. }));
        match f.file_name().and_then(|n| n.to_str()) {
            Some("wubu_gaad_learning.ron") => assert!(notes >= count, "{shown}: {notes}"),
            Some("wubu_gaad.ron" | "wubu_gaad_tiny.ron") => assert_eq!(notes, 0, "{shown}"),
            _ => {}
        }
        assert!(
            count_of(|e| matches!(e, Event::CheckpointSaved { .. })) >= count,
            "{shown}"
        );
        // Every scalar the run logged was declared when it started.
        let declared: Vec<String> = events
            .iter()
            .find_map(|e| match e {
                Event::RunStarted { metrics, .. } => {
                    Some(metrics.iter().map(|m| m.name.clone()).collect())
                }
                _ => None,
            })
            .unwrap_or_default();
        for e in &events {
            if let Event::Scalars { rows } = e {
                for (k, _) in rows.iter().flat_map(|r| &r.values) {
                    assert!(declared.contains(k), "{shown}: `{k}` is not declared");
                }
            }
            if let Event::Log { message, .. } = e {
                assert!(!message.contains("without declaring"), "{shown}: {message}");
            }
        }
        // Where each step's time went: the parts add up to the step's time within 2 %, and
        // the networks' own forward and backward passes are among them.
        let mut rows = 0;
        let (mut passes, mut all) = (0.0, 0.0);
        for (step, row) in common::all_scalars(&dir) {
            let Some(&total) = row.get("step_time_ms") else {
                continue;
            };
            let parts: f64 = row
                .iter()
                .filter(|(k, _)| k.starts_with("time_"))
                .map(|(_, v)| v)
                .sum();
            assert!(
                (parts - total).abs() <= 0.02 * total,
                "{shown}: at step {step} the parts add up to {parts} ms of {total} ms: {row:?}"
            );
            passes += row
                .iter()
                .filter(|(k, _)| k.ends_with("_forward_ms") || k.ends_with("_backward_ms"))
                .map(|(_, v)| v)
                .sum::<f64>();
            all += total;
            rows += 1;
        }
        assert!(rows >= count, "{shown}: {rows} rows with step times");
        assert!(passes > 0.0, "{shown}: no forward or backward in {all} ms");
        let scalars = common::scalars(&dir);
        let validated_steps = scalars
            .values()
            .filter(|row| row.keys().any(|k| k.starts_with("val_")))
            .count();
        assert!(validated_steps >= 1, "{shown}: no validation");
        for (step, row) in &scalars {
            for (k, v) in row {
                assert!(v.is_finite(), "{shown}: {k} = {v} at step {step}");
            }
        }
        // A refactor that must not change what a run computes keeps each run's losses.csv,
        // to compare cell by cell with the same runs before it.
        if let Some(keep) = std::env::var_os("WORKBENCH_KEEP_TINY_LOSSES") {
            let keep = std::path::PathBuf::from(keep);
            std::fs::create_dir_all(&keep).expect("keep folder");
            let stem = f.file_stem().expect("stem").to_string_lossy().into_owned();
            std::fs::copy(dir.join("losses.csv"), keep.join(format!("{stem}.csv")))
                .expect("losses.csv");
        }
    }
}

/// Schema 2 compared `heuristics.kl_high` with KL summed over the latent dimensions; loading
/// such a preset says so and takes the per-dimension default.
#[test]
fn schema_two_wubu_presets_migrate_their_kl_threshold_with_a_note() {
    let text = std::fs::read_to_string(presets_dir().join("wubu_gaad_tiny.ron"))
        .expect("tiny")
        .replace("schema_version: 3,", "schema_version: 2,")
        .replace("kl_high: 3.0,", "kl_high: 15.0,");
    let (p, notes) = preset::parse_str(&text, "old.ron").expect("migrates");
    let AnyPreset::WubuGaad(p) = p else {
        panic!("WuBu-GAAD")
    };
    assert_eq!(p.schema_version, preset::SCHEMA_VERSION);
    assert_eq!(p.heuristics.kl_high, preset::wubu_gaad::KL_HIGH_PER_DIM);
    assert!(
        notes
            .iter()
            .any(|n| n.contains("kl_high = 15") && n.contains("per dimension")),
        "{notes:?}"
    );
    preset::validate(AnyPreset::WubuGaad(p)).expect("valid");
}

/// The learning-rate controller is rewarded by the Wasserstein estimate (lower is better) by
/// default: `g_loss` is measured against a critic that moves.
#[test]
fn the_lr_controller_defaults_to_the_wasserstein_estimate() {
    let c = preset::LrControlConfig::default();
    assert_eq!(
        (c.metric.as_str(), c.better),
        ("wasserstein", workbench::core::control::Better::Lower)
    );
}

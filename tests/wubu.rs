//! The WuBu-GAAD family on CPU with tiny shapes: finite losses, gradients reaching every
//! parameter group (curvatures and scales included, the generator through the pixel critic),
//! phases that load the previous phase's best checkpoint, and an exact resume.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{run_to_end, scalars};
use tch::{nn, Device, Kind, Tensor};
use workbench::core::gaad;
use workbench::core::preset::{self, AnyPreset, PhaseLength, ValidatedPreset, WubuGaadPreset};
use workbench::core::protocol::Event;
use workbench::engine::checkpoint;
use workbench::engine::families::wubu_gaad::model::{
    box_condition, critic, region_major, roi_boxes, CriticInput, Dims, Encoder, Generator,
};
use workbench::engine::worker::{self, RunRequest};

/// libtorch's random generator is global: tests that draw from it run one at a time, so a
/// run's draws are the ones its seed implies.
static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn rng_lock() -> std::sync::MutexGuard<'static, ()> {
    TORCH_RNG
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn tiny() -> WubuGaadPreset {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("presets/wubu_gaad_tiny.ron");
    let (p, _) = preset::parse_str(&std::fs::read_to_string(path).unwrap(), "tiny").unwrap();
    let AnyPreset::WubuGaad(mut p) = p else {
        panic!("tiny is WuBu-GAAD")
    };
    p.device = "cpu".into();
    p.threads = 1;
    p
}

fn validated(p: WubuGaadPreset) -> ValidatedPreset {
    preset::validate(AnyPreset::WubuGaad(p)).unwrap()
}

#[test]
fn a_tiny_run_trains_with_finite_losses_and_logs_everything_the_gui_shows() {
    let _rng = rng_lock();
    let runs = tempfile::tempdir().unwrap();
    let (dir, events) = run_to_end(RunRequest {
        preset: Some(validated(tiny())),
        runs_dir: runs.path().into(),
        ..RunRequest::default()
    });
    common::assert_completed(&events, 20);
    let s = scalars(&dir);
    let names = [
        "g_loss",
        "d_loss",
        "recon",
        "kl",
        "g_adv",
        "mse_dft",
        "mse_dct",
        "mse_pixel",
    ];
    for (step, row) in &s {
        for n in names {
            if let Some(v) = row.get(n) {
                assert!(v.is_finite(), "{n} at step {step} is {v}");
            }
        }
    }
    assert!(names.iter().all(|n| s.values().any(|r| r.contains_key(*n))));
    let psnr: Vec<f64> = s
        .values()
        .filter_map(|r| r.get("val_psnr").copied())
        .collect();
    let ssim: Vec<f64> = s
        .values()
        .filter_map(|r| r.get("val_ssim").copied())
        .collect();
    assert_eq!(
        psnr.len(),
        5,
        "validations at steps 10 and 20, and early at 1, 2 and 5"
    );
    assert!(psnr.iter().all(|p| *p > 0.0 && *p < 60.0), "{psnr:?}");
    assert!(ssim.iter().all(|v| *v > -1.0 && *v <= 1.0), "{ssim:?}");
    // Controllers of the generator, the active critic and lambda_KL decided and said so.
    let names: std::collections::BTreeSet<String> = events
        .iter()
        .filter_map(|e| match e {
            Event::Controller { name, applied, .. } => {
                assert!(!applied.is_empty());
                Some(name.clone())
            }
            _ => None,
        })
        .collect();
    assert!(
        names.contains("generator") && names.contains("critic primary"),
        "{names:?}"
    );
    // Reconstructions of training and validation windows, with their regions.
    type Boxes = Vec<[f32; 4]>;
    let recons: Vec<(&String, &Boxes, &Boxes)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Reconstruction {
                split,
                boxes,
                motion_boxes,
                truth,
                recon,
                ..
            } => {
                assert!(dir.join(truth).is_file() && dir.join(recon).is_file());
                Some((split, boxes, motion_boxes))
            }
            _ => None,
        })
        .collect();
    assert!(recons.iter().any(|r| r.0 == "train") && recons.iter().any(|r| r.0 == "validation"));
    assert!(recons.iter().all(|r| r.1.len() == 4 && r.2.len() == 4));
}

/// Sum of |grad| of the variables whose name contains `part`; `None` if none matched.
fn grad_mass(vs: &nn::VarStore, part: &str) -> Option<f64> {
    let mut seen = false;
    let mut total = 0.0;
    for (name, t) in vs.variables() {
        if name.contains(part) && t.requires_grad() {
            seen = true;
            let g = t.grad();
            if g.defined() {
                total += g.abs().sum(Kind::Double).double_value(&[]);
            }
        }
    }
    seen.then_some(total)
}

#[test]
fn gradients_reach_every_group_and_the_pixel_critic_trains_the_generator() {
    let _rng = rng_lock();
    tch::manual_seed(3);
    let p = tiny();
    let d = Dims::new(&p);
    let boxes = gaad::decompose(gaad::Kind::Hybrid, 32, 32, 4, 4.0).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let enc = Encoder::new(&(vs.root() / "encoder"), &p, &d);
    let gen = Generator::new(&(vs.root() / "generator"), &p, &d);
    let dvs = nn::VarStore::new(Device::Cpu);
    let pixel = critic(&dvs.root(), preset::wubu_gaad::DiscKind::PixelCnn, &p, &d);
    let frames = Tensor::rand([2, 3, 3, 32, 32], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
    let motion = Tensor::rand([2, 2, 4, d.stats_dim()], (Kind::Float, Device::Cpu));
    let enc_out = enc.forward_t(
        &frames,
        &roi_boxes(&boxes, 6, Device::Cpu),
        Some(&motion),
        true,
    );
    let z = &enc_out.mu + (&enc_out.logvar * 0.5).exp() * enc_out.mu.randn_like();
    let cond = box_condition(&boxes, 32, 32, Device::Cpu);
    let out = gen.forward(&z, &boxes, &cond, &roi_boxes(&boxes, 2, Device::Cpu));

    // The adversarial term alone, through the pixel critic: the generator, the encoder and
    // every WuBu level's geometry (curvature, scale) get gradients.
    let coeffs = region_major(out.dft.as_ref(), out.dct.as_ref(), None);
    let (logits, _) = pixel.forward_t(
        &CriticInput {
            frames: &out.frames,
            coeffs: &coeffs,
            cond: &cond,
        },
        true,
    );
    logits
        .binary_cross_entropy_with_logits::<Tensor>(
            &logits.ones_like(),
            None,
            None,
            tch::Reduction::Mean,
        )
        .backward();
    for part in [
        "generator.fc",
        "generator.block0",
        "generator.dft_head",
        "generator.dct_head",
        "generator.head_skip",
        "generator.cond1",
        "encoder.patch_embed",
        "encoder.motion_embed",
        "encoder.wubu_t",
        "encoder.fc_mu",
        "encoder.fc_logvar",
    ] {
        let g = grad_mass(&vs, part).unwrap_or_else(|| panic!("no parameter {part}"));
        assert!(g > 0.0, "{part} gets no gradient through the pixel critic");
    }
    for stack in ["wubu_s", "wubu_m", "wubu_t"] {
        for level in ["level0"] {
            for geo in ["curvature", "scale"] {
                let part = format!("encoder.{stack}.{level}.{geo}");
                let g = grad_mass(&vs, &part).unwrap_or_else(|| panic!("no parameter {part}"));
                assert!(g > 0.0, "{part} gets no gradient");
            }
        }
    }
    assert!(grad_mass(&vs, "encoder.wubu_s.level0.descriptor").unwrap() > 0.0);
    assert!(grad_mass(&vs, "encoder.wubu_s.level0.boundaries").unwrap() > 0.0);
    // No parameter is left without a gradient (the level spread was one: computed, never used).
    let dead: Vec<String> = vs
        .variables()
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .filter(|(_, t)| {
            let g = t.grad();
            !g.defined() || g.abs().sum(Kind::Double).double_value(&[]) == 0.0
        })
        .map(|(n, _)| n)
        .collect();
    assert!(dead.is_empty(), "parameters without a gradient: {dead:?}");
    assert!(grad_mass(&dvs, "layer0").unwrap() > 0.0, "the critic too");

    // The feature critic's WuBu-D geometry trains.
    let fvs = nn::VarStore::new(Device::Cpu);
    let feature = critic(
        &fvs.root(),
        preset::wubu_gaad::DiscKind::WubuFeature,
        &p,
        &d,
    );
    let (logits, feats) = feature.forward_t(
        &CriticInput {
            frames: &out.frames,
            coeffs: &coeffs.detach(),
            cond: &cond,
        },
        true,
    );
    assert_eq!(
        feats.unwrap().size(),
        vec![2, 48],
        "features: the sum of the level dims"
    );
    logits.sum(Kind::Float).backward();
    for part in [
        "wubu_d.level0.curvature",
        "wubu_d.level1.scale",
        "region",
        "out",
    ] {
        assert!(grad_mass(&fvs, part).unwrap() > 0.0, "{part}");
    }
}

#[test]
fn the_latent_depends_on_the_context_frames() {
    let _rng = rng_lock();
    tch::manual_seed(5);
    let p = tiny();
    let d = Dims::new(&p);
    let boxes = gaad::decompose(gaad::Kind::Hybrid, 32, 32, 4, 4.0).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let enc = Encoder::new(&(vs.root() / "encoder"), &p, &d);
    let frames = Tensor::rand([1, 3, 3, 32, 32], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
    let changed = frames.copy();
    let _ = changed.narrow(1, 0, 1).fill_(0.3);
    let rois = roi_boxes(&boxes, 3, Device::Cpu);
    // The same motion statistics for both: only the first context frame's appearance differs.
    let motion = Tensor::rand([1, 2, 4, d.stats_dim()], (Kind::Float, Device::Cpu));
    let a = enc.forward_t(&frames, &rois, Some(&motion), false).mu;
    let b = enc.forward_t(&changed, &rois, Some(&motion), false).mu;
    let diff = (a - b).abs().max().double_value(&[]);
    assert!(
        diff > 1e-4,
        "changing context frame 0 must move mu ({diff})"
    );
}

#[test]
fn each_phase_starts_from_the_previous_phases_best_checkpoint() {
    let _rng = rng_lock();
    let runs = tempfile::tempdir().unwrap();
    let mut p = tiny();
    p.phases = vec![
        preset::Phase {
            name: "recon".into(),
            length: PhaseLength::Steps(10),
            overrides: [(
                "train.lambda_gan".to_string(),
                preset::OverrideValue::Float(0.0),
            )]
            .into(),
            start_from_best: false,
        },
        preset::Phase {
            name: "gan".into(),
            length: PhaseLength::Steps(4),
            overrides: [(
                "train.lambda_kl".to_string(),
                preset::OverrideValue::Float(0.05),
            )]
            .into(),
            start_from_best: true,
        },
    ];
    p.logging.validate_every_steps = 5;
    p.logging.log_every_steps = 1;
    p.heuristics.enabled = false;
    p.switching.enabled = false;
    let (dir, events) = run_to_end(RunRequest {
        preset: Some(validated(p)),
        runs_dir: runs.path().into(),
        ..RunRequest::default()
    });
    let best = checkpoint::read_best(&dir.join("checkpoints"));
    let best0 = best.phases.get(&0).expect("phase 0 had a best checkpoint");
    let loaded = events.iter().find_map(|e| match e {
        Event::PhaseStarted {
            index: 1,
            loaded_checkpoint,
            ..
        } => loaded_checkpoint.clone(),
        _ => None,
    });
    let loaded = loaded.expect("phase 1 loaded a checkpoint");
    assert!(loaded.ends_with(&best0.dir), "{loaded} vs {}", best0.dir);
    // The second phase's lambda_KL holds although the checkpoint it loaded had another.
    let s = scalars(&dir);
    let kl: Vec<(u64, f64)> = s
        .iter()
        .filter_map(|(step, r)| Some((*step, *r.get("lambda_kl_eff")?)))
        .collect();
    assert!(
        kl.iter()
            .filter(|(st, _)| *st <= 10)
            .all(|(_, v)| (*v - 0.001).abs() < 1e-12),
        "{kl:?}"
    );
    assert!(
        kl.iter()
            .filter(|(st, _)| *st > 10)
            .all(|(_, v)| (*v - 0.05).abs() < 1e-12),
        "{kl:?}"
    );
    assert!(kl.iter().any(|(st, _)| *st > 10));
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn torchscript_flow_and_lpips_load_from_files_and_lpips_picks_the_best_lower() {
    let _rng = rng_lock();
    let runs = tempfile::tempdir().unwrap();
    let mut p = tiny();
    p.model.flow = preset::wubu_gaad::FlowMethod::Torchscript;
    p.model.flow_model = fixture("flow_standin.pt");
    p.validation.lpips_model = fixture("lpips_standin.pt");
    p.validation.metric = preset::wubu_gaad::ValMetric::Lpips;
    let (dir, events) = run_to_end(RunRequest {
        preset: Some(validated(p.clone())),
        runs_dir: runs.path().into(),
        ..RunRequest::default()
    });
    assert!(
        matches!(events.last(), Some(Event::RunFinished { .. })),
        "{:?}",
        events.last()
    );
    let s = scalars(&dir);
    let lp: Vec<(u64, f64)> = s
        .iter()
        .filter_map(|(step, r)| r.get("val_lpips").map(|v| (*step, *v)))
        .collect();
    assert_eq!(lp.len(), 5, "at 10 and 20, and early at 1, 2 and 5");
    // The best checkpoint holds the lower LPIPS of the regular validations, recorded as it is
    // (lower is better); the early ones write no checkpoint.
    let best = checkpoint::read_best(&dir.join("checkpoints"));
    let b = best.phases.get(&0).unwrap();
    let regular = lp
        .iter()
        .filter(|(step, _)| step.is_multiple_of(10))
        .map(|(_, v)| *v)
        .fold(f64::INFINITY, f64::min);
    assert!((b.metric - regular).abs() < 1e-9);
    assert!(b.step == 10 || b.step == 20, "{}", b.step);

    // A flow model that is not TorchScript is refused naming the field and the file.
    p.model.flow_model = fixture("testsrc_frame3.png");
    let e = worker::prepare(RunRequest {
        preset: Some(validated(p)),
        runs_dir: runs.path().into(),
        ..RunRequest::default()
    })
    .and_then(|plan| {
        let h = worker::spawn(plan, None)?;
        let mut last = None;
        while let Ok(e) = h.events().recv_timeout(Duration::from_secs(60)) {
            let end = e.is_terminal();
            last = Some(e);
            if end {
                break;
            }
        }
        h.join();
        Ok(last)
    });
    let text = format!("{e:?}");
    assert!(
        text.contains("model.flow_model") && text.contains("testsrc_frame3.png"),
        "{text}"
    );
}

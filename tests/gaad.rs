//! `workbench gaad`: the region geometry from the command line.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::process::Command;

fn gaad(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_workbench"))
        .arg("gaad")
        .args(args)
        .output()
        .expect("run workbench gaad")
}

#[test]
fn json_output_is_the_spec_worked_example() {
    let out = gaad(&[
        "--width",
        "256",
        "--height",
        "256",
        "--regions",
        "8",
        "--kind",
        "subdivide",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let boxes: Vec<[f64; 4]> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(boxes.len(), 8);
    assert_eq!(boxes[0], [0.0, 0.0, 256.0, 256.0]);
    assert!((boxes[2][0] - 158.22).abs() < 0.005 && boxes[2][2] == 256.0);
    assert!((boxes[7][0] - 158.22).abs() < 0.005 && (boxes[7][1] - 158.22).abs() < 0.005);
}

#[test]
fn bad_input_exits_2_and_says_what() {
    let out = gaad(&["--width", "64", "--height", "64", "--regions", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("regions: 0"));
    let out = gaad(&[
        "--width",
        "64",
        "--height",
        "64",
        "--regions",
        "4",
        "--kind",
        "circles",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown decomposition `circles`"));
    let out = gaad(&[
        "--regions",
        "4",
        "--image",
        "/no/such.png",
        "--out",
        "/tmp/x.png",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such.png"));
}

#[test]
fn regions_are_drawn_numbered_over_an_image() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("frame.png");
    image::RgbaImage::from_pixel(120, 80, image::Rgba([255, 255, 255, 255]))
        .save(&src)
        .unwrap();
    let dst = dir.path().join("regions.png");
    let out = gaad(&[
        "--regions",
        "6",
        "--kind",
        "hybrid",
        "--image",
        src.to_str().unwrap(),
        "--out",
        dst.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let img = image::open(&dst).unwrap().to_rgba8();
    assert_eq!(img.dimensions(), (120, 80));
    // Box 0 is the whole frame: its outline colours the corner pixel.
    assert_ne!(img.get_pixel(119, 79).0, [255, 255, 255, 255]);
    // Its label sits at the top-left corner.
    assert_ne!(img.get_pixel(2, 2).0, [255, 255, 255, 255]);
}

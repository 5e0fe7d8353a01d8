//! Image folders: recursive PNG/JPEG loading, alpha over white, bad files by path.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use workbench::core::preset::wgan_gp::OnBadImage;
use workbench::engine::data::load_folder;

#[test]
fn folders_load_recursively_and_bad_images_are_named() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::create_dir(dir.path().join("sub")).expect("sub");
    for i in 0..6u8 {
        // A transparent 40x20 PNG with an opaque red pixel block: alpha must become white.
        let mut img = image::RgbaImage::new(40, 20);
        for (x, _, p) in img.enumerate_pixels_mut() {
            *p = if x < 20 {
                image::Rgba([255, 0, 0, 255])
            } else {
                image::Rgba([0, 0, i, 0])
            };
        }
        let at = if i % 2 == 0 {
            dir.path().join(format!("{i}.png"))
        } else {
            dir.path().join("sub").join(format!("{i}.png"))
        };
        img.save(&at).expect("save");
    }
    image::RgbImage::from_pixel(8, 8, image::Rgb([0, 255, 0]))
        .save(dir.path().join("green.jpg"))
        .expect("jpeg");
    let bad = dir.path().join("sub").join("broken.png");
    std::fs::write(&bad, b"not a png").expect("write");

    let imgs = load_folder(dir.path(), 16, OnBadImage::Skip).expect("skip mode");
    assert_eq!(imgs.count, 7);
    assert_eq!(imgs.skipped.len(), 1);
    assert_eq!(imgs.skipped[0].0, bad.display().to_string());
    // 0.png: the shorter side (20) scales to 16, so 32x16, centre-cropped to 16x16 at x 8..24;
    // its left half is red, its right half transparent -> white.
    let first = &imgs.rgb[..16 * 16 * 3];
    assert_eq!(&first[..3], &[255, 0, 0], "left edge red");
    assert_eq!(
        &first[15 * 3..16 * 3],
        &[255, 255, 255],
        "transparent composited over white"
    );

    let err = load_folder(dir.path(), 16, OnBadImage::Fail).expect_err("fail mode");
    assert!(err.to_string().contains("broken.png"), "{err}");
    let err = load_folder(&dir.path().join("missing"), 16, OnBadImage::Skip).expect_err("missing");
    assert!(err.to_string().contains("missing"), "{err}");
}

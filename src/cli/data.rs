//! `workbench data` (manifests, latents from video) and `workbench gaad` (regions of a frame).

use anyhow::Context;

use super::{bad_input, DataCmd, Failure, GaadArgs};

pub(super) fn run(cmd: DataCmd) -> Result<(), Failure> {
    use workbench::engine::data::latents;
    match cmd {
        DataCmd::Manifest {
            dir,
            output,
            train_ratio,
            val_ratio,
            test_ratio,
            seed,
        } => {
            let ratios = latents::Ratios {
                train: train_ratio,
                validation: val_ratio,
                test: test_ratio,
            };
            let (m, skipped) = latents::make_manifest(&dir, ratios, seed)
                .map_err(|e| bad_input(anyhow::anyhow!(e)))?;
            for s in &skipped {
                eprintln!("skipped {s}");
            }
            let out = output.unwrap_or_else(|| dir.join("manifest.json"));
            latents::write_manifest(&out, &m).map_err(|e| Failure {
                code: 1,
                error: anyhow::anyhow!(e),
            })?;
            for (split, st) in &m.statistics {
                out!(
                    "{split:>10}: {} files, {} chunks, {} latent frames",
                    st.num_files,
                    st.num_chunks,
                    st.num_latent_frames
                );
            }
            eprintln!("wrote {}", out.display());
            Ok(())
        }
        DataCmd::VideoToH5 {
            videos,
            out,
            size,
            fps,
            split_every,
        } => {
            let parsed = size
                .split_once(['x', 'X'])
                .and_then(|(h, w)| {
                    Some((h.trim().parse::<u32>().ok()?, w.trim().parse::<u32>().ok()?))
                })
                .filter(|(h, w)| (1..=4096).contains(h) && (1..=4096).contains(w));
            let Some((h, w)) = parsed else {
                return Err(bad_input(anyhow::anyhow!(
                    "--size {size}: expected HxW, e.g. 64x64"
                )));
            };
            if fps.is_some_and(|f| !(f.is_finite() && f > 0.0)) {
                return Err(bad_input(anyhow::anyhow!("--fps: a positive number")));
            }
            if split_every.is_some_and(|n| n < 2) {
                return Err(bad_input(anyhow::anyhow!(
                    "--split-every: at least 2 frames"
                )));
            }
            for v in &videos {
                let files = latents::video_to_h5(v, &out, h, w, fps, split_every)
                    .map_err(|e| bad_input(anyhow::anyhow!(e)))?;
                for (path, n) in files {
                    out!("{}: {n} frames of 3x{h}x{w}", path.display());
                }
            }
            Ok(())
        }
    }
}

pub(super) fn gaad(args: &GaadArgs) -> Result<(), Failure> {
    use workbench::core::gaad;
    let kind = gaad::Kind::parse(&args.kind).map_err(bad_input)?;
    let image = match &args.image {
        Some(path) => Some(
            image::open(path)
                .with_context(|| format!("{}: cannot read the image", path.display()))
                .map_err(bad_input)?
                .to_rgba8(),
        ),
        None => None,
    };
    let width = args.width.or(image.as_ref().map(image::RgbaImage::width));
    let height = args.height.or(image.as_ref().map(image::RgbaImage::height));
    let (Some(width), Some(height)) = (width, height) else {
        return Err(bad_input(anyhow::anyhow!(
            "--width and --height are needed without --image"
        )));
    };
    if let Some(img) = &image {
        if (img.width(), img.height()) != (width, height) {
            return Err(bad_input(anyhow::anyhow!(
                "--width/--height {width}x{height} differ from the image's {}x{}",
                img.width(),
                img.height()
            )));
        }
    }
    let boxes =
        gaad::decompose(kind, width, height, args.regions, args.min_size).map_err(bad_input)?;
    if args.json {
        out!(
            "{}",
            serde_json::to_string(&boxes).map_err(|e| bad_input(anyhow::anyhow!(e)))?
        );
    } else {
        for (i, b) in boxes.iter().enumerate() {
            out!(
                "{i:>3}: [{:.2}, {:.2}, {:.2}, {:.2}]",
                b[0],
                b[1],
                b[2],
                b[3]
            );
        }
    }
    if let (Some(mut img), Some(out)) = (image, &args.out) {
        let (w, h) = (img.width(), img.height());
        let mut canvas = workbench::core::draw::Canvas {
            width: w,
            height: h,
            rgba: &mut img,
        };
        workbench::core::draw::regions(&mut canvas, &boxes);
        img.save(out)
            .with_context(|| format!("{}: cannot write the PNG", out.display()))
            .map_err(|e| Failure { code: 1, error: e })?;
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}

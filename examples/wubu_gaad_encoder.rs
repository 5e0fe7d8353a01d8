//! Which encoder lets the WuBu-GAAD generator learn: the same generator (pixel head) and
//! Adam, trained as a plain autoencoder on random batches of the synthetic video, fed by the
//! regional GAAD/WuBu encoder (regions averaged, as the original, or side by side; WuBu levels
//! as the original's, residual and as wide as the level, or none), and by a small conv encoder;
//! with the pixel head, or with the spectral heads with and without their locality prior.
//! The figure is the pixel MSE against the dataset's mean image (what a model that ignores its
//! input reaches).
//!
//! Run it with `cargo run --release --example wubu_gaad_encoder -- [--steps 300] [--only S]`
//! (`--only` keeps the variants whose name contains S). An experiment, not a test: about ten
//! CPU minutes for every variant at 300 steps.

use std::time::Instant;

use clap::Parser;

#[derive(Parser, Debug)]
struct Args {
    /// Training steps of each variant (at least 50).
    #[arg(long, default_value_t = 300)]
    steps: u64,
    /// Only the variants whose name contains this.
    #[arg(long)]
    only: Option<String>,
}

fn main() -> anyhow::Result<()> {
    run(&Args::parse())
}

fn run(args: &Args) -> anyhow::Result<()> {
    use tch::nn::{self, Module, OptimizerConfig};
    use tch::{Device, Kind, Tensor};
    use workbench::core::gaad;
    use workbench::core::preset::wubu_gaad::{RegionPooling, WubuGaadPreset};
    use workbench::engine::data::VideoSet;
    use workbench::engine::families::wubu_gaad::model::{
        assemble, box_condition, roi_boxes, Dims, Encoder, Generator,
    };
    use workbench::engine::spectral::roi_align;
    let steps = args.steps.max(50);
    let base = WubuGaadPreset::default();
    let set = VideoSet::load(&base.data, base.seed)?;
    let all = set.batch(&set.train, Device::Cpu).narrow(1, 2, 1);
    let mean = all.mean_dim([0i64].as_slice(), true, Kind::Float);
    let val = set.batch(&set.val, Device::Cpu).narrow(1, 2, 1);
    let floor = (&val - &mean).square().mean(Kind::Float).double_value(&[]);
    // What the regions' patches can hold: the true frames cut into the 8 regions' patches
    // and pasted back (the spectral generator's output space).
    let boxes = gaad::decompose(gaad::Kind::Hybrid, 64, 64, 8, 4.0)?;
    let pasted = {
        let d = Dims::new(&base);
        let v = val.squeeze_dim(1);
        let n = v.size()[0];
        let patches = roi_align(&v, &roi_boxes(&boxes, n, Device::Cpu), d.ph, d.pw, 1.0)
            .view([n, 1, d.regions, d.c, d.ph, d.pw]);
        (assemble(&patches, &boxes, &d).squeeze_dim(1) - v)
            .square()
            .mean(Kind::Float)
            .double_value(&[])
    };
    println!(
        "autoencoder on the synthetic video, 64x64, batch 4, Adam 1e-3, {steps} steps; validation pixel MSE ([-1,1]); \
         the mean image gives {floor:.4}; the true frames through the 8 regions' 16x16 patches give {pasted:.4} ({:.2}x)",
        pasted / floor
    );
    /// What the generator ends in, and what the encoder reads.
    #[derive(Clone, Copy, PartialEq)]
    enum Head {
        /// Pixel patches in, the pixel head out.
        Pixel,
        /// DFT and DCT features in, the spectral heads with their locality prior out.
        Spectral,
        /// The same with the original's dense spectral heads alone.
        Dense,
    }
    // (name, regions side by side, WuBu levels: None = none, Some(residual and wide), head)
    let variants: [(&str, bool, Option<bool>, Head); 11] = [
        ("mean, original levels", false, Some(false), Head::Pixel),
        ("mean, residual levels", false, Some(true), Head::Pixel),
        ("mean, no levels", false, None, Head::Pixel),
        ("concat, original levels", true, Some(false), Head::Pixel),
        ("concat, residual levels", true, Some(true), Head::Pixel),
        ("concat, no levels", true, None, Head::Pixel),
        ("conv", false, None, Head::Pixel),
        (
            "spectral concat, residual",
            true,
            Some(true),
            Head::Spectral,
        ),
        ("dense concat, residual", true, Some(true), Head::Dense),
        ("spectral conv", false, None, Head::Spectral),
        ("dense conv", false, None, Head::Dense),
    ];
    for (which, concat, levels, head) in variants {
        if !args
            .only
            .as_ref()
            .is_none_or(|o| which.contains(o.as_str()))
        {
            continue;
        }
        tch::manual_seed(0);
        let mut p = base.clone();
        p.model.motion = false;
        p.model.use_dft = head != Head::Pixel;
        p.model.use_dct = head != Head::Pixel;
        p.model.gen_head_skip = head == Head::Spectral;
        p.model.wubu_dropout = 0.0;
        if concat {
            p.model.region_pooling = RegionPooling::Concat;
        }
        for s in [&mut p.model.wubu_s, &mut p.model.wubu_t] {
            match levels {
                None => s.dims = String::new(),
                // The original's combiner: 32 wide, replacing the tangent vector.
                Some(false) => (s.combiner_hidden, s.residual) = (32, false),
                Some(true) => (s.combiner_hidden, s.residual) = (0, true),
            }
        }
        let d = Dims::new(&p);
        let cond = box_condition(&boxes, 64, 64, Device::Cpu);
        let vs = nn::VarStore::new(Device::Cpu);
        let enc = Encoder::new(&(vs.root() / "encoder"), &p, &d);
        let gen = Generator::new(&(vs.root() / "generator"), &p, &d);
        let r = vs.root() / "conv";
        let conv_cfg = nn::ConvConfig {
            stride: 2,
            padding: 1,
            ..Default::default()
        };
        let conv = nn::seq()
            .add(nn::conv2d(&r / "c1", 9, 32, 4, conv_cfg))
            .add_fn(Tensor::relu)
            .add(nn::conv2d(&r / "c2", 32, 64, 4, conv_cfg))
            .add_fn(Tensor::relu)
            .add(nn::conv2d(&r / "c3", 64, 128, 4, conv_cfg))
            .add_fn(Tensor::relu)
            .add_fn(|x| x.flatten(1, -1))
            .add(nn::linear(
                &r / "fc",
                128 * 8 * 8,
                d.latent,
                Default::default(),
            ));
        let mut opt = nn::Adam::default().build(&vs, 1e-3)?;
        let mut rng = workbench::core::rng::SplitMix64::new(5);
        let encode = |frames: &Tensor, train: bool| {
            let b = frames.size()[0];
            if which.ends_with("conv") {
                conv.forward(&frames.reshape([b, 9, 64, 64]))
            } else {
                enc.forward_t(frames, &roi_boxes(&boxes, b * 3, Device::Cpu), None, train)
                    .mu
            }
        };
        let t0 = Instant::now();
        for _ in 0..steps {
            let starts: Vec<i64> = (0..4)
                .map(|_| set.train[rng.below(set.train.len() as u64) as usize])
                .collect();
            let frames = set.batch(&starts, Device::Cpu);
            let out = gen.forward(
                &encode(&frames, true),
                &boxes,
                &cond,
                &roi_boxes(&boxes, 4, Device::Cpu),
            );
            let loss = out
                .frames
                .mse_loss(&frames.narrow(1, 2, 1), tch::Reduction::Mean);
            opt.backward_step(&loss);
        }
        let starts: Vec<i64> = set.val.iter().copied().step_by(4).take(32).collect();
        let frames = set.batch(&starts, Device::Cpu);
        let mse = tch::no_grad(|| {
            let out = gen.forward(
                &encode(&frames, false),
                &boxes,
                &cond,
                &roi_boxes(&boxes, starts.len() as i64, Device::Cpu),
            );
            out.frames
                .mse_loss(&frames.narrow(1, 2, 1), tch::Reduction::Mean)
                .double_value(&[])
        });
        println!(
            "  {which:<24} validation MSE {mse:.4} ({:.2}x the mean image's), {:.0} s",
            mse / floor,
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

//! The WuBu-GAAD hybrid VAE-GAN's networks (spec 1.1), with section 11's defects fixed:
//! - the latent reads every frame of the window in order: WuBu-T runs on the whole window's
//!   per-frame features, not per frame with only the last kept (11.5);
//! - frames are assembled from patches with gradients, so the pixel critic trains the
//!   generator (11.1);
//! - non-square frames keep their aspect in the generator (11.15);
//! - the feature critic projects each region with shared weights before the global layer,
//!   instead of one dense layer over every region's coefficients (11.16), and it sees the
//!   generator's DFT coefficients projected onto real spectra, so the free imaginary parts of
//!   self-conjugate bins cannot give fakes away (11.17).

use crate::engine::watch;
use crate::engine::nn::init::{self, Rule};
use tch::nn::{self, Module, ModuleT};
use tch::{Kind, Tensor};

use crate::core::preset::wubu_gaad::{
    parse_stack, DiscKind, RegionPooling, WubuGaadPreset, WubuStack,
};
use crate::engine::hyperbolic::{LevelConfig, Stack, StackConfig};
use crate::engine::ops::leaky_relu;
use crate::engine::spectral;

/// Shapes every network agrees on.
#[derive(Debug, Clone, PartialEq)]
pub struct Dims {
    pub c: i64,
    pub h: i64,
    pub w: i64,
    pub n_in: i64,
    pub n_pred: i64,
    pub regions: i64,
    pub motion_regions: i64,
    pub ph: i64,
    pub pw: i64,
    pub latent: i64,
    /// Per-region latent width (0: one global latent).
    pub region_latent: i64,
    /// Whether the encoder sees the predicted frames.
    pub encode_target: bool,
    /// [`spectral::assemble_weighted`]'s sharpness.
    pub assembly_sharpness: f64,
    /// [`spectral::assemble_weighted`]'s feather: the regions' overlap as a share of their
    /// half-size (0: hard boxes).
    pub feather: f64,
    pub use_dft: bool,
    pub use_dct: bool,
    pub motion: bool,
    pub flow_stats: Vec<&'static str>,
}

impl Dims {
    #[must_use]
    pub fn new(p: &WubuGaadPreset) -> Self {
        Self {
            c: 3,
            h: i64::from(p.data.image_h),
            w: i64::from(p.data.image_w),
            n_in: i64::from(p.data.input_frames),
            n_pred: i64::from(p.data.predict_frames),
            regions: i64::from(p.model.regions),
            motion_regions: i64::from(p.model.motion_regions),
            ph: i64::from(p.model.patch_size),
            pw: i64::from(p.model.patch_size),
            latent: i64::from(p.model.latent_dim),
            region_latent: i64::from(p.model.region_latent),
            encode_target: p.model.encode_target,
            assembly_sharpness: p.model.assembly_sharpness,
            // Each region grows by `region_overlap` of its size, half on each side: the margin
            // it shares with a neighbour is that share of its new half-size, twice over.
            feather: {
                let f = p.model.region_overlap;
                2.0 * f / (1.0 + f)
            },
            use_dft: p.model.use_dft,
            use_dct: p.model.use_dct,
            motion: p.model.motion,
            flow_stats: crate::core::preset::wubu_gaad::parse_flow_stats(&p.model.flow_stats)
                .unwrap_or_else(|_| vec!["mag_mean"]),
        }
    }

    #[must_use]
    pub fn frames(&self) -> i64 {
        self.n_in + self.n_pred
    }

    /// The frames of a window the encoder sees: all of them, or (predicting) the inputs.
    #[must_use]
    pub fn enc_frames(&self) -> i64 {
        if self.encode_target {
            self.frames()
        } else {
            self.n_in
        }
    }

    /// The whole latent: the global `latent`, then `n_pred · regions · region_latent`.
    #[must_use]
    pub fn z_dim(&self) -> i64 {
        self.latent + self.n_pred * self.regions * self.region_latent
    }

    /// Spectral values per channel of one patch.
    #[must_use]
    pub fn spec_per_channel(&self) -> i64 {
        let mut d = 0;
        if self.use_dft {
            d += 2 * self.ph * (self.pw / 2 + 1);
        }
        if self.use_dct {
            d += self.ph * self.pw;
        }
        if d == 0 {
            d = self.ph * self.pw;
        }
        d
    }

    /// Motion statistics per region (angle_mean counts twice: cos and sin).
    #[must_use]
    pub fn stats_dim(&self) -> i64 {
        self.flow_stats
            .iter()
            .map(|s| if *s == "angle_mean" { 2 } else { 1 })
            .sum()
    }
}

/// A stack's config from the preset, or `None` for a stack without levels.
fn stack_cfg(s: &WubuStack, input: i64, output: Option<i64>, dropout: f64) -> (StackConfig, i64) {
    let levels: Vec<LevelConfig> = parse_stack(s)
        .unwrap_or_default()
        .into_iter()
        .map(|(dim, curvature)| LevelConfig {
            dim,
            curvature,
            scale: 1.0,
            boundary_points: i64::from(s.boundary_points),
            use_descriptor: true,
            combiner_hidden: vec![if s.combiner_hidden == 0 {
                dim
            } else {
                i64::from(s.combiner_hidden)
            }],
            residual: s.residual,
            dropout,
            tangent_flow: false,
            flow_scale: 1.0,
        })
        .collect();
    let out = match (levels.last(), output) {
        (None, _) => input,
        (Some(_), Some(o)) => o,
        (Some(l), None) => l.dim,
    };
    (
        StackConfig {
            input_dim: input,
            output_dim: out,
            levels,
            rotate: s.rotation,
        },
        out,
    )
}

/// Boxes as `(cx/W, cy/H, w/W, h/H)`, flattened: the FiLM condition's input.
pub fn box_condition(boxes: &[[f64; 4]], w: i64, h: i64, device: tch::Device) -> Tensor {
    let (wf, hf) = (w as f64, h as f64);
    let v: Vec<f32> = boxes
        .iter()
        .flat_map(|b| {
            [
                ((b[0] + b[2]) / 2.0 / wf) as f32,
                ((b[1] + b[3]) / 2.0 / hf) as f32,
                ((b[2] - b[0]) / wf) as f32,
                ((b[3] - b[1]) / hf) as f32,
            ]
        })
        .collect();
    Tensor::from_slice(&v).view([1, -1]).to_device(device)
}

/// RoIAlign boxes `[B·F·R, 5]` for `b` samples of `f` frames that share the same `R` boxes.
pub fn roi_boxes(boxes: &[[f64; 4]], images: i64, device: tch::Device) -> Tensor {
    let mut v = Vec::with_capacity(images as usize * boxes.len() * 5);
    for i in 0..images {
        for b in boxes {
            v.extend_from_slice(&[i as f32, b[0] as f32, b[1] as f32, b[2] as f32, b[3] as f32]);
        }
    }
    Tensor::from_slice(&v).view([-1, 5]).to_device(device)
}

/// `[.., C, ph, pw]` patches to `[.., C·D]` spectral features (DFT ‖ DCT, or the pixels).
pub fn spectral_features(patches: &Tensor, d: &Dims) -> Tensor {
    let s = patches.size();
    let lead: Vec<i64> = s[..s.len() - 3].to_vec();
    let mut parts = Vec::new();
    let flat = |t: Tensor| {
        let mut shape = lead.clone();
        shape.push(-1);
        t.reshape(shape.as_slice())
    };
    if d.use_dft {
        parts.push(flat(spectral::dft(patches)));
    }
    if d.use_dct {
        parts.push(flat(spectral::dct2(patches)));
    }
    if parts.is_empty() {
        parts.push(flat(patches.shallow_clone()));
    }
    Tensor::cat(&parts, -1)
}

/// What the encoder returns.
#[derive(Debug)]
pub struct Encoded {
    /// `[B, z_dim]`, as [`Dims::z_dim`] lays it out.
    pub mu: Tensor,
    pub logvar: Tensor,
}

/// The regional VAE encoder: GAAD patches → spectra → WuBu-S per region; flow statistics →
/// WuBu-M per motion region; both averaged per frame, then WuBu-T over the whole window.
#[derive(Debug)]
pub struct Encoder {
    d: Dims,
    cnn: Option<(nn::Conv2D, nn::GroupNorm)>,
    embed: nn::Linear,
    concat_regions: bool,
    wubu_s: Stack,
    s_out: i64,
    motion_embed: Option<nn::Linear>,
    wubu_m: Option<Stack>,
    m_out: i64,
    wubu_t: Stack,
    /// Standardises the window features over the batch before the heads (`model.feature_norm`).
    feature_norm: Option<nn::BatchNorm>,
    fc_mu: nn::Linear,
    fc_logvar: nn::Linear,
    /// Per-region posterior: `[WuBu-S of the region ‖ WuBu-T] -> (mu, logvar)`.
    region_heads: Option<(nn::Linear, nn::Linear)>,
    /// A region's code also reads its spectral embedding (`model.region_spectrum`).
    region_spectrum: bool,
    t_out: i64,
}

impl Encoder {
    pub fn new(vs: &nn::Path<'_>, p: &WubuGaadPreset, d: &Dims) -> Self {
        let m = &p.model;
        let tangent = i64::from(m.tangent_dim);
        let ce = i64::from(m.encoder_cnn_channels);
        let cnn = m.encoder_roi_align.then(|| {
            (
                init::conv2d(
                    vs / "cnn",
                    d.c,
                    ce,
                    3,
                    Rule::Wubu,
                    nn::ConvConfig {
                        padding: 1,
                        ..Default::default()
                    },
                ),
                init::group_norm(vs / "cnn_norm", 8.min(ce).max(1), ce, 1e-5, Rule::Wubu),
            )
        });
        let c_in = if cnn.is_some() { ce } else { d.c };
        let embed = init::linear(
            vs / "patch_embed",
            c_in * d.spec_per_channel(),
            tangent,
            Rule::Wubu,
        );
        let (s_cfg, s_out) = stack_cfg(&m.wubu_s, tangent, None, m.wubu_dropout);
        let wubu_s = Stack::new(&(vs / "wubu_s"), &s_cfg);
        let (motion_embed, wubu_m, m_out) = if d.motion {
            let (m_cfg, m_out) = stack_cfg(&m.wubu_m, tangent, None, m.wubu_dropout);
            (
                Some(init::linear(
                    vs / "motion_embed",
                    d.stats_dim(),
                    tangent,
                    Rule::Wubu,
                )),
                Some(Stack::new(&(vs / "wubu_m"), &m_cfg)),
                m_out,
            )
        } else {
            (None, None, 0)
        };
        let concat = p.model.region_pooling == RegionPooling::Concat;
        let per_frame_s = if concat { s_out * d.regions } else { s_out };
        let t_in = d.enc_frames() * (per_frame_s + m_out);
        let (t_cfg, t_out) = stack_cfg(&m.wubu_t, t_in, None, m.wubu_dropout);
        let wubu_t = Stack::new(&(vs / "wubu_t"), &t_cfg);
        let region_in = if m.region_spectrum { tangent } else { 0 } + s_out + t_out;
        let region_heads = (d.region_latent > 0).then(|| {
            let cfg = nn::LinearConfig {
                bs_init: Some(nn::Init::Const(p.model.logvar_bias)),
                ..init::linear_config(Rule::Wubu, region_in, d.region_latent)
            };
            (
                init::linear(vs / "fc_mu_region", region_in, d.region_latent, Rule::Wubu),
                init::linear_as(vs / "fc_logvar_region", region_in, d.region_latent, cfg),
            )
        });
        Self {
            d: d.clone(),
            region_heads,
            region_spectrum: m.region_spectrum,
            t_out,
            cnn,
            embed,
            concat_regions: concat,
            wubu_s,
            s_out,
            motion_embed,
            wubu_m,
            m_out,
            wubu_t,
            feature_norm: p
                .model
                .feature_norm
                .then(|| init::batch_norm(vs / "feature_norm", 1, t_out, Rule::Wubu)),
            fc_mu: init::linear(vs / "fc_mu", t_out, d.latent, Rule::Wubu),
            // The posterior starts narrow (sigma = e^-3 = 0.05): the encoder's first outputs
            // vary little between windows, and unit-variance noise would drown them so the
            // decoder learns to ignore z (posterior collapse from the first step).
            fc_logvar: init::linear_as(
                vs / "fc_logvar",
                t_out,
                d.latent,
                nn::LinearConfig {
                    bs_init: Some(nn::Init::Const(p.model.logvar_bias)),
                    ..init::linear_config(Rule::Wubu, t_out, d.latent)
                },
            ),
        }
    }

    /// `frames`: `[B, N, C, H, W]` with `N` = [`Dims::enc_frames`]; `rois`: [`roi_boxes`] for
    /// `B·N` images; `motion`: the flow statistics `[B, N−1, Rm, S]` when the motion branch is
    /// on. The latent is `[B, z_dim]`: the global part, then the regions' (see [`Dims::z_dim`]).
    pub fn forward_t(
        &self,
        frames: &Tensor,
        rois: &Tensor,
        motion: Option<&Tensor>,
        train: bool,
    ) -> Encoded {
        let d = &self.d;
        let b = frames.size()[0];
        let n = d.enc_frames();
        let flat = frames.reshape([b * n, d.c, d.h, d.w]);
        let pixel_patches = spectral::roi_align(&flat, rois, d.ph, d.pw, 1.0);
        let patches = match &self.cnn {
            Some((conv, norm)) => {
                let f = watch::act(&conv.ws, norm.forward(&conv.forward(&flat)).gelu("none"));
                spectral::roi_align(&f, rois, d.ph, d.pw, 1.0)
            }
            None => pixel_patches.shallow_clone(),
        };
        let feats = spectral_features(&patches, d);
        let embedded = self.embed.forward(&feats);
        let s = self
            .wubu_s
            .forward_t(&embedded, train)
            .view([b, n, d.regions, self.s_out]);
        // A region's code reads its WuBu-S output, and its spectral embedding beside it when
        // the linear path is on.
        let s_regions = if self.region_spectrum {
            Tensor::cat(&[embedded.view([b, n, d.regions, -1]), s.shallow_clone()], 3)
        } else {
            s.shallow_clone()
        };
        let s = if self.concat_regions {
            s.reshape([b, n, -1])
        } else {
            s.mean_dim([2i64].as_slice(), false, Kind::Float)
        };
        let per_frame = match (motion, &self.motion_embed, &self.wubu_m) {
            (Some(stats), Some(embed), Some(wubu_m)) => {
                let rm = stats.size()[2];
                let m = wubu_m
                    .forward_t(&embed.forward(&stats.reshape([-1, d.stats_dim()])), train)
                    .view([b, n - 1, rm, self.m_out])
                    .mean_dim([2i64].as_slice(), false, Kind::Float);
                // Frame 0 has no previous frame: zero motion.
                let m = Tensor::cat(&[m.zeros_like().narrow(1, 0, 1), m], 1);
                Tensor::cat(&[s, m], 2)
            }
            _ => s,
        };
        let t = self.wubu_t.forward_t(&per_frame.reshape([b, -1]), train);
        let t = match &self.feature_norm {
            Some(norm) => norm.forward_t(&t, train && b > 1),
            None => t,
        };
        let (mut mu, mut logvar) = (self.fc_mu.forward(&t), self.fc_logvar.forward(&t));
        if let Some((fm, fl)) = &self.region_heads {
            // The predicted frames' regions, or (predicting) the last input frame's.
            let s_r = if d.encode_target {
                s_regions.narrow(1, d.n_in, d.n_pred)
            } else {
                s_regions
                    .narrow(1, d.n_in - 1, 1)
                    .expand([b, d.n_pred, d.regions, -1], false)
            };
            let x = Tensor::cat(
                &[
                    s_r,
                    t.view([b, 1, 1, self.t_out])
                        .expand([b, d.n_pred, d.regions, self.t_out], false),
                ],
                3,
            );
            mu = Tensor::cat(&[mu, fm.forward(&x).reshape([b, -1])], 1);
            logvar = Tensor::cat(&[logvar, fl.forward(&x).reshape([b, -1])], 1);
        }
        Encoded {
            mu,
            logvar: logvar.clamp(-20.0, 20.0),
        }
    }
}

/// A weight, optionally spectrally normalised (one power iteration per training forward).
#[derive(Debug)]
pub struct Weight {
    w: Tensor,
    u: Option<Tensor>,
}

impl Weight {
    pub fn new(vs: &nn::Path<'_>, name: &str, shape: &[i64], fan_in: i64, sn: bool) -> Self {
        let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
        let w = vs.var(
            name,
            shape,
            nn::Init::Uniform {
                lo: -bound,
                up: bound,
            },
        );
        let u = sn.then(|| {
            let u = vs.zeros_no_train(&format!("{name}_u"), &[shape[0]]);
            tch::no_grad(|| {
                let mut t = u.shallow_clone();
                let r = Tensor::randn([shape[0]], (Kind::Float, vs.device()));
                t.copy_(&(&r / r.norm().clamp_min(1e-12)));
            });
            u
        });
        Self { w, u }
    }

    pub fn get(&self, train: bool) -> Tensor {
        let Some(u) = &self.u else {
            return self.w.shallow_clone();
        };
        let mat = self.w.reshape([self.w.size()[0], -1]);
        if train {
            tch::no_grad(|| {
                let v = mat.detach().tr().mv(u);
                let v = &v / v.norm().clamp_min(1e-12);
                let nu = mat.detach().mv(&v);
                let mut t = u.shallow_clone();
                t.copy_(&(&nu / nu.norm().clamp_min(1e-12)));
            });
        }
        // A snapshot of u: a later forward's power iteration updates it in place, and this
        // graph must keep the value it used (as PyTorch's spectral_norm clones it).
        let u = u.copy();
        let v = mat.detach().tr().mv(&u);
        let v = &v / v.norm().clamp_min(1e-12);
        let sigma = u.dot(&mat.mv(&v)).clamp_min(1e-12);
        &self.w / sigma
    }
}

/// `x·(1 + γ) + β` with γ, β from the condition, broadcast over `[B, C, T, H, W]`.
fn film(x: &Tensor, cond: &Tensor, layer: &nn::Linear) -> Tensor {
    let ch = x.size()[1];
    let gb = layer.forward(cond).view([-1, 2 * ch, 1, 1, 1]);
    let gamma = gb.narrow(1, 0, ch);
    let beta = gb.narrow(1, ch, ch);
    x * (gamma + 1.0) + beta
}

fn instance_norm(x: &Tensor, affine: Option<&(Tensor, Tensor)>) -> Tensor {
    let (w, b) = match affine {
        Some((w, b)) => (Some(w), Some(b)),
        None => (None, None),
    };
    Tensor::instance_norm(
        x,
        w,
        b,
        None::<&Tensor>,
        None::<&Tensor>,
        true,
        0.1,
        1e-5,
        false,
    )
}

/// The generator's output for the predicted frames.
#[derive(Debug)]
pub struct Generated {
    /// `[B, Np, R, C, 2, ph, pw/2+1]` when the DFT head is on.
    pub dft: Option<Tensor>,
    /// `[B, Np, R, C, ph, pw]` when the DCT head is on.
    pub dct: Option<Tensor>,
    /// Per-path patches `[B, Np, R, C, ph, pw]` (DFT, DCT), for the path losses.
    pub patches: Vec<Tensor>,
    /// Assembled frames `[B, Np, C, H, W]` in [-1, 1], differentiable.
    pub frames: Tensor,
}

/// The FiLM-conditioned 3D transposed-convolution generator with RoIAlign spectral heads.
#[derive(Debug)]
pub struct Generator {
    d: Dims,
    start: (i64, i64),
    c0: i64,
    /// The trunk's first layer; `None` when the heads read only the region latents.
    fc: Option<nn::Linear>,
    cond: Option<(nn::Linear, nn::Linear)>,
    blocks: Vec<(Tensor, (Tensor, Tensor), Option<nn::Linear>)>,
    kt: i64,
    min_c: i64,
    /// Spectral heads: the input layer (of the RoI features, or without the trunk of the
    /// global latent), then the output layer.
    dft_head: Option<(nn::Linear, nn::Linear)>,
    dct_head: Option<(nn::Linear, nn::Linear)>,
    pixel_head: Option<nn::Conv3D>,
    /// Per-pixel projection of the RoI features to colour, whose transform is added to the
    /// spectral heads' outputs.
    head_skip: Option<nn::Linear>,
    /// The per-region latents' inputs to the DFT and DCT heads' hidden layers.
    region_in: (Option<nn::Linear>, Option<nn::Linear>),
    /// Each spectral head's input from its region's box (`model.head_box`).
    box_in: (Option<nn::Linear>, Option<nn::Linear>),
    /// Multipliers of the DFT and DCT heads' outputs: the DC gain, ones elsewhere.
    dc_gain: (Tensor, Tensor),
    /// `model.refine_channels`: the residual refiner over the assembled frames.
    refine: Option<Refiner>,
}

/// A residual refiner over frames at full resolution: `x + conv(GELU(conv(GELU(conv([x, g])))))`
/// with 3x3 convolutions, the last started at zero so that it starts as the identity. `g` is
/// the layout's guide ([`Refiner::guide`]): where the boxes' edges lie and how coarse each
/// pixel's patch is, which a convolution cannot see from the frame alone. It sees only the generated
/// frame and the layout, so all it adds still comes from the latent.
#[derive(Debug)]
pub struct Refiner {
    convs: [nn::Conv2D; 3],
    /// The guide of the boxes last seen: a run's boxes do not change, so it is built once.
    guide: std::cell::RefCell<Option<(Vec<[f64; 4]>, Tensor)>>,
}

impl Refiner {
    /// Guide channels: the region borders, the patch's coarseness.
    pub const GUIDE: i64 = 2;

    pub fn new(vs: &nn::Path<'_>, c: i64, width: i64) -> Self {
        let cfg = nn::ConvConfig {
            padding: 1,
            ..Default::default()
        };
        let last = init::conv2d(vs / "refine3", width, c, 3, Rule::Wubu, cfg);
        tch::no_grad(|| {
            let _ = last.ws.shallow_clone().zero_();
            if let Some(b) = &last.bs {
                let _ = b.shallow_clone().zero_();
            }
        });
        Self {
            convs: [
                init::conv2d(vs / "refine1", c + Self::GUIDE, width, 3, Rule::Wubu, cfg),
                init::conv2d(vs / "refine2", width, width, 3, Rule::Wubu, cfg),
                last,
            ],
            guide: std::cell::RefCell::new(None),
        }
    }

    /// [`Self::guide`] of `boxes` on `device`, built again only when the boxes change.
    pub fn guide_of(&self, boxes: &[[f64; 4]], d: &Dims, device: tch::Device) -> Tensor {
        let mut cached = self.guide.borrow_mut();
        match &*cached {
            Some((b, g)) if b.as_slice() == boxes && g.device() == device => g.shallow_clone(),
            _ => {
                let g = Self::guide(boxes, d, device);
                *cached = Some((boxes.to_vec(), g.shallow_clone()));
                g
            }
        }
    }

    /// The layout's guide `[1, 2, H, W]` for the boxes as assembled (with `region_overlap`,
    /// the grown ones): 1 within a pixel of a box's edge inside the frame (0 elsewhere), and
    /// log2 of the frame pixels per patch pixel (the two axes' geometric mean) of the finest
    /// box covering the pixel (0 also where none does).
    pub fn guide(boxes: &[[f64; 4]], d: &Dims, device: tch::Device) -> Tensor {
        let (w, h) = (d.w as u32, d.h as u32);
        let borders: Vec<f32> = crate::core::gaad::border_mask(boxes, w, h)
            .into_iter()
            .map(|b| f32::from(u8::from(b)))
            .collect();
        let mut coarse = vec![f32::INFINITY; borders.len()];
        for &[x1, y1, x2, y2] in boxes {
            let per = (((x2 - x1) / d.pw as f64) * ((y2 - y1) / d.ph as f64))
                .max(1e-6)
                .sqrt()
                .log2() as f32;
            for y in 0..h {
                let cy = f64::from(y) + 0.5;
                for x in 0..w {
                    let cx = f64::from(x) + 0.5;
                    let slot = &mut coarse[(y * w + x) as usize];
                    if cx >= x1 && cx < x2 && cy >= y1 && cy < y2 && per < *slot {
                        *slot = per;
                    }
                }
            }
        }
        for c in &mut coarse {
            if !c.is_finite() {
                *c = 0.0;
            }
        }
        Tensor::from_slice(&[borders, coarse].concat())
            .view([1, Self::GUIDE, d.h, d.w])
            .to_device(device)
    }

    /// `[..., C, H, W]` frames refined with the layout's `guide`, the same shape.
    pub fn forward(&self, frames: &Tensor, guide: &Tensor) -> Tensor {
        let s = frames.size();
        let n = s.len();
        let x = frames.reshape([-1, s[n - 3], s[n - 2], s[n - 1]]);
        let g = guide
            .to_kind(x.kind())
            .expand([x.size()[0], Self::GUIDE, s[n - 2], s[n - 1]], false);
        let [c1, c2, c3] = &self.convs;
        let h = watch::act(&c1.ws, c1.forward(&Tensor::cat(&[&x, &g], 1)).gelu("none"));
        let h = watch::act(&c2.ws, c2.forward(&h).gelu("none"));
        (x + c3.forward(&h)).view(s.as_slice())
    }
}

impl Generator {
    pub fn new(vs: &nn::Path<'_>, p: &WubuGaadPreset, d: &Dims) -> Self {
        let m = &p.model;
        let side = d.h.min(d.w);
        let r0 = if side <= 8 {
            1
        } else if side <= 32 {
            2
        } else {
            4
        };
        let n_up = ((side as f64 / f64::from(r0)).log2().ceil() as i64).max(0);
        let scale = 1i64 << n_up;
        let start = ((d.h + scale - 1) / scale, (d.w + scale - 1) / scale);
        let c0 = (2 * d.latent).clamp(128, 512);
        let min_c = (8 * d.c).max(32);
        let kt = i64::from(m.gen_temporal_kernel) | 1;
        let cond_dim = (d.latent / 4).max(32);
        // Validation keeps the trunk on unless region latents and a spectral head exist.
        let trunk = m.gen_trunk || d.region_latent == 0 || !(d.use_dft || d.use_dct);
        let n_up = if trunk { n_up } else { 0 };
        let cond = (m.gen_film && trunk).then(|| {
            let hidden = cond_dim.max(2 * d.regions);
            (
                init::linear(vs / "cond1", 4 * d.regions, hidden, Rule::Wubu),
                init::linear(vs / "cond2", hidden, cond_dim, Rule::Wubu),
            )
        });
        let mut blocks = Vec::new();
        let mut ch = c0;
        for i in 0..n_up {
            let out = if i + 1 == n_up {
                min_c
            } else {
                (ch / 2).max(min_c)
            };
            let bp = vs / format!("block{i}");
            let w = bp.var(
                "weight",
                &[ch, out, kt, 4, 4],
                nn::Init::Kaiming {
                    dist: nn::init::NormalOrUniform::Normal,
                    fan: nn::init::FanInOut::FanOut,
                    non_linearity: nn::init::NonLinearity::ReLU,
                },
            );
            let norm = (
                bp.ones("norm_weight", &[out]),
                bp.zeros("norm_bias", &[out]),
            );
            let f = m
                .gen_film
                .then(|| init::linear(&bp / "film", cond_dim, 2 * out, Rule::Wubu));
            blocks.push((w, norm, f));
            ch = out;
        }
        let last_c = if n_up == 0 { c0 } else { min_c };
        let roi = last_c * d.ph * d.pw;
        let hidden = i64::from(m.gen_head_hidden);
        // The heads read the trunk's RoI features, or without the trunk the global latent.
        let head_in = if trunk { roi } else { d.latent };
        // The global latent's input starts at zero: each region first decodes its own code,
        // and the global path grows only where it helps (started random, it slowed the first
        // hundreds of steps by several dB).
        let head_in_cfg = if trunk {
            init::linear_config(Rule::Wubu, head_in, hidden)
        } else {
            nn::LinearConfig {
                ws_init: nn::Init::Const(0.0),
                ..init::linear_config(Rule::Wubu, head_in, hidden)
            }
        };
        let head = |name: &str, out: i64| {
            (
                init::linear_as(vs / format!("{name}1"), head_in, hidden, head_in_cfg),
                init::linear(vs / format!("{name}2"), hidden, out, Rule::Wubu),
            )
        };
        let dft_head = d
            .use_dft
            .then(|| head("dft_head", d.c * 2 * d.ph * (d.pw / 2 + 1)));
        let dct_head = d.use_dct.then(|| head("dct_head", d.c * d.ph * d.pw));
        let pixel_head = (!d.use_dft && !d.use_dct).then(|| {
            init::conv3d(
                vs / "pixel_head",
                last_c,
                d.c,
                3,
                Rule::Wubu,
                nn::ConvConfig {
                    padding: 1,
                    ..Default::default()
                },
            )
        });
        let head_skip = (trunk && m.gen_head_skip && (d.use_dft || d.use_dct))
            .then(|| init::linear(vs / "head_skip", last_c, d.c, Rule::Wubu));
        let region_in = |on: bool, name: &str| {
            (on && d.region_latent > 0)
                .then(|| init::linear(vs / name, d.region_latent, hidden, Rule::Wubu))
        };
        let region_in = (
            region_in(d.use_dft, "dft_head_region"),
            region_in(d.use_dct, "dct_head_region"),
        );
        let box_in = |on: bool, name: &str| {
            (on && m.head_box).then(|| init::linear(vs / name, 4, hidden, Rule::Wubu))
        };
        let box_in = (
            box_in(d.use_dft, "dft_head_box"),
            box_in(d.use_dct, "dct_head_box"),
        );
        Self {
            d: d.clone(),
            start,
            c0,
            head_skip,
            region_in,
            box_in,
            fc: trunk.then(|| {
                init::linear(
                    vs / "fc",
                    d.latent,
                    c0 * d.n_pred * start.0 * start.1,
                    Rule::Wubu,
                )
            }),
            cond,
            blocks,
            kt,
            min_c: last_c,
            dft_head,
            dct_head,
            pixel_head,
            dc_gain: {
                let gain = if p.model.dc_gain {
                    ((d.ph * d.pw) as f64).sqrt()
                } else {
                    1.0
                };
                (
                    dc_gain_mask(&[2, d.ph, d.pw / 2 + 1], gain, vs.device()),
                    dc_gain_mask(&[d.ph, d.pw], gain, vs.device()),
                )
            },
            refine: (m.refine_channels > 0)
                .then(|| Refiner::new(vs, d.c, i64::from(m.refine_channels))),
        }
    }

    /// `z`: `[B, z_dim]` (the global latent, then the regions'); `boxes`: the predicted
    /// frames' regions (shared by every sample); `rois`: [`roi_boxes`] for `B·Np` images.
    pub fn forward(
        &self,
        z: &Tensor,
        boxes: &[[f64; 4]],
        cond: &Tensor,
        rois: &Tensor,
    ) -> Generated {
        let d = &self.d;
        let b = z.size()[0];
        let zr = (d.region_latent > 0).then(|| {
            z.narrow(1, d.latent, d.n_pred * d.regions * d.region_latent)
                .reshape([b * d.n_pred * d.regions, d.region_latent])
        });
        let trunk = self.fc.as_ref().map(|fc| self.trunk(fc, z, b, cond));
        if let (Some(head), Some(x)) = (&self.pixel_head, &trunk) {
            let frames = head.forward(x).tanh().permute([0, 2, 1, 3, 4]);
            return Generated {
                dft: None,
                dct: None,
                patches: Vec::new(),
                frames,
            };
        }
        // [B, C', Np, H, W] -> [B·Np, C', H, W] -> RoI features [B·Np·R, C'·ph·pw].
        let roi = trunk.map(|x| {
            let maps = x
                .permute([0, 2, 1, 3, 4])
                .reshape([b * d.n_pred, self.min_c, d.h, d.w]);
            spectral::roi_align(&maps, rois, d.ph, d.pw, 1.0)
        });
        // A row per region of each predicted frame: its RoI features, or the global latent.
        let feats = match &roi {
            Some(roi) => roi.reshape([b * d.n_pred * d.regions, -1]),
            None => z
                .narrow(1, 0, d.latent)
                .unsqueeze(1)
                .expand([b, d.n_pred * d.regions, d.latent], false)
                .reshape([b * d.n_pred * d.regions, d.latent]),
        };
        let skip = self.head_skip.as_ref().zip(roi.as_ref()).map(|(l, roi)| {
            l.forward(&roi.permute([0, 2, 3, 1]))
                .permute([0, 3, 1, 2])
                .reshape([b, d.n_pred, d.regions, d.c, d.ph, d.pw])
        });
        // Each row's region box, its corners over the frame's size in [-1, 1].
        let box_rows = (self.box_in.0.is_some() || self.box_in.1.is_some()).then(|| {
            let corners: Vec<f32> = boxes
                .iter()
                .flat_map(|bx| {
                    [
                        bx[0] / d.w as f64,
                        bx[1] / d.h as f64,
                        bx[2] / d.w as f64,
                        bx[3] / d.h as f64,
                    ]
                    .map(|v| (2.0 * v - 1.0) as f32)
                })
                .collect();
            Tensor::from_slice(&corners)
                .to_device(z.device())
                .view([1, d.regions, 4])
                .expand([b * d.n_pred, d.regions, 4], false)
                .reshape([b * d.n_pred * d.regions, 4])
        });
        let run =
            |h: &(nn::Linear, nn::Linear), r: &Option<nn::Linear>, bx: &Option<nn::Linear>| {
                let mut hidden = match (r, &zr) {
                    (Some(r), Some(zr)) => h.0.forward(&feats) + r.forward(zr),
                    _ => h.0.forward(&feats),
                };
                if let (Some(l), Some(rows)) = (bx, &box_rows) {
                    hidden += l.forward(rows);
                }
                h.1.forward(&watch::act(&h.0.ws, hidden.gelu("none")))
            };
        let lead = [b, d.n_pred, d.regions, d.c];
        // The orthonormal transforms put a patch's mean, times sqrt(ph·pw), in the DC
        // coefficient: up to ±16 at 16x16 while the rest are small (spec 11.17). The heads
        // predict the mean there instead, scaled up by a fixed gain, so one output scale
        // serves every coefficient.
        // The locality prior: the transform of the per-pixel colour projection.
        let plus_skip = |f: Tensor, transform: fn(&Tensor) -> Tensor| match &skip {
            Some(s) => f + transform(s),
            None => f,
        };
        let dft = self.dft_head.as_ref().map(|h| {
            let f = run(h, &self.region_in.0, &self.box_in.0)
                .view([lead[0], lead[1], lead[2], lead[3], 2, d.ph, d.pw / 2 + 1].as_slice());
            plus_skip(f * &self.dc_gain.0, spectral::dft)
        });
        let dct = self.dct_head.as_ref().map(|h| {
            let f = run(h, &self.region_in.1, &self.box_in.1)
                .view([lead[0], lead[1], lead[2], lead[3], d.ph, d.pw]);
            plus_skip(f * &self.dc_gain.1, spectral::dct2)
        });
        let mut patches = Vec::new();
        if let Some(f) = &dft {
            patches.push(spectral::idft(f, d.ph, d.pw));
        }
        if let Some(f) = &dct {
            patches.push(spectral::idct2(f));
        }
        let mean = if patches.len() == 2 {
            (&patches[0] + &patches[1]) * 0.5
        } else {
            patches[0].shallow_clone()
        };
        let frames = assemble(&mean, boxes, d);
        Generated {
            frames: match &self.refine {
                Some(r) => r.forward(&frames, &r.guide_of(boxes, d, frames.device())),
                None => frames,
            },
            dft,
            dct,
            patches,
        }
    }
}

impl Generator {
    /// The FiLM-conditioned transposed-convolution trunk: the global latent to feature maps
    /// `[B, C', Np, H, W]`.
    fn trunk(&self, fc: &nn::Linear, z: &Tensor, b: i64, cond: &Tensor) -> Tensor {
        let d = &self.d;
        let z = z.narrow(1, 0, d.latent);
        let mut x = fc
            .forward(&z)
            .view([b, self.c0, d.n_pred, self.start.0, self.start.1]);
        let c = self.cond.as_ref().map(|(l1, l2)| {
            l2.forward(&watch::act(&l1.ws, l1.forward(cond).gelu("none")))
                .expand([b, -1], false)
        });
        for (w, norm, f) in &self.blocks {
            x = x.conv_transpose3d(
                w,
                None::<Tensor>,
                [1, 2, 2],
                [self.kt / 2, 1, 1],
                [0, 0, 0],
                1,
                [1, 1, 1],
            );
            x = instance_norm(&x, Some(norm));
            if let (Some(layer), Some(c)) = (f, &c) {
                x = film(&x, c, layer);
            }
            x = watch::act(w, x.gelu("none"));
        }
        if x.size()[3] != d.h || x.size()[4] != d.w {
            x = x.upsample_trilinear3d([d.n_pred, d.h, d.w], false, None, None, None);
        }
        x
    }
}

impl Generator {
    /// The weights of the layers that give the output (the spectral heads' last layers, or
    /// the pixel head), where the adaptive adversarial weight compares gradients.
    pub fn output_weights(&self) -> Vec<Tensor> {
        let heads = [&self.dft_head, &self.dct_head];
        let mut out: Vec<Tensor> = heads
            .iter()
            .filter_map(|h| h.as_ref().map(|(_, last)| last.ws.shallow_clone()))
            .collect();
        if let Some(p) = &self.pixel_head {
            out.push(p.ws.shallow_clone());
        }
        out
    }
}

/// Ones of `shape` with `gain` at index 0 (the DC coefficient; for the DFT, its real part).
fn dc_gain_mask(shape: &[i64], gain: f64, device: tch::Device) -> Tensor {
    let mask = Tensor::ones(shape, (Kind::Float, device));
    let mut first = shape
        .iter()
        .fold(mask.shallow_clone(), |t, _| t.select(0, 0));
    let _ = first.fill_(gain);
    mask
}

/// `[B, Np, R, C, ph, pw]` patches pasted into `[B, Np, C, H, W]` frames.
pub fn assemble(patches: &Tensor, boxes: &[[f64; 4]], d: &Dims) -> Tensor {
    let (b, np) = (patches.size()[0], patches.size()[1]);
    let per_region =
        patches
            .permute([2, 0, 1, 3, 4, 5])
            .reshape([d.regions, b * np * d.c, d.ph, d.pw]);
    spectral::assemble_weighted(
        &per_region,
        boxes,
        d.h,
        d.w,
        d.assembly_sharpness,
        d.feather,
    )
        .view([b, np, d.c, d.h, d.w])
}

/// Both critics' common face.
pub trait Critic: std::fmt::Debug {
    /// Logits `[B]` and, for the feature critic, the features feature matching compares.
    fn forward_t(&self, input: &CriticInput<'_>, train: bool) -> (Tensor, Option<Tensor>);
    fn kind(&self) -> DiscKind;
}

/// What a critic may look at.
#[derive(Debug)]
pub struct CriticInput<'a> {
    /// `[B, Np, C, H, W]`.
    pub frames: &'a Tensor,
    /// `[B, R, Np·D]` region-major spectral coefficients (DFT ‖ DCT per frame).
    pub coeffs: &'a Tensor,
    /// The FiLM condition from the boxes.
    pub cond: &'a Tensor,
}

/// One layer of the pixel critic.
#[derive(Debug)]
struct Conv3dLayer {
    weight: Weight,
    stride: [i64; 3],
    padding: [i64; 3],
    /// Affine instance-norm parameters (when FiLM is off).
    norm: Option<(Tensor, Tensor)>,
    film: Option<nn::Linear>,
}

/// The primary pixel critic: a 3D CNN over the predicted frames.
#[derive(Debug)]
pub struct PixelCritic {
    layers: Vec<Conv3dLayer>,
    cond: Option<(nn::Linear, nn::Linear)>,
    pool_t: i64,
    head: Vec<(Weight, Tensor)>,
}

impl PixelCritic {
    pub fn new(vs: &nn::Path<'_>, p: &WubuGaadPreset, d: &Dims) -> Self {
        let m = &p.model;
        let sn = m.disc_spectral_norm;
        let side = d.h.min(d.w);
        let n_layers = if side >= 8 {
            ((side as f64 / 4.0).log2().floor() as i64)
                .min((side as f64).log2().floor() as i64)
                .max(1)
        } else {
            1
        };
        let cond_dim = 64;
        let cond = m.disc_film.then(|| {
            (
                init::linear(vs / "cond1", 4 * d.regions, cond_dim, Rule::Wubu),
                init::linear(vs / "cond2", cond_dim, cond_dim, Rule::Wubu),
            )
        });
        let kt = i64::from(m.disc_temporal_kernel);
        let (mut t, mut hh, mut ww) = (d.n_pred, d.h, d.w);
        let mut c_in = d.c;
        let mut layers = Vec::new();
        for i in 0..n_layers {
            let c_out = (i64::from(m.disc_base_channels) << i).min(i64::from(m.disc_max_channels));
            let k_t = kt.min(t).max(1);
            let s_sp = if hh >= 8 && ww >= 8 { 2 } else { 1 };
            let s_t = if i == 0 && t > kt { 2 } else { 1 };
            let pad = [k_t / 2, 1, 1];
            let lp = vs / format!("layer{i}");
            let w = Weight::new(
                &lp,
                "weight",
                &[c_out, c_in, k_t, 4, 4],
                c_in * k_t * 16,
                sn,
            );
            let affine = (!m.disc_film).then(|| {
                (
                    lp.ones("norm_weight", &[c_out]),
                    lp.zeros("norm_bias", &[c_out]),
                )
            });
            let f = m
                .disc_film
                .then(|| init::linear(&lp / "film", cond_dim, 2 * c_out, Rule::Wubu));
            layers.push(Conv3dLayer {
                weight: w,
                stride: [s_t, s_sp, s_sp],
                padding: pad,
                norm: affine,
                film: f,
            });
            t = (t + 2 * pad[0] - k_t) / s_t + 1;
            hh = (hh + 2 - 4) / s_sp + 1;
            ww = (ww + 2 - 4) / s_sp + 1;
            c_in = c_out;
        }
        let dim = c_in * t;
        let mut head = Vec::new();
        if dim <= 192 {
            head.push((
                Weight::new(&(vs / "fc"), "weight", &[1, dim], dim, sn),
                vs.zeros("fc_bias", &[1]),
            ));
        } else {
            let hdim = (dim / 2).clamp(128, 512);
            head.push((
                Weight::new(&(vs / "fc1"), "weight", &[hdim, dim], dim, sn),
                vs.zeros("fc1_bias", &[hdim]),
            ));
            head.push((
                Weight::new(&(vs / "fc2"), "weight", &[1, hdim], hdim, sn),
                vs.zeros("fc2_bias", &[1]),
            ));
        }
        Self {
            layers,
            cond,
            pool_t: t,
            head,
        }
    }
}

impl Critic for PixelCritic {
    fn forward_t(&self, input: &CriticInput<'_>, train: bool) -> (Tensor, Option<Tensor>) {
        let b = input.frames.size()[0];
        let mut x = input.frames.permute([0, 2, 1, 3, 4]);
        let c = self.cond.as_ref().map(|(l1, l2)| {
            l2.forward(&watch::act(&l1.ws, l1.forward(input.cond).gelu("none")))
                .expand([b, -1], false)
        });
        for l in &self.layers {
            x = x.conv3d(
                &l.weight.get(train),
                None::<Tensor>,
                l.stride,
                l.padding,
                [1, 1, 1],
                1,
            );
            x = instance_norm(&x, l.norm.as_ref());
            if let (Some(layer), Some(c)) = (&l.film, &c) {
                x = film(&x, c, layer);
            }
            x = watch::act(&l.weight.w, leaky_relu(&x, 0.2));
        }
        let mut h = x.adaptive_avg_pool3d([self.pool_t, 1, 1]).reshape([b, -1]);
        let last = self.head.len() - 1;
        for (i, (w, bias)) in self.head.iter().enumerate() {
            h = h.linear(&w.get(train), Some(bias));
            if i < last {
                h = watch::act(&w.w, leaky_relu(&h, 0.2));
            }
        }
        (h.view([b]), None)
    }

    fn kind(&self) -> DiscKind {
        DiscKind::PixelCnn
    }
}

/// The alternative critic: each region's coefficients projected with shared weights, then
/// one global projection, WuBu-D, and a spectrally normalised logit.
#[derive(Debug)]
pub struct FeatureCritic {
    region: nn::Linear,
    stats: Option<(Weight, Tensor, Weight, Tensor)>,
    project: nn::Linear,
    norm: nn::LayerNorm,
    wubu_d: Stack,
    out: (Weight, Tensor),
}

/// Width of the shared per-region projection.
const REGION_FEATURES: i64 = 64;

impl FeatureCritic {
    pub fn new(vs: &nn::Path<'_>, p: &WubuGaadPreset, d: &Dims) -> Self {
        let m = &p.model;
        let sn = m.disc_spectral_norm;
        let per_region = d.n_pred * d.c * d.spec_per_channel();
        let tangent = i64::from(m.disc_feature_tangent_dim);
        let stats = m.disc_feature_stats_aux.then(|| {
            (
                Weight::new(&(vs / "stats1"), "weight", &[64, 2], 2, sn),
                vs.zeros("stats1_bias", &[64]),
                Weight::new(&(vs / "stats2"), "weight", &[64, 64], 64, sn),
                vs.zeros("stats2_bias", &[64]),
            )
        });
        let global_in = d.regions * REGION_FEATURES + if stats.is_some() { 64 } else { 0 };
        let sum: i64 = parse_stack(&m.wubu_d)
            .unwrap_or_default()
            .iter()
            .map(|(dim, _)| dim)
            .sum();
        let (d_cfg, d_out) =
            stack_cfg(&m.wubu_d, tangent, (sum > 0).then_some(sum), m.wubu_dropout);
        Self {
            region: init::linear(vs / "region", per_region, REGION_FEATURES, Rule::Wubu),
            stats,
            project: init::linear(vs / "project", global_in, tangent, Rule::Wubu),
            norm: init::layer_norm(vs / "norm", vec![tangent], Rule::Wubu),
            wubu_d: Stack::new(&(vs / "wubu_d"), &d_cfg),
            out: (
                Weight::new(&(vs / "out"), "weight", &[1, d_out], d_out, sn),
                vs.zeros("out_bias", &[1]),
            ),
        }
    }
}

impl Critic for FeatureCritic {
    fn forward_t(&self, input: &CriticInput<'_>, train: bool) -> (Tensor, Option<Tensor>) {
        let x = input.coeffs;
        let b = x.size()[0];
        let regions =
            watch::act(&self.region.ws, leaky_relu(&self.region.forward(x), 0.2)).reshape([b, -1]);
        let h = match &self.stats {
            Some((w1, b1, w2, b2)) => {
                let m = x.detach().mean_dim([1i64].as_slice(), false, Kind::Float);
                let st = Tensor::stack(
                    &[
                        m.mean_dim([1i64].as_slice(), false, Kind::Float),
                        m.std_correction([1i64].as_slice(), 1, false),
                    ],
                    1,
                );
                let s = watch::act(&w1.w, leaky_relu(&st.linear(&w1.get(train), Some(b1)), 0.2))
                    .linear(&w2.get(train), Some(b2));
                Tensor::cat(&[regions, s], 1)
            }
            None => regions,
        };
        let h = self.norm.forward(&self.project.forward(&h));
        let feats = self.wubu_d.forward_t(&h, train);
        let logit = feats.linear(&self.out.0.get(train), Some(&self.out.1));
        (logit.view([b]), Some(feats))
    }

    fn kind(&self) -> DiscKind {
        DiscKind::WubuFeature
    }
}

/// A critic of `kind`.
pub fn critic(vs: &nn::Path<'_>, kind: DiscKind, p: &WubuGaadPreset, d: &Dims) -> Box<dyn Critic> {
    match kind {
        DiscKind::PixelCnn => Box::new(PixelCritic::new(vs, p, d)),
        DiscKind::WubuFeature => Box::new(FeatureCritic::new(vs, p, d)),
    }
}

/// Region-major coefficients `[B, R, Np·D]` for the feature critic from per-frame spectra
/// (`[B, Np, R, C, ..]` DFT and/or DCT, or patches when neither).
pub fn region_major(
    dft: Option<&Tensor>,
    dct: Option<&Tensor>,
    patches: Option<&Tensor>,
) -> Tensor {
    let mut parts = Vec::new();
    for t in [dft, dct].into_iter().flatten() {
        let s = t.size();
        parts.push(t.reshape([s[0], s[1], s[2], -1]));
    }
    if parts.is_empty() {
        if let Some(p) = patches {
            let s = p.size();
            parts.push(p.reshape([s[0], s[1], s[2], -1]));
        }
    }
    let x = Tensor::cat(&parts, 3);
    let s = x.size();
    x.permute([0, 2, 1, 3]).reshape([s[0], s[2], -1])
}

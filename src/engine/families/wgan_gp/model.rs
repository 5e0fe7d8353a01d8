//! Seed 004's two WGAN-GP architectures, generalised from 64x64 to any power-of-two size
//! (the layer count follows the resolution; at 64x64 they are exactly the seed's).

use tch::nn::{self, Module, ModuleT};
use tch::Tensor;

use crate::core::preset::wgan_gp::{Arch, Model};
use crate::engine::nn::init::{self, Rule};
use crate::engine::nn::{SelfAttention, SpectralNormConv2d, DCGAN_CONV};
use crate::engine::watch;

fn conv_cfg(stride: i64, padding: i64) -> nn::ConvConfig {
    nn::ConvConfig {
        stride,
        padding,
        bias: false,
        ws_init: DCGAN_CONV,
        ..Default::default()
    }
}

fn bn(vs: nn::Path<'_>, c: i64) -> nn::BatchNorm {
    init::batch_norm(vs, 2, c, Rule::Dcgan)
}

fn ln(vs: nn::Path<'_>, shape: Vec<i64>) -> nn::LayerNorm {
    init::layer_norm(vs, shape, Rule::Dcgan)
}

/// LeakyReLU with slope 0.2 as one fused kernel (see `engine::ops`).
fn lrelu(x: &Tensor) -> Tensor {
    crate::engine::ops::leaky_relu(x, 0.2)
}

fn log2(size: u32) -> i64 {
    i64::from(size.trailing_zeros())
}

/// A generator: latent `[B, z]` to images `[B, 3, S, S]` in [-1, 1].
pub trait Generator: std::fmt::Debug + Send {
    fn forward_t(&self, z: &Tensor, train: bool) -> Tensor;
}

/// A critic: images to scores `[B, 1]`.
pub trait Critic: std::fmt::Debug + Send {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor;
}

/// Builds the generator of `cfg` at `size` into `vs`.
pub fn generator(vs: &nn::Path<'_>, cfg: &Model, size: u32) -> Box<dyn Generator> {
    match cfg.arch {
        Arch::Small => Box::new(SmallGenerator::new(vs, cfg, size)),
        Arch::Large => Box::new(LargeGenerator::new(vs, cfg, size)),
    }
}

/// Builds the critic of `cfg` at `size` into `vs`.
pub fn critic(vs: &nn::Path<'_>, cfg: &Model, size: u32) -> Box<dyn Critic> {
    match cfg.arch {
        Arch::Small => Box::new(SmallCritic::new(vs, cfg, size)),
        Arch::Large => Box::new(LargeCritic::new(vs, cfg, size)),
    }
}

/// ConvTranspose stack: z -> 4x4 -> ... -> S, BatchNorm + ReLU, Tanh at the end.
#[derive(Debug)]
struct SmallGenerator {
    latent: i64,
    net: nn::SequentialT,
}

impl SmallGenerator {
    fn new(vs: &nn::Path<'_>, cfg: &Model, size: u32) -> Self {
        let ngf = i64::from(cfg.g_feature_maps);
        let z = i64::from(cfg.latent_dim);
        let ups = log2(size) - 2; // stride-2 layers after the 4x4 projection
        let mut c = ngf << (ups - 1);
        let ct = |stride, padding| nn::ConvTransposeConfig {
            stride,
            padding,
            bias: false,
            ws_init: DCGAN_CONV,
            ..Default::default()
        };
        // Each ReLU's activations are counted for the layer that fed them, when watched.
        let l0 = init::conv_transpose2d(vs / "l0", z, c, 4, Rule::Dcgan, ct(1, 0));
        let w0 = l0.ws.shallow_clone();
        let mut net = nn::seq_t()
            .add(l0)
            .add(bn(vs / "bn0", c))
            .add_fn(move |x| watch::act(&w0, x.relu()));
        for i in 1..ups {
            let l = init::conv_transpose2d(
                vs / format!("l{i}"),
                c,
                c / 2,
                4,
                Rule::Dcgan,
                ct(2, 1),
            );
            let w = l.ws.shallow_clone();
            net = net
                .add(l)
                .add(bn(vs / format!("bn{i}"), c / 2))
                .add_fn(move |x| watch::act(&w, x.relu()));
            c /= 2;
        }
        net = net
            .add(init::conv_transpose2d(
                vs / format!("l{ups}"),
                c,
                3,
                4,
                Rule::Dcgan,
                ct(2, 1),
            ))
            .add_fn(|x| x.tanh());
        Self { latent: z, net }
    }
}

impl Generator for SmallGenerator {
    fn forward_t(&self, z: &Tensor, train: bool) -> Tensor {
        self.net.forward_t(&z.view([-1, self.latent, 1, 1]), train)
    }
}

/// Conv stack with LayerNorm over [C, H, W] (no BatchNorm in a WGAN-GP critic).
#[derive(Debug)]
struct SmallCritic {
    net: nn::SequentialT,
}

impl SmallCritic {
    fn new(vs: &nn::Path<'_>, cfg: &Model, size: u32) -> Self {
        let ndf = i64::from(cfg.d_feature_maps);
        let downs = log2(size) - 2; // down to 4x4
        let mut s = i64::from(size) / 2;
        let l0 = init::conv2d(vs / "l0", 3, ndf, 4, Rule::Dcgan, conv_cfg(2, 1));
        let w0 = l0.ws.shallow_clone();
        let mut net = nn::seq_t()
            .add(l0)
            .add_fn(move |x| watch::act(&w0, lrelu(x)));
        let mut c = ndf;
        for i in 1..downs {
            s /= 2;
            let l = init::conv2d(
                vs / format!("l{i}"),
                c,
                c * 2,
                4,
                Rule::Dcgan,
                conv_cfg(2, 1),
            );
            let w = l.ws.shallow_clone();
            net = net
                .add(l)
                .add(ln(vs / format!("ln{i}"), vec![c * 2, s, s]))
                .add_fn(move |x| watch::act(&w, lrelu(x)));
            c *= 2;
        }
        net = net
            .add(init::conv2d(
                vs / "out",
                c,
                1,
                4,
                Rule::Dcgan,
                conv_cfg(1, 0),
            ))
            .add_fn(|x| x.flatten(1, -1));
        Self { net }
    }
}

impl Critic for SmallCritic {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.net.forward_t(x, train)
    }
}

/// `ReLU(x + BN(Conv3(ReLU(BN(Conv3(x))))))`.
#[derive(Debug)]
struct ResBlockG {
    c1: nn::Conv2D,
    b1: nn::BatchNorm,
    c2: nn::Conv2D,
    b2: nn::BatchNorm,
}

impl ResBlockG {
    fn new(vs: &nn::Path<'_>, c: i64) -> Self {
        Self {
            c1: init::conv2d(vs / "c1", c, c, 3, Rule::Dcgan, conv_cfg(1, 1)),
            b1: bn(vs / "b1", c),
            c2: init::conv2d(vs / "c2", c, c, 3, Rule::Dcgan, conv_cfg(1, 1)),
            b2: bn(vs / "b2", c),
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let h = watch::act(
            &self.c1.ws,
            self.b1.forward_t(&self.c1.forward(x), train).relu(),
        );
        let h = self.b2.forward_t(&self.c2.forward(&h), train);
        watch::act(&self.c2.ws, (x + h).relu())
    }
}

/// Upsample+Conv stages with residual blocks, self-attention at half resolution.
#[derive(Debug)]
struct LargeGenerator {
    latent: i64,
    project: nn::ConvTranspose2D,
    project_bn: nn::BatchNorm,
    stages: Vec<(nn::Conv2D, nn::BatchNorm, ResBlockG)>,
    attention: SelfAttention,
    out: nn::Conv2D,
}

impl LargeGenerator {
    fn new(vs: &nn::Path<'_>, cfg: &Model, size: u32) -> Self {
        let ngf = i64::from(cfg.g_feature_maps);
        let z = i64::from(cfg.latent_dim);
        let n_stages = (log2(size) - 3).max(1); // 4x4 -> S/2
        let mut c = ngf * 8;
        let ct = nn::ConvTransposeConfig {
            stride: 1,
            padding: 0,
            bias: false,
            ws_init: DCGAN_CONV,
            ..Default::default()
        };
        let project = init::conv_transpose2d(vs / "project", z, c, 4, Rule::Dcgan, ct);
        let project_bn = bn(vs / "project_bn", c);
        let mut stages = Vec::new();
        for i in 0..n_stages {
            let p = vs / format!("stage{i}");
            let out = c / 2;
            stages.push((
                init::conv2d(&p / "conv", c, out, 3, Rule::Dcgan, conv_cfg(1, 1)),
                bn(&p / "bn", out),
                ResBlockG::new(&(&p / "res"), out),
            ));
            c = out;
        }
        Self {
            latent: z,
            project,
            project_bn,
            stages,
            attention: SelfAttention::new(&(vs / "attention"), c),
            out: init::conv2d(vs / "out", c, 3, 3, Rule::Dcgan, conv_cfg(1, 1)),
        }
    }
}

fn upsample2(x: &Tensor) -> Tensor {
    let (_, _, h, w) = x.size4().unwrap_or((1, 1, 1, 1));
    x.upsample_nearest2d([h * 2, w * 2], None, None)
}

impl Generator for LargeGenerator {
    fn forward_t(&self, z: &Tensor, train: bool) -> Tensor {
        let mut x = watch::act(
            &self.project.ws,
            self.project_bn
                .forward_t(
                    &self.project.forward(&z.view([-1, self.latent, 1, 1])),
                    train,
                )
                .relu(),
        );
        for (conv, norm, res) in &self.stages {
            x = watch::act(
                &conv.ws,
                norm.forward_t(&conv.forward(&upsample2(&x)), train).relu(),
            );
            x = res.forward_t(&x, train);
        }
        x = self.attention.forward(&x);
        self.out.forward(&upsample2(&x)).tanh()
    }
}

/// `LReLU(x + LN(SNConv3(LReLU(LN(SNConv3(x))))))`.
#[derive(Debug)]
struct ResBlockD {
    c1: SpectralNormConv2d,
    n1: nn::LayerNorm,
    c2: SpectralNormConv2d,
    n2: nn::LayerNorm,
}

impl ResBlockD {
    fn new(vs: &nn::Path<'_>, c: i64, s: i64) -> Self {
        Self {
            c1: SpectralNormConv2d::new(&(vs / "c1"), c, c, 3, 1, 1),
            n1: ln(vs / "n1", vec![c, s, s]),
            c2: SpectralNormConv2d::new(&(vs / "c2"), c, c, 3, 1, 1),
            n2: ln(vs / "n2", vec![c, s, s]),
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let h = watch::act(
            self.c1.weight_orig(),
            lrelu(&self.n1.forward(&self.c1.forward_t(x, train))),
        );
        let h = self.n2.forward(&self.c2.forward_t(&h, train));
        watch::act(self.c2.weight_orig(), lrelu(&(x + h)))
    }
}

/// Spectral-norm convs with LayerNorm, residual blocks and self-attention.
#[derive(Debug)]
struct LargeCritic {
    down1: SpectralNormConv2d,
    res1: ResBlockD,
    attention: SelfAttention,
    downs: Vec<(SpectralNormConv2d, nn::LayerNorm, ResBlockD)>,
    out: SpectralNormConv2d,
}

impl LargeCritic {
    fn new(vs: &nn::Path<'_>, cfg: &Model, size: u32) -> Self {
        let ndf = i64::from(cfg.d_feature_maps);
        let mut s = i64::from(size) / 2;
        let down1 = SpectralNormConv2d::new(&(vs / "down1"), 3, ndf, 4, 2, 1);
        let res1 = ResBlockD::new(&(vs / "res1"), ndf, s);
        let attention = SelfAttention::new(&(vs / "attention"), ndf);
        let mut downs = Vec::new();
        let mut c = ndf;
        let mut i = 2;
        while s > 4 {
            s /= 2;
            let p = vs / format!("down{i}");
            downs.push((
                SpectralNormConv2d::new(&(&p / "conv"), c, c * 2, 4, 2, 1),
                ln(&p / "ln", vec![c * 2, s, s]),
                ResBlockD::new(&(&p / "res"), c * 2, s),
            ));
            c *= 2;
            i += 1;
        }
        Self {
            down1,
            res1,
            attention,
            downs,
            out: SpectralNormConv2d::new(&(vs / "out"), c, 1, 4, 1, 0),
        }
    }
}

impl Critic for LargeCritic {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut h = watch::act(self.down1.weight_orig(), lrelu(&self.down1.forward_t(x, train)));
        h = self.res1.forward_t(&h, train);
        h = self.attention.forward(&h);
        for (conv, norm, res) in &self.downs {
            h = watch::act(
                conv.weight_orig(),
                lrelu(&norm.forward(&conv.forward_t(&h, train))),
            );
            h = res.forward_t(&h, train);
        }
        self.out.forward_t(&h, train).flatten(1, -1)
    }
}

/// Number of elements of the trainable variables of `vs`.
#[must_use]
pub fn parameter_count(vs: &nn::VarStore) -> i64 {
    vs.variables()
        .values()
        .filter(|t| t.requires_grad())
        .map(Tensor::numel)
        .map(|n| n as i64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::preset::wgan_gp::WganGpPreset;

    fn count(arch: Arch, fm: u32, size: u32) -> (i64, i64, Vec<i64>, Vec<i64>) {
        let mut cfg = WganGpPreset::default().model;
        cfg.arch = arch;
        cfg.g_feature_maps = fm;
        cfg.d_feature_maps = fm;
        let gvs = nn::VarStore::new(tch::Device::Cpu);
        let dvs = nn::VarStore::new(tch::Device::Cpu);
        let g = generator(&gvs.root(), &cfg, size);
        let d = critic(&dvs.root(), &cfg, size);
        let z = Tensor::randn(
            [2, i64::from(cfg.latent_dim)],
            (tch::Kind::Float, tch::Device::Cpu),
        );
        let x = g.forward_t(&z, true);
        let y = d.forward_t(&x, true);
        (
            parameter_count(&gvs),
            parameter_count(&dvs),
            x.size(),
            y.size(),
        )
    }

    #[test]
    fn small_matches_the_seed_at_64() {
        let (g, d, x, y) = count(Arch::Small, 64, 64);
        assert_eq!(x, vec![2, 3, 64, 64]);
        assert_eq!(y, vec![2, 1]);
        // Seed 004 (other_seeds_spec §3.3): G about 3.81 M, critic about 2.88 M parameters.
        assert!((3_700_000..3_900_000).contains(&g), "G {g}");
        assert!((2_700_000..3_000_000).contains(&d), "D {d}");
    }

    #[test]
    fn large_shapes_at_32() {
        let (_, _, x, y) = count(Arch::Large, 8, 32);
        assert_eq!(x, vec![2, 3, 32, 32]);
        assert_eq!(y, vec![2, 1]);
    }
}

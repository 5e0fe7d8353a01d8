//! The building blocks of seed 003's 3-D VQ-GAN (spec section 2.3): same-padded 3-D
//! convolutions and transposed convolutions with the padding mode each layer really uses,
//! GroupNorm residual blocks, the encoder and decoder for any power-of-two downsampling per
//! axis, the EMA codebook with lazy initialisation, smoothing and random restart, and the 2-D
//! and 3-D PatchGAN discriminators that return their intermediate features.

use tch::nn::{self, Module, ModuleT};

use crate::engine::nn::init::{self, Rule};
use tch::{Kind, Tensor};

/// How a convolution pads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pad {
    /// Repeat the edge (TATS and medicaldiffusion everywhere).
    Replicate,
    /// Zeros (the Xray configurations' encoder convolutions).
    Zeros,
}

/// `(front, back)` padding of a same-padded axis: `p = k - s`, split `(ceil(p/2), floor(p/2))`.
#[must_use]
pub fn same_pad(k: i64, s: i64) -> (i64, i64) {
    let p = (k - s).max(0);
    ((p + 1) / 2, p / 2)
}

fn pad3d(x: &Tensor, k: i64, s: [i64; 3], mode: Pad) -> Tensor {
    // Last dimension first, as torch's pad lists go.
    let mut pads = Vec::with_capacity(6);
    for &st in s.iter().rev() {
        let (a, b) = same_pad(k, st);
        pads.extend([a, b]);
    }
    match mode {
        Pad::Replicate => x.replication_pad3d(&pads),
        Pad::Zeros => x.constant_pad_nd(&pads),
    }
}

/// `SamePadConv3d`: explicit padding, then an unpadded convolution.
#[derive(Debug)]
pub struct SameConv3d {
    conv: nn::Conv3D,
    k: i64,
    stride: [i64; 3],
    pad: Pad,
}

impl SameConv3d {
    pub fn new(
        p: &nn::Path<'_>,
        c_in: i64,
        c_out: i64,
        k: i64,
        stride: [i64; 3],
        pad: Pad,
    ) -> Self {
        let kernel = k * k * k;
        let (ws_init, bs_init) = init::conv_inits(Rule::Torch, c_in * kernel, c_out * kernel);
        let cfg = nn::ConvConfigND::<[i64; 3]> {
            stride,
            padding: [0; 3],
            dilation: [1; 3],
            groups: 1,
            bias: true,
            ws_init,
            bs_init,
            padding_mode: nn::PaddingMode::Zeros,
        };
        Self {
            conv: init::conv_nd(p, c_in, c_out, [k; 3], Rule::Torch, cfg),
            k,
            stride,
            pad,
        }
    }
}

impl Module for SameConv3d {
    fn forward(&self, x: &Tensor) -> Tensor {
        self.conv.forward(&pad3d(x, self.k, self.stride, self.pad))
    }
}

/// `SamePadConvTranspose3d`: replicate padding, then a transposed convolution with padding
/// `k - 1` (exactly 2x per strided axis for k 4, s 2).
#[derive(Debug)]
pub struct SameConvTranspose3d {
    weight: Tensor,
    bias: Tensor,
    k: i64,
    stride: [i64; 3],
}

impl SameConvTranspose3d {
    pub fn new(p: &nn::Path<'_>, c_in: i64, c_out: i64, k: i64, stride: [i64; 3]) -> Self {
        // PyTorch counts a transposed convolution's fan-in from its weight's second axis.
        let kernel = k * k * k;
        let (weight, bias) = init::params(
            p,
            &[c_in, c_out, k, k, k],
            Some(c_out),
            init::conv_inits(Rule::Torch, c_out * kernel, c_in * kernel),
            Rule::Torch,
            init::Layer::ConvTranspose,
        );
        Self {
            weight,
            bias: bias.unwrap_or_else(|| Tensor::zeros([c_out], (Kind::Float, p.device()))),
            k,
            stride,
        }
    }
}

impl Module for SameConvTranspose3d {
    fn forward(&self, x: &Tensor) -> Tensor {
        let k = self.k;
        pad3d(x, k, self.stride, Pad::Replicate).conv_transpose3d(
            &self.weight,
            Some(&self.bias),
            self.stride,
            [k - 1; 3],
            [0; 3],
            1,
            [1; 3],
        )
    }
}

/// `GroupNorm(groups, c, eps 1e-6)` (the seed's 32 groups; the tiny configuration's 8).
/// `SiLU(GN(x))`, its activations counted for the norm when it is watched.
fn silu_of(norm: &nn::GroupNorm, x: &Tensor) -> Tensor {
    let h = norm.forward(x).silu();
    match &norm.ws {
        Some(w) => crate::engine::watch::act(w, h),
        None => h,
    }
}

fn normalize(p: nn::Path<'_>, groups: i64, c: i64) -> nn::GroupNorm {
    init::group_norm(p, groups.min(c), c, 1e-6, Rule::Torch)
}

/// `x + conv3(SiLU(GN(conv3(SiLU(GN(x))))))`, replicate padding.
#[derive(Debug)]
pub struct ResBlock {
    n1: nn::GroupNorm,
    c1: SameConv3d,
    n2: nn::GroupNorm,
    c2: SameConv3d,
}

impl ResBlock {
    pub fn new(p: &nn::Path<'_>, groups: i64, c: i64) -> Self {
        Self {
            n1: normalize(p / "norm1", groups, c),
            c1: SameConv3d::new(&(p / "conv1"), c, c, 3, [1; 3], Pad::Replicate),
            n2: normalize(p / "norm2", groups, c),
            c2: SameConv3d::new(&(p / "conv2"), c, c, 3, [1; 3], Pad::Replicate),
        }
    }
}

impl Module for ResBlock {
    fn forward(&self, x: &Tensor) -> Tensor {
        let h = self.c1.forward(&silu_of(&self.n1, x));
        x + self.c2.forward(&silu_of(&self.n2, &h))
    }
}

/// The strides of each down (or up) stage: 2 on the axes that still need halving.
#[must_use]
pub fn stage_strides(downsample: [i64; 3]) -> Vec<[i64; 3]> {
    let mut left: Vec<u32> = downsample
        .iter()
        .map(|d| d.max(&1).trailing_zeros())
        .collect();
    let m = left.iter().copied().max().unwrap_or(0);
    (0..m)
        .map(|_| {
            let s = [0, 1, 2].map(|a| if left[a] > 0 { 2 } else { 1 });
            for l in &mut left {
                *l = l.saturating_sub(1);
            }
            s
        })
        .collect()
}

/// The encoder: `conv_first`, then per stage a strided k4 convolution doubling the channels
/// and a residual block, then GroupNorm and SiLU. Output channels `h 2^m`.
#[derive(Debug)]
pub struct Encoder3d {
    first: SameConv3d,
    stages: Vec<(SameConv3d, ResBlock)>,
    norm: nn::GroupNorm,
    pub out_channels: i64,
}

impl Encoder3d {
    pub fn new(
        p: &nn::Path<'_>,
        c: i64,
        h: i64,
        groups: i64,
        downsample: [i64; 3],
        pad: Pad,
    ) -> Self {
        let strides = stage_strides(downsample);
        let mut ch = h;
        let stages = strides
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let q = p / "down" / i;
                let stage = (
                    SameConv3d::new(&(&q / "conv"), ch, ch * 2, 4, *s, pad),
                    ResBlock::new(&(&q / "res"), groups, ch * 2),
                );
                ch *= 2;
                stage
            })
            .collect();
        Self {
            first: SameConv3d::new(&(p / "conv_first"), c, h, 3, [1; 3], pad),
            stages,
            norm: normalize(p / "final_norm", groups, ch),
            out_channels: ch,
        }
    }
}

impl Module for Encoder3d {
    fn forward(&self, x: &Tensor) -> Tensor {
        let mut h = self.first.forward(x);
        for (down, res) in &self.stages {
            h = res.forward(&down.forward(&h));
        }
        silu_of(&self.norm, &h)
    }
}

/// The decoder: GroupNorm and SiLU, then per stage a transposed k4 convolution and two
/// residual blocks, then `conv_last` to `C` channels (no tanh).
#[derive(Debug)]
pub struct Decoder3d {
    norm: nn::GroupNorm,
    stages: Vec<(SameConvTranspose3d, ResBlock, ResBlock)>,
    last: SameConv3d,
}

impl Decoder3d {
    pub fn new(p: &nn::Path<'_>, c: i64, h: i64, groups: i64, downsample: [i64; 3]) -> Self {
        let strides = stage_strides(downsample);
        let m = strides.len() as u32;
        let top = h * 2i64.pow(m);
        let stages = strides
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let i32_ = i as u32;
                let out = h * 2i64.pow(m - i32_);
                let c_in = if i == 0 {
                    top
                } else {
                    h * 2i64.pow(m - i32_ + 1)
                };
                let q = p / "up" / i;
                (
                    SameConvTranspose3d::new(&(&q / "convt"), c_in, out, 4, *s),
                    ResBlock::new(&(&q / "res1"), groups, out),
                    ResBlock::new(&(&q / "res2"), groups, out),
                )
            })
            .collect();
        let last_in = if m == 0 { top } else { h * 2 };
        Self {
            norm: normalize(p / "first_norm", groups, top),
            stages,
            last: SameConv3d::new(&(p / "conv_last"), last_in, c, 3, [1; 3], Pad::Replicate),
        }
    }
}

impl Module for Decoder3d {
    fn forward(&self, x: &Tensor) -> Tensor {
        let mut h = silu_of(&self.norm, x);
        for (up, r1, r2) in &self.stages {
            h = r2.forward(&r1.forward(&up.forward(&h)));
        }
        self.last.forward(&h)
    }
}

/// How the EMA codebook divides the running sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Smoothing {
    /// TATS: `(N + 1e-7) / (sum N + K 1e-7) * sum N`.
    Laplace,
    /// The Xray port: `max(N, 1)`.
    AtLeastOne,
}

/// What quantising a batch gave.
#[derive(Debug)]
pub struct Quantised {
    /// Straight-through codes, the input's shape.
    pub z_q: Tensor,
    /// Code indices `[B, T, H, W]`.
    pub indices: Tensor,
    pub commitment: Tensor,
    pub perplexity: f64,
    /// Distinct codes in the batch.
    pub used: i64,
}

/// The EMA k-means codebook: buffers only (`embeddings`, `n`, `z_avg`, `initialised`).
#[derive(Debug)]
pub struct EmaCodebook {
    pub embeddings: Tensor,
    pub n: Tensor,
    pub z_avg: Tensor,
    initialised: Tensor,
    pub smoothing: Smoothing,
    pub restart_threshold: f64,
    pub random_restart: bool,
    pub decay: f64,
}

impl EmaCodebook {
    pub fn new(p: &nn::Path<'_>, k: i64, d: i64, smoothing: Smoothing) -> Self {
        let embeddings = p.var(
            "embeddings",
            &[k, d],
            nn::Init::Randn {
                mean: 0.0,
                stdev: 1.0,
            },
        );
        let embeddings = embeddings.set_requires_grad(false);
        let z_avg = p.zeros_no_train("z_avg", &[k, d]);
        tch::no_grad(|| z_avg.shallow_clone().copy_(&embeddings));
        Self {
            embeddings,
            n: p.zeros_no_train("n", &[k]),
            z_avg,
            initialised: p.zeros_no_train("initialised", &[1]),
            smoothing,
            restart_threshold: 1.0,
            random_restart: true,
            decay: 0.99,
        }
    }

    #[must_use]
    pub fn is_initialised(&self) -> bool {
        self.initialised.double_value(&[0]) > 0.5
    }

    /// `k` rows drawn from `flat [M, d]`, tiled with a little noise when `M < k`.
    fn draw(flat: &Tensor, k: i64) -> Tensor {
        let (m, d) = (flat.size()[0], flat.size()[1]);
        let pool = if m < k {
            let reps = (k + m - 1) / m;
            let tiled = flat.repeat([reps, 1]);
            &tiled + tiled.randn_like() * (0.01 / (d as f64).sqrt())
        } else {
            flat.shallow_clone()
        };
        let pick = Tensor::randperm(pool.size()[0], (Kind::Int64, flat.device())).narrow(0, 0, k);
        pool.index_select(0, &pick)
    }

    /// Quantises `z [B, d, T, H, W]`; in training, lazily initialises, updates the EMA and
    /// restarts dead codes first.
    pub fn forward(&self, z: &Tensor, train: bool) -> Quantised {
        // The codebook, its distances and its running sums stay in float32 under autocast.
        tch::autocast(false, || self.forward_f32(&z.to_kind(Kind::Float), train))
    }

    fn forward_f32(&self, z: &Tensor, train: bool) -> Quantised {
        let s = z.size();
        let d = s[1];
        let flat = z.movedim(1, -1).reshape([-1, d]);
        let k = self.embeddings.size()[0];
        // The codebook's statistics come from the whole global batch, so data-parallel ranks
        // keep one codebook, the one a single process would (alone, `flat` itself).
        let stats = if train {
            crate::engine::dist::gather_rows(&flat.detach())
        } else {
            flat.detach()
        };
        if train && !self.is_initialised() {
            tch::no_grad(|| {
                let init = Self::draw(&stats, k);
                self.embeddings.shallow_clone().copy_(&init);
                self.z_avg.shallow_clone().copy_(&init);
                let _ = self.n.shallow_clone().fill_(1.0);
                let _ = self.initialised.shallow_clone().fill_(1.0);
            });
        }
        let e = &self.embeddings;
        let dist = flat.detach().square().sum_dim_intlist(1, true, Kind::Float)
            - flat.detach().matmul(&e.tr()) * 2.0
            + e.square()
                .sum_dim_intlist(1, false, Kind::Float)
                .unsqueeze(0);
        let idx = dist.argmin(1, false);
        let onehot = idx.one_hot(k).to_kind(Kind::Float);
        let e_sel = e.index_select(0, &idx);
        if train {
            tch::no_grad(|| {
                if stats.size()[0] == flat.size()[0] {
                    self.update(&stats, &onehot);
                } else {
                    // Other ranks' rows too: their nearest codes before this update.
                    let d_all = stats.square().sum_dim_intlist(1, true, Kind::Float)
                        - stats.matmul(&e.tr()) * 2.0
                        + e.square()
                            .sum_dim_intlist(1, false, Kind::Float)
                            .unsqueeze(0);
                    let onehot_all = d_all.argmin(1, false).one_hot(k).to_kind(Kind::Float);
                    self.update(&stats, &onehot_all);
                }
            });
        }
        let commitment = (&flat - e_sel.detach()).square().mean(Kind::Float);
        let z_q_flat = &flat + (&e_sel - &flat).detach();
        let mut shape = vec![s[0]];
        shape.extend_from_slice(&s[2..]);
        shape.push(d);
        let z_q = z_q_flat.reshape(shape.as_slice()).movedim(-1, 1);
        let p = onehot.mean_dim(0, false, Kind::Float);
        let perplexity = (-(&p * (&p + 1e-10).log()).sum(Kind::Float))
            .exp()
            .double_value(&[]);
        let used = idx.unique_dim(0, false, false, false).0.size()[0];
        Quantised {
            z_q,
            indices: idx.reshape([s[0], s[2], s[3], s[4]]),
            commitment,
            perplexity,
            used,
        }
    }

    fn update(&self, flat: &Tensor, onehot: &Tensor) {
        let k = self.embeddings.size()[0];
        let count = onehot.sum_dim_intlist(0, false, Kind::Float);
        let sums = onehot.tr().matmul(flat);
        let _ = self.n.shallow_clone().lerp_(&count, 1.0 - self.decay);
        let _ = self.z_avg.shallow_clone().lerp_(&sums, 1.0 - self.decay);
        let w = match self.smoothing {
            Smoothing::Laplace => {
                let total = self.n.sum(Kind::Float);
                (&self.n + 1e-7) / (&total + k as f64 * 1e-7) * &total
            }
            Smoothing::AtLeastOne => self.n.clamp_min(1.0),
        };
        self.embeddings
            .shallow_clone()
            .copy_(&(&self.z_avg / w.unsqueeze(1)));
        if self.random_restart {
            let fresh = Self::draw(flat, k);
            let dead = self.n.lt(self.restart_threshold).unsqueeze(1);
            self.embeddings
                .shallow_clone()
                .copy_(&fresh.where_self(&dead, &self.embeddings));
        }
    }
}

/// pix2pixHD's PatchGAN with its intermediate features, 2-D or 3-D: kernel 4, padding 2,
/// channels doubling to at most 512, BatchNorm after the first stage.
#[derive(Debug)]
pub struct NLayerDiscriminator {
    convs: Vec<(Tensor, Tensor, i64)>,
    norms: Vec<Option<nn::BatchNorm>>,
    three_d: bool,
}

impl NLayerDiscriminator {
    pub fn new(p: &nn::Path<'_>, c: i64, ndf: i64, layers: usize, three_d: bool) -> Self {
        let mut convs = Vec::new();
        let mut norms = Vec::new();
        let dims: &[i64] = if three_d { &[4, 4, 4] } else { &[4, 4] };
        let mut ch = (c, ndf);
        for i in 0..=layers + 1 {
            let stride = if i < layers { 2 } else { 1 };
            let out = if i == layers + 1 { 1 } else { ch.1 };
            let kernel = dims.iter().product::<i64>();
            let q = p / format!("model{i}");
            let mut shape = vec![out, ch.0];
            shape.extend_from_slice(dims);
            let (w, b) = init::params(
                &q,
                &shape,
                Some(out),
                init::conv_inits(Rule::Torch, ch.0 * kernel, out * kernel),
                Rule::Torch,
                init::Layer::Conv,
            );
            let b = b.unwrap_or_else(|| Tensor::zeros([out], (Kind::Float, q.device())));
            convs.push((w, b, stride));
            // PyTorch's BatchNorm starts at scale 1 (tch's at U(0, 1)).
            norms.push((i > 0 && i <= layers).then(|| {
                init::batch_norm(&q / "norm", if three_d { 3 } else { 2 }, out, Rule::Torch)
            }));
            ch = (out, (out * 2).min(512));
        }
        Self {
            convs,
            norms,
            three_d,
        }
    }

    /// `(logits, [the output of every stage])`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> (Tensor, Vec<Tensor>) {
        let mut h = x.shallow_clone();
        let mut feats = Vec::with_capacity(self.convs.len());
        let last = self.convs.len() - 1;
        for (i, ((w, b, s), norm)) in self.convs.iter().zip(&self.norms).enumerate() {
            h = if self.three_d {
                h.conv3d(w, Some(b), [*s; 3], [2; 3], [1; 3], 1)
            } else {
                h.conv2d(w, Some(b), [*s; 2], [2; 2], [1; 2], 1)
            };
            if let Some(n) = norm {
                h = n.forward_t(&h, train);
            }
            if i < last {
                h = crate::engine::watch::act(w, crate::engine::ops::leaky_relu(&h, 0.2));
            }
            feats.push(h.shallow_clone());
        }
        (h, feats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn same_padding_splits_as_the_spec_says() {
        assert_eq!(same_pad(3, 1), (1, 1));
        assert_eq!(same_pad(4, 2), (1, 1));
        assert_eq!(same_pad(4, 1), (2, 1));
        assert_eq!(same_pad(1, 1), (0, 0));
        assert_eq!(stage_strides([4, 4, 4]), vec![[2, 2, 2], [2, 2, 2]]);
        assert_eq!(stage_strides([1, 4, 2]), vec![[1, 2, 2], [1, 2, 1]]);
    }

    /// Section 2.3's worked shapes at a smaller width: [1, 1, 32^3] -> encoder [1, 4h, 8^3]
    /// -> decoder [1, 1, 32^3]; downsampling only some axes halves only those.
    #[test]
    fn encoder_and_decoder_shapes() {
        let vs = nn::VarStore::new(Device::Cpu);
        let h = 8;
        let enc = Encoder3d::new(&(vs.root() / "enc"), 1, h, 8, [4, 4, 4], Pad::Zeros);
        let dec = Decoder3d::new(&(vs.root() / "dec"), 1, h, 8, [4, 4, 4]);
        let x = Tensor::randn([1, 1, 32, 32, 32], (Kind::Float, Device::Cpu));
        let z = enc.forward(&x);
        assert_eq!(z.size(), vec![1, 4 * h, 8, 8, 8]);
        assert_eq!(enc.out_channels, 4 * h);
        assert_eq!(dec.forward(&z).size(), vec![1, 1, 32, 32, 32]);
        let enc = Encoder3d::new(&(vs.root() / "enc2"), 3, h, 8, [1, 4, 2], Pad::Replicate);
        let dec = Decoder3d::new(&(vs.root() / "dec2"), 3, h, 8, [1, 4, 2]);
        let x = Tensor::randn([2, 3, 4, 16, 16], (Kind::Float, Device::Cpu));
        let z = enc.forward(&x);
        assert_eq!(z.size(), vec![2, 4 * h, 4, 4, 8]);
        assert_eq!(dec.forward(&z).size(), vec![2, 3, 4, 16, 16]);
    }

    #[test]
    fn the_codebook_initialises_lazily_moves_by_ema_and_restarts_dead_codes() {
        tch::manual_seed(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let cb = EmaCodebook::new(&vs.root(), 4, 2, Smoothing::Laplace);
        assert!(!cb.is_initialised());
        // Eight vectors at two points: (5, 5) and (-5, -5); [B=1, d=2, T=1, H=2, W=4].
        let pts: Vec<f32> = (0..8)
            .flat_map(|i| if i < 4 { [5.0, 5.0] } else { [-5.0, -5.0] })
            .collect();
        let z = Tensor::from_slice(&pts)
            .view([1, 8, 2])
            .permute([0, 2, 1])
            .reshape([1, 2, 1, 2, 4]);
        let q = cb.forward(&z, true);
        assert!(cb.is_initialised());
        // Every code was drawn from the batch, so the batch quantises exactly.
        let err = f64::try_from((&q.z_q - &z).abs().max()).unwrap();
        assert!(err < 1e-5, "{err}");
        assert_eq!(q.used, 2);
        // Eval mode changes nothing; train mode moves the counts by EMA.
        let n0 = cb.n.copy();
        let _ = cb.forward(&z, false);
        assert!(cb.n.equal(&n0));
        let _ = cb.forward(&z, true);
        let n = Vec::<f32>::try_from(&cb.n).unwrap();
        assert!(n.iter().all(|v| (0.0..=4.1).contains(v)), "{n:?}");
        // A code nobody uses decays below the threshold and is restarted onto the data (its
        // running sum is kept, as in TATS); the used codes stay on the data.
        for _ in 0..300 {
            let _ = cb.forward(&z, true);
        }
        let q = cb.forward(&z, false);
        let err = f64::try_from((&q.z_q - &z).abs().max()).unwrap();
        assert!(err < 1e-3, "{err}");
        let n = Vec::<f32>::try_from(&cb.n).unwrap();
        let e = Vec::<f32>::try_from(cb.embeddings.flatten(0, -1)).unwrap();
        assert!(n.iter().any(|&v| v < 1.0), "some code is dead: {n:?}");
        for (i, &ni) in n.iter().enumerate() {
            if ni < 1.0 {
                let code = &e[2 * i..2 * i + 2];
                assert!(
                    code.iter().all(|v| (v.abs() - 5.0).abs() < 1e-4),
                    "{i}: {code:?}"
                );
            }
        }
    }

    /// The EMA update's numbers: `N <- 0.99 N + 0.01 n`, `z_avg <- 0.99 z_avg + 0.01 sum`, each
    /// code `z_avg / N_s` with Laplace smoothing `N_s = (N + 1e-7) / (sum N + K 1e-7) sum N`.
    #[test]
    fn the_ema_update_and_laplace_smoothing_have_the_originals_numbers() {
        let vs = nn::VarStore::new(Device::Cpu);
        let mut cb = EmaCodebook::new(&vs.root(), 2, 1, Smoothing::Laplace);
        cb.random_restart = false;
        let pair = |v: f32| Tensor::from_slice(&[v, v]).view([1, 1, 1, 1, 2]);
        let close = |t: &Tensor, want: [f64; 2]| {
            let got = Vec::<f64>::try_from(t.flatten(0, -1).to_kind(Kind::Double)).unwrap();
            got.iter()
                .zip(want)
                .all(|(g, w)| (g - w).abs() < 1e-5 * w.abs().max(1.0))
                .then_some(())
                .ok_or(format!("{got:?} against {want:?}"))
        };
        // Both codes start at 3 with N = 1; both vectors go to code 0 (a tie).
        let _ = cb.forward(&pair(3.0), true);
        close(&cb.n, [1.01, 0.99]).unwrap();
        close(&cb.z_avg, [3.03, 2.97]).unwrap();
        close(&cb.embeddings, [3.0, 3.0]).unwrap();
        // Two vectors at 5, again to code 0.
        let _ = cb.forward(&pair(5.0), true);
        let n = [0.99 * 1.01 + 0.01 * 2.0, 0.99 * 0.99];
        let z = [0.99 * 3.03 + 0.01 * 10.0, 0.99 * 2.97];
        let total = n[0] + n[1];
        let w = |i: usize| (n[i] + 1e-7) / (total + 2.0 * 1e-7) * total;
        close(&cb.n, n).unwrap();
        close(&cb.z_avg, z).unwrap();
        close(&cb.embeddings, [z[0] / w(0), z[1] / w(1)]).unwrap();
    }

    /// Replicate padding repeats the border, zero padding does not: an all-ones kernel over an
    /// all-ones volume sums 27 everywhere with the first and 8 in a corner with the second.
    #[test]
    fn same_padding_pads_with_its_mode() {
        let vs = nn::VarStore::new(Device::Cpu);
        let x = Tensor::ones([1, 1, 4, 4, 4], (Kind::Float, Device::Cpu));
        for (mode, corner) in [(Pad::Replicate, 27.0), (Pad::Zeros, 8.0)] {
            let conv = SameConv3d::new(&(vs.root() / format!("{mode:?}")), 1, 1, 3, [1; 3], mode);
            tch::no_grad(|| {
                let _ = conv.conv.ws.shallow_clone().fill_(1.0);
                if let Some(b) = &conv.conv.bs {
                    let _ = b.shallow_clone().fill_(0.0);
                }
            });
            let y = conv.forward(&x);
            assert_eq!(y.size(), vec![1, 1, 4, 4, 4], "{mode:?}: same size");
            let at = |i: i64| y.double_value(&[0, 0, i, i, i]);
            assert!((at(0) - corner).abs() < 1e-4, "{mode:?}: corner {}", at(0));
            assert!((at(1) - 27.0).abs() < 1e-4, "{mode:?}: inside {}", at(1));
        }
    }

    #[test]
    fn max_one_smoothing_divides_by_at_least_one() {
        let vs = nn::VarStore::new(Device::Cpu);
        let mut cb = EmaCodebook::new(&vs.root(), 2, 1, Smoothing::AtLeastOne);
        cb.random_restart = false;
        let z = Tensor::from_slice(&[3.0f32, 3.0]).view([1, 1, 1, 1, 2]);
        let _ = cb.forward(&z, true);
        // Both codes start at 3 with N = 1, and both vectors go to code 0 (a tie):
        // N = [1.01, 0.99], z_avg = [3.03, 2.97]; max(N, 1) leaves code 1 at 2.97, where
        // Laplace smoothing would give 3.0.
        let e = Vec::<f32>::try_from(cb.embeddings.flatten(0, -1)).unwrap();
        assert!(
            (e[0] - 3.0).abs() < 1e-4 && (e[1] - 2.97).abs() < 1e-4,
            "{e:?}"
        );
    }

    #[test]
    fn discriminators_return_every_stage() {
        let vs = nn::VarStore::new(Device::Cpu);
        let d2 = NLayerDiscriminator::new(&(vs.root() / "d2"), 1, 8, 3, false);
        let (logits, feats) = d2.forward_t(
            &Tensor::zeros([2, 1, 128, 128], (Kind::Float, Device::Cpu)),
            true,
        );
        let sizes: Vec<Vec<i64>> = feats.iter().map(Tensor::size).collect();
        assert_eq!(
            sizes,
            vec![
                vec![2, 8, 65, 65],
                vec![2, 16, 33, 33],
                vec![2, 32, 17, 17],
                vec![2, 64, 18, 18],
                vec![2, 1, 19, 19]
            ]
        );
        assert_eq!(logits.size(), vec![2, 1, 19, 19]);
        let d3 = NLayerDiscriminator::new(&(vs.root() / "d3"), 1, 8, 3, true);
        let (logits, feats) = d3.forward_t(
            &Tensor::zeros([1, 1, 16, 16, 16], (Kind::Float, Device::Cpu)),
            false,
        );
        assert_eq!(feats.len(), 5);
        assert_eq!(logits.size(), vec![1, 1, 5, 5, 5]);
    }
}

//! Layers tch lacks, written on its functional ops: spectral normalisation (PyTorch
//! `nn.utils.spectral_norm` semantics) and SAGAN self-attention.

pub mod init;
pub mod vq3d;

use tch::nn::{self, Init, Module};

use self::init::Rule;
use tch::Tensor;

/// DCGAN initialisation of conv weights: N(0, 0.02).
pub const DCGAN_CONV: Init = Init::Randn {
    mean: 0.0,
    stdev: 0.02,
};
/// DCGAN initialisation of norm weights: N(1, 0.02).
pub const DCGAN_NORM: Init = Init::Randn {
    mean: 1.0,
    stdev: 0.02,
};

/// A 2D convolution without bias whose weight is divided by its largest singular value,
/// estimated with one power iteration per training-mode forward.
#[derive(Debug)]
pub struct SpectralNormConv2d {
    weight_orig: Tensor,
    u: Tensor,
    v: Tensor,
    stride: i64,
    padding: i64,
}

impl SpectralNormConv2d {
    /// Its weight before normalisation (the trained variable).
    pub fn weight_orig(&self) -> &Tensor {
        &self.weight_orig
    }

    pub fn new(
        vs: &nn::Path<'_>,
        c_in: i64,
        c_out: i64,
        k: i64,
        stride: i64,
        padding: i64,
    ) -> Self {
        // PyTorch's default conv init (kaiming_uniform with a = sqrt(5)) is U(+-1/sqrt(fan_in)).
        let (w_init, _) = init::conv_inits(init::Rule::Torch, c_in * k * k, c_out * k * k);
        let weight_orig = vs.var("weight_orig", &[c_out, c_in, k, k], w_init);
        let u = vs.zeros_no_train("u", &[c_out]);
        let v = vs.zeros_no_train("v", &[c_in * k * k]);
        tch::no_grad(|| {
            let mut u = u.shallow_clone();
            let mut v = v.shallow_clone();
            let ru = Tensor::randn([c_out], (tch::Kind::Float, vs.device()));
            let rv = Tensor::randn([c_in * k * k], (tch::Kind::Float, vs.device()));
            u.copy_(&normalize(&ru));
            v.copy_(&normalize(&rv));
        });
        Self {
            weight_orig,
            u,
            v,
            stride,
            padding,
        }
    }

    /// The normalised weight; advances the power iteration when `train` is set.
    pub fn weight(&self, train: bool) -> Tensor {
        let out = self.weight_orig.size()[0];
        let w_mat = self.weight_orig.reshape([out, -1]);
        if train {
            tch::no_grad(|| {
                let mut u = self.u.shallow_clone();
                let mut v = self.v.shallow_clone();
                let nv = normalize(&w_mat.detach().tr().mv(&self.u));
                let nu = normalize(&w_mat.detach().mv(&nv));
                v.copy_(&nv);
                u.copy_(&nu);
            });
        }
        // Copies, as PyTorch's spectral norm takes: the graph of this forward must not hold
        // the buffers that the next training forward of the same step updates in place (the
        // real, fake and gradient-penalty passes of one critic step share them).
        let (u, v) = (self.u.copy(), self.v.copy());
        let sigma = u.dot(&w_mat.mv(&v));
        &self.weight_orig / sigma
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        x.conv2d(
            &self.weight(train),
            None::<Tensor>,
            [self.stride],
            [self.padding],
            [1],
            1,
        )
    }
}

fn normalize(x: &Tensor) -> Tensor {
    x / (x.norm().clamp_min(1e-12))
}

/// SAGAN self-attention: `out = gamma * attention(x) + x`, gamma starting at 0.
#[derive(Debug)]
pub struct SelfAttention {
    query: nn::Conv2D,
    key: nn::Conv2D,
    value: nn::Conv2D,
    gamma: Tensor,
}

impl SelfAttention {
    pub fn new(vs: &nn::Path<'_>, channels: i64) -> Self {
        let cfg = nn::ConvConfig {
            ws_init: DCGAN_CONV,
            ..Default::default()
        };
        let inner = (channels / 8).max(1);
        Self {
            query: init::conv2d(vs / "query", channels, inner, 1, Rule::Dcgan, cfg),
            key: init::conv2d(vs / "key", channels, inner, 1, Rule::Dcgan, cfg),
            value: init::conv2d(vs / "value", channels, channels, 1, Rule::Dcgan, cfg),
            gamma: vs.zeros("gamma", &[1]),
        }
    }
}

impl Module for SelfAttention {
    fn forward(&self, x: &Tensor) -> Tensor {
        let (b, c, h, w) = x.size4().unwrap_or((1, 1, 1, 1));
        let n = h * w;
        let q = self.query.forward(x).view([b, -1, n]).permute([0, 2, 1]); // [B, N, C']
        let k = self.key.forward(x).view([b, -1, n]); // [B, C', N]
        let attn = q.bmm(&k).softmax(-1, tch::Kind::Float); // [B, N, N], softmax over keys
        let v = self.value.forward(x).view([b, c, n]); // [B, C, N]
        let out = v.bmm(&attn.permute([0, 2, 1])).view([b, c, h, w]);
        &self.gamma * out + x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spectral_norm_converges_to_unit_sigma() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let conv = SpectralNormConv2d::new(&vs.root(), 3, 8, 3, 1, 1);
        let mut w = conv.weight(true);
        for _ in 0..50 {
            w = conv.weight(true);
        }
        let sigma = tch::no_grad(|| {
            let m = w.reshape([8, -1]);
            let (_, s, _) = m.svd(true, true);
            s.double_value(&[0])
        });
        assert!((sigma - 1.0).abs() < 1e-3, "sigma = {sigma}");
    }

    #[test]
    fn attention_starts_as_identity() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let att = SelfAttention::new(&vs.root(), 16);
        let x = Tensor::randn([2, 16, 4, 4], (tch::Kind::Float, tch::Device::Cpu));
        let y = att.forward(&x);
        assert!(f64::try_from((y - &x).abs().max()).unwrap_or(1.0) < 1e-7);
    }
}

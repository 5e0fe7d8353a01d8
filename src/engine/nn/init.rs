//! Initial values of layers, in one place: PyTorch's defaults, and the overrides each original
//! applies on top (DCGAN's, a GPT's `_init_weights`, WuBu's `init_weights_general`). tch's own
//! defaults are not PyTorch's (its linear and conv weights start √6 times wider, conv biases at
//! zero, BatchNorm scales uniform in [0, 1]), so every family builds its layers here.
//!
//! Every layer made here is recorded when [`record`] is on, with its rule and tensors, so a
//! test can hold each family's layers against PyTorch's for the same shapes
//! (`tests/init.rs`, `tests/fixtures/torch_init.json`).

use std::cell::RefCell;

use tch::nn::{self, Init};
use tch::Tensor;

/// Whose initialisation a layer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// PyTorch's defaults: weights and biases U(±1/√fan_in) (`kaiming_uniform(a=√5)`), norms
    /// at 1 and 0.
    Torch,
    /// DCGAN's `weights_init`: conv weights N(0, 0.02), norm scales N(1, 0.02) and shifts 0;
    /// conv biases PyTorch's.
    Dcgan,
    /// A GPT's `_init_weights` (the latent action model's seed): linear weights N(0, 0.02),
    /// biases 0; norms 1 and 0; convs PyTorch's.
    Gpt,
    /// WuBu's `init_weights_general`: linear weights Xavier-uniform, conv weights
    /// Kaiming-normal (fan out, ReLU), biases 0, LayerNorm and GroupNorm at 1 and 0;
    /// BatchNorm PyTorch's.
    Wubu,
}

impl Rule {
    /// Its name in the fixture.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Torch => "torch",
            Self::Dcgan => "dcgan",
            Self::Gpt => "gpt",
            Self::Wubu => "wubu",
        }
    }
}

/// What kind of layer a parameter belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    Linear,
    Conv,
    ConvTranspose,
    Norm,
}

impl Layer {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Linear => "linear",
            Self::Conv => "conv",
            Self::ConvTranspose => "conv_transpose",
            Self::Norm => "norm",
        }
    }
}

/// One layer made with [`Rule`]: copies of its tensors as made.
#[derive(Debug)]
pub struct Made {
    pub rule: Rule,
    pub layer: Layer,
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

thread_local! {
    static RECORD: RefCell<Option<Vec<Made>>> = const { RefCell::new(None) };
}

/// Starts recording the layers this thread makes (for the init test).
pub fn record() {
    RECORD.with(|r| *r.borrow_mut() = Some(Vec::new()));
}

/// Stops recording and returns what was made since [`record`].
#[must_use]
pub fn recorded() -> Vec<Made> {
    RECORD.with(|r| r.borrow_mut().take().unwrap_or_default())
}

fn note(rule: Rule, layer: Layer, weight: &Tensor, bias: Option<&Tensor>) {
    RECORD.with(|r| {
        if let Some(list) = r.borrow_mut().as_mut() {
            // Copies: the values as made, before any later rescaling a family applies (the
            // latent action model's residual projections, GPT-2's 1/sqrt(2 layers)).
            list.push(Made {
                rule,
                layer,
                weight: weight.detach().copy(),
                bias: bias.map(|b| b.detach().copy()),
            });
        }
    });
}

fn uniform(bound: f64) -> Init {
    Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

fn normal(mean: f64, stdev: f64) -> Init {
    Init::Randn { mean, stdev }
}

/// PyTorch's default weight and bias bound for a layer with `fan_in` inputs per output.
fn torch_bound(fan_in: i64) -> f64 {
    1.0 / (fan_in.max(1) as f64).sqrt()
}

/// A linear layer's initial weight and bias.
#[must_use]
pub fn linear_inits(rule: Rule, fan_in: i64, fan_out: i64) -> (Init, Init) {
    match rule {
        Rule::Torch | Rule::Dcgan => (uniform(torch_bound(fan_in)), uniform(torch_bound(fan_in))),
        Rule::Gpt => (normal(0.0, 0.02), Init::Const(0.0)),
        Rule::Wubu => (
            uniform((6.0 / (fan_in + fan_out).max(1) as f64).sqrt()),
            Init::Const(0.0),
        ),
    }
}

/// A convolution's initial weight and bias: `fan_in` is input channels per group times the
/// kernel's elements, `fan_out` output channels per group times them (for a transposed
/// convolution PyTorch counts its weight's second axis as the input: pass `c_out / groups *
/// kernel` as `fan_in` and `c_in * kernel` as `fan_out`).
#[must_use]
pub fn conv_inits(rule: Rule, fan_in: i64, fan_out: i64) -> (Init, Init) {
    match rule {
        Rule::Torch | Rule::Gpt => (uniform(torch_bound(fan_in)), uniform(torch_bound(fan_in))),
        Rule::Dcgan => (normal(0.0, 0.02), uniform(torch_bound(fan_in))),
        Rule::Wubu => (
            normal(0.0, (2.0 / fan_out.max(1) as f64).sqrt()),
            Init::Const(0.0),
        ),
    }
}

/// A norm layer's initial scale and shift.
#[must_use]
pub fn norm_inits(rule: Rule) -> (Init, Init) {
    match rule {
        Rule::Dcgan => (normal(1.0, 0.02), Init::Const(0.0)),
        _ => (Init::Const(1.0), Init::Const(0.0)),
    }
}

/// `rule`'s configuration of a linear layer of `i` inputs and `o` outputs, for a caller that
/// overrides part of it (then [`linear_as`]).
#[must_use]
pub fn linear_config(rule: Rule, i: i64, o: i64) -> nn::LinearConfig {
    let (ws, bs) = linear_inits(rule, i, o);
    nn::LinearConfig {
        ws_init: ws,
        bs_init: Some(bs),
        bias: true,
    }
}

/// A linear layer whose initial values the caller chose on purpose (a lever a preset names,
/// such as a zero-initialised input or a narrow posterior's bias), usually from
/// [`linear_config`]; not held against the original's.
pub fn linear_as<'a>(
    p: impl std::borrow::Borrow<nn::Path<'a>>,
    i: i64,
    o: i64,
    cfg: nn::LinearConfig,
) -> nn::Linear {
    nn::linear(p, i, o, cfg)
}

/// A linear layer initialised by `rule`.
pub fn linear<'a>(
    p: impl std::borrow::Borrow<nn::Path<'a>>,
    i: i64,
    o: i64,
    rule: Rule,
) -> nn::Linear {
    linear_with(p, i, o, rule, true)
}

/// A linear layer initialised by `rule`, with or without a bias.
pub fn linear_with<'a>(
    p: impl std::borrow::Borrow<nn::Path<'a>>,
    i: i64,
    o: i64,
    rule: Rule,
    bias: bool,
) -> nn::Linear {
    let (ws, bs) = linear_inits(rule, i, o);
    let l = nn::linear(
        p,
        i,
        o,
        nn::LinearConfig {
            ws_init: ws,
            bs_init: Some(bs),
            bias,
        },
    );
    note(rule, Layer::Linear, &l.ws, l.bs.as_ref());
    l
}

/// A convolution's configuration (`stride`, `padding` and the rest as given) with `rule`'s
/// initial values, for `c_in` and `c_out` channels and `kernel` elements.
#[must_use]
pub fn conv_config(
    rule: Rule,
    c_in: i64,
    c_out: i64,
    kernel: i64,
    base: nn::ConvConfig,
) -> nn::ConvConfig {
    let g = base.groups.max(1);
    let (ws, bs) = conv_inits(rule, c_in / g * kernel, c_out / g * kernel);
    nn::ConvConfig {
        ws_init: ws,
        bs_init: bs,
        ..base
    }
}

/// A 2-D convolution initialised by `rule` (square kernel `k`).
pub fn conv2d<'a>(
    p: impl std::borrow::Borrow<nn::Path<'a>>,
    c_in: i64,
    c_out: i64,
    k: i64,
    rule: Rule,
    base: nn::ConvConfig,
) -> nn::Conv2D {
    let c = nn::conv2d(
        p,
        c_in,
        c_out,
        k,
        conv_config(rule, c_in, c_out, k * k, base),
    );
    note(rule, Layer::Conv, &c.ws, c.bs.as_ref());
    c
}

/// A 3-D convolution initialised by `rule` (cubic kernel `k`).
pub fn conv3d<'a>(
    p: impl std::borrow::Borrow<nn::Path<'a>>,
    c_in: i64,
    c_out: i64,
    k: i64,
    rule: Rule,
    base: nn::ConvConfig,
) -> nn::Conv3D {
    let c = nn::conv3d(
        p,
        c_in,
        c_out,
        k,
        conv_config(rule, c_in, c_out, k * k * k, base),
    );
    note(rule, Layer::Conv, &c.ws, c.bs.as_ref());
    c
}

/// A convolution of any shape, its configuration made by the caller with [`conv_inits`].
pub fn conv_nd<'a, ND: AsRef<[i64]>>(
    p: impl std::borrow::Borrow<nn::Path<'a>>,
    c_in: i64,
    c_out: i64,
    kernel: ND,
    rule: Rule,
    cfg: nn::ConvConfigND<ND>,
) -> nn::Conv<ND> {
    let c = nn::conv(p, c_in, c_out, kernel, cfg);
    note(rule, Layer::Conv, &c.ws, c.bs.as_ref());
    c
}

/// A 2-D transposed convolution initialised by `rule` (square kernel `k`).
pub fn conv_transpose2d<'a>(
    p: impl std::borrow::Borrow<nn::Path<'a>>,
    c_in: i64,
    c_out: i64,
    k: i64,
    rule: Rule,
    base: nn::ConvTransposeConfig,
) -> nn::ConvTranspose2D {
    let g = base.groups.max(1);
    // PyTorch counts a transposed convolution's fan-in from its weight's second axis.
    let (ws, bs) = conv_inits(rule, c_out / g * k * k, c_in * k * k);
    let c = nn::conv_transpose2d(
        p,
        c_in,
        c_out,
        k,
        nn::ConvTransposeConfig {
            ws_init: ws,
            bs_init: bs,
            ..base
        },
    );
    note(rule, Layer::ConvTranspose, &c.ws, c.bs.as_ref());
    c
}

/// A parameter made by hand (a layer tch lacks), recorded as `layer` of `rule`: its weight
/// `[.., fan ..]` from `weight_init`, its bias from `bias_init`.
pub fn params<'a>(
    p: impl std::borrow::Borrow<nn::Path<'a>>,
    shape: &[i64],
    bias_len: Option<i64>,
    (weight_init, bias_init): (Init, Init),
    rule: Rule,
    layer: Layer,
) -> (Tensor, Option<Tensor>) {
    let p = p.borrow();
    let w = p.var("weight", shape, weight_init);
    let b = bias_len.map(|n| p.var("bias", &[n], bias_init));
    note(rule, layer, &w, b.as_ref());
    (w, b)
}

/// BatchNorm over `dims` spatial axes (1, 2 or 3) initialised by `rule`.
pub fn batch_norm<'a>(
    p: impl std::borrow::Borrow<nn::Path<'a>>,
    dims: usize,
    channels: i64,
    rule: Rule,
) -> nn::BatchNorm {
    let (ws, bs) = norm_inits(rule);
    let cfg = nn::BatchNormConfig {
        ws_init: ws,
        bs_init: bs,
        ..Default::default()
    };
    let b = match dims {
        1 => nn::batch_norm1d(p, channels, cfg),
        3 => nn::batch_norm3d(p, channels, cfg),
        _ => nn::batch_norm2d(p, channels, cfg),
    };
    if let Some(w) = &b.ws {
        note(rule, Layer::Norm, w, b.bs.as_ref());
    }
    b
}

/// LayerNorm over the last axes `shape`, initialised by `rule`.
pub fn layer_norm<'a>(
    p: impl std::borrow::Borrow<nn::Path<'a>>,
    shape: Vec<i64>,
    rule: Rule,
) -> nn::LayerNorm {
    let (ws, bs) = norm_inits(rule);
    let l = nn::layer_norm(
        p,
        shape,
        nn::LayerNormConfig {
            ws_init: ws,
            bs_init: bs,
            ..Default::default()
        },
    );
    if let Some(w) = &l.ws {
        note(rule, Layer::Norm, w, l.bs.as_ref());
    }
    l
}

/// GroupNorm of `groups` over `channels`, initialised by `rule`.
pub fn group_norm<'a>(
    p: impl std::borrow::Borrow<nn::Path<'a>>,
    groups: i64,
    channels: i64,
    eps: f64,
    rule: Rule,
) -> nn::GroupNorm {
    let (ws, bs) = norm_inits(rule);
    let g = nn::group_norm(
        p,
        groups,
        channels,
        nn::GroupNormConfig {
            eps,
            ws_init: ws,
            bs_init: bs,
            ..Default::default()
        },
    );
    if let Some(w) = &g.ws {
        note(rule, Layer::Norm, w, g.bs.as_ref());
    }
    g
}

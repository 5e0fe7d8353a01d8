//! The latent action model of seed 002 (spec section 1.3), generalised to any latent size
//! `C x H x W` and patch size: adapters between latent frames and tokens, the encoder that
//! infers `A` codes per transition under a shifted-causal frame mask, the quantiser with one
//! shared codebook, the teacher-forced batched decoder under a block-causal mask, and the
//! separate step decoder used for rollout and evaluation.

use crate::engine::nn::init::{self, Rule};
use tch::nn::{self, Module, ModuleT};
use tch::{Kind, Tensor};

use crate::core::preset::latent_action::{CodebookUpdate, DecoderContext, Model as ModelCfg};

/// Multi-head attention under a boolean mask, as PyTorch's `MultiheadAttention`
/// (`batch_first`): packed input projection `[3E, E]` (Xavier-uniform, as PyTorch initialises
/// it; the seed's init touches only `Linear` modules), output projection.
#[derive(Debug)]
pub struct Attention {
    in_w: Tensor,
    in_b: Tensor,
    pub out: nn::Linear,
    heads: i64,
    dropout: f64,
}

/// The seed's `_init_weights`: every linear layer N(0, 0.02), biases 0.
fn linear(p: nn::Path<'_>, i: i64, o: i64) -> nn::Linear {
    init::linear(p, i, o, Rule::Gpt)
}

fn table(p: &nn::Path<'_>, name: &str, dims: &[i64]) -> Tensor {
    // Truncated normal at +-2 (absolute, as PyTorch's default) with std 0.02 never truncates.
    p.var(
        name,
        dims,
        nn::Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        },
    )
}

impl Attention {
    fn new(p: &nn::Path<'_>, e: i64, heads: i64, dropout: f64) -> Self {
        let bound = (6.0 / (4.0 * e as f64)).sqrt();
        Self {
            in_w: p.var(
                "in_proj_weight",
                &[3 * e, e],
                nn::Init::Uniform {
                    lo: -bound,
                    up: bound,
                },
            ),
            in_b: p.var("in_proj_bias", &[3 * e], nn::Init::Const(0.0)),
            out: linear(p / "out_proj", e, e),
            heads,
            dropout,
        }
    }

    /// `softmax(Q K^T / sqrt(d) + mask) V` over heads; `q_in` `[B, Lq, E]`, `kv_in`
    /// `[B, Lk, E]`, `mask` `[Lq, Lk]` (boolean: `true` = may attend).
    pub fn forward(
        &self,
        q_in: &Tensor,
        kv_in: &Tensor,
        mask: Option<&Tensor>,
        train: bool,
    ) -> Tensor {
        let e = self.in_w.size()[1];
        let (b, lq) = (q_in.size()[0], q_in.size()[1]);
        let lk = kv_in.size()[1];
        let dh = e / self.heads;
        let w = self.in_w.split(e, 0);
        let bias = self.in_b.split(e, 0);
        let proj = |x: &Tensor, i: usize, l: i64| {
            x.linear(&w[i], Some(&bias[i]))
                .view([b, l, self.heads, dh])
                .transpose(1, 2)
        };
        let (q, k, v) = (proj(q_in, 0, lq), proj(kv_in, 1, lk), proj(kv_in, 2, lk));
        let att = Tensor::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            mask,
            if train { self.dropout } else { 0.0 },
            false,
            None,
            false,
        );
        self.out
            .forward(&att.transpose(1, 2).contiguous().view([b, lq, e]))
    }
}

#[derive(Debug)]
struct Mlp {
    fc1: nn::Linear,
    fc2: nn::Linear,
    dropout: f64,
}

impl Mlp {
    fn new(p: &nn::Path<'_>, e: i64, ratio: f64, dropout: f64) -> Self {
        let hidden = (e as f64 * ratio).round() as i64;
        Self {
            fc1: linear(p / "fc1", e, hidden),
            fc2: linear(p / "fc2", hidden, e),
            dropout,
        }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let h = crate::engine::watch::act(&self.fc1.ws, self.fc1.forward(x).gelu("none"))
            .dropout(self.dropout, train);
        self.fc2.forward(&h).dropout(self.dropout, train)
    }
}

fn norm(p: nn::Path<'_>, e: i64) -> nn::LayerNorm {
    init::layer_norm(p, vec![e], Rule::Gpt)
}

/// LayerNorm without affine parameters.
fn plain_norm(x: &Tensor) -> Tensor {
    let e = x.size().last().copied().unwrap_or(1);
    x.layer_norm([e], None::<Tensor>, None::<Tensor>, 1e-5, false)
}

/// Divides a block's residual output weights by `sqrt(2 (l + 1))` (spec 1.3 h).
fn rescale(weights: &[&Tensor], layer: usize) {
    let s = (2.0 * (layer as f64 + 1.0)).sqrt();
    tch::no_grad(|| {
        for w in weights {
            let _ = (*w).shallow_clone().g_div_scalar_(s);
        }
    });
}

/// A pre-LN transformer block: `x += MHA(LN x)`, `x += MLP(LN x)`.
#[derive(Debug)]
struct Block {
    ln1: nn::LayerNorm,
    attn: Attention,
    ln2: nn::LayerNorm,
    mlp: Mlp,
}

impl Block {
    fn new(p: &nn::Path<'_>, cfg: &ModelCfg, layer: usize) -> Self {
        let e = i64::from(cfg.embed_dim);
        let b = Self {
            ln1: norm(p / "ln1", e),
            attn: Attention::new(&(p / "attn"), e, i64::from(cfg.heads), cfg.attn_drop_rate),
            ln2: norm(p / "ln2", e),
            mlp: Mlp::new(&(p / "mlp"), e, cfg.mlp_ratio, cfg.drop_rate),
        };
        rescale(&[&b.attn.out.ws, &b.mlp.fc2.ws], layer);
        b
    }

    fn forward(&self, x: &Tensor, mask: &Tensor, train: bool) -> Tensor {
        let h = self.ln1.forward(x);
        let x = x + self.attn.forward(&h, &h, Some(mask), train);
        &x + self.mlp.forward(&self.ln2.forward(&x), train)
    }
}

/// A cross-attention block of the step decoder: self-attention of the queries, attention
/// from the queries to the memory (not re-normalised), MLP.
#[derive(Debug)]
struct CrossBlock {
    ln1: nn::LayerNorm,
    self_attn: Attention,
    ln2: nn::LayerNorm,
    cross: Attention,
    ln3: nn::LayerNorm,
    mlp: Mlp,
}

impl CrossBlock {
    fn new(p: &nn::Path<'_>, cfg: &ModelCfg, layer: usize) -> Self {
        let e = i64::from(cfg.embed_dim);
        let h = i64::from(cfg.heads);
        let b = Self {
            ln1: norm(p / "ln1", e),
            self_attn: Attention::new(&(p / "self_attn"), e, h, cfg.attn_drop_rate),
            ln2: norm(p / "ln2", e),
            cross: Attention::new(&(p / "cross_attn"), e, h, cfg.attn_drop_rate),
            ln3: norm(p / "ln3", e),
            mlp: Mlp::new(&(p / "mlp"), e, cfg.mlp_ratio, cfg.drop_rate),
        };
        rescale(
            &[&b.self_attn.out.ws, &b.cross.out.ws, &b.mlp.fc2.ws],
            layer,
        );
        b
    }

    fn forward(&self, q: &Tensor, memory: &Tensor, train: bool) -> Tensor {
        let h = self.ln1.forward(q);
        let q = q + self.self_attn.forward(&h, &h, None, train);
        let q = &q
            + self
                .cross
                .forward(&self.ln2.forward(&q), memory, None, train);
        &q + self.mlp.forward(&self.ln3.forward(&q), train)
    }
}

/// A boolean mask `[n L, n L]` (`true` = may attend) from a unit-level one `[n, n]`, each unit
/// `size` tokens long.
pub fn expand_mask(allowed: &Tensor, size: i64) -> Tensor {
    allowed
        .repeat_interleave_self_int(size, 0, None)
        .repeat_interleave_self_int(size, 1, None)
}

/// Which unit-level mask a cached token mask expands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MaskOf {
    ShiftedCausal,
    Block(DecoderContext),
}

/// Token masks made once per shape and device: at the full configuration the decoder's is
/// (7 x 515)^2 entries, which rebuilding at every forward cost a dense allocation per call.
fn cached_mask(of: MaskOf, units: i64, size: i64, device: tch::Device) -> Tensor {
    type Entry = ((MaskOf, i64, i64, tch::Device), Tensor);
    static CACHE: std::sync::Mutex<Vec<Entry>> = std::sync::Mutex::new(Vec::new());
    let key = (of, units, size, device);
    let mut cache = CACHE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, m)) = cache.iter().find(|(k, _)| *k == key) {
        return m.shallow_clone();
    }
    let allowed = match of {
        MaskOf::ShiftedCausal => shifted_causal(units, device),
        MaskOf::Block(context) => block_causal(units, context, device),
    };
    let m = expand_mask(&allowed, size);
    if cache.len() >= 16 {
        drop(cache.remove(0));
    }
    cache.push((key, m.shallow_clone()));
    m
}

/// The encoder's frame mask: frame `i` sees frames `j <= i + 1` (its successor, whose change
/// the action encodes).
pub fn shifted_causal(frames: i64, device: tch::Device) -> Tensor {
    let i = Tensor::arange(frames, (Kind::Int64, device));
    i.unsqueeze(0).le_tensor(&(i.unsqueeze(1) + 1))
}

/// The batched decoder's chunk mask: chunk `t` sees chunks `<= t` (or only itself).
pub fn block_causal(chunks: i64, context: DecoderContext, device: tch::Device) -> Tensor {
    let i = Tensor::arange(chunks, (Kind::Int64, device));
    let (row, col) = (i.unsqueeze(1), i.unsqueeze(0));
    match context {
        DecoderContext::AllFrames => col.le_tensor(&row),
        DecoderContext::LastFrame => col.eq_tensor(&row),
    }
}

/// Latent frame to tokens: `Conv(C -> D, k = s = P)`, BatchNorm, flattened.
#[derive(Debug)]
pub struct Adapters {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
    deconv: nn::ConvTranspose2D,
    /// Token grid `(h, w)`.
    pub grid: (i64, i64),
}

impl Adapters {
    fn new(p: &nn::Path<'_>, c: i64, d: i64, patch: i64, grid: (i64, i64)) -> Self {
        let conv_cfg = nn::ConvConfig {
            stride: patch,
            ..Default::default()
        };
        let deconv_cfg = nn::ConvTransposeConfig {
            stride: patch,
            ..Default::default()
        };
        // The adapters are plain `nn.Conv2d`, `BatchNorm2d` and `ConvTranspose2d`, which the
        // seed's `_init_weights` leaves at PyTorch's defaults.
        Self {
            conv: init::conv2d(p / "in_conv", c, d, patch, Rule::Torch, conv_cfg),
            bn: init::batch_norm(p / "in_bn", 2, d, Rule::Torch),
            deconv: init::conv_transpose2d(p / "out_deconv", d, c, patch, Rule::Torch, deconv_cfg),
            grid,
        }
    }

    /// `[B, T, C, H, W]` to tokens `[B, T, N, D]`, frame by frame (BatchNorm statistics per
    /// frame batch, as the seed's loop).
    pub fn tokens(&self, x: &Tensor, train: bool) -> Tensor {
        let frames: Vec<Tensor> = (0..x.size()[1])
            .map(|t| {
                self.bn
                    .forward_t(&self.conv.forward(&x.select(1, t)), train)
                    .flatten(2, -1)
                    .transpose(1, 2)
            })
            .collect();
        Tensor::stack(&frames, 1)
    }

    /// Zeroes the output adapter, so that a model predicting changes starts by predicting
    /// none (it copies the last frame); its own gradient moves it from the first step.
    pub fn zero_output(&self) {
        tch::no_grad(|| {
            let _ = self.deconv.ws.shallow_clone().zero_();
            if let Some(b) = &self.deconv.bs {
                let _ = b.shallow_clone().zero_();
            }
        });
    }

    /// Tokens `[..., N, D]` to latent frames `[..., C, H, W]`.
    pub fn frames(&self, tokens: &Tensor) -> Tensor {
        let size = tokens.size();
        let (n, d) = (size[size.len() - 2], size[size.len() - 1]);
        let lead = &size[..size.len() - 2];
        let flat =
            tokens
                .reshape([-1, n, d])
                .transpose(1, 2)
                .reshape([-1, d, self.grid.0, self.grid.1]);
        let out = self.deconv.forward(&flat);
        let mut shape = lead.to_vec();
        shape.extend_from_slice(&out.size()[1..]);
        out.reshape(shape)
    }
}

/// The encoder: tokens of T frames to `(mu, logvar)` `[B, T-1, A d_c]`.
#[derive(Debug)]
pub struct Encoder {
    proj: nn::Linear,
    spatial: Tensor,
    temporal: Tensor,
    blocks: Vec<Block>,
    norm: nn::LayerNorm,
    pool: nn::Linear,
    mu: nn::Linear,
    logvar: nn::Linear,
    /// `model.encoder_motion`'s embedding of a measured flow `(dx, dy)`, patch by patch.
    motion: Option<nn::Conv2D>,
}

impl Encoder {
    fn new(p: &nn::Path<'_>, cfg: &ModelCfg, d: i64, n: i64, max_len: i64) -> Self {
        let e = i64::from(cfg.embed_dim);
        let out = i64::from(cfg.codes_per_action * cfg.code_dim);
        Self {
            proj: linear(p / "proj", d, e),
            spatial: table(p, "spatial_embed", &[n, e]),
            temporal: table(p, "temporal_embed", &[max_len, e]),
            blocks: (0..cfg.encoder_depth as usize)
                .map(|l| Block::new(&(p / "blocks" / l), cfg, l))
                .collect(),
            norm: norm(p / "norm", e),
            pool: linear(p / "frame_pool", e, e),
            mu: linear(p / "mu", e, out),
            logvar: linear(p / "logvar", e, out),
            motion: cfg.encoder_motion.then(|| {
                let patch = i64::from(cfg.patch_size);
                let conv = nn::ConvConfig {
                    stride: patch,
                    ..Default::default()
                };
                init::conv2d(p / "motion_embed", 2, e, patch, Rule::Torch, conv)
            }),
        }
    }

    /// Tokens `[B, T, N, D]`, with `model.encoder_motion` the motion from each frame to the
    /// next `[B, T, 2, H, W]` (the last frame's zero), to `(mu, logvar)`.
    pub fn forward(&self, tokens: &Tensor, motion: Option<&Tensor>, train: bool) -> (Tensor, Tensor) {
        let s = tokens.size();
        let (b, t, n) = (s[0], s[1], s[2]);
        let mut x = plain_norm(&self.proj.forward(tokens))
            + &self.spatial
            + self.temporal.narrow(0, 0, t).unsqueeze(1);
        if let (Some(conv), Some(flow)) = (&self.motion, motion) {
            let embedded = conv.forward(&flow.flatten(0, 1)).flatten(2, -1).transpose(1, 2);
            x += embedded.reshape([b, t, n, -1]);
        }
        let e = x.size()[3];
        let mut x = x.reshape([b, t * n, e]);
        let mask = cached_mask(MaskOf::ShiftedCausal, t, n, tokens.device());
        for block in &self.blocks {
            x = block.forward(&x, &mask, train);
        }
        let x = self.norm.forward(&x).reshape([b, t, n, e]);
        let pooled = self
            .pool
            .forward(&x.mean_dim(2, false, Kind::Float))
            .narrow(1, 0, t - 1);
        (self.mu.forward(&pooled), self.logvar.forward(&pooled))
    }
}

/// What quantising gave.
#[derive(Debug)]
pub struct Quantised {
    /// Straight-through codes `[B, T-1, A, d_c]`.
    pub z_q_st: Tensor,
    /// Code indices `[B, T-1, A]`.
    pub indices: Tensor,
    pub codebook_loss: Tensor,
    pub commitment_loss: Tensor,
}

/// One codebook of K entries shared by the A code slots.
#[derive(Debug)]
pub struct Quantiser {
    pub codebook: Tensor,
    ema_count: Option<Tensor>,
    ema_sum: Option<Tensor>,
    update: CodebookUpdate,
    decay: f64,
    dead_threshold: f64,
    per_action: i64,
}

impl Quantiser {
    fn new(p: &nn::Path<'_>, cfg: &ModelCfg) -> Self {
        let (k, dc) = (i64::from(cfg.codebook_size), i64::from(cfg.code_dim));
        let bound = 1.0 / k as f64;
        let init = nn::Init::Uniform {
            lo: -bound,
            up: bound,
        };
        let ema = cfg.codebook_update == CodebookUpdate::Ema;
        let codebook = if ema {
            p.var("codebook", &[k, dc], init).set_requires_grad(false)
        } else {
            p.var("codebook", &[k, dc], init)
        };
        let (ema_count, ema_sum) = if ema {
            let count = p.ones_no_train("ema_count", &[k]);
            let sum = p.zeros_no_train("ema_sum", &[k, dc]);
            tch::no_grad(|| sum.shallow_clone().copy_(&codebook));
            (Some(count), Some(sum))
        } else {
            (None, None)
        };
        Self {
            codebook,
            ema_count,
            ema_sum,
            update: cfg.codebook_update,
            decay: cfg.ema_decay,
            dead_threshold: cfg.dead_code_threshold,
            per_action: i64::from(cfg.codes_per_action),
        }
    }

    /// Nearest codes of `z_e [B, T-1, A d_c]`; in training with the EMA update, moves the codes
    /// and restarts dead ones from the batch.
    pub fn quantise(&self, z_e: &Tensor, train: bool) -> Quantised {
        let s = z_e.size();
        let dc = self.codebook.size()[1];
        let z = z_e.reshape([-1, dc]);
        let indices = self.nearest(&z);
        // The codes the indices were chosen from, before this step's update moves them (as
        // TATS and Sonnet look up): the commitment target and the straight-through estimate
        // use the codebook the nearest search saw.
        let z_q = self.codebook.index_select(0, &indices);
        if train && self.update == CodebookUpdate::Ema {
            // The whole global batch's statistics (this rank's alone), so data-parallel ranks
            // keep the one codebook a single process would.
            let all = crate::engine::dist::gather_rows(&z.detach());
            if all.size()[0] == z.size()[0] {
                self.ema_update(&all, &indices);
            } else {
                let all_indices = self.nearest(&all);
                self.ema_update(&all, &all_indices);
            }
        }
        let codebook_loss = (&z_q - z.detach()).square().mean(Kind::Float);
        let commitment_loss = (&z - z_q.detach()).square().mean(Kind::Float);
        let z_q_st = &z + (&z_q - &z).detach();
        Quantised {
            z_q_st: z_q_st.reshape([s[0], s[1], self.per_action, dc]),
            indices: indices.reshape([s[0], s[1], self.per_action]),
            codebook_loss,
            commitment_loss,
        }
    }

    fn nearest(&self, z: &Tensor) -> Tensor {
        let e = self.codebook.detach();
        let d = z.detach().square().sum_dim_intlist(1, true, Kind::Float)
            - z.detach().matmul(&e.tr()) * 2.0
            + e.square()
                .sum_dim_intlist(1, false, Kind::Float)
                .unsqueeze(0);
        d.argmin(1, false)
    }

    fn ema_update(&self, z: &Tensor, indices: &Tensor) {
        let (Some(count), Some(sum)) = (&self.ema_count, &self.ema_sum) else {
            return;
        };
        let k = self.codebook.size()[0];
        // The statistics stay in float32 under autocast.
        let z = z.to_kind(Kind::Float);
        let z = &z;
        tch::no_grad(|| {
            let onehot = indices.one_hot(k).to_kind(Kind::Float);
            let n = onehot.sum_dim_intlist(0, false, Kind::Float);
            let total = onehot.tr().matmul(z);
            let _ = count.shallow_clone().lerp_(&n, 1.0 - self.decay);
            let _ = sum.shallow_clone().lerp_(&total, 1.0 - self.decay);
            // Laplace smoothing keeps a rarely used code's average finite.
            let all = count.sum(Kind::Float);
            let smoothed = (count + 1e-5) / (&all + k as f64 * 1e-5) * &all;
            self.codebook
                .shallow_clone()
                .copy_(&(sum / smoothed.unsqueeze(1)));
            if self.dead_threshold > 0.0 {
                let dead = count.lt(self.dead_threshold);
                let n_dead = dead.sum(Kind::Int64).int64_value(&[]);
                if n_dead > 0 {
                    let pick = Tensor::randint(z.size()[0], [k], (Kind::Int64, z.device()));
                    let fresh = z.index_select(0, &pick);
                    let m = dead.unsqueeze(1);
                    self.codebook
                        .shallow_clone()
                        .copy_(&fresh.where_self(&m, &self.codebook));
                    sum.shallow_clone().copy_(&fresh.where_self(&m, sum));
                    count
                        .shallow_clone()
                        .copy_(&count.ones_like().where_self(&dead, count));
                }
            }
        });
    }

    /// The codes of given indices `[..., A]` as `[..., A, d_c]`.
    pub fn lookup(&self, indices: &Tensor) -> Tensor {
        let mut shape = indices.size();
        shape.push(self.codebook.size()[1]);
        self.codebook
            .index_select(0, &indices.flatten(0, -1))
            .reshape(shape)
    }
}

/// The teacher-forced decoder: one chunk `[frame t | A codes of t | N queries]` per step under
/// the block-causal mask; the queries of chunk t predict frame t+1's tokens.
#[derive(Debug)]
pub struct BatchedDecoder {
    frame_proj: nn::Linear,
    code_proj: nn::Linear,
    code_norm: bool,
    query: Tensor,
    pos: Tensor,
    blocks: Vec<Block>,
    norm: nn::LayerNorm,
    out: nn::Linear,
    context: DecoderContext,
}

impl BatchedDecoder {
    fn new(p: &nn::Path<'_>, cfg: &ModelCfg, d: i64, n: i64, max_len: i64) -> Self {
        let e = i64::from(cfg.embed_dim);
        let chunk = 2 * n + i64::from(cfg.codes_per_action);
        Self {
            frame_proj: linear(p / "frame_proj", d, e),
            code_proj: linear(p / "code_proj", i64::from(cfg.code_dim), e),
            code_norm: cfg.code_layernorm,
            query: table(p, "query_embed", &[1, n, e]),
            pos: table(p, "pos_embed", &[1, max_len * chunk, e]),
            blocks: (0..cfg.decoder_depth as usize)
                .map(|l| Block::new(&(p / "blocks" / l), cfg, l))
                .collect(),
            norm: norm(p / "norm", e),
            out: linear(p / "out", e, d),
            context: cfg.decoder_context,
        }
    }

    /// Frames `[B, S, N, D]` (0..S-1) and codes `[B, S, A, d_c]` to predicted tokens of
    /// frames 1..S `[B, S, N, D]`.
    pub fn forward(&self, frames: &Tensor, codes: &Tensor, train: bool) -> Tensor {
        let s = frames.size();
        let (b, steps, n) = (s[0], s[1], s[2]);
        let f = plain_norm(&self.frame_proj.forward(frames));
        let c = self.code_proj.forward(codes);
        let c = if self.code_norm { plain_norm(&c) } else { c };
        let e = f.size()[3];
        let q = self.query.unsqueeze(0).expand([b, steps, n, e], false);
        let a = c.size()[2];
        let chunk = 2 * n + a;
        let x = Tensor::cat(&[f, c, q], 2).reshape([b, steps * chunk, e])
            + self.pos.narrow(1, 0, steps * chunk);
        let mask = cached_mask(MaskOf::Block(self.context), steps, chunk, frames.device());
        let mut x = x;
        for block in &self.blocks {
            x = block.forward(&x, &mask, train);
        }
        let x = self
            .norm
            .forward(&x)
            .reshape([b, steps, chunk, e])
            .narrow(2, n + a, n);
        self.out.forward(&x)
    }
}

/// The step decoder: the next frame's tokens from a memory of the past frames and actions.
#[derive(Debug)]
pub struct StepDecoder {
    frame_proj: nn::Linear,
    code_proj: nn::Linear,
    code_norm: bool,
    spatial: Tensor,
    temporal: Tensor,
    query: Tensor,
    query_pos: Tensor,
    blocks: Vec<CrossBlock>,
    norm: nn::LayerNorm,
    out: nn::Linear,
    context: DecoderContext,
}

impl StepDecoder {
    fn new(p: &nn::Path<'_>, cfg: &ModelCfg, d: i64, n: i64, max_len: i64) -> Self {
        let e = i64::from(cfg.embed_dim);
        Self {
            frame_proj: linear(p / "frame_proj", d, e),
            code_proj: linear(p / "code_proj", i64::from(cfg.code_dim), e),
            code_norm: cfg.code_layernorm,
            spatial: table(p, "spatial_pos", &[n, e]),
            temporal: table(p, "temporal_pos", &[max_len, e]),
            query: table(p, "query_embed", &[n, e]),
            query_pos: table(p, "query_pos", &[n, e]),
            blocks: (0..cfg.decoder_depth as usize)
                .map(|l| CrossBlock::new(&(p / "blocks" / l), cfg, l))
                .collect(),
            norm: norm(p / "norm", e),
            out: linear(p / "out", e, d),
            context: cfg.decoder_context,
        }
    }

    /// Past frames `[B, S, N, D]` and their actions `[B, S, A, d_c]` to frame S's tokens
    /// `[B, N, D]`.
    pub fn forward(&self, frames: &Tensor, codes: &Tensor, train: bool) -> Tensor {
        let steps = frames.size()[1];
        let first = match self.context {
            DecoderContext::AllFrames => 0,
            DecoderContext::LastFrame => steps - 1,
        };
        let (frames, codes) = (
            frames.narrow(1, first, steps - first),
            codes.narrow(1, first, steps - first),
        );
        let temporal = self.temporal.narrow(0, first, steps - first).unsqueeze(1);
        let f = plain_norm(&self.frame_proj.forward(&frames)) + &self.spatial + &temporal;
        let c = self.code_proj.forward(&codes);
        let c = if self.code_norm { plain_norm(&c) } else { c } + &temporal;
        let b = f.size()[0];
        let e = f.size()[3];
        let memory = Tensor::cat(&[f, c], 2).reshape([b, -1, e]);
        let mut q = (&self.query + &self.query_pos)
            .unsqueeze(0)
            .expand([b, -1, -1], false);
        for block in &self.blocks {
            q = block.forward(&q, &memory, train);
        }
        self.out.forward(&self.norm.forward(&q))
    }
}

/// Zero weight and bias: a flow head that moves nothing until trained (the motion levers).
const ZERO_LINEAR: nn::LinearConfig = nn::LinearConfig {
    ws_init: nn::Init::Const(0.0),
    bs_init: Some(nn::Init::Const(0.0)),
    bias: true,
};

/// The whole model. The encoder's parameters live in their own store (its own learning
/// rate); the rest in `main`.
#[derive(Debug)]
pub struct LatentActionModel {
    pub adapters: Adapters,
    pub encoder: Encoder,
    pub quantiser: Quantiser,
    pub decoder: BatchedDecoder,
    pub step_decoder: Option<StepDecoder>,
    /// `model.predict_motion`'s flow head: output token to a displacement `(dx, dy)` in
    /// latent pixels, zero at start.
    pub motion: Option<nn::Linear>,
    /// `model.action_motion`'s map from an action's codes alone to a displacement per token,
    /// zero at start.
    pub action_motion: Option<nn::Linear>,
    pub pre_vq_noise: bool,
}

impl LatentActionModel {
    /// `shape` is the latent frame `(C, H, W)`; `max_len` the window length.
    pub fn new(
        enc: &nn::Path<'_>,
        main: &nn::Path<'_>,
        cfg: &ModelCfg,
        shape: (i64, i64, i64),
        max_len: i64,
    ) -> Self {
        let (c, h, w) = shape;
        let patch = i64::from(cfg.patch_size);
        let grid = (h / patch, w / patch);
        let n = grid.0 * grid.1;
        let d = i64::from(cfg.token_dim);
        Self {
            adapters: Adapters::new(&(main / "adapters"), c, d, patch, grid),
            encoder: Encoder::new(&(enc / "encoder"), cfg, d, n, max_len),
            quantiser: Quantiser::new(&(main / "quantiser"), cfg),
            decoder: BatchedDecoder::new(&(main / "decoder"), cfg, d, n, max_len),
            step_decoder: cfg
                .separate_step_decoder
                .then(|| StepDecoder::new(&(main / "step_decoder"), cfg, d, n, max_len)),
            // Zero weight and bias: an untrained head moves nothing (a lever of the preset).
            motion: cfg.predict_motion.then(|| {
                init::linear_as(main / "motion", d, 2, ZERO_LINEAR)
            }),
            action_motion: (cfg.predict_motion && cfg.action_motion).then(|| {
                let codes = i64::from(cfg.codes_per_action * cfg.code_dim);
                init::linear_as(main / "action_motion", codes, 2 * n, ZERO_LINEAR)
            }),
            pre_vq_noise: cfg.pre_vq_noise,
        }
    }

    /// Encodes tokens `[B, T, N, D]` to quantised actions for the T-1 transitions, reading
    /// the measured motion between the frames `[B, T, 2, H, W]` with `model.encoder_motion`.
    pub fn encode(&self, tokens: &Tensor, motion: Option<&Tensor>, train: bool) -> Quantised {
        let (mu, logvar) = self.encoder.forward(tokens, motion, train);
        let z_e = if train && self.pre_vq_noise {
            let logvar = logvar.clamp(-5.0, 5.0);
            &mu + (logvar * 0.5).exp()
                * crate::engine::dist::randn_rows(&mu.size(), (mu.kind(), mu.device()))
        } else {
            mu
        };
        self.quantiser.quantise(&z_e, train)
    }

    /// Moves `prev` `[.., C, H, W]` by the flow the output tokens `z` `[.., N, D]` predict
    /// (one displacement per token, upsampled bilinearly to the latent's size; bilinear
    /// sampling, border values outside), plus with `model.action_motion` the flow the
    /// action's codes `[.., A, d_c]` say alone, added to `prior` (`[M, 2, H, W]` in latent
    /// pixels, M the flattened leading dimensions) when given; returns `prev` as it is
    /// without a motion head.
    pub fn moved(
        &self,
        z: &Tensor,
        codes: &Tensor,
        prev: &Tensor,
        prior: Option<&Tensor>,
    ) -> Tensor {
        let Some(head) = &self.motion else {
            return prev.shallow_clone();
        };
        let (h, w) = (prev.size()[prev.dim() - 2], prev.size()[prev.dim() - 1]);
        let (gh, gw) = self.adapters.grid;
        let mut flow = head
            .forward(&z.reshape([-1, gh * gw, z.size()[z.dim() - 1]]))
            .transpose(1, 2)
            .reshape([-1, 2, gh, gw]);
        if let Some(said) = &self.action_motion {
            let (a, dc) = (codes.size()[codes.dim() - 2], codes.size()[codes.dim() - 1]);
            flow += said.forward(&codes.reshape([-1, a * dc])).reshape([-1, 2, gh, gw]);
        }
        let flow = flow.upsample_bilinear2d([h, w], false, None, None);
        let flow = match prior {
            Some(p) => flow + p,
            None => flow,
        };
        crate::engine::flow::warp_frames(prev, &flow)
    }

    /// The next frame's tokens from past frames `[B, S, N, D]` and actions `[B, S, A, d_c]`:
    /// the step decoder, or the batched decoder's last chunk when the weights are tied.
    pub fn step(&self, frames: &Tensor, codes: &Tensor, train: bool) -> Tensor {
        match &self.step_decoder {
            Some(d) => d.forward(frames, codes, train),
            None => {
                let s = frames.size()[1];
                self.decoder.forward(frames, codes, train).select(1, s - 1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The attention against a direct per-head computation with an explicit softmax.
    #[test]
    fn attention_matches_a_direct_reference_under_a_mask() {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let (e, heads, b, lq, lk) = (8i64, 2i64, 2i64, 5i64, 5i64);
        let att = Attention::new(&vs.root(), e, heads, 0.0);
        let q_in = Tensor::randn([b, lq, e], (Kind::Float, tch::Device::Cpu));
        let kv_in = Tensor::randn([b, lk, e], (Kind::Float, tch::Device::Cpu));
        let mask = expand_mask(
            &block_causal(5, DecoderContext::AllFrames, tch::Device::Cpu),
            1,
        );
        let got = att.forward(&q_in, &kv_in, Some(&mask), false);
        let dh = e / heads;
        let w = att.in_w.split(e, 0);
        let bias = att.in_b.split(e, 0);
        let mut outs = Vec::new();
        for i in 0..b {
            let mut head_outs = Vec::new();
            for h in 0..heads {
                let sl = |t: &Tensor, j: usize| {
                    t.get(i).linear(&w[j], Some(&bias[j])).narrow(1, h * dh, dh)
                };
                let (q, k, v) = (sl(&q_in, 0), sl(&kv_in, 1), sl(&kv_in, 2));
                let additive = Tensor::zeros(mask.size(), (Kind::Float, tch::Device::Cpu))
                    .masked_fill(&mask.logical_not(), f64::NEG_INFINITY);
                let scores = q.matmul(&k.tr()) / (dh as f64).sqrt() + &additive;
                let p = scores.exp() / scores.exp().sum_dim_intlist(1, true, Kind::Float);
                head_outs.push(p.matmul(&v));
            }
            outs.push(Tensor::cat(&head_outs, 1));
        }
        let want = att.out.forward(&Tensor::stack(&outs, 0));
        let diff = f64::try_from((got - want).abs().max()).unwrap();
        assert!(diff < 1e-5, "{diff}");
    }

    /// The straight-through estimator: the quantised codes carry the encoder's gradient
    /// unchanged (d z_q / d z_e = I), and the codebook (loss update) learns from the codebook
    /// loss alone, the encoder from the commitment loss alone.
    #[test]
    fn straight_through_gradients_reach_the_encoder_and_the_codebook_its_loss() {
        tch::manual_seed(2);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let cfg = crate::core::preset::LatentActionPreset::default().model;
        let q = Quantiser::new(&vs.root(), &cfg);
        let a = i64::from(cfg.codes_per_action);
        let dc = i64::from(cfg.code_dim);
        let z =
            Tensor::randn([2, 3, a * dc], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        let out = q.quantise(&z, true);
        let upstream = Tensor::randn(out.z_q_st.size(), (Kind::Float, tch::Device::Cpu));
        let g = Tensor::run_backward(
            &[(&out.z_q_st * &upstream).sum(Kind::Float)],
            &[&z],
            true,
            false,
        );
        let diff = (&g[0] - upstream.reshape(z.size()))
            .abs()
            .max()
            .double_value(&[]);
        assert!(diff < 1e-6, "STE gradient off by {diff}");
        // The commitment loss moves the encoder, not the codebook; the codebook loss the
        // codebook, not the encoder.
        let grads = |loss: &Tensor| {
            let g = Tensor::run_backward(&[loss], &[&z, &q.codebook], true, false);
            let size = |t: &Tensor| {
                if t.defined() {
                    t.abs().sum(Kind::Float).double_value(&[])
                } else {
                    0.0
                }
            };
            (size(&g[0]), size(&g[1]))
        };
        let (enc, book) = grads(&out.commitment_loss);
        assert!(enc > 0.0 && book == 0.0, "commitment: {enc} {book}");
        let (enc, book) = grads(&out.codebook_loss);
        assert!(enc == 0.0 && book > 0.0, "codebook loss: {enc} {book}");
    }

    /// The motion head starts at rest (the last latent comes back as it is); a displacement
    /// of one pixel to the right in every token samples each pixel's right neighbour, and one
    /// token's displacement moves its own patch and fades over the neighbouring patch.
    #[test]
    fn the_motion_head_moves_the_last_latent_by_its_flow() {
        let dev = tch::Device::Cpu;
        let vs = nn::VarStore::new(dev);
        let mut cfg = crate::core::preset::LatentActionPreset::default().model;
        cfg.patch_size = 4;
        cfg.predict_motion = true;
        let (c, h, w) = (2i64, 8i64, 8i64);
        let m = LatentActionModel::new(&vs.root(), &vs.root(), &cfg, (c, h, w), 3);
        let d = i64::from(cfg.token_dim);
        // Every pixel holds its column index (channel 1 its row index): a sampled value says
        // where it was sampled.
        let cols = Tensor::arange(w, (Kind::Float, dev)).view([1, 1, w]).expand([1, h, w], false);
        let rows = Tensor::arange(h, (Kind::Float, dev)).view([1, h, 1]).expand([1, h, w], false);
        let prev = Tensor::cat(&[cols, rows], 0).view([1, 1, c, h, w]).repeat([2, 1, 1, 1, 1]);
        let z = Tensor::randn([2, 1, 4, d], (Kind::Float, dev));
        let a = i64::from(cfg.codes_per_action);
        let codes = Tensor::randn([2, 1, a, i64::from(cfg.code_dim)], (Kind::Float, dev));
        let err = (m.moved(&z, &codes, &prev, None) - &prev).abs().max().double_value(&[]);
        assert!(err < 1e-5, "an untrained head moved by {err}");
        let head = m.motion.as_ref().expect("a motion head");
        tch::no_grad(|| {
            head.bs
                .as_ref()
                .expect("a bias")
                .shallow_clone()
                .copy_(&Tensor::from_slice(&[1.0f32, 0.0]));
        });
        let moved = m.moved(&z, &codes, &prev, None);
        assert_eq!(moved.size(), prev.size());
        // Columns 0..6 read their right neighbour, the last column the border; rows stay.
        let want = (prev.select(2, 0) + 1.0).clamp_max((w - 1) as f64);
        let err = (moved.select(2, 0) - want).abs().max().double_value(&[]);
        assert!(err < 1e-5, "a one-pixel flow off by {err}");
        let err = (moved.select(2, 1) - prev.select(2, 1)).abs().max().double_value(&[]);
        assert!(err < 1e-5, "rows moved by {err}");
        // Only token 0 (the top-left patch) moves, by 2 pixels down: its patch's centre reads
        // two rows lower, the far patch is untouched.
        tch::no_grad(|| {
            let _ = head.bs.as_ref().expect("a bias").shallow_clone().zero_();
            let _ = head.ws.shallow_clone().zero_();
            let _ = head.ws.shallow_clone().narrow(0, 1, 1).narrow(1, 0, 1).fill_(1.0);
        });
        let z = Tensor::zeros([1, 1, 4, d], (Kind::Float, dev));
        let _ = z.narrow(2, 0, 1).narrow(3, 0, 1).fill_(2.0);
        let moved = m.moved(&z, &codes.narrow(0, 0, 1), &prev.narrow(0, 0, 1), None);
        let at = |y: i64, x: i64| moved.double_value(&[0, 0, 1, y, x]);
        assert!((at(1, 1) - 3.0).abs() < 1e-5, "top-left patch row {}", at(1, 1));
        assert!((at(6, 6) - 6.0).abs() < 1e-5, "far patch row {}", at(6, 6));
    }

    /// The EMA lever looks the codes up before it moves them: a step's quantised codes are the
    /// codebook's rows as the nearest search saw them.
    #[test]
    fn the_ema_update_comes_after_the_lookup() {
        tch::manual_seed(4);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let mut cfg = crate::core::preset::LatentActionPreset::default().model;
        cfg.codebook_update = CodebookUpdate::Ema;
        cfg.dead_code_threshold = 0.0;
        let q = Quantiser::new(&vs.root(), &cfg);
        let a = i64::from(cfg.codes_per_action);
        let dc = i64::from(cfg.code_dim);
        let before = q.codebook.copy();
        let z = Tensor::randn([4, 3, a * dc], (Kind::Float, tch::Device::Cpu));
        let out = q.quantise(&z, true);
        let moved = (&q.codebook - &before).abs().max().double_value(&[]);
        assert!(moved > 0.0, "the EMA step moved the codebook");
        let looked_up = before
            .index_select(0, &out.indices.flatten(0, -1))
            .reshape(out.z_q_st.size());
        // z_q_st = z + (z_q - z) detached: its values are the looked-up codes.
        let diff = (&out.z_q_st - looked_up).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "codes from the updated codebook: {diff}");
    }

    /// No token attends where spec 1.3 forbids: the encoder's frame i never sees frame i+2 or
    /// later; the batched decoder's chunk t never sees a later chunk.
    #[test]
    fn masks_forbid_exactly_what_the_spec_forbids() {
        let dev = tch::Device::Cpu;
        let (t, n) = (4i64, 3i64);
        let enc = expand_mask(&shifted_causal(t, dev), n);
        let dec = expand_mask(&block_causal(t, DecoderContext::AllFrames, dev), n);
        let last = expand_mask(&block_causal(t, DecoderContext::LastFrame, dev), n);
        for qi in 0..t * n {
            for ki in 0..t * n {
                let (fq, fk) = (qi / n, ki / n);
                let v = |m: &Tensor| m.int64_value(&[qi, ki]) == 1;
                assert_eq!(v(&enc), fk <= fq + 1, "encoder {qi} -> {ki}");
                assert_eq!(v(&dec), fk <= fq, "decoder {qi} -> {ki}");
                assert_eq!(v(&last), fk == fq, "last-frame decoder {qi} -> {ki}");
            }
        }
    }

    /// The prediction of frame t+1 does not change when frames after t change: the batched
    /// decoder is causal end to end.
    #[test]
    fn the_batched_decoder_never_reads_the_future() {
        tch::manual_seed(5);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let cfg = crate::core::preset::LatentActionPreset::default().model;
        let model = LatentActionModel::new(&vs.root(), &vs.root(), &cfg, (4, 8, 8), 5);
        let opts = (Kind::Float, tch::Device::Cpu);
        let frames = Tensor::randn([2, 4, 4, 32], opts);
        let codes = Tensor::randn([2, 4, 3, 16], opts);
        let a = model.decoder.forward(&frames, &codes, false);
        let later = frames.copy();
        later
            .narrow(1, 2, 2)
            .copy_(&Tensor::randn([2, 2, 4, 32], opts));
        let b = model.decoder.forward(&later, &codes, false);
        let same = f64::try_from((a.narrow(1, 0, 2) - b.narrow(1, 0, 2)).abs().max()).unwrap();
        let moved = f64::try_from((a.narrow(1, 2, 2) - b.narrow(1, 2, 2)).abs().max()).unwrap();
        assert!(same < 1e-5 && moved > 1e-4, "{same} {moved}");
    }
}

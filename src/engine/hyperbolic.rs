//! WuBu nesting (spec section 4): Poincaré-ball operations that stay finite in f32, nesting
//! levels, SO(n) inter-level rotations and stacks configured like the seed's S, M, T and D.
//!
//! Differences from the original, on purpose:
//! - curvature and scale are computed as tensors from their raw parameters on every forward,
//!   so they really receive gradients (the original read them with `.item()`);
//! - there is no level spread: the original computes one per level and never uses it, so it
//!   could learn nothing; it is left out rather than kept as a parameter without a gradient;
//! - the inter-level rotation is `exp(A − Aᵀ)`, a true SO(n) rotation initialised to the
//!   identity (the original's was an unconstrained Linear whose identity init was overwritten);
//! - Möbius addition is used: each level's descriptor is a hyperbolic bias added to its output,
//!   and relative vectors are Möbius differences to the boundary points (the original used no
//!   Möbius operation, so expmap0 and logmap0 cancelled and curvature only set a radius);
//! - the stack's output reads each level's output point mapped back to its tangent space,
//!   not the vector before scaling, so every level's scale matters;
//! - tangent vectors leave LayerNorm divided by √d, so expmap0 does not saturate and the ball
//!   is more than a sphere of fixed radius (spec 11.12);
//! - a level may be residual: its combiner's output moves the incoming point's tangent vector
//!   instead of replacing it, so a stack starts close to a linear map of its input and learns
//!   as fast as one (the original's levels replace it, and a stack of them learns slowly);
//! - the combiner's hidden width is a setting (the original: 32 for any level width, 11.16).

use crate::engine::nn::init::{self, Rule};
use tch::nn::{self, Module, ModuleT};
use tch::Tensor;

/// Smallest curvature, as the seed's `c_min`.
pub const C_MIN: f64 = 1e-5;
/// Points are kept this far (relative) inside the ball's boundary.
pub const BALL_MARGIN: f64 = 1e-5;
/// The largest `sqrt(c)·‖y‖` logmap0 accepts; bounds ‖logmap0(y)‖ by atanh(·)/√c.
const ATANH_MAX: f64 = 1.0 - 1e-5;
const TINY: f64 = 1e-15;

fn norm(x: &Tensor) -> Tensor {
    x.square()
        .sum_dim_intlist([-1i64].as_slice(), true, x.kind())
        .clamp_min(TINY * TINY)
        .sqrt()
}

/// Projects points into the ball of curvature `-c` (`c` a scalar or broadcastable tensor),
/// `BALL_MARGIN` inside its boundary. Non-finite coordinates become 0.
pub fn project(x: &Tensor, c: &Tensor) -> Tensor {
    let x = x.nan_to_num(0.0, 0.0, 0.0);
    let max_norm = (c.sqrt().reciprocal()) * (1.0 - BALL_MARGIN);
    let n = norm(&x);
    let factor = (&max_norm / &n).clamp_max(1.0);
    x * factor
}

/// The exponential map at the origin: tangent vectors to points, `tanh(√c‖v‖)/(√c‖v‖)·v`.
pub fn expmap0(v: &Tensor, c: &Tensor) -> Tensor {
    let v = v.nan_to_num(0.0, 0.0, 0.0);
    let sc = c.sqrt();
    let z = (&sc * norm(&v)).clamp_min(TINY);
    project(&(z.tanh() / &z * v), c)
}

/// The logarithmic map at the origin: points to tangent vectors, `atanh(√c‖y‖)/(√c‖y‖)·y`.
pub fn logmap0(y: &Tensor, c: &Tensor) -> Tensor {
    let y = project(y, c);
    let sc = c.sqrt();
    let z = (&sc * norm(&y)).clamp(TINY, ATANH_MAX);
    z.atanh() / &z * y
}

/// Möbius addition `x ⊕ y` on the ball of curvature `-c`, projected back inside.
pub fn mobius_add(x: &Tensor, y: &Tensor, c: &Tensor) -> Tensor {
    let dot = (x * y).sum_dim_intlist([-1i64].as_slice(), true, x.kind());
    let x2 = x
        .square()
        .sum_dim_intlist([-1i64].as_slice(), true, x.kind());
    let y2 = y
        .square()
        .sum_dim_intlist([-1i64].as_slice(), true, x.kind());
    let cxy: Tensor = c * &dot * 2.0;
    let num: Tensor = (&cxy + c * &y2 + 1.0) * x + (-(c * &x2) + 1.0) * y;
    let den: Tensor = (&cxy + c.square() * &x2 * &y2 + 1.0).clamp_min(TINY);
    project(&(num / den), c)
}

/// The Riemannian gradient of a Euclidean one at `p`: `((1 − c‖p‖²)/2)²·g`.
pub fn egrad2rgrad(p: &Tensor, g: &Tensor, c: &Tensor) -> Tensor {
    let p2 = p
        .square()
        .sum_dim_intlist([-1i64].as_slice(), true, p.kind());
    let factor: Tensor = ((-(c * p2) + 1.0) / 2.0).square().clamp_min(TINY);
    g * factor
}

/// A positive scalar parameter: `softplus(u) + floor`, initialised to `value`.
#[derive(Debug)]
pub struct Positive {
    raw: Tensor,
    floor: f64,
}

impl Positive {
    pub fn new(vs: &nn::Path<'_>, name: &str, value: f64, floor: f64) -> Self {
        // softplus⁻¹(y) = ln(eᵞ − 1), stable for large y.
        let y = (value - floor).max(1e-12);
        let inv = if y > 20.0 { y } else { y.exp_m1().ln() };
        Self {
            raw: vs.var(name, &[1], nn::Init::Const(inv)),
            floor,
        }
    }

    pub fn get(&self) -> Tensor {
        self.raw.softplus() + self.floor
    }
}

/// A scalar in `(lo, hi)`: `lo + (hi − lo)·sigmoid(u)`, initialised to `value`.
#[derive(Debug)]
pub struct Bounded {
    raw: Tensor,
    lo: f64,
    hi: f64,
}

impl Bounded {
    pub fn new(vs: &nn::Path<'_>, name: &str, value: f64, lo: f64, hi: f64) -> Self {
        let p = ((value - lo) / (hi - lo)).clamp(1e-6, 1.0 - 1e-6);
        Self {
            raw: vs.var(name, &[1], nn::Init::Const((p / (1.0 - p)).ln())),
            lo,
            hi,
        }
    }

    pub fn get(&self) -> Tensor {
        self.raw.sigmoid() * (self.hi - self.lo) + self.lo
    }
}

/// One nesting level's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LevelConfig {
    pub dim: i64,
    pub curvature: f64,
    pub scale: f64,
    pub boundary_points: i64,
    pub use_descriptor: bool,
    pub combiner_hidden: Vec<i64>,
    /// The combiner's output is added to the incoming point's tangent vector.
    pub residual: bool,
    pub dropout: f64,
    /// Intra-level tangent flow `v + flow_scale·F(v)` (off in the seed's defaults).
    pub tangent_flow: bool,
    pub flow_scale: f64,
}

/// What a level passes on.
#[derive(Debug)]
pub struct LevelOut {
    /// The level's output point on its ball.
    pub point: Tensor,
    /// The combined tangent vector (before scaling): what the stack aggregates.
    pub tangent: Tensor,
    /// This level's descriptor point, for the next level.
    pub descriptor: Tensor,
    /// This level's boundary points `[K, d]`.
    pub boundaries: Tensor,
    pub curvature: Tensor,
}

/// A nesting level: combines its point, the relative vector from the previous transform and
/// the previous level's descriptor in the tangent space, scales (and optionally flows), and
/// maps back onto its ball.
#[derive(Debug)]
pub struct Level {
    cfg: LevelConfig,
    curvature: Positive,
    scale: Bounded,
    descriptor: Option<Tensor>,
    boundaries: Option<Tensor>,
    combiner: nn::SequentialT,
    flow: Option<nn::SequentialT>,
}

impl Level {
    pub fn new(
        vs: &nn::Path<'_>,
        cfg: &LevelConfig,
        has_relative: bool,
        has_descriptor_in: bool,
    ) -> Self {
        let d = cfg.dim;
        let curvature = Positive::new(&(vs / "curvature"), "u", cfg.curvature, C_MIN);
        let scale = Bounded::new(&(vs / "scale"), "u", cfg.scale, 1e-5, 10.0);
        let descriptor = cfg.use_descriptor.then(|| {
            vs.var(
                "descriptor",
                &[d],
                nn::Init::Uniform {
                    lo: -0.01,
                    up: 0.01,
                },
            )
        });
        let boundaries = (cfg.boundary_points > 0).then(|| {
            vs.var(
                "boundaries",
                &[cfg.boundary_points, d],
                nn::Init::Uniform {
                    lo: -1e-3,
                    up: 1e-3,
                },
            )
        });
        let comb_in = d * (1 + i64::from(has_relative) + i64::from(has_descriptor_in));
        let mut combiner = nn::seq_t();
        let mut width = comb_in;
        for (i, &hdim) in cfg.combiner_hidden.iter().enumerate() {
            let p = vs / format!("combiner{i}");
            let dropout = cfg.dropout;
            let linear = init::linear(&p / "linear", width, hdim, Rule::Wubu);
            let w = linear.ws.shallow_clone();
            combiner = combiner
                .add(linear)
                .add(init::layer_norm(&p / "norm", vec![hdim], Rule::Wubu))
                .add_fn(move |x| crate::engine::watch::act(&w, x.gelu("none")))
                .add_fn_t(move |x, train| x.dropout(dropout, train));
            width = hdim;
        }
        combiner = combiner
            .add(init::linear(vs / "combiner_out", width, d, Rule::Wubu))
            .add(init::layer_norm(vs / "combiner_norm", vec![d], Rule::Wubu));
        let flow = cfg.tangent_flow.then(|| {
            let hidden = (d / 2).max(16);
            let dropout = cfg.dropout;
            let flow1 = init::linear(vs / "flow1", d, hidden, Rule::Wubu);
            let w = flow1.ws.shallow_clone();
            nn::seq_t()
                .add(flow1)
                .add_fn(move |x| crate::engine::watch::act(&w, x.gelu("none")))
                .add_fn_t(move |x, train| x.dropout(dropout, train))
                .add(init::linear(vs / "flow2", hidden, d, Rule::Wubu))
        });
        Self {
            cfg: cfg.clone(),
            curvature,
            scale,
            descriptor,
            boundaries,
            combiner,
            flow,
        }
    }

    /// Curvature and scale as tensors (they carry gradients).
    pub fn geometry(&self) -> (Tensor, Tensor) {
        (self.curvature.get(), self.scale.get())
    }

    pub fn forward_t(
        &self,
        point: &Tensor,
        relative: Option<&Tensor>,
        descriptor_in: Option<&Tensor>,
        train: bool,
    ) -> LevelOut {
        let (c, s) = self.geometry();
        let rows = point.size()[0];
        let mut parts = vec![logmap0(point, &c)];
        if let Some(r) = relative {
            parts.push(r.shallow_clone());
        }
        if let Some(dsc) = descriptor_in {
            parts.push(logmap0(dsc, &c));
        }
        // LayerNorm leaves ‖v‖ ≈ √d, which saturates tanh in expmap0 and flattens the ball
        // to a sphere (spec 11.12); unit-norm tangents keep the geometry, and the scale, live.
        let step =
            self.combiner.forward_t(&Tensor::cat(&parts, -1), train) / (self.cfg.dim as f64).sqrt();
        let v = if self.cfg.residual {
            step + &parts[0]
        } else {
            step
        };
        let mut out = &v * &s;
        if let Some(f) = &self.flow {
            out += f.forward_t(&v, train) * self.cfg.flow_scale;
        }
        let d = self.cfg.dim;
        let descriptor = match &self.descriptor {
            Some(p) => expmap0(p, &c).view([1, d]).expand([rows, d], false),
            None => Tensor::zeros([rows, d], (point.kind(), point.device())),
        };
        // The level's descriptor is its origin on the ball: the output is translated to it by
        // Möbius addition (a hyperbolic bias). Without a Möbius step, expmap0 and logmap0 at
        // the same curvature cancel and the curvature could never learn anything.
        let moved = expmap0(&out.clamp(-1e4, 1e4), &c);
        let point_out = if self.descriptor.is_some() {
            mobius_add(&descriptor, &moved, &c)
        } else {
            moved
        };
        let boundaries = match &self.boundaries {
            Some(b) => expmap0(b, &c),
            None => Tensor::zeros([0, d], (point.kind(), point.device())),
        };
        LevelOut {
            point: point_out,
            tangent: v,
            descriptor,
            boundaries,
            curvature: c,
        }
    }
}

/// An SO(n) rotation `exp(A − Aᵀ)`, the identity at initialisation.
#[derive(Debug)]
pub struct Rotation {
    a: Tensor,
}

impl Rotation {
    pub fn new(vs: &nn::Path<'_>, n: i64) -> Self {
        Self {
            a: vs.var("skew", &[n, n], nn::Init::Const(0.0)),
        }
    }

    pub fn matrix(&self) -> Tensor {
        (&self.a - self.a.tr()).linalg_matrix_exp()
    }
}

/// Level i → level i+1: to the tangent space at `c_i`, rotate, map linearly to the next
/// width, and onto the next ball at `c_{i+1}`. The same map moves the point, the boundary
/// points and the descriptor.
#[derive(Debug)]
pub struct Transform {
    rotation: Option<Rotation>,
    map: nn::Linear,
}

impl Transform {
    pub fn new(vs: &nn::Path<'_>, from: i64, to: i64, rotate: bool) -> Self {
        Self {
            rotation: rotate.then(|| Rotation::new(&(vs / "rotation"), from)),
            map: init::linear(vs / "map", from, to, Rule::Wubu),
        }
    }

    /// Maps points of the ball at `c_from` to the ball at `c_to`.
    pub fn forward(&self, points: &Tensor, c_from: &Tensor, c_to: &Tensor) -> Tensor {
        let mut t = logmap0(points, c_from);
        if let Some(r) = &self.rotation {
            t = t.matmul(&r.matrix().tr());
        }
        expmap0(&self.map.forward(&t).clamp(-1e4, 1e4), c_to)
    }
}

/// A stack's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct StackConfig {
    pub input_dim: i64,
    pub output_dim: i64,
    pub levels: Vec<LevelConfig>,
    pub rotate: bool,
}

impl StackConfig {
    fn seed(
        input_dim: i64,
        dims: &[i64],
        curvatures: &[f64],
        boundaries: i64,
        output_dim: i64,
    ) -> Self {
        let levels = dims
            .iter()
            .zip(curvatures)
            .map(|(&dim, &curvature)| LevelConfig {
                dim,
                curvature,
                scale: 1.0,
                boundary_points: boundaries,
                use_descriptor: true,
                combiner_hidden: vec![32],
                residual: false,
                dropout: 0.1,
                tangent_flow: false,
                flow_scale: 1.0,
            })
            .collect();
        Self {
            input_dim,
            output_dim,
            levels,
            rotate: true,
        }
    }

    /// WuBu-S (appearance regions): 256 → [128, 96, 64], c₀ [1.0, 0.8, 0.6], 4 boundary points.
    #[must_use]
    pub fn seed_s() -> Self {
        Self::seed(256, &[128, 96, 64], &[1.0, 0.8, 0.6], 4, 64)
    }

    /// WuBu-M (motion regions): 256 → [64, 48], c₀ [0.7, 0.5].
    #[must_use]
    pub fn seed_m() -> Self {
        Self::seed(256, &[64, 48], &[0.7, 0.5], 0, 48)
    }

    /// WuBu-T (per frame on S‖M): 112 → [256, 128], c₀ [0.5, 0.3].
    #[must_use]
    pub fn seed_t() -> Self {
        Self::seed(112, &[256, 128], &[0.5, 0.3], 0, 128)
    }

    /// WuBu-D (feature critic): 512 → [256, 128, 64], c₀ [0.8, 0.6, 0.4].
    #[must_use]
    pub fn seed_d() -> Self {
        Self::seed(512, &[256, 128, 64], &[0.8, 0.6, 0.4], 0, 448)
    }
}

/// A WuBu stack: input → level 0's ball, then levels joined by transforms, with relative
/// vectors to the previous level's boundary points; the output reads every level's tangent
/// vector.
#[derive(Debug)]
pub struct Stack {
    input: Option<nn::Linear>,
    input_norm: nn::LayerNorm,
    levels: Vec<Level>,
    transforms: Vec<Transform>,
    output: Option<nn::Linear>,
}

impl Stack {
    pub fn new(vs: &nn::Path<'_>, cfg: &StackConfig) -> Self {
        let d0 = cfg.levels.first().map_or(cfg.input_dim, |l| l.dim);
        let mut levels = Vec::new();
        let mut transforms = Vec::new();
        for (i, l) in cfg.levels.iter().enumerate() {
            let has_rel = i > 0 && cfg.levels[i - 1].boundary_points > 0;
            let has_desc = i > 0 && cfg.levels[i - 1].use_descriptor;
            // The last level's boundary points would feed nothing (dead parameters in the seed).
            let mut own = l.clone();
            if i + 1 == cfg.levels.len() {
                own.boundary_points = 0;
            }
            levels.push(Level::new(
                &(vs / format!("level{i}")),
                &own,
                has_rel,
                has_desc,
            ));
            if let Some(next) = cfg.levels.get(i + 1) {
                transforms.push(Transform::new(
                    &(vs / format!("transform{i}")),
                    l.dim,
                    next.dim,
                    cfg.rotate,
                ));
            }
        }
        let total: i64 = cfg.levels.iter().map(|l| l.dim).sum();
        Self {
            input: (cfg.input_dim != d0)
                .then(|| init::linear(vs / "input", cfg.input_dim, d0, Rule::Wubu)),
            input_norm: init::layer_norm(vs / "input_norm", vec![d0], Rule::Wubu),
            levels,
            transforms,
            // Without levels the stack is its input projection and norm alone.
            output: (!cfg.levels.is_empty() && total != cfg.output_dim)
                .then(|| init::linear(vs / "output", total, cfg.output_dim, Rule::Wubu)),
        }
    }

    /// `[rows, input_dim]` to `[rows, output_dim]`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut h = match &self.input {
            Some(l) => l.forward(x),
            None => x.shallow_clone(),
        };
        h = self.input_norm.forward(&h) / (h.size()[1] as f64).sqrt();
        let Some(first) = self.levels.first() else {
            return h;
        };
        let (c0, _) = first.geometry();
        let mut point = expmap0(&h, &c0);
        let mut relative: Option<Tensor> = None;
        let mut descriptor: Option<Tensor> = None;
        let mut tangents = Vec::new();
        for (i, level) in self.levels.iter().enumerate() {
            let out = level.forward_t(&point, relative.as_ref(), descriptor.as_ref(), train);
            // The level's output point, read back in its tangent space: unlike the seed's
            // pre-scale vector, this lets every level's scale and curvature shape the output
            // (the seed's last-level scale reached nothing).
            tangents.push(logmap0(&out.point, &out.curvature));
            if let (Some(t), Some(next)) = (self.transforms.get(i), self.levels.get(i + 1)) {
                let (c_next, _) = next.geometry();
                point = t.forward(&out.point, &out.curvature, &c_next);
                descriptor = Some(t.forward(&out.descriptor, &out.curvature, &c_next));
                // The point seen from each boundary point, (−b) ⊕ p, in the tangent space,
                // summed over the boundary points.
                relative = (out.boundaries.size()[0] > 0).then(|| {
                    let b = t.forward(&out.boundaries, &out.curvature, &c_next);
                    let (rows, k, d) = (point.size()[0], b.size()[0], b.size()[1]);
                    let p = point.unsqueeze(1).expand([rows, k, d], false);
                    let nb = (-b).unsqueeze(0).expand([rows, k, d], false);
                    logmap0(&mobius_add(&nb, &p, &c_next), &c_next).sum_dim_intlist(
                        [1i64].as_slice(),
                        false,
                        x.kind(),
                    )
                });
            }
        }
        let cat = Tensor::cat(&tangents, -1).nan_to_num(0.0, 0.0, 0.0);
        match &self.output {
            Some(l) => l.forward(&cat),
            None => cat,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn c(v: f64, kind: Kind) -> Tensor {
        Tensor::from_slice(&[v]).to_kind(kind)
    }

    #[test]
    fn logmap_inverts_expmap_and_points_stay_in_the_ball() {
        tch::manual_seed(0);
        for (cv, kind, tol) in [
            (1.0, Kind::Double, 1e-10),
            (0.3, Kind::Double, 1e-10),
            (1.0, Kind::Float, 2e-4),
        ] {
            let cc = c(cv, kind);
            let v = Tensor::randn([64, 16], (kind, Device::Cpu)) * (0.4 / cv.sqrt());
            let back = logmap0(&expmap0(&v, &cc), &cc);
            let err = (&back - &v).abs().max().double_value(&[]);
            assert!(err < tol, "c {cv} {kind:?}: {err}");
        }
        // Extreme inputs: huge, tiny, NaN and infinite coordinates stay inside, finite.
        let cc = c(2.0, Kind::Float);
        let wild = Tensor::from_slice(&[
            1e30f32,
            -1e30,
            0.0,
            1e-30,
            f32::NAN,
            f32::INFINITY,
            -3.0,
            5e8,
        ])
        .view([4, 2]);
        let p = expmap0(&wild, &cc);
        assert_eq!(p.isfinite().all().int64_value(&[]), 1);
        let max_norm = norm(&p).max().double_value(&[]);
        assert!(max_norm < 1.0 / 2f64.sqrt(), "{max_norm}");
        let t = logmap0(&(wild * 10.0), &cc);
        assert_eq!(t.isfinite().all().int64_value(&[]), 1);
        let m = mobius_add(&p, &p, &cc);
        assert!(norm(&m).max().double_value(&[]) < 1.0 / 2f64.sqrt());
    }

    #[test]
    fn mobius_addition_has_identity_and_inverse() {
        let cc = c(0.7, Kind::Double);
        let x = Tensor::from_slice(&[0.3f64, -0.2, 0.5]).view([1, 3]);
        let zero = x.zeros_like();
        let err = (mobius_add(&x, &zero, &cc) - &x)
            .abs()
            .max()
            .double_value(&[]);
        assert!(err < 1e-12);
        let inv = mobius_add(&(-&x), &x, &cc).abs().max().double_value(&[]);
        assert!(inv < 1e-12, "(-x) ⊕ x = 0: {inv}");
    }

    /// Central finite differences against autograd, in f64.
    fn grad_check(f: &dyn Fn(&Tensor, &Tensor) -> Tensor, x: &Tensor, cv: f64) {
        let xs = x.detach().set_requires_grad(true);
        let cs = c(cv, Kind::Double).set_requires_grad(true);
        let w = Tensor::from_slice(&[0.3f64, -1.1, 0.7, 0.2]).view([1, 4]);
        let loss = (f(&xs, &cs) * &w).sum(Kind::Double);
        let g = Tensor::run_backward(&[loss], &[&xs, &cs], false, false);
        let h = 1e-6;
        let eval = |x: &Tensor, c: &Tensor| (f(x, c) * &w).sum(Kind::Double).double_value(&[]);
        let flat: Vec<f64> = Vec::try_from(x.view([-1])).unwrap();
        for i in 0..flat.len() {
            let mut p = flat.clone();
            p[i] += h;
            let mut m = flat.clone();
            m[i] -= h;
            let fd = (eval(&Tensor::from_slice(&p).view_as(x), &c(cv, Kind::Double))
                - eval(&Tensor::from_slice(&m).view_as(x), &c(cv, Kind::Double)))
                / (2.0 * h);
            let ad = g[0].view([-1]).double_value(&[i as i64]);
            assert!(
                (fd - ad).abs() < 1e-6 * (1.0 + fd.abs()),
                "x[{i}]: fd {fd} vs autograd {ad}"
            );
        }
        let fd_c =
            (eval(x, &c(cv + h, Kind::Double)) - eval(x, &c(cv - h, Kind::Double))) / (2.0 * h);
        let ad_c = g[1].double_value(&[0]);
        assert!(
            (fd_c - ad_c).abs() < 1e-6 * (1.0 + fd_c.abs()),
            "c: fd {fd_c} vs autograd {ad_c}"
        );
    }

    #[test]
    fn gradients_match_finite_differences() {
        let x = Tensor::from_slice(&[0.2f64, -0.4, 0.1, 0.3, -0.1, 0.25, 0.05, -0.3]).view([2, 4]);
        grad_check(&|x, c| expmap0(x, c), &x, 0.8);
        grad_check(&|x, c| logmap0(x, c), &(&x * 0.8), 0.8);
        let y = Tensor::from_slice(&[0.1f64, 0.2, -0.3, 0.05]).view([1, 4]);
        grad_check(&|x, c| mobius_add(x, &y, c), &(&x * 0.5), 1.3);
    }

    #[test]
    fn rotations_are_special_orthogonal_and_start_at_identity() {
        let vs = nn::VarStore::new(Device::Cpu);
        let r = Rotation::new(&vs.root(), 5);
        let eye = Tensor::eye(5, (Kind::Float, Device::Cpu));
        assert!((r.matrix() - &eye).abs().max().double_value(&[]) < 1e-6);
        tch::no_grad(|| {
            r.a.shallow_clone()
                .copy_(&Tensor::randn([5, 5], (Kind::Float, Device::Cpu)));
        });
        let m = r.matrix();
        assert!((m.matmul(&m.tr()) - &eye).abs().max().double_value(&[]) < 1e-4);
        assert!((m.det().double_value(&[]) - 1.0).abs() < 1e-4);
    }

    #[test]
    fn seed_stacks_run_and_curvature_and_scale_learn() {
        tch::manual_seed(4);
        for cfg in [
            StackConfig::seed_s(),
            StackConfig::seed_m(),
            StackConfig::seed_t(),
            StackConfig::seed_d(),
        ] {
            let vs = nn::VarStore::new(Device::Cpu);
            let stack = Stack::new(&vs.root(), &cfg);
            let x = Tensor::randn([6, cfg.input_dim], (Kind::Float, Device::Cpu));
            let y = stack.forward_t(&x, true);
            assert_eq!(y.size(), [6, cfg.output_dim]);
            let last = format!("level{}.boundaries", cfg.levels.len() - 1);
            assert!(vs.variables().keys().all(|k| *k != last));
            assert_eq!(y.isfinite().all().int64_value(&[]), 1);
            y.square().mean(Kind::Float).backward();
            for (name, t) in vs.variables() {
                if name.contains("curvature")
                    || name.contains("scale")
                    || name.contains("boundaries")
                {
                    let g = t.grad();
                    assert!(
                        g.defined() && g.abs().sum(Kind::Float).double_value(&[]) > 0.0,
                        "{name} got no gradient"
                    );
                }
            }
            // Initial geometry is the configuration's.
            let c0 = stack.levels[0].geometry().0.double_value(&[0]);
            assert!((c0 - cfg.levels[0].curvature).abs() < 1e-5, "{c0}");
        }
    }

    #[test]
    fn a_residual_level_adds_its_step_to_the_incoming_tangent_vector() {
        let cfg = StackConfig::seed_s().levels[1].clone();
        let level = |residual: bool| {
            let vs = nn::VarStore::new(Device::Cpu);
            let l = Level::new(
                &vs.root(),
                &LevelConfig {
                    residual,
                    ..cfg.clone()
                },
                true,
                true,
            );
            (vs, l)
        };
        let ((a, plain), (mut b, residual)) = (level(false), level(true));
        b.copy(&a).unwrap();
        let c = c(cfg.curvature, Kind::Float);
        let opts = (Kind::Float, Device::Cpu);
        let point = expmap0(&(Tensor::randn([4, cfg.dim], opts) * 0.1), &c);
        let rel = Tensor::randn([4, cfg.dim], opts);
        let desc = expmap0(&(Tensor::randn([4, cfg.dim], opts) * 0.1), &c);
        let p = plain.forward_t(&point, Some(&rel), Some(&desc), false);
        let r = residual.forward_t(&point, Some(&rel), Some(&desc), false);
        let moved = r.tangent - p.tangent;
        assert!((moved - logmap0(&point, &c)).abs().max().double_value(&[]) < 1e-5);
    }
}

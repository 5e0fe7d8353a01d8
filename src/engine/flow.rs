//! Optical flow for the WuBu-GAAD motion branch, computed in the engine: coarse-to-fine
//! Lucas-Kanade with warping, as batched tensor ops and with no weights to download (the
//! original's RAFT was re-initialised by accident and fed the wrong range; spec 11.2). A
//! TorchScript flow network can replace it (`model.flow = torchscript`).

use tch::{Kind, Tensor};

/// Settings of [`lucas_kanade`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LkConfig {
    /// Pyramid levels (each halves the size).
    pub levels: i64,
    /// Warping iterations per level.
    pub iterations: i64,
    /// Side of the square window the normal equations are summed over (odd).
    pub window: i64,
    /// Tikhonov term added to the structure tensor's diagonal (flat regions get ~0 flow).
    pub regularisation: f64,
}

impl Default for LkConfig {
    fn default() -> Self {
        Self {
            levels: 3,
            iterations: 2,
            window: 7,
            regularisation: 1e-3,
        }
    }
}

/// Intensity of `[B, C, H, W]`: luma of RGB, else the mean over channels (a latent's).
fn grey(x: &Tensor) -> Tensor {
    if x.size()[1] != 3 {
        return x.mean_dim([1i64].as_slice(), true, x.kind());
    }
    let w = Tensor::from_slice(&[0.299f32, 0.587, 0.114])
        .to_device(x.device())
        .to_kind(x.kind())
        .view([1, 3, 1, 1]);
    (x * w).sum_dim_intlist([1i64].as_slice(), true, x.kind())
}

/// Samples `img` (`[B, C, H, W]`) at `p + flow(p)`, bilinear, border values outside.
pub fn warp(img: &Tensor, flow: &Tensor) -> Tensor {
    let (b, _, h, w) = img.size4().unwrap_or((0, 0, 0, 0));
    let opts = (img.kind(), img.device());
    let xs = Tensor::arange(w, opts)
        .view([1, 1, w])
        .expand([b, h, w], false);
    let ys = Tensor::arange(h, opts)
        .view([1, h, 1])
        .expand([b, h, w], false);
    let gx = (xs + flow.select(1, 0)) * (2.0 / (w - 1).max(1) as f64) - 1.0;
    let gy = (ys + flow.select(1, 1)) * (2.0 / (h - 1).max(1) as f64) - 1.0;
    let grid = Tensor::stack(&[gx, gy], 3);
    img.grid_sampler(&grid, 0, 1, true)
}

/// [`warp`] for frames with any leading dimensions, `[.., C, H, W]`, by a flow `[M, 2, H, W]`
/// over those dimensions flattened; the frames come back in their own shape.
pub fn warp_frames(frames: &Tensor, flow: &Tensor) -> Tensor {
    warp(&frames.flatten(0, -4), flow).reshape(frames.size())
}

fn gradients(x: &Tensor) -> (Tensor, Tensor) {
    let padded = x.replication_pad2d([1, 1, 1, 1]);
    let (h, w) = (x.size()[2], x.size()[3]);
    let gx =
        (padded.narrow(2, 1, h).narrow(3, 2, w) - padded.narrow(2, 1, h).narrow(3, 0, w)) * 0.5;
    let gy =
        (padded.narrow(2, 2, h).narrow(3, 1, w) - padded.narrow(2, 0, h).narrow(3, 1, w)) * 0.5;
    (gx, gy)
}

/// Flow from `a` to `b` (`[B, C, H, W]`, any range; the luma of RGB, else the channels'
/// mean) as `[B, 2, H, W]` pixel displacements `(dx, dy)`: `a(p) ≈ b(p + flow(p))`. No
/// gradients.
pub fn lucas_kanade(a: &Tensor, b: &Tensor, cfg: &LkConfig) -> Tensor {
    let device = a.device();
    tch::no_grad(|| {
        let (a, b) = (grey(&a.to_kind(Kind::Float)), grey(&b.to_kind(Kind::Float)));
        let mut pyramid = vec![(a, b)];
        for _ in 1..cfg.levels.max(1) {
            let (pa, pb) = &pyramid[pyramid.len() - 1];
            if pa.size()[2] < 16 || pa.size()[3] < 16 {
                break;
            }
            let down = |x: &Tensor| x.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>);
            pyramid.push((down(pa), down(pb)));
        }
        let k = cfg.window.max(3) | 1;
        let sum =
            |x: &Tensor| x.avg_pool2d([k, k], [1, 1], [k / 2, k / 2], false, false, None::<i64>);
        let mut flow: Option<Tensor> = None;
        for (a, b) in pyramid.iter().rev() {
            let (n, _, h, w) = a.size4().unwrap_or((0, 0, 0, 0));
            let mut f = match flow.take() {
                None => Tensor::zeros([n, 2, h, w], (Kind::Float, a.device())),
                Some(f) => {
                    let (fh, fw) = (f.size()[2], f.size()[3]);
                    let up = f.upsample_bilinear2d([h, w], false, None, None);
                    let scale = Tensor::from_slice(&[w as f32 / fw as f32, h as f32 / fh as f32])
                        .to_device(a.device())
                        .view([1, 2, 1, 1]);
                    up * scale
                }
            };
            for _ in 0..cfg.iterations.max(1) {
                let warped = warp(b, &f);
                let (ix, iy) = gradients(&((a + &warped) * 0.5));
                let it = &warped - a;
                let sxx = sum(&(&ix * &ix)) + cfg.regularisation;
                let syy = sum(&(&iy * &iy)) + cfg.regularisation;
                let sxy = sum(&(&ix * &iy));
                let sxt = sum(&(&ix * &it));
                let syt = sum(&(&iy * &it));
                let det = &sxx * &syy - &sxy * &sxy;
                let du = -(&syy * &sxt - &sxy * &syt) / &det;
                let dv = -(&sxx * &syt - &sxy * &sxt) / &det;
                f += Tensor::cat(&[du, dv], 1);
            }
            flow = Some(f);
        }
        flow.unwrap_or_else(|| Tensor::zeros([0], (Kind::Float, device)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A smooth pattern shifted by `(dx, dy)` pixels.
    fn pattern(dx: f64, dy: f64) -> Tensor {
        let (h, w) = (48i64, 64i64);
        let xs = Tensor::arange(w, (Kind::Float, tch::Device::Cpu)).view([1, w]) - dx;
        let ys = Tensor::arange(h, (Kind::Float, tch::Device::Cpu)).view([h, 1]) - dy;
        let v = (&xs * 0.21).sin() * (&ys * 0.17).cos() + (&xs * 0.05 + &ys * 0.07).sin();
        v.view([1, 1, h, w])
            .expand([1, 3, h, w], false)
            .contiguous()
    }

    #[test]
    fn recovers_a_known_translation() {
        for (dx, dy) in [(1.5, -0.75), (4.0, 2.0), (0.0, 0.0)] {
            let flow = lucas_kanade(&pattern(0.0, 0.0), &pattern(dx, dy), &LkConfig::default());
            assert_eq!(flow.size(), vec![1, 2, 48, 64]);
            // Away from the borders, where the shift moved content in from outside.
            let inner = flow.narrow(2, 10, 28).narrow(3, 10, 44);
            let mx = inner.select(1, 0).mean(Kind::Float).double_value(&[]);
            let my = inner.select(1, 1).mean(Kind::Float).double_value(&[]);
            assert!(
                (mx - dx).abs() < 0.25 && (my - dy).abs() < 0.25,
                "({dx},{dy}) -> ({mx},{my})"
            );
        }
    }
}

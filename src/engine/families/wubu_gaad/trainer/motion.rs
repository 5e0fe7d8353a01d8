//! The motion branch: optical flow between consecutive frames (Lucas-Kanade in the engine,
//! or a TorchScript network), motion-aware GAAD on its magnitude, and per-region statistics.

use tch::{Device, Kind, Tensor};

use super::WubuGaadTrainer;
use crate::core::gaad::{self, EnergyMap, MotionSpiral, Region};
use crate::engine::flow::{self, LkConfig};
use crate::engine::trainer::TrainerError;

impl WubuGaadTrainer {
    /// Flow of consecutive frames, motion-aware GAAD on its magnitude, and per-region
    /// statistics `[B, N−1, Rm, S]`; also the last pair's motion boxes of sample 0.
    pub(super) fn motion(&self, frames: &Tensor) -> Result<(Tensor, Vec<Region>), TrainerError> {
        let d = &self.d;
        let b = frames.size()[0];
        let n = frames.size()[1];
        let pairs = b * (n - 1);
        let a = frames.narrow(1, 0, n - 1).reshape([pairs, d.c, d.h, d.w]);
        let bb = frames.narrow(1, 1, n - 1).reshape([pairs, d.c, d.h, d.w]);
        let flow = match &self.flow_net {
            Some(net) => tch::no_grad(|| net.forward_ts(&[&a, &bb]))
                .map_err(|e| TrainerError::Torch(format!("the flow network: {e}")))?
                .to_kind(Kind::Float),
            None => flow::lucas_kanade(&a, &bb, &LkConfig::default()),
        };
        if flow.size() != [pairs, 2, d.h, d.w] {
            return Err(TrainerError::Config(format!(
                "model.flow_model: the flow network returned {:?}, expected {:?}",
                flow.size(),
                [pairs, 2, d.h, d.w]
            )));
        }
        tch::no_grad(|| {
            let (dx, dy) = (flow.select(1, 0), flow.select(1, 1));
            let mag = (&dx * &dx + &dy * &dy + 1e-12).sqrt();
            let cos = &dx / &mag;
            let sin = &dy / &mag;
            let maps = Tensor::stack(&[&mag, &cos, &sin], 1);
            let mag_cpu: Vec<f32> =
                Vec::try_from(mag.to_device(Device::Cpu).contiguous().view([-1]))
                    .map_err(TrainerError::from)?;
            let kind = gaad::Kind::parse(&self.cfg.model.motion_decomposition).map_err(|e| {
                TrainerError::Config(format!("model.motion_decomposition: {e}"))
            })?;
            let rm = d.motion_regions as usize;
            let plane = (d.h * d.w) as usize;
            let mut rois = Vec::with_capacity(pairs as usize * rm * 5);
            let mut last = Vec::new();
            for i in 0..pairs as usize {
                let map = EnergyMap::new(
                    d.w as u32,
                    d.h as u32,
                    mag_cpu[i * plane..(i + 1) * plane].to_vec(),
                )
                .map_err(|e| TrainerError::Config(format!("motion GAAD: pair {i}: {e}")))?;
                let regions = gaad::decompose_motion(
                    kind,
                    &map,
                    rm,
                    self.cfg.model.min_region_px,
                    0.1,
                    &MotionSpiral::default(),
                )
                .map_err(|e| TrainerError::Config(format!("motion GAAD: pair {i}: {e}")))?;
                for r in &regions {
                    rois.extend_from_slice(&[
                        i as f32,
                        r[0] as f32,
                        r[1] as f32,
                        r[2] as f32,
                        r[3] as f32,
                    ]);
                }
                if i as i64 == n - 2 {
                    last = regions;
                }
            }
            let rois = Tensor::from_slice(&rois)
                .view([-1, 5])
                .to_device(self.device);
            let crops = crate::engine::spectral::roi_align(&maps, &rois, 4, 4, 1.0).view([
                pairs * rm as i64,
                3,
                16,
            ]);
            let (m, c, s) = (crops.select(1, 0), crops.select(1, 1), crops.select(1, 2));
            let dims = [1i64];
            let mut stats = Vec::new();
            for name in &d.flow_stats {
                match *name {
                    "mag_mean" => stats.push(m.mean_dim(dims.as_slice(), false, Kind::Float)),
                    "mag_std" => stats.push(m.std_correction(dims.as_slice(), 0, false)),
                    "angle_mean" => {
                        stats.push(c.mean_dim(dims.as_slice(), false, Kind::Float));
                        stats.push(s.mean_dim(dims.as_slice(), false, Kind::Float));
                    }
                    _ => {
                        // Circular standard deviation sqrt(−2 ln R) (the original took the raw
                        // std of angles, which jumps at ±π).
                        let r = (c.mean_dim(dims.as_slice(), false, Kind::Float).square()
                            + s.mean_dim(dims.as_slice(), false, Kind::Float).square())
                        .sqrt()
                        .clamp(1e-6, 1.0);
                        stats.push((r.log() * -2.0).clamp_min(0.0).sqrt());
                    }
                }
            }
            let stats = Tensor::stack(&stats, 1).view([b, n - 1, rm as i64, d.stats_dim()]);
            Ok((stats, if b > 0 { last } else { Vec::new() }))
        })
    }
}

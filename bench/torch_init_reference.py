"""PyTorch's initial values for the layers the workbench's families make, as the fixture
`tests/fixtures/torch_init.json` that `tests/init.rs` holds every family's layers against.

Reads the layers the test lists (`target/torch_init_keys.json`, written when the fixture lacks
one: `rule/layer/weight shape/bias shape` each), builds each as the original does in PyTorch
(the default init, then the original's override: DCGAN's `weights_init`, a GPT's
`_init_weights`, WuBu's `init_weights_general`), and records its weight's and bias's mean,
standard deviation and largest magnitude. Run with the torch environment setup makes:

    ~/.cache/workbench/torch-2.13.0/bin/python bench/torch_init_reference.py \
        target/torch_init_keys.json tests/fixtures/torch_init.json
"""
import json, sys

import torch
import torch.nn as nn


def parse_shape(text):
    return [] if text in ("", "-") else [int(v) for v in text.split("x")]


def build(layer, w_shape):
    if layer == "linear":
        out_f, in_f = w_shape
        return nn.Linear(in_f, out_f)
    if layer == "conv":
        out_c, in_c, *k = w_shape
        conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[len(k)]
        return conv(in_c, out_c, k)
    if layer == "conv_transpose":
        in_c, out_c, *k = w_shape
        conv = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}[len(k)]
        return conv(in_c, out_c, k)
    if layer == "norm":
        if len(w_shape) == 1:
            return nn.BatchNorm1d(w_shape[0])
        return nn.LayerNorm(w_shape)
    raise ValueError(layer)


def override(rule, m):
    """The original's init on top of PyTorch's default."""
    if rule == "dcgan":
        # DCGAN's weights_init: conv weights N(0, 0.02), norm scales N(1, 0.02), shifts 0.
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, (nn.BatchNorm1d, nn.LayerNorm)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    elif rule == "gpt":
        # A GPT's _init_weights: Linear N(0, 0.02), bias 0; LayerNorm 1 and 0.
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    elif rule == "wubu":
        # WuBu's init_weights_general.
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)


def stats(t):
    t = t.detach().double().flatten()
    return {"n": t.numel(), "mean": t.mean().item(), "std": t.std(unbiased=False).item(), "absmax": t.abs().max().item()}


def main():
    keys = json.load(open(sys.argv[1]))
    out_path = sys.argv[2]
    try:
        table = json.load(open(out_path))
    except FileNotFoundError:
        table = {}
    torch.manual_seed(0)
    for key in keys:
        rule, layer, w, b = key.split("/")
        w_shape = parse_shape(w)
        m = build(layer, w_shape)
        # A group norm's scale has the same default (and overrides) as a LayerNorm's.
        override(rule, m)
        entry = {"weight": stats(m.weight)}
        if b not in ("", "-"):
            entry["bias"] = stats(m.bias)
        table[key] = entry
    json.dump(dict(sorted(table.items())), open(out_path, "w"), indent=1)
    print(f"{len(keys)} layers written to {out_path}")


if __name__ == "__main__":
    main()

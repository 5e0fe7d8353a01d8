"""PyTorch eager reference of one 3-D VQ-GAN training step at spec section 4.2's tiny size,
used by `workbench-bench vq-gan` to compare step time and peak memory side by side.

The same computation as the workbench's step after the critics start: encoder and decoder
with replicate same-padding and GroupNorm(8) residual blocks, 1x1x1 convolutions around an
EMA codebook (64 codes of 8, restarts), L1 + commitment, 2-D critic on one depth slice per
sample and 3-D critic on the volume (hinge, feature matching 4), Adam (0.5, 0.9) on both, the
autoencoder clipped at 1.0. Batches of 4 random 16^3 volumes held in memory.
"""
import argparse, json, resource, time
import torch
import torch.nn as nn
import torch.nn.functional as F


def same_pad(x, k, s):
    pads = []
    for st in reversed(s):
        p = max(k - st, 0)
        pads += [(p + 1) // 2, p // 2]
    return F.pad(x, pads, mode="replicate")


class Conv(nn.Module):
    def __init__(self, i, o, k, s=(1, 1, 1)):
        super().__init__()
        self.k, self.s = k, s
        self.conv = nn.Conv3d(i, o, k, s)

    def forward(self, x):
        return self.conv(same_pad(x, self.k, self.s))


class ConvT(nn.Module):
    def __init__(self, i, o, k, s):
        super().__init__()
        self.k, self.s = k, s
        self.conv = nn.ConvTranspose3d(i, o, k, s, padding=k - 1)

    def forward(self, x):
        return self.conv(same_pad(x, self.k, self.s))


class Res(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.n1, self.c1 = nn.GroupNorm(8, c, eps=1e-6), Conv(c, c, 3)
        self.n2, self.c2 = nn.GroupNorm(8, c, eps=1e-6), Conv(c, c, 3)

    def forward(self, x):
        return x + self.c2(F.silu(self.n2(self.c1(F.silu(self.n1(x))))))


class AE(nn.Module):
    def __init__(self, h=8, emb=8, k=64):
        super().__init__()
        self.first = Conv(1, h, 3)
        self.down = nn.ModuleList([Conv(h, 2 * h, 4, (2, 2, 2)), Conv(2 * h, 4 * h, 4, (2, 2, 2))])
        self.dres = nn.ModuleList([Res(2 * h), Res(4 * h)])
        self.enorm = nn.GroupNorm(8, 4 * h, eps=1e-6)
        self.pre, self.post = nn.Conv3d(4 * h, emb, 1), nn.Conv3d(emb, 4 * h, 1)
        self.dnorm = nn.GroupNorm(8, 4 * h, eps=1e-6)
        self.up = nn.ModuleList([ConvT(4 * h, 4 * h, 4, (2, 2, 2)), ConvT(4 * h, 2 * h, 4, (2, 2, 2))])
        self.ures = nn.ModuleList([nn.Sequential(Res(4 * h), Res(4 * h)), nn.Sequential(Res(2 * h), Res(2 * h))])
        self.last = Conv(2 * h, 1, 3)
        self.register_buffer("emb", torch.randn(k, emb))
        self.register_buffer("n", torch.ones(k))
        self.register_buffer("z_avg", self.emb.clone())

    def forward(self, x):
        h = self.first(x)
        for d, r in zip(self.down, self.dres):
            h = r(d(h))
        z = self.pre(F.silu(self.enorm(h)))
        flat = z.movedim(1, -1).reshape(-1, z.shape[1])
        d = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.emb.t() + self.emb.pow(2).sum(1)[None]
        idx = d.argmin(1)
        onehot = F.one_hot(idx, self.emb.shape[0]).float()
        with torch.no_grad():
            self.n.mul_(0.99).add_(0.01 * onehot.sum(0))
            self.z_avg.mul_(0.99).add_(0.01 * onehot.t() @ flat.detach())
            total = self.n.sum()
            w = (self.n + 1e-7) / (total + self.emb.shape[0] * 1e-7) * total
            self.emb.copy_(self.z_avg / w[:, None])
            fresh = flat.detach()[torch.randperm(flat.shape[0], device=flat.device)[: self.emb.shape[0]]]
            dead = (self.n < 1.0)[:, None]
            self.emb.copy_(torch.where(dead, fresh, self.emb))
        e = self.emb[idx]
        commit = F.mse_loss(flat, e.detach())
        zq = (flat + (e - flat).detach()).reshape(*z.shape[:1], *z.shape[2:], z.shape[1]).movedim(-1, 1)
        h = F.silu(self.dnorm(self.post(zq)))
        for u, r in zip(self.up, self.ures):
            h = r(u(h))
        return self.last(h), commit


class Disc(nn.Module):
    def __init__(self, three_d, ndf=16, layers=2):
        super().__init__()
        conv = nn.Conv3d if three_d else nn.Conv2d
        norm = nn.BatchNorm3d if three_d else nn.BatchNorm2d
        self.stages = nn.ModuleList()
        c_in, c_out = 1, ndf
        for i in range(layers + 2):
            s = 2 if i < layers else 1
            out = 1 if i == layers + 1 else c_out
            mods = [conv(c_in, out, 4, s, 2)]
            if 0 < i <= layers:
                mods.append(norm(out))
            if i < layers + 1:
                mods.append(nn.LeakyReLU(0.2))
            self.stages.append(nn.Sequential(*mods))
            c_in, c_out = out, min(out * 2, 512)

    def forward(self, x):
        feats = []
        for s in self.stages:
            x = s(x)
            feats.append(x)
        return x, feats


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--size", type=int, default=16, help="volume side")
    ap.add_argument("--patch", type=int, default=0, help="patchwise: patch side; every patch of the step in one forward")
    ap.add_argument("--no-critics", action="store_true", help="the autoencoder alone")
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    ae, d2, d3 = AE().to(dev), Disc(False).to(dev), Disc(True).to(dev)
    opt_ae = torch.optim.Adam(ae.parameters(), lr=3e-4, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(list(d2.parameters()) + list(d3.parameters()), lr=3e-4, betas=(0.5, 0.9))
    data = torch.rand(8, a.batch, 1, a.size, a.size, a.size, device=dev) * 2 - 1
    if a.patch > 0:
        # Every patch of the step's volumes as one batch: [batch * (size/patch)^3, 1, p, p, p].
        p = a.patch
        data = (
            data.unfold(3, p, p).unfold(4, p, p).unfold(5, p, p)
            .permute(0, 1, 3, 4, 5, 2, 6, 7, 8)
            .reshape(8, -1, 1, p, p, p)
        )

    def slices(x, xr):
        t = torch.randint(0, x.shape[2], (x.shape[0],), device=x.device)
        idx = torch.arange(x.shape[0], device=x.device)
        return x[idx, :, t], xr[idx, :, t]

    def fm(fake, real):
        n = len(fake) - 1
        # The originals' weight, 4.0 / (3 + 1), whatever the number of layers.
        return sum(1.0 * (f - r.detach()).abs().mean() for f, r in zip(fake[:n], real[:n]))

    # Where the timed steps go, named as the workbench names its parts (clipping counts
    # with the backward, as there).
    parts = {}
    clock = [None, time.perf_counter()]

    def enter(part):
        # Host time: on a GPU the host runs ahead, as the workbench's parts say of theirs.
        now = time.perf_counter()
        if clock[0] is not None:
            parts[clock[0]] = parts.get(clock[0], 0.0) + now - clock[1]
        clock[0], clock[1] = part, now

    def ae_only(i):
        enter("autoencoder forward")
        x = data[i % len(data)]
        xr, commit = ae(x)
        loss = (xr - x).abs().mean() + 0.25 * commit
        enter("autoencoder backward")
        opt_ae.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ae.parameters(), 1.0)
        enter("optimiser")
        opt_ae.step()

    def one(i):
        if a.no_critics:
            return ae_only(i)
        enter("autoencoder forward")
        x = data[i % len(data)]
        xr, commit = ae(x)
        f, fr = slices(x, xr)
        lf, ff = d2(fr)
        _, fr_ = d2(f)
        vf, vff = d3(xr)
        _, vfr = d3(x)
        loss = (xr - x).abs().mean() + 0.25 * commit - lf.mean() - 0.5 * vf.mean() + 4.0 * (fm(ff, fr_) + fm(vff, vfr))
        enter("autoencoder backward")
        opt_ae.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ae.parameters(), 1.0)
        enter("optimiser")
        opt_ae.step()
        enter("critics forward")
        opt_d.zero_grad()
        f, fr = slices(x, xr.detach())
        r, _ = d2(f)
        g, _ = d2(fr)
        r3, _ = d3(x)
        g3, _ = d3(xr.detach())
        hinge = lambda r, g: 0.5 * (F.relu(1 - r).mean() + F.relu(1 + g).mean())
        dloss = hinge(r, g) + 0.5 * hinge(r3, g3)
        enter("critics backward")
        dloss.backward()
        enter("optimiser")
        opt_d.step()

    for i in range(3):
        one(i)
    parts.clear()
    t0 = time.perf_counter()
    clock[0], clock[1] = None, t0
    for i in range(a.steps):
        one(i)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    enter(None)
    dt = (time.perf_counter() - t0) / a.steps
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"step_s": dt, "peak_rss_mib": rss, "parts": parts}))


if __name__ == "__main__":
    main()

"""PyTorch eager reference of one latent action model training step (seed 002's VQ-VAE LAM
at spec section 4.1's tiny size), used by `workbench-bench latent-action` to compare step time
and peak memory side by side.

The same computation as the workbench's step: the adapters frame by frame, the encoder under
the shifted-causal frame mask, pre-quantiser noise, the shared codebook with the
straight-through estimator, the teacher-forced decoder under the block-causal mask, a rollout
of horizon 2 through the separate step decoder, AdamW on two groups, global clipping at 1.0.
Batches are random latents held in memory (the workbench reads its windows from HDF5 files
every step, which this side does not pay for).
"""
import argparse, json, math, resource, time
import torch
import torch.nn as nn
import torch.nn.functional as F


def lin(i, o):
    m = nn.Linear(i, o)
    nn.init.normal_(m.weight, std=0.02)
    nn.init.zeros_(m.bias)
    return m


class Block(nn.Module):
    def __init__(self, e, heads, layer, cross=False):
        super().__init__()
        self.ln1 = nn.LayerNorm(e)
        self.attn = nn.MultiheadAttention(e, heads, batch_first=True)
        self.cross = cross
        if cross:
            self.ln2c = nn.LayerNorm(e)
            self.xattn = nn.MultiheadAttention(e, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(e)
        self.fc1, self.fc2 = lin(e, 4 * e), lin(4 * e, e)
        s = math.sqrt(2 * (layer + 1))
        with torch.no_grad():
            for a in [self.attn] + ([self.xattn] if cross else []):
                nn.init.normal_(a.out_proj.weight, std=0.02)
                nn.init.zeros_(a.out_proj.bias)
                a.out_proj.weight.div_(s)
            self.fc2.weight.div_(s)

    def forward(self, x, mask=None, memory=None):
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        if self.cross:
            h = self.ln2c(x)
            x = x + self.xattn(h, memory, memory, need_weights=False)[0]
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


def ln(x):
    return F.layer_norm(x, x.shape[-1:])


def expand(allowed, n):
    m = allowed.repeat_interleave(n, 0).repeat_interleave(n, 1)
    return torch.zeros(m.shape, device=m.device).masked_fill(~m, float("-inf"))


class Lam(nn.Module):
    def __init__(self, c=4, hw=16, patch=4, d=32, e=64, heads=4, depth=2, k=12, dc=16, a=3, length=5):
        super().__init__()
        self.grid, self.n, self.a, self.dc = hw // patch, (hw // patch) ** 2, a, dc
        n = self.n
        self.conv, self.bn = nn.Conv2d(c, d, patch, patch), nn.BatchNorm2d(d)
        self.deconv = nn.ConvTranspose2d(d, c, patch, patch)
        p = lambda *s: nn.Parameter(torch.randn(*s) * 0.02)
        # encoder
        self.e_proj, self.e_sp, self.e_t = lin(d, e), p(n, e), p(length, e)
        self.e_blocks = nn.ModuleList(Block(e, heads, l) for l in range(depth))
        self.e_norm, self.pool = nn.LayerNorm(e), lin(e, e)
        self.mu, self.logvar = lin(e, a * dc), lin(e, a * dc)
        self.codebook = nn.Parameter(torch.empty(k, dc).uniform_(-1 / k, 1 / k))
        # batched decoder
        chunk = 2 * n + a
        self.d_f, self.d_c, self.d_q, self.d_pos = lin(d, e), lin(dc, e), p(1, n, e), p(1, length * chunk, e)
        self.d_blocks = nn.ModuleList(Block(e, heads, l) for l in range(depth))
        self.d_norm, self.d_out = nn.LayerNorm(e), lin(e, d)
        # step decoder
        self.s_f, self.s_c, self.s_sp, self.s_t = lin(d, e), lin(dc, e), p(n, e), p(length, e)
        self.s_q, self.s_qp = p(n, e), p(n, e)
        self.s_blocks = nn.ModuleList(Block(e, heads, l, cross=True) for l in range(depth))
        self.s_norm, self.s_out = nn.LayerNorm(e), lin(e, d)

    def tokens(self, x):
        return torch.stack([self.bn(self.conv(x[:, t])).flatten(2).transpose(1, 2) for t in range(x.shape[1])], 1)

    def frames(self, tok):
        lead = tok.shape[:-2]
        z = tok.reshape(-1, self.n, tok.shape[-1]).transpose(1, 2).reshape(-1, tok.shape[-1], self.grid, self.grid)
        out = self.deconv(z)
        return out.reshape(*lead, *out.shape[1:])

    def encode(self, tok):
        b, t, n, _ = tok.shape
        x = ln(self.e_proj(tok)) + self.e_sp + self.e_t[:t, None]
        x = x.reshape(b, t * n, -1)
        i = torch.arange(t, device=tok.device)
        mask = expand(i[None, :] <= i[:, None] + 1, n)
        for blk in self.e_blocks:
            x = blk(x, mask)
        x = self.pool(self.e_norm(x).reshape(b, t, n, -1).mean(2))[:, : t - 1]
        mu, logvar = self.mu(x), self.logvar(x).clamp(-5, 5)
        z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
        flat = z.reshape(-1, self.dc)
        d = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.codebook.t() + self.codebook.pow(2).sum(1)[None]
        zq = self.codebook[d.argmin(1)]
        vq = F.mse_loss(zq, flat.detach()) + 0.25 * F.mse_loss(flat, zq.detach())
        st = flat + (zq - flat).detach()
        return st.reshape(b, t - 1, self.a, self.dc), vq

    def decode(self, frames, codes):
        b, s, n, _ = frames.shape
        f, c = ln(self.d_f(frames)), ln(self.d_c(codes))
        q = self.d_q[None].expand(b, s, n, -1)
        chunk = 2 * n + self.a
        x = torch.cat([f, c, q], 2).reshape(b, s * chunk, -1) + self.d_pos[:, : s * chunk]
        i = torch.arange(s, device=frames.device)
        mask = expand(i[None, :] <= i[:, None], chunk)
        for blk in self.d_blocks:
            x = blk(x, mask)
        return self.d_out(self.d_norm(x).reshape(b, s, chunk, -1)[:, :, n + self.a:])

    def step(self, frames, codes):
        b, s, n, _ = frames.shape
        t = self.s_t[:s, None]
        mem = torch.cat([ln(self.s_f(frames)) + self.s_sp + t, ln(self.s_c(codes)) + t], 2).reshape(b, -1, self.s_q.shape[-1])
        q = (self.s_q + self.s_qp)[None].expand(b, -1, -1)
        for blk in self.s_blocks:
            q = blk(q, memory=mem)
        return self.s_out(self.s_norm(q))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    m = Lam().to(dev)
    enc = [p for n, p in m.named_parameters() if n.startswith(("e_", "mu", "logvar"))]
    rest = [p for n, p in m.named_parameters() if not n.startswith(("e_", "mu", "logvar"))]
    opts = [torch.optim.AdamW(g, lr=1e-3, betas=(0.9, 0.999), weight_decay=0.01) for g in (enc, rest)]
    data = torch.randn(8, a.batch, 5, 4, 16, 16, device=dev) * 0.3

    def one(i):
        x = data[i % len(data)]
        tok = m.tokens(x)
        codes, vq = m.encode(tok)
        pred_tok = m.decode(tok[:, :-1], codes)
        mse = F.mse_loss(m.frames(pred_tok), x[:, 1:])
        t0 = int(torch.randint(0, 3, ()).item())
        hist = torch.cat([tok[:, : t0 + 1], pred_tok[:, t0:t0 + 1]], 1)
        z = m.step(hist, codes[:, : t0 + 2])
        roll = F.mse_loss(m.frames(z), x[:, t0 + 2])
        loss = mse + vq + roll
        for o in opts:
            o.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        for o in opts:
            o.step()
        return loss.item()

    for i in range(3):
        one(i)
    t0 = time.perf_counter()
    for i in range(a.steps):
        one(i)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / a.steps
    print(json.dumps({"step_s": dt, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()

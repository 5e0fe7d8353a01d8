"""PyTorch eager reference of one WGAN-GP small training step (seed 004's WGAN_small at 64x64),
used by `workbench-bench wgan-gp` to compare step time and peak memory side by side.

Same computation as the workbench: augmentation-free batches of random images, critic step
with the gradient penalty (double backward), a generator step every n_critic-th step, Adam
betas (0, 0.9).
"""
import argparse, json, resource, time
import torch
import torch.nn as nn


def generator(z=128, ngf=64):
    def up(i, o, s, p):
        return [nn.ConvTranspose2d(i, o, 4, s, p, bias=False), nn.BatchNorm2d(o), nn.ReLU(True)]
    return nn.Sequential(*up(z, ngf * 8, 1, 0), *up(ngf * 8, ngf * 4, 2, 1), *up(ngf * 4, ngf * 2, 2, 1),
                         *up(ngf * 2, ngf, 2, 1), nn.ConvTranspose2d(ngf, 3, 4, 2, 1, bias=False), nn.Tanh())


def critic(ndf=64):
    def down(i, o, s):
        return [nn.Conv2d(i, o, 4, 2, 1, bias=False), nn.LayerNorm([o, s, s]), nn.LeakyReLU(0.2, True)]
    return nn.Sequential(nn.Conv2d(3, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True),
                         *down(ndf, ndf * 2, 16), *down(ndf * 2, ndf * 4, 8), *down(ndf * 4, ndf * 8, 4),
                         nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), nn.Flatten())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    torch.manual_seed(0)
    G, D = generator().to(dev), critic().to(dev)
    og = torch.optim.Adam(G.parameters(), 1e-4, betas=(0.0, 0.9))
    od = torch.optim.Adam(D.parameters(), 1e-4, betas=(0.0, 0.9))
    data = torch.rand(1024, 3, 64, 64) * 2 - 1

    def step(i):
        real = data[torch.randint(0, 1024, (a.batch,))].to(dev)
        z = torch.randn(a.batch, 128, 1, 1, device=dev)
        with torch.no_grad():
            fake = G(z)
        d_real, d_fake = D(real).mean(), D(fake).mean()
        alpha = torch.rand(a.batch, 1, 1, 1, device=dev)
        x = (alpha * real + (1 - alpha) * fake).detach().requires_grad_(True)
        g, = torch.autograd.grad(D(x).sum(), x, create_graph=True)
        gp = ((g.view(a.batch, -1).norm(2, dim=1) - 1) ** 2).mean()
        loss = d_fake - d_real + 10 * gp
        od.zero_grad(); loss.backward(); od.step()
        float(loss)
        if (i + 1) % 5 == 0:
            gl = -D(G(torch.randn(a.batch, 128, 1, 1, device=dev))).mean()
            og.zero_grad(); gl.backward(); og.step()
            float(gl)

    for i in range(3):
        step(i)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(3, 3 + a.steps):
        step(i)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / a.steps
    print(json.dumps({"step_s": dt, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()

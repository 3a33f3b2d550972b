"""Benchmark: ``infovae.metrics.log_likelihood`` against pythae's ``get_nll``, and on the book's PixelCNN.

Part 1. Both estimate log p(x) by importance sampling with q(z|x) as proposal on the same
MLP VAE (784-512-5 encoder, 5-512-784 Bernoulli decoder, briefly trained on MNIST), on the
same stochastically binarized test images, in one run:

* ``infovae``: ``log_likelihood_with_error`` (vectorised over images and samples, chunked),
  in float32 and, where the CPU has native bf16, with ``precision="bf16"`` (the networks in
  bf16, everything else float32), whose error per image is measured against float32 on the
  same codes (``infovae.metrics.precision_error``);
* ``reference``: pythae 0.1.2's ``VAE.get_nll`` algorithm re-implemented line for line in
  plain PyTorch (a Python loop over images; per image, K / 100 batches of 100 copies of
  the image, each encoded again, then sampled and decoded; ``logsumexp`` at the end), so
  the benchmark runs without pythae;
* ``pythae``: pythae's own ``get_nll`` on the same weights, when ``import pythae`` works
  (it is not in the book's environment: ``pip install --no-deps pythae==0.1.2`` plus
  ``pydantic>=2 cloudpickle imageio`` in a separate venv that sees this torch).

All methods run under ``torch.no_grad``/``inference_mode`` with the same torch threads.
Part 2. The Table 1 decoder (the gated PixelCNN of chapters 8-9 at the book profile,
trained as chapter 8 trains it, or loaded from its cache): seconds per 1000 (image, sample)
rows of the mixture estimate for several chunk sizes, float32 and bf16, and the bf16 error
per image. pythae has no autoregressive decoder, so this part compares us with ourselves.

Peak memory is the growth of the process's peak resident set during the call (Linux and
glibc: freed heap returned by malloc_trim, peak reset through /proc/self/clear_refs).
Times are wall clock and CPU time of the process (the CPU time is the fairer number on a
machine shared with other jobs). Run::

    python benchmarks/bench_metrics.py [--images 100] [--threads 2] [--only mlp|pixelcnn]
"""

from __future__ import annotations

import argparse
import ctypes
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Bernoulli, Independent, Normal

import infovae as iv
from infovae.metrics import log_likelihood_with_error, precision_error
from infovae.precision import native_bf16, network_region

LATENT, HIDDEN, PIXELS, BATCH = 5, 512, 784, 100


class Nets(nn.Module):
    """The shared weights: pythae's default MLP sizes, encoder heads for mean and log-variance."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(nn.Flatten(), nn.Linear(PIXELS, HIDDEN), nn.ReLU())
        self.mu, self.log_var = nn.Linear(HIDDEN, LATENT), nn.Linear(HIDDEN, LATENT)
        self.dec = nn.Sequential(nn.Linear(LATENT, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, PIXELS))

    def encode(self, x):
        h = self.enc(x)
        return self.mu(h), self.log_var(h)

    def logits(self, z):
        with network_region(z.device):  # bf16 under precision="bf16", as the package's networks
            out = self.dec(z)
        return out.float().view(-1, 1, 28, 28)


class Encoder(nn.Module):
    def __init__(self, nets: Nets):
        super().__init__()
        self.nets, self.latent_dim = nets, LATENT

    def forward(self, x):
        mu, log_var = self.nets.encode(x)
        return Independent(Normal(mu, (0.5 * log_var).exp()), 1)


class Decoder(nn.Module):
    def __init__(self, nets: Nets):
        super().__init__()
        self.nets = nets

    def forward(self, z):
        return Independent(Bernoulli(logits=self.nets.logits(z)), 3)


@torch.no_grad()
def reference_get_nll(nets: Nets, data: torch.Tensor, n_samples: int, batch_size: int = BATCH) -> np.ndarray:
    """pythae 0.1.2 ``VAE.get_nll`` (BCE case), line for line; per-image log p(x) (pythae averages them)."""
    if n_samples <= batch_size:
        n_full_batch = 1
    else:
        n_full_batch = n_samples // batch_size
        n_samples = batch_size
    log_p = []
    for i in range(len(data)):
        x = data[i].unsqueeze(0)
        log_p_x = []
        for _ in range(n_full_batch):
            x_rep = torch.cat(batch_size * [x])
            mu, log_var = nets.encode(x_rep)
            std = torch.exp(0.5 * log_var)
            z = mu + std * torch.randn_like(std)
            log_q_z_given_x = -0.5 * (log_var + (z - mu) ** 2 / torch.exp(log_var)).sum(dim=-1)
            log_p_z = -0.5 * (z**2).sum(dim=-1)
            recon_x = torch.sigmoid(nets.logits(z))
            log_p_x_given_z = -F.binary_cross_entropy(
                recon_x.reshape(x_rep.shape[0], -1), x_rep.reshape(x_rep.shape[0], -1), reduction="none"
            ).sum(dim=-1)
            log_p_x.append(log_p_x_given_z + log_p_z - log_q_z_given_x)
        log_p_x = torch.cat(log_p_x)
        log_p.append((torch.logsumexp(log_p_x, 0) - np.log(len(log_p_x))).item())
    return np.array(log_p)


def pythae_model(nets: Nets):
    """pythae's VAE on the same weights, or None when pythae is not importable."""
    try:
        from pythae.models import VAE, VAEConfig
        from pythae.models.base.base_utils import ModelOutput
        from pythae.models.nn import BaseDecoder, BaseEncoder
    except ImportError:
        return None

    class PEncoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.nets = nets

        def forward(self, x):
            mu, log_var = self.nets.encode(x)
            return ModelOutput(embedding=mu, log_covariance=log_var)

    class PDecoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.nets = nets

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.nets.logits(z)))

    config = VAEConfig(input_dim=(1, 28, 28), latent_dim=LATENT, reconstruction_loss="bce")
    return VAE(config, encoder=PEncoder(), decoder=PDecoder()).eval()


def train(model: iv.VAE, steps: int, seed: int) -> None:
    """A few hundred Adam steps on the negative ELBO (enough for realistic posteriors)."""
    x, _ = iv.load_mnist("train", binarize="threshold")
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        xb = x[torch.randint(len(x), (BATCH,), generator=g)]
        qz, z, px = model(xb)
        loss = -(px.log_prob(xb) - torch.distributions.kl_divergence(qz, model.prior())).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    print(f"trained {steps} steps: negative ELBO {loss.item():.1f} nats on the last batch")


def measured(fn):
    """Run ``fn()``; return (result, wall seconds, CPU seconds, peak memory growth in MiB)."""
    status = Path("/proc/self/status")

    def kib(field: str) -> int:
        return int(
            next(line for line in status.read_text().splitlines() if line.startswith(field)).split()[1]
        )

    ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap memory back to the system
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS to the current RSS
    before = kib("VmRSS")
    start, cpu_start = time.perf_counter(), time.process_time()
    result = fn()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return result, seconds, cpu_seconds, (kib("VmHWM") - before) / 1024


def mlp_part(args) -> None:
    """Part 1: ours (float32 at three chunk sizes, bf16) against pythae's get_nll, K = 1000."""
    iv.seed_everything(0)
    nets = Nets()
    model = iv.VAE(Encoder(nets), Decoder(nets))
    train(model, args.steps, seed=0)
    model.eval()
    x = iv.load_mnist("test", binarize="stochastic", seed=0)[0][: args.images]
    per_1000 = 1000 / args.images
    print(
        f"Part 1, MLP VAE: torch {torch.__version__}, {args.threads} thread(s), {args.images} test images; "
        "times scaled to 1000 images"
    )
    bf16 = native_bf16("cpu")
    runs = [(1000, 256, "fp32"), (1000, 1024, "fp32"), (1000, 4096, "fp32"), (5000, 1024, "fp32")]
    runs += [(1000, 1024, "bf16"), (1000, 4096, "bf16")] if bf16 else []
    rows = {}
    for k, chunk, precision in runs:
        torch.manual_seed(1)
        out, *cost = measured(
            lambda k=k, chunk=chunk, p=precision: log_likelihood_with_error(model, x, k, chunk_size=chunk, precision=p)
        )
        rows[f"infovae K={k} chunk={chunk} {precision}"] = (out.estimate.numpy(), out.stderr.numpy(), *cost)
    torch.manual_seed(1)
    est, *cost = measured(lambda: reference_get_nll(nets, x, 1000))
    rows["reference get_nll K=1000"] = (est, None, *cost)
    pythae = pythae_model(nets)
    if pythae is not None:
        torch.manual_seed(1)
        with torch.no_grad():
            mean, *cost = measured(lambda: pythae.get_nll(x, n_samples=1000, batch_size=BATCH))
        rows["pythae get_nll K=1000"] = (np.array([mean]), None, *cost)
    else:
        print("pythae is not importable here: only the line-for-line reference of get_nll runs")

    fp32_name = "infovae K=1000 chunk=1024 fp32"
    ours, ours_se = rows[fp32_name][:2]
    # s.e. of a mean over the images: per-image Monte Carlo errors are independent, and the
    # reference (same estimator, same K) has the same per-image s.e. as ours
    se_diff = math.sqrt(2 * float((ours_se**2).sum())) / len(ours)
    print(
        f"\n{'method':34s} {'mean log p(x)':>13s} {'wall s/1000 img':>16s} {'CPU s/1000 img':>15s} "
        f"{'peak MiB':>9s} {'pythae / this (wall, CPU)':>26s}"
    )
    slow = rows.get("pythae get_nll K=1000", rows["reference get_nll K=1000"])[2:4]
    for name, (est, _, wall, cpu, mib) in rows.items():
        speed = f"{slow[0] / wall:.2f}x, {slow[1] / cpu:.2f}x" if "K=1000" in name else ""
        print(f"{name:34s} {est.mean():13.3f} {wall * per_1000:16.2f} {cpu * per_1000:15.2f} {mib:9.1f} {speed:>26s}")
    for name in ("reference get_nll K=1000", "pythae get_nll K=1000"):
        if name in rows:
            diff = rows[name][0].mean() - ours.mean()
            print(f"{name} - infovae fp32: {diff:+.4f} nats, {diff / se_diff:+.2f} s.e. of the difference ({se_diff:.4f})")
    k5000 = rows["infovae K=5000 chunk=1024 fp32"]
    print(
        f"infovae K=5000 - K=1000: {k5000[0].mean() - ours.mean():+.4f} nats; "
        f"median per-image s.e. at K=1000 {np.median(ours_se):.4f}, K=5000 {np.median(k5000[1]):.4f}"
    )
    if bf16:
        err = precision_error(model, x, 1000, precision="bf16").abs()
        print(f"bf16 - fp32 on the same codes, K=1000: max {err.max():.4f}, mean {err.mean():.4f} nats per image")
    else:
        print("no native bf16 on this CPU: the bf16 rows are not run")


def pixelcnn_part(args) -> None:
    """Part 2: the book's PixelCNN VAE (MMD-VAE, z = 5, seed 0), mixture proposal, K = 50."""
    from infovae.experiments.pixelcnn_models import setup_for_profile, train_pixelcnn_model

    setup = setup_for_profile("book")
    model, _ = train_pixelcnn_model("mmd", 5, setup, cache=True, progress=False)
    model.eval()
    x = iv.load_mnist("test", binarize="stochastic", seed=0)[0][: args.pixelcnn_images]
    k = 50
    pairs = len(x) * k
    print(f"\nPart 2, gated PixelCNN {setup.layers} x {setup.channels} (book profile), MMD-VAE z = 5: "
          f"{len(x)} images x K = {k} (mixture proposal); seconds per 1000 rows")
    precisions = ["fp32", "bf16"] if native_bf16("cpu") else ["fp32"]
    times = {}
    for precision in precisions:
        for chunk in (64, 256, 1024, 4096):
            torch.manual_seed(1)
            _, wall, cpu, mib = measured(lambda c=chunk, p=precision: log_likelihood_with_error(
                model, x, k, proposal="mixture", chunk_size=c, precision=p))
            times[(precision, chunk)] = wall
            print(f"  {precision} chunk {chunk:5d}: wall {1000 * wall / pairs:.3f} s, CPU {1000 * cpu / pairs:.3f} s, "
                  f"peak {mib:.0f} MiB")
    base = times[("fp32", 4096)]
    best = min(times, key=times.get)
    print(f"  fastest: {best[0]} chunk {best[1]}, {base / times[best]:.2f}x the fp32 chunk-4096 speed")
    if "bf16" in precisions:
        err = precision_error(model, x, k, proposal="mixture", chunk_size=best[1], precision="bf16").abs()
        print(f"  bf16 - fp32 on the same codes: max {err.max():.4f}, mean {err.mean():.4f} nats per image")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100, help="test images per measurement (part 1)")
    parser.add_argument("--steps", type=int, default=300, help="training steps before measuring (part 1)")
    parser.add_argument("--pixelcnn-images", type=int, default=40, help="test images of part 2")
    parser.add_argument("--only", choices=["mlp", "pixelcnn"], help="run one part (part 2 needs matplotlib, which the "
                        "pythae environment lacks: run it with the book's environment)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.only != "pixelcnn":
        mlp_part(args)
    if args.only != "mlp":
        pixelcnn_part(args)


if __name__ == "__main__":
    main()

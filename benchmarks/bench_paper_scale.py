"""Expected wall time of each experiment at the ``paper`` profile, from measured step times.

The paper profile trains the paper's networks for the paper's number of steps (SPEC of the
book, section 4; the configuration dataclasses of ``infovae.experiments``), which takes days
on a CPU. This script measures, on the device it runs on, the seconds per training step of
every model that each experiment trains, with the experiment's own model and loss builders
and the paper profile's batch size, and multiplies by the paper profile's number of steps
and models. Table 1's importance-sampling evaluation (K samples per test image) is timed on
a few images and scaled to the full test set.

Each step time is the difference of two ``Trainer`` runs of ``--steps`` and ``3 * --steps``
steps divided by ``2 * --steps``, after a warm-up run, the smaller of two repeats (set-up and
the first, slower steps cancel). The totals leave
out the evaluations of Figs. 1-6 (minutes beside the training); they are estimates from
measured rates, not measurements of a full run.

Run: ``python benchmarks/bench_paper_scale.py`` (a few minutes on 2 CPU cores; pass
``--device cuda`` on a GPU). ``--out FILE`` also writes the table as JSON; the book's
reproduction appendix quotes ``book/results/paper-scale-cpu.json``, written so.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

import infovae as iv
from infovae.experiments import flexible_decoders, log_likelihood, mnist_inference, pixelcnn_models, two_points
from infovae.metrics import log_likelihood_with_error
from infovae.networks import ConvDecoder, ConvEncoder, build_vae
from infovae.train import TrainConfig, Trainer
from infovae.vae import VAE


def seconds_per_step(build, loss_fn, data, batch_size: int, steps: int, **train_options) -> float:
    """Seconds per step of ``Trainer``: (time of 3 * steps - time of steps) / (2 * steps), after a
    warm-up run, the smaller of two such measurements (set-up and first-step costs cancel)."""
    def timed(n: int) -> float:
        torch.manual_seed(0)
        config = TrainConfig(iterations=n, batch_size=batch_size, progress=False, log_every=n, **train_options)
        trainer = Trainer(build(), loss_fn(), data, config, device=iv.get_device())
        start = time.perf_counter()
        trainer.run()
        if iv.get_device().type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    timed(2)  # warm-up: allocator, kernels, data on the device
    return min(max(timed(3 * steps) - timed(steps), 1e-9) / (2 * steps) for _ in range(2))


def fmt(seconds: float) -> str:
    """Seconds as s, min, h or days."""
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=4, help="steps of the shorter timing run (default 4)")
    parser.add_argument("--device", default=None, help="torch device (default: the fastest available)")
    parser.add_argument("--iwae-images", type=int, default=2, help="test images timed for Table 1 (default 2)")
    parser.add_argument("--out", default=None, help="also write the measurements and totals to this JSON file")
    args = parser.parse_args()
    if args.device:
        import os

        os.environ["INFOVAE_DEVICE"] = args.device
    device = iv.get_device()
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    rows = []

    # Fig. 1: two models on the two points
    c1 = two_points.TwoPointsConfig.for_profile("paper")
    data = iv.data.two_point_data(c1.data_size, seed=0)
    for name in two_points.MODELS:
        t = seconds_per_step(lambda: build_vae("toy", 1), lambda: two_points.make_loss(name, c1), data,
                             c1.batch_size, args.steps, lr=c1.lr, binarize=None)
        rows.append(("fig1", name, t, c1.iterations, 1))

    # Figs. 2-5: ELBO and MMD-VAE, one 10-dim model per training-set size and one 2-dim plot model
    c25 = mnist_inference.MnistInferenceConfig.for_profile("paper")
    x, _ = iv.load_mnist("train", binarize="stochastic", seed=0)
    for obj in mnist_inference.OBJECTIVES:
        build = lambda: VAE(ConvEncoder(c25.latent_dim, hidden=c25.hidden), ConvDecoder(c25.latent_dim, hidden=c25.hidden))
        t = seconds_per_step(build, lambda: mnist_inference.make_loss(obj, c25), x[:10_000],
                             c25.batch_size, args.steps, lr=c25.lr, binarize=None)
        rows.append(("fig2-5", obj, t, c25.iterations, len(c25.sizes) + 1))

    # Fig. 6: five PixelCNN-decoder models at every latent dimension (Table 1 reuses the 5-dim ones)
    c6 = flexible_decoders.FlexibleDecodersConfig.for_profile("paper")
    setup = c6.setup
    x, _ = iv.load_mnist("train")
    for name in c6.models:
        t = seconds_per_step(lambda: pixelcnn_models.build_model(name, 5, setup),
                             lambda: pixelcnn_models.make_loss(name, 5, setup), x[:10_000], setup.batch_size,
                             args.steps, optimizer="rmsprop", lr=setup.lr, clip="value", clip_value=setup.clip_value,
                             binarize="stochastic")
        rows.append(("fig6", name, t, setup.iterations, len(c6.latent_dims)))

    # Table 1: K importance samples per test image, for each model (timed on a few images)
    c1t = log_likelihood.LogLikelihoodConfig.for_profile("paper")
    model = pixelcnn_models.build_model("mmd", c1t.latent_dim, c1t.setup).to(device).eval()
    xt = iv.load_mnist("test", binarize="stochastic", seed=0)[0][: args.iwae_images].to(device)
    log_likelihood_with_error(model, xt[:1], 64, chunk_size=c1t.chunk_size)  # warm-up
    start = time.perf_counter()
    log_likelihood_with_error(model, xt, c1t.num_samples, chunk_size=c1t.chunk_size)
    per_image = (time.perf_counter() - start) / len(xt)
    proposals = 2  # the encoder and the prior as proposals, both reported
    # the "steps" of this row are test images times proposals (encoder and prior), each with K samples
    rows.append(("table1", f"IWAE K={c1t.num_samples}", per_image, c1t.num_test * proposals, len(c1t.models)))

    print(f"\n{'experiment':<8} {'model':<16} {'s/step':>9} {'steps':>8} {'models':>6} {'total':>10}")
    totals: dict[str, float] = {}
    for exp, name, t, steps, models in rows:
        total = t * steps * models
        totals[exp] = totals.get(exp, 0.0) + total
        print(f"{exp:<8} {name:<16} {t:>9.4f} {steps:>8,} {models:>6} {fmt(total):>10}")
    print("\nexpected training (and Table 1 evaluation) time at the paper profile on this device:")
    for exp, total in totals.items():
        print(f"  {exp:<8} {fmt(total)}")
    if args.out:
        record = {
            "device": str(device),
            "processor": platform.processor() or platform.machine(),
            "cpu_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "rows": [dict(experiment=e, model=n, seconds_per_step=t, steps=s, models=m) for e, n, t, s, m in rows],
            "total_seconds": totals,
        }
        Path(args.out).write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()

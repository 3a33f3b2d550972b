"""What one training step of every Part II model costs, and what a whole profile costs on a device.

For a profile (``--profile``, default ``paper``) this script builds every model that each
experiment of Part II trains, with the experiment's own configuration (``for_profile``), its
own model and loss builders (``infovae.experiments``; the PixelCNN models through
``pixelcnn_models.setup_for_profile`` and ``build_model``) and the package's ``Trainer``, so
it follows any change of a profile's setup. For each model it records

* ``seconds_per_step`` on the device it runs on (``--device``): the difference of two
  ``Trainer`` runs of ``--steps`` and ``3 * --steps`` steps divided by ``2 * --steps``, after
  a warm-up run, the smaller of two repeats (set-up and the first, slower steps cancel);
* ``flops_per_step``: floating-point operations of one training step (forward, backward,
  counted with the FLOP formulas of ``torch.utils.flop_counter``, those of its
  ``FlopCounterMode``: matrix products and convolutions, where these networks spend their
  time; the mode itself cannot run a WGAN-GP step, whose gradient penalty differentiates twice);
* ``ops_per_step``: the tensor operations of one step that launch work (views excluded): on
  a GPU each is at least one kernel launch, whose fixed cost dominates small models;

and multiplies by the profile's number of steps and of models. Table 1's importance-sampling
evaluation (K samples per test image, two proposals) is measured the same way on a few test
images and scaled to the profile's test set. The totals leave out the other evaluations of
Figs. 1-6 (seconds to minutes beside the training at the book profile); they are estimates
from measured rates, not measurements of a full run.

Besides the measured device, every total is also estimated for the reference GPUs of
``REFERENCE_DEVICES`` by a two-term model of a training step,

    seconds per step = flops / (efficiency * peak fp32 FLOP/s) + ops * seconds per op,

with the published fp32 peak of each GPU (the package trains in fp32 where the GPU has no
native bf16, as on a T4), an efficiency and a per-operation cost (kernel launch and Python
dispatch; the trainer synchronises once a step, so the two terms add) stated in the table.

Run: ``python benchmarks/bench_paper_scale.py`` (a few minutes on 2 CPU cores; ``--device
cuda`` on a GPU; ``--profile book`` for the book profile). ``--out FILE`` also writes the
measurements, the device (name, torch and CUDA versions) and the totals as JSON; the book's
reproduction appendix quotes ``book/results/paper-scale-*.json``, written so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

import infovae as iv
from infovae.experiments import flexible_decoders, log_likelihood, mnist_inference, pixelcnn_models, two_points
from infovae.metrics import log_likelihood_with_error
from infovae.networks import ConvDecoder, ConvEncoder, build_vae
from infovae.runtime import PROFILES
from infovae.train import TrainConfig, Trainer
from infovae.vae import VAE

# Published fp32 peaks (NVIDIA data sheets); efficiency and per-op cost are our assumptions,
# chosen on the slow side: cuDNN reaches 30-60% of peak on convolutions of this size, and
# eager PyTorch spends ~5-10 us per operation on a fast host CPU (Colab's 2 vCPUs are slower).
REFERENCE_DEVICES: dict[str, dict[str, float | str]] = {
    "t4": dict(name="NVIDIA T4 (Colab)", peak_flops=8.1e12, efficiency=0.35, seconds_per_op=20e-6),
    "a100": dict(name="NVIDIA A100 (data centre)", peak_flops=19.5e12, efficiency=0.35, seconds_per_op=10e-6),
}


@dataclass
class Job:
    """One kind of model that an experiment trains: how to build and train it, and how often."""

    experiment: str
    model: str
    build: Callable[[], torch.nn.Module]
    loss: Callable[[], Callable]
    data: torch.Tensor
    batch_size: int
    steps: int
    models: int
    options: dict = field(default_factory=dict)


def jobs_for_profile(profile: str, data_images: int = 10_000) -> list[Job]:
    """Every model that the Part II experiments train at ``profile``, from their configurations."""
    jobs: list[Job] = []

    c1 = two_points.TwoPointsConfig.for_profile(profile)
    toy = iv.data.two_point_data(c1.data_size, seed=0)
    for name in two_points.MODELS:
        jobs.append(Job("fig1", name, lambda: build_vae("toy", 1), lambda name=name: two_points.make_loss(name, c1),
                        toy, c1.batch_size, c1.iterations, 1, dict(lr=c1.lr, binarize=None)))

    c25 = mnist_inference.MnistInferenceConfig.for_profile(profile)
    x = iv.load_mnist("train", binarize="stochastic", seed=0)[0][:data_images]
    for obj in mnist_inference.OBJECTIVES:
        for dim, steps, batch, models, label in (
            (c25.latent_dim, c25.iterations, c25.batch_size, len(c25.sizes), obj),
            (c25.plot_dim, c25.plot_iterations or c25.iterations, c25.plot_batch_size or c25.batch_size, 1, f"{obj} z={c25.plot_dim}"),
        ):
            jobs.append(Job("fig2-5", label,
                            lambda dim=dim: VAE(ConvEncoder(dim, hidden=c25.hidden), ConvDecoder(dim, hidden=c25.hidden)),
                            lambda obj=obj: mnist_inference.make_loss(obj, c25), x, batch, steps, models,
                            dict(lr=c25.lr, binarize=None)))

    c6 = flexible_decoders.FlexibleDecodersConfig.for_profile(profile)
    x = iv.load_mnist("train")[0][:data_images]

    def pixelcnn_job(name: str, label: str, setup: pixelcnn_models.PixelCNNSetup, models: int) -> Job:
        dim = c6.focus_dim
        return Job("fig6", label, lambda: pixelcnn_models.build_model(name, dim, setup),
                   lambda: pixelcnn_models.make_loss(name, dim, setup), x, setup.batch_size, setup.iterations, models,
                   dict(optimizer="rmsprop", lr=setup.lr, clip="value", clip_value=setup.clip_value, binarize="stochastic",
                        precision=getattr(setup, "precision", "fp32")))

    # every model at every latent dim, and again at focus_dim for each further seed of focus_seeds; where
    # the sweep over dimensions has a setup of its own, the focus models (every seed) and the sweep's apart
    seeds = getattr(c6, "focus_seeds", (c6.setup.seed,))
    extra_seeds = sum(seed != c6.setup.seed for seed in seeds)
    sweep = getattr(c6, "sweep_setup", None)
    for name in c6.models:
        if sweep is None:
            jobs.append(pixelcnn_job(name, name, c6.setup, len(c6.latent_dims) + extra_seeds))
        else:
            jobs.append(pixelcnn_job(name, name, c6.setup, len(seeds)))
            jobs.append(pixelcnn_job(name, f"{name} (sweep)", sweep, len(c6.latent_dims)))
    authors = getattr(pixelcnn_models, "AUTHORS_ELBO", None)
    if authors and getattr(c6, "authors_weighting", False) and "elbo" in c6.models:
        jobs.append(pixelcnn_job(authors, authors, c6.setup, len(seeds)))
    if getattr(c6, "stronger_decoder", None) is not None and "elbo" in c6.models:
        layers, channels = c6.stronger_decoder
        jobs.append(pixelcnn_job("elbo", f"elbo {layers}x{channels}", replace(c6.setup, layers=layers, channels=channels), 1))
    if getattr(c6, "longer_training", None) is not None and "elbo" in c6.models:
        jobs.append(pixelcnn_job("elbo", "elbo longer", replace(c6.setup, iterations=c6.longer_training), 1))
    # Table 1 trains the same models as Fig. 6 (its 5-dim models are Fig. 6's when the setups agree)
    return jobs


def seconds_per_step(job: Job, steps: int, device: torch.device) -> float:
    """Seconds per ``Trainer`` step: (time of 3 * steps - time of steps) / (2 * steps), after a
    warm-up run, the smaller of two such measurements (set-up and first-step costs cancel)."""

    def timed(n: int) -> float:
        config = TrainConfig(iterations=n, batch_size=job.batch_size, progress=False, log_every=n, **job.options)
        trainer = Trainer(job.build(), job.loss(), job.data, config, device=device)
        _synchronize(device)
        start = time.perf_counter()
        trainer.run()
        _synchronize(device)
        return time.perf_counter() - start

    timed(2)  # warm-up: allocator, kernels, data on the device
    return min(max(timed(3 * steps) - timed(steps), 1e-9) / (2 * steps) for _ in range(2))


class _StepCounter(TorchDispatchMode):
    """Counts FLOPs (``torch.utils.flop_counter``'s formulas) and the tensor operations that
    launch work (views and metadata-only operations excluded)."""

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func.overloadpacket
        if packet not in flop_registry and func is not torch.ops.prim.device.default:
            with self:  # composite operations (conv2d, linear) reach here undecomposed without autograd
                out = func.decompose(*args, **kwargs)
            if out is not NotImplemented:
                return out
        out = func(*args, **kwargs)
        if packet in flop_registry:
            self.flops += flop_registry[packet](*args, **kwargs, out_val=out)
        if not getattr(func, "is_view", False) and packet.__name__ not in ("detach", "empty", "empty_strided"):
            self.ops += 1
        return out


def step_cost(job: Job, device: torch.device) -> tuple[float, int]:
    """FLOPs and work-launching operations of one training step of ``job`` (after one warm-up step)."""
    config = TrainConfig(iterations=2, batch_size=job.batch_size, progress=False, log_every=2, **job.options)
    trainer = Trainer(job.build(), job.loss(), job.data, config, device=device)
    trainer.train_step()
    return _counted(trainer.train_step)


def _counted(fn: Callable[[], object]) -> tuple[float, int]:
    counter = _StepCounter()
    with counter:
        fn()
    return float(counter.flops), counter.ops


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def table1_rows(profile: str, images: int, device: torch.device) -> list[dict]:
    """Table 1's importance sampling: seconds, FLOPs and ops per test image and proposal."""
    c = log_likelihood.LogLikelihoodConfig.for_profile(profile)
    torch.manual_seed(0)
    model = pixelcnn_models.build_model("mmd", c.latent_dim, c.setup).to(device).eval()
    xt = iv.load_mnist("test", binarize="stochastic", seed=0)[0][:images].to(device)
    rows = []
    for proposal, k in (("encoder", c.num_samples), ("prior", c.num_prior_samples)):
        estimate = lambda x: log_likelihood_with_error(model, x, k, proposal=proposal, chunk_size=c.chunk_size)
        estimate(xt[:1])  # warm-up
        _synchronize(device)
        start = time.perf_counter()
        estimate(xt)
        _synchronize(device)
        seconds = (time.perf_counter() - start) / len(xt)
        flops, ops = _counted(lambda: estimate(xt[:1]))
        rows.append(dict(experiment="table1", model=f"IWAE {proposal} K={k}", seconds_per_step=seconds,
                         flops_per_step=flops, ops_per_step=ops, steps=c.num_test, models=len(c.models)))
    return rows


def estimate_seconds(flops: float, ops: int, reference: dict) -> float:
    """Seconds of one step on a reference GPU by the two-term model of the module docstring."""
    return flops / (reference["efficiency"] * reference["peak_flops"]) + ops * reference["seconds_per_op"]


def device_record(device: torch.device) -> dict:
    """The device and the software it ran with."""
    record = {
        "device": str(device),
        "device_name": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
    }
    if device.type == "cuda":
        record["device_name"] = torch.cuda.get_device_name(device)
        record["cudnn"] = torch.backends.cudnn.version()
    return record


def fmt(seconds: float) -> str:
    """Seconds as s, min, h or days."""
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"


def measure(profile: str, device: torch.device, steps: int, iwae_images: int, data_images: int = 10_000) -> dict:
    """Every row (measured and counted) and the totals of ``profile`` on ``device``, as a JSON record."""
    rows = []
    for job in jobs_for_profile(profile, data_images):
        flops, ops = step_cost(job, device)
        rows.append(dict(experiment=job.experiment, model=job.model, seconds_per_step=seconds_per_step(job, steps, device),
                         flops_per_step=flops, ops_per_step=ops, steps=job.steps, models=job.models))
        print(f"  {job.experiment:<7} {job.model:<18} {rows[-1]['seconds_per_step']:.4f} s/step "
              f"{flops / 1e9:8.3f} GFLOP {ops:5d} ops", flush=True)
    for row in table1_rows(profile, iwae_images, device):
        rows.append(row)
        print(f"  {row['experiment']:<7} {row['model']:<18} {row['seconds_per_step']:.4f} s/image "
              f"{row['flops_per_step'] / 1e9:8.3f} GFLOP {row['ops_per_step']:5d} ops", flush=True)
    totals: dict[str, float] = {}
    estimates: dict[str, dict[str, float]] = {key: {} for key in REFERENCE_DEVICES}
    for row in rows:
        n = row["steps"] * row["models"]
        totals[row["experiment"]] = totals.get(row["experiment"], 0.0) + row["seconds_per_step"] * n
        for key, ref in REFERENCE_DEVICES.items():
            seconds = estimate_seconds(row["flops_per_step"], row["ops_per_step"], ref) * n
            estimates[key][row["experiment"]] = estimates[key].get(row["experiment"], 0.0) + seconds
    measured_flops = sum(r["flops_per_step"] * r["steps"] * r["models"] for r in rows)
    return {
        "profile": profile,
        **device_record(device),
        "rows": rows,
        "total_seconds": totals,
        "achieved_flops_per_second": measured_flops / max(sum(totals.values()), 1e-9),
        "reference_devices": REFERENCE_DEVICES,
        "estimated_total_seconds": estimates,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="paper", choices=PROFILES, help="the profile whose models are timed (default paper)")
    parser.add_argument("--steps", type=int, default=4, help="steps of the shorter timing run (default 4)")
    parser.add_argument("--device", default=None, help="torch device (default: iv.get_device(), the fastest available)")
    parser.add_argument("--iwae-images", type=int, default=2, help="test images timed for Table 1 (default 2)")
    parser.add_argument("--out", default=None, help="also write the measurements and totals to this JSON file")
    args = parser.parse_args(argv)
    if args.device:
        os.environ["INFOVAE_DEVICE"] = args.device  # validated by get_device; experiments follow it too
    device = iv.get_device()
    print(f"profile {args.profile}, device {device}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    record = measure(args.profile, device, args.steps, args.iwae_images)
    print(f"\nexpected training (and Table 1 evaluation) time at the {args.profile} profile:")
    print(f"  {'experiment':<10} {'this device':>12}" + "".join(f" {k + ' (est.)':>12}" for k in REFERENCE_DEVICES))
    for exp, total in record["total_seconds"].items():
        est = "".join(f" {fmt(record['estimated_total_seconds'][k][exp]):>12}" for k in REFERENCE_DEVICES)
        print(f"  {exp:<10} {fmt(total):>12}{est}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
        print(f"wrote {args.out}")
    return record


if __name__ == "__main__":
    main()

"""Figs. 2-5 of the paper (book chapter 7): inference accuracy of ELBO and MMD-VAE on MNIST.

Both models use the DCGAN-style nets of ``build_vae("dcgan", dim)`` and a statically
binarized MNIST (one Bernoulli draw per pixel, fixed); their objectives are Eq. (6) (book
chapter 4) with

* ``"elbo"``: alpha = 0, lambda = 1 (no divergence term);
* ``"mmd"``: MMD-VAE, alpha = 0, lambda = 1000, D = MMD against 200 fresh prior samples.

Each model is trained on the first N images of a seeded shuffle of the training set, for
the same number of steps at every N. The experiment measures:

* Fig. 2: log det Cov[q(z)] for z = 10 against N, from codes z ~ q(z|x) of training and
  of test images (0 for q(z) = p(z) = N(0, I); above 0 the variance is over-estimated),
  split into the spread of the encoder means and the encoder variances;
* Fig. 3: q(z) of the test set for z = 2 after N = 500, against p(z): contours, and
  KL(q(z) || p(z)) by Monte Carlo with the exact mixture density of q(z);
* Fig. 4: the true posterior p(z|x) of test images, enumerated on a grid (the code is
  2-dimensional), against q(z|x): samples of both, KL(p(z|x) || q(z|x)), and the gap
  log p(x) - ELBO(x) = KL(q(z|x) || p(z|x)) (chapter 1's measure of inference quality);
* the 2-dimensional models over ``plot_seeds`` training seeds, with MMD-VAE also trained
  with a smaller batch and with a smaller learning rate (the controls of the "collapses,
  then escapes" behaviour): KL(q(z|x) || p(z)) by tenths of training;
* Fig. 5: reconstructions of training images and ancestral samples x ~ p(x|z), z ~ p(z)
  after N = 500 (z = 10), and how far each lies from the test images (MMD in pixel space).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from ..data import load_mnist, training_subset
from ..divergences import mmd, squared_distances
from ..metrics import full_batch_mmd, log_det_covariance
from ..metrics.latent import mixture_log_density
from ..networks import ConvDecoder, ConvEncoder
from ..objective import InfoVAELoss
from ..precision import resolve_precision
from ..runtime import get_device, seeded
from ..train import Trainer, TrainConfig
from ..vae import VAE
from .base import Outcome, config_for_profile, load_trained_model, named_objective, resolve_config, save_trained_model, trained_model_path

CACHE_VERSION = 2
OBJECTIVES: tuple[str, ...] = ("elbo", "mmd")
LABELS = {"elbo": "ELBO", "mmd": "MMD-VAE (λ=1000)"}
COLORS = {"elbo": "tab:blue", "mmd": "tab:orange"}


@dataclass
class MnistInferenceConfig:
    """Sizes of the Figs. 2-5 experiment (the paper's constants by default).

    Attributes:
        sizes: training-set sizes N of Fig. 2 (paper: 500 ... 50000).
        iterations: optimiser steps per model, the same at every N (paper: up to 100k).
        batch_size: images per step (paper: 200).
        lr: Adam learning rate (paper: 1e-4).
        lam: lambda of MMD-VAE (paper: 1000; alpha = 0).
        hidden: width of the fully connected layer of encoder and decoder (paper: 1024).
        latent_dim: z for Fig. 2 and Fig. 5 (paper: 10).
        plot_dim: z for Figs. 3 and 4 (paper: 2).
        plot_size: N of Figs. 3-5 (paper: 500).
        plot_iterations: optimiser steps of the ``plot_dim`` models of Figs. 3 and 4 (``None``:
            ``iterations``, as in the paper).
        plot_batch_size: their batch size (``None``: ``batch_size``, as in the paper).
        num_codes: images (test, and training up to N) whose codes estimate q(z).
        num_posterior_images: test images of Fig. 4.
        grid_size: cells per axis of the coarse and of the fine grid on which the true
            posterior of the 2-dimensional models is enumerated (Fig. 4).
        grid_reach: the coarse grid covers [-grid_reach, grid_reach]^2.
        num_posterior_samples: draws of p(z|x) and of q(z|x) per image (Fig. 4).
        num_generated: ancestral samples and reconstructions of Fig. 5 (and its MMD).
        eval_every: steps between records of log det Cov[q(z)] (test codes) during the
            training of the z = 10 models at N = ``plot_size``.
        plot_seeds: training seeds (initialisation and data order) of the ``plot_dim`` models;
            the data are those of ``seed`` for all of them.
        control_lr: learning rate of MMD-VAE's control run at ``plot_dim`` (``None``: none).
        control_batch_size: batch size of its second control run (``None``: none).
        precision: ``"fp32"``, ``"bf16"`` or ``"auto"`` (bf16 networks where native; ``TrainConfig``).
        seed: seed of the data (the shuffle and the binarization), and of the training of the
            z = 10 models.
    """

    sizes: tuple[int, ...] = (500, 1000, 2000, 5000, 10_000, 20_000, 50_000)
    iterations: int = 100_000
    batch_size: int = 200
    lr: float = 1e-4
    lam: float = 1000.0
    hidden: int = 1024
    latent_dim: int = 10
    plot_dim: int = 2
    plot_size: int = 500
    plot_iterations: int | None = None
    plot_batch_size: int | None = None
    num_codes: int = 10_000
    num_posterior_images: int = 8
    grid_size: int = 200
    grid_reach: float = 6.0
    num_posterior_samples: int = 200
    num_generated: int = 1000
    eval_every: int = 5000
    plot_seeds: tuple[int, ...] = (0,)
    control_lr: float | None = None
    control_batch_size: int | None = None
    precision: str = "fp32"
    seed: int = 0

    @classmethod
    def for_profile(cls, profile: str) -> "MnistInferenceConfig":
        """The configuration of a profile: ``quick`` (CI), ``book`` (2-core CPU) or ``paper``."""
        return config_for_profile(cls, profile, {
            "quick": dict(
                sizes=(500, 1000), iterations=25, batch_size=50, lr=1e-3, hidden=256, num_codes=300,
                num_posterior_images=3, grid_size=40, num_posterior_samples=100, num_generated=100,
                eval_every=25, control_lr=1e-4, control_batch_size=25,
            ),
            "book": dict(
                sizes=(500, 5000, 50_000), iterations=1000, batch_size=100, lr=1e-3, hidden=256, num_codes=2000,
                plot_iterations=1500, plot_batch_size=200,
                num_posterior_images=6, grid_size=150, num_generated=500, eval_every=100,
                plot_seeds=(0, 1, 2), control_lr=1e-4, control_batch_size=100, precision="auto",
            ),
            "paper": dict(),
        })


def make_loss(objective: str, config: MnistInferenceConfig) -> InfoVAELoss:
    """The objective ``"elbo"`` or ``"mmd"`` (MMD-VAE with lambda = ``config.lam``, alpha = 0)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
    return named_objective(objective, alpha=0.0, lam=config.lam)


def train_model(
    objective: str,
    data: torch.Tensor,
    latent_dim: int,
    config: MnistInferenceConfig,
    x_eval: torch.Tensor | None = None,
    progress: bool = True,
    cache_description: dict | None = None,
) -> tuple[VAE, dict[str, list]]:
    """Train a DCGAN VAE on ``data`` (already binarized).

    Returns the model and its history, ``{name: [steps, values]}``: the losses (means over
    tenths of the run), ``"seconds"`` of training and, if ``x_eval`` is given, log det
    Cov[q(z)] of its codes every ``config.eval_every`` steps. With a ``cache_description``
    (what determines the data, see ``run``), the trained model is read from and written to
    the user's cache.
    """
    with seeded(config.seed, data.device):
        model = VAE(ConvEncoder(latent_dim, hidden=config.hidden), ConvDecoder(latent_dim, hidden=config.hidden))
    precision = resolve_precision(config.precision, data.device)
    path = None
    if cache_description is not None:
        description = {
            "v": CACHE_VERSION, "objective": objective, "dim": latent_dim, "n": len(data),
            "eval_images": 0 if x_eval is None else len(x_eval), "precision": precision, **cache_description,
            **{k: getattr(config, k) for k in ("iterations", "batch_size", "lr", "lam", "hidden", "eval_every", "seed")},
        }
        path = trained_model_path("dcgan-models", f"{objective}-z{latent_dim}-N{len(data)}", description)
        if (history := load_trained_model(path, model, get_device())) is not None:
            return model.to(get_device()).eval(), history

    def log_det(trainer: Trainer) -> dict[str, float]:
        assert isinstance(trainer.model, VAE) and x_eval is not None  # the hook runs only with x_eval
        means, stds = aggregate_posterior(trainer.model, x_eval)
        return {"log_det_test": log_det_covariance(means + stds * torch.randn_like(means)).total}

    every = max(1, config.iterations // 10)
    train_config = TrainConfig(
        iterations=config.iterations,
        batch_size=config.batch_size,
        lr=config.lr,
        binarize=None,
        seed=config.seed,
        log_every=every,
        eval_every=config.eval_every if x_eval is not None else 0,
        progress=progress,
        precision=precision,
    )
    hooks = [log_det] if x_eval is not None else []
    start = time.perf_counter()
    trained = Trainer(model, make_loss(objective, config), data, train_config, hooks, device=get_device()).run()
    record: dict[str, list] = {name: [trained.steps(name), trained[name]] for name in trained.names}
    record["seconds"] = [[config.iterations], [time.perf_counter() - start]]
    if path is not None:
        save_trained_model(path, model, record)
    return model.eval(), record


@torch.no_grad()
def code_statistics(model: VAE, x: torch.Tensor) -> dict[str, float]:
    """log det Cov[q(z)] from codes z ~ q(z|x) of the images ``x``, and where it comes from.

    Cov[q(z)] = Cov_x[mean(x)] + E_x[diag std(x)^2]: ``mean_spread`` and ``encoder_variance``
    are the averages over dimensions of the two parts; ``mmd`` is the full-batch MMD^2 of
    the codes against as many prior samples.
    """
    means, stds = aggregate_posterior(model, x)
    z = means + stds * torch.randn_like(means)
    return {
        "log_det": log_det_covariance(z).total,
        "mean_spread": float(means.var(0).mean()),
        "encoder_variance": float(stds.square().mean()),
        "mmd": full_batch_mmd(z),
    }


@torch.no_grad()
def aggregate_posterior(model: VAE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Means and standard deviations ``[n, dim]`` of q(z|x_i): q(z) is their equal mixture."""
    qs = [model.encode(xb) for xb in x.split(1000)]
    return torch.cat([q.mean for q in qs]), torch.cat([q.stddev for q in qs])


def aggregate_kl(means: torch.Tensor, stds: torch.Tensor, num_samples: int, generator: torch.Generator) -> float:
    """KL(q(z) || N(0, I)) for the mixture q(z), by Monte Carlo over z ~ q(z) with exact log q(z)."""
    pick = torch.randint(len(means), (num_samples,), generator=generator).to(means.device)
    noise = torch.randn(num_samples, means.shape[1], generator=generator).to(means.device)
    z = means[pick] + stds[pick] * noise
    log_p = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    return float((mixture_log_density(z, means, stds) - log_p).mean())


def _log_joint(model: VAE, x: torch.Tensor, z: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """log p(z) + log p(x_i|z) ``[B, G]`` for images ``x [B, ...]`` at codes ``z [G, dim]``."""
    out = []
    for zb in z.split(chunk):
        px = model.decode(zb)  # batch [g]
        log_lik = px.log_prob(x.unsqueeze(1))  # broadcast: [B, g]
        out.append(model.prior().log_prob(zb) + log_lik)
    return torch.cat(out, 1)


def _grid(lo: torch.Tensor, hi: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell centres ``[size^2, 2]`` of a regular grid over the box [lo, hi] and the cell area."""
    steps = [(hi[d] - lo[d]) / size for d in range(2)]
    axes = [lo[d] + steps[d] * (torch.arange(size, dtype=lo.dtype, device=lo.device) + 0.5) for d in range(2)]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2), steps[0] * steps[1]


@torch.no_grad()
def posterior_comparison(model: VAE, x: torch.Tensor, config: MnistInferenceConfig) -> dict[str, torch.Tensor]:
    """The true posterior p(z|x) of a 2-dimensional model, by enumeration on a grid, against q(z|x).

    p(z|x) = p(z) p(x|z) / p(x) is evaluated at the centres of a regular grid: first a coarse
    ``grid_size`` x ``grid_size`` grid over [-grid_reach, grid_reach]^2 (shared by all images)
    locates each posterior, then a fine grid of the same size over the box where the coarse
    log-posterior is within 30 nats of its maximum (widened by one coarse cell each way)
    resolves it. With the normalised cell masses W_g and cell area A,

        KL(p(z|x) || q(z|x)) ~= sum_g W_g [log(W_g / A) - log q(z_g|x)]      (midpoint rule)

    and samples of p(z|x) are cells drawn by W_g with a uniform offset inside the cell.
    ``cells_per_std`` (the smaller posterior standard deviation over the fine spacing) says
    whether the grid resolves the posterior; ``outside`` is the coarse mass left out of the box.

    The same grid gives log p(x) = log sum_g A p(z_g) p(x|z_g) (midpoint rule), and
    ``gap`` = log p(x) - ELBO(x) = KL(q(z|x) || p(z|x)), with the ELBO (Eq. (2) of the book,
    chapter 1) estimated from ``num_posterior_samples`` draws of q(z|x): the direction of
    the KL that variational inference minimises, beside the other direction in ``kl``.
    """
    if model.prior().event_shape != (2,):
        raise ValueError("the grid posterior needs a model with a 2-dimensional code")
    reach = torch.full((2,), float(config.grid_reach), dtype=x.dtype, device=x.device)
    coarse, _ = _grid(-reach, reach, config.grid_size)
    coarse_log = _log_joint(model, x, coarse)  # [B, G]
    coarse_spacing = 2 * reach / config.grid_size
    qz = model.encode(x)
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    kl, true, cells_per_std, outside, log_px = [], [], [], [], []
    for i in range(len(x)):
        keep = coarse_log[i] >= coarse_log[i].max() - 30
        lo = coarse[keep].min(0).values - coarse_spacing
        hi = coarse[keep].max(0).values + coarse_spacing
        outside.append(1 - coarse_log[i].softmax(0)[keep].sum())
        fine, area = _grid(lo, hi, config.grid_size)
        log_joint = _log_joint(model, x[i : i + 1], fine)[0]
        log_px.append(log_joint.logsumexp(0) + math.log(area))
        weights = log_joint.softmax(0)
        log_density = log_joint.log_softmax(0) - math.log(area)
        log_q = qz.log_prob(fine.unsqueeze(1))[:, i]  # q(z_g | x_i), [G]
        kl.append((weights * (log_density - log_q)).sum())
        mean = (weights[:, None] * fine).sum(0)
        std = ((weights[:, None] * (fine - mean) ** 2).sum(0)).sqrt()
        cells_per_std.append(float((std / ((hi - lo) / config.grid_size)).min()))
        pick = torch.multinomial(weights.cpu(), config.num_posterior_samples, replacement=True, generator=generator)
        jitter = (torch.rand(config.num_posterior_samples, 2, generator=generator) - 0.5).to(x.device)
        true.append(fine[pick.to(x.device)] + jitter * (hi - lo) / config.grid_size)
    approx = qz.sample((config.num_posterior_samples,))  # [S, B, 2]
    log_w = torch.stack([_log_joint(model, x[i : i + 1], approx[:, i])[0] for i in range(len(x))], 1) - qz.log_prob(approx)
    elbo = log_w.mean(0)
    return {
        "true": torch.stack(true),  # [B, S, 2]
        "approx": approx.transpose(0, 1),
        "kl": torch.stack(kl),
        "log_px": torch.stack(log_px),
        "elbo": elbo,
        "gap": torch.stack(log_px) - elbo,
        "cells_per_std": torch.tensor(cells_per_std),
        "outside": torch.stack(outside),
    }


@torch.no_grad()
def generation_gap(model: VAE, x_train: torch.Tensor, x_test: torch.Tensor, bandwidth: float) -> dict[str, float]:
    """MMD^2 in pixel space of reconstructions (of ``x_train``) and of ancestral samples to the test images.

    Both use the decoder's mean image; the Gaussian kernel's ``bandwidth`` is fixed from the
    test images so that the numbers of different models compare.
    """
    recon = model.reconstruct(x_train).flatten(1)
    samples = model.sample(len(x_train), mean=True).flatten(1)
    test = x_test.flatten(1)
    return {
        "reconstructions": float(mmd(recon, test, bandwidth=bandwidth)),
        "samples": float(mmd(samples, test, bandwidth=bandwidth)),
    }


def plot_fig2(results: dict, config: MnistInferenceConfig) -> Figure:
    """log det Cov[q(z)] against the training-set size, on training and test codes."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for obj in OBJECTIVES:
        for split, style in (("train", "-o"), ("test", "--s")):
            values = [results["fig2"][obj][str(n)][split]["log_det"] for n in config.sizes]
            ax.plot(config.sizes, values, style, color=COLORS[obj], label=f"{LABELS[obj]}, {split} codes")
    ax.axhline(0.0, color="tab:purple", lw=1, label="p(z) = N(0, I)")
    ax.set(xscale="log", xlabel="training-set size N", ylabel="log det Cov[q(z)]",
           title=f"Fig. 2 reproduced (z = {config.latent_dim}, {config.iterations} steps per model)")
    ax.text(0.02, 0.02, "paper: ELBO above 0 at every N, most at small N; MMD-VAE near 0",
            transform=ax.transAxes, fontsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_training(results: dict, config: MnistInferenceConfig) -> Figure:
    """log det Cov[q(z)] of test codes over the training of the z = 10 models at N = plot_size."""
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    for obj in OBJECTIVES:
        steps, values = results["training"][f"{obj}-z{config.latent_dim}-N{config.plot_size}"]["log_det_test"]
        ax.plot(steps, values, "-o", color=COLORS[obj], label=LABELS[obj])
    ax.axhline(0.0, color="tab:purple", lw=1, label="p(z) = N(0, I)")
    ax.set(xlabel="training step", ylabel="log det Cov[q(z)], test codes",
           title=f"During training (N = {config.plot_size}, z = {config.latent_dim})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_fig3(aggregates: dict[str, tuple[torch.Tensor, torch.Tensor]], results: dict) -> Figure:
    """Contours of p(z) and of q(z) (test set, z = 2) for MMD-VAE and ELBO."""
    reach = max(4.0, max(float(means.abs().max()) for means, _ in aggregates.values()) + 0.5)
    grid = torch.linspace(-reach, reach, 201)
    zz = torch.stack(torch.meshgrid(grid, grid, indexing="xy"), -1).reshape(-1, 2)
    panels = {"p(z)": torch.distributions.Normal(0.0, 1.0).log_prob(zz).sum(-1)}
    for obj in ("mmd", "elbo"):
        means, stds = (t.cpu() for t in aggregates[obj])
        panels[f"q(z), {LABELS[obj]}"] = mixture_log_density(zz, means, stds)
    fig, axes = plt.subplots(1, 3, figsize=(7, 2.9), layout="constrained")
    levels = np.linspace(0, 0.2, 11)[1:]
    for ax, (title, log_density) in zip(axes, panels.items()):
        ax.contour(grid.numpy(), grid.numpy(), log_density.exp().reshape(len(grid), len(grid)).numpy(), levels=levels, cmap="viridis")
        shown = next((o for o in OBJECTIVES if LABELS[o] in title), None)
        if shown:
            title = title.replace(" (λ=1000)", "") + f"\nKL(q(z)||p(z)) = {results['fig3'][shown]['kl']:.2f}"
        ax.set_title(title, fontsize=9)
        ax.set(xlabel="z1", ylabel="z2", aspect="equal")
        ax.tick_params(labelsize=8)
    return fig


def plot_fig4(comparisons: dict[str, dict[str, torch.Tensor]]) -> Figure:
    """True posterior samples (green) against q(z|x) samples (blue), each panel zoomed on its pair.

    Every panel is square and centred on its two clouds; its title gives the width of the
    window in z units, so the panels compare by their titles (one common scale would shrink
    the ELBO's narrow posteriors to dots).
    """
    n = min(4, comparisons["elbo"]["true"].shape[0])
    fig, axes = plt.subplots(2, n, figsize=(7, 4.2), squeeze=False, layout="constrained")
    for row, obj in enumerate(OBJECTIVES):
        c = comparisons[obj]
        for i, ax in enumerate(axes[row]):
            true, approx = c["true"][i].cpu(), c["approx"][i].cpu()
            both = torch.cat([true, approx])
            lo, hi = both.quantile(0.002, 0), both.quantile(0.998, 0)
            centre, half = (lo + hi) / 2, 0.6 * float((hi - lo).max())
            ax.scatter(*true.T.numpy(), s=3, color="tab:green", alpha=0.5, label="p(z|x)")
            ax.scatter(*approx.T.numpy(), s=3, color="tab:blue", alpha=0.5, label="q(z|x)")
            ax.set(xlim=(centre[0] - half, centre[0] + half), ylim=(centre[1] - half, centre[1] + half),
                   xticks=[], yticks=[], aspect="equal")
            ax.set_title(f"KL(p||q) {c['kl'][i]:.1f}, gap {c['gap'][i]:.1f}\nwidth {2 * half:.2f}", fontsize=8)
        axes[row, 0].set_ylabel(LABELS[obj].replace(" (λ=1000)", ""), fontsize=9)
    axes[0, 0].legend(fontsize=7, markerscale=3)
    return fig


def plot_fig5(images: dict[str, dict[str, torch.Tensor]]) -> Figure:
    """Reconstructions of training images and ancestral samples, up to 8 x 8 each, per model."""
    side = min(8, math.isqrt(min(len(v) for per_model in images.values() for v in per_model.values())))
    fig, axes = plt.subplots(2, 2, figsize=(7, 7.2), layout="constrained")
    for row, obj in enumerate(OBJECTIVES):
        for col, kind in enumerate(("reconstructions", "samples")):
            grid = images[obj][kind][: side * side].cpu().view(side, side, 28, 28)
            grid = grid.permute(0, 2, 1, 3).reshape(side * 28, side * 28)
            axes[row, col].imshow(grid.numpy(), cmap="gray_r", vmin=0, vmax=1)
            axes[row, col].set_title(f"{LABELS[obj]}: {kind}", fontsize=10)
            axes[row, col].axis("off")
    return fig


def plot_collapse(results: dict) -> Figure:
    """KL(q(z|x) || p(z)) by tenths of training of the 2-dimensional models, one line per seed,
    one panel per variant (MMD-VAE and its controls, the ELBO)."""
    names = list(results["collapse"])
    fig, axes = plt.subplots(1, len(names), figsize=(7, 2.6), sharey=True, layout="constrained", squeeze=False)
    for ax, name in zip(axes[0], names):
        v = results["variants"][name]
        for run in results["collapse"][name]:
            steps, kl = run["kl"]
            ax.plot(steps, kl, "-o", ms=3, label=f"seed {run['seed']}")
        ax.axhline(0.5, color="0.6", lw=0.8, ls="--")
        title = "ELBO" if name == "elbo" else "MMD-VAE"
        ax.set_title(f"{title}\nlr {v['lr']:g}, batch {v['batch_size']}", fontsize=8)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0, 0].set_ylabel("KL(q(z|x)||p(z)), nats", fontsize=8)
    axes[0, 0].set_yscale("symlog", linthresh=0.1)
    axes[0, 0].set_ylim(bottom=0)
    axes[0, -1].legend(fontsize=7)
    return fig


def run(config: MnistInferenceConfig | str | None = None, progress: bool = True, cache: bool = True) -> Outcome:
    """Train ELBO and MMD-VAE across training-set sizes and measure Figs. 2-5.

    With ``cache`` the trained models are kept in the user's cache directory, keyed by
    everything that determines them, so a second run only measures.
    """
    config = resolve_config(config, MnistInferenceConfig)
    start = time.perf_counter()
    device = get_device()
    x_all, _ = training_subset(max(config.sizes), seed=config.seed, binarize="stochastic")
    x_test = load_mnist("test", binarize="stochastic", seed=config.seed)[0][: config.num_codes].to(device)
    g = torch.Generator().manual_seed(config.seed)
    results: dict = {"fig2": {obj: {} for obj in OBJECTIVES}, "fig3": {}, "fig4": {}, "fig5": {}, "training": {}}
    fig5_images, aggregates, comparisons = {}, {}, {}
    pixel_bandwidth = float(squared_distances(x_test[:500].flatten(1), x_test[:500].flatten(1)).median()) / 2
    # the training sets are the first N of a shuffle of max(sizes) images, binarized once
    data_description = {"subset": max(config.sizes)} if cache else None

    for obj in OBJECTIVES:
        for n in config.sizes:
            x_train = x_all[:n].to(device)
            x_eval = x_test if n == config.plot_size else None
            model, history = train_model(obj, x_train, config.latent_dim, config, x_eval, progress, data_description)
            results["training"][f"{obj}-z{config.latent_dim}-N{n}"] = history
            with seeded(config.seed + n, device):  # measurements draw the same codes, cached or trained now
                results["fig2"][obj][str(n)] = {
                    "train": code_statistics(model, x_train[: config.num_codes]),
                    "test": code_statistics(model, x_test),
                }
                if n == config.plot_size:
                    shown = x_train[: config.num_generated]
                    results["fig5"][obj] = generation_gap(model, shown, x_test, pixel_bandwidth)
                    fig5_images[obj] = {"reconstructions": model.reconstruct(shown[:64]),
                                        "samples": model.sample(64, mean=True)}

    # the 2-dimensional models (Figs. 3 and 4) over the training seeds, and MMD-VAE's controls
    x_train = x_all[: config.plot_size].to(device)
    plot_config = replace(
        config,
        iterations=config.plot_iterations or config.iterations,
        batch_size=config.plot_batch_size or config.batch_size,
    )
    variants = {"elbo": ("elbo", plot_config), "mmd": ("mmd", plot_config)}
    if config.control_batch_size:
        variants[f"mmd-batch{config.control_batch_size}"] = ("mmd", replace(plot_config, batch_size=config.control_batch_size))
    if config.control_lr:
        variants[f"mmd-lr{config.control_lr:g}"] = ("mmd", replace(plot_config, lr=config.control_lr))
    results["variants"] = {name: {"objective": obj, "lr": c.lr, "batch_size": c.batch_size, "iterations": c.iterations}
                           for name, (obj, c) in variants.items()}
    results["plot_seeds"] = list(config.plot_seeds)
    results["fig3_seeds"] = {obj: [] for obj in OBJECTIVES}
    results["fig4_seeds"] = {obj: [] for obj in OBJECTIVES}
    results["collapse"] = {name: [] for name in variants}
    for seed in config.plot_seeds:
        for name, (obj, variant_config) in variants.items():
            model, history = train_model(obj, x_train, config.plot_dim, replace(variant_config, seed=seed),
                                         progress=progress, cache_description=data_description)
            steps, kl = history["kl"]
            # the code "carries x" from the first record after which KL(q(z|x)||p(z)) stays above 0.5 nats
            escape = next((s for i, s in enumerate(steps) if min(kl[i:]) > 0.5), None)
            results["collapse"][name].append({"seed": seed, "kl": [steps, kl], "escape_step": escape,
                                              "early_max_kl": max(kl[:3]), "final_kl": kl[-1],
                                              "final_reconstruction": history["reconstruction"][1][-1]})
            if name not in OBJECTIVES:
                continue
            with seeded(config.seed + seed, device):  # the same codes whether trained now or cached
                means, stds = aggregate_posterior(model, x_test)
                fig3 = {"kl": aggregate_kl(means, stds, num_samples=len(x_test), generator=g),
                        **code_statistics(model, x_test)}
                comparison = posterior_comparison(model, x_test[: config.num_posterior_images], config)
            fig4 = {
                "cells_per_std": comparison["cells_per_std"].tolist(),
                "outside": comparison["outside"].tolist(),
                "kl": comparison["kl"].tolist(),
                "median_kl": float(comparison["kl"].median()),
                "log_px": comparison["log_px"].tolist(),
                "elbo": comparison["elbo"].tolist(),
                "gap": comparison["gap"].tolist(),
                "median_gap": float(comparison["gap"].median()),
            }
            results["fig3_seeds"][obj].append({"seed": seed, **fig3})
            results["fig4_seeds"][obj].append({"seed": seed, **fig4})
            if seed == config.plot_seeds[0]:  # the figures show the first seed
                results["training"][f"{obj}-z{config.plot_dim}-N{config.plot_size}"] = history
                aggregates[obj], comparisons[obj] = (means, stds), comparison
                results["fig3"][obj], results["fig4"][obj] = fig3, fig4

    figures = {
        "fig2": plot_fig2(results, config),
        "fig3": plot_fig3(aggregates, results),
        "fig4": plot_fig4(comparisons),
        "fig5": plot_fig5(fig5_images),
        "training": plot_training(results, config),
        "collapse": plot_collapse(results),
    }
    return Outcome("fig2-5", config, results, figures, seconds=time.perf_counter() - start)

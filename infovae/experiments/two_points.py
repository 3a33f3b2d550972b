"""Fig. 1 of the paper (book chapter 6): ELBO against InfoVAE on a data set of two points.

The data are x = -1 and x = +1 with probability 1/2 each; z is one-dimensional; encoder
and decoder are the 200-200 leaky-ReLU MLPs with Gaussian heads of ``build_vae("toy", 1)``.
Two objectives of Eq. (6) (book chapter 4) are trained on it with Adam:

* ``"elbo"``: alpha = 0, lambda = 1 (no divergence term);
* ``"infovae"``: alpha = 0, lambda = 500, D = MMD against 500 fresh prior samples per batch.

Proposition 1 (book chapter 2) says that the ELBO can grow by pushing the two posteriors
q(z|x=-1), q(z|x=+1) apart and shrinking them, so that the aggregate posterior
q(z) = (q(z|-1) + q(z|+1)) / 2 drifts away from the prior p(z) = N(0, 1). The experiment
measures, for each model, the posterior means and standard deviations, q(z) against p(z)
(KL by Gauss-Hermite quadrature and MMD^2 in closed form, both exact for the two-Gaussian
mixture), and what the decoder generates from z ~ q(z|x) (reconstructions) and from
z ~ p(z) (samples of the model).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from ..data import two_point_data
from ..metrics.latent import mixture_log_density
from ..networks import build_vae
from ..objective import InfoVAELoss
from ..runtime import get_device
from ..train import Trainer, TrainConfig
from ..vae import VAE
from .base import Outcome, config_for_profile, named_objective, resolve_config

DATA_POINTS: tuple[float, float] = (-1.0, 1.0)
MODELS: tuple[str, ...] = ("elbo", "infovae")
NEAR: float = 0.1  # a generated x counts as "on the data" within this distance of -1 or +1


@dataclass
class TwoPointsConfig:
    """Sizes of the Fig. 1 experiment (the paper's constants by default).

    Attributes:
        iterations: Adam steps per model (not given in the paper; our choice per profile).
        batch_size: draws of x per step (paper: 500).
        lr: Adam learning rate (paper: 1e-4).
        lam: lambda of InfoVAE (paper: 500; alpha = 0).
        num_prior_samples: prior samples per batch for the MMD (paper: 500).
        data_size: draws of the two-point distribution that the trainer shuffles through.
        eval_every: steps between records of the posterior means and standard deviations.
        num_samples: draws of z (and x) behind each density of the figure and each fraction.
        seed: seed of the data, the initialisation and the training.
    """

    iterations: int = 100_000
    batch_size: int = 500
    lr: float = 1e-4
    lam: float = 500.0
    num_prior_samples: int = 500
    data_size: int = 10_000
    eval_every: int = 1000
    num_samples: int = 100_000
    seed: int = 0

    @classmethod
    def for_profile(cls, profile: str) -> "TwoPointsConfig":
        """The configuration of a profile: ``quick`` (CI), ``book`` (2-core CPU) or ``paper``."""
        return config_for_profile(cls, profile, {
            "quick": dict(iterations=300, eval_every=50, num_samples=20_000),
            "book": dict(iterations=6000, eval_every=250),
            "paper": dict(),
        })


def make_loss(name: str, config: TwoPointsConfig) -> InfoVAELoss:
    """The objective of model ``name`` (``"elbo"`` or ``"infovae"``)."""
    if name == "elbo":
        return named_objective("elbo")
    if name == "infovae":
        return named_objective("mmd", alpha=0.0, lam=config.lam, num_prior_samples=config.num_prior_samples)
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")


@torch.no_grad()
def posteriors(model: VAE) -> tuple[torch.Tensor, torch.Tensor]:
    """Means and standard deviations of q(z|x=-1) and q(z|x=+1), each a float64 tensor [2]."""
    x = torch.tensor(DATA_POINTS, device=model.device).unsqueeze(1)
    qz = model.encode(x)
    return qz.mean[:, 0].double().cpu(), qz.stddev[:, 0].double().cpu()


def mixture_kl_to_standard_normal(means, stds, nodes: int = 300) -> float:
    """KL(q || N(0, 1)) for q the equal-weight mixture of N(means_i, stds_i^2), 1-dim.

    Gauss-Hermite quadrature of E_q[log q(z) - log p(z)] around each component, exact up to
    the smoothness of the log-density ratio at the component's scale (300 nodes each: about
    1e-7 nats where the components overlap).
    """
    means, stds = np.asarray(means, dtype=np.float64), np.asarray(stds, dtype=np.float64)
    t, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / math.sqrt(2 * math.pi)
    z = means[:, None] + stds[:, None] * t  # [components, nodes]
    log_q = mixture_log_density(torch.from_numpy(z.reshape(-1, 1)), torch.from_numpy(means[:, None]),
                                torch.from_numpy(stds[:, None])).numpy().reshape(z.shape)
    log_ratio = log_q - (-0.5 * z**2 - 0.5 * math.log(2 * math.pi))
    return float((log_ratio @ w).mean())


def mixture_mmd_to_standard_normal(means, stds, bandwidth: float = 1.0) -> float:
    """Population MMD^2(q, N(0, 1)) with the kernel exp(-(a-b)^2 / (2 bandwidth)), closed form.

    q is the equal-weight mixture of N(means_i, stds_i^2); for Gaussians
    E k(a, b) = sqrt(h / (h + v)) exp(-d^2 / (2 (h + v))), d the difference of the means and
    v the sum of the variances.
    """
    m, v = np.asarray(means, dtype=np.float64), np.asarray(stds, dtype=np.float64) ** 2

    def k(d, var):
        return np.sqrt(bandwidth / (bandwidth + var)) * np.exp(-(d**2) / (2 * (bandwidth + var)))

    qq = k(m[:, None] - m[None, :], v[:, None] + v[None, :]).mean()
    qp = k(m, v + 1.0).mean()
    return float(qq - 2 * qp + k(0.0, 2.0))


@torch.no_grad()
def generate(model: VAE, source: str, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` draws (z, x ~ p(x|z)) with z from ``source``: ``"prior"``, ``"x=-1"`` or ``"x=+1"``."""
    device = model.device
    if source == "prior":
        z = torch.randn(n, 1, generator=generator).to(device)
    else:
        x = torch.full((n, 1), DATA_POINTS[source == "x=+1"], device=device)
        qz = model.encode(x)
        z = qz.mean + qz.stddev * torch.randn(n, 1, generator=generator).to(device)
    px = model.decode(z)
    x = px.mean + px.stddev * torch.randn(n, 1, generator=generator).to(device)
    return z[:, 0].cpu(), x[:, 0].cpu()


def near_data(x: torch.Tensor) -> float:
    """Fraction of the values ``x`` within ``NEAR`` of -1 or +1."""
    return float(((x.abs() - 1).abs() < NEAR).double().mean())


def wasserstein_1d(a: torch.Tensor, b: torch.Tensor) -> float:
    """Wasserstein-1 distance between two equal-size 1-dim samples (mean gap of sorted values)."""
    return float((a.sort().values - b.sort().values).abs().mean())


def train(name: str, config: TwoPointsConfig, progress: bool = True) -> tuple[VAE, dict[str, list]]:
    """Train model ``name`` on the two points; returns it and its posterior trajectory."""
    torch.manual_seed(config.seed)
    model = build_vae("toy", 1)
    data = two_point_data(config.data_size, seed=config.seed)

    def record(trainer: Trainer) -> dict[str, float]:
        assert isinstance(trainer.model, VAE)
        mean, std = posteriors(trainer.model)
        return {"mean_minus": float(mean[0]), "mean_plus": float(mean[1]), "std_minus": float(std[0]),
                "std_plus": float(std[1])}

    train_config = TrainConfig(
        iterations=config.iterations,
        batch_size=config.batch_size,
        lr=config.lr,
        binarize=None,
        seed=config.seed,
        log_every=config.eval_every,
        eval_every=config.eval_every,
        progress=progress,
    )
    trainer = Trainer(model, make_loss(name, config), data, train_config, hooks=[record], device=get_device())
    history = trainer.run()
    keys = ("loss", "mean_minus", "mean_plus", "std_minus", "std_plus")
    trajectory: dict[str, list] = {"step": history.steps("loss"), **{k: history[k] for k in keys}}
    return model.eval(), trajectory


def summarize(model: VAE, config: TwoPointsConfig) -> dict:
    """The numbers of Fig. 1 for one trained model (see the module docstring)."""
    mean, std = posteriors(model)
    g = torch.Generator().manual_seed(config.seed + 1)
    _, x_prior = generate(model, "prior", config.num_samples, g)
    x_recon = torch.cat([generate(model, s, config.num_samples // 2, g)[1] for s in ("x=-1", "x=+1")])
    var_q = float((std**2 + mean**2).mean() - mean.mean() ** 2)
    return {
        "posterior_mean": mean.tolist(),
        "posterior_std": std.tolist(),
        "separation": float((mean[1] - mean[0]).abs() / std.mean()),
        "q_variance": var_q,
        "kl_q_prior": mixture_kl_to_standard_normal(mean, std),
        "mmd_q_prior": mixture_mmd_to_standard_normal(mean, std),
        "reconstructions_near_data": near_data(x_recon),
        "samples_near_data": near_data(x_prior),
        "samples_vs_reconstructions": wasserstein_1d(x_prior[: len(x_recon)], x_recon),
    }


def plot_fig1(models: dict[str, VAE], config: TwoPointsConfig) -> Figure:
    """Our Fig. 1: q(z|x) against p(z) (top) and p(x|z) for z from q(z|x) and p(z) (bottom)."""
    colors = {"x=-1": "tab:green", "x=+1": "tab:red", "prior": "tab:purple"}
    fig, axes = plt.subplots(2, len(models), figsize=(5 * len(models), 6.5), squeeze=False)
    for col, (name, model) in enumerate(models.items()):
        mean, std = posteriors(model)
        reach = max(4.0, float((mean.abs() + 4 * std).max()))
        z = np.linspace(-reach, reach, 4001)
        top, bottom = axes[0, col], axes[1, col]
        for i, source in enumerate(("x=-1", "x=+1")):
            density = np.exp(-0.5 * ((z - mean[i].item()) / std[i].item()) ** 2) / (std[i].item() * math.sqrt(2 * math.pi))
            top.plot(z, density, color=colors[source], label=f"q(z|{source})")
        top.plot(z, np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi), color=colors["prior"], label="p(z)")
        top.set(title=f"{name.upper() if name == 'elbo' else 'InfoVAE (MMD, λ=%g)' % config.lam}", xlabel="z")
        top.set_yscale("log")
        top.set_ylim(1e-3, 3 / (math.sqrt(2 * math.pi) * std.min().item()))
        top.legend(fontsize=8)
        g = torch.Generator().manual_seed(config.seed + 2)
        bins = np.linspace(-2, 2, 161)
        for source in ("x=-1", "x=+1", "prior"):
            _, x = generate(model, source, config.num_samples, g)
            label = "z ~ p(z)" if source == "prior" else f"z ~ q(z|{source})"
            bottom.hist(x.numpy(), bins=bins, density=True, histtype="step", color=colors[source], label=label)
        bottom.set(xlabel="x ~ p(x|z)", ylabel="density")
        bottom.set_yscale("log")
        bottom.legend(fontsize=8)
    axes[0, 0].set_ylabel("density (log scale)")
    fig.suptitle("Fig. 1 reproduced. Paper: ELBO pushes q(z|x=±1) away from 0, InfoVAE keeps q(z) close to p(z)")
    fig.tight_layout()
    return fig


def plot_trajectories(trajectories: dict[str, dict[str, list[float]]]) -> Figure:
    """Posterior means and standard deviations of both models over training."""
    fig, (ax_mean, ax_std) = plt.subplots(1, 2, figsize=(10, 3.5))
    for name, color in zip(trajectories, ("tab:blue", "tab:orange")):
        t = trajectories[name]
        for sign, style in (("minus", "--"), ("plus", "-")):
            label = f"{name}, x={'-1' if sign == 'minus' else '+1'}"
            ax_mean.plot(t["step"], t[f"mean_{sign}"], style, color=color, label=label)
            ax_std.plot(t["step"], t[f"std_{sign}"], style, color=color, label=label)
    ax_mean.set(xlabel="step", ylabel="mean of q(z|x)")
    ax_std.set(xlabel="step", ylabel="std of q(z|x)", yscale="log")
    ax_mean.legend(fontsize=8)
    fig.tight_layout()
    return fig


def run(config: TwoPointsConfig | str | None = None, progress: bool = True) -> Outcome:
    """Train ELBO and InfoVAE on the two points and measure Fig. 1 (config or profile name)."""
    config = resolve_config(config, TwoPointsConfig)
    start = time.perf_counter()
    models, trajectories, results = {}, {}, {}
    for name in MODELS:
        models[name], trajectories[name] = train(name, config, progress)
        results[name] = summarize(models[name], config) | {"trajectory": trajectories[name]}
    figures = {"fig1": plot_fig1(models, config), "training": plot_trajectories(trajectories)}
    return Outcome("fig1", config, results, figures, seconds=time.perf_counter() - start)

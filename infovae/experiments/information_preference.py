"""The information preference on real images (book chapter 8): does the ELBO ignore z?

Chapter 3 proves it on a finite model: when the decoder family can represent the data
distribution without z, the ELBO's optimum has I_q(x; z) = 0, while InfoVAE with alpha = 1
keeps the information. This experiment tests it with trained networks on binarized MNIST
downsampled to ``image_size`` x ``image_size`` (2x2 mean pooling of the grey levels, then a
fresh Bernoulli draw every batch), with the gated PixelCNN of ``infovae.pixelcnn`` (no blind
spot) as decoder and the batch-normalized convolutional encoder:

1. The decoder is first trained alone, as an unconditional PixelCNN (z held at 0, the
   encoder unused), for ``pretrain_steps``: it learns to model the digits without a code.
2. From that decoder, each objective trains encoder and decoder for ``steps``:

   * ``"elbo"``: Eq. (6) with alpha = 0, lambda = 1 (the negative ELBO, literally);
   * ``"mmd"``: MMD-VAE with alpha = 1, lambda = ``lam`` (1000, as the paper);
   * ``"elbo-authors"``: the ELBO with the authors' per-pixel weighting (beta = pixels/d,
     ``InfoVAELoss.authors_weighting``);
   over ``seeds``; and, for the first seed, ``"elbo-cold"``: the literal ELBO from a fresh
   decoder (no step 1): does the warm start decide the outcome, or the objective?
   Then a decoder-strength sweep: ``"elbo"`` and ``"mmd"`` with decoders of
   ``sweep_layers`` gated layers (first seed), the receptive field growing with the depth;
   and a weight sweep: ``"beta"``, the ELBO with its KL term weighted by each of ``betas``
   (first seed), between the literal ELBO (beta = 1) and the authors' weighting.

Every run is measured on held-out images: ``kl`` (E KL(q(z|x)||p(z)), nats), the mutual
information ``mutual_information`` I_q(x; z) over ``num_info_images`` test images (at most
log N), the RBF-SVM error ``svm_error`` on sampled codes with ``num_labels`` labels,
``shuffled_gap`` (nats of log p(x|z) lost when codes are shuffled across images) and
``test_nll_bound`` (-ELBO, an upper bound on -log p(x), nats per image). Trained models are
cached like the other Part II models (``infovae.experiments.base``).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

from ..data import load_mnist
from ..metrics import encode_codes, mutual_information, semi_supervised_error, shuffled_code_gap
from ..networks import ConvEncoder, PointMass
from ..objective import InfoVAELoss
from ..pixelcnn import PixelCNNConfig, PixelCNNDecoder
from ..precision import resolve_precision
from ..runtime import get_device, seeded
from ..train import Trainer, TrainConfig, evaluate
from ..vae import VAE
from .base import (
    Outcome,
    cached_evaluation,
    seed_summary,
    config_for_profile,
    load_trained_model,
    named_objective,
    resolve_config,
    save_trained_model,
    trained_model_path,
)

OBJECTIVES: tuple[str, ...] = ("elbo", "mmd", "elbo-authors")
LABELS: dict[str, str] = {
    "elbo": "ELBO (Eq. 6, warm decoder)",
    "mmd": "MMD-VAE (alpha = 1, warm decoder)",
    "elbo-authors": "ELBO, authors' weighting",
    "elbo-cold": "ELBO (Eq. 6, fresh decoder)",
}
SHORT_LABELS: dict[str, str] = {"elbo": "ELBO\n(Eq. 6)", "mmd": "MMD-VAE", "elbo-authors": "ELBO\n(authors')"}
METRICS: tuple[str, ...] = ("kl", "mutual_information", "svm_error", "shuffled_gap", "test_nll_bound")
CACHE_VERSION = 1


@dataclass(frozen=True)
class PreferenceConfig:
    """Sizes of the information-preference experiment (book profile by default).

    Attributes:
        image_size: side of the downsampled images (28: no downsampling; 14: 2x2 pooling).
        latent_dim: dimension of z.
        layers, channels: the gated PixelCNN of the main comparison.
        encoder_hidden: width of the encoder's fully connected layer.
        pretrain_steps: steps of the decoder alone (z = 0) before the objectives start.
        steps: steps of each objective (RMSProp, gradients clipped to [-1, 1], as the paper).
        batch_size, lr: minibatch and RMSProp learning rate (paper: 100, 1e-3).
        lam: lambda of MMD-VAE (alpha = 1).
        seeds: training seeds of the main comparison.
        objectives: which of ``OBJECTIVES`` to run over ``seeds``.
        cold_start: also train the literal ELBO from a fresh decoder (first seed).
        sweep_layers: decoder depths of the strength sweep (ELBO and MMD-VAE, first seed);
            the main depth ``layers`` is included from the main comparison.
        betas: KL weights of the weight sweep (the ELBO with beta x KL, first seed).
        num_info_images: test images for I_q(x; z), the shuffled codes and the -ELBO.
        svm_pool, svm_test, num_labels, svm_draws: the semi-supervised SVM (panel E's metric).
        precision: training precision (``"auto"``: bf16 where the hardware has it).
    """

    image_size: int = 14
    latent_dim: int = 5
    layers: int = 6
    channels: int = 32
    encoder_hidden: int = 256
    pretrain_steps: int = 1000
    steps: int = 1000
    batch_size: int = 100
    lr: float = 1e-3
    lam: float = 1000.0
    seeds: tuple[int, ...] = (0, 1, 2)
    objectives: tuple[str, ...] = OBJECTIVES
    cold_start: bool = True
    sweep_layers: tuple[int, ...] = (1, 3)
    betas: tuple[float, ...] = (1.5, 2.0, 4.0)
    num_info_images: int = 1000
    svm_pool: int = 5000
    svm_test: int = 2000
    num_labels: int = 1000
    svm_draws: int = 3
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.image_size not in (14, 28):
            raise ValueError(f"image_size must be 14 or 28, got {self.image_size}")
        unknown = set(self.objectives) - set(OBJECTIVES)
        if unknown or not self.objectives:
            raise ValueError(f"objectives must be among {OBJECTIVES}, got {self.objectives}")
        if not self.seeds:
            raise ValueError("seeds must not be empty")
        for name in ("latent_dim", "layers", "channels", "encoder_hidden", "steps", "batch_size", "num_info_images"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.pretrain_steps < 0 or min(self.sweep_layers, default=1) < 1:
            raise ValueError("pretrain_steps must be non-negative and sweep_layers positive")
        if self.num_labels > self.svm_pool:
            raise ValueError(f"num_labels={self.num_labels} exceeds svm_pool={self.svm_pool}")

    @property
    def epochs(self) -> float:
        """Passes over the 50k training images made by each objective's training."""
        return self.steps * self.batch_size / 50_000

    @classmethod
    def for_profile(cls, profile: str) -> "PreferenceConfig":
        """``quick`` (CI smoke scale), ``book`` (a 2-core CPU, the defaults) or ``paper``."""
        return config_for_profile(cls, profile, {
            "quick": dict(
                layers=2, channels=8, encoder_hidden=32, pretrain_steps=30, steps=30, batch_size=50,
                seeds=(0,), cold_start=False, sweep_layers=(1,), betas=(2.0,),
                num_info_images=200,
                svm_pool=300, svm_test=200, num_labels=200, svm_draws=1,
            ),
            "light": dict(pretrain_steps=500, steps=500, seeds=(0,), cold_start=False, sweep_layers=(1,), betas=(1.5,)),
            "book": dict(),
            "paper": dict(image_size=28, layers=12, encoder_hidden=512, pretrain_steps=10_000, steps=20_000,
                          svm_pool=50_000, svm_test=10_000, num_info_images=10_000, svm_draws=10),
        })


def downsample(x: torch.Tensor, image_size: int) -> torch.Tensor:
    """Grey-level images ``[N, 1, 28, 28]`` mean-pooled to ``image_size`` (14: 2x2 blocks)."""
    if image_size == 28:
        return x
    return F.avg_pool2d(x, 28 // image_size)


class ZeroEncoder(nn.Module):
    """q(z|x) = a point mass at 0: trains the decoder alone, as an unconditional PixelCNN."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim

    def forward(self, x: torch.Tensor) -> PointMass:
        return PointMass(x.new_zeros(x.shape[0], self.latent_dim))


def _decoder(config: PreferenceConfig, layers: int) -> PixelCNNDecoder:
    size = (config.image_size, config.image_size)
    return PixelCNNDecoder(PixelCNNConfig(latent_dim=config.latent_dim, image_size=size, layers=layers, channels=config.channels))


def _train_config(config: PreferenceConfig, steps: int, seed: int, progress: bool) -> TrainConfig:
    return TrainConfig(
        iterations=steps, batch_size=config.batch_size, optimizer="rmsprop", lr=config.lr, clip="value",
        clip_value=1.0, binarize="stochastic", seed=seed, log_every=max(1, steps // 20), progress=progress,
        precision=resolve_precision(config.precision, get_device()),  # "auto": bf16 where native, else fp32
    )


def _description(config: PreferenceConfig, **what) -> dict:
    keep = ("image_size", "latent_dim", "channels", "encoder_hidden", "batch_size", "lr", "precision")
    return {"v": CACHE_VERSION, **{k: asdict(config)[k] for k in keep}, **what}


def make_loss(objective: str, config: PreferenceConfig, beta: float | None = None) -> InfoVAELoss:
    """The objective of a run (see the module docstring); ``"beta"`` needs ``beta``."""
    if objective in ("beta", "elbo", "elbo-cold", "mmd", "elbo-authors"):
        return named_objective("elbo" if objective == "elbo-cold" else objective, alpha=1.0, lam=config.lam,
                               latent_dim=config.latent_dim, num_pixels=config.image_size**2, beta=beta)
    raise ValueError(f"unknown objective {objective!r}; choose one of {', '.join((*OBJECTIVES, 'elbo-cold', 'beta'))}")


def pretrained_decoder(
    config: PreferenceConfig, layers: int, seed: int, x_train: torch.Tensor, *, cache: bool = True, progress: bool = True
) -> PixelCNNDecoder:
    """The decoder trained alone (z = 0) for ``config.pretrain_steps`` (cached)."""
    what = {"stage": "pretrain", "layers": layers, "seed": seed, "steps": config.pretrain_steps}
    path = trained_model_path("information-preference", f"pretrain-l{layers}-s{seed}", _description(config, **what))
    return train_decoder_alone(path, config.latent_dim, lambda: _decoder(config, layers), seed, x_train,
                               _train_config(config, config.pretrain_steps, seed, progress) if config.pretrain_steps else None,
                               cache=cache)


def train_decoder_alone(path: Path, latent_dim: int, make_decoder: Callable[[], PixelCNNDecoder], seed: int,
                        x_train: torch.Tensor, train_config: TrainConfig | None, *, cache: bool = True) -> PixelCNNDecoder:
    """A decoder (built by ``make_decoder`` from ``seed``) trained alone as an unconditional model
    (``ZeroEncoder``: z = 0) with ``train_config`` (``None``: left untrained), read from and written
    to the cache at ``path``."""
    device = get_device()
    with seeded(seed, device):
        model = VAE(ZeroEncoder(latent_dim), make_decoder())
    decoder = model.decoder
    assert isinstance(decoder, PixelCNNDecoder)
    if cache and load_trained_model(path, model, device) is not None:
        return decoder.to(device)
    if train_config is not None:
        Trainer(model, InfoVAELoss.autoencoder(), x_train, train_config, device=device).run()
    if cache:
        save_trained_model(path, model, {})
    return decoder


def run_path(config: PreferenceConfig, objective: str, layers: int, seed: int, beta: float | None = None):
    """Where the trained model of one run is cached (the key holds everything that fixes its weights)."""
    warm = objective != "elbo-cold"
    what = {"objective": objective, "layers": layers, "seed": seed, "steps": config.steps, "lam": config.lam,
            "pretrain_steps": config.pretrain_steps if warm else 0}
    stem = f"{objective}-l{layers}-s{seed}"
    if objective == "beta":
        what["beta"], stem = beta, f"beta{beta:g}-l{layers}-s{seed}"
    return trained_model_path("information-preference", stem, _description(config, **what))


def train_run(
    config: PreferenceConfig, objective: str, layers: int, seed: int, x_train: torch.Tensor,
    *, beta: float | None = None, cache: bool = True, progress: bool = True,
) -> tuple[VAE, dict]:
    """Train (or load) one run; returns the model in eval mode and its loss history."""
    device = get_device()
    path = run_path(config, objective, layers, seed, beta)
    with seeded(seed + 1000, device):
        encoder = ConvEncoder(config.latent_dim, hidden=config.encoder_hidden, batch_norm=True, min_std=1e-3,
                              std_floor="max", image_size=config.image_size)
        fresh = _decoder(config, layers) if objective == "elbo-cold" else None
    decoder = fresh if fresh is not None else \
        copy.deepcopy(pretrained_decoder(config, layers, seed, x_train, cache=cache, progress=progress))
    model = VAE(encoder, decoder)
    if cache and (history := load_trained_model(path, model, device)) is not None:
        return model.to(device).eval(), history
    start = time.perf_counter()
    trainer = Trainer(model, make_loss(objective, config, beta), x_train, _train_config(config, config.steps, seed, progress),
                      device=device)
    history = {k: [list(s), list(v)] for k, (s, v) in trainer.run().series.items()}
    history["seconds"] = [[config.steps], [time.perf_counter() - start]]
    if cache:
        save_trained_model(path, model, history)
    return model.eval(), history


@torch.inference_mode()
def measure(model: VAE, config: PreferenceConfig, data: dict[str, torch.Tensor], seed: int = 0) -> dict[str, float]:
    """The five numbers of a run on held-out images (see the module docstring)."""
    with seeded(seed, data["x_info"].device):
        return _measure(model, config, data, seed)


def _measure(model: VAE, config: PreferenceConfig, data: dict[str, torch.Tensor], seed: int) -> dict[str, float]:
    x_info = data["x_info"]
    qz = model.encode(x_info)
    kl = float(torch.distributions.kl_divergence(qz, model.prior()).mean())
    bound = evaluate(model, InfoVAELoss.elbo(), x_info)["loss"]
    svm = semi_supervised_error(
        encode_codes(model, data["x_pool"]), data["y_pool"], encode_codes(model, data["x_svm_test"]), data["y_svm_test"],
        num_labels=config.num_labels, num_draws=config.svm_draws, seed=seed,
    )
    return {
        "kl": kl,
        "mutual_information": mutual_information(model, x_info),
        "svm_error": svm.mean,
        "shuffled_gap": shuffled_code_gap(model, x_info),
        "test_nll_bound": bound,
    }


def load_data(config: PreferenceConfig) -> dict[str, torch.Tensor]:
    """Training images (grey levels, binarized by the trainer) and fixed binarized held-out sets."""
    device = get_device()
    g = torch.Generator().manual_seed(12345)
    x_train, y_train = load_mnist("train")
    x_test, y_test = load_mnist("test")
    x_train, x_test = downsample(x_train, config.image_size), downsample(x_test, config.image_size)
    binary_train, binary_test = torch.bernoulli(x_train, generator=g), torch.bernoulli(x_test, generator=g)
    return {
        "x_train": x_train,
        "x_pool": binary_train[: config.svm_pool].to(device),
        "y_pool": y_train[: config.svm_pool],
        "x_svm_test": binary_test[: config.svm_test].to(device),
        "y_svm_test": y_test[: config.svm_test],
        "x_info": binary_test[: config.num_info_images].to(device),
    }


def run(config: PreferenceConfig | str | None = None, progress: bool = True, cache: bool = True) -> Outcome:
    """Train every run of ``config`` (or load it from the cache) and measure it."""
    config = resolve_config(config, PreferenceConfig)
    start = time.perf_counter()
    data = load_data(config)
    runs: list[dict] = []

    def one(objective: str, layers: int, seed: int, beta: float | None = None) -> None:
        model, history = train_run(config, objective, layers, seed, data["x_train"], beta=beta, cache=cache,
                                   progress=progress)
        settings = {k: getattr(config, k) for k in ("num_info_images", "svm_pool", "svm_test", "num_labels", "svm_draws")}
        metrics = cached_evaluation(run_path(config, objective, layers, seed, beta), {"v": 1, **settings},
                                    lambda: measure(model, config, data)) if cache else measure(model, config, data)
        runs.append({"objective": objective, "layers": layers, "seed": seed, "beta": beta,
                     "warm_start": objective != "elbo-cold", **metrics,
                     "train_seconds": history["seconds"][1][0], "kl_history": history.get("kl")})

    for seed in config.seeds:
        for objective in config.objectives:
            one(objective, config.layers, seed)
    if config.cold_start:
        one("elbo-cold", config.layers, config.seeds[0])
    for layers in config.sweep_layers:
        if layers != config.layers:
            for objective in ("elbo", "mmd"):
                one(objective, layers, config.seeds[0])
    for beta in config.betas:
        one("beta", config.layers, config.seeds[0], beta)
    main = {
        objective: {
            metric: seed_summary([r[metric] for r in runs if r["objective"] == objective and r["layers"] == config.layers])
            for metric in METRICS
        }
        for objective in config.objectives
    }
    results = {
        "runs": runs,
        "summary": main,
        "epochs": config.epochs,
        "pretrain_epochs": config.pretrain_steps * config.batch_size / 50_000,
        "mutual_information_bound": math.log(config.num_info_images),
        "pixels": config.image_size**2,
    }
    figures = {"preference": plot_preference(results, config), "sweep": plot_sweep(results, config),
               "betas": plot_betas(results, config)}
    return Outcome("information-preference", config, results, figures, seconds=time.perf_counter() - start)


def plot_preference(results: dict, config: PreferenceConfig) -> Figure:
    """Per objective: I_q(x; z) and the SVM error of every seed (dots) and their mean (bar)."""
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.2), layout="constrained")
    names = [o for o in config.objectives]
    for ax, metric, title in ((axes[0], "mutual_information", "I_q(x; z) (nats)"), (axes[1], "svm_error", "SVM error (1000 labels)")):
        for i, name in enumerate(names):
            values = [r[metric] for r in results["runs"] if r["objective"] == name and r["layers"] == config.layers]
            ax.bar(i, np.mean(values), color=f"C{i}", alpha=0.45)
            ax.plot([i] * len(values), values, "o", color=f"C{i}", ms=4)
        ax.set_xticks(range(len(names)), [SHORT_LABELS[n] for n in names], fontsize=9)
        ax.set_title(title, fontsize=10)
    axes[0].axhline(results["mutual_information_bound"], color="0.5", ls=":", lw=1)
    axes[1].axhline(0.9, color="0.5", ls=":", lw=1)  # chance: 10 classes
    return fig


def plot_sweep(results: dict, config: PreferenceConfig) -> Figure:
    """KL of the ELBO and I_q of both objectives against the decoder's depth (first seed)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.2), layout="constrained")
    seed = config.seeds[0]
    for objective, marker in (("elbo", "o-"), ("mmd", "s-")):
        pts = sorted((r["layers"], r["mutual_information"]) for r in results["runs"]
                     if r["objective"] == objective and r["seed"] == seed)
        ax.plot(*zip(*pts), marker, label=f"{objective.upper()}: I_q(x; z)")
    pts = sorted((r["layers"], r["kl"]) for r in results["runs"] if r["objective"] == "elbo" and r["seed"] == seed)
    ax.plot(*zip(*pts), "o--", color="C0", alpha=0.6, label="ELBO: KL(q(z|x)||p(z))")
    ax.set_xlabel("gated PixelCNN layers (receptive field grows with depth)")
    ax.set_ylabel("nats")
    ax.legend(fontsize=8)
    return fig


def beta_points(results: dict, config: PreferenceConfig) -> list[tuple[float, dict]]:
    """(beta, run) of the first seed at the main depth: beta = 1 (the ELBO), the sweep, the authors'."""
    seed, out = config.seeds[0], []
    for r in results["runs"]:
        if r["seed"] != seed or r["layers"] != config.layers:
            continue
        if r["objective"] == "elbo":
            out.append((1.0, r))
        elif r["objective"] == "beta":
            out.append((r["beta"], r))
        elif r["objective"] == "elbo-authors":
            out.append((results["pixels"] / config.latent_dim, r))
    return sorted(out, key=lambda p: p[0])


def plot_betas(results: dict, config: PreferenceConfig) -> Figure:
    """KL, I_q(x; z) and SVM error of the ELBO against the weight beta of its KL term."""
    fig, (ax, ax_err) = plt.subplots(1, 2, figsize=(7, 3.2), layout="constrained")
    pts = beta_points(results, config)
    betas = [b for b, _ in pts]
    ax.plot(betas, [r["kl"] for _, r in pts], "o-", label="KL(q(z|x)||p(z))")
    ax.plot(betas, [r["mutual_information"] for _, r in pts], "s--", label="I_q(x; z)")
    ax.set(xscale="log", xlabel="beta (1: Eq. 6; right: the authors' weighting)", ylabel="nats")
    ax.legend(fontsize=8)
    ax_err.plot(betas, [r["svm_error"] for _, r in pts], "o-", color="C3")
    ax_err.axhline(0.9, color="0.5", ls=":", lw=1)
    ax_err.set(xscale="log", xlabel="beta", ylabel="SVM error (1000 labels)", ylim=(0, 1))
    return fig


__all__ = ["OBJECTIVES", "PreferenceConfig", "ZeroEncoder", "downsample", "make_loss", "measure", "run", "train_run"]

"""The PixelCNN-decoder models of Fig. 6 and Table 1 (book chapters 8 and 9), trained once.

Both experiments train the same five models of Eq. (6) (book chapter 4) with a gated
PixelCNN decoder (``infovae.pixelcnn``) and the batch-normalized convolutional encoder of
the paper and its authors' code, on MNIST binarized afresh for every batch:

* ``"elbo"``: alpha = 0, lambda = 1, no divergence (the negative ELBO);
* ``"mmd"``: MMD-VAE, alpha = 1, lambda = 1000, D = MMD against 200 fresh prior samples;
* ``"stein"``: Stein-VAE, alpha = 1, lambda = 1000, D = KL(q(z)||p(z)) through the Stein
  variational gradient;
* ``"adversarial"``: alpha = 1, D through a Jensen-Shannon discriminator (the paper's text)
  or a WGAN-GP critic (the authors' code);
* ``"autoencoder"``: alpha = 1, no divergence, a deterministic encoder (the
  "unregularized" autoencoder of Fig. 6 E);
* ``"elbo-authors"``: the ELBO with the per-pixel weighting of the authors' code, a
  beta-VAE with beta = 784/d on our scale (``InfoVAELoss.authors_weighting``); not one of
  the paper's five, run beside the literal ELBO to see which one the paper's ELBO row is.

The decoder is the gated two-stack PixelCNN (``infovae.pixelcnn``); the networks train under
bf16 autocast where the hardware has native bf16 (``PixelCNNSetup.precision``).

``train_pixelcnn_model(name, latent_dim, setup)`` trains one of them (RMSProp, gradients
clipped by value) and records the full-batch MMD of q(z) against p(z) on a fixed set of
training images every ``setup.track_every`` steps (Fig. 6 D). A trained model is cached in
the user's cache directory (``$XDG_CACHE_HOME/infovae`` or ``~/.cache/infovae``) under a
key computed from the model's name, its latent dimension and every field of the setup, so
chapter 8 and chapter 9 share a model exactly when they would train the same one, and
each still runs on its own (a missing cache entry is trained).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace

import torch

from ..data import load_mnist
from ..metrics import encode_codes, full_batch_mmd
from ..networks import ConvEncoder
from ..objective import InfoVAELoss
from ..pixelcnn import PixelCNNConfig, PixelCNNDecoder
from ..runtime import get_device, seeded
from ..train import Trainer, TrainConfig
from ..vae import VAE
from .base import (
    cache_digest,
    config_for_profile,
    load_trained_model,
    named_objective,
    save_trained_model,
    trained_model_path,
)

MODELS: tuple[str, ...] = ("elbo", "mmd", "stein", "adversarial", "autoencoder")
AUTHORS_ELBO = "elbo-authors"  # the authors' per-pixel weighting of the ELBO (beta = 784/d)
ALL_MODELS: tuple[str, ...] = (*MODELS, AUTHORS_ELBO)
LABELS: dict[str, str] = {
    "elbo": "ELBO",
    "mmd": "MMD-VAE",
    "stein": "Stein-VAE",
    "adversarial": "Adversarial",
    "autoencoder": "Unregularized",
    AUTHORS_ELBO: "ELBO (authors' weighting)",
}
COLORS: dict[str, str] = {
    "elbo": "tab:blue",
    "mmd": "tab:orange",
    "stein": "tab:green",
    "adversarial": "tab:red",
    "autoencoder": "tab:gray",
    AUTHORS_ELBO: "tab:purple",
}
CACHE_VERSION = 2  # 2: the gated two-stack PixelCNN


@dataclass(frozen=True)
class PixelCNNSetup:
    """How the PixelCNN-decoder models are built and trained (paper values by default).

    Attributes:
        layers: gated PixelCNN layers (paper: 12; the first 7x7 with mask A).
        channels: feature maps per layer (paper: 32).
        encoder_hidden: width of the encoder's fully connected layer (paper: 512).
        iterations: RMSProp steps per model (not in the paper's text; our choice).
        batch_size: images per step (paper: 100).
        lr: RMSProp learning rate (paper: 1e-3).
        clip_value: gradients clipped to [-clip_value, clip_value] (paper: 1).
        lam: lambda of MMD-VAE and Stein-VAE (paper: 1000, alpha = 1).
        adversarial: ``"wgan-gp"`` (the authors' code) or ``"js"`` (the paper's text).
        adversarial_lam: lambda of the adversarial model (alpha = 1).
        critic_hidden: width of its critic's two hidden layers (authors' code: 512).
        critic_lr: Adam learning rate of its critic (authors' code: 2e-5).
        train_images: training images used (the first of the 50k training split).
        track_every: steps between full-batch MMD records (Fig. 6 D; 0: never).
        track_images: training images whose codes give that MMD.
        seed: seed of the initialisation, the data order and the binarization.
        precision: training precision (``"auto"``: bf16 autocast of the networks where native).
    """

    layers: int = 12
    channels: int = 32
    encoder_hidden: int = 512
    iterations: int = 50_000
    batch_size: int = 100
    lr: float = 1e-3
    clip_value: float = 1.0
    lam: float = 1000.0
    adversarial: str = "wgan-gp"
    adversarial_lam: float = 1000.0
    critic_hidden: int = 512
    critic_lr: float = 2e-5
    train_images: int = 50_000
    track_every: int = 500
    track_images: int = 10_000
    seed: int = 0
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.adversarial not in ("js", "wgan-gp"):
            raise ValueError(f"adversarial must be 'js' or 'wgan-gp', got {self.adversarial!r}")
        for name in ("layers", "channels", "encoder_hidden", "iterations", "batch_size", "critic_hidden", "track_images"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 1 <= self.train_images <= 50_000:
            raise ValueError(f"train_images must be between 1 and 50000, got {self.train_images}")
        if self.track_every < 0:
            raise ValueError(f"track_every must be non-negative, got {self.track_every}")

    def cache_key(self, name: str, latent_dim: int) -> str:
        """A short digest of everything that determines the trained model."""
        return cache_digest(self.cache_description(name, latent_dim))

    def cache_description(self, name: str, latent_dim: int) -> dict:
        """Everything that determines the trained model ``name`` with a ``latent_dim``-dim code."""
        return {"v": CACHE_VERSION, "model": name, "dim": latent_dim, **asdict(self)}


# The book profile (a 2-core CPU): a smaller PixelCNN and a short training; the quick profile
# (CI) is smaller still. Chapters 8 and 9 use the same setup, so their 5-dim models coincide.
PROFILE_SETUPS: dict[str, dict] = {
    "quick": dict(
        layers=2, channels=8, encoder_hidden=64, iterations=60, batch_size=50, adversarial="js",
        critic_hidden=64, critic_lr=1e-3, track_every=20, track_images=300,
    ),
    "book": dict(
        layers=4, channels=16, encoder_hidden=256, iterations=400, batch_size=50, adversarial="js",
        critic_hidden=128, critic_lr=1e-3, track_every=50, track_images=1000,
    ),
    "paper": dict(),
}


def setup_for_profile(profile: str, **changes) -> PixelCNNSetup:
    """The ``PixelCNNSetup`` of a profile (``PROFILE_SETUPS``), with ``changes`` applied."""
    return replace(config_for_profile(PixelCNNSetup, profile, PROFILE_SETUPS), **changes)


def build_model(name: str, latent_dim: int, setup: PixelCNNSetup) -> VAE:
    """The VAE of model ``name``: conv encoder (batch norm, std = max(sigmoid, 1e-3)) and gated PixelCNN."""
    check_model_name(name)
    encoder = ConvEncoder(
        latent_dim,
        hidden=setup.encoder_hidden,
        batch_norm=True,
        deterministic=name == "autoencoder",
        min_std=1e-3,
        std_floor="max",
    )
    decoder = PixelCNNDecoder(PixelCNNConfig(latent_dim=latent_dim, layers=setup.layers, channels=setup.channels))
    return VAE(encoder, decoder)


def make_loss(name: str, latent_dim: int, setup: PixelCNNSetup) -> InfoVAELoss:
    """Eq. (6) for model ``name`` (see the module docstring)."""
    check_model_name(name)
    if name == "adversarial":
        return named_objective(name, alpha=1.0, lam=setup.adversarial_lam, latent_dim=latent_dim,
                               divergence=setup.adversarial, critic_hidden=setup.critic_hidden, critic_lr=setup.critic_lr)
    return named_objective(name, alpha=1.0, lam=setup.lam, latent_dim=latent_dim)


def check_model_name(name: str) -> None:
    """A clear error for a model name outside ``ALL_MODELS``."""
    if name not in ALL_MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(ALL_MODELS)}")


def model_path(name: str, latent_dim: int, setup: PixelCNNSetup):
    """Where model ``name`` with a ``latent_dim``-dim code, trained with ``setup``, is cached."""
    return trained_model_path("pixelcnn-models", f"{name}-z{latent_dim}", setup.cache_description(name, latent_dim))


def _mmd_hook(x_track: torch.Tensor, seed: int):
    """Evaluation hook: full-batch MMD^2 of codes of ``x_track`` against as many prior samples."""

    def hook(trainer: Trainer) -> dict[str, float]:
        # the same draws at every evaluation, on generators restored afterwards (no other device touched)
        with seeded(seed, trainer.device):
            model = trainer.model
            assert isinstance(model, VAE)
            z = encode_codes(model, x_track)
            return {"full_batch_mmd": full_batch_mmd(z, model.prior())}

    return hook


def train_pixelcnn_model(
    name: str, latent_dim: int, setup: PixelCNNSetup, *, cache: bool = True, progress: bool = True
) -> tuple[VAE, dict[str, list]]:
    """Train (or load from the cache) model ``name`` with a ``latent_dim``-dim code.

    Args:
        name: one of ``MODELS``.
        latent_dim: dimension of z.
        setup: sizes and optimiser (``PixelCNNSetup``).
        cache: read and write the trained model in the user's cache directory.
        progress: show a progress bar while training.

    Returns:
        the model in eval mode on ``iv.get_device()``, and its training history
        ``{quantity: [steps, values]}`` (``"full_batch_mmd"`` every ``track_every`` steps,
        the loss terms every ``iterations // 20`` steps) plus ``"seconds"`` of training.
    """
    if latent_dim < 1:
        raise ValueError(f"latent_dim must be positive, got {latent_dim}")
    device = get_device()
    path = model_path(name, latent_dim, setup)
    with seeded(setup.seed, device):
        model = build_model(name, latent_dim, setup)
    if cache and (history := load_trained_model(path, model, device)) is not None:
        return model.to(device).eval(), history

    x_train = load_mnist("train")[0][: setup.train_images]
    x_track = load_mnist("train", binarize="stochastic", seed=setup.seed)[0][: setup.track_images].to(device)
    config = TrainConfig(
        iterations=setup.iterations,
        batch_size=setup.batch_size,
        optimizer="rmsprop",
        lr=setup.lr,
        clip="value",
        clip_value=setup.clip_value,
        binarize="stochastic",
        seed=setup.seed,
        log_every=max(1, setup.iterations // 20),
        eval_every=setup.track_every,
        progress=progress,
        precision=setup.precision,
    )
    hooks = [_mmd_hook(x_track, setup.seed + 7)] if setup.track_every else []
    trainer = Trainer(model, make_loss(name, latent_dim, setup), x_train, config, hooks=hooks, device=device)
    start = time.perf_counter()
    series = trainer.run().series
    seconds = time.perf_counter() - start
    record = {k: [list(s), list(v)] for k, (s, v) in series.items()}
    record["seconds"] = [[setup.iterations], [seconds]]
    if cache:
        save_trained_model(path, model, record, setup=asdict(setup))
    return model.eval(), record


__all__ = [
    "ALL_MODELS",
    "AUTHORS_ELBO",
    "COLORS",
    "LABELS",
    "MODELS",
    "PROFILE_SETUPS",
    "PixelCNNSetup",
    "setup_for_profile",
    "build_model",
    "make_loss",
    "train_pixelcnn_model",
]

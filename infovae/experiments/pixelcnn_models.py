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

import math
from dataclasses import asdict, dataclass, replace

import torch

from ..data import load_mnist
from ..metrics import encode_codes, full_batch_mmd, log_likelihood_with_error, mutual_information
from ..networks import ConvEncoder
from ..objective import InfoVAELoss
from ..pixelcnn import PixelCNNConfig, PixelCNNDecoder
from ..precision import resolve_precision
from ..runtime import get_device, seeded
from ..train import Trainer, TrainConfig, evaluate
from ..vae import VAE
from .base import (
    cache_digest,
    config_for_profile,
    load_trained_model,
    named_objective,
    save_trained_model,
    train_resumable,
    trained_model_path,
    window_slope,
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
        curve_every: steps between points of the learning curve (0: none): on fixed,
            stochastically binarized validation images, the held-out NLL (``curve_nll``,
            defensive-mixture importance sampling, float32), -ELBO, its reconstruction and KL
            terms, and I_q(x; z) (``curve_*``; ``learning_curve``).
        curve_images: validation images of the curve's NLL.
        curve_samples: K of the curve's NLL.
        curve_elbo_images: validation images of the curve's -ELBO, KL and I_q.
        plateau_slope: 0 (train all ``iterations``), or stop at the first curve point, after
            ``min_iterations``, where the held-out NLL (the reconstruction for the
            unregularized autoencoder) fell by less than this many nats per 1,000 steps over the
            last ``plateau_window`` steps (least-squares slope of the curve points there);
            ``iterations`` is then the budget.
        plateau_window: steps of that window (a multiple of ``curve_every``).
        min_iterations: steps before the plateau is looked for.
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
    curve_every: int = 0
    curve_images: int = 200
    curve_samples: int = 50
    curve_elbo_images: int = 1000
    plateau_slope: float = 0.0
    plateau_window: int = 2000
    min_iterations: int = 0

    def __post_init__(self) -> None:
        if self.adversarial not in ("js", "wgan-gp"):
            raise ValueError(f"adversarial must be 'js' or 'wgan-gp', got {self.adversarial!r}")
        for name in ("layers", "channels", "encoder_hidden", "iterations", "batch_size", "critic_hidden", "track_images"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 1 <= self.train_images <= 50_000:
            raise ValueError(f"train_images must be between 1 and 50000, got {self.train_images}")
        for name in ("track_every", "curve_every", "min_iterations"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be non-negative, got {getattr(self, name)}")
        for name in ("curve_images", "curve_elbo_images", "curve_samples"):
            if getattr(self, name) < (2 if name == "curve_samples" else 1):
                raise ValueError(f"{name} must be positive (curve_samples at least 2), got {getattr(self, name)}")
        if not (self.plateau_slope >= 0 and math.isfinite(self.plateau_slope)):
            raise ValueError(f"plateau_slope must be a non-negative number, got {self.plateau_slope}")
        if self.plateau_slope > 0:
            if not self.curve_every:
                raise ValueError("plateau_slope needs a learning curve: set curve_every > 0")
            if self.plateau_window < 2 * self.curve_every or self.plateau_window % self.curve_every:
                raise ValueError(
                    f"plateau_window ({self.plateau_window}) must be a multiple of curve_every ({self.curve_every}) "
                    "spanning at least three curve points"
                )

    def cache_key(self, name: str, latent_dim: int) -> str:
        """A short digest of everything that determines the trained model."""
        return cache_digest(self.cache_description(name, latent_dim))

    def cache_description(self, name: str, latent_dim: int) -> dict:
        """Everything that determines the trained model ``name`` with a ``latent_dim``-dim code."""
        return {"v": CACHE_VERSION, "model": name, "dim": latent_dim, **asdict(self)}


# The book profile: the paper's networks (12 gated layers of 32 maps, encoder fc 512), batch,
# optimiser and WGAN-GP critic, trained to the plateau of the held-out NLL (less than 0.5 nats
# per 1,000 steps over the last 2,000, judged every 500 steps from step 3,000 on) or to 6,000
# steps (12 epochs), on 100 validation images for the NLL (K = 50) and 1,000 for -ELBO, KL and
# I_q. ~0.62 s per step on a 2-core CPU with bf16: ~35-65 min a model, resumable
# (``training_queue``). The quick profile (CI) is a few seconds per model.
PROFILE_SETUPS: dict[str, dict] = {
    "quick": dict(
        layers=2, channels=8, encoder_hidden=64, iterations=60, batch_size=50, adversarial="js",
        critic_hidden=64, critic_lr=1e-3, track_every=20, track_images=300,
        curve_every=20, curve_images=20, curve_samples=5, curve_elbo_images=50,
    ),
    # the reader's light profile (a chapter within ~20 minutes on a laptop CPU): 4 x 16 maps, 400 steps
    "light": dict(
        layers=4, channels=16, encoder_hidden=256, iterations=400, batch_size=50, adversarial="js",
        critic_hidden=128, critic_lr=1e-3, track_every=50, track_images=1000,
        curve_every=100, curve_images=50, curve_samples=20, curve_elbo_images=300,
    ),
    "book": dict(
        iterations=6000, track_every=500, track_images=10_000,
        curve_every=500, curve_images=100, curve_samples=50, curve_elbo_images=1000,
        plateau_slope=0.5, plateau_window=2000, min_iterations=3000,
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


CURVE_SEED = 11  # the validation images' binarization and the curve's importance samples


def _tracking_hook(name: str, setup: PixelCNNSetup, x_track: torch.Tensor, x_curve: torch.Tensor | None):
    """Evaluation hook: the full-batch MMD^2 of the codes of ``x_track`` against as many prior
    samples every ``track_every`` steps (Fig. 6 D), and the learning curve every
    ``curve_every`` steps (``learning_curve``), each on draws fixed by its seed."""

    def hook(trainer: Trainer) -> dict[str, float]:
        model = trainer.model
        assert isinstance(model, VAE)
        out: dict[str, float] = {}
        if setup.track_every and trainer.step % setup.track_every == 0:
            with seeded(setup.seed + 7, trainer.device):  # restored afterwards: no other stream touched
                out["full_batch_mmd"] = full_batch_mmd(encode_codes(model, x_track), model.prior())
        if x_curve is not None and trainer.step % setup.curve_every == 0:
            out.update(learning_curve(model, name, setup, x_curve))
        return out

    return hook


@torch.no_grad()
def learning_curve(model: VAE, name: str, setup: PixelCNNSetup, x: torch.Tensor) -> dict[str, float]:
    """One point of a model's learning curve on the validation images ``x``, in nats per image.

    ``curve_nll``: -log p(x) by importance sampling with the defensive mixture (K =
    ``setup.curve_samples``, the first ``setup.curve_images`` images, float32; an upper bound in
    expectation, the estimator of chapter 9); ``curve_neg_elbo``, ``curve_reconstruction`` and
    ``curve_kl``: -ELBO = -E log p(x|z) + KL(q(z|x)||p(z)) and its two terms, and
    ``curve_mutual_information``: I_q(x; z) (at most log N), on the first
    ``setup.curve_elbo_images``. The unregularized autoencoder (a point-mass encoder) has only
    the reconstruction. Deterministic: seeded with ``CURVE_SEED``, generators restored.
    """
    with seeded(CURVE_SEED, x.device):
        x_elbo = x[: setup.curve_elbo_images]
        if name == "autoencoder":
            terms = evaluate(model, InfoVAELoss.autoencoder(), x_elbo, batch_size=250)
            return {"curve_reconstruction": terms["reconstruction"]}
        terms = evaluate(model, InfoVAELoss.elbo(), x_elbo, batch_size=250)
        nll = log_likelihood_with_error(model, x[: setup.curve_images], setup.curve_samples, proposal="mixture",
                                        chunk_size=64)
        return {
            "curve_nll": float(-nll.estimate.double().mean()),
            "curve_neg_elbo": terms["loss"],
            "curve_reconstruction": terms["reconstruction"],
            "curve_kl": terms["kl"],
            "curve_mutual_information": mutual_information(model, x_elbo),
        }


def plateau(steps: list[int], values: list[float], setup: PixelCNNSetup) -> dict[str, float | bool] | None:
    """The plateau test of a learning curve: the least-squares slope of ``values`` over the last
    ``setup.plateau_window`` steps, in nats per 1,000 steps, and whether it is reached (``-slope <
    setup.plateau_slope`` at or after ``setup.min_iterations``); ``None`` before a full window.

    Example:
        >>> from infovae.experiments.pixelcnn_models import PixelCNNSetup, plateau
        >>> setup = PixelCNNSetup(curve_every=500, plateau_slope=0.5, plateau_window=1000, min_iterations=1000)
        >>> plateau([500, 1000, 1500], [90.0, 89.9, 89.85], setup)
        {'slope_per_1000': -0.15, 'reached': True, 'step': 1500}
        >>> plateau([500, 1000, 1500], [95.0, 90.0, 87.0], setup)["reached"]
        False
    """
    per_step = window_slope(steps, values, setup.plateau_window)
    if per_step is None:
        return None
    slope = per_step * 1000
    return {"slope_per_1000": round(slope, 6), "reached": bool(-slope < setup.plateau_slope and steps[-1] >= setup.min_iterations),
            "step": steps[-1]}


def curve_series(name: str) -> str:
    """The learning-curve quantity whose plateau ends training: the held-out NLL, or the
    reconstruction for the unregularized autoencoder (which has no likelihood)."""
    return "curve_reconstruction" if name == "autoencoder" else "curve_nll"


def partial_path(name: str, latent_dim: int, setup: PixelCNNSetup):
    """The checkpoint of a training run in progress (beside the finished model's file)."""
    path = model_path(name, latent_dim, setup)
    return path.with_name(path.stem + "-partial.pt")


def train_pixelcnn_model(
    name: str, latent_dim: int, setup: PixelCNNSetup, *, cache: bool = True, progress: bool = True,
    checkpoint_every: int = 250,
) -> tuple[VAE, dict[str, list]]:
    """Train (or load from the cache) model ``name`` with a ``latent_dim``-dim code.

    Training is resumable: with ``cache``, a checkpoint of the run in progress
    (``partial_path``) is written every ``checkpoint_every`` steps and at every curve point, and
    an interrupted run continues from it exactly (the Trainer's bit-for-bit resume), so an
    interruption costs at most ``checkpoint_every`` steps. With ``setup.plateau_slope``,
    training stops at the learning curve's plateau (``plateau``) or at ``setup.iterations``.

    Args:
        name: one of ``ALL_MODELS``.
        latent_dim: dimension of z.
        setup: sizes and optimiser (``PixelCNNSetup``).
        cache: read and write the trained model (and the run in progress) in the user's cache directory.
        progress: show a progress bar while training.
        checkpoint_every: steps between checkpoints of the run in progress (does not change the weights).

    Returns:
        the model in eval mode on ``iv.get_device()``, and its training history
        ``{quantity: [steps, values]}`` (``"full_batch_mmd"`` every ``track_every`` steps, the
        learning curve ``"curve_*"`` every ``curve_every`` steps, the loss terms every
        ``iterations // 20`` steps) plus ``"seconds"`` of training (``[[steps], [seconds]]``,
        summed over the sessions of a resumed run) and, with a plateau rule, ``"plateau"``
        (``[[step], [slope per 1,000 steps, 1 if reached else 0]]``).
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
    x_curve = None
    if setup.curve_every:
        x_curve = load_mnist("valid", binarize="stochastic", seed=CURVE_SEED)[0][
            : max(setup.curve_images, setup.curve_elbo_images)].to(device)
    eval_every = math.gcd(setup.track_every, setup.curve_every)
    partial = partial_path(name, latent_dim, setup) if cache else None
    config = TrainConfig(
        iterations=setup.iterations,
        batch_size=setup.batch_size,
        optimizer="rmsprop",
        lr=setup.lr,
        clip="value",
        clip_value=setup.clip_value,
        binarize="stochastic",
        seed=setup.seed,
        log_every=max(1, setup.iterations // 20) if not setup.plateau_slope else max(1, setup.curve_every // 5),
        eval_every=eval_every,
        checkpoint_every=checkpoint_every if partial else 0,
        checkpoint=str(partial) if partial else None,
        progress=progress,
        precision=resolve_precision(setup.precision, device),  # "auto": bf16 where native, else fp32 (never fp16)
    )

    def make_trainer() -> Trainer:
        with seeded(setup.seed, device):
            fresh = build_model(name, latent_dim, setup)
        with seeded(setup.seed + 1, device):  # an adversarial critic's initialisation: seeded, not the global stream
            loss = make_loss(name, latent_dim, setup)
        return Trainer(fresh, loss, x_train, config,
                       hooks=[_tracking_hook(name, setup, x_track, x_curve)] if eval_every else [], device=device,
                       meta={"model": name, "latent_dim": latent_dim, "setup": asdict(setup)})

    def finished(trainer: Trainer) -> bool:
        series = trainer.history.series.get(curve_series(name)) if setup.plateau_slope else None
        if not series or series[0][-1] != trainer.step:  # plateaus are judged at curve points only
            return False
        reached = plateau([int(t) for t in series[0]], series[1], setup)
        return reached is not None and bool(reached["reached"])

    chunk = setup.curve_every if setup.plateau_slope else setup.iterations
    trainer, seconds = train_resumable(make_trainer, partial, chunk, finished)
    trained = trainer.model
    assert isinstance(trained, VAE)
    record = {k: [list(s), list(v)] for k, (s, v) in trainer.history.series.items()}
    record["seconds"] = [[trainer.step], [seconds]]
    curve = record.get(curve_series(name))
    if setup.plateau_slope and curve is not None:
        final = plateau([int(t) for t in curve[0]], curve[1], setup)
        if final is not None:
            record["plateau"] = [[trainer.step], [final["slope_per_1000"], 1.0 if final["reached"] else 0.0]]
    if cache:
        save_trained_model(path, trained, record, setup=asdict(setup))
        if partial is not None and path.is_file():
            partial.unlink(missing_ok=True)
    return trained.eval(), record


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

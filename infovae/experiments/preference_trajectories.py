"""The information preference over time (book chapter 8): does the literal ELBO give up its code, and when?

Chapter 3 proves that a decoder able to model the data without z reaches the ELBO's optimum
with I_q(x; z) = 0. That is a statement about the optimum; a trained model is a trajectory
towards it, and a snapshot of a trajectory that is still moving says nothing either way. This
experiment records the trajectories, on binarized MNIST downsampled to 14 x 14 (as the
information-preference experiment of ``information_preference``), from a decoder pretrained
alone (z = 0) for ``pretrain_steps``, every epoch until a plateau (``TrajectoryConfig``):

* **the beta sweep**: the literal ELBO with its KL term weighted by beta,
  ``-E log p(x|z) + beta KL(q(z|x)||p(z))``, beta in ``betas`` (beta = 1 is the paper's Eq. (6)
  with alpha = 0, lambda = 1), over ``seeds``; where the final KL falls to ~0 the code is given
  up, and the critical beta lies between the largest beta that keeps it and the smallest that
  gives it up;
* **decoder depth and the way z enters**: the literal ELBO with decoders of ``depths`` gated
  layers over ``depth_seeds``, and at the deepest a decoder where z enters *spatially* (a
  learned map of z to per-pixel conditioning, ``PixelCNNConfig(conditioning="spatial")``)
  instead of as the same bias at every pixel, so that decoder strength and the decoder's
  ability to read z are separated.

At every epoch (``curve_every`` steps) on fixed binarized test images: ``traj_kl``, E
KL(q(z|x)||p(z)) over all ``num_info_images`` (an upper bound on I_q), ``traj_mutual_information``,
I_q(x; z) over the same images (at most log N: 9.21 nats for N = 10,000), and ``traj_neg_elbo``
and ``traj_reconstruction`` on the first ``num_elbo_images``. A run stops when, after
``min_epochs``, both the KL and the -ELBO have stopped moving over the last ``window_epochs``
(least-squares slopes: |KL slope| below ``kl_slope`` and the -ELBO falling by less than
``elbo_slope`` nats per epoch), or at ``max_epochs``. Runs are resumable from checkpoints in
the model cache and are trained by the training queue (``training_queue``).
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.distributions import kl_divergence

from ..data import load_mnist
from ..metrics import mutual_information, shuffled_code_gap
from ..networks import ConvEncoder
from ..objective import InfoVAELoss
from ..pixelcnn import PixelCNNConfig, PixelCNNDecoder
from ..precision import resolve_precision
from ..runtime import get_device, seeded
from ..train import Trainer, TrainConfig, evaluate
from ..vae import VAE
from .base import (
    cached_evaluation,
    config_for_profile,
    load_trained_model,
    named_objective,
    save_trained_model,
    train_resumable,
    trained_model_path,
    window_slope,
)
from .information_preference import downsample, train_decoder_alone

CACHE_VERSION = 1
TEST_SEED = 12345  # the binarization of the held-out images (as information_preference.load_data)


@dataclass(frozen=True)
class TrajectoryConfig:
    """Sizes of the trajectory experiment (the book profile by default).

    Attributes:
        image_size: side of the downsampled images (14: 2x2 mean pooling; 28: none).
        latent_dim: dimension of z.
        layers: decoder depth of the beta sweep (gated layers).
        channels: feature maps of the decoder.
        encoder_hidden: width of the encoder's fully connected layer.
        pretrain_steps: steps of the decoder alone (z = 0) before each run.
        batch_size, lr: minibatch and RMSProp learning rate (paper: 100, 1e-3; gradients clipped to [-1, 1]).
        precision: training precision (``"auto"``: bf16 where native).
        betas: KL weights of the beta sweep (1: the literal ELBO).
        seeds: training seeds of the beta sweep.
        depths: decoder depths of the depth sweep (the literal ELBO); ``layers`` comes from the beta sweep.
        depth_seeds: training seeds of the depth sweep and of the spatial control.
        spatial_maps: maps of the spatial conditioning of the control (0: no control).
        curve_every: steps between trajectory points (500: one epoch of 50,000 images at batch 100).
        min_epochs, max_epochs: the shortest and longest run, in epochs.
        window_epochs: epochs over which the plateau slopes are fitted.
        kl_slope: the plateau's largest |slope| of the KL, nats per epoch.
        elbo_slope: the plateau's largest fall of the -ELBO, nats per epoch.
        num_info_images: test images of the KL and I_q (at most 10,000).
        num_elbo_images: test images of the -ELBO.
        train_images: training images (the first of the 50,000); an epoch is one pass over them.
    """

    image_size: int = 14
    latent_dim: int = 5
    layers: int = 6
    channels: int = 32
    encoder_hidden: int = 256
    pretrain_steps: int = 1000
    batch_size: int = 100
    lr: float = 1e-3
    precision: str = "auto"
    betas: tuple[float, ...] = (1.0, 1.1, 1.25, 1.5)
    seeds: tuple[int, ...] = (0, 1, 2)
    depths: tuple[int, ...] = (3, 6, 9, 12)
    depth_seeds: tuple[int, ...] = (0, 1)
    spatial_maps: int = 8
    curve_every: int = 500
    min_epochs: int = 10
    max_epochs: int = 30
    window_epochs: int = 5
    kl_slope: float = 0.02
    elbo_slope: float = 0.05
    num_info_images: int = 10_000
    num_elbo_images: int = 5000
    train_images: int = 50_000

    def __post_init__(self) -> None:
        if self.image_size not in (14, 28):
            raise ValueError(f"image_size must be 14 or 28, got {self.image_size}")
        for name in ("latent_dim", "layers", "channels", "encoder_hidden", "batch_size", "curve_every",
                     "min_epochs", "max_epochs", "window_epochs", "num_info_images", "num_elbo_images"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not self.betas or min(self.betas) <= 0 or not self.seeds:
            raise ValueError("betas must be positive and betas and seeds non-empty")
        if not self.depths or min(self.depths) < 1:
            raise ValueError(f"depths must be positive, got {self.depths}")
        if not self.min_epochs <= self.max_epochs or self.window_epochs > self.min_epochs:
            raise ValueError("need window_epochs <= min_epochs <= max_epochs")
        if not self.batch_size <= self.train_images <= 50_000:
            raise ValueError(f"train_images must be between batch_size and 50000, got {self.train_images}")
        if not 2 <= self.num_info_images <= 10_000 or self.num_elbo_images > self.num_info_images:
            raise ValueError("need 2 <= num_info_images <= 10000 and num_elbo_images <= num_info_images")

    @property
    def steps_per_epoch(self) -> int:
        return self.train_images // self.batch_size

    @classmethod
    def for_profile(cls, profile: str) -> "TrajectoryConfig":
        """``quick`` (CI smoke scale), ``book`` (a 2-core CPU: the defaults) or ``paper`` (28 x 28, 12 x 32)."""
        return config_for_profile(cls, profile, {
            "quick": dict(layers=2, channels=8, encoder_hidden=32, pretrain_steps=20, batch_size=50, betas=(1.0, 1.5),
                          seeds=(0,), depths=(1, 2), depth_seeds=(0,), spatial_maps=2, curve_every=10, min_epochs=2,
                          max_epochs=3, window_epochs=2, num_info_images=200, num_elbo_images=100, train_images=500),
            "light": dict(betas=(1.0, 1.5), seeds=(0,), depths=(3, 6), depth_seeds=(0,), spatial_maps=0, curve_every=100,
                          min_epochs=2, max_epochs=3, window_epochs=2, num_info_images=2000, num_elbo_images=1000,
                          train_images=10_000),
            "book": dict(),
            "paper": dict(image_size=28, layers=12, encoder_hidden=512, depths=(3, 6, 9, 12), num_elbo_images=10_000),
        })


@dataclass(frozen=True)
class Run:
    """One trajectory: KL weight ``beta``, decoder depth ``layers``, how z enters, seed."""

    beta: float
    layers: int
    conditioning: str
    seed: int

    @property
    def key(self) -> str:
        spatial = "-spatial" if self.conditioning == "spatial" else ""
        return f"beta{self.beta:g}-l{self.layers}{spatial}-s{self.seed}"


def runs(config: TrajectoryConfig, seeds: tuple[int, ...] | None = None) -> list[Run]:
    """Every run of ``config`` (optionally only those of ``seeds``): the beta sweep, the depth
    sweep (beta = 1) and the spatial control at the deepest depth.

    Example:
        >>> from infovae.experiments.preference_trajectories import TrajectoryConfig, runs
        >>> [r.key for r in runs(TrajectoryConfig.for_profile("quick"))]
        ['beta1-l2-s0', 'beta1.5-l2-s0', 'beta1-l1-s0', 'beta1-l2-spatial-s0']
    """
    out = [Run(beta, config.layers, "bias", seed) for seed in config.seeds for beta in config.betas]
    out += [Run(1.0, depth, "bias", seed) for seed in config.depth_seeds for depth in config.depths]
    if config.spatial_maps:
        out += [Run(1.0, max(config.depths), "spatial", seed) for seed in config.depth_seeds]
    out = list(dict.fromkeys(out))
    return [r for r in out if seeds is None or r.seed in seeds]


def _description(config: TrajectoryConfig, **what: Any) -> dict:
    keep = ("image_size", "latent_dim", "channels", "encoder_hidden", "batch_size", "lr", "precision", "train_images")
    return {"v": CACHE_VERSION, **{k: asdict(config)[k] for k in keep}, **what}


def _decoder(config: TrajectoryConfig, layers: int, conditioning: str) -> PixelCNNDecoder:
    return PixelCNNDecoder(PixelCNNConfig(
        latent_dim=config.latent_dim, image_size=(config.image_size, config.image_size), layers=layers,
        channels=config.channels, conditioning=conditioning, spatial_maps=max(1, config.spatial_maps)))


def _train_config(config: TrajectoryConfig, steps: int, seed: int, progress: bool, **more: Any) -> TrainConfig:
    return TrainConfig(iterations=steps, batch_size=config.batch_size, optimizer="rmsprop", lr=config.lr, clip="value",
                       clip_value=1.0, binarize="stochastic", seed=seed, progress=progress,
                       precision=resolve_precision(config.precision, get_device()),  # "auto": bf16 where native, else fp32
                       **{"log_every": max(1, min(100, steps // 20)), **more})


def pretrained_decoder(config: TrajectoryConfig, layers: int, conditioning: str, seed: int, x_train: torch.Tensor,
                       *, cache: bool = True, progress: bool = True) -> PixelCNNDecoder:
    """The decoder trained alone (z = 0: an unconditional PixelCNN) for ``config.pretrain_steps`` (cached)."""
    what = {"stage": "pretrain", "layers": layers, "conditioning": conditioning, "seed": seed,
            "steps": config.pretrain_steps, "maps": config.spatial_maps if conditioning == "spatial" else 0}
    path = trained_model_path("preference-trajectories", f"pretrain-l{layers}-{conditioning}-s{seed}",
                              _description(config, **what))
    return train_decoder_alone(path, config.latent_dim, lambda: _decoder(config, layers, conditioning), seed, x_train,
                               _train_config(config, config.pretrain_steps, seed, progress) if config.pretrain_steps else None,
                               cache=cache)


def run_path(config: TrajectoryConfig, run: Run) -> Path:
    """Where the trained model of ``run`` is cached (its key holds everything that fixes the weights)."""
    what = {"run": asdict(run), "pretrain_steps": config.pretrain_steps, "maps": config.spatial_maps,
            "rule": {k: getattr(config, k) for k in ("curve_every", "min_epochs", "max_epochs", "window_epochs",
                                                     "kl_slope", "elbo_slope", "num_info_images", "num_elbo_images")}}
    return trained_model_path("preference-trajectories", run.key, _description(config, **what))


def load_test_images(config: TrajectoryConfig) -> torch.Tensor:
    """The held-out images of every trajectory point: the first ``num_info_images`` test digits,
    downsampled and binarized once with a fixed generator (``TEST_SEED``), on the device."""
    x = downsample(load_mnist("test")[0][: config.num_info_images], config.image_size)
    return torch.bernoulli(x, generator=torch.Generator().manual_seed(TEST_SEED)).to(get_device())


@torch.no_grad()
def trajectory_point(model: VAE, config: TrajectoryConfig, x: torch.Tensor) -> dict[str, float]:
    """One point of a trajectory on the held-out images ``x`` (nats per image; module docstring).

    Deterministic: the codes and prior draws are seeded (``TEST_SEED``) and the generators restored.
    """
    with seeded(TEST_SEED, x.device):
        qz = model.encode(x)
        kl = float(kl_divergence(qz, model.prior()).mean())
        terms = evaluate(model, InfoVAELoss.elbo(), x[: config.num_elbo_images], batch_size=500)
        return {"traj_kl": kl, "traj_mutual_information": mutual_information(model, x),
                "traj_neg_elbo": terms["loss"], "traj_reconstruction": terms["reconstruction"]}


def plateau_reached(history: dict[str, list], config: TrajectoryConfig) -> dict[str, Any] | None:
    """The plateau test at the last trajectory point: the KL's and the -ELBO's least-squares
    slopes per epoch over the last ``window_epochs``, and whether both are flat enough (after
    ``min_epochs``); ``None`` before a full window.

    Example:
        >>> from infovae.experiments.preference_trajectories import TrajectoryConfig, plateau_reached
        >>> config = TrajectoryConfig(min_epochs=2, window_epochs=2)
        >>> steps = [500, 1000, 1500]
        >>> h = {"traj_kl": [steps, [1.0, 1.01, 1.0]], "traj_neg_elbo": [steps, [50.0, 49.99, 49.98]]}
        >>> plateau_reached(h, config)["reached"]
        True
    """
    if "traj_kl" not in history:
        return None
    per_epoch = config.steps_per_epoch
    window = config.window_epochs * per_epoch
    kl = window_slope(history["traj_kl"][0], history["traj_kl"][1], window)
    elbo = window_slope(history["traj_neg_elbo"][0], history["traj_neg_elbo"][1], window)
    if kl is None or elbo is None:
        return None
    step = history["traj_kl"][0][-1]
    kl_epoch, elbo_epoch = kl * per_epoch, elbo * per_epoch
    flat = abs(kl_epoch) < config.kl_slope and -elbo_epoch < config.elbo_slope
    return {"kl_slope_per_epoch": round(kl_epoch, 6), "neg_elbo_slope_per_epoch": round(elbo_epoch, 6), "step": step,
            "reached": bool(flat and step >= config.min_epochs * per_epoch)}


def train_run(config: TrajectoryConfig, run: Run, x_train: torch.Tensor, x_test: torch.Tensor, *, cache: bool = True,
              progress: bool = True, checkpoint_every: int = 250) -> tuple[VAE, dict[str, list]]:
    """Train (or load) one trajectory; resumable from its checkpoint in the cache (``base.train_resumable``).

    Returns the model in eval mode and its history: the loss terms, the trajectory ``traj_*``
    every ``curve_every`` steps, ``"seconds"`` (``[[steps], [seconds]]``) and ``"plateau"``
    (``[[step], [KL slope, -ELBO slope per epoch, 1 if reached else 0]]``).
    """
    device = get_device()
    path = run_path(config, run)

    def build() -> VAE:
        with seeded(run.seed + 1000, device):
            encoder = ConvEncoder(config.latent_dim, hidden=config.encoder_hidden, batch_norm=True, min_std=1e-3,
                                  std_floor="max", image_size=config.image_size)
        decoder = pretrained_decoder(config, run.layers, run.conditioning, run.seed, x_train, cache=cache,
                                     progress=progress)
        return VAE(encoder, copy.deepcopy(decoder))  # the cached pretrained decoder stays as it is

    model = build()
    if cache and (history := load_trained_model(path, model, device)) is not None:
        return model.to(device).eval(), history
    partial = path.with_name(path.stem + "-partial.pt") if cache else None
    loss = named_objective("elbo") if run.beta == 1.0 else named_objective("beta", beta=run.beta)

    def hook(trainer: Trainer) -> dict[str, float]:
        assert isinstance(trainer.model, VAE)
        return trajectory_point(trainer.model, config, x_test)

    train_config = _train_config(config, config.max_epochs * config.steps_per_epoch, run.seed, progress,
                                 eval_every=config.curve_every, checkpoint_every=checkpoint_every if partial else 0,
                                 checkpoint=str(partial) if partial else None)

    def make_trainer() -> Trainer:
        return Trainer(build(), loss, x_train, train_config, hooks=[hook], device=device,
                       meta={"run": asdict(run), "config": asdict(config)})

    def finished(trainer: Trainer) -> bool:
        series = trainer.history.series
        if "traj_kl" not in series or series["traj_kl"][0][-1] != trainer.step:
            return False
        reached = plateau_reached(series, config)
        return reached is not None and bool(reached["reached"])

    trainer, seconds = train_resumable(make_trainer, partial, config.curve_every, finished)
    trained = trainer.model
    assert isinstance(trained, VAE)
    record = {k: [list(s), list(v)] for k, (s, v) in trainer.history.series.items()}
    record["seconds"] = [[trainer.step], [seconds]]
    final = plateau_reached(record, config)
    if final is not None:
        record["plateau"] = [[trainer.step], [final["kl_slope_per_epoch"], final["neg_elbo_slope_per_epoch"],
                                              1.0 if final["reached"] else 0.0]]
    if cache:
        save_trained_model(path, trained, record, config=asdict(config))
        if partial is not None and path.is_file():
            partial.unlink(missing_ok=True)
    return trained.eval(), record


def final_measures(model: VAE, config: TrajectoryConfig, run: Run, x_test: torch.Tensor, history: dict) -> dict[str, Any]:
    """The end of a trajectory: its last point, the shuffled-code gap (nats of log p(x|z) lost
    when codes are shuffled across images) and whether I_q is censored by its ceiling log N."""

    def compute() -> dict[str, Any]:
        with seeded(TEST_SEED + 1, x_test.device):
            gap = shuffled_code_gap(model, x_test[: config.num_elbo_images])
        return {"shuffled_gap": gap}

    extra = cached_evaluation(run_path(config, run), {"v": 1, "images": config.num_elbo_images}, compute)
    last = {k[len("traj_"):]: history[k][1][-1] for k in history if k.startswith("traj_")}
    ceiling = math.log(config.num_info_images)
    return {**last, **extra, "mutual_information_ceiling": ceiling,
            "censored": last["mutual_information"] > ceiling - 0.05, "steps": history["seconds"][0][0],
            "epochs": history["seconds"][0][0] / config.steps_per_epoch, "seconds": history["seconds"][1][0],
            "plateau": history.get("plateau", [[None], [None, None, 0.0]])[1]}


def training_images(config: TrajectoryConfig) -> torch.Tensor:
    """The first ``train_images`` training digits, downsampled (grey levels: the trainer binarizes every batch)."""
    return downsample(load_mnist("train")[0][: config.train_images], config.image_size)


__all__ = ["Run", "TrajectoryConfig", "final_measures", "load_test_images", "plateau_reached", "pretrained_decoder",
           "run_path", "runs", "train_run", "trajectory_point", "training_images"]

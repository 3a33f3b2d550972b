"""How to train: ``TrainConfig`` and the registries of optimisers and schedulers (book chapters 6-9).

``OPTIMIZERS`` names every ``torch.optim`` optimiser by lower-case class name, ``SCHEDULERS``
every ``torch.optim.lr_scheduler`` class that is set by plain options and stepped once per
step; ``make_optimizer``/``make_scheduler`` build them from a ``TrainConfig`` (Adam and AdamW
fused where the device has the kernel).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .. import validation
from ..precision import TRAINING_PRECISIONS


def _classes(module: object, base: type, exclude: tuple[str, ...] = ()) -> dict[str, type]:
    """The public subclasses of ``base`` in ``module``, by lower-case name."""
    found = {}
    for name in dir(module):
        cls = getattr(module, name)
        if (isinstance(cls, type) and issubclass(cls, base) and cls is not base
                and not name.startswith("_") and name not in exclude):
            found[name.lower()] = cls
    return found


# every optimiser of torch.optim, by lower-case class name ("adam", "adamw", "sgd", "rmsprop", ...)
_OPTIMIZER_CLASSES = _classes(torch.optim, torch.optim.Optimizer, exclude=("LBFGS", "SparseAdam"))
OPTIMIZERS: tuple[str, ...] = tuple(sorted(_OPTIMIZER_CLASSES))
# the schedulers of torch.optim.lr_scheduler that are set by plain options and stepped once per
# step (not those built from other schedulers or functions, nor ReduceLROnPlateau, which needs a metric)
_SCHEDULER_CLASSES = _classes(
    torch.optim.lr_scheduler, torch.optim.lr_scheduler.LRScheduler,
    exclude=("LRScheduler", "ChainedScheduler", "SequentialLR", "LambdaLR", "MultiplicativeLR"),
)
SCHEDULERS: tuple[str, ...] = tuple(sorted(_SCHEDULER_CLASSES))
CLIPPING: tuple[str | None, ...] = (None, "value", "norm")
# Settings that must match when a run resumes (the others, e.g. iterations, may change).
RESUME_KEYS: tuple[str, ...] = (
    "batch_size", "optimizer", "optimizer_options", "lr", "scheduler", "scheduler_options", "clip", "clip_value",
    "binarize", "seed", "precision", "accumulate",
)


@dataclass
class TrainConfig:
    """How to train (defaults: the DCGAN experiments' Adam 1e-4, batch 100).

    Attributes:
        iterations: total number of optimiser steps of ``run()``.
        batch_size: images per step.
        optimizer: the lower-case name of a ``torch.optim`` optimiser (``OPTIMIZERS``:
            ``"adam"``, fused where available, ``"adamw"``, ``"sgd"``, ``"rmsprop"``, ...).
        optimizer_options: its keyword arguments other than ``lr`` (plain values), e.g.
            ``{"betas": [0.5, 0.999]}`` or ``{"momentum": 0.9}``.
        lr: learning rate (the initial one, if a scheduler changes it).
        scheduler: ``None`` or the lower-case name of a ``torch.optim.lr_scheduler`` class
            (``SCHEDULERS``: ``"cosineannealinglr"``, ``"steplr"``, ``"linearlr"``, ...), stepped
            once per optimiser step; the learning rate is logged as ``"lr"``.
        scheduler_options: its keyword arguments, e.g. ``{"T_max": 10000}``.
        clip: ``None``, ``"value"`` (each gradient entry clipped to [-clip_value, clip_value])
            or ``"norm"`` (global gradient norm at most clip_value).
        clip_value: the clipping threshold.
        binarize: ``None`` (the default: data used as given), ``"stochastic"`` (a fresh
            Bernoulli draw per batch: grey-level MNIST) or ``"threshold"``.
        seed: seeds torch, the data order and the binarization.
        log_every: steps averaged into one history entry.
        eval_every: steps between evaluation hooks (0: never).
        checkpoint_every: steps between checkpoints (0: only at the end of ``run``).
        checkpoint: file of the checkpoint (``None``: no checkpoints).
        progress: show a tqdm progress bar.
        precision: ``"fp32"``, ``"bf16"`` (bf16 autocast of the networks only, where the
            device has native bf16; ``infovae.precision``), ``"fp16"`` (fp16 autocast of the
            networks with a ``torch.amp.GradScaler``: a step whose scaled gradients overflow is
            skipped, not applied, and counted as ``"skipped_steps"`` in the history) or
            ``"auto"`` (bf16 where native, else fp16 on CUDA, else fp32).
        accumulate: micro-batches per optimiser step (gradient accumulation): each step's
            ``batch_size`` images are split into ``accumulate`` equal parts whose gradients
            (each loss weighted 1 / accumulate) are summed before the step. The reconstruction
            and KL terms are those of the whole batch; the divergence is estimated on each part
            (for MMD, Stein and the critics a smaller-sample estimate), the critic trained
            once per step on the codes of all parts.
        compile: ``torch.compile`` the networks (``encoder`` and ``decoder``, else the model) in
            place (``nn.Module.compile``: the parameter names, and so the checkpoints, stay those
            of the plain model). The first steps pay the compilation.
        best_checkpoint: file that keeps the model with the lowest validation loss (``None``:
            not kept); needs ``Trainer(..., validation=...)`` and ``eval_every``.
        patience: stop after this many evaluations without a lower validation loss (0: never;
            early stopping).

    Example:
        >>> from infovae.train import TrainConfig
        >>> config = TrainConfig(iterations=2000, optimizer="adamw", scheduler="cosineannealinglr",
        ...                      scheduler_options={"T_max": 2000})
        >>> config.batch_size, config.lr, config.precision
        (100, 0.0001, 'fp32')
        >>> TrainConfig(optimizer_options={"momentum": 0.9})  # Adam has no momentum
        Traceback (most recent call last):
        ...
        ValueError: optimizer_options ['momentum']: Adam does not take them; ...
    """

    iterations: int = 1000
    batch_size: int = 100
    optimizer: str = "adam"
    optimizer_options: dict = field(default_factory=dict)
    lr: float = 1e-4
    scheduler: str | None = None
    scheduler_options: dict = field(default_factory=dict)
    clip: str | None = None
    clip_value: float = 1.0
    binarize: str | None = None
    seed: int = 0
    log_every: int = 100
    eval_every: int = 0
    checkpoint_every: int = 0
    checkpoint: str | None = None
    progress: bool = True
    precision: str = "fp32"
    accumulate: int = 1
    compile: bool = False
    best_checkpoint: str | None = None
    patience: int = 0

    def __post_init__(self) -> None:
        for name in ("iterations", "batch_size", "seed", "log_every", "eval_every", "checkpoint_every", "accumulate",
                     "patience"):
            validation.integer(name, getattr(self, name),
                               minimum=1 if name in ("iterations", "batch_size", "log_every", "accumulate") else 0)
        if self.batch_size % self.accumulate:
            raise ValueError(f"batch_size {self.batch_size} is not divisible by accumulate={self.accumulate}: each "
                             "step splits its batch into accumulate equal micro-batches")
        for name in ("lr", "clip_value"):
            validation.number(name, getattr(self, name), positive=True)
        for name in ("progress", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        for name in ("checkpoint", "best_checkpoint"):
            path = getattr(self, name)
            if path is not None and not isinstance(path, (str, os.PathLike)):
                raise TypeError(f"{name} must be a path or None, got {path!r}")
            if path is not None:
                setattr(self, name, os.fspath(path))
        if (self.best_checkpoint is not None or self.patience) and not self.eval_every:
            raise ValueError("best_checkpoint and patience act on the validation loss measured every eval_every "
                             "steps: set eval_every=... (and pass Trainer(..., validation=held_out_data))")
        validation.choice("optimizer", self.optimizer, OPTIMIZERS, " (torch.optim, lower case)")
        validation.choice("scheduler", self.scheduler, (None, *SCHEDULERS), " (torch.optim.lr_scheduler, lower case)")
        for name in ("optimizer_options", "scheduler_options"):
            options = getattr(self, name)
            if not isinstance(options, dict):
                raise TypeError(f"{name} must be a dict of keyword arguments, got {type(options).__name__}")
            validation.plain(name, options)
        if self.scheduler is None and self.scheduler_options:
            raise ValueError("scheduler_options were given without a scheduler: set scheduler=... or drop them")
        # build both once on a dummy parameter: torch names bad option values here, not mid-run
        optimizer = make_optimizer([nn.Parameter(torch.zeros(1))], self, torch.device("cpu"))
        make_scheduler(optimizer, self)
        validation.choice("clip", self.clip, CLIPPING)
        validation.choice("binarize", self.binarize, (None, "stochastic", "threshold"))
        validation.choice("precision", self.precision, TRAINING_PRECISIONS)



def _check_options(kind: str, cls: type, options: Mapping[str, object]) -> None:
    """Refuse keyword arguments that ``cls`` does not take (and ``lr``, which is ``TrainConfig.lr``)."""
    accepted = [p for p in list(inspect.signature(cls.__init__).parameters)[2:] if p not in ("lr", "verbose")]  # type: ignore[misc]  # a class, not an instance
    unknown = sorted(set(options) - set(accepted))
    if "lr" in options:
        raise ValueError(f"{kind}_options must not set lr: the learning rate is TrainConfig.lr")
    if unknown:
        raise ValueError(f"{kind}_options {unknown}: {cls.__name__} does not take them; it takes {accepted}")


def make_optimizer(params: Sequence[nn.Parameter], config: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """The optimiser ``config.optimizer`` with ``config.optimizer_options`` (Adam and AdamW fused
    where the device has the kernel, unless the options choose an implementation).

    Example:
        >>> import torch
        >>> from infovae.train import TrainConfig, make_optimizer
        >>> params = [torch.nn.Parameter(torch.zeros(2))]
        >>> optimizer = make_optimizer(params, TrainConfig(optimizer="sgd", optimizer_options={"momentum": 0.9}), torch.device("cpu"))
        >>> type(optimizer).__name__, optimizer.param_groups[0]["momentum"]
        ('SGD', 0.9)
    """
    cls = _OPTIMIZER_CLASSES[config.optimizer]
    _check_options("optimizer", cls, config.optimizer_options)
    options = dict(config.optimizer_options)
    if config.optimizer in ("adam", "adamw") and not ({"fused", "foreach", "capturable", "differentiable"} & set(options)):
        options["fused"] = device.type in ("cuda", "cpu")
    try:
        return cls(params, lr=config.lr, **options)
    except (TypeError, ValueError) as err:
        raise ValueError(f"torch.optim rejects optimizer={config.optimizer!r} with options {config.optimizer_options}: {err}") from None


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The scheduler ``config.scheduler`` with ``config.scheduler_options`` over ``optimizer`` (``None`` without one).

    Example:
        >>> import torch
        >>> from infovae.train import TrainConfig, make_optimizer, make_scheduler
        >>> config = TrainConfig(scheduler="steplr", scheduler_options={"step_size": 10})
        >>> optimizer = make_optimizer([torch.nn.Parameter(torch.zeros(2))], config, torch.device("cpu"))
        >>> type(make_scheduler(optimizer, config)).__name__, make_scheduler(optimizer, TrainConfig())
        ('StepLR', None)
    """
    if config.scheduler is None:
        return None
    cls = _SCHEDULER_CLASSES[config.scheduler]
    _check_options("scheduler", cls, config.scheduler_options)
    try:
        return cls(optimizer, **config.scheduler_options)
    except (TypeError, ValueError) as err:
        raise ValueError(f"torch.optim.lr_scheduler rejects scheduler={config.scheduler!r} with options "
                         f"{config.scheduler_options}: {err}") from None



__all__ = ["CLIPPING", "OPTIMIZERS", "RESUME_KEYS", "SCHEDULERS", "TrainConfig", "make_optimizer", "make_scheduler"]

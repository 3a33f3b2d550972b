"""One trainer for every objective of the book (Eq. (6), chapters 6-9).

``Trainer(model, loss_fn, data, config).run()`` minimises ``loss_fn(model, x).loss`` by
minibatch stochastic gradient descent:

* each step draws the next minibatch of a seeded shuffle of ``data`` (a new shuffle every
  epoch) and, for MNIST, binarizes it afresh (dynamic binarization, ``infovae.data``);
* the model's gradient is computed; for adversarial divergences the critic is then trained
  one step on the detached codes (``loss_fn.auxiliary_step``, its own optimiser), before
  the model's optimiser step (Adam, fused where the device has the kernel, or RMSProp),
  after optional gradient clipping (by value to [-c, c], as the PixelCNN experiments, or
  by global norm);
* every quantity of the loss (and of the critic) is averaged over ``log_every`` steps into
  ``trainer.history``; evaluation hooks run every ``eval_every`` steps and are logged too.

Checkpoints are written atomically (a temporary file, then ``os.replace``), hold only
tensors and plain Python values (read back with ``torch.load(weights_only=True)``), and
carry every random state (torch's, the shuffle's and the binarization's), so a resumed run
continues exactly as an uninterrupted one. A loss that becomes NaN or infinite stops
training with ``NonFiniteLossError`` naming the step and the term, before the parameters
are touched; the last checkpoint on disk is the last good one.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from .data import binarize_images
from .precision import PRECISIONS, autocast_networks, resolve_precision
from .runtime import get_device, seed_everything

OPTIMIZERS: tuple[str, ...] = ("adam", "rmsprop")
CLIPPING: tuple[str | None, ...] = (None, "value", "norm")
CHECKPOINT_FORMAT = 1

EvalHook = Callable[["Trainer"], Mapping[str, float]]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite during training."""


@dataclass
class TrainConfig:
    """How to train (defaults: the DCGAN experiments' Adam 1e-4, batch 100).

    Attributes:
        iterations: total number of optimiser steps of ``run()``.
        batch_size: images per step.
        optimizer: ``"adam"`` (fused where available) or ``"rmsprop"``.
        lr: learning rate.
        clip: ``None``, ``"value"`` (each gradient entry clipped to [-clip_value, clip_value])
            or ``"norm"`` (global gradient norm at most clip_value).
        clip_value: the clipping threshold.
        binarize: ``"stochastic"`` (a fresh Bernoulli draw per batch), ``"threshold"`` or
            ``None`` (data used as given, e.g. the two-point data).
        seed: seeds torch, the data order and the binarization.
        log_every: steps averaged into one history entry.
        eval_every: steps between evaluation hooks (0: never).
        checkpoint_every: steps between checkpoints (0: only at the end of ``run``).
        checkpoint: file of the checkpoint (``None``: no checkpoints).
        progress: show a tqdm progress bar.
        precision: ``"fp32"``, ``"bf16"`` (bf16 autocast of the networks only, where the
            device has native bf16; ``infovae.precision``) or ``"auto"`` (bf16 where native).
    """

    iterations: int = 1000
    batch_size: int = 100
    optimizer: str = "adam"
    lr: float = 1e-4
    clip: str | None = None
    clip_value: float = 1.0
    binarize: str | None = "stochastic"
    seed: int = 0
    log_every: int = 100
    eval_every: int = 0
    checkpoint_every: int = 0
    checkpoint: str | None = None
    progress: bool = True
    precision: str = "fp32"

    def __post_init__(self) -> None:
        for name in ("iterations", "log_every", "eval_every", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be non-negative, got {getattr(self, name)}")
        if self.batch_size < 1 or self.log_every < 1:
            raise ValueError(f"batch_size and log_every must be positive, got {self.batch_size}, {self.log_every}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.clip not in CLIPPING:
            raise ValueError(f"clip must be one of {CLIPPING}, got {self.clip!r}")
        if not (self.lr > 0 and self.clip_value > 0):
            raise ValueError(f"lr and clip_value must be positive, got {self.lr}, {self.clip_value}")
        if self.binarize not in (None, "stochastic", "threshold"):
            raise ValueError(f"binarize must be None, 'stochastic' or 'threshold', got {self.binarize!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")


@dataclass
class History:
    """Every logged quantity as a series of (step, value) pairs.

    ``history["loss"]`` is the list of values, ``history.steps("loss")`` their steps.
    """

    series: dict[str, list[list[float]]] = field(default_factory=dict)

    def log(self, step: int, values: Mapping[str, float]) -> None:
        """Append ``values`` (name -> number) at ``step``."""
        for name, value in values.items():
            steps, vals = self.series.setdefault(name, [[], []])
            steps.append(int(step))
            vals.append(float(value))

    def __getitem__(self, name: str) -> list[float]:
        return self.series[name][1]

    def __contains__(self, name: str) -> bool:
        return name in self.series

    def steps(self, name: str) -> list[int]:
        """The steps at which ``name`` was logged."""
        return [int(s) for s in self.series[name][0]]

    @property
    def names(self) -> list[str]:
        """Names of the logged quantities."""
        return list(self.series)


def _make_optimizer(params: Sequence[nn.Parameter], config: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, fused=device.type in ("cuda", "cpu"))
    return torch.optim.RMSprop(params, lr=config.lr)


def _auxiliary_optimizers(loss_fn: nn.Module) -> list[torch.optim.Optimizer]:
    """Optimisers that live inside the loss (adversarial critics), to checkpoint them too."""
    if not isinstance(loss_fn, nn.Module):
        return []
    found = (getattr(m, "optimizer", None) for m in loss_fn.modules())
    return [opt for opt in found if isinstance(opt, torch.optim.Optimizer)]


def save_checkpoint(state: Mapping, path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically: a crash mid-write leaves the old file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            torch.save(dict(state), fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: torch.device | str | None = "cpu") -> dict:
    """Read a checkpoint with ``torch.load(weights_only=True)`` (tensors and plain values only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an infovae training checkpoint (format {CHECKPOINT_FORMAT})")
    return state


class Trainer:
    """Trains ``model`` on ``data`` by minimising ``loss_fn(model, x).loss``.

    Args:
        model: an ``infovae.VAE`` (or any module ``loss_fn`` accepts).
        loss_fn: e.g. ``infovae.InfoVAELoss``: ``loss_fn(model, x)`` returns an object with
            ``loss`` (scalar), ``reconstruction`` ([B]), ``kl`` ([B] or None), ``divergence``
            (scalar or None) and ``z`` (codes); ``has_auxiliary``/``auxiliary_step(z)`` for a
            critic trained alongside.
        data: the training set ``[N, ...]``, moved to the device once.
        config: a ``TrainConfig``.
        hooks: evaluation hooks ``hook(trainer) -> {name: number}``, run every
            ``config.eval_every`` steps with the model in eval mode.
        device: defaults to ``iv.get_device()``.
        meta: plain values stored in every checkpoint (e.g. how to rebuild the model).
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable,
        data: torch.Tensor,
        config: TrainConfig | None = None,
        hooks: Sequence[EvalHook] = (),
        device: torch.device | str | None = None,
        meta: Mapping | None = None,
    ):
        self.config = config = config or TrainConfig()
        self.device = torch.device(device) if device is not None else get_device()
        if not isinstance(data, torch.Tensor) or data.dim() < 2:
            raise ValueError("data must be a tensor [N, ...] of training examples")
        if len(data) < config.batch_size:
            raise ValueError(f"batch_size {config.batch_size} exceeds the {len(data)} training examples")
        if not bool(torch.isfinite(data).all()):
            raise ValueError("data contains NaN or infinite values")
        if config.binarize is not None and (data.min() < 0 or data.max() > 1):
            raise ValueError(f"binarize={config.binarize!r} needs data in [0, 1]; use binarize=None otherwise")
        self.precision = resolve_precision(config.precision, self.device)  # "fp32" or "bf16"
        seed_everything(config.seed)
        self.model = model.to(self.device)
        self.loss_fn = loss_fn.to(self.device) if isinstance(loss_fn, nn.Module) else loss_fn
        self.data = data.to(self.device)
        self.hooks = list(hooks)
        self.meta = dict(meta or {})
        self.optimizer = _make_optimizer(list(model.parameters()), config, self.device)
        self.order_generator = torch.Generator().manual_seed(config.seed)
        self.binarize_generator = torch.Generator(device=self.device).manual_seed(config.seed + 1)
        self.step = 0
        self.history = History()
        self.last_checkpoint: tuple[Path, int] | None = None
        self._order = torch.randperm(len(self.data), generator=self.order_generator)
        self._cursor = 0
        self._pending: dict[str, list[float]] = {}  # name -> [sum, count] since the last log

    # ------------------------------------------------------------------ one step

    def next_batch(self) -> torch.Tensor:
        """The next minibatch of the seeded shuffle, binarized afresh."""
        n, b = len(self.data), self.config.batch_size
        if self._cursor + b > n:  # a new epoch (an incomplete last batch is dropped)
            self._order = torch.randperm(n, generator=self.order_generator)
            self._cursor = 0
        idx = self._order[self._cursor : self._cursor + b].to(self.device)
        self._cursor += b
        x = self.data[idx]
        if self.config.binarize is not None:
            x = binarize_images(x, self.config.binarize, self.binarize_generator)
        return x

    def train_step(self) -> dict[str, float]:
        """One optimiser step (and one critic step, if any); returns the step's quantities."""
        x = self.next_batch()
        with autocast_networks(self.precision, self.device):
            out = self.loss_fn(self.model, x)
        terms = {"loss": out.loss, "reconstruction": out.reconstruction.mean()}
        if out.kl is not None:
            terms["kl"] = out.kl.mean()
        if out.divergence is not None:
            terms["divergence"] = out.divergence
        values = dict(zip(terms, torch.stack([t.detach() for t in terms.values()]).tolist()))  # one sync
        if not math.isfinite(values["loss"]):
            self._stop(values, [k for k, v in values.items() if k != "loss" and not math.isfinite(v)] or ["loss"])
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        if getattr(self.loss_fn, "has_auxiliary", False):
            values.update(self.loss_fn.auxiliary_step(out.z.detach()))
        if self.config.clip == "value":
            nn.utils.clip_grad_value_(self.model.parameters(), self.config.clip_value)
        elif self.config.clip == "norm":
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_value)
        self.optimizer.step()
        self.step += 1
        return values

    def _stop(self, values: Mapping[str, float], bad: Sequence[str]) -> None:
        where = (
            f"the last good checkpoint is {self.last_checkpoint[0]} (step {self.last_checkpoint[1]})"
            if self.last_checkpoint
            else "no checkpoint had been written"
        )
        shown = ", ".join(f"{k} = {v}" for k, v in values.items())
        raise NonFiniteLossError(
            f"training stopped at step {self.step + 1}: the {' and '.join(bad)} term became non-finite "
            f"({shown}); the parameters were not updated, {where}. Lower the learning rate, clip "
            "gradients (TrainConfig.clip) or check the data."
        )

    # ------------------------------------------------------------------ the loop

    def run(self, iterations: int | None = None) -> History:
        """Train until step ``config.iterations`` (or for ``iterations`` more steps).

        Returns the history. A checkpoint is written at the end if ``config.checkpoint`` is set.
        """
        cfg = self.config
        end = cfg.iterations if iterations is None else self.step + iterations
        with tqdm(total=end, initial=self.step, disable=not cfg.progress, desc="training", leave=False) as bar:
            while self.step < end:
                for name, value in self.train_step().items():
                    acc = self._pending.setdefault(name, [0.0, 0])
                    acc[0] += value
                    acc[1] += 1
                bar.update(1)
                if self.step % cfg.log_every == 0:
                    means = {name: total / count for name, (total, count) in self._pending.items()}
                    self.history.log(self.step, means)
                    self._pending = {}
                    bar.set_postfix(loss=f"{means['loss']:.4g}")
                if cfg.eval_every and self.step % cfg.eval_every == 0:
                    self.evaluate()
                if cfg.checkpoint and cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self.save()
        if cfg.checkpoint and (self.last_checkpoint is None or self.last_checkpoint[1] != self.step):
            self.save()
        return self.history

    def evaluate(self) -> dict[str, float]:
        """Run every hook with the model in eval mode; log and return their numbers."""
        was_training = self.model.training
        self.model.eval()
        try:
            results: dict[str, float] = {}
            for hook in self.hooks:
                results.update({k: float(v) for k, v in hook(self).items()})
        finally:
            self.model.train(was_training)
        self.history.log(self.step, results)
        return results

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict:
        """Everything needed to resume exactly: parameters, optimisers, random states, data order, history."""
        rng = {
            "torch": torch.get_rng_state(),
            "order": self.order_generator.get_state(),
            "binarize": self.binarize_generator.get_state(),
        }
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "config": asdict(self.config),
            "meta": self.meta,
            "model": self.model.state_dict(),
            "loss_fn": self.loss_fn.state_dict() if isinstance(self.loss_fn, nn.Module) else {},
            "optimizer": self.optimizer.state_dict(),
            "auxiliary_optimizers": [opt.state_dict() for opt in _auxiliary_optimizers(self.loss_fn)],
            "rng": rng,
            "order": self._order,
            "cursor": self._cursor,
            "pending": self._pending,
            "history": self.history.series,
        }

    def load_state_dict(self, state: Mapping) -> None:
        """Restore a ``state_dict()`` (the model, loss and data must be built as before)."""
        self.model.load_state_dict(state["model"])
        if isinstance(self.loss_fn, nn.Module):
            self.loss_fn.load_state_dict(state["loss_fn"])
        self.optimizer.load_state_dict(state["optimizer"])
        aux = _auxiliary_optimizers(self.loss_fn)
        if len(aux) != len(state["auxiliary_optimizers"]):
            raise ValueError(
                f"the checkpoint has {len(state['auxiliary_optimizers'])} critic optimiser(s), this loss has "
                f"{len(aux)}: build an adversarial loss with latent_dim=... so that its critic exists before resuming"
            )
        for opt, opt_state in zip(aux, state["auxiliary_optimizers"]):
            opt.load_state_dict(opt_state)
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        self.order_generator.set_state(rng["order"])
        self.binarize_generator.set_state(rng["binarize"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        self.step = int(state["step"])
        self._order = state["order"]
        self._cursor = int(state["cursor"])
        self._pending = {k: list(v) for k, v in state["pending"].items()}
        self.history = History({k: [list(s), list(v)] for k, (s, v) in state["history"].items()})

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write a checkpoint atomically (to ``config.checkpoint`` by default)."""
        path = path or self.config.checkpoint
        if path is None:
            raise ValueError("no checkpoint path: pass one or set TrainConfig.checkpoint")
        written = save_checkpoint(self.state_dict(), path)
        self.last_checkpoint = (written, self.step)
        return written

    def resume(self, path: str | os.PathLike | None = None) -> "Trainer":
        """Load a checkpoint written by ``save`` and continue from its step; returns ``self``."""
        path = Path(path or self.config.checkpoint)
        # on the CPU: random states must stay CPU tensors; parameters are copied to the device
        self.load_state_dict(load_checkpoint(path, map_location="cpu"))
        self.last_checkpoint = (path, self.step)
        return self


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loss_fn: Callable,
    data: torch.Tensor,
    batch_size: int = 500,
    binarize: str | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """Average the loss and its terms over ``data`` (model in eval mode), in nats per image.

    Args:
        model, loss_fn: as for ``Trainer``.
        data: examples ``[N, ...]`` (moved batch by batch to the model's device).
        batch_size: examples per forward pass.
        binarize: binarization applied to each batch (``None``: data used as given).
        generator: source of the stochastic binarization.
    """
    if batch_size < 1 or len(data) == 0:
        raise ValueError("evaluate needs a non-empty data set and a positive batch_size")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    try:
        for start in range(0, len(data), batch_size):
            x = data[start : start + batch_size].to(device)
            if binarize is not None:
                x = binarize_images(x, binarize, generator)
            out = loss_fn(model, x)
            terms = {"loss": out.loss * len(x), "reconstruction": out.reconstruction.sum()}
            if out.kl is not None:
                terms["kl"] = out.kl.sum()
            if out.divergence is not None:
                terms["divergence"] = out.divergence * len(x)
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + float(value)
    finally:
        model.train(was_training)
    return {name: total / len(data) for name, total in sums.items()}

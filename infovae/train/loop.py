"""One trainer for every objective of the book (Eq. (6), chapters 6-9).

``Trainer(model, loss_fn, data, config).run()`` minimises ``loss_fn(model, x).loss`` by
minibatch stochastic gradient descent:

* each step draws the next minibatch of a seeded shuffle of ``data`` (a tensor, a map-style
  ``Dataset`` or a ``DataLoader`` over one; a new shuffle every epoch) and, with
  ``binarize="stochastic"`` (MNIST), binarizes it afresh (dynamic binarization, ``infovae.data``);
* the model's gradient is computed; for adversarial divergences the critic is then trained
  one step on the detached codes (``loss_fn.auxiliary_step``, its own optimiser), before
  the model's optimiser step (any ``torch.optim`` optimiser by name, with its options;
  Adam by default, fused where the device has the kernel; or one the caller builds), after
  optional gradient clipping (by value to [-c, c], as the PixelCNN experiments, or by global
  norm), then one step of the learning-rate scheduler, if any (any
  ``torch.optim.lr_scheduler`` class by name, stepped once per optimiser step);
* every quantity of the loss (and of the critic) is averaged over ``log_every`` steps into
  ``trainer.history``; evaluation hooks run every ``eval_every`` steps and are logged too.

Checkpoints are written atomically (a temporary file, then ``os.replace``), hold only
tensors and plain Python values (read back with ``torch.load(weights_only=True)``), and
carry every random state, so a resumed run continues exactly as an uninterrupted one. The
trainer owns its random streams (the model's sampling, the shuffle, the binarization), all
seeded from ``config.seed``: it never reseeds torch's global generator, and the caller's
random state is the same after ``run()`` as before. A checkpoint also stores the training
and objective configurations; ``resume`` refuses a checkpoint written with other settings
and lists the differences.

Nothing non-finite is ever applied or saved: a loss that becomes NaN or infinite, a
non-finite gradient under a finite loss, or a forward pass that fails on non-finite values
(e.g. a torch.distributions validation error) stops training with ``NonFiniteLossError``
naming the step, before the parameters are touched; the last checkpoint on disk is the last
good one.

Example::

    trainer = Trainer(model, InfoVAELoss.mmd_vae(), x_train, TrainConfig(iterations=2000, binarize="stochastic"))
    history = trainer.run()
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset
from tqdm.auto import tqdm

from .. import validation
from ..data import binarize_images
from ..precision import autocast_networks, resolve_precision
from ..runtime import get_device
from .checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from .config import RESUME_KEYS, TrainConfig, make_optimizer, make_scheduler

EvalHook = Callable[["Trainer"], Mapping[str, float]]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite during training.

    Example:
        >>> from infovae.train import NonFiniteLossError
        >>> issubclass(NonFiniteLossError, RuntimeError)  # raised by Trainer.train_step and Trainer.save
        True
    """




@dataclass
class History:
    """Every logged quantity as a series of (step, value) pairs.

    ``history["loss"]`` is the list of values, ``history.steps("loss")`` their steps.

    Example:
        >>> from infovae.train import History
        >>> history = History()
        >>> history.log(100, {"loss": 2.5, "kl": 1.0})
        >>> history.log(200, {"loss": 1.5})
        >>> history["loss"], history.steps("loss"), history.names
        ([2.5, 1.5], [100, 200], ['loss', 'kl'])
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



def _auxiliary_optimizers(loss_fn: object) -> list[torch.optim.Optimizer]:
    """Optimisers that live inside the loss (adversarial critics), to checkpoint them too."""
    if not isinstance(loss_fn, nn.Module):
        return []
    found = (getattr(m, "optimizer", None) for m in loss_fn.modules())
    return [opt for opt in found if isinstance(opt, torch.optim.Optimizer)]



def _first_tensor(item: object) -> torch.Tensor:
    """The example of a dataset item: the item itself, or the first element of ``(x, y, ...)``."""
    if isinstance(item, (tuple, list)) and item:
        item = item[0]
    if not isinstance(item, torch.Tensor):
        raise TypeError(f"dataset items must be tensors or (tensor, ...) tuples, got {type(item).__name__}")
    return item


def _finite_tensors(tensors: Sequence[torch.Tensor]) -> bool:
    """Whether every tensor is finite (one device sync)."""
    if not tensors:
        return True
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


class Trainer:
    """Trains ``model`` on ``data`` by minimising ``loss_fn(model, x).loss``.

    Args:
        model: an ``infovae.VAE`` (or any module ``loss_fn`` accepts).
        loss_fn: e.g. ``infovae.InfoVAELoss``: ``loss_fn(model, x)`` returns an object with
            ``loss`` (scalar), ``reconstruction`` ([B]), ``kl`` ([B] or None), ``divergence``
            (scalar or None) and ``z`` (codes); ``has_auxiliary``/``auxiliary_step(z)`` for a
            critic trained alongside. Its ``config`` (``ObjectiveConfig``), if any, is stored
            in every checkpoint.
        data: the training set: a tensor ``[N, ...]`` (moved to the device once), a map-style
            ``torch.utils.data.Dataset`` whose items are tensors or ``(x, ...)`` tuples, or a
            ``DataLoader`` over one (its dataset is read in the trainer's own seeded order and
            batches of ``config.batch_size``, which keeps a resumed run exact).
        config: a ``TrainConfig``.
        hooks: evaluation hooks ``hook(trainer) -> {name: number}``, run every
            ``config.eval_every`` steps with the model in eval mode.
        device: defaults to ``iv.get_device()``.
        meta: plain values (str, numbers, None, lists, str-keyed dicts) stored in every
            checkpoint (e.g. how to rebuild the model); checked here.

    Example:
        >>> import torch
        >>> from infovae import InfoVAELoss, TrainConfig, Trainer, build_vae
        >>> from infovae.data import two_point_data
        >>> _ = torch.manual_seed(0)
        >>> config = TrainConfig(iterations=4, batch_size=8, lr=1e-3, log_every=2, progress=False)
        >>> trainer = Trainer(build_vae("toy", 1), InfoVAELoss.elbo(), two_point_data(32), config, device="cpu")
        >>> history = trainer.run()
        >>> trainer.step, history.steps("loss"), history.names
        (4, [2, 4], ['loss', 'reconstruction', 'kl'])
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable,
        data: torch.Tensor | Dataset | DataLoader,
        config: TrainConfig | None = None,
        hooks: Sequence[EvalHook] = (),
        device: torch.device | str | None = None,
        meta: Mapping | None = None,
    ):
        self.config = config = config or TrainConfig()
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module (e.g. infovae.VAE), got {type(model).__name__}")
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable as loss_fn(model, x), got {type(loss_fn).__name__}")
        self.device = torch.device(device) if device is not None else get_device()
        self.data, self._n = self._source(data)
        if self._n < config.batch_size:
            raise ValueError(f"batch_size {config.batch_size} exceeds the {self._n} training examples")
        self.meta = dict(meta or {})
        validation.plain("meta", self.meta)
        self.precision = resolve_precision(config.precision, self.device)  # "fp32" or "bf16"
        self.model = model.to(self.device)
        self.loss_fn = loss_fn.to(self.device) if isinstance(loss_fn, nn.Module) else loss_fn
        self.hooks = list(hooks)
        self.optimizer = make_optimizer(list(model.parameters()), config, self.device)
        self.scheduler = make_scheduler(self.optimizer, config)
        self.order_generator = torch.Generator().manual_seed(config.seed)
        self.binarize_generator = torch.Generator(device=self.device).manual_seed(config.seed + 1)
        # the model's own random stream (codes, prior samples): torch's global generators are
        # swapped for it during each step, so the trainer neither reseeds nor advances them
        self._rng: dict[str, torch.Tensor] = {"torch": torch.Generator().manual_seed(config.seed).get_state()}
        if self.device.type == "cuda":
            self._rng["cuda"] = torch.Generator(device=self.device).manual_seed(config.seed).get_state()
        self.step = 0
        self.history = History()
        self.last_checkpoint: tuple[Path, int] | None = None
        self._order = torch.randperm(self._n, generator=self.order_generator)
        self._cursor = 0
        self._pending: dict[str, list[float]] = {}  # name -> [sum, count] since the last log

    def _source(self, data: object) -> tuple[torch.Tensor | Dataset, int]:
        """The training set (a tensor on the device, or a map-style dataset) and its size."""
        if isinstance(data, DataLoader):
            data = data.dataset
        if isinstance(data, torch.Tensor):
            if data.dim() < 2 or len(data) == 0:
                raise ValueError(f"data must be a tensor [N, ...] of training examples, got shape {tuple(data.shape)}")
            if not data.is_floating_point():
                raise TypeError(f"data must be a floating point tensor, got {data.dtype}")
            if not bool(torch.isfinite(data).all()):
                raise ValueError("data contains NaN or infinite values")
            self._check_range(data)
            return data.to(self.device), len(data)
        if isinstance(data, IterableDataset) or not isinstance(data, Dataset) or not hasattr(data, "__len__"):
            raise TypeError(
                "data must be a tensor [N, ...], a map-style torch Dataset (with __len__ and __getitem__) or a "
                f"DataLoader over one, got {type(data).__name__}"
            )
        n = len(data)  # type: ignore[arg-type]
        if n == 0:
            raise ValueError("data is an empty dataset")
        return data, n

    def _check_range(self, x: torch.Tensor) -> None:
        if self.config.binarize is not None and x.numel() and (x.min() < 0 or x.max() > 1):
            raise ValueError(f"binarize={self.config.binarize!r} needs data in [0, 1]; use binarize=None otherwise")

    @contextlib.contextmanager
    def _own_rng(self) -> Iterator[None]:
        """Run a block on the trainer's random stream, leaving torch's global state untouched."""
        cuda = "cuda" in self._rng
        with torch.random.fork_rng(devices=[self.device] if cuda else [], device_type="cuda"):
            torch.set_rng_state(self._rng["torch"])
            if cuda:
                torch.cuda.set_rng_state(self._rng["cuda"], self.device)
            try:
                yield
            finally:
                self._rng["torch"] = torch.get_rng_state()
                if cuda:
                    self._rng["cuda"] = torch.cuda.get_rng_state(self.device)

    # ------------------------------------------------------------------ one step

    def next_batch(self) -> torch.Tensor:
        """The next minibatch of the seeded shuffle, binarized afresh."""
        n, b = self._n, self.config.batch_size
        if self._cursor + b > n:  # a new epoch (an incomplete last batch is dropped)
            self._order = torch.randperm(n, generator=self.order_generator)
            self._cursor = 0
        idx = self._order[self._cursor : self._cursor + b]
        self._cursor += b
        if isinstance(self.data, torch.Tensor):
            x = self.data[idx.to(self.device)]
        else:
            x = torch.stack([_first_tensor(self.data[int(i)]) for i in idx]).to(self.device)
            if not x.is_floating_point() or not bool(torch.isfinite(x).all()):
                raise ValueError("a batch of the dataset is not finite floating point data")
            self._check_range(x)
        if self.config.binarize is not None:
            x = binarize_images(x, self.config.binarize, self.binarize_generator)
        return x

    def _forward(self, x: torch.Tensor):  # type: ignore[no-untyped-def]
        """``loss_fn(model, x)``; a failure on non-finite values becomes NonFiniteLossError."""
        try:
            with autocast_networks(self.precision, self.device):
                return self.loss_fn(self.model, x)
        except ValueError as err:
            message = str(err)
            invalid = "Expected parameter" in message and re.search(r"\bnan\b|\binf\b", message)
            if invalid or not _finite_tensors([p.detach() for p in self.model.parameters()]):
                self._stop(f"the forward pass met non-finite values ({message.splitlines()[0][:200]})")
            if "Expected value argument" in message and self.config.binarize is None:
                raise ValueError(
                    f"{message}\n(TrainConfig.binarize is None, so the data are used as given: for grey-level "
                    "images in [0, 1] with a Bernoulli decoder pass binarize='stochastic')"
                ) from err
            raise

    def train_step(self) -> dict[str, float]:
        """One optimiser step (and one critic step, if any); returns the step's quantities."""
        x = self.next_batch()
        with self._own_rng():
            out = self._forward(x)
            terms = {"loss": out.loss, "reconstruction": out.reconstruction.mean()}
            if out.kl is not None:
                terms["kl"] = out.kl.mean()
            if out.divergence is not None:
                terms["divergence"] = out.divergence
            values = dict(zip(terms, torch.stack([t.detach().float() for t in terms.values()]).tolist()))  # one sync
            if not math.isfinite(values["loss"]):
                bad = [k for k, v in values.items() if k != "loss" and not math.isfinite(v)] or ["loss"]
                self._stop(f"the {' and '.join(bad)} term became non-finite", values)
            self.optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            if getattr(self.loss_fn, "has_auxiliary", False):
                values.update(getattr(self.loss_fn, "auxiliary_step")(out.z.detach()))
        if self.config.clip == "value":
            nn.utils.clip_grad_value_(self.model.parameters(), self.config.clip_value)
        elif self.config.clip == "norm":
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_value)
        named = [(name, p.grad) for name, p in self.model.named_parameters() if p.grad is not None]
        if not _finite_tensors([g for _, g in named]):
            bad = [name for name, g in named if not bool(torch.isfinite(g).all())]
            self._stop(f"the gradient of {', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''} became non-finite "
                       "although the loss was finite", values)
        if self.scheduler is not None:
            values["lr"] = float(self.optimizer.param_groups[0]["lr"])  # the rate this step used
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.step += 1
        return values

    def _stop(self, what: str, values: Mapping[str, float] | None = None) -> None:
        where = (
            f"the last good checkpoint is {self.last_checkpoint[0]} (step {self.last_checkpoint[1]})"
            if self.last_checkpoint
            else "no checkpoint had been written"
        )
        shown = f" ({', '.join(f'{k} = {v}' for k, v in values.items())})" if values else ""
        raise NonFiniteLossError(
            f"training stopped at step {self.step + 1}: {what}{shown}; the parameters were not updated, {where}. "
            "Lower the learning rate, clip gradients (TrainConfig.clip) or check the data."
        )

    # ------------------------------------------------------------------ the loop

    def run(self, iterations: int | None = None) -> History:
        """Train until step ``config.iterations`` (or for ``iterations`` more steps), model in train mode.

        Returns the history. A checkpoint is written at the end if ``config.checkpoint`` is set.
        """
        cfg = self.config
        if iterations is not None and (isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0):
            raise ValueError(f"iterations must be a non-negative integer, got {iterations!r}")
        end = cfg.iterations if iterations is None else self.step + iterations
        self.model.train()
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
        """Run every hook with the model in eval mode (on the trainer's random stream); log and return their numbers."""
        was_training = self.model.training
        self.model.eval()
        try:
            results: dict[str, float] = {}
            with self._own_rng():
                for hook in self.hooks:
                    results.update({k: float(v) for k, v in hook(self).items()})
        finally:
            self.model.train(was_training)
        self.history.log(self.step, results)
        return results

    # ------------------------------------------------------------------ checkpoints

    def _objective(self) -> dict | None:
        as_dict = getattr(getattr(self.loss_fn, "config", None), "as_dict", None)
        return as_dict() if callable(as_dict) else None

    def state_dict(self) -> dict:
        """Everything needed to resume exactly: parameters, optimisers, random states, data order,
        history, and the training and objective configurations."""
        rng = {
            **self._rng,
            "order": self.order_generator.get_state(),
            "binarize": self.binarize_generator.get_state(),
        }
        return {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "config": asdict(self.config),
            "objective": self._objective(),
            "data_size": self._n,
            "meta": self.meta,
            "model": self.model.state_dict(),
            "loss_fn": self.loss_fn.state_dict() if isinstance(self.loss_fn, nn.Module) else {},
            "optimizer": self.optimizer.state_dict(),
            "auxiliary_optimizers": [opt.state_dict() for opt in _auxiliary_optimizers(self.loss_fn)],
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "rng": rng,
            "order": self._order,
            "cursor": self._cursor,
            "pending": self._pending,
            "history": self.history.series,
        }

    def differences(self, state: Mapping) -> list[str]:
        """The settings of a ``state_dict()`` that differ from this trainer's (``RESUME_KEYS``,
        the objective and the data size), as ``"name: checkpoint X, now Y"``."""
        now, default = asdict(self.config), asdict(TrainConfig())
        stored = {**default, **state.get("config", {})}  # a setting older checkpoints lack had its default
        found = [f"{k}: checkpoint {stored[k]!r}, now {now[k]!r}" for k in RESUME_KEYS if stored[k] != now[k]]
        objective, stored_objective = self._objective(), state.get("objective")
        if objective is not None and stored_objective is not None:
            found += [
                f"objective {k}: checkpoint {stored_objective.get(k)!r}, now {v!r}"
                for k, v in objective.items()
                if stored_objective.get(k) != v
            ]
        if "data_size" in state and state["data_size"] != self._n:
            found.append(f"data size: checkpoint {state['data_size']}, now {self._n}")
        return found

    def load_state_dict(self, state: Mapping) -> None:
        """Restore a ``state_dict()`` (the model, loss and data must be built as before)."""
        self.model.load_state_dict(state["model"])
        if isinstance(self.loss_fn, nn.Module):
            self.loss_fn.load_state_dict(state["loss_fn"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        aux = _auxiliary_optimizers(self.loss_fn)
        if len(aux) != len(state["auxiliary_optimizers"]):
            raise ValueError(
                f"the checkpoint has {len(state['auxiliary_optimizers'])} critic optimiser(s), this loss has "
                f"{len(aux)}: build an adversarial loss with latent_dim=... so that its critic exists before resuming"
            )
        for opt, opt_state in zip(aux, state["auxiliary_optimizers"]):
            opt.load_state_dict(opt_state)
        rng = state["rng"]
        self._rng = {"torch": rng["torch"]}
        if self.device.type == "cuda":
            self._rng["cuda"] = rng.get("cuda", torch.Generator(device=self.device).manual_seed(self.config.seed).get_state())
        self.order_generator.set_state(rng["order"])
        self.binarize_generator.set_state(rng["binarize"])
        self.step = int(state["step"])
        self._order = state["order"]
        self._cursor = int(state["cursor"])
        self._pending = {k: list(v) for k, v in state["pending"].items()}
        self.history = History({k: [list(s), list(v)] for k, (s, v) in state["history"].items()})

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write a checkpoint atomically (to ``config.checkpoint`` by default).

        Refuses (``NonFiniteLossError``) to write parameters that are not finite, so the file
        on disk is always the last good one.
        """
        path = path or self.config.checkpoint
        if path is None:
            raise ValueError("no checkpoint path: pass one or set TrainConfig.checkpoint")
        if not _finite_tensors([p.detach() for p in self.model.parameters()]):
            self._stop("the parameters are not finite, so no checkpoint was written")
        written = save_checkpoint(self.state_dict(), path)
        self.last_checkpoint = (written, self.step)
        return written

    def resume(self, path: str | os.PathLike | None = None) -> "Trainer":
        """Load a checkpoint written by ``save`` and continue from its step; returns ``self``.

        Raises:
            ValueError: the file is not an infovae checkpoint, or it was written with other
                settings (lr, batch size, seed, objective, data size...: all listed).
        """
        target = path or self.config.checkpoint
        if target is None:
            raise ValueError("no checkpoint to resume from: pass a path or set TrainConfig.checkpoint")
        path = Path(target)
        # on the CPU: random states must stay CPU tensors; parameters are copied to the device
        state = load_checkpoint(path, map_location="cpu")
        differences = self.differences(state)
        if differences:
            raise ValueError(
                f"{path} was written with other settings; resume with the same ones or start a new run: "
                + "; ".join(differences)
            )
        self.load_state_dict(state)
        self.last_checkpoint = (path, self.step)
        return self




__all__ = ["EvalHook", "History", "NonFiniteLossError", "Trainer"]

"""One trainer for every objective of the book (Eq. (6), chapters 6-9).

``Trainer(model, loss_fn, data, config).run()`` minimises ``loss_fn(model, x).loss`` by
minibatch stochastic gradient descent:

* each step draws the next minibatch: of a seeded shuffle of ``data`` when it is a tensor or a
  map-style ``Dataset`` (batches of ``config.batch_size``, a new shuffle every epoch), or the
  next batch of a ``DataLoader``, whose own batch size, sampler, collate function and workers
  are used as they are; with
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
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, SequentialSampler, default_collate
from tqdm.auto import tqdm

from .. import validation
from ..data import binarize_images
from ..precision import autocast_networks, resolve_precision
from ..runtime import resolve_device
from .checkpoint import CHECKPOINT_FORMAT, load_checkpoint, load_weights, plain_weights, save_checkpoint
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



def _first_tensor(item: object, what: str = "dataset items") -> torch.Tensor:
    """The examples of a dataset item or batch: the tensor itself, or the first element of ``(x, y, ...)``."""
    if isinstance(item, (tuple, list)) and item:
        item = item[0]
    if not isinstance(item, torch.Tensor):
        raise TypeError(f"{what} must be tensors or (tensor, ...) tuples, got {type(item).__name__}")
    return item


def _uses_network_region(module: nn.Module) -> bool:
    """Whether ``module`` (or a submodule) runs its body in ``infovae.precision.network_region``."""
    return any(getattr(m, "mixed_precision", False) for m in module.modules())


def _latent_dim(model: nn.Module) -> int | None:
    dim = getattr(getattr(model, "_orig_mod", model), "latent_dim", None)
    return dim if isinstance(dim, int) else None


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
        self.device = resolve_device(device)
        self.loader = data if isinstance(data, DataLoader) else None
        self.data, self._n = self._source(data)
        if self.loader is None and self._n < config.batch_size:
            raise ValueError(f"batch_size {config.batch_size} exceeds the {self._n} training examples")
        self.meta = dict(meta or {})
        validation.plain("meta", self.meta)
        self.precision = self._precision(model, config.precision)  # "fp32" or "bf16"
        self._dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
        if isinstance(self.data, torch.Tensor) and self._dtype is not None and self.data.dtype != self._dtype:
            raise TypeError(f"the data are {self.data.dtype} but the model's parameters are {self._dtype}: convert one "
                            f"of them (data.to({self._dtype}) or model.to({self.data.dtype}))")
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
        self._batches: Iterator | None = None  # the DataLoader's iterator in the current pass
        self._loader_position = 0  # batches drawn from it in the current pass
        self._pending: dict[str, list[float]] = {}  # name -> [sum, count] since the last log

    def _precision(self, model: nn.Module, precision: str) -> str:
        """The precision resolved for the device; bf16 only where the networks can take it."""
        resolved = resolve_precision(precision, self.device)
        if resolved == "bf16" and not _uses_network_region(model):
            if precision == "bf16":
                raise ValueError(
                    "precision='bf16' autocasts the networks' bodies inside infovae.precision.network_region, which "
                    f"the networks of this {type(model).__name__} do not use, so they would run in float32: use "
                    "precision='fp32', or run your encoder's and decoder's bodies in "
                    "`with infovae.precision.network_region(x.device):`, return float32 distributions and set the "
                    "class attribute mixed_precision = True"
                )
            warnings.warn("precision='auto' runs in fp32: the model's networks do not use infovae.precision."
                          "network_region (see TrainConfig.precision)", stacklevel=3)
            return "fp32"
        return resolved

    def _source(self, data: object) -> tuple[torch.Tensor | Dataset, int]:
        """The training set (a tensor on the device, or a map-style dataset) and its size."""
        if isinstance(data, DataLoader):
            if len(data) == 0:  # type: ignore[arg-type]
                raise ValueError("the DataLoader yields no batches (an empty dataset, or drop_last with fewer "
                                 "examples than its batch_size)")
            size = len(data.dataset) if hasattr(data.dataset, "__len__") else len(data)  # type: ignore[arg-type]
            return data.dataset, size
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
        """The next minibatch (of the seeded shuffle, or of the DataLoader), binarized afresh."""
        if self.loader is not None:
            return self._loader_batch()
        n, b = self._n, self.config.batch_size
        if self._cursor + b > n:  # a new epoch (an incomplete last batch is dropped)
            self._order = torch.randperm(n, generator=self.order_generator)
            self._cursor = 0
        idx = self._order[self._cursor : self._cursor + b]
        self._cursor += b
        if isinstance(self.data, torch.Tensor):
            x = self.data[idx.to(self.device)]
        else:
            batch = default_collate([self.data[int(i)] for i in idx])  # type: ignore[index]
            x = self._checked_batch(_first_tensor(batch))
        if self.config.binarize is not None:
            x = binarize_images(x, self.config.binarize, self.binarize_generator)
        return x

    def _loader_batch(self) -> torch.Tensor:
        """The DataLoader's next batch (a new pass when it is exhausted), checked and on the device."""
        assert self.loader is not None
        if self._batches is None:  # the first pass, or a resumed one: skip the batches drawn before
            self._batches = iter(self.loader)
            for _ in range(self._loader_position):
                next(self._batches, None)
        try:
            batch = next(self._batches)
        except StopIteration:
            self._batches, self._loader_position = iter(self.loader), 0
            batch = next(self._batches)
        self._loader_position += 1
        x = self._checked_batch(_first_tensor(batch, "the DataLoader's batches"))
        if self.config.binarize is not None:
            x = binarize_images(x, self.config.binarize, self.binarize_generator)
        return x

    def _checked_batch(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if not x.is_floating_point() or not bool(torch.isfinite(x).all()):
            raise ValueError(f"a batch of the data is not finite floating point data ({x.dtype})")
        if x.dim() < 2:
            raise ValueError(f"a batch of the data must be [B, ...], got shape {tuple(x.shape)}")
        if self._dtype is not None and x.dtype != self._dtype:
            raise TypeError(f"the data are {x.dtype} but the model's parameters are {self._dtype}: convert one of "
                            f"them (in the dataset, or model.to({x.dtype}))")
        self._check_range(x)
        return x

    def _forward(self, x: torch.Tensor):  # type: ignore[no-untyped-def]
        """``loss_fn(model, x)``; a failure on non-finite values becomes NonFiniteLossError."""
        try:
            with autocast_networks(self.precision, self.device):
                out = self.loss_fn(self.model, x)
        except ValueError as err:
            message = str(err)
            invalid = "Expected parameter" in message and re.search(r"\bnan\b|\binf\b", message)
            if invalid or not _finite_tensors([p.detach() for p in self.model.parameters()]):
                self._stop(f"the forward pass met non-finite values ({_one_line(message)})")
            if "Expected value argument" in message and self.config.binarize is None:
                raise ValueError(
                    f"{message}\n(TrainConfig.binarize is None, so the data are used as given: for grey-level "
                    "images in [0, 1] with a Bernoulli decoder pass binarize='stochastic')"
                ) from err
            raise
        return _as_output(out)

    def train_step(self) -> dict[str, float]:
        """One optimiser step (and one critic step, if any); returns the step's quantities."""
        x = self.next_batch()
        with self._own_rng():
            out = self._forward(x)
            terms = {"loss": out.loss}
            if out.reconstruction is not None:
                terms["reconstruction"] = out.reconstruction.mean()
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
            if getattr(self.loss_fn, "has_auxiliary", False) and out.z is not None:
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
        if iterations is not None:
            validation.integer("iterations", iterations, minimum=0)
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
        if self._pending and "loss" not in self.history:  # a run shorter than log_every logs what it has
            self.history.log(self.step, {name: total / count for name, (total, count) in self._pending.items()})
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
            "model_spec": getattr(getattr(self.model, "_orig_mod", self.model), "spec", None),
            "model": plain_weights(self.model),
            "loss_fn": self.loss_fn.state_dict() if isinstance(self.loss_fn, nn.Module) else {},
            "optimizer": self.optimizer.state_dict(),
            "auxiliary_optimizers": [opt.state_dict() for opt in _auxiliary_optimizers(self.loss_fn)],
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "rng": rng,
            "order": self._order,
            "cursor": self._cursor,
            "loader_position": self._loader_position,
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
        spec, stored_spec = getattr(getattr(self.model, "_orig_mod", self.model), "spec", None), state.get("model_spec")
        if spec is not None and stored_spec is not None:
            found += [f"model {k}: checkpoint {stored_spec.get(k)!r}, now {v!r}" for k, v in spec.items()
                      if stored_spec.get(k) != v]
        elif (dim := _latent_dim(self.model)) is not None and (stored_dim := _latent_dim_of(state)) not in (None, dim):
            found.append(f"model latent_dim: checkpoint {stored_dim}, now {dim}")
        return found

    def load_state_dict(self, state: Mapping) -> None:
        """Restore a ``state_dict()`` (the model, loss and data must be built as before)."""
        load_weights(self.model, state["model"])
        if state["auxiliary_optimizers"] and not _auxiliary_optimizers(self.loss_fn):
            self._build_critic()
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
        self._batches, self._loader_position = None, int(state.get("loader_position", 0))
        self._pending = {k: list(v) for k, v in state["pending"].items()}
        self.history = History({k: [list(s), list(v)] for k, (s, v) in state["history"].items()})

    def _build_critic(self) -> None:
        """Build an adversarial loss's critic (its weights then come from the checkpoint), drawing
        its initialisation from a discarded random stream so that nobody's random state moves."""
        build, dim = getattr(self.loss_fn, "_get_critic", None), _latent_dim(self.model)
        if not callable(build) or dim is None:
            return
        with torch.random.fork_rng(devices=[]):
            build(torch.zeros(1, dim, device=self.device))

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
        if self.loader is not None and not isinstance(self.loader.sampler, SequentialSampler):
            warnings.warn(f"resuming from {path} with a shuffling DataLoader: the run continues at step {self.step}, "
                          "but the loader's order is its own (not in the checkpoint), so the resumed run is not "
                          "bit-for-bit the uninterrupted one; pass the tensor or Dataset itself (the trainer's seeded "
                          "shuffle) or a loader with shuffle=False for an exact resume", stacklevel=2)
        self.last_checkpoint = (path, self.step)
        return self




@dataclass
class _Output:
    """What the trainer reads from a loss: the loss and, where the loss gives them, its terms."""

    loss: torch.Tensor
    reconstruction: torch.Tensor | None = None
    kl: torch.Tensor | None = None
    divergence: torch.Tensor | None = None
    z: torch.Tensor | None = None


def _as_output(out: object) -> _Output:
    """``loss_fn``'s result: a scalar tensor (the loss) or an object with ``.loss`` (e.g. ``InfoVAEOutput``)."""
    if isinstance(out, torch.Tensor):
        loss = out
    elif isinstance(getattr(out, "loss", None), torch.Tensor):
        loss = getattr(out, "loss")
    else:
        raise TypeError(f"loss_fn(model, x) must return a scalar tensor or an object with a .loss tensor (such as "
                        f"infovae.InfoVAEOutput), got {type(out).__name__}")
    if loss.dim() != 0 or not loss.is_floating_point():
        raise ValueError(f"the loss must be a floating point scalar (average over the batch), got shape "
                         f"{tuple(loss.shape)} and dtype {loss.dtype}; e.g. return loss.mean()")
    if loss is out:
        return _Output(loss)
    return _Output(loss, *(getattr(out, k, None) for k in ("reconstruction", "kl", "divergence", "z")))


def _one_line(message: str, limit: int = 300) -> str:
    """``message`` on one line (torch's validation errors span several), at most ``limit`` characters."""
    text = " ".join(message.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _latent_dim_of(state: Mapping) -> int | None:
    """The latent dimension of a checkpoint's model, read from its prior's or encoder head's weights."""
    weights = state.get("model", {})
    for name in ("prior.loc", "_orig_mod.prior.loc"):
        if name in weights and weights[name].dim() == 1:
            return int(weights[name].shape[0])
    return None


__all__ = ["EvalHook", "History", "NonFiniteLossError", "Trainer"]

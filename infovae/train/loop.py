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
from torch.distributions import Distribution
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, IterableDataset, SequentialSampler, default_collate
from tqdm.auto import tqdm

from .. import validation as checks
from ..data import binarize_images
from ..distributed import whole_batch
from ..precision import autocast_networks, resolve_training_precision
from ..runtime import resolve_device
from . import parallel
from .checkpoint import CHECKPOINT_FORMAT, load_checkpoint, load_weights, plain_weights, save_checkpoint
from .config import RESUME_KEYS, TrainConfig, make_optimizer, make_scheduler
from .evaluation import evaluate

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


def _nonfinite(tensors: Sequence[torch.Tensor]) -> torch.Tensor | None:
    """A 0-dim tensor, non-zero where some tensor holds NaN or infinity (``None`` for no tensors), without a sync.

    One fused pass per device and dtype (the check ``torch.amp.GradScaler`` makes, at scale 1:
    the values are multiplied by exactly 1.0, i.e. left as they are); where a device has no such
    kernel, one ``isfinite`` per tensor.
    """
    if not tensors:
        return None
    groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
    for t in tensors:
        groups.setdefault((t.device, t.dtype), []).append(t)
    flags = []
    for (device, _), group in groups.items():
        found, one = torch.zeros(1, device=device), torch.ones(1, device=device)
        try:
            torch._amp_foreach_non_finite_check_and_unscale_(group, found, one)
        except (RuntimeError, NotImplementedError):  # a device without the fused kernel
            found = torch.stack([~torch.isfinite(t).all() for t in group]).any().float().reshape(1)
        flags.append(found.to(tensors[0].device))
    return torch.cat(flags).sum()


class _DistributedModel(DistributedDataParallel):
    """``DistributedDataParallel`` that lends the wrapped model's attributes (``prior``, ``latent_dim``...) to the loss."""

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "module":
                raise
            return getattr(self.module, name)


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
            ``DataLoader`` over one (its own batch size, sampler, collate function and workers;
            under ``torchrun`` its sampler must be a ``DistributedSampler``).
        config: a ``TrainConfig``.
        hooks: evaluation hooks ``hook(trainer) -> {name: number}``, run every
            ``config.eval_every`` steps with the model in eval mode.
        device: defaults to ``iv.get_device()`` (under ``torchrun``: ``cuda:LOCAL_RANK``).
        meta: plain values (str, numbers, None, lists, str-keyed dicts) stored in every
            checkpoint (e.g. how to rebuild the model); checked here.
        validation: held-out examples ``[N, ...]`` (a tensor): every ``config.eval_every``
            steps the loss and its terms over them are logged as ``valid_loss``,
            ``valid_reconstruction``...; ``config.best_checkpoint`` keeps the model with the
            lowest ``valid_loss``, ``config.patience`` stops a run that no longer lowers it.
            With ``binarize="stochastic"`` they are binarized once, from ``config.seed``.
        callbacks: objects with ``on_step``/``on_eval``/``on_checkpoint`` (``infovae.train.Callback``;
            ``CSVLogger``, ``TensorBoardLogger``).

    Under ``torchrun --nproc_per_node=N`` (``infovae.train.parallel``) the trainer joins the
    process group, wraps the model in ``DistributedDataParallel`` and trains on the rank's
    shard of every global batch of ``batch_size`` images (so ``batch_size`` must be divisible
    by N); the divergence sees the codes of the whole batch (``infovae.distributed``), so the
    loss and the gradients are those of one process on the same batch. Rank 0 writes the
    checkpoints (with every rank's random states; resumable at the same N only), the progress
    bar and the callbacks' logs.

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
        validation: torch.Tensor | None = None,
        callbacks: Sequence[object] = (),
    ):
        self.config = config = config or TrainConfig()
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module (e.g. infovae.VAE), got {type(model).__name__}")
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable as loss_fn(model, x), got {type(loss_fn).__name__}")
        self.device = parallel.rank_device(resolve_device(device))
        self.rank, self.world_size = parallel.init_from_environment(self.device)
        self.loader = data if isinstance(data, DataLoader) else None
        self.data, self._n = self._source(data)
        self._checked_data = isinstance(self.data, torch.Tensor)  # checked once, here: batches need no checks
        if self.loader is None and self._n < config.batch_size:
            raise ValueError(f"batch_size {config.batch_size} exceeds the {self._n} training examples")
        if self.loader is None and config.batch_size % (config.accumulate * self.world_size):
            raise ValueError(f"batch_size {config.batch_size} is not divisible by accumulate ({config.accumulate}) x "
                             f"the {self.world_size} processes: every process trains on an equal shard of each batch")
        if self.loader is not None and self.world_size > 1 and not isinstance(
                getattr(self.loader, "sampler", None), DistributedSampler):
            raise ValueError(f"a DataLoader under {self.world_size} processes must shard the data: build it with "
                             "sampler=torch.utils.data.DistributedSampler(dataset), or pass the tensor or Dataset "
                             "itself (the trainer then shards every batch)")
        self.meta = dict(meta or {})
        checks.plain("meta", self.meta)
        self.precision = self._precision(model, config.precision)  # "fp32", "bf16" or "fp16"
        self.scaler = torch.amp.GradScaler(self.device.type) if self.precision == "fp16" else None
        self.skipped_steps = 0  # fp16 steps whose scaled gradients overflowed (not applied)
        self._dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
        if isinstance(self.data, torch.Tensor) and self._dtype is not None and self.data.dtype != self._dtype:
            raise TypeError(f"the data are {self.data.dtype} but the model's parameters are {self._dtype}: convert one "
                            f"of them (data.to({self._dtype}) or model.to({self.data.dtype}))")
        self.model = model.to(self.device)
        self.loss_fn = loss_fn.to(self.device) if isinstance(loss_fn, nn.Module) else loss_fn
        self.hooks = list(hooks)
        self.callbacks = list(callbacks)
        for callback in self.callbacks:
            if not any(callable(getattr(callback, m, None)) for m in ("on_step", "on_eval", "on_checkpoint")):
                raise TypeError(f"a callback needs on_step, on_eval or on_checkpoint (infovae.train.Callback), got "
                                f"{type(callback).__name__}")
        self.validation = self._validation_set(validation)
        if (config.best_checkpoint or config.patience) and self.validation is None:
            raise ValueError("best_checkpoint and patience need held-out data: Trainer(..., validation=x_valid)")
        self.best: dict[str, float] = {}  # {"valid_loss", "step", "evaluations_since"} of the best evaluation
        self.stopped_early = False
        # torch.compile's first call turns torch.distributions' argument checks off for the whole process
        # (torch._dynamo's TorchPatcher); run() puts the setting found here back when it returns
        self._validate_args = Distribution._validate_args
        if config.compile:
            for network in [m for m in (getattr(model, "encoder", None), getattr(model, "decoder", None))
                            if isinstance(m, nn.Module)] or [model]:
                network.compile()  # in place: the parameter names (and checkpoints) stay the plain ones
        self._params = list(model.parameters())
        self.optimizer = make_optimizer(self._params, config, self.device)
        self.scheduler = make_scheduler(self.optimizer, config)
        self._net: nn.Module = model
        if self.world_size > 1:
            self._net = self._wrap(model)
        self.order_generator = torch.Generator().manual_seed(config.seed)
        self.binarize_generator = torch.Generator(device=self.device).manual_seed(self._seed(1))
        # the model's own random stream (codes, prior samples): torch's global generators are
        # swapped for it during each step, so the trainer neither reseeds nor advances them
        self._rng: dict[str, torch.Tensor] = {"torch": torch.Generator().manual_seed(self._seed(0)).get_state()}
        if self.device.type == "cuda":
            self._rng["cuda"] = torch.Generator(device=self.device).manual_seed(self._seed(0)).get_state()
        self.step = 0
        self.history = History()
        self.last_checkpoint: tuple[Path, int] | None = None
        self._order = torch.randperm(self._n, generator=self.order_generator)
        self._cursor = 0
        self._batches: Iterator | None = None  # the DataLoader's iterator in the current pass
        self._loader_position = 0  # batches drawn from it in the current pass
        self._pending: dict[str, list[float]] = {}  # name -> [sum, count] since the last log

    def _seed(self, stream: int) -> int:
        return parallel.rank_seed(self.config.seed, self.rank, self.world_size, stream)

    def _wrap(self, model: nn.Module) -> nn.Module:
        """The model in ``DistributedDataParallel`` (BatchNorm synchronised across the ranks on CUDA)."""
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
            if self.device.type == "cuda":
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            else:
                warnings.warn("BatchNorm under several CPU processes normalises each rank's shard of the batch "
                              "(SyncBatchNorm needs CUDA): the statistics differ from those of one process", stacklevel=3)
        ids = [self.device.index] if self.device.type == "cuda" else None
        return _DistributedModel(model, device_ids=ids)

    @property
    def is_main(self) -> bool:
        """Whether this process writes checkpoints and logs (rank 0; always with one process)."""
        return self.rank == 0

    def _precision(self, model: nn.Module, precision: str) -> str:
        """The precision resolved for the device; bf16/fp16 only where the networks can take it."""
        resolved = resolve_training_precision(precision, self.device)
        if resolved != "fp32" and not _uses_network_region(model):
            if precision != "auto":
                raise ValueError(
                    f"precision={precision!r} autocasts the networks' bodies inside infovae.precision.network_region, "
                    f"which the networks of this {type(model).__name__} do not use, so they would run in float32: use "
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

    def _validation_set(self, x: object) -> torch.Tensor | None:
        """The held-out examples, checked, on the device, binarized once (from the seed) if the config binarizes."""
        if x is None:
            return None
        if not isinstance(x, torch.Tensor) or x.dim() < 2 or len(x) == 0 or not x.is_floating_point():
            raise TypeError("validation must be a floating point tensor [N, ...] of held-out examples, got "
                            f"{type(x).__name__ if not isinstance(x, torch.Tensor) else f'{x.dtype} {tuple(x.shape)}'}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError("validation contains NaN or infinite values")
        if self._dtype is not None and x.dtype != self._dtype:
            raise TypeError(f"the validation data are {x.dtype} but the model's parameters are {self._dtype}")
        self._check_range(x)
        x = x.to(self.device)
        if self.config.binarize is not None:
            x = binarize_images(x, self.config.binarize,
                                torch.Generator(device=self.device).manual_seed(self.config.seed + 2))
        return x

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
        """The next minibatch (of the seeded shuffle, or of the DataLoader), binarized afresh.

        Under ``torchrun``: this rank's shard of the next global batch."""
        if self.loader is not None:
            return self._loader_batch()
        n, b = self._n, self.config.batch_size
        if self._cursor + b > n:  # a new epoch (an incomplete last batch is dropped)
            self._order = torch.randperm(n, generator=self.order_generator)
            self._cursor = 0
        idx = self._order[self._cursor : self._cursor + b]
        self._cursor += b
        if self.world_size > 1:
            shard = b // self.world_size
            idx = idx[self.rank * shard : (self.rank + 1) * shard]
        if isinstance(self.data, torch.Tensor):
            x = self.data[idx.to(self.device)]
        else:
            batch = default_collate([self.data[int(i)] for i in idx])  # type: ignore[index]
            x = self._checked_batch(_first_tensor(batch))
        return self._binarize(x)

    def _binarize(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` binarized as the config says (its values were checked, once for a tensor, per batch otherwise)."""
        mode = self.config.binarize
        if mode is None:
            return x
        if mode == "stochastic":
            return torch.bernoulli(x, generator=self.binarize_generator)  # what binarize_images draws, checks done
        return binarize_images(x, mode, self.binarize_generator)

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
        return self._binarize(x)

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
                out = self.loss_fn(self._net, x)
        except ValueError as err:
            message = str(err)
            invalid = "Expected parameter" in message and re.search(r"\bnan\b|\binf\b", message)
            if invalid or not _finite_tensors([p.detach() for p in self._params]):
                self._stop(f"the forward pass met non-finite values ({_one_line(message)})")
            if "Expected value argument" in message and self.config.binarize is None:
                raise ValueError(
                    f"{message}\n(TrainConfig.binarize is None, so the data are used as given: for grey-level "
                    "images in [0, 1] with a Bernoulli decoder pass binarize='stochastic')"
                ) from err
            raise
        return _as_output(out)

    def train_step(self) -> dict[str, float]:
        """One optimiser step (and one critic step, if any); returns the step's quantities.

        The loss, its terms and a fused finiteness check of the gradients reach the host in one
        synchronisation; nothing is applied unless all are finite (with fp16, an overflow of the
        scaled gradients skips the step instead: ``skipped_steps``).
        """
        k = self.config.accumulate
        x = self.next_batch()
        parts = x.chunk(k) if k > 1 else (x,)
        codes = []
        sums: dict[str, torch.Tensor] = {}
        with self._own_rng(), whole_batch():
            self.optimizer.zero_grad(set_to_none=True)
            for i, part in enumerate(parts):
                # DDP: gradients are all-reduced once per step, after the last micro-batch
                quiet = i < k - 1 and isinstance(self._net, DistributedDataParallel)
                with self._net.no_sync() if quiet else contextlib.nullcontext():  # type: ignore[operator]
                    out = self._forward(part)
                    terms = {"loss": out.loss}
                    if out.reconstruction is not None:
                        terms["reconstruction"] = out.reconstruction.mean()
                    if out.kl is not None:
                        terms["kl"] = out.kl.mean()
                    if out.divergence is not None:
                        terms["divergence"] = out.divergence
                    loss = out.loss / k if k > 1 else out.loss
                    (loss if self.scaler is None else self.scaler.scale(loss)).backward()
                for name, t in terms.items():
                    sums[name] = t.detach().float() if name not in sums else sums[name] + t.detach().float()
                if out.z is not None:
                    codes.append(out.z.detach())
            grads = [p.grad for p in self._params if p.grad is not None]
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
                found = _nonfinite(grads)  # an overflow of the scaled gradients (the step is skipped)
            self._clip()
            if self.scaler is None:
                found = _nonfinite(grads)
            stacked = torch.stack([t / k for t in sums.values()] if k > 1 else list(sums.values()))
            if self.world_size > 1:  # the terms of the whole batch: the means over the ranks' shards
                torch.distributed.all_reduce(stacked)
                stacked /= self.world_size
            if found is not None:
                stacked = torch.cat([stacked, found.reshape(1).to(stacked)])
            flat = stacked.tolist()  # the one synchronisation of the step
            values = dict(zip(sums, flat))
            bad_gradient = found is not None and flat[-1] != 0
            if not math.isfinite(values["loss"]):
                bad = [k_ for k_, v in values.items() if k_ != "loss" and not math.isfinite(v)] or ["loss"]
                self._stop(f"the {' and '.join(bad)} term became non-finite", values)
            skip = False
            if bad_gradient and self.scaler is not None and self.scaler.get_scale() > 1.0:
                skip = True  # the scaled gradients overflowed: the scaler lowers its scale, the step is not applied
            elif bad_gradient:
                named = [(name, p.grad) for name, p in self.model.named_parameters() if p.grad is not None]
                bad = [name for name, g in named if not bool(torch.isfinite(g).all())]
                scale = f" at the fp16 loss scale {self.scaler.get_scale():g}" if self.scaler is not None else ""
                self._stop(f"the gradient of {', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''} became non-finite "
                           f"although the loss was finite{scale}", values)
            if getattr(self.loss_fn, "has_auxiliary", False) and codes:
                values.update(getattr(self.loss_fn, "auxiliary_step")(torch.cat(codes) if k > 1 else codes[0]))
        if self.scheduler is not None:
            values["lr"] = float(self.optimizer.param_groups[0]["lr"])  # the rate this step used
        if self.scaler is not None:
            self.scaler.step(self.optimizer)  # skips the update itself when the gradients overflowed
            self.scaler.update()
        else:
            self.optimizer.step()
        if skip:
            self.skipped_steps += 1
        elif self.scheduler is not None:
            self.scheduler.step()
        self.step += 1
        return values

    def _clip(self) -> None:
        if self.config.clip == "value":
            nn.utils.clip_grad_value_(self._params, self.config.clip_value)
        elif self.config.clip == "norm":
            nn.utils.clip_grad_norm_(self._params, self.config.clip_value)

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

    def _call(self, method: str, *args: object) -> None:
        """Call ``method`` of every callback that has it (rank 0 only)."""
        if self.is_main:
            for callback in self.callbacks:
                fn = getattr(callback, method, None)
                if callable(fn):
                    fn(self, *args)

    def run(self, iterations: int | None = None) -> History:
        """Train until step ``config.iterations`` (or for ``iterations`` more steps), model in train mode.

        Returns the history. A checkpoint is written at the end if ``config.checkpoint`` is set.
        With ``config.patience``, training stops early (``stopped_early``) after that many
        evaluations without a lower validation loss.
        """
        cfg = self.config
        if iterations is not None:
            checks.integer("iterations", iterations, minimum=0)
        end = cfg.iterations if iterations is None else self.step + iterations
        self.model.train()
        try:
            with tqdm(total=end, initial=self.step, disable=not cfg.progress or not self.is_main, desc="training",
                      leave=False) as bar:
                while self.step < end and not self.stopped_early:
                    values = self.train_step()
                    for name, value in values.items():
                        acc = self._pending.setdefault(name, [0.0, 0])
                        acc[0] += value
                        acc[1] += 1
                    if self.callbacks:
                        self._call("on_step", values)
                    bar.update(1)
                    if self.step % cfg.log_every == 0:
                        self._log_pending()
                        bar.set_postfix(loss=f"{self.history['loss'][-1]:.4g}")
                    if cfg.eval_every and self.step % cfg.eval_every == 0:
                        self.evaluate()
                    if cfg.checkpoint and cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                        self.save()
            if self._pending and "loss" not in self.history:  # a run shorter than log_every logs what it has
                self._log_pending(keep=True)
            if cfg.checkpoint and (self.last_checkpoint is None or self.last_checkpoint[1] != self.step):
                self.save()
        finally:
            if cfg.compile:
                Distribution.set_default_validate_args(self._validate_args)
            for callback in self.callbacks if self.is_main else ():
                close = getattr(callback, "close", None)
                if callable(close):
                    close()
        return self.history

    def _log_pending(self, keep: bool = False) -> None:
        means = {name: total / count for name, (total, count) in self._pending.items()}
        if self.scaler is not None:
            means["skipped_steps"] = float(self.skipped_steps)  # so far, in all
        self.history.log(self.step, means)
        if not keep:
            self._pending = {}

    def evaluate(self) -> dict[str, float]:
        """Run every hook, and the loss over the validation set, with the model in eval mode (on the
        trainer's random stream); log and return their numbers. Keeps the best model and decides on
        early stopping (``TrainConfig.best_checkpoint``, ``patience``)."""
        was_training = self.model.training
        self.model.eval()
        try:
            results: dict[str, float] = {}
            with self._own_rng():
                for hook in self.hooks:
                    results.update({k: float(v) for k, v in hook(self).items()})
                if self.validation is not None:
                    terms = evaluate(self.model, self.loss_fn, self.validation)
                    results.update({f"valid_{k}": v for k, v in terms.items()})
        finally:
            self.model.train(was_training)
        if self.world_size > 1:  # every rank acts on rank 0's numbers (its draws): the same decisions everywhere
            shared = [results]
            torch.distributed.broadcast_object_list(shared, src=0)
            results = shared[0]
        self.history.log(self.step, results)
        self._call("on_eval", results)
        if "valid_loss" in results:
            self._track_best(results["valid_loss"])
        return results

    def _track_best(self, value: float) -> None:
        cfg = self.config
        if not self.best or value < self.best["valid_loss"]:
            self.best = {"valid_loss": value, "step": self.step, "evaluations_since": 0}
            if cfg.best_checkpoint:
                self._write(cfg.best_checkpoint)  # not the run's checkpoint: last_checkpoint stays
        else:
            self.best["evaluations_since"] += 1
            if cfg.patience and self.best["evaluations_since"] >= cfg.patience:
                self.stopped_early = True

    # ------------------------------------------------------------------ checkpoints

    def _objective(self) -> dict | None:
        as_dict = getattr(getattr(self.loss_fn, "config", None), "as_dict", None)
        return as_dict() if callable(as_dict) else None

    def _rank_rng(self) -> dict:
        return {**self._rng, "binarize": self.binarize_generator.get_state()}

    def state_dict(self) -> dict:
        """Everything needed to resume exactly: parameters, optimisers, random states, data order,
        history, and the training and objective configurations. Under ``torchrun`` a collective
        call (every rank's random states are gathered into it)."""
        rng = {
            **self._rng,
            "order": self.order_generator.get_state(),
            "binarize": self.binarize_generator.get_state(),
        }
        state = {
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
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
            state["skipped_steps"] = self.skipped_steps
        if self.best:
            state["best"] = dict(self.best)
        if self.world_size > 1:
            ranks: list = [None] * self.world_size
            torch.distributed.all_gather_object(ranks, {k: v.cpu() for k, v in self._rank_rng().items()})
            state["world_size"] = self.world_size
            state["rank_rng"] = ranks
        return state

    def differences(self, state: Mapping) -> list[str]:
        """The settings of a ``state_dict()`` that differ from this trainer's (``RESUME_KEYS``,
        the objective, the data size and the number of processes), as ``"name: checkpoint X, now Y"``."""
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
        if state.get("world_size", 1) != self.world_size:
            found.append(f"processes (world size): checkpoint {state.get('world_size', 1)}, now {self.world_size} "
                         f"(each rank has its own shard and random streams: resume with torchrun "
                         f"--nproc_per_node={state.get('world_size', 1)})")
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
        rng = dict(state["rng"])
        if self.world_size > 1:
            rng.update(state["rank_rng"][self.rank])  # this rank's own streams
        self._rng = {"torch": rng["torch"]}
        if self.device.type == "cuda":
            self._rng["cuda"] = rng.get("cuda", torch.Generator(device=self.device).manual_seed(self._seed(0)).get_state())
        self.order_generator.set_state(rng["order"])
        self.binarize_generator.set_state(rng["binarize"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.skipped_steps = int(state.get("skipped_steps", 0))
        self.best = dict(state.get("best", {}))
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
        """Write a checkpoint atomically (to ``config.checkpoint`` by default); under ``torchrun``
        rank 0 writes it (every rank must call ``save``: it gathers their random states).

        Refuses (``NonFiniteLossError``) to write parameters that are not finite, so the file
        on disk is always the last good one.
        """
        path = path or self.config.checkpoint
        if path is None:
            raise ValueError("no checkpoint path: pass one or set TrainConfig.checkpoint")
        written = self._write(path)
        self.last_checkpoint = (written, self.step)
        return written

    def _write(self, path: str | os.PathLike) -> Path:
        flag = _nonfinite([p.detach() for p in self._params])
        if flag is not None and bool(flag):
            self._stop("the parameters are not finite, so no checkpoint was written")
        state = self.state_dict()
        written = save_checkpoint(state, path) if self.is_main else Path(path)
        if self.world_size > 1:
            torch.distributed.barrier()  # the file is complete before any rank goes on
        self._call("on_checkpoint", written)
        return written

    def resume(self, path: str | os.PathLike | None = None) -> "Trainer":
        """Load a checkpoint written by ``save`` and continue from its step; returns ``self``.

        Raises:
            ValueError: the file is not an infovae checkpoint, or it was written with other
                settings (lr, batch size, seed, objective, data size, number of processes...: all listed).
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

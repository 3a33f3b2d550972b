"""Callbacks of the ``Trainer``: a small protocol and two loggers (CSV, TensorBoard).

A callback is any object with some of the methods of ``Callback`` (the others are not
called): ``on_step(trainer, values)`` after every optimiser step with that step's numbers
(the loss and its terms; under data parallelism the averages over the ranks),
``on_eval(trainer, results)`` after every evaluation (hooks and validation loss) and
``on_checkpoint(trainer, path)`` after every checkpoint written; ``close()`` when ``run``
ends. Under ``torchrun`` only rank 0 calls them, so each log is written once.

Example:
    >>> import torch
    >>> from infovae import InfoVAELoss, build_vae
    >>> from infovae.data import two_point_data
    >>> from infovae.train import Callback, TrainConfig, Trainer
    >>> class Count(Callback):
    ...     steps = 0
    ...     def on_step(self, trainer, values):
    ...         self.steps += 1
    >>> count = Count()
    >>> config = TrainConfig(iterations=3, batch_size=8, progress=False)
    >>> _ = Trainer(build_vae("toy", 1), InfoVAELoss.elbo(), two_point_data(16), config, callbacks=[count], device="cpu").run()
    >>> count.steps
    3
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class Callback:
    """The protocol, as a base class whose methods do nothing: override those you need.

    Example:
        >>> from infovae.train import Callback
        >>> Callback().on_step(None, {"loss": 1.0}) is None
        True
    """

    def on_step(self, trainer: Any, values: Mapping[str, float]) -> None:
        """After every optimiser step: ``values`` are that step's numbers (name -> float)."""

    def on_eval(self, trainer: Any, results: Mapping[str, float]) -> None:
        """After every evaluation (every ``eval_every`` steps): the hooks' and validation numbers."""

    def on_checkpoint(self, trainer: Any, path: Path) -> None:
        """After a checkpoint was written to ``path``."""

    def close(self) -> None:
        """When ``run`` returns (or stops with an error): flush and release files."""


class CSVLogger(Callback):
    """Every logged number as a row ``step,name,value`` of a CSV file (long format: any set of names).

    Step numbers are written every ``every`` steps (default 1: each step), evaluation results
    and checkpoints (``name`` ``"checkpoint"``, value the step) always. Appends to an existing
    file, so a resumed run continues its log.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from infovae.train import CSVLogger
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     logger = CSVLogger(Path(folder) / "log.csv")
        ...     logger.on_step(type("T", (), {"step": 1})(), {"loss": 2.5})
        ...     logger.close()
        ...     (Path(folder) / "log.csv").read_text().splitlines()
        ['step,name,value', '1,loss,2.5']
    """

    def __init__(self, path: str | os.PathLike, every: int = 1):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a file path, got {type(path).__name__}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive integer (steps between rows), got {every!r}")
        self.path, self.every = Path(path), every
        self._file: Any = None
        self._writer: Any = None

    def _write(self, step: int, values: Mapping[str, float]) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            new = not self.path.exists() or self.path.stat().st_size == 0
            self._file = open(self.path, "a", newline="")
            self._writer = csv.writer(self._file)
            if new:
                self._writer.writerow(["step", "name", "value"])
        self._writer.writerows([step, name, repr(float(value))] for name, value in values.items())

    def on_step(self, trainer: Any, values: Mapping[str, float]) -> None:
        if trainer.step % self.every == 0:
            self._write(trainer.step, values)

    def on_eval(self, trainer: Any, results: Mapping[str, float]) -> None:
        self._write(trainer.step, results)
        self._file.flush()

    def on_checkpoint(self, trainer: Any, path: Path) -> None:
        self._write(trainer.step, {"checkpoint": trainer.step})
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = self._writer = None


class TensorBoardLogger(Callback):
    """Every logged number as a TensorBoard scalar (``torch.utils.tensorboard.SummaryWriter``).

    TensorBoard is an optional extra (``pip install tensorboard``); without it this raises a
    ``ModuleNotFoundError`` that says so. ``writer`` may be any object with ``add_scalar``,
    ``flush`` and ``close`` (a ``SummaryWriter`` of your own, say), and then ``log_dir`` is unused.

    Example:
        >>> from infovae.train import TensorBoardLogger
        >>> class Writer:  # a stand-in SummaryWriter
        ...     def __init__(self): self.scalars = []
        ...     def add_scalar(self, tag, value, step): self.scalars.append((tag, value, step))
        ...     def flush(self): pass
        ...     def close(self): pass
        >>> logger = TensorBoardLogger(writer=Writer())
        >>> logger.on_step(type("T", (), {"step": 5})(), {"loss": 2.0})
        >>> logger.writer.scalars
        [('train/loss', 2.0, 5)]
    """

    def __init__(self, log_dir: str | os.PathLike | None = None, every: int = 1, writer: Any = None):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive integer (steps between scalars), got {every!r}")
        if writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ModuleNotFoundError:
                raise ModuleNotFoundError(
                    "TensorBoardLogger needs the tensorboard package, an optional extra: pip install tensorboard "
                    "(or log with infovae.train.CSVLogger)"
                ) from None
            writer = SummaryWriter(log_dir=None if log_dir is None else os.fspath(log_dir))
        self.writer, self.every = writer, every

    def on_step(self, trainer: Any, values: Mapping[str, float]) -> None:
        if trainer.step % self.every == 0:
            for name, value in values.items():
                self.writer.add_scalar(f"train/{name}", float(value), trainer.step)

    def on_eval(self, trainer: Any, results: Mapping[str, float]) -> None:
        for name, value in results.items():
            self.writer.add_scalar(f"eval/{name}", float(value), trainer.step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.flush()


__all__ = ["CSVLogger", "Callback", "TensorBoardLogger"]

"""Checkpoint files: atomic writes, weights-only reads (book chapters 6-9 train through them).

A checkpoint is a dict of tensors and plain Python values with a ``"format"`` marker
(``CHECKPOINT_FORMAT``); ``save_checkpoint`` writes it atomically (a temporary file, then
``os.replace``) and ``load_checkpoint`` reads it back with ``torch.load(weights_only=True)``,
so no file can run code when it is read.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

CHECKPOINT_FORMAT = 1


def save_checkpoint(state: Mapping, path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically: a crash mid-write leaves the old file intact.

    Returns the path written (its folder is created if needed).

    Example:
        >>> import tempfile, torch
        >>> from pathlib import Path
        >>> from infovae.train import save_checkpoint
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = save_checkpoint({"step": 3, "w": torch.ones(2)}, Path(folder) / "runs" / "a.pt")
        ...     torch.load(path, weights_only=True)
        {'step': 3, 'w': tensor([1., 1.])}
    """
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
    """Read a checkpoint with ``torch.load(weights_only=True)`` (tensors and plain values only).

    Raises:
        FileNotFoundError: nothing at ``path``.
        ValueError: ``"<path> is not an infovae checkpoint"``: unreadable, truncated, holding
            anything but tensors and plain values, or of another format.

    Example:
        >>> import tempfile, torch
        >>> from pathlib import Path
        >>> from infovae.train import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = save_checkpoint({"format": CHECKPOINT_FORMAT, "step": 3}, Path(folder) / "a.pt")
        ...     load_checkpoint(path)["step"]
        3
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, KeyError, AttributeError,
            IndexError, TypeError, OverflowError, UnicodeDecodeError, MemoryError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "weights_only" in reason or "Weights only load failed" in reason:
            reason = "it holds objects other than tensors and plain values"
        raise ValueError(f"{path} is not an infovae checkpoint ({reason[:200]})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an infovae checkpoint (no format {CHECKPOINT_FORMAT} marker)")
    return state



__all__ = ["CHECKPOINT_FORMAT", "load_checkpoint", "save_checkpoint"]

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

from typing import TYPE_CHECKING

import torch
from torch import nn

from ..runtime import resolve_device

if TYPE_CHECKING:
    from ..vae import VAE

CHECKPOINT_FORMAT = 1
COMPILED_PREFIX = "_orig_mod."  # what torch.compile puts before every parameter name


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
            IndexError, TypeError, OverflowError, UnicodeDecodeError, MemoryError, OSError) as err:  # OSError: truncated
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "weights_only" in reason or "Weights only load failed" in reason:
            reason = "it holds objects other than tensors and plain values"
        raise ValueError(f"{path} is not an infovae checkpoint ({reason[:200]})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an infovae checkpoint (no format {CHECKPOINT_FORMAT} marker)")
    return state



def plain_weights(module: nn.Module) -> dict[str, torch.Tensor]:
    """``module.state_dict()`` under the names of the plain module, also for a ``torch.compile``'d one.

    Example:
        >>> import torch
        >>> from infovae.train.checkpoint import plain_weights
        >>> sorted(plain_weights(torch.nn.Linear(2, 1)))
        ['bias', 'weight']
    """
    return {_plain_name(name): value for name, value in module.state_dict().items()}


def _plain_name(name: str) -> str:
    return name[len(COMPILED_PREFIX):] if name.startswith(COMPILED_PREFIX) else name


def load_weights(module: nn.Module, weights: Mapping[str, torch.Tensor], source: object = "the checkpoint") -> None:
    """Load ``weights`` into ``module``, compiled (``torch.compile``) or plain, whichever wrote them.

    Raises:
        ValueError: the weights are those of another model (other sizes or layers), named
            with the first mismatches and the fix.

    Example:
        >>> import torch
        >>> from infovae.train.checkpoint import load_weights
        >>> load_weights(torch.nn.Linear(2, 1), {"_orig_mod.weight": torch.ones(1, 2), "_orig_mod.bias": torch.zeros(1)})
        >>> load_weights(torch.nn.Linear(3, 1), {"weight": torch.ones(1, 2), "bias": torch.zeros(1)})
        Traceback (most recent call last):
        ...
        ValueError: the checkpoint holds the weights of another model (weight: checkpoint [1, 2], model [1, 3]); build the model as it was built for training (the same sizes, latent_dim and layers)
    """
    target = getattr(module, "_orig_mod", module)  # a compiled module loads into its original
    weights = {_plain_name(k): v for k, v in weights.items()}
    own = target.state_dict()
    problems = [f"{k}: checkpoint {list(v.shape)}, model {list(own[k].shape)}"
                for k, v in weights.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
    missing, unexpected = sorted(set(own) - set(weights)), sorted(set(weights) - set(own))
    problems += [f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}"] if missing else []
    problems += [f"unexpected {', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''}"] if unexpected else []
    if problems:
        raise ValueError(f"{source} holds the weights of another model ({'; '.join(problems[:4])}); build the model "
                         "as it was built for training (the same sizes, latent_dim and layers)")
    target.load_state_dict(weights)


def load_model(path: str | os.PathLike, device: torch.device | str | None = "cpu") -> "VAE":
    """The trained model of a checkpoint, rebuilt from the spec it stores and loaded, in eval mode.

    Works for the models of ``infovae.networks.build_vae`` (their ``model.spec`` is in every
    checkpoint the ``Trainer`` writes); ``infovae.load`` and ``VAE.from_checkpoint`` are this.

    Raises:
        ValueError: not a checkpoint, or one of a model of the caller's own modules (which
            only the caller can rebuild: the message says how to load its weights).

    Example:
        >>> import tempfile, torch
        >>> from pathlib import Path
        >>> import infovae as iv
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = save_checkpoint({"format": CHECKPOINT_FORMAT, "model_spec": iv.build_vae("mlp", 3).spec,
        ...                             "model": iv.build_vae("mlp", 3).state_dict()}, Path(folder) / "m.pt")
        ...     iv.load(path).latent_dim
        3
    """
    from ..networks import build_from_spec

    state = load_checkpoint(path, map_location="cpu")
    spec = state.get("model_spec")
    if spec is None:
        raise ValueError(
            f"{path} does not say how its model was built (a VAE of your own encoder and decoder, or a checkpoint "
            "written before models carried their spec): build the model as for training, then "
            "infovae.train.load_weights(model, infovae.train.load_checkpoint(path)['model'])"
        )
    model = build_from_spec(spec)
    load_weights(model, state["model"], path)
    return model.to(resolve_device(device)).eval()


__all__ = ["CHECKPOINT_FORMAT", "load_checkpoint", "load_model", "load_weights", "plain_weights", "save_checkpoint"]

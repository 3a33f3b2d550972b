"""Input checks and evaluation mode shared by the metrics."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn
from torch.distributions import Distribution

from .. import validation


def check_count(name: str, value: int) -> int:
    """``value`` as a positive int, or a clear TypeError/ValueError naming ``name``."""
    return validation.integer(name, value, minimum=1)


def check_images(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """A non-empty batch ``[B, ...]`` of finite values."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim < 2:
        raise ValueError(f"{name} must be a batch [B, ...] with at least 2 dims, got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)})")
    if x.is_floating_point() and not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")
    return x


def check_model(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model`` is a VAE-like module (``encode``, ``decode``, ``prior``) and ``x`` a batch; returns
    ``x`` on the model's device (the one device policy of the package: inputs follow the model,
    as in ``infovae.train.evaluate``)."""
    missing = [name for name in ("encode", "decode", "prior") if not callable(getattr(model, name, None))]
    if missing:
        raise TypeError(f"model must be an infovae.VAE-like module; it has no {', '.join(missing)}")
    check_images(x)
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.device.type == "meta":
            raise ValueError("the model is on the meta device (shapes without data): load or move it to a real device")
        return x.to(tensor.device)
    return x


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode (batch norm, dropout) and restore every submodule's mode."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


@contextlib.contextmanager
def distribution_checks(enabled: bool) -> Iterator[None]:
    """Switch torch.distributions' argument validation off (``enabled=False``) for a block.

    For repeated evaluations of inputs that have been validated once: the checks cost as
    much as the log-likelihood itself.
    """
    previous = Distribution._validate_args
    Distribution.set_default_validate_args(enabled and previous)
    try:
        yield
    finally:
        Distribution.set_default_validate_args(previous)

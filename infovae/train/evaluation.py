"""The loss and its terms averaged over a whole data set (book Eq. ``ch5-eq6``)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..data import binarize_images


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

    For an ``InfoVAELoss`` these are book Eq. ``ch5-eq6`` and its terms over the whole set.

    Args:
        model, loss_fn: as for ``Trainer``.
        data: examples ``[N, ...]`` (moved batch by batch to the model's device).
        batch_size: examples per forward pass.
        binarize: binarization applied to each batch (``None``: data used as given).
        generator: source of the stochastic binarization.

    Example:
        >>> import torch
        >>> from infovae import InfoVAELoss, build_vae
        >>> from infovae.data import two_point_data
        >>> from infovae.train import evaluate
        >>> _ = torch.manual_seed(0)
        >>> result = evaluate(build_vae("toy", 1), InfoVAELoss.elbo(), two_point_data(16), batch_size=8)
        >>> sorted(result)
        ['kl', 'loss', 'reconstruction']
        >>> abs(result["loss"] - result["reconstruction"] - result["kl"]) < 1e-4  # the ELBO: weights 1 and 1
        True
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


__all__ = ["evaluate"]

"""Choosing lambda from measured loss scales (book chapter 10).

The paper's rule for lambda (Zhao, Song & Ermon 2019, experiments section) is to make the
loss on X and the loss on Z of one order of magnitude. In Eq. (6) of the book (chapter 4,
``ch4-eq6``) the loss on X is the reconstruction term R = -E log p(x|z) in nats per image,
and lambda weighs the divergence D(q(z) || p(z)) between the aggregate posterior and the
prior. :func:`suggest_lambda` measures both on the user's own batch and network and returns

    lambda = ratio * R / D                                  (book Eq. ``ch10-lambda``)

so that lambda * D = ratio * R (``ratio = 1``: the two terms are equal). D is measured as the
objective sees it: for ``divergence="mmd"`` the MMD of ``infovae.divergences.mmd`` between the
batch codes and fresh prior samples, as in training (``InfoVAELoss``); for ``"stein"`` the
squared kernel Stein discrepancy of the codes against the prior
(``infovae.divergences.kernel_stein_discrepancy``), the quantity whose gradient flow the
Stein variational gradient follows. An adversarial divergence has no such measurement: its
value is whatever its critic has learnt, so it is refused. The measurement is made on a copy of the model, at its
current weights and optionally after a few optimiser steps on the batch; the model passed
in is never modified.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from tqdm.auto import trange

from . import validation
from .divergences import kernel_stein_discrepancy
from .vae import VAE
from .objective import InfoVAELoss, InfoVAEOutput, prior_score

MEASURABLE: tuple[str, ...] = ("mmd", "stein")


@dataclass(frozen=True)
class LambdaSuggestion:
    """The measured scales of Eq. (6) and the lambda that balances them (book Eq. ``ch10-lambda``).

    Attributes:
        lam: the suggested lambda, ``ratio * reconstruction / divergence``.
        reconstruction: R = -E log p(x|z) on the batch, nats per image (mean over repeats).
        divergence: the estimate of D(q(z) || p(z)) (mean over repeats): the MMD, or the
            squared kernel Stein discrepancy for ``divergence="stein"``.
        reconstruction_std: standard deviation of R over the repeats.
        divergence_std: standard deviation of D over the repeats.
        steps: optimiser steps taken (on a copy) before measuring.
        ratio: the target of lambda * D / R.

    Example:
        >>> from infovae.tuning import LambdaSuggestion
        >>> s = LambdaSuggestion(lam=1500.0, reconstruction=30.0, divergence=0.02, reconstruction_std=0.5,
        ...                      divergence_std=0.001, steps=0, ratio=1.0)
        >>> s.order  # round(log10(lam))
        3
    """

    lam: float
    reconstruction: float
    divergence: float
    reconstruction_std: float
    divergence_std: float
    steps: int
    ratio: float

    @property
    def order(self) -> int:
        """The order of magnitude of ``lam``: round(log10(lam))."""
        return round(math.log10(self.lam))


def _positive_int(name: str, value: int, minimum: int) -> int:
    return validation.integer(name, value, minimum=minimum)


def _measure(model: VAE, loss_fn: InfoVAELoss, x: Tensor, repeats: int, divergence: str) -> tuple[Tensor, Tensor]:
    rec: list[Tensor] = []
    div: list[Tensor] = []
    with torch.no_grad():
        for _ in range(repeats):
            out: InfoVAEOutput = loss_fn(model, x)
            rec.append(out.reconstruction.mean())
            if divergence == "mmd":
                assert out.divergence is not None  # weight 1 in the probe
                div.append(out.divergence)
            else:
                div.append(kernel_stein_discrepancy(out.z, prior_score(model.prior(), out.z), loss_fn.bandwidth))
    return torch.stack(rec).double(), torch.stack(div).double()


def suggest_lambda(
    model: VAE,
    x: Tensor,
    *,
    ratio: float = 1.0,
    divergence: str = "mmd",
    steps: int = 0,
    alpha: float = 1.0,
    lr: float = 1e-3,
    repeats: int = 10,
    kernel: str = "rbf",
    bandwidth: float | None = None,
    estimator: str = "biased",
    num_prior_samples: int = 200,
    progress: bool = False,
) -> LambdaSuggestion:
    """Suggest lambda so that lambda * D(q(z)||p(z)) = ratio * (-E log p(x|z)) (Eq. ``ch10-lambda``).

    Args:
        model: an ``infovae.VAE`` (any encoder/decoder returning distributions); not modified.
        x: one batch of the user's data ``[B, ...]`` (B >= 2), on the model's device.
        ratio: the target ratio lambda * D / R (> 0); 1 puts the two terms on one scale.
        divergence: ``"mmd"`` (MMD-VAE) or ``"stein"`` (Stein-VAE; D is the squared kernel
            Stein discrepancy of the codes against the model's prior).
        steps: Adam steps on a copy of the model before measuring (0: measure the model as
            given). The steps minimise Eq. (6) with ``alpha`` and the lambda suggested at the
            current weights, so the measurement reflects a model that has started to learn.
        alpha: the alpha of those steps (<= 1).
        lr: the Adam learning rate of those steps.
        repeats: forward passes averaged (fresh codes and prior samples each time).
        kernel, bandwidth, estimator, num_prior_samples: the MMD settings, as in ``InfoVAELoss``
            (the bandwidth is also the Stein kernel's).
        progress: show a progress bar over the steps.

    Returns:
        A :class:`LambdaSuggestion` with lambda and the measured numbers.

    Raises:
        TypeError: ``model`` is not an ``nn.Module`` or ``x`` is not a floating point tensor.
        ValueError: a bad argument, or a divergence estimate that is not positive (q(z) is
            indistinguishable from p(z) on this batch, so no finite lambda balances it).

    Example:
        >>> import torch
        >>> from infovae.networks import build_vae
        >>> from infovae.tuning import suggest_lambda
        >>> _ = torch.manual_seed(0)
        >>> x = torch.tensor([[-1.0], [1.0]]).repeat(16, 1)
        >>> s = suggest_lambda(build_vae("toy", latent_dim=1), x, repeats=2)
        >>> s.lam == s.ratio * s.reconstruction / s.divergence, s.steps
        (True, 0)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module (e.g. infovae.VAE), got {type(model).__name__}")
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating point torch.Tensor, got {type(x).__name__}")
    if x.dim() < 2 or x.shape[0] < 2:
        raise ValueError(f"x must be a batch [B, ...] with B >= 2, got shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x contains NaN or infinite values")
    for name, value in (("ratio", ratio), ("lr", lr)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha > 1:
        raise ValueError(f"alpha must be a finite number <= 1, got {alpha!r}")
    steps = _positive_int("steps", steps, 0)
    repeats = _positive_int("repeats", repeats, 1)
    if divergence in ("js", "wgan-gp"):
        raise ValueError(
            f"divergence {divergence!r} is estimated by a trained critic, so its value at given weights is not a "
            "measurement of D; measure with 'mmd' (the same q(z) against the same prior) instead"
        )
    if divergence not in MEASURABLE:
        raise ValueError(f"unknown divergence {divergence!r}; choose one of {', '.join(MEASURABLE)}")
    # alpha = lambda = 1 gives the reconstruction and D with weight 1 and no KL term (so point-mass
    # encoders work too); only the parts are used. InfoVAELoss checks the kernel and the estimator.
    probe = InfoVAELoss(alpha=1.0, lam=1.0, divergence="mmd" if divergence == "mmd" else "none", kernel=kernel,
                        bandwidth=bandwidth, estimator=estimator, num_prior_samples=num_prior_samples)
    work = copy.deepcopy(model)  # forward passes in training mode update batch-norm statistics
    work.train()

    def suggest() -> tuple[float, Tensor, Tensor]:
        rec, div = _measure(work, probe, x, repeats, divergence)
        if not div.mean() > 0:
            raise ValueError(
                f"the divergence estimate is {div.mean().item():.3g} <= 0: q(z) cannot be told from p(z) on this "
                "batch, so no finite lambda balances the terms (use a larger batch or the biased estimator)"
            )
        return ratio * rec.mean().item() / div.mean().item(), rec, div

    lam, rec, div = suggest()
    if steps:
        loss_fn = InfoVAELoss(alpha=alpha, lam=lam, divergence=divergence, kernel=kernel, bandwidth=bandwidth,
                              estimator=estimator, num_prior_samples=num_prior_samples)
        optimizer = torch.optim.Adam(work.parameters(), lr=lr)
        for _ in trange(steps, desc="suggest_lambda", disable=not progress, leave=False):
            optimizer.zero_grad()
            loss = loss_fn(work, x).loss
            if not torch.isfinite(loss):
                raise ValueError("the loss became non-finite during the steps; lower lr or steps")
            loss.backward()
            optimizer.step()
        lam, rec, div = suggest()
    return LambdaSuggestion(
        lam=lam,
        reconstruction=rec.mean().item(),
        divergence=div.mean().item(),
        reconstruction_std=rec.std().item() if repeats > 1 else 0.0,
        divergence_std=div.std().item() if repeats > 1 else 0.0,
        steps=steps,
        ratio=float(ratio),
    )

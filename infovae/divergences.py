"""Divergences between the aggregate posterior q(z) and the prior p(z) (book, chapter 5).

The last term of Eq. (6) (book chapter 4, ``ch4-eq6``; the loss of book Eq. ``ch5-eq6``)
needs a divergence D(q(z) || p(z)) that can be
estimated from samples of q(z) alone, since log q(z) is intractable. This module holds
the four families that the paper compares, each as a differentiable function of codes:

* **MMD** (``mmd``): maximum mean discrepancy with a Gaussian (``"rbf"``) or multi-scale
  inverse multiquadric (``"imq"``) kernel; biased (V-statistic) or unbiased (U-statistic)
  estimator; computed in blocks, so a full-batch 40k x 40k evaluation runs in bounded memory.
* **KL** for Gaussian encoders (``gaussian_kl``): KL(N(mean, diag std^2) || N(0, I)), the
  per-image term of Eq. (6).
* **Stein** (``svgd_direction``, ``stein_loss``): the Stein variational gradient of
  Liu & Wang (2016) for a target with known score (N(0, I) by default), and a surrogate
  loss whose gradient moves every code along it.
* **Adversarial** (``JSDiscriminator``, ``WGANCritic``): a Jensen-Shannon discriminator
  (adversarial autoencoders) and a WGAN-GP critic (Gulrajani et al. 2017), each an
  ``nn.Module`` with its own optimiser and a ``step`` that trains it once.

Kernels (``bandwidth`` h defaults to the dimension of z, as in the paper's code)::

    rbf:  k(a, b) = exp(-|a - b|^2 / (2 h))
    imq:  k(a, b) = mean over s in IMQ_SCALES of  c_s / (c_s + |a - b|^2),  c_s = 2 h s

Both have k(a, a) = 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .distributed import average_gradients

KERNELS: tuple[str, ...] = ("rbf", "imq")
ESTIMATORS: tuple[str, ...] = ("biased", "unbiased")
IMQ_SCALES: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
DEFAULT_BLOCK_SIZE = 2048


# ----------------------------------------------------------------------------- helpers


def _check_codes(name: str, z: Tensor) -> None:
    if not isinstance(z, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(z).__name__}")
    if z.dim() != 2 or z.shape[0] == 0 or z.shape[1] == 0:
        raise ValueError(f"{name} must have shape [n, dim] with n, dim >= 1, got {tuple(z.shape)}")
    if not z.is_floating_point():
        raise TypeError(f"{name} must be a floating point tensor, got {z.dtype}")


def _check_finite(**tensors: Tensor) -> None:
    """One device sync for all ``tensors``: a NaN or inf would make every estimate NaN."""
    flags = torch.stack([torch.isfinite(t).all() for t in tensors.values()]).tolist()
    bad = [name for name, ok in zip(tensors, flags) if not ok]
    if bad:
        raise ValueError(f"{' and '.join(bad)} contain{'s' if len(bad) == 1 else ''} NaN or infinite values")


def resolve_bandwidth(bandwidth: float | None, dim: int) -> float:
    """The kernel bandwidth h: ``bandwidth`` checked (positive, finite), or ``dim`` for ``None``.

    Example:
        >>> from infovae.divergences import resolve_bandwidth
        >>> resolve_bandwidth(None, 8), resolve_bandwidth(2, 8)
        (8.0, 2.0)
    """
    if bandwidth is None:
        return float(dim)
    if isinstance(bandwidth, Tensor):
        bandwidth = bandwidth.item()
    if isinstance(bandwidth, bool) or not isinstance(bandwidth, (int, float)):
        raise TypeError(f"bandwidth must be a positive number or None, got {type(bandwidth).__name__}")
    if not math.isfinite(bandwidth) or bandwidth <= 0:
        raise ValueError(f"bandwidth must be positive and finite, got {bandwidth}")
    return float(bandwidth)


def squared_distances(a: Tensor, b: Tensor) -> Tensor:
    """All pairwise squared Euclidean distances ``|a_i - b_j|^2`` as an ``[n, m]`` matrix.

    Uses ``|a|^2 + |b|^2 - 2 a.b`` (one matrix product), clamped at 0 against rounding.

    Example:
        >>> import torch
        >>> from infovae.divergences import squared_distances
        >>> squared_distances(torch.tensor([[0.0, 0.0], [1.0, 1.0]]), torch.tensor([[3.0, 4.0]]))
        tensor([[25.],
                [13.]])
    """
    sq = (a * a).sum(1, keepdim=True) + (b * b).sum(1) - 2.0 * (a @ b.T)
    return sq.clamp_min(0.0)


def kernel_matrix(a: Tensor, b: Tensor, kernel: str = "rbf", bandwidth: float | None = None) -> Tensor:
    """The ``[n, m]`` matrix ``k(a_i, b_j)`` of the module's kernels.

    The Gaussian kernel is the k of book Eq. ``ch5-mmd-kernel``, ``exp(-|a - b|^2 / (2 h))``.

    Args:
        a, b: samples ``[n, dim]`` and ``[m, dim]``.
        kernel: ``"rbf"`` or ``"imq"`` (see the module docstring).
        bandwidth: h; ``None`` means ``dim``.

    Example:
        >>> import torch
        >>> from infovae.divergences import kernel_matrix
        >>> a = torch.tensor([[0.0], [1.0]])
        >>> kernel_matrix(a, a, bandwidth=0.5)  # exp(-1) off the diagonal
        tensor([[1.0000, 0.3679],
                [0.3679, 1.0000]])
        >>> kernel_matrix(a, a, kernel="imq").diagonal()
        tensor([1., 1.])
    """
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {', '.join(KERNELS)}")
    h = resolve_bandwidth(bandwidth, a.shape[1])
    sq = squared_distances(a, b)
    if kernel == "rbf":
        return torch.exp(sq / (-2.0 * h))
    total = torch.zeros_like(sq)
    for s in IMQ_SCALES:
        total = total + 2.0 * h * s / (2.0 * h * s + sq)
    return total / len(IMQ_SCALES)


def _block_sum(a: Tensor, b: Tensor, kernel: str, h: float) -> Tensor:
    return kernel_matrix(a, b, kernel, h).sum()


def _kernel_sum(a: Tensor, b: Tensor | None, kernel: str, h: float, block: int) -> Tensor:
    """sum_ij k(a_i, b_j) computed block by block (``b=None`` means b = a, symmetric).

    With gradients enabled and more than one block, each block is checkpointed: the
    backward pass recomputes it instead of storing it, so memory stays at one block.
    """
    symmetric = b is None
    other: Tensor = a if b is None else b
    n_blocks = math.ceil(len(a) / block) * math.ceil(len(other) / block)
    save_memory = n_blocks > 1 and torch.is_grad_enabled() and (a.requires_grad or other.requires_grad)
    total = a.new_zeros(())
    for i in range(0, len(a), block):
        for j in range(i if symmetric else 0, len(other), block):
            ai, bj = a[i : i + block], other[j : j + block]
            if save_memory:
                s = checkpoint(_block_sum, ai, bj, kernel, h, use_reentrant=False)
            else:
                s = _block_sum(ai, bj, kernel, h)
            total = total + (2.0 * s if symmetric and j != i else s)
    return total


# ----------------------------------------------------------------------------- MMD


def mmd(
    x: Tensor,
    y: Tensor,
    kernel: str = "rbf",
    bandwidth: float | None = None,
    estimator: str = "biased",
    *,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> Tensor:
    """Squared maximum mean discrepancy between the samples ``x`` and ``y`` (chapter 5).

    MMD^2(q, p) = E k(z, z') - 2 E k(z, w) + E k(w, w') with z, z' ~ q and w, w' ~ p
    (book Eqs. ``ch4-mmd`` and ``ch5-mmd-kernel``).
    The ``"biased"`` estimator (V-statistic, book Eq. ``ch5-mmd-v``) averages over all pairs,
    diagonals included, and is never negative; its bias is book Eq. ``ch5-mmd-bias``. The
    ``"unbiased"`` one (U-statistic) leaves out the pairs
    (i, i) within each sample, so its mean over draws is exactly MMD^2 (it can be negative).

    Args:
        x: samples ``[n, dim]`` (e.g. codes from q(z)).
        y: samples ``[m, dim]`` (e.g. prior samples), same dim, dtype and device.
        kernel: ``"rbf"`` (Gaussian) or ``"imq"`` (multi-scale inverse multiquadric).
        bandwidth: kernel scale h (see the module docstring); ``None`` means ``dim``.
        estimator: ``"biased"`` or ``"unbiased"`` (needs n, m >= 2).
        block_size: rows/columns per block; memory is O(block_size^2), not O(n m).

    Returns:
        A scalar tensor, differentiable with respect to ``x`` and ``y``.

    Example:
        >>> import torch
        >>> from infovae.divergences import mmd
        >>> _ = torch.manual_seed(0)
        >>> z, w = torch.randn(200, 2), torch.randn(200, 2)
        >>> abs(float(mmd(z, z))) < 1e-6
        True
        >>> bool(mmd(z + 3.0, w) > mmd(z, w))  # shifted codes are far from the prior
        True
        >>> bool(mmd(z, w) > mmd(z, w, estimator="unbiased"))  # the V-statistic's positive bias
        True
    """
    _check_codes("x", x)
    _check_codes("y", y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dim, got {x.shape[1]} and {y.shape[1]}")
    if x.dtype != y.dtype or x.device != y.device:
        raise ValueError(f"x and y must share dtype and device, got {x.dtype}/{x.device} and {y.dtype}/{y.device}")
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {', '.join(KERNELS)}")
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")
    if not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    h = resolve_bandwidth(bandwidth, x.shape[1])
    _check_finite(x=x, y=y)
    n, m = len(x), len(y)
    k_xx = _kernel_sum(x, None, kernel, h, block_size)
    k_yy = _kernel_sum(y, None, kernel, h, block_size)
    k_xy = _kernel_sum(x, y, kernel, h, block_size)
    if estimator == "biased":
        return k_xx / n**2 + k_yy / m**2 - 2.0 * k_xy / (n * m)
    if n < 2 or m < 2:
        raise ValueError(f"the unbiased estimator needs at least 2 samples in each set, got {n} and {m}")
    # k(a, a) = 1 for both kernels: the diagonal of each within-sample sum is n (resp. m).
    return (k_xx - n) / (n * (n - 1)) + (k_yy - m) / (m * (m - 1)) - 2.0 * k_xy / (n * m)


# ----------------------------------------------------------------------------- KL


def gaussian_kl(mean: Tensor, std: Tensor) -> Tensor:
    """KL(N(mean, diag std^2) || N(0, I)) for each row, in nats.

    KL = 1/2 sum_d (std_d^2 + mean_d^2 - 1 - 2 log std_d) (book Eq. ``ch5-kl``).

    Args:
        mean: ``[n, dim]`` means.
        std: ``[n, dim]`` positive standard deviations.

    Returns:
        ``[n]`` tensor.

    Example:
        >>> import torch
        >>> from infovae.divergences import gaussian_kl
        >>> gaussian_kl(torch.tensor([[0.0, 0.0], [1.0, 0.0]]), torch.ones(2, 2))
        tensor([0.0000, 0.5000])
    """
    _check_codes("mean", mean)
    _check_codes("std", std)
    if mean.shape != std.shape:
        raise ValueError(f"mean and std must have the same shape, got {tuple(mean.shape)} and {tuple(std.shape)}")
    _check_finite(mean=mean, std=std)
    if not bool((std > 0).all()):
        raise ValueError("std must be positive everywhere")
    return 0.5 * (std.square() + mean.square() - 1.0 - 2.0 * std.log()).sum(1)


# ----------------------------------------------------------------------------- Stein


def _standard_normal_score(z: Tensor) -> Tensor:
    return -z


def _check_score(z: Tensor, score: Tensor | None) -> Tensor:
    z = z.detach()
    if score is None:
        _check_finite(z=z)
        return _standard_normal_score(z)
    if not isinstance(score, Tensor) or score.shape != z.shape:
        raise ValueError(f"score must be a tensor of the shape of z {tuple(z.shape)}, got {getattr(score, 'shape', score)!r}")
    _check_finite(z=z, score=score)
    return score.detach()


def svgd_direction(z: Tensor, score: Tensor | None = None, bandwidth: float | None = None) -> Tensor:
    """The Stein variational gradient direction at each code (Liu & Wang 2016).

    phi(z_i) = 1/n sum_j [ k(z_j, z_i) s(z_j) + grad_{z_j} k(z_j, z_i) ]     (book Eq. ``ch5-svgd``)

    with the Gaussian kernel k of ``mmd`` (h defaults to dim) and s = grad log p the
    target's score. Moving every code a small step along phi decreases KL(q || p) fastest
    among moves in the kernel's unit ball; the first term pulls codes toward high
    density, the second pushes them apart.

    Args:
        z: codes ``[n, dim]`` (treated as constants).
        score: grad log p at each code, ``[n, dim]``; ``None`` means N(0, I) (s = -z).
        bandwidth: h of the kernel; ``None`` means ``dim``.

    Returns:
        ``[n, dim]`` tensor without gradient.

    Example:
        >>> import torch
        >>> from infovae.divergences import svgd_direction
        >>> svgd_direction(torch.tensor([[-1.0], [1.0]]))  # both codes move toward the mode
        tensor([[ 0.2970],
                [-0.2970]])
    """
    _check_codes("z", z)
    s = _check_score(z, score)
    z = z.detach()
    h = resolve_bandwidth(bandwidth, z.shape[1])
    k = kernel_matrix(z, z, "rbf", h)  # symmetric
    # grad_{z_j} k(z_j, z_i) = (z_i - z_j) / h * k_ij
    repulsion = (z * k.sum(1, keepdim=True) - k @ z) / h
    return (k @ s + repulsion) / len(z)


def kernel_stein_discrepancy(z: Tensor, score: Tensor | None = None, bandwidth: float | None = None) -> Tensor:
    """Squared kernelized Stein discrepancy of the codes against the target (V-statistic).

    ``KSD^2 = 1/n^2 sum_ij u(z_i, z_j)`` with, for the Gaussian kernel k and ``r = |z_i - z_j|``,
    ``u = k(z_i, z_j) [s_i.s_j + (s_i - s_j).(z_i - z_j) / h + dim / h - r^2 / h^2]``.
    It is the squared RKHS norm of the best Stein direction (book Eq. ``ch5-svgd``): 0 when
    the codes follow p.

    Args:
        z: codes ``[n, dim]`` (treated as constants).
        score: grad log p at each code; ``None`` means N(0, I).
        bandwidth: h; ``None`` means ``dim``.

    Returns:
        A scalar tensor without gradient.

    Example:
        >>> import torch
        >>> from infovae.divergences import kernel_stein_discrepancy
        >>> _ = torch.manual_seed(0)
        >>> z = torch.randn(500, 2)
        >>> bool(kernel_stein_discrepancy(z) < kernel_stein_discrepancy(z + 2.0))
        True
    """
    _check_codes("z", z)
    s = _check_score(z, score)
    z = z.detach()
    n, dim = z.shape
    h = resolve_bandwidth(bandwidth, dim)
    sq = squared_distances(z, z)
    k = torch.exp(sq / (-2.0 * h))
    zs = (z * s).sum(1)
    # (s_i - s_j).(z_i - z_j) = s_i.z_i - s_i.z_j - s_j.z_i + s_j.z_j
    cross = zs[:, None] + zs[None, :] - s @ z.T - z @ s.T
    u = k * (s @ s.T + cross / h + dim / h - sq / h**2)
    return u.sum() / n**2


def stein_loss(z: Tensor, score: Tensor | None = None, bandwidth: float | None = None) -> Tensor:
    """A loss whose gradient moves every code along the Stein variational gradient.

    The value is the kernelized Stein discrepancy (``kernel_stein_discrepancy``), for
    logging; the gradient with respect to z_i is -phi(z_i) / n (``svgd_direction``), so a
    gradient step on the mean over a batch is an SVGD step on KL(q(z) || p(z)) (book
    Eq. ``ch5-svgd``). The gradient is not that of the returned value.

    Args:
        z: codes ``[n, dim]`` that carry gradient to the encoder.
        score: grad log p at each code; ``None`` means N(0, I).
        bandwidth: h; ``None`` means ``dim``.

    Returns:
        A scalar tensor.

    Example:
        >>> import torch
        >>> from infovae.divergences import stein_loss, svgd_direction
        >>> z = torch.tensor([[-1.0], [1.0]], requires_grad=True)
        >>> stein_loss(z).backward()
        >>> torch.allclose(z.grad, -svgd_direction(z) / 2)  # -phi / n
        True
    """
    phi = svgd_direction(z, score, bandwidth)
    ksd = kernel_stein_discrepancy(z, score, bandwidth)
    surrogate = -(phi * z).sum(1).mean()  # gradient -phi / n; value removed below
    return ksd + surrogate - surrogate.detach()


# ----------------------------------------------------------------------------- adversarial


def gradient_penalty(
    critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, t: Tensor | None = None
) -> Tensor:
    """The WGAN-GP penalty ``E[(|grad_z f(z_t)| - 1)^2]`` at ``z_t = t real + (1 - t) fake``.

    The last term of the critic loss of book Eq. ``ch5-wgan`` (without its weight).

    Args:
        critic: maps ``[n, dim]`` to ``[n]`` scores.
        real, fake: samples ``[n, dim]`` paired row by row.
        t: ``[n]`` interpolation weights in [0, 1]; ``None`` draws them uniformly.

    Returns:
        A scalar tensor, differentiable with respect to the critic's parameters.

    Example:
        >>> import torch
        >>> from infovae.divergences import gradient_penalty
        >>> critic = lambda z: 3.0 * z.sum(1)  # gradient norm 3 everywhere
        >>> gradient_penalty(critic, torch.ones(4, 1), torch.zeros(4, 1))
        tensor(4.)
    """
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have the same shape, got {tuple(real.shape)} and {tuple(fake.shape)}")
    if t is None:
        t = torch.rand(len(real), device=real.device, dtype=real.dtype)
    z_t = (t[:, None] * real + (1.0 - t[:, None]) * fake).detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(critic(z_t).sum(), z_t, create_graph=True)
    return (grad.norm(dim=1) - 1.0).square().mean()


class _AdversarialDivergence(nn.Module):
    """A 512-512 leaky-ReLU network on z with its own Adam optimiser (as in the authors' code)."""

    def __init__(
        self,
        dim: int,
        hidden: int = 512,
        lr: float = 2e-5,
        betas: tuple[float, float] = (0.5, 0.9),
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self.net = nn.Sequential(
            nn.Linear(dim, hidden, **kw),
            nn.LeakyReLU(0.1),
            nn.Linear(hidden, hidden, **kw),
            nn.LeakyReLU(0.1),
            nn.Linear(hidden, 1, **kw),
        )
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=lr, betas=betas)

    def score(self, z: Tensor) -> Tensor:
        """The network's output ``[n]`` (gradients reach its parameters)."""
        return self.net(z).squeeze(-1)

    def frozen_score(self, z: Tensor) -> Tensor:
        """The output ``[n]`` with the parameters held constant: gradients reach z only."""
        params = {name: p.detach() for name, p in self.net.named_parameters()}
        return torch.func.functional_call(self.net, params, (z,)).squeeze(-1)

    def critic_loss(self, codes: Tensor, prior_samples: Tensor) -> tuple[Tensor, dict[str, float]]:
        raise NotImplementedError

    def step(self, codes: Tensor, prior_samples: Tensor) -> dict[str, float]:
        """One optimiser step of the network on detached codes against prior samples.

        Gradients are cleared before and after. Returns the step's logged numbers.
        """
        _check_codes("codes", codes)
        _check_codes("prior_samples", prior_samples)
        self.optimizer.zero_grad(set_to_none=True)
        with torch.enable_grad():
            loss, logs = self.critic_loss(codes.detach(), prior_samples.detach())
            loss.backward()
        average_gradients(self.net.parameters())  # every rank the same update (infovae.distributed)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return logs


class JSDiscriminator(_AdversarialDivergence):
    """Jensen-Shannon divergence through a discriminator (adversarial autoencoders).

    The network f gives the logit of "z comes from the prior". ``step`` trains it by
    logistic regression (prior samples labelled 1, codes 0); ``forward`` returns the
    Jensen-Shannon estimate

        JS ~= log 2 + 1/2 E_p[log sigmoid f(w)] + 1/2 E_q[log(1 - sigmoid f(z))],

    (book Eq. ``ch5-js``), exact when f is the optimal discriminator; its gradient reaches
    the codes only.

    Example:
        >>> import torch
        >>> from infovae.divergences import JSDiscriminator
        >>> _ = torch.manual_seed(0)
        >>> disc = JSDiscriminator(2, hidden=16)
        >>> codes, prior_samples = torch.randn(64, 2) + 2.0, torch.randn(64, 2)
        >>> sorted(disc.step(codes, prior_samples))  # one logistic-regression step
        ['discriminator_loss', 'js']
        >>> disc(codes, prior_samples).shape
        torch.Size([])
    """

    def critic_loss(self, codes: Tensor, prior_samples: Tensor) -> tuple[Tensor, dict[str, float]]:
        f_p, f_q = self.score(prior_samples), self.score(codes)
        loss = 0.5 * (F.softplus(-f_p).mean() + F.softplus(f_q).mean())
        return loss, {"discriminator_loss": loss.item(), "js": math.log(2.0) - loss.item()}

    def forward(self, codes: Tensor, prior_samples: Tensor) -> Tensor:
        """The Jensen-Shannon estimate (scalar), differentiable with respect to ``codes``."""
        f_p, f_q = self.frozen_score(prior_samples.detach()), self.frozen_score(codes)
        return math.log(2.0) - 0.5 * (F.softplus(-f_p).mean() + F.softplus(f_q).mean())


class WGANCritic(_AdversarialDivergence):
    """Wasserstein-1 distance through a WGAN-GP critic (Gulrajani et al. 2017).

    ``step`` minimises E_q[f(z)] - E_p[f(w)] + gp_weight * gradient_penalty; ``forward``
    returns the Wasserstein estimate E_p[f(w)] - E_q[f(z)], with gradient to the codes only
    (both in book Eq. ``ch5-wgan``).

    Example:
        >>> import torch
        >>> from infovae.divergences import WGANCritic
        >>> _ = torch.manual_seed(0)
        >>> critic = WGANCritic(2, hidden=16)
        >>> codes = (torch.randn(64, 2) + 2.0).requires_grad_(True)
        >>> sorted(critic.step(codes, torch.randn(64, 2)))
        ['critic_loss', 'gradient_penalty', 'wasserstein']
        >>> critic(codes, torch.randn(64, 2)).backward()  # the gradient reaches the codes only
        >>> codes.grad.shape, critic.net[0].weight.grad is None
        (torch.Size([64, 2]), True)
    """

    def __init__(self, dim: int, hidden: int = 512, lr: float = 2e-5, betas: tuple[float, float] = (0.5, 0.9),
                 gp_weight: float = 10.0, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None):
        super().__init__(dim, hidden, lr, betas, device, dtype)
        if not gp_weight >= 0:
            raise ValueError(f"gp_weight must be non-negative, got {gp_weight}")
        self.gp_weight = float(gp_weight)

    def critic_loss(self, codes: Tensor, prior_samples: Tensor) -> tuple[Tensor, dict[str, float]]:
        n = min(len(codes), len(prior_samples))
        wasserstein = self.score(prior_samples).mean() - self.score(codes).mean()
        gp = gradient_penalty(self.score, prior_samples[:n], codes[:n])
        loss = -wasserstein + self.gp_weight * gp
        return loss, {"critic_loss": loss.item(), "wasserstein": wasserstein.item(), "gradient_penalty": gp.item()}

    def forward(self, codes: Tensor, prior_samples: Tensor) -> Tensor:
        """The Wasserstein estimate (scalar), differentiable with respect to ``codes``."""
        return self.frozen_score(prior_samples.detach()).mean() - self.frozen_score(codes).mean()

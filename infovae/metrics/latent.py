"""How well q(z) matches p(z) and how much the code says about x (Figs. 2 and 6, chapters 7-8).

The aggregate posterior q(z) = (1/N) sum_n q(z|x_n) over a data set (book Eq. ``ch1-joint-q``)
is the object of the InfoVAE objective (Eq. 6 of the book, ``ch4-eq6``). These metrics look at it through codes
z_n ~ q(z|x_n), one per image:

* ``full_batch_mmd``: MMD(q(z), p(z)) over all codes (Fig. 6 A, the paper: 40k vs 40k), and
  ``full_batch_mmd_floor``, its expected value when q(z) is the prior (the V-statistic's floor);
* ``log_det_covariance``: log det Cov[q(z)] (Fig. 2, and per dimension Fig. 6 B);
* ``mutual_information``: I_q(x; z) with q(z) the mixture over the data set;
* ``shuffled_code_gap``: nats of log p(x|z) lost when z comes from another image;
* ``active_units``: dimensions whose encoder mean varies with x (Burda et al. 2016).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn
from torch.distributions import Distribution

from ..divergences import mmd
from ..vae import VAE, check_decoder_output
from ._common import check_count, check_images, check_model, evaluating


class LogDetCovariance(NamedTuple):
    """log det of the sample covariance of codes: ``total`` and ``per_dim = total / dim``.

    Example:
        >>> import torch
        >>> from infovae.metrics.latent import LogDetCovariance, log_det_covariance
        >>> result = log_det_covariance(torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]]))
        >>> isinstance(result, LogDetCovariance), result.total == 2 * result.per_dim
        (True, True)
    """

    total: float
    per_dim: float


class ActiveUnits(NamedTuple):
    """``num_active`` latent dimensions with ``variances`` (``[dim]``) above the threshold (the field is
    not called ``count``, which would shadow ``tuple.count``).

    Example:
        >>> import torch
        >>> from infovae.metrics.latent import ActiveUnits
        >>> units = ActiveUnits(1, torch.tensor([0.8, 0.001]))
        >>> units.num_active, units.variances.shape
        (1, torch.Size([2]))
    """

    num_active: int
    variances: torch.Tensor


def _check_codes(z: torch.Tensor, min_rows: int = 1) -> torch.Tensor:
    if isinstance(z, torch.Tensor) and z.ndim != 2:
        raise ValueError(f"z must be codes [N, dim], got shape {tuple(z.shape)}")
    check_images(z, "z")
    if z.ndim != 2:
        raise ValueError(f"z must be codes [N, dim], got shape {tuple(z.shape)}")
    if z.shape[0] < min_rows:
        raise ValueError(f"need at least {min_rows} codes, got {z.shape[0]}")
    return z


def mixture_log_density(z: torch.Tensor, means: torch.Tensor, stds: torch.Tensor, block: int = 256) -> torch.Tensor:
    """log q(z) at points ``z [m, dim]`` for the equal mixture q(z) = (1/n) sum_i N(means_i, diag stds_i^2).

    The aggregate posterior of a Gaussian encoder over n images (``means``, ``stds`` ``[n, dim]``;
    q(z) of book Eq. ``ch1-joint-q``), evaluated exactly by a log-sum-exp over the components,
    ``block`` points at a time.

    Example:
        >>> import torch
        >>> from infovae.metrics.latent import mixture_log_density
        >>> means, stds = torch.tensor([[-1.0], [1.0]]), torch.ones(2, 1)
        >>> mixture_log_density(torch.zeros(1, 1), means, stds)  # log N(0; 1, 1)
        tensor([-1.4189])
    """
    out = []
    for zb in z.split(block):
        comps = torch.distributions.Normal(means, stds).log_prob(zb[:, None, :]).sum(-1)  # [b, n]
        out.append(comps.logsumexp(1) - math.log(len(means)))
    return torch.cat(out)


@torch.inference_mode()
def encode_codes(
    model: VAE, x: torch.Tensor, *, sample: bool = True, batch_size: int = 1000
) -> torch.Tensor:
    """Codes of a data set: z_n ~ q(z|x_n) (or the encoder's mean), ``[N, dim]``.

    Samples of q(z|x_n) over the data set are samples of the aggregate posterior q(z), the
    input of :func:`full_batch_mmd` and :func:`log_det_covariance`; the means serve as
    features (:func:`~infovae.metrics.downstream.semi_supervised_error`). Cost: one encoder pass.

    Example:
        >>> import torch
        >>> from infovae.metrics.latent import encode_codes
        >>> from infovae.networks import build_vae
        >>> model, x = build_vae("toy", latent_dim=2), torch.tensor([[-1.0], [1.0]]).repeat(5, 1)
        >>> encode_codes(model, x).shape, encode_codes(model, x, sample=False).shape
        (torch.Size([10, 2]), torch.Size([10, 2]))
    """
    x = check_model(model, x)
    check_count("batch_size", batch_size)
    with evaluating(model):
        qs = [model.encode(xb) for xb in x.split(batch_size)]
        return torch.cat([q.sample() if sample else q.mean for q in qs])


@torch.inference_mode()
def full_batch_mmd(
    z: torch.Tensor,
    prior: Distribution | None = None,
    *,
    num_prior_samples: int | None = None,
    kernel: str = "rbf",
    bandwidth: float | None = None,
    estimator: str = "biased",
) -> float:
    """MMD^2 between codes ``z ~ q(z)`` and as many fresh prior samples (Fig. 6 A).

    Estimates MMD^2(q, p) = E k(z, z') + E k(y, y') - 2 E k(z, y), z, z' ~ q, y, y' ~ p (book
    Eq. ``ch5-mmd-kernel``), with :func:`infovae.divergences.mmd` (default: Gaussian kernel
    ``exp(-||a-b||^2 / (2 dim))``).

    Bias and variance: the ``"biased"`` V-statistic (the paper's, book Eq. ``ch5-mmd-v``)
    exceeds MMD^2 on average (book Eq. ``ch5-mmd-bias``) by (2 - E k(z,z') - E k(y,y')) / n
    <= 2 / n for n codes and n prior samples (at most 5e-5
    at n = 40k, above the smallest ELBO values of Fig. 6 A); ``"unbiased"`` removes it. The
    standard deviation is O(1/n) when q = p and O(1/sqrt(n)) otherwise.

    Cost: O(n^2 dim) time, blocked memory (``mmd`` never holds the n x n kernel matrix).

    Args:
        z: codes ``[n, dim]`` (e.g. :func:`encode_codes` over the training set).
        prior: p(z); ``None`` means N(0, I). Sampled with torch's global generator.
        num_prior_samples: prior samples (default ``n``, as in the paper).
        kernel, bandwidth, estimator: passed to :func:`infovae.divergences.mmd`.

    Example:
        >>> import torch
        >>> from infovae.metrics.latent import full_batch_mmd
        >>> _ = torch.manual_seed(0)
        >>> near, far = full_batch_mmd(torch.randn(500, 2)), full_batch_mmd(torch.randn(500, 2) + 2.0)
        >>> isinstance(near, float), near < 0.01 < far
        (True, True)
    """
    _check_codes(z, min_rows=2)
    n = z.shape[0] if num_prior_samples is None else check_count("num_prior_samples", num_prior_samples)
    y = torch.randn(n, z.shape[1], dtype=z.dtype, device=z.device) if prior is None else prior.sample((n,))
    if y.shape[1:] != z.shape[1:]:
        raise ValueError(
            f"the prior samples have shape {tuple(y.shape[1:])} per draw, the codes {tuple(z.shape[1:])}"
        )
    return float(mmd(z, y.to(z), kernel=kernel, bandwidth=bandwidth, estimator=estimator))


def full_batch_mmd_floor(num_codes: int, dim: int, num_prior_samples: int | None = None) -> float:
    """The expected biased full-batch MMD^2 (:func:`full_batch_mmd`, Gaussian kernel
    ``exp(-||a-b||^2 / (2 dim))``) when q(z) *equals* the prior N(0, I): the floor below which
    no model's Fig. 6 A value can be read.

    For the V-statistic (book Eq. ``ch5-mmd-bias``) with n codes and m prior samples from the
    same distribution, E[MMD^2_b] = (1/n + 1/m) (k(0) - E k(z, z')), with k(0) = 1 and, for z,
    z' ~ N(0, I_d) (so z - z' ~ N(0, 2 I) and ||z - z'||^2 / 2 ~ chi^2_d),
    E k(z, z') = E exp(-chi^2_d / d) = (1 + 2/d)^(-d/2). At d = 5: 2.3e-4 for 5,000 codes, 2.8e-5
    for the paper's 40,000.

    Example:
        >>> from infovae.metrics.latent import full_batch_mmd_floor
        >>> round(full_batch_mmd_floor(5000, 5), 7), round(full_batch_mmd_floor(40_000, 5), 7)
        (0.0002275, 2.84e-05)
    """
    check_count("num_codes", num_codes)
    check_count("dim", dim)
    m = num_codes if num_prior_samples is None else check_count("num_prior_samples", num_prior_samples)
    return (1 / num_codes + 1 / m) * (1 - (1 + 2 / dim) ** (-dim / 2))


def log_det_covariance(z: torch.Tensor) -> LogDetCovariance:
    """log det of the sample covariance of codes ``z ~ q(z)``, total and per dimension.

    Estimates log det Cov[q(z)], which is 0 when q(z) = p(z) = N(0, I) (Fig. 2); the paper's
    Fig. 6 B plots it divided by dim. The sample covariance S (divisor n - 1) is
    unbiased but log det S is not: for Gaussian codes E log det S - log det Cov =
    d log 2 - d log(n-1) + sum_{i=1..d} digamma((n - i) / 2) ~= -d (d + 1) / (2 n), and its
    standard deviation is about sqrt(2 d / n). Cost: O(n d^2 + d^3).

    Example:
        >>> import math, torch
        >>> from infovae.metrics.latent import log_det_covariance
        >>> z = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])  # covariance (4/3) I
        >>> result = log_det_covariance(z)
        >>> math.isclose(result.total, 2 * math.log(4 / 3)), math.isclose(result.per_dim, math.log(4 / 3))
        (True, True)
    """
    _check_codes(z)
    if z.shape[0] <= z.shape[1]:
        raise ValueError(
            f"a full-rank covariance of {z.shape[1]}-dim codes needs more than {z.shape[1]} codes, "
            f"got {z.shape[0]}"
        )
    sign, total = torch.linalg.slogdet(torch.cov(z.T.double()).reshape(z.shape[1], z.shape[1]))
    total = float(total) if sign > 0 else -math.inf
    return LogDetCovariance(total, total / z.shape[1])


@torch.inference_mode()
def mutual_information(
    model: VAE, x: torch.Tensor, *, num_samples: int = 1, batch_size: int = 1000
) -> float:
    """I_q(x; z) of the joint q(x, z) = p_D(x) q(z|x), p_D uniform over the images ``x``.

    Book Eq. ``ch3-mi`` (with the joint of book Eq. ``ch1-joint-q``). Estimates I_q = E_{x, z ~ q(z|x)} [log q(z|x) - log q(z)] with the exact mixture
    q(z) = (1/N) sum_n q(z|x_n), evaluated in log space (log-sum-exp over n), from
    ``num_samples`` draws z ~ q(z|x_i) per image.

    Bias and variance: unbiased, with Monte Carlo variance only, for the data set itself
    (p_D uniform over ``x``; so a near-zero I_q can come out slightly negative). As an
    estimate for the distribution that ``x`` samples it is
    biased low: it never exceeds log N, and it saturates there when the codes of different
    images barely overlap, however much larger the true I_q is (for a 2-dim Gaussian
    encoder with I_q = 0.69 nats, N = 3000 images: bias -0.006, s.d. 0.02). Cost:
    O(num_samples N^2 dim) time, memory of ``batch_size^2 * dim`` numbers.

    Returns:
        the estimate in nats.

    Example:
        >>> import math, torch
        >>> from infovae.metrics.latent import mutual_information
        >>> from infovae.networks import build_vae
        >>> _ = torch.manual_seed(0)
        >>> x = torch.tensor([[-1.0], [1.0]]).repeat(20, 1)
        >>> mi = mutual_information(build_vae("toy", latent_dim=1), x, num_samples=2)
        >>> isinstance(mi, float), mi <= math.log(len(x))
        (True, True)
    """
    x = check_model(model, x)
    check_count("num_samples", num_samples)
    check_count("batch_size", batch_size)
    with evaluating(model):
        qs = [model.encode(xb) for xb in x.split(batch_size)]
        z = [q.sample((num_samples,)) for q in qs]  # [S, b, dim] each
        log_q_own = torch.cat([q.log_prob(zb).flatten() for q, zb in zip(qs, z, strict=True)])
        codes = torch.cat([zb.flatten(0, 1) for zb in z])  # [S N, dim], same order as log_q_own
        log_q_mix = torch.cat(
            [
                torch.stack([q.log_prob(zc[:, None]).logsumexp(1) for q in qs]).logsumexp(0)
                for zc in codes.split(batch_size)
            ]
        )
    return float((log_q_own - log_q_mix).mean() + math.log(x.shape[0]))


@torch.inference_mode()
def shuffled_code_gap(model: VAE, x: torch.Tensor, *, batch_size: int = 1000) -> float:
    """Nats of log p(x|z) the decoder loses when each image gets another image's code.

    Estimates E_{q(x,z)} log p(x|z) - E_{p_D(x) q(z)} log p(x|z): codes z_i ~ q(z|x_i) are
    paired once with their own image and once with image j = pi(i) for a random
    permutation without fixed points. Zero when the decoder ignores z (the information
    preference of chapter 3), large when x is read off z.

    Bias and variance: unbiased for the data set ``x``; standard deviation ~ sd / sqrt(N)
    of the per-image differences. Cost: two decoder passes over N images.

    Returns:
        the gap in nats per image (needs N >= 2).

    Example:
        >>> import torch
        >>> from infovae.metrics.latent import shuffled_code_gap
        >>> from infovae.networks import build_vae
        >>> _ = torch.manual_seed(0)
        >>> gap = shuffled_code_gap(build_vae("toy", latent_dim=1), torch.tensor([[-1.0], [1.0]]).repeat(8, 1))
        >>> type(gap)
        <class 'float'>
    """
    x = check_model(model, x)
    check_count("batch_size", batch_size)
    if x.shape[0] < 2:
        raise ValueError(f"shuffling codes needs at least 2 images, got {x.shape[0]}")
    order = torch.randperm(x.shape[0], device=x.device)
    partner = torch.empty_like(order)
    partner[order] = order.roll(1)  # one cycle through all images: nobody keeps their own code

    def log_px(codes: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                check_decoder_output(model.decode(zb), xb).log_prob(xb)
                for zb, xb in zip(codes.split(batch_size), x.split(batch_size), strict=True)
            ]
        )

    with evaluating(model):
        z = torch.cat([model.encode(xb).sample() for xb in x.split(batch_size)])
        own, other = log_px(z), log_px(z[partner])
    return float((own - other).mean())


@torch.inference_mode()
def active_units(
    model: VAE, x: torch.Tensor, *, threshold: float = 0.01, batch_size: int = 1000
) -> ActiveUnits:
    """Latent dimensions in use: A_u = Var_x(E_{q(z|x)}[z_u]) > ``threshold`` (Burda et al. 2016).

    A dimension whose encoder mean does not move with x carries no information about x.
    The variance is the sample variance over the N images (unbiased, standard deviation
    ~ A_u sqrt(2 / N) for Gaussian means). Cost: one encoder pass.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from torch.distributions import Independent, Normal
        >>> from infovae.metrics.latent import active_units
        >>> from infovae.networks import MLPDecoder
        >>> from infovae.vae import VAE
        >>> class CopyEncoder(nn.Module):  # z_1 has mean x, z_2 mean 0: one unit in use
        ...     def forward(self, x):
        ...         mean = torch.cat([x, torch.zeros_like(x)], 1)
        ...         return Independent(Normal(mean, torch.ones_like(mean)), 1)
        >>> model = VAE(CopyEncoder(), MLPDecoder(2, (1,), likelihood="gaussian"))
        >>> active_units(model, torch.tensor([[-1.0], [1.0], [-1.0], [1.0]]))
        ActiveUnits(num_active=1, variances=tensor([1.3333, 0.0000]))
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise TypeError(f"threshold must be a number, got {threshold!r}")
    if not threshold >= 0:
        raise ValueError(f"threshold must be non-negative, got {threshold}")
    x = check_model(model, x)
    if x.shape[0] < 2:
        raise ValueError(f"a variance over images needs at least 2 images, got {x.shape[0]}")
    variances = encode_codes(model, x, sample=False, batch_size=batch_size).var(0)
    return ActiveUnits(int((variances > threshold).sum()), variances)

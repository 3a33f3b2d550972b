"""Exact computations on finite latent variable models (chapters 1 to 4 of the book).

When both the data space X and the latent space Z are finite, every distribution of the
book is a table of probabilities and every expectation, KL divergence and mutual
information is a finite sum. This module computes them exactly, in float64, so the
identities of Part I can be checked to rounding error rather than to Monte Carlo noise:

* the ELBO (Eq. ``ch1-elbo``) and its three equivalent forms, Eqs. (2), (3), (4) of the
  paper (book Eqs. ``ch1-eq2``, ``ch1-eq3``, ``ch1-eq4``);
* the InfoVAE objective, Eq. (5) (book ``ch4-eq5``), and its tractable form Eq. (6)
  (book ``ch4-eq6``), with any divergence between q(z) and p(z): KL, Jensen-Shannon, or
  an exact MMD for Proposition 2;
* small optimisers (L-BFGS with torch autograd, float64) over softmax-parameterised
  tables, with an optional equality constraint (used to fix the mutual information).

Conventions. A model is a :class:`FiniteModel` of four tables that may carry any leading
batch shape ``[...]`` (to check an identity on many random models at once):

==============  ================  ===================================
field           shape             meaning
==============  ================  ===================================
``p_data``      ``[..., X]``      the data distribution p_D(x)
``prior``       ``[..., Z]``      the prior p(z)
``decoder``     ``[..., Z, X]``   p(x|z): row ``z`` is a distribution over x
``encoder``     ``[..., X, Z]``   q(z|x): row ``x`` is a distribution over z
==============  ================  ===================================

Joint tables are always indexed ``[..., x, z]``. Logarithms are natural (nats); 0 log 0 = 0.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch

Divergence = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class FiniteModel(NamedTuple):
    """A finite latent variable model p(z) p(x|z) with data p_D(x) and encoder q(z|x).

    Example:
        >>> import torch
        >>> from infovae.finite import FiniteModel, elbo
        >>> half, eye = torch.tensor([0.5, 0.5], dtype=torch.float64), torch.eye(2, dtype=torch.float64)
        >>> model = FiniteModel(p_data=half, prior=half, decoder=eye, encoder=eye)  # z copies x
        >>> model.decoder.shape, elbo(model)  # exact reconstruction, rate log 2
        (torch.Size([2, 2]), tensor(-0.6931, dtype=torch.float64))
    """

    p_data: torch.Tensor
    prior: torch.Tensor
    decoder: torch.Tensor
    encoder: torch.Tensor


def _check_simplex(p: torch.Tensor, name: str, atol: float = 1e-9) -> None:
    if not torch.is_floating_point(p):
        raise TypeError(f"{name} must be a floating point tensor, got {p.dtype}")
    if p.dim() < 1:
        raise ValueError(f"{name} must have at least one dimension, got a scalar")
    if not torch.isfinite(p).all() or (p < 0).any():
        raise ValueError(f"{name} must hold finite, non-negative probabilities")
    total = p.sum(-1)
    if not torch.allclose(total, torch.ones_like(total), atol=atol, rtol=0):
        raise ValueError(f"{name} must sum to 1 over its last dimension (max error {(total - 1).abs().max():.2e})")


def check_model(model: FiniteModel) -> FiniteModel:
    """Validate shapes and normalisation of ``model``; return it unchanged.

    Raises:
        ValueError: a table is not a probability table, or the shapes do not agree.

    Example:
        >>> import torch
        >>> from infovae.finite import FiniteModel, check_model
        >>> half, eye = torch.tensor([0.5, 0.5], dtype=torch.float64), torch.eye(2, dtype=torch.float64)
        >>> model = FiniteModel(half, half, eye, eye)
        >>> check_model(model) is model
        True
        >>> check_model(model._replace(prior=2 * half))
        Traceback (most recent call last):
        ...
        ValueError: prior must sum to 1 over its last dimension (max error 1.00e+00)
    """
    for name, table in zip(model._fields, model):
        _check_simplex(table, name)
    nx, nz = model.p_data.shape[-1], model.prior.shape[-1]
    if model.decoder.shape[-2:] != (nz, nx):
        raise ValueError(f"decoder must have shape [..., Z={nz}, X={nx}], got {tuple(model.decoder.shape)}")
    if model.encoder.shape[-2:] != (nx, nz):
        raise ValueError(f"encoder must have shape [..., X={nx}, Z={nz}], got {tuple(model.encoder.shape)}")
    return model


# ----------------------------------------------------------------------------- random models


def random_simplex(*shape: int, concentration: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Dirichlet(concentration) draws of shape ``shape``; the last dimension sums to 1 (float64).

    Example:
        >>> import torch
        >>> from infovae.finite import random_simplex
        >>> p = random_simplex(3, 4, generator=torch.Generator().manual_seed(0))
        >>> p.shape, p.dtype, torch.allclose(p.sum(-1), torch.ones(3, dtype=torch.float64))
        (torch.Size([3, 4]), torch.float64, True)
    """
    if not shape or min(shape) < 1:
        raise ValueError(f"shape must be non-empty with positive sizes, got {shape}")
    if concentration <= 0:
        raise ValueError(f"concentration must be positive, got {concentration}")
    # torch's Dirichlet sampler takes no generator: seed a forked global RNG from it.
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)  # the CPU's only: manual_seed would reseed every GPU too
        alpha = torch.full((shape[-1],), float(concentration), dtype=torch.float64)
        return torch.distributions.Dirichlet(alpha).sample(shape[:-1])


def random_model(
    num_x: int,
    num_z: int,
    batch_shape: tuple[int, ...] = (),
    concentration: float = 1.0,
    generator: torch.Generator | None = None,
) -> FiniteModel:
    """A random finite model: every table drawn from a symmetric Dirichlet (float64).

    Args:
        num_x: size of X. num_z: size of Z.
        batch_shape: leading shape, e.g. ``(1000,)`` for 1000 independent models.
        concentration: Dirichlet concentration (small values give peaked tables).
        generator: torch random generator for reproducibility.

    Example:
        >>> import torch
        >>> from infovae.finite import random_model
        >>> model = random_model(3, 4, batch_shape=(10,), generator=torch.Generator().manual_seed(0))
        >>> [tuple(table.shape) for table in model]  # p_data, prior, decoder, encoder
        [(10, 3), (10, 4), (10, 4, 3), (10, 3, 4)]
    """
    if num_x < 1 or num_z < 1:
        raise ValueError(f"num_x and num_z must be positive, got {num_x}, {num_z}")
    b = tuple(batch_shape)
    return FiniteModel(
        p_data=random_simplex(*b, num_x, concentration=concentration, generator=generator),
        prior=random_simplex(*b, num_z, concentration=concentration, generator=generator),
        decoder=random_simplex(*b, num_z, num_x, concentration=concentration, generator=generator),
        encoder=random_simplex(*b, num_x, num_z, concentration=concentration, generator=generator),
    )


# ----------------------------------------------------------------------------- information


def _xlogy(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a log b with 0 log b = 0, and zero gradients (not NaN) where a = 0."""
    support = a > 0
    b = torch.where(support, b, torch.ones_like(b))
    return torch.where(support, a * torch.log(b), torch.zeros_like(a))


def entropy(p: torch.Tensor, event_dims: int = 1) -> torch.Tensor:
    """Shannon entropy H(p) = -sum p log p over the last ``event_dims`` dimensions (nats).

    Example:
        >>> import torch
        >>> from infovae.finite import entropy
        >>> entropy(torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64))  # log 2; 0 log 0 = 0
        tensor(0.6931, dtype=torch.float64)
    """
    return -_xlogy(p, p).flatten(-event_dims).sum(-1)


def kl(p: torch.Tensor, q: torch.Tensor, event_dims: int = 1) -> torch.Tensor:
    """KL(p || q) = sum p log(p / q) over the last ``event_dims`` dimensions (nats).

    0 log(0 / q) = 0; p > 0 where q = 0 gives +inf.

    Example:
        >>> import torch
        >>> from infovae.finite import kl
        >>> p, q = torch.tensor([0.5, 0.5], dtype=torch.float64), torch.tensor([0.75, 0.25], dtype=torch.float64)
        >>> kl(p, q), kl(p, torch.tensor([1.0, 0.0], dtype=torch.float64))
        (tensor(0.1438, dtype=torch.float64), tensor(inf, dtype=torch.float64))
    """
    terms = _xlogy(p, p) - _xlogy(p, q)
    return terms.flatten(-event_dims).sum(-1)


def js_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence (KL(p||m) + KL(q||m)) / 2 with m = (p + q) / 2 (nats).

    The divergence that an optimal discriminator measures, book Eq. ``ch5-js``.

    Example:
        >>> import torch
        >>> from infovae.finite import js_divergence
        >>> p, q = torch.tensor([1.0, 0.0], dtype=torch.float64), torch.tensor([0.0, 1.0], dtype=torch.float64)
        >>> js_divergence(p, p), js_divergence(p, q)  # 0 and, for disjoint supports, log 2
        (tensor(0., dtype=torch.float64), tensor(0.6931, dtype=torch.float64))
    """
    m = (p + q) / 2
    return (kl(p, m) + kl(q, m)) / 2


def mutual_information(joint: torch.Tensor) -> torch.Tensor:
    """I(x; z) = KL(joint || product of its marginals) for a joint table ``[..., X, Z]``.

    Book Eq. ``ch3-mi`` for any joint table.

    Example:
        >>> import torch
        >>> from infovae.finite import mutual_information
        >>> mutual_information(torch.eye(2, dtype=torch.float64) / 2)  # z = x: log 2
        tensor(0.6931, dtype=torch.float64)
        >>> mutual_information(torch.full((2, 2), 0.25, dtype=torch.float64))  # independent
        tensor(0., dtype=torch.float64)
    """
    px = joint.sum(-1, keepdim=True)
    pz = joint.sum(-2, keepdim=True)
    return kl(joint, px * pz, event_dims=2)


def gaussian_kernel_matrix(points: torch.Tensor, bandwidth: float | None = None) -> torch.Tensor:
    """``k(e_i, e_j) = exp(-||e_i - e_j||^2 / (2 bandwidth))`` for embedded points ``[Z, dim]``.

    ``bandwidth`` defaults to ``dim`` (the book's convention, chapter 5); this is the kernel k
    of book Eqs. ``ch4-mmd`` and ``ch5-mmd-kernel``.

    Example:
        >>> import torch
        >>> from infovae.finite import gaussian_kernel_matrix
        >>> gaussian_kernel_matrix(torch.tensor([[0.0], [1.0]], dtype=torch.float64))  # exp(-1/2) off the diagonal
        tensor([[1.0000, 0.6065],
                [0.6065, 1.0000]], dtype=torch.float64)
    """
    if points.dim() != 2:
        raise ValueError(f"points must have shape [Z, dim], got {tuple(points.shape)}")
    bandwidth = float(points.shape[1]) if bandwidth is None else float(bandwidth)
    if bandwidth <= 0:
        raise ValueError(f"bandwidth must be positive, got {bandwidth}")
    return torch.exp(-torch.cdist(points, points).square() / (2 * bandwidth))


def mmd(p: torch.Tensor, q: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Exact squared MMD between two distributions on a finite embedded Z (book ``ch4-mmd``).

    MMD(p, q) = E_{p,p} k - 2 E_{p,q} k + E_{q,q} k = (p - q)^T K (p - q), with ``kernel``
    the matrix ``K[i, j] = k(e_i, e_j)`` (e.g. :func:`gaussian_kernel_matrix`). It is a strict
    divergence whenever K is positive definite (a Gaussian kernel on distinct points).

    Example:
        >>> import torch
        >>> from infovae.finite import gaussian_kernel_matrix, mmd
        >>> K = gaussian_kernel_matrix(torch.tensor([[0.0], [1.0]], dtype=torch.float64))
        >>> p, q = torch.tensor([1.0, 0.0], dtype=torch.float64), torch.tensor([0.0, 1.0], dtype=torch.float64)
        >>> mmd(p, p, K), mmd(p, q, K)  # 0, and 2 - 2 exp(-1/2)
        (tensor(0., dtype=torch.float64), tensor(0.7869, dtype=torch.float64))
    """
    if kernel.shape != (p.shape[-1], p.shape[-1]):
        raise ValueError(f"kernel must have shape [{p.shape[-1]}, {p.shape[-1]}], got {tuple(kernel.shape)}")
    d = p - q
    return torch.einsum("...i,ij,...j->...", d, kernel, d)


def tilted_encoder(prior: torch.Tensor, points: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Encoder tables q(z|x) proportional to p(z) exp(shift_x e_z), ``[..., X, Z]`` (book ``ch3-tilt``).

    ``points`` ``[Z]`` embeds Z in the real line and ``shift`` ``[..., X]`` holds one
    parameter per x. When p(z) is a standard normal restricted to the points, the tilt by
    exp(t z) is a normal N(t, 1) restricted to the points: this is the finite counterpart of
    a Gaussian encoder with unit variance. ``shift = 0`` gives q(z|x) = p(z).

    Example:
        >>> import torch
        >>> from infovae.finite import tilted_encoder
        >>> prior = torch.tensor([0.25, 0.5, 0.25], dtype=torch.float64)
        >>> points = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64)
        >>> q = tilted_encoder(prior, points, torch.tensor([0.0, 2.0], dtype=torch.float64))
        >>> q.shape, torch.equal(q[0], prior), bool(q[1, 2] > q[1, 0])  # x = 1 tilts toward e_z = 1
        (torch.Size([2, 3]), True, True)
    """
    if points.dim() != 1 or points.shape[0] != prior.shape[-1]:
        raise ValueError(f"points must have shape [Z={prior.shape[-1]}], got {tuple(points.shape)}")
    logits = torch.log(prior).unsqueeze(-2) + shift.unsqueeze(-1) * points
    return torch.softmax(logits, -1)


def gaussian_encoder(points: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """Encoder tables q(z|x) proportional to exp(-(e_z - m_x)^2 / (2 s_x^2)), ``[..., X, Z]``
    (book chapter 10): a Gaussian restricted to the points with a free mean m_x
    *and* a free standard deviation s_x = exp(log_std_x) for every x.

    Unlike :func:`tilted_encoder` (unit variance, the finite counterpart of a fixed-variance
    Gaussian encoder), the width is free, so a code can carry up to H(p_D) nats (narrow,
    separated components) while the aggregate q(z) still covers the prior: carrying information
    and matching q(z) to p(z) then conflict only as much as the divergence can resolve the
    components' structure, not by construction of the family.

    Example:
        >>> import torch
        >>> from infovae.finite import gaussian_encoder
        >>> points = torch.linspace(-3, 3, 7, dtype=torch.float64)
        >>> q = gaussian_encoder(points, torch.tensor([-2.0, 2.0], dtype=torch.float64),
        ...                      torch.log(torch.tensor([0.1, 10.0], dtype=torch.float64)))
        >>> q.shape, round(float(q[0, 1]), 6), bool(q[1].max() - q[1].min() < 0.1)  # narrow at -2; nearly flat
        (torch.Size([2, 7]), 1.0, True)
    """
    if points.dim() != 1:
        raise ValueError(f"points must have shape [Z], got {tuple(points.shape)}")
    if mean.shape != log_std.shape:
        raise ValueError(f"mean and log_std must have one shape [..., X], got {tuple(mean.shape)} and {tuple(log_std.shape)}")
    logits = -(points - mean.unsqueeze(-1)).square() / (2 * torch.exp(2 * log_std).unsqueeze(-1))
    return torch.softmax(logits, -1)


# ----------------------------------------------------------------------------- joints and marginals


def joint_p(model: FiniteModel) -> torch.Tensor:
    """p(x, z) = p(z) p(x|z) as a table ``[..., X, Z]`` (book Eq. ``ch1-joint-p``).

    Example:
        >>> import torch
        >>> from infovae import finite as F
        >>> g = torch.Generator().manual_seed(0)
        >>> model = F.random_model(num_x=3, num_z=4, batch_shape=(5,), generator=g)  # 5 random models
        >>> joint = F.joint_p(model)
        >>> joint.shape, torch.allclose(joint.sum((-1, -2)), torch.ones(5, dtype=torch.float64))
        (torch.Size([5, 3, 4]), True)
    """
    return (model.prior.unsqueeze(-1) * model.decoder).transpose(-1, -2)


def joint_q(model: FiniteModel) -> torch.Tensor:
    """q(x, z) = p_D(x) q(z|x), the joint inference distribution, ``[..., X, Z]`` (book Eq. ``ch1-joint-q``).

    Example:
        >>> import torch
        >>> from infovae import finite as F
        >>> g = torch.Generator().manual_seed(0)
        >>> model = F.random_model(num_x=3, num_z=4, batch_shape=(5,), generator=g)  # 5 random models
        >>> joint = F.joint_q(model)
        >>> joint.shape, torch.allclose(joint.sum(-1), model.p_data)  # its x-marginal is the data
        (torch.Size([5, 3, 4]), True)
    """
    return model.p_data.unsqueeze(-1) * model.encoder


def marginal_p(model: FiniteModel) -> torch.Tensor:
    """p(x) = sum_z p(z) p(x|z) (Eq. 1 of the paper), ``[..., X]`` (book Eq. ``ch1-joint-p``).

    Example:
        >>> import torch
        >>> from infovae import finite as F
        >>> g = torch.Generator().manual_seed(0)
        >>> model = F.random_model(num_x=3, num_z=4, batch_shape=(5,), generator=g)  # 5 random models
        >>> F.marginal_p(model).shape, torch.allclose(F.marginal_p(model).sum(-1), torch.ones(5, dtype=torch.float64))
        (torch.Size([5, 3]), True)
    """
    return joint_p(model).sum(-1)


def marginal_q(model: FiniteModel) -> torch.Tensor:
    """The aggregate posterior q(z) = sum_x p_D(x) q(z|x), ``[..., Z]`` (book Eq. ``ch1-joint-q``).

    Example:
        >>> import torch
        >>> from infovae import finite as F
        >>> g = torch.Generator().manual_seed(0)
        >>> model = F.random_model(num_x=3, num_z=4, batch_shape=(5,), generator=g)  # 5 random models
        >>> F.marginal_q(model).shape
        torch.Size([5, 4])
        >>> torch.allclose(F.marginal_q(model._replace(encoder=model.prior[:, None, :].expand(5, 3, 4))), model.prior)
        True
    """
    return joint_q(model).sum(-2)


def posterior_p(model: FiniteModel) -> torch.Tensor:
    """The true posterior p(z|x) = p(x, z) / p(x), ``[..., X, Z]``.

    Example:
        >>> import torch
        >>> from infovae import finite as F
        >>> g = torch.Generator().manual_seed(0)
        >>> model = F.random_model(num_x=3, num_z=4, batch_shape=(5,), generator=g)  # 5 random models
        >>> exact = model._replace(encoder=F.posterior_p(model))  # the encoder that closes the gap
        >>> torch.allclose(F.elbo(exact), (model.p_data * F.marginal_p(model).log()).sum(-1))
        True
    """
    joint = joint_p(model)
    return joint / joint.sum(-1, keepdim=True)


def posterior_q(model: FiniteModel) -> torch.Tensor:
    """q(x|z) = q(x, z) / q(z), ``[..., Z, X]`` (the best decoder for a fixed encoder).

    Book Eq. ``ch1-joint-q``; with this decoder the ELBO is book Eq. ``ch3-elbo-best-decoder``.

    Example:
        >>> import torch
        >>> from infovae import finite as F
        >>> g = torch.Generator().manual_seed(0)
        >>> model = F.random_model(num_x=3, num_z=4, batch_shape=(5,), generator=g)  # 5 random models
        >>> best = model._replace(decoder=F.posterior_q(model))
        >>> bound = -F.entropy(model.p_data) - F.kl(F.marginal_q(model), model.prior)
        >>> torch.allclose(F.elbo(best), bound), bool((F.elbo(best) >= F.elbo(model)).all())
        (True, True)
    """
    joint = joint_q(model)
    return (joint / joint.sum(-2, keepdim=True)).transpose(-1, -2)


def information_q(model: FiniteModel) -> torch.Tensor:
    """I_q(x; z), the mutual information of the joint inference distribution q(x, z) (book Eq. ``ch3-mi``).

    Example:
        >>> import torch
        >>> from infovae import finite as F
        >>> g = torch.Generator().manual_seed(0)
        >>> model = F.random_model(num_x=3, num_z=4, batch_shape=(5,), generator=g)  # 5 random models
        >>> info = F.information_q(model)
        >>> bool(((info >= 0) & (info <= F.entropy(model.p_data))).all())
        True
    """
    return mutual_information(joint_q(model))


# ----------------------------------------------------------------------------- the ELBO


def reconstruction(model: FiniteModel) -> torch.Tensor:
    """E_{p_D(x)} E_{q(z|x)} [log p(x|z)], the data-fit term of Eqs. ``ch1-elbo`` and ``ch4-eq6``.

    Example:
        >>> import torch
        >>> from infovae import finite as F
        >>> g = torch.Generator().manual_seed(0)
        >>> model = F.random_model(num_x=3, num_z=4, batch_shape=(5,), generator=g)  # 5 random models
        >>> F.reconstruction(model).shape, bool((F.reconstruction(model) <= 0).all())
        (torch.Size([5]), True)
    """
    return _xlogy(joint_q(model), model.decoder.transpose(-1, -2)).sum((-1, -2))


def rate(model: FiniteModel) -> torch.Tensor:
    """E_{p_D(x)} KL(q(z|x) || p(z)), the regulariser of Eq. ``ch1-elbo``.

    By book Eq. ``ch4-mi-identity`` it is I_q(x; z) + KL(q(z) || p(z)).

    Example:
        >>> import torch
        >>> from infovae import finite as F
        >>> g = torch.Generator().manual_seed(0)
        >>> model = F.random_model(num_x=3, num_z=4, batch_shape=(5,), generator=g)  # 5 random models
        >>> torch.allclose(F.rate(model), F.information_q(model) + F.kl(F.marginal_q(model), model.prior))
        True
    """
    return (model.p_data * kl(model.encoder, model.prior.unsqueeze(-2))).sum(-1)


def elbo(model: FiniteModel) -> torch.Tensor:
    """The ELBO averaged over p_D (book Eq. ``ch1-elbo``): reconstruction minus rate.

    It is a lower bound of E_{p_D} log p(x) and equals each of Eqs. (2), (3), (4) minus the
    constant entropy H(p_D).

    Example:
        >>> import torch
        >>> from infovae import finite as F
        >>> g = torch.Generator().manual_seed(0)
        >>> model = F.random_model(num_x=3, num_z=4, batch_shape=(5,), generator=g)  # 5 random models
        >>> log_likelihood = (model.p_data * F.marginal_p(model).log()).sum(-1)
        >>> torch.allclose(F.elbo(model), F.reconstruction(model) - F.rate(model)), bool((F.elbo(model) <= log_likelihood).all())
        (True, True)
    """
    check_model(model)
    return reconstruction(model) - rate(model)


def elbo_eq2(model: FiniteModel) -> torch.Tensor:
    """Eq. (2) of the paper (book ``ch1-eq2``): -KL(q(x, z) || p(x, z)) = ELBO + H(p_D).

    Example:
        >>> import torch
        >>> from infovae import finite as F
        >>> g = torch.Generator().manual_seed(0)
        >>> model = F.random_model(num_x=3, num_z=4, batch_shape=(5,), generator=g)  # 5 random models
        >>> torch.allclose(F.elbo_eq2(model), F.elbo(model) + F.entropy(model.p_data))
        True
    """
    check_model(model)
    return -kl(joint_q(model), joint_p(model), event_dims=2)


def elbo_eq3(model: FiniteModel) -> torch.Tensor:
    """Eq. (3) (book ``ch1-eq3``): -KL(p_D || p(x)) - E_{p_D} KL(q(z|x) || p(z|x)) = ELBO + H(p_D).

    Example:
        >>> import torch
        >>> from infovae import finite as F
        >>> g = torch.Generator().manual_seed(0)
        >>> model = F.random_model(num_x=3, num_z=4, batch_shape=(5,), generator=g)  # 5 random models
        >>> torch.allclose(F.elbo_eq3(model), F.elbo(model) + F.entropy(model.p_data))
        True
    """
    check_model(model)
    gap = (model.p_data * kl(model.encoder, posterior_p(model))).sum(-1)
    return -kl(model.p_data, marginal_p(model)) - gap


def elbo_eq4(model: FiniteModel) -> torch.Tensor:
    """Eq. (4) (book ``ch1-eq4``): -KL(q(z) || p(z)) - E_{q(z)} KL(q(x|z) || p(x|z)) = ELBO + H(p_D).

    Example:
        >>> import torch
        >>> from infovae import finite as F
        >>> g = torch.Generator().manual_seed(0)
        >>> model = F.random_model(num_x=3, num_z=4, batch_shape=(5,), generator=g)  # 5 random models
        >>> torch.allclose(F.elbo_eq4(model), F.elbo(model) + F.entropy(model.p_data))
        True
    """
    check_model(model)
    qz = marginal_q(model)
    return -kl(qz, model.prior) - (qz * kl(posterior_q(model), model.decoder)).sum(-1)


# ----------------------------------------------------------------------------- InfoVAE


def _check_weights(alpha: float, lam: float) -> None:
    for name, v in (("alpha", alpha), ("lam", lam)):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v != v or abs(v) == float("inf"):
            raise ValueError(f"{name} must be a finite number, got {v!r}")


def infovae_eq5(model: FiniteModel, alpha: float, lam: float) -> torch.Tensor:
    """Eq. (5) of the paper (book ``ch4-eq5``), the InfoVAE objective as defined.

    -lam KL(q(z) || p(z)) - E_{q(z)} KL(q(x|z) || p(x|z)) + alpha I_q(x; z). It equals
    :func:`infovae_eq6` (with the KL divergence) plus the constant H(p_D).

    Example:
        >>> import torch
        >>> from infovae import finite as F
        >>> g = torch.Generator().manual_seed(0)
        >>> model = F.random_model(num_x=3, num_z=4, batch_shape=(5,), generator=g)  # 5 random models
        >>> torch.allclose(F.infovae_eq5(model, 0.5, 10.0), F.infovae_eq6(model, 0.5, 10.0) + F.entropy(model.p_data))
        True
    """
    check_model(model)
    _check_weights(alpha, lam)
    qz = marginal_q(model)
    return (
        -lam * kl(qz, model.prior)
        - (qz * kl(posterior_q(model), model.decoder)).sum(-1)
        + alpha * information_q(model)
    )


def infovae_eq6(model: FiniteModel, alpha: float, lam: float, divergence: Divergence = kl) -> torch.Tensor:
    """Eq. (6) of the paper (book ``ch4-eq6``), the tractable InfoVAE objective (to maximise).

    E_{p_D} E_q [log p(x|z)] - (1 - alpha) E_{p_D} KL(q(z|x) || p(z))
    - (alpha + lam - 1) D(q(z) || p(z)), with ``divergence(q_z, p_z) -> D`` (KL by default;
    :func:`js_divergence` or an MMD for the special cases and Proposition 2).

    Example:
        >>> import torch
        >>> from infovae import finite as F
        >>> g = torch.Generator().manual_seed(0)
        >>> model = F.random_model(num_x=3, num_z=4, batch_shape=(5,), generator=g)  # 5 random models
        >>> torch.allclose(F.infovae_eq6(model, alpha=0.0, lam=1.0), F.elbo(model))  # alpha = 0, lambda = 1: the ELBO
        True
        >>> F.infovae_eq6(model, 1.0, 1000.0, divergence=F.js_divergence).shape
        torch.Size([5])
    """
    check_model(model)
    _check_weights(alpha, lam)
    return (
        reconstruction(model)
        - (1 - alpha) * rate(model)
        - (alpha + lam - 1) * divergence(marginal_q(model), model.prior)
    )


def beta_vae(model: FiniteModel, beta: float) -> torch.Tensor:
    """The beta-VAE objective (Higgins et al. 2017): reconstruction - beta E_{p_D} KL(q(z|x) || p(z)).

    Computed directly (not through Eq. 6): it equals :func:`infovae_eq6` (book Eq.
    ``ch4-eq6``) with ``lam = beta`` and ``alpha = 1 - beta``.

    Example:
        >>> import torch
        >>> from infovae import finite as F
        >>> g = torch.Generator().manual_seed(0)
        >>> model = F.random_model(num_x=3, num_z=4, batch_shape=(5,), generator=g)  # 5 random models
        >>> torch.allclose(F.beta_vae(model, 4.0), F.infovae_eq6(model, alpha=-3.0, lam=4.0))
        True
    """
    check_model(model)
    return reconstruction(model) - beta * rate(model)


def gan_value(q: torch.Tensor, p: torch.Tensor, discriminator: torch.Tensor) -> torch.Tensor:
    """The GAN value E_p[log D(z)] + E_q[log(1 - D(z))] of a discriminator table ``D [..., Z]``.

    D(z) is the probability that z came from p (the prior) rather than q (the codes). At the
    optimal discriminator it is 2 JS(q, p) - log 4 (book Eq. ``ch5-js``).

    Example:
        >>> import math, torch
        >>> from infovae.finite import gan_value, js_divergence, optimal_discriminator
        >>> q, p = torch.tensor([0.8, 0.2], dtype=torch.float64), torch.tensor([0.5, 0.5], dtype=torch.float64)
        >>> best = gan_value(q, p, optimal_discriminator(q, p))
        >>> torch.allclose(best, 2 * js_divergence(q, p) - math.log(4))
        True
        >>> bool(gan_value(q, p, torch.tensor([0.5, 0.5], dtype=torch.float64)) < best)
        True
    """
    return (p * torch.log(discriminator)).sum(-1) + (q * torch.log1p(-discriminator)).sum(-1)


def optimal_discriminator(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """The maximiser p / (p + q) of :func:`gan_value` (Goodfellow et al. 2014).

    The optimum sigma(f*(z)) = p(z) / (p(z) + q(z)) of book Eq. ``ch5-js``.

    Example:
        >>> import torch
        >>> from infovae.finite import optimal_discriminator
        >>> optimal_discriminator(torch.tensor([0.75, 0.25]), torch.tensor([0.25, 0.75]))
        tensor([0.2500, 0.7500])
    """
    return p / (p + q)


def adversarial_autoencoder(model: FiniteModel) -> torch.Tensor:
    """The adversarial autoencoder objective with an optimal discriminator (to maximise).

    Reconstruction - (max_D V(D) + log 4) / 2, where V is :func:`gan_value` between the codes
    q(z) and the prior: the adversary's best value is 2 JS(q(z), p(z)) - log 4 (book Eq.
    ``ch5-js``). It is book Eq. ``ch4-eq6`` with alpha = lambda = 1 and D = JS.

    Example:
        >>> import torch
        >>> from infovae import finite as F
        >>> g = torch.Generator().manual_seed(0)
        >>> model = F.random_model(num_x=3, num_z=4, batch_shape=(5,), generator=g)  # 5 random models
        >>> torch.allclose(F.adversarial_autoencoder(model), F.infovae_eq6(model, 1.0, 1.0, F.js_divergence))
        True
    """
    check_model(model)
    qz = marginal_q(model)
    value = gan_value(qz, model.prior, optimal_discriminator(qz, model.prior))
    return reconstruction(model) - (value + torch.log(torch.tensor(4.0, dtype=value.dtype))) / 2


# ----------------------------------------------------------------------------- optimisation


def maximize(
    objective: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    params: dict[str, torch.Tensor],
    *,
    equality: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None = None,
    rounds: int = 10,
    max_iter: int = 100,
    penalty: float = 100.0,
    tolerance: float = 1e-12,
    record: Callable[[dict[str, torch.Tensor]], float] | None = None,
) -> tuple[dict[str, torch.Tensor], list[float]]:
    """Maximise ``objective(params)`` over unconstrained float64 tensors with L-BFGS.

    Runs ``rounds`` L-BFGS calls of up to ``max_iter`` iterations each and records
    ``record(params)`` before the first and after every call. With ``equality`` (a scalar
    function g), it solves max f subject to g = 0 by the augmented Lagrangian method: each
    round maximises f - m g - penalty g^2 / 2, then updates the multiplier m += penalty g.

    Args:
        objective: maps the parameter dict to a scalar tensor (to maximise).
        params: initial unconstrained tensors (e.g. logits of tables); not modified.
        equality: optional constraint function, zero at feasible points.
        rounds, max_iter: number of L-BFGS calls and iterations per call.
        penalty: augmented Lagrangian penalty weight.
        tolerance: L-BFGS tolerance on gradient and change.
        record: function of the parameters recorded in the history (default: the objective).

    Returns:
        The optimised parameters (detached copies) and the recorded history.

    Raises:
        FloatingPointError: the objective or the parameters became non-finite.

    Example:
        >>> import torch
        >>> from infovae.finite import maximize
        >>> objective = lambda p: -(p["x"] - 3.0).square().sum()
        >>> best, history = maximize(objective, {"x": torch.zeros(1)}, rounds=2)
        >>> round(best["x"].item(), 6), history[0], abs(history[-1]) < 1e-9
        (3.0, -9.0, True)
        >>> fixed, _ = maximize(objective, {"x": torch.zeros(1)}, equality=lambda p: p["x"].sum() - 1.0)
        >>> round(fixed["x"].item(), 4)  # the best x with x = 1
        1.0
    """
    if rounds < 1 or max_iter < 1:
        raise ValueError(f"rounds and max_iter must be positive, got {rounds}, {max_iter}")
    x = {k: v.detach().clone().to(torch.float64).requires_grad_(True) for k, v in params.items()}
    record = record or (lambda p: float(objective(p)))
    with torch.no_grad():
        history: list[float] = [float(record(x))]
    multiplier = 0.0
    for _ in range(rounds):
        opt = torch.optim.LBFGS(
            list(x.values()),
            max_iter=max_iter,
            tolerance_grad=tolerance,
            tolerance_change=tolerance,
            history_size=50,
            line_search_fn="strong_wolfe",
        )

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = -objective(x)
            if equality is not None:
                g = equality(x)
                loss = loss + multiplier * g + penalty / 2 * g * g
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            if not all(torch.isfinite(v).all() for v in x.values()) or not torch.isfinite(objective(x)):
                raise FloatingPointError("the optimisation diverged (non-finite parameters or objective)")
            history.append(float(record(x)))
            if equality is not None:
                multiplier += penalty * float(equality(x))
    return {k: v.detach() for k, v in x.items()}, history

"""Closed forms for Gaussian latent variable models (chapters 1 and 2 of the book).

The linear-Gaussian model (book Eq. ``ch1-linear-gaussian``)

    z ~ N(0, I_k),    x | z ~ N(W z + b, sigma^2 I_d),

is a latent variable model whose marginal likelihood and true posterior are Gaussian and
known exactly, so the ELBO and its variational gap can be checked without sampling:

* :func:`marginal`, :func:`log_marginal`: p(x) = N(b, W W^T + sigma^2 I);
* :func:`posterior`: p(z|x) = N(M^{-1} W^T (x - b) / sigma^2, M^{-1}), M = I + W^T W / sigma^2;
* :func:`elbo`: the ELBO of any Gaussian q(z|x) = N(m, S) in closed form;
* :func:`elbo_forms`: with Gaussian data p_D = N(m_D, S_D) and a linear Gaussian encoder
  q(z|x) = N(A x + c, S), every joint, marginal and conditional is Gaussian, so the ELBO
  and the three forms of Eqs. (2), (3), (4) of the paper all have closed forms.

Proposition 1 (book chapter 2, Eqs. ``ch2-opt-decoder`` to ``ch2-log-marginal``): data
{-1, +1}, encoder q(z|x = +-1) = N(+-mu, s^2), and the optimal Gaussian decoder for that
encoder. :func:`two_point_optimal_decoder`, :func:`two_point_elbo`,
:func:`two_point_log_marginal` and :func:`two_point_gap` evaluate it with closed forms and
one-dimensional quadrature.

Everything works in float64 and on any batch of inputs ``x [B, d]``; ``W`` is ``[d, k]``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import integrate, special
from torch.distributions import MultivariateNormal

# ----------------------------------------------------------------------------- Gaussians


def kl_mvn(mean1: torch.Tensor, cov1: torch.Tensor, mean2: torch.Tensor, cov2: torch.Tensor) -> torch.Tensor:
    """KL(N(mean1, cov1) || N(mean2, cov2)) in closed form (full covariances, batched).

    0.5 [tr(cov2^-1 cov1) + (mean2 - mean1)^T cov2^-1 (mean2 - mean1) - n + log det cov2 - log det cov1].

    Example:
        >>> import torch
        >>> from infovae.linear_gaussian import kl_mvn
        >>> n, eps, eye = 4, 0.5, torch.eye(4, dtype=torch.float64)
        >>> kl_mvn(torch.zeros(n, dtype=torch.float64), eye, torch.full((n,), eps, dtype=torch.float64), eye)
        tensor(0.5000, dtype=torch.float64)

        This is n eps^2 / 2, book Eq. ``ch2-kl-shift``.
    """
    n = mean1.shape[-1]
    l2 = torch.linalg.cholesky(cov2)
    l1 = torch.linalg.cholesky(cov1)
    diff = (mean2 - mean1).unsqueeze(-1)
    m = torch.linalg.solve_triangular(l2, torch.cat([l1, diff.expand(*l1.shape[:-1], 1)], -1), upper=False)
    trace = m[..., :-1].square().sum((-1, -2))
    maha = m[..., -1].square().sum(-1)
    logdet = 2 * (torch.log(torch.diagonal(l2, dim1=-2, dim2=-1)).sum(-1) - torch.log(torch.diagonal(l1, dim1=-2, dim2=-1)).sum(-1))
    return 0.5 * (trace + maha - n + logdet)


def gaussian_entropy(cov: torch.Tensor) -> torch.Tensor:
    """Differential entropy of N(., cov): 0.5 log det(2 pi e cov) (nats).

    Example:
        >>> import torch
        >>> from infovae.linear_gaussian import gaussian_entropy
        >>> gaussian_entropy(torch.eye(1, dtype=torch.float64))  # 0.5 log(2 pi e)
        tensor(1.4189, dtype=torch.float64)
    """
    n = cov.shape[-1]
    return 0.5 * (n * math.log(2 * math.pi * math.e) + torch.logdet(cov))


def conditional(mean: torch.Tensor, cov: torch.Tensor, n_first: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Conditional of a joint Gaussian over (u, v), u the first ``n_first`` coordinates.

    Returns ``(F, f, C)`` with v | u ~ N(F u + f, C) (the Schur complement).

    Example:
        >>> import torch
        >>> from infovae.linear_gaussian import conditional
        >>> conditional(torch.zeros(2), torch.tensor([[1.0, 0.5], [0.5, 1.0]]), 1)  # v | u ~ N(u / 2, 3 / 4)
        (tensor([[0.5000]]), tensor([0.]), tensor([[0.7500]]))
    """
    mu_u, mu_v = mean[..., :n_first], mean[..., n_first:]
    s_uu = cov[..., :n_first, :n_first]
    s_vu = cov[..., n_first:, :n_first]
    s_vv = cov[..., n_first:, n_first:]
    gain = torch.linalg.solve(s_uu, s_vu.transpose(-1, -2)).transpose(-1, -2)
    return gain, mu_v - (gain @ mu_u.unsqueeze(-1)).squeeze(-1), s_vv - gain @ s_vu.transpose(-1, -2)


def expected_conditional_kl(
    u_mean: torch.Tensor,
    u_cov: torch.Tensor,
    first: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    second: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
) -> torch.Tensor:
    """E_{u ~ N(u_mean, u_cov)} KL(N(F1 u + f1, C1) || N(F2 u + f2, C2)) in closed form.

    The KL at the mean input plus 0.5 tr(C2^-1 (F1 - F2) u_cov (F1 - F2)^T), because the KL
    is quadratic in the difference of the means. It is the second term of the chain rule of
    the KL divergence, book Eq. ``ch1-chain-rule``.

    Example:
        >>> import torch
        >>> from infovae.linear_gaussian import expected_conditional_kl
        >>> one, zero = torch.ones(1, 1, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64)
        >>> offset = torch.zeros(1, dtype=torch.float64)
        >>> # E_{u ~ N(0, 1)} KL(N(u, 1) || N(0, 1)) = E u^2 / 2
        >>> expected_conditional_kl(offset, one, (one, offset, one), (zero, offset, one))
        tensor(0.5000, dtype=torch.float64)
    """
    (f1_lin, f1_off, c1), (f2_lin, f2_off, c2) = first, second
    m1 = (f1_lin @ u_mean.unsqueeze(-1)).squeeze(-1) + f1_off
    m2 = (f2_lin @ u_mean.unsqueeze(-1)).squeeze(-1) + f2_off
    d = f1_lin - f2_lin
    spread = torch.linalg.solve(c2, d @ u_cov @ d.transpose(-1, -2))
    return kl_mvn(m1, c1, m2, c2) + 0.5 * torch.diagonal(spread, dim1=-2, dim2=-1).sum(-1)


# ----------------------------------------------------------------------------- the linear-Gaussian model


def _check(W: torch.Tensor, b: torch.Tensor, sigma: float) -> tuple[int, int]:
    if W.dim() != 2:
        raise ValueError(f"W must have shape [d, k], got {tuple(W.shape)}")
    d, k = W.shape
    if b.shape != (d,):
        raise ValueError(f"b must have shape [{d}], got {tuple(b.shape)}")
    if not float(sigma) > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    return d, k


def _check_x(x: torch.Tensor, d: int) -> None:
    if x.dim() != 2 or x.shape[1] != d:
        raise ValueError(f"x must have shape [B, {d}], got {tuple(x.shape)}")


def marginal(W: torch.Tensor, b: torch.Tensor, sigma: float) -> MultivariateNormal:
    """p(x) = N(b, W W^T + sigma^2 I) of the linear-Gaussian model (book ``ch1-lg-marginal``).

    Example:
        >>> import torch
        >>> from infovae.linear_gaussian import marginal
        >>> W, b = torch.tensor([[1.0], [2.0]], dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
        >>> marginal(W, b, sigma=0.5).covariance_matrix
        tensor([[1.2500, 2.0000],
                [2.0000, 4.2500]], dtype=torch.float64)
    """
    d, _ = _check(W, b, sigma)
    return MultivariateNormal(b, W @ W.T + sigma**2 * torch.eye(d, dtype=W.dtype))


def log_marginal(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor, sigma: float) -> torch.Tensor:
    """log p(x) for a batch ``x [B, d]`` (Eq. 1 of the paper in closed form), ``[B]``.

    The log-likelihood of book Eq. ``ch1-marginal`` for the model of book Eq.
    ``ch1-linear-gaussian``, from the marginal of book Eq. ``ch1-lg-marginal``.

    Example:
        >>> import torch
        >>> from infovae.linear_gaussian import log_marginal
        >>> W, b = torch.zeros(1, 1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
        >>> log_marginal(torch.zeros(2, 1, dtype=torch.float64), W, b, sigma=1.0)  # log N(0; 0, 1)
        tensor([-0.9189, -0.9189], dtype=torch.float64)
    """
    _check_x(x, W.shape[0])
    return marginal(W, b, sigma).log_prob(x)


def posterior(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor, sigma: float) -> MultivariateNormal:
    """The true posterior p(z|x) = N(M^-1 W^T (x - b) / sigma^2, M^-1), M = I + W^T W / sigma^2.

    Returns a MultivariateNormal with batch shape ``[B]`` (book ``ch1-lg-posterior``).

    Example:
        >>> import torch
        >>> from infovae.linear_gaussian import posterior
        >>> W, b = torch.ones(1, 1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
        >>> p = posterior(torch.tensor([[2.0]], dtype=torch.float64), W, b, sigma=1.0)  # M = 2
        >>> p.mean, p.covariance_matrix
        (tensor([[1.]], dtype=torch.float64), tensor([[[0.5000]]], dtype=torch.float64))
    """
    d, k = _check(W, b, sigma)
    _check_x(x, d)
    precision = torch.eye(k, dtype=W.dtype) + W.T @ W / sigma**2
    cov = torch.linalg.inv(precision)
    mean = (x - b) @ W @ cov / sigma**2  # cov is symmetric
    return MultivariateNormal(mean, covariance_matrix=cov.expand(len(x), k, k))


def elbo(
    x: torch.Tensor, W: torch.Tensor, b: torch.Tensor, sigma: float, q_mean: torch.Tensor, q_cov: torch.Tensor
) -> torch.Tensor:
    """ELBO(x) = E_q log p(x|z) - KL(q(z|x) || p(z)) for q(z|x) = N(q_mean, q_cov), closed form.

    ``E_q log p(x|z) = -d/2 log(2 pi sigma^2) - (||x - W m - b||^2 + tr(W S W^T)) / (2 sigma^2)`` and
    ``KL(N(m, S) || N(0, I)) = (tr S + ||m||^2 - k - log det S) / 2`` (book ``ch1-lg-elbo``).

    Args:
        x: ``[B, d]``; q_mean: ``[B, k]``; q_cov: ``[B, k, k]`` or ``[k, k]``.

    Returns:
        ``[B]`` values in nats.

    Example:
        >>> import torch
        >>> from infovae.linear_gaussian import elbo, log_marginal, posterior
        >>> W = torch.tensor([[1.0], [0.5]], dtype=torch.float64)
        >>> b, x = torch.zeros(2, dtype=torch.float64), torch.tensor([[1.0, -1.0]], dtype=torch.float64)
        >>> best = posterior(x, W, b, 0.8)  # at the true posterior the gap (book Eq. ``ch1-gap``) is 0
        >>> torch.allclose(elbo(x, W, b, 0.8, best.mean, best.covariance_matrix), log_marginal(x, W, b, 0.8))
        True
        >>> bool(elbo(x, W, b, 0.8, torch.zeros(1, 1, dtype=torch.float64), torch.eye(1, dtype=torch.float64))
        ...      < log_marginal(x, W, b, 0.8))
        True
    """
    d, k = _check(W, b, sigma)
    _check_x(x, d)
    if q_mean.shape != (len(x), k):
        raise ValueError(f"q_mean must have shape [{len(x)}, {k}], got {tuple(q_mean.shape)}")
    q_cov = q_cov.expand(len(x), k, k)
    resid = x - q_mean @ W.T - b
    spread = torch.diagonal(W @ q_cov @ W.T, dim1=-2, dim2=-1).sum(-1)
    log_lik = -0.5 * d * math.log(2 * math.pi * sigma**2) - (resid.square().sum(-1) + spread) / (2 * sigma**2)
    kl_prior = 0.5 * (torch.diagonal(q_cov, dim1=-2, dim2=-1).sum(-1) + q_mean.square().sum(-1) - k - torch.logdet(q_cov))
    return log_lik - kl_prior


def elbo_forms(
    data_mean: torch.Tensor,
    data_cov: torch.Tensor,
    A: torch.Tensor,
    c: torch.Tensor,
    S: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor,
    sigma: float,
) -> dict[str, torch.Tensor]:
    """The ELBO and Eqs. (2), (3), (4) of the paper for Gaussian data and a linear Gaussian encoder.

    Data p_D = N(data_mean, data_cov); encoder q(z|x) = N(A x + c, S); model of
    :func:`marginal`. Then q(x, z), p(x, z) and all their marginals and conditionals are
    Gaussian and every term is a closed form (book Eqs. ``ch1-eq2`` to ``ch1-eq4``, chapter 1).

    Returns:
        dict with ``elbo`` (E_{p_D} ELBO(x), from the expected quadratic forms directly),
        ``eq2``, ``eq3``, ``eq4`` (each of which equals ``elbo + data_entropy``) and
        ``data_entropy`` = H(p_D).

    Example:
        >>> import torch
        >>> from infovae.linear_gaussian import elbo_forms
        >>> f64 = dict(dtype=torch.float64)
        >>> forms = elbo_forms(torch.zeros(2, **f64), torch.eye(2, **f64), A=torch.tensor([[0.3, -0.2]], **f64),
        ...                    c=torch.zeros(1, **f64), S=torch.tensor([[0.5]], **f64),
        ...                    W=torch.tensor([[1.0], [0.5]], **f64), b=torch.zeros(2, **f64), sigma=0.8)
        >>> all(torch.allclose(forms[k], forms["elbo"] + forms["data_entropy"]) for k in ("eq2", "eq3", "eq4"))
        True
    """
    d, k = _check(W, b, sigma)
    eye_d, eye_k = torch.eye(d, dtype=W.dtype), torch.eye(k, dtype=W.dtype)
    # The ELBO from its definition, averaging the closed form of :func:`elbo` over x ~ p_D.
    r_lin, r_off = eye_d - W @ A, -(W @ c) - b  # residual x - W(Ax + c) - b = r_lin x + r_off
    resid_sq = (r_lin @ data_mean + r_off).square().sum() + torch.trace(r_lin @ data_cov @ r_lin.T)
    log_lik = -0.5 * d * math.log(2 * math.pi * sigma**2) - (resid_sq + torch.trace(W @ S @ W.T)) / (2 * sigma**2)
    code_sq = (A @ data_mean + c).square().sum() + torch.trace(A @ data_cov @ A.T)
    elbo_value = log_lik - 0.5 * (torch.trace(S) + code_sq - k - torch.logdet(S))
    # The joints over (x, z): q(x, z) = p_D(x) q(z|x) and p(x, z) = p(z) p(x|z).
    q_mean = torch.cat([data_mean, A @ data_mean + c])
    q_cov = torch.cat([torch.cat([data_cov, data_cov @ A.T], 1), torch.cat([A @ data_cov, A @ data_cov @ A.T + S], 1)], 0)
    p_mean = torch.cat([b, torch.zeros(k, dtype=W.dtype)])
    p_cov = torch.cat([torch.cat([W @ W.T + sigma**2 * eye_d, W], 1), torch.cat([W.T, eye_k], 1)], 0)
    eq2 = -kl_mvn(q_mean, q_cov, p_mean, p_cov)
    # Eq. (3): -KL(p_D || p(x)) - E_{p_D} KL(q(z|x) || p(z|x)).
    true_post = conditional(p_mean, p_cov, d)
    eq3 = -kl_mvn(data_mean, data_cov, p_mean[:d], p_cov[:d, :d]) - expected_conditional_kl(
        data_mean, data_cov, (A, c, S), true_post
    )
    # Eq. (4): -KL(q(z) || p(z)) - E_{q(z)} KL(q(x|z) || p(x|z)); reorder the joints to (z, x).
    order = torch.cat([torch.arange(d, d + k), torch.arange(d)])
    qz_mean, qz_cov = q_mean[order], q_cov[order][:, order]
    pz_mean, pz_cov = p_mean[order], p_cov[order][:, order]
    eq4 = -kl_mvn(qz_mean[:k], qz_cov[:k, :k], pz_mean[:k], pz_cov[:k, :k]) - expected_conditional_kl(
        qz_mean[:k], qz_cov[:k, :k], conditional(qz_mean, qz_cov, k), conditional(pz_mean, pz_cov, k)
    )
    return {"elbo": elbo_value, "eq2": eq2, "eq3": eq3, "eq4": eq4, "data_entropy": gaussian_entropy(data_cov)}


# ----------------------------------------------------------------------------- Proposition 1


def _as_pair(mu: float, sigma: float) -> tuple[float, float]:
    mu, sigma = float(mu), float(sigma)
    if not (math.isfinite(mu) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"need a finite mu and a positive finite sigma, got mu={mu}, sigma={sigma}")
    return mu, sigma


def two_point_optimal_decoder(z: torch.Tensor, mu: float, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The best Gaussian decoder N(m(z), s(z)^2) for data {-1, +1} and q(z|x = +-1) = N(+-mu, sigma^2).

    For each z the maximiser of E_{q(x|z)} log N(x; m, s^2) is the moment match of the
    two-point q(x|z): m(z) = tanh(mu z / sigma^2) and s(z) = 1 / cosh(mu z / sigma^2)
    (book Eq. ``ch2-opt-decoder``).

    Returns:
        ``(mean, std)`` tensors shaped like ``z``.

    Example:
        >>> import torch
        >>> from infovae.linear_gaussian import two_point_optimal_decoder
        >>> two_point_optimal_decoder(torch.tensor([0.0, 10.0]), mu=1.0, sigma=0.5)  # a = 4
        (tensor([0., 1.]), tensor([1.0000e+00, 8.4967e-18]))
    """
    mu, sigma = _as_pair(mu, sigma)
    a = mu / sigma**2
    return torch.tanh(a * z), 1 / torch.cosh(a * z)


def _expected_log_cosh(m: float, s: float) -> float:
    """E log cosh(u) for u ~ N(m, s^2): E|u| - log 2 + E log(1 + exp(-2|u|))."""
    if s == 0:
        return abs(m) - math.log(2) + math.log1p(math.exp(-2 * abs(m)))
    folded_mean = s * math.sqrt(2 / math.pi) * math.exp(-(m**2) / (2 * s**2)) + m * special.erf(m / (s * math.sqrt(2)))
    # The remainder log(1 + exp(-2|u|)) is below 1e-26 for |u| > 30.
    lo, hi = max(-30.0, m - 40 * s), min(30.0, m + 40 * s)
    rest = 0.0
    if lo < hi:
        points = [p for p in (0.0, m) if lo < p < hi]
        rest, _ = integrate.quad(
            lambda u: math.log1p(math.exp(-2 * abs(u))) * math.exp(-((u - m) ** 2) / (2 * s**2)) / (s * math.sqrt(2 * math.pi)),
            lo, hi, points=points or None, limit=200, epsabs=1e-14, epsrel=1e-12,
        )
    return folded_mean - math.log(2) + rest


def two_point_elbo(mu: float, sigma: float) -> float:
    """ELBO(x) of Proposition 1 with the optimal decoder, equal for x = -1 and x = +1 (nats).

    -0.5 log(2 pi e) + E log cosh(u) - KL(N(mu, sigma^2) || N(0, 1)), where u = mu z / sigma^2
    ~ N(mu^2 / sigma^2, mu^2 / sigma^2) (book Eq. ``ch2-elbo``).

    Example:
        >>> import math
        >>> from infovae.linear_gaussian import two_point_elbo
        >>> mu, sigma = 1.0, 0.25  # above the lower bound of book Eq. ``ch2-elbo-bound``
        >>> bound = mu**2 / sigma**2 - mu**2 / 2 + math.log(sigma) - 0.5 * math.log(2 * math.pi * math.e) - math.log(2)
        >>> f"{two_point_elbo(mu, sigma):.4f}", bool(two_point_elbo(mu, sigma) >= bound)
        ('12.4705', True)
    """
    mu, sigma = _as_pair(mu, sigma)
    a = mu / sigma**2
    kl_prior = 0.5 * (mu**2 + sigma**2 - 1) - math.log(sigma)
    return -0.5 * math.log(2 * math.pi * math.e) + _expected_log_cosh(a * mu, abs(a) * sigma) - kl_prior


def two_point_log_marginal(mu: float, sigma: float) -> float:
    """log p(x = +-1) of the model p(z) = N(0, 1) with the optimal decoder (nats).

    With a = mu / sigma^2 and phi the standard normal density (book Eq. ``ch2-log-marginal``),
    log p(1) = a^2 / 2 - log 2 - log(2 pi) / 2 + log J(a), where
    J(a) = int phi(w) [exp(-exp(-2a(w + a)) / 2) + exp(-exp(2a(a - w)) / 2)] dw lies in (0, 2].

    Example:
        >>> from infovae.linear_gaussian import two_point_log_marginal
        >>> f"{two_point_log_marginal(1.0, 0.25):.4f}"  # a = 16: log p(x) grows like a^2 / 2
        '126.3879'
    """
    mu, sigma = _as_pair(mu, sigma)
    a = abs(mu) / sigma**2  # symmetric in the sign of mu

    def integrand(w: float) -> float:
        first = math.exp(-0.5 * math.exp(min(-2 * a * (w + a), 700.0)))
        second = math.exp(-0.5 * math.exp(min(2 * a * (a - w), 700.0)))
        return math.exp(-0.5 * w * w) / math.sqrt(2 * math.pi) * (first + second)

    points = [p for p in (-a, a) if -40 < p < 40]
    j, _ = integrate.quad(integrand, -40, 40, points=points or None, limit=200, epsabs=1e-15, epsrel=1e-12)
    return a * a / 2 - math.log(2) - 0.5 * math.log(2 * math.pi) + math.log(j)


def two_point_gap(mu: float, sigma: float) -> float:
    """The variational gap KL(q(z|x) || p(z|x)) = log p(x) - ELBO(x) of Proposition 1 (nats).

    Book Eq. ``ch1-gap`` for the model of chapter 2; it is bounded below by book Eq.
    ``ch2-gap-bound`` and grows without bound as sigma shrinks.

    Example:
        >>> from infovae.linear_gaussian import two_point_gap
        >>> [f"{two_point_gap(1.0, sigma):.1f}" for sigma in (0.5, 0.25, 0.125)]
        ['5.3', '113.9', '1986.6']
    """
    return two_point_log_marginal(mu, sigma) - two_point_elbo(mu, sigma)


def two_point_path(mus: np.ndarray, sigmas: np.ndarray) -> dict[str, np.ndarray]:
    """ELBO, log p(x) and the gap along a path of encoder parameters (arrays of equal length).

    Book Eqs. ``ch2-elbo``, ``ch2-log-marginal`` and ``ch1-gap`` at every point of the path.

    Example:
        >>> import numpy as np
        >>> from infovae.linear_gaussian import two_point_path
        >>> path = two_point_path(np.array([1.0, 1.0]), np.array([0.5, 0.25]))
        >>> sorted(path), path["gap"].shape
        (['elbo', 'gap', 'log_marginal', 'mu', 'sigma'], (2,))
        >>> bool(np.allclose(path["gap"], path["log_marginal"] - path["elbo"]))
        True
    """
    mus, sigmas = np.asarray(mus, dtype=np.float64), np.asarray(sigmas, dtype=np.float64)
    if mus.shape != sigmas.shape or mus.ndim != 1:
        raise ValueError(f"mus and sigmas must be 1-d arrays of equal length, got {mus.shape}, {sigmas.shape}")
    elbos = np.array([two_point_elbo(m, s) for m, s in zip(mus, sigmas)])
    logps = np.array([two_point_log_marginal(m, s) for m, s in zip(mus, sigmas)])
    return {"mu": mus, "sigma": sigmas, "elbo": elbos, "log_marginal": logps, "gap": logps - elbos}

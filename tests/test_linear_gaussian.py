"""Closed forms of infovae.linear_gaussian against independent computations.

References: torch.distributions (KL, log densities), Bayes' rule at arbitrary z, Monte
Carlo with fixed seeds (tolerance 5 standard errors: a false failure rate below 1e-6 per
check), the precision-matrix form of Gaussian conditionals, and scipy quadrature of the
raw densities of Proposition 1.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from infovae import linear_gaussian as L


def _spd(n, g, jitter=0.5):
    a = torch.randn(n, n, generator=g, dtype=torch.float64)
    return a @ a.T / n + jitter * torch.eye(n, dtype=torch.float64)


def _lg(seed, d=4, k=2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(d, k, generator=g, dtype=torch.float64), torch.randn(d, generator=g, dtype=torch.float64), 0.7, g


@pytest.mark.parametrize("n", [1, 3])
def test_kl_mvn_matches_torch(n):
    g = torch.Generator().manual_seed(n)
    m1, m2 = torch.randn(2, n, generator=g, dtype=torch.float64)
    c1, c2 = _spd(n, g), _spd(n, g)
    ref = kl_divergence(MultivariateNormal(m1, c1), MultivariateNormal(m2, c2))
    assert float(L.kl_mvn(m1, c1, m2, c2)) == pytest.approx(float(ref), abs=1e-12)


@pytest.mark.parametrize("n", [1, 10, 1000])
def test_modeling_bias_kl_is_n_eps_squared_over_two(n):
    eps = 0.3
    eye = torch.eye(n, dtype=torch.float64)
    value = L.kl_mvn(torch.zeros(n, dtype=torch.float64), eye, torch.full((n,), eps, dtype=torch.float64), eye)
    assert float(value) == pytest.approx(n * eps**2 / 2, rel=1e-12)


def test_log_marginal_and_posterior_satisfy_bayes_rule():
    W, b, sigma, g = _lg(0)
    x = torch.randn(5, 4, generator=g, dtype=torch.float64)
    post = L.posterior(x, W, b, sigma)
    prior = MultivariateNormal(torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64))
    for _ in range(3):  # log p(x) = log p(z) + log p(x|z) - log p(z|x) at ANY z
        z = 3 * torch.randn(5, 2, generator=g, dtype=torch.float64)
        lik = Normal(z @ W.T + b, sigma).log_prob(x).sum(-1)
        bayes = prior.log_prob(z) + lik - post.log_prob(z)
        torch.testing.assert_close(L.log_marginal(x, W, b, sigma), bayes, rtol=0, atol=1e-10)


def test_log_marginal_matches_monte_carlo():
    W, b, sigma, g = _lg(1, d=2, k=1)
    x = torch.tensor([[0.3, -0.5]], dtype=torch.float64)
    z = torch.randn(400_000, 1, generator=g, dtype=torch.float64)
    lik = Normal(z @ W.T + b, sigma).log_prob(x).sum(-1).exp()
    est, se = lik.mean(), lik.std() / math.sqrt(len(lik))
    assert abs(float(est) - math.exp(float(L.log_marginal(x, W, b, sigma)))) < 5 * float(se)


def test_conditional_matches_precision_form():
    g = torch.Generator().manual_seed(2)
    mean, cov = torch.randn(5, generator=g, dtype=torch.float64), _spd(5, g)
    gain, off, c = L.conditional(mean, cov, 2)
    prec = torch.linalg.inv(cov)
    torch.testing.assert_close(c, torch.linalg.inv(prec[2:, 2:]), rtol=0, atol=1e-12)
    u = torch.randn(2, generator=g, dtype=torch.float64)
    ref_mean = mean[2:] - torch.linalg.solve(prec[2:, 2:], prec[2:, :2] @ (u - mean[:2]))
    torch.testing.assert_close(gain @ u + off, ref_mean, rtol=0, atol=1e-12)


def test_elbo_closed_form():
    W, b, sigma, g = _lg(3)
    x = torch.randn(3, 4, generator=g, dtype=torch.float64)
    # At the true posterior the ELBO is log p(x); elsewhere it is lower by KL(q || p(z|x)).
    post = L.posterior(x, W, b, sigma)
    torch.testing.assert_close(L.elbo(x, W, b, sigma, post.mean, post.covariance_matrix), L.log_marginal(x, W, b, sigma), rtol=0, atol=1e-10)
    q_mean, q_cov = torch.randn(3, 2, generator=g, dtype=torch.float64), _spd(2, g)
    gap = L.log_marginal(x, W, b, sigma) - L.elbo(x, W, b, sigma, q_mean, q_cov)
    ref_gap = kl_divergence(MultivariateNormal(q_mean, q_cov), post)
    torch.testing.assert_close(gap, ref_gap, rtol=0, atol=1e-10)
    # Monte Carlo of E_q[log p(x|z) + log p(z) - log q(z)] for the first x.
    q = MultivariateNormal(q_mean[0], q_cov)
    z = q_mean[0] + torch.randn(200_000, 2, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(q_cov).T
    terms = Normal(z @ W.T + b, sigma).log_prob(x[0]).sum(-1) + Normal(0.0, 1.0).log_prob(z).sum(-1) - q.log_prob(z)
    se = float(terms.std()) / math.sqrt(len(terms))
    assert abs(float(terms.mean()) - float(L.elbo(x[:1], W, b, sigma, q_mean[:1], q_cov)[0])) < 5 * se


def test_elbo_forms_agree_and_match_monte_carlo():
    W, b, sigma, g = _lg(4, d=3, k=2)
    data_mean, data_cov = torch.randn(3, generator=g, dtype=torch.float64), _spd(3, g)
    A, c, S = torch.randn(2, 3, generator=g, dtype=torch.float64) / 2, torch.randn(2, generator=g, dtype=torch.float64), _spd(2, g)
    forms = L.elbo_forms(data_mean, data_cov, A, c, S, W, b, sigma)
    for key in ("eq2", "eq3", "eq4"):
        assert float(forms[key]) == pytest.approx(float(forms["elbo"] + forms["data_entropy"]), abs=1e-10)
    # E_{p_D} ELBO(x) by Monte Carlo over x with the per-x closed form.
    x = data_mean + torch.randn(200_000, 3, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(data_cov).T
    per_x = L.elbo(x, W, b, sigma, x @ A.T + c, S)
    se = float(per_x.std()) / math.sqrt(len(per_x))
    assert abs(float(per_x.mean()) - float(forms["elbo"])) < 5 * se
    assert float(forms["data_entropy"]) == pytest.approx(float(MultivariateNormal(data_mean, data_cov).entropy()), abs=1e-12)


# ----------------------------------------------------------------------------- Proposition 1


def _raw_log_lik(x, z, mu, s):
    mean, std = L.two_point_optimal_decoder(torch.tensor(z, dtype=torch.float64), mu, s)
    return float(Normal(mean, std).log_prob(torch.tensor(float(x), dtype=torch.float64)))


def _quad(f, lo=-15.0, hi=15.0):
    return integrate.quad(f, lo, hi, limit=400, epsabs=1e-13, epsrel=1e-11)[0]


@pytest.mark.parametrize("mu,s", [(0.4, 1.0), (1.0, 0.8), (1.5, 0.6)])
def test_two_point_closed_forms_match_raw_quadrature(mu, s):
    phi = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    q1 = lambda z: math.exp(-((z - mu) ** 2) / (2 * s * s)) / (s * math.sqrt(2 * math.pi))  # noqa: E731
    log_p = math.log(_quad(lambda z: phi(z) * math.exp(_raw_log_lik(1, z, mu, s))))
    assert L.two_point_log_marginal(mu, s) == pytest.approx(log_p, abs=1e-9)
    assert L.two_point_log_marginal(-mu, s) == pytest.approx(log_p, abs=1e-12)  # symmetric
    elbo = _quad(lambda z: q1(z) * (_raw_log_lik(1, z, mu, s) + math.log(phi(z)) - math.log(q1(z))), mu - 12 * s, mu + 12 * s)
    assert L.two_point_elbo(mu, s) == pytest.approx(elbo, abs=1e-9)
    # The gap is KL(q(z|x) || p(z|x)), p(z|x) = phi(z) p(x|z) / p(x), by quadrature.
    kl = _quad(lambda z: q1(z) * (math.log(q1(z)) - math.log(phi(z)) - _raw_log_lik(1, z, mu, s) + log_p), mu - 12 * s, mu + 12 * s)
    assert L.two_point_gap(mu, s) == pytest.approx(kl, abs=1e-8)
    assert kl > 0


def test_two_point_decoder_is_optimal():
    """Perturbing the decoder's mean or std lowers E_{q(x,z)} log p(x|z) (by quadrature)."""
    mu, s = 1.2, 0.7
    a = mu / s**2

    def expected_log_lik(dm, ds):
        def f(z):
            mean, std = L.two_point_optimal_decoder(torch.tensor(z, dtype=torch.float64), mu, s)
            mean, std = float(mean) + dm(z), float(std) * ds
            q_plus = 1 / (1 + math.exp(-2 * a * z))  # q(x = 1 | z)
            q_z = 0.5 * (math.exp(-((z - mu) ** 2) / (2 * s * s)) + math.exp(-((z + mu) ** 2) / (2 * s * s))) / (s * math.sqrt(2 * math.pi))
            ll = lambda x: -0.5 * math.log(2 * math.pi * std**2) - (x - mean) ** 2 / (2 * std**2)  # noqa: E731
            return q_z * (q_plus * ll(1.0) + (1 - q_plus) * ll(-1.0))

        return _quad(f, -mu - 12 * s, mu + 12 * s)

    best = expected_log_lik(lambda z: 0.0, 1.0)
    # The optimum equals -log(2 pi e)/2 + E log cosh(a z), the reconstruction of Eq. ch2-elbo.
    kl_prior = 0.5 * (mu**2 + s**2 - 1) - math.log(s)
    assert best - kl_prior == pytest.approx(L.two_point_elbo(mu, s), abs=1e-9)
    for dm, ds in [(lambda z: 0.05, 1.0), (lambda z: -0.05, 1.0), (lambda z: 0.0, 1.1), (lambda z: 0.0, 0.9), (lambda z: 0.03 * math.sin(3 * z), 1.0)]:
        assert expected_log_lik(dm, ds) < best


def test_two_point_path_is_unbounded():
    t = np.array([1.0, 2.0, 4.0, 8.0])
    path = L.two_point_path(t, 1 / t)
    assert np.all(np.diff(path["elbo"]) > 0) and np.all(np.diff(path["gap"]) > 0)
    # Leading orders: ELBO ~ mu^2 / sigma^2 = t^4, log p(x) ~ a^2 / 2 = t^6 / 2.
    np.testing.assert_allclose(path["elbo"][-1] / t[-1] ** 4, 1.0, rtol=0.01)
    np.testing.assert_allclose(path["log_marginal"][-1] / (t[-1] ** 6 / 2), 1.0, rtol=0.01)
    with pytest.raises(ValueError, match="positive"):
        L.two_point_elbo(1.0, 0.0)

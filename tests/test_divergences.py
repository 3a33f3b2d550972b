"""Tests of infovae.divergences against independent float64 computations (chapter 5)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

from infovae.divergences import (
    IMQ_SCALES,
    JSDiscriminator,
    WGANCritic,
    gaussian_kl,
    gradient_penalty,
    kernel_stein_discrepancy,
    mmd,
    stein_loss,
    svgd_direction,
)


def naive_kernel(a: np.ndarray, b: np.ndarray, kernel: str, h: float) -> float:
    r2 = float(((a - b) ** 2).sum())
    if kernel == "rbf":
        return math.exp(-r2 / (2 * h))
    return sum(2 * h * s / (2 * h * s + r2) for s in IMQ_SCALES) / len(IMQ_SCALES)


def naive_mmd(x: np.ndarray, y: np.ndarray, kernel: str, h: float, estimator: str) -> float:
    """Direct double loops over all pairs, straight from the definitions."""
    n, m = len(x), len(y)
    xx = [naive_kernel(x[i], x[j], kernel, h) for i in range(n) for j in range(n) if estimator == "biased" or i != j]
    yy = [naive_kernel(y[i], y[j], kernel, h) for i in range(m) for j in range(m) if estimator == "biased" or i != j]
    xy = [naive_kernel(x[i], y[j], kernel, h) for i in range(n) for j in range(m)]
    return float(np.mean(xx) + np.mean(yy) - 2 * np.mean(xy))


@pytest.mark.parametrize("kernel", ["rbf", "imq"])
@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
@pytest.mark.parametrize("n, m, dim, bandwidth", [(2, 3, 1, None), (7, 5, 3, 0.7), (20, 33, 10, None)])
def test_mmd_matches_naive_double_loop(kernel, estimator, n, m, dim, bandwidth):
    g = torch.Generator().manual_seed(n * 100 + m)
    x = torch.randn(n, dim, generator=g, dtype=torch.float64)
    y = 0.8 * torch.randn(m, dim, generator=g, dtype=torch.float64) + 0.3
    h = dim if bandwidth is None else bandwidth
    expected = naive_mmd(x.numpy(), y.numpy(), kernel, h, estimator)
    assert mmd(x, y, kernel, bandwidth, estimator).item() == pytest.approx(expected, rel=1e-10, abs=1e-13)
    # blocked evaluation (blocks of 3 rows/columns) gives the same number
    blocked = mmd(x, y, kernel, bandwidth, estimator, block_size=3)
    assert blocked.item() == pytest.approx(expected, rel=1e-10, abs=1e-13)


@pytest.mark.parametrize("kernel", ["rbf", "imq"])
def test_blocked_mmd_gradient_matches_unblocked(kernel):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(50, 4, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(40, 4, generator=g, dtype=torch.float64, requires_grad=True) + 0.5
    full = torch.autograd.grad(mmd(x, y, kernel, estimator="unbiased"), (x, y))
    blocked = torch.autograd.grad(mmd(x, y, kernel, estimator="unbiased", block_size=16), (x, y))
    for a, b in zip(full, blocked):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-14)
    assert full[0].abs().max() > 1e-4  # the gradient is not trivially zero


@pytest.mark.parametrize("kernel", ["rbf", "imq"])
def test_mmd_is_zero_for_identical_samples(kernel):
    x = torch.randn(40, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    assert abs(mmd(x, x.clone(), kernel).item()) < 1e-14
    assert abs(mmd(x, x.clone(), kernel, block_size=7).item()) < 1e-14
    # a permutation of the same points is the same empirical distribution
    assert abs(mmd(x, x.flip(0), kernel).item()) < 1e-14
    # ... and a different sample is not
    assert mmd(x, x + 0.1, kernel).item() > 1e-4


def population_mmd_two_gaussians(mu1, var1, mu2, var2, h):
    """MMD^2 of N(mu1, diag var1) and N(mu2, diag var2) under exp(-|a-b|^2/(2h)).

    For independent a ~ N(m_a, diag v_a), b ~ N(m_b, diag v_b), a - b ~ N(m_a - m_b,
    diag(v_a + v_b)) and E exp(-|a-b|^2/(2h)) factorises over coordinates into
    prod_d (h / (h + v_d))^(1/2) exp(-delta_d^2 / (2 (h + v_d))).
    """

    def expected_kernel(ma, va, mb, vb):
        v, d = va + vb, ma - mb
        return float(np.prod(np.sqrt(h / (h + v)) * np.exp(-(d**2) / (2 * (h + v)))))

    return (
        expected_kernel(mu1, var1, mu1, var1)
        + expected_kernel(mu2, var2, mu2, var2)
        - 2 * expected_kernel(mu1, var1, mu2, var2)
    )


def test_unbiased_mmd_mean_matches_population_value():
    """Mean of 2000 unbiased estimates (n = 30, m = 40) vs the closed form.

    Tolerance: 5 standard errors of the mean (estimated from the draws), plus 1e-12;
    a correct estimator fails this with probability < 1e-6. The biased estimator's mean
    is checked to be off by more than that, so the test distinguishes the two.
    """
    g = torch.Generator().manual_seed(3)
    dim, n, m, draws = 3, 30, 40, 2000
    mu1, var1 = np.zeros(dim), np.ones(dim)
    mu2, var2 = np.array([0.5, 0.0, -0.3]), np.array([0.6, 1.0, 1.5])
    truth = population_mmd_two_gaussians(mu1, var1, mu2, var2, h=dim)
    x = torch.randn(draws, n, dim, generator=g, dtype=torch.float64)
    y = torch.randn(draws, m, dim, generator=g, dtype=torch.float64) * torch.tensor(var2).sqrt() + torch.tensor(mu2)
    unbiased = np.array([mmd(x[i], y[i], estimator="unbiased").item() for i in range(draws)])
    biased = np.array([mmd(x[i], y[i], estimator="biased").item() for i in range(draws)])
    sem = unbiased.std(ddof=1) / math.sqrt(draws)
    assert abs(unbiased.mean() - truth) < 5 * sem + 1e-12
    assert biased.mean() - truth > 10 * sem
    assert (unbiased < 0).any()  # an unbiased estimator of a small value goes negative


def test_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(4)
    mean = torch.randn(9, 5, generator=g, dtype=torch.float64) * 2
    std = torch.rand(9, 5, generator=g, dtype=torch.float64) * 3 + 0.05
    expected = kl_divergence(
        Independent(Normal(mean, std), 1), Independent(Normal(torch.zeros_like(mean), torch.ones_like(std)), 1)
    )
    torch.testing.assert_close(gaussian_kl(mean, std), expected, rtol=1e-12, atol=1e-12)
    assert gaussian_kl(torch.zeros(3, 2), torch.ones(3, 2)).abs().max() == 0


def naive_svgd(z: np.ndarray, h: float) -> np.ndarray:
    """phi(z_i) = 1/n sum_j [k(z_j, z_i) (-z_j) + grad_{z_j} k(z_j, z_i)], loop by loop."""
    n, _ = z.shape
    phi = np.zeros_like(z)
    for i in range(n):
        for j in range(n):
            k = math.exp(-((z[j] - z[i]) ** 2).sum() / (2 * h))
            grad_k = -(z[j] - z[i]) / h * k  # d/dz_j of exp(-|z_j - z_i|^2 / (2h))
            phi[i] += k * (-z[j]) + grad_k
    return phi / n


@pytest.mark.parametrize("dim, bandwidth", [(1, None), (4, 0.5)])
def test_svgd_direction_matches_loop(dim, bandwidth):
    z = torch.randn(12, dim, dtype=torch.float64, generator=torch.Generator().manual_seed(5)) * 1.5 + 0.7
    h = dim if bandwidth is None else bandwidth
    expected = torch.from_numpy(naive_svgd(z.numpy(), h))
    torch.testing.assert_close(svgd_direction(z, bandwidth=bandwidth), expected, rtol=1e-10, atol=1e-12)
    # an explicit score equal to that of N(0, I) is the same thing
    torch.testing.assert_close(svgd_direction(z, score=-z, bandwidth=bandwidth), expected, rtol=1e-10, atol=1e-12)


def test_stein_loss_gradient_is_minus_svgd_direction():
    z = torch.randn(16, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(6)).add(1.0).requires_grad_(True)
    loss = stein_loss(z)
    (grad,) = torch.autograd.grad(loss, z)
    torch.testing.assert_close(grad, -svgd_direction(z) / len(z), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(loss.detach(), kernel_stein_discrepancy(z), rtol=1e-12, atol=1e-14)


def test_kernel_stein_discrepancy_matches_autograd_loop():
    """u(a, b) = s(a).s(b) k + s(a).grad_b k + s(b).grad_a k + tr(grad_a grad_b k), by autograd."""
    z = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(7)) + 0.4
    score = torch.tanh(z) - z  # some smooth score, not the default one
    h = 0.8

    def k(a, b):
        return torch.exp(-((a - b) ** 2).sum() / (2 * h))

    total = 0.0
    for i in range(len(z)):
        for j in range(len(z)):
            a, b = z[i].clone().requires_grad_(True), z[j].clone().requires_grad_(True)
            kab = k(a, b)
            grad_a, grad_b = torch.autograd.grad(kab, (a, b), create_graph=True)
            trace = sum(torch.autograd.grad(grad_a[d], b, retain_graph=True)[0][d] for d in range(2))
            u = score[i] @ score[j] * kab + score[i] @ grad_b + score[j] @ grad_a + trace
            total += u.item()
    expected = total / len(z) ** 2
    assert kernel_stein_discrepancy(z, score, h).item() == pytest.approx(expected, rel=1e-10)


def test_gradient_penalty_matches_autograd_on_simple_critics():
    g = torch.Generator().manual_seed(8)
    real = torch.randn(10, 3, generator=g, dtype=torch.float64)
    fake = torch.randn(10, 3, generator=g, dtype=torch.float64) + 2
    t = torch.rand(10, generator=g, dtype=torch.float64)
    w = torch.tensor([0.3, -2.0, 1.0], dtype=torch.float64, requires_grad=True)
    # linear critic f(z) = w.z: gradient w everywhere, penalty (|w| - 1)^2, d/dw by hand
    gp = gradient_penalty(lambda z: z @ w, real, fake, t)
    norm = w.detach().norm()
    assert gp.item() == pytest.approx((norm.item() - 1) ** 2, rel=1e-12)
    (dgp,) = torch.autograd.grad(gp, w)
    torch.testing.assert_close(dgp, 2 * (norm - 1) * w.detach() / norm, rtol=1e-12, atol=1e-14)
    # quadratic critic f(z) = |z|^2 / 2: gradient z_t itself
    z_t = t[:, None] * real + (1 - t[:, None]) * fake
    expected = ((z_t.norm(dim=1) - 1) ** 2).mean()
    gp = gradient_penalty(lambda z: 0.5 * (z**2).sum(1), real, fake, t)
    assert gp.item() == pytest.approx(expected.item(), rel=1e-12)


@pytest.mark.parametrize("cls", [JSDiscriminator, WGANCritic])
def test_adversarial_step_trains_only_its_network_and_forward_reaches_codes_only(cls):
    torch.manual_seed(9)
    net = cls(2, hidden=16, lr=1e-2)
    codes = (torch.randn(64, 2) + 3).requires_grad_(True)
    prior = torch.randn(64, 2)
    weights = [p for name, p in net.named_parameters() if name.endswith("weight")]
    before = [w.detach().clone() for w in weights]
    for _ in range(30):
        logs = net.step(codes, prior)
    assert set(logs) and all(math.isfinite(v) for v in logs.values())
    # (the WGAN loss does not depend on the output bias, so only weights are compared)
    assert all(not torch.equal(a, w) for a, w in zip(before, weights))
    assert codes.grad is None  # the step never touches the codes
    value = net(codes, prior)
    value.backward()
    assert value.item() > 0.1  # after training, a shift of 3 is clearly detected
    assert codes.grad is not None and codes.grad.abs().max() > 0
    assert all(p.grad is None for p in net.parameters())  # forward holds the network fixed
    # moving the codes against the gradient lowers the estimate (first-order check)
    with torch.no_grad():
        moved = codes - 0.05 * codes.grad / codes.grad.norm()
    assert net(moved, prior).item() < value.item()


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: mmd(torch.randn(4, 2), torch.randn(4, 3)), "same dim"),
        (lambda: mmd(torch.randn(4), torch.randn(4, 1)), r"shape \[n, dim\]"),
        (lambda: mmd(torch.randn(4, 2), torch.randn(4, 2), kernel="gauss"), "unknown kernel"),
        (lambda: mmd(torch.randn(4, 2), torch.randn(4, 2), estimator="v"), "unknown estimator"),
        (lambda: mmd(torch.randn(4, 2), torch.randn(4, 2), bandwidth=0.0), "bandwidth"),
        (lambda: mmd(torch.randn(1, 2), torch.randn(4, 2), estimator="unbiased"), "at least 2"),
        (lambda: gaussian_kl(torch.randn(3, 2), torch.zeros(3, 2)), "positive"),
        (lambda: gaussian_kl(torch.randn(3, 2), torch.ones(3, 3)), "same shape"),
        (lambda: svgd_direction(torch.randn(3, 2), score=torch.randn(3, 3)), "shape of z"),
    ],
)
def test_bad_input_is_a_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_samples_are_refused(bad):
    x, y = torch.randn(5, 3), torch.randn(6, 3)
    x[2, 1] = bad
    with pytest.raises(ValueError, match="x contains NaN or infinite"):
        mmd(x, y)
    with pytest.raises(ValueError, match="y contains NaN or infinite"):
        mmd(y, x)
    with pytest.raises(ValueError, match="mean contains NaN or infinite"):
        gaussian_kl(x, torch.ones(5, 3))
    with pytest.raises(ValueError, match="std contains NaN or infinite"):
        gaussian_kl(torch.zeros(5, 3), x.abs())

"""Exact finite-model computations (infovae.finite) against naive enumeration loops.

The references below are written independently of the module: plain Python loops over
numpy float64 arrays, one term of each sum at a time, straight from the definitions.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import optimize

from infovae import finite as F

TOL = 1e-12


def _model(seed: int, nx: int = 4, nz: int = 5, concentration: float = 1.0) -> F.FiniteModel:
    return F.random_model(nx, nz, concentration=concentration, generator=torch.Generator().manual_seed(seed))


def _np(model: F.FiniteModel):
    return [t.numpy() for t in model]


def _naive_kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(np.ravel(p), np.ravel(q)) if pi > 0)


def _naive_tables(model):
    """Joints, marginals and posteriors by loops."""
    pd, pz, dec, enc = _np(model)
    nx, nz = len(pd), len(pz)
    jp = np.zeros((nx, nz))
    jq = np.zeros((nx, nz))
    for x in range(nx):
        for z in range(nz):
            jp[x, z] = pz[z] * dec[z, x]
            jq[x, z] = pd[x] * enc[x, z]
    px = np.array([sum(jp[x, z] for z in range(nz)) for x in range(nx)])
    qz = np.array([sum(jq[x, z] for x in range(nx)) for z in range(nz)])
    post_p = np.array([[jp[x, z] / px[x] for z in range(nz)] for x in range(nx)])
    post_q = np.array([[jq[x, z] / qz[z] for x in range(nx)] for z in range(nz)])
    return jp, jq, px, qz, post_p, post_q


def _naive_elbo(model):
    pd, pz, dec, enc = _np(model)
    total = 0.0
    for x in range(len(pd)):
        rec = sum(enc[x, z] * math.log(dec[z, x]) for z in range(len(pz)))
        total += pd[x] * (rec - _naive_kl(enc[x], pz))
    return total


@pytest.mark.parametrize("seed", range(5))
def test_tables_match_loops(seed):
    m = _model(seed)
    jp, jq, px, qz, post_p, post_q = _naive_tables(m)
    np.testing.assert_allclose(F.joint_p(m).numpy(), jp, atol=TOL)
    np.testing.assert_allclose(F.joint_q(m).numpy(), jq, atol=TOL)
    np.testing.assert_allclose(F.marginal_p(m).numpy(), px, atol=TOL)
    np.testing.assert_allclose(F.marginal_q(m).numpy(), qz, atol=TOL)
    np.testing.assert_allclose(F.posterior_p(m).numpy(), post_p, atol=TOL)
    np.testing.assert_allclose(F.posterior_q(m).numpy(), post_q, atol=TOL)


@pytest.mark.parametrize("seed", range(5))
def test_elbo_and_three_forms_match_loops(seed):
    m = _model(seed, concentration=0.5)
    pd, pz, dec, enc = _np(m)
    jp, jq, px, qz, post_p, post_q = _naive_tables(m)
    h = -sum(p * math.log(p) for p in pd)
    eq2 = -_naive_kl(jq, jp)
    eq3 = -_naive_kl(pd, px) - sum(pd[x] * _naive_kl(enc[x], post_p[x]) for x in range(len(pd)))
    eq4 = -_naive_kl(qz, pz) - sum(qz[z] * _naive_kl(post_q[z], dec[z]) for z in range(len(pz)))
    elbo = _naive_elbo(m)
    assert float(F.elbo(m)) == pytest.approx(elbo, abs=TOL)
    assert float(F.elbo_eq2(m)) == pytest.approx(eq2, abs=TOL)
    assert float(F.elbo_eq3(m)) == pytest.approx(eq3, abs=TOL)
    assert float(F.elbo_eq4(m)) == pytest.approx(eq4, abs=TOL)
    # The identities themselves (Eqs. 2 = 3 = 4 = ELBO + H(p_D)), on the naive values.
    for form in (eq2, eq3, eq4):
        assert form == pytest.approx(elbo + h, abs=1e-10)
    # And the bound: ELBO <= E_{p_D} log p(x).
    assert elbo <= sum(pd[x] * math.log(px[x]) for x in range(len(pd)))


def test_batched_models_match_one_at_a_time():
    m = F.random_model(3, 6, batch_shape=(4, 2), generator=torch.Generator().manual_seed(7))
    for fn in (F.elbo, F.elbo_eq2, F.elbo_eq3, F.elbo_eq4, F.information_q):
        batched = fn(m)
        assert batched.shape == (4, 2)
        for i in range(4):
            for j in range(2):
                single = F.FiniteModel(*(t[i, j] for t in m))
                assert float(batched[i, j]) == pytest.approx(float(fn(single)), abs=TOL)


@pytest.mark.parametrize("seed", range(3))
def test_mutual_information(seed):
    m = _model(seed, nx=5, nz=3)
    _, jq, _, qz, _, _ = _naive_tables(m)
    pd = m.p_data.numpy()
    naive = sum(
        jq[x, z] * math.log(jq[x, z] / (pd[x] * qz[z])) for x in range(len(pd)) for z in range(len(qz))
    )
    assert float(F.information_q(m)) == pytest.approx(naive, abs=TOL)
    # I = H(z) - H(z|x), a second independent route.
    h_z = -sum(q * math.log(q) for q in qz)
    h_z_given_x = -sum(jq[x, z] * math.log(jq[x, z] / pd[x]) for x in range(len(pd)) for z in range(len(qz)))
    assert naive == pytest.approx(h_z - h_z_given_x, abs=1e-12)
    # Independent variables have no information.
    indep = torch.outer(m.p_data, m.prior)
    assert float(F.mutual_information(indep)) == pytest.approx(0.0, abs=1e-15)


def test_kl_and_entropy_edge_cases():
    p = torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64)
    q = torch.tensor([0.25, 0.25, 0.5], dtype=torch.float64)
    assert float(F.kl(p, q)) == pytest.approx(math.log(2), abs=1e-15)  # 0 log 0 = 0
    assert float(F.kl(q, p)) == math.inf
    assert float(F.entropy(p)) == pytest.approx(math.log(2), abs=1e-15)
    # Gradients stay finite at the boundary of the simplex.
    logits = torch.tensor([0.0, 0.0, -800.0], dtype=torch.float64, requires_grad=True)
    F.kl(torch.softmax(logits, 0), q).backward()
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("seed", range(4))
def test_infovae_eq5_equals_eq6_and_special_cases(seed):
    m = _model(seed, concentration=0.7)
    pd, pz, dec, enc = _np(m)
    _, jq, _, qz, _, post_q = _naive_tables(m)
    h = -sum(p * math.log(p) for p in pd)
    mi = sum(jq[x, z] * math.log(enc[x, z] / qz[z]) for x in range(len(pd)) for z in range(len(pz)))
    rec = sum(jq[x, z] * math.log(dec[z, x]) for x in range(len(pd)) for z in range(len(pz)))
    rate = sum(pd[x] * _naive_kl(enc[x], pz) for x in range(len(pd)))
    kl_z = _naive_kl(qz, pz)
    rng = np.random.default_rng(seed)
    for alpha, lam in [(0.0, 1.0), (1.0, 1.0), *rng.uniform(-1, 3, size=(3, 2)).tolist()]:
        eq5 = -lam * kl_z - sum(qz[z] * _naive_kl(post_q[z], dec[z]) for z in range(len(pz))) + alpha * mi
        eq6 = rec - (1 - alpha) * rate - (alpha + lam - 1) * kl_z
        assert float(F.infovae_eq5(m, alpha, lam)) == pytest.approx(eq5, abs=TOL)
        assert float(F.infovae_eq6(m, alpha, lam)) == pytest.approx(eq6, abs=TOL)
        assert eq5 == pytest.approx(eq6 + h, abs=1e-10)
    # ELBO: alpha = 0, lambda = 1.
    assert float(F.infovae_eq6(m, 0.0, 1.0)) == pytest.approx(_naive_elbo(m), abs=TOL)
    # beta-VAE: alpha + lambda - 1 = 0, beta = lambda.
    for beta in (0.3, 4.0):
        assert float(F.beta_vae(m, beta)) == pytest.approx(rec - beta * rate, abs=TOL)
        assert float(F.infovae_eq6(m, 1 - beta, beta)) == pytest.approx(rec - beta * rate, abs=TOL)
    # Adversarial autoencoder: alpha = lambda = 1 with Jensen-Shannon.
    mix = (qz + pz) / 2
    js = (_naive_kl(qz, mix) + _naive_kl(pz, mix)) / 2
    assert float(F.infovae_eq6(m, 1.0, 1.0, divergence=F.js_divergence)) == pytest.approx(rec - js, abs=TOL)
    assert float(F.adversarial_autoencoder(m)) == pytest.approx(rec - js, abs=TOL)


def test_optimal_discriminator_maximises_gan_value():
    m = _model(11, nz=6)
    qz, pz = F.marginal_q(m), m.prior

    def neg_value(d):
        return -float(F.gan_value(qz, pz, torch.tensor(d, dtype=torch.float64)))

    res = optimize.minimize(neg_value, np.full(6, 0.5), bounds=[(1e-9, 1 - 1e-9)] * 6, method="L-BFGS-B", tol=1e-14)
    closed = F.optimal_discriminator(qz, pz)
    np.testing.assert_allclose(res.x, closed.numpy(), atol=1e-5)
    best = float(F.gan_value(qz, pz, closed))
    assert -res.fun <= best + 1e-12
    assert best == pytest.approx(2 * float(F.js_divergence(qz, pz)) - math.log(4), abs=TOL)


def test_exact_mmd_matches_definition_and_is_strict():
    g = torch.Generator().manual_seed(3)
    points = torch.randn(5, 2, generator=g, dtype=torch.float64)
    kern = F.gaussian_kernel_matrix(points, bandwidth=1.5)
    p, q = F.random_simplex(5, generator=g), F.random_simplex(5, generator=g)
    e = points.numpy()

    def k(i, j):
        return math.exp(-np.sum((e[i] - e[j]) ** 2) / 3.0)

    pn, qn = p.numpy(), q.numpy()
    naive = sum((pn[i] * pn[j] - 2 * pn[i] * qn[j] + qn[i] * qn[j]) * k(i, j) for i in range(5) for j in range(5))
    assert float(F.mmd(p, q, kern)) == pytest.approx(naive, abs=TOL)
    assert float(F.mmd(p, p, kern)) == 0.0
    assert float(F.mmd(p, q, kern)) > 0
    assert torch.linalg.eigvalsh(kern).min() > 0  # positive definite: a strict divergence
    # Default bandwidth is the dimension.
    torch.testing.assert_close(F.gaussian_kernel_matrix(points), F.gaussian_kernel_matrix(points, 2.0))


def test_tilted_encoder():
    points = torch.linspace(-8, 8, 161, dtype=torch.float64)
    prior = torch.softmax(-points.square() / 2, 0)
    enc = F.tilted_encoder(prior, points, torch.tensor([0.0, 1.5, -0.7], dtype=torch.float64))
    torch.testing.assert_close(enc[0], prior, rtol=0, atol=1e-15)
    # On a fine wide grid the tilt of N(0, 1) by exp(t z) is N(t, 1): check mean and variance.
    mean = (enc * points).sum(-1)
    var = (enc * points.square()).sum(-1) - mean.square()
    np.testing.assert_allclose(mean.numpy(), [0.0, 1.5, -0.7], atol=1e-9)
    np.testing.assert_allclose(var.numpy(), [1.0, 1.0, 1.0], atol=1e-9)


def test_maximize_unconstrained_and_constrained():
    target = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    params, hist = F.maximize(lambda p: -F.kl(torch.softmax(p["l"], 0), target), {"l": torch.zeros(4)}, rounds=2)
    # A maximiser located from function values is accurate to about sqrt(machine eps).
    torch.testing.assert_close(torch.softmax(params["l"], 0), target, rtol=0, atol=1e-7)
    assert hist[-1] >= hist[0]
    # Maximum entropy over 3 states with p_0 fixed to 1/2: the rest is uniform.
    params, _ = F.maximize(
        lambda p: F.entropy(torch.softmax(p["l"], 0)),
        {"l": torch.tensor([0.3, -1.0, 2.0])},
        equality=lambda p: torch.softmax(p["l"], 0)[0] - 0.5,
    )
    torch.testing.assert_close(torch.softmax(params["l"], 0), torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64), rtol=0, atol=1e-7)


def test_bad_input_is_rejected():
    m = _model(0)
    with pytest.raises(ValueError, match="sum to 1"):
        F.elbo(m._replace(p_data=m.p_data * 2))
    with pytest.raises(ValueError, match="non-negative"):
        F.elbo(m._replace(prior=-m.prior))
    with pytest.raises(ValueError, match="decoder must have shape"):
        F.elbo(m._replace(decoder=m.encoder))
    with pytest.raises(ValueError, match="alpha"):
        F.infovae_eq6(m, float("nan"), 1.0)
    with pytest.raises(TypeError):
        F.check_model(m._replace(p_data=torch.tensor([1, 0])))
    with pytest.raises(ValueError, match="bandwidth"):
        F.gaussian_kernel_matrix(torch.zeros(3, 2), bandwidth=0.0)


def test_gaussian_encoder_has_free_means_and_widths():
    """Rows are distributions; on a fine grid a row's mean and s.d. are the parameters (to the
    grid's rounding); narrow separated components carry H(p_D) nats, wide ones nearly none."""
    points = torch.linspace(-14, 14, 561, dtype=torch.float64)  # spacing 0.05, tails beyond 5 s.d. of every row
    mean = torch.tensor([-2.0, 0.5, 3.0], dtype=torch.float64)
    std = torch.tensor([0.3, 1.0, 2.0], dtype=torch.float64)
    q = F.gaussian_encoder(points, mean, std.log())
    torch.testing.assert_close(q.sum(-1), torch.ones(3, dtype=torch.float64))
    m = (q * points).sum(-1)
    sd = ((q * (points - m[:, None]) ** 2).sum(-1)).sqrt()
    torch.testing.assert_close(m, mean, atol=1e-6, rtol=0)
    torch.testing.assert_close(sd, std, atol=1e-3, rtol=0)  # the midpoint sum of a Gaussian's variance
    p_data = torch.full((3,), 1 / 3, dtype=torch.float64)
    prior = torch.softmax(-points.square() / 2, 0)

    def information(log_std):
        enc = F.gaussian_encoder(points, mean, log_std)
        model = F.FiniteModel(p_data, prior, enc.transpose(-1, -2), enc)
        return float(F.information_q(model))

    assert information(torch.full((3,), math.log(0.05), dtype=torch.float64)) == pytest.approx(math.log(3), abs=1e-9)
    assert information(torch.full((3,), math.log(50.0), dtype=torch.float64)) < 0.01
    with pytest.raises(ValueError, match="one shape"):
        F.gaussian_encoder(points, mean, std[:2])

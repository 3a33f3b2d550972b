"""Tests of InfoVAELoss (Eq. 6) against independent float64 computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn
from torch.distributions import Bernoulli, Distribution, Independent, Normal, StudentT

import infovae as iv
from infovae.divergences import svgd_direction
from infovae.objective import InfoVAELoss

X_DIM, Z_DIM, BATCH = 6, 3, 8


class TinyEncoder(nn.Module):
    """x [B, 6] -> Independent(Normal(mean, std), 1) over z [B, 3] (or another family)."""

    def __init__(self, family: str = "normal"):
        super().__init__()
        self.net = nn.Linear(X_DIM, 2 * Z_DIM, dtype=torch.float64)
        self.family = family
        self.latent_dim = Z_DIM

    def params(self, x):
        mean, pre = self.net(x).chunk(2, dim=1)
        return mean, nn.functional.softplus(pre) + 0.1

    def forward(self, x):
        mean, std = self.params(x)
        if self.family == "student":
            return Independent(StudentT(4.0, mean, std), 1)
        if self.family == "point":
            return PointMass(mean)
        return Independent(Normal(mean, std), 1)


class TinyDecoder(nn.Module):
    """z [B, 3] -> Independent(Bernoulli(logits), 1) over x [B, 6]."""

    def __init__(self):
        super().__init__()
        self.net = nn.Linear(Z_DIM, X_DIM, dtype=torch.float64)

    def forward(self, z):
        return Independent(Bernoulli(logits=self.net(z)), 1)


class PointMass(Distribution):
    """A point mass at ``loc`` (event [dim]): the encoder of a plain autoencoder."""

    arg_constraints = {}
    has_rsample = True

    def __init__(self, loc):
        self.loc = loc
        super().__init__(loc.shape[:-1], loc.shape[-1:], validate_args=False)

    @property
    def variance(self):
        return torch.zeros_like(self.loc)

    def rsample(self, sample_shape=torch.Size()):
        return self.loc.expand(torch.Size(sample_shape) + self.loc.shape)


class FixedSamplesNormal(Independent):
    """N(loc, scale^2 I) whose ``sample`` returns given rows: makes the prior draws known."""

    def __init__(self, loc, scale, rows):
        super().__init__(Normal(loc, scale), 1)
        self.rows = rows

    def sample(self, sample_shape=torch.Size()):
        return self.rows[: sample_shape[0]]


def make_model(family="normal", prior=None, seed=0):
    torch.manual_seed(seed)
    return iv.VAE(TinyEncoder(family), TinyDecoder(), prior=prior)


def make_batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((BATCH, X_DIM), 0.4, dtype=torch.float64), generator=g)


def independent_parts(model, x, z):
    """-log p(x|z) and the closed-form Gaussian KL, written out by hand at the codes z."""
    logits = model.decoder.net(z)
    log_px = (x * nn.functional.logsigmoid(logits) + (1 - x) * nn.functional.logsigmoid(-logits)).sum(1)
    mean, std = model.encoder.params(x)
    kl = 0.5 * (std**2 + mean**2 - 1 - 2 * torch.log(std)).sum(1)
    return -log_px, kl


def same_codes(model, x, z_out):
    """z_out as a function of the encoder's parameters: mean + std * eps, eps held fixed."""
    mean, std = model.encoder.params(x)
    eps = ((z_out - mean) / std).detach()
    return mean + std * eps


def grads(loss, model):
    return torch.autograd.grad(loss, list(model.parameters()))


def test_alpha0_lambda1_is_the_negative_elbo():
    model, x = make_model(), make_batch()
    out = InfoVAELoss(alpha=0.0, lam=1.0, divergence="mmd")(model, x)
    z = same_codes(model, x, out.z)
    recon, kl = independent_parts(model, x, z)
    neg_elbo = (recon + kl).mean()
    assert out.loss.item() == pytest.approx(neg_elbo.item(), rel=1e-12)
    torch.testing.assert_close(out.reconstruction, recon, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out.kl, kl, rtol=1e-12, atol=1e-12)
    assert out.divergence is None and out.divergence_weight == 0 and out.kl_weight == 1
    for a, b in zip(grads(out.loss, model), grads(neg_elbo, model)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert out.z.shape == (BATCH, Z_DIM) and out.z.requires_grad


@pytest.mark.parametrize("alpha", [0.5, -1.0, -9.0])
def test_alpha_plus_lambda_one_is_beta_vae(alpha):
    beta = 1.0 - alpha
    model, x = make_model(), make_batch()
    for loss_fn in (InfoVAELoss(alpha=alpha, lam=1.0 - alpha, divergence="mmd"), InfoVAELoss.beta_vae(beta)):
        out = loss_fn(model, x)
        z = same_codes(model, x, out.z)
        recon, kl = independent_parts(model, x, z)
        expected = (recon + beta * kl).mean()
        assert out.loss.item() == pytest.approx(expected.item(), rel=1e-12)
        for a, b in zip(grads(out.loss, model), grads(expected, model)):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def naive_biased_mmd(x: np.ndarray, y: np.ndarray) -> float:
    h = x.shape[1]
    k = lambda a, b: math.exp(-((a - b) ** 2).sum() / (2 * h))  # noqa: E731
    kxx = np.mean([k(a, b) for a in x for b in x])
    kyy = np.mean([k(a, b) for a in y for b in y])
    kxy = np.mean([k(a, b) for a in x for b in y])
    return float(kxx + kyy - 2 * kxy)


@pytest.mark.parametrize("alpha, lam", [(0.0, 1000.0), (1.0, 1000.0), (0.3, 2.0)])
def test_mmd_objective_is_eq6(alpha, lam):
    rows = torch.randn(200, Z_DIM, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    prior = FixedSamplesNormal(torch.zeros(Z_DIM, dtype=torch.float64), torch.ones(Z_DIM, dtype=torch.float64), rows)
    model, x = make_model(prior=prior), make_batch()
    out = InfoVAELoss(alpha=alpha, lam=lam, divergence="mmd")(model, x)
    recon, kl = independent_parts(model, x, out.z)
    d = naive_biased_mmd(out.z.detach().numpy(), rows.numpy())
    expected = recon.mean() + (1 - alpha) * kl.mean() + (alpha + lam - 1) * d
    assert out.divergence.item() == pytest.approx(d, rel=1e-10)
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-10)
    assert (out.kl is None) == (alpha == 1.0)
    assert out.divergence_weight == pytest.approx(alpha + lam - 1)


def test_kl_falls_back_to_monte_carlo_for_non_gaussian_q():
    model, x = make_model("student"), make_batch()
    out = InfoVAELoss(alpha=0.0, lam=1.0)(model, x)
    mean, std = model.encoder.params(x)
    z = out.z.detach().numpy()
    log_q = stats.t.logpdf(z, df=4.0, loc=mean.detach().numpy(), scale=std.detach().numpy()).sum(1)
    log_p = stats.norm.logpdf(z).sum(1)
    np.testing.assert_allclose(out.kl.detach().numpy(), log_q - log_p, rtol=1e-10)


def test_autoencoder_with_point_mass_encoder_is_reconstruction_only():
    model, x = make_model("point"), make_batch()
    out = InfoVAELoss.autoencoder()(model, x)
    mean, _ = model.encoder.params(x)
    recon, _ = independent_parts(model, x, mean)
    torch.testing.assert_close(out.z, mean)
    assert out.kl is None and out.divergence is None
    assert out.loss.item() == pytest.approx(recon.mean().item(), rel=1e-12)
    # alpha = 1 with MMD is fine too; a KL term (alpha < 1) is refused
    assert InfoVAELoss.mmd_vae(alpha=1.0)(model, x).kl is None
    with pytest.raises(ValueError, match="point mass"):
        InfoVAELoss.mmd_vae(alpha=0.0)(model, x)


def test_stein_gradient_uses_the_model_prior_score():
    """With prior N(m, s^2 I), the codes' gradient is -(alpha+lam-1) phi / n with s(z) = -(z - m) / s^2."""
    m, s = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64), 1.5
    prior = Independent(Normal(m, torch.full((Z_DIM,), s, dtype=torch.float64)), 1)
    model, x = make_model(prior=prior), make_batch()
    loss_fn = InfoVAELoss(alpha=1.0, lam=10.0, divergence="stein")
    out = loss_fn(model, x)
    (g,) = torch.autograd.grad(out.divergence, out.z)
    phi = svgd_direction(out.z, score=-(out.z.detach() - m) / s**2)
    torch.testing.assert_close(g, -phi / BATCH, rtol=1e-10, atol=1e-14)
    # the standard normal prior gives a different direction (the prior matters)
    assert (svgd_direction(out.z) - phi).abs().max() > 1e-3


@pytest.mark.parametrize("divergence", ["js", "wgan-gp"])
def test_adversarial_critic_is_trained_only_by_auxiliary_step(divergence):
    model, x = make_model(), make_batch()
    loss_fn = InfoVAELoss.adversarial(lam=5.0, divergence=divergence, critic_hidden=8)
    assert loss_fn.has_auxiliary
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    out = loss_fn(model, x)  # builds the critic on the codes' device and dtype
    critic_params = list(loss_fn.critic.parameters())
    assert critic_params and critic_params[0].dtype == torch.float64
    assert not {id(p) for p in critic_params} & {id(p) for p in model.parameters()}
    before = [p.detach().clone() for p in critic_params]
    optimizer.zero_grad()
    out.loss.backward()
    optimizer.step()
    assert all(p.grad is None for p in critic_params)
    assert all(torch.equal(a, p) for a, p in zip(before, critic_params))
    assert any(p.grad is not None and p.grad.abs().max() > 0 for p in model.encoder.parameters())
    logs = loss_fn.auxiliary_step(out.z)
    assert logs and all(isinstance(v, float) and math.isfinite(v) for v in logs.values())
    assert any(not torch.equal(a, p) for a, p in zip(before, critic_params))


def test_non_adversarial_losses_have_no_auxiliary_step():
    for loss_fn in (InfoVAELoss.mmd_vae(), InfoVAELoss.stein_vae(), InfoVAELoss.elbo()):
        assert not loss_fn.has_auxiliary
        assert loss_fn.auxiliary_step(torch.randn(4, 2)) == {}
        assert list(loss_fn.parameters()) == []


@pytest.mark.parametrize(
    "name, kwargs, kl_weight, divergence_weight",
    [
        ("elbo", {}, 1.0, 0.0),
        ("beta-vae", {"beta": 4.0}, 4.0, 0.0),
        ("mmd-vae", {}, 1.0, 999.0),
        ("stein-vae", {}, 0.0, 1000.0),
        ("adversarial", {}, 0.0, 1.0),
        ("autoencoder", {}, 0.0, 0.0),
    ],
)
def test_presets_have_the_paper_weights(name, kwargs, kl_weight, divergence_weight):
    loss_fn = InfoVAELoss.preset(name, **kwargs)
    assert (loss_fn.kl_weight, loss_fn.divergence_weight) == (kl_weight, divergence_weight)


def test_negative_divergence_weight_only_when_asked():
    with pytest.raises(ValueError, match="negative weight on D"):
        InfoVAELoss(alpha=-0.5, lam=1.0, divergence="mmd")
    with pytest.raises(ValueError, match="alpha = 1.5 > 1"):
        InfoVAELoss(alpha=1.5, lam=1.0, divergence="mmd")
    loss_fn = InfoVAELoss(alpha=-0.5, lam=1.0, divergence="mmd", allow_negative_weights=True)
    assert loss_fn.divergence_weight == -0.5


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lam": 0.0}, "must be positive"),
        ({"lam": -1.0}, "must be positive"),
        ({"alpha": float("nan")}, "finite"),
        ({"divergence": "kl"}, "unknown divergence"),
        ({"kernel": "laplace"}, "unknown kernel"),
        ({"estimator": "u"}, "unknown estimator"),
        ({"num_prior_samples": 1}, "num_prior_samples"),
    ],
)
def test_invalid_settings_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        InfoVAELoss(**kwargs)


def test_invalid_batches_are_clear_errors():
    model, loss_fn = make_model(), InfoVAELoss(alpha=0.0, lam=10.0)
    x = make_batch()
    bad = x.clone()
    bad[2, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        loss_fn(model, bad)
    bad[2, 3] = float("inf")
    with pytest.raises(ValueError, match="NaN or infinite"):
        loss_fn(model, bad)
    # the decoder models 6 pixels; a batch of [B, 6, 1] does not match its shape
    encoder = TinyEncoder()
    model_3d = iv.VAE(nn.Sequential(nn.Flatten(), encoder), TinyDecoder())
    with pytest.raises(ValueError, match="decoder's distribution has shape"):
        loss_fn(model_3d, x[:, :, None])
    with pytest.raises(ValueError, match="at least 2 codes"):
        loss_fn(model, x[:1])


def test_authors_weighting_equals_their_per_pixel_loss():
    """Their code: mean BCE over pixels + mean Gaussian KL over latent dims (ELBO), or mean BCE
    + MMD (their MMD model); ours in nats per image, divided by the pixel count, must equal it."""
    model, x = make_model(), make_batch()
    torch.manual_seed(3)
    out = InfoVAELoss.authors_weighting("elbo", latent_dim=Z_DIM, num_pixels=X_DIM)(model, x)
    logits = model.decoder.net(out.z)
    bce = nn.functional.binary_cross_entropy_with_logits(logits, x)  # mean over batch and pixels
    mean, std = model.encoder.params(x)
    kl_per_dim = (-torch.log(std) + 0.5 * std**2 + 0.5 * mean**2 - 0.5).mean()  # their reg_loss
    torch.testing.assert_close(out.loss / X_DIM, bce + kl_per_dim, rtol=1e-12, atol=1e-12)

    rows = torch.randn(200, Z_DIM, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    prior = FixedSamplesNormal(torch.zeros(Z_DIM, dtype=torch.float64), torch.ones(Z_DIM, dtype=torch.float64), rows)
    model = make_model(prior=prior)
    torch.manual_seed(3)
    out = InfoVAELoss.authors_weighting("mmd", latent_dim=Z_DIM, num_pixels=X_DIM)(model, x)
    bce = nn.functional.binary_cross_entropy_with_logits(model.decoder.net(out.z), x)
    torch.testing.assert_close(out.loss / X_DIM, bce + iv.divergences.mmd(out.z, rows), rtol=1e-12, atol=1e-12)


def test_authors_weighting_weights_and_errors():
    elbo = InfoVAELoss.authors_weighting("elbo", latent_dim=5)
    assert (elbo.kl_weight, elbo.divergence_weight) == (pytest.approx(784 / 5), 0.0)
    mmd_loss = InfoVAELoss.authors_weighting("mmd", latent_dim=5)
    assert (mmd_loss.kl_weight, mmd_loss.divergence_weight) == (0.0, 784.0)
    with pytest.raises(ValueError, match="'elbo' and 'mmd'"):
        InfoVAELoss.authors_weighting("stein", latent_dim=5)
    with pytest.raises(ValueError, match="latent_dim must be a positive integer"):
        InfoVAELoss.authors_weighting("elbo", latent_dim=0)

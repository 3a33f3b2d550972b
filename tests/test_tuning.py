"""suggest_lambda (infovae.tuning) against a model whose two terms are known in closed form."""

import math

import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, Independent

import infovae as iv
from infovae.networks import PointMass
from infovae.tuning import LambdaSuggestion, suggest_lambda


class ZeroEncoder(nn.Module):
    """q(z|x) = a point mass at 0 in `dim` dimensions, whatever x."""

    def __init__(self, dim: int):
        super().__init__()
        self.latent_dim = dim
        self.scale = nn.Parameter(torch.zeros(()))  # gives the optimiser something to hold

    def forward(self, x):
        return PointMass(self.scale * torch.zeros(x.shape[0], self.latent_dim))


class ConstantDecoder(nn.Module):
    """p(x|z) = independent Bernoulli(sigmoid(logits)), whatever z."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = nn.Parameter(logits.clone())

    def forward(self, z):
        return Independent(Bernoulli(logits=self.logits.expand(z.shape[0], *self.logits.shape)), self.logits.dim())


def known_model(dim=2, pixels=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(pixels, generator=g)
    x = (torch.rand(8, pixels, generator=g) < 0.5).float()
    return iv.VAE(ZeroEncoder(dim), ConstantDecoder(logits)), x, logits


def test_matches_closed_form():
    dim, m = 2, 200
    torch.manual_seed(0)
    model, x, logits = known_model(dim)
    s = suggest_lambda(model, x, repeats=400, num_prior_samples=m)
    # Reconstruction: the Bernoulli negative log-likelihood, computed directly (float64).
    p = torch.sigmoid(logits.double())
    rec = -(x.double() * torch.log(p) + (1 - x.double()) * torch.log1p(-p)).sum(1).mean().item()
    # Biased MMD, codes all at 0, kernel exp(-|a-b|^2 / (2 dim)), m prior samples: its mean is
    # 1 - 2 E k(0, w) + (1/m) + (1 - 1/m) E k(w, w') with Gaussian integrals in closed form.
    h = dim
    cross = (1 + 1 / h) ** (-dim / 2)
    prior_prior = (1 + 2 / h) ** (-dim / 2)
    div = 1 - 2 * cross + 1 / m + (1 - 1 / m) * prior_prior
    assert s.reconstruction == pytest.approx(rec, rel=1e-5)
    # 400 repeats: the relative standard error of the mean MMD is about 0.3%; 3% tolerance
    # (a failure rate far below 1e-6 for this fixed seed).
    assert s.divergence == pytest.approx(div, rel=0.03)
    assert s.lam == pytest.approx(rec / div, rel=0.03)
    assert s.lam * s.divergence == pytest.approx(s.reconstruction, rel=1e-9)
    assert s.order == round(math.log10(s.lam))


def test_ratio_scales_lambda_and_steps_leave_model_unchanged():
    torch.manual_seed(1)
    model, x, _ = known_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(2)
    a = suggest_lambda(model, x, repeats=5)
    torch.manual_seed(2)
    b = suggest_lambda(model, x, repeats=5, ratio=10.0)
    assert b.lam == pytest.approx(10 * a.lam, rel=1e-9)
    s = suggest_lambda(model, x, steps=3, repeats=2)
    assert isinstance(s, LambdaSuggestion) and s.steps == 3 and math.isfinite(s.lam)
    # The decoder learnt on the copy: the reconstruction dropped; the model itself is untouched.
    assert s.reconstruction < a.reconstruction
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(x="x"), TypeError),
        (dict(x=torch.zeros(1, 6)), ValueError),
        (dict(x=torch.full((4, 6), float("nan"))), ValueError),
        (dict(ratio=0.0), ValueError),
        (dict(steps=-1), ValueError),
        (dict(repeats=0), ValueError),
        (dict(alpha=1.5), ValueError),
        (dict(kernel="cosine"), ValueError),
        (dict(estimator="exact"), ValueError),
        (dict(model="not a model"), TypeError),
    ],
)
def test_bad_input(kwargs, error):
    model, x, _ = known_model()
    args = dict(model=model, x=x)
    args.update(kwargs)
    with pytest.raises(error):
        suggest_lambda(args.pop("model"), args.pop("x"), **args)


def test_indistinguishable_codes_raise():
    # Codes exactly equal to the prior samples' distribution cannot give a positive unbiased MMD
    # reliably; a prior that is a point mass at 0 makes the biased MMD exactly 0.
    model, x, _ = known_model()
    model = iv.VAE(model.encoder, model.decoder, prior=PointMass(torch.zeros(2)))
    with pytest.raises(ValueError, match="divergence estimate"):
        suggest_lambda(model, x, repeats=2)


class FixedCodesEncoder(nn.Module):
    """q(z|x_i) = a point mass at codes[i]: the codes of a batch are known exactly."""

    def __init__(self, codes: torch.Tensor):
        super().__init__()
        self.latent_dim = codes.shape[1]
        self.register_buffer("codes", codes)

    def forward(self, x):
        return PointMass(self.codes[: x.shape[0]])


def naive_ksd(z: torch.Tensor, h: float) -> float:
    """Squared KSD against N(0, I), Gaussian kernel exp(-r^2 / (2h)), by a float64 double loop."""
    z = z.double()
    n, d = z.shape
    total = 0.0
    for i in range(n):
        for j in range(n):
            diff = z[i] - z[j]
            r2 = float(diff @ diff)
            k = math.exp(-r2 / (2 * h))
            si, sj = -z[i], -z[j]  # the score of N(0, I)
            # u = s_i.s_j k + s_i.grad_j k + s_j.grad_i k + trace grad_i grad_j k
            total += k * (float(si @ sj) + float((si - sj) @ diff) / h + d / h - r2 / h**2)
    return total / n**2


def test_stein_divergence_is_the_kernel_stein_discrepancy_of_the_codes():
    # all codes at 0, standard normal prior: u(0, 0) = k(0, 0) dim / h = 1 with h = dim, so KSD^2 = 1
    model, x, logits = known_model(dim=3)
    s = suggest_lambda(model, x, divergence="stein", repeats=3)
    assert s.divergence == pytest.approx(1.0, abs=1e-12) and s.divergence_std == pytest.approx(0.0, abs=1e-12)
    assert s.lam == pytest.approx(s.reconstruction, rel=1e-12)
    # codes spread out: the package's KSD against a naive double loop, ratio 2
    codes = torch.randn(8, 3, generator=torch.Generator().manual_seed(1))
    model = iv.VAE(FixedCodesEncoder(codes), ConstantDecoder(logits))
    s = suggest_lambda(model, x, divergence="stein", ratio=2.0, repeats=2, bandwidth=1.5)
    assert s.divergence == pytest.approx(naive_ksd(codes, 1.5), rel=1e-5)
    assert s.lam == pytest.approx(2.0 * s.reconstruction / s.divergence, rel=1e-9)
    # a few Adam steps of the Stein objective on a copy run and leave the model as it was
    before = [p.clone() for p in model.parameters()]
    suggest_lambda(model, x, divergence="stein", steps=2, repeats=2)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    with pytest.raises(ValueError, match="critic"):
        suggest_lambda(model, x, divergence="wgan-gp")
    with pytest.raises(ValueError, match="unknown divergence"):
        suggest_lambda(model, x, divergence="kl")

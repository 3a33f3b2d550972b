"""Tests of infovae.metrics against closed forms on Gaussian models, in float64.

The reference model is linear-Gaussian: p(z) = N(0, I), p(x|z) = N(W z + b, s^2 I), so
p(x) = N(b, W W^T + s^2 I) and p(z|x) = N(S W^T (x - b) / s^2, S) with
S = (I + W^T W / s^2)^-1, all computed here with torch.distributions. Statistical tests use
fixed seeds and tolerances of at least 4 standard errors (failure rate under 1e-4 for a
new seed), stated beside each assert.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, Independent, MultivariateNormal, Normal

import infovae as iv
from infovae.metrics import (
    active_units,
    class_distribution_cross_entropy,
    encode_codes,
    full_batch_mmd,
    log_det_covariance,
    log_likelihood,
    log_likelihood_with_error,
    mutual_information,
    posterior_samples,
    semi_supervised_error,
    shuffled_code_gap,
)
from infovae.networks import PointMass

F64 = torch.float64
DZ, DX, SIGMA = 3, 6, 0.7


class LinearDecoder(nn.Module):
    """p(x|z) = N(W z + b, s^2 I); ``W = 0`` gives a decoder that ignores z."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, sigma: float):
        super().__init__()
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)
        self.sigma = sigma

    def forward(self, z):
        return Independent(Normal(z @ self.weight.T + self.bias, self.sigma), 1)

    def marginal(self) -> MultivariateNormal:
        """p(x) in closed form."""
        cov = self.weight @ self.weight.T + self.sigma**2 * torch.eye(len(self.bias), dtype=F64)
        return MultivariateNormal(self.bias, cov)

    def posterior(self, x) -> MultivariateNormal:
        """p(z|x) in closed form, batch [B]."""
        w, s2 = self.weight, self.sigma**2
        cov = torch.linalg.inv(torch.eye(w.shape[1], dtype=F64) + w.T @ w / s2)
        return MultivariateNormal((x - self.bias) @ w @ cov / s2, cov)


class ExactEncoder(nn.Module):
    """q(z|x) = p(z|x) of the decoder (full covariance)."""

    def __init__(self, decoder: LinearDecoder):
        super().__init__()
        self.decoder, self.latent_dim = decoder, decoder.weight.shape[1]

    def forward(self, x):
        return self.decoder.posterior(x)


class MismatchedEncoder(ExactEncoder):
    """A diagonal Gaussian off the exact posterior: mean shifted by 1 sd, std 2x wider."""

    def forward(self, x):
        p = self.decoder.posterior(x)
        sd = p.variance.sqrt()
        return Independent(Normal(p.mean + sd, 2 * sd), 1)


class LinearEncoder(nn.Module):
    """q(z|x) = N(A x, s^2 I)."""

    def __init__(self, a: torch.Tensor, s: float):
        super().__init__()
        self.register_buffer("a", a)
        self.s, self.latent_dim = s, a.shape[0]

    def forward(self, x):
        return Independent(Normal(x @ self.a.T, self.s), 1)


def linear_gaussian(encoder=ExactEncoder, seed: int = 0) -> iv.VAE:
    g = torch.Generator().manual_seed(seed)
    decoder = LinearDecoder(
        torch.randn(DX, DZ, generator=g, dtype=F64), torch.randn(DX, generator=g, dtype=F64), SIGMA
    )
    return iv.VAE(encoder(decoder), decoder).double()


def data(model: iv.VAE, n: int, seed: int = 1) -> torch.Tensor:
    torch.manual_seed(seed)
    return model.decoder.marginal().sample((n,))


# ----------------------------------------------------------------------------- log-likelihood


@pytest.mark.parametrize("chunk_size", [1, 7, 4096])
def test_exact_posterior_proposal_gives_exact_log_likelihood(chunk_size):
    model = linear_gaussian()
    x = data(model, 12)
    truth = model.decoder.marginal().log_prob(x)
    # every weight equals p(x): exact up to rounding, whatever the chunks (a lost or doubled
    # chunk would be off by log(K'/K))
    assert torch.allclose(
        log_likelihood(model, x, num_samples=50, chunk_size=chunk_size), truth, rtol=0, atol=1e-4
    )
    assert log_likelihood_with_error(model, x, num_samples=50, chunk_size=chunk_size).stderr.max() < 1e-6


def test_bf16_evaluation_changes_only_the_networks():
    """precision="bf16": the same codes z_k (drawn outside the networks), log-sum-exp in float32.

    A decoder without ``network_region`` (the linear-Gaussian reference) is untouched: the
    difference is exactly 0 and float64 stays float64. The package's gated PixelCNN runs in
    bf16: its estimates move, by rounding only (under 1 nat per image untrained, 8 x 8 maps).
    """
    if not iv.precision.native_bf16("cpu"):
        with pytest.raises(ValueError, match="no native bf16"):
            log_likelihood(linear_gaussian(), data(linear_gaussian(), 2), 5, precision="bf16")
        pytest.skip("this CPU has no native bf16")
    model = linear_gaussian()
    x = data(model, 6)
    diff = iv.metrics.precision_error(model, x, 20, precision="bf16")
    assert diff.dtype == F64 and bool((diff == 0).all())
    from infovae.networks import ConvEncoder
    from infovae.pixelcnn import PixelCNNConfig, PixelCNNDecoder

    torch.manual_seed(0)
    pixel = iv.VAE(ConvEncoder(3, hidden=32), PixelCNNDecoder(PixelCNNConfig(latent_dim=3, layers=2, channels=8)))
    xb = torch.bernoulli(torch.full((4, 1, 28, 28), 0.2))
    state = torch.get_rng_state()
    diff = iv.metrics.precision_error(pixel, xb, 16, precision="bf16", chunk_size=24)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random state is untouched
    assert diff.dtype == torch.float32 and 0 < float(diff.abs().max()) < 1.0
    # the same codes: the fp32 run of precision_error is log_likelihood from the same seed
    torch.manual_seed(0)
    fp32 = log_likelihood(pixel, xb, 16, chunk_size=24)
    torch.manual_seed(0)
    bf16 = log_likelihood(pixel, xb, 16, chunk_size=24, precision="bf16")
    torch.testing.assert_close(bf16 - fp32, diff, rtol=0, atol=0)


def test_mismatched_proposal_lies_below_and_converges():
    model = linear_gaussian(MismatchedEncoder)
    x = data(model, 1000)
    truth = model.decoder.marginal().log_prob(x)
    torch.manual_seed(2)

    def gap(k: int, n: int) -> tuple[float, float]:
        """Mean error over the first n images and its s.e. (spread over images / sqrt(n))."""
        error = log_likelihood(model, x[:n], k) - truth[:n]
        return float(error.mean()), float(error.std()) / math.sqrt(n)

    (g1, s1), (g10, s10), (g100, s100) = (gap(k, 1000) for k in (1, 10, 100))
    g_big, s_big = gap(10_000, 100)
    # below the truth by more than 4 s.e. at K = 1 (the ELBO: gap ~ -5 nats) and K = 10
    assert g1 < -4 * s1 and g10 < -4 * s10
    # the bias shrinks with K, each step by more than 4 s.e. of the difference
    assert g1 + 4 * math.hypot(s1, s10) < g10 and abs(g100) + 4 * math.hypot(s10, s100) < abs(g10)
    # at K = 10^4 it is gone within 4 s.e. (the O(1/K) bias is ~1e-4 nats)
    assert abs(g_big) < 4 * s_big + 1e-3


def test_stderr_matches_spread_over_repeats():
    model = linear_gaussian(MismatchedEncoder)
    x = data(model, 4)
    torch.manual_seed(3)
    out = log_likelihood_with_error(model, x.repeat(300, 1), 1000)  # 300 independent runs per image
    estimate, stderr = out.estimate.view(300, 4), out.stderr.view(300, 4)
    # the delta-method s.e. (averaged over the runs) matches the spread of the runs: the
    # s.d. of a 300-run s.d. is 4%, tolerance 15% (ratios 0.92 to 1.04 over 6 seeds, ESS ~ 170)
    assert torch.allclose(stderr.mean(0), estimate.std(0), rtol=0.15)


def test_chunking_agrees_with_one_chunk():
    model = linear_gaussian(MismatchedEncoder)
    x = data(model, 10)
    torch.manual_seed(4)
    one = log_likelihood_with_error(model, x, 3000, chunk_size=10**6)
    many = log_likelihood_with_error(model, x, 3000, chunk_size=17)
    # independent draws: the per-image difference is within 4 combined s.e.
    assert ((one.estimate - many.estimate).abs() < 4 * (one.stderr**2 + many.stderr**2).sqrt()).all()


def test_prior_proposal_cross_check():
    model = linear_gaussian(MismatchedEncoder)
    x = data(model, 10)
    torch.manual_seed(5)
    out = log_likelihood_with_error(model, x, 20_000, proposal="prior")
    truth = model.decoder.marginal().log_prob(x)
    # each image within 4 s.e. (+ the O(1/K) bias)
    assert ((out.estimate - truth).abs() < 4 * out.stderr + 1e-3).all()
    # the prior is a far worse proposal than even a mismatched encoder
    assert (log_likelihood_with_error(model, x, 20_000).stderr < out.stderr).all()


class NarrowEncoder(ExactEncoder):
    """A poor proposal, as alpha = 1 models learn: the posterior mean shifted by 2 sd, std 0.2x."""

    def forward(self, x):
        p = self.decoder.posterior(x)
        sd = p.variance.sqrt()
        return Independent(Normal(p.mean + 2 * sd, 0.2 * sd), 1)


def test_mixture_proposal_is_exact_in_the_limit_and_robust_to_a_poor_encoder():
    """Defensive mixture 0.5 q + 0.5 p: within 4 s.e. of the closed form for each image, and far
    closer than the IWAE estimator with the same narrow, misplaced encoder and K."""
    model = linear_gaussian(NarrowEncoder)
    x = data(model, 10)
    truth = model.decoder.marginal().log_prob(x)
    torch.manual_seed(6)
    mix = log_likelihood_with_error(model, x, 20_000, proposal="mixture")
    assert ((mix.estimate - truth).abs() < 4 * mix.stderr + 1e-3).all()
    iwae = log_likelihood(model, x, 20_000, proposal="encoder")
    assert (truth - iwae).mean() > 10 * (truth - mix.estimate).abs().mean()


# ----------------------------------------------------------------------------- posterior samples


def test_posterior_samples_weighted_moments_match_exact_posterior():
    model = linear_gaussian(MismatchedEncoder)
    x = data(model, 5)
    torch.manual_seed(6)
    out = posterior_samples(model, x, num_samples=4000, num_proposals=20_000, chunk_size=5000)
    exact = model.decoder.posterior(x)
    assert out.samples.shape == (4000, 5, DZ) and out.proposals.shape == (20_000, 5, DZ)
    assert torch.allclose(out.weights.sum(0), torch.ones(5, dtype=F64))
    assert ((out.ess > 1000) & (out.ess <= 20_000)).all()
    sd = exact.variance.sqrt()
    mean = torch.einsum("kb,kbd->bd", out.weights, out.proposals)
    centred = out.proposals - exact.mean
    cov = torch.einsum("kb,kbi,kbj->bij", out.weights, centred, centred)
    # self-normalised estimates: error ~ sd / sqrt(ESS); tolerance 5 of those
    tol = 5 * sd / out.ess.sqrt()[:, None]
    assert ((mean - exact.mean).abs() < tol).all()
    assert (
        (cov - exact.covariance_matrix).abs()
        < 5 * math.sqrt(2) * sd[:, :, None] * sd[:, None, :] / out.ess.sqrt()[:, None, None]
    ).all()
    # the resampled points: 4000 draws, ESS-limited, mean within 5 sd / sqrt(min(ESS, 4000))
    resampled_tol = 5 * sd / torch.minimum(out.ess, torch.tensor(4000.0, dtype=F64)).sqrt()[:, None]
    assert ((out.samples.mean(0) - exact.mean).abs() < resampled_tol).all()


def test_exact_posterior_proposal_has_full_ess():
    model = linear_gaussian()
    out = posterior_samples(model, data(model, 3), num_samples=10, num_proposals=100)
    assert torch.allclose(out.ess, torch.full((3,), 100.0, dtype=F64))


# ----------------------------------------------------------------------------- aggregate posterior


def rbf_expectation(mean_gap: float, var: float, dim: int, h: float) -> float:
    """E exp(-|a - b|^2 / (2h)) for a - b ~ N(mean_gap * 1, var I) in ``dim`` dimensions."""
    return (h / (h + var)) ** (dim / 2) * math.exp(-dim * mean_gap**2 / (2 * (h + var)))


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_full_batch_mmd_matches_closed_form(estimator):
    dim, n, shift, scale = 4, 3000, 0.5, 0.6
    torch.manual_seed(7)
    z = shift + scale * torch.randn(n, dim, dtype=F64)
    h = dim
    truth = (
        rbf_expectation(0, 2 * scale**2, dim, h)
        + rbf_expectation(0, 2, dim, h)
        - 2 * rbf_expectation(shift, scale**2 + 1, dim, h)
    )
    # the V-statistic adds (1 - E k(z,z')) / n + (1 - E k(y,y')) / n
    bias = (
        (2 - rbf_expectation(0, 2 * scale**2, dim, h) - rbf_expectation(0, 2, dim, h)) / n
        if estimator == "biased"
        else 0.0
    )
    value = full_batch_mmd(z, estimator=estimator)
    # s.d. of the estimate at n = 3000 is 3.6e-3 (measured over 40 seeds); tolerance 4 s.d.
    assert value == pytest.approx(truth + bias, abs=0.015)
    assert truth > 0.1


def test_full_batch_mmd_vanishes_for_the_prior():
    torch.manual_seed(8)
    # q = p: the unbiased statistic has mean 0 and s.d. 2.1e-4 at n = 2000 (measured over
    # 40 seeds); tolerance 5 s.d.
    assert abs(full_batch_mmd(torch.randn(2000, 5, dtype=F64), estimator="unbiased")) < 1e-3


def test_log_det_covariance_closed_form_and_documented_bias():
    g = torch.Generator().manual_seed(9)
    a = torch.randn(4, 4, generator=g, dtype=F64)
    cov = a @ a.T + 0.5 * torch.eye(4, dtype=F64)
    law = MultivariateNormal(torch.ones(4, dtype=F64), cov)
    torch.manual_seed(9)
    out = log_det_covariance(law.sample((20_000,)))
    # s.d. sqrt(2 d / n) = 0.02; tolerance 5 s.d.
    assert out.total == pytest.approx(float(torch.logdet(cov)), abs=0.1)
    assert out.per_dim == pytest.approx(out.total / 4)
    # the Wishart bias of the docstring, at n = 30, d = 3: mean of 400 draws (s.e. 0.018)
    d, n = 3, 30
    law3 = MultivariateNormal(torch.zeros(d, dtype=F64), torch.eye(d, dtype=F64))
    draws = torch.tensor([log_det_covariance(law3.sample((n,))).total for _ in range(400)])
    expected = (
        d * math.log(2)
        - d * math.log(n - 1)
        + sum(torch.special.digamma(torch.tensor((n - i) / 2)).item() for i in range(1, d + 1))
    )
    assert expected < -0.15  # the bias is real at this n ...
    assert float(draws.mean()) == pytest.approx(
        expected, abs=4 * float(draws.std()) / 20
    )  # ... and as documented


def test_encode_codes_samples_and_means():
    model = linear_gaussian()
    x = data(model, 30)
    means = encode_codes(model, x, sample=False, batch_size=7)
    assert torch.allclose(means, model.decoder.posterior(x).mean)
    assert encode_codes(model, x, batch_size=7).shape == (30, DZ)


# ----------------------------------------------------------------------------- information in z


def test_mutual_information_of_separated_codes_is_log_n():
    # four images with codes 20 sd apart: q(z|x_i) barely overlap, I = log 4 - O(e^-50)
    x = torch.eye(4, dtype=F64)
    model = iv.VAE(
        LinearEncoder(20 * torch.eye(4, dtype=F64), 1.0),
        LinearDecoder(torch.zeros(4, 4, dtype=F64), torch.zeros(4, dtype=F64), 1.0),
    ).double()
    torch.manual_seed(10)
    assert mutual_information(model, x, num_samples=50, batch_size=3) == pytest.approx(math.log(4), abs=1e-9)


def test_mutual_information_of_identical_images_is_zero():
    model = iv.VAE(
        LinearEncoder(torch.ones(2, 3, dtype=F64), 0.5),
        LinearDecoder(torch.zeros(3, 2, dtype=F64), torch.zeros(3, dtype=F64), 1.0),
    ).double()
    assert mutual_information(model, torch.ones(5, 3, dtype=F64), num_samples=4) == pytest.approx(
        0, abs=1e-12
    )


def test_mutual_information_of_linear_gaussian_encoder():
    # x ~ N(0, I_2), q(z|x) = N(A x, s^2 I): I = 1/2 log det(I + A A^T / s^2) (= 0.69 nats)
    a, s = torch.tensor([[1.0, 0.0], [0.5, 0.5]], dtype=F64), 0.8
    truth = 0.5 * float(torch.logdet(torch.eye(2, dtype=F64) + a @ a.T / s**2))
    model = iv.VAE(
        LinearEncoder(a, s), LinearDecoder(torch.zeros(2, 2, dtype=F64), torch.zeros(2, dtype=F64), 1.0)
    ).double()
    torch.manual_seed(11)
    value = mutual_information(model, torch.randn(3000, 2, dtype=F64), batch_size=1000)
    # the data-set estimator at N = 3000: s.d. 0.020, bias -0.006 (both measured over 30
    # seeds); tolerance 4 s.d.
    assert value == pytest.approx(truth, abs=0.08)


def test_shuffled_code_gap():
    model = linear_gaussian()
    x = data(model, 4000, seed=12)
    torch.manual_seed(12)
    # with the exact posterior, (x, z) follows the model's joint: the gap is tr(W W^T) / s^2
    truth = float((model.decoder.weight**2).sum()) / SIGMA**2
    # s.d. of the estimate at N = 4000 is 0.56 nats (measured over 30 seeds); tolerance 4 s.d.
    assert shuffled_code_gap(model, x, batch_size=999) == pytest.approx(truth, abs=2.4)
    assert truth > 20
    ignoring = linear_gaussian()
    ignoring.decoder.weight.zero_()
    assert shuffled_code_gap(ignoring, x) == 0.0


def test_active_units():
    class Encoder(nn.Module):
        latent_dim = 3

        def forward(self, x):  # mean: x_0, 0.05 x_1 and a constant
            return Independent(
                Normal(torch.stack([x[:, 0], 0.05 * x[:, 1], torch.ones_like(x[:, 0])], 1), 1.0), 1
            )

    model = iv.VAE(
        Encoder(), LinearDecoder(torch.zeros(2, 3, dtype=F64), torch.zeros(2, dtype=F64), 1.0)
    ).double()
    torch.manual_seed(13)
    out = active_units(model, torch.randn(5000, 2, dtype=F64))
    assert out.num_active == 1
    # variances 1, 0.0025, 0 within 4 s.d. (sqrt(2 / N) relative)
    assert torch.allclose(out.variances, torch.tensor([1.0, 0.0025, 0.0], dtype=F64), rtol=0.08, atol=1e-12)


# ----------------------------------------------------------------------------- labels


class OracleClassifier(nn.Module):
    """Logits that pick the class stored in the first pixel of an image."""

    def forward(self, images):
        return 10.0 * nn.functional.one_hot(images[:, 0].long(), 10).double()


def test_class_distribution_cross_entropy():
    labels = torch.arange(10).repeat_interleave(
        torch.tensor([100, 100, 100, 100, 100, 100, 100, 100, 200, 0])
    )
    images = labels[:, None].double()
    out = class_distribution_cross_entropy(OracleClassifier(), images, batch_size=64)
    counts = torch.tensor([100.0] * 8 + [200.0, 0.0], dtype=F64)
    assert torch.allclose(out.histogram, counts / 1000)
    c_hat = (counts + 1) / 1010
    # KL(uniform || smoothed histogram): finite although class 9 never appears
    assert out.cross_entropy == pytest.approx(float((0.1 * (math.log(0.1) - c_hat.log())).sum()), rel=1e-12)
    # a perfectly uniform model scores exactly 0; a different reference is honoured
    uniform = torch.arange(10).repeat(50)[:, None].double()
    assert class_distribution_cross_entropy(OracleClassifier(), uniform).cross_entropy == pytest.approx(
        0, abs=1e-15
    )
    reference = counts / 1000
    expected = sum(
        c * math.log(c / ((n + 0.5) / 1005))
        for c, n in zip(reference.tolist(), counts.tolist(), strict=True)
        if c > 0
    )
    assert class_distribution_cross_entropy(
        OracleClassifier(), images, reference=reference, pseudo_count=0.5
    ).cross_entropy == pytest.approx(expected, rel=1e-12)


def test_semi_supervised_error():
    g = torch.Generator().manual_seed(14)
    centres = 6 * torch.randn(10, 4, generator=g, dtype=F64)

    def blobs(n):
        y = torch.randint(10, (n,), generator=g)
        return centres[y] + torch.randn(n, 4, generator=g, dtype=F64), y

    x, y = blobs(1000)
    x_test, y_test = blobs(2000)
    out = semi_supervised_error(
        x, y, x_test, y_test, num_labels=300, num_draws=2, gammas=(0.3, 1.0), Cs=(1.0, 10.0)
    )
    assert len(out.errors) == 2 and len(out.params) == 2
    assert out.mean < 0.05 and out.std == pytest.approx(abs(out.errors[0] - out.errors[1]) / 2)
    # labels independent of the features: chance level 0.9, binomial s.d. 0.007 at 2000 points
    noise = semi_supervised_error(
        x,
        torch.randint(10, (1000,), generator=g),
        x_test,
        torch.randint(10, (2000,), generator=g),
        num_labels=300,
        num_draws=1,
        gammas=(1.0,),
        Cs=(1.0,),
    )
    assert noise.mean == pytest.approx(0.9, abs=0.03)


# ----------------------------------------------------------------------------- bad input and modes


class BareNormalEncoder(nn.Module):
    """Per-coordinate normals without Independent: batch [B, dim], event []."""

    latent_dim = DZ

    def forward(self, x):
        return Normal(x[:, :DZ], 1.0)


class BernoulliDecoder(nn.Module):
    def forward(self, z):
        return Independent(Bernoulli(logits=z.sum(-1, keepdim=True).expand(-1, DX)), 1)


class PointMassEncoder(nn.Module):
    latent_dim = DZ

    def forward(self, x):
        return PointMass(x[:, :DZ])


def per_pixel_decoder(decoder: LinearDecoder) -> nn.Module:
    """The linear decoder without Independent: log_prob per pixel, not per image."""

    class PerPixel(nn.Module):
        def forward(self, z):
            return Normal(z @ decoder.weight.T + decoder.bias, decoder.sigma)

    return PerPixel()


def test_bad_input_gives_clear_errors():
    model = linear_gaussian()
    x = data(model, 3)
    with pytest.raises(ValueError, match="num_samples must be a positive integer, got 0"):
        log_likelihood(model, x, num_samples=0)
    with pytest.raises(TypeError, match="num_samples must be a positive integer, got 10.0"):
        log_likelihood(model, x, num_samples=10.0)
    with pytest.raises(ValueError, match="empty"):
        log_likelihood(model, x[:0])
    with pytest.raises(ValueError, match="at least 2 dims"):
        log_likelihood(model, x[0])
    with pytest.raises(ValueError, match="NaN or inf"):
        log_likelihood(model, torch.full_like(x, math.nan))
    with pytest.raises(ValueError, match="proposal must be one of"):
        log_likelihood(model, x, 10, proposal="posterior")
    with pytest.raises(ValueError, match="the model is on the meta device"):
        log_likelihood(linear_gaussian().to("meta"), x)
    with pytest.raises(TypeError, match="VAE-like"):
        log_likelihood(nn.Linear(2, 2), x)
    with pytest.raises(ValueError, match="event_shape \\[dim\\]"):
        log_likelihood(iv.VAE(BareNormalEncoder(), model.decoder).double(), x)
    with pytest.raises(ValueError, match="wrap it in Independent"):
        bad_decoder = iv.VAE(ExactEncoder(model.decoder), per_pixel_decoder(model.decoder)).double()
        log_likelihood(bad_decoder, x, 5)
    with pytest.raises(ValueError, match="support"):  # grey pixels under a Bernoulli decoder
        log_likelihood(
            iv.VAE(ExactEncoder(model.decoder), BernoulliDecoder()).double(), torch.full_like(x, 0.5), 5
        )
    with pytest.raises(ValueError, match="deterministic encoder"):
        log_likelihood(iv.VAE(PointMassEncoder(), model.decoder).double(), x, 5)
    with pytest.raises(ValueError, match="needs more than 3 codes"):
        log_det_covariance(torch.randn(3, 3))
    with pytest.raises(ValueError, match="codes \\[N, dim\\]"):
        full_batch_mmd(torch.randn(5, 2, 2))
    with pytest.raises(ValueError, match="at least 2 images"):
        shuffled_code_gap(model, x[:1])
    with pytest.raises(ValueError, match="reference must be 10"):
        class_distribution_cross_entropy(OracleClassifier(), torch.zeros(4, 1), reference=torch.ones(10))
    with pytest.raises(ValueError, match="expected logits"):
        class_distribution_cross_entropy(OracleClassifier(), torch.zeros(4, 1), num_classes=5)
    with pytest.raises(ValueError, match="exceeds"):
        semi_supervised_error(
            torch.zeros(5, 2), torch.zeros(5), torch.zeros(3, 2), torch.zeros(3), num_labels=10
        )


def test_model_mode_is_restored():
    model = linear_gaussian()
    model.train()
    model.decoder.eval()
    log_likelihood(model, data(model, 2), 3)
    assert model.training and model.encoder.training and not model.decoder.training


@pytest.mark.parametrize("dim", [1, 5, 20])
def test_the_full_batch_mmd_floor_is_its_mean_when_q_is_the_prior(dim):
    """Monte Carlo check of the closed form: 300 draws of 400 codes and 400 prior samples, both
    N(0, I) (fixed seed); the mean of the biased MMD^2 must match the floor within 5% (its
    Monte Carlo error there is ~1.2-1.6%; failure rate below 1e-3)."""
    from infovae.metrics.latent import full_batch_mmd, full_batch_mmd_floor

    torch.manual_seed(dim)
    values = torch.tensor([full_batch_mmd(torch.randn(400, dim, dtype=torch.float64)) for _ in range(300)])
    floor = full_batch_mmd_floor(400, dim)
    assert abs(float(values.mean()) / floor - 1) < 0.05, (float(values.mean()), floor)
    assert full_batch_mmd_floor(800, dim) == pytest.approx(floor / 2)
    with pytest.raises(ValueError):
        full_batch_mmd_floor(0, dim)

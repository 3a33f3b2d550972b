"""Tests of the experiments of chapters 6 and 7 (Figs. 1-5) at a tiny size.

The closed forms that the experiments report (KL and MMD of a two-Gaussian mixture to
N(0, 1), the mixture density of q(z), KL of the true posterior to q(z|x) from importance
weights) are checked against independent computations: numerical integration (scipy),
sample estimators, a naive loop and a linear-Gaussian model whose posterior is closed
form. Monte Carlo tolerances are stated beside each assert (at least 4 standard errors,
fixed seeds). The paper profile is configured, not run: its constants are checked
against SPEC section 4.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy import integrate
from torch import nn
from torch.distributions import Independent, MultivariateNormal, Normal, kl_divergence

import infovae as iv
from infovae.divergences import mmd
from infovae.experiments import EXPERIMENTS, Outcome
from infovae.experiments import mnist_inference as fig25
from infovae.experiments import two_points as fig1

F64 = torch.float64

# ----------------------------------------------------------------------------- configurations


def test_registry_names_the_experiments():
    assert EXPERIMENTS["fig1"] is fig1.run
    assert EXPERIMENTS["fig2-5"] is fig25.run


def test_paper_profiles_hold_the_paper_constants():
    c = fig1.TwoPointsConfig.for_profile("paper")
    assert (c.batch_size, c.lr, c.lam, c.num_prior_samples) == (500, 1e-4, 500.0, 500)
    c = fig25.MnistInferenceConfig.for_profile("paper")
    assert (c.batch_size, c.lr, c.lam, c.iterations) == (200, 1e-4, 1000.0, 100_000)
    assert (c.latent_dim, c.plot_dim, c.plot_size, c.plot_iterations, c.plot_batch_size) == (10, 2, 500, None, None)
    assert c.sizes[0] == 500 and c.sizes[-1] == 50_000 and list(c.sizes) == sorted(c.sizes)


@pytest.mark.parametrize("module, cls", [(fig1, "TwoPointsConfig"), (fig25, "MnistInferenceConfig")])
def test_profiles_grow_and_unknown_profiles_fail(module, cls):
    config = getattr(module, cls)
    quick, book, paper = (config.for_profile(p) for p in ("quick", "book", "paper"))
    assert quick.iterations < book.iterations < paper.iterations
    with pytest.raises(ValueError, match="unknown profile"):
        config.for_profile("huge")
    with pytest.raises(ValueError, match="unknown profile"):
        module.run("huge")
    with pytest.raises(TypeError, match="profile name"):
        module.run(42)


# ----------------------------------------------------------------------------- Fig. 1 closed forms


def test_mixture_kl_matches_gaussian_closed_form_and_numerical_integration():
    # one component (twice): KL(N(m, s^2) || N(0, 1)) = (m^2 + s^2 - 1) / 2 - log s
    for m, s in [(0.0, 1.0), (1.5, 0.3), (-2.0, 0.01)]:
        exact = (m * m + s * s - 1) / 2 - math.log(s)
        assert fig1.mixture_kl_to_standard_normal([m, m], [s, s]) == pytest.approx(exact, abs=1e-9)
    # two components: against adaptive quadrature of q log(q/p) around each component
    means, stds = np.array([-1.2, 0.9]), np.array([0.3, 0.7])

    def integrand(z):
        q = np.mean(np.exp(-0.5 * ((z - means) / stds) ** 2) / (stds * math.sqrt(2 * math.pi)))
        return q * (math.log(q) + 0.5 * z * z + 0.5 * math.log(2 * math.pi)) if q > 0 else 0.0

    reference = sum(integrate.quad(integrand, lo, hi, limit=200)[0] for lo, hi in [(-12, -0.2), (-0.2, 12)])
    assert fig1.mixture_kl_to_standard_normal(means, stds) == pytest.approx(reference, abs=1e-6)


def test_mixture_mmd_is_zero_at_the_prior_and_matches_the_sample_estimator():
    assert fig1.mixture_mmd_to_standard_normal([0.0, 0.0], [1.0, 1.0]) == pytest.approx(0.0, abs=1e-12)
    means, stds = torch.tensor([-1.5, 1.2], dtype=F64), torch.tensor([0.2, 0.5], dtype=F64)
    g = torch.Generator().manual_seed(0)
    n = 4000
    pick = torch.randint(2, (n,), generator=g)
    q = (means[pick] + stds[pick] * torch.randn(n, generator=g, dtype=F64)).unsqueeze(1)
    p = torch.randn(n, 1, generator=g, dtype=F64)
    estimate = float(mmd(q, p, bandwidth=1.0, estimator="unbiased"))
    # the unbiased estimator's s.d. at n = 4000 is 0.006 here (measured over 20 seeds);
    # tolerance 0.025, 4 s.d.
    assert fig1.mixture_mmd_to_standard_normal(means, stds) == pytest.approx(estimate, abs=0.025)


def test_fig1_runs_at_a_tiny_size(tmp_path):
    config = fig1.TwoPointsConfig(iterations=6, batch_size=50, data_size=200, eval_every=3, num_samples=500)
    out = fig1.run(config, progress=False)
    assert set(out.results) == set(fig1.MODELS)
    for r in out.results.values():
        assert len(r["posterior_mean"]) == 2 and all(s > 0 for s in r["posterior_std"])
        assert r["kl_q_prior"] >= 0 and r["mmd_q_prior"] >= 0
        assert 0 <= r["samples_near_data"] <= 1 and r["trajectory"]["step"] == [3, 6]
    written = out.save(tmp_path)
    assert {p.name for p in written} == {"fig1.json", "fig1-fig1.png", "fig1-training.png"}
    assert json.loads((tmp_path / "fig1.json").read_text())["config"]["iterations"] == 6


# ----------------------------------------------------------------------------- Figs. 2-5 estimators


def test_mixture_log_density_matches_a_naive_loop():
    g = torch.Generator().manual_seed(0)
    means, stds = torch.randn(7, 3, generator=g, dtype=F64), torch.rand(7, 3, generator=g, dtype=F64) + 0.1
    z = torch.randn(300, 3, generator=g, dtype=F64)
    naive = torch.stack(
        [torch.stack([Independent(Normal(m, s), 1).log_prob(zi).exp() for m, s in zip(means, stds)]).mean().log() for zi in z]
    )
    assert torch.allclose(fig25.mixture_log_density(z, means, stds), naive, atol=1e-10)


def test_aggregate_kl_of_one_component_is_the_gaussian_kl():
    means, stds = torch.tensor([[0.5, -1.0]], dtype=F64), torch.tensor([[0.4, 1.3]], dtype=F64)
    exact = float(((means**2 + stds**2 - 1) / 2 - stds.log()).sum())
    estimate = fig25.aggregate_kl(means, stds, 20_000, torch.Generator().manual_seed(0))
    # per-sample log-ratio has s.d. about 1.5 here, s.e. 0.011 at 20k samples; tolerance 0.05
    assert estimate == pytest.approx(exact, abs=0.05)


class LinearDecoder(nn.Module):
    """p(x|z) = N(W z, s^2 I) on x of shape [1, 2, 2]; the posterior is closed form."""

    def __init__(self, weight: torch.Tensor, sigma: float):
        super().__init__()
        self.register_buffer("weight", weight)
        self.sigma = sigma

    def forward(self, z):
        return Independent(Normal((z @ self.weight.T).view(-1, 1, 2, 2), self.sigma), 3)

    def posterior(self, x) -> MultivariateNormal:
        w, s2 = self.weight, self.sigma**2
        cov = torch.linalg.inv(torch.eye(w.shape[1], dtype=F64) + w.T @ w / s2)
        return MultivariateNormal(x.flatten(1) @ w @ cov / s2, cov)


class ThreeDimEncoder(nn.Module):
    """A standard normal code of 3 dimensions, whatever the input."""

    latent_dim = 3

    def forward(self, x):
        return Independent(Normal(torch.zeros(len(x), 3, dtype=x.dtype), 1.0), 1)


class ShiftedEncoder(nn.Module):
    """A diagonal Gaussian off the exact posterior: mean shifted by one s.d., 1.5x wider."""

    latent_dim = 2

    def __init__(self, decoder: LinearDecoder):
        super().__init__()
        self.decoder = decoder

    def forward(self, x):
        p = self.decoder.posterior(x)
        sd = p.variance.sqrt()
        return Independent(Normal(p.mean + sd, 1.5 * sd), 1)


def test_grid_posterior_recovers_the_closed_form_posterior_and_kl():
    torch.manual_seed(0)
    decoder = LinearDecoder(torch.randn(4, 2, dtype=F64), 0.8)
    model = iv.VAE(ShiftedEncoder(decoder), decoder).double()
    x = decoder(torch.randn(5, 2, dtype=F64)).sample()
    q = model.encode(x)
    posterior = decoder.posterior(x)
    exact = kl_divergence(posterior, MultivariateNormal(q.mean, torch.diag_embed(q.variance)))
    config = fig25.MnistInferenceConfig(grid_size=100, grid_reach=6.0, num_posterior_samples=20_000)
    out = fig25.posterior_comparison(model, x, config)
    assert out["true"].shape == (5, 20_000, 2) and out["approx"].shape == (5, 20_000, 2)
    assert (out["cells_per_std"] > 5).all() and (out["outside"] < 1e-9).all()
    # midpoint rule on a 100 x 100 grid over the posterior's +-6 s.d. box: error far below 1e-3 nats
    assert torch.allclose(out["kl"], exact, atol=1e-3)
    # the samples have the posterior's moments (s.e. of a mean: sd / sqrt(20000) = 0.007 sd; 5 s.e.)
    sd = posterior.variance.sqrt()
    assert ((out["true"].mean(1) - posterior.mean).abs() < 5 * sd / 20_000**0.5).all()
    assert torch.allclose(out["true"].std(1), sd, rtol=0.03)
    # log p(x) from the same grid: the closed form N(0, W W^T + s^2 I), midpoint rule below 1e-3 nats
    w = decoder.weight
    marginal = MultivariateNormal(torch.zeros(4, dtype=F64), w @ w.T + 0.8**2 * torch.eye(4, dtype=F64))
    assert torch.allclose(out["log_px"], marginal.log_prob(x.flatten(1)), atol=1e-3)
    # the gap log p(x) - ELBO(x) is KL(q(z|x) || p(z|x)) (closed form), the ELBO from 20,000 draws of q:
    # s.e. = sd(log w) / sqrt(20000) < 0.01 nats here, so 0.05 is over 5 s.e.
    reverse = kl_divergence(MultivariateNormal(q.mean, torch.diag_embed(q.variance)), posterior)
    assert torch.allclose(out["gap"], reverse, atol=0.05)
    assert (reverse - exact).abs().max() > 0.1  # the two directions differ: the test tells them apart
    with pytest.raises(ValueError, match="2-dimensional"):
        fig25.posterior_comparison(iv.VAE(ThreeDimEncoder(), decoder).double(), x, config)


def test_fig25_runs_at_a_tiny_size_and_caches_its_models(tmp_path, monkeypatch):
    iv.load_mnist("train"), iv.load_mnist("test")  # MNIST is cached per process before the cache directory moves
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    config = fig25.MnistInferenceConfig(
        sizes=(60, 120), iterations=2, batch_size=20, hidden=32, plot_size=60, num_codes=60, eval_every=1,
        plot_iterations=3, plot_batch_size=10,
        num_posterior_images=2, grid_size=20, num_posterior_samples=20, num_generated=30,
        plot_seeds=(0, 1), control_lr=1e-3, control_batch_size=5,
    )
    out = fig25.run(config, progress=False)
    assert isinstance(out, Outcome) and out.name == "fig2-5"
    for obj in fig25.OBJECTIVES:
        for n in ("60", "120"):
            for split in ("train", "test"):
                stats = out.results["fig2"][obj][n][split]
                assert math.isfinite(stats["log_det"]) and stats["encoder_variance"] > 0
        assert out.results["fig3"][obj]["kl"] > -0.5  # a KL, up to Monte Carlo error
        assert len(out.results["fig4"][obj]["kl"]) == 2 and min(out.results["fig4"][obj]["kl"]) > -0.1
        assert set(out.results["fig5"][obj]) == {"reconstructions", "samples"}
    assert out.results["training"]["mmd-z10-N60"]["log_det_test"][0] == [1, 2]
    assert out.results["training"]["mmd-z2-N60"]["loss"][0][-1] == 3  # the plot models' own length
    assert out.results["training"]["elbo-z10-N60"]["seconds"][1][0] > 0
    written = out.save(tmp_path, stem="tiny")
    assert {p.name for p in written} == {"tiny.json", "tiny-training.png", "tiny-collapse.png"} | {
        f"tiny-fig{i}.png" for i in (2, 3, 4, 5)}
    json.loads((tmp_path / "tiny.json").read_text())
    # two seeds of the plot models and of MMD-VAE's two controls, each run recorded
    assert set(out.results["collapse"]) == {"elbo", "mmd", "mmd-batch5", "mmd-lr0.001"}
    assert out.results["variants"]["mmd-lr0.001"] == {"objective": "mmd", "lr": 1e-3, "batch_size": 10, "iterations": 3}
    for runs in out.results["collapse"].values():
        assert [r["seed"] for r in runs] == [0, 1] and all(len(r["kl"][1]) == 3 for r in runs)
    for obj in fig25.OBJECTIVES:
        assert [r["seed"] for r in out.results["fig4_seeds"][obj]] == [0, 1]
        assert out.results["fig4_seeds"][obj][0] == {"seed": 0, **out.results["fig4"][obj]}  # the figures: first seed
        assert out.results["fig4_seeds"][obj][0]["gap"] != out.results["fig4_seeds"][obj][1]["gap"]
    # 12 trained models cached (2 sizes x 2 objectives, and 2 seeds x (2 plot models + 2 controls)); a second
    # run reads them and measures exactly the same numbers
    assert len(list((tmp_path / "cache" / "infovae" / "dcgan-models").glob("*.pt"))) == 12
    again = fig25.run(config, progress=False)
    assert again.to_json()["results"] == out.to_json()["results"]
    other = fig25.run(replace(config, lr=1e-2), progress=False, cache=False)  # not read from the cache
    assert other.to_json()["results"]["fig2"] != out.to_json()["results"]["fig2"]

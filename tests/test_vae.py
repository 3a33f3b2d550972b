"""The VAE contract: the latent dimension from construction, the prior as a module, per-pixel
decoders refused everywhere, and a VAE from a user's own modules used end to end."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, Independent, Normal

import infovae as iv
from _user_models import user_modules
from infovae import metrics
from infovae.train import TrainConfig, Trainer
from infovae.tuning import suggest_lambda
from infovae.vae import GaussianPrior, check_decoder_output

DX, DZ = 12, 3


UserEncoder, UserDecoder = user_modules(DX, DZ)


def user_model(**kwargs) -> iv.VAE:
    torch.manual_seed(0)
    return iv.VAE(UserEncoder(), UserDecoder(**kwargs), latent_dim=DZ)


def binary_data(n: int = 64) -> torch.Tensor:
    return torch.bernoulli(torch.full((n, DX), 0.3), generator=torch.Generator().manual_seed(1))


# ----------------------------------------------------------------------------- latent_dim


def test_latent_dim_is_known_at_construction_without_an_encoder_attribute():
    model = user_model()
    assert model.latent_dim == DZ
    assert model.prior().event_shape == (DZ,)
    assert model.sample(4).shape == (4, DX)  # before any encode
    # on main this failed: "Value is not broadcastable ... torch.Size([0])"
    assert metrics.log_likelihood(model, binary_data(5), 10).shape == (5,)


def test_latent_dim_from_the_prior_or_a_wrapped_encoder():
    assert iv.VAE(UserEncoder(), UserDecoder(), prior=GaussianPrior(DZ)).latent_dim == DZ
    encoder = nn.Sequential(nn.Flatten(), iv.networks.MLPEncoder((DX,), DZ))
    assert iv.VAE(encoder, UserDecoder()).latent_dim == DZ


def test_unknown_or_disagreeing_latent_dim_is_refused():
    with pytest.raises(TypeError, match="dimension of z is unknown"):
        iv.VAE(UserEncoder(), UserDecoder())
    with pytest.raises(ValueError, match="disagrees"):
        iv.VAE(UserEncoder(), UserDecoder(), prior=GaussianPrior(DZ + 1), latent_dim=DZ)
    with pytest.raises(ValueError, match="latent_dim must be a positive integer"):
        iv.VAE(UserEncoder(), UserDecoder(), latent_dim=0)
    with pytest.raises(TypeError, match="nn.Modules"):
        iv.VAE(lambda x: x, UserDecoder(), latent_dim=DZ)
    with pytest.raises(ValueError, match="encoder returned a 3-dim z, the model's prior is 4-dim"):
        iv.VAE(UserEncoder(), nn.Linear(4, DX), latent_dim=4).encode(binary_data(2))


# ----------------------------------------------------------------------------- the prior


def test_prior_is_saved_follows_dtype_and_reloads_then_samples():
    model = iv.VAE(UserEncoder(), UserDecoder(), prior=GaussianPrior(DZ, loc=0.5, scale=2.0))
    state = model.state_dict()
    assert {"prior.loc", "prior.log_scale"} <= set(state)
    fresh = iv.VAE(UserEncoder(), UserDecoder(), prior=GaussianPrior(DZ))
    fresh.load_state_dict(state)
    assert torch.allclose(fresh.prior().mean, torch.full((DZ,), 0.5))
    assert fresh.sample(3).shape == (3, DX)  # reload-then-sample
    assert model.double().prior().mean.dtype == torch.float64


def test_a_distribution_prior_becomes_a_module():
    prior = Independent(Normal(torch.ones(DZ), torch.full((DZ,), 2.0)), 1)
    model = iv.VAE(UserEncoder(), UserDecoder(), prior=prior)
    assert isinstance(model.prior, GaussianPrior) and "prior.loc" in model.state_dict()
    assert model.double().prior().stddev.dtype == torch.float64
    with pytest.raises(ValueError, match="wrap it in Independent"):
        iv.VAE(UserEncoder(), UserDecoder(), prior=Normal(torch.zeros(DZ), 1.0))


def test_state_dicts_without_a_prior_still_load():
    """Checkpoints and caches written before the prior was saved (standard normal prior)."""
    model = user_model()
    old = {k: v for k, v in model.state_dict().items() if not k.startswith("prior.")}
    user_model().load_state_dict(old)  # strict


def test_learnable_prior_trains():
    model = iv.VAE(UserEncoder(), UserDecoder(), prior=GaussianPrior(DZ, learnable=True))
    assert {"prior.loc", "prior.log_scale"} <= {n for n, _ in model.named_parameters()}
    loss = iv.InfoVAELoss(alpha=0.0, lam=1.0, divergence="none")(model, binary_data(8)).loss
    loss.backward()
    assert model.prior.loc.grad is not None and model.prior.loc.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- per-pixel decoders


def test_per_pixel_decoders_are_refused_by_loss_trainer_tuning_and_metrics():
    model, x = user_model(per_pixel=True), binary_data()
    msg = "wrap it in Independent"
    with pytest.raises(ValueError, match=msg):
        iv.InfoVAELoss.mmd_vae()(model, x)
    with pytest.raises(ValueError, match=msg):
        Trainer(model, iv.InfoVAELoss.elbo(), x, TrainConfig(iterations=2, batch_size=8, progress=False), device="cpu").run()
    with pytest.raises(ValueError, match=msg):
        suggest_lambda(model, x)
    with pytest.raises(ValueError, match=msg):
        metrics.log_likelihood(model, x, 4)
    with pytest.raises(ValueError, match=msg):
        metrics.shuffled_code_gap(model, x)
    with pytest.raises(ValueError, match=msg):
        metrics.posterior_samples(model, x, 4, num_proposals=4)


def test_check_decoder_output_names_the_problem():
    x = torch.zeros(4, 1, 5, 5)
    with pytest.raises(TypeError, match="must return a torch Distribution"):
        check_decoder_output(torch.zeros(4), x)
    with pytest.raises(ValueError, match=r"Independent\(dist, 3\)"):
        check_decoder_output(Bernoulli(logits=torch.zeros(4, 1, 5, 5)), x)
    with pytest.raises(ValueError, match="has shape"):
        check_decoder_output(Independent(Bernoulli(logits=torch.zeros(4, 25)), 1), x)
    assert check_decoder_output(Independent(Bernoulli(logits=torch.zeros(4, 1, 5, 5)), 3), x) is not None


# ----------------------------------------------------------------------------- end to end


def test_a_user_vae_trains_saves_reloads_samples_and_is_evaluated_by_every_metric(tmp_path):
    x = binary_data(200)
    model = user_model()
    config = TrainConfig(iterations=20, batch_size=20, lr=1e-2, binarize=None, checkpoint=str(tmp_path / "c.pt"),
                         progress=False, log_every=10)
    Trainer(model, iv.InfoVAELoss.mmd_vae(lam=10.0), x, config, device="cpu").run()
    reloaded = user_model()
    reloaded.load_state_dict(iv.train.load_checkpoint(tmp_path / "c.pt")["model"])
    for a, b in zip(model.state_dict().values(), reloaded.state_dict().values()):
        assert torch.equal(a, b)
    assert reloaded.sample(5).shape == (5, DX)
    ll = metrics.log_likelihood_with_error(reloaded, x[:10], 20)
    assert ll.estimate.shape == (10,) and bool(torch.isfinite(ll.estimate).all())
    assert metrics.posterior_samples(reloaded, x[:4], 5, num_proposals=20).samples.shape == (5, 4, DZ)
    z = metrics.encode_codes(reloaded, x)
    assert z.shape == (200, DZ)
    assert metrics.full_batch_mmd(z, reloaded.prior()) >= 0
    assert metrics.log_det_covariance(z).total < 10
    assert 0 - 0.1 <= metrics.mutual_information(reloaded, x) <= torch.log(torch.tensor(200.0)) + 0.1
    assert isinstance(metrics.shuffled_code_gap(reloaded, x), float)
    assert metrics.active_units(reloaded, x).variances.shape == (DZ,)
    classifier = nn.Linear(DX, 10)
    assert metrics.class_distribution_cross_entropy(classifier, reloaded.sample(50)).histogram.shape == (10,)
    labels = torch.arange(200) % 2
    err = metrics.semi_supervised_error(z, labels, z, labels, num_labels=40, num_draws=1, folds=2)
    assert 0 <= err.mean <= 1

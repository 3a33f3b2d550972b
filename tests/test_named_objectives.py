"""The experiments' objectives by name (``experiments.base.named_objective``): one home, the presets' configs."""

import pytest

from infovae.experiments import information_preference as ip
from infovae.experiments import mnist_inference as mi
from infovae.experiments import pixelcnn_models as pm
from infovae.experiments import two_points as tp
from infovae.experiments.base import NAMED_OBJECTIVES, named_objective
from infovae.objective import InfoVAELoss


def _same(a: InfoVAELoss, b: InfoVAELoss) -> bool:
    return a.config.as_dict() == b.config.as_dict()


def test_every_experiment_builds_the_preset_it_names():
    c = mi.MnistInferenceConfig.for_profile("book")
    assert _same(mi.make_loss("mmd", c), InfoVAELoss.mmd_vae(lam=1000.0, alpha=0.0))
    assert _same(mi.make_loss("elbo", c), InfoVAELoss(alpha=0.0, lam=1.0, divergence="none"))
    t = tp.TwoPointsConfig.for_profile("book")
    assert _same(tp.make_loss("infovae", t),
                 InfoVAELoss(alpha=0.0, lam=t.lam, divergence="mmd", num_prior_samples=t.num_prior_samples))
    p = ip.PreferenceConfig.for_profile("book")
    assert _same(ip.make_loss("mmd", p), InfoVAELoss(alpha=1.0, lam=p.lam, divergence="mmd"))
    assert _same(ip.make_loss("elbo-cold", p), InfoVAELoss.elbo())
    assert ip.make_loss("elbo-authors", p).kl_weight == pytest.approx(p.image_size**2 / p.latent_dim)
    assert _same(ip.make_loss("beta", p, beta=2.0), InfoVAELoss(alpha=-1.0, lam=2.0, divergence="none"))
    s = pm.setup_for_profile("book")
    assert _same(pm.make_loss("stein", 5, s), InfoVAELoss(alpha=1.0, lam=s.lam, divergence="stein"))
    assert pm.make_loss("elbo-authors", 5, s).kl_weight == pytest.approx(784 / 5)
    assert _same(pm.make_loss("autoencoder", 5, s), InfoVAELoss(alpha=1.0, lam=1.0, divergence="none"))
    assert _same(pm.make_loss("adversarial", 5, s), InfoVAELoss(
        alpha=1.0, lam=s.adversarial_lam, divergence=s.adversarial, latent_dim=5,
        critic_hidden=s.critic_hidden, critic_lr=s.critic_lr))


@pytest.mark.parametrize("name,kwargs,message", [
    ("vae", {}, "unknown objective 'vae'; choose one of elbo"),
    ("beta", {}, "needs a beta"),
    ("elbo-authors", {}, "needs latent_dim"),
    ("elbo", {"num_prior_samples": 10}, "takes no options"),
])
def test_bad_names_and_missing_parameters_are_named(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        named_objective(name, **kwargs)
    assert name == "vae" or name in NAMED_OBJECTIVES

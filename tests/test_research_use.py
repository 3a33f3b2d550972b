"""The package as a researcher uses it (issue 24): reproducible models, precision that is never a
silent no-op, self-describing checkpoints, clear errors for the usual mistakes, any data shape,
and an import that does not pull in scikit-learn, scipy or matplotlib."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, Independent

import infovae as iv
from _user_models import user_modules
from infovae.train import NonFiniteLossError, TrainConfig, Trainer, load_checkpoint, load_weights, plain_weights

DX, DZ = 6, 2
Enc, Dec = user_modules(DX, DZ)


class DeclaredEnc(Enc):
    latent_dim = DZ


def binary(n=40, shape=(1, 28, 28)):
    return torch.bernoulli(torch.full((n, *shape), 0.3), generator=torch.Generator().manual_seed(0))


def config(**kw):
    return TrainConfig(**{"iterations": 2, "batch_size": 10, "lr": 1e-3, "progress": False, "log_every": 1, **kw})


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_two_runs_of_the_readme_snippet_give_identical_weights_and_the_checkpoint_has_both_seeds(tmp_path):
    runs = []
    for global_seed in (1, 2):  # whatever ran before
        torch.manual_seed(global_seed)
        model = iv.build_vae("mlp", 3, seed=0)
        Trainer(model, iv.InfoVAELoss.mmd_vae(), binary(), config(checkpoint=str(tmp_path / f"{global_seed}.pt")),
                device="cpu").run()
        runs.append(model)
    assert same_weights(*runs)
    state = load_checkpoint(tmp_path / "1.pt")
    assert state["model_spec"]["seed"] == 0 and state["config"]["seed"] == 0


def test_bf16_for_networks_that_cannot_take_it_is_refused_or_said(monkeypatch):
    monkeypatch.setattr("infovae.train.loop.resolve_training_precision", lambda precision, device: "bf16")  # a native-bf16 device
    user = iv.VAE(DeclaredEnc(), Dec())
    with pytest.raises(ValueError, match="precision='bf16'.*network_region.*precision='fp32'"):
        Trainer(user, iv.InfoVAELoss.elbo(), binary(shape=(DX,)), config(precision="bf16"), device="cpu")
    with pytest.warns(UserWarning, match="precision='auto' runs in fp32"):
        trainer = Trainer(user, iv.InfoVAELoss.elbo(), binary(shape=(DX,)), config(precision="auto"), device="cpu")
    assert trainer.precision == "fp32"
    assert Trainer(iv.build_vae("mlp", 2), iv.InfoVAELoss.elbo(), binary(), config(precision="bf16"),
                   device="cpu").precision == "bf16"


def test_checkpoints_describe_their_model(tmp_path):
    path = tmp_path / "run.pt"
    trainer = Trainer(iv.build_vae("dcgan", 3, seed=1), iv.InfoVAELoss.elbo(), binary(), config(checkpoint=str(path)),
                      device="cpu")
    trainer.run()
    for loaded in (iv.load(path), iv.VAE.from_checkpoint(path)):
        assert loaded.spec == trainer.model.spec and same_weights(loaded, trainer.model) and not loaded.training
    other = Trainer(iv.build_vae("dcgan", 4), iv.InfoVAELoss.elbo(), binary(), config(checkpoint=str(path)), device="cpu")
    with pytest.raises(ValueError, match="model latent_dim: checkpoint 3, now 4"):
        other.resume()
    user = Trainer(iv.VAE(DeclaredEnc(), Dec()), iv.InfoVAELoss.elbo(), binary(shape=(DX,)),
                   config(checkpoint=str(tmp_path / "user.pt")), device="cpu")
    user.run()
    with pytest.raises(ValueError, match="does not say how its model was built.*load_weights"):
        iv.load(tmp_path / "user.pt")
    bigger = iv.VAE(DeclaredEnc(), Dec())
    bigger.decoder.net = nn.Linear(DZ, DX + 1)
    with pytest.raises(ValueError, match="weights of another model"):
        load_weights(bigger, load_checkpoint(tmp_path / "user.pt")["model"])


class Compiled(nn.Module):
    """What torch.compile returns: the module under ``_orig_mod``, its names prefixed."""

    def __init__(self, module):
        super().__init__()
        self._orig_mod = module


def test_compiled_models_weights_load_into_plain_ones_and_back():
    plain, compiled = iv.build_vae("mlp", 2, seed=0), Compiled(iv.build_vae("mlp", 2, seed=1))
    assert all(k.startswith("_orig_mod.") for k in compiled.state_dict())
    load_weights(plain, compiled.state_dict())
    assert same_weights(plain, compiled._orig_mod)
    load_weights(compiled, plain_weights(iv.build_vae("mlp", 2, seed=2)))
    assert same_weights(compiled._orig_mod, iv.build_vae("mlp", 2, seed=2))


def test_an_adversarial_loss_without_latent_dim_resumes_exactly(tmp_path):
    def make(iterations, latent_dim):
        torch.manual_seed(0)  # the critic's initial weights come from the global generator (resumed: from the file)
        loss = iv.InfoVAELoss.adversarial(latent_dim=latent_dim, critic_hidden=8)
        return Trainer(iv.build_vae("mlp", 2, seed=0), loss, binary(),
                       config(iterations=iterations, checkpoint=str(tmp_path / "a.pt")), device="cpu")

    reference = make(4, 2)
    reference.run()
    make(2, 2).run()
    resumed = make(4, None).resume()  # no latent_dim: no critic until the checkpoint's is loaded
    assert resumed.loss_fn.critic is not None
    resumed.run()
    assert same_weights(resumed.model, reference.model) and same_weights(resumed.loss_fn, reference.loss_fn)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch without CUDA")
def test_a_device_that_does_not_exist_is_named():
    with pytest.raises(ValueError, match="device='cuda' but CUDA is not available here.*device='cpu'"):
        Trainer(iv.build_vae("mlp", 2), iv.InfoVAELoss.elbo(), binary(), config(), device="cuda")


def test_a_run_shorter_than_log_every_logs_what_it_has():
    history = Trainer(iv.build_vae("mlp", 2), iv.InfoVAELoss.elbo(), binary(), config(iterations=3, log_every=100),
                      device="cpu").run()
    assert history.steps("loss") == [3] and len(history["kl"]) == 1


def test_a_loss_may_return_a_plain_tensor_and_anything_else_is_named():
    elbo = iv.InfoVAELoss.elbo()
    history = Trainer(iv.build_vae("mlp", 2), lambda m, x: elbo(m, x).loss, binary(), config(), device="cpu").run()
    assert history.names == ["loss"] and len(history["loss"]) == 2
    with pytest.raises(TypeError, match="scalar tensor or an object with a .loss tensor.*got dict"):
        Trainer(iv.build_vae("mlp", 2), lambda m, x: {"loss": elbo(m, x).loss}, binary(), config(), device="cpu").run()
    with pytest.raises(ValueError, match="floating point scalar.*loss.mean"):
        Trainer(iv.build_vae("mlp", 2), lambda m, x: elbo(m, x).reconstruction, binary(), config(), device="cpu").run()


def test_data_of_another_dtype_than_the_model_is_named():
    with pytest.raises(TypeError, match="the data are torch.float64 but the model's parameters are torch.float32"):
        Trainer(iv.build_vae("mlp", 2), iv.InfoVAELoss.elbo(), binary().double(), config(), device="cpu")


class NaNDecoder(Dec):
    def forward(self, z):
        return Independent(Bernoulli(logits=self.net(z) * float("nan"), validate_args=True), 1)


def test_the_nan_message_shows_the_invalid_values_on_one_line():
    trainer = Trainer(iv.VAE(DeclaredEnc(), NaNDecoder()), iv.InfoVAELoss.elbo(), binary(shape=(DX,)), config(),
                      device="cpu")
    with pytest.raises(NonFiniteLossError, match=r"found invalid values: tensor\(\[\[nan") as err:
        trainer.run()
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("shape,likelihood", [((3, 16, 16), "gaussian"), ((1, 18, 22), "bernoulli"), ((5,), "gaussian")])
def test_build_vae_takes_any_image_shape_and_either_likelihood(shape, likelihood):
    architecture = "mlp" if len(shape) == 1 else "dcgan"
    model = iv.build_vae(architecture, 3, shape=shape, likelihood=likelihood, seed=0)
    x = torch.rand(20, *shape, generator=torch.Generator().manual_seed(0))
    x = x if likelihood == "gaussian" else x.round()
    history = Trainer(model, iv.InfoVAELoss.mmd_vae(), x, config(), device="cpu").run()
    assert model.sample(2).shape == (2, *shape) and len(history["loss"]) == 2
    with pytest.raises(ValueError, match="single-channel"):
        iv.build_vae("pixelcnn", 3, shape=(3, 28, 28))
    with pytest.raises(ValueError, match="likelihood of 'pixelcnn' must be one of 'bernoulli'"):
        iv.build_vae("pixelcnn", 3, likelihood="gaussian")


def test_the_default_models_are_those_of_the_paper():
    """The defaults are unchanged: the same modules in the same order (so the same initial weights)."""
    assert [tuple(p.shape) for p in iv.build_vae("dcgan", 5).parameters()] == [
        (64, 1, 4, 4), (64,), (128, 64, 4, 4), (128,), (1024, 6272), (1024,), (10, 1024), (10,),
        (1024, 5), (1024,), (6272, 1024), (6272,), (128, 64, 4, 4), (64,), (64, 1, 4, 4), (1,),
    ]


def test_import_infovae_leaves_scikit_learn_scipy_and_matplotlib_for_later():
    code = ("import sys, infovae as iv; heavy = [m for m in ('sklearn', 'scipy', 'matplotlib') if m in sys.modules];"
            "assert not heavy, heavy; iv.metrics.semi_supervised_error; assert 'infovae.metrics' in sys.modules")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"OMP_NUM_THREADS": "1",
                         "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr[-2000:]


def test_iterations_zero_is_refused():
    with pytest.raises(ValueError, match="iterations must be a positive integer, got 0"):
        TrainConfig(iterations=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TrainConfig(iterations=1)

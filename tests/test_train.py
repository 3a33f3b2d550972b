"""The trainer: every model learns, resume is bit-for-bit, NaN stops it, checkpoints are atomic."""

import dataclasses
import math

import pytest
import torch

import infovae as iv
from infovae.networks import ConvEncoder, build_vae
from infovae.pixelcnn import PixelCNNConfig, PixelCNNDecoder
from infovae.train import NonFiniteLossError, TrainConfig, Trainer, evaluate, load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def digits():
    """300 grey-level digits (binarized afresh by the trainer)."""
    return iv.load_mnist("valid")[0][:300]


def _small_pixelcnn(latent_dim):
    encoder = ConvEncoder(latent_dim, hidden=64, batch_norm=True, min_std=1e-3, std_floor="max")
    return iv.VAE(encoder, PixelCNNDecoder(PixelCNNConfig(latent_dim=latent_dim, layers=3, channels=8)))


CASES = {
    "toy-elbo": (lambda: build_vae("toy", 1), lambda: iv.InfoVAELoss.elbo(), dict(binarize=None, lr=1e-3)),
    "mlp-mmd": (lambda: build_vae("mlp", 4), lambda: iv.InfoVAELoss.mmd_vae(), dict(lr=1e-3, binarize="stochastic")),
    "dcgan-elbo": (
        lambda: build_vae("dcgan", 4), lambda: iv.InfoVAELoss.elbo(), dict(lr=3e-4, iterations=10, binarize="stochastic")
    ),
    "pixelcnn-mmd": (
        lambda: _small_pixelcnn(4),
        lambda: iv.InfoVAELoss.mmd_vae(alpha=1.0),
        dict(optimizer="rmsprop", lr=1e-3, clip="value", binarize="stochastic"),
    ),
    "mlp-autoencoder": (
        lambda: build_vae("mlp", 4, deterministic=True), lambda: iv.InfoVAELoss.autoencoder(), dict(lr=1e-3, binarize="stochastic")
    ),
    "mlp-elbo-adamw-steplr": (
        lambda: build_vae("mlp", 4),
        lambda: iv.InfoVAELoss.elbo(),
        dict(lr=1e-3, binarize="stochastic", optimizer="adamw", optimizer_options={"weight_decay": 1e-4},
             scheduler="steplr", scheduler_options={"step_size": 3, "gamma": 0.8}),
    ),
    "mlp-wgan": (
        lambda: build_vae("mlp", 4),
        lambda: iv.InfoVAELoss.adversarial(divergence="wgan-gp", latent_dim=4),
        dict(lr=1e-3, binarize="stochastic"),
    ),
}


def _trainer(case, data, seed=0, init_seed=None, **overrides):
    make_model, make_loss, options = CASES[case]
    torch.manual_seed(seed if init_seed is None else init_seed)
    model, loss_fn = make_model(), make_loss()
    defaults = {"iterations": 30, "batch_size": 20, "log_every": 5, "progress": False, "seed": seed}
    config = TrainConfig(**{**defaults, **options, **overrides})
    return Trainer(model, loss_fn, data, config, device="cpu")


def _toy_data():
    return iv.data.two_point_data(200)


@pytest.mark.parametrize("case", list(CASES))
def test_short_training_lowers_the_loss(case, digits):
    data = _toy_data() if case.startswith("toy") else digits
    trainer = _trainer(case, data)
    history = trainer.run()
    losses = history["loss"]
    assert history.steps("loss") == list(range(5, trainer.config.iterations + 1, 5))
    assert losses[-1] < losses[0], f"{case}: {losses}"
    if case == "mlp-wgan":
        assert "critic_loss" in history and "divergence" in history


@pytest.mark.parametrize("case", ["mlp-mmd", "mlp-wgan", "pixelcnn-mmd", "mlp-elbo-adamw-steplr"])
def test_resume_continues_bit_for_bit(case, digits, tmp_path):
    """20 steps in one go == 7 steps, checkpoint, fresh objects, resume, 13 steps (CPU)."""
    straight = _trainer(case, digits, iterations=20, log_every=4)
    straight.run()

    first = _trainer(case, digits, iterations=7, log_every=4, checkpoint=str(tmp_path / "ck.pt"))
    first.run()
    resumed = _trainer(case, digits, init_seed=99, iterations=20, log_every=4, checkpoint=str(tmp_path / "ck.pt"))
    torch.manual_seed(123)  # the global state is not the trainer's: it keeps its own
    resumed.resume()  # other weights until the checkpoint's states are loaded
    assert resumed.step == 7
    resumed.run()

    assert resumed.history.series == straight.history.series
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    for a, b in zip(straight.loss_fn.state_dict().values(), resumed.loss_fn.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(straight.next_batch(), resumed.next_batch())


class _PoisonedLoss(torch.nn.Module):
    """The real loss, with one term made NaN from call ``at`` on."""

    def __init__(self, at, term):
        super().__init__()
        self.inner, self.at, self.term, self.calls = iv.InfoVAELoss.mmd_vae(), at, term, 0

    def forward(self, model, x):
        out = self.inner(model, x)
        self.calls += 1
        if self.calls < self.at:
            return out
        bad = getattr(out, self.term) * math.nan
        return dataclasses.replace(out, **{self.term: bad, "loss": out.loss + bad.mean()})


@pytest.mark.parametrize("term", ["reconstruction", "divergence"])
def test_non_finite_loss_stops_with_the_step_and_term(term, digits, tmp_path):
    torch.manual_seed(0)
    model = build_vae("mlp", 2)
    path = tmp_path / "ck.pt"
    config = TrainConfig(iterations=10, batch_size=20, log_every=1, checkpoint=str(path), checkpoint_every=2, progress=False,
                         binarize="stochastic")
    trainer = Trainer(model, _PoisonedLoss(at=4, term=term), digits, config, device="cpu")
    with pytest.raises(NonFiniteLossError, match=rf"step 4: the {term} term .*step 2"):
        trainer.run()
    assert trainer.step == 3  # step 4 never touched the parameters
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert load_checkpoint(path)["step"] == 2


def test_checkpoint_write_is_atomic(digits, tmp_path, monkeypatch):
    trainer = _trainer("mlp-mmd", digits, iterations=3, checkpoint=str(tmp_path / "ck.pt"))
    trainer.run()
    good = (tmp_path / "ck.pt").read_bytes()

    def crash(obj, fh, *args, **kwargs):
        fh.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        trainer.run(2)  # run() checkpoints at its end
    assert (tmp_path / "ck.pt").read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temporary file left behind
    assert load_checkpoint(tmp_path / "ck.pt")["step"] == 3


class _Payload:
    def __reduce__(self):
        return (print, ("arbitrary code ran",))


def test_checkpoints_load_weights_only(tmp_path):
    save_checkpoint({"format": 1, "payload": _Payload()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="evil.pt is not an infovae checkpoint .it holds objects other than tensors"):
        load_checkpoint(tmp_path / "evil.pt")  # refused, never torch's advice to load with weights_only=False
    save_checkpoint({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an infovae checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_batches_hooks_and_clipping(digits):
    calls = []

    def hook(trainer):
        calls.append((trainer.step, trainer.model.training))
        return {"val": float(trainer.step)}

    trainer = _trainer("mlp-mmd", digits, iterations=6, eval_every=3, clip="value", clip_value=1e-4)
    trainer.hooks.append(hook)
    x = trainer.next_batch()
    assert x.shape == (20, 1, 28, 28) and set(x.unique().tolist()) <= {0.0, 1.0}
    trainer.run()
    assert calls == [(3, False), (6, False)] and trainer.model.training
    assert trainer.history.steps("val") == [3, 6] and trainer.history["val"] == [3.0, 6.0]
    assert max(p.grad.abs().max() for p in trainer.model.parameters()) <= 1e-4
    assert isinstance(trainer.optimizer, torch.optim.Adam)
    assert isinstance(_trainer("pixelcnn-mmd", digits).optimizer, torch.optim.RMSprop)


def test_evaluate_averages_the_terms(digits):
    torch.manual_seed(0)
    model, loss_fn = build_vae("mlp", 2), iv.InfoVAELoss.elbo()
    x = iv.data.binarize_images(digits[:40], "threshold")
    result = evaluate(model, loss_fn, x, batch_size=15)
    torch.manual_seed(1)
    model.eval()
    with torch.no_grad():
        full = loss_fn(model, x)
    torch.testing.assert_close(result["kl"], full.kl.mean().item(), rtol=1e-5, atol=1e-5)  # kl is closed form
    assert set(result) == {"loss", "reconstruction", "kl"}


@pytest.mark.parametrize(
    "options,message",
    [
        (dict(optimizer="sgd_"), "optimizer must be one of"),
        (dict(optimizer="SGD"), "lower case"),
        (dict(optimizer="sgd", optimizer_options={"momentum": -1.0}), "rejects optimizer='sgd'.*momentum"),
        (dict(optimizer="sgd", optimizer_options={"betas": [0.5, 0.9]}), r"\['betas'\]: SGD does not take"),
        (dict(optimizer="adam", optimizer_options={"lr": 0.1}), "must not set lr"),
        (dict(scheduler="cosine"), "scheduler must be one of None, "),
        (dict(scheduler="cosineannealinglr"), "rejects scheduler='cosineannealinglr'.*T_max"),
        (dict(scheduler="steplr", scheduler_options={"step_size": 2, "warmup": 3}), r"\['warmup'\]"),
        (dict(scheduler_options={"step_size": 2}), "without a scheduler"),
        (dict(clip="both"), "clip"),
        (dict(lr=0.0), "lr"),
        (dict(batch_size=0), "batch_size"),
        (dict(binarize="dither"), "binarize"),
        (dict(iterations=-1), "iterations"),
    ],
)
def test_config_is_validated(options, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**options)


def test_config_options_must_be_plain_dicts():
    with pytest.raises(TypeError, match="optimizer_options must be a dict"):
        TrainConfig(optimizer_options=[("momentum", 0.9)])
    with pytest.raises(TypeError, match="plain values"):
        TrainConfig(optimizer="sgd", optimizer_options={"momentum": torch.tensor(0.9)})


def test_sgd_step_is_the_closed_form(digits):
    """Plain SGD (any torch.optim optimiser by name): after a step, p = p0 - lr * grad, up to the
    rounding of one float32 operation (relative 2^-23 of |p|; 2^-22 allowed)."""
    trainer = _trainer("mlp-mmd", digits, optimizer="sgd", lr=0.05)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train_step()
    for name, p in trainer.model.named_parameters():
        torch.testing.assert_close(p.detach(), before[name] - 0.05 * p.grad, rtol=2**-22, atol=1e-7)


def test_a_scheduler_sets_the_rate_of_each_step(digits):
    """Cosine annealing over 12 steps: the logged rate of step t (1-based) is the closed form
    eta_min + (lr - eta_min) (1 + cos(pi (t - 1) / T)) / 2."""
    lr, eta_min, T = 1e-3, 1e-5, 12
    trainer = _trainer("mlp-mmd", digits, iterations=T, log_every=1, lr=lr,
                       scheduler="cosineannealinglr", scheduler_options={"T_max": T, "eta_min": eta_min})
    history = trainer.run()
    expected = [eta_min + (lr - eta_min) * (1 + math.cos(math.pi * (t - 1) / T)) / 2 for t in range(1, T + 1)]
    assert history.steps("lr") == list(range(1, T + 1))
    torch.testing.assert_close(torch.tensor(history["lr"], dtype=torch.float64),
                               torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=0)
    assert "lr" not in _trainer("mlp-mmd", digits, iterations=2, log_every=1).run()  # no scheduler: not logged


def test_resume_refuses_another_optimizer_or_schedule(digits, tmp_path):
    path = str(tmp_path / "ck.pt")
    _trainer("mlp-elbo-adamw-steplr", digits, iterations=3, checkpoint=path).run()
    other = _trainer("mlp-elbo-adamw-steplr", digits, iterations=6, checkpoint=path,
                     scheduler_options={"step_size": 3, "gamma": 0.5}, optimizer="sgd", optimizer_options={})
    with pytest.raises(ValueError, match=r"optimizer: checkpoint 'adamw', now 'sgd'.*scheduler_options"):
        other.resume()


def test_bad_data_is_rejected():
    model, loss_fn = build_vae("toy", 1), iv.InfoVAELoss.elbo()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Trainer(model, loss_fn, iv.data.two_point_data(50), TrainConfig(batch_size=10, binarize="stochastic"), device="cpu")
    with pytest.raises(ValueError, match="exceeds"):
        Trainer(model, loss_fn, iv.data.two_point_data(5), TrainConfig(batch_size=10, binarize=None), device="cpu")
    with pytest.raises(ValueError, match="NaN"):
        Trainer(model, loss_fn, torch.full((20, 1), math.nan), TrainConfig(batch_size=10, binarize=None), device="cpu")

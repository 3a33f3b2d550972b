"""Training that cannot lose work: non-finite gradients and forward failures stop before the
step, checkpoints are never written over with non-finite weights, resume refuses other settings,
the trainer owns its random streams and accepts datasets."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, Independent, Normal
from torch.utils.data import DataLoader, TensorDataset

import infovae as iv
from _user_models import user_modules
from infovae.train import NonFiniteLossError, TrainConfig, Trainer, load_checkpoint

DX, DZ = 6, 2


class Enc(user_modules(DX, DZ)[0]):
    latent_dim = DZ


class Dec(nn.Module):
    def __init__(self, nan_gradient_from: int | None = None):
        super().__init__()
        self.net = nn.Linear(DZ, DX)
        self.calls, self.nan_gradient_from = 0, nan_gradient_from

    def forward(self, z):
        self.calls += 1
        logits = self.net(z)
        if self.nan_gradient_from is not None and self.calls >= self.nan_gradient_from:
            logits = logits + torch.sqrt(z[:, :1] * 0)  # value 0, gradient NaN
        return Independent(Bernoulli(logits=logits), 1)


def data(n=40):
    return torch.bernoulli(torch.full((n, DX), 0.4), generator=torch.Generator().manual_seed(0))


def make(tmp_path=None, decoder=None, loss=None, x=None, **kw):
    torch.manual_seed(0)
    options = {"iterations": 6, "batch_size": 10, "lr": 1e-2, "progress": False, "log_every": 1, **kw}
    if tmp_path is not None:
        options["checkpoint"] = str(tmp_path / "c.pt")
    return Trainer(iv.VAE(Enc(), decoder or Dec()), loss or iv.InfoVAELoss.mmd_vae(lam=10.0), data() if x is None else x,
                   TrainConfig(**options), device="cpu")


def test_a_nan_gradient_under_a_finite_loss_stops_before_the_step_and_keeps_the_checkpoint(tmp_path):
    trainer = make(tmp_path, decoder=Dec(nan_gradient_from=4), checkpoint_every=1)
    with pytest.raises(NonFiniteLossError, match="gradient of encoder.net.weight.*non-finite although the loss was finite"):
        trainer.run()
    assert trainer.step == 3
    assert all(bool(torch.isfinite(p).all()) for p in trainer.model.parameters())
    saved = load_checkpoint(tmp_path / "c.pt")
    assert saved["step"] == 3 and all(bool(torch.isfinite(t).all()) for t in saved["model"].values())


def test_non_finite_values_inside_the_forward_pass_become_non_finite_loss_errors(tmp_path):
    trainer = make(tmp_path)
    with torch.no_grad():
        trainer.model.encoder.net.weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteLossError, match="forward pass met non-finite values"):
        trainer.train_step()
    with pytest.raises(NonFiniteLossError, match="no checkpoint was written"):
        trainer.save()
    assert not (tmp_path / "c.pt").exists()


def test_resume_refuses_other_settings_and_lists_them(tmp_path):
    make(tmp_path).run()
    with pytest.raises(ValueError, match=r"lr: checkpoint 0.01, now 0.5.*objective lam: checkpoint 10.0, now 20.0"):
        make(tmp_path, lr=0.5, loss=iv.InfoVAELoss.mmd_vae(lam=20.0)).resume()
    with pytest.raises(ValueError, match="data size: checkpoint 40, now 30"):
        make(tmp_path, x=data(30)).resume()
    assert make(tmp_path, iterations=9).resume().step == 6  # more iterations is fine
    state = load_checkpoint(tmp_path / "c.pt")
    assert state["objective"] == iv.InfoVAELoss.mmd_vae(lam=10.0).config.as_dict()
    assert iv.InfoVAELoss.from_config(state["objective"]).lam == 10.0


def test_files_that_are_not_checkpoints_are_named(tmp_path):
    for name, content in (("random.pt", os.urandom(256)), ("empty.pt", b"")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=f"{name} is not an infovae checkpoint"):
            make().resume(tmp_path / name)


def test_meta_must_be_plain_at_construction():
    with pytest.raises(TypeError, match="meta.*plain values"):
        Trainer(iv.VAE(Enc(), Dec()), iv.InfoVAELoss.elbo(), data(), TrainConfig(batch_size=10), device="cpu",
                meta={"model": nn.Linear(1, 1)})


def test_binarize_defaults_to_none_and_run_sets_train_mode():
    assert TrainConfig().binarize is None
    grey = torch.full((20, DX), 0.3)  # used as given: a Gaussian decoder could fit it
    trainer = make(x=grey, loss=iv.InfoVAELoss.elbo())
    with pytest.raises(ValueError, match="binarize='stochastic'"):  # a Bernoulli decoder cannot
        trainer.train_step()
    trainer = make()
    trainer.model.eval()
    trainer.run(1)
    assert trainer.model.training


def test_the_trainer_never_touches_the_global_random_state():
    torch.manual_seed(5)
    before = torch.get_rng_state()
    trainer = make()
    torch.set_rng_state(before)
    trainer.run()
    assert torch.equal(torch.get_rng_state(), before)
    # and its own stream is seeded: the same config gives the same weights whatever the global state
    torch.manual_seed(77)
    again = make()
    torch.manual_seed(1234)
    again.run()
    for a, b in zip(trainer.model.parameters(), again.model.parameters()):
        assert torch.equal(a, b)


def test_a_dataset_trains_like_the_tensor_and_resumes_exactly(tmp_path):
    x = data()
    reference = make(x=x)
    reference.run()
    first = make(tmp_path, x=TensorDataset(x), iterations=3)
    first.run()
    second = make(tmp_path, x=TensorDataset(x))
    second.resume()
    second.run()
    for a, b in zip(reference.model.parameters(), second.model.parameters()):
        assert torch.equal(a, b)


def test_a_dataloader_is_honoured_batch_size_collate_and_sampler():
    """The loader's own batches (7 examples, through its collate_fn, in its sampler's order) are what
    the model sees, not the config's batch_size of 10 from the trainer's shuffle."""
    x, seen = data(), []
    flipped = lambda items: 1.0 - torch.stack([item[0] for item in items])  # noqa: E731

    class Recorder(Enc):
        def forward(self, batch):
            seen.append(batch.detach().clone())
            return super().forward(batch)

    order = [3, 1, 4, 15, 9, 2, 6, 5, 35, 8, 7, 9, 32, 38]
    loader = DataLoader(TensorDataset(x), batch_size=7, sampler=order, collate_fn=flipped)
    trainer = Trainer(iv.VAE(Recorder(), Dec()), iv.InfoVAELoss.mmd_vae(lam=10.0), loader,
                      TrainConfig(iterations=3, batch_size=10, progress=False, log_every=1), device="cpu")
    trainer.run()
    expected = [1.0 - x[order[:7]], 1.0 - x[order[7:]], 1.0 - x[order[:7]]]  # a new pass after two batches
    assert len(seen) == 3 and all(torch.equal(a, b) for a, b in zip(seen, expected))


def test_an_unshuffled_dataloader_resumes_exactly_and_a_shuffling_one_says_it_cannot(tmp_path):
    x = data()
    loader = lambda shuffle=False: DataLoader(TensorDataset(x), batch_size=8, shuffle=shuffle)  # noqa: E731
    reference = make(x=loader(), iterations=7)
    reference.run()
    first = make(tmp_path, x=loader(), iterations=3)  # stops mid-pass (5 batches per pass)
    first.run()
    second = make(tmp_path, x=loader(), iterations=7)
    second.resume()
    second.run()
    for a, b in zip(reference.model.parameters(), second.model.parameters()):
        assert torch.equal(a, b)
    with pytest.warns(UserWarning, match="shuffling DataLoader.*not bit-for-bit"):
        make(tmp_path, x=loader(shuffle=True), iterations=9).resume()


def test_any_garbage_file_is_not_an_infovae_checkpoint(tmp_path):
    """500 seeded random payloads of 100-600 bytes: each is refused with the one clear message (random
    bytes used to reach the weights-only unpickler's IndexError/TypeError about 5% of the time)."""
    import random
    import warnings

    rng = random.Random(0)
    path = tmp_path / "garbage.pt"
    for _ in range(500):
        path.write_bytes(rng.randbytes(rng.randrange(100, 600)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about unknown pickle protocols
            with pytest.raises(ValueError, match="is not an infovae checkpoint"):
                load_checkpoint(path)

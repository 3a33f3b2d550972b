"""TrainConfig(compile=True): torch.compile of the networks, in place, so that checkpoints are interchangeable
with those of plain models (the same parameter names) and the numbers are those of the plain model to float32
rounding. One file of its own: the compilation takes ~20-30 s on a CPU."""

from __future__ import annotations

import torch

import infovae as iv
from infovae.train import TrainConfig, Trainer, load_checkpoint

SHAPE = (1, 6, 6)


def run(compiled: bool, path, iterations: int = 4, resume: bool = False) -> Trainer:
    x = torch.bernoulli(torch.rand(60, *SHAPE, generator=torch.Generator().manual_seed(0)),
                        generator=torch.Generator().manual_seed(1))
    config = TrainConfig(iterations=iterations, batch_size=20, lr=1e-3, progress=False, log_every=1, compile=compiled,
                         checkpoint=str(path), checkpoint_every=2)
    trainer = Trainer(iv.build_vae("mlp", 2, shape=SHAPE, seed=0), iv.InfoVAELoss.mmd_vae(lam=10.0), x, config,
                      device="cpu")
    if resume:
        trainer.resume()
    trainer.run()
    return trainer


def test_compiled_training_matches_plain_and_checkpoints_are_interchangeable(tmp_path):
    plain, compiled = run(False, tmp_path / "plain.pt"), run(True, tmp_path / "compiled.pt")
    # torch.compile turns torch.distributions' checks off process-wide; the Trainer gives them back
    assert torch.distributions.Distribution._validate_args
    assert compiled.model.encoder._compiled_call_impl is not None  # it did run compiled
    a, b = plain.history["loss"], compiled.history["loss"]
    assert max(abs(u - v) / abs(u) for u, v in zip(a, b)) < 1e-5, (a, b)
    p, c = load_checkpoint(tmp_path / "plain.pt")["model"], load_checkpoint(tmp_path / "compiled.pt")["model"]
    assert p.keys() == c.keys() and max(float((p[k] - c[k]).abs().max()) for k in p) < 1e-5
    assert sorted(iv.load(tmp_path / "compiled.pt").state_dict()) == sorted(p)  # a plain model loads it
    # a compiled run resumes a plain run's checkpoint and the other way round
    (tmp_path / "swap.pt").write_bytes((tmp_path / "plain.pt").read_bytes())
    assert run(True, tmp_path / "swap.pt", iterations=6, resume=True).step == 6
    (tmp_path / "swap.pt").write_bytes((tmp_path / "compiled.pt").read_bytes())
    assert run(False, tmp_path / "swap.pt", iterations=6, resume=True).step == 6

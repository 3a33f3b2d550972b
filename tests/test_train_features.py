"""What researchers use daily (issue 24): callbacks and loggers, validation loss with best-checkpoint keeping and
early stopping, gradient accumulation. Each against an independent computation: the history, a manual gradient."""

from __future__ import annotations

import csv
import importlib.util

import pytest
import torch

import infovae as iv
from infovae.train import CSVLogger, Callback, TensorBoardLogger, TrainConfig, Trainer, load_checkpoint

SHAPE = (1, 6, 6)


def data(n=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.rand(n, *SHAPE, generator=g, dtype=torch.float64), generator=g)


def trainer(loss=None, validation=None, callbacks=(), **options):
    config = TrainConfig(**{"iterations": 12, "batch_size": 20, "lr": 1e-3, "progress": False, "log_every": 3, **options})
    return Trainer(iv.build_vae("mlp", 2, shape=SHAPE, seed=0).double(), loss or iv.InfoVAELoss.mmd_vae(lam=10.0),
                   data(), config, device="cpu", validation=validation, callbacks=callbacks)


class Record(Callback):
    def __init__(self):
        self.calls = []

    def on_step(self, trainer, values):
        self.calls.append(("step", trainer.step, dict(values)))

    def on_eval(self, trainer, results):
        self.calls.append(("eval", trainer.step, dict(results)))

    def on_checkpoint(self, trainer, path):
        self.calls.append(("checkpoint", trainer.step, path))


def test_callbacks_see_every_step_evaluation_and_checkpoint_and_the_csv_holds_the_history(tmp_path):
    record, log = Record(), CSVLogger(tmp_path / "log.csv")
    t = trainer(validation=data(40, seed=1), callbacks=[record, log], eval_every=4, checkpoint=str(tmp_path / "c.pt"),
                checkpoint_every=6)
    history = t.run()
    assert [c[1] for c in record.calls if c[0] == "step"] == list(range(1, 13))
    assert [c[1] for c in record.calls if c[0] == "eval"] == [4, 8, 12]
    assert [c[1] for c in record.calls if c[0] == "checkpoint"] == [6, 12]
    steps = [c[2] for c in record.calls if c[0] == "step"]  # the history's entries are means of the steps' values
    for i, step in enumerate(history.steps("loss")):
        assert history["loss"][i] == pytest.approx(sum(v["loss"] for v in steps[step - 3 : step]) / 3, rel=1e-12)
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    losses = [float(r["value"]) for r in rows if r["name"] == "loss"]
    assert losses == [v["loss"] for v in steps]  # every step, exactly (repr round-trips)
    assert [float(r["value"]) for r in rows if r["name"] == "valid_loss"] == history["valid_loss"]
    assert [int(r["step"]) for r in rows if r["name"] == "checkpoint"] == [6, 12]
    t2 = trainer(callbacks=[CSVLogger(tmp_path / "log.csv")], iterations=14, checkpoint=str(tmp_path / "c.pt")).resume()
    t2.run()  # a resumed run appends to its log
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert [int(r["step"]) for r in rows if r["name"] == "loss"] == list(range(1, 15))


def test_a_bad_callback_is_refused_and_tensorboard_is_optional(tmp_path):
    with pytest.raises(TypeError, match="on_step, on_eval or on_checkpoint"):
        trainer(callbacks=[object()])

    class Writer:
        def __init__(self):
            self.scalars = []

        def add_scalar(self, tag, value, step):
            self.scalars.append((tag, value, step))

        def flush(self):
            pass

    writer = Writer()
    trainer(callbacks=[TensorBoardLogger(writer=writer)], iterations=4, validation=data(40, 1), eval_every=2).run()
    assert [s for t, _, s in writer.scalars if t == "train/loss"] == [1, 2, 3, 4]
    assert [s for t, _, s in writer.scalars if t == "eval/valid_loss"] == [2, 4]
    if importlib.util.find_spec("tensorboard") is None:
        with pytest.raises(ModuleNotFoundError, match="pip install tensorboard"):
            TensorBoardLogger(tmp_path)


def test_the_validation_loss_is_the_evaluated_loss_and_the_best_model_is_kept(tmp_path):
    held_out = data(40, seed=1)
    best = tmp_path / "best.pt"
    t = trainer(validation=held_out, eval_every=2, iterations=16, lr=3e-2, best_checkpoint=str(best))
    history = t.run()
    losses, steps = history["valid_loss"], history.steps("valid_loss")
    assert steps == list(range(2, 17, 2))
    saved = load_checkpoint(best)
    assert saved["step"] == steps[losses.index(min(losses))] and saved["best"]["valid_loss"] == min(losses)
    model = iv.load(best).double()
    torch.manual_seed(0)
    # the kept model evaluates to the recorded best loss on the trainer's random stream at that point
    assert t.last_checkpoint is None  # the best checkpoint is not the run's checkpoint
    again = iv.train.evaluate(model, iv.InfoVAELoss.mmd_vae(lam=10.0), held_out)["loss"]
    assert abs(again - min(losses)) < 0.05 * abs(min(losses))  # other codes drawn: close, not equal


def test_early_stopping_stops_after_patience_evaluations_without_improvement():
    held_out = data(40, seed=1)
    t = trainer(validation=held_out, eval_every=1, iterations=60, lr=0.3, patience=2)  # a rate too high: no progress
    history = t.run()
    losses = history["valid_loss"]
    best, since, expected = float("inf"), 0, None
    for step, value in zip(history.steps("valid_loss"), losses):  # the rule, recomputed from the history
        if value < best:
            best, since = value, 0
        else:
            since += 1
            if since == 2:
                expected = step
                break
    assert expected is not None and t.stopped_early and t.step == expected < 60
    with pytest.raises(ValueError, match="need held-out data"):
        trainer(eval_every=1, patience=2)
    with pytest.raises(ValueError, match="set eval_every"):
        TrainConfig(patience=2)


def test_gradient_accumulation_gives_the_full_batch_gradient():
    """The autoencoder (alpha 1, no divergence) draws nothing at random: the gradient of 4 micro-batches
    of 5, each loss weighted 1/4, equals that of the batch of 20 (float64, to 1e-12)."""
    grads = {}
    for k in (1, 4):
        t = Trainer(iv.build_vae("mlp", 2, deterministic=True, shape=SHAPE, seed=0).double(), iv.InfoVAELoss.autoencoder(),
                    data(), TrainConfig(iterations=1, batch_size=20, accumulate=k, progress=False), device="cpu")
        values = t.train_step()
        grads[k] = ({n: p.grad.clone() for n, p in t.model.named_parameters()}, values["loss"])
    assert max(float((grads[1][0][n] - grads[4][0][n]).abs().max()) for n in grads[1][0]) < 1e-12
    assert grads[1][1] == pytest.approx(grads[4][1], rel=1e-6)  # the logged loss: the mean of the micro-batches'
    t = trainer(accumulate=2, iterations=3)  # MMD-VAE: the divergence on each micro-batch; training runs
    assert len(t.run()["loss"]) == 1
    with pytest.raises(ValueError, match="not divisible by accumulate"):
        TrainConfig(batch_size=10, accumulate=3)

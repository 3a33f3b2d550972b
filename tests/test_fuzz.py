"""Bad inputs over the public functions and the command line: each must be a clear error.

Every case is a call with one bad argument (or a bad file, or a bad model) and a pattern the
error message must contain. A case is *clear* when it raises a ValueError, TypeError,
FileNotFoundError or ``NonFiniteLossError`` whose message matches (for the command line: exit
status 2 with ``error: ...`` on stderr and no traceback); *silent* when it returns; an
*unhelpful crash* when it raises anything else or a message that does not name the problem;
a *hang* when it runs past ``TIMEOUT`` seconds. The test asserts every case is clear.

Run as a script (``python tests/test_fuzz.py``) it prints the four counts.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import signal
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, Independent, Normal

import infovae as iv
from _user_models import user_modules
from infovae import classifier as clf
from infovae import data, divergences, metrics, networks, train, tuning

TIMEOUT = 20  # seconds per case
DX, DZ = 6, 2
CLEAR_TYPES = (ValueError, TypeError, FileNotFoundError, train.NonFiniteLossError)


# ----------------------------------------------------------------------------- models


Enc, Dec = user_modules(DX, DZ)


class NaNGradDecoder(Dec):
    """Finite loss, NaN gradient: sqrt at 0 in the backward pass."""

    def forward(self, z):
        return Independent(Bernoulli(logits=self.net(z) + torch.sqrt(z[:, :1] * 0)), 1)


class DeclaredEnc(Enc):
    latent_dim = DZ


def model(per_pixel=False):
    torch.manual_seed(0)
    return iv.VAE(DeclaredEnc(), Dec(per_pixel))


def x01(n=20):
    return torch.bernoulli(torch.full((n, DX), 0.4), generator=torch.Generator().manual_seed(0))


def with_nan(t, value=float("nan")):
    t = t.clone()
    t.view(-1)[1] = value
    return t


def z(n=10, d=DZ):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(1))


def cfg(**kw):
    return train.TrainConfig(**{"iterations": 3, "batch_size": 5, "binarize": None, "progress": False, **kw})


def trainer(m=None, data_=None, loss=None, **kw):
    return train.Trainer(m or model(), loss or iv.InfoVAELoss.elbo(), x01() if data_ is None else data_, cfg(**kw), device="cpu")


def tmpfile(content: bytes) -> Path:
    fd, name = tempfile.mkstemp(suffix=".pt")
    os.write(fd, content)
    os.close(fd)
    return Path(name)


def resume_with_changed_lr():
    path = Path(tempfile.mkdtemp()) / "c.pt"
    trainer(checkpoint=str(path), lr=1e-3).run()
    trainer(checkpoint=str(path), lr=0.5).resume()


def nan_gradient_training():
    m = iv.VAE(DeclaredEnc(), NaNGradDecoder())
    trainer(m, iterations=3).run()


def reload_then_sample():
    m = iv.VAE(Enc(), Dec())  # no latent dim anywhere: refused at construction
    m.load_state_dict(m.state_dict())
    m.sample(4)


# ----------------------------------------------------------------------------- cases


@dataclass
class Case:
    name: str
    call: Callable[[], object]
    match: str


CASES: list[Case] = []


def case(name: str, match: str, call: Callable[[], object]) -> None:
    CASES.append(Case(name, call, match))


# data
for bad in ("training", "", None, 3):
    case(f"load_mnist split={bad!r}", "split", lambda bad=bad: data.load_mnist(bad))
for bad in ("yes", True, 0.5):
    case(f"load_mnist binarize={bad!r}", "binariz", lambda bad=bad: data.load_mnist("test", binarize=bad))
for bad in ("a", 1.5, -1):
    case(f"load_mnist seed={bad!r}", "seed", lambda bad=bad: data.load_mnist("test", binarize="stochastic", seed=bad))
for bad in (0, -5, 10**6, 2.5, "10"):
    case(f"training_subset n={bad!r}", "n must", lambda bad=bad: data.training_subset(bad))
for bad in (0, -1, 1.5, "3"):
    case(f"two_point_data n={bad!r}", "n must", lambda bad=bad: data.two_point_data(bad))
case("two_point_data seed='x'", "seed", lambda: data.two_point_data(5, seed="x"))
case("binarize_images mode", "binarization", lambda: data.binarize_images(x01(), "x"))
case("binarize_images range", r"\[0, 1\]", lambda: data.binarize_images(x01() * 2, "threshold"))
case("binarize_images NaN", "NaN", lambda: data.binarize_images(with_nan(x01()), "stochastic"))
case("binarize_images list", "tensor", lambda: data.binarize_images([[0.5]], "threshold"))
case("binarize_images ints", "floating", lambda: data.binarize_images(torch.ones(3, 3, dtype=torch.long), "stochastic"))

# divergences
case("mmd x NaN", "NaN", lambda: divergences.mmd(with_nan(z()), z()))
case("mmd y inf", "NaN or inf", lambda: divergences.mmd(z(), with_nan(z(), math.inf)))
case("mmd x -inf", "NaN or inf", lambda: divergences.mmd(with_nan(z(), -math.inf), z()))
case("mmd x 1-D", "shape", lambda: divergences.mmd(torch.randn(5), z()))
case("mmd x 3-D", "shape", lambda: divergences.mmd(torch.randn(2, 5, 2), z()))
case("mmd x ints", "floating", lambda: divergences.mmd(torch.ones(4, DZ, dtype=torch.long), z()))
case("mmd dims", "same dim", lambda: divergences.mmd(z(d=3), z()))
case("mmd dtypes", "dtype", lambda: divergences.mmd(z().double(), z()))
case("mmd kernel", "kernel", lambda: divergences.mmd(z(), z(), kernel="gauss"))
case("mmd estimator", "estimator", lambda: divergences.mmd(z(), z(), estimator="u"))
for bad in (0, -1.0, math.nan, math.inf):
    case(f"mmd bandwidth={bad}", "bandwidth", lambda bad=bad: divergences.mmd(z(), z(), bandwidth=bad))
case("mmd bandwidth str", "bandwidth", lambda: divergences.mmd(z(), z(), bandwidth="1"))
case("mmd block_size 0", "block_size", lambda: divergences.mmd(z(), z(), block_size=0))
case("mmd unbiased n=1", "at least 2", lambda: divergences.mmd(z(1), z(), estimator="unbiased"))
case("mmd list", "tensor", lambda: divergences.mmd([[0.0, 1.0]], z()))
case("mmd empty", "shape", lambda: divergences.mmd(torch.zeros(0, DZ), z()))
case("gaussian_kl NaN mean", "NaN", lambda: divergences.gaussian_kl(with_nan(z()), torch.ones(10, DZ)))
case("gaussian_kl inf std", "NaN or inf", lambda: divergences.gaussian_kl(z(), with_nan(torch.ones(10, DZ), math.inf)))
case("gaussian_kl zero std", "positive", lambda: divergences.gaussian_kl(z(), torch.zeros(10, DZ)))
case("gaussian_kl negative std", "positive", lambda: divergences.gaussian_kl(z(), -torch.ones(10, DZ)))
case("gaussian_kl shapes", "same shape", lambda: divergences.gaussian_kl(z(), torch.ones(10, 3)))
case("gaussian_kl 1-D", "shape", lambda: divergences.gaussian_kl(torch.zeros(3), torch.ones(3)))
case("gaussian_kl list", "tensor", lambda: divergences.gaussian_kl([0.0], [1.0]))
case("kernel_matrix kernel", "kernel", lambda: divergences.kernel_matrix(z(), z(), kernel="x"))
case("svgd score shape", "score", lambda: divergences.svgd_direction(z(), torch.zeros(3, DZ)))
case("svgd z NaN", "NaN", lambda: divergences.svgd_direction(with_nan(z())))
case("svgd score NaN", "NaN", lambda: divergences.svgd_direction(z(), with_nan(z())))
case("ksd NaN", "NaN", lambda: divergences.kernel_stein_discrepancy(with_nan(z())))
case("ksd bandwidth", "bandwidth", lambda: divergences.kernel_stein_discrepancy(z(), bandwidth=-1.0))
case("stein_loss NaN", "NaN", lambda: divergences.stein_loss(with_nan(z())))
case("JSDiscriminator dim 0", "dim", lambda: divergences.JSDiscriminator(0))

# the model
case("VAE without a latent dim, then log_likelihood", "latent_dim", lambda: metrics.log_likelihood(iv.VAE(Enc(), Dec()), x01(4), 5))
case("VAE without a latent dim, reload then sample", "latent_dim", reload_then_sample)
case("VAE encoder not a module", "nn.Module", lambda: iv.VAE("enc", Dec()))
case("VAE latent_dim 0", "latent_dim", lambda: iv.VAE(Enc(), Dec(), latent_dim=0))
case("VAE prior without event dim", "event_shape", lambda: iv.VAE(Enc(), Dec(), prior=Normal(torch.zeros(DZ), 1.0)))
case("VAE prior of another dim", "dim", lambda: iv.VAE(DeclaredEnc(), Dec(), prior=Independent(Normal(torch.zeros(3), 1.0), 1)))
for bad in (0, -1, 2.5, "3"):
    case(f"VAE.sample n={bad!r}", "n must", lambda bad=bad: model().sample(bad))
case("VAE.encode wrong width", r"encoder failed on x of shape \(4, 7\)", lambda: model().encode(torch.zeros(4, DX + 1)))

# the objective
for name, kw, match in [
    ("alpha nan", {"alpha": math.nan}, "alpha"), ("alpha inf", {"alpha": math.inf}, "alpha"),
    ("alpha str", {"alpha": "0"}, "alpha"), ("alpha None", {"alpha": None}, "alpha"),
    ("lam 0", {"lam": 0.0}, "lam"), ("lam -1", {"lam": -1.0}, "lam"), ("lam nan", {"lam": math.nan}, "lam"),
    ("divergence", {"divergence": "kl"}, "divergence"), ("kernel", {"kernel": "x"}, "kernel"),
    ("estimator", {"estimator": "x"}, "estimator"), ("num_prior_samples 1", {"num_prior_samples": 1}, "num_prior_samples"),
    ("num_prior_samples 2.5", {"num_prior_samples": 2.5}, "num_prior_samples"),
    ("alpha 2", {"alpha": 2.0}, "negative weight"), ("lam 0.1", {"lam": 0.1}, "negative weight"),
    ("bandwidth -1", {"bandwidth": -1.0}, "bandwidth"), ("bandwidth str", {"bandwidth": "x"}, "bandwidth"),
    ("critic_hidden 0", {"divergence": "js", "critic_hidden": 0, "latent_dim": 2}, "hidden"),
    ("critic_lr -1", {"divergence": "js", "critic_lr": -1.0, "latent_dim": 2}, "lr"),
    ("latent_dim 0", {"divergence": "js", "latent_dim": 0}, "dim"),
]:
    case(f"InfoVAELoss {name}", match, lambda kw=kw: iv.InfoVAELoss(**kw))
case("beta_vae 0", "beta", lambda: iv.InfoVAELoss.beta_vae(0))
case("beta_vae nan", "beta", lambda: iv.InfoVAELoss.beta_vae(math.nan))
case("preset name", "preset", lambda: iv.InfoVAELoss.preset("vae"))
case("adversarial mmd", "adversarial", lambda: iv.InfoVAELoss.adversarial(divergence="mmd"))
case("authors_weighting kind", "authors", lambda: iv.InfoVAELoss.authors_weighting("stein", 5))
case("loss x NaN", "NaN", lambda: iv.InfoVAELoss.mmd_vae()(model(), with_nan(x01())))
case("loss x list", "tensor", lambda: iv.InfoVAELoss.mmd_vae()(model(), [[0.0] * DX]))
case("loss x 1-D", "batch", lambda: iv.InfoVAELoss.mmd_vae()(model(), torch.zeros(DX)))
case("loss x empty", "batch", lambda: iv.InfoVAELoss.mmd_vae()(model(), torch.zeros(0, DX)))
case("loss per-pixel decoder", "Independent", lambda: iv.InfoVAELoss.mmd_vae()(model(per_pixel=True), x01()))
case("loss model not a VAE", "model", lambda: iv.InfoVAELoss.mmd_vae()("model", x01()))
case("loss one code", "at least 2", lambda: iv.InfoVAELoss.mmd_vae()(model(), x01(1)))

# the trainer
for name, kw, match in [
    ("iterations -1", {"iterations": -1}, "iterations"), ("iterations 2.5", {"iterations": 2.5}, "iterations"),
    ("iterations str", {"iterations": "10"}, "iterations"), ("batch_size 0", {"batch_size": 0}, "batch_size"),
    ("batch_size 2.5", {"batch_size": 2.5}, "batch_size"), ("lr 0", {"lr": 0.0}, "lr"), ("lr -1", {"lr": -1.0}, "lr"),
    ("lr nan", {"lr": math.nan}, "lr"), ("lr inf", {"lr": math.inf}, "lr"), ("lr str", {"lr": "0.1"}, "lr"),
    ("clip", {"clip": "x"}, "clip"), ("clip_value 0", {"clip_value": 0.0}, "clip_value"),
    ("binarize", {"binarize": "x"}, "binarize"), ("optimizer", {"optimizer": "sgdd"}, "optimizer"),
    ("optimizer upper", {"optimizer": "Adam"}, "lower case"), ("optimizer options list", {"optimizer_options": [1]}, "dict"),
    ("optimizer option unknown", {"optimizer_options": {"momentun": 0.9}}, "does not take"),
    ("optimizer option value", {"optimizer": "sgd", "optimizer_options": {"momentum": -1}}, "rejects"),
    ("optimizer option tensor", {"optimizer_options": {"eps": torch.tensor(1.0)}}, "plain values"),
    ("scheduler", {"scheduler": "cosine"}, "scheduler"),
    ("scheduler missing option", {"scheduler": "steplr"}, "step_size"),
    ("scheduler option alone", {"scheduler_options": {"gamma": 0.5}}, "without a scheduler"),
    ("log_every 0", {"log_every": 0}, "log_every"), ("seed str", {"seed": "a"}, "seed"), ("seed -1", {"seed": -1}, "seed"),
    ("seed 1.5", {"seed": 1.5}, "seed"), ("checkpoint_every -1", {"checkpoint_every": -1}, "checkpoint_every"),
    ("eval_every 1.5", {"eval_every": 1.5}, "eval_every"), ("precision", {"precision": "fp8"}, "precision"),
    ("progress str", {"progress": "no"}, "progress"), ("checkpoint int", {"checkpoint": 3}, "checkpoint"),
]:
    case(f"TrainConfig {name}", match, lambda kw=kw: cfg(**kw))
case("Trainer data NaN", "NaN", lambda: trainer(data_=with_nan(x01())))
case("Trainer data 1-D", "data", lambda: trainer(data_=torch.zeros(20)))
case("Trainer data list", "data", lambda: trainer(data_=[[0.0] * DX] * 20))
case("Trainer batch > data", "batch_size", lambda: trainer(data_=x01(3)))
case("Trainer binarize of [-1, 1] data", r"\[0, 1\]", lambda: trainer(data_=x01() * 2 - 1, binarize="stochastic"))
case("Trainer loss not callable", "loss_fn", lambda: trainer(loss=3))
case("Trainer model not a module", "model", lambda: train.Trainer("m", iv.InfoVAELoss.elbo(), x01(), cfg(), device="cpu"))
case("Trainer per-pixel decoder", "Independent", lambda: trainer(model(per_pixel=True)).run())
case("Trainer.run iterations -1", "iterations", lambda: trainer().run(-1))
case("Trainer NaN gradient", "non-finite", nan_gradient_training)
case("Trainer resume missing file", "checkpoint", lambda: trainer().resume("/nonexistent/c.pt"))
case("Trainer resume random bytes", "not an infovae checkpoint", lambda: trainer().resume(tmpfile(os.urandom(300))))
case("Trainer resume empty file", "not an infovae checkpoint", lambda: trainer().resume(tmpfile(b"")))
case("Trainer resume changed lr", "lr", resume_with_changed_lr)
case("load_checkpoint random bytes", "not an infovae checkpoint", lambda: train.load_checkpoint(tmpfile(os.urandom(100))))
case("Trainer.save without a path", "checkpoint", lambda: trainer().save())
case("evaluate batch_size 0", "batch_size", lambda: train.evaluate(model(), iv.InfoVAELoss.elbo(), x01(), batch_size=0))
case("evaluate empty", "empty", lambda: train.evaluate(model(), iv.InfoVAELoss.elbo(), x01()[:0]))
case("evaluate per-pixel", "Independent", lambda: train.evaluate(model(per_pixel=True), iv.InfoVAELoss.elbo(), x01()))

# metrics
for bad in (0, -1, 2.5, True):
    case(f"log_likelihood num_samples={bad!r}", "num_samples", lambda bad=bad: metrics.log_likelihood(model(), x01(2), bad))
case("log_likelihood num_samples=10**12", "num_samples", lambda: metrics.log_likelihood(model(), x01(2), 10**12))
case("log_likelihood chunk_size 0", "chunk_size", lambda: metrics.log_likelihood(model(), x01(2), 5, chunk_size=0))
case("log_likelihood proposal", "proposal", lambda: metrics.log_likelihood(model(), x01(2), 5, proposal="x"))
case("log_likelihood not a model", "model", lambda: metrics.log_likelihood(nn.Linear(2, 2), x01(2), 5))
case("log_likelihood x NaN", "NaN", lambda: metrics.log_likelihood(model(), with_nan(x01(2)), 5))
case("log_likelihood x 1-D", "batch", lambda: metrics.log_likelihood(model(), torch.zeros(DX), 5))
case("log_likelihood per-pixel", "Independent", lambda: metrics.log_likelihood(model(True), x01(2), 5))
case("log_likelihood_with_error x list", "tensor", lambda: metrics.log_likelihood_with_error(model(), [[0.0] * DX], 5))
case("posterior_samples num_samples 0", "num_samples", lambda: metrics.posterior_samples(model(), x01(2), 0))
case("posterior_samples num_proposals 0", "num_proposals", lambda: metrics.posterior_samples(model(), x01(2), 3, num_proposals=0))
case("posterior_samples num_proposals 10**12", "num_proposals", lambda: metrics.posterior_samples(model(), x01(2), 3, num_proposals=10**12))
case("encode_codes batch_size 0", "batch_size", lambda: metrics.encode_codes(model(), x01(), batch_size=0))
case("full_batch_mmd 1-D", "codes", lambda: metrics.full_batch_mmd(torch.zeros(5)))
case("full_batch_mmd NaN", "NaN", lambda: metrics.full_batch_mmd(with_nan(z())))
case("full_batch_mmd one code", "at least 2", lambda: metrics.full_batch_mmd(z(1)))
case("full_batch_mmd num_prior_samples 0", "num_prior_samples", lambda: metrics.full_batch_mmd(z(), num_prior_samples=0))
case("full_batch_mmd prior dim", "prior", lambda: metrics.full_batch_mmd(z(), Independent(Normal(torch.zeros(3), 1.0), 1)))
case("log_det_covariance too few", "more than", lambda: metrics.log_det_covariance(z(2)))
case("log_det_covariance NaN", "NaN", lambda: metrics.log_det_covariance(with_nan(z())))
case("log_det_covariance 1-D", "codes", lambda: metrics.log_det_covariance(torch.zeros(5)))
case("mutual_information num_samples 0", "num_samples", lambda: metrics.mutual_information(model(), x01(), num_samples=0))
case("mutual_information batch_size 0", "batch_size", lambda: metrics.mutual_information(model(), x01(), batch_size=0))
case("mutual_information x NaN", "NaN", lambda: metrics.mutual_information(model(), with_nan(x01())))
case("shuffled_code_gap one image", "at least 2", lambda: metrics.shuffled_code_gap(model(), x01(1)))
case("shuffled_code_gap per-pixel", "Independent", lambda: metrics.shuffled_code_gap(model(True), x01()))
case("active_units threshold -1", "threshold", lambda: metrics.active_units(model(), x01(), threshold=-1.0))
case("active_units threshold nan", "threshold", lambda: metrics.active_units(model(), x01(), threshold=math.nan))
case("active_units threshold str", "threshold", lambda: metrics.active_units(model(), x01(), threshold="0.1"))
case("active_units one image", "at least 2", lambda: metrics.active_units(model(), x01(1)))
cls10 = nn.Linear(DX, 10)
case("class CE pseudo_count 0", "pseudo_count", lambda: metrics.class_distribution_cross_entropy(cls10, x01(), pseudo_count=0))
case("class CE reference", "reference", lambda: metrics.class_distribution_cross_entropy(cls10, x01(), reference=torch.ones(10)))
case("class CE num_classes 0", "num_classes", lambda: metrics.class_distribution_cross_entropy(cls10, x01(), num_classes=0))
case("class CE images NaN", "NaN", lambda: metrics.class_distribution_cross_entropy(cls10, with_nan(x01())))
case("class CE wrong logits", "logits", lambda: metrics.class_distribution_cross_entropy(nn.Linear(DX, 3), x01()))
case("class CE pseudo_count str", "pseudo_count", lambda: metrics.class_distribution_cross_entropy(cls10, x01(), pseudo_count="1"))
feats, labels = torch.randn(40, 2), torch.arange(40) % 2
case("SVM too many labels", "num_labels", lambda: metrics.semi_supervised_error(feats, labels, feats, labels, num_labels=100))
case("SVM NaN features", "NaN", lambda: metrics.semi_supervised_error(with_nan(feats), labels, feats, labels, num_labels=20))
case("SVM label shape", "labels", lambda: metrics.semi_supervised_error(feats, labels[:5], feats, labels, num_labels=20))
case("SVM folds 0", "folds", lambda: metrics.semi_supervised_error(feats, labels, feats, labels, num_labels=20, folds=0))
case("SVM dims", "dims", lambda: metrics.semi_supervised_error(feats, labels, torch.randn(40, 3), labels, num_labels=20))
case("SVM gammas empty", "gamma", lambda: metrics.semi_supervised_error(feats, labels, feats, labels, num_labels=20, gammas=()))
case("SVM gammas negative", "gamma", lambda: metrics.semi_supervised_error(feats, labels, feats, labels, num_labels=20, gammas=(-1.0,)))

# tuning
for name, kw, match in [
    ("ratio 0", {"ratio": 0}, "ratio"), ("ratio nan", {"ratio": math.nan}, "ratio"), ("divergence js", {"divergence": "js"}, "critic"),
    ("divergence foo", {"divergence": "foo"}, "divergence"), ("steps -1", {"steps": -1}, "steps"), ("steps 2.5", {"steps": 2.5}, "steps"),
    ("repeats 0", {"repeats": 0}, "repeats"), ("alpha 2", {"alpha": 2.0}, "alpha"), ("lr 0", {"lr": 0.0}, "lr"),
    ("kernel", {"kernel": "x"}, "kernel"), ("estimator", {"estimator": "x"}, "estimator"),
    ("num_prior_samples 1", {"num_prior_samples": 1}, "num_prior_samples"), ("bandwidth 0", {"bandwidth": 0.0}, "bandwidth"),
]:
    case(f"suggest_lambda {name}", match, lambda kw=kw: tuning.suggest_lambda(model(), x01(), **kw))
case("suggest_lambda one row", "B >= 2", lambda: tuning.suggest_lambda(model(), x01(1)))
case("suggest_lambda ints", "floating", lambda: tuning.suggest_lambda(model(), x01().long()))
case("suggest_lambda model str", "model", lambda: tuning.suggest_lambda("m", x01()))
case("suggest_lambda per-pixel", "Independent", lambda: tuning.suggest_lambda(model(True), x01()))

# networks and the classifier
for arch, dim, match in [("x", 2, "architecture"), ("mlp", 0, "latent_dim"), ("mlp", -1, "latent_dim"), ("mlp", 2.5, "latent_dim"), ("dcgan", "2", "latent_dim")]:
    case(f"build_vae({arch!r}, {dim!r})", match, lambda arch=arch, dim=dim: networks.build_vae(arch, dim))
case("MLPEncoder input shape", "shape", lambda: networks.MLPEncoder((DX,), 2)(torch.zeros(3, DX + 1)))
case("MLPDecoder likelihood", "likelihood", lambda: networks.MLPDecoder(2, (DX,), likelihood="x"))
case("MLPDecoder latent_dim 0", "latent_dim", lambda: networks.MLPDecoder(0, (DX,)))
case("LatentHead std_floor", "std_floor", lambda: networks.LatentHead(4, 2, std_floor="x"))
case("LatentHead min_std 0", "min_std", lambda: networks.LatentHead(4, 2, min_std=0.0))
case("ConvEncoder latent_dim 0", "latent_dim", lambda: networks.ConvEncoder(0))
case("ConvDecoder latent_dim -1", "latent_dim", lambda: networks.ConvDecoder(-1))
case("ConvEncoder wrong image", "shape|expects", lambda: networks.ConvEncoder(2)(torch.zeros(2, 1, 27, 27)))
case("train_classifier steps 0", "steps", lambda: clf.train_classifier(0, data=(torch.zeros(4, 1, 28, 28), torch.zeros(4, dtype=torch.long))))
case("train_classifier lr 0", "lr", lambda: clf.train_classifier(2, lr=0.0, data=(torch.zeros(4, 1, 28, 28), torch.zeros(4, dtype=torch.long))))
case("train_classifier batch > data", "batch_size", lambda: clf.train_classifier(2, batch_size=8, data=(torch.zeros(4, 1, 28, 28), torch.zeros(4, dtype=torch.long)), device="cpu"))
case("train_classifier max_shift -1", "max_shift", lambda: clf.train_classifier(2, max_shift=-1, batch_size=2, data=(torch.zeros(4, 1, 28, 28), torch.zeros(4, dtype=torch.long)), device="cpu"))
case("random_shift -1", "max_shift", lambda: clf.random_shift(torch.zeros(2, 1, 28, 28), -1, torch.Generator()))
case("classifier_accuracy lengths", "length", lambda: clf.classifier_accuracy(clf.MNISTClassifier(), torch.zeros(3, 1, 28, 28), torch.zeros(2)))
case("load_classifier profile", "profile", lambda: clf.load_classifier(profile="x"))
case("MNISTClassifier wrong shape", "28", lambda: clf.MNISTClassifier()(torch.zeros(2, 1, 20, 20)))

# the command line (a case returns the exit status and stderr)
CLI_TRAIN = ["train", "--model", "toy", "--latent-dim", "1", "--no-progress", "--profile", "quick", "--device", "cpu"]
CLI_CASES = [
    (["--iterations", "0"], "iterations"), (["--iterations", "-5"], "iterations"), (["--lr", "0"], "lr"),
    (["--lr", "-1"], "lr"), (["--lr", "nan"], "lr"), (["--batch-size", "0"], "batch-size"), (["--batch-size", "-1"], "batch-size"),
    (["--train-size", "0"], "train-size"), (["--train-size", "-1"], "train-size"), (["--latent-dim", "0"], "latent-dim"),
    (["--latent-dim", "-2"], "latent-dim"), (["--log-every", "0"], "log-every"), (["--checkpoint-every", "-1"], "checkpoint-every"),
    (["--preset", "elbo", "--alpha", "0.5"], "alpha"), (["--preset", "autoencoder", "--lam", "5"], "lam"),
    (["--preset", "beta-vae", "--beta", "0"], "beta"), (["--preset", "mmd-vae", "--beta", "2"], "beta"),
    (["--preset", "mmd-vae", "--divergence", "wgan-gp"], "divergence"), (["--alpha", "nan"], "alpha"),
    (["--lam", "-1"], "lam"), (["--lam", "0"], "lam"), (["--seed", "-1"], "seed"), (["--resume"], "checkpoint"),
    (["--iterations", "abc"], "iterations"), (["--preset", "nope"], "preset"), (["--clip", "sometimes"], "clip"),
    (["--alpha", "3"], "alpha"),
]


def cli(args: list[str], out: Path | None = None) -> tuple[int, str]:
    from infovae.__main__ import main

    out = out or Path(tempfile.mkdtemp()) / "run"
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            status = main([*args, "--out", str(out)])
        except SystemExit as stop:
            status = stop.code if isinstance(stop.code, int) else 1
        except Exception as err:  # noqa: BLE001 (a traceback is an unhelpful crash, whatever its last line)
            return 1, f"Traceback ... {type(err).__name__}: {err}"
    return status, err.getvalue()


def mlp_checkpoint() -> Path:
    """A tiny MNIST checkpoint of the command line (made once per session)."""
    out = Path(tempfile.gettempdir()) / f"infovae-fuzz-{os.getpid()}"
    if not (out / "checkpoint.pt").is_file():
        status, err = cli(["train", "--model", "mlp", "--latent-dim", "2", "--train-size", "100", "--batch-size", "10",
                           "--iterations", "2", "--no-progress", "--profile", "quick", "--device", "cpu"], out)
        assert status == 0, err
    return out / "checkpoint.pt"


def file_out() -> Path:
    return tmpfile(b"a file, not a folder")


for extra, match in CLI_CASES:
    case(f"cli train {' '.join(extra)}", match, lambda extra=extra: cli([*CLI_TRAIN, *extra]))
case("cli train --out is a file", "out", lambda: cli(CLI_TRAIN + ["--iterations", "1"], out=file_out()))
for extra, match in [(["--size", "-5"], "size"), (["--size", "0"], "size"), (["--iwae-samples", "-1"], "iwae-samples"),
                     (["--iwae-samples", "10000000000"], "iwae-samples"), (["--split", "training"], "split")]:
    case(f"cli evaluate {' '.join(extra)}", match, lambda extra=extra: cli(["evaluate", str(mlp_checkpoint()), "--device", "cpu", *extra]))
case("cli evaluate missing file", "checkpoint", lambda: cli(["evaluate", "/nonexistent/checkpoint.pt", "--device", "cpu"]))
case("cli evaluate random bytes", "not an infovae checkpoint", lambda: cli(["evaluate", str(tmpfile(os.urandom(200))), "--device", "cpu"]))
case("cli reproduce unknown", "figure", lambda: cli(["reproduce", "fig99"]))
case("cli device", "device", lambda: cli(["reproduce", "--list", "--device", "banana"]))
case("cli no command", "command", lambda: cli([]))


# ----------------------------------------------------------------------------- the harness


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout


def classify(c: Case) -> tuple[str, str]:
    """``("clear" | "silent" | "crash" | "hang", detail)`` for one case."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIMEOUT)
    try:
        result = c.call()
    except _Timeout:
        return "hang", f"ran past {TIMEOUT} s"
    except CLEAR_TYPES as err:
        message = str(err)
        if re.search(c.match, message, re.I):
            return "clear", f"{type(err).__name__}: {message[:200]}"
        return "crash", f"{type(err).__name__} without {c.match!r}: {message[:300]}"
    except Exception as err:  # noqa: BLE001 (counted)
        return "crash", f"{type(err).__name__}: {str(err)[:300]}"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    if c.name.startswith("cli"):
        status, err = result  # type: ignore[misc]
        if "Traceback" in err:
            return "crash", err[-300:]
        if status == 2 and re.search(r"error: ", err) and re.search(c.match, err, re.I):
            return "clear", err.strip().splitlines()[-1][:200]
        if status == 0:
            return "silent", "exit status 0"
        return "crash", f"exit status {status}: {err[-300:]}"
    return "silent", f"returned {type(result).__name__}"


def test_there_are_enough_cases():
    assert len(CASES) >= 150, len(CASES)
    assert len({c.name for c in CASES}) == len(CASES), "case names must be unique"


@pytest.mark.parametrize("c", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_a_clear_error(c, monkeypatch, tmp_path):
    monkeypatch.setenv("INFOVAE_PROFILE", "quick")
    monkeypatch.setenv("INFOVAE_DEVICE", "cpu")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # never touch the user's caches
    kind, detail = classify(c)
    assert kind == "clear", f"{kind}: {detail}"


if __name__ == "__main__":
    torch.set_num_threads(1)
    os.environ.setdefault("INFOVAE_PROFILE", "quick")
    os.environ.setdefault("INFOVAE_DEVICE", "cpu")
    counts: dict[str, int] = {}
    for c in CASES:
        kind, detail = classify(c)
        counts[kind] = counts.get(kind, 0) + 1
        if kind != "clear" or "-v" in sys.argv:
            print(f"{kind:6} {c.name}: {detail}")
        os.environ["INFOVAE_PROFILE"], os.environ["INFOVAE_DEVICE"] = "quick", "cpu"
    print(f"{len(CASES)} cases: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))

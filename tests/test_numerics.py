"""The numerics of training, pinned: the golden test behind refactor-proof model caches.

Cached trained models are keyed by their configuration and ``infovae.runtime.NUMERICS_VERSION``,
not by the source text (``experiments.base.trained_model_path``), so that moving or documenting
code never throws away hours of training. What keeps that honest is this test: the first steps
of small models of every kind the book caches (each PixelCNN objective of chapters 8-9, the
DCGAN models of chapter 7, the warm-started runs of the information-preference experiment, the
classifier), trained through the same functions as the book's models, must give the numbers
recorded in ``tests/golden/numerics.json``: the loss at every step and the sum and sum of
squares of the parameters afterwards.

The runs are in float64 (default dtype and data): in float32, RMSProp's nearly sign-like first
steps turn the summation-order differences between thread counts and CPUs (oneDNN and BLAS pick
kernels per instruction set) into relative differences of up to 7e-2 (measured: 1 against 2
threads), while in float64 the same comparison differs by at most 1.7e-9. Tolerance: relative
1e-7, 60 times that; any change of the numbers themselves (an initialisation, a formula, an
estimator's bandwidth, a random stream) moves them far more (checked below: a 1% change of the
MMD bandwidth moves them by more than 10 times the tolerance). What runs in bf16 is pinned
structurally by ``tests/test_precision.py``, since bf16 cannot run in float64. A change that fails here must bump
``NUMERICS_VERSION`` and regenerate the file: ``python tests/test_numerics.py --regenerate``.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from infovae.runtime import NUMERICS_VERSION

GOLDEN = Path(__file__).parent / "golden" / "numerics.json"
RTOL = 1e-7


def _summary(module: torch.nn.Module) -> dict[str, float]:
    params = [p.detach().double().flatten() for p in module.parameters()]
    flat = torch.cat(params)
    return {"sum": float(flat.sum()), "sum_sq": float(flat.square().sum()), "count": int(flat.numel())}


def _losses(history: dict) -> list[float]:
    return [float(v) for v in history["loss"][1]]


def pixelcnn_runs() -> dict[str, dict]:
    """Three steps of every PixelCNN-decoder objective (``pixelcnn_models``), uncached."""
    from infovae.experiments import pixelcnn_models as pm

    setup = replace(pm.setup_for_profile("quick"), layers=2, channels=4, encoder_hidden=16, iterations=3, batch_size=8,
                    train_images=64, track_every=0, curve_every=0, critic_hidden=8, precision="fp32")
    runs = {}
    for name in pm.ALL_MODELS:
        for adversarial in (("js", "wgan-gp") if name == "adversarial" else (setup.adversarial,)):
            model, history = pm.train_pixelcnn_model(name, 3, replace(setup, adversarial=adversarial), cache=False,
                                                     progress=False)
            runs[f"pixelcnn-{name}" + (f"-{adversarial}" if name == "adversarial" else "")] = {
                "loss": _losses(history), **_summary(model)}
    return runs


def dcgan_runs() -> dict[str, dict]:
    """Three steps of chapter 7's ELBO and MMD-VAE DCGAN models (``mnist_inference.train_model``)."""
    from infovae.data import load_mnist
    from infovae.experiments import mnist_inference as mi

    config = replace(mi.MnistInferenceConfig.for_profile("quick"), iterations=3, batch_size=8, hidden=32, eval_every=0)
    data = load_mnist("train", binarize="stochastic", seed=0)[0][:64]
    runs = {}
    for objective in ("elbo", "mmd"):
        model, history = mi.train_model(objective, data, 2, config, progress=False)
        runs[f"dcgan-{objective}"] = {"loss": _losses(history), **_summary(model)}
    return runs


def preference_runs() -> dict[str, dict]:
    """A pretrained decoder and two warm-started runs of the information-preference experiment."""
    from infovae.data import load_mnist
    from infovae.experiments import information_preference as ip

    config = replace(ip.PreferenceConfig.for_profile("quick"), layers=2, channels=4, encoder_hidden=16,
                     pretrain_steps=2, steps=3, batch_size=8)
    x = ip.downsample(load_mnist("train")[0][:64], config.image_size)
    runs = {}
    for objective in ("elbo", "mmd"):
        model, history = ip.train_run(config, objective, 2, 0, x, cache=False, progress=False)
        runs[f"preference-{objective}"] = {"loss": _losses(history), **_summary(model)}
    return runs


def trajectory_runs() -> dict[str, dict]:
    """A trajectory run of the beta sweep and one of the spatial control (``preference_trajectories``)."""
    from infovae.experiments import preference_trajectories as pt

    config = replace(pt.TrajectoryConfig.for_profile("quick"), layers=2, channels=4, encoder_hidden=16,
                     pretrain_steps=2, batch_size=8, curve_every=3, min_epochs=1, max_epochs=1, window_epochs=1,
                     num_info_images=16, num_elbo_images=8, spatial_maps=2, precision="fp32", train_images=24)
    x_train = pt.training_images(config)
    x_test = pt.load_test_images(config)
    runs = {}
    for run in (pt.Run(1.25, 2, "bias", 0), pt.Run(1.0, 2, "spatial", 1)):
        model, history = pt.train_run(config, run, x_train, x_test, cache=False, progress=False)
        losses = history["loss"][1][:3]
        runs[f"trajectory-{run.key}"] = {"loss": [float(v) for v in losses], "kl": history["traj_kl"][1][:1], **_summary(model)}
    return runs


def classifier_runs() -> dict[str, dict]:
    """Three steps of the MNIST classifier of Fig. 6 C."""
    from infovae.classifier import train_classifier
    from infovae.data import load_mnist

    x, y = load_mnist("train")
    model = train_classifier(3, batch_size=16, device="cpu", progress=False, data=(x[:64], y[:64]))
    return {"classifier": _summary(model)}


def all_runs(only: str | None = None) -> dict[str, dict]:
    """Every golden run, in float64 (default dtype and data), on the CPU."""
    import infovae.data
    from infovae.experiments import pixelcnn_models, preference_trajectories

    load = infovae.data.load_mnist

    def load_float64(*args, **kwargs):
        x, y = load(*args, **kwargs)
        return x.double(), y

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        with pytest.MonkeyPatch.context() as mp:
            for module in (infovae.data, pixelcnn_models, preference_trajectories):  # every module that loads MNIST itself
                mp.setattr(module, "load_mnist", load_float64)
            if only == "pixelcnn":
                return pixelcnn_runs()
            return {**pixelcnn_runs(), **dcgan_runs(), **preference_runs(), **trajectory_runs(), **classifier_runs()}
    finally:
        torch.set_default_dtype(previous)


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(GOLDEN.read_text())


@pytest.fixture(scope="module")
def measured(monkeypatch_module) -> dict:
    return all_runs()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INFOVAE_DEVICE", "cpu")
        yield mp


def test_the_golden_file_is_of_this_numerics_version(golden):
    assert golden["numerics_version"] == NUMERICS_VERSION, (
        "tests/golden/numerics.json was recorded for another NUMERICS_VERSION: regenerate it "
        "(python tests/test_numerics.py --regenerate) after checking that the numbers changed on purpose"
    )


def test_training_numerics_match_the_golden_file(golden, measured):
    """Every run of the golden file, step by step."""
    expected = golden["runs"]
    missing = sorted(set(expected) - set(measured))
    assert not missing, f"runs of the golden file not measured: {missing}"
    bad = []
    for name, got in measured.items():
        want = expected.get(name)
        assert want is not None, f"{name} is not in the golden file: regenerate it"
        tol = RTOL
        for key in ("loss", "kl", "sum", "sum_sq"):
            if key not in want:
                continue
            a, b = (got[key], want[key]) if key in ("loss", "kl") else ([got[key]], [want[key]])
            if len(a) != len(b) or not all(math.isclose(x, y, rel_tol=tol, abs_tol=1e-6) for x, y in zip(a, b)):
                bad.append(f"{name} {key}: now {a}, golden {b}")
        if got.get("count") != want.get("count"):
            bad.append(f"{name}: {got.get('count')} parameters, golden {want.get('count')}")
    assert not bad, (
        "the numerics of training changed; if on purpose, bump infovae.runtime.NUMERICS_VERSION and regenerate "
        "tests/golden/numerics.json (python tests/test_numerics.py --regenerate):\n" + "\n".join(bad)
    )


def test_the_tolerance_sees_a_small_change_of_the_numbers(monkeypatch, golden):
    """The golden comparison is not vacuous: a 1% change of MMD-VAE's kernel bandwidth, far
    smaller than any deliberate change, moves the trajectory by more than the tolerance."""
    import infovae.divergences as dv

    original = dv.mmd

    def perturbed(x, y, kernel="rbf", bandwidth=None, estimator="biased", **kw):
        bandwidth = (bandwidth if bandwidth is not None else x.shape[1]) * 1.01
        return original(x, y, kernel=kernel, bandwidth=bandwidth, estimator=estimator, **kw)

    monkeypatch.setenv("INFOVAE_DEVICE", "cpu")
    monkeypatch.setattr(dv, "mmd", perturbed)
    import infovae.objective as obj

    monkeypatch.setattr(obj, "mmd", perturbed, raising=False)
    runs = all_runs(only="pixelcnn")
    got, want = runs["pixelcnn-mmd"], golden["runs"]["pixelcnn-mmd"]
    moved = [abs(a - b) / abs(b) for a, b in zip(got["loss"], want["loss"])]
    moved.append(abs(got["sum_sq"] - want["sum_sq"]) / abs(want["sum_sq"]))
    assert max(moved) > 10 * RTOL, f"a 1% bandwidth change moved the numbers by only {max(moved):.2e}"


def test_cache_keys_of_the_book_models_are_pinned():
    """The cache keys of the book profile's trained models (the training queue) are recorded in
    ``tests/golden/cache-keys.json``: a change of a model's description (a renamed or added
    setting) would silently orphan hours of training, so it must be a decision, made here."""
    from infovae.experiments.training_queue import queue_jobs

    pinned = json.loads((GOLDEN.parent / "cache-keys.json").read_text())
    now = {job.key: job.paths()[0].name for job in queue_jobs("book")}
    assert now == pinned, (
        "the cache keys of the book profile's models changed (their trained models would be retrained); "
        "if intended, regenerate tests/golden/cache-keys.json (python tests/test_numerics.py --regenerate)"
    )


def regenerate() -> None:
    import os

    os.environ["INFOVAE_DEVICE"] = "cpu"
    from infovae.experiments.training_queue import queue_jobs

    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps({"numerics_version": NUMERICS_VERSION, "torch": torch.__version__,
                                  "runs": all_runs()}, indent=1) + "\n")
    keys = {job.key: job.paths()[0].name for job in queue_jobs("book")}
    (GOLDEN.parent / "cache-keys.json").write_text(json.dumps(keys, indent=1) + "\n")
    print(f"wrote {GOLDEN} and cache-keys.json")


if __name__ == "__main__":
    if sys.argv[1:] != ["--regenerate"]:
        sys.exit("usage: python tests/test_numerics.py --regenerate")
    regenerate()

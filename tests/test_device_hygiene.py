"""Device hygiene that a CPU can see: what would go wrong on a GPU, caught without one.

* Every tensor that a training step or a measurement creates follows the model's device:
  a factory call (``torch.zeros``, ``torch.randn``, ``torch.tensor``, ...) inside the package
  without ``device=`` makes a CPU tensor, which on a GPU is a device mismatch or a hidden
  copy. A dispatch-level spy records such calls made from the package's own code while a
  step of every Part II model runs, and while the package's metrics measure a model. Calls
  with an explicit CPU ``generator=`` are allowed: they draw reproducibly on the CPU and are
  moved on purpose (the same numbers on every device).
* Nothing in a training step or a measurement reseeds the global generators: ``torch.manual_seed``
  reseeds every CUDA device too, so a reseed inside a loop silently repeats the GPU's draws.
  The CUDA reseed is recorded on a machine without CUDA by replacing
  ``torch.cuda.manual_seed_all`` (which ``torch.manual_seed`` always calls).

Everything runs on ``iv.get_device()``: the CPU in CI, the GPU under ``make gpu-check``,
where a tensor on the wrong device also fails outright.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode

import infovae as iv
from infovae.experiments import mnist_inference, pixelcnn_models, two_points
from infovae.metrics import encode_codes, full_batch_mmd, log_likelihood_with_error
from infovae.networks import ConvDecoder, ConvEncoder, build_vae
from infovae.train import TrainConfig, Trainer
from infovae.vae import VAE

PACKAGE = Path(iv.__file__).resolve().parent
FACTORIES = {
    torch.zeros, torch.ones, torch.empty, torch.full, torch.rand, torch.randn, torch.randint, torch.randperm,
    torch.arange, torch.linspace, torch.logspace, torch.eye, torch.tensor, torch.as_tensor, torch.scalar_tensor,
}


class FactorySpy(TorchFunctionMode):
    """Records ``file:line`` of the package's factory calls without ``device=`` (nor a generator)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: set[str] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in FACTORIES and kwargs.get("device") is None and kwargs.get("generator") is None:
            frame = sys._getframe(1)
            while frame is not None and not frame.f_code.co_filename.startswith(str(PACKAGE)):
                frame = frame.f_back
            if frame is not None:
                where = Path(frame.f_code.co_filename).relative_to(PACKAGE.parent)
                self.calls.add(f"{where}:{frame.f_lineno} torch.{func.__name__}")
        return func(*args, **kwargs)


QUICK = pixelcnn_models.setup_for_profile("quick")
TOY = two_points.TwoPointsConfig.for_profile("quick")
DCGAN = mnist_inference.MnistInferenceConfig.for_profile("quick")
CASES = {
    **{f"pixelcnn-{name}": (lambda name=name: pixelcnn_models.build_model(name, 3, QUICK),
                            lambda name=name: pixelcnn_models.make_loss(name, 3, QUICK), "images", "stochastic")
       for name in pixelcnn_models.MODELS},
    **{f"toy-{name}": (lambda: build_vae("toy", 1), lambda name=name: two_points.make_loss(name, TOY), "toy", None)
       for name in two_points.MODELS},
    **{f"dcgan-{name}": (lambda: VAE(ConvEncoder(2, hidden=32), ConvDecoder(2, hidden=32)),
                         lambda name=name: mnist_inference.make_loss(name, DCGAN), "binary", None)
       for name in mnist_inference.OBJECTIVES},
}


def data(kind: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    if kind == "toy":
        return iv.data.two_point_data(40, seed=0)
    x = torch.rand(40, 1, 28, 28, generator=g)
    return x if kind == "images" else x.bernoulli(generator=g)


def trainer(case: str) -> Trainer:
    build, loss, kind, binarize = CASES[case]
    config = TrainConfig(iterations=2, batch_size=20, progress=False, binarize=binarize)
    return Trainer(build(), loss(), data(kind), config, device=iv.get_device())


@pytest.fixture
def reseeds(monkeypatch):
    """The seeds passed to torch.cuda.manual_seed_all while the test runs (CPU machines too)."""
    seen: list[int] = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: seen.append(seed))
    return seen


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_training_step_creates_every_tensor_on_the_model_device(case):
    t = trainer(case)
    t.train_step()  # first-step set-up (optimizer state) outside the spy
    with FactorySpy() as spy:
        t.train_step()
    assert not spy.calls, f"tensors created without device= during a {case} step: {sorted(spy.calls)}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_training_step_does_not_reseed_the_global_generators(case, reseeds):
    t = trainer(case)
    reseeds.clear()  # the trainer seeds once when it is built (seed_everything): that is its job
    t.train_step()
    t.train_step()
    assert reseeds == [], f"a {case} step reseeded every CUDA device: {reseeds}"


def test_measurements_create_every_tensor_on_the_model_device(reseeds):
    torch.manual_seed(0)
    device = iv.get_device()
    model = pixelcnn_models.build_model("mmd", 3, QUICK).to(device).eval()
    x = data("images").bernoulli(generator=torch.Generator().manual_seed(1))[:6].to(device)
    reseeds.clear()
    with FactorySpy() as spy, torch.no_grad():
        z = encode_codes(model, x)
        full_batch_mmd(z, model.prior())
        model.sample(4)
        log_likelihood_with_error(model, x[:2], 8, chunk_size=8)
        log_likelihood_with_error(model, x[:2], 8, proposal="prior", chunk_size=8)
    assert not spy.calls, f"tensors created without device= while measuring: {sorted(spy.calls)}"
    assert reseeds == [], f"a measurement reseeded every CUDA device: {reseeds}"


def test_the_spies_see_what_they_look_for(reseeds):
    """The checks above are not vacuous: a factory call in the package and a reseed are caught."""
    with FactorySpy() as spy:
        exec(compile("import torch\ntorch.zeros(2)", str(PACKAGE / "runtime.py"), "exec"), {})
    assert any(call.startswith("infovae/runtime.py:2 torch.zeros") for call in spy.calls), spy.calls
    torch.manual_seed(3)
    assert reseeds == [3]

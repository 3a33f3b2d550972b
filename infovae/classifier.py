"""The MNIST classifier behind the class-distribution metric (Fig. 6 C; chapter 8).

The metric labels samples of a generative model with a classifier trained on real digits
and compares the class histogram with the data's. The classifier is a small CNN (conv 16
-> pool -> conv 32 -> pool -> fc 128 -> 10 logits, ReLU), trained by the package on the
training split with a fresh stochastic binarization of every batch (so it sees binary
images, like the samples it will label), each image shifted by up to 2 pixels in each
direction (``random_shift``), Adam with a one-cycle learning-rate schedule (peak 2e-3),
batch 128.
The number of steps depends on the profile (``CLASSIFIER_STEPS``); the trained weights
are cached as a weights-only checkpoint in the user's cache directory
(``$XDG_CACHE_HOME/infovae`` or ``~/.cache/infovae``) together with the test accuracy
measured on stochastically binarized test digits.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .data import cache_dir, binarize_images, load_mnist
from .runtime import NUMERICS_VERSION, PROFILES, get_device, get_profile, profile_sizes
from .train import save_checkpoint

# Training steps by profile. Test accuracy measured on stochastically binarized test digits
# (CPU, seed 0, version 2): quick 96.75%, book 98.54%, paper 99.21% (99.32% on the grey-level
# digits; 216 s on one CPU thread).
CLASSIFIER_STEPS: dict[str, int] = {"quick": 300, "book": 2000, "paper": 10000}
CLASSIFIER_VERSION = 2


class MNISTClassifier(nn.Module):
    """A small CNN mapping ``[B, 1, 28, 28]`` images in [0, 1] to 10 class logits.

    ``test_accuracy`` is set by ``load_classifier`` (the cached measurement), else ``None``.

    Example:
        >>> import torch
        >>> from infovae.classifier import MNISTClassifier
        >>> classifier = MNISTClassifier()
        >>> classifier(torch.zeros(2, 1, 28, 28)).shape, classifier.test_accuracy
        (torch.Size([2, 10]), None)
    """

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * 7 * 7, 128),
            nn.ReLU(),
            nn.Linear(128, 10),
        )
        self.test_accuracy: float | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != (1, 28, 28):
            raise ValueError(f"the classifier expects images [B, 1, 28, 28], got {list(x.shape)}")
        return self.net(x)


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image of ``x [B, C, H, W]`` by its own random offset, filling with zeros.

    The offsets are drawn uniformly from ``-max_shift ... max_shift`` pixels, independently
    for rows and columns (``generator`` is a CPU generator); ``max_shift = 0`` returns ``x``.

    Example:
        >>> import torch
        >>> from infovae.classifier import random_shift
        >>> x = torch.zeros(4, 1, 5, 5)
        >>> x[:, :, 2, 2] = 1.0  # one lit pixel in the middle of each image
        >>> shifted = random_shift(x, 1, torch.Generator().manual_seed(0))
        >>> shifted.shape, shifted.sum((1, 2, 3)).tolist(), random_shift(x, 0, torch.Generator()) is x
        (torch.Size([4, 1, 5, 5]), [1.0, 1.0, 1.0, 1.0], True)
    """
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    if max_shift == 0:
        return x
    b, _, h, w = x.shape
    offsets = torch.randint(0, 2 * max_shift + 1, (b, 2), generator=generator).to(x.device)
    rows = (offsets[:, 0, None] + torch.arange(h, device=x.device))[:, :, None]  # [B, H, 1]
    cols = (offsets[:, 1, None] + torch.arange(w, device=x.device))[:, None, :]  # [B, 1, W]
    padded = F.pad(x, (max_shift,) * 4)
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def train_classifier(
    steps: int,
    batch_size: int = 128,
    lr: float = 2e-3,
    max_shift: int = 2,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
    data: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> MNISTClassifier:
    """Train a fresh ``MNISTClassifier`` for ``steps`` Adam steps on dynamically binarized digits.

    Args:
        steps: optimiser steps, each on the next batch of a seeded shuffle (reshuffled every epoch).
        batch_size: images per step.
        lr: the peak learning rate of the one-cycle schedule (warm-up over the first 15% of
            the steps, then cosine annealing towards zero).
        max_shift: each training image is shifted by up to this many pixels (``random_shift``).
        seed: seeds the initialization, the data order and the binarization.
        device: defaults to ``iv.get_device()``.
        progress: show a progress bar.
        data: ``(x, y)`` to train on; defaults to the MNIST training split.

    Returns:
        the trained classifier, in eval mode, on ``device``.

    Example:
        >>> import torch
        >>> from infovae.classifier import train_classifier
        >>> x = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))
        >>> y = torch.arange(16) % 10
        >>> classifier = train_classifier(2, batch_size=8, device="cpu", progress=False, data=(x, y))
        >>> type(classifier).__name__, classifier.training
        ('MNISTClassifier', False)
    """
    for name, value in (("steps", steps), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    if isinstance(max_shift, bool) or not isinstance(max_shift, int) or max_shift < 0:
        raise ValueError(f"max_shift must be an integer >= 0, got {max_shift!r}")
    device = torch.device(device) if device is not None else get_device()
    x, y = data if data is not None else load_mnist("train")
    if len(x) != len(y) or len(x) < batch_size:
        raise ValueError(f"batch_size {batch_size} needs at least as many images and labels, got {len(x)} and {len(y)}")
    x, y = x.to(device), y.to(device)
    torch.manual_seed(seed)
    model = MNISTClassifier().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.15)
    order = torch.Generator().manual_seed(seed)
    binarize = torch.Generator(device=device).manual_seed(seed + 1)
    perm, cursor = torch.randperm(len(x), generator=order), 0
    model.train()
    for _ in tqdm(range(steps), desc="training the MNIST classifier", disable=not progress, leave=False):
        if cursor + batch_size > len(x):
            perm, cursor = torch.randperm(len(x), generator=order), 0
        idx = perm[cursor : cursor + batch_size].to(device)
        cursor += batch_size
        images = random_shift(binarize_images(x[idx], "stochastic", binarize), max_shift, order)
        loss = F.cross_entropy(model(images), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    return model.eval()


@torch.inference_mode()
def classifier_accuracy(classifier: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Fraction of images ``x`` whose most likely class is ``y``.

    Example:
        >>> import torch
        >>> from infovae.classifier import classifier_accuracy
        >>> classifier = torch.nn.Linear(2, 2, bias=False)
        >>> _ = torch.nn.init.eye_(classifier.weight)  # the logits are the inputs
        >>> x, y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1, 1, 1])
        >>> classifier_accuracy(classifier, x, y)
        0.75
    """
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"x and y must be non-empty and of one length, got lengths {len(x)} and {len(y)}")
    device = next(classifier.parameters()).device
    was_training = classifier.training
    classifier.eval()
    correct = sum(int((classifier(xb.to(device)).argmax(1) == yb.to(device)).sum()) for xb, yb in zip(x.split(batch_size), y.split(batch_size)))
    classifier.train(was_training)
    return correct / len(x)


def classifier_path(steps: int, seed: int = 0) -> Path:
    """Where the cached classifier of ``steps`` training steps lives.

    The name carries the numerics version (``infovae.runtime.NUMERICS_VERSION``, guarded by
    the golden test ``tests/test_numerics.py``), so a change of the numbers trains a new
    classifier, while moving or documenting code keeps the trained one.

    Example:
        >>> from infovae.classifier import classifier_path
        >>> classifier_path(2000).name  # doctest: +ELLIPSIS
        'classifier-v2-2000steps-seed0-n1.pt'
    """
    return cache_dir() / f"classifier-v{CLASSIFIER_VERSION}-{steps}steps-seed{seed}-n{NUMERICS_VERSION}.pt"


def load_classifier(
    profile: str | None = None,
    device: torch.device | str | None = None,
    retrain: bool = False,
    progress: bool = True,
    seed: int = 0,
) -> MNISTClassifier:
    """The trained MNIST classifier of a profile: from the cache, or trained and cached now.

    Args:
        profile: ``"quick"``, ``"light"``, ``"book"`` or ``"paper"`` (``iv.get_profile()`` by
            default): sets the training length ``CLASSIFIER_STEPS[profile]`` (light: book's).
        device: where to put it (``iv.get_device()`` by default).
        retrain: ignore the cache and train again.
        progress: show a progress bar while training.
        seed: seed of the training run.

    Returns:
        the classifier in eval mode, with ``test_accuracy`` (on stochastically binarized test
        digits, seed 0) set.

    Example:
        >>> from infovae.classifier import load_classifier
        >>> classifier = load_classifier("quick", device="cpu", progress=False)  # doctest: +SKIP
        >>> classifier.test_accuracy  # doctest: +SKIP
        0.9675
    """
    profile = profile or get_profile()
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    device = torch.device(device) if device is not None else get_device()
    steps = profile_sizes(CLASSIFIER_STEPS, profile)
    path = classifier_path(steps, seed)
    model = MNISTClassifier()
    if path.is_file() and not retrain:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state["model"])
            model.test_accuracy = float(state["test_accuracy"])
            return model.to(device).eval()
        except Exception as err:  # noqa: BLE001 (a corrupt cache is named and retrained)
            warnings.warn(f"the cached classifier {path} is unreadable ({type(err).__name__}); retraining it", stacklevel=2)
            model = MNISTClassifier()
    model = train_classifier(steps, seed=seed, device=device, progress=progress)
    x, y = load_mnist("test", binarize="stochastic", seed=0)
    model.test_accuracy = classifier_accuracy(model, x, y)
    try:
        save_checkpoint({"model": model.state_dict(), "steps": steps, "test_accuracy": model.test_accuracy}, path)
    except OSError:
        pass  # a read-only cache only costs retraining next time
    return model

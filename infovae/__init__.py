"""InfoVAE: balancing learning and inference in variational autoencoders, in PyTorch.

The package behind the executable book on Zhao, Song & Ermon (AAAI 2019). The public
names below are stable: the book, the tests and users rely on them. The core: ``data``,
``divergences``, ``objective``, ``vae``, ``networks``, ``pixelcnn``, ``precision``, ``train``
(the trainer subpackage), ``metrics``, ``tuning`` (choosing lambda), ``validation``. Beside it,
for the book: ``finite`` and ``linear_gaussian`` (Part I), ``classifier``, ``experiments``
(Part II), ``book`` (helpers of the chapters).

``import infovae`` imports only the core's first level (torch, numpy); the others, and
scikit-learn, scipy and matplotlib behind them, are imported on first use
(``iv.metrics``, ``iv.book``, ...).
"""

from __future__ import annotations

import importlib
from typing import Any

from .data import load_mnist
from .divergences import gaussian_kl, mmd
from .networks import build_vae
from .objective import InfoVAELoss, InfoVAEOutput, ObjectiveConfig
from .runtime import get_device, get_profile, seed_everything
from .train import TrainConfig, Trainer
from .train.checkpoint import load_model as load
from .vae import VAE

__version__ = "0.1.0"

# submodules imported on first access (PEP 562), so that `import infovae` stays fast
_LAZY = ("book", "classifier", "experiments", "finite", "linear_gaussian", "metrics", "tuning")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'infovae' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "InfoVAELoss",
    "InfoVAEOutput",
    "ObjectiveConfig",
    "TrainConfig",
    "Trainer",
    "VAE",
    "book",
    "build_vae",
    "finite",
    "gaussian_kl",
    "get_device",
    "get_profile",
    "linear_gaussian",
    "load",
    "load_mnist",
    "metrics",
    "mmd",
    "seed_everything",
    "tuning",
]

"""InfoVAE: balancing learning and inference in variational autoencoders, in PyTorch.

The package behind the executable book on Zhao, Song & Ermon (AAAI 2019). The public
names below are stable: the book, the tests and users rely on them. Submodules:
``data``, ``divergences``, ``objective``, ``networks``, ``pixelcnn``, ``train``,
``classifier``, ``metrics``, ``tuning`` (choosing lambda), ``finite`` and ``linear_gaussian`` (Part I), ``experiments``
(Part II), ``book`` (helpers of the chapters).
"""

from . import book, finite, linear_gaussian, metrics, tuning
from .data import load_mnist
from .divergences import gaussian_kl, mmd
from .networks import build_vae
from .objective import InfoVAELoss, InfoVAEOutput
from .runtime import get_device, get_profile, seed_everything
from .train import TrainConfig, Trainer
from .vae import VAE

__version__ = "0.1.0"

__all__ = [
    "InfoVAELoss",
    "InfoVAEOutput",
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
    "load_mnist",
    "metrics",
    "mmd",
    "seed_everything",
    "tuning",
]

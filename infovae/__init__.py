"""InfoVAE: balancing learning and inference in variational autoencoders, in PyTorch.

The package behind the executable book on Zhao, Song & Ermon (AAAI 2019). The public
names below are stable: the book, the tests and users rely on them.
"""

from .data import load_mnist
from .runtime import get_device, get_profile, seed_everything
from .vae import VAE

__version__ = "0.1.0"

__all__ = [
    "VAE",
    "get_device",
    "get_profile",
    "load_mnist",
    "seed_everything",
]

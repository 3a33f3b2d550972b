"""A researcher's own encoder and decoder (plain torch modules, no infovae classes), shared by the
tests of the package's contract (test_vae, test_fuzz, test_train_safety)."""

from torch import nn
from torch.distributions import Bernoulli, Independent, Normal


def user_modules(dx: int, dz: int) -> tuple[type[nn.Module], type[nn.Module]]:
    """``(UserEncoder, UserDecoder)`` for data ``[B, dx]`` and codes ``[B, dz]``; neither has a
    ``latent_dim`` attribute. ``UserDecoder(per_pixel=True)`` returns a per-pixel Bernoulli (no
    Independent), which the package must refuse."""

    class UserEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(dx, 2 * dz)

        def forward(self, x):
            mean, raw = self.net(x).chunk(2, -1)
            return Independent(Normal(mean, nn.functional.softplus(raw) + 1e-3), 1)

    class UserDecoder(nn.Module):
        def __init__(self, per_pixel: bool = False):
            super().__init__()
            self.net = nn.Linear(dz, dx)
            self.per_pixel = per_pixel

        def forward(self, z):
            px = Bernoulli(logits=self.net(z))
            return px if self.per_pixel else Independent(px, 1)

    return UserEncoder, UserDecoder

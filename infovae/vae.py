"""The latent variable model of Eq. (1) with an amortized inference network.

``VAE(encoder, decoder, prior)`` holds the generative model p(z) p(x|z) and the inference
distribution q(z|x). Encoders and decoders are ordinary ``nn.Module`` objects that return
``torch.distributions`` objects, so any network plugs in:

* ``encoder(x)`` returns a distribution over z with ``batch_shape [B]`` and
  ``event_shape [dim]`` (wrap per-coordinate distributions in ``Independent``);
* ``decoder(z)`` returns a distribution over x with ``batch_shape [B]`` and
  ``event_shape x.shape[1:]``, so ``log_prob(x)`` is log p(x|z) summed over pixels, in nats.

The prior defaults to a standard normal of the encoder's dimension. It is kept as buffers,
so it follows ``model.to(device)``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal


class VAE(nn.Module):
    """A latent variable model p(z) p(x|z) with an inference network q(z|x) (Eq. 1).

    Args:
        encoder: module mapping ``x [B, ...]`` to a distribution over z (event ``[dim]``).
        decoder: module mapping ``z [B, dim]`` to a distribution over x (event ``x.shape[1:]``).
        prior: a distribution over z with event ``[dim]``; ``None`` means N(0, I) with
            ``dim = encoder.latent_dim`` (or the encoder's output size, found on first use).
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, prior: Distribution | None = None):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self._custom_prior = prior
        dim = getattr(encoder, "latent_dim", None)
        if prior is not None:
            dim = prior.event_shape[0] if len(prior.event_shape) == 1 else None
            if dim is None:
                raise ValueError(f"the prior must have event_shape [dim], got {tuple(prior.event_shape)}")
        self.register_buffer("_prior_loc", torch.zeros(dim) if dim else torch.zeros(0), persistent=False)

    @property
    def latent_dim(self) -> int:
        """Dimension of z (known after construction or after the first ``encode``)."""
        if self._prior_loc.numel() == 0:
            raise RuntimeError("latent_dim is unknown until the encoder has been called once")
        return self._prior_loc.numel()

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters (the CPU for a model without parameters)."""
        for p in self.parameters():
            return p.device
        return self._prior_loc.device

    def prior(self) -> Distribution:
        """p(z): the custom prior, or N(0, I) on the model's device."""
        if self._custom_prior is not None:
            return self._custom_prior
        loc = self._prior_loc
        return Independent(Normal(loc, torch.ones_like(loc)), 1)

    def encode(self, x: torch.Tensor) -> Distribution:
        """q(z|x) for a batch ``x``; checks its shape against the model's latent dimension."""
        qz = self.encoder(x)
        if not isinstance(qz, Distribution):
            raise TypeError(f"the encoder must return a torch Distribution, got {type(qz).__name__}")
        if len(qz.event_shape) != 1 or qz.batch_shape != x.shape[:1]:
            raise ValueError(
                "the encoder's distribution must have batch_shape [B] and event_shape [dim]; got "
                f"batch_shape {tuple(qz.batch_shape)}, event_shape {tuple(qz.event_shape)} for a batch "
                f"of {x.shape[0]} (wrap per-coordinate distributions in Independent(..., 1))"
            )
        dim = qz.event_shape[0]
        if self._prior_loc.numel() == 0:
            self._prior_loc = torch.zeros(dim, device=x.device)
        elif dim != self._prior_loc.numel():
            raise ValueError(f"the encoder returned a {dim}-dim z, the prior is {self._prior_loc.numel()}-dim")
        return qz

    def decode(self, z: torch.Tensor) -> Distribution:
        """p(x|z) for a batch of codes ``z [B, dim]``."""
        px = self.decoder(z)
        if not isinstance(px, Distribution):
            raise TypeError(f"the decoder must return a torch Distribution, got {type(px).__name__}")
        return px

    def forward(self, x: torch.Tensor) -> tuple[Distribution, torch.Tensor, Distribution]:
        """One reparameterized pass: ``(q(z|x), z ~ q(z|x), p(x|z))``."""
        qz = self.encode(x)
        z = qz.rsample() if qz.has_rsample else qz.sample()
        return qz, z, self.decode(z)

    @torch.inference_mode()
    def sample(self, n: int, mean: bool = False) -> torch.Tensor:
        """``n`` ancestral samples x ~ p(x|z), z ~ p(z) (the decoder's mean if ``mean``)."""
        if n < 1:
            raise ValueError(f"n must be positive, got {n}")
        z = self.prior().sample((n,))
        px = self.decode(z)
        return px.mean if mean else px.sample()

    @torch.inference_mode()
    def reconstruct(self, x: torch.Tensor, mean: bool = True) -> torch.Tensor:
        """Reconstructions: the decoder's mean (or a sample) at z ~ q(z|x)."""
        _, _, px = self(x)
        return px.mean if mean else px.sample()

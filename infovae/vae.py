"""The latent variable model of Eq. (1) (book chapter 1, ``ch1-marginal``) with an amortized inference network.

``VAE(encoder, decoder, prior)`` holds the generative model p(z) p(x|z) and the inference
distribution q(z|x). Encoders and decoders are ordinary ``nn.Module`` objects that return
``torch.distributions`` objects, so any network plugs in:

* ``encoder(x)`` returns a distribution over z with ``batch_shape [B]`` and
  ``event_shape [dim]`` (wrap per-coordinate distributions in ``Independent``);
* ``decoder(z)`` returns a distribution over x with ``batch_shape [B]`` and
  ``event_shape x.shape[1:]``, so ``log_prob(x)`` is log p(x|z) summed over pixels, in nats.

The contract is checked in one place, :func:`check_encoder_output` and
:func:`check_decoder_output`, which the objective, the trainer, ``suggest_lambda`` and the
metrics all use: a decoder that returns per-pixel distributions (no ``Independent``) would
make every reconstruction term a per-pixel mean, 784 times too small on MNIST.

The dimension of z is known when the model is built: from ``latent_dim=``, the prior, or a
``latent_dim`` attribute of the encoder (or of one of its submodules, or of the decoder).
The prior is a module (:class:`GaussianPrior` by default, N(0, I)): it is saved in the
``state_dict``, follows ``model.to(device)`` and ``model.double()``, and may be learnable.

Example::

    model = iv.VAE(my_encoder, my_decoder, latent_dim=8)   # prior N(0, I) in 8 dims
    z = model.prior().sample((4,))                         # works before any encode
    x = model.sample(4)
"""

from __future__ import annotations

import os
import re
from typing import Any

import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal

from . import validation


def _shape(t: torch.Size) -> tuple[int, ...]:
    return tuple(int(s) for s in t)


def check_encoder_output(qz: Any, x: torch.Tensor, latent_dim: int | None = None) -> Distribution:
    """``qz`` is q(z|x) for the batch ``x``: a Distribution, ``batch_shape [B]``, ``event_shape [dim]``.

    Args:
        qz: what the encoder returned for ``x``.
        x: the batch ``[B, ...]``.
        latent_dim: the dimension z must have (``None``: any).

    Returns:
        ``qz``. Raises a TypeError or ValueError that names the problem otherwise.

    Example:
        >>> import torch
        >>> from torch.distributions import Independent, Normal
        >>> from infovae.vae import check_encoder_output
        >>> x = torch.zeros(4, 1, 28, 28)
        >>> qz = Independent(Normal(torch.zeros(4, 10), torch.ones(4, 10)), 1)
        >>> check_encoder_output(qz, x, latent_dim=10) is qz
        True
        >>> check_encoder_output(Normal(torch.zeros(4, 10), 1.0), x)  # per-coordinate: refused
        Traceback (most recent call last):
        ...
        ValueError: the encoder's distribution must have batch_shape [B] and event_shape [dim]; ...
    """
    if not isinstance(qz, Distribution):
        raise TypeError(f"the encoder must return a torch Distribution, got {type(qz).__name__}")
    if len(qz.event_shape) != 1 or _shape(qz.batch_shape) != _shape(x.shape[:1]):
        raise ValueError(
            "the encoder's distribution must have batch_shape [B] and event_shape [dim]; got "
            f"batch_shape {_shape(qz.batch_shape)}, event_shape {_shape(qz.event_shape)} for a batch "
            f"of {x.shape[0]} (wrap per-coordinate distributions in Independent(..., 1))"
        )
    if latent_dim is not None and qz.event_shape[0] != latent_dim:
        raise ValueError(f"the encoder returned a {qz.event_shape[0]}-dim z, the model's prior is {latent_dim}-dim")
    return qz


def check_decoder_output(px: Any, x: torch.Tensor) -> Distribution:
    """``px`` is p(x|z) for the batch ``x``: a Distribution, ``batch_shape [B]``, ``event_shape x.shape[1:]``.

    A per-pixel distribution (e.g. ``Bernoulli(logits)`` of shape ``[B, 1, 28, 28]`` without
    ``Independent``) is refused: its ``log_prob`` is per pixel, so every loss and metric
    averaging it over the batch would be off by the number of pixels.

    Args:
        px: what the decoder returned.
        x: the batch ``[B, ...]`` it must model.

    Returns:
        ``px``. Raises a TypeError or ValueError that names the problem otherwise.

    Example:
        >>> import torch
        >>> from torch.distributions import Bernoulli, Independent
        >>> from infovae.vae import check_decoder_output
        >>> x = torch.zeros(4, 1, 28, 28)
        >>> px = Independent(Bernoulli(logits=torch.zeros(4, 1, 28, 28)), 3)
        >>> check_decoder_output(px, x) is px
        True
        >>> px.log_prob(x).shape  # one number per image: log p(x|z) summed over pixels
        torch.Size([4])
    """
    if not isinstance(px, Distribution):
        raise TypeError(f"the decoder must return a torch Distribution, got {type(px).__name__}")
    batch, event, want = _shape(px.batch_shape), _shape(px.event_shape), _shape(x.shape)
    if batch != want[:1] or event != want[1:]:
        hint = ""
        if batch + event == want:
            hint = (
                f" (a per-pixel distribution: wrap it in Independent, e.g. "
                f"torch.distributions.Independent(dist, {len(want) - 1}), so that log_prob sums over each image)"
            )
        raise ValueError(
            f"the decoder's distribution has shape {batch + event} (batch_shape {batch}, event_shape {event}) "
            f"but x has shape {want}: it needs batch_shape [B] and event_shape x.shape[1:]{hint}"
        )
    return px


class GaussianPrior(nn.Module):
    """p(z) = N(loc, diag scale^2) as a module: ``prior()`` returns the distribution.

    ``loc`` and ``log_scale`` are buffers (saved in the ``state_dict``, moved by ``.to()``),
    or parameters when ``learnable``. The default is the standard normal N(0, I).

    Args:
        latent_dim: dimension of z.
        learnable: train ``loc`` and ``log_scale`` with the model.
        loc, scale: initial mean and standard deviation (``[latent_dim]`` or scalars).

    Example:
        >>> from infovae.vae import GaussianPrior
        >>> prior = GaussianPrior(8, learnable=True)
        >>> prior().sample((3,)).shape
        torch.Size([3, 8])
        >>> sorted(name for name, _ in prior.named_parameters())
        ['loc', 'log_scale']
    """

    loc: torch.Tensor
    log_scale: torch.Tensor

    def __init__(
        self,
        latent_dim: int,
        learnable: bool = False,
        loc: torch.Tensor | float = 0.0,
        scale: torch.Tensor | float = 1.0,
    ):
        super().__init__()
        validation.integer("latent_dim", latent_dim, minimum=1)
        loc_t = torch.as_tensor(loc, dtype=torch.get_default_dtype()).expand(latent_dim).clone()
        scale_t = torch.as_tensor(scale, dtype=torch.get_default_dtype()).expand(latent_dim).clone()
        if not bool(torch.isfinite(loc_t).all()) or not bool((scale_t > 0).all()) or not bool(torch.isfinite(scale_t).all()):
            raise ValueError("the prior needs a finite loc and a positive finite scale")
        self.latent_dim = latent_dim
        self.learnable = learnable
        if learnable:
            self.loc = nn.Parameter(loc_t)
            self.log_scale = nn.Parameter(scale_t.log())
        else:
            self.register_buffer("loc", loc_t)
            self.register_buffer("log_scale", scale_t.log())

    def forward(self) -> Distribution:
        """The distribution p(z), ``event_shape [latent_dim]``."""
        return Independent(Normal(self.loc, self.log_scale.exp()), 1)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):  # type: ignore[no-untyped-def]
        # Checkpoints written before the prior was part of the model hold no prior entries:
        # they all had the standard normal, which is what a fixed prior keeps.
        if not self.learnable:
            for name in ("loc", "log_scale"):
                state_dict.setdefault(prefix + name, getattr(self, name).detach().clone())
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)

    def extra_repr(self) -> str:
        return f"latent_dim={self.latent_dim}, learnable={self.learnable}"


class DistributionPrior(nn.Module):
    """A prior given as a ready-made ``torch.distributions`` object, held as it is.

    It does not follow ``.to()`` and is not saved in the ``state_dict`` (build a module such
    as :class:`GaussianPrior` for that); a ``Normal`` or ``Independent(Normal)`` passed to
    :class:`VAE` becomes a :class:`GaussianPrior` instead.

    Example:
        >>> import torch
        >>> from torch.distributions import Independent, Laplace
        >>> from infovae.vae import DistributionPrior
        >>> prior = DistributionPrior(Independent(Laplace(torch.zeros(2), torch.ones(2)), 1))
        >>> prior.latent_dim, type(prior()).__name__, prior().sample((5,)).shape
        (2, 'Independent', torch.Size([5, 2]))
    """

    def __init__(self, distribution: Distribution):
        super().__init__()
        if len(distribution.event_shape) != 1:
            raise ValueError(f"the prior must have event_shape [dim], got {_shape(distribution.event_shape)}")
        self.distribution = distribution
        self.latent_dim = int(distribution.event_shape[0])

    def forward(self) -> Distribution:
        """The distribution, as given."""
        return self.distribution


def as_prior_module(prior: nn.Module | Distribution | None, latent_dim: int | None) -> nn.Module:
    """The prior as a module: ``None`` gives N(0, I) in ``latent_dim`` dimensions, a plain
    ``Normal``/``Independent(Normal)`` a :class:`GaussianPrior`, any other distribution a
    :class:`DistributionPrior`, and a module is checked (``prior()`` must return a
    distribution with ``event_shape [dim]``).

    Example:
        >>> import torch
        >>> from torch.distributions import Independent, Normal
        >>> from infovae.vae import as_prior_module
        >>> as_prior_module(None, 4)
        GaussianPrior(latent_dim=4, learnable=False)
        >>> as_prior_module(Independent(Normal(torch.zeros(3), torch.ones(3)), 1), None)
        GaussianPrior(latent_dim=3, learnable=False)
    """
    if prior is None:
        if latent_dim is None:
            raise TypeError("the latent dimension is unknown")
        return GaussianPrior(latent_dim)
    if isinstance(prior, Distribution):
        base = prior.base_dist if type(prior) is Independent and prior.reinterpreted_batch_ndims == 1 else prior
        if type(base) is Normal and len(prior.event_shape) == 1 and len(base.batch_shape) == 1:
            gaussian = GaussianPrior(int(prior.event_shape[0]))
            gaussian.loc = base.loc.detach().clone()
            gaussian.log_scale = base.scale.detach().log()
            return gaussian
        if type(base) is Normal and len(base.batch_shape) == 1 and len(prior.event_shape) == 0:
            raise ValueError(
                f"the prior must have event_shape [dim], got batch_shape {_shape(prior.batch_shape)} and "
                "event_shape (): wrap it in Independent(prior, 1)"
            )
        return DistributionPrior(prior)
    if isinstance(prior, nn.Module):
        dist = prior()
        if not isinstance(dist, Distribution) or len(dist.event_shape) != 1:
            raise TypeError("a prior module must return, when called with no arguments, a Distribution with event_shape [dim]")
        return prior
    raise TypeError(f"prior must be None, a torch Distribution or an nn.Module, got {type(prior).__name__}")


def _call(network: nn.Module, t: torch.Tensor, who: str, name: str) -> Any:
    """``network(t)``, with a shape mismatch inside it reported with the input's shape."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    try:
        return network(t)
    except RuntimeError as err:
        if re.search(r"shape|size|dimension", str(err)):
            raise ValueError(f"the {who} failed on {name} of shape {_shape(t.shape)}: {err}") from err
        raise


def _declared_dim(module: nn.Module) -> int | None:
    """``module.latent_dim``, or the one value of ``latent_dim`` among its submodules."""
    dim = getattr(module, "latent_dim", None)
    if dim is None:
        found = {getattr(m, "latent_dim") for m in module.modules() if isinstance(getattr(m, "latent_dim", None), int)}
        dim = found.pop() if len(found) == 1 else None
    return None if dim is None else validation.integer(f"{type(module).__name__}.latent_dim", dim, minimum=1)


class VAE(nn.Module):
    """A latent variable model p(z) p(x|z) with an inference network q(z|x) (Eq. 1).

    The generative joint p(x, z) = p(z) p(x|z) is book Eq. ``ch1-joint-p`` and the encoder
    defines the inference joint q(x, z) = p_D(x) q(z|x) of book Eq. ``ch1-joint-q``.

    Args:
        encoder: module mapping ``x [B, ...]`` to a distribution over z (event ``[dim]``).
        decoder: module mapping ``z [B, dim]`` to a distribution over x (event ``x.shape[1:]``).
        prior: ``None`` (N(0, I)), an ``nn.Module`` whose ``prior()`` returns a distribution
            with event ``[dim]`` (e.g. :class:`GaussianPrior`), or a distribution.
        latent_dim: dimension of z; needed only when neither the prior nor a ``latent_dim``
            attribute of the encoder (or decoder) says it. All that are given must agree.

    Example:
        >>> import torch
        >>> from infovae.networks import MLPDecoder, MLPEncoder
        >>> from infovae.vae import VAE
        >>> _ = torch.manual_seed(0)
        >>> model = VAE(MLPEncoder((6,), 2, hidden=(8,)), MLPDecoder(2, (6,), hidden=(8,)))
        >>> model.latent_dim, model.prior
        (2, GaussianPrior(latent_dim=2, learnable=False))
        >>> x = torch.zeros(5, 6)
        >>> qz, z, px = model(x)  # q(z|x), z ~ q(z|x), p(x|z)
        >>> z.shape, px.log_prob(x).shape, model.sample(3).shape
        (torch.Size([5, 2]), torch.Size([5]), torch.Size([3, 6]))
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        prior: nn.Module | Distribution | None = None,
        *,
        latent_dim: int | None = None,
    ):
        super().__init__()
        if not isinstance(encoder, nn.Module) or not isinstance(decoder, nn.Module):
            raise TypeError(
                f"encoder and decoder must be nn.Modules, got {type(encoder).__name__} and {type(decoder).__name__}"
            )
        if latent_dim is not None:
            validation.integer("latent_dim", latent_dim, minimum=1)
        prior_module = as_prior_module(prior, 1) if prior is not None else None
        claims = {
            "latent_dim": latent_dim,
            "the prior": int(prior_module().event_shape[0]) if prior_module is not None else None,
            "encoder.latent_dim": _declared_dim(encoder),
            "decoder.latent_dim": _declared_dim(decoder),
        }
        known = {name: dim for name, dim in claims.items() if dim is not None}
        if not known:
            raise TypeError(
                "the dimension of z is unknown: pass VAE(encoder, decoder, latent_dim=...), a prior, "
                "or give the encoder a latent_dim attribute"
            )
        if len(set(known.values())) > 1:
            raise ValueError("the dimension of z disagrees: " + ", ".join(f"{k} = {v}" for k, v in known.items()))
        self.latent_dim: int = next(iter(known.values()))
        self.encoder = encoder
        self.decoder = decoder
        self.prior = prior_module if prior_module is not None else GaussianPrior(self.latent_dim)
        # how infovae.networks.build_vae made it (plain values; None for the caller's own modules):
        # stored in training checkpoints, so that VAE.from_checkpoint / infovae.load rebuild it
        self.spec: dict[str, Any] | None = None

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: torch.device | str | None = "cpu") -> "VAE":
        """The model of a training checkpoint, rebuilt from its spec and loaded (``infovae.load``).

        Example:
            >>> import tempfile, torch
            >>> from pathlib import Path
            >>> import infovae as iv
            >>> x = torch.tensor([[-1.0], [1.0]]).repeat(8, 1)
            >>> config = iv.TrainConfig(iterations=2, batch_size=8, progress=False)
            >>> with tempfile.TemporaryDirectory() as folder:
            ...     trainer = iv.Trainer(iv.build_vae("toy", 1), iv.InfoVAELoss.elbo(), x, config, device="cpu")
            ...     _ = trainer.run()
            ...     _ = trainer.save(Path(folder) / "run.pt")
            ...     model = iv.VAE.from_checkpoint(Path(folder) / "run.pt")
            >>> model.spec["architecture"], torch.equal(model.prior.loc, trainer.model.prior.loc)
            ('toy', True)
        """
        from .train.checkpoint import load_model

        return load_model(path, device)

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters (or buffers; the CPU for a model with neither)."""
        for t in (*self.parameters(), *self.buffers()):
            return t.device
        return torch.device("cpu")

    def encode(self, x: torch.Tensor) -> Distribution:
        """q(z|x) for a batch ``x``; checks its shapes against the model's latent dimension."""
        return check_encoder_output(_call(self.encoder, x, "encoder", "x"), x, self.latent_dim)

    def decode(self, z: torch.Tensor) -> Distribution:
        """p(x|z) for a batch of codes ``z [B, dim]``."""
        px = _call(self.decoder, z, "decoder", "z")
        if not isinstance(px, Distribution):
            raise TypeError(f"the decoder must return a torch Distribution, got {type(px).__name__}")
        return px

    def forward(self, x: torch.Tensor) -> tuple[Distribution, torch.Tensor, Distribution]:
        """One reparameterized pass: ``(q(z|x), z ~ q(z|x), p(x|z))``, shapes checked against ``x``."""
        qz = self.encode(x)
        z = qz.rsample() if qz.has_rsample else qz.sample()
        return qz, z, check_decoder_output(self.decode(z), x)

    @torch.inference_mode()
    def sample(self, n: int, mean: bool = False) -> torch.Tensor:
        """``n`` ancestral samples x ~ p(x|z), z ~ p(z) (the decoder's mean if ``mean``)."""
        validation.integer("n", n, minimum=1)
        z = self.prior().sample((n,))
        px = self.decode(z)
        return px.mean if mean else px.sample()

    @torch.inference_mode()
    def reconstruct(self, x: torch.Tensor, mean: bool = True) -> torch.Tensor:
        """Reconstructions: the decoder's mean (or a sample) at z ~ q(z|x)."""
        _, _, px = self(x)
        return px.mean if mean else px.sample()

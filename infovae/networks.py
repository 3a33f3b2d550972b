"""Encoders and decoders of the paper's experiments (sizes of the authors' code), returning distributions.

Every encoder maps ``x [B, ...]`` to q(z|x), a distribution with ``batch_shape [B]`` and
``event_shape [latent_dim]``, and exposes ``latent_dim``; every decoder maps ``z [B, dim]``
to p(x|z) with ``event_shape`` the shape of one x. They plug into ``infovae.VAE``.

* ``MLPEncoder`` / ``MLPDecoder``: fully connected nets with leaky ReLU (slope 0.1). With
  200-200 hidden units and Gaussian heads (std = sigmoid + 5e-4) they are the nets of the
  two-point experiment (Fig. 1, chapter 6); with a Bernoulli head they model binary images.
* ``ConvEncoder`` / ``ConvDecoder``: the DCGAN-style pair of Figs. 2-5 (chapter 7): conv 64 ->
  conv 128 (4x4, stride 2, leaky ReLU 0.1) -> fc 1024 -> mean and std, and fc 1024 -> fc
  7x7x128 -> deconv 64 -> deconv 1 with Bernoulli logits (ReLU, as in the authors' code).
  With ``hidden=512, batch_norm=True, min_std=1e-3, std_floor="max"`` the encoder is the one
  paired with the PixelCNN decoder (Fig. 6, Table 1; chapters 8 and 9).
* ``deterministic=True`` makes any encoder return a ``PointMass`` at its code: the plain
  (unregularized) autoencoder of Fig. 6.
* ``build_vae(architecture, latent_dim, shape=..., likelihood=...)`` assembles the models of the
  book by name (the registry ``MODELS``, which also holds how each is trained), for any data shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.distributions import Bernoulli, Distribution, Independent, Normal, constraints

from . import validation
from .pixelcnn import PixelCNNConfig, PixelCNNDecoder
from .precision import network_region
from .runtime import seeded
from .vae import VAE

MNIST_SHAPE: tuple[int, int, int] = (1, 28, 28)
STD_FLOORS: tuple[str, ...] = ("add", "max")
LIKELIHOODS: tuple[str, ...] = ("bernoulli", "gaussian")


class PointMass(Distribution):
    """A point mass (Dirac delta) at ``loc``, with ``event_shape [dim]``.

    The "posterior" of a deterministic encoder: ``rsample()`` returns ``loc`` itself (exactly,
    differentiably), ``log_prob`` is 0 at ``loc`` and -inf elsewhere, the variance is zero.

    Args:
        loc: codes ``[..., dim]``.

    Example:
        >>> import torch
        >>> from infovae.networks import PointMass
        >>> q = PointMass(torch.tensor([[0.5, -1.0]]))
        >>> q.rsample(), q.variance
        (tensor([[ 0.5000, -1.0000]]), tensor([[0., 0.]]))
        >>> q.log_prob(torch.tensor([[0.5, -1.0], [0.0, 0.0]]))
        tensor([0., -inf])
    """

    arg_constraints = {"loc": constraints.real_vector}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, loc: torch.Tensor, validate_args: bool | None = None):
        if loc.dim() < 1:
            raise ValueError("PointMass needs loc of shape [..., dim]")
        self.loc = loc
        super().__init__(loc.shape[:-1], loc.shape[-1:], validate_args=validate_args)

    @property
    def mean(self) -> torch.Tensor:
        return self.loc

    @property
    def mode(self) -> torch.Tensor:
        return self.loc

    @property
    def variance(self) -> torch.Tensor:
        return torch.zeros_like(self.loc)

    def rsample(self, sample_shape: torch.Size | Sequence[int] = torch.Size()) -> torch.Tensor:
        return self.loc.expand(self._extended_shape(torch.Size(sample_shape)))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        hit = (value == self.loc).all(-1)
        return torch.where(hit, 0.0, -math.inf).to(self.loc.dtype)


class LatentHead(nn.Module):
    """A linear layer mapping features to q(z|x): a diagonal Gaussian or a point mass.

    Args:
        in_features: size of the feature vector.
        latent_dim: dimension of z.
        deterministic: return ``PointMass(mean)`` instead of a Gaussian.
        min_std: floor of the standard deviation.
        std_floor: ``"add"`` for std = sigmoid(s) + min_std (Fig. 1, DCGAN) or ``"max"`` for
            std = max(sigmoid(s), min_std) (the PixelCNN experiments' encoder).

    Example:
        >>> import torch
        >>> from infovae.networks import LatentHead
        >>> q = LatentHead(in_features=8, latent_dim=2)(torch.zeros(3, 8))
        >>> q.batch_shape, q.event_shape
        (torch.Size([3]), torch.Size([2]))
        >>> type(LatentHead(8, 2, deterministic=True)(torch.zeros(3, 8))).__name__
        'PointMass'
    """

    def __init__(
        self,
        in_features: int,
        latent_dim: int,
        deterministic: bool = False,
        min_std: float = 5e-4,
        std_floor: str = "add",
    ):
        super().__init__()
        _check_dim(latent_dim)
        if std_floor not in STD_FLOORS:
            raise ValueError(f"std_floor must be one of {STD_FLOORS}, got {std_floor!r}")
        if not min_std > 0:
            raise ValueError(f"min_std must be positive, got {min_std}")
        self.latent_dim = latent_dim
        self.deterministic = deterministic
        self.min_std = min_std
        self.std_floor = std_floor
        self.linear = nn.Linear(in_features, latent_dim if deterministic else 2 * latent_dim)

    def forward(self, h: torch.Tensor) -> Distribution:
        if self.deterministic:
            return PointMass(self.linear(h))
        mean, raw = self.linear(h).chunk(2, dim=-1)
        return Independent(Normal(mean, _bounded_std(raw, self.min_std, self.std_floor)), 1)


def _bounded_std(raw: torch.Tensor, min_std: float, std_floor: str) -> torch.Tensor:
    """sigmoid(raw) + min_std, or max(sigmoid(raw), min_std)."""
    std = torch.sigmoid(raw)
    return std + min_std if std_floor == "add" else std.clamp_min(min_std)


def _mlp(in_features: int, hidden: Sequence[int]) -> nn.Sequential:
    """Linear layers with leaky ReLU (slope 0.1) after each."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_features, width), nn.LeakyReLU(0.1)]
        in_features = width
    return nn.Sequential(*layers)


def _check_dim(latent_dim: int) -> int:
    return validation.integer("latent_dim", latent_dim, minimum=1)


def _check_input(x: torch.Tensor, shape: tuple[int, ...], who: str) -> None:
    if tuple(x.shape[1:]) != shape:
        raise ValueError(f"{who} expects inputs of shape [B, {', '.join(map(str, shape))}], got {list(x.shape)}")


class MLPEncoder(nn.Module):
    """q(z|x) from a fully connected net (leaky ReLU 0.1).

    Args:
        in_shape: shape of one x, e.g. ``(1,)`` (two-point data) or ``(1, 28, 28)``.
        latent_dim: dimension of z.
        hidden: widths of the hidden layers (Fig. 1: 200, 200).
        deterministic, min_std, std_floor: see ``LatentHead``.

    Example:
        >>> import torch
        >>> from infovae.networks import MLPEncoder
        >>> encoder = MLPEncoder((1, 28, 28), latent_dim=4, hidden=(32,))
        >>> qz = encoder(torch.zeros(5, 1, 28, 28))
        >>> qz.sample().shape, encoder.latent_dim
        (torch.Size([5, 4]), 4)
    """

    mixed_precision = True  # its body runs in infovae.precision.network_region (bf16 training)

    def __init__(
        self,
        in_shape: Sequence[int],
        latent_dim: int,
        hidden: Sequence[int] = (200, 200),
        deterministic: bool = False,
        min_std: float = 5e-4,
        std_floor: str = "add",
    ):
        super().__init__()
        self.in_shape = tuple(in_shape)
        self.latent_dim = latent_dim
        self.body = _mlp(math.prod(self.in_shape), hidden)
        self.head = LatentHead(hidden[-1] if hidden else math.prod(self.in_shape), latent_dim, deterministic, min_std, std_floor)

    def forward(self, x: torch.Tensor) -> Distribution:
        _check_input(x, self.in_shape, "MLPEncoder")
        with network_region(x.device):
            h = self.body(x.flatten(1))
        return self.head(h.to(x.dtype))


class MLPDecoder(nn.Module):
    """p(x|z) from a fully connected net: Bernoulli logits or a Gaussian (std = sigmoid + min_std).

    Args:
        latent_dim: dimension of z.
        out_shape: shape of one x.
        hidden: widths of the hidden layers (Fig. 1: 200, 200).
        likelihood: ``"bernoulli"`` (binary images) or ``"gaussian"`` (the two-point data).
        min_std: floor added to the Gaussian's sigmoid standard deviation.

    Example:
        >>> import torch
        >>> from infovae.networks import MLPDecoder
        >>> px = MLPDecoder(latent_dim=1, out_shape=(1,), likelihood="gaussian")(torch.zeros(5, 1))
        >>> px.batch_shape, px.event_shape, px.log_prob(torch.ones(5, 1)).shape
        (torch.Size([5]), torch.Size([1]), torch.Size([5]))
    """

    mixed_precision = True  # its body runs in infovae.precision.network_region (bf16 training)

    def __init__(
        self,
        latent_dim: int,
        out_shape: Sequence[int],
        hidden: Sequence[int] = (200, 200),
        likelihood: str = "bernoulli",
        min_std: float = 5e-4,
    ):
        super().__init__()
        _check_dim(latent_dim)
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
        self.latent_dim = latent_dim
        self.out_shape = tuple(out_shape)
        self.likelihood = likelihood
        self.min_std = min_std
        n_out = math.prod(self.out_shape) * (2 if likelihood == "gaussian" else 1)
        self.net = nn.Sequential(_mlp(latent_dim, hidden), nn.Linear(hidden[-1] if hidden else latent_dim, n_out))

    def forward(self, z: torch.Tensor) -> Distribution:
        _check_input(z, (self.latent_dim,), "MLPDecoder")
        with network_region(z.device):
            out = self.net(z)
        out = out.to(z.dtype).view(z.shape[0], -1, *self.out_shape)
        if self.likelihood == "bernoulli":
            return Independent(Bernoulli(logits=out[:, 0]), len(self.out_shape))
        std = _bounded_std(out[:, 1], self.min_std, "add")
        return Independent(Normal(out[:, 0], std), len(self.out_shape))


class ConvEncoder(nn.Module):
    """q(z|x) for images (28x28, one channel by default): conv 64 -> conv 128 (4x4, stride 2, leaky ReLU 0.1) -> fc -> head.

    Args:
        latent_dim: dimension of z.
        hidden: width of the fully connected layer (DCGAN nets: 1024; PixelCNN experiments: 512).
        batch_norm: batch normalization after each convolution and the fc layer.
        deterministic, min_std, std_floor: see ``LatentHead``.
        image_size: height and width of the input, an int (square) or ``(height, width)``
            (28 for MNIST; 14 for the downsampled digits of chapter 8's information-preference
            experiment), each at least 4.
        channels: channels of the input (1 for MNIST, 3 for colour images).

    Example:
        >>> import torch
        >>> from infovae.networks import ConvEncoder
        >>> encoder = ConvEncoder(latent_dim=2, hidden=32)
        >>> encoder(torch.zeros(3, 1, 28, 28)).mean.shape
        torch.Size([3, 2])
        >>> ConvEncoder(2, hidden=32, image_size=14)(torch.zeros(3, 1, 14, 14)).event_shape
        torch.Size([2])
        >>> ConvEncoder(2, hidden=32, image_size=(16, 20), channels=3)(torch.zeros(3, 3, 16, 20)).event_shape
        torch.Size([2])
    """

    mixed_precision = True  # its body runs in infovae.precision.network_region (bf16 training)

    def __init__(
        self,
        latent_dim: int,
        hidden: int = 1024,
        batch_norm: bool = False,
        deterministic: bool = False,
        min_std: float = 5e-4,
        std_floor: str = "add",
        image_size: int | Sequence[int] = 28,
        channels: int = 1,
    ):
        super().__init__()
        height, width = _image_size(image_size)
        validation.integer("channels", channels, minimum=1)
        self.latent_dim = _check_dim(latent_dim)
        self.in_shape = (channels, height, width)

        def halved(side: int) -> int:  # each 4x4 stride-2 convolution with padding 1
            return (side - 2) // 2 + 1

        def block(layer: nn.Module, width: int, norm: type[nn.Module]) -> list[nn.Module]:
            return [layer, norm(width), nn.LeakyReLU(0.1)] if batch_norm else [layer, nn.LeakyReLU(0.1)]

        features = 128 * halved(halved(height)) * halved(halved(width))
        self.body = nn.Sequential(
            *block(nn.Conv2d(channels, 64, 4, stride=2, padding=1, bias=not batch_norm), 64, nn.BatchNorm2d),
            *block(nn.Conv2d(64, 128, 4, stride=2, padding=1, bias=not batch_norm), 128, nn.BatchNorm2d),
            nn.Flatten(),
            *block(nn.Linear(features, hidden, bias=not batch_norm), hidden, nn.BatchNorm1d),
        )
        self.head = LatentHead(hidden, latent_dim, deterministic, min_std, std_floor)

    def forward(self, x: torch.Tensor) -> Distribution:
        _check_input(x, self.in_shape, "ConvEncoder")
        with network_region(x.device):
            h = self.body(x)
        return self.head(h.to(x.dtype))


class ConvDecoder(nn.Module):
    """p(x|z) for images (28x28 binary by default): fc 1024 -> fc (H/4)x(W/4)x128 -> deconv 64 -> deconv C.

    Transposed convolutions are 4x4 with stride 2; hidden layers use ReLU. The output is
    Bernoulli logits, or for ``likelihood="gaussian"`` a mean and a standard deviation
    (sigmoid + ``min_std``) per pixel; sizes that are not multiples of 4 are cropped.

    Args:
        latent_dim: dimension of z.
        hidden: width of the first fully connected layer.
        out_shape: shape of one image ``(channels, height, width)``.
        likelihood: ``"bernoulli"`` (binary images) or ``"gaussian"`` (continuous values).
        min_std: floor added to the Gaussian's sigmoid standard deviation.

    Example:
        >>> import torch
        >>> from infovae.networks import ConvDecoder
        >>> px = ConvDecoder(latent_dim=2, hidden=32)(torch.zeros(3, 2))
        >>> px.sample().shape, px.log_prob(torch.zeros(3, 1, 28, 28)).shape
        (torch.Size([3, 1, 28, 28]), torch.Size([3]))
        >>> ConvDecoder(2, hidden=32, out_shape=(3, 18, 18), likelihood="gaussian")(torch.zeros(3, 2)).event_shape
        torch.Size([3, 18, 18])
    """

    mixed_precision = True  # its body runs in infovae.precision.network_region (bf16 training)

    def __init__(
        self,
        latent_dim: int,
        hidden: int = 1024,
        out_shape: Sequence[int] = MNIST_SHAPE,
        likelihood: str = "bernoulli",
        min_std: float = 5e-4,
    ):
        super().__init__()
        self.latent_dim = _check_dim(latent_dim)
        if len(tuple(out_shape)) != 3:
            raise ValueError(f"out_shape must be (channels, height, width), got {tuple(out_shape)}")
        channels = validation.integer("out_shape channels", out_shape[0], minimum=1)
        self.out_shape = (channels, *_image_size(tuple(out_shape[1:])))
        self.likelihood = validation.choice("likelihood", likelihood, LIKELIHOODS)
        self.min_std = validation.number("min_std", min_std, positive=True)
        h0, w0 = (-(-side // 4) for side in self.out_shape[1:])
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 128 * h0 * w0),
            nn.ReLU(),
            nn.Unflatten(1, (128, h0, w0)),
            nn.ConvTranspose2d(128, 64, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(64, channels * (2 if likelihood == "gaussian" else 1), 4, stride=2, padding=1),
        )

    def forward(self, z: torch.Tensor) -> Distribution:
        _check_input(z, (self.latent_dim,), "ConvDecoder")
        with network_region(z.device):
            out = self.net(z)
        channels, height, width = self.out_shape
        out = out[:, :, :height, :width].to(z.dtype)
        if self.likelihood == "bernoulli":
            return Independent(Bernoulli(logits=out), 3)
        return Independent(Normal(out[:, :channels], _bounded_std(out[:, channels:], self.min_std, "add")), 3)


def _image_size(size: int | Sequence[int]) -> tuple[int, int]:
    """``(height, width)`` from an int (square) or a pair, each an integer of at least 4."""
    pair = (size, size) if isinstance(size, int) and not isinstance(size, bool) else tuple(size)  # type: ignore[arg-type]
    if len(pair) != 2:
        raise ValueError(f"image_size must be an int or (height, width), got {size!r}")
    return (validation.integer("image height", pair[0], minimum=4), validation.integer("image width", pair[1], minimum=4))


@dataclass(frozen=True)
class Architecture:
    """A model of the book in the registry ``MODELS``: how to build it and how it is trained.

    Attributes:
        build: ``build(latent_dim, deterministic, shape, likelihood) -> VAE``.
        shape: the default shape of one x.
        likelihoods: the decoder likelihoods it offers (the first is the default).
        training: the paper's training settings for it (``TrainConfig`` fields: optimiser,
            learning rate, clipping, batch size, binarization).
        description: one line for ``--help``.

    Example:
        >>> from infovae.networks import MODELS
        >>> MODELS["dcgan"].shape, MODELS["dcgan"].likelihoods, MODELS["dcgan"].training["lr"]
        ((1, 28, 28), ('bernoulli', 'gaussian'), 0.0001)
    """

    build: Callable[[int, bool, tuple[int, ...], str], VAE]
    shape: tuple[int, ...]
    likelihoods: tuple[str, ...]
    training: Mapping[str, Any]
    description: str


def _toy(latent_dim: int, deterministic: bool, shape: tuple[int, ...], likelihood: str) -> VAE:
    return VAE(MLPEncoder(shape, latent_dim, deterministic=deterministic), MLPDecoder(latent_dim, shape, likelihood=likelihood))


def _dcgan(latent_dim: int, deterministic: bool, shape: tuple[int, ...], likelihood: str) -> VAE:
    _check_image_shape("dcgan", shape)
    encoder = ConvEncoder(latent_dim, deterministic=deterministic, image_size=shape[1:], channels=shape[0])
    return VAE(encoder, ConvDecoder(latent_dim, out_shape=shape, likelihood=likelihood))


def _pixelcnn(latent_dim: int, deterministic: bool, shape: tuple[int, ...], likelihood: str) -> VAE:
    _check_image_shape("pixelcnn", shape)
    if shape[0] != 1:
        raise ValueError(f"the pixelcnn decoder models single-channel images, got shape {shape}; use 'dcgan' or 'mlp'")
    encoder = ConvEncoder(latent_dim, hidden=512, batch_norm=True, deterministic=deterministic, min_std=1e-3,
                          std_floor="max", image_size=shape[1:])
    return VAE(encoder, PixelCNNDecoder(PixelCNNConfig(latent_dim=latent_dim, image_size=(shape[1], shape[2]))))


def _check_image_shape(architecture: str, shape: tuple[int, ...]) -> None:
    if len(shape) != 3:
        raise ValueError(f"the {architecture} networks take images (channels, height, width), got shape {shape}; use 'mlp'")


# The one registry from names to models: build_vae, the command line and checkpoints use it.
MODELS: dict[str, Architecture] = {
    "toy": Architecture(_toy, (1,), ("gaussian", "bernoulli"),
                        {"optimizer": "adam", "lr": 1e-4, "clip": None, "batch_size": 500, "binarize": None},
                        "Fig. 1 MLPs (200-200), Gaussian decoder, the two-point data"),
    "mlp": Architecture(_toy, MNIST_SHAPE, ("bernoulli", "gaussian"),
                        {"optimizer": "adam", "lr": 1e-3, "clip": None, "batch_size": 100, "binarize": "stochastic"},
                        "200-200 MLPs, any shape"),
    "dcgan": Architecture(_dcgan, MNIST_SHAPE, ("bernoulli", "gaussian"),
                          {"optimizer": "adam", "lr": 1e-4, "clip": None, "batch_size": 200, "binarize": "stochastic"},
                          "the DCGAN-style conv nets of Figs. 2-5, any image shape"),
    "pixelcnn": Architecture(_pixelcnn, MNIST_SHAPE, ("bernoulli",),
                             {"optimizer": "rmsprop", "lr": 1e-3, "clip": "value", "batch_size": 100, "binarize": "stochastic"},
                             "batch-normalized conv encoder and gated PixelCNN decoder (Fig. 6, Table 1)"),
}
ARCHITECTURES: tuple[str, ...] = tuple(MODELS)


def build_vae(
    architecture: str,
    latent_dim: int,
    deterministic: bool = False,
    *,
    shape: Sequence[int] | None = None,
    likelihood: str | None = None,
    seed: int | None = None,
) -> VAE:
    """The models of the book by name (the registry ``MODELS``), with the sizes of the paper's experiments.

    The model remembers how it was built (``model.spec``, plain values), which every training
    checkpoint stores, so ``infovae.load(path)`` rebuilds it.

    Args:
        architecture: ``"toy"`` (Fig. 1 MLPs, Gaussian decoder, x in R^1), ``"mlp"`` (200-200
            MLPs, Bernoulli decoder, MNIST), ``"dcgan"`` (Figs. 2-5) or ``"pixelcnn"`` (Fig. 6 and
            Table 1: batch-normalized conv encoder, gated PixelCNN decoder).
        latent_dim: dimension of z.
        deterministic: a point-mass encoder (the unregularized autoencoder).
        shape: the shape of one x (default: the architecture's, ``(1, 28, 28)`` for the
            image models): any ``(channels, height, width)`` with sides of at least 4 for
            ``"dcgan"`` (one channel for ``"pixelcnn"``), any shape for ``"mlp"``/``"toy"``.
        likelihood: ``"bernoulli"`` (binary data) or ``"gaussian"`` (continuous data);
            default: the architecture's first (``MODELS[architecture].likelihoods``).
        seed: draw the initial weights from this seed (the same weights on every run,
            whatever ran before, and torch's global random state untouched); ``None``: from
            torch's global generator. ``TrainConfig.seed`` seeds the training, this the model:
            both are stored in every checkpoint.

    Returns:
        a ``VAE`` with a standard normal prior, on the CPU (move it with ``.to(device)``).

    Example:
        >>> import torch
        >>> from infovae.networks import build_vae
        >>> model = build_vae("toy", latent_dim=1)
        >>> type(model.encoder).__name__, type(model.decoder).__name__, model.latent_dim
        ('MLPEncoder', 'MLPDecoder', 1)
        >>> model.sample(3).shape
        torch.Size([3, 1])
        >>> type(build_vae("pixelcnn", latent_dim=5, deterministic=True).decoder).__name__
        'PixelCNNDecoder'
        >>> colour = build_vae("dcgan", 8, shape=(3, 16, 16), likelihood="gaussian")
        >>> colour.sample(2).shape, colour.spec["likelihood"]
        (torch.Size([2, 3, 16, 16]), 'gaussian')
        >>> a, b = build_vae("mlp", 2, seed=0), build_vae("mlp", 2, seed=0)
        >>> all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
        True
    """
    validation.choice("architecture", architecture, ARCHITECTURES)
    entry = MODELS[architecture]
    _check_dim(latent_dim)
    if not isinstance(deterministic, bool):
        raise TypeError(f"deterministic must be True or False, got {deterministic!r}")
    if shape is None:
        shape = entry.shape
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence) or not shape:
        raise TypeError(f"shape must be a sequence of sizes, e.g. (3, 32, 32), got {shape!r}")
    shape = tuple(validation.integer("shape", side, minimum=1) for side in shape)
    likelihood = entry.likelihoods[0] if likelihood is None else likelihood
    validation.choice(f"likelihood of {architecture!r}", likelihood, entry.likelihoods)
    if seed is None:
        model = entry.build(latent_dim, deterministic, shape, likelihood)
    else:
        with seeded(validation.integer("seed", seed, minimum=0), "cpu"):
            model = entry.build(latent_dim, deterministic, shape, likelihood)
    model.spec = {"architecture": architecture, "latent_dim": latent_dim, "deterministic": deterministic,
                  "shape": list(shape), "likelihood": likelihood, "seed": seed}
    return model


def build_from_spec(spec: Mapping[str, Any]) -> VAE:
    """The model that ``build_vae`` made with ``spec`` (its ``model.spec``, e.g. read from a checkpoint).

    Example:
        >>> from infovae.networks import build_from_spec, build_vae
        >>> model = build_vae("mlp", 3)
        >>> build_from_spec(model.spec).spec == model.spec
        True
    """
    if not isinstance(spec, Mapping) or "architecture" not in spec or "latent_dim" not in spec:
        raise ValueError(f"a model spec holds build_vae's arguments (architecture, latent_dim, ...), got {spec!r}")
    unknown = set(spec) - {"architecture", "latent_dim", "deterministic", "shape", "likelihood", "seed"}
    if unknown:
        raise ValueError(f"unknown model spec entries {sorted(unknown)}")
    options = {k: spec[k] for k in ("shape", "likelihood", "seed") if spec.get(k) is not None}
    return build_vae(spec["architecture"], spec["latent_dim"], bool(spec.get("deterministic", False)), **options)

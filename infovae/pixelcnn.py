"""A gated PixelCNN decoder p(x|z) for binary images (Fig. 6 and Table 1; chapters 8 and 9).

p(x|z) = prod_i p(x_i | x_<i, z) over pixels in raster order: each factor is a Bernoulli whose
logit comes from masked convolutions that only see earlier pixels (van den Oord et al. 2016).
The network: a 7x7 convolution with mask A (the centre pixel excluded), then 3x3
convolutions with mask B (centre included), each a *gated* layer

    h_out = tanh(W_f * h + V_f z) . sigmoid(W_g * h + V_g z)   (+ h, a residual, after the first)

so z enters every layer as a conditioning bias; a 1x1 ReLU head gives one logit per pixel.
The paper's size: 12 gated layers of 32 feature maps (``PixelCNNConfig`` changes it). A
single masked stack has the usual blind spot (a triangle of earlier pixels up and to the
right that it cannot see); it is still a valid autoregressive model.

``PixelCNNDecoder(config)(z)`` returns a ``PixelCNNDistribution``: ``log_prob(x)`` runs the
network once on x (teacher forcing), ``sample()`` draws pixel after pixel. The sampler is
incremental: every layer's activation at a pixel depends only on earlier pixels, so once
computed it never changes; drawing pixel i computes each layer at position i only, from
cached activations, instead of rerunning the whole network (``method="naive"``, kept as the
reference that the tests compare against). Both samplers turn the same uniform numbers
into pixels (x_i = [u_i < sigmoid(logit_i)]), so under one seed they draw the same images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Bernoulli, Distribution, Independent, constraints

SAMPLERS: tuple[str, ...] = ("incremental", "naive")


@dataclass
class PixelCNNConfig:
    """Sizes of the gated PixelCNN (defaults: the paper's).

    Attributes:
        latent_dim: dimension of the conditioning code z.
        image_size: height and width of the (single-channel) images.
        layers: number of gated layers (the first with mask A).
        channels: feature maps per layer.
        first_kernel: kernel size of the mask-A layer (odd).
        kernel: kernel size of the mask-B layers (odd).
    """

    latent_dim: int
    image_size: tuple[int, int] = (28, 28)
    layers: int = 12
    channels: int = 32
    first_kernel: int = 7
    kernel: int = 3

    def __post_init__(self) -> None:
        if self.latent_dim < 1 or self.layers < 1 or self.channels < 1:
            raise ValueError(f"latent_dim, layers and channels must be positive: {self}")
        if self.first_kernel % 2 == 0 or self.kernel % 2 == 0:
            raise ValueError(f"kernel sizes must be odd: {self}")
        self.image_size = tuple(self.image_size)


def causal_mask(kernel: int, mask_type: str) -> torch.Tensor:
    """The ``kernel x kernel`` mask of a masked convolution: rows above the centre, and the
    centre row left of the centre; type ``"B"`` also keeps the centre, type ``"A"`` does not."""
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
    mask = torch.zeros(kernel, kernel)
    centre = kernel // 2
    mask[:centre] = 1
    mask[centre, : centre + (mask_type == "B")] = 1
    return mask


class GatedMaskedConv(nn.Module):
    """One gated layer: masked convolution plus a z-dependent bias, tanh . sigmoid gate."""

    def __init__(self, in_channels: int, channels: int, kernel: int, mask_type: str, latent_dim: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 2 * channels, kernel, padding=kernel // 2)
        self.cond = nn.Linear(latent_dim, 2 * channels, bias=False)
        self.register_buffer("mask", causal_mask(kernel, mask_type))
        self.residual = in_channels == channels and mask_type == "B"

    def gate(self, pre: torch.Tensor) -> torch.Tensor:
        """tanh(first half) * sigmoid(second half) along dimension 1."""
        f, g = pre.chunk(2, dim=1)
        return torch.tanh(f) * torch.sigmoid(g)

    def forward(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        pre = F.conv2d(h, self.conv.weight * self.mask, self.conv.bias, padding=self.conv.padding)
        out = self.gate(pre + self.cond(z)[:, :, None, None])
        return h + out if self.residual else out


class PixelCNNDecoder(nn.Module):
    """Gated PixelCNN p(x|z) over ``[1, H, W]`` binary images; ``forward(z)`` returns the distribution.

    Args:
        config: the sizes (``PixelCNNConfig``).
    """

    def __init__(self, config: PixelCNNConfig):
        super().__init__()
        self.config = config
        self.latent_dim = config.latent_dim
        c = config.channels
        self.layers = nn.ModuleList(
            [GatedMaskedConv(1, c, config.first_kernel, "A", config.latent_dim)]
            + [GatedMaskedConv(c, c, config.kernel, "B", config.latent_dim) for _ in range(config.layers - 1)]
        )
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, 1), nn.ReLU(), nn.Conv2d(c, 1, 1))

    @property
    def event_shape(self) -> torch.Size:
        return torch.Size((1, *self.config.image_size))

    def _check_z(self, z: torch.Tensor) -> None:
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"PixelCNNDecoder expects z of shape [B, {self.latent_dim}], got {list(z.shape)}")

    def logits(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, 1, H, W]`` of p(x_i = 1 | x_<i, z) for every pixel, in one pass."""
        self._check_z(z)
        if tuple(x.shape[1:]) != tuple(self.event_shape) or x.shape[0] != z.shape[0]:
            raise ValueError(f"expected x of shape [{z.shape[0]}, {', '.join(map(str, self.event_shape))}], got {list(x.shape)}")
        h = x
        for layer in self.layers:
            h = layer(h, z)
        return self.head(h)

    def forward(self, z: torch.Tensor) -> "PixelCNNDistribution":
        self._check_z(z)
        return PixelCNNDistribution(self, z)

    @torch.no_grad()
    def sample(self, z: torch.Tensor, method: str = "incremental", generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw x ~ p(x|z) pixel by pixel; ``[B, 1, H, W]`` in {0, 1}.

        Args:
            z: codes ``[B, latent_dim]``.
            method: ``"incremental"`` (each layer computed once per pixel, from caches) or
                ``"naive"`` (the whole network rerun for every pixel: the reference).
            generator: source of the uniform numbers (torch's global one if ``None``).
        """
        self._check_z(z)
        if method not in SAMPLERS:
            raise ValueError(f"method must be one of {SAMPLERS}, got {method!r}")
        u = torch.rand((z.shape[0], *self.event_shape), generator=generator, device=z.device, dtype=z.dtype)
        if method == "naive":
            return self._sample_naive(z, u)
        return self._sample_incremental(z, u)

    def _sample_naive(self, z: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        x = torch.zeros_like(u)
        height, width = self.config.image_size
        for r in range(height):
            for c in range(width):
                p = torch.sigmoid(self.logits(x, z)[:, 0, r, c])
                x[:, 0, r, c] = (u[:, 0, r, c] < p).to(x.dtype)
        return x

    def _sample_incremental(self, z: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        batch = z.shape[0]
        height, width = self.config.image_size
        # caches[l] holds the input of layer l, channels last and zero-padded like its
        # convolution; layer l at (r, c) reads only the unmasked taps (r + dy, c + dx) of its
        # window, all at positions already computed, and writes its output at (r, c).
        caches, taps = [], []
        for layer in self.layers:
            pad, cin = layer.conv.padding[0], layer.conv.in_channels
            caches.append(z.new_zeros(batch, height + 2 * pad, width + 2 * pad, cin))
            dy, dx = layer.mask.nonzero(as_tuple=True)
            weight = layer.conv.weight[:, :, dy, dx].transpose(1, 2).flatten(1)  # [2C, taps * cin]
            bias = layer.conv.bias + layer.cond(z)  # [B, 2C]: the conditioning bias, once
            taps.append((pad, dy, dx, weight.t().contiguous(), bias))
        head1, head2 = self.head[1], self.head[3]
        w1, w2 = head1.weight.flatten(1), head2.weight.flatten(1)
        x, pad0 = caches[0], self.layers[0].conv.padding[0]  # the image, padded for the first window
        for r in range(height):
            for c in range(width):
                for i, (layer, (pad, dy, dx, weight, bias)) in enumerate(zip(self.layers, taps)):
                    window = caches[i][:, dy + r, dx + c].flatten(1)  # [B, taps * cin]
                    h = layer.gate(torch.addmm(bias, window, weight))
                    if layer.residual:
                        h = h + caches[i][:, r + pad, c + pad]
                    if i + 1 < len(self.layers):
                        nxt = self.layers[i + 1].conv.padding[0]
                        caches[i + 1][:, r + nxt, c + nxt] = h
                logit = F.linear(torch.relu(F.linear(torch.relu(h), w1, head1.bias)), w2, head2.bias)[:, 0]
                x[:, r + pad0, c + pad0, 0] = (u[:, 0, r, c] < torch.sigmoid(logit)).to(x.dtype)
        return x[:, pad0 : pad0 + height, pad0 : pad0 + width].permute(0, 3, 1, 2).contiguous()


class PixelCNNDistribution(Distribution):
    """p(x|z) of a ``PixelCNNDecoder`` for a batch of codes: ``batch_shape [B]``, ``event_shape [1, H, W]``.

    ``log_prob(x)`` is the sum over pixels of log p(x_i | x_<i, z) in nats (one network pass);
    ``sample()`` draws autoregressively with the incremental sampler. The mean of p(x|z) has
    no closed form, so ``mean`` raises; use samples.
    """

    arg_constraints: dict = {}
    support = constraints.independent(constraints.boolean, 3)
    has_rsample = False

    def __init__(self, decoder: PixelCNNDecoder, z: torch.Tensor):
        self.decoder = decoder
        self.z = z
        super().__init__(z.shape[:1], decoder.event_shape, validate_args=False)

    @property
    def mean(self) -> torch.Tensor:
        raise NotImplementedError("the mean of a PixelCNN p(x|z) is intractable; draw samples with sample()")

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        logits = self.decoder.logits(value, self.z)
        return Independent(Bernoulli(logits=logits), 3).log_prob(value)

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = torch.Size()) -> torch.Tensor:
        sample_shape = torch.Size(sample_shape)
        n = sample_shape.numel()
        z = self.z.detach().repeat(n, 1)  # sample-major: [n * B, dim]
        x = self.decoder.sample(z)
        return x.view(sample_shape + self.batch_shape + self.event_shape)

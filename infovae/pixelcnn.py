"""A gated PixelCNN decoder p(x|z) for binary images (Fig. 6 and Table 1; chapters 8 and 9).

p(x|z) = prod_i p(x_i | x_<i, z) over pixels in raster order: each factor is a Bernoulli whose
logit comes from convolutions that only see earlier pixels. The network is the conditional
gated PixelCNN of van den Oord et al. (2016), which the paper's decoder follows: two stacks
of gated layers,

* a *vertical* stack whose features at row r see every pixel of the rows above it (the
  whole width of its window, including pixels up and to the right), and
* a *horizontal* stack whose features at (r, c) see the pixels left of c in row r, plus the
  vertical stack's features of the row above (a 1x1 link),

each gated layer computing ``tanh(W_f * h + V_f z) . sigmoid(W_g * h + V_g z)``, so z enters
every layer of both stacks as a conditioning bias, the same at every pixel (the paper's and its
authors' decoder). With ``conditioning="spatial"`` z enters instead as a map: a learned linear
map s = L z of ``spatial_maps`` feature maps at the image's size, added to every gated layer's
pre-activations through a 1x1 convolution (``V * s``), so that each pixel gets its own
function of z, as in the conditional PixelCNN's spatial conditioning (van den Oord et al.,
2016) and PixelVAE (Gulrajani et al., 2017); s depends on z only, so causality is unchanged.
The horizontal stack has a 1x1 output
convolution and a residual connection (after the first layer). The first layer sees a
``first_kernel x first_kernel`` window above and left of the pixel, excluding the pixel
itself (PixelCNN's "mask A"): rows r - k//2 .. r - 1 through the vertical stack, columns
c - k//2 .. c - 1 through the horizontal one. Later layers use ``kernel x kernel`` windows
including the current position ("mask B"). Two ReLU 1x1 convolutions give one logit per
pixel. Because the vertical stack never looks right-blind, the model has no *blind spot*:
the logit of pixel (r, c) depends on every earlier pixel within its receptive field,
including those up and to the right (tested by autograd). The authors' TensorFlow code
(ShengjiaZhao/PixelCNN, ``models.py`` and ``layers.py``) builds the two stacks but masks the
vertical one with the raster mask of a single-stack PixelCNN, which keeps the blind spot;
we follow the architecture of the paper they cite. The paper's size: 12 layers, 32 feature
maps, first layer 7x7 then 3x3 (``PixelCNNConfig``).

``PixelCNNDecoder(config)(z)`` returns a ``PixelCNNDistribution``: ``log_prob(x)`` runs the
network once on x (teacher forcing), ``sample()`` draws pixel after pixel. The sampler is
incremental: the vertical stack of a row is computed once, when the row is complete, and
the horizontal stack of each pixel from cached features of that row; nothing is recomputed
(``method="naive"`` reruns the whole network for every pixel and is the reference the
tests compare against). Both samplers turn the same uniform numbers into pixels
(x_i = [u_i < sigmoid(logit_i)]), so under one seed they draw the same images.
Inside ``infovae.precision.autocast_networks("bf16")`` the logits are computed under bf16
autocast and returned in the dtype of z; sampling always runs at full precision.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Bernoulli, Distribution, Independent, constraints

from .precision import network_region

SAMPLERS: tuple[str, ...] = ("incremental", "naive")
CONDITIONINGS: tuple[str, ...] = ("bias", "spatial")


@dataclass
class PixelCNNConfig:
    """Sizes of the gated PixelCNN (defaults: the paper's).

    Attributes:
        latent_dim: dimension of the conditioning code z.
        image_size: height and width of the (single-channel) images.
        layers: number of gated layers (the first excludes the current pixel).
        channels: feature maps per layer (in each stack).
        first_kernel: window size of the first layer (odd, at least 3).
        kernel: window size of the later layers (odd).
        conditioning: ``"bias"`` (z as a bias, the same at every pixel: the paper's) or
            ``"spatial"`` (z mapped linearly to ``spatial_maps`` maps of the image's size).
        spatial_maps: feature maps of the spatial conditioning.

    Example:
        >>> from infovae.pixelcnn import PixelCNNConfig
        >>> config = PixelCNNConfig(latent_dim=5)
        >>> config.layers, config.channels, config.first_kernel, config.kernel, config.image_size
        (12, 32, 7, 3, (28, 28))
    """

    latent_dim: int
    image_size: tuple[int, int] = (28, 28)
    layers: int = 12
    channels: int = 32
    first_kernel: int = 7
    kernel: int = 3
    conditioning: str = "bias"
    spatial_maps: int = 8

    def __post_init__(self) -> None:
        if self.conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning must be one of {CONDITIONINGS}, got {self.conditioning!r}")
        if self.spatial_maps < 1:
            raise ValueError(f"spatial_maps must be positive, got {self.spatial_maps}")
        if self.latent_dim < 1 or self.layers < 1 or self.channels < 1:
            raise ValueError(f"latent_dim, layers and channels must be positive: {self}")
        if self.first_kernel % 2 == 0 or self.kernel % 2 == 0 or self.first_kernel < 3 or self.kernel < 1:
            raise ValueError(f"kernel sizes must be odd (the first at least 3): {self}")
        self.image_size = (int(self.image_size[0]), int(self.image_size[1])) if len(self.image_size) == 2 else self.image_size
        if len(self.image_size) != 2 or min(self.image_size) < 1:
            raise ValueError(f"image_size must be (height, width) with positive sizes: {self}")


def _gate(pre: torch.Tensor, dim: int) -> torch.Tensor:
    """tanh(first half) * sigmoid(second half) along ``dim``."""
    f, g = pre.chunk(2, dim=dim)
    return torch.tanh(f) * torch.sigmoid(g)


class GatedLayer(nn.Module):
    """One layer of both stacks: ``(v, h, z) -> (v', h')`` (see the module docstring).

    Args:
        in_channels: channels of the inputs v and h (1 for the image).
        channels: feature maps of the outputs.
        kernel: window size (odd).
        first: the first layer: excludes the current pixel, no residual connection.
        latent_dim: dimension of z.
        spatial_maps: 0 (z enters as a bias: ``forward(v, h, z)`` with z ``[B, latent_dim]``)
            or the number of maps of a spatial conditioning (``forward(v, h, s)`` with s
            ``[B, spatial_maps, H, W]``).

    Example:
        >>> import torch
        >>> from infovae.pixelcnn import GatedLayer
        >>> layer = GatedLayer(1, 4, kernel=7, first=True, latent_dim=2)
        >>> x = torch.zeros(3, 1, 5, 5)
        >>> v, h = layer(x, x, torch.zeros(3, 2))
        >>> v.shape, h.shape
        (torch.Size([3, 4, 5, 5]), torch.Size([3, 4, 5, 5]))
    """

    def __init__(self, in_channels: int, channels: int, kernel: int, first: bool, latent_dim: int,
                 spatial_maps: int = 0):
        super().__init__()
        self.first, self.side = first, kernel // 2  # columns either side of the vertical window
        # vertical window: rows r - rows + 1 .. r of its input (then shifted one row down for h)
        self.rows = kernel // 2 if first else kernel // 2 + 1
        # horizontal window: columns c - cols + 1 .. c of its input, or c - cols .. c - 1 (first)
        self.cols = kernel // 2 if first else kernel // 2 + 1
        self.shift = 1 if first else 0
        self.v_conv = nn.Conv2d(in_channels, 2 * channels, (self.rows, kernel))
        self.h_conv = nn.Conv2d(in_channels, 2 * channels, (1, self.cols))
        self.v_to_h = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.h_out = nn.Conv2d(channels, channels, 1)
        self.spatial = spatial_maps > 0
        self.cond: nn.Module = (  # V z (or V * s) for both stacks
            nn.Conv2d(spatial_maps, 4 * channels, 1, bias=False) if self.spatial
            else nn.Linear(latent_dim, 4 * channels, bias=False)
        )
        self.residual = not first

    def conditioning(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The conditioning terms of the vertical and horizontal stacks, ``[B, 2C, 1, 1]`` each
        for a code z (bias), ``[B, 2C, H, W]`` for a spatial map s."""
        out = self.cond(c)
        return (out if self.spatial else out[:, :, None, None]).chunk(2, dim=1)

    def forward(self, v: torch.Tensor, h: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        height, width = v.shape[-2:]
        cond_v, cond_h = self.conditioning(z)
        v_pre = self.v_conv(F.pad(v, (self.side, self.side, self.rows - 1, 0)))
        h_pre = self.h_conv(F.pad(h, (self.cols - 1 + self.shift, 0)))[..., :width]
        v_above = F.pad(v_pre, (0, 0, 1, 0))[:, :, :height]  # row r gets row r - 1: only rows above
        h_new = self.h_out(_gate(h_pre + self.v_to_h(v_above) + cond_h, 1))
        return _gate(v_pre + cond_v, 1), h_new + h if self.residual else h_new


class PixelCNNDecoder(nn.Module):
    """Gated PixelCNN p(x|z) over ``[1, H, W]`` binary images; ``forward(z)`` returns the distribution.

    Args:
        config: the sizes (``PixelCNNConfig``).

    Example:
        >>> import torch
        >>> from infovae.pixelcnn import PixelCNNConfig, PixelCNNDecoder
        >>> decoder = PixelCNNDecoder(PixelCNNConfig(latent_dim=2, image_size=(4, 4), layers=2, channels=4))
        >>> px = decoder(torch.zeros(3, 2))
        >>> px.log_prob(torch.zeros(3, 1, 4, 4)).shape, decoder.sample(torch.zeros(3, 2)).shape
        (torch.Size([3]), torch.Size([3, 1, 4, 4]))
    """

    mixed_precision = True  # its body runs in infovae.precision.network_region (bf16 training)

    def __init__(self, config: PixelCNNConfig):
        super().__init__()
        self.config = config
        self.latent_dim = config.latent_dim
        c = config.channels
        maps = config.spatial_maps if config.conditioning == "spatial" else 0
        self.layers = nn.ModuleList(
            [GatedLayer(1, c, config.first_kernel, True, config.latent_dim, maps)]
            + [GatedLayer(c, c, config.kernel, False, config.latent_dim, maps) for _ in range(config.layers - 1)]
        )
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, 1), nn.ReLU(), nn.Conv2d(c, 1, 1))
        # the spatial conditioning s = L z, [B, maps, H, W] (registered last: the bias model's
        # parameters and their initialisation order are unchanged)
        self.spatial = nn.Linear(config.latent_dim, maps * config.image_size[0] * config.image_size[1]) if maps else None

    def conditioning_input(self, z: torch.Tensor) -> torch.Tensor:
        """What the gated layers are conditioned on: z itself, or its spatial map s = L z."""
        if self.spatial is None:
            return z
        return self.spatial(z).view(z.shape[0], self.config.spatial_maps, *self.config.image_size)

    @property
    def gated_layers(self) -> list[GatedLayer]:
        """The gated layers, first to last (typed view of ``self.layers``)."""
        return [layer for layer in self.layers if isinstance(layer, GatedLayer)]

    @property
    def event_shape(self) -> torch.Size:
        return torch.Size((1, *self.config.image_size))

    def _check_z(self, z: torch.Tensor) -> None:
        if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[1] != self.latent_dim:
            shape = list(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"PixelCNNDecoder expects z of shape [B, {self.latent_dim}], got {shape}")

    def logits(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, 1, H, W]`` of p(x_i = 1 | x_<i, z) for every pixel, in one pass."""
        self._check_z(z)
        if tuple(x.shape[1:]) != tuple(self.event_shape) or x.shape[0] != z.shape[0]:
            raise ValueError(f"expected x of shape [{z.shape[0]}, {', '.join(map(str, self.event_shape))}], got {list(x.shape)}")
        with network_region(x.device):
            v = h = x
            c = self.conditioning_input(z)
            for layer in self.layers:
                v, h = layer(v, h, c)
            logits = self.head(h)
        return logits.to(z.dtype)

    def forward(self, z: torch.Tensor) -> "PixelCNNDistribution":
        self._check_z(z)
        return PixelCNNDistribution(self, z)

    @torch.no_grad()
    def sample(self, z: torch.Tensor, method: str = "incremental", generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw x ~ p(x|z) pixel by pixel; ``[B, 1, H, W]`` in {0, 1}.

        Args:
            z: codes ``[B, latent_dim]``.
            method: ``"incremental"`` (each layer computed once per position, from caches) or
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
        layers = self.gated_layers
        # Per layer l: v_in[l], its vertical input (all rows, zero-padded like its convolution),
        # filled row by row once a row of pixels is complete; h_in[l], its horizontal input for
        # the current row (left-padded), filled pixel by pixel; from_above[l], the vertical
        # stack's contribution to the horizontal stack for the current row (1x1 link + biases).
        # The conditioning terms are [B, 2C, H', W'] with H' = W' = 1 (a bias) or the image's size
        # (spatial); row r uses cond[:, :, r or 0, :], broadcast over the width for a bias.
        v_in, h_in, from_above, h_taps = [], [], [], []
        c_in = self.conditioning_input(z)
        for layer in layers:
            cin = layer.v_conv.in_channels
            v_in.append(z.new_zeros(batch, cin, height + layer.rows - 1, width + 2 * layer.side))
            h_in.append(z.new_zeros(batch, width + layer.cols - 1 + layer.shift, cin))  # channels last
            cond_v, cond_h = layer.conditioning(c_in)
            assert layer.h_conv.bias is not None and layer.v_to_h.bias is not None
            bias_h = layer.h_conv.bias[:, None, None] + cond_h + layer.v_to_h.bias[:, None, None]  # row 0: nothing above
            from_above.append(bias_h[:, :, 0].expand(-1, -1, width).clone())
            weight = layer.h_conv.weight[:, :, 0, :].transpose(1, 2).flatten(1)  # [2C, cols * cin]
            h_taps.append((weight.t().contiguous(), layer.h_out.weight.flatten(1), layer.h_out.bias, cond_v, bias_h))
        head1, head2 = self.head[1], self.head[3]
        assert isinstance(head1, nn.Conv2d) and isinstance(head2, nn.Conv2d)
        w1, w2 = head1.weight.flatten(1), head2.weight.flatten(1)
        x = torch.zeros_like(u)
        for r in range(height):
            for c in range(width):
                for i, layer in enumerate(layers):
                    weight, out_w, out_b, _, _ = h_taps[i]
                    window = h_in[i][:, c : c + layer.cols].flatten(1)  # [B, cols * cin]
                    h = F.linear(_gate(torch.addmm(from_above[i][:, :, c], window, weight), 1), out_w, out_b)
                    if layer.residual:
                        h = h + h_in[i][:, c + layer.cols - 1]
                    if i + 1 < len(layers):
                        nxt = layers[i + 1]
                        h_in[i + 1][:, c + nxt.cols - 1 + nxt.shift] = h
                logit = F.linear(torch.relu(F.linear(torch.relu(h), w1, head1.bias)), w2, head2.bias)[:, 0]
                pixel = (u[:, 0, r, c] < torch.sigmoid(logit)).to(x.dtype)
                x[:, 0, r, c] = pixel
                first = layers[0]
                h_in[0][:, c + first.cols - 1 + first.shift, 0] = pixel
            # row r is complete: its vertical stack, layer by layer, and the link to row r + 1
            first = layers[0]
            v_in[0][:, :, r + first.rows - 1, first.side : first.side + width] = x[:, :, r]
            for i, layer in enumerate(layers):
                rows = v_in[i][:, :, r : r + layer.rows]  # input rows r - rows + 1 .. r (padded)
                v_pre = F.conv2d(rows, layer.v_conv.weight, layer.v_conv.bias)[:, :, 0]  # [B, 2C, W]
                bias_h, cond_v = h_taps[i][4], h_taps[i][3]
                below = min(r + 1, bias_h.shape[2] - 1)  # the conditioning of row r + 1 (a bias: its only row)
                from_above[i] = bias_h[:, :, below] + F.conv1d(v_pre, layer.v_to_h.weight[..., 0])
                if i + 1 < len(layers):
                    nxt = layers[i + 1]
                    v_in[i + 1][:, :, r + nxt.rows - 1, nxt.side : nxt.side + width] = _gate(
                        v_pre + cond_v[:, :, min(r, cond_v.shape[2] - 1)], 1)
            for buffer in h_in:  # a new row starts with an empty left context
                buffer.zero_()
        return x


class PixelCNNDistribution(Distribution):
    """p(x|z) of a ``PixelCNNDecoder`` for a batch of codes: ``batch_shape [B]``, ``event_shape [1, H, W]``.

    ``log_prob(x)`` is the sum over pixels of log p(x_i | x_<i, z) in nats (one network pass);
    ``sample()`` draws autoregressively with the incremental sampler. The mean of p(x|z) has
    no closed form, so ``mean`` raises; use samples.

    Example:
        >>> import torch
        >>> from infovae.pixelcnn import PixelCNNConfig, PixelCNNDecoder
        >>> config = PixelCNNConfig(latent_dim=2, image_size=(3, 3), layers=1, channels=4, first_kernel=3)
        >>> px = PixelCNNDecoder(config)(torch.zeros(2, 2))
        >>> px.batch_shape, px.event_shape
        (torch.Size([2]), torch.Size([1, 3, 3]))
        >>> px.sample((4,)).shape, px.log_prob(torch.zeros(2, 1, 3, 3)).shape
        (torch.Size([4, 2, 1, 3, 3]), torch.Size([2]))
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

    def sample(self, sample_shape: torch.Size | list[int] | tuple[int, ...] = torch.Size()) -> torch.Tensor:
        sample_shape = torch.Size(sample_shape)
        n = sample_shape.numel()
        z = self.z.detach().repeat(n, 1)  # sample-major: [n * B, dim]
        x = self.decoder.sample(z)
        return x.view(sample_shape + self.batch_shape + self.event_shape)

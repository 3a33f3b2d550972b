"""The gated PixelCNN decoder: masks, normalization, and the exact incremental sampler."""

import itertools

import pytest
import torch

from infovae.pixelcnn import PixelCNNConfig, PixelCNNDecoder, PixelCNNDistribution


def _decoder(seed=0, dtype=torch.float64, **sizes):
    torch.manual_seed(seed)
    decoder = PixelCNNDecoder(PixelCNNConfig(**{"latent_dim": 3, **sizes})).to(dtype)
    for p in decoder.parameters():  # larger than default weights, so every path matters
        p.data.mul_(3)
    return decoder


def test_paper_configuration():
    decoder = PixelCNNDecoder(PixelCNNConfig(latent_dim=5))
    assert len(decoder.layers) == 12
    first, rest = decoder.layers[0], decoder.layers[1:]
    # first layer: the 3 rows above in a 7-wide window (vertical), the 3 pixels to the left (horizontal)
    assert first.v_conv.kernel_size == (3, 7) and first.h_conv.kernel_size == (1, 3) and first.shift == 1
    assert all(l.v_conv.kernel_size == (2, 3) and l.h_conv.kernel_size == (1, 2) and l.shift == 0 for l in rest)
    assert all(l.v_conv.out_channels == 2 * 32 and l.cond.in_features == 5 for l in decoder.layers)
    assert not first.residual and all(l.residual for l in rest)


def _dependence(decoder, r, c):
    """Which pixels the logit at (r, c) depends on, by autograd (float64): a pixel counts if the
    gradient is non-zero for any of 8 random (image, code) pairs (one pair can sit where a ReLU
    of the head is off, and then nothing reaches that logit)."""
    h, w = decoder.config.image_size
    x = torch.bernoulli(torch.full((8, 1, h, w), 0.5, dtype=torch.float64)).requires_grad_(True)
    z = torch.randn(8, decoder.latent_dim, dtype=torch.float64)
    (grad,) = torch.autograd.grad(decoder.logits(x, z)[:, 0, r, c].sum(), x)
    return (grad[:, 0] != 0).any(0)


@pytest.mark.parametrize("sizes", [{"image_size": (6, 7), "layers": 4, "channels": 4}, {"image_size": (28, 28)}])
def test_logit_at_a_pixel_ignores_that_pixel_and_later_ones(sizes):
    """Causality: d logit_i / d x_j = 0 for every j >= i in raster order."""
    decoder = _decoder(**sizes)
    h, w = decoder.config.image_size
    positions = range(h * w) if h * w <= 64 else [0, 1, 27, 28, 29, 400, 783]
    for i in positions:
        seen = _dependence(decoder, i // w, i % w).flatten()
        assert not seen[i:].any(), f"pixel {i} sees pixels {seen[i:].nonzero().flatten() + i}"
        if i > 0:
            assert seen[:i].any()


@pytest.mark.parametrize("r, c", [(14, 10), (20, 3), (5, 26), (27, 27)])
def test_no_blind_spot_at_the_paper_size(r, c):
    """The logit at (r, c) depends on *every* earlier pixel of its receptive field: the rows
    r - 14 .. r - 1 within 14 columns either side (up and to the right included: a single
    masked stack never sees (r - 1, c + 4) and beyond), and the 14 pixels to its left."""
    decoder = _decoder(image_size=(28, 28))  # 12 layers: 7x7 first (reach 3), then +1 per layer
    seen = _dependence(decoder, r, c)
    expected = torch.zeros(28, 28, dtype=torch.bool)
    expected[max(0, r - 14) : r, max(0, c - 14) : c + 15] = True
    expected[r, max(0, c - 14) : c] = True
    assert seen[expected].all(), f"blind pixels: {(expected & ~seen).nonzero().tolist()}"
    assert not seen[r, c:].any() and not seen[r + 1 :].any()
    if r >= 1 and c + 4 < 28:
        assert seen[r - 1, c + 4 :].any()  # the single stack's blind spot is seen


def test_log_prob_is_a_normalized_distribution():
    """On 3x3 images, exp(log p(x|z)) summed over all 512 images is 1 for every z."""
    decoder = _decoder(image_size=(3, 3), layers=3, channels=4)
    images = torch.tensor(list(itertools.product([0.0, 1.0], repeat=9)), dtype=torch.float64).view(-1, 1, 3, 3)
    for z in torch.randn(3, 1, 3, dtype=torch.float64):
        log_p = decoder(z.expand(len(images), 3)).log_prob(images)
        torch.testing.assert_close(log_p.exp().sum(), torch.tensor(1.0, dtype=torch.float64))


@pytest.mark.parametrize(
    "sizes", [{"image_size": (9, 11), "layers": 5, "channels": 6}, {"image_size": (10, 10)}], ids=["small", "paper-depth"]
)
def test_incremental_sampler_draws_the_naive_samples(sizes):
    """Same seed, same images as rerunning the whole network for each pixel (float64, exact)."""
    decoder = _decoder(**sizes)
    z = torch.randn(4, 3, dtype=torch.float64)
    fast = decoder.sample(z, generator=torch.Generator().manual_seed(7))
    naive = decoder.sample(z, method="naive", generator=torch.Generator().manual_seed(7))
    assert torch.equal(fast, naive)
    assert 0.05 < fast.mean() < 0.95  # not a degenerate all-0/all-1 draw
    torch.manual_seed(11)
    via_distribution = decoder(z).sample()
    torch.manual_seed(11)
    assert torch.equal(via_distribution, decoder.sample(z, method="naive"))


def test_incremental_sampler_float32_agrees_with_the_network():
    """In float32 the two samplers' logits differ by rounding only: compare the probabilities used."""
    decoder = _decoder(dtype=torch.float32, image_size=(8, 8), layers=4, channels=8)
    z = torch.randn(64, 3)
    x = decoder.sample(z, generator=torch.Generator().manual_seed(3))
    naive = decoder.sample(z, method="naive", generator=torch.Generator().manual_seed(3))
    # a pixel can only differ where its uniform number falls within rounding of its probability
    assert (x != naive).float().mean() < 1e-3


def test_distribution_contract():
    decoder = _decoder(image_size=(5, 5), layers=2, channels=4)
    z = torch.randn(2, 3, dtype=torch.float64)
    px = decoder(z)
    assert isinstance(px, PixelCNNDistribution)
    assert px.batch_shape == (2,) and px.event_shape == (1, 5, 5) and not px.has_rsample
    assert px.sample((3,)).shape == (3, 2, 1, 5, 5)
    x = px.sample()
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    assert px.log_prob(x).shape == (2,)
    with pytest.raises(NotImplementedError, match="intractable"):
        px.mean
    with pytest.raises(ValueError, match="shape"):
        px.log_prob(torch.zeros(2, 1, 4, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="method"):
        decoder.sample(z, method="fast")
    with pytest.raises(ValueError, match="odd"):
        PixelCNNConfig(latent_dim=2, kernel=4)


SPATIAL = {"image_size": (6, 7), "layers": 4, "channels": 4, "conditioning": "spatial", "spatial_maps": 3}


def test_spatial_conditioning_keeps_causality_and_reads_z_per_pixel():
    """z as a map: still causal at every pixel, and the logits' dependence on z differs from pixel
    to pixel in a way a bias (the same V z everywhere) cannot produce in the first layer."""
    decoder = _decoder(**SPATIAL)
    h, w = decoder.config.image_size
    for i in range(h * w):
        seen = _dependence(decoder, i // w, i % w).flatten()
        assert not seen[i:].any(), f"pixel {i} sees pixels {seen[i:].nonzero().flatten() + i}"
    z = torch.randn(1, 3, dtype=torch.float64)
    cond_v, cond_h = decoder.gated_layers[0].conditioning(decoder.conditioning_input(z))
    assert cond_v.shape == (1, 8, 6, 7) and cond_h.shape == (1, 8, 6, 7)
    assert (cond_v[0, :, 0, 0] - cond_v[0, :, 3, 5]).abs().max() > 1e-3  # per-pixel conditioning
    with pytest.raises(ValueError, match="conditioning must be one of"):
        PixelCNNConfig(latent_dim=2, conditioning="channel")


def test_incremental_sampler_with_spatial_conditioning_draws_the_naive_samples():
    decoder = _decoder(**SPATIAL)
    z = torch.randn(4, 3, dtype=torch.float64)
    fast = decoder.sample(z, generator=torch.Generator().manual_seed(5))
    naive = decoder.sample(z, method="naive", generator=torch.Generator().manual_seed(5))
    assert torch.equal(fast, naive) and 0.05 < fast.mean() < 0.95


def test_spatial_conditioning_is_normalized():
    decoder = _decoder(image_size=(3, 3), layers=2, channels=4, conditioning="spatial", spatial_maps=2)
    images = torch.tensor(list(itertools.product([0.0, 1.0], repeat=9)), dtype=torch.float64).view(-1, 1, 3, 3)
    for z in torch.randn(2, 1, 3, dtype=torch.float64):
        torch.testing.assert_close(decoder(z.expand(len(images), 3)).log_prob(images).exp().sum(),
                                   torch.tensor(1.0, dtype=torch.float64))

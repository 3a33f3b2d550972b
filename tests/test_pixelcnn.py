"""The gated PixelCNN decoder: masks, normalization, and the exact incremental sampler."""

import itertools

import pytest
import torch

from infovae.pixelcnn import PixelCNNConfig, PixelCNNDecoder, PixelCNNDistribution, causal_mask


def _decoder(seed=0, dtype=torch.float64, **sizes):
    torch.manual_seed(seed)
    decoder = PixelCNNDecoder(PixelCNNConfig(**{"latent_dim": 3, **sizes})).to(dtype)
    for p in decoder.parameters():  # larger than default weights, so every path matters
        p.data.mul_(3)
    return decoder


def test_masks():
    assert causal_mask(3, "A").tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert causal_mask(3, "B").tolist() == [[1, 1, 1], [1, 1, 0], [0, 0, 0]]
    a7 = causal_mask(7, "A")
    assert a7.sum() == 24 and a7[3, 3] == 0 and a7[3, :3].sum() == 3 and a7[4:].sum() == 0


def test_paper_configuration():
    decoder = PixelCNNDecoder(PixelCNNConfig(latent_dim=5))
    assert len(decoder.layers) == 12
    first, rest = decoder.layers[0], decoder.layers[1:]
    assert first.conv.kernel_size == (7, 7) and first.mask[3, 3] == 0
    assert all(l.conv.kernel_size == (3, 3) and l.mask[1, 1] == 1 for l in rest)
    assert all(l.conv.out_channels == 2 * 32 and l.cond.in_features == 5 for l in decoder.layers)


@pytest.mark.parametrize("sizes", [{"image_size": (6, 7), "layers": 4, "channels": 4}, {"image_size": (28, 28)}])
def test_logit_at_a_pixel_ignores_that_pixel_and_later_ones(sizes):
    """Receptive field: d logit_i / d x_j = 0 for every j >= i in raster order."""
    decoder = _decoder(**sizes)
    h, w = decoder.config.image_size
    positions = range(h * w) if h * w <= 64 else [0, 1, 27, 28, 29, 400, 783]
    x = torch.bernoulli(torch.full((1, 1, h, w), 0.5, dtype=torch.float64)).requires_grad_(True)
    z = torch.randn(1, 3, dtype=torch.float64)
    logits = decoder.logits(x, z).flatten()
    for i in positions:
        (grad,) = torch.autograd.grad(logits[i], x, retain_graph=True)
        grad = grad.flatten()
        assert (grad[i:] == 0).all(), f"pixel {i} sees pixels {(grad[i:] != 0).nonzero().flatten() + i}"
        if i > 0:
            assert grad[:i].abs().sum() > 0


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

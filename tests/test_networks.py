"""Encoders and decoders of infovae.networks: shapes, distribution contracts, the point mass."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Independent, Normal

from infovae.networks import (
    ARCHITECTURES,
    ConvDecoder,
    ConvEncoder,
    LatentHead,
    MLPDecoder,
    MLPEncoder,
    PointMass,
    build_vae,
)
from infovae.pixelcnn import PixelCNNConfig, PixelCNNDecoder


def _inputs(architecture, batch, generator):
    if architecture == "toy":
        return torch.randint(0, 2, (batch, 1), generator=generator).float() * 2 - 1
    return torch.bernoulli(torch.full((batch, 1, 28, 28), 0.3), generator=generator)


@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_build_vae_contract(architecture, deterministic):
    torch.manual_seed(0)
    model = build_vae(architecture, 3, deterministic=deterministic)
    x = _inputs(architecture, 4, torch.Generator().manual_seed(0))
    qz, z, px = model(x)
    assert model.encoder.latent_dim == 3
    assert isinstance(qz, PointMass if deterministic else Independent)
    assert qz.batch_shape == (4,) and qz.event_shape == (3,)
    assert z.shape == (4, 3)
    assert px.batch_shape == (4,) and px.event_shape == x.shape[1:]
    log_p = px.log_prob(x)
    assert log_p.shape == (4,) and torch.isfinite(log_p).all()
    z.sum().backward()  # codes are reparameterized: gradients reach the encoder
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())


@pytest.mark.parametrize("decoder", [MLPDecoder(2, (1, 28, 28)), ConvDecoder(2)])
def test_bernoulli_decoders_sum_pixel_log_likelihoods(decoder):
    """log p(x|z) equals the sum over pixels of -BCE(logits, x) computed independently."""
    torch.manual_seed(1)
    z = torch.randn(5, 2)
    x = torch.bernoulli(torch.full((5, 1, 28, 28), 0.5))
    px = decoder(z)
    logits = px.base_dist.logits
    expected = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
    torch.testing.assert_close(px.log_prob(x), expected)


def test_gaussian_mlp_decoder_matches_closed_form():
    """Fig. 1 decoder: a Gaussian with std = sigmoid + 5e-4, log density checked in float64."""
    torch.manual_seed(2)
    decoder = MLPDecoder(1, (1,), likelihood="gaussian").double()
    z, x = torch.randn(6, 1, dtype=torch.float64), torch.randn(6, 1, dtype=torch.float64)
    px = decoder(z)
    out = decoder.net(z)
    mean, std = out[:, 0], torch.sigmoid(out[:, 1]) + 5e-4
    expected = -0.5 * ((x[:, 0] - mean) / std) ** 2 - std.log() - 0.5 * math.log(2 * math.pi)
    torch.testing.assert_close(px.log_prob(x), expected)
    assert (px.stddev >= 5e-4).all()


@pytest.mark.parametrize("std_floor,expected", [("add", lambda s: torch.sigmoid(s) + 1e-3), ("max", lambda s: torch.sigmoid(s).clamp_min(1e-3))])
def test_latent_head_std(std_floor, expected):
    head = LatentHead(4, 2, min_std=1e-3, std_floor=std_floor)
    h = torch.randn(3, 4) * 50  # large inputs saturate the sigmoid: the floor matters
    qz = head(h)
    raw = head.linear(h)[:, 2:]
    torch.testing.assert_close(qz.stddev, expected(raw))
    assert isinstance(qz.base_dist, Normal) and (qz.stddev >= 1e-3).all()


def test_paper_sizes():
    enc, dec = ConvEncoder(10), ConvDecoder(10)
    convs = [m for m in enc.body if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [(64, (4, 4), (2, 2)), (128, (4, 4), (2, 2))]
    assert enc.head.linear.in_features == 1024
    assert [m.out_features for m in dec.net if isinstance(m, torch.nn.Linear)] == [1024, 7 * 7 * 128]
    pixel_enc = build_vae("pixelcnn", 5).encoder
    assert pixel_enc.head.linear.in_features == 512 and pixel_enc.head.std_floor == "max"
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in pixel_enc.body)
    fig1 = build_vae("toy", 1)
    assert [m.out_features for m in fig1.encoder.body if isinstance(m, torch.nn.Linear)] == [200, 200]
    assert all(m.negative_slope == 0.1 for m in fig1.encoder.body if isinstance(m, torch.nn.LeakyReLU))


def test_point_mass_is_exact():
    loc = torch.randn(4, 3, requires_grad=True)
    q = PointMass(loc)
    z = q.rsample()
    assert torch.equal(z, loc) and torch.equal(q.sample((2,)), loc.detach().expand(2, 4, 3))
    assert torch.equal(q.mean, loc) and torch.equal(q.variance, torch.zeros(4, 3))
    (z * torch.arange(3.0)).sum().backward()
    torch.testing.assert_close(loc.grad, torch.arange(3.0).expand(4, 3))  # identity Jacobian
    other = loc.detach().clone()
    other[0, 0] += 1e-6
    assert q.log_prob(loc.detach()).tolist() == [0.0] * 4
    assert q.log_prob(other).tolist() == [-math.inf, 0.0, 0.0, 0.0]


def test_deterministic_encoder_returns_its_mean_code():
    torch.manual_seed(3)
    enc = MLPEncoder((1, 28, 28), 2, deterministic=True)
    x = torch.rand(5, 1, 28, 28)
    qz = enc(x)
    assert torch.equal(qz.rsample(), enc.head.linear(enc.body(x.flatten(1))))


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: ConvEncoder(2)(torch.zeros(3, 28, 28)), "shape"),
        (lambda: MLPDecoder(2, (1,))(torch.zeros(3, 5)), "shape"),
        (lambda: ConvDecoder(2)(torch.zeros(3, 3)), "shape"),
        (lambda: PixelCNNDecoder(PixelCNNConfig(latent_dim=2))(torch.zeros(3, 4)), "shape"),
        (lambda: MLPDecoder(2, (1,), likelihood="poisson"), "likelihood"),
        (lambda: LatentHead(3, 2, std_floor="min"), "std_floor"),
        (lambda: LatentHead(3, 0), "latent_dim"),
        (lambda: build_vae("resnet", 2), "architecture"),
        (lambda: ConvDecoder(2)(torch.zeros(1, 2)).log_prob(torch.full((1, 1, 28, 28), 0.5)), "support"),
    ],
)
def test_bad_input_is_rejected(call, message):
    with pytest.raises(ValueError, match=message):
        call()

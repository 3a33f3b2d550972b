"""Importance sampling with a trained model: log p(x) (Table 1) and true-posterior samples (Fig. 4).

Both rest on importance weights for the marginal likelihood p(x) = E_p(z)[p(x|z)] (book
Eq. ``ch1-marginal``), estimated as in book Eq. ``ch9-is`` (chapter 9),

    w_k = p(z_k) p(x|z_k) / r(z_k | x),   z_k ~ r(z | x),   k = 1..K,

with the proposal r the encoder q(z|x) (the importance-weighted, "IWAE", estimator of
Burda et al. 2016), the prior p(z) (plain Monte Carlo, the cross-check the paper's authors
used for 5-dim latents), or their even mixture (``"mixture"``, defensive importance
sampling: weights bounded by 2 p(x|z), for encoders that are poor proposals). Since E_r[w] = p(x) for any proposal whose support covers
the posterior:

* ``log_likelihood``: log p(x) ~= log (1/K) sum_k w_k, per image;
* ``posterior_samples``: resampling z_k with probability w_k / sum_j w_j draws
  (approximately) from p(z|x), the sampling-importance-resampling algorithm.

The work is vectorised over images and samples and runs in chunks of at most
``chunk_size`` (image, sample) rows per decoder call, so memory stays bounded for any K.
The decoder is always called as ``decoder(z).log_prob(x)`` with each image repeated once
per sample, so any decoder works, autoregressive ones (PixelCNN) included.

``precision="bf16"`` runs the networks' bodies in bfloat16 (``infovae.precision``: the
decoder's logits come back as float32), while the codes, the densities of the prior and
the proposal, log p(x|z) and the log-sum-exp stay float32. It changes every log p(x|z) by
a rounding error, so measure what it does to your model before trusting it
(:func:`precision_error`; chapter 9 uses it only where the error is below 0.05 nats).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import nn
from tqdm.auto import tqdm

from ..networks import PointMass
from ..precision import autocast_networks, resolve_precision
from ..runtime import seeded
from ..vae import VAE, check_decoder_output
from ._common import check_count, check_model, distribution_checks, evaluating

PROPOSALS: tuple[str, ...] = ("encoder", "prior", "mixture")


class DefensiveMixture:
    """r(z|x) = (1 - eps) q(z|x) + eps p(z): "defensive" importance sampling (Hesterberg 1995),
    the proposal of chapter 9's main estimate (book Eq. ``ch9-is``).

    Its weights p(z) p(x|z) / r(z|x) never exceed p(x|z) / eps, so a narrow or misplaced
    q(z|x) (as alpha = 1 models learn: no KL term keeps it wide) cannot make the estimate
    collapse, while the q(z|x) half keeps the IWAE estimator's efficiency where q is good.

    Example:
        >>> import torch
        >>> from torch.distributions import Independent, Normal
        >>> q = Independent(Normal(torch.zeros(4, 2), 0.1), 1)
        >>> p = Independent(Normal(torch.zeros(4, 2), 1.0), 1)
        >>> r = DefensiveMixture(q, p)
        >>> z = r.sample((10,))
        >>> z.shape, bool((r.log_prob(z) <= torch.logaddexp(q.log_prob(z), p.log_prob(z))).all())
        (torch.Size([10, 4, 2]), True)
    """

    def __init__(self, q: torch.distributions.Distribution, p: torch.distributions.Distribution, eps: float = 0.5):
        self.q, self.p, self.eps = q, p, eps

    def sample(self, shape: tuple[int, ...] = ()) -> torch.Tensor:
        shape = torch.Size(shape)
        zq, zp = self.q.sample(shape), self.p.sample(shape)
        pick = torch.rand(zq.shape[:-1], device=zq.device) < self.eps
        return torch.where(pick[..., None], zp, zq)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return torch.logaddexp(math.log1p(-self.eps) + self.q.log_prob(z), math.log(self.eps) + self.p.log_prob(z))

MAX_SAMPLES = 10_000_000  # samples per image: 2000 times the paper's K = 5000
PROGRESS_FROM = 5_000_000  # (image, sample) pairs from which a progress bar is shown


class LogLikelihood(NamedTuple):
    """Per-image estimates of log p(x) in nats and their standard errors (both ``[B]``).

    Example:
        >>> import torch
        >>> est, se = LogLikelihood(torch.tensor([-90.0]), torch.tensor([0.1]))
        >>> float(est), float(se)
        (-90.0, 0.10000000149011612)
    """

    estimate: torch.Tensor
    stderr: torch.Tensor


class PosteriorSamples(NamedTuple):
    """Approximate samples of p(z|x) by sampling-importance-resampling.

    Attributes:
        samples: ``[num_samples, B, dim]`` draws of the proposals with probability ``weights``.
        proposals: ``[K, B, dim]`` the proposals z_k ~ r(z|x).
        weights: ``[K, B]`` normalised importance weights (each column sums to 1).
        ess: ``[B]`` effective sample size 1 / sum_k weights_k^2, between 1 and K.

    Example:
        >>> import torch, infovae as iv
        >>> out = iv.metrics.posterior_samples(iv.networks.build_vae("mlp", 2), torch.zeros(1, 1, 28, 28), 3,
        ...                                    num_proposals=10)
        >>> isinstance(out, PosteriorSamples), out.proposals.shape
        (True, torch.Size([10, 1, 2]))
    """

    samples: torch.Tensor
    proposals: torch.Tensor
    weights: torch.Tensor
    ess: torch.Tensor


def _image_batches(x: torch.Tensor, num_samples: int, chunk_size: int) -> tuple[torch.Tensor, ...]:
    """Split ``x`` so that one batch of images times the samples per chunk fits ``chunk_size``."""
    return x.split(max(1, chunk_size // num_samples))


def _log_weights(
    model: VAE, x: torch.Tensor, num_samples: int, proposal: str, chunk_size: int, precision: str = "fp32"
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(z [s, b, dim], log w [s, b])`` chunk by chunk for one batch ``x [b, ...]``."""
    b = x.shape[0]
    device = x.device
    prior = model.prior()
    r = prior.expand(x.shape[:1]) if proposal == "prior" else model.encode(x)
    if isinstance(r, PointMass):
        raise ValueError(
            "a deterministic encoder has no density to importance-sample from; use proposal='prior'"
        )
    if proposal == "mixture":
        r = DefensiveMixture(r, prior.expand(x.shape[:1]))
    # one validated decoder call per image checks x against the decoder's support and shape;
    # the chunks repeat the same images, so they skip torch.distributions' checks
    check_decoder_output(model.decode(r.sample()), x).log_prob(x)
    per_chunk = min(max(1, chunk_size // b), num_samples)
    # the images repeated once per sample, [s * b, ...] (sample-major), built once: a shorter
    # last chunk uses its first rows
    x_rep = x.expand(per_chunk, *x.shape).reshape(per_chunk * b, *x.shape[1:])
    for start in range(0, num_samples, per_chunk):
        s = min(per_chunk, num_samples - start)
        z = r.sample((s,))
        with distribution_checks(False), autocast_networks(precision, device):
            log_px = model.decode(z.reshape(s * b, -1)).log_prob(x_rep[: s * b])
        yield z, log_px.view(s, b) + prior.log_prob(z) - r.log_prob(z)


def _check(
    model: VAE, x: torch.Tensor, num_samples: int, proposal: str, chunk_size: int, name: str = "num_samples",
    precision: str = "fp32",
) -> torch.Tensor:
    """The checks of the estimators' arguments; returns ``x`` on the model's device."""
    x = check_model(model, x)
    resolve_precision(precision, x.device)  # names an unknown or emulated precision
    check_count(name, num_samples)
    if num_samples > MAX_SAMPLES:
        raise ValueError(f"{name} must be at most {MAX_SAMPLES:,} per image (the paper uses 5000), got {num_samples:,}")
    check_count("chunk_size", chunk_size)
    if proposal not in PROPOSALS:
        raise ValueError(f"proposal must be one of {PROPOSALS}, got {proposal!r}")
    return x


@torch.inference_mode()
def log_likelihood_with_error(
    model: VAE,
    x: torch.Tensor,
    num_samples: int = 5000,
    *,
    proposal: str = "encoder",
    chunk_size: int = 1024,
    precision: str = "fp32",
) -> LogLikelihood:
    """Importance-sampled log p(x) per image, with its delta-method standard error.

    Estimates log p(x) = log E_r[w] by L_K = log (1/K) sum_k w_k (module docstring), merging
    chunks with a running log-sum-exp of log w and of 2 log w, so nothing of size K is kept.

    Bias and variance: E[L_K] <= log p(x) (Jensen); the bias shrinks as O(1/K) and is zero
    when r is the true posterior (every w_k = p(x)). The standard error is the delta
    method, s.e.(L_K) ~= sqrt(v / K) with v = Var[w] / E[w]^2 estimated from the same
    weights; it is reliable only while the effective sample size is large (a few weights
    dominating makes both the estimate and its s.e. too low). With ``proposal="prior"`` the
    weights are p(x|z), unbiased for p(x) but of enormous variance unless dim z is small.

    Cost: K decoder evaluations per image and one encoder evaluation;
    memory of ``chunk_size`` decoder evaluations at a time.

    Args:
        model: an ``infovae.VAE`` (``encode``, ``decode``, ``prior``) on the device of ``x``.
        x: images ``[B, ...]``.
        num_samples: K, importance samples per image (the paper: 5000).
        proposal: ``"encoder"`` (q(z|x), IWAE), ``"prior"`` (p(z)) or ``"mixture"`` (half each).
        chunk_size: most (image, sample) rows per decoder call: lower it for big decoders
            (a PixelCNN keeps ~100 kB of activations per row), raise it where a GPU has
            memory to spare (``benchmarks/bench_metrics.py`` measures both on a CPU).
        precision: ``"fp32"`` (default), ``"bf16"`` or ``"auto"``: the networks' precision
            (module docstring; check it with :func:`precision_error`).

    Returns:
        ``LogLikelihood(estimate [B], stderr [B])`` in nats; ``stderr`` is NaN when K = 1.

    Example:
        >>> import torch, infovae as iv
        >>> model = iv.networks.build_vae("mlp", 2)
        >>> x = torch.bernoulli(torch.full((3, 1, 28, 28), 0.3))
        >>> out = iv.metrics.log_likelihood_with_error(model, x, 20, proposal="mixture")
        >>> out.estimate.shape, bool((out.stderr > 0).all())
        (torch.Size([3]), True)
    """
    x = _check(model, x, num_samples, proposal, chunk_size, precision=precision)
    log_k = math.log(num_samples)
    unbiased = num_samples / (num_samples - 1) if num_samples > 1 else math.nan
    estimates, stderrs = [], []
    total = x.shape[0] * num_samples
    with evaluating(model), tqdm(total=total, disable=total < PROGRESS_FROM, desc="log-likelihood", leave=False) as bar:
        for xb in _image_batches(x, num_samples, chunk_size):
            lse_w = lse_w2 = torch.full(xb.shape[:1], -math.inf, dtype=torch.promote_types(xb.dtype, torch.float32),
                                        device=xb.device)
            for _, log_w in _log_weights(model, xb, num_samples, proposal, chunk_size, precision):
                bar.update(log_w.numel())
                lse_w = torch.logaddexp(lse_w, log_w.logsumexp(0))
                lse_w2 = torch.logaddexp(lse_w2, (2 * log_w).logsumexp(0))
            estimate = lse_w - log_k
            # v = Var[w] / E[w]^2 = mean(w^2) / mean(w)^2 - 1, times K / (K - 1)
            v = torch.expm1(lse_w2 - log_k - 2 * estimate).clamp_min(0) * unbiased
            estimates.append(estimate)
            stderrs.append((v / num_samples).sqrt())
    return LogLikelihood(torch.cat(estimates), torch.cat(stderrs))


def log_likelihood(
    model: VAE,
    x: torch.Tensor,
    num_samples: int = 5000,
    *,
    proposal: str = "encoder",
    chunk_size: int = 1024,
    precision: str = "fp32",
) -> torch.Tensor:
    """Importance-sampled estimates of log p(x) in nats, ``[B]`` (Table 1 of the paper).

    The estimate of :func:`log_likelihood_with_error` without its standard error; see there
    for the estimator, its bias and variance, its cost and the arguments.

    Example:
        >>> import torch, infovae as iv
        >>> model = iv.networks.build_vae("mlp", 2)
        >>> x = torch.bernoulli(torch.full((3, 1, 28, 28), 0.3))
        >>> iv.metrics.log_likelihood(model, x, num_samples=10).shape
        torch.Size([3])
    """
    return log_likelihood_with_error(
        model, x, num_samples, proposal=proposal, chunk_size=chunk_size, precision=precision
    ).estimate


@torch.inference_mode()
def precision_error(
    model: VAE,
    x: torch.Tensor,
    num_samples: int = 100,
    *,
    proposal: str = "encoder",
    chunk_size: int = 1024,
    precision: str = "bf16",
    seed: int = 0,
) -> torch.Tensor:
    """What evaluating in ``precision`` instead of float32 does to the estimate of each image.

    Runs :func:`log_likelihood` twice from the same random state, so both use the same
    codes z_k (drawn in float32 outside the networks) and differ only by the rounding of the
    networks: returns ``estimate(precision) - estimate(fp32)`` per image, ``[B]`` nats.
    The caller's random state is left as it was.

    Example:
        >>> import torch, infovae as iv
        >>> model = iv.networks.build_vae("mlp", 2)
        >>> x = torch.bernoulli(torch.full((3, 1, 28, 28), 0.3))
        >>> iv.metrics.precision_error(model, x, 10, precision="fp32").abs().max().item()
        0.0
    """
    runs = []
    for p in (precision, "fp32"):
        with seeded(seed, x.device):
            runs.append(log_likelihood(model, x, num_samples, proposal=proposal, chunk_size=chunk_size, precision=p))
    return runs[0] - runs[1]


@torch.inference_mode()
def posterior_samples(
    model: VAE,
    x: torch.Tensor,
    num_samples: int = 100,
    *,
    num_proposals: int = 5000,
    proposal: str = "encoder",
    chunk_size: int = 1024,
) -> PosteriorSamples:
    """Samples of the true posterior p(z|x) by sampling-importance-resampling (Fig. 4).

    Draws K = ``num_proposals`` proposals z_k ~ r(z|x), weights them by the normalised
    w_k of the module docstring and resamples ``num_samples`` of them with replacement.

    Bias and variance: weighted averages sum_k weights_k f(z_k) are self-normalised
    importance estimates of E_p(z|x)[f], biased by O(1/K) and consistent; the resampled
    points follow p(z|x) exactly only as K -> infinity. The effective sample size
    ESS = 1 / sum_k weights_k^2 says how many independent posterior draws the weights are
    worth: an ESS near 1 means the proposal misses the posterior and the samples are
    unreliable; near K means r is close to p(z|x).

    Cost: K decoder evaluations per image; memory ``K * B * dim`` for the proposals plus
    ``chunk_size`` decoder evaluations at a time.

    Args:
        model: an ``infovae.VAE`` on the device of ``x``.
        x: images ``[B, ...]``.
        num_samples: resampled draws per image.
        num_proposals: K, proposals per image.
        proposal: ``"encoder"`` (q(z|x)), ``"prior"`` (p(z)) or ``"mixture"`` (half each).
        chunk_size: most (image, sample) pairs per decoder call.

    Returns:
        ``PosteriorSamples(samples, proposals, weights, ess)``.

    Example:
        >>> import torch, infovae as iv
        >>> model = iv.networks.build_vae("mlp", 2)
        >>> x = torch.bernoulli(torch.full((3, 1, 28, 28), 0.3))
        >>> out = iv.metrics.posterior_samples(model, x, 5, num_proposals=50)
        >>> out.samples.shape, out.weights.shape, bool(((out.ess >= 1) & (out.ess <= 50)).all())
        (torch.Size([5, 3, 2]), torch.Size([50, 3]), True)
    """
    check_count("num_samples", num_samples)
    x = _check(model, x, num_proposals, proposal, chunk_size, "num_proposals")
    proposals, log_weights = [], []
    with evaluating(model):
        for xb in _image_batches(x, num_proposals, chunk_size):
            zs, log_ws = zip(*_log_weights(model, xb, num_proposals, proposal, chunk_size), strict=True)
            proposals.append(torch.cat(zs))
            log_weights.append(torch.cat(log_ws))
    z, weights = torch.cat(proposals, dim=1), torch.cat(log_weights, dim=1).softmax(0)
    index = torch.multinomial(weights.T, num_samples, replacement=True).T  # [num_samples, B]
    samples = z.gather(0, index.unsqueeze(-1).expand(-1, -1, z.shape[-1]))
    return PosteriorSamples(samples, z, weights, 1 / weights.square().sum(0))
